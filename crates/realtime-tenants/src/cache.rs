//! In-memory tenant cache with a TTL from insertion (`TENANT_CACHE_EXPIRATION_IN_MS`).
//! Misses read the registry; "not found" is never cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::registry::{Registry, RegistryError};
use crate::tenant::Tenant;

/// `external_id → tenant` with expiry.
pub struct TenantCache {
    registry: Arc<Registry>,
    ttl: Duration,
    entries: DashMap<String, (Instant, Arc<Tenant>)>,
}

impl TenantCache {
    /// A cache over `registry` whose entries live `ttl` after insertion.
    pub fn new(registry: Arc<Registry>, ttl: Duration) -> TenantCache {
        TenantCache {
            registry,
            ttl,
            entries: DashMap::new(),
        }
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
            Some(tenant) => Ok(Some(self.put(tenant))),
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
