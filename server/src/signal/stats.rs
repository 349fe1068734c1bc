//! Signaling counters, plain atomics the metrics endpoint reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since start (`*_total`) and gauges (current values). Relaxed atomics: each is
/// exact on its own; a reader may see two of them a moment apart.
#[derive(Debug, Default)]
pub struct SignalStats {
    /// WebSocket connections accepted.
    pub connections_total: AtomicU64,
    /// WebSocket connections open now (gauge).
    pub connections_open: AtomicU64,
    /// Peers joined to a channel now (gauge).
    pub peers_joined: AtomicU64,
    /// Channels with at least one peer now (gauge).
    pub channels_active: AtomicU64,
    /// Messages received from peers.
    pub messages_in: AtomicU64,
    /// Messages written to peers.
    pub messages_out: AtomicU64,
    /// Offers, answers and candidates delivered to another peer's queue.
    pub relayed: AtomicU64,
    /// `error` replies sent.
    pub errors_sent: AtomicU64,
    /// Messages dropped by the per-socket rate limit.
    pub rate_limited: AtomicU64,
    /// Relays refused because the receiver's queue was full.
    pub peer_busy: AtomicU64,
    /// Sockets closed for missed heartbeats or a stalled write.
    pub heartbeat_timeouts: AtomicU64,
}

impl SignalStats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    /// Every counter with its metric name, for a Prometheus-style exporter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("signal_connections_total", g(&self.connections_total)),
            ("signal_connections_open", g(&self.connections_open)),
            ("signal_peers_joined", g(&self.peers_joined)),
            ("signal_channels_active", g(&self.channels_active)),
            ("signal_messages_in_total", g(&self.messages_in)),
            ("signal_messages_out_total", g(&self.messages_out)),
            ("signal_relayed_total", g(&self.relayed)),
            ("signal_errors_sent_total", g(&self.errors_sent)),
            ("signal_rate_limited_total", g(&self.rate_limited)),
            ("signal_peer_busy_total", g(&self.peer_busy)),
            (
                "signal_heartbeat_timeouts_total",
                g(&self.heartbeat_timeouts),
            ),
        ]
    }
}
