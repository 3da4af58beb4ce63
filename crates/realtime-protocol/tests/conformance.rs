//! Frame-level cases of PROTOCOL.md §16 that the serializers alone decide.

use bytes::Bytes;
use realtime_protocol::{
    decode, encode, reply, BroadcastEncoding, Frame, InFrame, Inbound, Message, Outbound,
    UserBroadcast, Vsn,
};
use serde_json::json;

fn text(frame: Option<Frame>) -> String {
    match frame {
        Some(Frame::Text(b)) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn message(inbound: Inbound) -> Message {
    match inbound {
        Inbound::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn worked_example_push() -> Vec<u8> {
    let mut f = vec![0x03, 0x01, 0x01, 0x0e, 0x06, 0x00, 0x01];
    f.extend_from_slice(b"37realtime:room1cursor{\"x\":1}");
    f
}

/// §16 case 13: vsn 2.0.0 heartbeat and its reply.
#[test]
fn heartbeat_v2() {
    let m = message(
        decode(
            Vsn::V2,
            InFrame::Text(r#"[null,"5","phoenix","heartbeat",{}]"#),
        )
        .unwrap(),
    );
    assert_eq!(
        (m.topic.as_str(), m.event.as_str()),
        ("phoenix", "heartbeat")
    );
    assert_eq!(
        text(encode(Vsn::V2, &reply::heartbeat(m.msg_ref).into())),
        r#"[null,"5","phoenix","phx_reply",{"response":{},"status":"ok"}]"#
    );
}

/// §16 case 14: vsn 1.0.0 heartbeat, the reply has no `join_ref` key.
#[test]
fn heartbeat_v1() {
    let m = message(
        decode(
            Vsn::V1,
            InFrame::Text(r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"5"}"#),
        )
        .unwrap(),
    );
    assert_eq!(
        text(encode(Vsn::V1, &reply::heartbeat(m.msg_ref).into())),
        r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"5","topic":"phoenix"}"#
    );
}

/// §16 case 16: a non-JSON text frame is an error, not a panic.
#[test]
fn garbage_text_is_dropped() {
    assert!(decode(Vsn::V2, InFrame::Text("hello")).is_err());
    assert!(decode(Vsn::V1, InFrame::Text("hello")).is_err());
}

/// §16 case 38: a JSON broadcast relayed as a fan-out frame.
#[test]
fn json_broadcast_fan_out() {
    let m = message(
        decode(
            Vsn::V2,
            InFrame::Text(
                r#"["1","2","realtime:room1","broadcast",{"type":"broadcast","event":"e","payload":{"n":1}}]"#,
            ),
        )
        .unwrap(),
    );
    let out = Message::new(None, None, m.topic, m.event, m.payload);
    assert_eq!(
        text(encode(Vsn::V2, &out.clone().into())),
        r#"[null,null,"realtime:room1","broadcast",{"event":"e","payload":{"n":1},"type":"broadcast"}]"#
    );
    assert_eq!(
        text(encode(Vsn::V1, &out.into())),
        r#"{"event":"broadcast","payload":{"event":"e","payload":{"n":1},"type":"broadcast"},"ref":null,"topic":"realtime:room1"}"#
    );
}

/// §16 case 41 / §2.4 worked example: kind 3 in, kind 4 to vsn 2.0.0, a JSON object to 1.0.0.
#[test]
fn kind_3_to_both_serializers() {
    let Inbound::UserBroadcast(ub) =
        decode(Vsn::V2, InFrame::Binary(&worked_example_push())).unwrap()
    else {
        panic!("expected a user broadcast")
    };
    let out = Outbound::UserBroadcast(UserBroadcast {
        join_ref: None,
        msg_ref: None,
        ..ub
    });
    let mut want = vec![0x04, 0x0e, 0x06, 0x00, 0x01];
    want.extend_from_slice(b"realtime:room1cursor{\"x\":1}");
    assert_eq!(
        encode(Vsn::V2, &out),
        Some(Frame::Binary(Bytes::from(want)))
    );
    assert_eq!(
        text(encode(Vsn::V1, &out)),
        r#"{"event":"broadcast","payload":{"event":"cursor","payload":{"x":1},"type":"broadcast"},"ref":null,"topic":"realtime:room1"}"#
    );
}

/// §16 case 42: binary encoding reaches vsn 2.0.0 only.
#[test]
fn binary_user_broadcast_skips_v1() {
    let mut f = vec![0x03, 0x01, 0x01, 0x0e, 0x06, 0x00, 0x00];
    f.extend_from_slice(b"37realtime:room1cursor");
    f.extend_from_slice(&[0xde, 0xad]);
    let Inbound::UserBroadcast(ub) = decode(Vsn::V2, InFrame::Binary(&f)).unwrap() else {
        panic!("expected a user broadcast")
    };
    assert_eq!(ub.encoding, BroadcastEncoding::Binary);
    let out = Outbound::UserBroadcast(ub);
    let mut want = vec![0x04, 0x0e, 0x06, 0x00, 0x00];
    want.extend_from_slice(b"realtime:room1cursor");
    want.extend_from_slice(&[0xde, 0xad]);
    assert_eq!(
        encode(Vsn::V2, &out),
        Some(Frame::Binary(Bytes::from(want)))
    );
    assert_eq!(encode(Vsn::V1, &out), None);
}

/// §16 case 47: a database broadcast with metadata and Postgres's jsonb text.
#[test]
fn database_broadcast_with_metadata() {
    let out = Outbound::UserBroadcast(UserBroadcast {
        join_ref: None,
        msg_ref: None,
        topic: "realtime:room1".into(),
        event: "ev".into(),
        metadata: Bytes::from_static(br#"{"id":"0b9e9a5e-3d4c-4a7e-9c1f-1f2e3d4c5b6a"}"#),
        encoding: BroadcastEncoding::Json,
        payload: Bytes::from_static(br#"{"a": 1}"#),
    });
    let Some(Frame::Binary(bin)) = encode(Vsn::V2, &out) else {
        panic!("expected binary")
    };
    assert_eq!(&bin[..5], &[4, 14, 2, 45, 1]);
    let v1 = text(encode(Vsn::V1, &out));
    let parsed: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(
        parsed,
        json!({"event":"broadcast","payload":{"event":"ev","meta":{"id":"0b9e9a5e-3d4c-4a7e-9c1f-1f2e3d4c5b6a"},"payload":{"a":1},"type":"broadcast"},"ref":null,"topic":"realtime:room1"})
    );
}

/// §1.2: vsn negotiation follows `~> 1.0.0` / `~> 2.0.0`.
#[test]
fn vsn_negotiation() {
    assert_eq!(Vsn::parse("1.0.0"), Some(Vsn::V1));
    assert_eq!(Vsn::parse("1.0.7"), Some(Vsn::V1));
    assert_eq!(Vsn::parse("2.0.0"), Some(Vsn::V2));
    assert_eq!(Vsn::parse("2.0.1+build"), Some(Vsn::V2));
    for bad in [
        "2.1.0",
        "3.0.0",
        "0.9.0",
        "1.1.0",
        "2.0.0-rc.1",
        "2",
        "2.0",
        "abc",
        "",
    ] {
        assert_eq!(Vsn::parse(bad), None, "{bad}");
    }
    assert_eq!(Vsn::default(), Vsn::V1);
}
