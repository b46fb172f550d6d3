//! The event log's storage contract, on SQLite and PostgreSQL: sequence numbers increase, are
//! kept across reopening the database and are never reused after deletion or retention;
//! paging, type filters and limits; an unknown stored type is an error naming the row; and on
//! PostgreSQL, concurrent writers never make a paging reader skip an event.

use std::collections::BTreeSet;
use std::sync::Arc;

use flotilla_core::EventType;
use flotilla_core::command::{CommandStatus, InvocationStatus};
use flotilla_core::parameter::{ParameterType, Tier};
use flotilla_store::prelude::*;
use flotilla_store::{CommandRecord, InvocationRecord, NewEvent, ParameterPut, ParameterRecord, SqlStore, StoreError};
use serde_json::json;

fn event(kind: EventType, time: i64, resource: &str) -> NewEvent {
    NewEvent::new(kind, time, vec![resource.to_owned()], json!({ "status": "Success", "n": time }))
}

/// Everything but reopening, on a fresh database.
async fn log_contract(store: &SqlStore) {
    assert_eq!(store.last_event_seq().await.expect("last"), 0, "an empty log");
    assert!(store.list_events(0, &[], 100).await.expect("list").is_empty());
    assert!(store.publish(&[]).await.expect("nothing").is_empty());

    let seqs = store
        .publish(&[
            event(EventType::CommandStatusChanged, 10, "c-1"),
            event(EventType::InvocationStatusChanged, 11, "c-1"),
            event(EventType::ParameterChanged, 12, "/app/x"),
        ])
        .await
        .expect("publish");
    assert_eq!(seqs, vec![1, 2, 3]);
    let all = store.list_events(0, &[], 100).await.expect("list");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(all[1].kind, EventType::InvocationStatusChanged);
    assert_eq!(all[1].source, "flotilla.runcommand");
    assert_eq!(all[1].resources, vec!["c-1".to_owned()]);
    assert_eq!(all[1].detail, json!({ "status": "Success", "n": 11 }));
    assert_eq!(all[1].time, 11);
    let ids: BTreeSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "ids are unique");

    // Paging, filters and limits.
    assert_eq!(store.list_events(1, &[], 100).await.expect("after").iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(store.list_events(0, &[], 2).await.expect("limit").len(), 2);
    assert!(store.list_events(3, &[], 100).await.expect("at the end").is_empty());
    let filtered = store
        .list_events(0, &[EventType::ParameterChanged, EventType::CommandStatusChanged], 100)
        .await
        .expect("types");
    assert_eq!(filtered.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    assert!(store.list_events(0, &[EventType::SessionEnded], 100).await.expect("none").is_empty());

    // Sequence numbers keep increasing one call after another.
    let more = store.publish(&[event(EventType::NodeOnline, 20, "n-1")]).await.expect("publish");
    assert_eq!(more, vec![4]);
    assert_eq!(store.last_event_seq().await.expect("last"), 4);

    // Retention deletes by time; the numbers deleted are never handed out again.
    assert_eq!(store.delete_events_before(12).await.expect("retention"), 2);
    assert_eq!(store.list_events(0, &[], 100).await.expect("left").iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(store.delete_events_before(i64::MAX).await.expect("everything"), 2);
    assert!(store.list_events(0, &[], 100).await.expect("empty").is_empty());
    assert_eq!(store.last_event_seq().await.expect("last"), 4, "deletion does not move the counter back");
    assert_eq!(store.publish(&[event(EventType::NodeOnline, 30, "n-1")]).await.expect("after deletion"), vec![5]);

    // A batch larger than one statement's binds keeps its order and numbers.
    let batch: Vec<NewEvent> = (0..100).map(|i| event(EventType::InvocationStatusChanged, 40 + i, "c-2")).collect();
    let seqs = store.publish(&batch).await.expect("big batch");
    assert_eq!(seqs, (6..106).collect::<Vec<_>>());
    let listed = store.list_events(5, &[], 1000).await.expect("list");
    assert_eq!(listed.iter().map(|e| e.time).collect::<Vec<_>>(), (40..140).collect::<Vec<_>>());
}

/// The transactional outbox: state-changing methods write their events with the change, and
/// a change that changed nothing (same status, a refused conditional update) writes none.
async fn outbox(store: &SqlStore) {
    let after = store.last_event_seq().await.expect("last");
    let mut woken = store.watch_appended();
    woken.borrow_and_update();
    let types = |events: &[flotilla_store::EventRecord]| events.iter().map(|e| e.kind).collect::<Vec<_>>();
    let c = CommandRecord {
        id: "cmd-ob".into(),
        document: "Doc-A".into(),
        document_version: 1,
        parameters: "{}".into(),
        targets: r#"["all"]"#.into(),
        plan: "[]".into(),
        max_concurrency: "50".into(),
        max_errors: "0".into(),
        delivery_timeout_ms: 600_000,
        comment: String::new(),
        status: CommandStatus::Pending,
        stopped_for_errors: false,
        cancel_requested: false,
        created_at: 100,
        ended_at: None,
        notification: None,
    };
    store.create_command(&c, &["n-a".into(), "n-b".into()]).await.expect("create");
    assert!(woken.has_changed().expect("watch"), "a commit with events wakes subscribers");
    let invs = store.list_invocations("cmd-ob").await.expect("list");
    let running = InvocationRecord { status: InvocationStatus::InProgress, ..invs[0].clone() };
    let same = invs[1].clone();
    store.update_invocations(&[running.clone(), same]).await.expect("update");
    // Rewriting the same status (the engine stores output this way) is no event.
    store.update_invocations(&[InvocationRecord { stdout: "x".into(), ..running.clone() }]).await.expect("same");
    let in_progress = CommandRecord { status: CommandStatus::InProgress, ..c.clone() };
    store.update_command(&in_progress).await.expect("update");
    store.update_command(&in_progress).await.expect("same status");
    let events = store.list_events(after, &[], 100).await.expect("list");
    assert_eq!(
        types(&events),
        [EventType::CommandStatusChanged, EventType::InvocationStatusChanged, EventType::CommandStatusChanged]
    );
    assert_eq!(events[0].detail["status"], "Pending");
    assert_eq!(events[1].resources, ["cmd-ob".to_owned(), invs[0].node_id.clone()]);
    assert_eq!(
        (&events[1].detail["previous_status"], &events[1].detail["status"]),
        (&json!("Pending"), &json!("InProgress"))
    );
    assert_eq!(events[2].detail["previous_status"], "Pending");

    // Parameters: name and version, never the value.
    let after = store.last_event_seq().await.expect("last");
    let p = ParameterRecord {
        name: "/ob/p".into(),
        version: 1,
        kind: ParameterType::String,
        tier: Tier::Standard,
        description: String::new(),
        value: "s3cret-value".into(),
        labels: vec![],
        created_at: 1,
    };
    assert_eq!(store.put_parameter(&p, false, 100).await.expect("put"), ParameterPut::Stored);
    assert_eq!(store.put_parameter(&p, false, 100).await.expect("again"), ParameterPut::Exists, "refused: no event");
    store.label_parameter("/ob/p", 1, &["prod".into()], 10).await.expect("label");
    assert!(store.delete_parameter("/ob/p").await.expect("delete"));
    assert!(!store.delete_parameter("/ob/p").await.expect("delete again"), "nothing deleted: no event");
    let events = store.list_events(after, &[], 100).await.expect("list");
    let ops: Vec<&str> = events.iter().map(|e| e.detail["operation"].as_str().unwrap_or("")).collect();
    assert_eq!(ops, ["Create", "Label", "Delete"]);
    assert!(events.iter().all(|e| e.kind == EventType::ParameterChanged && e.resources == ["/ob/p".to_owned()]));
    assert!(!format!("{events:?}").contains("s3cret"), "no value in events");
}

/// A type name the server does not know, planted in the database, is refused with the row's
/// sequence number, never read as some other type.
async fn unknown_type_is_an_error(store: &SqlStore, pool: &sqlx::AnyPool) {
    let seq = store.last_event_seq().await.expect("last") + 1000;
    sqlx::query(
        "INSERT INTO events (seq, id, time, type, source, resources, detail) VALUES ($1, $2, 1, 'Node.Exploded', 'x', '[]', '{}')",
    )
    .bind(seq)
    .bind(format!("planted-{seq}"))
    .execute(pool)
    .await
    .expect("plant");
    let err = store.list_events(seq - 1, &[], 10).await.expect_err("unknown type");
    assert!(matches!(err, StoreError::Corrupt { what: "event type", .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("event {seq}")) && text.contains("Node.Exploded"), "{text}");
    sqlx::query("DELETE FROM events WHERE seq = $1").bind(seq).execute(pool).await.expect("clean up");
}

async fn any_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.expect("raw pool")
}

#[tokio::test]
async fn sqlite_event_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flotilla.db");
    let store = SqlStore::open_sqlite(&path).await.expect("open sqlite");
    log_contract(&store).await;
    outbox(&store).await;
    let last = store.last_event_seq().await.expect("last");
    store.close().await;

    // Reopened (a restart): the counter is where it was, new events are numbered above it.
    let store = SqlStore::open_sqlite(&path).await.expect("reopen sqlite");
    assert_eq!(store.last_event_seq().await.expect("last"), last);
    assert_eq!(store.publish(&[event(EventType::NodeOnline, 500, "n-1")]).await.expect("publish"), vec![last + 1]);
    let pool = any_pool(&format!("sqlite://{}", path.display())).await;
    unknown_type_is_an_error(&store, &pool).await;
    pool.close().await;
    store.close().await;
}

#[tokio::test]
async fn postgres_event_log() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    log_contract(&store).await;
    outbox(&store).await;
    let last = store.last_event_seq().await.expect("last");
    store.close().await;

    let store = SqlStore::open_postgres(db.url()).await.expect("reopen postgres");
    assert_eq!(store.last_event_seq().await.expect("last"), last);
    assert_eq!(store.publish(&[event(EventType::NodeOnline, 500, "n-1")]).await.expect("publish"), vec![last + 1]);
    let pool = any_pool(db.url()).await;
    unknown_type_is_an_error(&store, &pool).await;
    pool.close().await;
    store.close().await;
    db.drop_database().await.expect("drop test database");
}

