//! swarm-live: a real swarm on loopback, measured like the simulator.
//!
//! Starts `shoal serve` in this process on `127.0.0.1:0` (the demo channel and its origin
//! seeder), then N native peers over real WebRTC data channels (viewers that play: the
//! default swarm settings), lets them run for `--seconds`, and prints progress to stderr and
//! one JSON line to stdout with the simulator's keys where they apply, computed from the
//! peers' and the server's own counters. Server and peers share this process, so `cpu_cores`
//! is their sum.
//!
//! `cargo run --release -p shoal-tests --bin swarm-live -- --peers 20 --seconds 60`

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use shoal::media::MediaOptions;
use shoal::peer::{PeerOptions, PeerStats};
use swarm::Config;
use tokio::sync::{oneshot, watch};

#[derive(Parser)]
struct Args {
    /// Viewers.
    #[arg(long, default_value_t = 20)]
    peers: usize,
    /// Seconds to run after the last peer joined.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Each viewer's upload cap, bits per second with k/M/G (`2M`); none by default.
    #[arg(long, value_parser = shoal::peer::parse_rate)]
    upload_limit: Option<u64>,
    /// Milliseconds between peer joins.
    #[arg(long, default_value_t = 100)]
    join_every_ms: u64,
    /// Peers killed (their task aborted, so their connections close at once) and replaced
    /// by new ones, spread evenly over the run.
    #[arg(long, default_value_t = 0)]
    churn: usize,
    /// Extra peers that corrupt every piece they send (liars: the honest viewers must ban
    /// them and never play what they sent). Not counted in `--peers` or the figures.
    #[arg(long, default_value_t = 0)]
    corrupt: usize,
}

type Running = (
    watch::Receiver<PeerStats>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
);

fn start_peer(
    addr: std::net::SocketAddr,
    upload_limit: Option<u64>,
    bitrate: f64,
    corrupt: bool,
) -> Running {
    let (tx, rx) = watch::channel(PeerStats::default());
    let mut opts = PeerOptions::relay(&format!("http://{addr}"), "demo", upload_limit);
    // The peer also reads the channel's bitrate from the API when it joins.
    opts.config = Config {
        upload_limit,
        bitrate_hint: bitrate,
        ..Config::default()
    };
    opts.stats = Some(tx);
    opts.corrupt_pieces = corrupt;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(shoal::peer::run(opts, async move {
        let _ = stopped.await;
    }));
    (rx, stop, task)
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(run(&args));
    println!("{report}");
}

