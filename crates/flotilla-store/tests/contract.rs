//! The storage contract: every case runs unchanged against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `FLOTILLA_TEST_POSTGRES` (default: the local server on 127.0.0.1:5432,
//! as on the CI machine). Each run makes its own database and drops it afterwards. An
//! unreachable PostgreSQL fails the suite: it is never skipped.

use std::collections::BTreeMap;

use flotilla_core::assessment::{NodeStatus as AssessmentNodeStatus, RunStatus};
use flotilla_core::command::{CommandStatus, DocumentFormat, InvocationStatus, StepState};
use flotilla_core::compliance::{ComplianceSeverity, ComplianceStatus, ComplianceType};
use flotilla_core::{Activation, Node, NodeId, NodeInfo, NodeStatus, Platform, Severity, Tags};
use flotilla_store::prelude::*;
use flotilla_store::{
    AdvisoryRecord, AssessmentNodeRecord, AssessmentRunRecord, AssessmentTemplate, CommandRecord, ComplianceItem,
    DocumentVersion, Enrollment, FindingRecord, ImportOutcome, InventoryChange, InventorySetting, InvocationRecord,
    NodeAssessment, SqlStore, Store, TargetGroup,
};

fn activation(id: &str, limit: u32) -> Activation {
    Activation {
        id: id.into(),
        code_hash: "hash".into(),
        description: "test".into(),
        registration_limit: limit,
        registrations: 0,
        expires_at: 10_000,
        default_tags: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        created_at: 1,
    }
}

fn node(n: u8, activation_id: &str) -> Node {
    Node {
        id: NodeId::from_random([n; 9]),
        hostname: format!("host-{n}"),
        status: NodeStatus::ConnectionLost,
        last_seen: None,
        platform: Platform::default(),
        kernel: String::new(),
        arch: String::new(),
        agent_version: String::new(),
        addresses: vec![],
        tags: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        activation_id: activation_id.into(),
        registered_at: 5,
        cert_fingerprint: format!("fp{n}"),
    }
}

async fn activations(store: &dyn Store) {
    let a = activation("act-1", 2);
    store.create_activation(&a).await.expect("create");
    assert_eq!(store.get_activation("act-1").await.expect("get"), Some(a.clone()));
    assert_eq!(store.get_activation("nope").await.expect("get"), None);
    assert!(store.create_activation(&a).await.is_err(), "duplicate id is refused");
    assert_eq!(store.list_activations().await.expect("list"), vec![a]);
    assert!(store.delete_activation("act-1").await.expect("delete"));
    assert!(!store.delete_activation("act-1").await.expect("delete again"));
    assert!(store.list_activations().await.expect("list").is_empty());
}

async fn enrollment_respects_limit(store: &dyn Store) {
    store.create_activation(&activation("act-2", 2)).await.expect("create");
    assert_eq!(store.enroll_node("act-2", &node(1, "act-2")).await.expect("enroll"), Enrollment::Enrolled);
    assert_eq!(store.enroll_node("act-2", &node(2, "act-2")).await.expect("enroll"), Enrollment::Enrolled);
    assert_eq!(store.enroll_node("act-2", &node(3, "act-2")).await.expect("enroll"), Enrollment::LimitReached);
    let stored = store.get_activation("act-2").await.expect("get").expect("exists");
    assert_eq!(stored.registrations, 2);
    assert_eq!(store.get_node(&node(3, "").id).await.expect("get"), None, "nothing stored past the limit");
    assert_eq!(store.get_node(&node(1, "").id).await.expect("get"), Some(node(1, "act-2")));
    assert_eq!(store.list_nodes().await.expect("list").len(), 2);
    let (one, absent) = (node(1, "act-2"), node(3, "act-2"));
    let names = store.node_names(&[one.id.to_string(), absent.id.to_string()]).await.expect("names");
    assert_eq!(names, vec![(one.id.to_string(), one.hostname, one.status)], "only nodes that exist");
    assert!(store.node_names(&[]).await.expect("none").is_empty());
}

