//! Presence (PROTOCOL.md §7): the per-topic store of tracked metas, `presence_state` on join,
//! `presence_diff` fan-out, track/untrack with the client window and tenant presence limits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dashmap::DashMap;
use realtime_protocol::reply::{self, Status};
use realtime_protocol::wording::stop;
use realtime_protocol::{events, Message, Outbound};
use serde_json::{json, Map, Value};

use crate::gateway::authorization::Extension;
use crate::gateway::channel::Channel;
use crate::gateway::core::{Core, Cx};
use crate::gateway::effect::{Counter, Effect, Metric};
use crate::gateway::hub::{Kind, TopicKey};
use crate::gateway::Gateway;

struct Entry {
    channel_id: u64,
    /// The tracked meta plus `phx_ref` (and `phx_ref_prev` after an update).
    meta: Map<String, Value>,
}

/// Tracked presences of every topic: key → metas (one per tracking channel).
#[derive(Default)]
pub struct PresenceStore {
    topics: DashMap<TopicKey, BTreeMap<String, Vec<Entry>>>,
    /// Diffs waiting to be fanned out, per topic.
    pending: DashMap<TopicKey, Value>,
    /// Metas tracked on other nodes (cluster mode).
    pub(crate) remote: crate::gateway::presence_remote::RemotePresence,
}

static REF_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh opaque `phx_ref`: 16 URL-safe base64 characters of a timestamp and a counter.
fn new_ref() -> String {
    let micros = chrono::Utc::now().timestamp_micros() as u64;
    let n = REF_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&micros.to_be_bytes());
    bytes[8..].copy_from_slice(&(n as u32).to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn metas(list: Vec<Value>) -> Value {
    json!({ "metas": list })
}

impl PresenceStore {
    /// Tracks (or updates) the channel's meta under `pkey`; returns the diff.
    pub fn track(
        &self,
        key: &TopicKey,
        pkey: &str,
        channel_id: u64,
        meta: &Map<String, Value>,
    ) -> Value {
        let mut topic = self.topics.entry(key.clone()).or_default();
        let entries = topic.entry(pkey.to_string()).or_default();
        let phx_ref = new_ref();
        let mut new_meta = meta.clone();
        new_meta.insert("phx_ref".into(), Value::String(phx_ref));
        let mut leaves = Map::new();
        if let Some(existing) = entries.iter_mut().find(|e| e.channel_id == channel_id) {
            let old = existing.meta.clone();
            if let Some(prev) = old.get("phx_ref") {
                new_meta.insert("phx_ref_prev".into(), prev.clone());
            }
            let mut old_out = old;
            old_out.remove("phx_ref_prev");
            leaves.insert(pkey.to_string(), metas(vec![Value::Object(old_out)]));
            existing.meta = new_meta.clone();
        } else {
            entries.push(Entry {
                channel_id,
                meta: new_meta.clone(),
            });
        }
        let mut joins = Map::new();
        joins.insert(pkey.to_string(), metas(vec![Value::Object(new_meta)]));
        json!({"joins": joins, "leaves": leaves})
    }

    /// Removes the channel's meta under `pkey`; the leave diff when there was one.
    pub fn untrack(&self, key: &TopicKey, pkey: &str, channel_id: u64) -> Option<Value> {
        let mut topic = self.topics.get_mut(key)?;
        let entries = topic.get_mut(pkey)?;
        let pos = entries.iter().position(|e| e.channel_id == channel_id)?;
        let removed = entries.remove(pos);
        if entries.is_empty() {
            topic.remove(pkey);
        }
        let empty = topic.is_empty();
        drop(topic);
        if empty {
            self.topics.remove_if(key, |_, t| t.is_empty());
        }
        let mut leaves = Map::new();
        leaves.insert(pkey.to_string(), metas(vec![Value::Object(removed.meta)]));
        Some(json!({"joins": {}, "leaves": leaves}))
    }

    /// The topic's `presence_state` payload.
    pub fn state(&self, key: &TopicKey) -> Value {
        let mut out = Map::new();
        if let Some(topic) = self.topics.get(key) {
            for (pkey, entries) in topic.iter() {
                let list = entries
                    .iter()
                    .map(|e| Value::Object(e.meta.clone()))
                    .collect();
                out.insert(pkey.clone(), metas(list));
            }
        }
        self.remote.add_to_state(key, &mut out);
        Value::Object(out)
    }

    /// Every meta tracked on this node: (topic, presence key, meta).
    pub fn local_metas(&self) -> Vec<(TopicKey, String, Map<String, Value>)> {
        let mut out = Vec::new();
        for topic in self.topics.iter() {
            for (pkey, entries) in topic.iter() {
                for e in entries {
                    out.push((topic.key().clone(), pkey.clone(), e.meta.clone()));
                }
            }
        }
        out
    }
}

/// Each meta of one side (`"joins"` or `"leaves"`) of a diff, with its presence key.
pub fn side_metas<'a>(diff: &'a Value, side: &str) -> Vec<(&'a str, &'a Value)> {
    let mut out = Vec::new();
    if let Some(entries) = diff.get(side).and_then(Value::as_object) {
        for (pkey, entry) in entries {
            for meta in entry
                .get("metas")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push((pkey.as_str(), meta));
            }
        }
    }
    out
}

