//! One task per socket: reads frames, routes them to channels, and owns a bounded outbound
//! queue drained by a writer task. A receiver whose queue fills up is disconnected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use realtime_protocol::{InFrame, Inbound, Message, Outbound, Vsn};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::gateway::channel::{unmatched_topic, Channel};
use crate::gateway::hub::encode_ws;
use crate::gateway::tenant_resolve::TenantView;
use crate::gateway::Gateway;

/// How often a session re-reads its tenant, so limit changes apply to live sockets.
const TENANT_REFRESH: Duration = Duration::from_secs(1);

/// Events delivered to a session from outside its read loop.
pub enum Control {
    /// Stop a channel with a `system` error then `phx_close`.
    StopChannel {
        /// The channel.
        channel_id: u64,
        /// The `system` message text.
        message: String,
    },
    /// Re-verify a channel's token (expiry timer).
    TokenCheck {
        /// The channel.
        channel_id: u64,
        /// Token generation the timer was armed for.
        generation: u64,
    },
    /// Outcome of a change subscription attempt.
    CdcResult {
        /// The channel.
        channel_id: u64,
        /// Attempt generation.
        generation: u64,
        /// The subscription or why it failed (boxed: every socket's control queue has room
        /// for a few dozen controls from the start, so the enum is kept small).
        result: Box<Result<realtime_cdc::Subscription, realtime_cdc::SubscribeError>>,
    },
    /// Retry a failed change subscription.
    CdcRetry {
        /// The channel.
        channel_id: u64,
        /// Attempt generation that failed.
        generation: u64,
    },
    /// The change pipeline stopped under a live subscription (the tenant's pipeline was
    /// stopped): subscribe again after upstream's 1–3 s (`postgres_cdc_rls_down`).
    CdcDown {
        /// The channel.
        channel_id: u64,
        /// Attempt generation the pipeline stopped under.
        generation: u64,
    },
    /// Check whether the replication connection is ready (`replication_ready` opt-in).
    ReplicationCheck {
        /// The channel.
        channel_id: u64,
        /// Give up at this time.
        deadline: Instant,
    },
    /// Tenant-wide drain: "Server requested disconnect" on every channel, then close 1012.
    ServerDisconnect,
    /// Close the socket with this code.
    Close(u16),
}

/// What other tasks hold to reach a session.
pub struct SessionLink {
    /// Session id.
    pub id: u64,
    /// Tenant external id.
    pub tenant: Arc<str>,
    /// Serializer.
    pub vsn: Vsn,
    /// Outbound frame queue (bounded).
    pub out: mpsc::Sender<WsMessage>,
    /// Control queue.
    pub control: mpsc::Sender<Control>,
    /// Cancelled to drop the connection at once.
    pub kill: CancellationToken,
    /// Counted as a connected user (joined a channel at least once).
    pub counted: AtomicBool,
    /// Bytes of the frames queued and not yet written.
    pub queued_bytes: Arc<AtomicUsize>,
    /// Most bytes queued before the socket counts as a slow consumer.
    pub max_queued_bytes: usize,
    /// The tenant's metrics series.
    pub metrics: Arc<crate::metrics::TenantMetrics>,
}

/// Bytes a frame puts on the wire (near enough: the payload).
fn frame_bytes(m: &WsMessage) -> usize {
    match m {
        WsMessage::Text(t) => t.len(),
        WsMessage::Binary(b) | WsMessage::Ping(b) | WsMessage::Pong(b) => b.len(),
        WsMessage::Close(_) => 2,
    }
}

impl SessionLink {
    /// A link for session `id` of `tenant`, live and not yet counted as a user.
    pub fn new(
        id: u64,
        tenant: Arc<str>,
        vsn: Vsn,
        out: mpsc::Sender<WsMessage>,
        control: mpsc::Sender<Control>,
        max_queued_bytes: usize,
        metrics: Arc<crate::metrics::TenantMetrics>,
    ) -> SessionLink {
        SessionLink {
            id,
            tenant,
            vsn,
            out,
            control,
            kill: CancellationToken::new(),
            counted: AtomicBool::new(false),
            queued_bytes: Arc::default(),
            max_queued_bytes,
            metrics,
        }
    }

