//! The registry store: tenants, extensions and feature flags, in PostgreSQL or (standalone
//! mode, no `DB_HOST`) in memory.

pub mod diagnosis;
mod memory;
mod pool;
mod postgres;

use std::path::PathBuf;

use serde_json::Value;

use crate::crypto::{Crypto, CryptoError};
use crate::registry_migrations::{MigrationReport, RegistryMigrationError};
use crate::tenant::Tenant;

pub use memory::MemoryRegistry;
pub use postgres::PgRegistry;

/// `application_name` of every registry connection.
pub const APPLICATION_NAME: &str = "supabase_mt_realtime";

/// Address family forced by `DB_IP_VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// Registry connection settings (`DB_*` variables).
#[derive(Clone)]
pub struct RegistryConfig {
    /// `DB_HOST`.
    pub host: String,
    /// `DB_PORT`.
    pub port: u16,
    /// `DB_NAME`.
    pub dbname: String,
    /// `DB_USER`.
    pub user: String,
    /// `DB_PASSWORD`.
    pub password: String,
    /// `DB_AFTER_CONNECT_QUERY`, run (simple query protocol) on every new connection.
    pub after_connect_query: Option<String>,
    /// `DB_SSL`.
    pub ssl: bool,
    /// `DB_SSL_CA_CERT`: verify the server certificate against this CA when set.
    pub ssl_ca_cert: Option<PathBuf>,
    /// `DB_POOL_SIZE`.
    pub pool_size: usize,
    /// `DB_IP_VERSION`.
    pub ip_version: Option<IpVersion>,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("after_connect_query", &self.after_connect_query)
            .field("ssl", &self.ssl)
            .field("ssl_ca_cert", &self.ssl_ca_cert)
            .field("pool_size", &self.pool_size)
            .field("ip_version", &self.ip_version)
            .finish()
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "postgres".into(),
            user: "supabase_admin".into(),
            password: "postgres".into(),
            after_connect_query: None,
            ssl: false,
            ssl_ca_cert: None,
            pool_size: 5,
            ip_version: None,
        }
    }
}

/// Limits given to tenants created through the API or the seed (`TENANT_MAX_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantDefaults {
    /// `TENANT_MAX_CONCURRENT_USERS` (200).
    pub max_concurrent_users: i32,
    /// `TENANT_MAX_EVENTS_PER_SECOND` (100).
    pub max_events_per_second: i32,
    /// `TENANT_MAX_JOINS_PER_SECOND` (100).
    pub max_joins_per_second: i32,
    /// `TENANT_MAX_CHANNELS_PER_CLIENT` (100).
    pub max_channels_per_client: i32,
    /// `TENANT_MAX_BYTES_PER_SECOND` (100000).
    pub max_bytes_per_second: i32,
}

impl Default for TenantDefaults {
    fn default() -> Self {
        TenantDefaults {
            max_concurrent_users: 200,
            max_events_per_second: 100,
            max_joins_per_second: 100,
            max_channels_per_client: 100,
            max_bytes_per_second: 100_000,
        }
    }
}

/// Result of [`Registry::upsert`].
#[derive(Debug, Clone, PartialEq)]
pub struct Upserted {
    /// The tenant as stored.
    pub tenant: Tenant,
    /// True when the tenant did not exist before (HTTP 201), false on update (200).
    pub created: bool,
}

/// Registry access errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached (after retries at start-up).
    #[error("cannot connect to the registry database {target}: {reason}")]
    Connect {
        /// `host:port/dbname`.
        target: String,
        /// Why.
        reason: String,
    },
    /// TLS configuration problem (`DB_SSL`, `DB_SSL_CA_CERT`).
    #[error("registry TLS: {0}")]
    Tls(String),
    /// `DB_AFTER_CONNECT_QUERY` failed.
    #[error("DB_AFTER_CONNECT_QUERY failed: {0}")]
    AfterConnect(String),
    /// A query failed.
    #[error("registry query failed: {}", crate::registry_migrations::db_error_text(.0))]
    Query(#[from] tokio_postgres::Error),
    /// A row could not be read into a model.
    #[error("registry row is malformed: {0}")]
    Row(String),
}

/// Errors of [`Registry::upsert`].
#[derive(Debug, thiserror::Error)]
pub enum UpsertError {
    /// Validation failed; holds the `{"errors": …}` body of the 422.
    #[error("invalid tenant: {0}")]
    Invalid(Value),
    /// A secret could not be encrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<tokio_postgres::Error> for UpsertError {
    fn from(e: tokio_postgres::Error) -> Self {
        UpsertError::Registry(RegistryError::Query(e))
    }
}

