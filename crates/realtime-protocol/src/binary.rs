//! vsn 2.0.0 binary frames for user broadcasts: kind 3 in, kind 4 out (PROTOCOL.md §2.4).
//!
//! Every size is one unsigned byte, so each header string is at most 255 bytes. Kinds 0–2 are
//! not handled: realtime-js never sends kind 0 and cannot read kinds 0–2.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::DecodeError;
use crate::message::{BroadcastEncoding, UserBroadcast};

/// Kind byte of a client user broadcast push.
pub const KIND_USER_BROADCAST_PUSH: u8 = 3;
/// Kind byte of a server user broadcast.
pub const KIND_USER_BROADCAST: u8 = 4;
/// Largest header string a size byte can describe.
pub const MAX_HEADER_LEN: usize = 255;

/// Reads a kind-3 frame:
/// `3, join_ref_size, ref_size, topic_size, event_size, metadata_size, encoding, join_ref, ref,
/// topic, event, metadata, payload…`.
///
/// Empty refs stay empty strings, as upstream keeps them. Non-empty metadata must be valid JSON.
pub fn decode_user_broadcast_push(frame: &[u8]) -> Result<UserBroadcast, DecodeError> {
    let mut r = Reader(frame);
    match r.byte("kind")? {
        KIND_USER_BROADCAST_PUSH => {}
        _ => return Err(DecodeError::MalformedBinary("unsupported kind")),
    }
    let join_ref_size = r.byte("join_ref size")?;
    let ref_size = r.byte("ref size")?;
    let topic_size = r.byte("topic size")?;
    let event_size = r.byte("event size")?;
    let metadata_size = r.byte("metadata size")?;
    let encoding = BroadcastEncoding::from_byte(r.byte("encoding")?);
    let join_ref = r.string(join_ref_size, "join_ref")?;
    let msg_ref = r.string(ref_size, "ref")?;
    let topic = r.string(topic_size, "topic")?;
    let event = r.string(event_size, "event")?;
    let metadata = r.take(metadata_size, "metadata")?;
    if !metadata.is_empty() && serde_json::from_slice::<serde_json::Value>(metadata).is_err() {
        return Err(DecodeError::MalformedBinary("metadata is not JSON"));
    }
    Ok(UserBroadcast {
        join_ref: Some(join_ref),
        msg_ref: Some(msg_ref),
        topic,
        event,
        metadata: Bytes::copy_from_slice(metadata),
        encoding,
        payload: Bytes::copy_from_slice(r.0),
    })
}

/// Writes a kind-4 frame:
/// `4, topic_size, event_size, metadata_size, encoding, topic, event, metadata, payload…`.
///
/// `None` when the topic, event or metadata is longer than 255 bytes (upstream fails the
/// fan-out; receivers of such a message are skipped instead).
pub fn encode_user_broadcast(ub: &UserBroadcast) -> Option<Bytes> {
    let topic_size = header_len(ub.topic.as_bytes())?;
    let event_size = header_len(ub.event.as_bytes())?;
    let metadata_size = header_len(&ub.metadata)?;
    let len = 5 + ub.topic.len() + ub.event.len() + ub.metadata.len() + ub.payload.len();
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(KIND_USER_BROADCAST);
    out.put_u8(topic_size);
    out.put_u8(event_size);
    out.put_u8(metadata_size);
    out.put_u8(ub.encoding.byte());
    out.put_slice(ub.topic.as_bytes());
    out.put_slice(ub.event.as_bytes());
    out.put_slice(&ub.metadata);
    out.put_slice(&ub.payload);
    Some(out.freeze())
}

