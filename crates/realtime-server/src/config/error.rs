//! Start-up configuration errors: each names the variable, the expected form and the fix.

/// A configuration value the server cannot start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable that must hold a base-10 integer holds something else.
    #[error(
        "env {name} expected a Integer, got \"{value}\": set {name} to a base-10 whole number{range} (default {default}) or remove it"
    )]
    Integer {
        /// Variable name.
        name: &'static str,
        /// The value found.
        value: String,
        /// The default used when the variable is unset.
        default: String,
        /// A human description of the accepted range, e.g. " between 0 and 65535".
        range: String,
    },
    /// A variable that must hold a boolean holds something else.
    #[error(
        "env {name} expected a boolean or 0/1 values, got \"{value}\": set {name} to true, false, 1 or 0"
    )]
    Boolean {
        /// Variable name.
        name: &'static str,
        /// The value found.
        value: String,
    },
    /// `DB_IP_VERSION` is neither `ipv4` nor `ipv6`.
    #[error(
        "Invalid IP version, please set either ipv6 or ipv4: DB_IP_VERSION is \"{0}\"; set DB_IP_VERSION to ipv4 or ipv6, or remove it to detect the family automatically"
    )]
    DbIpVersion(String),
    /// `JWT_CLAIM_VALIDATORS` is not a JSON object.
    #[error(
        "JWT claim validators is not a valid JSON object: JWT_CLAIM_VALIDATORS must be a JSON object of claim names to expected values, e.g. {{\"iss\":\"supabase\"}} ({0}); fix the value or remove JWT_CLAIM_VALIDATORS"
    )]
    ClaimValidators(String),
    /// `API_JWT_JWKS` is not valid JSON while the self-host seed needs it.
    #[error(
        "API_JWT_JWKS is not valid JSON ({0}): SEED_SELF_HOST stores it as the seeded tenant's jwt_jwks; set API_JWT_JWKS to a JSON Web Key Set such as {{\"keys\":[]}} (check for a stray trailing `}}`) or remove it"
    )]
    Jwks(String),
    /// `DB_ENC_KEY_GCM` has the wrong length.
    #[error(
        "DB_ENC_KEY_GCM must be exactly 32 bytes for AES-256-GCM, got {0} bytes; set DB_ENC_KEY_GCM to a 32-character key or remove it"
    )]
    GcmKeyLength(usize),
    /// `REDIS_URL` is not a Redis URL.
    #[error("{0}; fix REDIS_URL or remove it to run as a single node")]
    RedisUrl(String),
}

impl ConfigError {
    /// The variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::Integer { name, .. } | ConfigError::Boolean { name, .. } => name,
            ConfigError::DbIpVersion(_) => "DB_IP_VERSION",
            ConfigError::ClaimValidators(_) => "JWT_CLAIM_VALIDATORS",
            ConfigError::Jwks(_) => "API_JWT_JWKS",
            ConfigError::GcmKeyLength(_) => "DB_ENC_KEY_GCM",
            ConfigError::RedisUrl(_) => "REDIS_URL",
        }
    }
}
