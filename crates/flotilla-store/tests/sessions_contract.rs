//! Sessions' part of the storage contract, on SQLite and PostgreSQL alike: a session is
//! stored with its `Session.Started` event, counts bytes while open, ends exactly once (with
//! `Session.Ended`; a second end changes nothing), lists newest first by node, keeps its
//! forwarded connections in order, and a restart ends whatever was left open.

use flotilla_core::EventType;
use flotilla_core::session::SessionKind;
use flotilla_store::{SessionConnectionRecord, SessionRecord, SqlStore, Store};

fn session(id: &str, node: &str, kind: SessionKind, at: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        node_id: node.into(),
        kind,
        run_as: if kind == SessionKind::Shell { "root".into() } else { String::new() },
        target: if kind == SessionKind::PortForward { "127.0.0.1:5432".into() } else { String::new() },
        opened_by: "admin".into(),
        started_at: at,
        ended_at: None,
        bytes_in: 0,
        bytes_out: 0,
        reason: None,
        transcript: (kind == SessionKind::Shell).then(|| format!("sessions/{id}/transcript")),
    }
}

async fn contract(store: &dyn Store) {
    store.create_session(&session("s-1", "n1", SessionKind::Shell, 10)).await.expect("create");
    store.create_session(&session("s-2", "n1", SessionKind::PortForward, 20)).await.expect("create");
    store.create_session(&session("s-3", "n2", SessionKind::Shell, 30)).await.expect("create");
    assert!(store.create_session(&session("s-1", "n1", SessionKind::Shell, 40)).await.is_err(), "ids are unique");

    store.session_bytes("s-1", 5, 7).await.expect("bytes");
    let s1 = store.get_session("s-1").await.expect("get").expect("some");
    assert_eq!((s1.bytes_in, s1.bytes_out, s1.ended_at), (5, 7, None));
    assert!(store.end_session("s-1", 50, 6, 9, "shell exited (status 0)").await.expect("end"));
    assert!(!store.end_session("s-1", 60, 100, 100, "again").await.expect("end twice"), "ends once");
    store.session_bytes("s-1", 1000, 1000).await.expect("bytes after end");
    let s1 = store.get_session("s-1").await.expect("get").expect("some");
    assert_eq!((s1.bytes_in, s1.bytes_out, s1.ended_at), (6, 9, Some(50)));
    assert_eq!(s1.reason.as_deref(), Some("shell exited (status 0)"));
    assert_eq!(store.get_session("nope").await.expect("get"), None);

    let ids = |list: Vec<SessionRecord>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_sessions(None).await.expect("list")), ["s-3", "s-2", "s-1"]);
    assert_eq!(ids(store.list_sessions(Some("n1")).await.expect("list")), ["s-2", "s-1"]);

    for seq in [2, 1] {
        let c = SessionConnectionRecord {
            session_id: "s-2".into(),
            seq,
            target: "127.0.0.1:5432".into(),
            opened_at: 21,
            closed_at: 22 + seq,
            bytes_in: seq * 10,
            bytes_out: seq * 100,
            reason: "closed".into(),
        };
        store.record_connection(&c).await.expect("connection");
    }
    let conns = store.list_connections("s-2").await.expect("connections");
    assert_eq!(conns.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(conns[1].bytes_out, 200);

    // A restart: the two still open end with the reason, once.
    let mut ended = store.end_open_sessions(70, "the server stopped").await.expect("end open");
    ended.sort();
    assert_eq!(ended, ["s-2", "s-3"]);
    assert!(store.end_open_sessions(80, "again").await.expect("end open").is_empty());

    let events =
        store.list_events(0, &[EventType::SessionStarted, EventType::SessionEnded], 100).await.expect("events");
    let kinds: Vec<EventType> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventType::SessionStarted,
            EventType::SessionStarted,
            EventType::SessionStarted,
            EventType::SessionEnded,
            EventType::SessionEnded,
            EventType::SessionEnded
        ]
    );
}

#[tokio::test]
async fn sqlite_sessions_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite(&dir.path().join("flotilla.db")).await.expect("open sqlite");
    contract(&store).await;
}

#[tokio::test]
async fn postgres_sessions_contract() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    contract(&store).await;
    store.close().await;
    db.drop_database().await.expect("drop test database");
}
