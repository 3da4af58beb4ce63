//! What the session core asks for: each input to [`crate::gateway::core::Core`] yields a list of
//! effects (frames for its own socket, hub and presence changes, off-task checks, timers), which
//! the socket's runner ([`crate::gateway::runner`]) applies in order against the gateway.

use std::sync::Arc;
use std::time::Duration;

use realtime_protocol::Outbound;

use crate::gateway::hub::{ChannelPerms, TopicKey};

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

/// One thing the core wants done, in the order it must be done.
#[derive(Debug)]
pub enum Effect {
    /// Queue a frame on this socket.
    Send(Outbound),
    /// Fan a broadcast out to `key`'s subscribers (except channel `exclude`), applying the
    /// tenant events limit; then send `ack` to this socket, then wait until congested
    /// receivers drained (the publisher's backpressure).
    Broadcast {
        /// The topic.
        key: TopicKey,
        /// The broadcast.
        msg: Outbound,
        /// The sending channel, when it does not receive its own broadcasts.
        exclude: Option<u64>,
        /// The tenant's `max_events_per_second`.
        max_events_per_second: u64,
        /// The sender's ack, when it asked for one.
        ack: Option<Outbound>,
    },
    /// Add to one of the tenant's rate counters.
    Count(Counter, u64),
    /// A client broadcast of this many payload bytes (metrics).
    BroadcastPayload(usize),
    /// Queue a close frame with this code; the socket stops reading.
    Close(u16),
    /// Subscribe a channel to its topic in the hub.
    Subscribe {
        /// The topic.
        key: TopicKey,
        /// The channel.
        channel_id: u64,
        /// What it may read.
        perms: Arc<ChannelPerms>,
    },
    /// Deliver a control event to this session after a delay (timers, retries).
    After(Duration, crate::gateway::control::Control),
}
