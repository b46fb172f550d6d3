//! The SQL back ends. One implementation over sqlx's `Any` driver serves SQLite and
//! PostgreSQL: the schema and every query are written in the subset both engines share, with
//! `$N` placeholders, so the contract suite exercises the same code on both.
//!
//! Invariants: times are Unix milliseconds; tags and lists are JSON text; every multi-row
//! change runs in one transaction.

mod assessments;
mod inventory;
mod parameters;
mod schedules;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use flotilla_core::{Activation, Node, NodeId, NodeInfo, NodeStatus, Platform, Tags, UnixMillis};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row, SqlSafeStr};

use crate::{
    CommandRecord, DocumentHead, DocumentVersion, Enrollment, InvocationRecord, Store, StoreError, TargetGroup,
};

/// Versioned migrations per engine, embedded in the binary. Append only: a released
/// migration is never edited (sqlx checks each applied one's checksum at start-up).
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../migrations/sqlite/0001_foundation.sql")),
    (2, "commands", include_str!("../migrations/sqlite/0002_commands.sql")),
    (3, "inventory", include_str!("../migrations/sqlite/0003_inventory.sql")),
    (4, "parameters", include_str!("../migrations/sqlite/0004_parameters.sql")),
    (5, "vulndb", include_str!("../migrations/sqlite/0005_vulndb.sql")),
    (6, "assessments", include_str!("../migrations/sqlite/0006_assessments.sql")),
    (7, "assessment_templates", include_str!("../migrations/sqlite/0007_assessment_templates.sql")),
    (8, "advisory_age", include_str!("../migrations/sqlite/0008_advisory_age.sql")),
    (9, "schedules", include_str!("../migrations/sqlite/0009_schedules.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../migrations/postgres/0001_foundation.sql")),
    (2, "commands", include_str!("../migrations/postgres/0002_commands.sql")),
    (3, "inventory", include_str!("../migrations/postgres/0003_inventory.sql")),
    (4, "parameters", include_str!("../migrations/postgres/0004_parameters.sql")),
    (5, "vulndb", include_str!("../migrations/postgres/0005_vulndb.sql")),
    (6, "assessments", include_str!("../migrations/postgres/0006_assessments.sql")),
    (7, "assessment_templates", include_str!("../migrations/postgres/0007_assessment_templates.sql")),
    (8, "advisory_age", include_str!("../migrations/postgres/0008_advisory_age.sql")),
    (9, "schedules", include_str!("../migrations/postgres/0009_schedules.sql")),
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
}

/// A write transaction (see [`SqlStore::writer`]); used like sqlx's `Transaction`.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
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

fn q(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

impl SqlStore {
    /// Begins a write transaction, after the writers queued before it on SQLite.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let turn = match &self.writer {
            Some(writer) => Some(writer.clone().lock_owned().await),
            None => None,
        };
        Ok(WriteTx { tx: self.pool.begin().await?, _turn: turn })
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
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
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
        Ok(SqlStore { pool, backend, writer })
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

fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(q("decode a row"))
}

const ACTIVATION_COLUMNS: &str =
    "id, code_hash, description, registration_limit, registrations, expires_at, default_tags, created_at";

fn activation_from_row(row: &AnyRow) -> Result<Activation, StoreError> {
    let id: String = get(row, "id")?;
    let tags: String = get(row, "default_tags")?;
    Ok(Activation {
        default_tags: from_json(&tags, "activation tags", &id)?,
        code_hash: get(row, "code_hash")?,
        description: get(row, "description")?,
        registration_limit: u32::try_from(get::<i64>(row, "registration_limit")?).unwrap_or(0),
        registrations: u32::try_from(get::<i64>(row, "registrations")?).unwrap_or(u32::MAX),
        expires_at: get(row, "expires_at")?,
        created_at: get(row, "created_at")?,
        id,
    })
}

