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
    #[error("`{0}` is not a database URL Flotilla understands: use postgres://... or sqlite://PATH")]
    UnsupportedUrl(String),
}
