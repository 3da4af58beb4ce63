//! Broadcast replay on private channels (PROTOCOL.md §6.7): stored `realtime.messages` rows of
//! the topic since a time, newest first up to the limit, pushed oldest first after the join.

use bytes::Bytes;
use realtime_protocol::{BroadcastEncoding, Message, Outbound, UserBroadcast};
use serde_json::{json, Value};

use crate::gateway::authorization::{classify, AuthError};
use crate::gateway::channel::Channel;
use crate::gateway::Gateway;

/// Most rows a replay returns (and the default).
const MAX_LIMIT: i64 = 25;

/// Validated `config.broadcast.replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayParams {
    /// Unix milliseconds.
    pub since: i64,
    /// Rows, clamped to 1..=25.
    pub limit: i64,
}

impl ReplayParams {
    /// `since` must be an integer; `limit`, when present, too.
    pub fn parse(v: &Value) -> Option<ReplayParams> {
        let since = v.get("since")?.as_i64()?;
        let limit = match v.get("limit") {
            None | Some(Value::Null) => MAX_LIMIT,
            Some(l) => l.as_i64()?,
        };
        Some(ReplayParams {
            since,
            limit: limit.clamp(1, MAX_LIMIT),
        })
    }
}

/// One stored broadcast.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Message id.
    pub id: String,
    /// Event name.
    pub event: String,
    /// JSON payload.
    pub payload: Option<Value>,
    /// Binary payload.
    pub binary: Option<Vec<u8>>,
}

impl Gateway {
    /// Reads the rows to replay, oldest first.
    pub async fn replay(
        &self,
        tenant: &str,
        sub: &str,
        params: ReplayParams,
    ) -> Result<Vec<Replayed>, AuthError> {
        let slot = self.connection(tenant).await?;
        let guard = slot.lock().await;
        let client = guard
            .as_ref()
            .ok_or_else(|| AuthError::Unavailable("no connection".into()))?;
        let rows = client
            .query(
                "SELECT id::text, coalesce(event, ''), payload, binary_payload FROM realtime.messages \
                 WHERE topic = $1 AND private IS TRUE AND extension = 'broadcast' \
                   AND inserted_at >= (to_timestamp($2::bigint / 1000.0) AT TIME ZONE 'UTC') \
                   AND inserted_at < (now() AT TIME ZONE 'UTC') + interval '1 minute' \
                 ORDER BY inserted_at DESC LIMIT $3",
                &[&sub, &params.since, &params.limit],
            )
            .await
            .map_err(classify)?;
        let mut out: Vec<Replayed> = rows
            .iter()
            .map(|r| Replayed {
                id: r.get(0),
                event: r.get(1),
                payload: r.get(2),
                binary: r.get(3),
            })
            .collect();
        out.reverse();
        Ok(out)
    }
}

impl Channel {
    /// The push of one replayed message (JSON broadcast, or kind 4 for binary rows).
    pub fn replayed(&self, m: Replayed) -> Outbound {
        let meta = json!({"id": m.id, "replayed": true});
        match m.binary {
            Some(bytes) if m.payload.is_none() => Outbound::UserBroadcast(UserBroadcast {
                join_ref: None,
                msg_ref: None,
                topic: self.topic.clone(),
                event: m.event,
                metadata: Bytes::from(meta.to_string()),
                encoding: BroadcastEncoding::Binary,
                payload: Bytes::from(bytes),
            }),
            _ => Outbound::Message(Message {
                join_ref: self.push_ref.clone(),
                msg_ref: None,
                topic: self.topic.clone(),
                event: "broadcast".into(),
                payload: json!({
                    "event": m.event,
                    "payload": m.payload.unwrap_or_else(|| json!({})),
                    "type": "broadcast",
                    "meta": meta,
                }),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        assert_eq!(
            ReplayParams::parse(&json!({"since":1,"limit":100})),
            Some(ReplayParams {
                since: 1,
                limit: 25
            })
        );
        assert_eq!(
            ReplayParams::parse(&json!({"since":1})),
            Some(ReplayParams {
                since: 1,
                limit: 25
            })
        );
        assert_eq!(ReplayParams::parse(&json!({"since":"x","limit":1})), None);
        assert_eq!(ReplayParams::parse(&json!({"limit":1})), None);
        assert_eq!(ReplayParams::parse(&json!({"since":1,"limit":"2"})), None);
    }
}
