//! A small pool of registry connections: each new connection gets `application_name`, TLS per
//! `DB_SSL` and the after-connect query (all through `realtime_pg::connect`); closed
//! connections are replaced on checkout.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use realtime_pg::connect::{self as pg, ConnectError, ConnectOptions, TlsMode};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::Client;

use crate::registry::{IpVersion, RegistryConfig, RegistryError, APPLICATION_NAME};

/// How long the first connection is retried (compose may start us before Postgres is up).
pub(crate) const INITIAL_CONNECT_DEADLINE: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The registry connection pool.
pub(crate) struct Pool {
    // Boxed: both are large and `Registry` holds a pool inline.
    config: Box<RegistryConfig>,
    opts: Box<ConnectOptions>,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

/// A checked-out connection, returned to the pool on drop unless it was closed.
pub(crate) struct Conn<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Always Some until drop.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                self.pool.idle_clients().push(client);
            }
        }
    }
}

fn target(config: &RegistryConfig) -> String {
    format!("{}:{}/{}", config.host, config.port, config.dbname)
}

impl Pool {
    /// Opens the first connection (retrying up to `deadline`) so that a bad configuration is
    /// reported at boot.
    pub(crate) async fn connect(
        config: &RegistryConfig,
        deadline: Duration,
    ) -> Result<Pool, RegistryError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(250);
        let opts = connect_options(config);
        let first = loop {
            match pg::connect(&opts).await {
                Ok(c) => break c,
                Err(e) if e.is_retryable() && started.elapsed() + delay < deadline => {
                    tracing::warn!(target_db = %target(config), error = %e, "registry not reachable yet, retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(registry_error(config, e)),
            }
        };
        Ok(Pool {
            config: Box::new(config.clone()),
            opts: Box::new(opts),
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(config.pool_size.max(1)),
        })
    }

    fn idle_clients(&self) -> std::sync::MutexGuard<'_, Vec<Client>> {
        // A poisoned lock only means a panic elsewhere; the Vec is still usable.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks out a connection, opening one when none is idle.
    pub(crate) async fn get(&self) -> Result<Conn<'_>, RegistryError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RegistryError::Connect {
                target: target(&self.config),
                reason: "pool closed".into(),
            })?;
        loop {
            let candidate = self.idle_clients().pop();
            match candidate {
                Some(c) if c.is_closed() => continue,
                Some(c) => {
                    return Ok(Conn {
                        client: Some(c),
                        pool: self,
                        _permit: permit,
                    })
                }
                None => break,
            }
        }
        let client = pg::connect(&self.opts)
            .await
            .map_err(|e| registry_error(&self.config, e))?;
        Ok(Conn {
            client: Some(client),
            pool: self,
            _permit: permit,
        })
    }

    pub(crate) fn config(&self) -> &RegistryConfig {
        &self.config
    }
}

/// How every registry connection is made: upstream's `application_name`, TLS without
/// verification unless `DB_SSL_CA_CERT` names a CA, the after-connect query unless blank.
pub(crate) fn connect_options(config: &RegistryConfig) -> ConnectOptions {
    let mut opts = ConnectOptions::new(
        config.host.clone(),
        config.port,
        config.dbname.clone(),
        config.user.clone(),
        config.password.clone(),
    );
    opts.application_name = APPLICATION_NAME.into();
    opts.connect_timeout = CONNECT_TIMEOUT;
    opts.tls = match (config.ssl, &config.ssl_ca_cert) {
        (false, _) => TlsMode::Disable,
        (true, None) => TlsMode::RequireNoVerify,
        (true, Some(ca)) => TlsMode::VerifyCa(ca.clone()),
    };
    opts.after_connect_query = config
        .after_connect_query
        .clone()
        .filter(|q| !q.trim().is_empty());
    opts.ip_version = config.ip_version.map(|v| match v {
        IpVersion::V4 => pg::IpVersion::V4,
        IpVersion::V6 => pg::IpVersion::V6,
    });
    opts
}