async fn node_lifecycle(store: &dyn Store) {
    store.create_activation(&activation("act-3", 10)).await.expect("create");
    let n = node(7, "act-3");
    store.enroll_node("act-3", &n).await.expect("enroll");
    let info = NodeInfo {
        hostname: "web-7".into(),
        platform: Platform { name: "Debian GNU/Linux".into(), version: "12".into(), id: "debian".into() },
        kernel: "6.1.0".into(),
        arch: "x86_64".into(),
        agent_version: "0.1.0".into(),
        addresses: vec!["10.0.0.7".into()],
    };
    assert!(store.node_connected(&n.id, &info, 100).await.expect("connect"));
    let got = store.get_node(&n.id).await.expect("get").expect("exists");
    assert_eq!((got.status, got.last_seen, got.hostname.as_str()), (NodeStatus::Online, Some(100), "web-7"));
    assert_eq!(got.platform, info.platform);
    assert_eq!(got.addresses, info.addresses);

    store.touch_nodes(&[(n.id.clone(), 200)]).await.expect("touch");
    store.touch_nodes(&[(n.id.clone(), 150)]).await.expect("touch older");
    assert_eq!(
        store.get_node(&n.id).await.expect("get").expect("exists").last_seen,
        Some(200),
        "last seen never goes back"
    );

    assert_eq!(store.expire_silent_nodes(200).await.expect("expire"), Vec::<NodeId>::new());
    assert_eq!(store.expire_silent_nodes(201).await.expect("expire"), vec![n.id.clone()]);
    assert_eq!(store.get_node(&n.id).await.expect("get").expect("exists").status, NodeStatus::ConnectionLost);

    store.node_connected(&n.id, &info, 300).await.expect("reconnect");
    store.nodes_lost(std::slice::from_ref(&n.id)).await.expect("lost");
    assert_eq!(store.get_node(&n.id).await.expect("get").expect("exists").status, NodeStatus::ConnectionLost);

    let tags: Tags =
        BTreeMap::from([("role".to_string(), "web".to_string()), ("Patch Group".to_string(), "a b".to_string())]);
    assert!(store.set_tags(&n.id, &tags).await.expect("tag"));
    assert_eq!(store.get_node(&n.id).await.expect("get").expect("exists").tags, tags);
    assert!(!store.set_tags(&node(99, "").id, &tags).await.expect("tag unknown"));

    assert!(store.deregister_node(&n.id).await.expect("deregister"));
    assert!(
        !store.node_connected(&n.id, &info, 400).await.expect("connect after deregistration"),
        "a deregistered node stays out"
    );
    store.nodes_lost(std::slice::from_ref(&n.id)).await.expect("lost");
    assert_eq!(store.get_node(&n.id).await.expect("get").expect("exists").status, NodeStatus::Deregistered);
    assert!(!store.deregister_node(&node(98, "").id).await.expect("deregister unknown"));
}

async fn tokens_and_groups(store: &dyn Store) {
    store.put_api_token("admin", "h1", 1).await.expect("put");
    assert_eq!(store.find_api_token("h1").await.expect("find"), Some("admin".into()));
    store.put_api_token("admin", "h2", 2).await.expect("replace");
    assert_eq!(store.find_api_token("h1").await.expect("find"), None, "a replaced token stops working");
    assert_eq!(store.find_api_token("h2").await.expect("find"), Some("admin".into()));

    let g =
        TargetGroup { name: "webs".into(), targets: vec!["tag:role=web".into(), "tag:env=prod".into()], created_at: 3 };
    store.put_group(&g).await.expect("put group");
    assert_eq!(store.list_groups().await.expect("list"), vec![g.clone()]);
    let g2 = TargetGroup { targets: vec!["all".into()], ..g };
    store.put_group(&g2).await.expect("replace group");
    assert_eq!(store.list_groups().await.expect("list"), vec![g2]);
    assert!(store.delete_group("webs").await.expect("delete"));
    assert!(!store.delete_group("webs").await.expect("delete again"));
}

async fn documents(store: &dyn Store) {
    let doc = |content: &str, description: &str| DocumentVersion {
        name: "Doc-A".into(),
        version: 0,
        content: content.into(),
        description: description.into(),
        format: DocumentFormat::Flotilla,
        created_at: 10,
    };
    assert_eq!(store.put_document(&doc("v1 text", "first")).await.expect("put"), 1);
    assert_eq!(store.put_document(&doc("v2 text", "second")).await.expect("put"), 2);
    assert_eq!(
        store.get_document("Doc-A", None).await.expect("get").expect("exists").content,
        "v1 text",
        "default stays 1"
    );
    assert_eq!(store.get_document("Doc-A", Some(2)).await.expect("get").expect("exists").content, "v2 text");
    assert_eq!(store.get_document("Doc-A", Some(3)).await.expect("get"), None);
    assert_eq!(store.get_document("Nope", None).await.expect("get"), None);
    assert!(store.set_default_document_version("Doc-A", 2).await.expect("default"));
    assert!(!store.set_default_document_version("Doc-A", 3).await.expect("default past latest"));
    assert!(!store.set_default_document_version("Doc-A", 0).await.expect("default zero"));
    let heads = store.list_documents().await.expect("list");
    assert_eq!((heads.len(), heads[0].latest_version, heads[0].default_version), (1, 2, 2));
    assert_eq!(heads[0].description, "second");
    assert_eq!(store.get_document_head("Doc-A").await.expect("head").as_ref(), heads.first());
    assert_eq!(store.get_document_head("Nope").await.expect("head"), None);
}

