//! The WebSocket gateway (`/socket/websocket`) and the REST broadcast routes. It holds no SQL:
//! whatever asks a tenant database goes through `realtime_cdc`.
//!
//! Layout:
//! - [`socket`]: the upgrade and its connect-time checks ([`socket_log`]: the socket's
//!   `log_level`); [`session`]: one task per socket with a
//!   bounded outbound queue; [`channel`]: a joined channel's state.
//! - [`core`]: the socket's pure state machine (inputs in, [`effect`]s out); [`runner`]: applies
//!   the effects against the gateway.
//! - One file per client event (each an `impl Core` part): [`join`], [`leave`], [`broadcast`],
//!   [`presence`], [`access_token`], [`heartbeat`], and [`write_check`] for the frames that wait
//!   for a private channel's write check.
//! - [`hub`]: topic → subscribers, each message encoded once per serializer.
//! - [`presence_remote`]: presence tracked on other nodes (cluster mode).
//! - [`authorization`]: a private channel's cached policies and when they are evaluated; the
//!   checks run in the tenant database through [`realtime_cdc::ChannelDatabases`].
//! - [`replay`]: a private join's replay settings and the pushes of stored messages (read by
//!   [`realtime_cdc::db_broadcast::replay()`]).
//! - [`jwt`]: tenant JWT verification; [`rate`] and [`limits`]: upstream's rate counters and the
//!   per-tenant limits; [`tenant_resolve`]: which tenant a request is for.
//! - [`postgres_changes`]: a channel's change subscription; [`change_sink`]: where the
//!   pipeline pushes its events, each change encoded once for all channels.
//! - [`db_broadcast`]: rows inserted into `realtime.messages` fanned out as broadcasts (the
//!   stream itself is [`realtime_cdc::db_broadcast`]).
//! - [`rest_broadcast`] and [`ping`]: the tenant HTTP routes that feed the same hub.

pub mod access_token;
pub mod authorization;
pub mod broadcast;
pub mod change_sink;
pub mod channel;
pub mod control;
pub mod core;
pub mod db_broadcast;
pub mod effect;
pub mod heartbeat;
pub mod hub;
pub mod join;
pub mod jwt;
pub mod leave;
pub mod limits;
pub mod mailbox;
pub mod outbound;
pub mod ping;
pub mod postgres_changes;
pub mod presence;
pub mod presence_remote;
pub mod rate;
pub mod replay;
pub mod rest_broadcast;
pub mod runner;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod socket;
pub mod socket_log;
pub mod tenant_resolve;
pub mod write_check;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get, post};
use axum::Router;
use dashmap::DashMap;
use serde_json::{Map, Value};

use crate::app::AppState;
use crate::config::Config;
use control::Control;
use hub::Hub;
use limits::Limits;
use outbound::SessionLink;
use presence::PresenceStore;
pub use tenant_resolve::{StaticTenants, TenantDirectory, TenantLimits, TenantView};

/// Tunables of the gateway (defaults are upstream's).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Delay before a refused upgrade is answered (`CONNECT_ERROR_BACKOFF_MS`).
    pub connect_error_backoff: Duration,
    /// Delay before a join error reply (`CHANNEL_ERROR_BACKOFF_MS`).
    pub channel_error_backoff: Duration,
    /// Sweep period for sockets that joined once and hold no channel (`NO_CHANNEL_TIMEOUT_IN_MS`).
    pub no_channel_timeout: Duration,
    /// Close a socket after this long without an inbound frame.
    pub idle_timeout: Duration,
    /// Largest inbound WebSocket message.
    pub max_message_size: usize,
    /// Frames a session may have queued before it is disconnected as a slow consumer.
    pub outbound_queue: usize,
    /// Bytes a session may have queued before it is disconnected as a slow consumer.
    pub outbound_queue_bytes: usize,
    /// Default client presence messages per window (`CLIENT_PRESENCE_MAX_CALLS`).
    pub client_presence_max_calls: u64,
    /// Default client presence window (`CLIENT_PRESENCE_WINDOW_MS`).
    pub client_presence_window: Duration,
    /// `JWT_CLAIM_VALIDATORS`.
    pub jwt_claim_validators: Map<String, Value>,
    /// Opt-in tenant used when the Host's tenant is unknown.
    pub default_tenant: Option<String>,
    /// Bucket length of upstream's rate counters (5 s).
    pub rate_tick: Duration,
    /// `SLOT_NAME_SUFFIX` for the database broadcast slot.
    pub slot_name_suffix: Option<String>,
    /// How long a `replication_ready` opt-in waits for the replication connection.
    pub replication_ready_timeout: Duration,
    /// Keys that decrypt tenants' database settings (private channels, database broadcasts);
    /// `None` leaves tenant databases unreached until [`Gateway::enable_tenant_databases`].
    pub crypto: Option<Arc<realtime_tenants::Crypto>>,
    /// The `region`, `host` and `id` labels of the metrics.
    pub metrics_node: crate::metrics::NodeLabels,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            connect_error_backoff: Duration::from_millis(2000),
            channel_error_backoff: Duration::from_millis(5000),
            no_channel_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(60),
            max_message_size: 5_000_000,
            outbound_queue: 1024,
            outbound_queue_bytes: 16 * 1024 * 1024,
            client_presence_max_calls: 5,
            client_presence_window: Duration::from_millis(30_000),
            jwt_claim_validators: Map::new(),
            default_tenant: None,
            rate_tick: Duration::from_secs(5),
            slot_name_suffix: None,
            replication_ready_timeout: Duration::from_secs(60),
            crypto: None,
            metrics_node: crate::metrics::NodeLabels::default(),
        }
    }
}

