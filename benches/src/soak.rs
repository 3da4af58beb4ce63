//! The clients of the `soak` bench: one task per socket that behaves like a healthy
//! realtime-js client (joins with presence, tracks, heartbeats every 25 s, reads everything,
//! reconnects when the server closes it) and carries out the driver's commands.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use realtime_protocol::binary;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Vsn, Ws};
use crate::histogram::Histogram;
use crate::BenchError;

/// realtime-js's heartbeat interval.
pub const HEARTBEAT: Duration = Duration::from_secs(25);
/// Wait before reconnecting a socket the server closed (realtime-js's first backoff step).
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Per-socket read buffer: small, so that 10 000 client sockets stay cheap.
const READ_BUFFER: usize = 4 * 1024;
/// Error messages printed as they happen; later ones are only counted.
const PRINTED_ERRORS: u64 = 20;
/// The broadcast event the bench sends and counts.
pub const EVENT: &str = "soak";

/// What the driver asks a socket to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Send one broadcast on its topic, stamped with the send time.
    Publish,
    /// Track a new presence payload.
    Track,
    /// Leave the channel and join it again (then track).
    Rejoin,
    /// Close the socket, open a new one, join and track.
    Reconnect,
}

/// Counters every socket adds to.
#[derive(Default)]
pub struct Tally {
    /// Broadcasts received.
    pub deliveries: AtomicU64,
    /// Broadcasts sent.
    pub sent: AtomicU64,
    /// Receivers joined to a broadcast's topic when it was sent, minus the sender.
    pub expected: AtomicU64,
    /// `Publish` commands that found the socket between channels.
    pub publish_skipped: AtomicU64,
    /// `presence_state` and `presence_diff` frames received.
    pub presence: AtomicU64,
    /// Tracks sent.
    pub tracks: AtomicU64,
    /// Track replies with status ok.
    pub tracks_ok: AtomicU64,
    /// Leave-and-rejoin cycles completed (join ok).
    pub rejoins: AtomicU64,
    /// Disconnect-and-reconnect cycles completed (join ok).
    pub reconnects: AtomicU64,
    /// Sockets the server closed (or that broke) while the bench still used them.
    pub closed: AtomicU64,
    /// Everything that went wrong, see [`Shared::error`].
    pub errors: AtomicU64,
    /// Sockets joined right now.
    pub joined: AtomicI64,
}