/// The registry: PostgreSQL, or memory in standalone mode.
pub enum Registry {
    /// Tables in the registry database.
    Postgres(PgRegistry),
    /// Tenants held in memory (no `DB_HOST`).
    Memory(MemoryRegistry),
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Registry::Postgres(_) => f.write_str("Registry::Postgres"),
            Registry::Memory(_) => f.write_str("Registry::Memory"),
        }
    }
}

impl Registry {
    /// Connects to the registry database, retrying with backoff for up to 60 s.
    pub async fn connect(config: &RegistryConfig) -> Result<Registry, RegistryError> {
        PgRegistry::connect(config).await.map(Registry::Postgres)
    }

    /// An empty in-memory registry.
    pub fn memory() -> Registry {
        Registry::Memory(MemoryRegistry::default())
    }

    /// Applies the missing registry migrations (no-op in memory).
    pub async fn migrate(&self) -> Result<MigrationReport, RegistryMigrationError> {
        match self {
            Registry::Postgres(r) => r.migrate().await,
            Registry::Memory(_) => Ok(MigrationReport::default()),
        }
    }

    /// One tenant with its extensions.
    pub async fn get(&self, external_id: &str) -> Result<Option<Tenant>, RegistryError> {
        match self {
            Registry::Postgres(r) => r.get(external_id).await,
            Registry::Memory(r) => Ok(r.get(external_id)),
        }
    }

    /// Every tenant with its extensions.
    pub async fn list(&self) -> Result<Vec<Tenant>, RegistryError> {
        match self {
            Registry::Postgres(r) => r.list().await,
            Registry::Memory(r) => Ok(r.list()),
        }
    }

    /// Creates or updates a tenant from the admin API's `tenant` object (§5.4).
    pub async fn upsert(
        &self,
        external_id: &str,
        tenant_params: &Value,
        defaults: &TenantDefaults,
        crypto: &Crypto,
    ) -> Result<Upserted, UpsertError> {
        match self {
            Registry::Postgres(r) => r.upsert(external_id, tenant_params, defaults, crypto).await,
            Registry::Memory(r) => r.upsert(external_id, tenant_params, defaults, crypto),
        }
    }

    /// Deletes the tenant with the same external id (if any) and stores `tenant` in its place,
    /// atomically (the self-host seed).
    pub(crate) async fn replace(&self, tenant: &Tenant) -> Result<(), RegistryError> {
        match self {
            Registry::Postgres(r) => r.replace(tenant).await,
            Registry::Memory(r) => {
                r.replace(tenant.clone());
                Ok(())
            }
        }
    }

    /// Deletes a tenant (extensions cascade). Returns whether it existed.
    pub async fn delete(&self, external_id: &str) -> Result<bool, RegistryError> {
        match self {
            Registry::Postgres(r) => r.delete(external_id).await,
            Registry::Memory(r) => Ok(r.delete(external_id)),
        }
    }

    /// Records the number of tenant-DB migrations applied.
    pub async fn set_migrations_ran(&self, external_id: &str, n: i32) -> Result<(), RegistryError> {
        match self {
            Registry::Postgres(r) => r.set_migrations_ran(external_id, n).await,
            Registry::Memory(r) => {
                r.set_migrations_ran(external_id, n);
                Ok(())
            }
        }
    }

    /// Resolves a feature flag for a tenant (§2.2).
    pub async fn feature_flag_enabled(
        &self,
        tenant: &Tenant,
        name: &str,
    ) -> Result<bool, RegistryError> {
        let flag = match self {
            Registry::Postgres(r) => r.feature_flag(name).await?,
            Registry::Memory(r) => r.feature_flag(name),
        };
        Ok(crate::feature_flags::resolve(flag.as_ref(), tenant))
    }

    /// Creates or overwrites a feature flag (`enabled`, `rollout_percentage`, `bucket_key`).
    pub async fn upsert_feature_flag(
        &self,
        name: &str,
        enabled: bool,
        rollout_percentage: i32,
        bucket_key: Option<&str>,
    ) -> Result<(), RegistryError> {
        let flag = crate::feature_flags::FeatureFlag {
            name: name.to_string(),
            enabled,
            rollout_percentage,
            bucket_key: bucket_key.map(str::to_string),
        };
        match self {
            Registry::Postgres(r) => r.upsert_feature_flag(&flag).await,
            Registry::Memory(r) => {
                r.upsert_feature_flag(flag);
                Ok(())
            }
        }
    }
}
