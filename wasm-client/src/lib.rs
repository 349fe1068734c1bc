//! Shoal's browser peer. The wasm-bindgen glue is not built yet (issue 6); this crate only
//! checks that the swarm state machine links for wasm32.
pub use swarm;
