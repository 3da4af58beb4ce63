//! vsn 1.0.0: JSON objects in text frames (PROTOCOL.md §2.2).
//!
//! Outbound objects never carry `join_ref`, so realtime-js accepts every message for the topic.
//! Keys come out sorted (`event`, `payload`, `ref`, `topic`), as upstream's encoder writes them.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::codec::{DecodeError, Frame, InFrame};
use crate::message::{
    ref_field, string_field, BroadcastEncoding, Inbound, Message, Outbound, UserBroadcast,
};

/// Decodes an inbound vsn 1.0.0 frame. Binary frames are read as JSON text too, like upstream.
pub fn decode(frame: InFrame<'_>) -> Result<Inbound, DecodeError> {
    let value: Value = match frame {
        InFrame::Text(text) => serde_json::from_str(text),
        InFrame::Binary(bytes) => serde_json::from_slice(bytes),
    }
    .map_err(|_| DecodeError::Malformed("invalid JSON"))?;
    let Value::Object(mut map) = value else {
        return Err(DecodeError::Malformed("expected a JSON object"));
    };
    let mut take = |key: &'static str| map.remove(key).ok_or(DecodeError::Malformed(key));
    let topic = string_field(take("topic")?, "topic")?;
    let event = string_field(take("event")?, "event")?;
    let payload = take("payload")?;
    let msg_ref = ref_field(take("ref")?, "ref")?;
    let join_ref = match map.remove("join_ref") {
        Some(v) => ref_field(v, "join_ref")?,
        None => None,
    };
    Ok(Inbound::Message(Message {
        join_ref,
        msg_ref,
        topic,
        event,
        payload,
    }))
}

/// Encodes an outbound message as a vsn 1.0.0 JSON object; `None` for binary user broadcasts
/// (never delivered to vsn 1.0.0) and for JSON user broadcasts whose bytes are not valid JSON.
pub fn encode(msg: &Outbound) -> Option<Frame> {
    match msg {
        Outbound::Message(m) => {
            let obj = Object {
                event: &m.event,
                payload: &m.payload,
                msg_ref: m.msg_ref.as_deref(),
                topic: &m.topic,
            };
            // Serializing a `Value` into a Vec cannot fail (string keys only).
            serde_json::to_vec(&obj).ok().map(|v| Frame::Text(v.into()))
        }
        Outbound::Raw(m) => {
            let obj = Object {
                event: &m.event,
                payload: &*m.payload,
                msg_ref: m.msg_ref.as_deref(),
                topic: &m.topic,
            };
            serde_json::to_vec(&obj).ok().map(|v| Frame::Text(v.into()))
        }
        Outbound::UserBroadcast(ub) => encode_user_broadcast(ub),
    }
}

/// The outbound object; field order is the sorted key order.
#[derive(Serialize)]
struct Object<'a, P: Serialize> {
    event: &'a str,
    payload: P,
    #[serde(rename = "ref")]
    msg_ref: Option<&'a str>,
    topic: &'a str,
}

/// The JSON form of a user broadcast (upstream `UserBroadcast.convert_to_json_broadcast`).
#[derive(Serialize)]
struct UserBroadcastPayload<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Map<String, Value>>,
    payload: &'a RawValue,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A JSON user broadcast becomes a `broadcast` event whose payload embeds the user's JSON bytes
