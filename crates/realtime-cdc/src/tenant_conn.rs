//! Connection settings built from a tenant: its decrypted `postgres_cdc_rls` extension turned
//! into [`ConnectOptions`]. Every connection to a tenant database starts here.

use realtime_pg::{ConnectOptions, TlsMode};
use realtime_tenants::{CdcSettings, Crypto, Tenant, TenantError};

/// Why a tenant gives no connection settings. Neither variant carries a password.
#[derive(Debug, thiserror::Error)]
pub enum TenantConnError {
    /// The tenant has no `postgres_cdc_rls` extension, so no database to connect to.
    #[error("tenant {external_id} has no postgres_cdc_rls extension")]
    NoDatabase {
        /// The tenant.
        external_id: String,
    },
    /// The extension's settings cannot be read (decryption, a missing or invalid value).
    #[error("database settings of tenant {external_id}: {source}")]
    Settings {
        /// The tenant.
        external_id: String,
        /// What was wrong.
        source: TenantError,
    },
}

/// The tenant's decrypted `postgres_cdc_rls` settings.
pub fn settings(tenant: &Tenant, crypto: &Crypto) -> Result<CdcSettings, TenantConnError> {
    tenant
        .cdc_settings(crypto)
        .map_err(|source| TenantConnError::Settings {
            external_id: tenant.external_id.clone(),
            source,
        })?
        .ok_or_else(|| TenantConnError::NoDatabase {
            external_id: tenant.external_id.clone(),
        })
}

/// Connection options for a tenant database: its host, port, database and `db_user`, named
/// `application_name` in `pg_stat_activity`. `ssl_enforced` asks for TLS without certificate
/// verification, as upstream connects (`ssl: [verify: :verify_none]`).
pub fn connect_options(settings: &CdcSettings, application_name: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(
        settings.host.clone(),
        settings.port,
        settings.db_name.clone(),
        settings.user.clone(),
        settings.password.clone(),
    );
    opts.application_name = application_name.to_string();
    if settings.ssl_enforced {
        opts.tls = TlsMode::RequireNoVerify;
    }
    opts
}

/// [`settings`] and [`connect_options`] in one step.
pub fn tenant_options(
    tenant: &Tenant,
    crypto: &Crypto,
    application_name: &str,
) -> Result<ConnectOptions, TenantConnError> {
    Ok(connect_options(
        &settings(tenant, crypto)?,
        application_name,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdc_settings(ssl_enforced: bool) -> CdcSettings {
        CdcSettings {
            host: "db.example".into(),
            port: 6543,
            db_name: "postgres".into(),
            user: "supabase_realtime_admin".into(),
            password: "secret".into(),
            ssl_enforced,
            publication: "supabase_realtime".into(),
            slot_name: "supabase_realtime_replication_slot".into(),
            region: None,
            db_pool: None,
            subscriber_pool_size: None,
        }
    }

    #[test]
    fn options_follow_the_settings() {
        let opts = connect_options(&cdc_settings(false), "realtime_rls");
        assert_eq!(opts.host, "db.example");
        assert_eq!(opts.port, 6543);
        assert_eq!(opts.dbname, "postgres");
        assert_eq!(opts.user, "supabase_realtime_admin");
        assert_eq!(opts.password, "secret");
        assert_eq!(opts.application_name, "realtime_rls");
        assert_eq!(opts.tls, TlsMode::Disable);
    }

    #[test]
    fn ssl_enforced_requires_tls() {
        let opts = connect_options(&cdc_settings(true), "x");
        assert_eq!(opts.tls, TlsMode::RequireNoVerify);
    }
}
