//! Messages to other nodes: queued without waiting by whoever publishes, sent by one task in
//! queue order, every message already waiting going out in one pipeline.

use std::sync::Weak;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::link::Link;

/// Messages waiting for Redis; past this a message is dropped, as when Redis is away.
const QUEUE: usize = 65_536;

/// Most messages in one pipeline.
const BATCH: usize = 256;

/// A change to state kept in a Redis hash, written just before the message that announces it,
/// so a node that reads the hash after it started listening misses neither.
#[derive(Debug, Clone)]
pub enum HashWrite {
    /// `HSET key field value`.
    Set {
        /// The hash.
        key: Bytes,
        /// The field.
        field: Bytes,
        /// The value.
        value: Bytes,
    },
    /// `HDEL key field`.
    Delete {
        /// The hash.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
}

impl HashWrite {
    /// Adds this write to `pipe`, its answer ignored.
    pub(crate) fn add_to(&self, pipe: &mut redis::Pipeline) {
        match self {
            HashWrite::Set { key, field, value } => pipe
                .cmd("HSET")
                .arg(key.as_ref())
                .arg(field.as_ref())
                .arg(value.as_ref())
                .ignore(),
            HashWrite::Delete { key, field } => pipe
                .cmd("HDEL")
                .arg(key.as_ref())
                .arg(field.as_ref())
                .ignore(),
        };
    }
}

/// One queued message and the writes that go before it.
pub(crate) struct Outgoing {
    channel: Bytes,
    payload: Bytes,
    writes: Vec<HashWrite>,
}

/// The sending side of the queue.
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
}

impl Publisher {
    pub(crate) fn new() -> (Publisher, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Publisher { tx }, rx)
    }

    pub(crate) fn queue(&self, channel: Bytes, payload: Bytes, writes: Vec<HashWrite>) -> bool {
        self.tx
            .try_send(Outgoing {
                channel,
                payload,
                writes,
            })
            .is_ok()
    }
}

pub(crate) async fn run(link: Weak<Link>, mut rx: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let Some(l) = link.upgrade() else { return };
        let Some(mut conn) = l.commands() else {
            // Redis is away: these messages reach only this node's sockets.
            batch.clear();
            continue;
        };
        drop(l);
        let mut pipe = redis::pipe();
        for out in batch.drain(..) {
            for w in &out.writes {
                w.add_to(&mut pipe);
            }
            pipe.cmd("PUBLISH")
                .arg(out.channel.as_ref())
                .arg(out.payload.as_ref())
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %e, "messages to other nodes were lost");
        }
    }
}