async fn commands(store: &dyn Store) {
    let c = CommandRecord {
        id: "cmd-1".into(),
        document: "Doc-A".into(),
        document_version: 2,
        parameters: "{}".into(),
        targets: r#"["all"]"#.into(),
        plan: "[]".into(),
        max_concurrency: "50".into(),
        max_errors: "0".into(),
        delivery_timeout_ms: 600_000,
        comment: "hello".into(),
        status: CommandStatus::Pending,
        stopped_for_errors: false,
        cancel_requested: false,
        created_at: 100,
        ended_at: None,
        notification: None,
    };
    store.create_command(&c, &["n-a".into(), "n-b".into()]).await.expect("create");
    assert_eq!(store.get_command("cmd-1").await.expect("get"), Some(c.clone()));
    assert_eq!(store.unfinished_commands().await.expect("unfinished"), vec!["cmd-1".to_string()]);
    let invs = store.list_invocations("cmd-1").await.expect("list");
    assert_eq!(
        invs.iter().map(|i| (i.node_id.as_str(), i.status.as_str())).collect::<Vec<_>>(),
        [("n-a", "Pending"), ("n-b", "Pending")]
    );
    let done = InvocationRecord {
        status: InvocationStatus::Success,
        exit_code: Some(0),
        stdout: "héllo ✓".into(),
        stdout_bytes: 8,
        stdout_truncated: true,
        stderr_whole: true,
        ended_at: Some(5),
        state: vec![
            StepState {
                step: "d.0".into(),
                action: "file:write".into(),
                changed: true,
                detail: "/etc/motd: created".into(),
            },
            StepState {
                step: "d.1".into(),
                action: "sysctl:ensure".into(),
                changed: false,
                detail: "unchanged".into(),
            },
        ],
        ..invs[0].clone()
    };
    store.update_invocations(std::slice::from_ref(&done)).await.expect("update");
    assert_eq!(store.list_invocations("cmd-1").await.expect("list")[0], done);
    let finished =
        CommandRecord { status: CommandStatus::Success, ended_at: Some(200), cancel_requested: true, ..c.clone() };
    store.update_command(&finished).await.expect("update");
    assert_eq!(store.get_command("cmd-1").await.expect("get"), Some(finished));
    assert!(store.unfinished_commands().await.expect("unfinished").is_empty());
    let newer = CommandRecord { id: "cmd-2".into(), created_at: 300, ..c };
    store.create_command(&newer, &[]).await.expect("create");
    let counts = store.invocation_counts(&["cmd-1".into(), "cmd-2".into(), "nope".into()]).await.expect("counts");
    let mut counts: Vec<(String, InvocationStatus, u32)> = counts;
    counts.sort_by_key(|(id, status, _)| (id.clone(), status.as_str()));
    assert_eq!(
        counts,
        [("cmd-1".to_string(), InvocationStatus::Pending, 1), ("cmd-1".to_string(), InvocationStatus::Success, 1)]
    );
    assert!(store.invocation_counts(&[]).await.expect("none").is_empty());
    let listed: Vec<String> = store.list_commands(10).await.expect("list").into_iter().map(|c| c.id).collect();
    assert_eq!(listed, ["cmd-2", "cmd-1"], "newest first");
    assert_eq!(store.list_commands(1).await.expect("list").len(), 1);

    // Retention: only commands that ended before the cutoff go, with their invocations.
    assert!(store.delete_commands_ended_before(200).await.expect("delete").is_empty(), "ended at 200 is kept");
    assert_eq!(store.delete_commands_ended_before(201).await.expect("delete"), vec!["cmd-1".to_string()]);
    assert_eq!(store.get_command("cmd-1").await.expect("get"), None);
    assert!(store.list_invocations("cmd-1").await.expect("list").is_empty());
    assert!(store.get_command("cmd-2").await.expect("get").is_some(), "an unfinished command is never deleted");
}

