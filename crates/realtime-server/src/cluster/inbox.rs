//! Messages from other nodes, delivered to this node's sockets as a local publisher's would
//! be: the same receivers, permissions, replay filter and events limit, one encoding per
//! serializer.

use std::sync::Weak;

use bytes::Bytes;
use realtime_cluster::{Inbox, NodeId};
use realtime_protocol::{events, reply, Outbound};

use super::envelope::{Carried, Envelope};
use crate::gateway::hub::Kind;
use crate::gateway::Gateway;

/// The gateway's side of the link.
pub struct GatewayInbox {
    gw: Weak<Gateway>,
    node: NodeId,
}

impl GatewayInbox {
    pub(crate) fn new(gw: Weak<Gateway>, node: NodeId) -> GatewayInbox {
        GatewayInbox { gw, node }
    }
}

impl Inbox for GatewayInbox {
    fn message(&self, _channel: &[u8], payload: Bytes) {
        let envelope = match Envelope::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "dropped a message from another node");
                return;
            }
        };
        // This node delivered its own messages before publishing them.
        if envelope.origin == self.node {
            return;
        }
        let Some(gw) = self.gw.upgrade() else { return };
        let key = envelope.key;
        match envelope.carried {
            Carried::Broadcast(msg) => {
                let replayed = envelope.replayed_id;
                gw.deliver_local(&key, &msg, envelope.max_events_per_second, |s| {
                    replayed.as_ref().is_none_or(|id| {
                        s.perms
                            .replayed
                            .lock()
                            .map(|ids| !ids.contains(id))
                            .unwrap_or(true)
                    })
                });
            }
            Carried::PresenceDiff(diff) => {
                let msg =
                    Outbound::Message(reply::push(None, key.topic(), events::PRESENCE_DIFF, diff));
                let n = gw.hub.fan_out(&key, &msg, Kind::Presence, None).len();
                gw.limits.rates(&key.tenant).presence.add(n as u64);
            }
        }
    }
}
