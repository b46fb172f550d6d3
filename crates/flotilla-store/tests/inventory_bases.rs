//! Inventory sets stored as edits of shared bases (migration 0020), on SQLite and PostgreSQL: a
//! fleet of a few images with per-node variation reads back exactly (order, duplicates, extra,
//! missing and changed packages), by node and by key; one base is stored per image; the sweep
//! deletes a base (and its entries) once no set uses it; a cold store reads the same; a set
//! whose base is gone is reported corrupt, never read wrong.

use flotilla_core::NodeId;
use flotilla_store::prelude::*;
use flotilla_store::{InventoryChange, SqlStore, StoreError};

/// Raw access beside the store, to look at what it wrote.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
            Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
        }
    }

    async fn execute(&self, sql: &'static str) {
        match self {
            Raw::Sqlite(p) => drop(sqlx::query(sql).execute(p).await.expect("execute")),
            Raw::Postgres(p) => drop(sqlx::query(sql).execute(p).await.expect("execute")),
        }
    }
}

const PACKAGES: usize = 200;

fn item(image: usize, i: usize, version: &str) -> (Option<String>, String) {
    let name = format!("i{image}-p{i:03}");
    (Some(name.clone()), format!("{{\"name\":\"{name}\",\"version\":\"{version}\"}}"))
}

/// Node `n` of `image`: the image's packages with the node's own few percent of change.
fn packages(image: usize, n: usize) -> Vec<(Option<String>, String)> {
    let mut items: Vec<_> = (0..PACKAGES).map(|i| item(image, i, "1.0")).collect();
    items[(n * 7) % PACKAGES] = item(image, (n * 7) % PACKAGES, &format!("1.{n}"));
    items.remove((n * 13 + 5) % items.len());
    items.insert((n * 3) % items.len(), item(9, n, "extra"));
    if n.is_multiple_of(4) {
        items.swap(10, 11);
        items.push(items[0].clone());
    }
    items
}

fn node(n: usize) -> NodeId {
    NodeId::from_random([u8::try_from(n).expect("small"); 9])
}

fn apps(items: Vec<(Option<String>, String)>) -> InventoryChange {
    InventoryChange::Replace { type_name: "Application".into(), content_hash: format!("{}", items.len()), items }
}

fn texts(items: &[(Option<String>, String)]) -> Vec<String> {
    items.iter().map(|(_, t)| t.clone()).collect()
}