async fn inventory(store: &dyn Store) {
    let a = NodeId::from_random([31; 9]);
    let b = NodeId::from_random([32; 9]);
    let apps_of = |type_name: &str, names: &[&str]| InventoryChange::Replace {
        type_name: type_name.into(),
        content_hash: names.join(","),
        items: names.iter().map(|n| (Some((*n).to_string()), format!("{{\"name\":\"{n}\"}}"))).collect(),
    };
    let apps = |names: &[&str]| apps_of("Application", names);
    // More items than one INSERT carries, to cross the batch boundary.
    let many: Vec<String> = (0..1203).map(|i| format!("p{i:04}")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    store.apply_inventory(&a, &[apps(&many_refs)], 10, 11).await.expect("ingest a");
    store.apply_inventory(&b, &[apps(&["openssl", "curl"])], 12, 13).await.expect("ingest b");
    let types = store.inventory_types(&a).await.expect("types");
    assert_eq!((types.len(), types[0].item_count, types[0].collected_at), (1, 1203, 10));
    let items = store.inventory_items(&a, "Application").await.expect("items");
    assert_eq!(items.len(), 1203);
    assert_eq!(items[1202], "{\"name\":\"p1202\"}", "stored order kept");

    // Replacing is whole: the old items are gone, a deleted type is gone.
    let custom = InventoryChange::Replace {
        type_name: "Custom:Rack".into(),
        content_hash: "h".into(),
        items: vec![(None, "{\"Row\":\"3\"}".into())],
    };
    store.apply_inventory(&a, &[apps(&["openssl"]), custom], 20, 21).await.expect("replace");
    assert_eq!(store.inventory_items(&a, "Application").await.expect("items").len(), 1);
    store
        .apply_inventory(&a, &[InventoryChange::Delete { type_name: "Custom:Rack".into() }], 30, 31)
        .await
        .expect("delete");
    let names: Vec<String> = store.inventory_types(&a).await.expect("types").into_iter().map(|t| t.type_name).collect();
    assert_eq!(names, ["Application"]);

    // Scans: by key, by node page.
    let (first, second) = if a.as_str() < b.as_str() { (&a, &b) } else { (&b, &a) };
    let keyed = store.inventory_scan("Application", Some("openssl"), None, 10).await.expect("scan");
    assert_eq!(keyed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), [first.as_str(), second.as_str()]);
    let page = store.inventory_scan("Application", None, None, 1).await.expect("scan");
    assert!(page.iter().all(|(n, _)| n == first.as_str()));
    let next = store.inventory_scan("Application", None, Some(first.as_str()), 1).await.expect("scan");
    assert!(!next.is_empty() && next.iter().all(|(n, _)| n == second.as_str()));
    assert!(store.inventory_scan("Application", None, Some(second.as_str()), 1).await.expect("scan").is_empty());
    assert!(store.inventory_scan("Application", Some("absent"), None, 10).await.expect("scan").is_empty());

    // Items are stored once however many nodes hold them: the sweep deletes exactly those no
    // node holds any more (a's 1,203 replaced packages and its deleted rack row), once.
    assert_eq!(store.delete_unreferenced_inventory_entries().await.expect("sweep"), 1204);
    assert_eq!(store.delete_unreferenced_inventory_entries().await.expect("sweep"), 0);
    assert_eq!(store.inventory_items(&a, "Application").await.expect("items"), ["{\"name\":\"openssl\"}"]);
    assert_eq!(store.inventory_items(&b, "Application").await.expect("items").len(), 2);
    // Items stored again after the sweep deleted them are stored anew (the store remembered
    // their ids from before the sweep and must not use them).
    store.apply_inventory(&a, &[apps(&many_refs)], 32, 33).await.expect("again");
    assert_eq!(store.inventory_items(&a, "Application").await.expect("items").len(), 1203);
    store.apply_inventory(&a, &[apps(&["openssl"])], 34, 35).await.expect("and back");
    assert_eq!(store.delete_unreferenced_inventory_entries().await.expect("sweep"), 1203);
    // One item twice in a type is kept twice; an empty type is stored empty.
    let c = NodeId::from_random([33; 9]);
    store
        .apply_inventory(&c, &[apps(&["zlib", "curl", "zlib"]), apps_of("Custom:Empty", &[])], 40, 41)
        .await
        .expect("c");
    let items = store.inventory_items(&c, "Application").await.expect("items");
    assert_eq!(items, ["{\"name\":\"zlib\"}", "{\"name\":\"curl\"}", "{\"name\":\"zlib\"}"]);
    let zlib = store.inventory_scan("Application", Some("zlib"), None, 10).await.expect("scan");
    assert_eq!(zlib.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), [c.as_str(), c.as_str()]);
    assert!(store.inventory_items(&c, "Custom:Empty").await.expect("items").is_empty());
    let types = store.inventory_types(&c).await.expect("types");
    assert_eq!(
        types.iter().map(|t| (t.type_name.as_str(), t.item_count)).collect::<Vec<_>>(),
        [("Application", 3), ("Custom:Empty", 0)]
    );
    assert_eq!(store.delete_unreferenced_inventory_entries().await.expect("sweep"), 0, "c's items are held");
    // A scan sees every committed write (SQLite keeps a scanned type's sets in memory): a set
    // deleted, one replaced, one written anew.
    let delete_apps = InventoryChange::Delete { type_name: "Application".into() };
    store.apply_inventory(&c, &[delete_apps], 42, 43).await.expect("delete c's");
    assert!(store.inventory_scan("Application", Some("zlib"), None, 10).await.expect("scan").is_empty());
    store.apply_inventory(&b, &[apps(&["zlib"])], 44, 45).await.expect("replace b's");
    let zlib = store.inventory_scan("Application", Some("zlib"), None, 10).await.expect("scan");
    assert_eq!(zlib.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), [b.as_str()]);
    store.apply_inventory(&c, &[apps(&["zlib"])], 46, 47).await.expect("c again");
    let mut all: Vec<(String, String)> = store.inventory_scan("Application", None, None, 10).await.expect("scan");
    all.sort();
    let mut expected = vec![
        (a.to_string(), "{\"name\":\"openssl\"}".to_owned()),
        (b.to_string(), "{\"name\":\"zlib\"}".to_owned()),
        (c.to_string(), "{\"name\":\"zlib\"}".to_owned()),
    ];
    expected.sort();
    assert_eq!(all, expected);

    let setting = InventorySetting {
        group_name: "web".into(),
        interval_seconds: Some(900),
        files: vec!["/etc/*.conf".into()],
        updated_at: 1,
    };
    store.put_inventory_setting(&setting).await.expect("put");
    let unset = InventorySetting { group_name: "db".into(), interval_seconds: None, files: vec![], updated_at: 2 };
    store.put_inventory_setting(&unset).await.expect("put");
    assert_eq!(store.list_inventory_settings().await.expect("list"), vec![unset, setting]);
    assert!(store.delete_inventory_setting("web").await.expect("delete"));
    assert!(!store.delete_inventory_setting("web").await.expect("delete"));
}

