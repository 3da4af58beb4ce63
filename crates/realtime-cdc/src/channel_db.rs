//! The tenant-database connections private channels use: a small pool per tenant, opened on
//! need, shared by the policy checks ([`crate::channel_policies`]) and broadcast replay
//! ([`crate::db_broadcast::replay()`]), with every wait bounded (a free connection, a new
//! connection, each statement, each check).

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use realtime_tenants::{Crypto, Tenant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use crate::channel_policies::{self, PolicyContext, PolicyError, ReadAccess, WriteAccess};
use crate::db_broadcast::{self, DbBroadcast, DbBroadcastError};
use crate::tenant_conn::{self, TenantConnError};

/// Connections one tenant's checks use at once: a slow policy holds one of them, not the
/// tenant.
const POOL_SIZE: usize = 3;
/// Longest wait for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a whole check may take, whatever the database does.
const CHECK_TIMEOUT: Duration = Duration::from_secs(8);
/// Each statement of a check is bounded by the database too (and never waits long for a lock).
const SESSION_SETTINGS: &str = "SET statement_timeout = '5s'; SET lock_timeout = '2s'";

/// One tenant's connections: idle ones, and permits bounding how many are in use.
struct Pool {
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Client>>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            permits: Arc::new(Semaphore::new(POOL_SIZE)),
            idle: Mutex::new(Vec::new()),
        }
    }
}

/// A connection lent to one check; it goes back to the pool only when the check finished
/// (a check cut short may leave a statement running on it).
struct Lease {
    pool: Arc<Pool>,
    client: Option<Client>,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    fn client(&mut self) -> Result<&mut Client, PolicyError> {
        self.client
            .as_mut()
            .ok_or_else(|| PolicyError::Unavailable("no connection".into()))
    }
}

impl Lease {
    /// The outcome of a check bounded by [`CHECK_TIMEOUT`]; the connection goes back to the
    /// pool only if the check ended by itself.
    fn finish<T>(
        &mut self,
        tenant: &str,
        outcome: Result<Result<T, PolicyError>, tokio::time::error::Elapsed>,
    ) -> Result<T, PolicyError> {
        match outcome {
            Ok(result) => {
                self.done = true;
                result
            }
            Err(_) => {
                tracing::warn!(tenant, "tenant database check took too long, abandoned");
                Err(PolicyError::Canceled(
                    "canceling statement due to statement timeout".into(),
                ))
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if self.done && !client.is_closed() {
                match self.pool.idle.lock() {
                    Ok(mut idle) => idle.push(client),
                    Err(poisoned) => poisoned.into_inner().push(client),
                }
            }
        }
    }
}

/// Connections to tenant databases for private channels, keyed by tenant id.
#[derive(Default)]
pub struct ChannelDatabases {
    crypto: OnceLock<Arc<Crypto>>,
    pools: DashMap<String, Arc<Pool>>,
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

    /// Drops a tenant's connections (e.g. after its settings changed); the next check opens
    /// a new one.
    pub fn forget(&self, tenant: &str) {
        self.pools.remove(tenant);
    }

    /// A connection of the tenant's pool, opened when none is idle; `row` (the tenant's
    /// registry row) is awaited only then.
    async fn lease(
        &self,
        tenant: &str,
        row: impl Future<Output = Option<Arc<Tenant>>>,
    ) -> Result<Lease, PolicyError> {
        let pool = self.pools.entry(tenant.to_string()).or_default().clone();
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, pool.permits.clone().acquire_owned())
            .await
            .map_err(|_| PolicyError::Unavailable("every connection is busy".into()))?
            .map_err(|_| PolicyError::Unavailable("connections closed".into()))?;
        let idle = {
            let mut idle = match pool.idle.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            idle.retain(|c| !c.is_closed());
            idle.pop()
        };
        let client = match idle {
            Some(c) => c,
            // Boxed: connecting (TLS included) has a large state that would otherwise be
            // part of every socket task that may check a policy.
            None => Box::pin(self.connect(row)).await?,
        };
        Ok(Lease {
            pool,
            client: Some(client),
            done: false,
            _permit: permit,
        })
    }

    async fn connect(
        &self,
        row: impl Future<Output = Option<Arc<Tenant>>>,
    ) -> Result<Client, PolicyError> {
        let crypto = self
            .crypto
            .get()
            .ok_or_else(|| PolicyError::Unavailable("no database access configured".into()))?;
        let row = row
            .await
            .ok_or_else(|| PolicyError::Unavailable("tenant row unavailable".into()))?;
        let mut opts =
            tenant_conn::tenant_options(&row, crypto, channel_policies::APPLICATION_NAME).map_err(
                |e| match e {
                    TenantConnError::NoDatabase { .. } => {
                        PolicyError::Unavailable("tenant has no database settings".into())
                    }
                    TenantConnError::Settings { source, .. } => {
                        PolicyError::Unavailable(source.to_string())
                    }
                },
            )?;
        opts.connect_timeout = CONNECT_TIMEOUT;
        opts.after_connect_query = Some(match opts.after_connect_query.take() {
            Some(q) => format!("{q}; {SESSION_SETTINGS}"),
            None => SESSION_SETTINGS.to_string(),
        });
        realtime_pg::connect(&opts)
            .await
            .map_err(|e| PolicyError::Unavailable(e.to_string()))
    }

    /// [`channel_policies::check_read`] on one of the tenant's connections.
    pub async fn read_policies(
        &self,
        tenant: &str,
        row: impl Future<Output = Option<Arc<Tenant>>>,
        ctx: &PolicyContext,
        with_presence: bool,
    ) -> Result<ReadAccess, PolicyError> {
        let mut lease = self.lease(tenant, row).await?;
        // Boxed: the check's state is large, and every socket task that might run one would
        // otherwise carry room for it all its life.
        let check = Box::pin(channel_policies::check_read(
            lease.client()?,
            ctx,
            with_presence,
        ));
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, check).await;
        lease.finish(tenant, outcome)
    }

    /// [`channel_policies::check_write`] on one of the tenant's connections.
    pub async fn write_policies(
        &self,
        tenant: &str,
        row: impl Future<Output = Option<Arc<Tenant>>>,
        ctx: &PolicyContext,
    ) -> Result<WriteAccess, PolicyError> {
        let mut lease = self.lease(tenant, row).await?;
        let check = Box::pin(channel_policies::check_write(lease.client()?, ctx));
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, check).await;
        lease.finish(tenant, outcome)
    }

    /// [`db_broadcast::replay()`] of a private channel's `topic` on one of the tenant's
    /// connections. A tenant database that cannot be reached fails as
    /// [`DbBroadcastError::ReplayFailed`].
    pub async fn replay(
        &self,
        tenant: &str,
        row: impl Future<Output = Option<Arc<Tenant>>>,
        topic: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<DbBroadcast>, DbBroadcastError> {
        let mut lease = self.lease(tenant, row).await.map_err(|e| {
            tracing::warn!(tenant, error = %e, "UnableToReplayMessages: tenant database unavailable");
            DbBroadcastError::ReplayFailed(None)
        })?;
        let client = lease
            .client()
            .map_err(|_| DbBroadcastError::ReplayFailed(None))?;
        let result = Box::pin(db_broadcast::replay(client, topic, true, since_ms, limit)).await;
        lease.done = true;
        result
    }
}
