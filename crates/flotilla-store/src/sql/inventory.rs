//! SQL for [`InventoryStore`], content-addressed (migration 0019): each distinct item of a type
//! is one `inventory_entries` row, named by the SHA-256 of its type and text; a node's type is
//! one `inventory_sets` row naming its entries' ids in the order sent — whole, or as edits of a
//! shared `inventory_bases` row (migration 0020; how, in `inventory/sets.rs`).
//!
//! Invariants: an entry or base a committed set names exists — both are only deleted by
//! [`InventoryStore::delete_unreferenced_inventory_entries`], which runs alone (SQLite's one
//! writer; on PostgreSQL an exclusive advisory lock that every inventory write holds shared)
//! and counts itself in `inventory_entry_ids.sweeps`, so an id remembered in memory
//! ([`KnownEntries`], [`Bases::by_type`]) is used only while no sweep has run since; a base
//! never changes once written; and ids (entries' and bases', from one counter) are never
//! reused. On SQLite, where one process owns the file, [`SetCache`] keeps each scanned type's
//! sets in memory: loaded while no write can commit, then changed by every committed write.

mod sets;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::{NodeId, UnixMillis};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, MAX_BINDS, SqlStore, WriteTx, from_json, get, placeholders, q, to_json};
use crate::{InventoryChange, InventorySetting, InventoryStore, StoreError, StoredInventoryType};
use sets::{Base, Choice, id_list};

/// Entry rows per INSERT (5 binds a row).
const ENTRY_ROWS_PER_INSERT: usize = MAX_BINDS / 5;
/// Sets read per statement by a fleet query or the sweep.
const SETS_PER_READ: usize = 1000;
/// Entry ids read per statement by the sweep.
const IDS_PER_READ: usize = 10_000;
/// PostgreSQL advisory lock key: inventory writes hold it shared, the entry sweep exclusive.
const ENTRIES_LOCK: i64 = 0x666c_6f74_696e_7600;
/// Entry ids a process remembers (about 50 bytes each).
const MAX_KNOWN_ENTRIES: usize = 2_000_000;
/// Entry text a process remembers.
const MAX_ENTRY_TEXT_BYTES: usize = 64 << 20;
/// Base id lists a process remembers (8 KiB each for a thousand packages).
const MAX_BASE_LISTS: usize = 1024;

#[async_trait]
impl InventoryStore for SqlStore {
    async fn inventory_types(&self, node: &NodeId) -> Result<Vec<StoredInventoryType>, StoreError> {
        let rows = sqlx::query(
            "SELECT type_name, content_hash, item_count, collected_at, updated_at FROM inventory_types \
             WHERE node_id = $1 ORDER BY type_name",
        )
        .bind(node.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("read a node's inventory types"))?;
        rows.iter()
            .map(|row| {
                Ok(StoredInventoryType {
                    type_name: get(row, "type_name")?,
                    content_hash: get(row, "content_hash")?,
                    item_count: get(row, "item_count")?,
                    collected_at: get(row, "collected_at")?,
                    updated_at: get(row, "updated_at")?,
                })
            })
            .collect()
    }

    async fn apply_inventory(
        &self,
        node: &NodeId,
        changes: &[InventoryChange],
        collected_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin an inventory update"))?;
        let mut turn = self.entry_turn(&mut tx).await?;
        self.apply_in(&mut tx, &mut turn, node.as_str(), changes, collected_at, now).await?;
        tx.commit().await.map_err(q("commit an inventory update"))?;
        self.remember(turn);
        Ok(())
    }

