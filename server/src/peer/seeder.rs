//! The origin seeder: one native swarm peer per channel inside `shoal serve`.
//!
//! It connects to the server's own signaling over loopback with the seeder token (so the
//! channel's tracker registers it as the seeder and hands it to joining viewers), holds every
//! chunk the channel publishes, and serves its neighbours within an upload cap. What it
//! uploads is the origin's cost, counted in the channel's `bytes_out_seeder`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use swarm::Config;
use tokio::sync::watch;

use super::{PeerOptions, PeerStats, UploadLimit};
use crate::media::Channel;

/// Options of the origin seeder (`shoal serve` flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SeederOptions {
    /// The origin seeder's upload cap per channel, in bits per second with an optional k, M
    /// or G suffix (`2500k`). Default: the channel's measured bitrate times 1.25 for a small
    /// audience, growing to 3 at 30 viewers and by one per 100 viewers beyond 300
    /// (`swarm::Config::seeder_copies`: more roots make shallower push trees that one
    /// departing viewer cannot cut off whole).
    #[arg(long, value_parser = super::parse_rate)]
    pub seeder_upload_limit: Option<u64>,
    /// Run no origin seeder (viewers then get chunks only from each other and over HTTP).
    #[arg(long)]
    pub no_seeder: bool,
    /// Local UDP address for the seeder's WebRTC (repeatable), e.g. `203.0.113.5:0`.
    /// Default: the listen address's IP (loopback when it listens on a wildcard).
    #[arg(long = "seeder-udp-addr", value_name = "ADDR")]
    pub seeder_udp_addrs: Vec<String>,
}

/// The number of viewers a channel has now.
pub type Viewers = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Runs the seeder of `channel` for a server listening on `addr`, forever (reconnecting).
/// Without a configured cap, its upload follows the audience (`Config::seeder_copies`
/// copies of the stream for `viewers()` viewers).
pub async fn run(
    channel: Arc<Channel>,
    addr: SocketAddr,
    token: String,
    opts: SeederOptions,
    viewers: Viewers,
) {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    loop {
        // Without a configured cap, wait until the channel has a measured bitrate.
        let bitrate = loop {
            if let Some(bps) = channel.snapshot().bitrate_bps.filter(|b| *b > 0.0) {
                break Some(bps / 8.0);
            }
            if opts.seeder_upload_limit.is_some() {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        // A configured cap is fixed; the default follows the audience.
        let follow: Option<UploadLimit> = match (opts.seeder_upload_limit, bitrate) {
            (None, Some(b)) => {
                let viewers = Arc::clone(&viewers);
                Some(Arc::new(move || {
                    Some((b * Config::seeder_copies(viewers() as usize)) as u64)
                }))
            }
            _ => None,
        };
        let cap = opts
            .seeder_upload_limit
            .or_else(|| follow.as_ref().and_then(|f| f()));
        let mut config = Config::origin(cap);
        if let Some(b) = bitrate {
            config.bitrate_hint = b;
        }
        let (stats_tx, stats_rx) = watch::channel(PeerStats::default());
        let peer_opts = PeerOptions {
            server: format!("http://{host}"),
            channel: channel.name().to_owned(),
            config,
            udp_addrs: if opts.seeder_udp_addrs.is_empty() {
                vec![format!("{}:0", host.ip())]
            } else {
                opts.seeder_udp_addrs.clone()
            },
            print_every: None,
            stats: Some(stats_tx),
            publish: Some(channel.subscribe()),
            seeder_token: Some(token.clone()),
            corrupt_pieces: false,
            reconnect: false,
            upload_limit: follow,
        };
        tracing::info!(channel = channel.name(), cap, "origin seeder starting");
        let counter = count_upload(Arc::clone(&channel), stats_rx);
        let _ = super::run(peer_opts, std::future::pending()).await;
        counter.abort();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Adds the seeder's upload to the channel's `bytes_out_seeder` as its stats change.
fn count_upload(
    channel: Arc<Channel>,
    mut stats: watch::Receiver<PeerStats>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut counted = 0u64;
        while stats.changed().await.is_ok() {
            let sent = stats.borrow_and_update().metrics.bytes_to_peers;
            if sent > counted {
                channel
                    .counters
                    .bytes_out_seeder
                    .fetch_add(sent - counted, Ordering::Relaxed);
                counted = sent;
            }
        }
    })
}
