//! `REDIS_URL` (`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS): parsed
//! once at start so a mistake is reported with the variable's name, and shown in logs without
//! its credentials.

use std::time::Duration;

use redis::io::tcp::socket2::TcpKeepalive;
use redis::io::tcp::TcpSettings;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion};

/// Why `REDIS_URL` was refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not a `redis://` or `rediss://` URL.
    #[error("REDIS_URL must start with redis:// or rediss:// (got {0}://)")]
    Scheme(String),
    /// The URL does not parse.
    #[error("REDIS_URL is not a valid Redis URL ({0}); expected redis://host:port/db")]
    Invalid(String),
}

/// The Redis every node of the cluster shares.
#[derive(Clone)]
pub struct RedisTarget {
    info: ConnectionInfo,
    shown: String,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl RedisTarget {
    /// Checks `url` and prepares its connection settings (RESP3, needed for messages pushed
    /// on a connection that also answers commands).
    pub fn parse(url: &str) -> Result<RedisTarget, TargetError> {
        let scheme = url.split("://").next().unwrap_or_default();
        if !url.contains("://") || !matches!(scheme, "redis" | "rediss") {
            return Err(TargetError::Scheme(scheme.chars().take(16).collect()));
        }
        let info = url
            .into_connection_info()
            // The parser's message never repeats the URL, so no password reaches a log.
            .map_err(|e| TargetError::Invalid(e.to_string()))?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let db = settings.db();
        let info = info
            .set_redis_settings(settings)
            .set_tcp_settings(tcp_settings());
        let shown = match info.addr() {
            ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}/{db}"),
            ConnectionAddr::Unix(path) => format!("unix://{}", path.display()),
            _ => "redis (unknown address kind)".to_string(),
        };
        Ok(RedisTarget { info, shown })
    }

    /// The address without credentials, for logs.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The database number: it also names this cluster's channels, because Redis shares
    /// Pub/Sub across databases.
    pub fn db(&self) -> i64 {
        self.info.redis_settings().db()
    }

    pub(crate) fn client(&self) -> redis::RedisResult<redis::Client> {
        redis::Client::open(self.info.clone())
    }
}

/// Commands go out as soon as they are written (`TCP_NODELAY`: a publish behind an
/// unanswered one must not wait for Redis's delayed ack), and a Redis that vanished without
/// closing the connection is noticed by keepalive probes on the listening connection too,
/// which sends no command of its own for long stretches.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true).set_keepalive(
        TcpKeepalive::new()
            .with_time(Duration::from_secs(15))
            .with_interval(Duration::from_secs(5))
            .with_retries(3),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_without_credentials() {
        let t = RedisTarget::parse("redis://user:s3cret@cache.local:6380/2").unwrap();
        assert_eq!(t.shown(), "redis://cache.local:6380/2");
        assert_eq!(t.db(), 2);
        assert!(!format!("{t:?}").contains("s3cret"));
        let t = RedisTarget::parse("rediss://cache.local").unwrap();
        assert_eq!(t.shown(), "rediss://cache.local:6379/0");
    }

    #[test]
    fn connections_send_at_once_and_probe_an_idle_peer() {
        let t = RedisTarget::parse("redis://cache.local/1").unwrap();
        let tcp = t.info.tcp_settings();
        assert!(tcp.nodelay());
        assert!(tcp.keepalive().is_some());
    }

    #[test]
    fn refuses_other_schemes_and_garbage() {
        assert!(matches!(
            RedisTarget::parse("http://cache:6379"),
            Err(TargetError::Scheme(s)) if s == "http"
        ));
        assert!(matches!(
            RedisTarget::parse("cache:6379"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            RedisTarget::parse("redis://cache:notaport/0"),
            Err(TargetError::Invalid(_))
        ));
    }
}
