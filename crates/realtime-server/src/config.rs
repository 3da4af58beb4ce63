//! Configuration from the environment, with upstream's parsing rules and start-up validation.
//!
//! [`Config::from_env`] reads an injected [`Env`] snapshot (tests never touch the process
//! environment). Variables upstream reads only for its Erlang runtime, and unknown variables,
//! are ignored. Problems that do not stop the server are collected in [`Config::warnings`] and
//! logged once logging is up.

mod env;
mod error;
mod inspector;
mod log_level;

use std::time::Duration;

pub use env::Env;
pub use error::ConfigError;
pub use inspector::{InspectorAccess, InspectorConfig};
pub use log_level::LogLevel;

/// The seeded tenant's JWT secret when `API_JWT_SECRET` is unset (upstream's seed fallback).
pub const DEFAULT_SEED_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

/// The key used for the in-memory registry of standalone mode when `DB_ENC_KEY` is unset
/// (the value self-hosted Supabase hard-codes).
pub const STANDALONE_ENC_KEY: &str = "supabaserealtime";

/// Address family forced by `REALTIME_IP_VERSION` / `DB_IP_VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// `ipv4`
    V4,
    /// `ipv6`
    V6,
}

/// The registry database connection (`DB_*`).
#[derive(Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// `DB_HOST` (default `127.0.0.1`).
    pub host: String,
    /// `DB_PORT` (default 5432).
    pub port: u16,
    /// `DB_NAME` (default `postgres`).
    pub name: String,
    /// `DB_USER` (default `supabase_admin`).
    pub user: String,
    /// `DB_PASSWORD` (default `postgres`).
    pub password: String,
    /// `DB_AFTER_CONNECT_QUERY`, run on every new registry connection.
    pub after_connect_query: Option<String>,
    /// `DB_POOL_SIZE` (default 5).
    pub pool_size: usize,
    /// `DB_QUEUE_TARGET` (default 5000 ms): how long a pool checkout may wait.
    pub queue_target: Duration,
    /// `DB_SSL` (default false).
    pub ssl: bool,
    /// `DB_SSL_CA_CERT`: CA file; with `DB_SSL` the server certificate is verified.
    pub ssl_ca_cert: Option<String>,
    /// `DB_IP_VERSION`: forced address family, `None` = try every resolved address.
    pub ip_version: Option<IpVersion>,
}

impl std::fmt::Debug for DbConfig {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("after_connect_query", &self.after_connect_query)
            .field("pool_size", &self.pool_size)
            .field("ssl", &self.ssl)
            .field("ssl_ca_cert", &self.ssl_ca_cert)
            .field("ip_version", &self.ip_version)
            .finish_non_exhaustive()
    }
}

/// Values the self-host seed writes (`SEED_SELF_HOST`), with the seed's own fallbacks, which
/// differ from the registry connection's.
#[derive(Clone, PartialEq)]
pub struct SeedValues {
    /// `SELF_HOST_TENANT_NAME` (default `realtime-dev`).
    pub tenant_name: String,
    /// `API_JWT_SECRET`, fallback [`DEFAULT_SEED_JWT_SECRET`].
    pub jwt_secret: String,
    /// `API_JWT_JWKS` parsed (None when unset).
    pub jwt_jwks: Option<serde_json::Value>,
    /// `DB_HOST`, fallback `host.docker.internal`.
    pub db_host: String,
    /// `DB_PORT` as written, fallback `5433`.
    pub db_port: String,
    /// `DB_NAME`, fallback `postgres`.
    pub db_name: String,
    /// `DB_USER`, fallback `supabase_admin`.
    pub db_user: String,
    /// `DB_PASSWORD`, fallback `postgres`.
    pub db_password: String,
}

impl std::fmt::Debug for SeedValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedValues")
            .field("tenant_name", &self.tenant_name)
            .field("db_host", &self.db_host)
            .field("db_port", &self.db_port)
            .field("db_name", &self.db_name)
            .field("db_user", &self.db_user)
            .finish_non_exhaustive()
    }
}

/// Limits given to tenants created through the API or the seed (`TENANT_MAX_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
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

