//! State Manager's part of the storage contract, on SQLite and PostgreSQL alike: names are
//! unique, a node's run is recorded then settled exactly once into its status, its
//! Association compliance item, the history and an `Association.Compliance` event; a run
//! superseded by a newer command is not settled; deleting an association removes its rows and
//! items; other types' items sit beside them.

use std::collections::BTreeMap;

use flotilla_core::EventType;
use flotilla_core::association::AssociationStatus;
use flotilla_core::compliance::{ComplianceSeverity, ComplianceStatus, ComplianceType};
use flotilla_store::{AssociationRecord, ComplianceItem, SettledRun, SqlStore, Store};

fn association(id: &str, name: &str) -> AssociationRecord {
    AssociationRecord {
        id: id.into(),
        name: name.into(),
        document: "Flotilla-DesiredState".into(),
        document_version: None,
        parameters: BTreeMap::from([("resources".into(), vec!["[]".into()])]),
        targets: vec!["tag:role=web".into()],
        schedule: Some("rate(1 hour)".into()),
        timezone: None,
        max_concurrency: "100%".into(),
        max_errors: "100%".into(),
        compliance_severity: ComplianceSeverity::High,
        apply_only_at_cron_interval: false,
        generation: 1,
        schedule_since: 10,
        created_at: 10,
        updated_at: 10,
    }
}

fn run(node: &str, command: &str, status: AssociationStatus, changed: Option<bool>, time: i64) -> SettledRun {
    SettledRun {
        node_id: node.into(),
        command_id: command.into(),
        status,
        changed,
        detail: format!("{status} by {command}"),
        undelivered: false,
        time,
    }
}

async fn contract(store: &dyn Store) {
    let a = association("a-1", "motd");
    assert!(store.create_association(&a).await.expect("create"));
    assert!(!store.create_association(&association("a-2", "motd")).await.expect("dup"), "names are unique");
    assert_eq!(store.get_association("motd").await.expect("by name"), Some(a.clone()));
    assert_eq!(store.get_association("a-1").await.expect("by id"), Some(a.clone()));
    assert_eq!(store.bump_association_generation("a-1").await.expect("bump"), Some(2));
    assert_eq!(store.bump_association_generation("nope").await.expect("bump"), None);
    let a = store.get_association("a-1").await.expect("get").expect("some");
    assert_eq!(a.generation, 2);

    store.start_association_runs("a-1", 2, "c-1", &["n1".into(), "n2".into()], 20).await.expect("start");
    let pending = store.pending_association_nodes().await.expect("pending");
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|r| r.status == AssociationStatus::Pending && r.command_id.as_deref() == Some("c-1")));
    let last_seq = store.last_event_seq().await.expect("seq");
    // n1 succeeds changing something; n2 fails.
    let runs = [
        run("n1", "c-1", AssociationStatus::Success, Some(true), 30),
        run("n2", "c-1", AssociationStatus::Failed, None, 31),
    ];
    store.settle_association_runs(&a, &runs).await.expect("settle");
    // Settling again changes nothing and writes no event.
    store.settle_association_runs(&a, &runs).await.expect("settle again");
    assert!(store.pending_association_nodes().await.expect("pending").is_empty());
    let rows = store.association_nodes("a-1").await.expect("rows");
    assert_eq!(
        rows.iter().map(|r| (r.node_id.as_str(), r.status, r.changed, r.generation)).collect::<Vec<_>>(),
        [("n1", AssociationStatus::Success, Some(true), 2), ("n2", AssociationStatus::Failed, None, 2)]
    );
    let items = store.list_compliance(Some(ComplianceType::Association)).await.expect("items");
    assert_eq!(
        items.iter().map(|i| (i.node_id.as_str(), i.status, i.severity, i.title.as_str())).collect::<Vec<_>>(),
        [
            ("n1", ComplianceStatus::Compliant, ComplianceSeverity::High, "motd"),
            ("n2", ComplianceStatus::NonCompliant, ComplianceSeverity::High, "motd")
        ]
    );
    let events = store.list_events(last_seq, &[EventType::AssociationCompliance], 10).await.expect("events");
    assert_eq!(events.len(), 2, "one event per node, none for the repeated settlement: {events:?}");
    assert_eq!(events[1].detail["status"], "NON_COMPLIANT");
    assert_eq!(events[1].resources, ["a-1", "n2"]);

    // A newer run supersedes c-2's: c-2's late result is not settled.
    store.start_association_runs("a-1", 3, "c-2", &["n1".into()], 40).await.expect("start");
    store.start_association_runs("a-1", 4, "c-3", &["n1".into()], 41).await.expect("start");
    store.settle_association_runs(&a, &[run("n1", "c-2", AssociationStatus::Failed, None, 50)]).await.expect("late");
    let n1 = &store.association_nodes("a-1").await.expect("rows")[0];
    assert_eq!((n1.status, n1.command_id.as_deref()), (AssociationStatus::Pending, Some("c-3")));
    // An unchanged success of a compliant node writes history but no event.
    let seq = store.last_event_seq().await.expect("seq");
    store
        .settle_association_runs(&a, &[run("n1", "c-3", AssociationStatus::Success, Some(false), 60)])
        .await
        .expect("settle");
    assert!(store.list_events(seq, &[EventType::AssociationCompliance], 10).await.expect("events").is_empty());
    let history = store.compliance_history("n1", None, 10).await.expect("history");
    assert_eq!(history.iter().map(|h| h.execution_id.as_str()).collect::<Vec<_>>(), ["c-3", "c-1"]);

    // Other types' items sit beside; a rename retitles; deletion removes rows and items.
    let vuln = ComplianceItem {
        node_id: "n1".into(),
        kind: ComplianceType::Vulnerability,
        item_id: "assessment".into(),
        title: "vulnerability assessment (cve)".into(),
        status: ComplianceStatus::NonCompliant,
        severity: ComplianceSeverity::Medium,
        detail: "run ar-1: 2 Medium".into(),
        execution_id: "ar-1".into(),
        time: 70,
    };
    store.put_compliance(std::slice::from_ref(&vuln)).await.expect("put");
    let mut renamed = a.clone();
    renamed.name = "motd-v2".into();
    assert!(store.update_association(&renamed).await.expect("update"));
    assert!(
        store
            .list_compliance(Some(ComplianceType::Association))
            .await
            .expect("items")
            .iter()
            .all(|i| i.title == "motd-v2")
    );
    assert_eq!(store.list_compliance(None).await.expect("all").len(), 3);
    assert!(store.delete_association("a-1").await.expect("delete"));
    assert!(!store.delete_association("a-1").await.expect("delete again"));
    assert!(store.association_nodes("a-1").await.expect("rows").is_empty());
    assert_eq!(store.list_compliance(None).await.expect("all"), [vuln]);
}

#[tokio::test]
async fn sqlite_associations_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite(&dir.path().join("flotilla.db")).await.expect("open sqlite");
    contract(&store).await;
}

#[tokio::test]
async fn postgres_associations_contract() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    contract(&store).await;
    store.close().await;
    db.drop_database().await.expect("drop test database");
}
