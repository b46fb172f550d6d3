//! The maintenance windows' part of the storage contract, on SQLite and PostgreSQL alike:
//! windows by id and name (a taken name refused), targets and tasks in their order, one
//! execution per (window, occurrence), `Window.Execution` events at an execution's start and
//! end only, unfinished executions listed for resumption, and removal taking everything of the
//! window with it.

use flotilla_core::EventType;
use flotilla_core::window::{CutoffBehavior, ExecutionStatus, TaskStatus};
use flotilla_store::prelude::*;
use flotilla_store::{
    SqlStore, Store, TaskInvocationRecord, WindowExecutionRecord, WindowRecord, WindowTargetRecord, WindowTaskRecord,
};

fn window(id: &str, name: &str) -> WindowRecord {
    WindowRecord {
        id: id.into(),
        name: name.into(),
        schedule: "cron(0 3 * * *)".into(),
        timezone: Some("Europe/Berlin".into()),
        duration_hours: 3,
        cutoff_hours: 1,
        start_date: Some(1_000),
        end_date: None,
        enabled: true,
        schedule_since: 500,
        created_at: 500,
    }
}

fn task(id: &str, priority: i64, behavior: CutoffBehavior) -> WindowTaskRecord {
    WindowTaskRecord {
        id: id.into(),
        window_id: "mw-1".into(),
        name: format!("task {id}"),
        document: "Flotilla-RunShellScript".into(),
        document_version: None,
        parameters: r#"{"commands":["true"]}"#.into(),
        priority,
        max_concurrency: "50".into(),
        max_errors: "0".into(),
        cutoff_behavior: behavior,
        created_at: 600 + priority,
    }
}

fn invocation(execution: &str, t: &WindowTaskRecord) -> TaskInvocationRecord {
    TaskInvocationRecord {
        execution_id: execution.into(),
        task_id: t.id.clone(),
        task_name: t.name.clone(),
        document: t.document.clone(),
        document_version: t.document_version,
        parameters: t.parameters.clone(),
        priority: t.priority,
        max_concurrency: t.max_concurrency.clone(),
        max_errors: t.max_errors.clone(),
        cutoff_behavior: t.cutoff_behavior,
        status: TaskStatus::Pending,
        command_id: None,
        reason: String::new(),
        started_at: None,
        ended_at: None,
    }
}

fn execution(id: &str, occurrence_at: i64) -> WindowExecutionRecord {
    WindowExecutionRecord {
        id: id.into(),
        window_id: "mw-1".into(),
        occurrence_at,
        duration_hours: 3,
        cutoff_hours: 1,
        status: ExecutionStatus::Pending,
        detail: String::new(),
        started_at: occurrence_at + 5,
        ended_at: None,
    }
}

