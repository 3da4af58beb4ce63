//! In-memory tenant cache with a TTL from insertion (`TENANT_CACHE_EXPIRATION_IN_MS`).
//! Misses read the registry, one read per tenant at a time however many requests wait for it;
//! "not found" is remembered for a second (upstream does not remember it), so a client
//! retrying an unknown Host in a loop costs one registry query per second, not one per attempt.

use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Ids the registry did not know, and when it said so.
    missing: DashMap<String, Instant>,
    /// One lock per id being read, so concurrent misses share a read.
    reading: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    reads: AtomicU64,
}

/// How long "not found" is remembered (at most the cache's TTL).
const MISSING_TTL: Duration = Duration::from_secs(1);
/// Unknown ids remembered at most; past it the memory is cleared, so random Host headers
/// cannot grow it without bound.
const MISSING_MAX: usize = 10_000;

impl TenantCache {
    /// A cache over `registry` whose entries live `ttl` after insertion.
    pub fn new(registry: Arc<Registry>, ttl: Duration) -> TenantCache {
        TenantCache {
            registry,
            ttl,
            entries: Arc::new(DashMap::new()),
            backfill: None,
            backfill_running: Arc::new(DashMap::new()),
            missing: DashMap::new(),
            reading: DashMap::new(),
            reads: AtomicU64::new(0),
        }
    }

    /// How many registry reads the cache has made (misses and expiries).
    pub fn registry_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The answer the cache holds without reading: `Some(None)` for a remembered miss.
    fn cached(&self, external_id: &str) -> Option<Option<Arc<Tenant>>> {
        if let Some(entry) = self.entries.get(external_id) {
            let (at, tenant) = entry.value();
            if at.elapsed() < self.ttl {
                return Some(Some(tenant.clone()));
            }
        }
        if let Some(at) = self.missing.get(external_id) {
            if at.elapsed() < MISSING_TTL.min(self.ttl) {
                return Some(None);
            }
        }
        None
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
        if let Some(answer) = self.cached(external_id) {
            return Ok(answer);
        }
        let lock = self
            .reading
            .entry(external_id.to_string())
            .or_default()
            .clone();
        let result = {
            let _reading = lock.lock().await;
            // Whoever held the lock may have read it meanwhile.
            match self.cached(external_id) {
                Some(answer) => Ok(answer),
                // Boxed: a registry read has a large state, and callers keep a cache lookup
                // inside long-lived tasks (every socket).
                None => Box::pin(self.read(external_id)).await,
            }
        };
        drop(lock);
        self.reading
            .remove_if(external_id, |_, l| Arc::strong_count(l) == 1);
        result
    }

    async fn read(&self, external_id: &str) -> Result<Option<Arc<Tenant>>, RegistryError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match self.registry.get(external_id).await? {
            Some(tenant) => {
                let tenant = self.put(tenant);
                self.maybe_backfill(&tenant);
                Ok(Some(tenant))
            }
            None => {
                self.entries.remove(external_id);
                if self.missing.len() >= MISSING_MAX {
                    self.missing.clear();
                }
                self.missing.insert(external_id.to_string(), Instant::now());
                Ok(None)
            }
        }
    }

    /// Stores (or replaces) a tenant, e.g. after an API create/update.
    pub fn put(&self, tenant: Tenant) -> Arc<Tenant> {
        let tenant = Arc::new(tenant);
        self.missing.remove(&tenant.external_id);
        self.entries
            .insert(tenant.external_id.clone(), (Instant::now(), tenant.clone()));
        tenant
    }

    /// Drops a tenant from the cache (API delete).
    pub fn invalidate(&self, external_id: &str) {
        self.entries.remove(external_id);
        self.missing.remove(external_id);
    }
}
