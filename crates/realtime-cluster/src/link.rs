//! The connections to Redis: one for commands and publishing, one that receives the messages
//! of the channels this node listens to. Both are opened at start and re-established when
//! lost; until then delivery stays on this node, and the outage is logged once, when it starts
//! and when it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use crate::interest::Interest;
use crate::node::NodeId;
use crate::publisher::{HashWrite, Publisher};
use crate::target::RedisTarget;

/// How often the connections are checked, and how long a start attempt waits between tries.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// Longest wait for one Redis answer before the connection counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages received and not yet handed to the inbox; beyond this they are dropped (the
/// receiving node is not keeping up, and Redis itself would cut it off soon after).
const INBOUND_QUEUE: usize = 65_536;

/// Where received messages go (implemented by the server).
pub trait Inbox: Send + Sync + 'static {
    /// A message published by a node on a channel this node listens to.
    fn message(&self, channel: &[u8], payload: Bytes);

    /// Redis is reachable again after an outage (the channels are listened to again).
    fn reconnected(&self) {}

    /// Redis confirmed that this node listens on `channel`: every message published from now
    /// on arrives, so state kept in Redis for it can be read without missing an update.
    fn listening(&self, _channel: &[u8]) {}
}

#[derive(Clone)]
struct Conns {
    commands: ConnectionManager,
    listener: ConnectionManager,
}

/// This node's link to the others.
pub struct Link {
    target: RedisTarget,
    node: NodeId,
    up: AtomicBool,
    /// When Redis last became reachable.
    up_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// The node is stopping: its alive key is no longer renewed.
    pub(crate) leaving: AtomicBool,
    conns: RwLock<Option<Conns>>,
    pub(crate) publisher: Publisher,
    pub(crate) interest: Interest,
}

impl Link {
    /// Starts connecting in the background and returns at once: a node serves its own sockets
    /// whether or not Redis answers.
    pub fn start(target: RedisTarget, node: NodeId, inbox: Arc<dyn Inbox>) -> Arc<Link> {
        let (publisher, published) = Publisher::new();
        let (interest, changes) = Interest::new();
        let link = Arc::new(Link {
            target,
            node,
            up: AtomicBool::new(false),
            up_since: std::sync::Mutex::new(None),
            leaving: AtomicBool::new(false),
            conns: RwLock::new(None),
            publisher,
            interest,
        });
        let (pushed_tx, pushed_rx) = mpsc::channel(INBOUND_QUEUE);
        let inbox_for_interest = inbox.clone();
        tokio::spawn(supervise(Arc::downgrade(&link), inbox.clone(), pushed_tx));
        tokio::spawn(dispatch(Arc::downgrade(&link), inbox, pushed_rx));
        tokio::spawn(crate::publisher::run(Arc::downgrade(&link), published));
        tokio::spawn(crate::interest::run(
            Arc::downgrade(&link),
            changes,
            inbox_for_interest,
        ));
        link
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Whether Redis answered the last check.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// How long Redis has been reachable without interruption (zero while it is not).
    pub fn up_for(&self) -> Duration {
        if !self.is_up() {
            return Duration::ZERO;
        }
        self.up_since
            .lock()
            .ok()
            .and_then(|s| s.map(|t| t.elapsed()))
            .unwrap_or(Duration::ZERO)
    }

    fn came_up(&self) {
        if let Ok(mut s) = self.up_since.lock() {
            *s = Some(std::time::Instant::now());
        }
    }

    /// The database number of `REDIS_URL`.
    pub fn db(&self) -> i64 {
        self.target.db()
    }

    pub(crate) fn client(&self) -> redis::RedisResult<redis::Client> {
        self.target.client()
    }

    /// The command connection, while Redis is reachable.
    pub fn commands(&self) -> Option<ConnectionManager> {
        if !self.is_up() {
            return None;
        }
        self.conns.read().ok()?.as_ref().map(|c| c.commands.clone())
    }

    pub(crate) fn listener(&self) -> Option<ConnectionManager> {
        if !self.is_up() {
            return None;
        }
        self.conns.read().ok()?.as_ref().map(|c| c.listener.clone())
    }

    /// Queues `payload` for every node listening on `channel`, with hash writes applied just
    /// before it; `false` when it was dropped (Redis away, or the queue full).
    pub fn publish_with(&self, channel: Bytes, payload: Bytes, writes: Vec<HashWrite>) -> bool {
        self.is_up() && self.publisher.queue(channel, payload, writes)
    }

    /// One more local reason to listen on `channel` (the first one subscribes in Redis).
    pub fn listen(&self, channel: Bytes) {
        self.interest.add(channel);
    }

    /// One local reason fewer to listen on `channel` (the last one unsubscribes).
    pub fn unlisten(&self, channel: &Bytes) {
        self.interest.remove(channel);
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::error!(redis = %self.target.shown(), error = %why, "lost Redis; delivering to this node's sockets only until it is back");
        }
    }
}

