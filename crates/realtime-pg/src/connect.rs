//! Ordinary (non-replication) connections to the registry and tenant databases.
//!
//! [`ConnectOptions`] also describes replication connections
//! ([`crate::replication::ReplicationStream::connect`]), so both kinds reach a tenant the same
//! way: resolved addresses tried IPv6 first, the same TLS modes, the same after-connect query.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{config::SslMode, Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use crate::tls::TlsMode;
use crate::tls::{self, TlsConfigError};

/// Address family a connection is limited to (e.g. `DB_IP_VERSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4 addresses only.
    V4,
    /// IPv6 addresses only.
    V6,
}

impl IpVersion {
    fn matches(self, addr: &SocketAddr) -> bool {
        match self {
            IpVersion::V4 => addr.is_ipv4(),
            IpVersion::V6 => addr.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            IpVersion::V4 => "IPv4",
            IpVersion::V6 => "IPv6",
        }
    }
}

/// Where and as whom to connect. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// User name.
    pub user: String,
    /// Password (SCRAM-SHA-256, MD5 or cleartext, whichever the server asks for).
    pub password: String,
    /// `application_name` reported in `pg_stat_activity`.
    pub application_name: String,
    /// TLS mode.
    pub tls: TlsMode,
    /// SQL run once, as a simple query, right after connecting (e.g. `SET search_path ...`).
    pub after_connect_query: Option<String>,
    /// Limit for resolving, connecting and authenticating, per address tried.
    pub connect_timeout: Duration,
    /// Server settings sent in the startup packet's `options`, e.g. `-c wal_sender_timeout=5s`.
    pub options: Option<String>,
    /// Only addresses of this family are tried; `None` tries all, IPv6 first.
    pub ip_version: Option<IpVersion>,
}

impl ConnectOptions {
    /// Options with no TLS, no after-connect query, application name `realtime` and a 10 s
    /// connect timeout.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        dbname: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        ConnectOptions {
            host: host.into(),
            port,
            dbname: dbname.into(),
            user: user.into(),
            password: password.into(),
            application_name: "realtime".into(),
            tls: TlsMode::Disable,
            after_connect_query: None,
            connect_timeout: Duration::from_secs(10),
            options: None,
            ip_version: None,
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("application_name", &self.application_name)
            .field("tls", &self.tls)
            .field("after_connect_query", &self.after_connect_query)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field("ip_version", &self.ip_version)
            .finish()
    }
}

/// Why a connection could not be made. No variant carries the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host name did not resolve.
    #[error("cannot resolve database host {host}: {reason}")]
    Resolve {
        /// The configured host.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// The TLS configuration is unusable.
    #[error(transparent)]
    TlsConfig(#[from] TlsConfigError),
    /// The server rejected the credentials (SQLSTATE 28P01 or 28000).
    #[error("authentication failed for user {user}: {message}")]
    Auth {
        /// The configured user.
        user: String,
        /// Server message.
        message: String,
    },
    /// Nothing answered in time.
    #[error("timed out connecting to {addr} after {timeout:?}")]
    Timeout {
        /// Address tried last.
        addr: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// The server refused the session for another reason (database missing, too many
    /// connections, ...).
    #[error("database refused the connection ({code}): {message}")]
    Refused {
        /// SQLSTATE.
        code: String,
        /// Server message.
        message: String,
    },
    /// A network or protocol failure.
    #[error("cannot connect to {addr}: {reason}")]
    Io {
        /// Address tried last.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// TLS is required but the server answered the SSLRequest with "no" (it has SSL off).
    #[error("the database server at {addr} does not support TLS, which is required")]
    TlsUnsupported {
        /// Address that refused.
        addr: String,
    },
    /// The after-connect query failed.
    #[error("after-connect query failed: {0}")]
    AfterConnect(String),
}

impl ConnectError {
    /// Whether trying again later may succeed (network trouble, server starting or full).
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Resolve { .. } | ConnectError::Timeout { .. } => true,
            ConnectError::Io { .. } => true,
            ConnectError::Refused { code, .. } => {
                // 53xxx insufficient resources, 57P0x shutdown / starting up, 08xxx connection.
                code.starts_with("53") || code.starts_with("57P") || code.starts_with("08")
            }
            // A server with SSL off will not grow it by waiting.
            ConnectError::TlsConfig(_)
            | ConnectError::TlsUnsupported { .. }
            | ConnectError::Auth { .. }
            | ConnectError::AfterConnect(_) => false,
        }
    }
}

/// Resolves `host:port`, IPv6 addresses first (keeping the resolver's order within a family).
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
    resolve_family(host, port, None).await
}

