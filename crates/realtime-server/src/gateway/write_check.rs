//! A private channel's first broadcast or presence track needs the tenant database's write
//! policies. The check runs off the socket's task: the frame, and every later frame of the same
//! channel, wait in order until the verdict, while the socket keeps answering heartbeats and
//! serving its other channels.

use std::collections::{HashMap, VecDeque};

use realtime_protocol::{events, Inbound};
use serde_json::Value;

use crate::gateway::authorization::{Extension, Policies};
use crate::gateway::core::{topic_of, Core, Cx, TenantNeed};
use crate::gateway::effect::Effect;

/// Frames a socket may have waiting behind checks; later ones are dropped with a log line.
const MAX_PARKED: usize = 1024;

/// Bytes (near enough) a socket may have waiting behind checks.
const MAX_PARKED_BYTES: usize = 4 * 1024 * 1024;

/// A socket's frames waiting behind its channels' checks, by topic, in arrival order, bounded
/// in frames and bytes for the whole socket.
#[derive(Default)]
pub struct Parked {
    /// Each frame with its size, counted once.
    queues: HashMap<String, VecDeque<(usize, Inbound)>>,
    frames: usize,
    bytes: usize,
}

/// About what a waiting frame holds.
fn size_of(inbound: &Inbound) -> usize {
    match inbound {
        Inbound::Message(m) => m.topic.len() + m.event.len() + m.payload.to_string().len(),
        Inbound::UserBroadcast(ub) => {
            ub.topic.len() + ub.event.len() + ub.metadata.len() + ub.payload.len()
        }
    }
}

impl Parked {
    /// Whether frames of `topic` wait.
    pub fn contains(&self, topic: &str) -> bool {
        self.queues.contains_key(topic)
    }

    /// From now on frames of `topic` wait.
    fn start(&mut self, topic: &str) {
        self.queues.entry(topic.to_string()).or_default();
    }

    /// Queues a frame behind its topic's check; false when it had to be dropped.
    fn push(&mut self, topic: &str, inbound: Inbound) -> bool {
        let size = size_of(&inbound);
        if self.frames >= MAX_PARKED || self.bytes + size > MAX_PARKED_BYTES {
            return false;
        }
        let Some(queue) = self.queues.get_mut(topic) else {
            return false;
        };
        queue.push_back((size, inbound));
        self.frames += 1;
        self.bytes += size;
        true
    }

    /// The tenant read handling the frames of `topic` needs: the strongest `of` any of them.
    pub(crate) fn need(&self, topic: &str, of: impl Fn(&Inbound) -> TenantNeed) -> TenantNeed {
        let mut need = TenantNeed::None;
        for (_, inbound) in self.queues.get(topic).into_iter().flatten() {
            match of(inbound) {
                TenantNeed::Fresh => return TenantNeed::Fresh,
                TenantNeed::Refresh => need = TenantNeed::Refresh,
                TenantNeed::None => {}
            }
        }
        need
    }

    /// The frames of `topic`, which no longer wait.
    pub(crate) fn take(&mut self, topic: &str) -> Option<VecDeque<Inbound>> {
        let queue = self.queues.remove(topic)?;
        self.frames -= queue.len();
        self.bytes -= queue.iter().map(|(size, _)| size).sum::<usize>();
        Some(queue.into_iter().map(|(_, inbound)| inbound).collect())
    }
}

/// The tenant database's answer to a write check.
pub struct WriteVerdict {
    /// The channel's topic.
    pub topic: String,
    /// The channel the check was for (a channel joined again since is not this one).
    pub channel_id: u64,
    /// What was checked.
    pub ext: Extension,
    /// The channel's policies with the write (and, for presence, read) answers, or the reason
    /// the check failed.
    pub result: Result<Policies, String>,
}

/// Whether a frame is a presence track (the only presence event that needs a write check).
fn is_track(payload: &Value) -> bool {
    payload
        .get("event")
        .and_then(Value::as_str)
        .is_some_and(|e| e.eq_ignore_ascii_case(events::PRESENCE_TRACK))
}

/// Whether a track's meta is an object (a track with another meta fails after the check).
fn track_meta_is_map(inbound: &Inbound) -> bool {
    match inbound {
        Inbound::Message(m) => m.payload.get("payload").is_none_or(Value::is_object),
        Inbound::UserBroadcast(_) => false,
    }
}

impl Core {
    /// Queues `inbound` behind its channel's running check; hands it back when there is none.
    pub(crate) fn park_behind(&mut self, inbound: Inbound) -> Option<Inbound> {
        let topic = topic_of(&inbound).to_string();
        if !self.parked.contains(&topic) {
            return Some(inbound);
        }
        if !self.parked.push(&topic, inbound) {
            tracing::warn!(tenant = %self.tenant_id, "frame dropped: too many waiting for a policy check");
        }
        None
    }

    /// The write check `inbound` needs before it can be handled, if any.
    pub(crate) fn write_check_for(&self, inbound: &Inbound) -> Option<Extension> {
        let ch = self.channels.get(topic_of(inbound))?;
        if !ch.private {
            return None;
        }
        let ext = match inbound {
            Inbound::UserBroadcast(_) => Extension::Broadcast,
            Inbound::Message(m) if m.event == events::BROADCAST => Extension::Broadcast,
            Inbound::Message(m) if m.event == events::PRESENCE && is_track(&m.payload) => {
                Extension::Presence
            }
            Inbound::Message(_) => return None,
        };
        let known = match ext {
            Extension::Broadcast => ch.policies.broadcast_write,
            Extension::Presence => ch.policies.presence_write,
        };
        known.is_none().then_some(ext)
    }

