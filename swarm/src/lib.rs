//! Shoal's swarm logic as a sans-IO state machine.
#![warn(missing_docs)]

pub mod chunk;
pub mod codec;
pub mod wire;

pub use chunk::{Chunk, ChunkError, ChunkHeader, VerifyError};
pub use codec::DecodeError;
pub use ed25519_dalek::{SigningKey, VerifyingKey};