impl GatewaySettings {
    /// Settings taken from the server configuration. The keys follow the server's rule: the
    /// configured `DB_ENC_KEY`, or in standalone mode the self-hosted default.
    pub fn from_config(config: &Config) -> GatewaySettings {
        let ecb = config.db_enc_key.clone().or_else(|| {
            config
                .standalone
                .then(|| crate::config::STANDALONE_ENC_KEY.as_bytes().to_vec())
        });
        let crypto = realtime_tenants::Crypto::new(
            ecb,
            config.db_enc_key_gcm.clone(),
            config.db_enc_write_gcm,
        )
        .ok()
        .map(Arc::new);
        GatewaySettings {
            crypto,
            connect_error_backoff: config.connect_error_backoff,
            channel_error_backoff: config.channel_error_backoff,
            no_channel_timeout: config.no_channel_timeout,
            client_presence_max_calls: u64::from(config.client_presence_max_calls),
            client_presence_window: config.client_presence_window,
            jwt_claim_validators: config.jwt_claim_validators.clone(),
            default_tenant: config.default_tenant.clone(),
            slot_name_suffix: config.slot_name_suffix.clone(),
            metrics_node: crate::metrics::NodeLabels::new(
                config.region.as_deref(),
                &config.node_name,
            ),
            ..GatewaySettings::default()
        }
    }
}

/// Sessions, channels, the hub, presence and limits of this process.
pub struct Gateway {
    pub(crate) settings: GatewaySettings,
    pub(crate) tenants: Arc<dyn TenantDirectory>,
    pub(crate) hub: Hub,
    pub(crate) presence: PresenceStore,
    pub(crate) limits: Limits,
    /// Prometheus series of this node.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) sessions: DashMap<u64, Arc<SessionLink>>,
    /// Most sockets open at once since [`Gateway::take_session_peak`] was last called.
    session_peak: std::sync::atomic::AtomicUsize,
    pub(crate) cdc: Option<Arc<realtime_cdc::Cdc>>,
    rows: Option<Arc<realtime_tenants::TenantCache>>,
    pub(crate) databases: realtime_cdc::ChannelDatabases,
    pub(crate) db_streams: DashMap<String, Arc<db_broadcast::DbStreamHandle>>,
    /// Counted sockets per tenant (joined at least one channel, until they close).
    pub(crate) users: DashMap<String, usize>,
    shutting_down: AtomicBool,
    next_id: AtomicU64,
    /// The other nodes, with `REDIS_URL`.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Gateway {
    /// A gateway reading tenants from `tenants` and registering postgres_changes bindings with
    /// `cdc` (without one, such joins get upstream's "could not subscribe" system error). The
    /// registry rows the pipeline needs come from [`TenantDirectory::registry_row`].
    pub fn new(
        settings: GatewaySettings,
        tenants: Arc<dyn TenantDirectory>,
        cdc: Option<Arc<realtime_cdc::Cdc>>,
    ) -> Arc<Gateway> {
        Arc::new(Gateway::build(settings, tenants, cdc, None))
    }

    /// Like [`Gateway::new`], with the registry rows the pipeline needs read from `cache`.
    pub fn new_with_changes(
        settings: GatewaySettings,
        tenants: Arc<dyn TenantDirectory>,
        cdc: Arc<realtime_cdc::Cdc>,
        cache: Arc<realtime_tenants::TenantCache>,
    ) -> Arc<Gateway> {
        Arc::new(Gateway::build(settings, tenants, Some(cdc), Some(cache)))
    }

