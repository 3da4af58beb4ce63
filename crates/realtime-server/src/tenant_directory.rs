//! The gateway's view of the registry: tenants from the [`TenantCache`] (TTL, "not found"
//! never cached) turned into [`TenantView`]s with the JWT secret decrypted.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use realtime_tenants::{Crypto, Tenant, TenantCache};

use crate::gateway::tenant_resolve::LookupError;
use crate::gateway::{TenantDirectory, TenantLimits, TenantView};

/// Tenants read through the cache.
pub struct RegistryTenants {
    cache: Arc<TenantCache>,
    crypto: Arc<Crypto>,
}

impl RegistryTenants {
    /// A directory over `cache`, decrypting with `crypto`.
    pub fn new(cache: Arc<TenantCache>, crypto: Arc<Crypto>) -> RegistryTenants {
        RegistryTenants { cache, crypto }
    }
}

impl TenantDirectory for RegistryTenants {
    fn get(
        &self,
        external_id: &str,
    ) -> BoxFuture<'_, Result<Option<Arc<TenantView>>, LookupError>> {
        let external_id = external_id.to_string();
        Box::pin(async move {
            let tenant = self
                .cache
                .get(&external_id)
                .await
                .map_err(|e| LookupError(e.to_string()))?;
            Ok(tenant.map(|t| Arc::new(view(&t, &self.crypto))))
        })
    }
}

/// The gateway's view of a tenant. An undecryptable secret becomes `None` (every token is
/// then refused) and is logged.
pub fn view(tenant: &Tenant, crypto: &Crypto) -> TenantView {
    let jwt_secret = match tenant.jwt_secret_plain(crypto) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                project = %tenant.external_id,
                external_id = %tenant.external_id,
                error_code = "UnableToDecryptJwtSecret",
                "UnableToDecryptJwtSecret: {e}"
            );
            None
        }
    };
    TenantView {
        external_id: tenant.external_id.clone(),
        jwt_secret,
        jwt_jwks: tenant.jwt_jwks.clone(),
        suspend: tenant.suspend,
        private_only: tenant.private_only,
        presence_enabled: tenant.presence_enabled,
        limits: TenantLimits {
            max_concurrent_users: u64::from(tenant.max_concurrent_users()),
            max_events_per_second: u64::from(tenant.max_events_per_second()),
            max_joins_per_second: u64::from(tenant.max_joins_per_second()),
            max_channels_per_client: u64::from(tenant.max_channels_per_client()),
            max_presence_events_per_second: u64::from(tenant.max_presence_events_per_second()),
            max_payload_size_in_kb: u64::from(tenant.max_payload_size_in_kb()),
            max_client_presence_events_per_window: tenant
                .max_client_presence_events_per_window
                .map(|v| u64::try_from(v).unwrap_or(0)),
            client_presence_window_ms: tenant
                .client_presence_window_ms
                .map(|v| u64::try_from(v).unwrap_or(0)),
        },
    }
}
