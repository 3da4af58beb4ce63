//! Property-style round trips and robustness checks over generated messages and frames.
//!
//! A small seeded generator keeps the cases reproducible without extra dependencies.

use bytes::Bytes;
use realtime_protocol::binary;
use realtime_protocol::{
    decode, encode, BroadcastEncoding, Frame, InFrame, Inbound, Message, Outbound, UserBroadcast,
    Vsn,
};
use serde_json::{Map, Value};

const CASES: usize = 2_000;

/// xorshift64*: deterministic, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn string(&mut self, max: u64) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            ":",
            " ",
            "\"",
            "\\",
            "/",
            "\n",
            "\t",
            "\u{0}",
            "\u{1f}",
            "é",
            "€",
            "😀",
            "realtime:",
            "phx_",
            "{",
            "]",
            "\u{2028}",
        ];
        let len = self.below(max + 1);
        (0..len)
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }

    fn opt_string(&mut self) -> Option<String> {
        (self.below(3) != 0).then(|| self.string(6))
    }

    fn value(&mut self, depth: u32) -> Value {
        let leaf_only = depth == 0;
        match self.below(if leaf_only { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 0),
            2 => Value::from(self.next() as i64),
            // Quarters print and parse back exactly.
            3 => Value::from((self.next() % 1_000_000) as f64 / 4.0 - 1000.0),
            4 => Value::from(self.string(8)),
            5 => (0..self.below(4)).map(|_| self.value(depth - 1)).collect(),
            _ => {
                let mut map = Map::new();
                for _ in 0..self.below(4) {
                    map.insert(self.string(5), self.value(depth - 1));
                }
                Value::Object(map)
            }
        }
    }

    fn message(&mut self) -> Message {
        Message::new(
            self.opt_string(),
            self.opt_string(),
            self.string(20),
            self.string(10),
            self.value(3),
        )
    }

    fn bytes(&mut self, max: u64) -> Vec<u8> {
        (0..self.below(max + 1))
            .map(|_| self.next() as u8)
            .collect()
    }

    fn user_broadcast(&mut self) -> UserBroadcast {
        let encoding = if self.below(2) == 0 {
            BroadcastEncoding::Json
        } else {
            BroadcastEncoding::Binary
        };
        let payload = match encoding {
            BroadcastEncoding::Json => serde_json::to_vec(&self.value(3)).unwrap(),
            BroadcastEncoding::Binary => self.bytes(64),
        };
        let metadata = if self.below(2) == 0 {
            Vec::new()
        } else {
            let mut meta = Map::new();
            meta.insert("id".into(), Value::from(self.string(8)));
            serde_json::to_vec(&meta).unwrap()
        };
        UserBroadcast {
            join_ref: Some(self.string(4)),
            msg_ref: Some(self.string(4)),
            topic: self.string(30),
            event: self.string(10),
            metadata: Bytes::from(metadata),
            encoding,
            payload: Bytes::from(payload),
        }
    }
}

