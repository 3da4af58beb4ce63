//! A tenant (`tenants` row with its extensions) and what the rest of the server reads from it.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use chrono::NaiveDateTime;
use serde_json::Value;
use uuid::Uuid;

use crate::crypto::{Crypto, CryptoError};
use crate::extension::{CdcSettings, Extension, POSTGRES_CDC_RLS};

/// Default `max_presence_events_per_second` when the column is NULL.
pub const DEFAULT_MAX_PRESENCE_EVENTS_PER_SECOND: u32 = 1000;
/// Default `max_payload_size_in_kb` when the column is NULL.
pub const DEFAULT_MAX_PAYLOAD_SIZE_IN_KB: u32 = 3000;

/// Errors of reading a tenant's secrets and settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// A secret could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A required extension setting is missing.
    #[error("extension setting {0} is missing")]
    MissingSetting(&'static str),
    /// An extension setting has an unusable value.
    #[error("extension setting {0} is invalid")]
    InvalidSetting(&'static str),
}

/// One row of `tenants` with its extensions; every column of the registry table.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Primary key (random, app-generated).
    pub id: Uuid,
    /// Display name (equal to `external_id` for API-created tenants).
    pub name: Option<String>,
    /// The tenant id used in URLs, Host labels, logs and metrics.
    pub external_id: String,
    /// Encrypted JWT secret (§3); `None` when only `jwt_jwks` is set.
    pub jwt_secret: Option<String>,
    /// JWKS document (plaintext).
    pub jwt_jwks: Option<Value>,
    /// Max sockets with a joined channel.
    pub max_concurrent_users: i32,
    /// Messages/s and REST requests/s budget.
    pub max_events_per_second: i32,
    /// Stored, not enforced.
    pub max_bytes_per_second: i32,
    /// Channels per socket.
    pub max_channels_per_client: i32,
    /// Joins per second.
    pub max_joins_per_second: i32,
    /// Default extension type.
    pub postgres_cdc_default: Option<String>,
    /// Realtime disabled for this tenant (NULL read as false).
    pub suspend: bool,
    /// Unused upstream column (NULL read as false).
    pub notify_private_alpha: bool,
    /// Only private channels allowed.
    pub private_only: bool,
    /// Number of tenant-DB migrations applied (NULL read as 0).
    pub migrations_ran: i32,
    /// `phoenix` or `gen_rpc`; meaningless for a single node.
    pub broadcast_adapter: Option<String>,
    /// Presence events per second (NULL → 1000).
    pub max_presence_events_per_second: Option<i32>,
    /// Broadcast payload limit in kB (NULL → 3000).
    pub max_payload_size_in_kb: Option<i32>,
    /// Per-socket presence calls per window (NULL → env default).
    pub max_client_presence_events_per_window: Option<i32>,
    /// Per-socket presence window (NULL → env default).
    pub client_presence_window_ms: Option<i32>,
    /// Presence on for clients that do not opt in.
    pub presence_enabled: bool,
    /// Per-tenant feature flag overrides (`{"flag": bool}`).
    pub feature_flags: Value,
    /// When every secret of the tenant was moved to GCM.
    pub gcm_migrated_at: Option<NaiveDateTime>,
    /// Creation time (UTC, whole seconds).
    pub inserted_at: NaiveDateTime,
    /// Last update time (UTC, whole seconds).
    pub updated_at: NaiveDateTime,
    /// The tenant's extensions.
    pub extensions: Vec<Extension>,
}

