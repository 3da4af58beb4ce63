//! Broadcast (PROTOCOL.md §6): client JSON broadcasts and kind-3 user broadcasts relayed to the
//! topic's subscribers, with size limit, ack, self, and the tenant events limit at delivery.

use std::sync::Arc;

use bytes::Bytes;
use realtime_protocol::reply::{self, Status};
use realtime_protocol::wording::stop;
use realtime_protocol::{Message, Outbound, UserBroadcast};
use serde_json::json;

use crate::cluster::envelope::Carried;
use crate::gateway::authorization::Extension;
use crate::gateway::control::Control;
use crate::gateway::core::{Core, Cx};
use crate::gateway::effect::{Counter, Effect, Fanout, Metric};
use crate::gateway::hub::{Kind, Subscriber, TopicKey};
use crate::gateway::outbound::{self, SessionLink};
use crate::gateway::Gateway;

impl Gateway {
    /// Fans a broadcast out to a topic and applies the tenant events limit to the receivers:
    /// each delivery counts one event; while the limiter is triggered the receiving channels
    /// stop after the message. Returns the receivers, among them the congested ones the
    /// publisher should wait for.
    pub fn deliver_broadcast(
        &self,
        key: &TopicKey,
        msg: &Outbound,
        exclude: Option<u64>,
        max_events_per_second: u64,
    ) -> Delivered {
        let delivered = self.deliver_local(key, msg, max_events_per_second, |s| {
            Some(s.channel_id) != exclude
        });
        if let Some(cluster) = self.cluster() {
            cluster.publish(key, Carried::Broadcast(msg.clone()), max_events_per_second);
        }
        delivered
    }

    /// Like [`Gateway::deliver_broadcast`], to this node's subscribers that `keep` accepts
    /// (other nodes are not told).
    pub(crate) fn deliver_local(
        &self,
        key: &TopicKey,
        msg: &Outbound,
        max_events_per_second: u64,
        keep: impl Fn(&Subscriber) -> bool,
    ) -> Delivered {
        let receivers = self.hub.fan_out_where(key, msg, Kind::Broadcast, keep);
        let rates = self.limits.rates(&key.tenant);
        rates.events.add(receivers.len() as u64);
        if !receivers.is_empty() && rates.events.triggered(max_events_per_second) {
            for r in &receivers {
                r.session.control(Control::StopChannel {
                    channel_id: r.channel_id,
                    message: stop::TOO_MANY_MESSAGES.to_string(),
                });
            }
        }
        let mut congested: Vec<Arc<SessionLink>> = Vec::new();
        for r in &receivers {
            if r.session.is_congested() && !congested.iter().any(|c| c.id == r.session.id) {
                congested.push(r.session.clone());
            }
        }
        Delivered {
            receivers: receivers.len(),
            congested,
        }
    }
}

/// What a broadcast reached.
#[derive(Default)]
pub struct Delivered {
    /// Channels handed the message.
    pub receivers: usize,
    /// Receiving sockets over their soft queue marks.
    pub congested: Vec<Arc<SessionLink>>,
}

impl Delivered {
    /// Waits until the congested receivers drained (backpressure on the publisher), except
    /// the publisher's own socket `own`, which cannot drain while its client waits on us.
    pub async fn drained(self, own: Option<u64>) {
        if self.congested.is_empty() {
            return;
        }
        let others: Vec<Arc<SessionLink>> = self
            .congested
            .into_iter()
            .filter(|l| Some(l.id) != own)
            .collect();
        outbound::drained_all(&others).await;
    }
}

impl Core {
    pub(crate) fn on_broadcast(&mut self, m: Message, cx: &mut Cx<'_>) {
        let size = serde_json::to_vec(&m.payload).map(|v| v.len()).unwrap_or(0);
        let msg = Outbound::Message(reply::broadcast(None, m.topic.clone(), m.payload));
        self.relay(&m.topic, m.msg_ref, size, msg, cx);
    }

    pub(crate) fn on_user_broadcast(&mut self, ub: UserBroadcast, cx: &mut Cx<'_>) {
        let size = ub.payload.len();
        let msg = Outbound::UserBroadcast(UserBroadcast {
            join_ref: None,
            msg_ref: None,
            topic: ub.topic.clone(),
            event: ub.event,
            metadata: Bytes::new(),
            encoding: ub.encoding,
            payload: ub.payload,
        });
        self.relay(&ub.topic, ub.msg_ref, size, msg, cx);
    }

    fn relay(
        &mut self,
        topic: &str,
        msg_ref: Option<String>,
        size: usize,
        msg: Outbound,
        cx: &mut Cx<'_>,
    ) {
        let Some(tenant) = self.fresh_tenant(cx) else {
            return;
        };
        if !self.may_write(topic, Extension::Broadcast) {
            // Denied or unknown: dropped without a reply, even with ack on.
            return;
        }
        let Some(ch) = self.channels.get(topic) else {
            return;
        };
        cx.push(Effect::Count(Counter::Events, 1));
        if size > tenant.limits.max_payload_bytes() {
            if ch.ack {
                cx.send(Outbound::Message(reply::payload_size_exceeded(
                    ch.push_ref.clone(),
                    msg_ref,
                    &ch.topic,
                )));
            }
            return;
        }
        cx.push(Effect::Metric(Metric::BroadcastPayload(size)));
        cx.push(Effect::Broadcast(Box::new(Fanout {
            key: ch.key.clone(),
            msg,
            exclude: if ch.self_broadcast { None } else { Some(ch.id) },
            max_events_per_second: tenant.limits.max_events_per_second,
            ack: ch.ack.then(|| ch.reply(msg_ref, Status::Ok, json!({}))),
        })));
    }
}
