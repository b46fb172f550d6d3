//! The SQL back ends: connection set-up, the migration lists, the write queue and the row
//! helpers every domain's SQL (`sql/<domain>.rs`) shares. One implementation over sqlx's `Any`
//! driver serves SQLite and PostgreSQL: the schema and every query are written in the subset
//! both engines share, with `$N` placeholders, so the contract suite exercises the same code on
//! both.
//!
//! Invariants: times are Unix milliseconds; tags and lists are JSON text; every multi-row
//! change runs in one transaction.

mod assessments;
mod associations;
mod commands;
mod compliance;
pub(crate) mod events;
mod fleet;
mod inventory;
mod notifications;
mod parameters;
mod patch;
mod schedules;
mod sessions;
mod vulndb;
mod windows;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row, SqlSafeStr};

use crate::{Store, StoreError};

/// Versioned migrations per engine, embedded in the binary. Append only: a released
/// migration is never edited (sqlx checks each applied one's checksum at start-up).
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../../migrations/sqlite/0001_foundation.sql")),
    (2, "commands", include_str!("../../migrations/sqlite/0002_commands.sql")),
    (3, "inventory", include_str!("../../migrations/sqlite/0003_inventory.sql")),
    (4, "parameters", include_str!("../../migrations/sqlite/0004_parameters.sql")),
    (5, "vulndb", include_str!("../../migrations/sqlite/0005_vulndb.sql")),
    (6, "assessments", include_str!("../../migrations/sqlite/0006_assessments.sql")),
    (7, "assessment_templates", include_str!("../../migrations/sqlite/0007_assessment_templates.sql")),
    (8, "advisory_age", include_str!("../../migrations/sqlite/0008_advisory_age.sql")),
    (9, "schedules", include_str!("../../migrations/sqlite/0009_schedules.sql")),
    (10, "events", include_str!("../../migrations/sqlite/0010_events.sql")),
    (11, "invocation_state", include_str!("../../migrations/sqlite/0011_invocation_state.sql")),
    (12, "associations", include_str!("../../migrations/sqlite/0012_associations.sql")),
    (13, "windows", include_str!("../../migrations/sqlite/0013_windows.sql")),
    (14, "notifications", include_str!("../../migrations/sqlite/0014_notifications.sql")),
    (15, "sessions", include_str!("../../migrations/sqlite/0015_sessions.sql")),
    (16, "patch", include_str!("../../migrations/sqlite/0016_patch.sql")),
    (17, "notify_and_seeds", include_str!("../../migrations/sqlite/0017_notify_and_seeds.sql")),
    (18, "output_inline", include_str!("../../migrations/sqlite/0018_output_inline.sql")),
    (19, "inventory_entries", include_str!("../../migrations/sqlite/0019_inventory_entries.sql")),
    (20, "inventory_bases", include_str!("../../migrations/sqlite/0020_inventory_bases.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../../migrations/postgres/0001_foundation.sql")),
    (2, "commands", include_str!("../../migrations/postgres/0002_commands.sql")),
    (3, "inventory", include_str!("../../migrations/postgres/0003_inventory.sql")),
    (4, "parameters", include_str!("../../migrations/postgres/0004_parameters.sql")),
    (5, "vulndb", include_str!("../../migrations/postgres/0005_vulndb.sql")),
    (6, "assessments", include_str!("../../migrations/postgres/0006_assessments.sql")),
    (7, "assessment_templates", include_str!("../../migrations/postgres/0007_assessment_templates.sql")),
    (8, "advisory_age", include_str!("../../migrations/postgres/0008_advisory_age.sql")),
    (9, "schedules", include_str!("../../migrations/postgres/0009_schedules.sql")),
    (10, "events", include_str!("../../migrations/postgres/0010_events.sql")),
    (11, "invocation_state", include_str!("../../migrations/postgres/0011_invocation_state.sql")),
    (12, "associations", include_str!("../../migrations/postgres/0012_associations.sql")),
    (13, "windows", include_str!("../../migrations/postgres/0013_windows.sql")),
    (14, "notifications", include_str!("../../migrations/postgres/0014_notifications.sql")),
    (15, "sessions", include_str!("../../migrations/postgres/0015_sessions.sql")),
    (16, "patch", include_str!("../../migrations/postgres/0016_patch.sql")),
    (17, "notify_and_seeds", include_str!("../../migrations/postgres/0017_notify_and_seeds.sql")),
    (18, "output_inline", include_str!("../../migrations/postgres/0018_output_inline.sql")),
    (19, "inventory_entries", include_str!("../../migrations/postgres/0019_inventory_entries.sql")),
    (20, "inventory_bases", include_str!("../../migrations/postgres/0020_inventory_bases.sql")),
];

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    (*name).into(),
                    MigrationType::Simple,
                    AssertSqlSafe(*sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A [`Store`] on SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: write transactions queue here, in this process and in order, rather than
    /// in SQLite's busy handler, which sleeps up to 100 ms between tries and so turns a burst
    /// of concurrent writers (every agent reporting at once) into mostly sleeping.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// The highest event sequence number this process has committed: told after each commit
    /// of a transaction that appended events, so in-process subscribers wake without polling.
    appended: Arc<tokio::sync::watch::Sender<i64>>,
    /// Inventory entry ids this process has seen committed (see `sql/inventory.rs`).
    known_entries: Arc<std::sync::Mutex<inventory::KnownEntries>>,
    /// Inventory entry texts this process has read (see `sql/inventory.rs`).
    entry_texts: Arc<std::sync::Mutex<inventory::EntryTexts>>,
    /// Inventory set bases this process has read or written (see `sql/inventory.rs`).
    bases: Arc<std::sync::Mutex<inventory::Bases>>,
    /// SQLite only: scanned types' inventory sets (see `sql/inventory.rs`).
    sets: Option<Arc<std::sync::Mutex<inventory::SetCache>>>,
}