fn advisory(id: &str, micros: i64, index: &[(&str, &str)]) -> AdvisoryRecord {
    AdvisoryRecord {
        id: id.into(),
        modified: format!("t{micros}"),
        modified_micros: micros,
        record: format!("{{\"id\":\"{id}\",\"v\":{micros}}}"),
        index: index.iter().map(|(e, p)| (e.to_string(), p.to_string())).collect(),
    }
}

fn keys(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(e, p)| (e.to_string(), p.to_string())).collect()
}

async fn advisories(store: &dyn Store) {
    use ImportOutcome::*;
    assert_eq!(store.advisory_stats().await.expect("stats").total, 0);
    let a = advisory("DSA-1", 100, &[("Debian:12", "openssl"), ("Debian:11", "openssl")]);
    let b = advisory("USN-1", 100, &[("Ubuntu:22.04:LTS", "openssh")]);
    assert_eq!(store.import_advisories(&[a.clone(), b.clone()], 1).await.expect("import"), [New, New]);
    // Same and older `modified`: unchanged, the stored text stays.
    let older = AdvisoryRecord { record: "older".into(), ..advisory("DSA-1", 50, &[("Debian:12", "libssl")]) };
    assert_eq!(store.import_advisories(&[a.clone(), older], 2).await.expect("again"), [Unchanged, Unchanged]);
    let got = store.get_advisories(&["DSA-1".into(), "nope".into()]).await.expect("get");
    assert_eq!((got.len(), got[0].record.as_str(), got[0].modified_micros), (1, a.record.as_str(), 100));
    assert_eq!(
        store.advisory_ids_for(&keys(&[("Debian:12", "libssl")])).await.expect("lookup"),
        [],
        "older record's index rows were not written"
    );

    // Lookups read only the requested (ecosystem, package) pairs, each advisory once.
    let ids = store
        .advisory_ids_for(&keys(&[("Debian:12", "openssl"), ("Debian:11", "openssl"), ("Debian:12", "zlib")]))
        .await
        .expect("lookup");
    assert_eq!(ids, [("DSA-1".to_string(), 100)]);
    // By key: one hit per key the advisory is indexed under.
    let mut hits: Vec<(String, String)> = store
        .advisory_ids_by_key(&keys(&[("Debian:12", "openssl"), ("Debian:11", "openssl"), ("Debian:12", "zlib")]))
        .await
        .expect("lookup by key")
        .into_iter()
        .map(|h| (format!("{} {}", h.ecosystem, h.package), h.id))
        .collect();
    hits.sort();
    let expected = [("Debian:11 openssl", "DSA-1"), ("Debian:12 openssl", "DSA-1")];
    assert_eq!(hits, expected.map(|(k, id)| (k.to_string(), id.to_string())));
    assert!(store.advisory_ids_for(&keys(&[("Debian:13", "openssl")])).await.expect("lookup").is_empty());
    assert!(store.advisory_ids_for(&[]).await.expect("empty").is_empty());

    // Newer: the record and ALL its index rows are replaced.
    let newer = advisory("DSA-1", 200, &[("Debian:12", "openssl3")]);
    assert_eq!(store.import_advisories(std::slice::from_ref(&newer), 3).await.expect("newer"), [Updated]);
    assert!(store.advisory_ids_for(&keys(&[("Debian:11", "openssl")])).await.expect("lookup").is_empty());
    assert_eq!(
        store.advisory_ids_for(&keys(&[("Debian:12", "openssl3")])).await.expect("lookup"),
        [("DSA-1".to_string(), 200)]
    );
    assert_eq!(store.get_advisories(&["DSA-1".into()]).await.expect("get")[0].record, newer.record);

    // Many names in one lookup (more than one statement's worth).
    let many: Vec<(String, String)> = (0..1200).map(|i| ("Ubuntu:22.04:LTS".to_string(), format!("p{i}"))).collect();
    let big = AdvisoryRecord { index: many.clone(), ..advisory("BIG-1", 1, &[]) };
    assert_eq!(store.import_advisories(&[big], 4).await.expect("big"), [New]);
    let mut wanted = many[1100..].to_vec();
    wanted.push(("Ubuntu:22.04:LTS".into(), "openssh".into()));
    let ids: Vec<String> =
        store.advisory_ids_for(&wanted).await.expect("lookup").into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["BIG-1", "USN-1"]);

    let stats = store.advisory_stats().await.expect("stats");
    assert_eq!(stats.total, 3);
    assert_eq!(stats.ecosystems, [("Debian:12".to_string(), 1, 200), ("Ubuntu:22.04:LTS".to_string(), 2, 100)]);
    assert_eq!(stats.newest, Some(("DSA-1".to_string(), "t200".to_string())));
}