async fn bases_case(store: &SqlStore, raw: &Raw, reopen: impl AsyncFn() -> SqlStore) {
    let fleet: Vec<(NodeId, usize)> = (1..=30).map(|n| (node(n), n % 3)).collect();
    for (n, (id, image)) in fleet.iter().enumerate() {
        store.apply_inventory(id, &[apps(packages(*image, n + 1))], 1, 2).await.expect("ingest");
    }
    for (n, (id, image)) in fleet.iter().enumerate() {
        let items = store.inventory_items(id, "Application").await.expect("items");
        assert_eq!(items, texts(&packages(*image, n + 1)), "node {n}, image {image}");
    }
    assert_eq!(raw.count("SELECT COUNT(*) FROM inventory_bases").await, 3, "one base per image");
    assert_eq!(raw.count("SELECT COUNT(*) FROM inventory_sets WHERE base_id IS NOT NULL").await, 30);
    let bytes = raw.count("SELECT CAST(SUM(LENGTH(entries)) AS BIGINT) FROM inventory_sets").await;
    assert!(bytes < 30 * 40, "sets are a few edits each, not {PACKAGES} ids: {bytes} bytes");

    // By key: image 0's package 7 is changed on node 1 (n=1 → 7) and kept on the others.
    let hits = store.inventory_scan("Application", Some("i0-p007"), None, 100).await.expect("scan");
    let mut want: Vec<(String, String)> = Vec::new();
    for (n, (id, image)) in fleet.iter().enumerate() {
        for (key, text) in packages(*image, n + 1) {
            if key.as_deref() == Some("i0-p007") {
                want.push((id.to_string(), text));
            }
        }
    }
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(want.len() >= 5, "{want:?}");
    assert_eq!(hits, want);
    // The extra package of node 4, and a duplicated first package: keys inserted by edits.
    let extra = store.inventory_scan("Application", Some("i9-p004"), None, 100).await.expect("scan");
    assert_eq!(extra.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), [node(4).to_string()]);
    let doubled = store.inventory_scan("Application", Some("i1-p000"), None, 100).await.expect("scan");
    let on_4 = doubled.iter().filter(|(n, _)| *n == node(4).to_string()).count();
    assert_eq!(on_4, 2, "node 4 (image 1) holds its first package twice: {doubled:?}");
    // Every node's set, a page at a time.
    let mut after: Option<String> = None;
    let mut seen = 0;
    loop {
        let page = store.inventory_scan("Application", None, after.as_deref(), 7).await.expect("scan");
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (id, image) in &fleet {
            let n = fleet.iter().position(|(x, _)| x == id).expect("known") + 1;
            let got: Vec<String> = page.iter().filter(|(x, _)| *x == id.to_string()).map(|(_, t)| t.clone()).collect();
            if !got.is_empty() {
                assert_eq!(got, texts(&packages(*image, n)));
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 30);

    // Image 2's nodes move to a new image: its base is unused, and the sweep deletes it with
    // the entries only it held.
    for (n, (id, image)) in fleet.iter().enumerate() {
        if *image == 2 {
            store.apply_inventory(id, &[apps(packages(3, n + 1))], 3, 4).await.expect("reimage");
        }
    }
    let before = raw.count("SELECT COUNT(*) FROM inventory_entries").await;
    let deleted = store.delete_unreferenced_inventory_entries().await.expect("sweep");
    assert!(deleted >= PACKAGES as u64 - 1, "image 2's packages went: {deleted}");
    assert_eq!(raw.count("SELECT COUNT(*) FROM inventory_entries").await, before - deleted as i64);
    assert_eq!(raw.count("SELECT COUNT(*) FROM inventory_bases").await, 3, "images 0, 1 and 3");
    assert_eq!(store.delete_unreferenced_inventory_entries().await.expect("sweep"), 0);
    // Written after the sweep, against what the store remembered from before it.
    let late = node(99);
    store.apply_inventory(&late, &[apps(packages(0, 99))], 5, 6).await.expect("late");
    assert_eq!(store.inventory_items(&late, "Application").await.expect("items"), texts(&packages(0, 99)));

    // A store that remembers nothing reads the same.
    let cold = reopen().await;
    for (n, (id, image)) in fleet.iter().enumerate() {
        let image = if *image == 2 { 3 } else { *image };
        let items = cold.inventory_items(id, "Application").await.expect("items");
        assert_eq!(items, texts(&packages(image, n + 1)), "cold, node {n}");
    }
    // A set whose base is gone is corrupt, and says which.
    raw.execute("DELETE FROM inventory_bases").await;
    let fresh = reopen().await;
    match fresh.inventory_items(&fleet[0].0, "Application").await {
        Err(StoreError::Corrupt { what, detail, .. }) => {
            assert_eq!(what, "inventory set");
            assert!(detail.contains("base") && detail.contains("not stored"), "{detail}");
        }
        other => panic!("expected a corrupt set, got {other:?}"),
    }
    assert!(fresh.delete_unreferenced_inventory_entries().await.is_err(), "the sweep deletes nothing it cannot read");
    assert!(raw.count("SELECT COUNT(*) FROM inventory_entries").await > 0);
}

#[tokio::test]
async fn sqlite_sets_are_edits_of_shared_bases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flotilla.db");
    let store = SqlStore::open_sqlite(&path).await.expect("open");
    let raw = Raw::Sqlite(sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.expect("raw"));
    bases_case(&store, &raw, async || SqlStore::open_sqlite(&path).await.expect("reopen")).await;
}

#[tokio::test]
async fn postgres_sets_are_edits_of_shared_bases() {
    let db = flotilla_testkit::postgres::TempDatabase::for_test().await;
    let store = SqlStore::open_postgres(db.url()).await.expect("open");
    let raw = Raw::Postgres(sqlx::PgPool::connect(db.url()).await.expect("raw"));
    bases_case(&store, &raw, async || SqlStore::open_postgres(db.url()).await.expect("reopen")).await;
    store.close().await;
    if let Raw::Postgres(p) = raw {
        p.close().await;
    }
    db.drop_database().await.expect("drop test database");
}
