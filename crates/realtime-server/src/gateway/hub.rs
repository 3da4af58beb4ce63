//! The topic hub: `(tenant, private, sub-topic)` → subscribed channels. A fan-out encodes the
//! message at most once per serializer and hands the same bytes to every receiver with a
//! non-blocking send, so a slow receiver never holds up the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, Utf8Bytes};
use dashmap::DashMap;
use realtime_protocol::{events, Frame, Outbound, Vsn};

use crate::gateway::outbound::SessionLink;

/// A topic namespace: public and private streams of the same sub-topic are distinct.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicKey {
    /// Tenant external id.
    pub tenant: Arc<str>,
    /// Private channel namespace.
    pub private: bool,
    /// Sub-topic (`room1` for `realtime:room1`).
    pub sub: Arc<str>,
}

impl TopicKey {
    /// The topic every receiver of this namespace joined (`realtime:<sub>`).
    pub fn topic(&self) -> String {
        format!("{}{}", events::TOPIC_PREFIX, self.sub)
    }
}

/// Per-channel permissions the hub consults (private channels; public ones are all true).
#[derive(Debug)]
pub struct ChannelPerms {
    /// Receives broadcasts.
    pub broadcast_read: AtomicBool,
    /// Receives presence diffs.
    pub presence_read: AtomicBool,
    /// Ids of database broadcasts this channel already got by replay.
    pub replayed: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl ChannelPerms {
    /// A private channel's read permissions.
    pub fn from_policies(p: &crate::gateway::authorization::Policies) -> ChannelPerms {
        ChannelPerms {
            broadcast_read: AtomicBool::new(p.broadcast_read == Some(true)),
            presence_read: AtomicBool::new(p.presence_read == Some(true)),
            replayed: Default::default(),
        }
    }

    /// Updates the read permissions after a new check.
    pub fn set(&self, p: &crate::gateway::authorization::Policies) {
        self.broadcast_read
            .store(p.broadcast_read == Some(true), Ordering::Relaxed);
        self.presence_read
            .store(p.presence_read == Some(true), Ordering::Relaxed);
    }

    /// Everything allowed (public channels).
    pub fn open() -> ChannelPerms {
        ChannelPerms {
            broadcast_read: AtomicBool::new(true),
            presence_read: AtomicBool::new(true),
            replayed: Default::default(),
        }
    }
}

/// A channel subscribed to a topic.
#[derive(Clone)]
pub struct Subscriber {
    /// The channel's id (unique in the process).
    pub channel_id: u64,
    /// Its socket.
    pub session: Arc<SessionLink>,
    /// Its permissions.
    pub perms: Arc<ChannelPerms>,
}

/// What a fan-out carries, deciding which permission a receiver needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Broadcasts (need broadcast read).
    Broadcast,
    /// Presence diffs (need presence read).
    Presence,
}

/// Told when a topic gets its first subscriber on this node and when it loses its last (the
/// cluster listens on the topic's channel in between). Called under the topic's lock, so the
/// calls of one topic arrive in order.
pub trait TopicWatcher: Send + Sync {
    /// The topic has its first subscriber.
    fn first(&self, key: &TopicKey);
    /// The topic's last subscriber left.
    fn last(&self, key: &TopicKey);
}

/// Topic → subscribers.
#[derive(Default)]
pub struct Hub {
    topics: DashMap<TopicKey, Vec<Subscriber>>,
    watcher: std::sync::OnceLock<Arc<dyn TopicWatcher>>,
}

/// Turns an encoded frame into a WebSocket message (text frames are checked as UTF-8 once).
pub fn to_ws(frame: Frame) -> Option<WsMessage> {
    match frame {
        Frame::Text(b) => Utf8Bytes::try_from(b).ok().map(WsMessage::Text),
        Frame::Binary(b) => Some(WsMessage::Binary(b)),
    }
}

/// Encodes one message for one serializer.
pub fn encode_ws(vsn: Vsn, msg: &Outbound) -> Option<WsMessage> {
    realtime_protocol::encode(vsn, msg).and_then(to_ws)
}

/// Lazily encodes a message once per serializer.
pub struct EncodeOnce<'a> {
    msg: &'a Outbound,
    v1: Option<Option<WsMessage>>,
    v2: Option<Option<WsMessage>>,
}

impl<'a> EncodeOnce<'a> {
    /// Wraps a message.
    pub fn new(msg: &'a Outbound) -> EncodeOnce<'a> {
        EncodeOnce {
            msg,
            v1: None,
            v2: None,
        }
    }

    /// The encoded frame for `vsn`, `None` when that serializer does not carry it.
    pub fn get(&mut self, vsn: Vsn) -> Option<WsMessage> {
        let slot = match vsn {
            Vsn::V1 => &mut self.v1,
            Vsn::V2 => &mut self.v2,
        };
        slot.get_or_insert_with(|| encode_ws(vsn, self.msg)).clone()
    }
}

impl Hub {
    /// Sets the watcher of first and last subscribers (once).
    pub fn watch(&self, watcher: Arc<dyn TopicWatcher>) {
        let _ = self.watcher.set(watcher);
    }

    /// Adds a channel to a topic.
    pub fn subscribe(&self, key: TopicKey, sub: Subscriber) {
        let mut subs = self.topics.entry(key).or_default();
        subs.push(sub);
        if subs.len() == 1 {
            if let Some(w) = self.watcher.get() {
                w.first(subs.key());
            }
        }
    }

    /// Removes a channel from a topic.
    pub fn unsubscribe(&self, key: &TopicKey, channel_id: u64) {
        let empty = match self.topics.get_mut(key) {
            Some(mut subs) => {
                let before = subs.len();
                subs.retain(|s| s.channel_id != channel_id);
                if before > 0 && subs.is_empty() {
                    if let Some(w) = self.watcher.get() {
                        w.last(key);
                    }
                }
                subs.is_empty()
            }
            None => false,
        };
        if empty {
            self.topics.remove_if(key, |_, subs| subs.is_empty());
        }
    }

    /// Number of channels subscribed to a topic.
    pub fn subscriber_count(&self, key: &TopicKey) -> usize {
        self.topics.get(key).map(|s| s.len()).unwrap_or(0)
    }

    /// Delivers `msg` to every subscriber of `key` allowed to receive `kind`, except
    /// `exclude`. Returns the receivers that were handed the frame.
    pub fn fan_out(
        &self,
        key: &TopicKey,
        msg: &Outbound,
        kind: Kind,
        exclude: Option<u64>,
    ) -> Vec<Subscriber> {
        self.fan_out_where(key, msg, kind, |s| Some(s.channel_id) != exclude)
    }

    /// Like [`Hub::fan_out`], to the subscribers `keep` accepts.
    pub fn fan_out_where(
        &self,
        key: &TopicKey,
        msg: &Outbound,
        kind: Kind,
        keep: impl Fn(&Subscriber) -> bool,
    ) -> Vec<Subscriber> {
        let Some(subs) = self.topics.get(key) else {
            return Vec::new();
        };
        let mut enc = EncodeOnce::new(msg);
        let mut delivered = Vec::new();
        for s in subs.iter() {
            if !keep(s) {
                continue;
            }
            let allowed = match kind {
                Kind::Broadcast => s.perms.broadcast_read.load(Ordering::Relaxed),
                Kind::Presence => s.perms.presence_read.load(Ordering::Relaxed),
            };
            if !allowed {
                continue;
            }
            let Some(frame) = enc.get(s.session.vsn) else {
                continue;
            };
            if s.session.push(frame) {
                delivered.push(s.clone());
            }
        }
        delivered
    }
}
