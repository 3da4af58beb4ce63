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

/// The sending side of the queue.
pub struct Publisher {
    tx: mpsc::Sender<(Bytes, Bytes)>,
}

impl Publisher {
    pub(crate) fn new() -> (Publisher, mpsc::Receiver<(Bytes, Bytes)>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Publisher { tx }, rx)
    }

    pub(crate) fn queue(&self, channel: Bytes, payload: Bytes) -> bool {
        self.tx.try_send((channel, payload)).is_ok()
    }
}

pub(crate) async fn run(link: Weak<Link>, mut rx: mpsc::Receiver<(Bytes, Bytes)>) {
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
        for (channel, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH")
                .arg(channel.as_ref())
                .arg(payload.as_ref())
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %e, "messages to other nodes were lost");
        }
    }
}