async fn assessments(store: &dyn Store) {
    let mut run = AssessmentRunRecord {
        id: "ar-1".into(),
        targets: vec!["all".into()],
        rules: vec!["cve".into()],
        noncompliant_at: Severity::High,
        duration_seconds: 600,
        status: RunStatus::Created,
        node_count: 3,
        finding_counts: "{}".into(),
        command_ids: vec![],
        detail: String::new(),
        created_at: 5,
        ended_at: None,
    };
    // The third node is a real node id: its inventory is written with its findings.
    let third = NodeId::from_random([33; 9]);
    let nodes = vec!["n-0".to_owned(), "n-1".to_owned(), third.to_string()];
    store.create_assessment_run(&run, &nodes).await.expect("create");
    assert_eq!(store.unfinished_assessment_runs().await.expect("unfinished").len(), 1);
    let finding = |n: usize| FindingRecord {
        run_id: "ar-1".into(),
        node_id: "n-1".into(),
        rule: "cve".into(),
        advisory_id: format!("A-{n}"),
        aliases: vec!["CVE-1".into()],
        package: "openssl".into(),
        installed_version: "1".into(),
        fixed_version: if n == 0 { None } else { Some("2".into()) },
        severity: Severity::High,
        score: Some("9.8".into()),
        title: "t".into(),
    };
    let node = AssessmentNodeRecord {
        node_id: "n-1".into(),
        status: AssessmentNodeStatus::Assessed,
        detail: String::new(),
        advisories_age_days: Some(146),
    };
    let many: Vec<FindingRecord> = (0..450).map(finding).collect();
    let only = |findings: &[FindingRecord]| NodeAssessment {
        record: node.clone(),
        findings: findings.to_vec(),
        inventory: vec![],
        compliance: vec![],
    };
    // Two nodes in one call: the second with its Finding inventory and compliance item.
    let third_finding = FindingRecord { node_id: third.to_string(), ..finding(1) };
    let verdict = ComplianceItem {
        node_id: third.to_string(),
        kind: ComplianceType::Vulnerability,
        item_id: "assessment".into(),
        title: "vulnerability assessment (cve)".into(),
        status: ComplianceStatus::NonCompliant,
        severity: ComplianceSeverity::High,
        detail: "run ar-1: 1 High".into(),
        execution_id: "ar-1".into(),
        time: 20,
    };
    let third_node = NodeAssessment {
        record: AssessmentNodeRecord { node_id: third.to_string(), advisories_age_days: None, ..node.clone() },
        findings: vec![third_finding.clone()],
        inventory: vec![InventoryChange::Replace {
            type_name: "Finding".into(),
            content_hash: "ar-1-1".into(),
            items: vec![(Some("openssl".into()), r#"{"advisory_id":"A-1","package":"openssl"}"#.into())],
        }],
        compliance: vec![verdict.clone()],
    };
    assert!(store.inventory_scan("Finding", None, None, 10).await.expect("scan").is_empty());
    store.record_node_assessments("ar-1", &[only(&many), third_node], 20).await.expect("record");
    let scanned = store.inventory_scan("Finding", None, None, 10).await.expect("scan");
    assert_eq!(scanned.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), [third.as_str()]);
    // Recording again replaces (idempotent per node, so a resumed run does not duplicate).
    store.record_node_assessments("ar-1", &[only(&many[..2])], 21).await.expect("record again");
    let stored = store.run_findings("ar-1", Some("n-1")).await.expect("findings");
    assert_eq!(stored, many[..2].to_vec());
    assert!(store.run_findings("ar-1", Some("n-0")).await.expect("findings").is_empty());
    assert_eq!(store.run_findings("ar-1", Some(third.as_str())).await.expect("findings"), [third_finding]);
    assert_eq!(
        store.inventory_items(&third, "Finding").await.expect("items"),
        [r#"{"advisory_id":"A-1","package":"openssl"}"#]
    );
    let kept = store.list_compliance(Some(ComplianceType::Vulnerability)).await.expect("compliance");
    assert_eq!(kept, [verdict]);
    let progress = store.assessment_nodes("ar-1").await.expect("nodes");
    assert_eq!(progress.iter().map(|n| n.status.as_str()).collect::<Vec<_>>(), ["Pending", "Assessed", "Assessed"]);
    assert_eq!(progress.iter().map(|n| n.advisories_age_days).collect::<Vec<_>>(), [None, Some(146), None]);
    run.status = RunStatus::Completed;
    run.ended_at = Some(9);
    run.command_ids = vec!["c-1".into()];
    store.update_assessment_run(&run).await.expect("update");
    assert_eq!(store.get_assessment_run("ar-1").await.expect("get"), Some(run.clone()));
    assert!(store.unfinished_assessment_runs().await.expect("unfinished").is_empty());
    assert_eq!(store.list_assessment_runs().await.expect("list"), vec![run]);

    let template = AssessmentTemplate {
        name: "nightly".into(),
        targets: vec!["tag:env=prod".into()],
        rules: vec!["cve".into()],
        noncompliant_at: Severity::High,
        duration_seconds: 600,
        schedule: Some("0 3 * * *".into()),
        timezone: Some("Europe/Berlin".into()),
        grace_seconds: Some(7200),
        schedule_since: 5,
        created_at: 1,
    };
    store.put_assessment_template(&template).await.expect("put");
    assert_eq!(store.list_assessment_templates().await.expect("list"), vec![template.clone()]);
    // Replacing a template keeps its creation time and takes the rest.
    let replaced = AssessmentTemplate {
        duration_seconds: 60,
        timezone: None,
        schedule_since: 9,
        created_at: 2,
        ..template.clone()
    };
    store.put_assessment_template(&replaced).await.expect("put");
    let listed = store.list_assessment_templates().await.expect("list");
    assert_eq!(listed, vec![AssessmentTemplate { created_at: 1, ..replaced }]);
    assert!(store.delete_assessment_template("nightly").await.expect("delete"));
    assert!(!store.delete_assessment_template("nightly").await.expect("delete"));
}

async fn run_contract(store: &dyn Store) {
    store.ping().await.expect("ping");
    activations(store).await;
    enrollment_respects_limit(store).await;
    node_lifecycle(store).await;
    tokens_and_groups(store).await;
    documents(store).await;
    commands(store).await;
    inventory(store).await;
    advisories(store).await;
    assessments(store).await;
}

#[tokio::test]
async fn sqlite_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flotilla.db");
    let store = SqlStore::open_sqlite(&path).await.expect("open sqlite");
    assert_eq!(store.backend(), "sqlite");
    run_contract(&store).await;
    store.close().await;
    // Reopening applies no migration twice and keeps the data.
    let again = SqlStore::open_sqlite(&path).await.expect("reopen sqlite");
    assert_eq!(again.list_nodes().await.expect("list").len(), 3);
    let counted: u64 = again.count_nodes_by_status().await.expect("count").iter().map(|(_, n)| n).sum();
    assert_eq!(counted, 3, "the grouped count covers every node");
}

#[tokio::test]
async fn postgres_contract() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    assert_eq!(store.backend(), "postgres");
    run_contract(&store).await;
    store.close().await;
    let again = SqlStore::open_postgres(db.url()).await.expect("reopen postgres");
    assert_eq!(again.list_nodes().await.expect("list").len(), 3);
    again.close().await;
    db.drop_database().await.expect("drop test database");
}