/// State shared by every socket task and the driver.
pub struct Shared {
    /// Zero of every timestamp carried in a broadcast.
    pub epoch: Instant,
    /// The server.
    pub addr: SocketAddr,
    /// The `apikey` of every socket.
    pub token: String,
    /// Number of topics; socket `i` is on topic `i % topics`.
    pub topics: usize,
    /// Number of sockets.
    pub sockets: usize,
    /// The counters.
    pub tally: Tally,
    /// Broadcast latency, send → receive, in µs.
    pub latency: Histogram,
    /// Sockets joined per topic right now.
    pub members: Vec<AtomicI64>,
    /// Bounds concurrent connects (and joins awaiting their reply).
    pub connecting: Arc<Semaphore>,
    errors_by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl Shared {
    /// Shared state for `sockets` sockets over `topics` topics.
    pub fn new(
        addr: SocketAddr,
        token: String,
        sockets: usize,
        topics: usize,
        connect_concurrency: usize,
    ) -> Shared {
        Shared {
            epoch: Instant::now(),
            addr,
            token,
            topics,
            sockets,
            tally: Tally::default(),
            latency: Histogram::new(),
            members: (0..topics).map(|_| AtomicI64::new(0)).collect(),
            connecting: Arc::new(Semaphore::new(connect_concurrency.max(1))),
            errors_by_kind: Mutex::new(BTreeMap::new()),
        }
    }

    /// The topic of socket `i`.
    pub fn topic_of(&self, i: usize) -> usize {
        i % self.topics
    }

    /// Counts an error of `kind`; the first few are printed with `detail`.
    pub fn error(&self, kind: &'static str, detail: impl std::fmt::Display) {
        let n = self.tally.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.errors_by_kind.lock() {
            *m.entry(kind).or_default() += 1;
        }
        if n < PRINTED_ERRORS {
            eprintln!(
                "[{:>7.1} s] error: {kind}: {detail}",
                self.epoch.elapsed().as_secs_f64()
            );
        } else if n == PRINTED_ERRORS {
            eprintln!("(further errors are counted, not printed)");
        }
    }

    /// Errors counted so far, by kind.
    pub fn errors_by_kind(&self) -> Vec<(&'static str, u64)> {
        match self.errors_by_kind.lock() {
            Ok(m) => m.iter().map(|(k, v)| (*k, *v)).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// Opens a WebSocket to `url` with a small read buffer, within [`client::CONNECT_TIMEOUT`].
async fn connect(url: &str) -> Result<Ws, BenchError> {
    let req = url.into_client_request()?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let connecting = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
    let (ws, _) = tokio::time::timeout(client::CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| BenchError::Timeout(format!("WebSocket upgrade of {url}")))??;
    Ok(ws)
}

/// Why a join was sent, so its reply can be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinCause {
    First,
    Rejoin,
    Reconnect,
    Recover,
}

/// How the inner loop of a socket ended.
enum Ended {
    Stop,
    Reconnect(JoinCause),
}

/// One socket: its identity and where it stands in its channel.
struct Sock {
    idx: usize,
    vsn: Vsn,
    topic_idx: usize,
    topic: String,
    shared: Arc<Shared>,
    /// Join ref of the channel (joined or being joined).
    join_ref: String,
    joins: u64,
    next_ref: u64,
    /// The join awaiting its reply, and why it was sent.
    pending_join: Option<(String, JoinCause)>,
    joined: bool,
    /// Ref of the heartbeat awaiting its reply.
    hb_pending: Option<String>,
    /// Held from connect until the join reply, so that joins are paced too.
    permit: Option<OwnedSemaphorePermit>,
    tracks: u64,
}

/// Runs socket `idx` until `stop` turns true: connect, join, track, then serve the server's
/// frames, the heartbeat and the driver's commands; a socket the server closes is counted and
/// opened again.
pub async fn run(
    idx: usize,
    shared: Arc<Shared>,
    mut cmds: mpsc::Receiver<Cmd>,
    mut stop: watch::Receiver<bool>,
) {
    let vsn = if idx.is_multiple_of(2) {
        Vsn::V2
    } else {
        Vsn::V1
    };
    let topic_idx = shared.topic_of(idx);
    let mut s = Sock {
        idx,
        vsn,
        topic_idx,
        topic: format!("realtime:soak-{topic_idx}"),
        shared: shared.clone(),
        join_ref: String::new(),
        joins: 0,
        next_ref: 0,
        pending_join: None,
        joined: false,
        hb_pending: None,
        permit: None,
        tracks: 0,
    };
    // The first heartbeats are spread over the interval so they do not come all at once.
    let mut first_beat = HEARTBEAT.mul_f64((idx as f64 / shared.sockets.max(1) as f64).min(1.0));
    let mut cause = JoinCause::First;
    loop {
        s.permit = None;
        let Ok(permit) = shared.connecting.clone().acquire_owned().await else {
            return;
        };
        let url = client::socket_url(shared.addr, &shared.token, vsn);
        let opened = tokio::select! {
            r = connect(&url) => r,
            _ = stop.changed() => return,
        };
        let ws = match opened {
            Ok(ws) => ws,
            Err(e) => {
                drop(permit);
                shared.error("connect failed", format!("socket {idx}: {e}"));
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_DELAY) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        s.permit = Some(permit);
        s.hb_pending = None;
        let beat_at = tokio::time::Instant::now() + first_beat.max(Duration::from_millis(1));
        first_beat = HEARTBEAT;
        match s.serve(ws, cause, beat_at, &mut cmds, &mut stop).await {
            Ended::Stop => return,
            Ended::Reconnect(why) => {
                cause = why;
                if why == JoinCause::Recover {
                    tokio::select! {
                        _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}

impl Sock {
    fn next_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    fn push(&self, msg_ref: Option<&str>, event: &str, payload: Value) -> Message {
        client::push_frame(
            self.vsn,
            Some(&self.join_ref),
            msg_ref,
            &self.topic,
            event,
            payload,
        )
    }

    /// Leaves the joined state (the server's channel is gone or going).
    fn unjoin(&mut self) {
        if self.joined {
            self.joined = false;
            self.shared.members[self.topic_idx].fetch_sub(1, Ordering::Relaxed);
            self.shared.tally.joined.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn join_frame(&mut self, cause: JoinCause) -> Message {
        self.joins += 1;
        self.join_ref = format!("j{}", self.joins);
        self.pending_join = Some((self.join_ref.clone(), cause));
        let payload = json!({"config": {
            "broadcast": {"ack": false, "self": false},
            "presence": {"enabled": true, "key": self.idx.to_string()},
            "postgres_changes": [],
            "private": false,
        }});
        let r = self.join_ref.clone();
        self.push(Some(&r), "phx_join", payload)
    }

    fn track_frame(&mut self) -> Message {
        self.tracks += 1;
        let r = format!("t{}", self.next_ref());
        let payload = json!({
            "type": "presence",
            "event": "track",
            "payload": {"socket": self.idx, "n": self.tracks, "status": "online"},
        });
        self.push(Some(&r), "presence", payload)
    }

    fn broadcast_frame(&mut self) -> Result<Message, BenchError> {
        let r = self.next_ref();
        let payload = json!({"t": self.shared.now_ns()});
        match self.vsn {
            Vsn::V2 => {
                client::user_broadcast_push(&self.join_ref, &r, &self.topic, EVENT, &payload)
            }
            Vsn::V1 => Ok(self.push(
                Some(&r),
                "broadcast",
                json!({"type": "broadcast", "event": EVENT, "payload": payload}),
            )),
        }
    }

    async fn serve(
        &mut self,
        mut ws: Ws,
        cause: JoinCause,
        beat_at: tokio::time::Instant,
        cmds: &mut mpsc::Receiver<Cmd>,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let shared = self.shared.clone();
        let join = self.join_frame(cause);
        if let Err(e) = ws.send(join).await {
            return self.broken(&mut ws, "send failed", e).await;
        }
        let mut beat = tokio::time::interval_at(beat_at, HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let out: Vec<Message> = tokio::select! {
                _ = stop.changed() => {
                    self.unjoin();
                    let _ = ws.close(None).await;
                    return Ended::Stop;
                }
                m = ws.next() => match m {
                    Some(Ok(msg)) => self.on_frame(msg),
                    Some(Err(e)) => return self.broken(&mut ws, "socket error", e).await,
                    None => return self.broken(&mut ws, "socket ended", "no close frame").await,
                },
                _ = beat.tick() => {
                    if let Some(r) = self.hb_pending.take() {
                        shared.error("heartbeat unanswered", format!("socket {}: ref {r}", self.idx));
                    }
                    let r = format!("h{}", self.next_ref());
                    self.hb_pending = Some(r.clone());
                    vec![client::push_frame(self.vsn, None, Some(&r), "phoenix", "heartbeat", json!({}))]
                }
                c = cmds.recv() => match c {
                    None => {
                        self.unjoin();
                        let _ = ws.close(None).await;
                        return Ended::Stop;
                    }
                    Some(Cmd::Reconnect) if self.joined => {
                        self.unjoin();
                        let _ = ws.close(None).await;
                        return Ended::Reconnect(JoinCause::Reconnect);
                    }
                    Some(c) => self.on_cmd(c),
                },
            };
            if out.is_empty() {
                continue;
            }
            if let Some(closed) = self.closed_by_server(&out) {
                // A close frame from the server was read: reply and count it.
                let _ = ws.close(None).await;
                return closed;
            }
            for m in out {
                if let Err(e) = ws.feed(m).await {
                    return self.broken(&mut ws, "send failed", e).await;
                }
            }
            if let Err(e) = ws.flush().await {
                return self.broken(&mut ws, "send failed", e).await;
            }
        }
    }

    /// A `Close` placeholder returned by [`Sock::on_frame`] means the server closed the socket.
    fn closed_by_server(&mut self, out: &[Message]) -> Option<Ended> {
        if !matches!(out.first(), Some(Message::Close(_))) {
            return None;
        }
        self.unjoin();
        self.shared.tally.closed.fetch_add(1, Ordering::Relaxed);
        self.shared.error(
            "socket closed by the server",
            format!("socket {}: {:?}", self.idx, out.first()),
        );
        Some(Ended::Reconnect(JoinCause::Recover))
    }

    /// The socket broke (read or write error, or end of stream): count it and reconnect.
    async fn broken(
        &mut self,
        ws: &mut Ws,
        kind: &'static str,
        e: impl std::fmt::Display,
    ) -> Ended {
        self.unjoin();
        self.shared.tally.closed.fetch_add(1, Ordering::Relaxed);
        self.shared.error(kind, format!("socket {}: {e}", self.idx));
        let _ = ws.close(None).await;
        Ended::Reconnect(JoinCause::Recover)
    }

    /// Frames to send for a driver command.
    fn on_cmd(&mut self, c: Cmd) -> Vec<Message> {
        let shared = self.shared.clone();
        let tally = &shared.tally;
        if !self.joined {
            if c == Cmd::Publish {
                tally.publish_skipped.fetch_add(1, Ordering::Relaxed);
            }
            return Vec::new();
        }
        match c {
            Cmd::Publish => {
                let receivers = self.shared.members[self.topic_idx].load(Ordering::Relaxed) - 1;
                match self.broadcast_frame() {
                    Ok(m) => {
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        tally
                            .expected
                            .fetch_add(receivers.max(0) as u64, Ordering::Relaxed);
                        vec![m]
                    }
                    Err(e) => {
                        self.shared.error("broadcast frame", e);
                        Vec::new()
                    }
                }
            }
            Cmd::Track => {
                tally.tracks.fetch_add(1, Ordering::Relaxed);
                vec![self.track_frame()]
            }
            Cmd::Rejoin => {
                let r = format!("l{}", self.next_ref());
                let leave = self.push(Some(&r), "phx_leave", json!({}));
                self.unjoin();
                vec![leave, self.join_frame(JoinCause::Rejoin)]
            }
            // Handled by the caller, which owns the socket.
            Cmd::Reconnect => Vec::new(),
        }
    }

    /// Counts a received frame; returns the frames to send in answer (or a lone `Close` when
    /// the server closed the socket).
    fn on_frame(&mut self, msg: Message) -> Vec<Message> {
        let shared = self.shared.clone();
        match msg {
            Message::Binary(b) => {
                if b.first() != Some(&binary::KIND_USER_BROADCAST) {
                    return Vec::new();
                }
                match binary::decode_user_broadcast(&b) {
                    Ok(ub) if ub.event == EVENT => {
                        let t = serde_json::from_slice::<Value>(&ub.payload)
                            .ok()
                            .and_then(|p| p["t"].as_u64());
                        self.delivered(t);
                    }
                    Ok(_) => {}
                    Err(e) => shared.error("undecodable binary frame", format!("{e:?}")),
                }
                Vec::new()
            }
            Message::Text(t) => match serde_json::from_str::<Value>(t.as_str()) {
                Ok(v) => self.on_json(&v),
                Err(e) => {
                    shared.error("frame not JSON", e);
                    Vec::new()
                }
            },
            Message::Close(f) => vec![Message::Close(f)],
            _ => Vec::new(),
        }
    }

    fn delivered(&self, t: Option<u64>) {
        let shared = &self.shared;
        shared.tally.deliveries.fetch_add(1, Ordering::Relaxed);
        match t {
            Some(t) => shared
                .latency
                .record(shared.now_ns().saturating_sub(t) / 1000),
            None => shared.error("broadcast without a timestamp", self.idx),
        }
    }

    fn on_json(&mut self, v: &Value) -> Vec<Message> {
        let shared = self.shared.clone();
        let tally = &shared.tally;
        let payload = client::payload(v);
        match client::event(v) {
            "broadcast" if payload["event"] == EVENT => {
                self.delivered(payload["payload"]["t"].as_u64());
            }
            "presence_state" | "presence_diff" => {
                tally.presence.fetch_add(1, Ordering::Relaxed);
            }
            "phx_reply" => return self.on_reply(v),
            "phx_close" | "phx_error" => {
                let join_ref = if v.is_array() { &v[0] } else { &v["join_ref"] };
                // A close for an earlier join answers our own leave.
                if join_ref.as_str() == Some(self.join_ref.as_str()) {
                    shared.error(
                        "channel closed by the server",
                        format!("socket {}: {v}", self.idx),
                    );
                    self.unjoin();
                    return vec![self.join_frame(JoinCause::Recover)];
                }
            }
            "system" if payload["status"] == "error" => {
                shared.error("system error message", format!("socket {}: {v}", self.idx));
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_reply(&mut self, v: &Value) -> Vec<Message> {
        let shared = self.shared.clone();
        let tally = &shared.tally;
        let ok = client::payload(v)["status"] == "ok";
        let Some(r) = client::msg_ref(v) else {
            return Vec::new();
        };
        if self.hb_pending.as_deref() == Some(r) {
            self.hb_pending = None;
            if !ok {
                shared.error("heartbeat refused", v);
            }
            return Vec::new();
        }
        if let Some((join_ref, cause)) = self.pending_join.clone() {
            if join_ref == r {
                self.pending_join = None;
                self.permit = None;
                if !ok {
                    shared.error("join refused", format!("socket {}: {v}", self.idx));
                    return Vec::new();
                }
                self.joined = true;
                shared.members[self.topic_idx].fetch_add(1, Ordering::Relaxed);
                tally.joined.fetch_add(1, Ordering::Relaxed);
                match cause {
                    JoinCause::Rejoin => {
                        tally.rejoins.fetch_add(1, Ordering::Relaxed);
                    }
                    JoinCause::Reconnect => {
                        tally.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    JoinCause::First | JoinCause::Recover => {}
                }
                tally.tracks.fetch_add(1, Ordering::Relaxed);
                return vec![self.track_frame()];
            }
        }
        if r.starts_with('t') {
            if ok {
                tally.tracks_ok.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.error("track refused", format!("socket {}: {v}", self.idx));
            }
        } else if !ok && !r.starts_with('l') {
            shared.error("push refused", format!("socket {}: {v}", self.idx));
        }
        Vec::new()
    }
}
