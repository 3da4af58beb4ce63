//! Which tenant a request is for (Host header, opt-in default tenant) and the tenant facts the
//! gateway reads on every decision, so changes made through the API apply without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use serde_json::Value;

/// Per-tenant limits (PROTOCOL.md §12, CONTROL-PLANE.md §4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLimits {
    /// Sockets with at least one joined channel.
    pub max_concurrent_users: u64,
    /// Tenant events per second.
    pub max_events_per_second: u64,
    /// Joins per second.
    pub max_joins_per_second: u64,
    /// Channels per socket.
    pub max_channels_per_client: u64,
    /// Presence events per second.
    pub max_presence_events_per_second: u64,
    /// Broadcast payload / track meta limit in kB (×1000 + 500 bytes).
    pub max_payload_size_in_kb: u64,
    /// Client presence messages per window (`None` → server default).
    pub max_client_presence_events_per_window: Option<u64>,
    /// Client presence window in ms (`None` → server default).
    pub client_presence_window_ms: Option<u64>,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            max_concurrent_users: 200,
            max_events_per_second: 100,
            max_joins_per_second: 100,
            max_channels_per_client: 100,
            max_presence_events_per_second: 1000,
            max_payload_size_in_kb: 3000,
            max_client_presence_events_per_window: None,
            client_presence_window_ms: None,
        }
    }
}

impl TenantLimits {
    /// Largest accepted broadcast payload or track meta, in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        (self.max_payload_size_in_kb as usize)
            .saturating_mul(1000)
            .saturating_add(500)
    }
}

/// What the gateway needs to know about a tenant.
#[derive(Debug, Clone)]
pub struct TenantView {
    /// External id (the Host's first label).
    pub external_id: String,
    /// Decrypted `jwt_secret` (`None` when absent or undecryptable).
    pub jwt_secret: Option<String>,
    /// `jwt_jwks` JSON.
    pub jwt_jwks: Option<Value>,
    /// `suspend`.
    pub suspend: bool,
    /// `private_only`.
    pub private_only: bool,
    /// `presence_enabled`.
    pub presence_enabled: bool,
    /// Limits.
    pub limits: TenantLimits,
}

impl TenantView {
    /// A tenant with default limits and the given HS secret.
    pub fn new(external_id: &str, jwt_secret: &str) -> TenantView {
        TenantView {
            external_id: external_id.to_string(),
            jwt_secret: Some(jwt_secret.to_string()),
            jwt_jwks: None,
            suspend: false,
            private_only: false,
            presence_enabled: false,
            limits: TenantLimits::default(),
        }
    }

    /// Key material for [`crate::gateway::jwt::verify`].
    pub fn keys(&self) -> crate::gateway::jwt::Keys<'_> {
        crate::gateway::jwt::Keys {
            secret: self.jwt_secret.as_deref(),
            jwks: self.jwt_jwks.as_ref(),
        }
    }
}

/// A registry lookup failed (not the same as "not found").
#[derive(Debug, thiserror::Error)]
#[error("tenant lookup failed: {0}")]
pub struct LookupError(pub String);

/// Where tenants come from: the registry cache in the server, a fixed set in tests.
pub trait TenantDirectory: Send + Sync + 'static {
    /// The tenant with this external id, `Ok(None)` when it does not exist.
    fn get(&self, external_id: &str)
        -> BoxFuture<'_, Result<Option<Arc<TenantView>>, LookupError>>;

    /// The registry row of a tenant, which the change pipeline needs; `None` when this
    /// directory has no registry behind it.
    fn registry_row(
        &self,
        external_id: &str,
    ) -> BoxFuture<'_, Option<Arc<realtime_tenants::Tenant>>> {
        let _ = external_id;
        Box::pin(async { None })
    }
}

/// A fixed, editable set of tenants held in memory.
#[derive(Default)]
pub struct StaticTenants {
    tenants: RwLock<HashMap<String, Arc<TenantView>>>,
}

impl StaticTenants {
    /// Adds or replaces a tenant.
    pub fn put(&self, tenant: TenantView) {
        if let Ok(mut map) = self.tenants.write() {
            map.insert(tenant.external_id.clone(), Arc::new(tenant));
        }
    }

    /// Removes a tenant.
    pub fn remove(&self, external_id: &str) {
        if let Ok(mut map) = self.tenants.write() {
            map.remove(external_id);
        }
    }
}

impl TenantDirectory for StaticTenants {
    fn get(
        &self,
        external_id: &str,
    ) -> BoxFuture<'_, Result<Option<Arc<TenantView>>, LookupError>> {
        let found = self
            .tenants
            .read()
            .ok()
            .and_then(|m| m.get(external_id).cloned());
        Box::pin(async move { Ok(found) })
    }
}

/// Resolves the tenant for a Host header: the first label, else the configured default tenant
/// when the Host's tenant is unknown.
pub async fn resolve(
    dir: &dyn TenantDirectory,
    host: &str,
    default_tenant: Option<&str>,
) -> Result<Option<Arc<TenantView>>, LookupError> {
    let id = realtime_tenants::external_id_from_host(host);
    if let Some(t) = dir.get(&id).await? {
        return Ok(Some(t));
    }
    match default_tenant {
        Some(def) if def != id => dir.get(def).await,
        _ => Ok(None),
    }
}
