//! A private channel's first broadcast or presence track needs the tenant database's write
//! policies. The check runs off the socket's task: the frame, and every later frame of the same
//! channel, wait in order until the verdict, while the socket keeps answering heartbeats and
//! serving its other channels.

use std::collections::VecDeque;

use realtime_protocol::{events, Inbound};
use serde_json::Value;

use crate::gateway::authorization::{Extension, Policies};
use crate::gateway::control::Control;
use crate::gateway::session::Session;

/// Frames one channel may have waiting behind a check; later ones are dropped with a log line.
const MAX_PARKED: usize = 1024;

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

fn topic_of(inbound: &Inbound) -> &str {
    match inbound {
        Inbound::Message(m) => &m.topic,
        Inbound::UserBroadcast(ub) => &ub.topic,
    }
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

impl Session {
    /// Queues `inbound` behind its channel's running check; hands it back when there is none.
    pub(crate) fn park_behind(&mut self, inbound: Inbound) -> Option<Inbound> {
        let Some(queue) = self.parked.get_mut(topic_of(&inbound)) else {
            return Some(inbound);
        };
        if queue.len() >= MAX_PARKED {
            tracing::warn!(tenant = %self.link.tenant, "frame dropped: too many waiting for a policy check");
        } else {
            queue.push_back(inbound);
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

    /// Parks `inbound` and starts its channel's write check.
    pub(crate) fn check_write_then(&mut self, inbound: Inbound, ext: Extension) {
        let topic = topic_of(&inbound).to_string();
        let (Some(ch), Some(ctx)) = (self.channels.get(&topic), self.auth_context(&topic)) else {
            return;
        };
        let (channel_id, policies) = (ch.id, ch.policies);
        self.parked.insert(topic.clone(), VecDeque::from([inbound]));
        let gw = self.gw.clone();
        let link = self.link.clone();
        tokio::spawn(async move {
            let tenant = link.tenant.clone();
            let mut result = gw.write_policies(&tenant, &ctx, policies).await;
            if ext == Extension::Presence {
                if let Ok(p) = result {
                    if p.presence_read.is_none() {
                        result = gw.read_policies(&tenant, &ctx, true, p).await;
                    }
                }
            }
            let result = result.map_err(|e| {
                tracing::error!(tenant = %tenant, topic = %topic, error = %e, "write policy check failed");
                e.to_string()
            });
            link.control(Control::WriteChecked(Box::new(WriteVerdict {
                topic,
                channel_id,
                ext,
                result,
            })));
        });
    }

    /// Applies a write check's verdict, then handles the frames that waited for it, in order.
    pub(crate) async fn on_write_checked(&mut self, verdict: WriteVerdict) {
        let WriteVerdict {
            topic,
            channel_id,
            ext,
            result,
        } = verdict;
        let Some(mut queue) = self.parked.remove(&topic) else {
            return;
        };
        let Some(first) = queue.pop_front() else {
            return;
        };
        let same_channel = self.channels.get(&topic).map(|c| c.id) == Some(channel_id);
        match (same_channel, result) {
            // The channel is gone or was joined again: its frames are handled as they come.
            (false, _) => self.dispatch(first).await,
            // A failed check denies this write and caches nothing, as a check on the socket's
            // task did.
            (true, Err(_)) => {
                if ext == Extension::Presence {
                    if let Inbound::Message(m) = first {
                        self.deny_presence(&topic, m.msg_ref);
                    }
                }
            }
            (true, Ok(p)) => {
                let prior = self.set_policies(&topic, p);
                let kept = ext == Extension::Broadcast
                    || (p.presence_write == Some(true) && track_meta_is_map(&first));
                self.dispatch(first).await;
                if !kept {
                    // A track that fails keeps nothing of the checks it ran: the next one
                    // asks the database again.
                    if let Some(prior) = prior {
                        if self.channels.get(&topic).map(|c| c.id) == Some(channel_id) {
                            self.set_policies(&topic, prior);
                        }
                    }
                }
            }
        }
        self.replay_parked(&topic, queue).await;
    }

    /// From now on the topic's frames wait (see [`Session::replay_parked`]).
    pub(crate) fn park_topic(&mut self, topic: &str) {
        self.parked.entry(topic.to_string()).or_default();
    }

    /// Handles frames that waited for a check, in order; if one of them starts another check,
    /// the rest wait behind it.
    pub(crate) async fn replay_parked(&mut self, topic: &str, mut queue: VecDeque<Inbound>) {
        while let Some(next) = queue.pop_front() {
            if let Some(waiting) = self.parked.get_mut(topic) {
                waiting.push_back(next);
                waiting.extend(queue.drain(..));
                break;
            }
            self.dispatch(next).await;
        }
    }

    /// Sets a channel's policies; returns the ones it had.
    pub(crate) fn set_policies(&mut self, topic: &str, p: Policies) -> Option<Policies> {
        let ch = self.channels.get_mut(topic)?;
        let prior = ch.policies;
        ch.policies = p;
        ch.perms.set(&p);
        Some(prior)
    }
}
