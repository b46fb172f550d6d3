//! The scheduler's part of the storage contract, on SQLite and PostgreSQL alike: a claim is
//! won once, missed occurrences are recorded once, the newest row is the catch-up mark, an
//! unknown outcome planted in the table is refused naming the row, and of many concurrent
//! claimers of one occurrence exactly one wins.

use std::sync::Arc;

use flotilla_store::{OccurrenceOutcome, ScheduleStore, SqlStore, Store};

const KEY: &str = "assessment-template:nightly";

async fn occurrences(store: &dyn Store) {
    assert_eq!(store.last_occurrence(KEY).await.expect("last"), None);
    assert!(store.claim_occurrence(KEY, 1_000, OccurrenceOutcome::Fired, 1_005, "a").await.expect("claim"));
    assert!(
        !store.claim_occurrence(KEY, 1_000, OccurrenceOutcome::Fired, 1_006, "b").await.expect("claim again"),
        "a second claim of the same occurrence loses"
    );
    // Missed ones in bulk; one already recorded is left as it is.
    assert_eq!(store.record_missed(KEY, &[3_000, 2_000, 1_000], 3_100, "b").await.expect("missed"), 2);
    assert_eq!(store.record_missed(KEY, &[], 3_100, "b").await.expect("none"), 0);
    let last = store.last_occurrence(KEY).await.expect("last").expect("some");
    assert_eq!((last.occurrence_at, last.outcome, last.claimed_by.as_str()), (3_000, OccurrenceOutcome::Missed, "b"));
    let fired = store.last_fired(KEY).await.expect("fired").expect("some");
    assert_eq!((fired.occurrence_at, fired.recorded_at, fired.claimed_by.as_str()), (1_000, 1_005, "a"));
    let listed = store.list_occurrences(KEY, 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|o| (o.occurrence_at, o.outcome)).collect::<Vec<_>>(),
        [(3_000, OccurrenceOutcome::Missed), (2_000, OccurrenceOutcome::Missed), (1_000, OccurrenceOutcome::Fired)]
    );
    assert_eq!(store.list_occurrences(KEY, 1).await.expect("list").len(), 1);
    // Keys are independent.
    assert!(store.claim_occurrence("other", 1_000, OccurrenceOutcome::Fired, 1_005, "a").await.expect("claim"));
    // Pruning keeps each schedule's newest row, the mark its catch-up starts from.
    assert_eq!(store.prune_occurrences(10_000).await.expect("prune"), 2);
    let kept = store.list_occurrences(KEY, 10).await.expect("list");
    assert_eq!(kept.iter().map(|o| o.occurrence_at).collect::<Vec<_>>(), [3_000]);
    assert_eq!(store.list_occurrences("other", 10).await.expect("list").len(), 1);
    assert_eq!(store.delete_occurrences(KEY).await.expect("delete"), 1);
    assert_eq!(store.last_occurrence(KEY).await.expect("last"), None);
    assert_eq!(store.delete_occurrences("other").await.expect("delete"), 1);
}

/// `claimers` tasks race to claim one occurrence; exactly one wins.
async fn racing_claims(store: Arc<dyn Store>, claimers: usize) {
    let mut tasks = Vec::new();
    for i in 0..claimers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .claim_occurrence("race", 42_000, OccurrenceOutcome::Fired, 42_001, &format!("server-{i}"))
                .await
                .expect("claim")
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.expect("task") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "of {claimers} claimers exactly one wins");
    assert_eq!(store.list_occurrences("race", 10).await.expect("list").len(), 1);
}

#[tokio::test]
async fn sqlite_schedule_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flotilla.db");
    let store = SqlStore::open_sqlite(&path).await.expect("open sqlite");
    occurrences(&store).await;
    // Two stores on one file, as two processes would be.
    let other = SqlStore::open_sqlite(&path).await.expect("open again");
    let a: Arc<dyn Store> = Arc::new(store);
    racing_claims(a.clone(), 10).await;
    assert!(!other.claim_occurrence("race", 42_000, OccurrenceOutcome::Fired, 1, "other").await.expect("claim"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_schedule_contract() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    occurrences(&store).await;
    // Two pools, as two servers sharing the database, with 20 claimers split between them.
    let second = SqlStore::open_postgres(db.url()).await.expect("open again");
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(store.clone()), Arc::new(second.clone()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .claim_occurrence("race-pg", 7_000, OccurrenceOutcome::Fired, 7_001, &format!("server-{i}"))
                .await
                .expect("claim")
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.expect("task"));
    }
    assert_eq!(winners, 1, "of 20 claimers on two pools exactly one wins");
    racing_claims(a, 20).await;
    store.close().await;
    second.close().await;
    db.drop_database().await.expect("drop test database");
}

#[tokio::test]
async fn an_unknown_outcome_in_the_table_is_refused_naming_the_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flotilla.db");
    let store = SqlStore::open_sqlite(&path).await.expect("open sqlite");
    store.close().await;
    {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).connect().await.expect("connect");
        sqlx::query(
            "INSERT INTO schedule_occurrences (schedule_key, occurrence_at, outcome, recorded_at, claimed_by) \
             VALUES ('planted', 5, 'Pending', 6, 'x')",
        )
        .execute(&mut conn)
        .await
        .expect("plant");
    }
    let store = SqlStore::open_sqlite(&path).await.expect("reopen");
    let err = store.last_occurrence("planted").await.expect_err("refused").to_string();
    assert!(err.contains("planted at 5") && err.contains("`Pending`"), "{err}");
}
