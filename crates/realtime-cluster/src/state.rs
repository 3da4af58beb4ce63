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

/// After Redis comes back, how long before a missing alive key means a node is gone: every
/// live node renews its key every second.
const RENEWAL_GRACE: Duration = Duration::from_secs(3);

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
            w.add_to(&mut pipe);
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %e, "could not write hashes in Redis");
        }
    }

    /// Says this node is gone (stopping on purpose): its alive key is deleted, so the other
    /// nodes drop its presence at their next check instead of after the key expires.
    pub async fn leave(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Release);
        let Some(mut conn) = self.commands() else {
            return;
        };
        let _ = redis::cmd("DEL")
            .arg(alive_key(self.db(), self.node()))
            .query_async::<()>(&mut conn)
            .await;
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
    /// is never declared gone on a failed read), and for a while after Redis came back,
    /// which may have restarted empty before the others renewed their keys.
    pub async fn gone(&self, nodes: &[NodeId]) -> HashSet<NodeId> {
        let mut gone = HashSet::new();
        if nodes.is_empty() || self.up_for() < RENEWAL_GRACE {
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

impl Link {
    /// A table every node writes its own row of and reads the others' rows from (per-tenant
    /// load, for limits that count across nodes). The row lives as long as an alive key;
    /// rows of nodes gone are dropped from the table. `None` when Redis did not answer.
    pub async fn exchange(
        &self,
        table: &str,
        own: &[(String, String)],
    ) -> Option<Vec<HashMap<String, String>>> {
        let mut conn = self.commands()?;
        let db = self.db();
        let members = format!("realtime:{db}:{table}");
        let row = |node: &str| format!("realtime:{db}:{table}:{node}");
        let me = self.node().hex();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(row(&me)).ignore();
        if !own.is_empty() {
            let mut hset = redis::cmd("HSET");
            hset.arg(row(&me));
            for (k, v) in own {
                hset.arg(k).arg(v);
            }
            pipe.add_command(hset).ignore();
            pipe.cmd("PEXPIRE")
                .arg(row(&me))
                .arg(ALIVE_FOR.as_millis() as u64)
                .ignore();
        }
        pipe.cmd("SADD").arg(&members).arg(&me).ignore();
        pipe.cmd("SMEMBERS").arg(&members);
        let (nodes,): (Vec<String>,) = match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "could not exchange rows with the other nodes");
                return None;
            }
        };
        let others: Vec<String> = nodes.into_iter().filter(|n| *n != me).collect();
        if others.is_empty() {
            return Some(Vec::new());
        }
        let mut pipe = redis::pipe();
        for n in &others {
            pipe.cmd("HGETALL").arg(row(n));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await.ok()?;
        // A node without a row has expired or serves nothing: it rejoins when it writes one.
        let gone: Vec<&String> = others
            .iter()
            .zip(&rows)
            .filter(|(_, r)| r.is_empty())
            .map(|(n, _)| n)
            .collect();
        if !gone.is_empty() {
            let _ = redis::cmd("SREM")
                .arg(&members)
                .arg(gone)
                .query_async::<()>(&mut conn)
                .await;
        }
        Some(rows.into_iter().filter(|r| !r.is_empty()).collect())
    }
}

/// A hash field or key naming a node: its 32 hex digits.
pub fn node_field(node: NodeId, rest: &str) -> Bytes {
    Bytes::from(format!("{}:{rest}", node.hex()))
}