/// CPU seconds this process used so far (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn run(args: &Args) -> serde_json::Value {
    let wall = Instant::now();
    let data_dir = std::env::temp_dir().join(format!("shoal-swarm-live-{}", std::process::id()));
    let config = shoal::ServeConfig {
        media: MediaOptions {
            data_dir: Some(data_dir.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let app = shoal::App::new(&config).expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(shoal::serve(listener, app.clone(), async move {
        let _ = server_stopped.await;
    }));
    let channel = app.media.channel("demo").expect("demo channel");
    while channel.snapshot().latest_seq.unwrap_or(0) < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("swarm-live: server on {addr}, {} peers joining", args.peers);

    // The stream's bitrate in bytes per second, once measured (the channel API's figure).
    while channel.snapshot().bitrate_bps.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bitrate = channel.snapshot().bitrate_bps.unwrap_or(2e6) / 8.0;
    // When the origin published each chunk: the true delivery delay of a chunk at a peer is
    // its completion there minus this (server and peers share this process's clock).
    let published = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        u64,
        Instant,
    >::new()));
    let mut feed = channel.subscribe();
    let log = published.clone();
    tokio::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(c) => {
                    if let Ok(mut m) = log.lock() {
                        m.insert(c.header.seq, Instant::now());
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    });
    let cpu_start = cpu_seconds();
    let mut peers = Vec::new();
    let mut liars = Vec::new();
    for i in 0..args.peers {
        peers.push(start_peer(addr, args.upload_limit, bitrate, false));
        tokio::time::sleep(Duration::from_millis(args.join_every_ms)).await;
        // Liars join among the first viewers, where they can do the most harm.
        if i < args.corrupt {
            liars.push(start_peer(addr, None, bitrate, true));
        }
    }
    let started = Instant::now();
    // Peers that were killed: their last stats still count.
    let mut departed: Vec<PeerStats> = Vec::new();
    let churn_every = Duration::from_secs(args.seconds) / (args.churn as u32 + 1);
    let mut killed = 0usize;
    let mut last_print = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if killed < args.churn && started.elapsed() >= churn_every * (killed as u32 + 1) {
            let i = (killed * 7 + 3) % peers.len();
            let (rx, _stop, task) = std::mem::replace(
                &mut peers[i],
                start_peer(addr, args.upload_limit, bitrate, false),
            );
            task.abort();
            departed.push(rx.borrow().clone());
            killed += 1;
            eprintln!(
                "swarm-live: killed peer {}, a new one joins",
                departed.last().map_or(0, |s| s.peer_id)
            );
        }
        if last_print.elapsed() < Duration::from_secs(5) {
            continue;
        }
        last_print = Instant::now();
        let stats: Vec<PeerStats> = peers.iter().map(|p| p.0.borrow().clone()).collect();
        let edge = channel.snapshot().latest_seq.unwrap_or(0);
        let at_edge = stats
            .iter()
            .filter(|s| s.latest.is_some_and(|l| l + 2 >= edge))
            .count();
        eprintln!(
            "swarm-live: {:>4.0} s, {at_edge}/{} peers at the live edge ({edge})",
            started.elapsed().as_secs_f64(),
            stats.len()
        );
    }
    let run_s = wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let live: Vec<PeerStats> = peers.iter().map(|p| p.0.borrow().clone()).collect();
    let c = &channel.counters;
    let seeder = c.bytes_out_seeder.load(Ordering::Relaxed);
    let http = c.bytes_out_http.load(Ordering::Relaxed);
    for (_, stop, task) in peers.into_iter().chain(liars) {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = stop_server.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = std::fs::remove_dir_all(&data_dir);

    let at_edge = live
        .iter()
        .filter(|s| {
            s.latest
                .is_some_and(|l| l + 2 >= channel.snapshot().latest_seq.unwrap_or(0))
        })
        .count();
    let stats: Vec<PeerStats> = live.into_iter().chain(departed).collect();
    let received: u64 = stats.iter().map(|s| s.metrics.bytes_in()).sum();
    let duplicate: u64 = stats.iter().map(|s| s.metrics.duplicate_bytes).sum();
    let due: u64 = stats.iter().map(|s| s.metrics.chunks_due).sum();
    let on_time: u64 = stats.iter().map(|s| s.metrics.chunks_on_time).sum();
    // Each peer's own estimate (relative to the fastest arrival it saw), as the browser shows.
    let mut estimated: Vec<f64> = stats
        .iter()
        .flat_map(|s| s.metrics.recent_delivery.iter().map(|&d| d as f64 / 1e6))
        .collect();
    let mut delivery: Vec<f64> = {
        let published = published.lock().map(|m| m.clone()).unwrap_or_default();
        stats
            .iter()
            .flat_map(|s| s.completed.iter())
            .filter_map(|(seq, at)| {
                let p = published.get(seq)?;
                Some(at.saturating_duration_since(*p).as_secs_f64())
            })
            .collect()
    };
    let mut startup: Vec<f64> = stats
        .iter()
        .filter_map(|s| s.metrics.startup.map(|d| d as f64 / 1e6))
        .collect();
    let origin = seeder + http;
    let n = args.peers.max(1) as f64;
    let measured_s = started.elapsed().as_secs_f64().max(1.0);
    json!({
        "scenario": "swarm-live",
        "peers": args.peers,
        "seconds": args.seconds,
        "offload": if received > 0 { 1.0 - origin as f64 / received as f64 } else { 0.0 },
        "offload_bound": (n - 1.0) / n,
        "delivery_p50_s": percentile(&mut delivery, 50.0),
        "delivery_p95_s": percentile(&mut delivery, 95.0),
        "delivery_p99_s": percentile(&mut delivery, 99.0),
        "delivery_p95_estimated_s": percentile(&mut estimated, 95.0),
        "continuity": if due > 0 { on_time as f64 / due as f64 } else { 1.0 },
        "startup_p95_s": percentile(&mut startup, 95.0),
        "duplicate_ratio": if received + duplicate > 0 {
            duplicate as f64 / (received + duplicate) as f64
        } else {
            0.0
        },
        "chunks_rejected": stats.iter().map(|s| s.metrics.chunks_rejected).sum::<u64>(),
        "chunks_played": stats.iter().map(|s| s.chunks_played).sum::<u64>(),
        "corrupt_chunks_played": stats.iter().map(|s| s.corrupt_chunks_played).sum::<u64>(),
        "bans": stats.iter().map(|s| s.metrics.peers_banned).sum::<u64>(),
        "liars": args.corrupt,
        "origin_mbit_s": origin as f64 * 8.0 / 1e6 / run_s,
        "http_share": if origin > 0 { http as f64 / origin as f64 } else { 0.0 },
        "stream_mbit_s": channel.snapshot().bitrate_bps.unwrap_or(0.0) / 1e6,
        "peers_at_edge": at_edge,
        "churn": args.churn,
        "cpu_cores": cpu / measured_s,
        "wall_s": wall.elapsed().as_secs_f64(),
    })
}
