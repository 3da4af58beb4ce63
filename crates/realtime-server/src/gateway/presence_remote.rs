//! Presence tracked on other nodes, for the topics this node has subscribers for: each entry
//! under its `phx_ref`, with the node that tracks it. Kept from the diffs those nodes publish
//! and the state they keep in Redis; a node that stops beating loses its entries, and the
//! topic's subscribers here get the leave diff.

use std::collections::{BTreeMap, HashMap, HashSet};

use dashmap::DashMap;
use realtime_cluster::NodeId;
use serde_json::{json, Map, Value};

use crate::gateway::hub::TopicKey;
use crate::gateway::presence::{phx_ref, side_metas};

/// One meta tracked on another node.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEntry {
    /// The tracking node.
    pub node: NodeId,
    /// The presence key.
    pub pkey: String,
    /// The meta, `phx_ref` included.
    pub meta: Map<String, Value>,
}

/// Topic → `phx_ref` → entry.
#[derive(Default)]
pub struct RemotePresence {
    topics: DashMap<TopicKey, HashMap<String, RemoteEntry>>,
}

/// `{"joins": {pkey: {"metas": [...]}}, "leaves": {...}}` from entries.
fn diff_of(joins: &[&RemoteEntry], leaves: &[&RemoteEntry]) -> Value {
    let side = |entries: &[&RemoteEntry]| {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for e in entries {
            out.entry(e.pkey.clone())
                .or_default()
                .push(Value::Object(e.meta.clone()));
        }
        let mut m = Map::new();
        for (k, metas) in out {
            m.insert(k, json!({ "metas": metas }));
        }
        Value::Object(m)
    };
    json!({"joins": side(joins), "leaves": side(leaves)})
}

impl RemotePresence {
    /// Applies a diff `node` published: leaves first (an update leaves its old `phx_ref`),
    /// then joins.
    pub fn apply(&self, node: NodeId, key: &TopicKey, diff: &Value) {
        let mut topic = self.topics.entry(key.clone()).or_default();
        for (_, meta) in side_metas(diff, "leaves") {
            if let Some(r) = phx_ref(meta) {
                topic.remove(r);
            }
        }
        for (pkey, meta) in side_metas(diff, "joins") {
            let (Some(r), Some(m)) = (phx_ref(meta), meta.as_object()) else {
                continue;
            };
            topic.insert(
                r.to_string(),
                RemoteEntry {
                    node,
                    pkey: pkey.to_string(),
                    meta: m.clone(),
                },
            );
        }
        let empty = topic.is_empty();
        drop(topic);
        if empty {
            self.topics.remove_if(key, |_, t| t.is_empty());
        }
    }

    /// Replaces what is known of a topic with what Redis holds (`phx_ref` → entry); returns
    /// the diff this node's subscribers need to catch up, if any.
    pub fn load(&self, key: &TopicKey, entries: HashMap<String, RemoteEntry>) -> Option<Value> {
        let old = self.topics.remove(key).map(|(_, t)| t).unwrap_or_default();
        let joins: Vec<&RemoteEntry> = entries
            .iter()
            .filter(|(r, _)| !old.contains_key(*r))
            .map(|(_, e)| e)
            .collect();
        let leaves: Vec<&RemoteEntry> = old
            .iter()
            .filter(|(r, _)| !entries.contains_key(*r))
            .map(|(_, e)| e)
            .collect();
        let diff = (!joins.is_empty() || !leaves.is_empty()).then(|| diff_of(&joins, &leaves));
        if !entries.is_empty() {
            self.topics.insert(key.clone(), entries);
        }
        diff
    }