/// A meta's `phx_ref`.
pub fn phx_ref(meta: &Value) -> Option<&str> {
    meta.get("phx_ref").and_then(Value::as_str)
}

/// Folds `next` into `acc`: joins accumulate; a leave of a meta that joined within the same
/// batch cancels that join instead of being reported.
pub fn merge_diff(acc: &mut Value, next: Value) {
    for (pkey, meta) in side_metas(&next, "leaves") {
        let r = phx_ref(meta);
        let joined = acc
            .get_mut("joins")
            .and_then(|j| j.get_mut(pkey))
            .and_then(|e| e.get_mut("metas"))
            .and_then(Value::as_array_mut)
            .and_then(|list| {
                let pos = list.iter().position(|m| phx_ref(m) == r)?;
                list.remove(pos);
                Some(list.is_empty())
            });
        match joined {
            Some(now_empty) => {
                if now_empty {
                    if let Some(j) = acc["joins"].as_object_mut() {
                        j.remove(pkey);
                    }
                }
            }
            None => push_meta(acc, "leaves", pkey, meta.clone()),
        }
    }
    for (pkey, meta) in side_metas(&next, "joins") {
        push_meta(acc, "joins", pkey, meta.clone());
    }
}

fn push_meta(acc: &mut Value, side: &str, pkey: &str, meta: Value) {
    if !acc[side].is_object() {
        acc[side] = json!({});
    }
    let entry = &mut acc[side][pkey];
    if !entry.is_object() {
        *entry = json!({"metas": []});
    }
    if let Some(list) = entry["metas"].as_array_mut() {
        list.push(meta);
    }
}

/// Outcome of a presence message that ends the channel.
const CLIENT_RATE: &str = stop::CLIENT_PRESENCE_RATE_LIMIT;
const TRACK_SIZE: &str = stop::TRACK_MESSAGE_SIZE_EXCEEDED;
const PRESENCE_RATE: &str = stop::TOO_MANY_PRESENCE_MESSAGES;

/// Queues a diff for the topic; diffs queued before the flush runs go out as one frame.
pub(crate) fn fan_out_diff(gw: &Arc<Gateway>, key: &TopicKey, diff: Value) {
    let first = {
        let mut pending = gw
            .presence
            .pending
            .entry(key.clone())
            .or_insert(Value::Null);
        let first = pending.is_null();
        if first {
            *pending = diff;
        } else {
            merge_diff(&mut pending, diff);
        }
        first
    };
    if first {
        let gw = gw.clone();
        let key = key.clone();
        tokio::spawn(async move {
            // Let concurrent tracks of this topic join the batch.
            tokio::task::yield_now().await;
            let Some((_, diff)) = gw.presence.pending.remove(&key) else {
                return;
            };
            if let Some(cluster) = gw.cluster() {
                cluster.presence_diff(&key, &diff);
            }
            let msg =
                Outbound::Message(reply::push(None, key.topic(), events::PRESENCE_DIFF, diff));
            let n = gw.hub.fan_out(&key, &msg, Kind::Presence, None).len();
            gw.limits.rates(&key.tenant).presence.add(n as u64);
        });
    }
}

