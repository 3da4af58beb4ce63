//! Which channels this node listens to: counted per local reason (a topic with local
//! subscribers), subscribed in Redis on the first and unsubscribed on the last, in order, and
//! all subscribed again when Redis comes back.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::link::Link;

pub(crate) enum Change {
    /// Make Redis match the wanted state of this channel.
    Sync(Bytes),
    /// Subscribe every wanted channel again.
    All,
}

/// Local reasons per channel, and the task's queue of changes to apply.
pub struct Interest {
    wanted: Mutex<HashMap<Bytes, usize>>,
    changes: mpsc::UnboundedSender<Change>,
}

impl Interest {
    pub(crate) fn new() -> (Interest, mpsc::UnboundedReceiver<Change>) {
        let (changes, rx) = mpsc::unbounded_channel();
        (
            Interest {
                wanted: Mutex::new(HashMap::new()),
                changes,
            },
            rx,
        )
    }

    pub(crate) fn add(&self, channel: Bytes) {
        let first = match self.wanted.lock() {
            Ok(mut w) => {
                let n = w.entry(channel.clone()).or_insert(0);
                *n += 1;
                *n == 1
            }
            Err(_) => false,
        };
        if first {
            let _ = self.changes.send(Change::Sync(channel));
        }
    }

    pub(crate) fn remove(&self, channel: &Bytes) {
        let last = match self.wanted.lock() {
            Ok(mut w) => match w.get_mut(channel) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    w.remove(channel);
                    true
                }
                None => false,
            },
            Err(_) => false,
        };
        if last {
            let _ = self.changes.send(Change::Sync(channel.clone()));
        }
    }

    pub(crate) fn resubscribe_all(&self) {
        let _ = self.changes.send(Change::All);
    }

    fn is_wanted(&self, channel: &Bytes) -> bool {
        self.wanted
            .lock()
            .map(|w| w.contains_key(channel))
            .unwrap_or(false)
    }

    fn all(&self) -> Vec<Bytes> {
        self.wanted
            .lock()
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default()
    }
}

pub(crate) async fn run(
    link: Weak<Link>,
    mut rx: mpsc::UnboundedReceiver<Change>,
    inbox: std::sync::Arc<dyn crate::Inbox>,
) {
    while let Some(change) = rx.recv().await {
        let Some(l) = link.upgrade() else { return };
        // Without a connection there is nothing to change: the wanted set is applied whole
        // when Redis comes back.
        let Some(mut conn) = l.listener() else {
            continue;
        };
        drop(l);
        let result = match change {
            Change::Sync(channel) => {
                let wanted = link
                    .upgrade()
                    .is_some_and(|l| l.interest.is_wanted(&channel));
                if wanted {
                    let r = conn.subscribe(channel.as_ref()).await;
                    if r.is_ok() {
                        inbox.listening(&channel);
                    }
                    r
                } else {
                    conn.unsubscribe(channel.as_ref()).await
                }
            }
            Change::All => {
                let all = link.upgrade().map(|l| l.interest.all()).unwrap_or_default();
                if all.is_empty() {
                    Ok(())
                } else {
                    let names: Vec<&[u8]> = all.iter().map(|c| c.as_ref()).collect();
                    let r = conn.subscribe(names).await;
                    if r.is_ok() {
                        for c in &all {
                            inbox.listening(c);
                        }
                    }
                    r
                }
            }
        };
        if let Err(e) = result {
            // The health check notices the lost connection and subscribes everything again.
            tracing::debug!(error = %e, "could not change this node's Redis subscriptions");
        }
    }
}