/// Naive ISO-8601 without zone and fraction, as upstream renders timestamps.
pub(crate) fn format_timestamp(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Decrypts one stored secret, warning once per tenant and field when it turns out to be
/// plaintext (the secret itself is never logged).
pub(crate) fn decrypt_field(
    crypto: &Crypto,
    external_id: &str,
    field: &str,
    stored: &str,
) -> Result<String, CryptoError> {
    let d = crypto.decrypt(stored)?;
    if d.plaintext_fallback {
        static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
        let first = WARNED
            .get_or_init(Default::default)
            .lock()
            .map(|mut set| set.insert(format!("{external_id}\u{0}{field}")))
            .unwrap_or(true);
        if first {
            tracing::warn!(
                external_id,
                project = external_id,
                field,
                "DecryptionFallbackToPlaintext: stored {field} of tenant {external_id} is not a valid ciphertext for DB_ENC_KEY; using it as plaintext"
            );
        }
    }
    Ok(d.value)
}

impl Tenant {
    /// The decrypted JWT secret (`None` when the tenant has only a JWKS).
    pub fn jwt_secret_plain(&self, crypto: &Crypto) -> Result<Option<String>, CryptoError> {
        match &self.jwt_secret {
            Some(s) => decrypt_field(crypto, &self.external_id, "jwt_secret", s).map(Some),
            None => Ok(None),
        }
    }

    /// The `postgres_cdc_rls` extension, if any.
    pub fn cdc_extension(&self) -> Option<&Extension> {
        self.extensions
            .iter()
            .find(|e| e.r#type.as_deref() == Some(POSTGRES_CDC_RLS))
    }

    /// Decrypted tenant-DB connection settings (`None` without a `postgres_cdc_rls` extension).
    pub fn cdc_settings(&self, crypto: &Crypto) -> Result<Option<CdcSettings>, TenantError> {
        match self.cdc_extension() {
            Some(ext) => {
                CdcSettings::from_stored(&ext.settings, &self.external_id, crypto).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The admin API rendering of §5.4 (the object inside `data`): no secrets, no `suspend`,
    /// no `jwt_jwks`, extension settings without `db_password`.
    pub fn to_api_json(&self) -> Value {
        serde_json::json!({
            "id": self.id.to_string(),
            "external_id": self.external_id,
            "name": self.name,
            "max_concurrent_users": self.max_concurrent_users,
            "max_channels_per_client": self.max_channels_per_client,
            "max_events_per_second": self.max_events_per_second,
            "max_joins_per_second": self.max_joins_per_second,
            "inserted_at": format_timestamp(&self.inserted_at),
            "extensions": self.extensions.iter().map(Extension::to_api_json).collect::<Vec<_>>(),
            "private_only": self.private_only,
            "max_client_presence_events_per_window": self.max_client_presence_events_per_window,
            "client_presence_window_ms": self.client_presence_window_ms,
            "presence_enabled": self.presence_enabled,
        })
    }

    /// Presence events per second (column NULL → 1000; negative → 0).
    pub fn max_presence_events_per_second(&self) -> u32 {
        non_negative(
            self.max_presence_events_per_second,
            DEFAULT_MAX_PRESENCE_EVENTS_PER_SECOND,
        )
    }

    /// Broadcast payload limit in kB (column NULL → 3000; negative → 0).
    pub fn max_payload_size_in_kb(&self) -> u32 {
        non_negative(self.max_payload_size_in_kb, DEFAULT_MAX_PAYLOAD_SIZE_IN_KB)
    }

    /// Largest accepted broadcast payload in bytes: kB × 1000 + 500.
    pub fn max_payload_bytes(&self) -> u64 {
        u64::from(self.max_payload_size_in_kb()) * 1000 + 500
    }

    /// Per-socket presence calls per window; NULL → `env_default` (`CLIENT_PRESENCE_MAX_CALLS`).
    pub fn max_client_presence_events_per_window(&self, env_default: u32) -> u32 {
        non_negative(self.max_client_presence_events_per_window, env_default)
    }

    /// Per-socket presence window in ms; NULL → `env_default` (`CLIENT_PRESENCE_WINDOW_MS`).
    pub fn client_presence_window_ms(&self, env_default: u64) -> u64 {
        match self.client_presence_window_ms {
            Some(v) => u64::try_from(v).unwrap_or(0),
            None => env_default,
        }
    }

    /// `max_concurrent_users` as an unsigned count.
    pub fn max_concurrent_users(&self) -> u32 {
        u32::try_from(self.max_concurrent_users).unwrap_or(0)
    }

    /// `max_events_per_second` as an unsigned count.
    pub fn max_events_per_second(&self) -> u32 {
        u32::try_from(self.max_events_per_second).unwrap_or(0)
    }

    /// `max_joins_per_second` as an unsigned count.
    pub fn max_joins_per_second(&self) -> u32 {
        u32::try_from(self.max_joins_per_second).unwrap_or(0)
    }

    /// `max_channels_per_client` as an unsigned count.
    pub fn max_channels_per_client(&self) -> u32 {
        u32::try_from(self.max_channels_per_client).unwrap_or(0)
    }

    /// `max_bytes_per_second` as an unsigned count.
    pub fn max_bytes_per_second(&self) -> u32 {
        u32::try_from(self.max_bytes_per_second).unwrap_or(0)
    }

    /// Whether any secret still uses the legacy cipher (what the GCM backfill looks for).
    pub fn has_legacy_secrets(&self) -> bool {
        let legacy = |v: &str| !Crypto::is_gcm(v);
        self.jwt_secret.as_deref().is_some_and(legacy)
            || self.extensions.iter().any(|e| {
                crate::extension::ENCRYPTED_SETTINGS.iter().any(|k| {
                    e.settings
                        .get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(legacy)
                })
            })
    }
}

fn non_negative(v: Option<i32>, default: u32) -> u32 {
    match v {
        Some(v) => u32::try_from(v).unwrap_or(0),
        None => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crypto() -> Crypto {
        Crypto::new(Some(b"supabaserealtime".to_vec()), None, false).unwrap()
    }

    fn tenant(settings: Value) -> Tenant {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 8, 21)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .unwrap();
        Tenant {
            id: Uuid::nil(),
            name: Some("realtime-dev".into()),
            external_id: "realtime-dev".into(),
            jwt_secret: None,
            jwt_jwks: Some(json!({"keys": []})),
            max_concurrent_users: 200,
            max_events_per_second: 100,
            max_bytes_per_second: 100_000,
            max_channels_per_client: 100,
            max_joins_per_second: 100,
            postgres_cdc_default: Some("postgres_cdc_rls".into()),
            suspend: true,
            notify_private_alpha: false,
            private_only: false,
            migrations_ran: 0,
            broadcast_adapter: None,
            max_presence_events_per_second: None,
            max_payload_size_in_kb: None,
            max_client_presence_events_per_window: None,
            client_presence_window_ms: None,
            presence_enabled: false,
            feature_flags: json!({}),
            gcm_migrated_at: None,
            inserted_at: at,
            updated_at: at,
            extensions: vec![Extension {
                id: Uuid::nil(),
                r#type: Some("postgres_cdc_rls".into()),
                settings,
                tenant_external_id: "realtime-dev".into(),
                inserted_at: at,
                updated_at: at,
            }],
        }
    }

    fn seeded_settings() -> Value {
        json!({
            "db_host": "QhixI0o7PYIABziLUL4f0A==", "db_port": "+enMDFi1J/3IrrquHHwUmA==",
            "db_name": "sWBpZNdjggEPTQVlI52Zfw==", "db_user": "uxbEq/zz8DXVD53TOI1zmw==",
            "db_password": "sWBpZNdjggEPTQVlI52Zfw==", "region": "us-east-1"
        })
    }

    #[test]
    fn api_json_has_exactly_the_upstream_fields() {
        let t = tenant(seeded_settings());
        assert_eq!(
            t.to_api_json(),
            json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "external_id": "realtime-dev",
                "name": "realtime-dev",
                "max_concurrent_users": 200,
                "max_channels_per_client": 100,
                "max_events_per_second": 100,
                "max_joins_per_second": 100,
                "inserted_at": "2026-08-21T12:00:00",
                "extensions": [{
                    "type": "postgres_cdc_rls",
                    "inserted_at": "2026-08-21T12:00:00",
                    "updated_at": "2026-08-21T12:00:00",
                    "settings": {
                        "db_host": "QhixI0o7PYIABziLUL4f0A==", "db_port": "+enMDFi1J/3IrrquHHwUmA==",
                        "db_name": "sWBpZNdjggEPTQVlI52Zfw==", "db_user": "uxbEq/zz8DXVD53TOI1zmw==",
                        "region": "us-east-1"
                    }
                }],
                "private_only": false,
                "max_client_presence_events_per_window": null,
                "client_presence_window_ms": null,
                "presence_enabled": false
            })
        );
    }

    #[test]
    fn limits_and_defaults() {
        let mut t = tenant(seeded_settings());
        assert_eq!(t.max_presence_events_per_second(), 1000);
        assert_eq!(t.max_payload_size_in_kb(), 3000);
        assert_eq!(t.max_payload_bytes(), 3_000_500);
        assert_eq!(t.max_client_presence_events_per_window(5), 5);
        assert_eq!(t.client_presence_window_ms(30_000), 30_000);
        t.max_payload_size_in_kb = Some(1);
        t.max_client_presence_events_per_window = Some(2);
        t.client_presence_window_ms = Some(10);
        t.max_events_per_second = -1;
        assert_eq!(t.max_payload_bytes(), 1500);
        assert_eq!(t.max_client_presence_events_per_window(5), 2);
        assert_eq!(t.client_presence_window_ms(30_000), 10);
        assert_eq!(t.max_events_per_second(), 0);
        assert_eq!(t.jwt_secret_plain(&crypto()).unwrap(), None);
    }

    #[test]
    fn cdc_settings_decrypt_and_default_to_tls() {
        let c = crypto();
        let cdc = tenant(seeded_settings()).cdc_settings(&c).unwrap().unwrap();
        assert_eq!(
            (
                cdc.host.as_str(),
                cdc.port,
                cdc.db_name.as_str(),
                cdc.user.as_str()
            ),
            ("db", 5432, "postgres", "supabase_admin")
        );
        assert!(cdc.ssl_enforced, "absent → TLS");
        assert_eq!(cdc.publication, "supabase_realtime");
        assert_eq!(cdc.slot_name, "supabase_realtime_replication_slot");
        assert_eq!((cdc.db_pool, cdc.subscriber_pool_size), (None, None));

        let mut s = seeded_settings();
        s["ssl_enforced"] = json!("false");
        s["db_pool"] = json!(3);
        s["subcriber_pool_size"] = json!("6");
        let cdc = tenant(s).cdc_settings(&c).unwrap().unwrap();
        assert!(cdc.ssl_enforced, "non-boolean → TLS");
        assert_eq!((cdc.db_pool, cdc.subscriber_pool_size), (Some(3), Some(6)));

        let mut s = seeded_settings();
        s["ssl_enforced"] = json!(false);
        assert!(!tenant(s).cdc_settings(&c).unwrap().unwrap().ssl_enforced);

        let mut s = seeded_settings();
        s.as_object_mut().unwrap().remove("db_user");
        assert_eq!(
            tenant(s).cdc_settings(&c),
            Err(TenantError::MissingSetting("db_user"))
        );
        let mut s = seeded_settings();
        s["db_port"] = json!("not-a-port");
        assert_eq!(
            tenant(s).cdc_settings(&c),
            Err(TenantError::InvalidSetting("db_port"))
        );
        let mut t = tenant(seeded_settings());
        t.extensions.clear();
        assert_eq!(t.cdc_settings(&c), Ok(None));
    }

    #[test]
    fn legacy_secret_detection() {
        let c = Crypto::new(None, Some(vec![1; 32]), true).unwrap();
        let mut t = tenant(seeded_settings());
        assert!(t.has_legacy_secrets());
        for key in crate::extension::ENCRYPTED_SETTINGS {
            t.extensions[0].settings[key] = json!(c.encrypt("x").unwrap());
        }
        assert!(!t.has_legacy_secrets());
        t.jwt_secret = Some("legacy".into());
        assert!(t.has_legacy_secrets());
    }
}
