//! Work the control plane does in a tenant's own database: running the tenant migrations
//! (after create, after the seed, on an unhealthy health check), the partition pass of the
//! janitor, and dropping the tenant's replication slot when it is deleted.

use realtime_pg::connect::connect;
use realtime_tenants::{tenant_migrations, Crypto, Registry, Tenant};

use crate::tenant_conn::{self, TenantConnError};

/// Number of tenant migrations upstream v2.129.8 ships; a tenant with this many applied is
/// healthy without a live connection.
pub const TENANT_MIGRATIONS: i32 = tenant_migrations::TENANT_MIGRATION_COUNT;

/// Application name of the control-plane connections to a tenant database.
const APPLICATION_NAME: &str = "realtime_migrations";

/// Our slots: every name containing `realtime` (the CDC and the broadcast slot, any suffix).
const LIST_REALTIME_SLOTS: &str =
    "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE '%realtime%'";
/// Ends the walsender holding the slot, if any: the tenant is deleted, so whoever streams
/// from its slot (this instance's pipeline has stopped already) has nothing left to serve.
/// Taking a slot over never does this to a live holder ([`crate::slot_lease`]).
const TERMINATE_SLOT_HOLDER: &str =
    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
     WHERE slot_name = $1 AND active_pid IS NOT NULL";
/// Drops the slot once nobody holds it.
const DROP_INACTIVE_SLOT: &str =
    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
     WHERE slot_name = $1 AND NOT active";

/// Failures of tenant database work.
#[derive(Debug, thiserror::Error)]
pub enum TenantAdminError {
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

async fn connect_tenant(
    tenant: &Tenant,
    crypto: &Crypto,
) -> Result<tokio_postgres::Client, TenantAdminError> {
    let opts =
        tenant_conn::tenant_options(tenant, crypto, APPLICATION_NAME).map_err(|e| match e {
            TenantConnError::NoDatabase { .. } => TenantAdminError::NoDatabase,
            TenantConnError::Settings { source, .. } => {
                TenantAdminError::Settings(source.to_string())
            }
        })?;
    connect(&opts)
        .await
        .map_err(|e| TenantAdminError::Connect(e.to_string()))
}

/// Runs the missing tenant migrations and records how many are applied in the registry.
pub async fn migrate(
    registry: &Registry,
    crypto: &Crypto,
    tenant: &Tenant,
) -> Result<i32, TenantAdminError> {
    let client = connect_tenant(tenant, crypto).await?;
    let report = tenant_migrations::migrate(&client)
        .await
        .map_err(|e| TenantAdminError::Migrations(e.to_string()))?;
    let applied = report.total;
    // One janitor pass, as upstream's set-up does.
    partition_pass(&client).await?;
    registry
        .set_migrations_ran(&tenant.external_id, applied)
        .await
        .map_err(|e| TenantAdminError::Query(e.to_string()))?;
    Ok(applied)
}

/// The janitor's work on one tenant database: partitions for today-1 … today+3 exist and
/// expired ones are dropped. Returns the dropped partitions.
pub async fn maintain_partitions(
    crypto: &Crypto,
    tenant: &Tenant,
) -> Result<Vec<String>, TenantAdminError> {
    let client = connect_tenant(tenant, crypto).await?;
    partition_pass(&client).await
}

async fn partition_pass(client: &tokio_postgres::Client) -> Result<Vec<String>, TenantAdminError> {
    let today = chrono::Utc::now().date_naive();
    let dropped = tenant_migrations::drop_old_partitions(client, today)
        .await
        .map_err(|e| TenantAdminError::Partitions(e.to_string()))?;
    tenant_migrations::create_partitions(client, today)
        .await
        .map_err(|e| TenantAdminError::Partitions(e.to_string()))?;
    Ok(dropped)
}

/// Drops the tenant's replication slot after a delete. Like upstream, a slot is dropped only
/// when exactly one slot whose name contains `realtime` exists: in a database shared by
/// several tenants (or holding both the CDC and the broadcast slot) nothing is dropped.
pub async fn drop_replication_slot(
    crypto: &Crypto,
    tenant: &Tenant,
) -> Result<(), TenantAdminError> {
    let client = match connect_tenant(tenant, crypto).await {
        Err(TenantAdminError::NoDatabase) => return Ok(()),
        other => other?,
    };
    let query = |e: tokio_postgres::Error| TenantAdminError::Query(e.to_string());
    let rows = client
        .query(LIST_REALTIME_SLOTS, &[])
        .await
        .map_err(query)?;
    let mut names = Vec::with_capacity(rows.len());
    for r in &rows {
        names.push(r.try_get::<_, String>(0).map_err(query)?);
    }
    let Some(slot) = slot_to_drop(&names) else {
        return Ok(());
    };
    client
        .execute(TERMINATE_SLOT_HOLDER, &[&slot])
        .await
        .map_err(query)?;
    client
        .execute(DROP_INACTIVE_SLOT, &[&slot])
        .await
        .map_err(query)?;
    Ok(())
}

/// Upstream's rule for a deleted tenant: the slot goes only when it is the database's one
/// realtime slot.
fn slot_to_drop(realtime_slots: &[String]) -> Option<&str> {
    match realtime_slots {
        [only] => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::slot_to_drop;

    #[test]
    fn drops_only_a_lone_realtime_slot() {
        assert_eq!(slot_to_drop(&[]), None);
        assert_eq!(
            slot_to_drop(&["supabase_realtime_replication_slot_".into()]),
            Some("supabase_realtime_replication_slot_")
        );
        assert_eq!(
            slot_to_drop(&[
                "supabase_realtime_replication_slot_".into(),
                "supabase_realtime_messages_replication_slot_".into()
            ]),
            None
        );
    }
}
