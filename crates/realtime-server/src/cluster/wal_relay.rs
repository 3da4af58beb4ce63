//! The relay of a tenant's changes between nodes ([`realtime_cdc::relay`]) over Redis: each
//! relayed batch an entry of the stream `realtime:<db>:wal:<key>` (the last [`KEEP_FOR`]
//! kept), read by each follower over a connection of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use realtime_cdc::relay::{Pending, WalRelay};
use realtime_cluster::streams::ReadConnection as MultiplexedConnection;
use realtime_cluster::Link;

/// How long a relay stream keeps a batch (by Redis time): a follower further behind than
/// this loses changes. Followers read continuously; this bounds what Redis holds to the last
/// minute of the tenant's WAL.
pub const KEEP_FOR: Duration = Duration::from_secs(60);

/// Longest wait of one read.
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// The Redis side of the relay.
pub struct RedisWalRelay {
    link: Arc<Link>,
    readers: tokio::sync::Mutex<HashMap<String, MultiplexedConnection>>,
    /// Redis time of each stream's last append, which the next one trims by.
    appended_ms: std::sync::Mutex<HashMap<String, u64>>,
}

impl RedisWalRelay {
    pub(crate) fn new(link: Arc<Link>) -> RedisWalRelay {
        RedisWalRelay {
            link,
            readers: Default::default(),
            appended_ms: Default::default(),
        }
    }

    fn stream(&self, key: &str) -> Bytes {
        Bytes::from(format!("realtime:{}:wal:{key}", self.link.db()))
    }
}

impl WalRelay for RedisWalRelay {
    fn append(&self, key: &str, batch: Bytes) -> Pending<'_, bool> {
        let stream = self.stream(key);
        let key = key.to_string();
        Box::pin(async move {
            let last = self
                .appended_ms
                .lock()
                .ok()
                .and_then(|m| m.get(&key).copied());
            let keep_after = last.map(|ms| ms.saturating_sub(KEEP_FOR.as_millis() as u64));
            match self.link.stream_append(&stream, &batch, keep_after).await {
                Some(ms) => {
                    if let Ok(mut m) = self.appended_ms.lock() {
                        m.insert(key, ms);
                    }
                    true
                }
                None => false,
            }
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
            match realtime_cluster::streams::stream_read(&mut conn, &stream, &cursor, wait).await {
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
}