async fn connect(
    target: &RedisTarget,
    pushed: mpsc::Sender<PushInfo>,
) -> redis::RedisResult<Conns> {
    let base = || {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(HEALTH_EVERY)
    };
    let client = target.client()?;
    let commands = ConnectionManager::new_with_config(client.clone(), base()).await?;
    // A full queue drops the message rather than holding up the connection's reader.
    let sender = move |info: PushInfo| pushed.try_send(info);
    let listener =
        ConnectionManager::new_with_config(client, base().set_push_sender(sender)).await?;
    Ok(Conns { commands, listener })
}

async fn ping(conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    redis::cmd("PING").query_async::<()>(conn).await
}

/// Connects, then checks both connections every second; after an outage re-subscribes every
/// channel this node listens to and tells the inbox.
async fn supervise(link: Weak<Link>, inbox: Arc<dyn Inbox>, pushed: mpsc::Sender<PushInfo>) {
    let mut failing_logged = false;
    loop {
        let Some(l) = link.upgrade() else { return };
        let target = l.target.clone();
        drop(l);
        match connect(&target, pushed.clone()).await {
            Ok(conns) => {
                let Some(l) = link.upgrade() else { return };
                if let Ok(mut slot) = l.conns.write() {
                    *slot = Some(conns);
                }
                l.came_up();
                l.up.store(true, Ordering::Release);
                // Alive before anyone can see this node's state.
                l.renew_alive().await;
                tracing::info!(redis = %target.shown(), node = %l.node, "connected to Redis; this node now delivers across the cluster");
                l.interest.resubscribe_all();
                break;
            }
            Err(e) => {
                if !failing_logged {
                    tracing::error!(redis = %target.shown(), error = %e, "cannot reach Redis; retrying every second, delivering to this node's sockets only meanwhile");
                    failing_logged = true;
                }
                tokio::time::sleep(HEALTH_EVERY).await;
            }
        }
    }
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(l) = link.upgrade() else { return };
        let Some(conns) = l.conns.read().ok().and_then(|c| c.clone()) else {
            return;
        };
        let (mut commands, mut listener) = (conns.commands, conns.listener);
        // The command connection's check renews this node's alive key (until it leaves).
        let renewed = if l.leaving.load(Ordering::Acquire) {
            ping(&mut commands).await
        } else {
            crate::state::renew(&mut commands, l.db(), l.node).await
        };
        let checked = match renewed {
            Ok(()) => ping(&mut listener).await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(()) => {
                if !l.is_up() {
                    l.came_up();
                }
                if !l.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(redis = %l.target.shown(), "Redis is back; delivering across the cluster again");
                    l.interest.resubscribe_all();
                    inbox.reconnected();
                }
            }
            Err(e) => l.mark_down(&e.to_string()),
        }
    }
}

/// Hands received messages to the inbox, in arrival order.
async fn dispatch(link: Weak<Link>, inbox: Arc<dyn Inbox>, mut pushed: mpsc::Receiver<PushInfo>) {
    while let Some(info) = pushed.recv().await {
        match info.kind {
            PushKind::Message => {
                let mut data = info.data.into_iter();
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                else {
                    tracing::debug!("ignored a Redis message of unexpected shape");
                    continue;
                };
                inbox.message(&channel, Bytes::from(payload));
            }
            PushKind::Disconnection => {
                if let Some(l) = link.upgrade() {
                    l.mark_down("connection closed");
                }
            }
            _ => {}
        }
    }
}

/// One connection attempt and a `PING`, for `realtime doctor`: the server's version, or why
/// Redis could not be reached.
pub async fn probe(target: &RedisTarget, timeout: Duration) -> Result<String, String> {
    let attempt = async {
        let client = target.client().map_err(|e| e.to_string())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown version")
            .trim()
            .to_string())
    };
    match tokio::time::timeout(timeout + Duration::from_secs(1), attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}
