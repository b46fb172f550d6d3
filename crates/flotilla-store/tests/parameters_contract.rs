//! The Parameter Store part of the storage contract, on SQLite and PostgreSQL alike: versions,
//! overwrite, the 100-version window, labels, listing by prefix, deletion, master key records.

use flotilla_core::parameter::{ParameterType, Tier};
use flotilla_store::{MasterKeyRecord, ParameterLabel, ParameterPut, ParameterRecord, SqlStore, Store};

fn record(name: &str, version: i64, value: &str) -> ParameterRecord {
    ParameterRecord {
        name: name.into(),
        version,
        kind: ParameterType::String,
        tier: Tier::Standard,
        description: "d".into(),
        value: value.into(),
        labels: vec![],
        created_at: version * 10,
    }
}

async fn parameters(store: &dyn Store) {
    assert_eq!(
        store.put_parameter(&record("/app/a_b", 1, "one"), false, 100).await.expect("put"),
        ParameterPut::Stored
    );
    assert_eq!(
        store.put_parameter(&record("/app/a_b", 1, "again"), false, 100).await.expect("put"),
        ParameterPut::Exists
    );
    assert_eq!(
        store.put_parameter(&record("/app/a_b", 3, "skip"), true, 100).await.expect("put"),
        ParameterPut::Conflict
    );
    assert_eq!(store.put_parameter(&record("/app/a_b", 2, "two"), true, 100).await.expect("put"), ParameterPut::Stored);
    assert_eq!(store.get_parameter("/app/a_b", None).await.expect("get").expect("some").value, "two");
    assert_eq!(store.get_parameter("/app/a_b", Some(1)).await.expect("get").expect("some").value, "one");
    assert_eq!(store.get_parameter("/app/a_b", Some(9)).await.expect("get"), None);
    assert_eq!(store.get_parameter("/nope", None).await.expect("get"), None);

    let labels = vec!["prod".to_string(), "blue".to_string()];
    assert_eq!(store.label_parameter("/app/a_b", 1, &labels, 10).await.expect("label"), ParameterLabel::Labelled);
    assert_eq!(store.label_parameter("/app/a_b", 7, &labels, 10).await.expect("label"), ParameterLabel::NoSuchVersion);
    assert_eq!(store.parameter_label("/app/a_b", "prod").await.expect("label"), Some(1));
    // Moving a label.
    store.label_parameter("/app/a_b", 2, &["prod".to_string()], 10).await.expect("move");
    assert_eq!(store.parameter_label("/app/a_b", "prod").await.expect("label"), Some(2));
    assert_eq!(store.get_parameter("/app/a_b", None).await.expect("get").expect("some").labels, vec!["prod"]);
    assert_eq!(
        store.label_parameter("/app/a_b", 2, &["x".to_string(), "y".to_string()], 2).await.expect("label"),
        ParameterLabel::TooMany { limit: 2 }
    );
    assert_eq!(store.parameter_label("/app/a_b", "x").await.expect("label"), None, "a refusal changes nothing");

    let history = store.parameter_history("/app/a_b").await.expect("history");
    assert_eq!(history.iter().map(|r| r.version).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(history[0].labels, vec!["blue"]);

    // The window: at most `keep` versions; a labelled oldest version blocks the put.
    assert_eq!(store.put_parameter(&record("/app/a_b", 3, "three"), true, 3).await.expect("put"), ParameterPut::Stored);
    assert_eq!(
        store.put_parameter(&record("/app/a_b", 4, "four"), true, 3).await.expect("put"),
        ParameterPut::OldestLabelled { version: 1, labels: vec!["blue".into()] }
    );
    store.label_parameter("/app/a_b", 3, &["blue".to_string()], 10).await.expect("move");
    assert_eq!(store.put_parameter(&record("/app/a_b", 4, "four"), true, 3).await.expect("put"), ParameterPut::Stored);
    let versions: Vec<i64> = store.parameter_history("/app/a_b").await.expect("h").iter().map(|r| r.version).collect();
    assert_eq!(versions, vec![2, 3, 4], "the oldest was dropped");

    // Listing by prefix: `_` and `%` are not wildcards.
    store.put_parameter(&record("/app/aXb", 1, "x"), false, 100).await.expect("put");
    store.put_parameter(&record("/app/sub/deep", 1, "x"), false, 100).await.expect("put");
    store.put_parameter(&record("/other", 1, "x"), false, 100).await.expect("put");
    let names = |list: Vec<ParameterRecord>| list.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(names(store.list_parameters("/app/a_").await.expect("list")), vec!["/app/a_b"]);
    assert_eq!(
        names(store.list_parameters("/app/").await.expect("list")),
        vec!["/app/aXb", "/app/a_b", "/app/sub/deep"]
    );
    let listed = store.list_parameters("/app/a_b").await.expect("list");
    assert_eq!((listed[0].version, listed[0].value.as_str(), listed[0].labels.clone()), (4, "four", vec![]));

    assert!(store.delete_parameter("/app/a_b").await.expect("delete"));
    assert!(!store.delete_parameter("/app/a_b").await.expect("delete again"));
    assert_eq!(store.get_parameter("/app/a_b", Some(2)).await.expect("get"), None);
    assert_eq!(store.parameter_label("/app/a_b", "prod").await.expect("label"), None);
    // A re-created parameter starts again at version 1.
    assert_eq!(
        store.put_parameter(&record("/app/a_b", 1, "new"), false, 100).await.expect("put"),
        ParameterPut::Stored
    );

    let key = MasterKeyRecord { key_id: "mk-1".into(), version: 1, check_value: "c1".into(), created_at: 5 };
    store.record_master_key(&key).await.expect("record");
    store.record_master_key(&MasterKeyRecord { check_value: "other".into(), ..key.clone() }).await.expect("again");
    let key2 = MasterKeyRecord { version: 2, check_value: "c2".into(), ..key.clone() };
    store.record_master_key(&key2).await.expect("record");
    assert_eq!(store.list_master_keys().await.expect("list"), vec![key, key2]);
}

#[tokio::test]
async fn sqlite_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite(&dir.path().join("flotilla.db")).await.expect("open sqlite");
    parameters(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_parameters() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    parameters(&store).await;
    store.close().await;
    db.drop_database().await.expect("drop test database");
}
