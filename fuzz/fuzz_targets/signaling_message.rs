//! Any bytes a peer sends over the signaling WebSocket: parsing never panics, and whatever
//! parses survives an encode/parse round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::protocol::{encode_client, parse_client};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = parse_client(data) {
        let again = parse_client(encode_client(&msg).as_bytes());
        assert_eq!(again.as_ref(), Ok(&msg));
    }
});