/// Like [`resolve`], keeping only addresses of `family` when one is given.
pub async fn resolve_family(
    host: &str,
    port: u16,
    family: Option<IpVersion>,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let fail = |reason: String| ConnectError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| fail(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(fail("no address".into()));
    }
    ipv6_first(&mut addrs);
    if let Some(family) = family {
        keep_family(&mut addrs, family);
        if addrs.is_empty() {
            return Err(fail(format!("has no {} address", family.name())));
        }
    }
    Ok(addrs)
}

/// Drops the addresses not of `family`.
fn keep_family(addrs: &mut Vec<SocketAddr>, family: IpVersion) {
    addrs.retain(|a| family.matches(a));
}

/// Orders IPv6 before IPv4, stable within a family, without duplicates.
fn ipv6_first(addrs: &mut Vec<SocketAddr>) {
    addrs.sort_by_key(|a| !a.is_ipv6());
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
}

/// Connects, spawns the connection task on the current runtime, runs the after-connect query.
pub async fn connect(opts: &ConnectOptions) -> Result<Client, ConnectError> {
    let addrs = resolve_family(&opts.host, opts.port, opts.ip_version).await?;
    let tls = tls::client_config(&opts.tls)?.map(MakeRustlsConnect::new);
    let mut last = None;
    for addr in addrs {
        match connect_addr(opts, addr, tls.clone()).await {
            Ok(client) => {
                if let Some(query) = &opts.after_connect_query {
                    client
                        .simple_query(query)
                        .await
                        .map_err(|e| ConnectError::AfterConnect(describe(&e)))?;
                }
                return Ok(client);
            }
            // Credentials and server refusals are the same on every address.
            Err(
                e @ (ConnectError::Auth { .. }
                | ConnectError::Refused { .. }
                | ConnectError::TlsUnsupported { .. }),
            ) => return Err(e),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "database address failed, trying the next");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Resolve {
        host: opts.host.clone(),
        reason: "no address".into(),
    }))
}

async fn connect_addr(
    opts: &ConnectOptions,
    addr: SocketAddr,
    tls: Option<MakeRustlsConnect>,
) -> Result<Client, ConnectError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&opts.host)
        .hostaddr(addr.ip())
        .port(addr.port())
        .user(&opts.user)
        .password(opts.password.as_bytes())
        .dbname(&opts.dbname)
        .application_name(&opts.application_name)
        .connect_timeout(opts.connect_timeout)
        // A peer that vanished without closing (a dead host, a dropped NAT entry) is noticed
        // within about two minutes instead of the system's two hours.
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(60))
        .keepalives_interval(std::time::Duration::from_secs(10))
        .keepalives_retries(6);
    if let Some(options) = &opts.options {
        config.options(options);
    }
    let timeout = opts.connect_timeout;
    let timed_out = || ConnectError::Timeout {
        addr: addr.to_string(),
        timeout,
    };
    let map = |e: tokio_postgres::Error| classify(&opts.user, addr, e);
    match tls {
        None => {
            config.ssl_mode(SslMode::Disable);
            let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
                .await
                .map_err(|_| timed_out())?
                .map_err(map)?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
        Some(tls) => {
            config.ssl_mode(SslMode::Require);
            let (client, connection) = tokio::time::timeout(timeout, config.connect(tls))
                .await
                .map_err(|_| timed_out())?
                .map_err(map)?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
    }
}

async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "database connection closed with an error");
    }
}