/// Partition janitor settings (`RUN_JANITOR`, `JANITOR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JanitorConfig {
    /// `RUN_JANITOR` (false).
    pub enabled: bool,
    /// `JANITOR_SCHEDULE_TIMER_IN_MS` (4 h).
    pub schedule_timer: Duration,
    /// `JANITOR_SCHEDULE_RANDOMIZE` (true): add 1–59 random minutes to each period.
    pub schedule_randomize: bool,
    /// `JANITOR_RUN_AFTER_IN_MS` (10 min): extra delay before the first run.
    pub run_after: Duration,
    /// `JANITOR_CHUNK_SIZE` (10): tenants per task.
    pub chunk_size: usize,
    /// `JANITOR_MAX_CHILDREN` (5): concurrent tasks.
    pub max_children: usize,
    /// `JANITOR_CHILDREN_TIMEOUT` (5000 ms).
    pub children_timeout: Duration,
    /// `METRICS_CLEANER_SCHEDULE_TIMER_IN_MS` (30 min).
    pub metrics_cleaner_timer: Duration,
}

/// The server's configuration.
#[derive(Clone)]
pub struct Config {
    // --- listener and connection behaviour
    /// `PORT` (4000).
    pub port: u16,
    /// `REALTIME_IP_VERSION`: forced listener family, `None` = `[::]` with IPv4 fallback.
    pub listen_ip_version: Option<IpVersion>,
    /// `MAX_HEADER_LENGTH` (4096): longest accepted request header value.
    pub max_header_length: usize,
    /// `MAX_CONNECTIONS` (1000, informational: no global hard cap is applied).
    pub max_connections: usize,
    /// `WEBSOCKET_MAX_HEAP_SIZE` (50000000 bytes): per-socket buffer cap.
    pub websocket_max_heap_size: usize,
    /// `CONNECT_ERROR_BACKOFF_MS` (2000): delay before answering a failed handshake.
    pub connect_error_backoff: Duration,
    /// `CHANNEL_ERROR_BACKOFF_MS` (5000): delay before replying to a failed join.
    pub channel_error_backoff: Duration,
    /// `NO_CHANNEL_TIMEOUT_IN_MS` (600000): sockets without a channel are closed after this.
    pub no_channel_timeout: Duration,
    /// `MEASURE_TRAFFIC_INTERVAL_IN_MS` (10000).
    pub measure_traffic_interval: Duration,
    /// `CLIENT_PRESENCE_MAX_CALLS` (5): per-socket presence calls when the tenant has none.
    pub client_presence_max_calls: u32,
    /// `CLIENT_PRESENCE_WINDOW_MS` (30000).
    pub client_presence_window: Duration,

    // --- registry
    /// The registry connection.
    pub db: DbConfig,
    /// True when `DB_HOST` is unset: an in-memory registry with one tenant, no Postgres.
    pub standalone: bool,
    /// `TENANT_CACHE_EXPIRATION_IN_MS` (30000).
    pub tenant_cache_expiration: Duration,

    // --- authentication of the server's own endpoints
    /// `API_JWT_SECRET`: admin token secret.
    pub api_jwt_secret: Option<String>,
    /// `API_JWT_SECRET_NEXT`: second admin secret (rotation).
    pub api_jwt_secret_next: Option<String>,
    /// `API_TOKEN_BLOCKLIST`: admin tokens refused verbatim.
    pub api_token_blocklist: Vec<String>,
    /// `METRICS_JWT_SECRET`, falling back to `API_JWT_SECRET` (with a warning).
    pub metrics_jwt_secret: Option<String>,
    /// `METRICS_TOKEN_BLOCKLIST`.
    pub metrics_token_blocklist: Vec<String>,
    /// `JWT_CLAIM_VALIDATORS`: claim → expected value, checked when the claim is present.
    pub jwt_claim_validators: serde_json::Map<String, serde_json::Value>,

    // --- encryption of stored secrets
    /// `DB_ENC_KEY` raw bytes.
    pub db_enc_key: Option<Vec<u8>>,
    /// `DB_ENC_KEY_GCM` raw bytes (validated: 32 bytes).
    pub db_enc_key_gcm: Option<Vec<u8>>,
    /// `DB_ENC_WRITE_GCM` (false).
    pub db_enc_write_gcm: bool,

    // --- seeding
    /// `SEED_SELF_HOST`: `true`, `TRUE`, `1` (trimmed, case-insensitive).
    pub seed_self_host: bool,
    /// `SELF_HOST_TENANT_NAME` (`realtime-dev`).
    pub self_host_tenant_name: String,
    /// What the seed writes.
    pub seed: SeedValues,
    /// `REALTIME_DEFAULT_TENANT` (not upstream): tenant used when the Host's tenant is
    /// unknown. Defaults to the self-host tenant in standalone mode, unset otherwise.
    pub default_tenant: Option<String>,

