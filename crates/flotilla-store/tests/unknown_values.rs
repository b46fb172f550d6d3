//! The store refuses a status, severity or kind it does not know, on both engines: a value
//! planted with raw SQL (a newer server's state, or a hand edit) reads as an error naming the
//! table, the row's key, the column and the value — never as a default such as Pending.

use std::collections::BTreeMap;

use flotilla_core::assessment::{NodeStatus as AssessmentNodeStatus, RunStatus};
use flotilla_core::command::{CommandStatus, DocumentFormat};
use flotilla_core::parameter::{ParameterType, Tier};
use flotilla_core::{Activation, Node, NodeId, NodeStatus, Platform, Severity};
use flotilla_store::prelude::*;
use flotilla_store::{
    AssessmentNodeRecord, AssessmentRunRecord, AssessmentTemplate, CommandRecord, DocumentVersion, FindingRecord,
    NodeAssessment, ParameterRecord, SqlStore, StoreError,
};
use sqlx::AnyPool;

/// One planted value: the statement that plants it and what reading it back must say.
/// read itself.
struct Case {
    plant: &'static str,
    table: &'static str,
    key: String,
    column: &'static str,
    value: &'static str,
}

async fn fill(store: &dyn Store) -> NodeId {
    let activation = Activation {
        id: "act-1".into(),
        code_hash: "hash".into(),
        description: String::new(),
        registration_limit: 5,
        registrations: 0,
        expires_at: i64::MAX,
        default_tags: BTreeMap::new(),
        created_at: 1,
    };
    store.create_activation(&activation).await.expect("activation");
    let node = Node {
        id: NodeId::from_random([7; 9]),
        hostname: "host-7".into(),
        status: NodeStatus::ConnectionLost,
        last_seen: None,
        platform: Platform::default(),
        kernel: String::new(),
        arch: String::new(),
        agent_version: String::new(),
        addresses: vec![],
        tags: BTreeMap::new(),
        activation_id: "act-1".into(),
        registered_at: 1,
        cert_fingerprint: "fp".into(),
    };
    store.enroll_node("act-1", &node).await.expect("enroll");
    let doc = DocumentVersion {
        name: "Doc".into(),
        version: 0,
        content: "x".into(),
        description: String::new(),
        format: DocumentFormat::Flotilla,
        created_at: 1,
    };
    store.put_document(&doc).await.expect("document");
    let command = CommandRecord {
        id: "cmd-1".into(),
        document: "Doc".into(),
        document_version: 1,
        parameters: "{}".into(),
        targets: "[]".into(),
        plan: "[]".into(),
        max_concurrency: "1".into(),
        max_errors: "0".into(),
        delivery_timeout_ms: 1,
        comment: String::new(),
        status: CommandStatus::Pending,
        stopped_for_errors: false,
        cancel_requested: false,
        created_at: 1,
        ended_at: None,
        notification: None,
    };
    store.create_command(&command, &["n-1".into()]).await.expect("command");
    let run = AssessmentRunRecord {
        id: "ar-1".into(),
        targets: vec![],
        rules: vec!["cve".into()],
        noncompliant_at: Severity::High,
        duration_seconds: 60,
        status: RunStatus::Created,
        node_count: 1,
        finding_counts: "{}".into(),
        command_ids: vec![],
        detail: String::new(),
        created_at: 1,
        ended_at: None,
    };
    store.create_assessment_run(&run, &["n-1".into()]).await.expect("run");
    let finding = FindingRecord {
        run_id: "ar-1".into(),
        node_id: "n-1".into(),
        rule: "cve".into(),
        advisory_id: "A-1".into(),
        aliases: vec![],
        package: "p".into(),
        installed_version: "1".into(),
        fixed_version: None,
        severity: Severity::Low,
        score: None,
        title: String::new(),
    };
    let assessed = AssessmentNodeRecord {
        node_id: "n-1".into(),
        status: AssessmentNodeStatus::Assessed,
        detail: String::new(),
        advisories_age_days: None,
    };
    let stored = NodeAssessment { record: assessed, findings: vec![finding], inventory: vec![], compliance: vec![] };
    store.record_node_assessments("ar-1", &[stored], 1).await.expect("findings");
    let template = AssessmentTemplate {
        name: "nightly".into(),
        targets: vec![],
        rules: vec!["cve".into()],
        noncompliant_at: Severity::Medium,
        duration_seconds: 60,
        schedule: None,
        timezone: None,
        grace_seconds: None,
        schedule_since: 1,
        created_at: 1,
    };
    store.put_assessment_template(&template).await.expect("template");
    let parameter = ParameterRecord {
        name: "/p".into(),
        version: 1,
        kind: ParameterType::String,
        tier: Tier::Standard,
        description: String::new(),
        value: "v".into(),
        labels: vec![],
        created_at: 1,
    };
    store.put_parameter(&parameter, false, 100).await.expect("parameter");
    node.id
}

