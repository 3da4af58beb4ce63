//! Shared state and the router that joins the HTTP API and the WebSocket gateway.

use std::sync::Arc;

use axum::Router;
use dashmap::DashMap;
use realtime_cdc::{Cdc, CdcOptions};
use realtime_tenants::{Crypto, Registry, Tenant, TenantCache, TenantDefaults};

use crate::config::Config;
use crate::gateway::{Gateway, GatewaySettings};
use crate::tenant_directory::RegistryTenants;

/// State shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    /// Parsed configuration.
    pub config: Arc<Config>,
    /// The `_realtime` registry (PostgreSQL, or memory in standalone mode).
    pub registry: Arc<Registry>,
    /// Tenants by external id, with the `TENANT_CACHE_EXPIRATION_IN_MS` TTL.
    pub tenants: Arc<TenantCache>,
    /// Keys for the stored secrets.
    pub crypto: Arc<Crypto>,
    /// Postgres Changes: one WAL pipeline per tenant.
    pub cdc: Arc<Cdc>,
    /// Sessions, channels, hub, presence and limits.
    pub gateway: Arc<Gateway>,
    /// Tenants whose migrations are running in the background.
    migrations_in_flight: Arc<DashMap<String, ()>>,
}

impl AppState {
    /// State over an existing registry; the cache TTL comes from the configuration.
    pub fn new(config: Arc<Config>, registry: Arc<Registry>, crypto: Arc<Crypto>) -> AppState {
        let tenants = Arc::new(TenantCache::new(
            registry.clone(),
            config.tenant_cache_expiration,
        ));
        let cdc = Cdc::new(
            crypto.clone(),
            CdcOptions {
                slot_name_suffix: config.slot_name_suffix.clone(),
                ..CdcOptions::default()
            },
        );
        let gateway = Gateway::new_with_changes(
            GatewaySettings::from_config(&config),
            Arc::new(RegistryTenants::new(tenants.clone(), crypto.clone())),
            cdc.clone(),
            tenants.clone(),
        );
        // Private channels and broadcasts from the database reach the tenant databases.
        gateway.enable_tenant_databases(crypto.clone());
        AppState {
            gateway,
            cdc,
            config,
            registry,
            tenants,
            crypto,
            migrations_in_flight: Arc::new(DashMap::new()),
        }
    }

    /// Limits given to tenants created through the API or the seed.
    pub fn tenant_defaults(&self) -> TenantDefaults {
        tenant_defaults(&self.config)
    }

    /// Closes every socket of a tenant (its admission rules changed, or it was deleted).
    pub async fn disconnect_tenant(&self, external_id: &str) {
        self.gateway.disconnect_tenant(external_id).await;
    }

    /// Stops the tenant's database work: its Postgres Changes pipeline (dropping the slot),
    /// its database broadcast stream and its authorization connection, each within 10 s.
    /// Whatever still needs them starts them again on the next join.
    pub async fn stop_tenant_work(&self, external_id: &str) {
        tokio::join!(
            self.cdc.stop_tenant(external_id),
            self.gateway.stop_tenant_databases(external_id),
        );
    }

    /// Sockets of a tenant with at least one joined channel.
    pub fn connected_count(&self, external_id: &str) -> usize {
        self.gateway.connected_count(external_id)
    }

    /// Starts the tenant migrations in the background unless they are already running; the
    /// cache entry is dropped afterwards so the next read sees the new `migrations_ran`.
    pub fn migrate_in_background(&self, tenant: &Tenant) {
        if self
            .migrations_in_flight
            .insert(tenant.external_id.clone(), ())
            .is_some()
        {
            return;
        }
        let state = self.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let id = tenant.external_id.clone();
            match realtime_cdc::tenant_admin::migrate(&state.registry, &state.crypto, &tenant).await
            {
                Ok(_) => {
                    tracing::info!(project = %id, external_id = %id, "Tenant set-up successfully")
                }
                Err(e) => tracing::error!(
                    project = %id,
                    external_id = %id,
                    error_code = "MigrationsFailedToRun",
                    "{e}"
                ),
            }
            state.tenants.invalidate(&id);
            state.migrations_in_flight.remove(&id);
        });
    }
}

/// The gateway's routes (`/socket/websocket`, `/api/ping`, `/api/broadcast…`).
pub fn gateway_routes() -> Router<AppState> {
    crate::gateway::routes()
}

/// The `TENANT_MAX_*` defaults in the registry's form.
pub fn tenant_defaults(config: &Config) -> TenantDefaults {
    let d = config.tenant_defaults;
    TenantDefaults {
        max_concurrent_users: d.max_concurrent_users,
        max_events_per_second: d.max_events_per_second,
        max_joins_per_second: d.max_joins_per_second,
        max_channels_per_client: d.max_channels_per_client,
        max_bytes_per_second: d.max_bytes_per_second,
    }
}

/// Every route of the server with its server-wide layers.
pub fn router(state: AppState) -> Router {
    crate::http::router(state)
}