    // --- tenant defaults and slot naming
    /// Limits applied to new tenants.
    pub tenant_defaults: TenantLimits,
    /// `SLOT_NAME_SUFFIX`, `None` when unset or empty. Slot names are
    /// `<slot_name>_<suffix>`, i.e. a trailing `_` when `None` (as the official image).
    pub slot_name_suffix: Option<String>,

    // --- several nodes
    /// `REDIS_URL`: with it, nodes behind one load balancer share topics, presence, slots and
    /// limits through Redis; without it the server is a single node and never touches Redis.
    pub redis: Option<realtime_cluster::RedisTarget>,

    // --- maintenance
    /// Janitor settings.
    pub janitor: JanitorConfig,

    // --- logging and observability
    /// `LOG_LEVEL` (info).
    pub log_level: LogLevel,
    /// `DISABLE_HEALTHCHECK_LOGGING` (false).
    pub disable_healthcheck_logging: bool,
    /// `REGION`.
    pub region: Option<String>,
    /// Node name shown in the health body: `<NODE_NAME|APP_NAME|realtime>@<POD_IP|127.0.0.1>`.
    pub node_name: String,

    // --- process
    /// `RLIMIT_NOFILE`: soft open-files limit to apply at start-up.
    pub rlimit_nofile: Option<u64>,

    // --- inspector page
    /// `INSPECTOR_ENABLED` and the dashboard credentials protecting `/inspector`.
    pub inspector: InspectorConfig,

