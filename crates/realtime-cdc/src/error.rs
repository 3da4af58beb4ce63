//! Why a subscription failed, in upstream's words, and the `system` messages that report a
//! subscription's outcome to the channel.

use serde_json::{json, Value};

/// A failed [`crate::Cdc::subscribe`]. `Display` is the exact `message` upstream pushes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// A join entry could not be parsed (filter, select or shape). Not retried.
    #[error("{0}")]
    Params(String),
    /// No published table matched an entry. Not retried.
    #[error("Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [{0}]")]
    NotPublished(String),
    /// The database rejected an entry (unknown column, bad value, …). Not retried.
    #[error("Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [{params}]. Exception: {exception}")]
    Rejected {
        /// Upstream's `[event: …]` rendering of the entry.
        params: String,
        /// The database error in Postgrex's `ERROR <code> (<name>) <message>` form.
        exception: String,
    },
    /// The tenant has no usable `postgres_cdc_rls` settings. Not retried.
    #[error("{0}")]
    Config(String),
    /// The tenant database or the pipeline is unavailable right now; retry in 5–10 s.
    #[error("{0}")]
    Unavailable(String),
}

impl SubscribeError {
    /// Whether the channel should try again later (upstream retries after 5–10 s).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SubscribeError::Unavailable(_))
    }

    /// The `system` payload that reports this error on `topic`.
    pub fn system_payload(&self, topic: &str) -> Value {
        system_message(topic, "error", &self.to_string())
    }
}

/// A `postgres_changes` system payload for channel `topic` (`realtime:` prefix stripped).
pub fn system_message(topic: &str, status: &str, message: &str) -> Value {
    let channel = topic.strip_prefix("realtime:").unwrap_or(topic);
    json!({
        "channel": channel,
        "extension": "postgres_changes",
        "message": message,
        "status": status,
    })
}

/// The `Subscribed to PostgreSQL` message.
pub fn subscribed_message(topic: &str) -> Value {
    system_message(topic, "ok", "Subscribed to PostgreSQL")
}