    fn build(
        settings: GatewaySettings,
        tenants: Arc<dyn TenantDirectory>,
        cdc: Option<Arc<realtime_cdc::Cdc>>,
        rows: Option<Arc<realtime_tenants::TenantCache>>,
    ) -> Gateway {
        let metrics = Arc::new(crate::metrics::Metrics::new(settings.metrics_node.clone()));
        let limits = Limits::new(settings.rate_tick, metrics.clone());
        let databases = realtime_cdc::ChannelDatabases::default();
        if let Some(crypto) = &settings.crypto {
            databases.set_crypto(crypto.clone());
        }
        Gateway {
            settings,
            tenants,
            hub: Hub::default(),
            presence: PresenceStore::default(),
            limits,
            metrics,
            sessions: DashMap::new(),
            session_peak: Default::default(),
            cdc,
            rows,
            databases,
            db_streams: DashMap::new(),
            users: DashMap::new(),
            shutting_down: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Makes this gateway one node of a cluster (once, at start).
    pub(crate) fn join_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster this node belongs to, with `REDIS_URL`.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// The registry row of a tenant for the change pipeline.
    pub(crate) async fn registry_row(&self, tenant: &str) -> Option<Arc<realtime_tenants::Tenant>> {
        if let Some(row) = self.tenants.registry_row(tenant).await {
            return Some(row);
        }
        match &self.rows {
            Some(cache) => cache.get(tenant).await.ok().flatten(),
            None => None,
        }
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The body of `/metrics` as of now.
    pub fn render_metrics(&self, max_connections: usize) -> Vec<u8> {
        self.metrics.render(&crate::metrics::scrape::ScrapeView::of(
            self,
            max_connections,
        ))
    }

    /// The gateway's settings.
    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Open sockets, all tenants.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Registers an open socket.
    pub(crate) fn add_session(&self, link: Arc<SessionLink>) {
        self.sessions.insert(link.id, link);
        self.session_peak
            .fetch_max(self.sessions.len(), Ordering::Relaxed);
    }

    /// The most sockets open at once since the last call; starts the next period at the
    /// current count.
    pub fn take_session_peak(&self) -> usize {
        let now = self.sessions.len();
        self.session_peak.swap(now, Ordering::Relaxed).max(now)
    }

    /// Sockets of `tenant` counted as connected users (joined at least one channel) on this
    /// node.
    pub fn connected_count(&self, tenant: &str) -> usize {
        self.users.get(tenant).map(|n| *n).unwrap_or(0)
    }

    /// Connected users of `tenant` on every node (cluster mode: the others' as last shared),
    /// which `max_concurrent_users` limits.
    pub fn users_everywhere(&self, tenant: &str) -> u64 {
        let elsewhere = self.cluster().map(|c| c.load.users(tenant)).unwrap_or(0);
        self.connected_count(tenant) as u64 + elsewhere
    }

    /// Sends "Server requested disconnect" on every joined channel of the tenant's sockets,
    /// then closes them with 1012.
    pub async fn disconnect_tenant(&self, tenant: &str) {
        // Its database settings may have changed too.
        self.databases.forget(tenant);
        let links: Vec<Arc<SessionLink>> = self
            .sessions
            .iter()
            .filter(|s| &*s.tenant == tenant)
            .map(|s| s.value().clone())
            .collect();
        for link in links {
            if link.control.push(Control::ServerDisconnect).is_err() {
                link.kill.cancel();
            }
        }
    }

    /// Refuses new joins and closes every socket with 1012 (node shutdown).
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for s in self.sessions.iter() {
            if s.control.push(Control::Close(1012)).is_err() {
                s.kill.cancel();
            }
        }
    }

    /// Whether [`Gateway::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

impl Default for Gateway {
    /// A gateway with default settings and no tenants.
    fn default() -> Gateway {
        Gateway::build(
            GatewaySettings::default(),
            Arc::new(StaticTenants::default()),
            None,
            None,
        )
    }
}

/// Router states that carry a [`Gateway`].
pub trait GatewayState: Clone + Send + Sync + 'static {
    /// The gateway.
    fn gateway(&self) -> &Arc<Gateway>;
}

impl GatewayState for AppState {
    fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }
}

impl GatewayState for Arc<Gateway> {
    fn gateway(&self) -> &Arc<Gateway> {
        self
    }
}

/// The gateway's routes for the server's router.
pub fn routes() -> Router<AppState> {
    routes_for::<AppState>()
}

/// The gateway's routes for any state that carries a gateway.
pub fn routes_for<S: GatewayState>() -> Router<S> {
    Router::new()
        .route("/socket/websocket", any(socket::upgrade::<S>))
        .route("/socket/websocket/", any(socket::upgrade::<S>))
        .route("/realtime/v1/websocket", any(socket::upgrade::<S>))
        .route("/api/ping", get(ping::ping::<S>))
        .route("/api/broadcast", post(rest_broadcast::batch::<S>))
        .route(
            "/api/broadcast/{topic}/events/{event}",
            post(rest_broadcast::single::<S>),
        )
        .route(
            "/realtime/v1/api/broadcast",
            post(rest_broadcast::batch::<S>),
        )
        .route(
            "/realtime/v1/api/broadcast/{topic}/events/{event}",
            post(rest_broadcast::single::<S>),
        )
        .layer(axum::extract::DefaultBodyLimit::max(8_000_000))
}

/// A complete router serving only the gateway (for embedding and tests).
pub fn router(gateway: Arc<Gateway>) -> Router {
    routes_for::<Arc<Gateway>>().with_state(gateway)
}
