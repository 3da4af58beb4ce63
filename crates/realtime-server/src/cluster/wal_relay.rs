//! The relay of a tenant's changes between nodes ([`realtime_cdc::relay`]) over Redis: each
//! relayed batch an entry of the stream `realtime:<db>:wal:<key>` (about
//! [`KEEP_ENTRIES`] kept), read by each follower over a connection of its own; followers say
//! so in the hash `realtime:<db>:followers:<key>` (node → until when, in ms).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use realtime_cdc::relay::{Pending, WalRelay};
use realtime_cluster::{HashWrite, Link, NodeId};
use realtime_cluster::streams::ReadConnection as MultiplexedConnection;

/// Entries a relay stream keeps; a follower further behind than this loses changes.
pub const KEEP_ENTRIES: usize = 100_000;

/// How long a follower's mark lasts without renewal.
const FOLLOWING_FOR: Duration = Duration::from_secs(5);

/// Longest wait of one read.
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// The Redis side of the relay.
pub struct RedisWalRelay {
    link: Arc<Link>,
    node: NodeId,
    readers: tokio::sync::Mutex<HashMap<String, MultiplexedConnection>>,
}

impl RedisWalRelay {
    pub(crate) fn new(link: Arc<Link>) -> RedisWalRelay {
        RedisWalRelay {
            node: link.node(),
            link,
            readers: Default::default(),
        }
    }

    fn stream(&self, key: &str) -> Bytes {
        Bytes::from(format!("realtime:{}:wal:{key}", self.link.db()))
    }

    fn followers(&self, key: &str) -> Bytes {
        Bytes::from(format!("realtime:{}:followers:{key}", self.link.db()))
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl WalRelay for RedisWalRelay {
    fn append(&self, key: &str, batch: Bytes) -> Pending<'_, bool> {
        let stream = self.stream(key);
        Box::pin(async move {
            self.link
                .stream_append(&stream, &batch, KEEP_ENTRIES)
                .await
        })
    }

    fn tail(&self, key: &str) -> Pending<'_, Option<String>> {
        let stream = self.stream(key);
        Box::pin(async move { self.link.stream_tail(&stream).await })
    }

    fn read(
        &self,
        key: &str,
        cursor: String,
        wait: Duration,
    ) -> Pending<'_, Option<(String, Vec<Bytes>)>> {
        let stream = self.stream(key);
        let key = key.to_string();
        Box::pin(async move {
            let existing = self.readers.lock().await.remove(&key);
            let mut conn = match existing {
                Some(c) => c,
                None => self.link.reading_connection(LONGEST_WAIT).await?,
            };
            let wait = wait.min(LONGEST_WAIT);
            match realtime_cluster::streams::stream_read(&mut conn, &stream, &cursor, wait).await
            {
                Ok(read) => {
                    self.readers.lock().await.insert(key, conn);
                    Some(read)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not read the relay of changes");
                    None
                }
            }
        })
    }

    fn following(&self, key: &str) -> Pending<'_, ()> {
        let hash = self.followers(key);
        Box::pin(async move {
            let until = now_ms() + FOLLOWING_FOR.as_millis();
            self.link
                .hash_write(&[HashWrite::Set {
                    key: hash,
                    field: Bytes::from(self.node.hex()),
                    value: Bytes::from(until.to_string()),
                }])
                .await;
        })
    }

    fn followed(&self, key: &str) -> Pending<'_, bool> {
        let hash = self.followers(key);
        Box::pin(async move {
            let Some(all) = self.link.hash_all(&hash).await else {
                return false;
            };
            let now = now_ms();
            let own = self.node.hex();
            all.iter().any(|(node, until)| {
                *node != own && until.parse::<u128>().is_ok_and(|u| u > now)
            })
        })
    }
}
