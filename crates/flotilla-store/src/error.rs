//! Storage errors: what failed, on which database, and what to do.

/// A storage failure. Messages name the operation; the source carries the driver's detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the {backend} database at {location}: {source}")]
    Open { backend: &'static str, location: String, source: sqlx::Error },
    #[error("cannot apply database migrations on {backend}: {source}")]
    Migrate { backend: &'static str, source: sqlx::migrate::MigrateError },
    #[error("database error while trying to {op}: {source}")]
    Query { op: &'static str, source: sqlx::Error },
    #[error("the database holds a malformed {what} for `{key}`: {detail}")]
    Corrupt { what: &'static str, key: String, detail: String },
    /// A status, severity or kind column holds a name this version does not know. Never read
    /// as a default: a wrong guess (Pending for an invocation that ended) would be acted upon.
    #[error(
        "the {table} row `{key}` holds {column} `{value}`, which this version of Flotilla does not know: \
         the database was written by a newer version or edited by hand; upgrade the server or correct that row"
    )]
    UnknownValue { table: &'static str, key: String, column: &'static str, value: String },
    #[error("`{0}` is not a database URL Flotilla understands: use postgres://... or sqlite://PATH")]
    UnsupportedUrl(String),
}
