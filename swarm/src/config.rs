//! A peer's settings.

use crate::Time;

/// Settings of one swarm peer. [`Config::default`] suits a browser viewer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Neighbours the peer tries to keep.
    pub target_neighbours: usize,
    /// Substreams the channel is split into for pushing (1..=16). Piece `i` of chunk `s`
    /// belongs to substream `(s + i) % substreams`; each substream has its own push tree.
    pub substreams: usize,
    /// How far behind the live edge playback is held, in microseconds.
    pub target_delay: Time,
    /// Seconds of chunks kept behind the live edge for neighbours that are behind.
    pub window: Time,
    /// Upload cap in bytes per second (`Some(0)`: consume-only, never uploads).
    pub upload_limit: Option<u64>,
    /// Whether this peer plays (emits [`crate::Output::Play`]); relays and the origin do not.
    pub play: bool,
    /// Whether this peer is the channel's origin seeder: it holds every chunk from
    /// [`crate::Input::Publish`] and never fetches.
    pub origin: bool,
    /// Whether the HTTP fallback may be used.
    pub http_fallback: bool,
    /// Fetch over HTTP when a chunk is still incomplete this long before its playback deadline.
    pub fallback_margin: Time,
    /// How long a pushed piece may lag behind the chunk's first news before it is pulled.
    pub push_grace: Time,
    /// Bytes allowed in a link's send buffer before the peer stops feeding it.
    pub link_buffer: usize,
    /// How long a neighbour may stay silent before it is considered dead.
    pub silence_timeout: Time,
    /// Interval between status messages to every neighbour.
    pub status_interval: Time,
    /// Fallback estimate of the stream's bitrate in bytes per second, until chunks tell.
    pub bitrate_hint: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            target_neighbours: 8,
            substreams: 2,
            target_delay: 1_500_000,
            window: 20_000_000,
            upload_limit: None,
            play: true,
            origin: false,
            http_fallback: true,
            fallback_margin: 700_000,
            push_grace: 700_000,
            link_buffer: 64 * 1024,
            silence_timeout: 6_000_000,
            status_interval: 1_000_000,
            bitrate_hint: 250_000.0,
        }
    }
}

impl Config {
    /// Settings for a channel's origin seeder with an upload cap in bytes per second.
    pub fn origin(upload_limit: Option<u64>) -> Self {
        Config {
            origin: true,
            play: false,
            http_fallback: false,
            upload_limit,
            target_neighbours: 4,
            ..Config::default()
        }
    }

    /// Settings for a headless relay (verifies and forwards, never plays).
    pub fn relay(upload_limit: Option<u64>) -> Self {
        Config {
            play: false,
            upload_limit,
            ..Config::default()
        }
    }

    pub(crate) fn substreams(&self) -> usize {
        self.substreams.clamp(1, crate::wire::MAX_SUBSTREAMS)
    }
}
