//! State kept in Redis beside the messages: hashes (a topic's presence, one field per meta)
//! and each node's alive key, renewed while it runs and expiring when it dies. Every call
//! answers `None`/nothing while Redis is away; callers try again later.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;

use crate::link::Link;
use crate::node::NodeId;

/// How long a node's alive key outlives its last renewal (renewed every second): a node
/// unheard of for this long is gone.
pub const ALIVE_FOR: Duration = Duration::from_secs(10);

fn alive_key(db: i64, node: NodeId) -> String {
    format!("realtime:{db}:node:{}", node.hex())
}

pub(crate) async fn renew(
    conn: &mut redis::aio::ConnectionManager,
    db: i64,
    node: NodeId,
) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(alive_key(db, node))
        .arg(1)
        .arg("PX")
        .arg(ALIVE_FOR.as_millis() as u64)
        .query_async::<()>(conn)
        .await
}

impl Link {
    /// Every field of a hash, `None` when Redis did not answer.
    pub async fn hash_all(&self, key: &[u8]) -> Option<HashMap<String, String>> {
        let mut conn = self.commands()?;
        match redis::cmd("HGETALL").arg(key).query_async(&mut conn).await {
            Ok(all) => Some(all),
            Err(e) => {
                tracing::debug!(error = %e, "could not read a hash from Redis");
                None
            }
        }
    }

    /// Sets and deletes fields of hashes, in one round trip.
    pub async fn hash_write(&self, writes: &[crate::HashWrite]) {
        if writes.is_empty() {
            return;
        }
        let Some(mut conn) = self.commands() else {
            return;
        };
        let mut pipe = redis::pipe();
        for w in writes {
            match w {
                crate::HashWrite::Set { key, field, value } => pipe
                    .cmd("HSET")
                    .arg(key.as_ref())
                    .arg(field.as_ref())
                    .arg(value.as_ref())
                    .ignore(),
                crate::HashWrite::Delete { key, field } => pipe
                    .cmd("HDEL")
                    .arg(key.as_ref())
                    .arg(field.as_ref())
                    .ignore(),
            };
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %e, "could not write hashes in Redis");
        }
    }

    /// Renews this node's alive key for [`ALIVE_FOR`]; `false` when Redis did not answer.
    /// The link does this every second while Redis answers.
    pub async fn renew_alive(&self) -> bool {
        let Some(mut conn) = self.commands() else {
            return false;
        };
        renew(&mut conn, self.db(), self.node()).await.is_ok()
    }

    /// Of `nodes`, those whose alive key expired; empty when Redis did not answer (a node
    /// is never declared gone on a failed read).
    pub async fn gone(&self, nodes: &[NodeId]) -> HashSet<NodeId> {
        let mut gone = HashSet::new();
        if nodes.is_empty() {
            return gone;
        }
        let Some(mut conn) = self.commands() else {
            return gone;
        };
        let mut pipe = redis::pipe();
        for n in nodes {
            pipe.cmd("EXISTS").arg(alive_key(self.db(), *n));
        }
        let Ok(alive): Result<Vec<i64>, _> = pipe.query_async(&mut conn).await else {
            return gone;
        };
        for (n, a) in nodes.iter().zip(alive) {
            if a == 0 {
                gone.insert(*n);
            }
        }
        gone
    }
}

/// A hash field or key naming a node: its 32 hex digits.
pub fn node_field(node: NodeId, rest: &str) -> Bytes {
    Bytes::from(format!("{}:{rest}", node.hex()))
}
