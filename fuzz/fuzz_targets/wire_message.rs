//! The peer wire decoder must turn any bytes into a message or an error: no panic, no
//! unbounded allocation; and whatever it accepts re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm::wire::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        assert_eq!(msg.encode(), data, "accepted bytes re-encode identically");
    }
});
