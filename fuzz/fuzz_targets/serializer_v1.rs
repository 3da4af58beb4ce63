//! Fuzzes the vsn 1.0.0 serializer: decode text and binary frames, re-encode what decoded and
//! check the result reads back the same (without `join_ref`, which vsn 1.0.0 never sends).
#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime_fuzz::{reread, same_message};
use realtime_protocol::{decode, encode, InFrame, Inbound, Message, Outbound, Vsn};

fn check(inbound: Inbound) {
    let Inbound::Message(m) = inbound else {
        panic!("vsn 1.0.0 produced a user broadcast");
    };
    let Some(frame) = encode(Vsn::V1, &Outbound::Message(m.clone())) else {
        panic!("a decoded message must be encodable");
    };
    let back = reread(Vsn::V1, &frame);
    let want = Message {
        join_ref: None,
        ..m
    };
    assert!(same_message(&back, &want), "{back:?} != {want:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(inbound) = decode(Vsn::V1, InFrame::Binary(data)) {
        check(inbound);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(inbound) = decode(Vsn::V1, InFrame::Text(text)) {
            check(inbound);
        }
    }
});
