//! Replay of stored broadcasts for a joining private channel (`config.broadcast.replay`,
//! PROTOCOL §6.7, POSTGRES §3.5), with upstream's bounds, order and limits.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::{row, DbBroadcast, DbBroadcastError, DbPayload};

/// Upstream's hard limit on replayed messages.
pub const MAX_REPLAY: u32 = 25;
/// Upstream's query timeout.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The range of `since` that Elixir's `DateTime.from_unix(ms, :millisecond)` accepts
/// (years -9999 to 9999); anything outside is "not valid".
const SINCE_MIN_MS: i64 = -377_705_116_800_000;
const SINCE_MAX_MS: i64 = 253_402_300_799_999;

const COLUMNS: &str = "id::text, topic, event, private, payload::text, inserted_at";
const FILTER: &str = "FROM realtime.messages \
     WHERE topic = $1 AND private IS TRUE AND extension = 'broadcast' \
       AND inserted_at >= $2 AND inserted_at < $3 \
     ORDER BY inserted_at DESC, ctid DESC LIMIT $4";

/// The newest `limit` (clamped to 1..=25) private `broadcast` rows of `topic` (the sub-topic,
/// e.g. `room:1`) inserted at or after `since_ms` (Unix milliseconds, naive UTC) and before
/// now + 1 minute, returned **oldest first**: the order the channel pushes them in.
///
/// - `private = false` → [`DbBroadcastError::ReplayNotAllowed`] (upstream refuses replay on
///   public channels); a `since_ms` outside years ±9999 → [`DbBroadcastError::ReplayParams`];
///   a query failure or a query slower than 5 s → [`DbBroadcastError::ReplayFailed`]. Their
///   `Display` is the join error reason.
/// - JSON payloads are re-encoded compactly with sorted keys (upstream decodes them into a map
///   and encodes that again); a NULL payload becomes JSON `null`. Rows with a NULL event are
///   left out (they have no event to push under). `committed_at` is not known here and is set
///   to `inserted_at`.
/// - Rows come back newest-first from the database and are reversed; rows inserted in the same
///   transaction share `inserted_at` and are ordered by their position in the partition.
pub async fn replay(
    client: &Client,
    topic: &str,
    private: bool,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<DbBroadcast>, DbBroadcastError> {
    if !private {
        return Err(DbBroadcastError::ReplayNotAllowed);
    }
    if !(SINCE_MIN_MS..=SINCE_MAX_MS).contains(&since_ms) {
        return Err(DbBroadcastError::ReplayParams);
    }
    let since = DateTime::from_timestamp_millis(since_ms)
        .ok_or(DbBroadcastError::ReplayParams)?
        .naive_utc();
    // Future partitions are empty; the minute absorbs clock drift.
    let until = (Utc::now() + chrono::Duration::minutes(1)).naive_utc();
    let limit = i64::from(limit.clamp(1, MAX_REPLAY));
    let query = async {
        let with_binary = format!("SELECT {COLUMNS}, binary_payload {FILTER}");
        match client
            .query(&with_binary, &[&topic, &since, &until, &limit])
            .await
        {
            // A schema from before `binary_payload` existed.
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_COLUMN) => {
                let plain = format!("SELECT {COLUMNS}, NULL::bytea {FILTER}");
                client
                    .query(&plain, &[&topic, &since, &until, &limit])
                    .await
            }
            other => other,
        }
    };
    let rows = match tokio::time::timeout(TIMEOUT, query).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "UnableToReplayMessages: Realtime was unable to replay messages");
            return Err(DbBroadcastError::ReplayFailed(Some(e)));
        }
        Err(_) => {
            tracing::error!("UnableToReplayMessages: replay query timed out");
            return Err(DbBroadcastError::ReplayFailed(None));
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows.iter().rev() {
        match to_broadcast(r) {
            Ok(Some(b)) => out.push(b),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "UnableToReplayMessages: unreadable stored message");
                return Err(DbBroadcastError::ReplayFailed(Some(e)));
            }
        }
    }
    Ok(out)
}

fn to_broadcast(r: &tokio_postgres::Row) -> Result<Option<DbBroadcast>, tokio_postgres::Error> {
    let id: String = r.try_get(0)?;
    let topic: String = r.try_get(1)?;
    let Some(event) = r.try_get::<_, Option<String>>(2)? else {
        return Ok(None);
    };
    let private = r.try_get::<_, Option<bool>>(3)?.unwrap_or(false);
    let json: Option<String> = r.try_get(4)?;
    let inserted_at: NaiveDateTime = r.try_get(5)?;
    let binary: Option<Vec<u8>> = r.try_get(6)?;
    let payload = match (binary, json) {
        (Some(b), _) => DbPayload::Binary(Bytes::from(b)),
        (None, Some(text)) => DbPayload::Json(reencode(&text)),
        (None, None) => DbPayload::Json(reencode("null")),
    };
    Ok(Some(DbBroadcast {
        topic,
        event,
        private,
        id,
        payload,
        inserted_at,
        committed_at: inserted_at.and_utc(),
    }))
}

/// jsonb text → compact JSON with object keys sorted, as upstream's decode/encode round trip
/// renders it.
fn reencode(text: &str) -> std::sync::Arc<serde_json::value::RawValue> {
    let compact = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string(&v).ok())
        .unwrap_or_else(|| text.to_string());
    match row::raw_json(compact, "payload") {
        Ok(raw) => raw,
        // Unreachable for jsonb text; keep the row rather than fail the replay.
        Err(_) => std::sync::Arc::from(serde_json::value::RawValue::NULL.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::reencode;

    #[test]
    fn reencodes_compact_and_sorted() {
        assert_eq!(
            reencode(r#"{"id": "x", "b": [1, 2.50], "a": {"z": null, "y": true}}"#).get(),
            r#"{"a":{"y":true,"z":null},"b":[1,2.5],"id":"x"}"#
        );
        assert_eq!(reencode("null").get(), "null");
    }
}
