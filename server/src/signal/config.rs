//! Signaling limits and settings, parsed from the command line (`shoal serve --help`).

use std::time::Duration;

use clap::Args;
use signaling::protocol::IceServer;
use signaling::tracker::TrackerConfig;

/// Limits of the signaling endpoint. Every field has a default fit for a public server.
#[derive(Debug, Clone, Args)]
pub struct SignalConfig {
    /// Largest signaling message accepted, in bytes; a larger one gets a `too_large` error and
    /// the socket is closed (1009).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_message_bytes: usize,
    /// Messages per second a socket may send on average.
    #[arg(long, default_value_t = 20)]
    pub msgs_per_sec: u32,
    /// Messages a socket may send in one burst above the average rate.
    #[arg(long, default_value_t = 60)]
    pub msg_burst: u32,
    /// Peers allowed in one channel.
    #[arg(long, default_value_t = 20_000)]
    pub max_peers_per_channel: usize,
    /// Channels with peers at once.
    #[arg(long, default_value_t = 1_000)]
    pub max_channels: usize,
    /// Open signaling sockets allowed at once (joined or not).
    #[arg(long, default_value_t = 100_000)]
    pub max_connections: usize,
    /// Messages waiting to be written to one socket; past that, relays to it get `peer_busy`.
    #[arg(long, default_value_t = 64)]
    pub peer_queue: usize,
    /// Interval between the server's WebSocket pings to each socket, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub heartbeat_ms: u64,
    /// Heartbeat intervals with nothing heard from a socket before it is closed; also how many
    /// a new socket has to join a channel.
    #[arg(long, default_value_t = 2)]
    pub heartbeat_missed: u32,
    /// STUN/TURN URL handed to peers (repeatable). None by default: loopback needs none.
    #[arg(long = "ice-server", value_name = "URL")]
    pub ice_servers: Vec<String>,
    /// Accept joins to any well-formed channel name, even one the server does not publish
    /// (development and load tests; such channels carry no key).
    #[arg(long)]
    pub any_channel: bool,
    /// Neighbours handed to a joining peer.
    #[arg(long, default_value_t = TrackerConfig::default().initial_neighbours)]
    pub initial_neighbours: usize,
    /// Most neighbours a peer is given.
    #[arg(long, default_value_t = TrackerConfig::default().max_neighbours)]
    pub max_neighbours: usize,
}

impl Default for SignalConfig {
    fn default() -> Self {
        let t = TrackerConfig::default();
        SignalConfig {
            max_message_bytes: 16 * 1024,
            msgs_per_sec: 20,
            msg_burst: 60,
            max_peers_per_channel: 20_000,
            max_channels: 1_000,
            max_connections: 100_000,
            peer_queue: 64,
            heartbeat_ms: 15_000,
            heartbeat_missed: 2,
            ice_servers: Vec::new(),
            any_channel: false,
            initial_neighbours: t.initial_neighbours,
            max_neighbours: t.max_neighbours,
        }
    }
}

impl SignalConfig {
    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(1))
    }

    /// The ICE server list sent in `welcome`.
    pub fn ice_server_list(&self) -> Vec<IceServer> {
        self.ice_servers
            .iter()
            .map(|u| IceServer {
                urls: vec![u.clone()],
                username: None,
                credential: None,
            })
            .collect()
    }

    /// Tracker settings for each channel.
    pub fn tracker(&self) -> TrackerConfig {
        TrackerConfig {
            initial_neighbours: self.initial_neighbours,
            max_neighbours: self.max_neighbours.max(1),
            ..TrackerConfig::default()
        }
    }
}