fn classify(user: &str, addr: SocketAddr, e: tokio_postgres::Error) -> ConnectError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return ConnectError::Auth {
                user: user.to_owned(),
                message: db.message().to_owned(),
            };
        }
        return ConnectError::Refused {
            code: code.code().to_owned(),
            message: db.message().to_owned(),
        };
    }
    if refused_tls(&e) {
        return ConnectError::TlsUnsupported {
            addr: addr.to_string(),
        };
    }
    ConnectError::Io {
        addr: addr.to_string(),
        reason: describe(&e),
    }
}

/// Whether the server answered the SSLRequest with "no". tokio-postgres exposes no kind for
/// this, only its TLS error wrapping this exact message.
fn refused_tls(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.to_string() == "server does not support TLS")
}

/// The error with its source chain, which tokio-postgres keeps out of `Display`.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_password() {
        let opts = ConnectOptions::new("db", 5432, "postgres", "u", "hunter2-secret");
        let shown = format!("{opts:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn orders_ipv6_first() {
        let mut addrs: Vec<SocketAddr> = [
            "10.0.0.1:5432",
            "[::1]:5432",
            "10.0.0.2:5432",
            "[fe80::1]:5432",
            "10.0.0.1:5432",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        ipv6_first(&mut addrs);
        let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            shown,
            [
                "[::1]:5432",
                "[fe80::1]:5432",
                "10.0.0.1:5432",
                "10.0.0.2:5432"
            ]
        );
    }

    #[test]
    fn keeps_only_the_forced_family() {
        let all: Vec<SocketAddr> = ["[::1]:5432", "10.0.0.1:5432", "[fe80::1]:5432"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut v4 = all.clone();
        keep_family(&mut v4, IpVersion::V4);
        assert_eq!(v4, [all[1]]);
        let mut v6 = all.clone();
        keep_family(&mut v6, IpVersion::V6);
        assert_eq!(v6, [all[0], all[2]]);
    }

    #[tokio::test]
    async fn forced_family_without_address_is_a_resolve_error() {
        let err = resolve_family("127.0.0.1", 5432, Some(IpVersion::V6))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Resolve { .. }), "{err}");
        assert!(err.to_string().contains("has no IPv6 address"), "{err}");
        let v4 = resolve_family("127.0.0.1", 5432, Some(IpVersion::V4))
            .await
            .unwrap();
        assert_eq!(v4, ["127.0.0.1:5432".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn tls_refused_by_the_server_fails_fast_and_is_final() {
        use realtime_testkit::{Cluster, SUPERUSER, SUPERUSER_PASSWORD};
        // The test cluster has SSL off: it answers the SSLRequest with "no".
        let db = Cluster::shared().create_database().await;
        let mut opts =
            ConnectOptions::new(db.host(), db.port, &db.name, SUPERUSER, SUPERUSER_PASSWORD);
        opts.tls = TlsMode::RequireNoVerify;
        let err = connect(&opts).await.unwrap_err();
        assert!(
            matches!(err, ConnectError::TlsUnsupported { .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("does not support TLS"), "{err}");
        assert!(!format!("{err} {err:?}").contains(SUPERUSER_PASSWORD));

        // Forcing the family the server listens on still connects.
        opts.tls = TlsMode::Disable;
        opts.ip_version = Some(IpVersion::V4);
        let client = connect(&opts).await.unwrap();
        let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }

    #[tokio::test]
    async fn unknown_host_is_a_resolve_error() {
        let opts = ConnectOptions::new("no-such-host.invalid", 5432, "postgres", "u", "secret-pw");
        let err = connect(&opts).await.unwrap_err();
        assert!(matches!(err, ConnectError::Resolve { .. }), "{err}");
        assert!(!err.to_string().contains("secret-pw"));
    }
}
