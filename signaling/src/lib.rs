//! Shoal signaling: protocol types and the neighbour-picking tracker.
#![warn(missing_docs)]

pub mod tracker;