/// Writes a kind-3 frame, as realtime-js does for `channel.send` on a vsn 2.0.0 socket. The
/// server never sends this; it exists for tests, load generators and fuzz round trips. `None`
/// when a header string is longer than 255 bytes; absent refs are written as empty strings.
pub fn encode_user_broadcast_push(ub: &UserBroadcast) -> Option<Bytes> {
    let join_ref = ub.join_ref.as_deref().unwrap_or("");
    let msg_ref = ub.msg_ref.as_deref().unwrap_or("");
    let mut out = BytesMut::with_capacity(
        7 + join_ref.len()
            + msg_ref.len()
            + ub.topic.len()
            + ub.event.len()
            + ub.metadata.len()
            + ub.payload.len(),
    );
    out.put_u8(KIND_USER_BROADCAST_PUSH);
    out.put_u8(header_len(join_ref.as_bytes())?);
    out.put_u8(header_len(msg_ref.as_bytes())?);
    out.put_u8(header_len(ub.topic.as_bytes())?);
    out.put_u8(header_len(ub.event.as_bytes())?);
    out.put_u8(header_len(&ub.metadata)?);
    out.put_u8(ub.encoding.byte());
    out.put_slice(join_ref.as_bytes());
    out.put_slice(msg_ref.as_bytes());
    out.put_slice(ub.topic.as_bytes());
    out.put_slice(ub.event.as_bytes());
    out.put_slice(&ub.metadata);
    out.put_slice(&ub.payload);
    Some(out.freeze())
}

/// Reads a kind-4 frame back, as realtime-js does. Used by tests and load generators.
pub fn decode_user_broadcast(frame: &[u8]) -> Result<UserBroadcast, DecodeError> {
    let mut r = Reader(frame);
    if r.byte("kind")? != KIND_USER_BROADCAST {
        return Err(DecodeError::MalformedBinary("unsupported kind"));
    }
    let topic_size = r.byte("topic size")?;
    let event_size = r.byte("event size")?;
    let metadata_size = r.byte("metadata size")?;
    let encoding = BroadcastEncoding::from_byte(r.byte("encoding")?);
    let topic = r.string(topic_size, "topic")?;
    let event = r.string(event_size, "event")?;
    let metadata = Bytes::copy_from_slice(r.take(metadata_size, "metadata")?);
    Ok(UserBroadcast {
        join_ref: None,
        msg_ref: None,
        topic,
        event,
        metadata,
        encoding,
        payload: Bytes::copy_from_slice(r.0),
    })
}

fn header_len(s: &[u8]) -> Option<u8> {
    u8::try_from(s.len()).ok()
}

