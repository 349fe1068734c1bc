//! The signaling endpoint: `GET /ws` upgrades to a WebSocket speaking
//! [`signaling::protocol`]. Peers join a channel room, get neighbours from that channel's
//! tracker, and exchange offers, answers and ICE candidates with peers of the same channel.
//!
//! State has one owner per piece: each channel's tracker lives in that channel's task
//! (`room`), each peer's outbound queue in its [`mailbox`], shared maps in [`hub`] are only
//! locked for a lookup or an insert. Each connection is one task (`conn`) with small buffers, so
//! a connected peer costs a few KiB of server memory.

mod config;
mod conn;
mod directory;
mod hub;
mod mailbox;
mod room;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub use config::SignalConfig;
pub use directory::{ChannelDirectory, ChannelInfo, StaticDirectory};
pub use stats::SignalStats;

use hub::Hub;

/// Socket read buffer: signaling messages are small; larger ones grow it on demand.
const READ_BUFFER: usize = 1024;

/// Handle to the signaling service; cheap to clone.
#[derive(Clone)]
pub struct Signal {
    hub: Arc<Hub>,
}

impl Signal {
    /// A signaling service with these limits, resolving channels through `directory`.
    pub fn new(config: SignalConfig, directory: Arc<dyn ChannelDirectory>) -> Self {
        Signal {
            hub: Arc::new(Hub::new(config, directory)),
        }
    }

    /// The routes it serves (`/ws`), to merge into the server's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ws", get(upgrade))
            .with_state(self.clone())
    }

    /// The limits in force.
    pub fn config(&self) -> &SignalConfig {
        &self.hub.config
    }

    /// Counters for the metrics endpoint.
    pub fn stats(&self) -> &SignalStats {
        &self.hub.stats
    }

    /// Peers joined to `channel` now.
    pub fn viewers(&self, channel: &str) -> usize {
        self.hub.viewers(channel)
    }

    /// Every channel with peers now, with its peer count, sorted by name.
    pub fn channels(&self) -> Vec<(String, usize)> {
        self.hub.channels()
    }

    /// Closes every signaling socket (close code 1001) and refuses new ones, then waits up to
    /// `grace` for the connections to finish.
    pub async fn shutdown(&self, grace: Duration) {
        self.hub.shutdown();
        let deadline = tokio::time::Instant::now() + grace;
        while self.hub.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn upgrade(State(signal): State<Signal>, ws: WebSocketUpgrade) -> Response {
    let max = signal.hub.config.max_message_bytes;
    // Frames a little over the limit still arrive whole, so the peer gets a `too_large`
    // error; far larger ones end the socket inside the WebSocket codec.
    let hard_cap = max.saturating_mul(2).max(4096);
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .on_upgrade(move |socket| conn::serve(socket, signal.hub))
}
