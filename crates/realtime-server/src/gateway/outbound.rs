//! A socket's outbound side: the link other tasks hold to reach a session, its bounded queue
//! and the writer task that drains it, and backpressure.
//!
//! Overload is absorbed before anyone is closed. A fan-out never waits: it queues the shared
//! frame on every receiver at once. A client publisher then waits, before reading its next
//! frame, until the receivers it made congested drain below the soft mark (so TCP slows the
//! publisher instead of the subscribers losing their sockets). A receiver is closed only when
//! its queue has not moved for [`STALL`] while someone waits for it, or when it reaches the
//! hard limits (frames or bytes) that bound memory whatever the publishers do.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use realtime_protocol::{Outbound, Vsn};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::gateway::control::Control;
use crate::gateway::hub::encode_ws;
use crate::gateway::mailbox::{Mailbox, Refused};

/// How long a congested receiver may go without writing anything before it is closed.
pub const STALL: Duration = Duration::from_secs(2);

/// Controls a session's queue holds before the socket counts as stuck.
pub const CONTROL_QUEUE: usize = 1024;

/// Queued bytes above which a receiver slows its publishers.
pub const SOFT_BYTES: usize = 512 * 1024;

/// What other tasks hold to reach a session.
pub struct SessionLink {
    /// Session id.
    pub id: u64,
    /// Tenant external id.
    pub tenant: Arc<str>,
    /// Serializer.
    pub vsn: Vsn,
    /// Outbound frame queue (bounded), drained by the writer.
    pub out: Arc<Mailbox<WsMessage>>,
    /// Control queue, read by the session.
    pub control: Arc<Mailbox<Control>>,
    /// Cancelled to drop the connection at once.
    pub kill: CancellationToken,
    /// Counted as a connected user (joined a channel at least once).
    pub counted: AtomicBool,
    /// The queue's fill, shared with the writer.
    pub flow: Arc<Flow>,
    /// Most bytes queued before the socket counts as a slow consumer.
    pub max_queued_bytes: usize,
    /// The tenant's metrics series.
    pub metrics: Arc<crate::metrics::TenantMetrics>,
}

/// How full a socket's queue is and whether it moves, shared by the link and its writer.
#[derive(Default)]
pub struct Flow {
    /// Bytes of the frames queued and not yet written.
    pub queued_bytes: AtomicUsize,
    /// Milliseconds (on [`clock_ms`]) of the writer's last movement: taking frames from the
    /// queue, or finishing their write.
    last_write_ms: AtomicU64,
    /// Someone waits for this queue to drain.
    waiting: AtomicBool,
    /// Wakes the waiters once the queue is below the soft mark.
    drained: Notify,
}