const NODE_COLUMNS: &str = "id, hostname, status, last_seen, platform_name, platform_version, platform_id, kernel, arch, \
     agent_version, addresses, tags, activation_id, registered_at, cert_fingerprint";

fn node_from_row(row: &AnyRow) -> Result<Node, StoreError> {
    let id: String = get(row, "id")?;
    let corrupt = |what: &'static str, detail: String| StoreError::Corrupt { what, key: id.clone(), detail };
    let status: String = get(row, "status")?;
    let addresses: String = get(row, "addresses")?;
    let tags: String = get(row, "tags")?;
    Ok(Node {
        id: NodeId::from_str(&id).map_err(|e| corrupt("node id", e.to_string()))?,
        hostname: get(row, "hostname")?,
        status: NodeStatus::from_str(&status).map_err(|e| corrupt("node status", e))?,
        last_seen: get(row, "last_seen")?,
        platform: Platform {
            name: get(row, "platform_name")?,
            version: get(row, "platform_version")?,
            id: get(row, "platform_id")?,
        },
        kernel: get(row, "kernel")?,
        arch: get(row, "arch")?,
        agent_version: get(row, "agent_version")?,
        addresses: from_json(&addresses, "node addresses", &id)?,
        tags: from_json(&tags, "node tags", &id)?,
        activation_id: get(row, "activation_id")?,
        registered_at: get(row, "registered_at")?,
        cert_fingerprint: get(row, "cert_fingerprint")?,
    })
}

const COMMAND_COLUMNS: &str = "id, document, document_version, parameters, targets, plan, max_concurrency, max_errors, \
     delivery_timeout_ms, comment, status, stopped_for_errors, cancel_requested, created_at, ended_at";

fn command_from_row(row: &AnyRow) -> Result<CommandRecord, StoreError> {
    Ok(CommandRecord {
        id: get(row, "id")?,
        document: get(row, "document")?,
        document_version: get(row, "document_version")?,
        parameters: get(row, "parameters")?,
        targets: get(row, "targets")?,
        plan: get(row, "plan")?,
        max_concurrency: get(row, "max_concurrency")?,
        max_errors: get(row, "max_errors")?,
        delivery_timeout_ms: get(row, "delivery_timeout_ms")?,
        comment: get(row, "comment")?,
        status: get(row, "status")?,
        stopped_for_errors: get::<i64>(row, "stopped_for_errors")? != 0,
        cancel_requested: get::<i64>(row, "cancel_requested")? != 0,
        created_at: get(row, "created_at")?,
        ended_at: get(row, "ended_at")?,
    })
}

const INVOCATION_COLUMNS: &str = "command_id, node_id, status, exit_code, dispatched_at, started_at, ended_at, stdout, \
     stderr, stdout_truncated, stderr_truncated, stdout_bytes, stderr_bytes, detail";

fn invocation_from_row(row: &AnyRow) -> Result<InvocationRecord, StoreError> {
    Ok(InvocationRecord {
        command_id: get(row, "command_id")?,
        node_id: get(row, "node_id")?,
        status: get(row, "status")?,
        exit_code: get(row, "exit_code")?,
        dispatched_at: get(row, "dispatched_at")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        stdout: get(row, "stdout")?,
        stderr: get(row, "stderr")?,
        stdout_truncated: get::<i64>(row, "stdout_truncated")? != 0,
        stderr_truncated: get::<i64>(row, "stderr_truncated")? != 0,
        stdout_bytes: get(row, "stdout_bytes")?,
        stderr_bytes: get(row, "stderr_bytes")?,
        detail: get(row, "detail")?,
    })
}

const DOCUMENT_HEAD_SELECT: &str = "SELECT h.name, h.latest_version, h.default_version, d.description \
     FROM document_heads h JOIN documents d ON d.name = h.name AND d.version = h.default_version";

