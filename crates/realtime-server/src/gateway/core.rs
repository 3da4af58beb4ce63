//! The per-socket state machine: a decoded frame, a control event or a timer goes in, the
//! state moves, and what must happen comes out as [`Effect`]s for the runner
//! ([`crate::gateway::runner`]) to apply. The core owns the socket's channels and waiting
//! frames; it neither sends, nor touches the hub, the presence store or the rate counters, nor
//! spawns or waits, so it is tested without a socket ([`crate::gateway::session_tests`]).
//!
//! What it reads comes in: the clock ([`Now`]), a tenant read done by the runner before the
//! input when the core asks for one ([`Core::tenant_need`]), and the shared reads of
//! [`Reads`]. Those reads are the exceptions left: the tenant's join and presence rate
//! averages and the connected-user count are read from the gateway's live counters at the
//! moment of the decision (a snapshot taken earlier would let a burst pass), and channel ids
//! come from the gateway's counter. Random presence keys and retry delays are drawn here, and
//! log lines are written here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use realtime_protocol::reply::{self, extension, Status};
use realtime_protocol::{events, InFrame, Inbound, Message, Outbound, Vsn};
use serde_json::{Map, Value};

use crate::gateway::channel::{unmatched_topic, Channel};
use crate::gateway::control::Control;
use crate::gateway::effect::{Counter, Effect, Metric};
use crate::gateway::tenant_resolve::TenantView;
use crate::gateway::write_check::Parked;
use crate::gateway::{Gateway, GatewaySettings};

/// How often the tenant is read again, so limit changes apply to live sockets.
const TENANT_REFRESH: Duration = Duration::from_secs(1);

/// The clock as the runner read it for one input.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time (timers).
    pub at: tokio::time::Instant,
    /// Wall-clock milliseconds since the epoch (token expiries).
    pub unix_ms: i64,
}

impl Now {
    /// The current time.
    pub fn current() -> Now {
        Now {
            at: tokio::time::Instant::now(),
            unix_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Monotonic time as a std instant.
    pub fn std(&self) -> std::time::Instant {
        self.at.into_std()
    }

    /// Wall-clock seconds since the epoch.
    pub fn unix_secs(&self) -> i64 {
        self.unix_ms.div_euclid(1000)
    }
}

/// What the core reads from the process around it (see the module doc for why these are read
/// live).
pub trait Reads {
    /// The gateway's settings.
    fn settings(&self) -> &GatewaySettings;
    /// A fresh id, unique in the process (channels, join attempts).
    fn next_id(&self) -> u64;
    /// Sockets of `tenant` counted as connected users, on every node.
    fn connected_count(&self, tenant: &str) -> usize;
    /// Whether the node is shutting down.
    fn is_shutting_down(&self) -> bool;
    /// Whether the tenant's join rate has reached `limit`.
    fn joins_triggered(&self, tenant: &str, limit: u64) -> bool;
    /// The tenant's average presence events per second.
    fn presence_rate(&self, tenant: &str) -> f64;
    /// Whether the tenant's replication connection is up.
    fn replication_ready(&self, tenant: &str) -> bool;
}

impl Reads for Gateway {
    fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    fn next_id(&self) -> u64 {
        Gateway::next_id(self)
    }

    fn connected_count(&self, tenant: &str) -> usize {
        self.users_everywhere(tenant) as usize
    }

    fn is_shutting_down(&self) -> bool {
        Gateway::is_shutting_down(self)
    }

    fn joins_triggered(&self, tenant: &str, limit: u64) -> bool {
        self.limits.rates(tenant).joins.triggered(limit)
    }

    fn presence_rate(&self, tenant: &str) -> f64 {
        self.limits.rates(tenant).presence.average()
    }

    fn replication_ready(&self, tenant: &str) -> bool {
        Gateway::replication_ready(self, tenant)
    }
}

/// A read of the tenant directory done for an input.
#[derive(Debug, Clone)]
pub enum TenantRead {
    /// The tenant as it is now.
    Found(Arc<TenantView>),
    /// The tenant no longer exists.
    Missing,
    /// The lookup failed.
    Failed(String),
}

/// Which tenant read an input needs before the core handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantNeed {
    /// None: the cached tenant will do, or it is not consulted.
    None,
    /// A read, because the cached tenant is over a second old.
    Refresh,
    /// A read whatever the cache's age (joins).
    Fresh,
}

/// What moves a session forward. The socket task turns what it reads and its timers into
/// these, so the session can be driven, and tested, without a WebSocket.
pub enum Input<'a> {
    /// A data frame from the client.
    Frame(InFrame<'a>),
    /// A frame already decoded (the runner decodes first to know which tenant read it needs).
    Inbound(Inbound),
    /// An event from another task (timers, the change pipeline, the tenant's lifecycle).
    Control(Control),
    /// The earliest channel token check ([`Core::next_token_check`]) is due.
    TokensDue,
    /// The periodic sweep for sockets that joined and lost every channel.
    Sweep,
    /// Nothing arrived from the client for the idle timeout.
    Idle,
}

/// What the socket does after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep going.
    Continue,
    /// Stop reading; a close frame is queued.
    Close,
    /// Drop the connection without a close frame (upstream's kill).
    Drop,
}

