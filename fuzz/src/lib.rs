//! Oracles shared by the fuzz targets.

use realtime_protocol::{decode, Frame, InFrame, Inbound, Message, Vsn};
use serde_json::Value;

/// JSON equality that tolerates a last-digit difference in floats: serde_json's default float
/// parser may land one ULP away from the shortest representation it printed.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y || (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Whether two messages agree field by field (payloads compared with [`same_json`]).
pub fn same_message(a: &Message, b: &Message) -> bool {
    a.join_ref == b.join_ref
        && a.msg_ref == b.msg_ref
        && a.topic == b.topic
        && a.event == b.event
        && same_json(&a.payload, &b.payload)
}

/// Decodes an encoded frame back into a message; panics when it does not decode as one, since a
/// frame the server wrote must always be readable by the same serializer.
pub fn reread(vsn: Vsn, frame: &Frame) -> Message {
    let inbound = match frame {
        Frame::Text(b) => match std::str::from_utf8(b) {
            Ok(text) => decode(vsn, InFrame::Text(text)),
            Err(e) => panic!("encoder wrote invalid UTF-8: {e}"),
        },
        Frame::Binary(b) => decode(vsn, InFrame::Binary(b)),
    };
    match inbound {
        Ok(Inbound::Message(m)) => m,
        other => panic!("re-encoded frame did not decode as a message: {other:?}"),
    }
}