    /// Forgets every entry of `node`; the leave diff of each topic it had entries in.
    pub fn drop_node(&self, node: NodeId) -> Vec<(TopicKey, Value)> {
        let mut out = Vec::new();
        for mut topic in self.topics.iter_mut() {
            let gone: Vec<String> = topic
                .iter()
                .filter(|(_, e)| e.node == node)
                .map(|(r, _)| r.clone())
                .collect();
            if gone.is_empty() {
                continue;
            }
            let removed: Vec<RemoteEntry> = gone.iter().filter_map(|r| topic.remove(r)).collect();
            let refs: Vec<&RemoteEntry> = removed.iter().collect();
            out.push((topic.key().clone(), diff_of(&[], &refs)));
        }
        self.topics.retain(|_, t| !t.is_empty());
        out
    }

    /// Forgets a topic this node no longer has subscribers for.
    pub fn forget(&self, key: &TopicKey) {
        self.topics.remove(key);
    }

    /// The nodes with entries here.
    pub fn nodes(&self) -> HashSet<NodeId> {
        self.topics
            .iter()
            .flat_map(|t| t.values().map(|e| e.node).collect::<Vec<_>>())
            .collect()
    }

    /// Adds the topic's remote metas to a `presence_state` payload.
    pub fn add_to_state(&self, key: &TopicKey, state: &mut Map<String, Value>) {
        let Some(topic) = self.topics.get(key) else {
            return;
        };
        let mut sorted: Vec<&RemoteEntry> = topic.values().collect();
        sorted.sort_by(|a, b| (&a.pkey, phx_ref_of(a)).cmp(&(&b.pkey, phx_ref_of(b))));
        for e in sorted {
            let slot = state
                .entry(e.pkey.clone())
                .or_insert_with(|| json!({"metas": []}));
            if let Some(list) = slot.get_mut("metas").and_then(Value::as_array_mut) {
                list.push(Value::Object(e.meta.clone()));
            }
        }
    }
}

fn phx_ref_of(e: &RemoteEntry) -> &str {
    e.meta.get("phx_ref").and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key() -> TopicKey {
        TopicKey {
            tenant: Arc::from("t"),
            private: false,
            sub: Arc::from("room"),
        }
    }

    fn join(pkey: &str, r: &str) -> Value {
        json!({"joins": {pkey: {"metas": [{"phx_ref": r, "name": pkey}]}}, "leaves": {}})
    }

    #[test]
    fn diffs_update_and_node_loss_leaves() {
        let store = RemotePresence::default();
        let (a, b) = (NodeId([1; 16]), NodeId([2; 16]));
        store.apply(a, &key(), &join("alice", "r1"));
        store.apply(b, &key(), &join("bob", "r2"));
        // An update: old ref leaves, new one joins.
        store.apply(
            a,
            &key(),
            &json!({"joins": {"alice": {"metas": [{"phx_ref": "r3", "phx_ref_prev": "r1"}]}},
                    "leaves": {"alice": {"metas": [{"phx_ref": "r1"}]}}}),
        );
        let mut state = Map::new();
        store.add_to_state(&key(), &mut state);
        assert_eq!(state["alice"]["metas"].as_array().unwrap().len(), 1);
        assert_eq!(state["alice"]["metas"][0]["phx_ref"], "r3");
        let left = store.drop_node(a);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1["leaves"]["alice"]["metas"][0]["phx_ref"], "r3");
        assert_eq!(store.nodes(), HashSet::from([b]));
    }

    #[test]
    fn a_load_answers_with_what_changed() {
        let store = RemotePresence::default();
        let a = NodeId([1; 16]);
        store.apply(a, &key(), &join("alice", "r1"));
        let entry = |pkey: &str, r: &str| RemoteEntry {
            node: a,
            pkey: pkey.into(),
            meta: json!({"phx_ref": r}).as_object().unwrap().clone(),
        };
        let loaded = HashMap::from([("r2".to_string(), entry("bob", "r2"))]);
        let diff = store.load(&key(), loaded).unwrap();
        assert_eq!(diff["joins"]["bob"]["metas"][0]["phx_ref"], "r2");
        assert_eq!(diff["leaves"]["alice"]["metas"][0]["phx_ref"], "r1");
        let again = HashMap::from([("r2".to_string(), entry("bob", "r2"))]);
        assert_eq!(store.load(&key(), again), None);
    }
}
