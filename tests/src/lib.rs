//! Shoal's workspace tests: the swarm simulator and load generators.