impl Core {
    /// Asks for `presence_state` to be pushed to a channel that just joined with presence on.
    pub(crate) fn send_presence_state(ch: &Channel, cx: &mut Cx<'_>) {
        cx.push(Effect::PresenceState {
            key: ch.key.clone(),
            topic: ch.topic.clone(),
            push_ref: ch.push_ref.clone(),
        });
    }

    pub(crate) fn on_presence(&mut self, m: Message, cx: &mut Cx<'_>) {
        let Some(tenant) = self.fresh_tenant(cx) else {
            return;
        };
        let topic = m.topic.clone();
        let reads = cx.reads;
        let settings = reads.settings();
        let Some(ch) = self.channels.get_mut(&topic) else {
            return;
        };
        let payload = m.payload.as_object();
        let event = payload.and_then(|p| p.get("event"));
        let Some(event) = event else {
            cx.send(ch.reply(m.msg_ref, Status::Ok, json!({})));
            return;
        };
        // Client window: full → the channel stops, whatever the event.
        let max_calls = tenant
            .limits
            .max_client_presence_events_per_window
            .filter(|n| *n > 0)
            .unwrap_or(settings.client_presence_max_calls);
        let window = tenant
            .limits
            .client_presence_window_ms
            .filter(|n| *n > 0)
            .map(std::time::Duration::from_millis)
            .unwrap_or(settings.client_presence_window);
        let now = cx.now.std();
        if let Some((start, _)) = ch.presence_window {
            if now.saturating_duration_since(start) >= window {
                ch.presence_window = None;
            }
        }
        if ch
            .presence_window
            .map(|(_, n)| n >= max_calls)
            .unwrap_or(false)
        {
            self.stop_channel(&topic, CLIENT_RATE, cx);
            return;
        }
        let Some(event) = event.as_str().map(str::to_ascii_lowercase) else {
            cx.send(ch.reply(m.msg_ref, Status::Error, json!({})));
            return;
        };
        match event.as_str() {
            events::PRESENCE_TRACK => {
                let meta = payload
                    .and_then(|p| p.get("payload"))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                // A private channel's write check ran before this frame (`write_check.rs`),
                // which also forgets the answers of a track that fails.
                if !self.may_write(&topic, Extension::Presence) {
                    cx.send(reply_error(&self.channels, &topic, m.msg_ref));
                    return;
                }
                let Some(ch) = self.channels.get_mut(&topic) else {
                    return;
                };
                // Checked after the authorisation, as upstream does.
                let Value::Object(meta) = meta else {
                    cx.send(ch.reply(
                        m.msg_ref,
                        Status::Error,
                        reply::reason(reply::PRESENCE_TRACK_PAYLOAD_MUST_BE_A_MAP),
                    ));
                    return;
                };
                let meta_value = Value::Object(meta.clone());
                if ch.tracked.as_ref() == Some(&meta_value) {
                    count_window(&mut ch.presence_window, now);
                    cx.send(ch.reply(m.msg_ref, Status::Ok, json!({})));
                    return;
                }
                let size = serde_json::to_vec(&meta_value)
                    .map(|v| v.len())
                    .unwrap_or(0);
                if size > tenant.limits.max_payload_bytes() {
                    self.stop_channel(&topic, TRACK_SIZE, cx);
                    return;
                }
                if reads.presence_rate(&self.tenant_id)
                    > tenant.limits.max_presence_events_per_second as f64
                {
                    self.stop_channel(&topic, PRESENCE_RATE, cx);
                    return;
                }
                let Some(ch) = self.channels.get_mut(&topic) else {
                    return;
                };
                cx.push(Effect::Count(Counter::Presence, 1));
                cx.push(Effect::Metric(Metric::PresencePayload(size)));
                ch.presence_on = true;
                ch.tracked = Some(meta_value);
                count_window(&mut ch.presence_window, now);
                cx.push(Effect::Track {
                    key: ch.key.clone(),
                    pkey: ch.presence_key.clone(),
                    channel_id: ch.id,
                    meta,
                });
                cx.send(ch.reply(m.msg_ref, Status::Ok, json!({})));
            }
            events::PRESENCE_UNTRACK => {
                count_window(&mut ch.presence_window, now);
                ch.tracked = None;
                cx.push(Effect::Untrack {
                    key: ch.key.clone(),
                    pkey: ch.presence_key.clone(),
                    channel_id: ch.id,
                });
                cx.send(ch.reply(m.msg_ref, Status::Ok, json!({})));
            }
            _ => {
                cx.send(ch.reply(m.msg_ref, Status::Error, json!({})));
            }
        }
    }

