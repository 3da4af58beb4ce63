//! The boot sequence and the running server: encryption keys → registry (PostgreSQL when
//! `DB_HOST` is set, otherwise an in-memory standalone registry) → registry migrations → the
//! self-host seed and its tenant migrations → listeners → graceful shutdown on SIGTERM/SIGINT.

mod listen;
pub mod rlimit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::config::{Config, ConfigError, STANDALONE_ENC_KEY};
use realtime_tenants::{
    Crypto, CryptoError, Registry, RegistryConfig, RegistryError, RegistryMigrationError,
    SeedConfig, SeedError, UpsertError,
};

/// How long shutdown waits for open connections before dropping them (compose gives 10 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Why the server could not start. Each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A variable is malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `DB_ENC_KEY` / `DB_ENC_KEY_GCM` cannot be used.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The registry database could not be reached.
    #[error("{0}; check DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD and DB_SSL")]
    RegistryConnect(RegistryError),
    /// A registry query failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry migrations failed.
    #[error(transparent)]
    Migrations(#[from] RegistryMigrationError),
    /// The self-host seed failed.
    #[error("SEED_SELF_HOST: {0}")]
    Seed(#[from] SeedError),
    /// The standalone tenant could not be created.
    #[error("standalone tenant: {0}")]
    Standalone(String),
    /// The listener could not be opened.
    #[error("cannot listen on port {port}: {reason}; set PORT to a free port")]
    Listen {
        /// `PORT`.
        port: u16,
        /// The socket error.
        reason: String,
    },
}

/// Builds the shared state: keys, registry, migrations and seed. Nothing listens yet.
pub async fn prepare(config: Config) -> Result<AppState, StartupError> {
    let config = Arc::new(config);
    let crypto = Arc::new(crypto_for(&config)?);

    let registry = if config.standalone {
        Arc::new(Registry::memory())
    } else {
        tracing::info!("Running migrations");
        let registry = Registry::connect(&registry_config(&config))
            .await
            .map_err(StartupError::RegistryConnect)?;
        let report = registry.migrate().await?;
        if !report.applied.is_empty() {
            tracing::info!(
                "Applied {} registry migrations ({} already applied)",
                report.applied.len(),
                report.already_applied
            );
        }
        Arc::new(registry)
    };

    let state = AppState::new(config.clone(), registry, crypto);
    if config.standalone {
        create_standalone_tenant(&state).await?;
    } else if config.seed_self_host {
        seed(&state).await?;
    }
    Ok(state)
}

/// The encryption keys. Standalone mode has no stored data to stay compatible with, so a
/// missing `DB_ENC_KEY` takes the self-hosted default there.
pub fn crypto_for(config: &Config) -> Result<Crypto, CryptoError> {
    let ecb = match (&config.db_enc_key, config.standalone) {
        (Some(k), _) => Some(k.clone()),
        (None, true) => Some(STANDALONE_ENC_KEY.as_bytes().to_vec()),
        (None, false) => None,
    };
    Crypto::new(ecb, config.db_enc_key_gcm.clone(), config.db_enc_write_gcm)
}

/// The registry connection settings.
pub fn registry_config(config: &Config) -> RegistryConfig {
    let db = &config.db;
    RegistryConfig {
        host: db.host.clone(),
        port: db.port,
        dbname: db.name.clone(),
        user: db.user.clone(),
        password: db.password.clone(),
        after_connect_query: db.after_connect_query.clone(),
        ssl: db.ssl,
        ssl_ca_cert: db.ssl_ca_cert.clone().map(Into::into),
        pool_size: db.pool_size,
        ip_version: db.ip_version.map(|v| match v {
            crate::config::IpVersion::V4 => realtime_tenants::IpVersion::V4,
            crate::config::IpVersion::V6 => realtime_tenants::IpVersion::V6,
        }),
    }
}

/// The seed inputs.
pub fn seed_config(config: &Config) -> SeedConfig {
    let s = &config.seed;
    SeedConfig {
        tenant_name: Some(s.tenant_name.clone()),
        api_jwt_secret: Some(s.jwt_secret.clone()),
        api_jwt_jwks: s.jwt_jwks.clone(),
        db_host: Some(s.db_host.clone()),
        db_port: Some(s.db_port.clone()),
        db_name: Some(s.db_name.clone()),
        db_user: Some(s.db_user.clone()),
        db_password: Some(s.db_password.clone()),
        defaults: app::tenant_defaults(config),
    }
}

/// `SEED_SELF_HOST`: recreate the default tenant, then migrate its database. Migration
/// failures are logged at info and the server still starts, as upstream.
pub async fn seed(state: &AppState) -> Result<(), StartupError> {
    tracing::info!("Seeding selfhosted Realtime");
    let tenant = realtime_tenants::seed_self_host(
        &state.registry,
        &seed_config(&state.config),
        &state.crypto,
    )
    .await?;
    let id = tenant.external_id.clone();
    state.tenants.invalidate(&id);
    match realtime_cdc::tenant_admin::migrate(&state.registry, &state.crypto, &tenant).await {
        Ok(_) => tracing::info!(project = %id, external_id = %id, "Tenant set-up successfully"),
        Err(e) => tracing::info!(project = %id, external_id = %id, "Failed to set-up tenant: {e}"),
    }
    Ok(())
}

/// Standalone mode: one tenant named `SELF_HOST_TENANT_NAME` signed with `API_JWT_SECRET`
/// (or the seed's default secret), without a database extension.
async fn create_standalone_tenant(state: &AppState) -> Result<(), StartupError> {
    let config = &state.config;
    let mut params = json!({
        "jwt_secret": config.seed.jwt_secret,
        "extensions": [],
    });
    if let Some(jwks) = &config.seed.jwt_jwks {
        params["jwt_jwks"] = jwks.clone();
    }
    let name = &config.self_host_tenant_name;
    state
        .registry
        .upsert(name, &params, &state.tenant_defaults(), &state.crypto)
        .await
        .map_err(|e| match e {
            UpsertError::Invalid(body) => StartupError::Standalone(body.to_string()),
            other => StartupError::Standalone(other.to_string()),
        })?;
    let port = config.port;
    tracing::info!(
        "Standalone mode (DB_HOST is not set): tenants are kept in memory; tenant `{name}` accepts every Host header"
    );
    tracing::info!(
        "Connect with ws://localhost:{port}/socket/websocket?apikey=<JWT>&vsn=1.0.0, where <JWT> is an HS256 token with claims role and exp signed with {}",
        if config.api_jwt_secret.is_some() {
            "API_JWT_SECRET"
        } else {
            "upstream's default self-host secret (README.md; set API_JWT_SECRET to choose your own)"
        }
    );
    tracing::info!(
        "supabase-js: createClient('http://localhost:{port}', <JWT>) works as is; README.md shows how to mint a token"
    );
    if config.inspector.enabled {
        tracing::info!(
            "Inspector: http://localhost:{port}/inspector?tenant={name} (docs/inspector.md; INSPECTOR_ENABLED=false turns it off)"
        );
    }
    Ok(())
}

/// A server that is accepting connections.
pub struct Running {
    /// The bound addresses (the first is the main one).
    pub addrs: Vec<SocketAddr>,
    /// The shared state.
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// The first bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token is cancelled, then shuts down.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.shutdown().await;
    }

    /// Stops accepting, closes the gateway's sockets and waits up to [`SHUTDOWN_GRACE`] for
    /// open connections to finish; meanwhile every Postgres Changes pipeline and database
    /// broadcast stream stops and drops its replication slot (slots left behind would hold
    /// WAL on the tenant databases until the next start adopts them).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.state.gateway.shutdown();
        let tasks = self.tasks;
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = futures_util::future::join_all(tasks);
        let drain = async {
            if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
                tracing::warn!(
                    "Open connections did not finish within {}s, closing them",
                    SHUTDOWN_GRACE.as_secs()
                );
                for a in aborts {
                    a.abort();
                }
            }
        };
        let cdc = self.state.cdc.clone();
        let gateway = self.state.gateway.clone();
        let release = async move {
            let both = async {
                tokio::join!(cdc.shutdown(), gateway.stop_all_databases());
            };
            if tokio::time::timeout(SHUTDOWN_GRACE, both).await.is_err() {
                tracing::warn!(
                    "Replication slots were not all released within {}s",
                    SHUTDOWN_GRACE.as_secs()
                );
            }
        };
        let gateway = self.state.gateway.clone();
        let leave = async move {
            if let Some(cluster) = gateway.cluster() {
                cluster.leave().await;
            }
        };
        tokio::join!(drain, release, leave);
    }
}