    /// Non-fatal problems found while parsing, logged at warning level once logging is up.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Config {
    // Secrets and keys are reported only as present or absent.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("db", &self.db)
            .field("standalone", &self.standalone)
            .field("api_jwt_secret", &self.api_jwt_secret.is_some())
            .field("api_jwt_secret_next", &self.api_jwt_secret_next.is_some())
            .field("metrics_jwt_secret", &self.metrics_jwt_secret.is_some())
            .field("db_enc_key", &self.db_enc_key.is_some())
            .field("db_enc_key_gcm", &self.db_enc_key_gcm.is_some())
            .field("seed_self_host", &self.seed_self_host)
            .field("self_host_tenant_name", &self.self_host_tenant_name)
            .field("default_tenant", &self.default_tenant)
            .field("log_level", &self.log_level)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    /// The configuration of an empty environment (standalone mode).
    fn default() -> Self {
        match Config::from_env(&Env::default()) {
            Ok(c) => c,
            // An empty environment only uses defaults, which are all valid.
            Err(e) => unreachable!("defaults are valid: {e}"),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_process_env() -> Result<Config, ConfigError> {
        Config::from_env(&Env::from_process())
    }

    /// Reads every variable of the server from `env` and validates it.
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();

        let listen_ip_version = match env.get("REALTIME_IP_VERSION") {
            None => None,
            Some(v) => match parse_ip_version(v) {
                Some(ip) => Some(ip),
                None => {
                    warnings.push(format!(
                        "REALTIME_IP_VERSION is \"{v}\", expected ipv4 or ipv6; listening on both families"
                    ));
                    None
                }
            },
        };

        let db_ip_version = match env.get("DB_IP_VERSION") {
            None => None,
            Some(v) => {
                Some(parse_ip_version(v).ok_or_else(|| ConfigError::DbIpVersion(v.to_string()))?)
            }
        };

        let db = DbConfig {
            host: env.string("DB_HOST", "127.0.0.1"),
            port: env.integer("DB_PORT", 5432u16)?,
            name: env.string("DB_NAME", "postgres"),
            user: env.string("DB_USER", "supabase_admin"),
            password: env.string("DB_PASSWORD", "postgres"),
            after_connect_query: env.opt("DB_AFTER_CONNECT_QUERY"),
            pool_size: env.integer("DB_POOL_SIZE", 5usize)?.max(1),
            queue_target: env.millis("DB_QUEUE_TARGET", 5000)?,
            ssl: env.boolean("DB_SSL", false)?,
            ssl_ca_cert: env.opt("DB_SSL_CA_CERT"),
            ip_version: db_ip_version,
        };
        let standalone = env.get("DB_HOST").is_none();

        let jwt_claim_validators = match env.get("JWT_CLAIM_VALIDATORS") {
            None => serde_json::Map::new(),
            Some(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(serde_json::Value::Object(map)) => map,
                Ok(other) => {
                    return Err(ConfigError::ClaimValidators(format!(
                        "got a JSON {}",
                        json_kind(&other)
                    )))
                }
                Err(e) => return Err(ConfigError::ClaimValidators(e.to_string())),
            },
        };

        let api_jwt_secret = env.opt("API_JWT_SECRET");
        let metrics_jwt_secret = match env.opt("METRICS_JWT_SECRET") {
            Some(s) => Some(s),
            None => {
                if api_jwt_secret.is_some() {
                    warnings.push(
                        "METRICS_JWT_SECRET is not set, /metrics accepts tokens signed with API_JWT_SECRET; set METRICS_JWT_SECRET to silence this warning".to_string(),
                    );
                }
                api_jwt_secret.clone()
            }
        };

        let db_enc_key_gcm = env.get("DB_ENC_KEY_GCM").map(|v| v.as_bytes().to_vec());
        if let Some(k) = &db_enc_key_gcm {
            if k.len() != 32 {
                return Err(ConfigError::GcmKeyLength(k.len()));
            }
        }

        let seed_self_host = env.boolean("SEED_SELF_HOST", false).unwrap_or_else(|_| {
            warnings.push(format!(
                "SEED_SELF_HOST is \"{}\", expected true or false; not seeding",
                env.get("SEED_SELF_HOST").unwrap_or_default()
            ));
            false
        });
        let self_host_tenant_name = env.string("SELF_HOST_TENANT_NAME", "realtime-dev");

        let jwt_jwks = match env.get("API_JWT_JWKS") {
            None => None,
            Some(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(v) => Some(v),
                // Only the seed stores it; without seeding a bad value harms nothing.
                Err(e) if seed_self_host => return Err(ConfigError::Jwks(e.to_string())),
                Err(e) => {
                    warnings.push(format!("API_JWT_JWKS is not valid JSON ({e}); ignored"));
                    None
                }
            },
        };

        let seed = SeedValues {
            tenant_name: self_host_tenant_name.clone(),
            jwt_secret: api_jwt_secret
                .clone()
                .unwrap_or_else(|| DEFAULT_SEED_JWT_SECRET.to_string()),
            jwt_jwks,
            db_host: env.string("DB_HOST", "host.docker.internal"),
            db_port: env.string("DB_PORT", "5433"),
            db_name: env.string("DB_NAME", "postgres"),
            db_user: env.string("DB_USER", "supabase_admin"),
            db_password: env.string("DB_PASSWORD", "postgres"),
        };

        let default_tenant = env
            .opt("REALTIME_DEFAULT_TENANT")
            .or_else(|| standalone.then(|| self_host_tenant_name.clone()));

        let log_level = match env.get("LOG_LEVEL") {
            None => LogLevel::Info,
            Some(v) => LogLevel::parse(v).unwrap_or_else(|| {
                warnings.push(format!(
                    "LOG_LEVEL is \"{v}\", expected one of emergency, alert, critical, error, warning, notice, info, debug; using info"
                ));
                LogLevel::Info
            }),
        };

        let rlimit_nofile = match env.get("RLIMIT_NOFILE") {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    warnings.push(format!(
                        "RLIMIT_NOFILE is \"{v}\", expected a number of files; keeping the current limit"
                    ));
                    None
                }
            },
        };

        let inspector = InspectorConfig::from_env(env, standalone, &mut warnings)?;

        let node_name = format!(
            "{}@{}",
            env.get("NODE_NAME")
                .or_else(|| env.get("APP_NAME"))
                .unwrap_or("realtime"),
            env.get("POD_IP").unwrap_or("127.0.0.1")
        );