    /// Answers a presence message whose write was denied.
    pub(crate) fn deny_presence(&self, topic: &str, msg_ref: Option<String>, cx: &mut Cx<'_>) {
        cx.send(reply_error(&self.channels, topic, msg_ref));
    }
}

/// `{"status":"error","response":{}}` from the channel on `topic`.
fn reply_error(
    channels: &std::collections::HashMap<String, Box<Channel>>,
    topic: &str,
    msg_ref: Option<String>,
) -> Outbound {
    match channels.get(topic) {
        Some(ch) => ch.reply(msg_ref, Status::Error, json!({})),
        None => Outbound::Message(reply::error_empty(None, msg_ref, topic)),
    }
}

/// Counts one successfully handled presence message in the client window.
fn count_window(window: &mut Option<(Instant, u64)>, now: Instant) {
    match window {
        Some((_, n)) => *n += 1,
        None => *window = Some((now, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn track_update_untrack() {
        let store = PresenceStore::default();
        let key = TopicKey {
            tenant: Arc::from("t"),
            private: false,
            sub: Arc::from("r"),
        };
        let a = json!({"u":"a"}).as_object().cloned().unwrap();
        let d = store.track(&key, "k", 1, &a);
        assert_eq!(d["joins"]["k"]["metas"][0]["u"], "a");
        assert_eq!(d["leaves"], json!({}));
        let r1 = d["joins"]["k"]["metas"][0]["phx_ref"].clone();
        let b = json!({"u":"b"}).as_object().cloned().unwrap();
        let d = store.track(&key, "k", 1, &b);
        assert_eq!(d["joins"]["k"]["metas"][0]["phx_ref_prev"], r1);
        assert_eq!(d["leaves"]["k"]["metas"][0]["u"], "a");
        assert_eq!(store.state(&key)["k"]["metas"].as_array().unwrap().len(), 1);
        let d = store.untrack(&key, "k", 1).unwrap();
        assert_eq!(d["leaves"]["k"]["metas"][0]["u"], "b");
        assert_eq!(store.state(&key), json!({}));
        assert!(store.untrack(&key, "k", 1).is_none());
    }

    #[test]
    fn merging_diffs() {
        let mut acc = json!({"joins":{"a":{"metas":[{"phx_ref":"1"}]}},"leaves":{}});
        merge_diff(
            &mut acc,
            json!({"joins":{"b":{"metas":[{"phx_ref":"2"}]}},"leaves":{}}),
        );
        merge_diff(
            &mut acc,
            json!({"joins":{},"leaves":{"a":{"metas":[{"phx_ref":"1"}]}}}),
        );
        merge_diff(
            &mut acc,
            json!({"joins":{},"leaves":{"c":{"metas":[{"phx_ref":"0"}]}}}),
        );
        assert_eq!(
            acc,
            json!({"joins":{"b":{"metas":[{"phx_ref":"2"}]}},"leaves":{"c":{"metas":[{"phx_ref":"0"}]}}})
        );
    }
}
