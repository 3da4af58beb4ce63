//! What the session core asks for: each input to [`crate::gateway::core::Core`] yields a list of
//! effects (frames for its own socket, hub and presence changes, off-task checks, timers), which
//! the socket's runner ([`crate::gateway::runner`]) applies in order against the gateway.

use std::sync::Arc;
use std::time::Duration;

use realtime_protocol::Outbound;
use serde_json::{Map, Value};

use crate::gateway::authorization::{Extension, Policies, PolicyContext};
use crate::gateway::control::Control;
use crate::gateway::hub::{ChannelPerms, TopicKey};
use crate::gateway::jwt::Claims;

/// The per-tenant rate counters an effect adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Joins (§12 `max_joins_per_second`).
    Joins,
    /// Tenant events (§12 `max_events_per_second`).
    Events,
    /// Presence events.
    Presence,
}

/// A metrics observation of the tenant's series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// Bytes of a frame read from the client.
    InputBytes(usize),
    /// A client broadcast of this many payload bytes.
    BroadcastPayload(usize),
    /// A presence track of this many meta bytes.
    PresencePayload(usize),
    /// A join succeeded.
    Joined,
}

/// One thing the core wants done, in the order it must be done.
#[derive(Debug)]
pub enum Effect {
    /// Queue a frame on this socket.
    Send(Outbound),
    /// Fan a broadcast out, then ack, then wait for congested receivers ([`Fanout`]).
    Broadcast(Box<Fanout>),
    /// Add to one of the tenant's rate counters.
    Count(Counter, u64),
    /// Observe a metric.
    Metric(Metric),
    /// Queue a close frame with this code; the socket stops reading.
    Close(u16),
    /// Drop the connection without a close frame (upstream's kill).
    Drop,
    /// Subscribe a channel to its topic in the hub.
    Subscribe {
        /// The topic.
        key: TopicKey,
        /// The channel.
        channel_id: u64,
        /// What it may read, consulted by the hub at each fan-out.
        perms: Arc<ChannelPerms>,
    },
    /// Remove a channel from its topic in the hub.
    Unsubscribe {
        /// The topic.
        key: TopicKey,
        /// The channel.
        channel_id: u64,
    },
    /// Tell the hub a channel's new read permissions.
    SetPerms {
        /// The channel's permissions as the hub holds them.
        perms: Arc<ChannelPerms>,
        /// The new policies.
        policies: Policies,
    },
    /// Remember database broadcasts a channel already got by replay.
    MarkReplayed {
        /// The channel's permissions as the hub holds them.
        perms: Arc<ChannelPerms>,
        /// The replayed message ids.
        ids: Vec<String>,
    },
    /// Push the topic's `presence_state` to this channel (read from the store when applied).
    PresenceState {
        /// The topic.
        key: TopicKey,
        /// The channel's topic.
        topic: String,
        /// The channel's push ref.
        push_ref: Option<String>,
    },
    /// Track (or update) the channel's presence and fan the diff out.
    Track {
        /// The topic.
        key: TopicKey,
        /// Presence key.
        pkey: String,
        /// The channel.
        channel_id: u64,
        /// The meta.
        meta: Map<String, Value>,
    },
    /// Untrack the channel's presence and fan the leave out.
    Untrack {
        /// The topic.
        key: TopicKey,
        /// Presence key.
        pkey: String,
        /// The channel.
        channel_id: u64,
    },
    /// Count this socket as a connected user of its tenant (once).
    CountUser,
    /// Start the tenant's database broadcasts if they are not running.
    EnsureDbBroadcasts,
    /// Answer a refused join after upstream's backoff (and close with 1001 when `close`).
    RefuseJoin {
        /// The error reply.
        reply: Outbound,
        /// The reason (metrics).
        reason: String,
        /// Close the socket after the reply.
        close: bool,
    },
    /// Run a join's tenant-database checks off the socket's task; the verdict comes back as
    /// [`Control::JoinChecked`].
    CheckJoin {
        /// The join.
        join: Box<crate::gateway::join::PendingJoin>,
        /// The socket's `x-` headers.
        headers: Map<String, Value>,
    },
    /// Run a private channel's write check off the socket's task; the verdict comes back as
    /// [`Control::WriteChecked`].
    CheckWrite {
        /// The channel's topic.
        topic: String,
        /// The channel.
        channel_id: u64,
        /// What is checked.
        ext: Extension,
        /// The channel's policies so far.
        policies: Policies,
        /// The authorisation context.
        ctx: PolicyContext,
    },
    /// Run a private channel's read check after a token change; the verdict comes back as
    /// [`Control::Reauthorized`].
    CheckRefresh {
        /// The channel's topic.
        topic: String,
        /// The channel.
        channel_id: u64,
        /// Its policies before the change.
        before: Policies,
        /// Whether the role changed.
        role_changed: bool,
        /// The new claims.
        claims: Claims,
        /// Presence read is checked too.
        with_presence: bool,
        /// The authorisation context.
        ctx: PolicyContext,
    },
    /// Register a channel's postgres_changes bindings; the outcome comes back as
    /// [`Control::CdcResult`].
    SubscribeChanges(Box<ChangesRequest>),
    /// Hand new claims to a channel's live change subscription.
    UpdateClaims {
        /// The channel.
        channel_id: u64,
        /// The claims.
        claims: Value,
    },
    /// End a change subscription.
    EndChanges(realtime_cdc::Subscription),
    /// Deliver a control event to this session now (behind those already queued).
    Control(Control),
    /// Deliver a control event to this session after a delay (timers, retries).
    After(Duration, Control),
}

/// A client broadcast to fan out to `key`'s subscribers (except channel `exclude`), applying
/// the tenant events limit; then `ack` goes to this socket, then the publisher waits until
/// congested receivers drained (backpressure).
#[derive(Debug)]
pub struct Fanout {
    /// The topic.
    pub key: TopicKey,
    /// The broadcast.
    pub msg: Outbound,
    /// The sending channel, when it does not receive its own broadcasts.
    pub exclude: Option<u64>,
    /// The tenant's `max_events_per_second`.
    pub max_events_per_second: u64,
    /// The sender's ack, when it asked for one.
    pub ack: Option<Outbound>,
}

/// What registering a channel with the change pipeline needs.
#[derive(Debug)]
pub struct ChangesRequest {
    /// The channel.
    pub channel_id: u64,
    /// The attempt.
    pub generation: u64,
    /// The channel's topic.
    pub topic: String,
    /// Its push ref.
    pub push_ref: Option<String>,
    /// Joined without config (pushes name the change type).
    pub legacy: bool,
    /// The token's claims.
    pub claims: Value,
    /// The bindings with their ids.
    pub bindings: Vec<(u32, Value)>,
}
