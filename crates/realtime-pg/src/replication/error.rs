//! Errors of the replication connection, classified so that callers can decide between
//! retrying, re-creating the slot and giving up.

use std::fmt;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorResponseBody;

use crate::tls::TlsConfigError;

/// The fields of a server `ErrorResponse` that matter to us.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerError {
    /// Severity (`ERROR`, `FATAL`, ...), non-localized.
    pub severity: String,
    /// SQLSTATE.
    pub code: String,
    /// Primary message.
    pub message: String,
    /// Detail, when given.
    pub detail: Option<String>,
}

impl ServerError {
    pub(crate) fn from_body(body: &ErrorResponseBody) -> ServerError {
        let mut out = ServerError::default();
        let mut localized_severity = String::new();
        let mut fields = body.fields();
        // A malformed field list still yields what was read before the fault.
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => out.severity = value,
                b'S' => localized_severity = value,
                b'C' => out.code = value,
                b'M' => out.message = value,
                b'D' => out.detail = Some(value),
                _ => {}
            }
        }
        if out.severity.is_empty() {
            out.severity = localized_severity;
        }
        out
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

/// Why the replication connection failed. No variant carries the password.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The host name did not resolve.
    #[error("cannot resolve database host {host}: {reason}")]
    Resolve {
        /// The configured host.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// Bad TLS settings, or the server refused or failed TLS.
    #[error("TLS: {0}")]
    Tls(String),
    /// Credentials rejected, authentication method unsupported, or no replication privilege.
    #[error("replication login rejected for user {user}: {message}")]
    Auth {
        /// The configured user.
        user: String,
        /// What the server (or the client) said.
        message: String,
    },
    /// The connection broke or the server is shutting down or restarting. Retry later.
    #[error("replication connection lost: {0}")]
    ConnectionLost(String),
    /// Connecting took longer than the configured timeout.
    #[error("timed out connecting to {addr} after {timeout:?}")]
    Timeout {
        /// Address tried last.
        addr: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// `CREATE_REPLICATION_SLOT` for a name that exists (SQLSTATE 42710).
    #[error("replication slot exists: {0}")]
    SlotExists(ServerError),
    /// The slot does not exist (SQLSTATE 42704).
    #[error("replication slot not found: {0}")]
    SlotNotFound(ServerError),
    /// Another backend streams from the slot (SQLSTATE 55006); `pid` is that backend.
    #[error("replication slot in use: {error}")]
    SlotInUse {
        /// Process id of the holder, parsed from the message.
        pid: Option<i32>,
        /// The server's error.
        error: ServerError,
    },
    /// The slot was invalidated (`wal_status = 'lost'`, beyond `max_slot_wal_keep_size`); it
    /// must be dropped and re-created, and changes in between are gone.
    #[error("replication slot invalidated: {0}")]
    SlotInvalidated(ServerError),
    /// Any other server error.
    #[error("database error: {0}")]
    Server(ServerError),
    /// The server sent something this client does not understand.
    #[error("replication protocol error: {0}")]
    Protocol(String),
    /// A slot name outside `[a-z0-9_]{1,63}`.
    #[error("invalid replication slot name {0:?}: use 1 to 63 lower-case letters, digits or _")]
    InvalidSlotName(String),
}

impl ReplicationError {
    /// Whether the same operation may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplicationError::ConnectionLost(_)
            | ReplicationError::Timeout { .. }
            | ReplicationError::Resolve { .. }
            | ReplicationError::SlotInUse { .. } => true,
            ReplicationError::Server(e) => {
                e.code.starts_with("53") || e.code.starts_with("08") || e.code.starts_with("57P")
            }
            _ => false,
        }
    }

    /// Classifies a server error; `user` names the login in authentication errors.
    pub(crate) fn from_server(error: ServerError, user: &str) -> ReplicationError {
        match error.code.as_str() {
            // Bad credentials, or no REPLICATION attribute (42501 at startup).
            "28P01" | "28000" | "42501" => ReplicationError::Auth {
                user: user.to_owned(),
                message: error.message,
            },
            "42710" => ReplicationError::SlotExists(error),
            "42704" => ReplicationError::SlotNotFound(error),
            "55006" => ReplicationError::SlotInUse {
                pid: pid_in(&error.message),
                error,
            },
            "55000" if mentions_invalidation(&error) => ReplicationError::SlotInvalidated(error),
            // admin_shutdown, crash_shutdown, cannot_connect_now, and connection exceptions.
            code if code.starts_with("57P") || code.starts_with("08") => {
                ReplicationError::ConnectionLost(error.to_string())
            }
            _ => ReplicationError::Server(error),
        }
    }
}

impl From<TlsConfigError> for ReplicationError {
    fn from(e: TlsConfigError) -> Self {
        ReplicationError::Tls(e.to_string())
    }
}

fn mentions_invalidation(error: &ServerError) -> bool {
    let hit = |s: &str| s.contains("invalidated") || s.contains("maximum reserved size");
    hit(&error.message) || error.detail.as_deref().is_some_and(hit)
}

/// The number after the last `PID ` in `replication slot "x" is active for PID 123`.
fn pid_in(message: &str) -> Option<i32> {
    let (_, tail) = message.rsplit_once("PID ")?;
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, message: &str, detail: Option<&str>) -> ServerError {
        ServerError {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn classifies_server_errors() {
        let e = ReplicationError::from_server(
            err(
                "55006",
                "replication slot \"s\" is active for PID 4242",
                None,
            ),
            "u",
        );
        assert!(
            matches!(
                e,
                ReplicationError::SlotInUse {
                    pid: Some(4242),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.is_retryable());
        let e = ReplicationError::from_server(
            err(
                "55000",
                "cannot read from logical replication slot \"s\"",
                Some(
                    "This slot has been invalidated because it exceeded the maximum reserved size.",
                ),
            ),
            "u",
        );
        assert!(matches!(e, ReplicationError::SlotInvalidated(_)), "{e:?}");
        assert!(!e.is_retryable());
        let e = ReplicationError::from_server(
            err("28P01", "password authentication failed", None),
            "bob",
        );
        assert!(matches!(e, ReplicationError::Auth { .. }));
        assert!(e.to_string().contains("bob"));
        let e = ReplicationError::from_server(err("57P01", "terminating connection", None), "u");
        assert!(matches!(e, ReplicationError::ConnectionLost(_)) && e.is_retryable());
        let e = ReplicationError::from_server(err("53300", "too many connections", None), "u");
        assert!(matches!(e, ReplicationError::Server(_)) && e.is_retryable());
        let e = ReplicationError::from_server(err("42710", "exists", None), "u");
        assert!(matches!(e, ReplicationError::SlotExists(_)) && !e.is_retryable());
    }
}