/// Reads whatever the case's table feeds, returning the error it gave.
async fn read(store: &dyn Store, table: &str, node: &NodeId) -> Result<(), StoreError> {
    match table {
        "invocations" => store.list_invocations("cmd-1").await.map(drop),
        "commands" => store.get_command("cmd-1").await.map(drop),
        "nodes" => store.get_node(node).await.map(drop),
        "documents" => store.get_document("Doc", None).await.map(drop),
        "assessment_runs" => store.get_assessment_run("ar-1").await.map(drop),
        "assessment_nodes" => store.assessment_nodes("ar-1").await.map(drop),
        "findings" => store.run_findings("ar-1", None).await.map(drop),
        "assessment_templates" => store.list_assessment_templates().await.map(drop),
        "parameter_versions" => store.get_parameter("/p", None).await.map(drop),
        other => panic!("no read for {other}"),
    }
}

async fn unknown_values_are_refused(store: &dyn Store, raw: &AnyPool) {
    let node = fill(store).await;
    let cases = [
        Case {
            plant: "UPDATE invocations SET status = 'Bogus'",
            table: "invocations",
            key: "cmd-1/n-1".into(),
            column: "status",
            value: "Bogus",
        },
        Case {
            plant: "UPDATE commands SET status = 'Paused'",
            table: "commands",
            key: "cmd-1".into(),
            column: "status",
            value: "Paused",
        },
        Case {
            plant: "UPDATE nodes SET status = 'Sleeping'",
            table: "nodes",
            key: node.as_str().to_owned(),
            column: "status",
            value: "Sleeping",
        },
        Case {
            plant: "UPDATE documents SET format = 'xml'",
            table: "documents",
            key: "Doc version 1".into(),
            column: "format",
            value: "xml",
        },
        Case {
            plant: "UPDATE assessment_runs SET status = 'Paused'",
            table: "assessment_runs",
            key: "ar-1".into(),
            column: "status",
            value: "Paused",
        },
        Case {
            plant: "UPDATE assessment_nodes SET status = 'Clean'",
            table: "assessment_nodes",
            key: "ar-1/n-1".into(),
            column: "status",
            value: "Clean",
        },
        Case {
            plant: "UPDATE findings SET severity = 'Critical'",
            table: "findings",
            key: "ar-1/n-1/A-1".into(),
            column: "severity",
            value: "Critical",
        },
        Case {
            plant: "UPDATE assessment_templates SET noncompliant_at = 'high'",
            table: "assessment_templates",
            key: "nightly".into(),
            column: "noncompliant_at",
            value: "high",
        },
        Case {
            plant: "UPDATE parameter_versions SET tier = 'Intelligent-Tiering'",
            table: "parameter_versions",
            key: "/p version 1".into(),
            column: "tier",
            value: "Intelligent-Tiering",
        },
    ];
    for case in cases {
        read(store, case.table, &node).await.unwrap_or_else(|e| panic!("{} reads before planting: {e}", case.table));
        sqlx::query(case.plant).execute(raw).await.expect("plant");
        let err = read(store, case.table, &node).await.expect_err(case.plant);
        match &err {
            StoreError::UnknownValue { table, key, column, value } => {
                assert_eq!(
                    (*table, key.as_str(), *column, value.as_str()),
                    (case.table, case.key.as_str(), case.column, case.value)
                );
            }
            other => panic!("{}: expected UnknownValue, got {other}", case.plant),
        }
        let message = err.to_string();
        for part in [case.table, case.key.as_str(), case.value, "newer version", "by hand"] {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }
    // A listing's per-status counts refuse it too, naming the command.
    let err = store.invocation_counts(&["cmd-1".into()]).await.expect_err("counts");
    assert!(err.to_string().contains("cmd-1"), "{err}");
    // A parameter's type is read the same way.
    sqlx::query("UPDATE parameter_versions SET tier = 'Standard', type = 'Blob'").execute(raw).await.expect("plant");
    let err = store.get_parameter("/p", None).await.expect_err("type");
    assert!(err.to_string().contains("type `Blob`"), "{err}");
}

#[tokio::test]
async fn sqlite_refuses_unknown_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flotilla.db");
    let store = SqlStore::open_sqlite(&path).await.expect("open sqlite");
    // Opening the store installed sqlx's drivers.
    let raw = AnyPool::connect(&format!("sqlite://{}", path.display())).await.expect("raw connection");
    unknown_values_are_refused(&store, &raw).await;
    raw.close().await;
    store.close().await;
}

#[tokio::test]
async fn postgres_refuses_unknown_values() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    let raw = AnyPool::connect(db.url()).await.expect("raw connection");
    unknown_values_are_refused(&store, &raw).await;
    raw.close().await;
    store.close().await;
    db.drop_database().await.expect("drop test database");
}