    /// Parks `inbound` and asks for its channel's write check.
    pub(crate) fn check_write_then(&mut self, inbound: Inbound, ext: Extension, cx: &mut Cx<'_>) {
        let topic = topic_of(&inbound).to_string();
        let (Some(ch), Some(ctx)) = (self.channels.get(&topic), self.auth_context(&topic)) else {
            return;
        };
        let (channel_id, policies) = (ch.id, ch.policies);
        self.parked.start(&topic);
        self.parked.push(&topic, inbound);
        cx.push(Effect::CheckWrite {
            topic,
            channel_id,
            ext,
            policies,
            ctx,
        });
    }

    /// Applies a write check's verdict, then handles the frames that waited for it, in order.
    pub(crate) fn on_write_checked(&mut self, verdict: WriteVerdict, cx: &mut Cx<'_>) {
        let WriteVerdict {
            topic,
            channel_id,
            ext,
            result,
        } = verdict;
        let Some(mut queue) = self.parked.take(&topic) else {
            return;
        };
        let Some(first) = queue.pop_front() else {
            return;
        };
        let same_channel = self.channels.get(&topic).map(|c| c.id) == Some(channel_id);
        match (same_channel, result) {
            // The channel is gone or was joined again: its frames are handled as they come.
            (false, _) => self.dispatch(first, cx),
            // A failed check denies this write and caches nothing, as a check on the socket's
            // task did.
            (true, Err(_)) => {
                if ext == Extension::Presence {
                    if let Inbound::Message(m) = first {
                        self.deny_presence(&topic, m.msg_ref, cx);
                    }
                }
            }
            (true, Ok(p)) => {
                let prior = self.set_policies(&topic, p, cx.fx);
                let kept = ext == Extension::Broadcast
                    || (p.presence_write == Some(true) && track_meta_is_map(&first));
                self.dispatch(first, cx);
                if !kept {
                    // A track that fails keeps nothing of the checks it ran: the next one
                    // asks the database again.
                    if let Some(prior) = prior {
                        if self.channels.get(&topic).map(|c| c.id) == Some(channel_id) {
                            self.set_policies(&topic, prior, cx.fx);
                        }
                    }
                }
            }
        }
        self.replay_parked(&topic, queue, cx);
    }

    /// From now on the topic's frames wait (see [`Core::replay_parked`]).
    pub(crate) fn park_topic(&mut self, topic: &str) {
        self.parked.start(topic);
    }

    /// Handles frames that waited for a check, in order; if one of them starts another check,
    /// the rest wait behind it.
    pub(crate) fn replay_parked(
        &mut self,
        topic: &str,
        mut queue: VecDeque<Inbound>,
        cx: &mut Cx<'_>,
    ) {
        while let Some(next) = queue.pop_front() {
            if self.parked.contains(topic) {
                for waiting in std::iter::once(next).chain(queue.drain(..)) {
                    if !self.parked.push(topic, waiting) {
                        tracing::warn!(tenant = %self.tenant_id, "frame dropped: too many waiting for a policy check");
                    }
                }
                break;
            }
            self.dispatch(next, cx);
        }
    }

    /// Sets a channel's policies (and tells the hub its read permissions); returns the ones it
    /// had.
    pub(crate) fn set_policies(
        &mut self,
        topic: &str,
        p: Policies,
        fx: &mut Vec<Effect>,
    ) -> Option<Policies> {
        let ch = self.channels.get_mut(topic)?;
        let prior = ch.policies;
        ch.policies = p;
        fx.push(Effect::SetPerms {
            perms: ch.perms.clone(),
            policies: p,
        });
        Some(prior)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime_protocol::Message;
    use serde_json::json;

    fn frame(topic: &str, bytes: usize) -> Inbound {
        Inbound::Message(Message {
            join_ref: None,
            msg_ref: None,
            topic: topic.to_string(),
            event: "broadcast".to_string(),
            payload: json!({ "x": "y".repeat(bytes) }),
        })
    }

    #[test]
    fn waiting_frames_are_bounded_for_the_socket_and_given_back_in_order() {
        let mut parked = Parked::default();
        assert!(
            !parked.push("realtime:a", frame("realtime:a", 1)),
            "no check runs"
        );
        parked.start("realtime:a");
        parked.start("realtime:b");
        assert!(parked.push("realtime:a", frame("realtime:a", 1)));
        assert!(parked.push("realtime:b", frame("realtime:b", 2)));
        // One large frame past the byte bound is dropped; the bound is the socket's.
        assert!(!parked.push("realtime:b", frame("realtime:b", MAX_PARKED_BYTES)));
        let a = parked.take("realtime:a").unwrap();
        assert_eq!(a.len(), 1);
        assert!(!parked.contains("realtime:a"));
        for _ in 1..MAX_PARKED {
            assert!(parked.push("realtime:b", frame("realtime:b", 1)));
        }
        assert!(
            !parked.push("realtime:b", frame("realtime:b", 1)),
            "frame bound"
        );
        let b = parked.take("realtime:b").unwrap();
        assert_eq!(b.len(), MAX_PARKED);
        assert_eq!((parked.frames, parked.bytes), (0, 0));
    }
}
