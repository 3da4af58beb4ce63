//! The 33 registry migrations (SQL in `migrations/registry/`), applied incrementally and
//! idempotently, with upstream's version numbers in `schema_migrations`.

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run, ascending.
    pub applied: Vec<i64>,
    /// Number of known versions that were already recorded.
    pub already_applied: usize,
}

/// Registry migration failures; each message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RegistryMigrationError {
    /// The registry could not be reached.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A query failed.
    #[error("registry migration {version} failed: {source}")]
    Step {
        /// The migration version.
        version: i64,
        /// The database error.
        source: tokio_postgres::Error,
    },
    /// A query outside a step failed.
    #[error("registry migrations: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// `schema_migrations` exists with a shape that cannot be used safely.
    #[error("{0}")]
    IncompatibleSchemaMigrations(String),
    /// No schema is selected for creating the tables.
    #[error("{0}")]
    NoSchema(String),
}
