//! Broadcast replay on private channels (PROTOCOL.md §6.7): the join's replay settings, and
//! the pushes of the stored messages ([`realtime_cdc::db_broadcast::replay()`] reads them),
//! oldest first after the join reply.

use bytes::Bytes;
use realtime_cdc::db_broadcast::replay::MAX_REPLAY;
use realtime_cdc::db_broadcast::{DbBroadcast, DbBroadcastError, DbPayload};
use realtime_protocol::{reply, BroadcastEncoding, Outbound, UserBroadcast};
use serde_json::{json, Value};

use crate::gateway::channel::Channel;
use crate::gateway::Gateway;

/// Most rows a replay returns (and the default).
const MAX_LIMIT: i64 = MAX_REPLAY as i64;

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

impl Gateway {
    /// Reads the private rows of `sub` to replay, oldest first. An `Err` displays as the join
    /// error reason.
    pub async fn replay(
        &self,
        tenant: &str,
        sub: &str,
        params: ReplayParams,
    ) -> Result<Vec<DbBroadcast>, DbBroadcastError> {
        // `parse` clamped the limit to 1..=25.
        let limit = u32::try_from(params.limit).unwrap_or(1);
        let started = std::time::Instant::now();
        let rows = self
            .databases
            .replay(tenant, self.registry_row(tenant), sub, params.since, limit)
            .await;
        self.limits.rates(tenant).metrics.replay(started.elapsed());
        rows
    }
}

impl Channel {
    /// The push of one replayed message (JSON broadcast, or kind 4 for binary rows).
    pub fn replayed(&self, m: DbBroadcast) -> Outbound {
        let meta = json!({"id": m.id, "replayed": true});
        match m.payload {
            DbPayload::Binary(bytes) => Outbound::UserBroadcast(UserBroadcast {
                join_ref: None,
                msg_ref: None,
                topic: self.topic.clone(),
                event: m.event,
                metadata: Bytes::from(meta.to_string()),
                encoding: BroadcastEncoding::Binary,
                payload: bytes,
            }),
            DbPayload::Json(raw) => Outbound::Message(reply::broadcast(
                self.push_ref.clone(),
                self.topic.clone(),
                reply::broadcast_payload(
                    Value::from(m.event),
                    // jsonb text, so it parses; `null` covers the impossible.
                    serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null),
                    Some(meta),
                ),
            )),
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
