//! The `SEED_SELF_HOST` seed (§4.5 steps 1–2): the feature flag and a freshly recreated
//! default tenant at every start.

use serde_json::{json, Value};

use crate::crypto::{Crypto, CryptoError};
use crate::feature_flags::GCM_ENCRYPTION_BACKFILL;
use crate::registry::{Registry, RegistryError, TenantDefaults, UpsertError};
use crate::tenant::Tenant;
use crate::upsert::{now_utc_seconds, prepare};

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
    /// The seeded values do not form a valid tenant (e.g. `API_JWT_JWKS` is not an object).
    #[error("the seeded tenant is invalid (check API_JWT_SECRET / API_JWT_JWKS): {0}")]
    Invalid(Value),
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
    // Seeding writes ciphertexts the Elixir image must be able to read: insist on the key.
    crypto.ensure_ecb_key()?;
    registry
        .upsert_feature_flag(GCM_ENCRYPTION_BACKFILL, true, 100, None)
        .await?;
    let name = config.tenant_name();
    let or = |v: &Option<String>, fallback: &str| -> String {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback)
            .to_string()
    };
    let params = json!({
        "name": name,
        "external_id": name,
        "jwt_secret": or(&config.api_jwt_secret, DEFAULT_SEED_JWT_SECRET),
        "jwt_jwks": config.api_jwt_jwks.clone().unwrap_or(Value::Null),
        "extensions": [{
            "type": "postgres_cdc_rls",
            "settings": {
                "db_name": or(&config.db_name, "postgres"),
                "db_host": or(&config.db_host, "host.docker.internal"),
                "db_user": or(&config.db_user, "supabase_admin"),
                "db_password": or(&config.db_password, "postgres"),
                "db_port": or(&config.db_port, "5433"),
                "region": "us-east-1",
                "poll_interval_ms": 100,
                "poll_max_record_bytes": 1_048_576,
                "ssl_enforced": false
            }
        }]
    });
    let tenant = match prepare(
        None,
        name,
        &params,
        &config.defaults,
        crypto,
        now_utc_seconds(),
    ) {
        Ok(p) => p.tenant,
        Err(UpsertError::Invalid(body)) => return Err(SeedError::Invalid(body)),
        Err(UpsertError::Crypto(e)) => return Err(SeedError::Crypto(e)),
        Err(UpsertError::Registry(e)) => return Err(SeedError::Registry(e)),
    };
    registry.replace(&tenant).await?;
    tracing::info!(external_id = name, project = name, "seeded tenant {name}");
    Ok(tenant)
}