        Ok(Config {
            port: env.integer("PORT", 4000u16)?,
            listen_ip_version,
            max_header_length: env.integer("MAX_HEADER_LENGTH", 4096usize)?,
            max_connections: env.integer("MAX_CONNECTIONS", 1000usize)?,
            websocket_max_heap_size: env.integer("WEBSOCKET_MAX_HEAP_SIZE", 50_000_000usize)?,
            connect_error_backoff: env.millis("CONNECT_ERROR_BACKOFF_MS", 2000)?,
            channel_error_backoff: env.millis("CHANNEL_ERROR_BACKOFF_MS", 5000)?,
            no_channel_timeout: env.millis("NO_CHANNEL_TIMEOUT_IN_MS", 600_000)?,
            measure_traffic_interval: env.millis("MEASURE_TRAFFIC_INTERVAL_IN_MS", 10_000)?,
            client_presence_max_calls: env.integer("CLIENT_PRESENCE_MAX_CALLS", 5u32)?,
            client_presence_window: env.millis("CLIENT_PRESENCE_WINDOW_MS", 30_000)?,
            db,
            standalone,
            tenant_cache_expiration: env.millis("TENANT_CACHE_EXPIRATION_IN_MS", 30_000)?,
            api_jwt_secret,
            api_jwt_secret_next: env.opt("API_JWT_SECRET_NEXT"),
            api_token_blocklist: env.list("API_TOKEN_BLOCKLIST"),
            metrics_jwt_secret,
            metrics_token_blocklist: env.list("METRICS_TOKEN_BLOCKLIST"),
            jwt_claim_validators,
            db_enc_key: env.get("DB_ENC_KEY").map(|v| v.as_bytes().to_vec()),
            db_enc_key_gcm,
            db_enc_write_gcm: env.boolean("DB_ENC_WRITE_GCM", false)?,
            seed_self_host,
            self_host_tenant_name,
            seed,
            default_tenant,
            tenant_defaults: TenantLimits {
                max_concurrent_users: env.integer("TENANT_MAX_CONCURRENT_USERS", 200i32)?,
                max_events_per_second: env.integer("TENANT_MAX_EVENTS_PER_SECOND", 100i32)?,
                max_joins_per_second: env.integer("TENANT_MAX_JOINS_PER_SECOND", 100i32)?,
                max_channels_per_client: env.integer("TENANT_MAX_CHANNELS_PER_CLIENT", 100i32)?,
                max_bytes_per_second: env.integer("TENANT_MAX_BYTES_PER_SECOND", 100_000i32)?,
            },
            slot_name_suffix: env.opt("SLOT_NAME_SUFFIX"),
            redis: match env.get("REDIS_URL") {
                None => None,
                Some(url) => Some(
                    realtime_cluster::RedisTarget::parse(url)
                        .map_err(|e| ConfigError::RedisUrl(e.to_string()))?,
                ),
            },
            janitor: JanitorConfig {
                enabled: env.boolean("RUN_JANITOR", false)?,
                schedule_timer: env.millis("JANITOR_SCHEDULE_TIMER_IN_MS", 14_400_000)?,
                schedule_randomize: env.boolean("JANITOR_SCHEDULE_RANDOMIZE", true)?,
                run_after: env.millis("JANITOR_RUN_AFTER_IN_MS", 600_000)?,
                chunk_size: env.integer("JANITOR_CHUNK_SIZE", 10usize)?,
                max_children: env.integer("JANITOR_MAX_CHILDREN", 5usize)?,
                children_timeout: env.millis("JANITOR_CHILDREN_TIMEOUT", 5000)?,
                metrics_cleaner_timer: env
                    .millis("METRICS_CLEANER_SCHEDULE_TIMER_IN_MS", 1_800_000)?,
            },
            log_level,
            disable_healthcheck_logging: env.boolean("DISABLE_HEALTHCHECK_LOGGING", false)?,
            region: env.opt("REGION"),
            node_name,
            rlimit_nofile,
            inspector,
            warnings,
        })
    }

    /// The admin token secrets in the order they are tried.
    pub fn api_secrets(&self) -> Vec<&str> {
        [&self.api_jwt_secret, &self.api_jwt_secret_next]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .collect()
    }

    /// The name of a replication slot with `SLOT_NAME_SUFFIX` applied: `<base>_<suffix>`
    /// (a trailing `_` when the suffix is unset or empty, as in the official image).
    pub fn slot_name(&self, base: &str) -> String {
        format!("{base}_{}", self.slot_name_suffix.as_deref().unwrap_or(""))
    }
}

fn parse_ip_version(v: &str) -> Option<IpVersion> {
    match v.trim() {
        "ipv4" => Some(IpVersion::V4),
        "ipv6" => Some(IpVersion::V6),
        _ => None,
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
