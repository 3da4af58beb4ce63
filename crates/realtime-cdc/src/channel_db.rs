//! The tenant-database connections private channels use: one per tenant, opened on first
//! need, shared by the policy checks ([`crate::channel_policies`]) and broadcast replay
//! ([`crate::db_broadcast::replay()`]), used by one check at a time.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use realtime_tenants::{Crypto, Tenant};
use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::channel_policies::{self, PolicyContext, PolicyError, ReadAccess, WriteAccess};
use crate::db_broadcast::{self, DbBroadcast, DbBroadcastError};
use crate::tenant_conn::{self, TenantConnError};

/// One tenant's connection; `None` until opened (or after a failed open).
type Slot = Arc<Mutex<Option<Client>>>;

/// Connections to tenant databases for private channels, keyed by tenant id.
#[derive(Default)]
pub struct ChannelDatabases {
    crypto: OnceLock<Arc<Crypto>>,
    conns: DashMap<String, Slot>,
}

impl ChannelDatabases {
    /// Sets the keys that decrypt the tenants' database settings (once; later calls are
    /// ignored). Until then every check fails as [`PolicyError::Unavailable`].
    pub fn set_crypto(&self, crypto: Arc<Crypto>) {
        let _ = self.crypto.set(crypto);
    }

    /// The keys, once set.
    pub fn crypto(&self) -> Option<Arc<Crypto>> {
        self.crypto.get().cloned()
    }

    /// Drops a tenant's connection (e.g. after its settings changed); the next check opens a
    /// new one.
    pub fn forget(&self, tenant: &str) {
        self.conns.remove(tenant);
    }

    /// The tenant's open connection, connecting first when there is none or it has closed.
    /// `row` (the tenant's registry row) is awaited only then.
    async fn connection(
        &self,
        tenant: &str,
        row: impl Future<Output = Option<Arc<Tenant>>>,
    ) -> Result<Slot, PolicyError> {
        let slot = self.conns.entry(tenant.to_string()).or_default().clone();
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|c| !c.is_closed()) {
            drop(guard);
            return Ok(slot);
        }
        let crypto = self
            .crypto
            .get()
            .ok_or_else(|| PolicyError::Unavailable("no database access configured".into()))?;
        let row = row
            .await
            .ok_or_else(|| PolicyError::Unavailable("tenant row unavailable".into()))?;
        let opts = tenant_conn::tenant_options(&row, crypto, channel_policies::APPLICATION_NAME)
            .map_err(|e| match e {
                TenantConnError::NoDatabase { .. } => {
                    PolicyError::Unavailable("tenant has no database settings".into())
                }
                TenantConnError::Settings { source, .. } => {
                    PolicyError::Unavailable(source.to_string())
                }
            })?;
        let client = realtime_pg::connect(&opts)
            .await
            .map_err(|e| PolicyError::Unavailable(e.to_string()))?;
        *guard = Some(client);
        drop(guard);
        Ok(slot)
    }

    /// [`channel_policies::check_read`] on the tenant's connection.
    pub async fn read_policies(
        &self,
        tenant: &str,
        row: impl Future<Output = Option<Arc<Tenant>>>,
        ctx: &PolicyContext,
        with_presence: bool,
    ) -> Result<ReadAccess, PolicyError> {
        let slot = self.connection(tenant, row).await?;
        let mut guard = slot.lock().await;
        let client = guard
            .as_mut()
            .ok_or_else(|| PolicyError::Unavailable("no connection".into()))?;
        channel_policies::check_read(client, ctx, with_presence).await
    }

    /// [`channel_policies::check_write`] on the tenant's connection.
    pub async fn write_policies(
        &self,
        tenant: &str,
        row: impl Future<Output = Option<Arc<Tenant>>>,
        ctx: &PolicyContext,
    ) -> Result<WriteAccess, PolicyError> {
        let slot = self.connection(tenant, row).await?;
        let mut guard = slot.lock().await;
        let client = guard
            .as_mut()
            .ok_or_else(|| PolicyError::Unavailable("no connection".into()))?;
        channel_policies::check_write(client, ctx).await
    }

    /// [`db_broadcast::replay()`] of a private channel's `topic` on the tenant's connection.
    /// A tenant database that cannot be reached fails as
    /// [`DbBroadcastError::ReplayFailed`].
    pub async fn replay(
        &self,
        tenant: &str,
        row: impl Future<Output = Option<Arc<Tenant>>>,
        topic: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<DbBroadcast>, DbBroadcastError> {
        let slot = self.connection(tenant, row).await.map_err(|e| {
            tracing::warn!(tenant, error = %e, "UnableToReplayMessages: tenant database unavailable");
            DbBroadcastError::ReplayFailed(None)
        })?;
        let guard = slot.lock().await;
        let Some(client) = guard.as_ref() else {
            return Err(DbBroadcastError::ReplayFailed(None));
        };
        db_broadcast::replay(client, topic, true, since_ms, limit).await
    }
}
