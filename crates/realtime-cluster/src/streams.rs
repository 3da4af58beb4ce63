//! Append-only logs in Redis streams (the relay of a tenant's changes): appended to over the
//! command connection, read by a follower over a connection of its own, because a read that
//! waits for new entries holds its connection for that long.

use std::time::Duration;

use bytes::Bytes;
pub use redis::aio::MultiplexedConnection as ReadConnection;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::Value;

use crate::link::Link;

/// The field each entry's bytes are stored under.
const FIELD: &str = "b";

/// `XRANGE`'s answer: entries with their fields.
type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

impl Link {
    /// Appends an entry; entries older than `keep_after_ms` (Redis time, in ms: the first
    /// part of an entry id) are trimmed. The stored entry's Redis time, `None` when Redis did
    /// not store it.
    pub async fn stream_append(
        &self,
        key: &[u8],
        entry: &Bytes,
        keep_after_ms: Option<u64>,
    ) -> Option<u64> {
        let mut conn = self.commands()?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key);
        if let Some(min) = keep_after_ms {
            cmd.arg("MINID").arg("~").arg(min);
        }
        let stored = cmd
            .arg("*")
            .arg(FIELD)
            .arg(entry.as_ref())
            .query_async::<String>(&mut conn)
            .await;
        match stored {
            Ok(id) => id.split('-').next().and_then(|ms| ms.parse().ok()),
            Err(e) => {
                tracing::debug!(error = %e, "could not append to a Redis stream");
                None
            }
        }
    }

    /// The id of the last entry (`0-0` for an empty stream): reading after it yields only
    /// what is appended from now on.
    pub async fn stream_tail(&self, key: &[u8]) -> Option<String> {
        let mut conn = self.commands()?;
        let last: Entries = redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(
            last.into_iter()
                .next()
                .map(|(id, _)| id)
                .unwrap_or_else(|| "0-0".to_string()),
        )
    }

    /// A connection of its own for [`stream_read`], whose answers may take up to
    /// `longest_wait` plus a margin.
    pub async fn reading_connection(
        &self,
        longest_wait: Duration,
    ) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(longest_wait + Duration::from_secs(2)));
        let client = self.client().ok()?;
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()
    }
}

/// Entries after `cursor`, waiting up to `wait` for the first; the cursor after them.
pub async fn stream_read(
    conn: &mut MultiplexedConnection,
    key: &[u8],
    cursor: &str,
    wait: Duration,
) -> redis::RedisResult<(String, Vec<Bytes>)> {
    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(256)
        .arg("BLOCK")
        .arg(wait.as_millis() as u64)
        .arg("STREAMS")
        .arg(key)
        .arg(cursor)
        .query_async(conn)
        .await?;
    let mut next = cursor.to_string();
    let mut out = Vec::new();
    for k in reply.map(|r| r.keys).unwrap_or_default() {
        for id in k.ids {
            if let Some(Value::BulkString(b)) = id.map.get(FIELD) {
                out.push(Bytes::from(b.clone()));
            }
            next = id.id;
        }
    }
    Ok((next, out))
}
