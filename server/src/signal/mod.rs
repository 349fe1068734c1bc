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
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use config::SignalConfig;
pub use directory::{ChannelDirectory, ChannelInfo, StaticDirectory};
pub use stats::SignalStats;

use hub::Hub;

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

    /// The secret that marks the server's own origin seeder: it connects to
    /// `/ws?seeder=TOKEN` and joins its channel's tracker as the seeder.
    pub fn seeder_token(&self) -> &str {
        &self.hub.seeder_token
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

/// Fuzzing entry for the WebSocket frame decoder (remote input): feeds `data` in uneven
/// pieces and drains every frame; must never panic nor hold more than its cap.
#[doc(hidden)]
pub fn fuzz_ws_frames(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cap = 64 + (split as usize) * 8;
    let mut decoder = ws::Decoder::default();
    for piece in rest.chunks(1 + (split as usize % 17)) {
        decoder.extend(piece);
        loop {
            match decoder.next(cap) {
                Ok(Some(ws::Incoming::Data(d))) => assert!(d.len() <= cap),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// `GET /ws`: the WebSocket handshake, then one task serving the socket.
async fn upgrade(State(signal): State<Signal>, mut req: Request) -> Response {
    let accept = match ws::accept_key(req.headers()) {
        Ok(accept) => accept,
        Err(why) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                why,
            )
                .into_response()
        }
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "connection cannot be upgraded").into_response();
    };
    let seeder = req.uri().query().is_some_and(|q| {
        q.split('&')
            .filter_map(|kv| kv.strip_prefix("seeder="))
            .any(|t| constant_time_eq(t.as_bytes(), signal.hub.seeder_token.as_bytes()))
    });
    let max = signal.hub.config.max_message_bytes;
    // Frames a little over the limit still arrive whole, so the peer gets a `too_large`
    // error; larger ones end the socket with 1009 as soon as their header is read.
    let hard_cap = max.saturating_mul(2).max(4096);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = ws::Socket::new(hyper_util::rt::TokioIo::new(upgraded), hard_cap);
                conn::serve(socket, signal.hub, seeder).await;
            }
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
