//! Tenant extensions (`extensions` rows) and the `postgres_cdc_rls` settings they carry.

use chrono::NaiveDateTime;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::crypto::Crypto;
use crate::tenant::TenantError;

/// The only extension type in use.
pub const POSTGRES_CDC_RLS: &str = "postgres_cdc_rls";

/// Settings keys whose values are stored encrypted.
pub const ENCRYPTED_SETTINGS: [&str; 5] =
    ["db_host", "db_port", "db_name", "db_user", "db_password"];

/// Required `postgres_cdc_rls` settings, in upstream's declaration order, with whether they
/// are encrypted.
pub(crate) const REQUIRED_SETTINGS: [(&str, bool); 6] = [
    ("region", false),
    ("db_host", true),
    ("db_port", true),
    ("db_name", true),
    ("db_user", true),
    ("db_password", true),
];

/// Defaults merged under the supplied `postgres_cdc_rls` settings on every create/update.
pub fn default_cdc_settings() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("poll_interval_ms".into(), Value::from(100));
    m.insert("poll_max_changes".into(), Value::from(100));
    m.insert("poll_max_record_bytes".into(), Value::from(1_048_576));
    m.insert("publication".into(), Value::from("supabase_realtime"));
    m.insert(
        "slot_name".into(),
        Value::from("supabase_realtime_replication_slot"),
    );
    m
}

/// One row of `extensions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    /// Primary key.
    pub id: Uuid,
    /// Extension type, `postgres_cdc_rls` in practice.
    pub r#type: Option<String>,
    /// Settings as stored (encrypted values stay encrypted).
    pub settings: Value,
    /// Owning tenant.
    pub tenant_external_id: String,
    /// Creation time (UTC, whole seconds).
    pub inserted_at: NaiveDateTime,
    /// Last update time (UTC, whole seconds).
    pub updated_at: NaiveDateTime,
}

impl Extension {
    /// The API rendering: `type`, `inserted_at`, `updated_at`, `settings` without `db_password`.
    pub fn to_api_json(&self) -> Value {
        let mut settings = self.settings.clone();
        if let Value::Object(m) = &mut settings {
            m.remove("db_password");
        }
        serde_json::json!({
            "type": self.r#type,
            "inserted_at": crate::tenant::format_timestamp(&self.inserted_at),
            "updated_at": crate::tenant::format_timestamp(&self.updated_at),
            "settings": settings,
        })
    }
}

/// Decrypted connection settings of a tenant's `postgres_cdc_rls` extension.
#[derive(Clone, PartialEq, Eq)]
pub struct CdcSettings {
    /// Tenant DB host.
    pub host: String,
    /// Tenant DB port.
    pub port: u16,
    /// Database name.
    pub db_name: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
    /// TLS to the tenant DB; absent or non-boolean in the settings means TLS on.
    pub ssl_enforced: bool,
    /// CDC publication name.
    pub publication: String,
    /// CDC replication slot base name (before any suffix).
    pub slot_name: String,
    /// Tenant region.
    pub region: Option<String>,
    /// Size of the main tenant pool (`db_pool`).
    pub db_pool: Option<u32>,
    /// CDC subscriber pool size (`subcriber_pool_size`).
    pub subscriber_pool_size: Option<u32>,
}

impl std::fmt::Debug for CdcSettings {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdcSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db_name", &self.db_name)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("ssl_enforced", &self.ssl_enforced)
            .field("publication", &self.publication)
            .field("slot_name", &self.slot_name)
            .field("region", &self.region)
            .field("db_pool", &self.db_pool)
            .field("subscriber_pool_size", &self.subscriber_pool_size)
            .finish()
    }
}

impl CdcSettings {
    /// Decrypts and parses stored settings. `external_id` is only used for the one-time
    /// plaintext-fallback warning.
    pub fn from_stored(
        settings: &Value,
        external_id: &str,
        crypto: &Crypto,
    ) -> Result<CdcSettings, TenantError> {
        let obj = settings
            .as_object()
            .ok_or(TenantError::InvalidSetting("settings"))?;
        let secret = |key: &'static str| -> Result<String, TenantError> {
            match obj.get(key) {
                Some(Value::String(s)) => crate::tenant::decrypt_field(crypto, external_id, key, s)
                    .map_err(TenantError::from),
                Some(_) => Err(TenantError::InvalidSetting(key)),
                None => Err(TenantError::MissingSetting(key)),
            }
        };
        let host = secret("db_host")?;
        let port = secret("db_port")?
            .trim()
            .parse::<u16>()
            .map_err(|_| TenantError::InvalidSetting("db_port"))?;
        let db_name = secret("db_name")?;
        let user = secret("db_user")?;
        let password = secret("db_password")?;
        let text = |key: &str, default: &str| match obj.get(key) {
            Some(Value::String(s)) => s.clone(),
            _ => default.to_string(),
        };
        let count = |key: &str| -> Option<u32> {
            match obj.get(key) {
                Some(Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
                Some(Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            }
        };
        Ok(CdcSettings {
            host,
            port,
            db_name,
            user,
            password,
            ssl_enforced: !matches!(obj.get("ssl_enforced"), Some(Value::Bool(false))),
            publication: text("publication", "supabase_realtime"),
            slot_name: text("slot_name", "supabase_realtime_replication_slot"),
            region: obj
                .get("region")
                .and_then(Value::as_str)
                .map(str::to_string),
            db_pool: count("db_pool"),
            subscriber_pool_size: count("subcriber_pool_size"),
        })
    }
}
