//! A joined channel's state, owned by its socket's session, and the frames a channel pushes
//! (replies, `system` messages, `phx_close`).

use std::sync::Arc;
use std::time::Instant;

use realtime_protocol::reply::{self, Status};
use realtime_protocol::Outbound;
use serde_json::Value;

use crate::gateway::hub::{ChannelPerms, TopicKey};
use crate::gateway::jwt::Claims;

/// One joined channel.
pub struct Channel {
    /// Unique id in the process.
    pub id: u64,
    /// Full topic (`realtime:<sub>`).
    pub topic: String,
    /// Hub namespace.
    pub key: TopicKey,
    /// Join ref used for the channel's pushes and replies (the join's `ref` when the client gave
    /// no join ref).
    pub push_ref: Option<String>,
    /// The client's join ref, used by `phx_close`/`phx_error` and the `phx_leave` check.
    pub join_ref: Option<String>,
    /// `config.private`.
    pub private: bool,
    /// `config.broadcast.ack`.
    pub ack: bool,
    /// `config.broadcast.self`.
    pub self_broadcast: bool,
    /// Presence key.
    pub presence_key: String,
    /// Presence is on for this channel (join config, tenant flag, or a track).
    pub presence_on: bool,
    /// The last successfully tracked meta (without `phx_ref`).
    pub tracked: Option<Value>,
    /// Client presence window: start and count of counted messages.
    pub presence_window: Option<(Instant, u64)>,
    /// The channel's token.
    pub token: Arc<str>,
    /// Its token's `exp` (the claims themselves are read from the token when needed:
    /// [`Channel::claims`]).
    pub exp: Option<i64>,
    /// Permissions consulted by the hub.
    pub perms: Arc<ChannelPerms>,
    /// Postgres changes bindings with their ids (as echoed in the join reply).
    pub bindings: Vec<(u32, Value)>,
    /// Joined with the legacy (config-less) payload.
    pub legacy: bool,
    /// Private channels: what the tenant's policies allow (cached until the token changes).
    pub policies: crate::gateway::authorization::Policies,
    /// Live change subscription; dropping it unsubscribes.
    pub cdc: Option<realtime_cdc::Subscription>,
    /// Bumped on every subscription attempt so stale outcomes are ignored.
    pub cdc_generation: u64,
    /// When the token is verified again (its expiry, or 5 min); the session's read loop
    /// waits for the earliest of its channels', so no task or timer is kept per channel.
    pub token_check_at: Option<tokio::time::Instant>,
    /// `access_token` refreshes in the current one-second window: (window start, count).
    pub refreshes: (std::time::Instant, u32),
}

impl Channel {
    /// The verified claims of the channel's token.
    pub fn claims(&self) -> Claims {
        crate::gateway::jwt::claims_of(&self.token).unwrap_or_default()
    }

    /// Sub-topic.
    pub fn sub(&self) -> &str {
        &self.key.sub
    }

    /// A reply from this channel to message `msg_ref`.
    pub fn reply(&self, msg_ref: Option<String>, status: Status, response: Value) -> Outbound {
        Outbound::Message(reply::reply(
            self.push_ref.clone(),
            msg_ref,
            &self.topic,
            status,
            response,
        ))
    }

    /// A push from the channel itself (join ref set, ref null).
    pub fn push(&self, event: &str, payload: Value) -> Outbound {
        Outbound::Message(reply::push(
            self.push_ref.clone(),
            &self.topic,
            event,
            payload,
        ))
    }

    /// A `system` message pushed by the channel.
    pub fn system(&self, extension: &str, status: Status, message: &str) -> Outbound {
        Outbound::Message(reply::system(
            self.push_ref.clone(),
            &self.topic,
            extension,
            message,
            status,
        ))
    }

    /// `phx_close` carrying the channel's join ref in both ref fields.
    pub fn close_frame(&self) -> Outbound {
        Outbound::Message(reply::phx_close(self.join_ref.clone(), &self.topic))
    }
}

/// A `phx_reply` that no channel sends (heartbeats, replies to unjoined topics).
pub fn reply(
    join_ref: Option<String>,
    msg_ref: Option<String>,
    topic: &str,
    status: Status,
    response: Value,
) -> Outbound {
    Outbound::Message(reply::reply(join_ref, msg_ref, topic, status, response))
}

/// The socket layer's `unmatched topic` error reply (join ref always null).
pub fn unmatched_topic(msg_ref: Option<String>, topic: &str) -> Outbound {
    Outbound::Message(reply::unmatched_topic(msg_ref, topic))
}

/// Reads one of upstream's "flexible" booleans: JSON booleans or `true`/`false` strings in any
/// letter case; anything else is `None` (the caller falls back to the default).
pub fn flex_bool(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}
