//! Throwaway PostgreSQL databases on an existing server (the CI machine's 127.0.0.1:5432).

use anyhow::Context;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// A database created for one test and dropped by [`TempDatabase::drop_database`].
pub struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// The server tests create their databases on: `FLOTILLA_TEST_POSTGRES`, or this machine
/// kind's local PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("FLOTILLA_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TempDatabase {
    /// A throwaway database on [`admin_url`]; panics with what to do when PostgreSQL is not
    /// reachable (this is for tests, where that is the clearest failure).
    pub async fn for_test() -> TempDatabase {
        match TempDatabase::create(&admin_url()).await {
            Ok(db) => db,
            Err(e) => panic!("PostgreSQL must be reachable for this test (set FLOTILLA_TEST_POSTGRES): {e:#}"),
        }
    }

    /// Creates `flotilla_test_<random>` through `admin_url` (a URL of an existing database).
    pub async fn create(admin_url: &str) -> anyhow::Result<TempDatabase> {
        let mut conn = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {admin_url}"))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let name = format!("flotilla_test_{}_{nanos}", std::process::id());
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.context("CREATE DATABASE")?;
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin_url);
        Ok(TempDatabase { admin_url: admin_url.to_owned(), url: format!("{base}/{name}"), name })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one statement on the database, bypassing the server: how tests plant what an
    /// older or newer server, or a hand edit, could leave behind. Returns the rows affected.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<u64> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let done = conn.execute(AssertSqlSafe(sql.to_owned())).await.with_context(|| format!("cannot run {sql}"))?;
        Ok(done.rows_affected())
    }

    pub async fn drop_database(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).await?;
        Ok(())
    }
}