/// The registry's view of a connection failure, naming the `DB_*` setting at fault where
/// there is one. `ConnectError` never carries the password.
pub(crate) fn registry_error(config: &RegistryConfig, e: ConnectError) -> RegistryError {
    match e {
        ConnectError::TlsConfig(e) if config.ssl_ca_cert.is_some() => {
            RegistryError::Tls(format!("DB_SSL_CA_CERT: {e}"))
        }
        ConnectError::TlsConfig(e) => RegistryError::Tls(e.to_string()),
        ConnectError::TlsUnsupported { .. } => {
            RegistryError::Tls(format!("{e}; unset DB_SSL or enable SSL on the server"))
        }
        ConnectError::AfterConnect(reason) => RegistryError::AfterConnect(reason),
        ConnectError::Resolve { .. } if config.ip_version.is_some() => RegistryError::Connect {
            target: target(config),
            reason: format!("{e} (DB_IP_VERSION)"),
        },
        other => RegistryError::Connect {
            target: target(config),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn initial_connect_gives_up_after_the_deadline() {
        // Nothing listens on port 1.
        let config = RegistryConfig {
            port: 1,
            ..RegistryConfig::default()
        };
        let started = Instant::now();
        let err = Pool::connect(&config, Duration::from_millis(1200))
            .await
            .err()
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(700), "retried");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("registry"), "{err}");
    }

    #[tokio::test]
    async fn forced_ip_family_without_address_is_explained() {
        let config = RegistryConfig {
            host: "127.0.0.1".into(),
            ip_version: Some(IpVersion::V6),
            ..RegistryConfig::default()
        };
        let err = Pool::connect(&config, Duration::ZERO).await.err().unwrap();
        let shown = err.to_string();
        assert!(shown.contains("has no IPv6 address"), "{shown}");
        assert!(shown.contains("DB_IP_VERSION"), "{shown}");
    }

    #[test]
    fn options_follow_the_db_settings() {
        let mut config = RegistryConfig {
            after_connect_query: Some("  ".into()),
            ip_version: Some(IpVersion::V4),
            ..RegistryConfig::default()
        };
        let opts = connect_options(&config);
        assert_eq!(opts.application_name, "supabase_mt_realtime");
        assert_eq!(opts.tls, TlsMode::Disable);
        assert_eq!(opts.after_connect_query, None, "blank query skipped");
        assert_eq!(opts.ip_version, Some(pg::IpVersion::V4));

        config.ssl = true;
        config.after_connect_query = Some("SET search_path TO _realtime".into());
        let opts = connect_options(&config);
        assert_eq!(opts.tls, TlsMode::RequireNoVerify, "no CA: no verification");
        assert_eq!(
            opts.after_connect_query.as_deref(),
            Some("SET search_path TO _realtime")
        );

        config.ssl_ca_cert = Some("/etc/ca.pem".into());
        assert_eq!(
            connect_options(&config).tls,
            TlsMode::VerifyCa("/etc/ca.pem".into())
        );
    }

    #[tokio::test]
    async fn server_without_ssl_fails_fast_instead_of_retrying() {
        let db = realtime_testkit::Cluster::shared().create_database().await;
        let config = RegistryConfig {
            host: db.host().into(),
            port: db.port,
            dbname: db.name.clone(),
            password: "registry-secret-pw".into(),
            ssl: true,
            ..RegistryConfig::default()
        };
        let started = Instant::now();
        let err = Pool::connect(&config, INITIAL_CONNECT_DEADLINE)
            .await
            .err()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "retried");
        assert!(matches!(err, RegistryError::Tls(_)), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("does not support TLS"), "{shown}");
        assert!(shown.contains("DB_SSL"), "{shown}");
        assert!(!shown.contains("registry-secret-pw"), "{shown}");
    }

    #[tokio::test]
    async fn every_new_connection_runs_the_after_connect_query() {
        let db = realtime_testkit::Cluster::shared().create_database().await;
        let config = RegistryConfig {
            host: db.host().into(),
            port: db.port,
            dbname: db.name.clone(),
            after_connect_query: Some("SET search_path TO extensions, public".into()),
            pool_size: 2,
            ..RegistryConfig::default()
        };
        let pool = Pool::connect(&config, Duration::ZERO).await.unwrap();
        // Two at once: the idle first connection and a newly opened one.
        let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        let mut pids = Vec::new();
        for conn in [&a, &b] {
            let row = conn
                .query_one(
                    "SELECT current_setting('search_path'), application_name, pg_backend_pid() \
                     FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, String>(0), "extensions, public");
            assert_eq!(row.get::<_, String>(1), "supabase_mt_realtime");
            pids.push(row.get::<_, i32>(2));
        }
        assert_ne!(pids[0], pids[1]);
    }
}
