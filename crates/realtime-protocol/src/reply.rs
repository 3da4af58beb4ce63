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

// §15.2 replies.

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

// §8.2 and §9 system messages.

/// postgres_changes subscriptions are in place.
pub const SUBSCRIBED_TO_POSTGRESQL: &str = "Subscribed to PostgreSQL";
/// Opt-in replication readiness notice.
pub const REPLICATION_CONNECTION_ESTABLISHED: &str = "Replication connection established";
/// Replication readiness timed out (channel stops).
pub const REPLICATION_NOT_ESTABLISHED_IN_TIME: &str =
    "Replication connection was not established in time";
/// Drain notice before close 1012.
pub const SERVER_REQUESTED_DISCONNECT: &str = "Server requested disconnect";

/// §1.5 connect refusals: the `error` value of the JSON body.
pub mod http {
    /// 404.
    pub const TENANT_NOT_FOUND: &str = "Tenant not found";
    /// 403.
    pub const REALTIME_DISABLED: &str = "Realtime was disabled for this tenant";
    /// 401.
    pub const API_KEY_MISSING: &str = "API key is missing";
    /// 401.
    pub const MALFORMED_JWT: &str = "The token provided is not a valid JWT";
    /// 401.
    pub const TOKEN_EXPIRED: &str = "Token has expired";
    /// 401.
    pub const ROLE_AND_EXP_REQUIRED: &str = "Fields `role` and `exp` are required in JWT";
    /// 401.
    pub const SIGNATURE_ERROR: &str = "Failed to validate JWT signature";
    /// 401.
    pub const SIGNER_ERROR: &str =
        "Failed to generate JWT signer, check your JWT secret or JWKS configuration";
    /// 500: any other JWT failure.
    pub const ERROR_CONNECTING: &str = "Error connecting to Realtime";
    /// 429.
    pub const TOO_MANY_CONNECTED_USERS: &str = "Too many connected users";
    /// 429.
    pub const TOO_MANY_JOINS: &str = "Too many joins per second";

    /// 401 when the JWKS has no key for `kid`.
    pub fn signer_error_for_kid(kid: &str) -> String {
        format!(
            "Failed to generate JWT signer for key ID (kid) \"{kid}\", check your JWT secret or JWKS configuration"
        )
    }

    /// The refusal body, `{"error": message}`.
    pub fn body(message: &str) -> String {
        serde_json::json!({ "error": message }).to_string()
    }
}

/// §15.3 join error reasons (every one delayed 5 s by the caller).
pub mod join {
    /// Topic is exactly `realtime:`.
    pub const TOPIC_NAME_REQUIRED: &str = "TopicNameRequired: You must provide a topic name";
    /// Server shutting down.
    pub const REALTIME_RESTARTING: &str =
        "RealtimeRestarting: Realtime is restarting, please standby";
    /// Tenant vanished after connect (socket then closed 1001).
    pub const TENANT_NOT_FOUND: &str = "TenantNotFound: Tenant with the given ID does not exist";
    /// Tenant is `private_only` and the channel is public.
    pub const PRIVATE_ONLY: &str = "PrivateOnly: This project only allows private channels";
    /// Concurrent users limit.
    pub const CONNECTION_RATE_LIMIT: &str = "ConnectionRateLimitReached: Too many connected users";
    /// Join rate limit (socket then closed 1001).
    pub const CLIENT_JOIN_RATE_LIMIT: &str =
        "ClientJoinRateLimitReached: Too many joins per second";
    /// Channels-per-client limit.
    pub const CHANNEL_RATE_LIMIT: &str = "ChannelRateLimitReached: Too many channels";
    /// Claims lack `role` or `exp`.
    pub const ROLE_AND_EXP_REQUIRED: &str =
        "InvalidJWTToken: Fields `role` and `exp` are required in JWT";
    /// `exp` ≤ now after rounding.
    pub const EXPIRATION_INVALID: &str = "InvalidJWTToken: Token expiration time is invalid";
    /// Malformed join token.
    pub const MALFORMED_JWT: &str = "MalformedJWT: The token provided is not a valid JWT";
    /// Signature mismatch.
    pub const SIGNATURE_ERROR: &str = "JwtSignatureError: Failed to validate JWT signature";
    /// No usable key.
    pub const SIGNER_ERROR: &str =
        "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration";
    /// Tenant database unreachable.
    pub const UNABLE_TO_CONNECT: &str =
        "UnableToConnectToProject: Realtime was unable to connect to the project database";
    /// Policy check failed with a connection-level error (no prefix).
    pub const UNABLE_TO_CONNECT_NO_PREFIX: &str =
        "Realtime was unable to connect to the project database";
    /// Database connection still starting.
    pub const INITIALIZING_PROJECT_CONNECTION: &str =
        "InitializingProjectConnection: Realtime is initializing the project connection";
    /// Database connection still starting (other phase).
    pub const CONNECTING_TO_PROJECT_DATABASE: &str =
        "InitializingProjectConnection: Connecting to the project database";
    /// Database refuses connections.
    pub const DATABASE_LACK_OF_CONNECTIONS: &str =
        "DatabaseLackOfConnections: Database can't accept more connections, Realtime won't connect";
    /// Database connect attempts throttled.
    pub const DATABASE_CONNECTION_RATE_LIMIT: &str =
        "DatabaseConnectionRateLimitReached: Too many database connections attempts per second";
    /// Pool exhausted during policy checks.
    pub const INCREASE_CONNECTION_POOL: &str =
        "IncreaseConnectionPool: Please increase your connection pool size";
    /// `realtime.messages` partition missing.
    pub const MISSING_PARTITION: &str =
        "MissingPartition: Realtime was unable to find the expected messages partition";
    /// Tenant suspended (race with disconnect).
    pub const REALTIME_DISABLED_FOR_TENANT: &str =
        "RealtimeDisabledForTenant: Realtime disabled for this tenant";
    /// Replay requested on a public channel.
    pub const REPLAY_PUBLIC: &str =
        "UnableToReplayMessages: Replay is not allowed for public channels";
    /// Bad replay `since` / `limit`.
    pub const REPLAY_PARAMS_INVALID: &str = "UnableToReplayMessages: Replay params are not valid";
    /// Replay query failed.
    pub const REPLAY_FAILED: &str =
        "UnableToReplayMessages: Realtime was unable to replay messages";
    /// Cluster RPC timeout.
    pub const RPC_TIMEOUT: &str = "TimeoutOnRpcCall: Node request timeout";
    /// Anything else.
    pub const UNKNOWN_ERROR: &str = "Unknown Error on Channel";

