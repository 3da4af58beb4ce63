//! What one node sends the others about a topic: the message and what a receiving node needs
//! to deliver it as the publishing node did (the topic's namespace, the tenant's events
//! limit). A compact binary form:
//! a version byte, then fields each prefixed by their length; anything malformed is refused,
//! never trusted.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use realtime_cluster::NodeId;
use realtime_protocol::{BroadcastEncoding, Message, Outbound, UserBroadcast};

use crate::gateway::hub::TopicKey;

const VERSION: u8 = 1;

const KIND_MESSAGE: u8 = 1;
const KIND_USER_BROADCAST: u8 = 2;
const KIND_PRESENCE_DIFF: u8 = 3;

/// Why a received envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Written by a node of another version.
    #[error("unknown envelope version {0}")]
    Version(u8),
    /// Cut short or with a length past its end.
    #[error("truncated envelope")]
    Truncated,
    /// A kind this node does not know.
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    /// A name that is not UTF-8, or a payload that is not JSON.
    #[error("malformed envelope field: {0}")]
    Field(&'static str),
}

/// What the message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Carried {
    /// A broadcast (JSON or a user broadcast's bytes).
    Broadcast(Outbound),
    /// A presence diff (`{"joins":…, "leaves":…}`) for the topic's receivers.
    PresenceDiff(serde_json::Value),
}

/// A topic's message as it travels between nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The publishing node (which skips its own).
    pub origin: NodeId,
    /// The topic's namespace.
    pub key: TopicKey,
    /// The tenant's events limit, applied by each node to its receivers.
    pub max_events_per_second: u64,
    /// The message.
    pub carried: Carried,
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

impl Envelope {
    /// The wire form; `None` for a message that never crosses nodes (replies, raw pushes).
    pub fn encode(&self) -> Option<Bytes> {
        let mut out = BytesMut::with_capacity(128);
        out.put_u8(VERSION);
        out.put_slice(&self.origin.0);
        let kind = match &self.carried {
            Carried::Broadcast(Outbound::Message(_)) => KIND_MESSAGE,
            Carried::Broadcast(Outbound::UserBroadcast(_)) => KIND_USER_BROADCAST,
            Carried::Broadcast(Outbound::Raw(_)) => return None,
            Carried::PresenceDiff(_) => KIND_PRESENCE_DIFF,
        };
        out.put_u8(kind);
        out.put_u8(u8::from(self.key.private));
        put_bytes(&mut out, self.key.tenant.as_bytes());
        put_bytes(&mut out, self.key.sub.as_bytes());
        out.put_u64(self.max_events_per_second);
        match &self.carried {
            Carried::Broadcast(Outbound::Message(m)) => {
                put_bytes(&mut out, m.topic.as_bytes());
                put_bytes(&mut out, m.event.as_bytes());
                put_bytes(&mut out, m.payload.to_string().as_bytes());
            }
            Carried::Broadcast(Outbound::UserBroadcast(b)) => {
                put_bytes(&mut out, b.topic.as_bytes());
                put_bytes(&mut out, b.event.as_bytes());
                put_bytes(&mut out, &b.metadata);
                out.put_u8(match b.encoding {
                    BroadcastEncoding::Binary => 0,
                    BroadcastEncoding::Json => 1,
                });
                put_bytes(&mut out, &b.payload);
            }
            Carried::PresenceDiff(diff) => put_bytes(&mut out, diff.to_string().as_bytes()),
            Carried::Broadcast(Outbound::Raw(_)) => return None,
        }
        Some(out.freeze())
    }

