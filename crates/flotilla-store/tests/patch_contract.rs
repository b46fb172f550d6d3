//! Patch Manager's part of the storage contract, on SQLite and PostgreSQL alike: baseline
//! names are unique and found by id or name; defaults and groups are replaced, not added; a
//! node's result replaces its previous package states (many rows, past one statement's binds)
//! and writes its summary, its one Patch compliance item and a `Patch.Compliance` event
//! together; removing a baseline removes the groups that named it.

use flotilla_core::EventType;
use flotilla_core::compliance::{ComplianceSeverity, ComplianceStatus, ComplianceType};
use flotilla_core::patch::PatchState;
use flotilla_store::{
    BaselineRecord, ComplianceItem, NewEvent, PatchGroupRecord, PatchResult, PatchStateRecord, PatchSummaryRecord,
    SqlStore, Store,
};

fn baseline(id: &str, name: &str, os: &str) -> BaselineRecord {
    BaselineRecord {
        id: id.into(),
        name: name.into(),
        os: os.into(),
        spec: format!(r#"{{"name":"{name}","os":"{os}"}}"#),
        predefined: false,
        created_at: 10,
        updated_at: 10,
    }
}

fn result(node: &str, invocation: &str, packages: usize, missing: usize) -> PatchResult {
    let states = (0..packages)
        .map(|i| PatchStateRecord {
            name: format!("pkg{i:04}"),
            arch: "amd64".into(),
            state: if i < missing { PatchState::Missing } else { PatchState::InstalledOther },
            installed_version: "1.0-1".into(),
            available_version: (i < missing).then(|| "1.1-1".into()),
            severity: if i < missing { ComplianceSeverity::High } else { ComplianceSeverity::Unspecified },
            classification: (i < missing).then(|| "Security".into()),
            cves: if i < missing { vec![format!("CVE-2026-{i:04}"), "CVE-2026-9999".into()] } else { Vec::new() },
            repository: Some("Debian/bookworm-security".into()),
        })
        .collect();
    let status = if missing > 0 { ComplianceStatus::NonCompliant } else { ComplianceStatus::Compliant };
    PatchResult {
        summary: PatchSummaryRecord {
            node_id: node.into(),
            baseline_id: "pb-1".into(),
            baseline_name: "web".into(),
            patch_group: "web".into(),
            operation: "Scan".into(),
            reboot_option: "RebootIfNeeded".into(),
            status,
            severity: ComplianceSeverity::High,
            counts: format!(r#"{{"MISSING":{missing}}}"#),
            invocation_id: invocation.into(),
            started_at: 100,
            ended_at: 200,
        },
        states,
        compliance: ComplianceItem {
            node_id: node.into(),
            kind: ComplianceType::Patch,
            item_id: "patch-baseline".into(),
            title: "Patch baseline web (Scan)".into(),
            status,
            severity: ComplianceSeverity::High,
            detail: format!("{missing} MISSING"),
            execution_id: invocation.into(),
            time: 200,
        },
        event: NewEvent::new(EventType::PatchCompliance, 200, vec![node.into()], serde_json::json!({"node_id": node})),
    }
}

async fn contract(store: &dyn Store) {
    let web = baseline("pb-1", "web", "debian");
    assert!(store.create_baseline(&web).await.expect("create"));
    assert!(!store.create_baseline(&baseline("pb-2", "web", "ubuntu")).await.expect("dup"), "names are unique");
    assert!(store.create_baseline(&baseline("pb-3", "db", "rhel")).await.expect("create db"));
    assert_eq!(store.get_baseline("web").await.expect("by name"), Some(web.clone()));
    assert_eq!(store.get_baseline("pb-1").await.expect("by id"), Some(web.clone()));
    assert_eq!(store.get_baseline("nope").await.expect("missing"), None);
    let mut renamed = web.clone();
    renamed.name = "web-servers".into();
    renamed.updated_at = 20;
    assert!(store.update_baseline(&renamed).await.expect("update"));
    assert_eq!(store.get_baseline("web-servers").await.expect("renamed").map(|b| b.updated_at), Some(20));
    let names: Vec<String> = store.list_baselines().await.expect("list").into_iter().map(|b| b.name).collect();
    assert_eq!(names, vec!["web-servers".to_owned(), "db".to_owned()], "by os, then name");

    store.set_default_baseline("debian", "pb-1").await.expect("default");
    store.set_default_baseline("debian", "pb-1").await.expect("again");
    store.set_default_baseline("rhel", "pb-3").await.expect("default rhel");
    assert_eq!(
        store.default_baselines().await.expect("defaults"),
        vec![("debian".to_owned(), "pb-1".to_owned()), ("rhel".to_owned(), "pb-3".to_owned())]
    );
    store.set_patch_group(&PatchGroupRecord { name: "web".into(), baseline_id: "pb-3".into() }).await.expect("group");
    store.set_patch_group(&PatchGroupRecord { name: "web".into(), baseline_id: "pb-1".into() }).await.expect("regroup");
    store.set_patch_group(&PatchGroupRecord { name: "db".into(), baseline_id: "pb-3".into() }).await.expect("db group");
    let groups = store.list_patch_groups().await.expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1], PatchGroupRecord { name: "web".into(), baseline_id: "pb-1".into() });

    let before = store.last_event_seq().await.expect("seq");
    store.record_patch_result(&result("n1", "c-1:n1", 700, 3)).await.expect("record");
    let states = store.patch_states("n1").await.expect("states");
    assert_eq!(states.len(), 700, "every row, across many statements");
    assert_eq!(states[0].state, PatchState::Missing);
    assert_eq!(states[0].cves, vec!["CVE-2026-0000".to_owned(), "CVE-2026-9999".to_owned()]);
    assert_eq!(states[699].cves, Vec::<String>::new());
    assert_eq!(states[699].available_version, None);

    // A second operation replaces the node's states; another node's stay.
    store.record_patch_result(&result("n2", "c-1:n2", 5, 0)).await.expect("n2");
    store.record_patch_result(&result("n1", "c-2:n1", 10, 0)).await.expect("rescan");
    assert_eq!(store.patch_states("n1").await.expect("n1").len(), 10);
    assert_eq!(store.patch_states("n2").await.expect("n2").len(), 5);
    let summaries = store.patch_summaries().await.expect("summaries");
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0].invocation_id, "c-2:n1");
    assert_eq!(summaries[0].status, ComplianceStatus::Compliant);

    let items = store.list_compliance(Some(ComplianceType::Patch)).await.expect("items");
    assert_eq!(items.len(), 2, "one Patch item per node");
    let history = store.compliance_history("n1", Some(ComplianceType::Patch), 10).await.expect("history");
    assert_eq!(history.len(), 2);
    let events = store.list_events(before, &[EventType::PatchCompliance], 10).await.expect("events");
    assert_eq!(events.len(), 3);

    // The server moves a family's default before it removes that baseline.
    assert!(store.create_baseline(&baseline("pb-4", "db2", "rhel")).await.expect("create db2"));
    store.set_default_baseline("rhel", "pb-4").await.expect("move the default");
    assert!(store.delete_baseline("pb-3").await.expect("delete"));
    assert_eq!(store.list_patch_groups().await.expect("groups").len(), 1, "db's group went with its baseline");
    assert!(!store.delete_baseline("pb-3").await.expect("again"));
}

#[tokio::test]
async fn sqlite_patch_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite(&dir.path().join("flotilla.db")).await.expect("open sqlite");
    contract(&store).await;
}

#[tokio::test]
async fn postgres_patch_contract() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    contract(&store).await;
    store.close().await;
    db.drop_database().await.expect("drop test database");
}