/// Many writers at once on PostgreSQL, two of them separate stores (as two server replicas
/// would be), and a reader paging by `seq > after` as fast as it can: the reader sees every
/// event exactly once in sequence order, with no number missing.
#[tokio::test]
async fn postgres_concurrent_writers_never_make_a_reader_skip() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let a = Arc::new(SqlStore::open_postgres(db.url()).await.expect("open a"));
    let b = Arc::new(SqlStore::open_postgres(db.url()).await.expect("open b"));
    const WRITERS: usize = 8;
    const BATCHES: usize = 25;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        writers.push(tokio::spawn(async move {
            for i in 0..BATCHES {
                let size = 1 + (w + i) % 3;
                let batch: Vec<NewEvent> =
                    (0..size).map(|_| event(EventType::InvocationStatusChanged, 1, &format!("w{w}"))).collect();
                store.publish(&batch).await.expect("publish");
            }
        }));
    }
    let total: i64 = (0..WRITERS).flat_map(|w| (0..BATCHES).map(move |i| 1 + (w + i) % 3)).sum::<usize>() as i64;
    let reader = {
        let store = a.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            while after < total {
                for e in store.list_events(after, &[], 7).await.expect("read") {
                    seen.push(e.seq);
                    after = e.seq;
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for w in writers {
        w.await.expect("writer");
    }
    let seen = reader.await.expect("reader");
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "the reader saw every event once, in order");
    a.close().await;
    b.close().await;
    db.drop_database().await.expect("drop test database");
}