    /// Reads an envelope another node wrote.
    pub fn decode(wire: Bytes) -> Result<Envelope, EnvelopeError> {
        let mut r = Reader { wire, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let mut origin = [0u8; 16];
        origin.copy_from_slice(&r.take(16)?);
        let kind = r.u8()?;
        let private = r.u8()? != 0;
        let tenant: Arc<str> = Arc::from(r.string("tenant")?);
        let sub: Arc<str> = Arc::from(r.string("sub-topic")?);
        let max_events_per_second = r.u64()?;
        let carried = match kind {
            KIND_MESSAGE => Carried::Broadcast(Outbound::Message(Message {
                join_ref: None,
                msg_ref: None,
                topic: r.string("topic")?,
                event: r.string("event")?,
                payload: r.json()?,
            })),
            KIND_USER_BROADCAST => {
                let topic = r.string("topic")?;
                let event = r.string("event")?;
                let metadata = r.bytes()?;
                let encoding = match r.u8()? {
                    0 => BroadcastEncoding::Binary,
                    _ => BroadcastEncoding::Json,
                };
                Carried::Broadcast(Outbound::UserBroadcast(UserBroadcast {
                    join_ref: None,
                    msg_ref: None,
                    topic,
                    event,
                    metadata,
                    encoding,
                    payload: r.bytes()?,
                }))
            }
            KIND_PRESENCE_DIFF => Carried::PresenceDiff(r.json()?),
            other => return Err(EnvelopeError::Kind(other)),
        };
        Ok(Envelope {
            origin: NodeId(origin),
            key: TopicKey {
                tenant,
                private,
                sub,
            },
            max_events_per_second,
            carried,
        })
    }
}

struct Reader {
    wire: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, EnvelopeError> {
        let end = self.at.checked_add(n).ok_or(EnvelopeError::Truncated)?;
        if end > self.wire.len() {
            return Err(EnvelopeError::Truncated);
        }
        let b = self.wire.slice(self.at..end);
        self.at = end;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_be_bytes(a))
    }

    fn bytes(&mut self) -> Result<Bytes, EnvelopeError> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        self.take(n)
    }

    fn string(&mut self, field: &'static str) -> Result<String, EnvelopeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| EnvelopeError::Field(field))
    }

    fn json(&mut self) -> Result<serde_json::Value, EnvelopeError> {
        serde_json::from_slice(&self.bytes()?).map_err(|_| EnvelopeError::Field("payload"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> TopicKey {
        TopicKey {
            tenant: Arc::from("realtime-dev"),
            private: true,
            sub: Arc::from("room:1"),
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let carried = [
            Carried::Broadcast(Outbound::Message(Message {
                join_ref: None,
                msg_ref: None,
                topic: "realtime:room:1".into(),
                event: "broadcast".into(),
                payload: json!({"type": "broadcast", "event": "e", "payload": {"n": 1}}),
            })),
            Carried::Broadcast(Outbound::UserBroadcast(UserBroadcast {
                join_ref: None,
                msg_ref: None,
                topic: "realtime:room:1".into(),
                event: "e".into(),
                metadata: Bytes::from_static(b"{\"id\":\"x\"}"),
                encoding: BroadcastEncoding::Binary,
                payload: Bytes::from_static(&[0, 1, 2, 255]),
            })),
            Carried::PresenceDiff(json!({"joins": {"u": {"metas": []}}, "leaves": {}})),
        ];
        for c in carried {
            let e = Envelope {
                origin: NodeId([7; 16]),
                key: key(),
                max_events_per_second: 100,
                carried: c,
            };
            let wire = e.encode().unwrap();
            assert_eq!(Envelope::decode(wire).unwrap(), e);
        }
    }

    #[test]
    fn malformed_input_is_refused_not_trusted() {
        let e = Envelope {
            origin: NodeId([1; 16]),
            key: key(),
            max_events_per_second: 5,
            carried: Carried::PresenceDiff(json!({})),
        };
        let wire = e.encode().unwrap();
        for cut in 0..wire.len() {
            assert!(Envelope::decode(wire.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = wire.to_vec();
        bad[0] = 9;
        assert_eq!(
            Envelope::decode(Bytes::from(bad)),
            Err(EnvelopeError::Version(9))
        );
        let mut bad = wire.to_vec();
        bad[17] = 42;
        assert_eq!(
            Envelope::decode(Bytes::from(bad)),
            Err(EnvelopeError::Kind(42))
        );
        // A length field pointing far past the end.
        let mut bad = wire.to_vec();
        bad[19..23].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Envelope::decode(Bytes::from(bad)),
            Err(EnvelopeError::Truncated)
        );
    }
}
