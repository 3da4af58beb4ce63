//! Presence across nodes. Each node keeps its own tracked metas (the gateway's presence store)
//! and, for the topics it has subscribers for, the metas of the others
//! ([`crate::gateway::presence_remote`]).
//!
//! - A diff is published on the topic's channel, preceded by the same change to the topic's
//!   Redis hash (`phx_ref` → meta, one field per meta, named by the tracking node), so a node
//!   that starts listening reads the hash once Redis confirmed it listens, and misses nothing.
//! - Each node keeps a key of its own alive (`SET … PX`, renewed every second by the link). A node
//!   whose key expired is gone: the others drop its metas, send the leave diffs to their
//!   subscribers, and remove its fields from the hashes. Gone nodes are noticed within
//!   [`realtime_cluster::state::ALIVE_FOR`] plus one beat.
//! - After a Redis outage each node writes its own metas again (Redis may have restarted
//!   empty) and re-reads every topic it listens to; what changed meanwhile reaches its
//!   subscribers as one diff per topic.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use realtime_cluster::{HashWrite, NodeId};
use realtime_protocol::{events, reply, Outbound};
use serde_json::{json, Value};

use super::Cluster;
use crate::gateway::hub::{Kind, TopicKey};
use crate::gateway::presence::{phx_ref, side_metas};
use crate::gateway::presence_remote::RemoteEntry;
use crate::gateway::Gateway;

/// How often a node looks for gone nodes (its own alive key is renewed by the link).
pub const BEAT_EVERY: Duration = Duration::from_secs(2);

/// The hash of a topic's metas: `realtime:<db>:p:<private>:<tenant length>:<tenant>:<sub>`
/// (the `p` keeps it apart from every channel name).
pub fn hash_key(db: i64, key: &TopicKey) -> Bytes {
    super::topic_channel::named(db, "p:", key)
}

/// A meta's field in the topic's hash: `<node>:<phx_ref>`.
fn field(node: NodeId, phx_ref: &str) -> Bytes {
    realtime_cluster::state::node_field(node, phx_ref)
}

impl Cluster {
    /// Publishes a diff of this node's metas and writes it to the topic's hash first.
    pub fn presence_diff(&self, key: &TopicKey, diff: &Value) {
        let db = self.link.db();
        let hash = hash_key(db, key);
        let mut writes = Vec::new();
        for (_, meta) in side_metas(diff, "leaves") {
            if let Some(r) = phx_ref(meta) {
                writes.push(HashWrite::Delete {
                    key: hash.clone(),
                    field: field(self.node, r),
                });
            }
        }
        for (pkey, meta) in side_metas(diff, "joins") {
            if let Some(r) = phx_ref(meta) {
                writes.push(HashWrite::Set {
                    key: hash.clone(),
                    field: field(self.node, r),
                    value: Bytes::from(json!({"key": pkey, "meta": meta}).to_string()),
                });
            }
        }
        self.send(
            key,
            super::envelope::Carried::PresenceDiff(diff.clone()),
            0,
            writes,
        );
    }
}

/// Hands a diff to this node's subscribers of the topic.
pub(crate) fn deliver_diff(gw: &Gateway, key: &TopicKey, diff: Value) {
    let msg = Outbound::Message(reply::push(None, key.topic(), events::PRESENCE_DIFF, diff));
    let n = gw.hub.fan_out(key, &msg, Kind::Presence, None).len();
    gw.limits.rates(&key.tenant).presence.add(n as u64);
}

/// Reads a topic's hash after Redis confirmed this node listens on it, keeping the metas of
/// nodes still alive and removing those of gone ones.
pub(crate) async fn load_topic(cluster: &Cluster, gw: &Gateway, key: TopicKey) {
    let hash = hash_key(cluster.link.db(), &key);
    let Some(raw) = cluster.link.hash_all(&hash).await else {
        return;
    };
    let mut entries = HashMap::new();
    let mut by_node: HashMap<NodeId, Vec<String>> = HashMap::new();
    for (f, v) in raw {
        let Some((node_hex, phx_ref)) = f.split_once(':') else {
            continue;
        };
        let Some(node) = NodeId::from_hex(node_hex) else {
            continue;
        };
        if node == cluster.node {
            continue;
        }
        by_node.entry(node).or_default().push(f.clone());
        let Ok(parsed) = serde_json::from_str::<Value>(&v) else {
            continue;
        };
        let (Some(pkey), Some(meta)) = (
            parsed.get("key").and_then(Value::as_str),
            parsed.get("meta").and_then(Value::as_object),
        ) else {
            continue;
        };
        entries.insert(
            phx_ref.to_string(),
            RemoteEntry {
                node,
                pkey: pkey.to_string(),
                meta: meta.clone(),
            },
        );
    }
    let others: Vec<NodeId> = by_node.keys().copied().collect();
    let gone = cluster.link.gone(&others).await;
    if !gone.is_empty() {
        entries.retain(|_, e| !gone.contains(&e.node));
        let stale: Vec<HashWrite> = gone
            .iter()
            .flat_map(|n| by_node.remove(n).unwrap_or_default())
            .map(|f| HashWrite::Delete {
                key: hash.clone(),
                field: Bytes::from(f),
            })
            .collect();
        cluster.link.hash_write(&stale).await;
    }
    // The topic may have lost its last subscriber while Redis answered.
    if gw.hub.subscriber_count(&key) == 0 {
        gw.presence.remote.forget(&key);
        return;
    }
    if let Some(diff) = gw.presence.remote.load(&key, entries) {
        deliver_diff(gw, &key, diff);
    }
}

/// Drops the metas of gone nodes, every [`BEAT_EVERY`].
pub(crate) async fn beat(cluster: Weak<Cluster>, gw: Weak<Gateway>) {
    let mut tick = tokio::time::interval(BEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(cluster), Some(gw)) = (cluster.upgrade(), gw.upgrade()) else {
            return;
        };
        if !cluster.link.is_up() {
            continue;
        }
        let db = cluster.link.db();
        let known: Vec<NodeId> = gw.presence.remote.nodes().into_iter().collect();
        for node in cluster.link.gone(&known).await {
            tracing::info!(node = %node, "a node stopped beating; its presence leaves");
            let mut stale = Vec::new();
            for (key, diff) in gw.presence.remote.drop_node(node) {
                for (_, meta) in side_metas(&diff, "leaves") {
                    if let Some(r) = phx_ref(meta) {
                        stale.push(HashWrite::Delete {
                            key: hash_key(db, &key),
                            field: field(node, r),
                        });
                    }
                }
                deliver_diff(&gw, &key, diff);
            }
            cluster.link.hash_write(&stale).await;
        }
    }
}

/// Writes every meta this node tracks to its topic's hash (after Redis came back).
pub(crate) async fn rewrite_own(cluster: &Cluster, gw: &Gateway) {
    let db = cluster.link.db();
    let writes: Vec<HashWrite> = gw
        .presence
        .local_metas()
        .into_iter()
        .filter_map(|(key, pkey, meta)| {
            let r = meta.get("phx_ref").and_then(Value::as_str)?.to_string();
            Some(HashWrite::Set {
                key: hash_key(db, &key),
                field: field(cluster.node, &r),
                value: Bytes::from(json!({"key": pkey, "meta": Value::Object(meta)}).to_string()),
            })
        })
        .collect();
    cluster.link.hash_write(&writes).await;
}
