//! The one error type of the benchmarks: what failed, said plainly enough to fix the setup.

use tokio_tungstenite::tungstenite;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The machine or the build is not ready (missing binary, port, cluster).
    #[error("{0}")]
    Setup(String),
    /// A socket or file operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A WebSocket operation failed.
    #[error("websocket: {0}")]
    Ws(Box<tungstenite::Error>),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server answered something unexpected.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// A database statement failed.
    #[error("postgres: {0}")]
    Pg(#[from] tokio_postgres::Error),
    /// The raw replication stream failed.
    #[error("replication: {0}")]
    Replication(Box<realtime_pg::replication::ReplicationError>),
}

impl From<tungstenite::Error> for BenchError {
    fn from(e: tungstenite::Error) -> Self {
        BenchError::Ws(Box::new(e))
    }
}

impl From<realtime_testkit::redis::RedisError> for BenchError {
    fn from(e: realtime_testkit::redis::RedisError) -> Self {
        use realtime_testkit::redis::RedisError;
        match e {
            RedisError::NoAnswer | RedisError::Listeners { .. } => {
                BenchError::Timeout(e.to_string())
            }
            _ => BenchError::Setup(e.to_string()),
        }
    }
}

impl From<realtime_pg::replication::ReplicationError> for BenchError {
    fn from(e: realtime_pg::replication::ReplicationError) -> Self {
        BenchError::Replication(Box::new(e))
    }
}