/// Opens the listeners on `PORT` and serves.
pub async fn serve(state: AppState) -> Result<Running, StartupError> {
    let port = state.config.port;
    let listeners = listen::bind(port, state.config.listen_ip_version)
        .await
        .map_err(|e| StartupError::Listen {
            port,
            reason: e.to_string(),
        })?;
    serve_on(state, listeners)
}

/// Serves on the given listeners (tests bind `127.0.0.1:0`).
pub fn serve_on(state: AppState, listeners: Vec<TcpListener>) -> Result<Running, StartupError> {
    // Cluster mode is wired before the first socket can subscribe.
    if let Some(target) = &state.config.redis {
        if state.gateway.cluster().is_none() {
            crate::cluster::Cluster::start(target.clone(), &state.gateway);
        }
    }
    let shutdown = CancellationToken::new();
    let router = app::router(state.clone());
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for listener in listeners {
        let addr = listener.local_addr().map_err(|e| StartupError::Listen {
            port: state.config.port,
            reason: e.to_string(),
        })?;
        addrs.push(addr);
        let service = router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let token = shutdown.clone();
        let listener = listener.tap_io(listen::accepted);
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, service)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        }));
    }
    if addrs.is_empty() {
        return Err(StartupError::Listen {
            port: state.config.port,
            reason: "no listener".to_string(),
        });
    }
    crate::janitor::spawn(state.clone(), shutdown.clone());
    crate::memory_trim::spawn(state.gateway.clone(), shutdown.clone());
    crate::metrics::cleaner::spawn(
        state.gateway.clone(),
        state.config.janitor.metrics_cleaner_timer,
        shutdown.clone(),
    );
    tracing::info!("Running RealtimeWeb.Endpoint on port {}", addrs[0].port());
    Ok(Running {
        addrs,
        state,
        shutdown,
        tasks,
    })
}

/// Boots and serves: [`prepare`] then [`serve`].
pub async fn start(config: Config) -> Result<Running, StartupError> {
    let state = prepare(config).await?;
    serve(state).await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
