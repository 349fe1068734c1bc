//! The native swarm peer: drives one [`swarm::Peer`] over real WebRTC data channels (the
//! `webrtc` crate) and the server's WebSocket signaling. It serves two roles: the origin
//! seeder inside `shoal serve` (fed with [`PeerOptions::publish`]) and the `shoal peer` relay.
//!
//! One task owns the state machine. The signaling socket, the link events, HTTP fallback
//! results, newly published chunks, the swarm's timer and the stats tick are selected in
//! one loop, and every input is followed by draining [`swarm::Peer::poll`]. Each WebRTC
//! connection is a helper task ([`link`]) that only moves bytes; backpressure comes from
//! the swarm itself, which stops feeding a link whose drained bytes (reported as
//! [`swarm::Input::Sent`] from the data channel's outstanding byte count) lag behind.

mod fetch;
mod link;
pub mod seeder;
mod session;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use swarm::{Chunk, Config, Metrics, PeerId};
use tokio::sync::{broadcast, watch};

/// What a running peer shows of itself (updated at every stats tick).
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    /// Id the signaling server gave this peer (0 before the first welcome).
    pub peer_id: PeerId,
    /// Neighbours with an open data channel.
    pub neighbours: usize,
    /// The swarm peer's counters.
    pub metrics: Metrics,
    /// Newest complete chunk held.
    pub latest: Option<u64>,
    /// Signaling sessions started (more than one after reconnects).
    pub sessions: u64,
    /// Microseconds since this session's welcome (the swarm peer's clock).
    pub now: u64,
    /// When each of the most recent chunks became complete and verified here (benchmarks
    /// compare it with when the origin published the chunk: the true delivery delay).
    pub completed: Vec<(u64, std::time::Instant)>,
    /// Chunks handed to the player (viewers only).
    pub chunks_played: u64,
    /// Of those, chunks that do not verify against the channel's key when checked again
    /// independently of the swarm (must stay 0: the swarm verifies before it plays).
    pub corrupt_chunks_played: u64,
    /// The swarm peer's own one-line summary (push-tree position), for debugging.
    pub summary: String,
}

/// How to run one native peer.
pub struct PeerOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:8080` (signaling at `/ws`, the HTTP
    /// fallback at `/api/channels/{name}/chunks/{seq}`).
    pub server: String,
    /// The channel to join.
    pub channel: String,
    /// The swarm settings ([`Config::relay`] for `shoal peer`, [`Config::origin`] for the
    /// seeder).
    pub config: Config,
    /// Local UDP addresses for ICE (`127.0.0.1:0` on loopback).
    pub udp_addrs: Vec<String>,
    /// Print a stats line to stderr this often.
    pub print_every: Option<Duration>,
    /// Publish the stats for the embedding program (tests, the benchmark).
    pub stats: Option<watch::Sender<PeerStats>>,
    /// The channel's new chunks (origin seeder only).
    pub publish: Option<broadcast::Receiver<Arc<Chunk>>>,
    /// Join as the channel's seeder with the server's seeder token.
    pub seeder_token: Option<String>,
    /// Testing only: corrupt every piece this peer sends (a hostile peer).
    pub corrupt_pieces: bool,
    /// Reconnect to signaling after it drops (a fresh swarm peer each time).
    pub reconnect: bool,
    /// The upload cap to follow while running (the seeder's follows the audience), read
    /// once a second.
    pub upload_limit: Option<UploadLimit>,
}

/// Computes a peer's upload cap now, in bytes per second (`None`: unbounded).
pub type UploadLimit = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

impl PeerOptions {
    /// A relay peer for `channel` on `server`, on loopback, with default settings.
    pub fn relay(server: &str, channel: &str, upload_limit: Option<u64>) -> Self {
        PeerOptions {
            server: server.trim_end_matches('/').to_owned(),
            channel: channel.to_owned(),
            config: Config::relay(upload_limit),
            udp_addrs: vec!["127.0.0.1:0".to_owned()],
            print_every: None,
            stats: None,
            publish: None,
            seeder_token: None,
            corrupt_pieces: false,
            reconnect: true,
            upload_limit: None,
        }
    }
}

/// Runs a peer until `shutdown` completes (or, without `reconnect`, until signaling ends).
pub async fn run(
    mut opts: PeerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let mut sessions = 0u64;
    loop {
        sessions += 1;
        let ended = tokio::select! {
            r = session::run(&mut opts, sessions) => r,
            () = &mut shutdown => return Ok(()),
        };
        match ended {
            Ok(()) => tracing::info!("signaling closed"),
            Err(e) => tracing::warn!("signaling: {e}"),
        }
        if !opts.reconnect {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// Options of `shoal peer`.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// The Shoal server, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub server: String,
    /// The channel to relay.
    #[arg(long)]
    pub channel: String,
    /// Upload cap in bits per second, with an optional k, M or G suffix (`800k`, `2M`);
    /// `0` consumes without uploading. No cap by default.
    #[arg(long, value_parser = parse_rate)]
    pub upload_limit: Option<u64>,
    /// Local UDP address for WebRTC (repeatable). `127.0.0.1:0` suits a server on loopback;
    /// use a reachable interface's address for real neighbours.
    #[arg(long = "udp-addr", default_value = "127.0.0.1:0")]
    pub udp_addrs: Vec<String>,
    /// Seconds between stats lines on stderr.
    #[arg(long, default_value_t = 2.0)]
    pub stats_every: f64,
}

/// Runs `shoal peer` until SIGINT or SIGTERM.
pub async fn run_relay(args: PeerArgs) -> std::io::Result<()> {
    let mut opts = PeerOptions::relay(&args.server, &args.channel, args.upload_limit);
    opts.udp_addrs = args.udp_addrs;
    opts.print_every = (args.stats_every > 0.0)
        .then(|| Duration::from_secs_f64(args.stats_every.clamp(0.1, 3600.0)));
    run(opts, crate::shutdown_signal()).await?;
    eprintln!("shoal peer: stopped");
    Ok(())
}

/// A rate in bits per second (`800k`, `2M`, `1.5G`, `64000`) as bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("bit/s")
        .or_else(|| t.strip_suffix("bps"))
        .unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a rate: {text:?} (try 800k or 2M, bits per second)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("not a rate: {text:?}"));
    }
    Ok((v * mult / 8.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("800k"), Ok(100_000));
        assert_eq!(parse_rate("2M"), Ok(250_000));
        assert_eq!(parse_rate("8000"), Ok(1000));
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("1.5Mbit/s"), Ok(187_500));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1k").is_err());
    }
}