    /// `InvalidJWTToken: Token has expired N seconds ago`.
    pub fn token_expired(seconds_ago: u64) -> String {
        format!("InvalidJWTToken: Token has expired {seconds_ago} seconds ago")
    }

    /// `JwtSignerError: ` plus the kid-specific signer error.
    pub fn signer_error_for_kid(kid: &str) -> String {
        format!("JwtSignerError: {}", super::http::signer_error_for_kid(kid))
    }

    /// `Unauthorized: You do not have permissions to read from this Channel topic: <sub>`.
    pub fn unauthorized(sub_topic: &str) -> String {
        format!(
            "Unauthorized: {}",
            super::stop::no_read_permission(sub_topic)
        )
    }

    /// `QueryCanceled: <details>`.
    pub fn query_canceled(details: &str) -> String {
        format!("QueryCanceled: {details}")
    }

    /// `ErrorOnRpcCall: RPC call error: <detail>`.
    pub fn rpc_error(detail: &str) -> String {
        format!("ErrorOnRpcCall: RPC call error: {detail}")
    }

    /// `UnknownErrorOnChannel: <message>`.
    pub fn unknown_error(message: &str) -> String {
        format!("UnknownErrorOnChannel: {message}")
    }
}

/// §15.4 channel-stop `system` messages (status `error`, then `phx_close`).
pub mod stop {
    /// Events limiter triggered at delivery.
    pub const TOO_MANY_MESSAGES: &str = "Too many messages per second";
    /// Tenant presence rate.
    pub const TOO_MANY_PRESENCE_MESSAGES: &str = "Too many presence messages per second";
    /// Client presence window.
    pub const CLIENT_PRESENCE_RATE_LIMIT: &str = "Client presence rate limit exceeded";
    /// Track meta too large.
    pub const TRACK_MESSAGE_SIZE_EXCEEDED: &str = "Track message size exceeded";
    /// Refreshed token lacks claims.
    pub const ROLE_AND_EXP_REQUIRED: &str = "Fields `role` and `exp` are required in JWT";
    /// Refreshed token malformed (including `""`).
    pub const MALFORMED_JWT: &str = "The token provided is not a valid JWT";
    /// Refreshed token with a bad signature (upstream prints the error atom).
    pub const SIGNATURE_ERROR: &str = ":signature_error";
    /// Refreshed token without a usable key (upstream prints the error atom).
    pub const SIGNER_ERROR: &str = ":error_generating_signer";
    /// Database failure while re-authorising.
    pub const UNABLE_TO_CONNECT: &str = "Realtime was unable to connect to the project database";
    /// Policy query cancelled while re-authorising.
    pub const QUERY_CANCELLED: &str = "Query was cancelled, please try again";
    /// Cluster RPC timeout.
    pub const RPC_TIMEOUT: &str = "Node request timeout";
    /// Replication readiness timed out.
    pub const REPLICATION_NOT_ESTABLISHED_IN_TIME: &str =
        super::REPLICATION_NOT_ESTABLISHED_IN_TIME;

    /// `Token has expired N seconds ago`.
    pub fn token_expired(seconds_ago: u64) -> String {
        format!("Token has expired {seconds_ago} seconds ago")
    }

    /// The kid-specific signer error, unprefixed.
    pub fn signer_error_for_kid(kid: &str) -> String {
        super::http::signer_error_for_kid(kid)
    }

    /// Private channel without read permission after a refresh.
    pub fn no_read_permission(sub_topic: &str) -> String {
        format!("You do not have permissions to read from this Channel topic: {sub_topic}")
    }

    /// Private channel whose read permission a refresh revoked.
    pub fn read_permission_revoked(sub_topic: &str) -> String {
        format!("You no longer have permission to read from this Channel topic: {sub_topic}")
    }

    /// `RPC call error: <detail>`.
    pub fn rpc_error(detail: &str) -> String {
        format!("RPC call error: {detail}")
    }
}

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
