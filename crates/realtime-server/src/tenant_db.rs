//! Work the control plane does in a tenant's own database: running the tenant migrations
//! (after create, after the seed, on an unhealthy health check) and dropping the tenant's
//! replication slot when it is deleted.

use realtime_pg::connect::{connect, ConnectOptions, TlsMode};
use realtime_tenants::{tenant_migrations, CdcSettings, Crypto, Registry, Tenant};

/// Number of tenant migrations upstream v2.129.8 ships; a tenant with this many applied is
/// healthy without a live connection.
pub const TENANT_MIGRATIONS: i32 = tenant_migrations::TENANT_MIGRATION_COUNT;

/// Application name of the control-plane connections to a tenant database.
const APPLICATION_NAME: &str = "realtime_migrations";

/// Failures of tenant database work.
#[derive(Debug, thiserror::Error)]
pub enum TenantDbError {
    /// The tenant has no `postgres_cdc_rls` extension, so no database to work in.
    #[error("tenant has no postgres_cdc_rls extension")]
    NoDatabase,
    /// The extension settings could not be decrypted or read.
    #[error("tenant database settings are unusable: {0}")]
    Settings(String),
    /// Connecting failed.
    #[error("UnableToConnectToTenantDatabase: {0}")]
    Connect(String),
    /// A migration failed.
    #[error("MigrationsFailedToRun: {0}")]
    Migrations(String),
    /// The partition pass failed.
    #[error("PartitionCreationFailed: {0}")]
    Partitions(String),
    /// A query failed.
    #[error("{0}")]
    Query(String),
}

/// Connection options for a tenant database.
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

async fn connect_tenant(
    tenant: &Tenant,
    crypto: &Crypto,
) -> Result<tokio_postgres::Client, TenantDbError> {
    let settings = tenant
        .cdc_settings(crypto)
        .map_err(|e| TenantDbError::Settings(e.to_string()))?
        .ok_or(TenantDbError::NoDatabase)?;
    connect(&connect_options(&settings, APPLICATION_NAME))
        .await
        .map_err(|e| TenantDbError::Connect(e.to_string()))
}

/// Runs the missing tenant migrations and records how many are applied in the registry.
pub async fn migrate(
    registry: &Registry,
    crypto: &Crypto,
    tenant: &Tenant,
) -> Result<i32, TenantDbError> {
    let client = connect_tenant(tenant, crypto).await?;
    let report = tenant_migrations::migrate(&client)
        .await
        .map_err(|e| TenantDbError::Migrations(e.to_string()))?;
    let applied = report.total;
    // One janitor pass, as upstream's set-up does.
    partition_pass(&client).await?;
    registry
        .set_migrations_ran(&tenant.external_id, applied)
        .await
        .map_err(|e| TenantDbError::Query(e.to_string()))?;
    Ok(applied)
}

/// The janitor's work on one tenant database: partitions for today-1 … today+3 exist and
/// expired ones are dropped. Returns the dropped partitions.
pub async fn maintain_partitions(
    crypto: &Crypto,
    tenant: &Tenant,
) -> Result<Vec<String>, TenantDbError> {
    let client = connect_tenant(tenant, crypto).await?;
    partition_pass(&client).await
}

async fn partition_pass(client: &tokio_postgres::Client) -> Result<Vec<String>, TenantDbError> {
    let today = chrono::Utc::now().date_naive();
    let dropped = tenant_migrations::drop_old_partitions(client, today)
        .await
        .map_err(|e| TenantDbError::Partitions(e.to_string()))?;
    tenant_migrations::create_partitions(client, today)
        .await
        .map_err(|e| TenantDbError::Partitions(e.to_string()))?;
    Ok(dropped)
}

/// Drops the tenant's replication slot after a delete. Like upstream, a slot is dropped only
/// when exactly one slot whose name contains `realtime` exists: in a database shared by
/// several tenants (or holding both the CDC and the broadcast slot) nothing is dropped.
pub async fn drop_replication_slot(crypto: &Crypto, tenant: &Tenant) -> Result<(), TenantDbError> {
    let client = match connect_tenant(tenant, crypto).await {
        Err(TenantDbError::NoDatabase) => return Ok(()),
        other => other?,
    };
    let rows = client
        .query(
            "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE '%realtime%'",
            &[],
        )
        .await
        .map_err(|e| TenantDbError::Query(e.to_string()))?;
    if rows.len() != 1 {
        return Ok(());
    }
    let slot: String = rows[0].get(0);
    client
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&slot],
        )
        .await
        .map_err(|e| TenantDbError::Query(e.to_string()))?;
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1 AND NOT active",
            &[&slot],
        )
        .await
        .map_err(|e| TenantDbError::Query(e.to_string()))?;
    Ok(())
}