/// A cursor over the frame that fails instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .0
            .split_first()
            .ok_or(DecodeError::MalformedBinary(what))?;
        self.0 = rest;
        Ok(b)
    }

    fn take(&mut self, n: u8, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(n);
        if self.0.len() < n {
            return Err(DecodeError::MalformedBinary(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self, n: u8, what: &'static str) -> Result<String, DecodeError> {
        let raw = self.take(n, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::MalformedBinary(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PROTOCOL.md §2.4 worked example: `{x:1}` as `cursor` on `realtime:room1`, refs 3 and 7.
    fn worked_example_push() -> Vec<u8> {
        let mut f = vec![0x03, 0x01, 0x01, 0x0e, 0x06, 0x00, 0x01];
        f.extend_from_slice(b"37realtime:room1cursor{\"x\":1}");
        f
    }

    fn worked_example_broadcast() -> Vec<u8> {
        let mut f = vec![0x04, 0x0e, 0x06, 0x00, 0x01];
        f.extend_from_slice(b"realtime:room1cursor{\"x\":1}");
        f
    }

    #[test]
    fn decodes_worked_example_kind_3() {
        let ub = decode_user_broadcast_push(&worked_example_push()).unwrap();
        assert_eq!(ub.join_ref.as_deref(), Some("3"));
        assert_eq!(ub.msg_ref.as_deref(), Some("7"));
        assert_eq!(ub.topic, "realtime:room1");
        assert_eq!(ub.event, "cursor");
        assert!(ub.metadata.is_empty());
        assert_eq!(ub.encoding, BroadcastEncoding::Json);
        assert_eq!(&ub.payload[..], b"{\"x\":1}");
    }

    #[test]
    fn encodes_worked_example_kind_4() {
        let ub = decode_user_broadcast_push(&worked_example_push()).unwrap();
        assert_eq!(
            encode_user_broadcast(&ub).unwrap(),
            worked_example_broadcast()
        );
        assert_eq!(
            encode_user_broadcast_push(&ub).unwrap(),
            worked_example_push()
        );
    }

    #[test]
    fn binary_encoding_and_metadata() {
        let mut f = vec![3, 0, 1, 1, 1, 8, 0];
        f.extend_from_slice(b"2te{\"id\":1}");
        f.extend_from_slice(&[0xde, 0xad]);
        let ub = decode_user_broadcast_push(&f).unwrap();
        assert_eq!(ub.join_ref.as_deref(), Some(""));
        assert_eq!(ub.encoding, BroadcastEncoding::Binary);
        assert_eq!(&ub.metadata[..], b"{\"id\":1}");
        assert_eq!(&ub.payload[..], &[0xde, 0xad]);
        let out = encode_user_broadcast(&ub).unwrap();
        let mut want = vec![4, 1, 1, 8, 0];
        want.extend_from_slice(b"te{\"id\":1}");
        want.extend_from_slice(&[0xde, 0xad]);
        assert_eq!(out, want);
        assert_eq!(decode_user_broadcast(&out).unwrap().payload, ub.payload);
    }

    #[test]
    fn any_non_zero_encoding_is_json() {
        let mut f = vec![3, 0, 0, 1, 1, 0, 7];
        f.extend_from_slice(b"te1");
        assert_eq!(
            decode_user_broadcast_push(&f).unwrap().encoding,
            BroadcastEncoding::Json
        );
    }

    #[test]
    fn rejects_truncated_unknown_and_invalid_frames() {
        let good = worked_example_push();
        for n in 0..(7 + 1 + 1 + 14 + 6) {
            assert!(
                decode_user_broadcast_push(&good[..n]).is_err(),
                "prefix {n}"
            );
        }
        assert!(decode_user_broadcast_push(&good).is_ok());
        for kind in [0u8, 1, 2, 4, 5, 255] {
            let mut f = good.clone();
            f[0] = kind;
            assert!(decode_user_broadcast_push(&f).is_err(), "kind {kind}");
        }
        // Metadata that is not JSON.
        let mut f = vec![3, 0, 0, 1, 1, 2, 1];
        f.extend_from_slice(b"te{x");
        assert!(decode_user_broadcast_push(&f).is_err());
        // Topic that is not UTF-8.
        let f = vec![3, 0, 0, 1, 1, 0, 1, 0xff, b'e'];
        assert!(decode_user_broadcast_push(&f).is_err());
    }

    #[test]
    fn long_headers_are_not_encodable() {
        let ub = UserBroadcast {
            join_ref: None,
            msg_ref: None,
            topic: format!("realtime:{}", "a".repeat(246)),
            event: "e".repeat(255),
            metadata: Bytes::new(),
            encoding: BroadcastEncoding::Binary,
            payload: Bytes::new(),
        };
        assert_eq!(ub.topic.len(), 255);
        assert!(encode_user_broadcast(&ub).is_some());
        let long_topic = UserBroadcast {
            topic: format!("{}x", ub.topic),
            ..ub.clone()
        };
        assert!(encode_user_broadcast(&long_topic).is_none());
        let long_event = UserBroadcast {
            event: "é".repeat(128),
            ..ub.clone()
        };
        assert!(encode_user_broadcast(&long_event).is_none());
        let long_meta = UserBroadcast {
            metadata: Bytes::from(format!("\"{}\"", "m".repeat(254))),
            ..ub
        };
        assert!(encode_user_broadcast(&long_meta).is_none());
    }
}