fn document_head_from_row(row: &AnyRow) -> Result<DocumentHead, StoreError> {
    Ok(DocumentHead {
        name: get(row, "name")?,
        latest_version: get(row, "latest_version")?,
        default_version: get(row, "default_version")?,
        description: get(row, "description")?,
    })
}

fn document_from_row(row: &AnyRow) -> Result<DocumentVersion, StoreError> {
    Ok(DocumentVersion {
        name: get(row, "name")?,
        version: get(row, "version")?,
        content: get(row, "content")?,
        description: get(row, "description")?,
        format: get(row, "format")?,
        created_at: get(row, "created_at")?,
    })
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

    async fn create_activation(&self, a: &Activation) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO activations ({ACTIVATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&a.id)
        .bind(&a.code_hash)
        .bind(&a.description)
        .bind(i64::from(a.registration_limit))
        .bind(i64::from(a.registrations))
        .bind(a.expires_at)
        .bind(to_json(&a.default_tags))
        .bind(a.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("create an activation"))?;
        Ok(())
    }

    async fn get_activation(&self, id: &str) -> Result<Option<Activation>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {ACTIVATION_COLUMNS} FROM activations WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read an activation"))?;
        row.as_ref().map(activation_from_row).transpose()
    }

    async fn list_activations(&self) -> Result<Vec<Activation>, StoreError> {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {ACTIVATION_COLUMNS} FROM activations ORDER BY created_at, id")))
                .fetch_all(&self.pool)
                .await
                .map_err(q("list activations"))?;
        rows.iter().map(activation_from_row).collect()
    }

    async fn delete_activation(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM activations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("delete an activation"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn enroll_node(&self, activation_id: &str, n: &Node) -> Result<Enrollment, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin an enrollment"))?;
        let taken = sqlx::query(
            "UPDATE activations SET registrations = registrations + 1 \
             WHERE id = $1 AND registrations < registration_limit",
        )
        .bind(activation_id)
        .execute(&mut *tx)
        .await
        .map_err(q("take a registration from an activation"))?;
        if taken.rows_affected() == 0 {
            return Ok(Enrollment::LimitReached);
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )))
        .bind(n.id.as_str())
        .bind(&n.hostname)
        .bind(n.status.as_str())
        .bind(n.last_seen)
        .bind(&n.platform.name)
        .bind(&n.platform.version)
        .bind(&n.platform.id)
        .bind(&n.kernel)
        .bind(&n.arch)
        .bind(&n.agent_version)
        .bind(to_json(&n.addresses))
        .bind(to_json(&n.tags))
        .bind(&n.activation_id)
        .bind(n.registered_at)
        .bind(&n.cert_fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(q("insert an enrolled node"))?;
        tx.commit().await.map_err(q("commit an enrollment"))?;
        Ok(Enrollment::Enrolled)
    }

    async fn get_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1")))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a node"))?;
        row.as_ref().map(node_from_row).transpose()
    }

    async fn list_nodes(&self) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY hostname, id")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list nodes"))?;
        rows.iter().map(node_from_row).collect()
    }

    async fn node_connected(&self, id: &NodeId, info: &NodeInfo, now: UnixMillis) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE nodes SET status = 'Online', last_seen = $1, hostname = $2, platform_name = $3, \
             platform_version = $4, platform_id = $5, kernel = $6, arch = $7, agent_version = $8, addresses = $9 \
             WHERE id = $10 AND status <> 'Deregistered'",
        )
        .bind(now)
        .bind(&info.hostname)
        .bind(&info.platform.name)
        .bind(&info.platform.version)
        .bind(&info.platform.id)
        .bind(&info.kernel)
        .bind(&info.arch)
        .bind(&info.agent_version)
        .bind(to_json(&info.addresses))
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(q("record a node's connection"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn nodes_lost(&self, ids: &[NodeId]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin marking nodes lost"))?;
        for id in ids {
            sqlx::query("UPDATE nodes SET status = 'ConnectionLost' WHERE id = $1 AND status = 'Online'")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q("mark a node ConnectionLost"))?;
        }
        tx.commit().await.map_err(q("commit nodes lost"))
    }

    async fn expire_silent_nodes(&self, before: UnixMillis) -> Result<Vec<NodeId>, StoreError> {
        let rows = sqlx::query(
            "UPDATE nodes SET status = 'ConnectionLost' \
             WHERE status = 'Online' AND (last_seen IS NULL OR last_seen < $1) RETURNING id",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .map_err(q("expire silent nodes"))?;
        rows.iter()
            .map(|row| {
                let id: String = get(row, "id")?;
                NodeId::from_str(&id).map_err(|e| StoreError::Corrupt {
                    what: "node id",
                    key: id,
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    async fn touch_nodes(&self, seen: &[(NodeId, UnixMillis)]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin a last-seen update"))?;
        for (id, at) in seen {
            sqlx::query("UPDATE nodes SET last_seen = $1 WHERE id = $2 AND (last_seen IS NULL OR last_seen < $1)")
                .bind(*at)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q("update a node's last-seen time"))?;
        }
        tx.commit().await.map_err(q("commit a last-seen update"))
    }

    async fn set_tags(&self, id: &NodeId, tags: &Tags) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE nodes SET tags = $1 WHERE id = $2")
            .bind(to_json(tags))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(q("set a node's tags"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn deregister_node(&self, id: &NodeId) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE nodes SET status = 'Deregistered' WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(q("deregister a node"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_api_token(&self, name: &str, token_hash: &str, now: UnixMillis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at",
        )
        .bind(name)
        .bind(token_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("store an API token"))?;
        Ok(())
    }

    async fn find_api_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT name FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("look up an API token"))?;
        row.as_ref().map(|r| get(r, "name")).transpose()
    }

    async fn put_group(&self, g: &TargetGroup) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO target_groups (name, targets, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET targets = excluded.targets",
        )
        .bind(&g.name)
        .bind(to_json(&g.targets))
        .bind(g.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("save a target group"))?;
        Ok(())
    }

    async fn list_groups(&self) -> Result<Vec<TargetGroup>, StoreError> {
        let rows = sqlx::query("SELECT name, targets, created_at FROM target_groups ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list target groups"))?;
        rows.iter()
            .map(|row| {
                let name: String = get(row, "name")?;
                let targets: String = get(row, "targets")?;
                Ok(TargetGroup {
                    targets: from_json(&targets, "group targets", &name)?,
                    created_at: get(row, "created_at")?,
                    name,
                })
            })
            .collect()
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM target_groups WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("delete a target group"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_document(&self, doc: &DocumentVersion) -> Result<i64, StoreError> {
        let name = doc.name.as_str();
        let mut tx = self.begin_write().await.map_err(q("begin a document update"))?;
        let head = sqlx::query("SELECT latest_version FROM document_heads WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read a document's latest version"))?;
        let version = match head {
            Some(row) => get::<i64>(&row, "latest_version")? + 1,
            None => 1,
        };
        if version == 1 {
            sqlx::query("INSERT INTO document_heads (name, latest_version, default_version) VALUES ($1, 1, 1)")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(q("create a document"))?;
        } else {
            // The conditional update makes two concurrent updates conflict instead of both
            // claiming the same version.
            let done =
                sqlx::query("UPDATE document_heads SET latest_version = $1 WHERE name = $2 AND latest_version = $3")
                    .bind(version)
                    .bind(name)
                    .bind(version - 1)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("advance a document's version"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Query { op: "advance a document's version", source: sqlx::Error::RowNotFound });
            }
        }
        sqlx::query(
            "INSERT INTO documents (name, version, content, description, format, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(name)
        .bind(version)
        .bind(&doc.content)
        .bind(&doc.description)
        .bind(&doc.format)
        .bind(doc.created_at)
            .execute(&mut *tx)
            .await
            .map_err(q("store a document version"))?;
        tx.commit().await.map_err(q("commit a document version"))?;
        Ok(version)
    }

    async fn get_document(&self, name: &str, version: Option<i64>) -> Result<Option<DocumentVersion>, StoreError> {
        let row = match version {
            Some(v) => sqlx::query(
                "SELECT name, version, content, description, format, created_at FROM documents WHERE name = $1 AND version = $2",
            )
                .bind(name)
                .bind(v)
                .fetch_optional(&self.pool)
                .await,
            None => sqlx::query(
                "SELECT d.name, d.version, d.content, d.description, d.format, d.created_at FROM documents d \
                 JOIN document_heads h ON h.name = d.name AND h.default_version = d.version WHERE d.name = $1",
            )
            .bind(name)
            .fetch_optional(&self.pool)
            .await,
        }
        .map_err(q("read a document"))?;
        row.as_ref().map(document_from_row).transpose()
    }

    async fn list_documents(&self) -> Result<Vec<DocumentHead>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("{DOCUMENT_HEAD_SELECT} ORDER BY h.name")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list documents"))?;
        rows.iter().map(document_head_from_row).collect()
    }

    async fn get_document_head(&self, name: &str) -> Result<Option<DocumentHead>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{DOCUMENT_HEAD_SELECT} WHERE h.name = $1")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a document"))?;
        row.as_ref().map(document_head_from_row).transpose()
    }

    async fn set_default_document_version(&self, name: &str, version: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE document_heads SET default_version = $1 WHERE name = $2 AND latest_version >= $1 AND $1 >= 1",
        )
        .bind(version)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(q("set a document's default version"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_command(&self, c: &CommandRecord, nodes: &[String]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin creating a command"))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO commands ({COMMAND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )))
        .bind(&c.id)
        .bind(&c.document)
        .bind(c.document_version)
        .bind(&c.parameters)
        .bind(&c.targets)
        .bind(&c.plan)
        .bind(&c.max_concurrency)
        .bind(&c.max_errors)
        .bind(c.delivery_timeout_ms)
        .bind(&c.comment)
        .bind(&c.status)
        .bind(i64::from(c.stopped_for_errors))
        .bind(i64::from(c.cancel_requested))
        .bind(c.created_at)
        .bind(c.ended_at)
        .execute(&mut *tx)
        .await
        .map_err(q("insert a command"))?;
        for node in nodes {
            sqlx::query("INSERT INTO invocations (command_id, node_id, status) VALUES ($1, $2, 'Pending')")
                .bind(&c.id)
                .bind(node)
                .execute(&mut *tx)
                .await
                .map_err(q("insert an invocation"))?;
        }
        tx.commit().await.map_err(q("commit a new command"))
    }

    async fn get_command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a command"))?;
        row.as_ref().map(command_from_row).transpose()
    }

    async fn list_commands(&self, limit: u32) -> Result<Vec<CommandRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COMMAND_COLUMNS} FROM commands ORDER BY created_at DESC, id DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list commands"))?;
        rows.iter().map(command_from_row).collect()
    }

    async fn unfinished_commands(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM commands WHERE ended_at IS NULL ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list unfinished commands"))?;
        rows.iter().map(|row| get(row, "id")).collect()
    }

    async fn update_command(&self, c: &CommandRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE commands SET status = $1, stopped_for_errors = $2, cancel_requested = $3, ended_at = $4 WHERE id = $5",
        )
        .bind(&c.status)
        .bind(i64::from(c.stopped_for_errors))
        .bind(i64::from(c.cancel_requested))
        .bind(c.ended_at)
        .bind(&c.id)
        .execute(&self.pool)
        .await
        .map_err(q("update a command"))?;
        Ok(())
    }

    async fn list_invocations(&self, command_id: &str) -> Result<Vec<InvocationRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE command_id = $1 ORDER BY node_id"
        )))
        .bind(command_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list invocations"))?;
        rows.iter().map(invocation_from_row).collect()
    }

    async fn delete_commands_ended_before(&self, cutoff: UnixMillis) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await.map_err(q("begin deleting old commands"))?;
        sqlx::query(
            "DELETE FROM invocations WHERE command_id IN \
             (SELECT id FROM commands WHERE ended_at IS NOT NULL AND ended_at < $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(q("delete old invocations"))?;
        let rows = sqlx::query("DELETE FROM commands WHERE ended_at IS NOT NULL AND ended_at < $1 RETURNING id")
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("delete old commands"))?;
        tx.commit().await.map_err(q("commit deleting old commands"))?;
        rows.iter().map(|row| get(row, "id")).collect()
    }

    async fn invocation_counts(&self, command_ids: &[String]) -> Result<Vec<(String, String, u32)>, StoreError> {
        let mut out = Vec::new();
        for chunk in command_ids.chunks(MAX_BINDS) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT command_id, status, COUNT(*) AS n FROM invocations WHERE command_id IN ({}) GROUP BY command_id, status",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id);
            }
            let rows = query.fetch_all(&self.pool).await.map_err(q("count invocations"))?;
            for row in &rows {
                let n: i64 = get(row, "n")?;
                out.push((get(row, "command_id")?, get(row, "status")?, u32::try_from(n).unwrap_or(u32::MAX)));
            }
        }
        Ok(out)
    }

    async fn update_invocations(&self, list: &[InvocationRecord]) -> Result<(), StoreError> {
        if list.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await.map_err(q("begin an invocation batch"))?;
        for i in list {
            sqlx::query(
                "UPDATE invocations SET status = $1, exit_code = $2, dispatched_at = $3, started_at = $4, ended_at = $5, \
                 stdout = $6, stderr = $7, stdout_truncated = $8, stderr_truncated = $9, stdout_bytes = $10, \
                 stderr_bytes = $11, detail = $12 WHERE command_id = $13 AND node_id = $14",
            )
            .bind(&i.status)
            .bind(i.exit_code)
            .bind(i.dispatched_at)
            .bind(i.started_at)
            .bind(i.ended_at)
            .bind(&i.stdout)
            .bind(&i.stderr)
            .bind(i64::from(i.stdout_truncated))
            .bind(i64::from(i.stderr_truncated))
            .bind(i.stdout_bytes)
            .bind(i.stderr_bytes)
            .bind(&i.detail)
            .bind(&i.command_id)
            .bind(&i.node_id)
            .execute(&mut *tx)
            .await
            .map_err(q("update an invocation"))?;
        }
        tx.commit().await.map_err(q("commit an invocation batch"))
    }

    // ---- Advisory database (SQL in `vulndb.rs`) ----

    async fn import_advisories(
        &self,
        records: &[crate::AdvisoryRecord],
        now: UnixMillis,
    ) -> Result<Vec<crate::ImportOutcome>, StoreError> {
        crate::vulndb::import(self.begin_write().await.map_err(q("begin an advisory import"))?, records, now).await
    }

    async fn advisory_ids_for(&self, keys: &[(String, String)]) -> Result<Vec<(String, i64)>, StoreError> {
        crate::vulndb::ids_for(&self.pool, keys).await
    }

    async fn advisory_ids_by_key(&self, keys: &[(String, String)]) -> Result<Vec<crate::AdvisoryKeyHit>, StoreError> {
        crate::vulndb::ids_by_key(&self.pool, keys).await
    }

    async fn get_advisories(&self, ids: &[String]) -> Result<Vec<crate::StoredAdvisory>, StoreError> {
        crate::vulndb::get(&self.pool, ids).await
    }

    async fn advisory_stats(&self) -> Result<crate::AdvisoryStats, StoreError> {
        crate::vulndb::stats(&self.pool).await
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
            assert_eq!(files, SQLITE_MIGRATIONS.len(), "{} holds files not listed in sql.rs", dir.display());
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
