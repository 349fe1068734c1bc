//! Bytes from a WebSocket client, split at arbitrary points: the signaling server's frame
//! decoder never panics and never yields a message over its cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shoal::signal::fuzz_ws_frames(data));