/// What one input is handled with: the reads, the clock, the tenant read and where the
/// effects go.
pub struct Cx<'a> {
    /// Shared reads.
    pub reads: &'a dyn Reads,
    /// The clock.
    pub now: Now,
    /// The tenant read done for this input, if the core asked for one.
    pub tenant: Option<TenantRead>,
    /// The effects, in order.
    pub fx: &'a mut Vec<Effect>,
}

impl Cx<'_> {
    /// Queues an effect.
    pub fn push(&mut self, effect: Effect) {
        self.fx.push(effect);
    }

    /// Queues a frame for this socket.
    pub fn send(&mut self, msg: Outbound) {
        self.fx.push(Effect::Send(msg));
    }
}

/// A socket's state.
pub struct Core {
    /// Tenant external id (hub keys, logs).
    pub(crate) tenant_id: Arc<str>,
    /// The socket's serializer.
    pub(crate) vsn: Vsn,
    pub(crate) tenant: Arc<TenantView>,
    tenant_read_at: std::time::Instant,
    pub(crate) connect_token: Arc<str>,
    /// The `x-` headers, handed to RLS checks of private channels.
    pub(crate) headers: Map<String, Value>,
    /// Joined channels by topic (boxed: the map reserves room for several entries, and a
    /// socket usually has one).
    pub(crate) channels: HashMap<String, Box<Channel>>,
    pub(crate) attempted_join: bool,
    pub(crate) closing: bool,
    /// Counted as a connected user of the tenant (joined once).
    pub(crate) counted: bool,
    /// Joins waiting for the tenant database, by topic: the attempt that may finish.
    pub(crate) pending_joins: HashMap<String, u64>,
    /// Frames of channels waiting for a write check, in arrival order.
    pub(crate) parked: Parked,
}

impl Core {
    /// The state of a new socket of `tenant`, which connected with `token`.
    pub fn new(
        tenant: Arc<TenantView>,
        token: Arc<str>,
        headers: Map<String, Value>,
        vsn: Vsn,
    ) -> Core {
        Core {
            tenant_id: Arc::from(tenant.external_id.as_str()),
            vsn,
            tenant,
            tenant_read_at: std::time::Instant::now(),
            connect_token: token,
            headers,
            channels: HashMap::new(),
            attempted_join: false,
            closing: false,
            counted: false,
            pending_joins: HashMap::new(),
            parked: Parked::default(),
        }
    }

    /// Handles one input; the effects go to `cx.fx`.
    pub fn handle(&mut self, input: Input<'_>, cx: &mut Cx<'_>) -> Next {
        self.take_tenant_read(cx);
        match input {
            Input::Frame(frame) => {
                if let Some(inbound) = self.decode(frame, cx.fx) {
                    self.on_inbound(inbound, cx);
                }
            }
            Input::Inbound(inbound) => self.on_inbound(inbound, cx),
            Input::Control(c) => self.on_control(c, cx),
            Input::TokensDue => self.check_due_tokens(cx),
            Input::Sweep => {
                if self.attempted_join && self.channels.is_empty() {
                    // Upstream kills such sockets without a close frame.
                    cx.push(Effect::Drop);
                    return Next::Drop;
                }
            }
            Input::Idle => self.close(1000, cx),
        }
        if self.closing {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// Decodes a client frame; a malformed one is dropped (logged).
    pub fn decode(&self, frame: InFrame<'_>, fx: &mut Vec<Effect>) -> Option<Inbound> {
        fx.push(Effect::Metric(Metric::InputBytes(
            crate::metrics::frame_len(&frame),
        )));
        match realtime_protocol::decode(self.vsn, frame) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::debug!(tenant = %self.tenant_id, error = %e, "dropped malformed frame");
                None
            }
        }
    }

