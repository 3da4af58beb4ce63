//! Changes shared between nodes (cluster mode). One node streams a tenant's slot; PostgreSQL
//! lets no other. It relays the pgoutput messages it reads, in order, and stores each batch
//! before it confirms the slot past it. The other nodes, whose own subscribers need the same
//! changes, wait for the slot and meanwhile follow the relay: they run the same
//! [`crate::wal_consumer::WalConsumer`] over the relayed messages, routing, judging (RLS) and
//! delivering for their own subscribers, exactly as if they streamed the slot.
//!
//! Nothing is lost or repeated when the streaming node dies: the relay always holds at least
//! what the slot confirmed, a follower reads the relay to its end before it streams the slot
//! itself, and the slot then re-sends only transactions the follower's consumer already
//! handed on, which it skips by their commit position.
//!
//! A follower that starts mid-stream has not seen the relation descriptions sent at the start
//! of the streaming session, so each batch carries the descriptions of the relations its
//! rows use ([`RelayTap`]); a follower passes on only those it has not seen in that form.
//!
//! The transport is the server's ([`WalRelay`]); this crate knows nothing of Redis.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use realtime_pg::pgoutput::LogicalMessage;

/// A boxed future, so the transport can be a trait object.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One pgoutput message as the walsender sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// `wal_start` of its CopyData.
    pub lsn: u64,
    /// The pgoutput bytes.
    pub data: Bytes,
}

/// Where relayed batches are stored and read (the server implements it over Redis).
pub trait WalRelay: Send + Sync + 'static {
    /// Stores a batch after every earlier one of `key`; `false` when it could not be stored
    /// (the followers then miss it, as when the cluster's store is away).
    fn append(&self, key: &str, batch: Bytes) -> Pending<'_, bool>;

    /// The position after the last stored batch, to follow from (`None`: store away).
    fn tail(&self, key: &str) -> Pending<'_, Option<String>>;

    /// Batches stored after `cursor`, waiting up to `wait` for the first; the new cursor.
    /// `None` when the store could not be read.
    fn read(
        &self,
        key: &str,
        cursor: String,
        wait: Duration,
    ) -> Pending<'_, Option<(String, Vec<Bytes>)>>;
}

impl std::fmt::Debug for dyn WalRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalRelay")
    }
}

/// A consumer's relay: the transport and its key (tenant and slot).
#[derive(Clone)]
pub struct RelayHandle {
    /// The transport.
    pub transport: std::sync::Arc<dyn WalRelay>,
    /// `<tenant>:<slot>`: slot names repeat across databases, tenants do not.
    pub key: String,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelayHandle({})", self.key)
    }
}

/// Encodes a batch: for each message, its LSN (8 bytes), its length (4 bytes), its bytes.
pub fn encode_batch(messages: &[Relayed]) -> Bytes {
    let size: usize = messages.iter().map(|m| 12 + m.data.len()).sum();
    let mut out = BytesMut::with_capacity(size);
    for m in messages {
        out.put_u64(m.lsn);
        out.put_u32(m.data.len() as u32);
        out.put_slice(&m.data);
    }
    out.freeze()
}

/// Why a relayed batch could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("truncated relayed batch at byte {0}")]
pub struct BatchError(pub usize);

/// Decodes [`encode_batch`].
pub fn decode_batch(batch: &Bytes) -> Result<Vec<Relayed>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < batch.len() {
        if batch.len() - at < 12 {
            return Err(BatchError(at));
        }
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&batch[at..at + 8]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&batch[at + 8..at + 12]);
        let len = u32::from_be_bytes(len) as usize;
        let start = at + 12;
        let end = start.checked_add(len).ok_or(BatchError(at))?;
        if end > batch.len() {
            return Err(BatchError(at));
        }
        out.push(Relayed {
            lsn: u64::from_be_bytes(lsn),
            data: batch.slice(start..end),
        });
        at = end;
    }
    Ok(out)
}

/// The streaming node's side: collects what it reads until the next confirm, and remembers
/// each relation's description to send it along with the rows that use it.
#[derive(Default)]
pub struct RelayTap {
    pending: Vec<Relayed>,
    descriptions: HashMap<u32, Relayed>,
    used: HashSet<u32>,
}

impl RelayTap {
    /// A message read from the slot, with its decoding.
    pub fn read(&mut self, raw: Relayed, message: &LogicalMessage) {
        match message {
            LogicalMessage::Relation(r) => {
                self.descriptions.insert(r.oid, raw);
                return;
            }
            LogicalMessage::Insert { relation, .. }
            | LogicalMessage::Update { relation, .. }
            | LogicalMessage::Delete { relation, .. } => {
                self.used.insert(*relation);
            }
            LogicalMessage::Truncate { relations, .. } => self.used.extend(relations.iter()),
            _ => {}
        }
        self.pending.push(raw);
    }

    /// Whether anything waits to be relayed.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The batch to store before confirming: the descriptions its rows need, then its
    /// messages in order.
    pub fn take(&mut self) -> Option<Bytes> {
        if self.pending.is_empty() {
            return None;
        }
        let mut all: Vec<Relayed> = self
            .used
            .drain()
            .filter_map(|oid| self.descriptions.get(&oid).cloned())
            .collect();
        all.append(&mut self.pending);
        Some(encode_batch(&all))
    }

    /// A new streaming session describes its relations again.
    pub fn new_session(&mut self) {
        self.pending.clear();
        self.descriptions.clear();
        self.used.clear();
    }
}

/// The following node's side: drops relation descriptions it has already passed on in the
/// same form, so its catalog is not reloaded for every batch.
#[derive(Default)]
pub struct RelayFilter {
    seen: HashMap<u32, Bytes>,
}

impl RelayFilter {
    /// Whether to pass `message` on.
    pub fn admit(&mut self, raw: &Relayed, message: &LogicalMessage) -> bool {
        match message {
            LogicalMessage::Relation(r) => {
                if self.seen.get(&r.oid) == Some(&raw.data) {
                    return false;
                }
                self.seen.insert(r.oid, raw.data.clone());
                true
            }
            _ => true,
        }
    }

    /// After streaming the slot itself, what was described there is unknown here.
    pub fn reset(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_truncation_is_refused() {
        let msgs = vec![
            Relayed {
                lsn: 1,
                data: Bytes::from_static(b"B..."),
            },
            Relayed {
                lsn: u64::MAX,
                data: Bytes::new(),
            },
        ];
        let wire = encode_batch(&msgs);
        assert_eq!(decode_batch(&wire).unwrap(), msgs);
        for cut in 1..wire.len() {
            let part = wire.slice(..cut);
            let ok = decode_batch(&part).map(|v| v.len());
            assert!(ok.is_err() || ok == Ok(1), "cut {cut}: {ok:?}");
        }
        assert_eq!(decode_batch(&Bytes::new()).unwrap(), vec![]);
    }
}
