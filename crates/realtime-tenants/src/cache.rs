//! In-memory tenant cache with a TTL from insertion (`TENANT_CACHE_EXPIRATION_IN_MS`).
//! Misses read the registry; "not found" is never cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::crypto::Crypto;
use crate::gcm_backfill::{needs_backfill, reconcile};
use crate::registry::{Registry, RegistryError};
use crate::tenant::Tenant;

/// `external_id → tenant` with expiry.
pub struct TenantCache {
    registry: Arc<Registry>,
    ttl: Duration,
    entries: Arc<DashMap<String, (Instant, Arc<Tenant>)>>,
    backfill: Option<Arc<Crypto>>,
    backfill_running: Arc<DashMap<String, ()>>,
}

impl TenantCache {
    /// A cache over `registry` whose entries live `ttl` after insertion.
    pub fn new(registry: Arc<Registry>, ttl: Duration) -> TenantCache {
        TenantCache {
            registry,
            ttl,
            entries: Arc::new(DashMap::new()),
            backfill: None,
            backfill_running: Arc::new(DashMap::new()),
        }
    }

    /// Enables the GCM backfill (§3.5) on cache misses; it only acts when `crypto` writes GCM.
    pub fn with_gcm_backfill(mut self, crypto: Arc<Crypto>) -> TenantCache {
        self.backfill = crypto.write_gcm().then_some(crypto);
        self
    }

    /// Starts the background re-encryption of a freshly loaded tenant, once at a time.
    fn maybe_backfill(&self, tenant: &Arc<Tenant>) {
        let Some(crypto) = self.backfill.clone() else {
            return;
        };
        if !needs_backfill(&crypto, tenant) {
            return;
        }
        if self
            .backfill_running
            .insert(tenant.external_id.clone(), ())
            .is_some()
        {
            return;
        }
        let (registry, entries, running) = (
            self.registry.clone(),
            self.entries.clone(),
            self.backfill_running.clone(),
        );
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let id = tenant.external_id.clone();
            match reconcile(&registry, &crypto, &tenant).await {
                Ok(true) => {
                    // Refresh so readers see the new ciphertexts and gcm_migrated_at.
                    if let Ok(Some(fresh)) = registry.get(&id).await {
                        entries.insert(id.clone(), (Instant::now(), Arc::new(fresh)));
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    external_id = %id,
                    project = %id,
                    error = %e,
                    "EncryptionReconcileFailed: {e}"
                ),
            }
            running.remove(&id);
        });
    }

    /// The registry behind the cache.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The cached tenant, or a fresh read on a miss or after expiry.
    pub async fn get(&self, external_id: &str) -> Result<Option<Arc<Tenant>>, RegistryError> {
        if let Some(entry) = self.entries.get(external_id) {
            let (at, tenant) = entry.value();
            if at.elapsed() < self.ttl {
                return Ok(Some(tenant.clone()));
            }
        }
        match self.registry.get(external_id).await? {
            Some(tenant) => {
                let tenant = self.put(tenant);
                self.maybe_backfill(&tenant);
                Ok(Some(tenant))
            }
            None => {
                self.entries.remove(external_id);
                Ok(None)
            }
        }
    }

    /// Stores (or replaces) a tenant, e.g. after an API create/update.
    pub fn put(&self, tenant: Tenant) -> Arc<Tenant> {
        let tenant = Arc::new(tenant);
        self.entries
            .insert(tenant.external_id.clone(), (Instant::now(), tenant.clone()));
        tenant
    }

    /// Drops a tenant from the cache (API delete).
    pub fn invalidate(&self, external_id: &str) {
        self.entries.remove(external_id);
    }
}