    /// The tenant read `input` needs before [`Core::handle`].
    pub fn tenant_need(&self, input: &Input<'_>, now: Now) -> TenantNeed {
        let stale = if now.std().saturating_duration_since(self.tenant_read_at) >= TENANT_REFRESH {
            TenantNeed::Refresh
        } else {
            TenantNeed::None
        };
        let of = |inbound: &Inbound| match inbound {
            Inbound::Message(m) if is_join(m) => TenantNeed::Fresh,
            Inbound::Message(m) if m.topic == events::PHOENIX_TOPIC => TenantNeed::None,
            _ => stale,
        };
        match input {
            Input::Inbound(i) if self.parked.contains(topic_of(i)) => TenantNeed::None,
            Input::Inbound(i) => of(i),
            Input::Control(Control::WriteChecked(v)) => self.parked.need(&v.topic, of),
            Input::Control(Control::Reauthorized(v)) => self.parked.need(v.topic(), of),
            Input::TokensDue => stale,
            _ => TenantNeed::None,
        }
    }

    /// Takes in the tenant read done for this input: a found tenant replaces the cached one.
    fn take_tenant_read(&mut self, cx: &mut Cx<'_>) {
        match &cx.tenant {
            Some(TenantRead::Found(t)) => {
                self.tenant = t.clone();
                self.tenant_read_at = cx.now.std();
            }
            Some(TenantRead::Failed(e)) => {
                tracing::warn!(tenant = %self.tenant_id, error = %e, "tenant refresh failed");
            }
            _ => {}
        }
    }

    /// The tenant for a decision, `None` when it no longer exists.
    pub(crate) fn fresh_tenant(&self, cx: &Cx<'_>) -> Option<Arc<TenantView>> {
        match cx.tenant {
            Some(TenantRead::Missing) => None,
            _ => Some(self.tenant.clone()),
        }
    }

    /// When [`Input::TokensDue`] is next due.
    pub fn next_token_check(&self) -> Option<tokio::time::Instant> {
        self.channels
            .values()
            .filter_map(|ch| ch.token_check_at)
            .min()
    }

    /// Ends the socket: every channel leaves (hub, presence, changes).
    pub fn finish(&mut self, fx: &mut Vec<Effect>) {
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for t in topics {
            self.remove_channel(&t, fx);
        }
    }

    /// The live change subscription of a channel.
    pub fn subscription(&self, channel_id: u64) -> Option<&realtime_cdc::Subscription> {
        self.channels
            .values()
            .find(|c| c.id == channel_id)
            .and_then(|c| c.cdc.as_ref())
    }

    /// Queues a close frame; the socket stops reading after the current input.
    pub(crate) fn close(&mut self, code: u16, cx: &mut Cx<'_>) {
        self.closing = true;
        cx.push(Effect::Close(code));
    }

    fn on_inbound(&mut self, inbound: Inbound, cx: &mut Cx<'_>) {
        if let Some(inbound) = self.park_behind(inbound) {
            self.dispatch(inbound, cx);
        }
    }

    /// Handles a decoded frame, or parks it behind the write check it needs.
    pub(crate) fn dispatch(&mut self, inbound: Inbound, cx: &mut Cx<'_>) {
        if let Some(ext) = self.write_check_for(&inbound) {
            self.check_write_then(inbound, ext, cx);
            return;
        }
        match inbound {
            Inbound::Message(m) => self.on_message(m, cx),
            Inbound::UserBroadcast(ub) => {
                if self.channels.contains_key(&ub.topic) {
                    self.on_user_broadcast(ub, cx);
                } else {
                    cx.send(unmatched_topic(ub.msg_ref.clone(), &ub.topic));
                }
            }
        }
    }

    fn on_message(&mut self, m: Message, cx: &mut Cx<'_>) {
        if m.topic == events::PHOENIX_TOPIC && m.event == events::HEARTBEAT {
            self.on_heartbeat(m, cx);
            return;
        }
        match m.event.as_str() {
            events::PHX_JOIN => {
                if m.topic.starts_with(events::TOPIC_PREFIX) {
                    self.on_join(m, cx);
                } else {
                    cx.send(unmatched_topic(m.msg_ref, &m.topic));
                }
            }
            events::PHX_LEAVE => self.on_leave(m, cx),
            _ => {
                if !self.channels.contains_key(&m.topic) {
                    cx.send(unmatched_topic(m.msg_ref, &m.topic));
                    return;
                }
                match m.event.as_str() {
                    events::BROADCAST => self.on_broadcast(m, cx),
                    events::PRESENCE => self.on_presence(m, cx),
                    events::ACCESS_TOKEN => self.on_access_token(m, cx),
                    _ => cx.push(Effect::Count(Counter::Events, 1)),
                }
            }
        }
    }

