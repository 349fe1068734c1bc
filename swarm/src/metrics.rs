//! Per-peer counters, the same in the browser's stats, the native peer and the simulator.

use crate::Time;

/// Where received bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Another viewer.
    Peer,
    /// The channel's origin seeder.
    Seeder,
    /// The origin's HTTP fallback.
    Http,
}

/// What a peer has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Chunk bytes (pieces and headers) received from other viewers.
    pub bytes_from_peers: u64,
    /// Chunk bytes received from the origin seeder.
    pub bytes_from_seeder: u64,
    /// Chunk bytes received over the HTTP fallback.
    pub bytes_from_http: u64,
    /// Chunk bytes sent to neighbours.
    pub bytes_to_peers: u64,
    /// Received chunk bytes that were already held (wasted).
    pub duplicate_bytes: u64,
    /// Chunks completed and verified.
    pub chunks_verified: u64,
    /// Headers, pieces or chunks that failed verification.
    pub chunks_rejected: u64,
    /// Neighbours banned for sending data that failed verification.
    pub peers_banned: u64,
    /// HTTP fallback fetches asked for.
    pub http_fetches: u64,
    /// Chunks whose playback time came while watching.
    pub chunks_due: u64,
    /// Of those, chunks that were ready in time.
    pub chunks_on_time: u64,
    /// Times playback stalled waiting for a chunk.
    pub stalls: u64,
    /// Total stalled time, microseconds.
    pub stall_time: Time,
    /// Time from the peer's start to its first frame (when the playout clock reaches the
    /// first chunk, start buffer included), microseconds.
    pub startup: Option<Time>,
    /// Recent delivery delays (chunk complete minus estimated publication), microseconds.
    pub recent_delivery: Vec<Time>,
}

/// Recent delivery delays kept for percentiles.
const RECENT: usize = 240;

impl Metrics {
    /// All chunk bytes received.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_from_peers + self.bytes_from_seeder + self.bytes_from_http
    }

    /// Share of received bytes that came from other viewers (not seeder, not HTTP).
    pub fn offload(&self) -> f64 {
        let total = self.bytes_in();
        if total == 0 {
            0.0
        } else {
            self.bytes_from_peers as f64 / total as f64
        }
    }

    /// Share of due chunks that played on time (1 when nothing was due yet).
    pub fn continuity(&self) -> f64 {
        if self.chunks_due == 0 {
            1.0
        } else {
            self.chunks_on_time as f64 / self.chunks_due as f64
        }
    }

    /// A percentile (0..=100) of the recent delivery delays, microseconds.
    pub fn delivery_percentile(&self, p: f64) -> Option<Time> {
        if self.recent_delivery.is_empty() {
            return None;
        }
        let mut v = self.recent_delivery.clone();
        v.sort_unstable();
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v.get(i.min(v.len() - 1)).copied()
    }

    pub(crate) fn add_in(&mut self, source: Source, bytes: usize) {
        let b = bytes as u64;
        match source {
            Source::Peer => self.bytes_from_peers += b,
            Source::Seeder => self.bytes_from_seeder += b,
            Source::Http => self.bytes_from_http += b,
        }
    }

    pub(crate) fn record_delivery(&mut self, delay: Time) {
        if self.recent_delivery.len() >= RECENT {
            self.recent_delivery.remove(0);
        }
        self.recent_delivery.push(delay);
    }
}