/// Rows in 0003's one-row-per-item layout, as a database written before migration 0019 holds
/// them (seq out of insertion order, one item without a key).
fn item_rows_of_0003(node: &NodeId) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "INSERT INTO inventory_types (node_id, type_name, content_hash, item_count, collected_at, updated_at) \
         VALUES ('{n}', 'Application', 'h', 3, 1, 2); \
         INSERT INTO inventory_items (type_name, node_id, seq, item_key, item) VALUES \
         ('Application', '{n}', 2, 'zlib', '{{\"name\":\"zlib\"}}'), ('Application', '{n}', 0, 'bash', '{{\"name\":\"bash\"}}'), \
         ('Application', '{n}', 1, NULL, '{{\"x\":1}}')",
        n = node.as_str()
    ))
}

/// What a store that opened a database holding [`item_rows_of_0003`] must read.
async fn item_rows_were_converted(store: &SqlStore, node: &NodeId) {
    let items = store.inventory_items(node, "Application").await.expect("items");
    assert_eq!(items, ["{\"name\":\"bash\"}", "{\"x\":1}", "{\"name\":\"zlib\"}"], "in seq order");
    let zlib = store.inventory_scan("Application", Some("zlib"), None, 10).await.expect("scan");
    assert_eq!(zlib, [(node.to_string(), "{\"name\":\"zlib\"}".to_string())]);
    assert_eq!(store.inventory_types(node).await.expect("types")[0].content_hash, "h");
}

