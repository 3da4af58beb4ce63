//! One task per socket: reads frames and routes them to channels; its outbound queue and
//! writer are in [`crate::gateway::outbound`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use realtime_protocol::reply::{self, extension, Status};
use realtime_protocol::{events, InFrame, Inbound, Message, Outbound, Vsn};
use serde_json::{Map, Value};

use crate::gateway::channel::{unmatched_topic, Channel};
use crate::gateway::control::Control;
use crate::gateway::outbound::{self, SessionLink};
use crate::gateway::tenant_resolve::TenantView;
use crate::gateway::Gateway;

/// How often a session re-reads its tenant, so limit changes apply to live sockets.
const TENANT_REFRESH: Duration = Duration::from_secs(1);

/// What the upgrade established.
pub struct ConnectInfo {
    /// The tenant.
    pub tenant: Arc<TenantView>,
    /// Connect token.
    pub token: String,
    /// The request's `x-` headers.
    pub headers: Map<String, Value>,
    /// Serializer.
    pub vsn: Vsn,
}

/// A socket's state, driven by its read loop.
pub struct Session {
    pub(crate) gw: Arc<Gateway>,
    pub(crate) link: Arc<SessionLink>,
    pub(crate) tenant: Arc<TenantView>,
    tenant_read_at: Instant,
    pub(crate) connect_token: Arc<str>,
    /// The `x-` headers, handed to RLS checks of private channels.
    pub(crate) headers: Map<String, Value>,
    /// Joined channels by topic (boxed: the map reserves room for several entries, and a
    /// socket usually has one).
    pub(crate) channels: HashMap<String, Box<Channel>>,
    pub(crate) attempted_join: bool,
    pub(crate) closing: bool,
    /// Refused joins whose delayed reply is still pending.
    pub(crate) refusals_pending: Arc<std::sync::atomic::AtomicUsize>,
    /// Joins waiting for the tenant database, by topic: the attempt that may finish.
    pub(crate) pending_joins: HashMap<String, u64>,
    /// Frames of channels waiting for a write check, in arrival order.
    pub(crate) parked: crate::gateway::write_check::Parked,
}

