//! Upstream's reply and `system` message shapes and error strings (PROTOCOL.md §3.7, §9, §15).
//!
//! The builders return [`Message`]s with the refs each kind carries (§2.1); encode them with
//! [`crate::encode`]. The string constants are byte-exact copies of upstream's wording, which
//! clients and operators match on.

use serde_json::{json, Map, Value};

use crate::events::{self, sub_topic};
use crate::message::Message;

/// Reply and `system` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `"ok"`.
    Ok,
    /// `"error"`.
    Error,
}

impl Status {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

/// `{"status": S, "response": P}`.
pub fn reply_payload(status: Status, response: Value) -> Value {
    let mut map = Map::new();
    map.insert("response".into(), response);
    map.insert("status".into(), Value::from(status.as_str()));
    Value::Object(map)
}

/// A `phx_reply` with the given refs.
pub fn reply(
    join_ref: Option<String>,
    msg_ref: Option<String>,
    topic: impl Into<String>,
    status: Status,
    response: Value,
) -> Message {
    Message::new(
        join_ref,
        msg_ref,
        topic,
        events::PHX_REPLY,
        reply_payload(status, response),
    )
}

/// `{"status":"ok","response":{}}`.
pub fn ok_empty(
    join_ref: Option<String>,
    msg_ref: Option<String>,
    topic: impl Into<String>,
) -> Message {
    reply(join_ref, msg_ref, topic, Status::Ok, json!({}))
}

/// `{"reason": reason}`, the response of most error replies.
pub fn reason(reason: &str) -> Value {
    json!({ "reason": reason })
}

/// `{"status":"error","response":{"reason": reason}}`.
pub fn error_reason(
    join_ref: Option<String>,
    msg_ref: Option<String>,
    topic: impl Into<String>,
    reason_text: &str,
) -> Message {
    reply(join_ref, msg_ref, topic, Status::Error, reason(reason_text))
}

/// `{"status":"error","response":{}}`: denied presence writes, unknown presence events.
pub fn error_empty(
    join_ref: Option<String>,
    msg_ref: Option<String>,
    topic: impl Into<String>,
) -> Message {
    reply(join_ref, msg_ref, topic, Status::Error, json!({}))
}

/// Successful join (§5.4): `{"postgres_changes": [...]}`, each binding echoed with its `id`.
pub fn join_ok(
    join_ref: Option<String>,
    msg_ref: Option<String>,
    topic: impl Into<String>,
    postgres_changes: Vec<Value>,
) -> Message {
    reply(
        join_ref,
        msg_ref,
        topic,
        Status::Ok,
        json!({ "postgres_changes": postgres_changes }),
    )
}

/// Heartbeat reply (§3.1): join_ref null, the client's ref, topic `phoenix`.
pub fn heartbeat(msg_ref: Option<String>) -> Message {
    ok_empty(None, msg_ref, events::PHOENIX_TOPIC)
}

/// `unmatched topic` error (§3.2); the join_ref is always null.
pub fn unmatched_topic(msg_ref: Option<String>, topic: impl Into<String>) -> Message {
    error_reason(None, msg_ref, topic, UNMATCHED_TOPIC)
}

/// The acked-broadcast size error, whose response is a bare string (§3.7).
pub fn payload_size_exceeded(
    join_ref: Option<String>,
    msg_ref: Option<String>,
    topic: impl Into<String>,
) -> Message {
    reply(
        join_ref,
        msg_ref,
        topic,
        Status::Error,
        Value::from(PAYLOAD_SIZE_EXCEEDED),
    )
}

/// Extension names used in `system` payloads.
pub mod extension {
    /// Subscription outcomes of database change bindings.
    pub const POSTGRES_CHANGES: &str = "postgres_changes";
    /// Channel-level notices (stops, replication readiness, disconnects).
    pub const SYSTEM: &str = "system";
}

/// `{"channel": <sub>, "extension": E, "message": M, "status": S}`; `channel` omitted when `None`.
pub fn system_payload(
    channel: Option<&str>,
    extension: &str,
    message: &str,
    status: Status,
) -> Value {
    let mut map = Map::new();
    if let Some(channel) = channel {
        map.insert("channel".into(), Value::from(channel));
    }
    map.insert("extension".into(), Value::from(extension));
    map.insert("message".into(), Value::from(message));
    map.insert("status".into(), Value::from(status.as_str()));
    Value::Object(map)
}

/// A `system` push by a channel (join_ref set, ref null); `channel` is the sub-topic.
pub fn system(
    join_ref: Option<String>,
    topic: &str,
    extension: &str,
    message: &str,
    status: Status,
) -> Message {
    let channel = sub_topic(topic).unwrap_or(topic);
    Message::new(
        join_ref,
        None,
        topic,
        events::SYSTEM,
        system_payload(Some(channel), extension, message, status),
    )
}

/// A channel-stop notice (§15.4): `system` with extension `system` and status `error`; send
/// [`phx_close`] after it.
pub fn channel_stop(join_ref: Option<String>, topic: &str, message: &str) -> Message {
    system(join_ref, topic, extension::SYSTEM, message, Status::Error)
}

/// `Subscribed to PostgreSQL` (§8.2).
pub fn postgres_changes_subscribed(join_ref: Option<String>, topic: &str) -> Message {
    system(
        join_ref,
        topic,
        extension::POSTGRES_CHANGES,
        SUBSCRIBED_TO_POSTGRESQL,
        Status::Ok,
    )
}

/// The fan-out sent to every joined channel before a 1012 drain (§9): refs null, no `channel`.
pub fn server_requested_disconnect(topic: impl Into<String>) -> Message {
    Message::new(
        None,
        None,
        topic,
        events::SYSTEM,
        system_payload(
            None,
            extension::SYSTEM,
            SERVER_REQUESTED_DISCONNECT,
            Status::Ok,
        ),
    )
}

/// `phx_close` (§3.5): both refs are the channel's join ref, payload `{}`.
pub fn phx_close(join_ref: Option<String>, topic: impl Into<String>) -> Message {
    Message::new(
        join_ref.clone(),
        join_ref,
        topic,
        events::PHX_CLOSE,
        json!({}),
    )
}

/// `phx_error` (§3.5): both refs are the channel's join ref, payload `{"reason":"channel_crash"}`.
pub fn phx_error(join_ref: Option<String>, topic: impl Into<String>) -> Message {
    Message::new(
        join_ref.clone(),
        join_ref,
        topic,
        events::PHX_ERROR,
        reason(CHANNEL_CRASH),
    )
}

/// The payload of a broadcast push (§6): `{"event": E, "payload": P, "type": "broadcast"}`,
/// plus `meta` when given (REST ids, replayed rows).
pub fn broadcast_payload(event: Value, payload: Value, meta: Option<Value>) -> Value {
    let mut map = Map::new();
    map.insert("event".into(), event);
    if let Some(meta) = meta {
        map.insert("meta".into(), meta);
    }
    map.insert("payload".into(), payload);
    map.insert("type".into(), Value::from(events::BROADCAST));
    Value::Object(map)
}

/// A broadcast push: event `broadcast`, ref null, the given join ref.
pub fn broadcast(join_ref: Option<String>, topic: impl Into<String>, payload: Value) -> Message {
    Message::new(join_ref, None, topic, events::BROADCAST, payload)
}

/// A push from a joined channel (join ref set, ref null): `presence_state`, `presence_diff`,
/// `system`, `postgres_changes`.
pub fn push(
    join_ref: Option<String>,
    topic: impl Into<String>,
    event: &str,
    payload: Value,
) -> Message {
    Message::new(join_ref, None, topic, event, payload)
}

// §15.2 replies: Phoenix's own wording (`Phoenix.Socket`, `Phoenix.Channel.Server`) except the
// presence one (upstream `lib/realtime_web/channels/realtime_channel.ex`).

/// Message for a topic that is not joined or not joinable.
pub const UNMATCHED_TOPIC: &str = "unmatched topic";
/// The channel died while joining.
pub const JOIN_CRASHED: &str = "join crashed";
/// Phoenix's channel cap (practically unreachable).
pub const TOO_MANY_CHANNELS_JOINED: &str = "too many channels joined";
/// Acked broadcast over the size limit (a bare string response).
pub const PAYLOAD_SIZE_EXCEEDED: &str = "payload_size_exceeded";
/// Presence track with a non-object meta.
pub const PRESENCE_TRACK_PAYLOAD_MUST_BE_A_MAP: &str = "Presence track payload must be a map";
/// `phx_error` payload reason.
pub const CHANNEL_CRASH: &str = "channel_crash";

// §8.2 and §9 system messages: upstream `lib/realtime_web/channels/realtime_channel.ex`; the
// disconnect notice is `lib/realtime_web/channels/user_socket.ex`.

/// postgres_changes subscriptions are in place.
pub const SUBSCRIBED_TO_POSTGRESQL: &str = "Subscribed to PostgreSQL";
/// Opt-in replication readiness notice.
pub const REPLICATION_CONNECTION_ESTABLISHED: &str = "Replication connection established";
/// Replication readiness timed out (channel stops).
pub const REPLICATION_NOT_ESTABLISHED_IN_TIME: &str =
    "Replication connection was not established in time";
/// Drain notice before close 1012.
pub const SERVER_REQUESTED_DISCONNECT: &str = "Server requested disconnect";

pub use crate::wording::{http, join, stop};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, Frame, Outbound, Vsn};

    fn v2(m: Message) -> String {
        match encode(Vsn::V2, &Outbound::Message(m)) {
            Some(Frame::Text(b)) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn v1(m: Message) -> String {
        match encode(Vsn::V1, &Outbound::Message(m)) {
            Some(Frame::Text(b)) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heartbeat_reply_both_versions() {
        assert_eq!(
            v2(heartbeat(Some("5".into()))),
            r#"[null,"5","phoenix","phx_reply",{"response":{},"status":"ok"}]"#
        );
        assert_eq!(
            v1(heartbeat(Some("5".into()))),
            r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"5","topic":"phoenix"}"#
        );
    }

    #[test]
    fn error_replies() {
        assert_eq!(
            v2(unmatched_topic(Some("3".into()), "room1")),
            r#"[null,"3","room1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
        );
        assert_eq!(
            v2(payload_size_exceeded(
                Some("1".into()),
                Some("2".into()),
                "realtime:room1"
            )),
            r#"["1","2","realtime:room1","phx_reply",{"response":"payload_size_exceeded","status":"error"}]"#
        );
        assert_eq!(
            v2(error_reason(
                Some("1".into()),
                Some("1".into()),
                "realtime:",
                join::TOPIC_NAME_REQUIRED
            )),
            r#"["1","1","realtime:","phx_reply",{"response":{"reason":"TopicNameRequired: You must provide a topic name"},"status":"error"}]"#
        );
    }

    #[test]
    fn join_ok_echoes_bindings() {
        let binding = json!({"event":"insert","schema":"public","table":"todos","extra":1,"id":7});
        assert_eq!(
            v2(join_ok(
                Some("1".into()),
                Some("1".into()),
                "realtime:room1",
                vec![binding]
            )),
            r#"["1","1","realtime:room1","phx_reply",{"response":{"postgres_changes":[{"event":"insert","extra":1,"id":7,"schema":"public","table":"todos"}]},"status":"ok"}]"#
        );
    }

    #[test]
    fn system_messages() {
        assert_eq!(
            v2(postgres_changes_subscribed(
                Some("1".into()),
                "realtime:room1"
            )),
            r#"["1",null,"realtime:room1","system",{"channel":"room1","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"}]"#
        );
        assert_eq!(
            v2(channel_stop(
                Some("1".into()),
                "realtime:room1",
                stop::CLIENT_PRESENCE_RATE_LIMIT
            )),
            r#"["1",null,"realtime:room1","system",{"channel":"room1","extension":"system","message":"Client presence rate limit exceeded","status":"error"}]"#
        );
        assert_eq!(
            v2(server_requested_disconnect("realtime:room1")),
            r#"[null,null,"realtime:room1","system",{"extension":"system","message":"Server requested disconnect","status":"ok"}]"#
        );
    }

    #[test]
    fn lifecycle_pushes_carry_the_join_ref_twice() {
        assert_eq!(
            v2(phx_close(Some("1".into()), "realtime:room1")),
            r#"["1","1","realtime:room1","phx_close",{}]"#
        );
        assert_eq!(
            v2(phx_error(Some("4".into()), "realtime:room1")),
            r#"["4","4","realtime:room1","phx_error",{"reason":"channel_crash"}]"#
        );
        assert_eq!(
            v2(phx_close(None, "realtime:room1")),
            r#"[null,null,"realtime:room1","phx_close",{}]"#
        );
    }

    #[test]
    fn broadcast_envelopes() {
        assert_eq!(
            v2(broadcast(
                None,
                "realtime:r",
                broadcast_payload(json!("e"), json!({"a": 1}), Some(json!({"id": 3})))
            )),
            r#"[null,null,"realtime:r","broadcast",{"event":"e","meta":{"id":3},"payload":{"a":1},"type":"broadcast"}]"#
        );
    }

    #[test]
    fn parameterised_strings() {
        assert_eq!(
            join::token_expired(12),
            "InvalidJWTToken: Token has expired 12 seconds ago"
        );
        assert_eq!(
            join::signer_error_for_kid("k9"),
            "JwtSignerError: Failed to generate JWT signer for key ID (kid) \"k9\", check your JWT secret or JWKS configuration"
        );
        assert_eq!(
            join::unauthorized("room1"),
            "Unauthorized: You do not have permissions to read from this Channel topic: room1"
        );
        assert_eq!(
            stop::read_permission_revoked("room1"),
            "You no longer have permission to read from this Channel topic: room1"
        );
        assert_eq!(stop::token_expired(0), "Token has expired 0 seconds ago");
        assert_eq!(
            http::body(http::ROLE_AND_EXP_REQUIRED),
            r#"{"error":"Fields `role` and `exp` are required in JWT"}"#
        );
    }
}
