//! vsn 2.0.0: JSON arrays in text frames and binary kinds 3 and 4 (PROTOCOL.md §2.3, §2.4).
//!
//! Text frames are `[join_ref, ref, topic, event, payload]`; binary user broadcasts are laid out
//! by [`crate::binary`].

use serde_json::Value;

use crate::binary;
use crate::codec::{DecodeError, Frame, InFrame};
use crate::message::{ref_field, string_field, Inbound, Message, Outbound};

/// Decodes an inbound vsn 2.0.0 frame: a JSON array (text) or a kind-3 user broadcast (binary).
pub fn decode(frame: InFrame<'_>) -> Result<Inbound, DecodeError> {
    match frame {
        InFrame::Text(text) => decode_text(text).map(Inbound::Message),
        InFrame::Binary(bytes) => {
            binary::decode_user_broadcast_push(bytes).map(Inbound::UserBroadcast)
        }
    }
}

/// Reads `[join_ref, ref, topic, event, payload, ...]`; elements past the fifth are ignored.
fn decode_text(text: &str) -> Result<Message, DecodeError> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| DecodeError::Malformed("invalid JSON"))?;
    let Value::Array(items) = value else {
        return Err(DecodeError::Malformed("expected a JSON array"));
    };
    let mut items = items.into_iter();
    let mut next = || {
        items
            .next()
            .ok_or(DecodeError::Malformed("fewer than 5 elements"))
    };
    let join_ref = ref_field(next()?, "join_ref")?;
    let msg_ref = ref_field(next()?, "ref")?;
    let topic = string_field(next()?, "topic")?;
    let event = string_field(next()?, "event")?;
    let payload = next()?;
    Ok(Message {
        join_ref,
        msg_ref,
        topic,
        event,
        payload,
    })
}

/// Encodes an outbound message: a five-element JSON array, or a kind-4 binary frame for user
/// broadcasts (`None` when one of its header strings exceeds 255 bytes).
pub fn encode(msg: &Outbound) -> Option<Frame> {
    match msg {
        Outbound::Message(m) => {
            let array = (&m.join_ref, &m.msg_ref, &m.topic, &m.event, &m.payload);
            // Serializing a `Value` into a Vec cannot fail (string keys only).
            serde_json::to_vec(&array)
                .ok()
                .map(|v| Frame::Text(v.into()))
        }
        Outbound::Raw(m) => {
            let array = (&m.join_ref, &m.msg_ref, &m.topic, &m.event, &*m.payload);
            serde_json::to_vec(&array)
                .ok()
                .map(|v| Frame::Text(v.into()))
        }
        Outbound::UserBroadcast(ub) => binary::encode_user_broadcast(ub).map(Frame::Binary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{BroadcastEncoding, UserBroadcast};
    use bytes::Bytes;
    use serde_json::json;

    fn text(frame: Option<Frame>) -> String {
        match frame {
            Some(Frame::Text(b)) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    #[test]
    fn decodes_five_elements_and_ignores_extra() {
        let got = decode(InFrame::Text(
            r#"["3","4","realtime:room1","presence",{"type":"presence"},"extra",7]"#,
        ))
        .unwrap();
        assert_eq!(
            got,
            Inbound::Message(Message::new(
                Some("3".into()),
                Some("4".into()),
                "realtime:room1",
                "presence",
                json!({"type":"presence"})
            ))
        );
        let hb = decode(InFrame::Text(r#"[null,"12","phoenix","heartbeat",{}]"#)).unwrap();
        let Inbound::Message(hb) = hb else {
            panic!("expected message")
        };
        assert_eq!(hb.join_ref, None);
        assert_eq!(hb.msg_ref.as_deref(), Some("12"));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "hello",
            "",
            "{}",
            r#"[null,"1","phoenix","heartbeat"]"#,
            r#"[null,"1","phoenix",5,{}]"#,
            r#"[null,"1",null,"heartbeat",{}]"#,
            r#"[1,"1","phoenix","heartbeat",{}]"#,
            r#"[null,true,"phoenix","heartbeat",{}]"#,
            r#"[null,"1","phoenix","heartbeat",{}"#,
        ] {
            assert!(decode(InFrame::Text(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_exactly_five_elements_with_sorted_keys() {
        let reply = Message::new(
            Some("1".into()),
            Some("1".into()),
            "realtime:room1",
            "phx_reply",
            json!({"status":"ok","response":{"postgres_changes":[]}}),
        );
        assert_eq!(
            text(encode(&reply.into())),
            r#"["1","1","realtime:room1","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]"#
        );
        let push = Message::new(
            None,
            None,
            "realtime:room1",
            "broadcast",
            json!({"type":"broadcast","event":"cursor","payload":{"x":1}}),
        );
        assert_eq!(
            text(encode(&push.into())),
            r#"[null,null,"realtime:room1","broadcast",{"event":"cursor","payload":{"x":1},"type":"broadcast"}]"#
        );
    }

    #[test]
    fn user_broadcasts_are_binary_kind_4() {
        let ub = UserBroadcast {
            join_ref: Some("3".into()),
            msg_ref: Some("7".into()),
            topic: "realtime:room1".into(),
            event: "cursor".into(),
            metadata: Bytes::new(),
            encoding: BroadcastEncoding::Json,
            payload: Bytes::from_static(br#"{"x":1}"#),
        };
        match encode(&ub.into()) {
            Some(Frame::Binary(b)) => assert_eq!(b[0], 4),
            other => panic!("expected binary, got {other:?}"),
        }
    }

    #[test]
    fn raw_payload_text_is_written_byte_for_byte() {
        let payload: Box<serde_json::value::RawValue> = serde_json::value::RawValue::from_string(
            r#"{"data":{"j": [1, 2]},"ids":[3,1]}"#.into(),
        )
        .unwrap();
        let out = Outbound::Raw(crate::message::RawMessage {
            join_ref: None,
            msg_ref: None,
            topic: "realtime:room1".into(),
            event: "postgres_changes".into(),
            payload: payload.into(),
        });
        assert_eq!(
            text(encode(&out)),
            r#"[null,null,"realtime:room1","postgres_changes",{"data":{"j": [1, 2]},"ids":[3,1]}]"#
        );
    }
}
