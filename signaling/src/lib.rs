//! Shoal signaling: protocol types and the neighbour-picking tracker.
#![warn(missing_docs)]

pub mod protocol;
pub mod tracker;