fn decoded_message(vsn: Vsn, frame: &Frame) -> Message {
    let inbound = match frame {
        Frame::Text(b) => decode(vsn, InFrame::Text(std::str::from_utf8(b).unwrap())),
        Frame::Binary(b) => decode(vsn, InFrame::Binary(b)),
    };
    match inbound {
        Ok(Inbound::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn v2_text_round_trips_every_field() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..CASES {
        let m = rng.message();
        let frame = encode(Vsn::V2, &Outbound::Message(m.clone())).unwrap();
        assert!(!frame.is_binary());
        assert_eq!(decoded_message(Vsn::V2, &frame), m);
    }
}

#[test]
fn v1_round_trips_everything_but_join_ref() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..CASES {
        let m = rng.message();
        let frame = encode(Vsn::V1, &Outbound::Message(m.clone())).unwrap();
        let back = decoded_message(Vsn::V1, &frame);
        assert_eq!(
            back,
            Message {
                join_ref: None,
                ..m
            }
        );
        // The same bytes sent as a binary frame decode identically on vsn 1.0.0.
        assert_eq!(
            decoded_message(Vsn::V1, &Frame::Binary(frame.bytes().clone())),
            back
        );
    }
}

#[test]
fn user_broadcasts_round_trip_through_kinds_3_and_4() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for _ in 0..CASES {
        let ub = rng.user_broadcast();
        let fits = ub.topic.len() <= 255
            && ub.event.len() <= 255
            && ub.join_ref.as_ref().is_some_and(|r| r.len() <= 255)
            && ub.msg_ref.as_ref().is_some_and(|r| r.len() <= 255);
        let Some(push) = binary::encode_user_broadcast_push(&ub) else {
            assert!(!fits);
            continue;
        };
        let Ok(Inbound::UserBroadcast(back)) = decode(Vsn::V2, InFrame::Binary(&push)) else {
            panic!("kind 3 did not decode")
        };
        assert_eq!(back, ub);
        let out = Outbound::UserBroadcast(back);
        let Some(Frame::Binary(kind4)) = encode(Vsn::V2, &out) else {
            panic!("kind 4 not produced")
        };
        let seen = binary::decode_user_broadcast(&kind4).unwrap();
        assert_eq!(
            seen,
            UserBroadcast {
                join_ref: None,
                msg_ref: None,
                ..ub.clone()
            }
        );
        // vsn 1.0.0 gets JSON user broadcasts as an object wrapping the same payload value.
        match (ub.encoding, encode(Vsn::V1, &out)) {
            (BroadcastEncoding::Binary, None) => {}
            (BroadcastEncoding::Json, Some(frame)) => {
                let m = decoded_message(Vsn::V1, &frame);
                assert_eq!(m.event, "broadcast");
                assert_eq!(m.topic, ub.topic);
                let want: Value = serde_json::from_slice(&ub.payload).unwrap();
                assert_eq!(m.payload["payload"], want);
                assert_eq!(m.payload["event"], Value::from(ub.event.clone()));
                assert_eq!(m.payload["type"], "broadcast");
                assert_eq!(m.payload.get("meta").is_some(), !ub.metadata.is_empty());
            }
            (enc, got) => panic!("{enc:?} gave {got:?}"),
        }
    }
}

#[test]
fn random_input_never_panics() {
    let mut rng = Rng(42);
    for _ in 0..CASES * 5 {
        let raw = rng.bytes(48);
        let text = String::from_utf8_lossy(&raw);
        for vsn in [Vsn::V1, Vsn::V2] {
            let _ = decode(vsn, InFrame::Binary(&raw));
            let _ = decode(vsn, InFrame::Text(&text));
        }
        // Biased towards plausible kind-3 headers so the size checks get exercised.
        let mut framed = raw.clone();
        if let Some(first) = framed.first_mut() {
            *first = 3;
        }
        let _ = decode(Vsn::V2, InFrame::Binary(&framed));
    }
}

#[test]
fn every_truncation_of_a_valid_frame_is_an_error() {
    let mut rng = Rng(7);
    for _ in 0..200 {
        let ub = rng.user_broadcast();
        let Some(push) = binary::encode_user_broadcast_push(&ub) else {
            continue;
        };
        let header = 7
            + ub.join_ref.as_ref().map_or(0, String::len)
            + ub.msg_ref.as_ref().map_or(0, String::len)
            + ub.topic.len()
            + ub.event.len()
            + ub.metadata.len();
        for n in 0..header {
            assert!(
                decode(Vsn::V2, InFrame::Binary(&push[..n])).is_err(),
                "prefix {n} of {push:?}"
            );
        }
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let deep = format!(
        "[null,null,\"t\",\"e\",{}{}]",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(decode(Vsn::V2, InFrame::Text(&deep)).is_err());
    let deep = format!(
        "{{\"topic\":\"t\",\"event\":\"e\",\"ref\":null,\"payload\":{}{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(decode(Vsn::V1, InFrame::Text(&deep)).is_err());
}
