//! Shoal's swarm logic as a sans-IO state machine.
//!
//! A [`Peer`] never reads a clock, opens a socket or spawns a task. The driver (the browser
//! client, the native peer, the simulator) feeds it [`Input`]s with the current time and
//! carries out the [`Output`]s it asks for, draining [`Peer::poll`] after every input.
//!
//! ```
//! use swarm::{chunk::ChunkHeader, Chunk, Config, Input, Output, Peer, SigningKey};
//!
//! let key = SigningKey::from_bytes(&[1; 32]);
//! let mut origin = Peer::new(Config::origin(None), key.verifying_key(), 0, 1);
//! let mut viewer = Peer::new(Config::default(), key.verifying_key(), 0, 2);
//! origin.handle(Input::Connected { peer: 2, seeder: false }, 0);
//! viewer.handle(Input::Connected { peer: 1, seeder: true }, 0);
//!
//! // Deliver every message instantly between the two, until both are quiet.
//! fn shuttle(from: &mut Peer, from_id: u64, to: &mut Peer, now: u64, played: &mut usize) {
//!     while let Some(out) = from.poll() {
//!         match out {
//!             Output::Send { to: to_id, bytes } => {
//!                 to.handle(Input::Message { from: from_id, bytes: &bytes }, now);
//!                 from.handle(Input::Sent { to: to_id, bytes: bytes.len() }, now);
//!             }
//!             Output::Play(_) => *played += 1,
//!             _ => {}
//!         }
//!     }
//! }
//! let mut played = 0;
//! for (i, now) in (0..40u64).map(|i| (i, i * 100_000)) {
//!     if i % 5 == 0 {
//!         let bytes = vec![i as u8; 60_000];
//!         let header = ChunkHeader::sign(&key, i / 5, now, 500_000, true, &bytes).unwrap();
//!         origin.handle(Input::Publish(Chunk { header, bytes }), now);
//!     }
//!     origin.handle(Input::Timeout, now);
//!     viewer.handle(Input::Timeout, now);
//!     for _ in 0..4 {
//!         let mut ignored = 0;
//!         shuttle(&mut origin, 1, &mut viewer, now, &mut ignored);
//!         shuttle(&mut viewer, 2, &mut origin, now, &mut played);
//!     }
//! }
//! assert!(viewer.metrics().chunks_verified >= 6);
//! assert!(played >= 6);
//! ```
#![warn(missing_docs)]

pub mod chunk;
pub mod codec;
mod config;
mod metrics;
mod peer;
mod store;
pub mod wire;

pub use chunk::{
    public_key_from_hex, Chunk, ChunkError, ChunkHeader, Playable, Verified, VerifyError,
};
pub use codec::DecodeError;
pub use config::Config;
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use metrics::{Metrics, Source};
pub use peer::{DropReason, Event, Input, Output, Peer, PeerId, Time};