    /// Queues a frame without waiting; a full queue disconnects the socket.
    ///
    /// The queue is bounded in frames and in bytes: a socket that never reads cannot pin more
    /// than `max_queued_bytes` (a first frame always fits, whatever its size).
    pub fn push(&self, msg: WsMessage) -> bool {
        let size = frame_bytes(&msg);
        let before = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if before > 0 && before + size > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.slow("outbound queue over its byte limit");
            return false;
        }
        match self.out.try_send(msg) {
            Ok(()) => self.metrics.queued(size),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                self.slow("outbound queue full");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                false
            }
        }
    }

    /// Disconnects a socket that does not keep up, once.
    fn slow(&self, reason: &'static str) {
        if !self.kill.is_cancelled() {
            self.metrics.slow_consumer_closed();
            tracing::warn!(
                tenant = %self.tenant,
                session = self.id,
                reason,
                "disconnecting slow client"
            );
            self.kill.cancel();
        }
    }

    /// Encodes and queues a message for this socket's serializer.
    pub fn send(&self, msg: &Outbound) -> bool {
        match encode_ws(self.vsn, msg) {
            Some(frame) => self.push(frame),
            None => false,
        }
    }

    /// Sends a control event without waiting; a full control queue disconnects the socket.
    pub fn control(&self, c: Control) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.control.try_send(c) {
            tracing::warn!(tenant = %self.tenant, session = self.id, reason = "control queue full", "disconnecting slow client");
            self.kill.cancel();
        }
    }
}

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
    pub(crate) connect_token: String,
    /// The `x-` headers, handed to RLS checks of private channels.
    pub(crate) headers: Map<String, Value>,
    pub(crate) channels: HashMap<String, Channel>,
    pub(crate) attempted_join: bool,
    pub(crate) closing: bool,
    /// Refused joins whose delayed reply is still pending.
    pub(crate) refusals_pending: Arc<std::sync::atomic::AtomicUsize>,
}

/// Runs a socket until it closes.
pub async fn run(gw: Arc<Gateway>, socket: WebSocket, info: ConnectInfo) {
    let (out_tx, out_rx) = mpsc::channel(gw.settings.outbound_queue.max(1));
    let (ctl_tx, ctl_rx) = mpsc::channel(1024);
    let id = gw.next_id();
    let link = Arc::new(SessionLink::new(
        id,
        Arc::from(info.tenant.external_id.as_str()),
        info.vsn,
        out_tx,
        ctl_tx,
        gw.settings.outbound_queue_bytes,
        gw.limits.rates(&info.tenant.external_id).metrics.clone(),
    ));
    gw.sessions.insert(id, link.clone());
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(
        sink,
        out_rx,
        link.kill.clone(),
        link.queued_bytes.clone(),
    ));
    let mut session = Session {
        gw: gw.clone(),
        link: link.clone(),
        tenant: info.tenant,
        tenant_read_at: Instant::now(),
        connect_token: info.token,
        headers: info.headers,
        channels: HashMap::new(),
        attempted_join: false,
        closing: false,
        refusals_pending: Arc::default(),
    };
    session.read_loop(stream, ctl_rx).await;
    session.remove_all_channels();
    gw.sessions.remove(&id);
    if link.counted.load(Ordering::SeqCst) {
        if let Some(mut n) = gw.users.get_mut(&*link.tenant) {
            *n = n.saturating_sub(1);
        }
    }
    drop(session);
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

async fn write_loop(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<WsMessage>,
    kill: CancellationToken,
    queued_bytes: Arc<AtomicUsize>,
) {
    loop {
        let first = tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            m = rx.recv() => match m {
                None => break,
                Some(m) => m,
            },
        };
        // Everything already queued goes out in one flush: a fan-out burst then costs one
        // write per socket instead of one per frame.
        let mut closing = false;
        let mut next = Some(first);
        // A client that stops reading blocks the write; a kill must still end it.
        let sent = tokio::select! {
            r = async {
                let mut batch = 0;
                while let Some(m) = next.take() {
                    closing = matches!(m, WsMessage::Close(_));
                    queued_bytes.fetch_sub(frame_bytes(&m), Ordering::Relaxed);
                    sink.feed(m).await?;
                    batch += 1;
                    if closing || batch == WRITE_BATCH {
                        break;
                    }
                    next = rx.try_recv().ok();
                }
                sink.flush().await
            } => r.is_ok(),
            _ = kill.cancelled() => false,
        };
        if !sent {
            kill.cancel();
            break;
        }
        if closing {
            break;
        }
    }
}