    async fn inventory_items(&self, node: &NodeId, type_name: &str) -> Result<Vec<String>, StoreError> {
        let row = sqlx::query("SELECT base_id, entries FROM inventory_sets WHERE type_name = $1 AND node_id = $2")
            .bind(type_name)
            .bind(node.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read inventory items"))?;
        let Some(row) = row else { return Ok(Vec::new()) };
        let set = SetRow::read(&row, node.as_str(), type_name)?;
        let bases = self.base_lists(set.base.into_iter().collect()).await?;
        let ids = set.ids(&bases)?;
        let mut items = HashMap::new();
        self.load_entries(&ids, &mut items).await?;
        ids.iter().map(|id| entry(&items, *id, node.as_str(), type_name)).collect()
    }

    async fn inventory_scan(
        &self,
        type_name: &str,
        key: Option<&str>,
        after: Option<&str>,
        max_nodes: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // With a key, the few entries that carry it (one per version in the fleet, give or
        // take) are read once by index and the sets are only searched for their ids.
        let mut items = HashMap::new();
        if let Some(key) = key {
            let rows = sqlx::query("SELECT id, item FROM inventory_entries WHERE type_name = $1 AND item_key = $2")
                .bind(type_name)
                .bind(key)
                .fetch_all(&self.pool)
                .await
                .map_err(q("query inventory"))?;
            for row in &rows {
                items.insert(get::<i64>(row, "id")?, get::<String>(row, "item")?);
            }
            if items.is_empty() {
                return Ok(Vec::new());
            }
        }
        // The key's entries, sorted: a few ids, searched ten million times at 10,000 nodes
        // (a hash lookup each was most of the query's time).
        let mut keyed: Vec<i64> = items.keys().copied().collect();
        keyed.sort_unstable();
        // Per base: the positions of the key's entries in it, found once per query.
        let mut keyed_in_base: HashMap<i64, Vec<usize>> = HashMap::new();
        let wanted = usize::try_from(max_nodes).unwrap_or(0);
        // Sets read past the `wanted`th node with items are read in vain (the caller goes on
        // after the last node returned): read about as many as are wanted, but with a key
        // not one at a time through a fleet where few match.
        let batch = if key.is_some() { wanted.clamp(100, SETS_PER_READ) } else { wanted.clamp(1, SETS_PER_READ) };
        let mut out = Vec::new();
        let mut nodes = 0;
        let mut cursor = after.unwrap_or("").to_owned();
        while nodes < wanted {
            let rows = self.sets_after(type_name, &cursor, batch).await?;
            let read: Vec<SetRow<'_>> = rows
                .iter()
                .map(|(node, set)| SetRow { node, type_name, base: set.base, entries: set.entries.clone() })
                .collect();
            let bases = self.base_lists(read.iter().filter_map(|set| set.base).collect()).await?;
            let mut sets = Vec::with_capacity(read.len());
            for set in &read {
                let ids = if key.is_some() {
                    let keep = |id: i64| keyed.binary_search(&id).is_ok();
                    let positions = set.base.map(|b| {
                        keyed_in_base.entry(b).or_insert_with(|| {
                            bases.get(&b).map(|list| sets::positions_where(list, keep)).unwrap_or_default()
                        })
                    });
                    set.ids_where(&bases, positions.map(|p| p.as_slice()).unwrap_or_default(), keep)?
                } else {
                    set.ids(&bases)?
                };
                sets.push((set.node.to_owned(), ids));
            }
            if key.is_none() {
                items.clear();
                let ids: Vec<i64> = sets.iter().flat_map(|(_, ids)| ids.iter().copied()).collect();
                self.load_entries(&ids, &mut items).await?;
            }
            for (node, ids) in &sets {
                if ids.is_empty() || nodes == wanted {
                    continue;
                }
                for id in ids {
                    out.push((node.clone(), entry(&items, *id, node, type_name)?));
                }
                nodes += 1;
            }
            match sets.last() {
                Some((last, _)) if rows.len() == batch => cursor.clone_from(last),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn delete_unreferenced_inventory_entries(&self) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin an inventory entry sweep"))?;
        self.lock_entries(&mut tx, true).await?;
        let mut bases: HashMap<i64, Arc<[i64]>> = HashMap::new();
        for row in sqlx::query("SELECT id, entries FROM inventory_bases")
            .fetch_all(&mut *tx)
            .await
            .map_err(q("read inventory bases"))?
        {
            let id: i64 = get(&row, "id")?;
            bases.insert(id, base_ids(&row, id)?);
        }
        let mut referenced = HashSet::new();
        let mut used_bases = HashSet::new();
        let (mut type_cursor, mut node_cursor) = (String::new(), String::new());
        loop {
            let rows = sqlx::query(
                "SELECT type_name, node_id, base_id, entries FROM inventory_sets \
                 WHERE type_name > $1 OR (type_name = $1 AND node_id > $2) ORDER BY type_name, node_id LIMIT $3",
            )
            .bind(&type_cursor)
            .bind(&node_cursor)
            .bind(i64::try_from(SETS_PER_READ).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(q("read inventory sets"))?;
            for row in &rows {
                type_cursor = get(row, "type_name")?;
                node_cursor = get(row, "node_id")?;
                let set = SetRow::read(row, &node_cursor, &type_cursor)?;
                used_bases.extend(set.base);
                referenced.extend(set.ids(&bases)?);
            }
            if rows.len() < SETS_PER_READ {
                break;
            }
        }
        // A base a set uses keeps all its entries (a set written later may copy any of them).
        let mut unused_bases = Vec::new();
        for (id, list) in &bases {
            if used_bases.contains(id) {
                referenced.extend(list.iter().copied());
            } else {
                unused_bases.push(*id);
            }
        }
        delete_ids(&mut tx, "inventory_bases", &unused_bases, "delete unused inventory bases").await?;
        let mut unreferenced = Vec::new();
        let mut id_cursor = 0_i64;
        loop {
            let rows = sqlx::query("SELECT id FROM inventory_entries WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(id_cursor)
                .bind(i64::try_from(IDS_PER_READ).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await
                .map_err(q("read inventory entries"))?;
            for row in &rows {
                id_cursor = get(row, "id")?;
                if !referenced.contains(&id_cursor) {
                    unreferenced.push(id_cursor);
                }
            }
            if rows.len() < IDS_PER_READ {
                break;
            }
        }
        delete_ids(&mut tx, "inventory_entries", &unreferenced, "delete unreferenced inventory entries").await?;
        if !unreferenced.is_empty() || !unused_bases.is_empty() {
            // Every process's remembered ids may name what was deleted: they start again.
            sqlx::query("UPDATE inventory_entry_ids SET sweeps = sweeps + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await
                .map_err(q("count an inventory entry sweep"))?;
        }
        tx.commit().await.map_err(q("commit an inventory entry sweep"))?;
        Ok(unreferenced.len() as u64)
    }

    async fn put_inventory_setting(&self, s: &InventorySetting) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO inventory_settings (group_name, interval_seconds, files, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (group_name) DO UPDATE SET interval_seconds = excluded.interval_seconds, \
             files = excluded.files, updated_at = excluded.updated_at",
        )
        .bind(&s.group_name)
        .bind(s.interval_seconds)
        .bind(to_json(&s.files))
        .bind(s.updated_at)
        .execute(&self.pool)
        .await
        .map_err(q("save inventory settings"))?;
        Ok(())
    }

    async fn list_inventory_settings(&self) -> Result<Vec<InventorySetting>, StoreError> {
        let rows = sqlx::query(
            "SELECT group_name, interval_seconds, files, updated_at FROM inventory_settings ORDER BY group_name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("list inventory settings"))?;
        rows.iter()
            .map(|row| {
                let group_name: String = get(row, "group_name")?;
                let files: String = get(row, "files")?;
                Ok(InventorySetting {
                    files: from_json(&files, "inventory setting files", &group_name)?,
                    interval_seconds: row.try_get("interval_seconds").ok().flatten(),
                    updated_at: get(row, "updated_at")?,
                    group_name,
                })
            })
            .collect()
    }

    async fn delete_inventory_setting(&self, group_name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM inventory_settings WHERE group_name = $1")
            .bind(group_name)
            .execute(&self.pool)
            .await
            .map_err(q("delete inventory settings"))?;
        Ok(done.rows_affected() > 0)
    }
}

impl SqlStore {
    /// Starts naming entries in `tx`: keeps the entry sweep out until it ends (SQLite's single
    /// writer already does; on PostgreSQL a shared advisory lock) and reads how many sweeps
    /// deleted entries so far, which says whether this process's remembered ids still hold.
    pub(super) async fn entry_turn(&self, tx: &mut WriteTx) -> Result<EntryTurn, StoreError> {
        self.lock_entries(tx, false).await?;
        let row = sqlx::query("SELECT sweeps FROM inventory_entry_ids WHERE id = 1")
            .fetch_one(&mut **tx)
            .await
            .map_err(q("read the inventory entry sweeps"))?;
        Ok(EntryTurn { sweeps: get(&row, "sweeps")?, stored: Vec::new(), new_bases: Vec::new(), sets: Vec::new() })
    }

    /// One node's inventory changes inside `tx` (the caller commits, then remembers `turn`).
    pub(super) async fn apply_in(
        &self,
        tx: &mut WriteTx,
        turn: &mut EntryTurn,
        node: &str,
        changes: &[InventoryChange],
        collected_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        for change in changes {
            let type_name = match change {
                InventoryChange::Replace { type_name, .. } | InventoryChange::Delete { type_name } => type_name,
            };
            sqlx::query("DELETE FROM inventory_types WHERE node_id = $1 AND type_name = $2")
                .bind(node)
                .bind(type_name)
                .execute(&mut **tx)
                .await
                .map_err(q("replace an inventory type"))?;
            let InventoryChange::Replace { content_hash, items, .. } = change else {
                sqlx::query("DELETE FROM inventory_sets WHERE type_name = $1 AND node_id = $2")
                    .bind(type_name)
                    .bind(node)
                    .execute(&mut **tx)
                    .await
                    .map_err(q("delete an inventory type's items"))?;
                if self.sets.is_some() {
                    turn.sets.push((type_name.clone(), node.to_owned(), None));
                }
                continue;
            };
            sqlx::query(
                "INSERT INTO inventory_types (node_id, type_name, content_hash, item_count, collected_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(node)
            .bind(type_name)
            .bind(content_hash)
            .bind(i64::try_from(items.len()).unwrap_or(i64::MAX))
            .bind(collected_at)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(q("store an inventory type"))?;
            self.put_set(tx, turn, node, type_name, items).await?;
        }
        if !changes.is_empty() {
            let types: Vec<&str> = changes
                .iter()
                .map(|c| match c {
                    InventoryChange::Replace { type_name, .. } | InventoryChange::Delete { type_name } => {
                        type_name.as_str()
                    }
                })
                .collect();
            let detail = serde_json::json!({ "node_id": node, "types": types });
            let event = super::events::node_event(flotilla_core::EventType::InventoryChanged, node, detail);
            super::events::append(tx, &[event]).await?;
        }
        Ok(())
    }

    /// PostgreSQL: the advisory lock every inventory write holds shared and the entry sweep
    /// exclusive, to the end of `tx`. SQLite's single writer needs none.
    async fn lock_entries(&self, tx: &mut WriteTx, exclusive: bool) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let sql =
            if exclusive { "SELECT pg_advisory_xact_lock($1)" } else { "SELECT pg_advisory_xact_lock_shared($1)" };
        sqlx::query(sql).bind(ENTRIES_LOCK).execute(&mut **tx).await.map_err(q("lock inventory entries"))?;
        Ok(())
    }

    /// After `turn`'s transaction committed: the entries it stored are known from now on.
    pub(super) fn remember(&self, turn: EntryTurn) {
        let mut known = self.known_entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.sweeps == turn.sweeps {
            known.add(turn.stored);
        }
        drop(known);
        let mut bases = self.bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (type_name, base) in turn.new_bases {
            bases.keep_list(base.id, base.ids.clone());
            if bases.sweeps == turn.sweeps {
                bases.by_type.entry(type_name).or_default().push(base);
            }
        }
        drop(bases);
        if let Some(cache) = &self.sets {
            let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (type_name, node, set) in turn.sets {
                let Some(sets) = cache.types.get_mut(&type_name) else { continue };
                match set {
                    Some(set) => sets.insert(node, set),
                    None => sets.remove(&node),
                };
            }
        }
    }

    /// Up to `limit` sets of `type_name` after node `after`, in node order: from [`SetCache`]
    /// on SQLite (loading the type on its first scan), else from the database.
    async fn sets_after(
        &self,
        type_name: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, CachedSet)>, StoreError> {
        let from_cache = |cache: &SetCache| {
            cache.types.get(type_name).map(|sets| {
                sets.range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
                    .take(limit)
                    .map(|(node, set)| (node.clone(), set.clone()))
                    .collect::<Vec<_>>()
            })
        };
        let Some(cache) = &self.sets else { return self.read_sets(type_name, after, limit).await };
        if let Some(rows) = from_cache(&cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)) {
            return Ok(rows);
        }
        let _no_writes = match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        };
        let mut sets = BTreeMap::new();
        let mut cursor = String::new();
        loop {
            let rows = self.read_sets(type_name, &cursor, SETS_PER_READ).await?;
            let full = rows.len() == SETS_PER_READ;
            if let Some((last, _)) = rows.last() {
                cursor.clone_from(last);
            }
            sets.extend(rows);
            if !full {
                break;
            }
        }
        let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.types.entry(type_name.to_owned()).or_insert(sets);
        Ok(from_cache(&cache).unwrap_or_default())
    }

    /// Up to `limit` sets of `type_name` after node `after`, in node order, from the database.
    async fn read_sets(
        &self,
        type_name: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, CachedSet)>, StoreError> {
        let rows = sqlx::query(
            "SELECT node_id, base_id, entries FROM inventory_sets WHERE type_name = $1 AND node_id > $2 \
             ORDER BY node_id LIMIT $3",
        )
        .bind(type_name)
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(q("query inventory"))?;
        rows.iter().map(|row| Ok((get::<String>(row, "node_id")?, CachedSet::read(row)?))).collect()
    }

    /// Replaces `node`'s set of `type_name` with `items`, storing the entries not yet stored.
    async fn put_set(
        &self,
        tx: &mut WriteTx,
        turn: &mut EntryTurn,
        node: &str,
        type_name: &str,
        items: &[(Option<String>, String)],
    ) -> Result<(), StoreError> {
        let ids = self.entry_ids(tx, turn, type_name, items).await?;
        let (base, entries) = self.write_down(tx, turn, type_name, &ids).await?;
        let entries: Arc<[u8]> = entries.into();
        sqlx::query(
            "INSERT INTO inventory_sets (type_name, node_id, base_id, entries) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (type_name, node_id) DO UPDATE SET base_id = excluded.base_id, entries = excluded.entries",
        )
        .bind(type_name)
        .bind(node)
        .bind(base)
        .bind(&entries[..])
        .execute(&mut **tx)
        .await
        .map_err(q("store an inventory set"))?;
        if self.sets.is_some() {
            turn.sets.push((type_name.to_owned(), node.to_owned(), Some(CachedSet { base, entries })));
        }
        Ok(())
    }

    /// A set as stored: (its base, the edits of it) or (None, the whole list).
    async fn write_down(
        &self,
        tx: &mut WriteTx,
        turn: &mut EntryTurn,
        type_name: &str,
        ids: &[i64],
    ) -> Result<(Option<i64>, Vec<u8>), StoreError> {
        if ids.len() < sets::MIN_BASE_IDS {
            return Ok((None, id_list::encode(ids)));
        }
        let bases = self.type_bases(tx, turn.sweeps, type_name).await?;
        let base = match sets::choose(&bases, ids) {
            Choice::Whole => return Ok((None, id_list::encode(ids))),
            Choice::Edits(i) => bases[i].clone(),
            Choice::NewBase => {
                let id = self.take_entry_ids(tx, 1).await?;
                sqlx::query("INSERT INTO inventory_bases (id, type_name, entries) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(type_name)
                    .bind(id_list::encode(ids))
                    .execute(&mut **tx)
                    .await
                    .map_err(q("store an inventory base"))?;
                let base = Arc::new(Base::new(id, Arc::from(ids)));
                turn.new_bases.push((type_name.to_owned(), base.clone()));
                base
            }
        };
        Ok((Some(base.id), sets::encode_edits(&base, ids)))
    }

    /// The bases a new set of `type_name` is compared with, read once per sweep count.
    async fn type_bases(&self, tx: &mut WriteTx, sweeps: i64, type_name: &str) -> Result<Vec<Arc<Base>>, StoreError> {
        {
            let mut bases = self.bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if bases.sweeps != sweeps {
                // A sweep deleted bases since: those remembered may be gone.
                bases.sweeps = sweeps;
                bases.by_type.clear();
            }
            if let Some(list) = bases.by_type.get(type_name) {
                return Ok(list.clone());
            }
        }
        let rows = sqlx::query("SELECT id, entries FROM inventory_bases WHERE type_name = $1 ORDER BY id LIMIT $2")
            .bind(type_name)
            .bind(i64::try_from(sets::MAX_BASES_PER_TYPE).unwrap_or(i64::MAX))
            .fetch_all(&mut **tx)
            .await
            .map_err(q("read inventory bases"))?;
        let mut list = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = get(row, "id")?;
            list.push(Arc::new(Base::new(id, base_ids(row, id)?)));
        }
        // Committed rows, and no sweep can run before this transaction ends.
        let mut bases = self.bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for base in &list {
            bases.keep_list(base.id, base.ids.clone());
        }
        if bases.sweeps == sweeps {
            bases.by_type.insert(type_name.to_owned(), list.clone());
        }
        Ok(list)
    }

    /// The id lists of the bases `ids`, from memory first (a base never changes).
    async fn base_lists(&self, mut ids: Vec<i64>) -> Result<HashMap<i64, Arc<[i64]>>, StoreError> {
        ids.sort_unstable();
        ids.dedup();
        let mut out = HashMap::with_capacity(ids.len());
        let mut needed = Vec::new();
        {
            let bases = self.bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in ids {
                match bases.lists.get(&id) {
                    Some(list) => drop(out.insert(id, list.clone())),
                    None => needed.push(id),
                }
            }
        }
        for chunk in needed.chunks(MAX_BINDS) {
            let sql = format!("SELECT id, entries FROM inventory_bases WHERE id IN ({})", placeholders(1, chunk.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&self.pool).await.map_err(q("read inventory bases"))?;
            let mut bases = self.bases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for row in &rows {
                let id: i64 = get(row, "id")?;
                let list = base_ids(row, id)?;
                bases.keep_list(id, list.clone());
                out.insert(id, list);
            }
        }
        Ok(out)
    }

    /// The entry id of each of `items`, in order; the entries not stored yet are inserted.
    /// Ids come from this process's memory first (a fleet's reports mostly repeat entries
    /// already stored), then from the database, then from inserting.
    async fn entry_ids(
        &self,
        tx: &mut WriteTx,
        turn: &mut EntryTurn,
        type_name: &str,
        items: &[(Option<String>, String)],
    ) -> Result<Vec<i64>, StoreError> {
        let digests: Vec<Digest> = items.iter().map(|(_, item)| digest(type_name, item)).collect();
        let mut ids: HashMap<Digest, i64> = HashMap::with_capacity(digests.len());
        {
            let mut known = self.known_entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if known.sweeps != turn.sweeps {
                // A sweep deleted entries since: what is remembered may name them.
                *known = KnownEntries { sweeps: turn.sweeps, ids: HashMap::new() };
            }
            for d in &digests {
                if let Some(id) = known.ids.get(d) {
                    ids.insert(*d, *id);
                }
            }
        }
        let mut seen = HashSet::new();
        let unknown: Vec<Digest> =
            digests.iter().filter(|d| !ids.contains_key(*d) && seen.insert(**d)).copied().collect();
        if !unknown.is_empty() {
            let found = find_entries(tx, &unknown).await?;
            // Committed rows, and no sweep can run before this transaction ends.
            self.known_entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(found.iter().copied());
            ids.extend(found);
            // The first item of each digest not stored yet (a type may hold one item twice).
            let mut chosen = HashSet::new();
            let missing: Vec<usize> =
                (0..items.len()).filter(|&i| !ids.contains_key(&digests[i]) && chosen.insert(digests[i])).collect();
            if !missing.is_empty() {
                self.insert_entries(tx, type_name, items, &digests, &missing).await?;
                let wanted: Vec<Digest> = missing.iter().map(|&i| digests[i]).collect();
                let stored = find_entries(tx, &wanted).await?;
                turn.stored.extend(stored.iter().copied());
                ids.extend(stored);
            }
        }
        digests
            .iter()
            .map(|d| {
                ids.get(d).copied().ok_or_else(|| StoreError::Corrupt {
                    what: "inventory entry",
                    key: hex(d),
                    detail: "inserted but not found again".into(),
                })
            })
            .collect()
    }

    /// Inserts the entries `items[i]` for each `i` of `new` (each digest once).
    async fn insert_entries(
        &self,
        tx: &mut WriteTx,
        type_name: &str,
        items: &[(Option<String>, String)],
        digests: &[Digest],
        new: &[usize],
    ) -> Result<(), StoreError> {
        let last = self.take_entry_ids(tx, new.len()).await?;
        let first = last - i64::try_from(new.len()).unwrap_or(i64::MAX) + 1;
        let mut next = first;
        for chunk in new.chunks(ENTRY_ROWS_PER_INSERT) {
            let rows: Vec<String> = (0..chunk.len()).map(|r| format!("({})", placeholders(r * 5 + 1, 5))).collect();
            // A concurrent report (PostgreSQL) may have stored the same entry first: its row
            // stands and ours is not needed.
            let sql = format!(
                "INSERT INTO inventory_entries (id, digest, type_name, item_key, item) VALUES {} \
                 ON CONFLICT (digest) DO NOTHING",
                rows.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for &i in chunk {
                query =
                    query.bind(next).bind(hex(&digests[i])).bind(type_name).bind(items[i].0.clone()).bind(&items[i].1);
                next += 1;
            }
            query.execute(&mut **tx).await.map_err(q("store inventory entries"))?;
        }
        Ok(())
    }

    /// Takes `n` new entry ids and returns the last. On PostgreSQL the counter is moved in its
    /// own short transaction, so concurrent reports do not queue on its row until they commit
    /// (ids a rolled-back report took are simply never used).
    async fn take_entry_ids(&self, tx: &mut WriteTx, n: usize) -> Result<i64, StoreError> {
        let sql = "UPDATE inventory_entry_ids SET last_id = last_id + $1 WHERE id = 1 RETURNING last_id";
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let row = match self.backend {
            Backend::Postgres => sqlx::query(sql).bind(n).fetch_one(&self.pool).await,
            Backend::Sqlite => sqlx::query(sql).bind(n).fetch_one(&mut **tx).await,
        }
        .map_err(q("take inventory entry ids"))?;
        get(&row, "last_id")
    }

    /// Adds the items of `ids` not in `items` yet, from memory first: an entry's text never
    /// changes (ids are never reused), so a remembered one is right while a set names it.
    async fn load_entries(&self, ids: &[i64], items: &mut HashMap<i64, String>) -> Result<(), StoreError> {
        let mut needed: Vec<i64> = Vec::new();
        {
            let texts = self.entry_texts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in ids {
                if items.contains_key(id) {
                    continue;
                }
                match texts.texts.get(id) {
                    Some(text) => drop(items.insert(*id, text.to_string())),
                    None => needed.push(*id),
                }
            }
        }
        needed.sort_unstable();
        needed.dedup();
        let mut read = Vec::with_capacity(needed.len());
        for chunk in needed.chunks(MAX_BINDS) {
            let sql = format!("SELECT id, item FROM inventory_entries WHERE id IN ({})", placeholders(1, chunk.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await.map_err(q("read inventory entries"))? {
                let (id, item): (i64, String) = (get(&row, "id")?, get(&row, "item")?);
                read.push((id, std::sync::Arc::<str>::from(item.as_str())));
                items.insert(id, item);
            }
        }
        if !read.is_empty() {
            self.entry_texts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(read);
        }
        Ok(())
    }

    /// Moves the rows of 0003's per-item table into entries and sets, one node's type per
    /// transaction (so an interrupted start resumes where it stopped). Runs when the store opens.
    pub(super) async fn convert_item_rows(&self) -> Result<(), StoreError> {
        let mut moved = 0_usize;
        loop {
            let pairs = sqlx::query(
                "SELECT DISTINCT type_name, node_id FROM inventory_items ORDER BY type_name, node_id LIMIT 100",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(q("read inventory to convert"))?;
            if pairs.is_empty() {
                break;
            }
            for pair in &pairs {
                let type_name: String = get(pair, "type_name")?;
                let node: String = get(pair, "node_id")?;
                let mut tx = self.begin_write().await.map_err(q("begin an inventory conversion"))?;
                let mut turn = self.entry_turn(&mut tx).await?;
                let rows = sqlx::query(
                    "SELECT item_key, item FROM inventory_items WHERE type_name = $1 AND node_id = $2 ORDER BY seq",
                )
                .bind(&type_name)
                .bind(&node)
                .fetch_all(&mut *tx)
                .await
                .map_err(q("read inventory to convert"))?;
                // Another server converting the same database may have taken this one.
                if !rows.is_empty() {
                    let mut items = Vec::with_capacity(rows.len());
                    for row in &rows {
                        items.push((
                            row.try_get::<Option<String>, _>("item_key").map_err(q("decode a row"))?,
                            get(row, "item")?,
                        ));
                    }
                    self.put_set(&mut tx, &mut turn, &node, &type_name, &items).await?;
                    sqlx::query("DELETE FROM inventory_items WHERE type_name = $1 AND node_id = $2")
                        .bind(&type_name)
                        .bind(&node)
                        .execute(&mut *tx)
                        .await
                        .map_err(q("delete converted inventory rows"))?;
                    moved += rows.len();
                }
                tx.commit().await.map_err(q("commit an inventory conversion"))?;
                self.remember(turn);
            }
        }
        if moved > 0 {
            tracing::info!(items = moved, "moved inventory items into content-addressed storage");
        }
        Ok(())
    }
}

/// A row of `inventory_sets`, not decoded yet.
struct SetRow<'a> {
    node: &'a str,
    type_name: &'a str,
    base: Option<i64>,
    entries: Arc<[u8]>,
}

impl<'a> SetRow<'a> {
    fn read(row: &AnyRow, node: &'a str, type_name: &'a str) -> Result<SetRow<'a>, StoreError> {
        let CachedSet { base, entries } = CachedSet::read(row)?;
        Ok(SetRow { node, type_name, base, entries })
    }

    /// The set's ids; `bases` holds its base.
    fn ids(&self, bases: &HashMap<i64, Arc<[i64]>>) -> Result<Vec<i64>, StoreError> {
        match self.base {
            None => id_list::decode(&self.entries).ok_or_else(|| self.corrupt("not a list of ids")),
            Some(b) => sets::decode_edits(self.base(bases, b)?, &self.entries)
                .ok_or_else(|| self.corrupt("its edits do not fit its base")),
        }
    }

    /// The ids `keep` accepts, in order; `keyed`: the positions in the set's base that it
    /// accepts (unused for a whole list, which is decoded without collecting the rest).
    fn ids_where(
        &self,
        bases: &HashMap<i64, Arc<[i64]>>,
        keyed: &[usize],
        keep: impl FnMut(i64) -> bool,
    ) -> Result<Vec<i64>, StoreError> {
        match self.base {
            None => id_list::decode_where(&self.entries, keep).ok_or_else(|| self.corrupt("not a list of ids")),
            Some(b) => sets::decode_edits_where(self.base(bases, b)?, keyed, &self.entries, keep)
                .ok_or_else(|| self.corrupt("its edits do not fit its base")),
        }
    }

    fn base<'b>(&self, bases: &'b HashMap<i64, Arc<[i64]>>, id: i64) -> Result<&'b [i64], StoreError> {
        bases.get(&id).map(|l| &l[..]).ok_or_else(|| self.corrupt(&format!("its base {id} is not stored")))
    }

    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Corrupt {
            what: "inventory set",
            key: format!("{}/{}", self.node, self.type_name),
            detail: detail.to_owned(),
        }
    }
}

/// Deletes the rows of `table` (a name from this file, never input) whose id is in `ids`.
async fn delete_ids(tx: &mut WriteTx, table: &str, ids: &[i64], what: &'static str) -> Result<(), StoreError> {
    for chunk in ids.chunks(MAX_BINDS) {
        let sql = format!("DELETE FROM {table} WHERE id IN ({})", placeholders(1, chunk.len()));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await.map_err(q(what))?;
    }
    Ok(())
}

/// A base row's id list.
fn base_ids(row: &AnyRow, id: i64) -> Result<Arc<[i64]>, StoreError> {
    let bytes: Vec<u8> = get(row, "entries")?;
    id_list::decode(&bytes).map(Arc::from).ok_or_else(|| StoreError::Corrupt {
        what: "inventory base",
        key: id.to_string(),
        detail: "the entry list is not a list of ids".into(),
    })
}

fn entry(items: &HashMap<i64, String>, id: i64, node: &str, type_name: &str) -> Result<String, StoreError> {
    items.get(&id).cloned().ok_or_else(|| StoreError::Corrupt {
        what: "inventory set",
        key: format!("{node}/{type_name}"),
        detail: format!("it names entry {id}, which is not stored"),
    })
}

/// The ids of those of `digests` that are stored.
async fn find_entries(tx: &mut WriteTx, digests: &[Digest]) -> Result<Vec<(Digest, i64)>, StoreError> {
    let mut found = Vec::with_capacity(digests.len());
    for chunk in digests.chunks(MAX_BINDS) {
        let by_hex: HashMap<String, Digest> = chunk.iter().map(|d| (hex(d), *d)).collect();
        let sql =
            format!("SELECT id, digest FROM inventory_entries WHERE digest IN ({})", placeholders(1, chunk.len()));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for d in by_hex.keys() {
            query = query.bind(d);
        }
        for row in query.fetch_all(&mut **tx).await.map_err(q("look inventory entries up"))? {
            let text: String = get(&row, "digest")?;
            if let Some(d) = by_hex.get(&text) {
                found.push((*d, get(&row, "id")?));
            }
        }
    }
    Ok(found)
}

/// An entry's name: the SHA-256 of its type (entries are per type), a NUL and its text.
type Digest = [u8; 32];

fn digest(type_name: &str, item: &str) -> Digest {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(type_name.as_bytes());
    ctx.update(&[0]);
    ctx.update(item.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A digest as stored (lower-case hex).
fn hex(d: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in d {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Entry ids this process has seen committed, by digest, under the sweep count `sweeps`: an
/// id is used from here without asking the database only while no sweep (in any process) has
/// deleted entries since. Bounded: past [`MAX_KNOWN_ENTRIES`] it starts again.
#[derive(Default)]
pub(super) struct KnownEntries {
    sweeps: i64,
    ids: HashMap<Digest, i64>,
}

impl KnownEntries {
    fn add(&mut self, entries: impl IntoIterator<Item = (Digest, i64)>) {
        if self.ids.len() > MAX_KNOWN_ENTRIES {
            self.ids.clear();
        }
        self.ids.extend(entries);
    }
}

/// Entry texts this process has read, by id; bounded by [`MAX_ENTRY_TEXT_BYTES`] (past it, it
/// starts again).
#[derive(Default)]
pub(super) struct EntryTexts {
    bytes: usize,
    texts: HashMap<i64, std::sync::Arc<str>>,
}

impl EntryTexts {
    fn add(&mut self, read: Vec<(i64, std::sync::Arc<str>)>) {
        for (id, text) in read {
            if self.bytes > MAX_ENTRY_TEXT_BYTES {
                *self = EntryTexts::default();
            }
            self.bytes += text.len() + 32;
            self.texts.insert(id, text);
        }
    }
}

/// Set bases this process has read or written. `lists`: any base's ids by base id — right
/// while a set names the base, as a base never changes and ids are never reused; bounded by
/// [`MAX_BASE_LISTS`]. `by_type`: the bases a writer compares a new set with, used only while
/// no sweep has run since `sweeps`.
#[derive(Default)]
pub(super) struct Bases {
    sweeps: i64,
    by_type: HashMap<String, Vec<Arc<Base>>>,
    lists: HashMap<i64, Arc<[i64]>>,
}

impl Bases {
    fn keep_list(&mut self, id: i64, list: Arc<[i64]>) {
        if self.lists.len() >= MAX_BASE_LISTS {
            self.lists.clear();
        }
        self.lists.insert(id, list);
    }
}

/// A transaction's part in naming entries (see [`SqlStore::entry_turn`]).
pub(super) struct EntryTurn {
    sweeps: i64,
    /// Entries this transaction stored: known once it committed.
    stored: Vec<(Digest, i64)>,
    /// Bases this transaction stored, with their type: known once it committed.
    new_bases: Vec<(String, Arc<Base>)>,
    /// SQLite: the sets this transaction wrote (type, node, set; `None` deleted), for [`SetCache`].
    sets: Vec<(String, String, Option<CachedSet>)>,
}

/// SQLite only (one process owns the file): each scanned type's sets as stored, by node, so a
/// fleet query walks memory rather than a thousand rows per statement through sqlx (each row
/// crossing threads and copied twice was most of a 10,000-node query). A type is loaded on its
/// first scan while holding the writer queue, so no write commits during the load; every
/// write's sets are applied after it commits ([`SqlStore::remember`]), and applying one twice
/// changes nothing. A set is a few hundred bytes (a base's edits) to a few KiB (a whole list).
#[derive(Default)]
pub(super) struct SetCache {
    types: HashMap<String, BTreeMap<String, CachedSet>>,
}

#[derive(Clone)]
pub(super) struct CachedSet {
    base: Option<i64>,
    entries: Arc<[u8]>,
}

impl CachedSet {
    /// The `base_id` and `entries` columns of an `inventory_sets` row.
    fn read(row: &AnyRow) -> Result<CachedSet, StoreError> {
        let base = row.try_get::<Option<i64>, _>("base_id").map_err(q("decode a row"))?;
        Ok(CachedSet { base, entries: get::<Vec<u8>>(row, "entries")?.into() })
    }
}