#[tokio::test]
async fn sqlite_item_rows_of_0003_are_converted_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flotilla.db");
    SqlStore::open_sqlite(&path).await.expect("create").close().await;
    let node = NodeId::from_random([40; 9]);
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.expect("raw");
    sqlx::raw_sql(item_rows_of_0003(&node)).execute(&raw).await.expect("old rows");
    raw.close().await;
    let store = SqlStore::open_sqlite(&path).await.expect("reopen converts");
    item_rows_were_converted(&store, &node).await;
    store.close().await;
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.expect("raw");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inventory_items").fetch_one(&raw).await.expect("count");
    assert_eq!(left, 0, "the old rows are moved, not copied");
}

#[tokio::test]
async fn postgres_item_rows_of_0003_are_converted_at_open() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    SqlStore::open_postgres(db.url()).await.expect("create").close().await;
    let node = NodeId::from_random([40; 9]);
    let raw = sqlx::PgPool::connect(db.url()).await.expect("raw");
    sqlx::raw_sql(item_rows_of_0003(&node)).execute(&raw).await.expect("old rows");
    let store = SqlStore::open_postgres(db.url()).await.expect("reopen converts");
    item_rows_were_converted(&store, &node).await;
    store.close().await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inventory_items").fetch_one(&raw).await.expect("count");
    assert_eq!(left, 0, "the old rows are moved, not copied");
    raw.close().await;
    db.drop_database().await.expect("drop test database");
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = SqlStore::open_url("mysql://x").await.err().expect("refused");
    assert!(err.to_string().contains("postgres://"), "{err}");
}