/// Most frames written before a flush.
const WRITE_BATCH: usize = 256;

impl Session {
    async fn read_loop(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        mut ctl_rx: mpsc::Receiver<Control>,
    ) {
        let idle = self.gw.settings.idle_timeout;
        let mut deadline = tokio::time::Instant::now() + idle;
        let sweep_every = self
            .gw
            .settings
            .no_channel_timeout
            .max(Duration::from_millis(10));
        let mut sweep =
            tokio::time::interval_at(tokio::time::Instant::now() + sweep_every, sweep_every);
        let kill = self.link.kill.clone();
        loop {
            tokio::select! {
                _ = kill.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    self.close(1000);
                    return;
                }
                item = stream.next() => {
                    deadline = tokio::time::Instant::now() + idle;
                    match item {
                        None | Some(Ok(WsMessage::Close(_))) => return,
                        Some(Err(e)) => {
                            if e.to_string().contains("Message too long") {
                                self.close(1009);
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
                            }
                            return;
                        }
                        Some(Ok(WsMessage::Text(t))) => self.on_frame(InFrame::Text(t.as_str())).await,
                        Some(Ok(WsMessage::Binary(b))) => self.on_frame(InFrame::Binary(&b)).await,
                        Some(Ok(_)) => {}
                    }
                }
                Some(c) = ctl_rx.recv() => self.on_control(c).await,
                _ = sweep.tick() => {
                    if self.attempted_join && self.channels.is_empty() {
                        // Upstream kills such sockets without a close frame.
                        kill.cancel();
                        return;
                    }
                }
            }
            if self.closing {
                return;
            }
        }
    }

    /// Queues a close frame; the read loop ends after the current event.
    pub(crate) fn close(&mut self, code: u16) {
        self.closing = true;
        let _ = self.link.out.try_send(WsMessage::Close(Some(CloseFrame {
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
        if m.topic == "phoenix" && m.event == "heartbeat" {
            self.on_heartbeat(m);
            return;
        }
        match m.event.as_str() {
            "phx_join" => {
                if m.topic.starts_with("realtime:") {
                    self.on_join(m).await;
                } else {
                    self.send(&unmatched_topic(m.msg_ref, &m.topic));
                }
            }
            "phx_leave" => self.on_leave(m),
            _ => {
                if !self.channels.contains_key(&m.topic) {
                    self.send(&unmatched_topic(m.msg_ref, &m.topic));
                    return;
                }
                match m.event.as_str() {
                    "broadcast" => self.on_broadcast(m).await,
                    "presence" => self.on_presence(m).await,
                    "access_token" => self.on_access_token(m).await,
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
            Control::TokenCheck {
                channel_id,
                generation,
            } => self.on_token_check(channel_id, generation).await,
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
            Control::ServerDisconnect => {
                for ch in self.channels.values() {
                    self.link.send(&Outbound::Message(Message {
                        join_ref: None,
                        msg_ref: None,
                        topic: ch.topic.clone(),
                        event: "system".into(),
                        payload: json!({"extension":"system","message":"Server requested disconnect","status":"ok"}),
                    }));
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
            self.link.send(&ch.system("system", "error", message));
            self.link.send(&ch.close_frame());
        }
        self.remove_channel(topic);
    }

    /// Removes a channel: hub subscription, presence (leave diff), change subscriptions.
    pub(crate) fn remove_channel(&mut self, topic: &str) -> Option<Channel> {
        let ch = self.channels.remove(topic)?;
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
        spawn_after(&self.link.control, delay, c);
    }

    fn on_replication_check(&mut self, channel_id: u64, deadline: Instant) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        if self.gw.replication_ready(&self.link.tenant) {
            if let Some(ch) = self.channels.get(&topic) {
                self.link
                    .send(&ch.system("system", "ok", "Replication connection established"));
            }
        } else if Instant::now() >= deadline {
            self.stop_channel(&topic, "Replication connection was not established in time");
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

/// Sends `c` to the session after `delay`; the handle cancels it.
pub(crate) fn spawn_after(
    control: &mpsc::Sender<Control>,
    delay: Duration,
    c: Control,
) -> tokio::task::AbortHandle {
    let tx = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = tx.send(c).await;
    })
    .abort_handle()
}
