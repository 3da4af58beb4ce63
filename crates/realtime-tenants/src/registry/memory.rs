//! Standalone mode: tenants and feature flags held in memory, lost at exit.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::crypto::Crypto;
use crate::feature_flags::FeatureFlag;
use crate::registry::{TenantDefaults, UpsertError, Upserted};
use crate::tenant::Tenant;
use crate::upsert::{now_utc_seconds, prepare};

/// In-memory tenants (by external id) and feature flags (by name).
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    tenants: Mutex<BTreeMap<String, Tenant>>,
    flags: Mutex<BTreeMap<String, FeatureFlag>>,
}

impl MemoryRegistry {
    fn tenants(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Tenant>> {
        // A poisoned lock only means another thread panicked mid-update; the map is intact.
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn flags(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FeatureFlag>> {
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, external_id: &str) -> Option<Tenant> {
        self.tenants().get(external_id).cloned()
    }

    pub(crate) fn list(&self) -> Vec<Tenant> {
        self.tenants().values().cloned().collect()
    }

    pub(crate) fn upsert(
        &self,
        external_id: &str,
        params: &Value,
        defaults: &TenantDefaults,
        crypto: &Crypto,
    ) -> Result<Upserted, UpsertError> {
        let mut tenants = self.tenants();
        let existing = tenants.get(external_id);
        let created = existing.is_none();
        let prepared = prepare(
            existing,
            external_id,
            params,
            defaults,
            crypto,
            now_utc_seconds(),
        )?;
        tenants.insert(external_id.to_string(), prepared.tenant.clone());
        Ok(Upserted {
            tenant: prepared.tenant,
            created,
        })
    }

    /// Stores a tenant as given (seed).
    pub(crate) fn replace(&self, tenant: Tenant) {
        self.tenants().insert(tenant.external_id.clone(), tenant);
    }

    pub(crate) fn delete(&self, external_id: &str) -> bool {
        self.tenants().remove(external_id).is_some()
    }

    pub(crate) fn set_migrations_ran(&self, external_id: &str, n: i32) {
        if let Some(t) = self.tenants().get_mut(external_id) {
            t.migrations_ran = n;
        }
    }

    pub(crate) fn feature_flag(&self, name: &str) -> Option<FeatureFlag> {
        self.flags().get(name).cloned()
    }

    pub(crate) fn upsert_feature_flag(&self, flag: FeatureFlag) {
        self.flags().insert(flag.name.clone(), flag);
    }
}