    fn on_control(&mut self, c: Control, cx: &mut Cx<'_>) {
        match c {
            Control::StopChannel {
                channel_id,
                message,
            } => {
                if let Some(topic) = self.topic_of(channel_id) {
                    self.stop_channel(&topic, &message, cx);
                }
            }
            Control::CdcResult {
                channel_id,
                generation,
                result,
            } => self.on_cdc_result(channel_id, generation, *result, cx),
            Control::CdcRetry {
                channel_id,
                generation,
            } => self.on_cdc_retry(channel_id, generation, cx),
            Control::CdcDown {
                channel_id,
                generation,
            } => self.on_cdc_down(channel_id, generation, cx),
            Control::ReplicationCheck {
                channel_id,
                deadline,
            } => self.on_replication_check(channel_id, deadline, cx),
            Control::JoinChecked { join, verdict } => self.on_join_checked(*join, *verdict, cx),
            Control::WriteChecked(verdict) => self.on_write_checked(*verdict, cx),
            Control::Reauthorized(verdict) => self.on_reauthorized(*verdict, cx),
            Control::ServerDisconnect => {
                // A fan-out frame: one tenant event per receiving channel, as for broadcasts (§12).
                let n = self.channels.len() as u64;
                cx.push(Effect::Count(Counter::Events, n));
                for ch in self.channels.values() {
                    cx.send(Outbound::Message(reply::server_requested_disconnect(
                        ch.topic.clone(),
                    )));
                }
                self.close(1012, cx);
            }
            Control::Close(code) => self.close(code, cx),
        }
    }

    pub(crate) fn topic_of(&self, channel_id: u64) -> Option<String> {
        self.channels
            .values()
            .find(|c| c.id == channel_id)
            .map(|c| c.topic.clone())
    }

    /// Server-side channel stop: `system` error, `phx_close`, then the channel is gone.
    pub(crate) fn stop_channel(&mut self, topic: &str, message: &str, cx: &mut Cx<'_>) {
        if let Some(ch) = self.channels.get(topic) {
            cx.send(ch.system(extension::SYSTEM, Status::Error, message));
            cx.send(ch.close_frame());
        }
        self.remove_channel(topic, cx.fx);
    }

    /// Removes a channel: hub subscription, presence (leave diff), change subscription.
    pub(crate) fn remove_channel(&mut self, topic: &str, fx: &mut Vec<Effect>) -> Option<Channel> {
        let mut ch = *self.channels.remove(topic)?;
        fx.push(Effect::Unsubscribe {
            key: ch.key.clone(),
            channel_id: ch.id,
        });
        if ch.tracked.is_some() {
            fx.push(Effect::Untrack {
                key: ch.key.clone(),
                pkey: ch.presence_key.clone(),
                channel_id: ch.id,
            });
        }
        if let Some(sub) = ch.cdc.take() {
            fx.push(Effect::EndChanges(sub));
        }
        Some(ch)
    }

    fn on_replication_check(
        &mut self,
        channel_id: u64,
        deadline: std::time::Instant,
        cx: &mut Cx<'_>,
    ) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        if cx.reads.replication_ready(&self.tenant_id) {
            if let Some(ch) = self.channels.get(&topic) {
                cx.send(ch.system(
                    extension::SYSTEM,
                    Status::Ok,
                    reply::REPLICATION_CONNECTION_ESTABLISHED,
                ));
            }
        } else if cx.now.std() >= deadline {
            self.stop_channel(&topic, reply::REPLICATION_NOT_ESTABLISHED_IN_TIME, cx);
        } else {
            cx.push(Effect::After(
                Duration::from_millis(500),
                Control::ReplicationCheck {
                    channel_id,
                    deadline,
                },
            ));
        }
    }

    /// Counts this socket as a connected user, once.
    pub(crate) fn mark_counted(&mut self, cx: &mut Cx<'_>) {
        if !self.counted {
            self.counted = true;
            cx.push(Effect::CountUser);
        }
    }
}

/// Whether a message is a join of a channel topic.
fn is_join(m: &Message) -> bool {
    m.event == events::PHX_JOIN && m.topic.starts_with(events::TOPIC_PREFIX)
}

/// The topic a frame is for.
pub(crate) fn topic_of(inbound: &Inbound) -> &str {
    match inbound {
        Inbound::Message(m) => &m.topic,
        Inbound::UserBroadcast(ub) => &ub.topic,
    }
}