async fn window_events(store: &dyn Store) -> Vec<(String, String)> {
    store
        .list_events(0, &[EventType::WindowExecution], 100)
        .await
        .expect("events")
        .into_iter()
        .map(|e| {
            (
                e.detail["execution_id"].as_str().unwrap_or_default().to_owned(),
                e.detail["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn contract(store: &dyn Store) {
    let w = window("mw-1", "nightly");
    assert!(store.create_window(&w).await.expect("create"));
    assert!(!store.create_window(&window("mw-2", "nightly")).await.expect("create"), "the name is taken");
    assert_eq!(store.list_windows().await.expect("list"), vec![w.clone()]);
    assert_eq!(store.get_window("mw-1").await.expect("get"), Some(w.clone()));
    assert_eq!(store.find_window_by_name("nightly").await.expect("find"), Some(w.clone()));
    assert_eq!(store.get_window("mw-2").await.expect("get"), None);
    let changed = WindowRecord { duration_hours: 4, enabled: false, end_date: Some(9_000), ..w.clone() };
    assert!(store.update_window(&changed).await.expect("update"));
    assert_eq!(store.get_window("mw-1").await.expect("get"), Some(changed));
    assert!(!store.update_window(&window("mw-9", "ghost")).await.expect("update"), "no such window");

    let target = WindowTargetRecord {
        id: "wt-1".into(),
        window_id: "mw-1".into(),
        name: "web".into(),
        targets: vec!["tag:role=web&!tag:canary".into(), "all".into()],
        created_at: 700,
    };
    store.add_window_target(&target).await.expect("target");
    assert_eq!(store.list_window_targets("mw-1").await.expect("targets"), vec![target]);
    assert!(!store.remove_window_target("mw-2", "wt-1").await.expect("remove"), "another window's target");

    let tasks = [
        task("t-3", 3, CutoffBehavior::ContinueTask),
        task("t-1", 1, CutoffBehavior::CancelTask),
        task("t-2", 2, CutoffBehavior::ContinueTask),
    ];
    for t in &tasks {
        store.add_window_task(t).await.expect("task");
    }
    let listed: Vec<String> = store.list_window_tasks("mw-1").await.expect("tasks").into_iter().map(|t| t.id).collect();
    assert_eq!(listed, ["t-1", "t-2", "t-3"], "by priority");
    assert!(store.remove_window_task("mw-1", "t-2").await.expect("remove"));
    assert!(!store.remove_window_task("mw-1", "t-2").await.expect("remove again"));

    // One execution per occurrence: the second insert of the same occurrence stores nothing.
    let e = execution("we-1", 10_000);
    let invs = [invocation("we-1", &tasks[0]), invocation("we-1", &tasks[1])];
    assert!(store.create_window_execution(&e, &invs).await.expect("execution"));
    assert!(
        !store.create_window_execution(&execution("we-2", 10_000), &invs).await.expect("again"),
        "one execution per (window, occurrence)"
    );
    assert_eq!(store.get_window_execution("we-2").await.expect("get"), None);
    assert_eq!(store.list_task_invocations("we-1").await.expect("invocations"), vec![invs[1].clone(), invs[0].clone()]);
    assert!(window_events(store).await.is_empty(), "PENDING is not announced");
    let mut running = WindowExecutionRecord { status: ExecutionStatus::InProgress, ..e.clone() };
    store.update_window_execution(&running).await.expect("start");
    store.update_window_execution(&running).await.expect("same again");
    // A start is claimed once: the second claimer (another driver) loses.
    assert!(store.claim_task_start("we-1", "t-1", 10_010).await.expect("claim"));
    assert!(!store.claim_task_start("we-1", "t-1", 10_011).await.expect("claim again"), "claimed once");
    let claimed = store.list_task_invocations("we-1").await.expect("invocations");
    assert_eq!((claimed[0].status, claimed[0].started_at), (TaskStatus::InProgress, Some(10_010)));
    let mut inv = TaskInvocationRecord {
        status: TaskStatus::InProgress,
        command_id: Some("c-1".into()),
        started_at: Some(10_010),
        ..invs[1].clone()
    };
    store.update_task_invocation(&inv).await.expect("invocation");
    inv.status = TaskStatus::Success;
    inv.ended_at = Some(10_020);
    store.update_task_invocation(&inv).await.expect("invocation");
    let not = TaskInvocationRecord {
        status: TaskStatus::NotStarted,
        reason: "not started: past the cutoff at 05:00:00+01:00".into(),
        ..invs[0].clone()
    };
    store.update_task_invocation(&not).await.expect("invocation");
    assert_eq!(store.list_task_invocations("we-1").await.expect("invocations"), vec![inv, not]);
    assert_eq!(store.unfinished_window_executions().await.expect("unfinished"), vec![running.clone()]);
    running.status = ExecutionStatus::TimedOut;
    running.ended_at = Some(20_000);
    running.detail = "1 task not started".into();
    store.update_window_execution(&running).await.expect("end");
    assert_eq!(store.get_window_execution("we-1").await.expect("get"), Some(running.clone()));
    assert!(store.unfinished_window_executions().await.expect("unfinished").is_empty());
    // A skipped occurrence starts and ends at once: one event.
    let skipped = WindowExecutionRecord {
        status: ExecutionStatus::SkippedOverlapping,
        ended_at: Some(11_000),
        ..execution("we-3", 11_000)
    };
    assert!(store.create_window_execution(&skipped, &[]).await.expect("skipped"));
    assert_eq!(
        window_events(store).await,
        [
            ("we-1".into(), "IN_PROGRESS".into()),
            ("we-1".into(), "TIMED_OUT".into()),
            ("we-3".into(), "SKIPPED_OVERLAPPING".into())
        ]
    );
    let ids: Vec<String> =
        store.list_window_executions("mw-1", 10).await.expect("list").into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["we-3", "we-1"], "newest occurrence first");

    assert!(store.delete_window("mw-1").await.expect("delete"));
    assert!(!store.delete_window("mw-1").await.expect("delete again"));
    assert!(store.list_window_targets("mw-1").await.expect("targets").is_empty());
    assert!(store.list_window_tasks("mw-1").await.expect("tasks").is_empty());
    assert!(store.list_window_executions("mw-1", 10).await.expect("executions").is_empty());
    assert!(store.list_task_invocations("we-1").await.expect("invocations").is_empty());
    // The name is free again.
    assert!(store.create_window(&window("mw-2", "nightly")).await.expect("create"));
}

#[tokio::test]
async fn sqlite_window_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite(&dir.path().join("db")).await.expect("open sqlite");
    contract(&store).await;
}

#[tokio::test]
async fn postgres_window_contract() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    contract(&store).await;
    store.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test]
async fn an_unknown_execution_status_is_refused_naming_the_row() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    assert!(store.create_window_execution(&execution("we-9", 1), &[]).await.expect("execution"));
    db.execute("UPDATE window_executions SET status = 'PAUSED' WHERE id = 'we-9'").await.expect("plant");
    let err = store.get_window_execution("we-9").await.expect_err("unknown status").to_string();
    assert!(err.contains("window_executions row `we-9` holds status `PAUSED`"), "{err}");
    store.close().await;
    db.drop_database().await.expect("drop");
}