/// as they are (upstream inserts them as a raw fragment, without re-encoding).
fn encode_user_broadcast(ub: &UserBroadcast) -> Option<Frame> {
    if ub.encoding != BroadcastEncoding::Json {
        return None;
    }
    let payload: &RawValue = serde_json::from_slice(&ub.payload).ok()?;
    let meta = if ub.metadata.is_empty() {
        None
    } else {
        // Upstream holds metadata as a map and re-encodes it; anything but an object is not
        // something it could have produced.
        match serde_json::from_slice(&ub.metadata).ok()? {
            Value::Object(map) => Some(map),
            _ => return None,
        }
    };
    let obj = Object {
        event: "broadcast",
        payload: UserBroadcastPayload {
            event: &ub.event,
            meta,
            payload,
            kind: "broadcast",
        },
        msg_ref: None,
        topic: &ub.topic,
    };
    serde_json::to_vec(&obj)
        .ok()
        .map(|v| Frame::Text(Bytes::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(frame: Option<Frame>) -> String {
        match frame {
            Some(Frame::Text(b)) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    fn msg(inbound: Result<Inbound, DecodeError>) -> Message {
        match inbound {
            Ok(Inbound::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn decodes_heartbeat_without_join_ref() {
        let m = msg(decode(InFrame::Text(
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"5"}"#,
        )));
        assert_eq!(
            m,
            Message::new(None, Some("5".into()), "phoenix", "heartbeat", json!({}))
        );
    }

    #[test]
    fn decodes_join_ref_and_null_ref() {
        let m = msg(decode(InFrame::Text(
            r#"{"join_ref":"1","ref":null,"topic":"realtime:a","event":"x","payload":[1],"extra":0}"#,
        )));
        assert_eq!(m.join_ref.as_deref(), Some("1"));
        assert_eq!(m.msg_ref, None);
        assert_eq!(m.payload, json!([1]));
    }

    #[test]
    fn decodes_binary_frames_as_json_text() {
        let m = msg(decode(InFrame::Binary(
            br#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"7"}"#,
        )));
        assert_eq!(m.msg_ref.as_deref(), Some("7"));
        assert!(decode(InFrame::Binary(&[3, 1, 1, 14, 6, 0, 1])).is_err());
    }

    #[test]
    fn rejects_missing_keys_wrong_types_and_non_objects() {
        for bad in [
            "hello",
            "",
            "[null,\"1\",\"phoenix\",\"heartbeat\",{}]",
            r#"{"event":"heartbeat","payload":{},"ref":"5"}"#,
            r#"{"topic":"phoenix","payload":{},"ref":"5"}"#,
            r#"{"topic":"phoenix","event":"heartbeat","ref":"5"}"#,
            r#"{"topic":"phoenix","event":"heartbeat","payload":{}}"#,
            r#"{"topic":1,"event":"heartbeat","payload":{},"ref":"5"}"#,
            r#"{"topic":"phoenix","event":null,"payload":{},"ref":"5"}"#,
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":5}"#,
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"5","join_ref":{}}"#,
        ] {
            assert!(decode(InFrame::Text(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_reply_with_sorted_keys_and_no_join_ref() {
        let m = Message::new(
            Some("1".into()),
            Some("5".into()),
            "phoenix",
            "phx_reply",
            json!({"status":"ok","response":{}}),
        );
        assert_eq!(
            text(encode(&Outbound::Message(m))),
            r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"5","topic":"phoenix"}"#
        );
    }

    #[test]
    fn encodes_null_ref_for_pushes() {
        let m = Message::new(
            None,
            None,
            "realtime:room1",
            "broadcast",
            json!({"type":"broadcast","event":"e","payload":{"n":1}}),
        );
        assert_eq!(
            text(encode(&Outbound::Message(m))),
            r#"{"event":"broadcast","payload":{"event":"e","payload":{"n":1},"type":"broadcast"},"ref":null,"topic":"realtime:room1"}"#
        );
    }

    fn user_broadcast(encoding: BroadcastEncoding, metadata: &str, payload: &[u8]) -> Outbound {
        Outbound::UserBroadcast(UserBroadcast {
            join_ref: None,
            msg_ref: None,
            topic: "realtime:room1".into(),
            event: "cursor".into(),
            metadata: Bytes::copy_from_slice(metadata.as_bytes()),
            encoding,
            payload: Bytes::copy_from_slice(payload),
        })
    }

    #[test]
    fn encodes_json_user_broadcast_as_broadcast_event() {
        let out = user_broadcast(BroadcastEncoding::Json, "", br#"{"x":1}"#);
        assert_eq!(
            text(encode(&out)),
            r#"{"event":"broadcast","payload":{"event":"cursor","payload":{"x":1},"type":"broadcast"},"ref":null,"topic":"realtime:room1"}"#
        );
    }

    #[test]
    fn user_broadcast_keeps_payload_bytes_and_sorts_meta() {
        let out = user_broadcast(
            BroadcastEncoding::Json,
            r#"{"replayed":true,"id":"9"}"#,
            br#"{"b": 1, "a": 2}"#,
        );
        assert_eq!(
            text(encode(&out)),
            r#"{"event":"broadcast","payload":{"event":"cursor","meta":{"id":"9","replayed":true},"payload":{"b": 1, "a": 2},"type":"broadcast"},"ref":null,"topic":"realtime:room1"}"#
        );
    }

    #[test]
    fn user_broadcast_payload_is_embedded_even_beyond_f64_range() {
        // Upstream inserts the bytes as a raw fragment; JSON.parse reads `1e999` as Infinity.
        let out = user_broadcast(BroadcastEncoding::Json, "", b" 1e999 ");
        assert_eq!(
            text(encode(&out)),
            r#"{"event":"broadcast","payload":{"event":"cursor","payload":1e999,"type":"broadcast"},"ref":null,"topic":"realtime:room1"}"#
        );
    }

    #[test]
    fn binary_or_invalid_user_broadcasts_are_not_delivered() {
        assert_eq!(
            encode(&user_broadcast(
                BroadcastEncoding::Binary,
                "",
                &[0xde, 0xad]
            )),
            None
        );
        assert_eq!(
            encode(&user_broadcast(BroadcastEncoding::Json, "", b"{nope")),
            None
        );
        assert_eq!(
            encode(&user_broadcast(BroadcastEncoding::Json, "[1]", b"{}")),
            None
        );
    }

    #[test]
    fn raw_payload_text_is_written_byte_for_byte() {
        let payload: Box<RawValue> =
            RawValue::from_string(r#"{"data":{"record":{"j": {"a": 1}}},"ids":[7]}"#.into())
                .unwrap();
        let out = Outbound::Raw(crate::message::RawMessage {
            join_ref: Some("1".into()),
            msg_ref: None,
            topic: "realtime:room1".into(),
            event: "postgres_changes".into(),
            payload: payload.into(),
        });
        assert_eq!(
            text(encode(&out)),
            r#"{"event":"postgres_changes","payload":{"data":{"record":{"j": {"a": 1}}},"ids":[7]},"ref":null,"topic":"realtime:room1"}"#
        );
    }
}
