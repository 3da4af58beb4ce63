//! Messages from other nodes, delivered to this node's sockets as a local publisher's would
//! be: the same receivers, permissions, replay filter and events limit, one encoding per
//! serializer.

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use realtime_cluster::{Inbox, NodeId};

use super::envelope::{Carried, Envelope};
use super::{presence, Cluster};
use crate::gateway::Gateway;

/// The gateway's side of the link.
pub struct GatewayInbox {
    gw: Weak<Gateway>,
    node: NodeId,
    cluster: Arc<OnceLock<Weak<Cluster>>>,
}

impl GatewayInbox {
    pub(crate) fn new(
        gw: Weak<Gateway>,
        node: NodeId,
        cluster: Arc<OnceLock<Weak<Cluster>>>,
    ) -> GatewayInbox {
        GatewayInbox { gw, node, cluster }
    }

    fn both(&self) -> Option<(Arc<Cluster>, Arc<Gateway>)> {
        Some((self.cluster.get()?.upgrade()?, self.gw.upgrade()?))
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
                gw.deliver_local(&key, &msg, envelope.max_events_per_second, |_| true);
            }
            Carried::PresenceDiff(diff) => {
                gw.presence.remote.apply(envelope.origin, &key, &diff);
                presence::deliver_diff(&gw, &key, diff);
            }
        }
    }

    fn listening(&self, channel: &[u8]) {
        let Some((cluster, gw)) = self.both() else {
            return;
        };
        let Some(key) = cluster.watched.get(channel).map(|k| k.clone()) else {
            return;
        };
        tokio::spawn(async move { presence::load_topic(&cluster, &gw, key).await });
    }

    fn reconnected(&self) {
        let Some((cluster, gw)) = self.both() else {
            return;
        };
        tokio::spawn(async move { presence::rewrite_own(&cluster, &gw).await });
    }
}
