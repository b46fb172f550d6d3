//! Notifications' part of the storage contract, on SQLite and PostgreSQL alike: topic and rule
//! names are unique; a subscription needs its topic; routing writes deliveries and the cursor
//! together and never duplicates a delivery; due deliveries come oldest first; attempts,
//! dead letters and a redrive are recorded; deleting a topic takes its subscriptions and their
//! deliveries with it.

use std::collections::BTreeMap;

use flotilla_core::notification::{DeliveryStatus, SubscriptionKind};
use flotilla_store::{NewDelivery, RuleRecord, SqlStore, Store, SubscriptionRecord};

fn sub(id: &str, topic: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        id: id.into(),
        topic: topic.into(),
        kind: SubscriptionKind::Webhook,
        endpoint: "https://example.test/hook".into(),
        secret: Some("sealed".into()),
        ca_pem: None,
        timeout_ms: 5000,
        parameters: BTreeMap::new(),
        targets: vec![],
        created_at: 1,
    }
}

fn delivery(sub: &str, seq: i64) -> NewDelivery {
    NewDelivery { subscription_id: sub.into(), event_seq: seq, event_id: format!("ev-{seq}") }
}

async fn contract(store: &dyn Store) {
    assert!(store.create_topic("alerts", 1).await.expect("topic"));
    assert!(!store.create_topic("alerts", 2).await.expect("dup"), "topic names are unique");
    assert!(store.topic_exists("alerts").await.expect("exists"));
    assert!(!store.create_subscription(&sub("s-0", "nope")).await.expect("sub"), "needs its topic");
    assert!(store.create_subscription(&sub("s-1", "alerts")).await.expect("sub"));
    assert!(store.create_subscription(&sub("s-2", "alerts")).await.expect("sub"));
    let topics = store.list_topics().await.expect("topics");
    assert_eq!((topics[0].name.as_str(), topics[0].subscriptions), ("alerts", 2));
    assert_eq!(store.get_subscription("s-1").await.expect("get"), Some(sub("s-1", "alerts")));

    let rule = RuleRecord {
        id: "r-1".into(),
        name: "all".into(),
        pattern: r#"{"type":["Node.Online"]}"#.into(),
        target: "topic:alerts".into(),
        parameters: BTreeMap::new(),
        targets: vec![],
        enabled: true,
        problem: None,
        created_at: 1,
        updated_at: 1,
    };
    assert!(store.create_rule(&rule).await.expect("rule"));
    assert!(!store.create_rule(&RuleRecord { id: "r-2".into(), ..rule.clone() }).await.expect("dup"));
    assert!(store.set_rule_enabled("r-1", false, 5).await.expect("disable"));
    store.set_rule_problem("r-1", Some("topic gone")).await.expect("problem");
    let got = store.get_rule("all").await.expect("get").expect("by name");
    assert_eq!((got.enabled, got.problem.as_deref(), got.updated_at), (false, Some("topic gone"), 5));

    assert_eq!(store.notification_cursor("rules").await.expect("cursor"), None);
    store.route("rules", 3, &[delivery("s-1", 2), delivery("s-1", 3), delivery("s-2", 3)], 100).await.expect("route");
    // Routing the same page again (a restart before the cursor moved) duplicates nothing.
    store.route("rules", 3, &[delivery("s-1", 2)], 200).await.expect("route again");
    assert_eq!(store.notification_cursor("rules").await.expect("cursor"), Some(3));
    let many: Vec<NewDelivery> = (10..400).map(|seq| delivery("s-2", seq)).collect();
    store.route("rules", 400, &many, 100).await.expect("route many");
    assert_eq!(store.delivery_counts("s-2").await.expect("counts")[&DeliveryStatus::Pending], 391);

    assert!(store.due_deliveries("s-1", 99, 10).await.expect("due").is_empty(), "not due before now");
    let due = store.due_deliveries("s-1", 100, 10).await.expect("due");
    assert_eq!(due.iter().map(|d| d.event_seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(due[0].status, DeliveryStatus::Pending);
    assert_eq!(store.next_delivery_due().await.expect("next"), Some(100));

    let mut d = due[0].clone();
    d.status = DeliveryStatus::Retrying;
    d.attempts = 1;
    d.next_attempt_at = 500;
    d.last_error = Some("HTTP 500".into());
    store.record_attempt(&d).await.expect("attempt");
    assert_eq!(store.due_deliveries("s-1", 100, 10).await.expect("due").len(), 1);
    d.status = DeliveryStatus::DeadLettered;
    d.attempts = 2;
    store.record_attempt(&d).await.expect("attempt");
    let mut ok = due[1].clone();
    ok.status = DeliveryStatus::Delivered;
    ok.attempts = 1;
    store.record_attempt(&ok).await.expect("attempt");
    assert!(store.due_deliveries("s-1", 10_000, 10).await.expect("due").is_empty());
    let listed = store.list_deliveries("s-1", 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|d| (d.event_seq, d.status)).collect::<Vec<_>>(),
        [(3, DeliveryStatus::Delivered), (2, DeliveryStatus::DeadLettered)]
    );
    assert_eq!(listed[1].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(store.redrive("s-1", 700).await.expect("redrive"), 1);
    let again = store.due_deliveries("s-1", 700, 10).await.expect("due");
    assert_eq!((again[0].event_seq, again[0].attempts, again[0].status), (2, 0, DeliveryStatus::Pending));

    assert!(store.delete_subscription("s-1").await.expect("rm"));
    assert!(store.list_deliveries("s-1", 10).await.expect("list").is_empty());
    assert!(store.delete_topic("alerts").await.expect("rm topic"));
    assert!(store.list_subscriptions(None).await.expect("subs").is_empty(), "its subscriptions went with it");
    assert!(store.list_deliveries("s-2", 10).await.expect("list").is_empty());
    assert!(!store.delete_topic("alerts").await.expect("rm again"));
    assert!(store.delete_rule("r-1").await.expect("rm rule"));
}

#[tokio::test]
async fn sqlite_notifications_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite(&dir.path().join("flotilla.db")).await.expect("open sqlite");
    contract(&store).await;
}

#[tokio::test]
async fn postgres_notifications_contract() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open postgres");
    contract(&store).await;
    store.close().await;
    db.drop_database().await.expect("drop test database");
}
