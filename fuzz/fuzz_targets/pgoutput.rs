//! Fuzzes the pgoutput decoder: any byte string is an error or a message, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = realtime_pg::pgoutput::decode(data);
});