/// Milliseconds since the first call: a cheap clock for "has this queue moved lately".
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Over the soft byte mark, or more than half the queue's frames in use.
fn congested(flow: &Flow, out: &Mailbox<WsMessage>) -> bool {
    flow.queued_bytes.load(Ordering::SeqCst) > SOFT_BYTES || out.len() > out.capacity() / 2
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
    /// A link for session `id` of `tenant`, live and not yet counted as a user, with room for
    /// `max_frames` outbound frames (and `max_queued_bytes`) and [`CONTROL_QUEUE`] controls.
    pub fn new(
        id: u64,
        tenant: Arc<str>,
        vsn: Vsn,
        max_frames: usize,
        max_queued_bytes: usize,
        metrics: Arc<crate::metrics::TenantMetrics>,
    ) -> SessionLink {
        let flow = Flow::default();
        flow.last_write_ms.store(clock_ms(), Ordering::Relaxed);
        SessionLink {
            id,
            tenant,
            vsn,
            out: Arc::new(Mailbox::new(max_frames)),
            control: Arc::new(Mailbox::new(CONTROL_QUEUE)),
            kill: CancellationToken::new(),
            counted: AtomicBool::new(false),
            flow: Arc::new(flow),
            max_queued_bytes,
            metrics,
        }
    }

    /// Queues a frame without waiting; a queue at its hard limit disconnects the socket.
    ///
    /// The queue is bounded in frames and in bytes: a socket that never reads cannot pin more
    /// than `max_queued_bytes` (a first frame always fits, whatever its size).
    pub fn push(&self, msg: WsMessage) -> bool {
        let size = frame_bytes(&msg);
        let queued = &self.flow.queued_bytes;
        let before = queued.fetch_add(size, Ordering::SeqCst);
        if before == 0 {
            // An idle queue starts moving now: its stall time counts from here, not from its
            // last write, however long ago that was.
            self.flow.last_write_ms.store(clock_ms(), Ordering::Relaxed);
        }
        if before > 0 && before + size > self.max_queued_bytes {
            queued.fetch_sub(size, Ordering::SeqCst);
            self.slow("outbound queue over its byte limit");
            return false;
        }
        match self.out.push(msg) {
            Ok(()) => self.metrics.queued(size),
            Err(Refused::Full) => {
                queued.fetch_sub(size, Ordering::SeqCst);
                self.slow("outbound queue full");
                false
            }
            Err(Refused::Closed) => {
                queued.fetch_sub(size, Ordering::SeqCst);
                false
            }
        }
    }

    /// Whether this queue should slow its publishers: over the soft byte mark, or more than
    /// half its frames in use.
    pub fn is_congested(&self) -> bool {
        congested(&self.flow, &self.out)
    }

    /// Waits until the queue is below its soft marks, the socket is gone, or the queue has
    /// not moved for `stall` (then the socket is closed as a slow consumer). A receiver that
    /// keeps writing, however slowly, is waited for and never closed here.
    pub async fn drained(&self, stall: Duration) {
        loop {
            if self.kill.is_cancelled() || !self.is_congested() {
                return;
            }
            let notified = self.flow.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.flow.waiting.store(true, Ordering::SeqCst);
            if !self.is_congested() {
                return;
            }
            let last = self.flow.last_write_ms.load(Ordering::Relaxed);
            let stalled_for = Duration::from_millis(clock_ms().saturating_sub(last));
            let Some(left) = stall.checked_sub(stalled_for).filter(|d| !d.is_zero()) else {
                self.slow("outbound queue did not drain");
                return;
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(left) => {}
                _ = self.kill.cancelled() => return,
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
        if let Err(Refused::Full) = self.control.push(c) {
            tracing::warn!(tenant = %self.tenant, session = self.id, reason = "control queue full", "disconnecting slow client");
            self.kill.cancel();
        }
    }
}

/// Waits until every link in `links` has drained (see [`SessionLink::drained`]); they drain in
/// parallel, so the wait is the slowest one's.
pub async fn drained_all(links: &[Arc<SessionLink>]) {
    for link in links {
        link.drained(STALL).await;
    }
}

/// Writes a socket's queue until the queue closes, the socket fails, or the link is killed.
pub async fn write_loop(
    mut sink: SplitSink<WebSocket, WsMessage>,
    out: Arc<Mailbox<WsMessage>>,
    kill: CancellationToken,
    flow: Arc<Flow>,
) {
    let mut batch = VecDeque::new();
    loop {
        // Everything already queued goes out in one flush: a fan-out burst then costs one
        // write per socket instead of one per frame.
        let more = tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            more = out.recv_many(&mut batch, WRITE_BATCH) => more,
        };
        if !more {
            break;
        }
        // Taking frames is movement too: a socket idle for long and then handed a burst it
        // cannot take at once is given the whole stall time from here, not judged stalled
        // since its last write before the burst.
        flow.last_write_ms.store(clock_ms(), Ordering::Relaxed);
        let mut closing = false;
        // A client that stops reading blocks the write; a kill must still end it.
        let sent = tokio::select! {
            r = async {
                while let Some(m) = batch.pop_front() {
                    closing = matches!(m, WsMessage::Close(_));
                    flow.queued_bytes.fetch_sub(frame_bytes(&m), Ordering::SeqCst);
                    sink.feed(m).await?;
                    if closing {
                        break;
                    }
                }
                sink.flush().await
            } => r.is_ok(),
            _ = kill.cancelled() => false,
        };
        if !sent {
            kill.cancel();
            break;
        }
        flow.last_write_ms.store(clock_ms(), Ordering::Relaxed);
        if flow.waiting.load(Ordering::SeqCst) && !congested(&flow, &out) {
            flow.waiting.store(false, Ordering::SeqCst);
            flow.drained.notify_waiters();
        }
        if closing {
            break;
        }
        if batch.capacity() > crate::gateway::mailbox::KEEP {
            // A burst's batch buffer is not kept by an idle socket.
            batch = VecDeque::new();
        }
    }
    // Nothing queued from now on would be written.
    out.close();
}

/// Most frames written before a flush.
const WRITE_BATCH: usize = 256;
