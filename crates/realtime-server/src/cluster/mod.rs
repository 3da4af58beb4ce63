//! Several nodes as one server (`REDIS_URL`). Without it none of this runs and the server
//! never touches Redis.
//!
//! A topic's messages are delivered to this node's sockets first, directly, then published
//! once on the topic's Redis channel; every other node listening there delivers them to its
//! own sockets, encoding each message once per serializer as for a local one. A node listens
//! only on the channels of topics it has subscribers for ([`TopicWatcher`]), and skips what it
//! published itself, so each subscriber gets a message exactly once.
//!
//! Layout:
//! - [`envelope`]: what travels between nodes, in a checked binary form.
//! - [`topic_channel`]: the Redis channel of a topic.
//! - [`inbox`]: messages from other nodes, delivered to this node's sockets.
//! - [`presence`]: presence tracked on every node, and the leaves of a node that died.
//! - [`limits`]: tenant limits counted across nodes (rates and connected users).
//! - [`wal_relay`]: a tenant's changes relayed from the node streaming its slot to the
//!   others, which judge and deliver them for their own subscribers.

pub mod envelope;
pub mod inbox;
pub mod limits;
pub mod presence;
pub mod topic_channel;
pub mod wal_relay;

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use dashmap::DashMap;
use realtime_cluster::{Link, NodeId, RedisTarget};

use crate::gateway::hub::{TopicKey, TopicWatcher};
use crate::gateway::Gateway;
use envelope::{Carried, Envelope};

/// This node's membership of the cluster.
pub struct Cluster {
    link: Arc<Link>,
    node: NodeId,
    /// The topics this node listens to, by channel name.
    watched: DashMap<Bytes, TopicKey>,
    /// The other nodes' load per tenant (limits).
    pub(crate) load: limits::SharedLoad,
}

impl Cluster {
    /// Joins the cluster behind `target` (connecting in the background) and wires the
    /// gateway's hub to it.
    pub fn start(target: RedisTarget, gateway: &Arc<Gateway>) -> Arc<Cluster> {
        let node = NodeId::random();
        let member: Arc<OnceLock<Weak<Cluster>>> = Arc::new(OnceLock::new());
        let inbox = inbox::GatewayInbox::new(Arc::downgrade(gateway), node, member.clone());
        let link = Link::start(target, node, Arc::new(inbox));
        let cluster = Arc::new(Cluster {
            link,
            node,
            watched: DashMap::new(),
            load: limits::SharedLoad::default(),
        });
        let _ = member.set(Arc::downgrade(&cluster));
        gateway.join_cluster(cluster.clone());
        let watcher: Weak<Cluster> = Arc::downgrade(&cluster);
        gateway.hub.watch(Arc::new(ChannelWatcher {
            cluster: watcher,
            gw: Arc::downgrade(gateway),
        }));
        if let Some(cdc) = &gateway.cdc {
            cdc.set_relay(Arc::new(wal_relay::RedisWalRelay::new(
                cluster.link.clone(),
            )));
        }
        tokio::spawn(limits::share(
            Arc::downgrade(&cluster),
            Arc::downgrade(gateway),
        ));
        tokio::spawn(presence::beat(
            Arc::downgrade(&cluster),
            Arc::downgrade(gateway),
        ));
        cluster
    }

    /// Leaves the cluster on a clean stop: the other nodes drop this node's presence within
    /// a couple of seconds rather than when its alive key expires.
    pub async fn leave(&self) {
        self.link.leave().await;
    }

    /// Sends a topic's message to the other nodes (never waits; dropped while Redis is away).
    pub fn publish(&self, key: &TopicKey, carried: Carried, max_events_per_second: u64) {
        self.send(key, carried, max_events_per_second, Vec::new());
    }

    /// Publishes an envelope on the topic's channel, with hash writes applied just before it.
    fn send(
        &self,
        key: &TopicKey,
        carried: Carried,
        max_events_per_second: u64,
        writes: Vec<realtime_cluster::HashWrite>,
    ) {
        let envelope = Envelope {
            origin: self.node,
            key: key.clone(),
            max_events_per_second,
            carried,
        };
        let Some(wire) = envelope.encode() else {
            return;
        };
        self.link
            .publish_with(topic_channel::name(self.link.db(), key), wire, writes);
    }
}

/// Listens on a topic's channel while this node has subscribers for it.
struct ChannelWatcher {
    cluster: Weak<Cluster>,
    gw: Weak<Gateway>,
}

impl TopicWatcher for ChannelWatcher {
    fn first(&self, key: &TopicKey) {
        if let Some(c) = self.cluster.upgrade() {
            let channel = topic_channel::name(c.link.db(), key);
            c.watched.insert(channel.clone(), key.clone());
            c.link.listen(channel);
        }
    }

    fn last(&self, key: &TopicKey) {
        if let Some(c) = self.cluster.upgrade() {
            let channel = topic_channel::name(c.link.db(), key);
            c.watched.remove(&channel);
            c.link.unlisten(&channel);
        }
        if let Some(gw) = self.gw.upgrade() {
            gw.presence.remote.forget(key);
        }
    }
}