/// What moves a session forward. The socket task turns what it reads and its timers into
/// these, so the session can be driven, and tested, without a WebSocket.
pub enum Input<'a> {
    /// A data frame from the client.
    Frame(InFrame<'a>),
    /// An event from another task (timers, the change pipeline, the tenant's lifecycle).
    Control(Control),
    /// The earliest channel token check ([`Session::next_token_check`]) is due.
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

/// Runs a socket until it closes.
pub async fn run(gw: Arc<Gateway>, socket: WebSocket, info: ConnectInfo) {
    let mut session = Session::open(gw, info);
    let link = session.link.clone();
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(outbound::write_loop(
        sink,
        link.out.clone(),
        link.kill.clone(),
        link.flow.clone(),
    ));
    read_loop(&mut session, stream).await;
    session.finish();
    drop(link);
    // The writer drains what is queued (a close frame, typically), then ends; a client that
    // does not take it within the grace period is dropped.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

/// The socket task's half: waits for the client, the session's controls and its timers, and
/// hands each to [`Session::handle`].
async fn read_loop(session: &mut Session, mut stream: SplitStream<WebSocket>) {
    let settings = &session.gw.settings;
    let idle = settings.idle_timeout;
    let sweep_every = settings.no_channel_timeout.max(Duration::from_millis(10));
    let mut deadline = tokio::time::Instant::now() + idle;
    let mut sweep =
        tokio::time::interval_at(tokio::time::Instant::now() + sweep_every, sweep_every);
    let kill = session.link.kill.clone();
    let control = session.link.control.clone();
    loop {
        let next_token_check = session.next_token_check();
        let next = tokio::select! {
            _ = kill.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => session.handle(Input::Idle).await,
            item = stream.next() => {
                deadline = tokio::time::Instant::now() + idle;
                match item {
                    None | Some(Ok(WsMessage::Close(_))) => return,
                    Some(Err(e)) => {
                        if e.to_string().contains("Message too long") {
                            session.close(1009);
                            // The oversized message was read whole; wait for the client's
                            // close reply so the close frame is not lost to a reset.
                            let drain = async {
                                while let Some(Ok(m)) = stream.next().await {
                                    if matches!(m, WsMessage::Close(_)) {
                                        break;
                                    }
                                }
                            };
                            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                        } else if let Some(code) =
                            crate::gateway::socket::read_error_close(&session.link.tenant, &e)
                        {
                            session.close(code);
                        }
                        return;
                    }
                    Some(Ok(WsMessage::Text(t))) => session.handle(Input::Frame(InFrame::Text(t.as_str()))).await,
                    Some(Ok(WsMessage::Binary(b))) => session.handle(Input::Frame(InFrame::Binary(&b))).await,
                    Some(Ok(_)) => Next::Continue,
                }
            }
            Some(c) = control.recv() => session.handle(Input::Control(c)).await,
            _ = sleep_until_some(next_token_check) => session.handle(Input::TokensDue).await,
            _ = sweep.tick() => session.handle(Input::Sweep).await,
        };
        if next != Next::Continue {
            return;
        }
    }
}

impl Session {
    /// A session for a new socket of `info.tenant`, registered with the gateway; its frames
    /// wait in its link's outbound queue for whoever writes them.
    pub fn open(gw: Arc<Gateway>, info: ConnectInfo) -> Session {
        let link = Arc::new(SessionLink::new(
            gw.next_id(),
            Arc::from(info.tenant.external_id.as_str()),
            info.vsn,
            gw.settings.outbound_queue,
            gw.settings.outbound_queue_bytes,
            gw.limits.rates(&info.tenant.external_id).metrics.clone(),
        ));
        gw.add_session(link.clone());
        Session {
            gw,
            link,
            tenant: info.tenant,
            tenant_read_at: Instant::now(),
            connect_token: Arc::from(info.token),
            headers: info.headers,
            channels: HashMap::new(),
            attempted_join: false,
            closing: false,
            refusals_pending: Arc::default(),
            pending_joins: HashMap::new(),
            parked: Default::default(),
        }
    }

    /// The link other tasks (and a writer) use to reach this session.
    pub fn link(&self) -> &Arc<SessionLink> {
        &self.link
    }

    /// Handles one input. Handling is boxed: an idle socket's task then holds only its wait,
    /// not the state of the largest handler.
    pub async fn handle(&mut self, input: Input<'_>) -> Next {
        match input {
            Input::Frame(frame) => Box::pin(self.on_frame(frame)).await,
            Input::Control(c) => Box::pin(self.on_control(c)).await,
            Input::TokensDue => Box::pin(self.check_due_tokens()).await,
            Input::Sweep => {
                if self.attempted_join && self.channels.is_empty() {
                    // Upstream kills such sockets without a close frame.
                    self.link.kill.cancel();
                    return Next::Drop;
                }
            }
            Input::Idle => self.close(1000),
        }
        if self.closing {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// When [`Input::TokensDue`] is next due.
    pub fn next_token_check(&self) -> Option<tokio::time::Instant> {
        self.channels
            .values()
            .filter_map(|ch| ch.token_check_at)
            .min()
    }

    /// Ends the session: its channels leave (presence, changes), the gateway forgets it, and
    /// its queue closes once what is queued is written.
    pub fn finish(mut self) {
        self.remove_all_channels();
        self.gw.sessions.remove(&self.link.id);
        if self.link.counted.load(Ordering::SeqCst) {
            if let Some(mut n) = self.gw.users.get_mut(&*self.link.tenant) {
                *n = n.saturating_sub(1);
            }
        }
        self.link.out.close();
    }

    /// Queues a close frame; the read loop ends after the current event.
    pub(crate) fn close(&mut self, code: u16) {
        self.closing = true;
        let _ = self.link.out.push(WsMessage::Close(Some(CloseFrame {
            code,
            reason: "".into(),
        })));
    }

    /// Sends a message to this socket.
    pub(crate) fn send(&self, msg: &Outbound) {
        self.link.send(msg);
    }

    /// The tenant, re-read from the directory at most once a second.
    pub(crate) async fn fresh_tenant(&mut self) -> Option<Arc<TenantView>> {
        if self.tenant_read_at.elapsed() >= TENANT_REFRESH {
            match self.gw.tenants.get(&self.tenant.external_id).await {
                Ok(Some(t)) => {
                    self.tenant = t;
                    self.tenant_read_at = Instant::now();
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant.external_id, error = %e, "tenant refresh failed");
                }
            }
        }
        Some(self.tenant.clone())
    }

    async fn on_frame(&mut self, frame: InFrame<'_>) {
        self.link.metrics.received(&frame);
        let inbound = match realtime_protocol::decode(self.link.vsn, frame) {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(tenant = %self.link.tenant, error = %e, "dropped malformed frame");
                return;
            }
        };
        if let Some(inbound) = self.park_behind(inbound) {
            self.dispatch(inbound).await;
        }
    }

    /// Handles a decoded frame, or parks it behind the write check it needs.
    pub(crate) async fn dispatch(&mut self, inbound: Inbound) {
        if let Some(ext) = self.write_check_for(&inbound) {
            self.check_write_then(inbound, ext);
            return;
        }
        match inbound {
            Inbound::Message(m) => self.on_message(m).await,
            Inbound::UserBroadcast(ub) => {
                if self.channels.contains_key(&ub.topic) {
                    self.on_user_broadcast(ub).await;
                } else {
                    self.send(&unmatched_topic(ub.msg_ref.clone(), &ub.topic));
                }
            }
        }
    }

    async fn on_message(&mut self, m: Message) {
        if m.topic == events::PHOENIX_TOPIC && m.event == events::HEARTBEAT {
            let mut fx = Vec::new();
            self.on_heartbeat(m, &mut fx);
            self.apply(fx).await;
            return;
        }
        match m.event.as_str() {
            events::PHX_JOIN => {
                if m.topic.starts_with(events::TOPIC_PREFIX) {
                    self.on_join(m).await;
                } else {
                    self.send(&unmatched_topic(m.msg_ref, &m.topic));
                }
            }
            events::PHX_LEAVE => self.on_leave(m),
            _ => {
                if !self.channels.contains_key(&m.topic) {
                    self.send(&unmatched_topic(m.msg_ref, &m.topic));
                    return;
                }
                match m.event.as_str() {
                    events::BROADCAST => self.on_broadcast(m).await,
                    events::PRESENCE => self.on_presence(m).await,
                    events::ACCESS_TOKEN => self.on_access_token(m).await,
                    _ => self.count_event(),
                }
            }
        }
    }

    /// Counts one tenant event (unknown events, handled broadcasts).
    pub(crate) fn count_event(&self) {
        self.gw.limits.rates(&self.link.tenant).events.add(1);
    }

    async fn on_control(&mut self, c: Control) {
        match c {
            Control::StopChannel {
                channel_id,
                message,
            } => {
                if let Some(topic) = self.topic_of(channel_id) {
                    self.stop_channel(&topic, &message);
                }
            }
            Control::CdcResult {
                channel_id,
                generation,
                result,
            } => self.on_cdc_result(channel_id, generation, *result),
            Control::CdcRetry {
                channel_id,
                generation,
            } => self.on_cdc_retry(channel_id, generation),
            Control::CdcDown {
                channel_id,
                generation,
            } => self.on_cdc_down(channel_id, generation),
            Control::ReplicationCheck {
                channel_id,
                deadline,
            } => self.on_replication_check(channel_id, deadline),
            Control::JoinChecked { join, verdict } => self.on_join_checked(*join, *verdict),
            Control::WriteChecked(verdict) => Box::pin(self.on_write_checked(*verdict)).await,
            Control::Reauthorized(verdict) => Box::pin(self.on_reauthorized(*verdict)).await,
            Control::ServerDisconnect => {
                // A fan-out frame: one tenant event per receiving channel, as for broadcasts (§12).
                let n = self.channels.len() as u64;
                self.gw.limits.rates(&self.link.tenant).events.add(n);
                for ch in self.channels.values() {
                    self.link
                        .send(&Outbound::Message(reply::server_requested_disconnect(
                            ch.topic.clone(),
                        )));
                }
                self.close(1012);
            }
            Control::Close(code) => self.close(code),
        }
    }

    pub(crate) fn topic_of(&self, channel_id: u64) -> Option<String> {
        self.channels
            .values()
            .find(|c| c.id == channel_id)
            .map(|c| c.topic.clone())
    }

    /// Server-side channel stop: `system` error, `phx_close`, then the channel is gone.
    pub(crate) fn stop_channel(&mut self, topic: &str, message: &str) {
        if let Some(ch) = self.channels.get(topic) {
            self.link
                .send(&ch.system(extension::SYSTEM, Status::Error, message));
            self.link.send(&ch.close_frame());
        }
        self.remove_channel(topic);
    }

    /// Removes a channel: hub subscription, presence (leave diff), change subscriptions.
    pub(crate) fn remove_channel(&mut self, topic: &str) -> Option<Channel> {
        let ch = *self.channels.remove(topic)?;
        self.gw.hub.unsubscribe(&ch.key, ch.id);
        if ch.tracked.is_some() {
            self.untrack_presence(&ch);
        }
        Some(ch)
    }

    fn remove_all_channels(&mut self) {
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for t in topics {
            self.remove_channel(&t);
        }
    }

    /// Spawns a delayed control event (timers).
    pub(crate) fn after(&self, delay: Duration, c: Control) {
        crate::gateway::control::spawn_after(&self.link.control, delay, c);
    }

    fn on_replication_check(&mut self, channel_id: u64, deadline: Instant) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        if self.gw.replication_ready(&self.link.tenant) {
            if let Some(ch) = self.channels.get(&topic) {
                self.link.send(&ch.system(
                    extension::SYSTEM,
                    Status::Ok,
                    reply::REPLICATION_CONNECTION_ESTABLISHED,
                ));
            }
        } else if Instant::now() >= deadline {
            self.stop_channel(&topic, reply::REPLICATION_NOT_ESTABLISHED_IN_TIME);
        } else {
            self.after(
                Duration::from_millis(500),
                Control::ReplicationCheck {
                    channel_id,
                    deadline,
                },
            );
        }
    }

    pub(crate) fn mark_counted(&self) {
        if self
            .link
            .counted
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            *self
                .gw
                .users
                .entry(self.link.tenant.to_string())
                .or_insert(0) += 1;
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