/// A write transaction (see [`SqlStore::writer`]); used like sqlx's `Transaction`.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// The last event sequence number appended in this transaction (`events::append`).
    pub(crate) appended: Option<i64>,
    notify: Arc<tokio::sync::watch::Sender<i64>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        if let Some(seq) = self.appended {
            // Only after the commit: a woken reader must find the events.
            self.notify.send_if_modified(|last| {
                let newer = seq > *last;
                if newer {
                    *last = seq;
                }
                newer
            });
        }
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Most bind parameters in one statement. Not an engine limit: sqlx's SQLite driver finds each
/// parameter's argument through `sqlite3_bind_parameter_name`, a linear scan of the statement's
/// parameter list, so binding is quadratic in the count — a 2,500-parameter INSERT spent more
/// time there than in SQLite writing the rows. Multi-row statements are sized from this.
pub(crate) const MAX_BINDS: usize = 200;

/// `$first, $first+1, ...`: `n` placeholders, for a statement's `IN (...)` or `VALUES (...)`.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

fn q(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

impl SqlStore {
    /// Begins a write transaction, after the writers queued before it on SQLite.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let (turn, tx) = match &self.writer {
            // IMMEDIATE: the write lock is taken at BEGIN, where SQLite's busy handler waits
            // for it. A deferred one reads first and then upgrades, and an upgrade finding the
            // lock held fails at once ("database is locked") — as it did when the writer
            // before had dropped its transaction and its ROLLBACK had not run yet.
            Some(writer) => (Some(writer.clone().lock_owned().await), self.pool.begin_with("BEGIN IMMEDIATE").await?),
            None => (None, self.pool.begin().await?),
        };
        Ok(WriteTx { tx, _turn: turn, appended: None, notify: self.appended.clone() })
    }

    /// Opens (creating if missing) the SQLite database file at `path`, in WAL mode, and
    /// applies pending migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let location = path.display().to_string();
        // SQLite allows one writer at a time; a small pool avoids needless lock contention.
        Self::open(Backend::Sqlite, &url, location, 4).await
    }

    /// Connects to PostgreSQL at `url` (`postgres://...`) and applies pending migrations.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        Self::open(Backend::Postgres, url, redact(url), 16).await
    }

    /// Opens whichever back end `url` names: `postgres://`/`postgresql://` or `sqlite://PATH`.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url).await
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Self::open_sqlite(Path::new(path)).await
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }

    async fn open(backend: Backend, url: &str, location: String, max: u32) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let open_err = |source| StoreError::Open { backend: backend.name(), location: location.clone(), source };
        let options = AnyConnectOptions::from_str(url).map_err(open_err)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            // 32 MiB of page cache per connection (SQLite's default is 2 MiB):
                            // a fleet query passes over every node's inventory set, 13 MB at
                            // 10,000 nodes, which otherwise is a pread per page every time.
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; \
                             PRAGMA foreign_keys=ON; PRAGMA cache_size=-32768;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let migrator = migrator(match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        });
        migrator.run(&pool).await.map_err(|source| StoreError::Migrate { backend: backend.name(), source })?;
        let writer = (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        let appended = Arc::new(tokio::sync::watch::Sender::new(0));
        let store = SqlStore {
            pool,
            backend,
            writer,
            appended,
            known_entries: Arc::default(),
            entry_texts: Arc::default(),
            bases: Arc::default(),
            sets: (backend == Backend::Sqlite).then(Arc::default),
        };
        store.convert_item_rows().await?;
        Ok(store)
    }

    /// Closes every connection; used on shutdown so SQLite checkpoints its WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Hides a password in a database URL before it reaches a log or an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising maps and vectors of strings cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &'static str, key: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { what, key: key.to_owned(), detail: e.to_string() })
}

/// Reads a text column holding an enum's name (a status, severity, kind), refusing a name the
/// enum does not know with an error naming the table, the row's key and the column.
fn parse<T: FromStr>(row: &AnyRow, table: &'static str, key: &str, column: &'static str) -> Result<T, StoreError> {
    let value: String = get(row, column)?;
    value.parse().map_err(|_| StoreError::UnknownValue { table, key: key.to_owned(), column, value })
}

fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(q("decode a row"))
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(q("ping the database"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, redact};

    /// One schema for both engines: the same versions, names and statements. When an engine
    /// needs its own SQL one day, this test is where the difference gets named and allowed.
    #[test]
    fn both_engines_migrate_to_the_same_schema() {
        assert_eq!(SQLITE_MIGRATIONS.len(), POSTGRES_MIGRATIONS.len());
        for (sqlite, postgres) in SQLITE_MIGRATIONS.iter().zip(POSTGRES_MIGRATIONS) {
            assert_eq!((sqlite.0, sqlite.1), (postgres.0, postgres.1), "versions and names pair up");
            assert_eq!(sqlite.2, postgres.2, "migration {} ({}) differs between the engines", sqlite.0, sqlite.1);
        }
        let versions: Vec<i64> = SQLITE_MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions, (1..=i64::try_from(versions.len()).expect("few")).collect::<Vec<_>>(), "no gaps");
        // A migration file that is not in the list would never run.
        for engine in ["sqlite", "postgres"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(engine);
            let files = std::fs::read_dir(&dir).expect("migrations dir").count();
            assert_eq!(files, SQLITE_MIGRATIONS.len(), "{} holds files not listed in sql/mod.rs", dir.display());
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
