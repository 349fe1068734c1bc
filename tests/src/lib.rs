//! Shoal's workspace tests: the swarm simulator and load generators.
#![warn(missing_docs)]

pub mod sim;
