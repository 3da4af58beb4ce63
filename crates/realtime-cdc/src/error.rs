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

/// A database error in Postgrex's `Exception.message` form: `ERROR 22P02
/// (invalid_text_representation) invalid input syntax for type integer: "hey"`.
pub fn postgrex_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => exception_text(db.severity(), db.code().code(), db.message()),
        None => err.to_string(),
    }
}

/// `<severity> <code> (<condition name>) <message>`.
pub fn exception_text(severity: &str, code: &str, message: &str) -> String {
    match condition_name(code) {
        Some(name) => format!("{severity} {code} ({name}) {message}"),
        None => format!("{severity} {code} {message}"),
    }
}

/// PostgreSQL condition names for the SQLSTATEs subscription checks can raise.
fn condition_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "P0001" => "raise_exception",
        "22P02" => "invalid_text_representation",
        "22007" => "invalid_datetime_format",
        "22008" => "datetime_field_overflow",
        "22003" => "numeric_value_out_of_range",
        "22001" => "string_data_right_truncation",
        "22023" => "invalid_parameter_value",
        "2201B" => "invalid_regular_expression",
        "22025" => "invalid_escape_sequence",
        "22P05" => "untranslatable_character",
        "22021" => "character_not_in_repertoire",
        "22004" => "null_value_not_allowed",
        "22000" => "data_exception",
        "22012" => "division_by_zero",
        "23502" => "not_null_violation",
        "42704" => "undefined_object",
        "42703" => "undefined_column",
        "42P01" => "undefined_table",
        "42883" => "undefined_function",
        "42846" => "cannot_coerce",
        "42804" => "datatype_mismatch",
        "42501" => "insufficient_privilege",
        "42601" => "syntax_error",
        "0A000" => "feature_not_supported",
        "XX000" => "internal_error",
        "57014" => "query_canceled",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(
            exception_text("ERROR", "P0001", "invalid column for filter foo"),
            "ERROR P0001 (raise_exception) invalid column for filter foo"
        );
        let e = SubscribeError::NotPublished(
            "event: *, schema: public, table: x, filters: [], select: nil".into(),
        );
        assert_eq!(e.to_string(), "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: x, filters: [], select: nil]");
        assert_eq!(
            e.system_payload("realtime:room1"),
            serde_json::json!({"channel": "room1", "extension": "postgres_changes", "status": "error", "message": e.to_string()})
        );
        assert!(!e.is_retryable());
    }
}
