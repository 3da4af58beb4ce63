//! A small pool of registry connections: each new connection gets `application_name`, TLS per
//! `DB_SSL` and the after-connect query; closed connections are replaced on checkout.

use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::Client;

use crate::registry::tls;
use crate::registry::{IpVersion, RegistryConfig, RegistryError, APPLICATION_NAME};

/// How long the first connection is retried (compose may start us before Postgres is up).
pub(crate) const INITIAL_CONNECT_DEADLINE: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The registry connection pool.
pub(crate) struct Pool {
    config: RegistryConfig,
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

/// Whether retrying can help (network, start-up) as opposed to a configuration error.
fn retryable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Query(e) => match e.as_db_error() {
            // Authentication (28xxx) and unknown database (3D000) will not fix themselves.
            Some(db) => {
                let code = db.code().code();
                !(code.starts_with("28") || code == "3D000")
            }
            None => true,
        },
        RegistryError::Connect { .. } => true,
        _ => false,
    }
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
        let first = loop {
            match open(config).await {
                Ok(c) => break c,
                Err(e) if retryable(&e) && started.elapsed() + delay < deadline => {
                    tracing::warn!(target_db = %target(config), error = %e, "registry not reachable yet, retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Pool {
            config: config.clone(),
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
        let client = open(&self.config).await?;
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

async fn resolve(config: &RegistryConfig, family: IpVersion) -> Result<Vec<IpAddr>, RegistryError> {
    let addrs = tokio::net::lookup_host((config.host.as_str(), config.port))
        .await
        .map_err(|e| RegistryError::Connect {
            target: target(config),
            reason: format!("cannot resolve {}: {e}", config.host),
        })?;
    let ips: Vec<IpAddr> = addrs
        .map(|a| a.ip())
        .filter(|ip| match family {
            IpVersion::V4 => ip.is_ipv4(),
            IpVersion::V6 => ip.is_ipv6(),
        })
        .collect();
    if ips.is_empty() {
        return Err(RegistryError::Connect {
            target: target(config),
            reason: format!(
                "{} has no {} address (DB_IP_VERSION)",
                config.host,
                if family == IpVersion::V4 {
                    "IPv4"
                } else {
                    "IPv6"
                }
            ),
        });
    }
    Ok(ips)
}

/// Opens one registry connection and runs the after-connect query on it.
pub(crate) async fn open(config: &RegistryConfig) -> Result<Client, RegistryError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .dbname(&config.dbname)
        .user(&config.user)
        .password(config.password.as_bytes())
        .application_name(APPLICATION_NAME)
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(family) = config.ip_version {
        for ip in resolve(config, family).await? {
            pg.hostaddr(ip);
        }
        // With hostaddr set, every address uses the one host name (for TLS SNI).
        let hosts = pg.get_hostaddrs().len();
        for _ in 1..hosts {
            pg.host(&config.host);
        }
    }
    let client = if config.ssl {
        pg.ssl_mode(tokio_postgres::config::SslMode::Require);
        let connector = tls::connector(config.ssl_ca_cert.as_deref())?;
        let (client, connection) = pg.connect(connector).await?;
        spawn_connection(connection);
        client
    } else {
        let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
        spawn_connection(connection);
        client
    };
    if let Some(q) = config
        .after_connect_query
        .as_deref()
        .filter(|q| !q.trim().is_empty())
    {
        client.batch_execute(q).await.map_err(|e| {
            RegistryError::AfterConnect(crate::registry_migrations::db_error_text(&e))
        })?;
    }
    Ok(client)
}

fn spawn_connection<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "registry connection closed");
        }
    });
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
        let err = open(&config).await.err().unwrap();
        assert!(err.to_string().contains("has no IPv6 address"), "{err}");
    }
}
