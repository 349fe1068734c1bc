//! `signal-load`: load benchmark for the signaling server.
//!
//! Opens `--peers` real WebSocket clients spread over `--channels` channels, joins them all,
//! then has every client run WebRTC-style exchanges with its neighbours for `--seconds`: the
//! dialling side sends an offer and a candidate, the dialled side answers with an answer and
//! a candidate (4 relayed messages per exchange), paced so all clients together aim at
//! `--rate` relayed messages per second. SDPs are realistic data-channel offers (~550 bytes)
//! whose session id carries the send time, so the receiver measures relay latency.
//!
//! Progress goes to stderr; the last line on stdout is one JSON object:
//! `peers_connected, join_p99_ms, relay_msgs_per_s, relay_p50_ms, relay_p99_ms, errors,
//! server_rss_mib, server_rss_per_peer_kib` plus a few more fields. `server_rss_mib` is the
//! server's peak VmRSS during the run (needs `--server-pid`); the per-peer figure subtracts
//! the server's RSS measured before the first client connected and divides by the peers
//! connected.
//!
//! Clients bind source addresses 127.0.0.2, 127.0.0.3, … (one per `--peers-per-source`) so
//! ephemeral ports never run short.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use signaling::protocol::{encode_client, ClientMessage};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load benchmark for the Shoal signaling server")]
struct Args {
    /// Signaling URL, e.g. ws://127.0.0.1:8080/ws (loopback only).
    #[arg(long)]
    url: String,
    /// WebSocket clients to open.
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    /// Channels to spread them over (named load-0, load-1, …).
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Seconds of steady exchange after everyone joined.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Target relayed messages per second, all clients together.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// PID of the server, to read its memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Clients per source address (127.0.0.2, 127.0.0.3, …).
    #[arg(long, default_value_t = 8000)]
    peers_per_source: usize,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Latency histogram in microseconds: 10 µs buckets to 1 ms, 100 µs to 100 ms, 10 ms to 10 s.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    const LEN: usize = 100 + 990 + 990 + 1;

    fn new() -> Self {
        Histogram {
            buckets: (0..Self::LEN).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(us: u64) -> usize {
        if us < 1_000 {
            (us / 10) as usize
        } else if us < 100_000 {
            100 + ((us - 1_000) / 100) as usize
        } else if us < 10_000_000 {
            1090 + ((us - 100_000) / 10_000) as usize
        } else {
            Self::LEN - 1
        }
    }

    /// Upper edge of a bucket, in microseconds.
    fn edge(i: usize) -> u64 {
        if i < 100 {
            (i as u64 + 1) * 10
        } else if i < 1090 {
            1_000 + (i as u64 - 99) * 100
        } else if i < Self::LEN - 1 {
            100_000 + (i as u64 - 1089) * 10_000
        } else {
            10_000_000
        }
    }

    fn record(&self, d: Duration) {
        let i = Self::index(d.as_micros().min(u64::MAX as u128) as u64);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile in milliseconds (upper bucket edge), 0 when empty.
    fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want {
                return Self::edge(i) as f64 / 1000.0;
            }
        }
        Self::edge(Self::LEN - 1) as f64 / 1000.0
    }
}

struct Shared {
    args: Args,
    server: SocketAddr,
    start: Instant,
    connected: AtomicU64,
    joined: AtomicU64,
    errors: AtomicU64,
    relayed_in: AtomicU64,
    sent: AtomicU64,
    /// Count relay receipts and latencies only while set.
    measuring: AtomicBool,
    /// Clients stop starting exchanges once set.
    stopping: AtomicBool,
    join_hist: Histogram,
    relay_hist: Histogram,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none() {
            *last = Some(what);
        }
    }

    fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn latency_since(&self, sent_us: u64) -> Duration {
        Duration::from_micros(self.micros().saturating_sub(sent_us))
    }
}

/// The fields the load generator reads from server messages, borrowed where possible.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    from: Option<u64>,
    #[serde(borrow)]
    sdp: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    candidate: Option<std::borrow::Cow<'a, str>>,
    neighbours: Option<Vec<u64>>,
    peer: Option<u64>,
    #[serde(borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
}

/// A Chrome-like data-channel-only SDP with the send time as session id.
fn sdp(kind: &str, t_us: u64) -> String {
    let setup = if kind == "offer" { "actpass" } else { "active" };
    format!(
        "v=0\r\no=- {t_us} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         a=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:Zx9q\r\na=ice-pwd:3b1dJq8nVt0cRrLk5sWmYe2A\r\na=ice-options:trickle\r\n\
         a=fingerprint:sha-256 4A:1F:9C:07:BE:33:D2:58:6E:A1:0B:7C:95:E4:2D:81:\
         F6:13:C8:5A:77:0E:B9:42:DD:16:83:6B:F0:2C:A9:5E\r\n\
         a=setup:{setup}\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    )
}

fn candidate(t_us: u64) -> String {
    format!("candidate:{t_us} 1 udp 2122260223 127.0.0.1 50000 typ host generation 0 ufrag Zx9q network-id 1")
}

/// The send time carried by an SDP or candidate built above.
fn sent_time(text: &str) -> Option<u64> {
    let rest = if let Some(i) = text.find("o=- ") {
        &text[i + 4..]
    } else {
        text.strip_prefix("candidate:")?
    };
    let end = rest.find(' ')?;
    rest[..end].parse().ok()
}

type Ws = WebSocketStream<TcpStream>;

async fn connect(shared: &Shared, index: usize) -> Result<Ws, String> {
    let source = Ipv4Addr::new(127, 0, 0, 2 + (index / shared.args.peers_per_source) as u8);
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket
        .connect(shared.server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(shared.args.url.as_str(), stream, Some(config))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

async fn send(ws: &mut Ws, msgs: &[ClientMessage]) -> Result<(), String> {
    for m in msgs {
        ws.feed(Message::text(encode_client(m)))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    ws.flush().await.map_err(|e| format!("send: {e}"))
}

/// One client: connect, join, then exchange until the run ends.
async fn client(
    shared: Arc<Shared>,
    index: usize,
    gate: Arc<Semaphore>,
    mut go: watch::Receiver<bool>,
    done: watch::Receiver<bool>,
) {
    let permit = gate.acquire_owned().await;
    let mut ws = match connect(&shared, index).await {
        Ok(ws) => ws,
        Err(e) => return shared.error(e),
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let channel = format!("load-{}", index % shared.args.channels.max(1));
    let t0 = Instant::now();
    if let Err(e) = send(&mut ws, &[ClientMessage::Join { channel }]).await {
        return shared.error(e);
    }
    let mut neighbours: Vec<u64> = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Incoming<'_>>(&t) {
                Ok(m) if m.kind == "welcome" => break m.neighbours.unwrap_or_default(),
                Ok(m) => {
                    let code = m.code.unwrap_or_default();
                    return shared.error(format!("join answered with {} {code}", m.kind));
                }
                Err(e) => return shared.error(format!("bad welcome: {e}")),
            },
            Some(Ok(_)) => continue,
            other => return shared.error(format!("closed while joining: {other:?}")),
        }
    };
    shared.join_hist.record(t0.elapsed());
    shared.joined.fetch_add(1, Ordering::Relaxed);
    drop(permit);

    // Wait for everyone to join before exchanging; answer pings meanwhile.
    while !*go.borrow() {
        tokio::select! {
            r = go.changed() => if r.is_err() { return; },
            m = ws.next() => match m {
                Some(Ok(_)) => {}
                other => return shared.error(format!("closed while waiting: {other:?}")),
            },
        }
    }

    let n = shared.args.peers.max(1) as f64;
    let per_client = shared.args.rate as f64 / 4.0 / n;
    let period = Duration::from_secs_f64(if per_client > 0.0 {
        1.0 / per_client
    } else {
        3600.0
    });
    // Spread the clients' phases evenly over one period.
    let phase = period.mul_f64((index as f64 * 0.618_033_988_7).fract());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0usize;
    let mut done = done;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if shared.stopping.load(Ordering::Relaxed) || neighbours.is_empty() {
                    continue;
                }
                next = (next + 1) % neighbours.len();
                let to = neighbours[next];
                let t = shared.micros();
                let msgs = [
                    ClientMessage::Offer { to, sdp: sdp("offer", t) },
                    ClientMessage::Candidate {
                        to,
                        candidate: candidate(t),
                        sdp_mid: Some("0".into()),
                        sdp_m_line_index: Some(0),
                    },
                ];
                if let Err(e) = send(&mut ws, &msgs).await {
                    return shared.error(e);
                }
                shared.sent.fetch_add(2, Ordering::Relaxed);
            }
            m = ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => {
                        if !*done.borrow() {
                            shared.error(format!("server closed: {f:?}"));
                        }
                        return;
                    }
                    Some(Ok(_)) => continue,
                    other => {
                        if !*done.borrow() {
                            shared.error(format!("socket: {other:?}"));
                        }
                        return;
                    }
                };
                let m: Incoming<'_> = match serde_json::from_str(&text) {
                    Ok(m) => m,
                    Err(e) => return shared.error(format!("bad message: {e}")),
                };
                let carried = m.sdp.as_deref().or(m.candidate.as_deref()).and_then(sent_time);
                if let Some(t) = carried {
                    if shared.measuring.load(Ordering::Relaxed) {
                        shared.relayed_in.fetch_add(1, Ordering::Relaxed);
                        shared.relay_hist.record(shared.latency_since(t));
                    }
                }
                match m.kind.as_ref() {
                    "offer" => {
                        let Some(from) = m.from else { continue };
                        if !neighbours.contains(&from) && neighbours.len() < 16 {
                            neighbours.push(from);
                        }
                        let t = shared.micros();
                        let msgs = [
                            ClientMessage::Answer { to: from, sdp: sdp("answer", t) },
                            ClientMessage::Candidate {
                                to: from,
                                candidate: candidate(t),
                                sdp_mid: Some("0".into()),
                                sdp_m_line_index: Some(0),
                            },
                        ];
                        if let Err(e) = send(&mut ws, &msgs).await {
                            return shared.error(e);
                        }
                        shared.sent.fetch_add(2, Ordering::Relaxed);
                    }
                    "answer" | "candidate" | "pong" => {}
                    "peers" => {
                        for p in m.neighbours.unwrap_or_default() {
                            if !neighbours.contains(&p) {
                                neighbours.push(p);
                            }
                        }
                    }
                    "peer_left" => neighbours.retain(|&p| Some(p) != m.peer),
                    "error" => {
                        let code = m.code.unwrap_or_default();
                        // A neighbour that left during shutdown is not the server's fault.
                        if !*done.borrow() {
                            shared.error(format!("error {code}"));
                        }
                    }
                    other => shared.error(format!("unexpected {other}")),
                }
            }
            r = done.changed() => {
                if r.is_err() || *done.borrow() {
                    return;
                }
            }
        }
    }
}

/// CPU time (user + system) of `pid` ("self" for this process) in seconds, assuming the usual
/// 100 clock ticks a second.
fn cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args = Args::parse();
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let server = resolve(&args.url);
    let Some(server) = server.filter(|a| a.ip().is_loopback()) else {
        eprintln!("signal-load: --url must be ws://127.x.x.x:PORT/… (loopback only)");
        std::process::exit(2);
    };
    if (files as usize) < args.peers + 64 {
        eprintln!("signal-load: warning: open-file limit {files} is below --peers");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args, server));
}

fn resolve(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("ws://")?;
    let hostport = rest.split('/').next()?;
    hostport.parse().ok()
}

async fn run(args: Args, server: SocketAddr) {
    let baseline = rss_kib(args.server_pid);
    let shared = Arc::new(Shared {
        args: args.clone(),
        server,
        start: Instant::now(),
        connected: AtomicU64::new(0),
        joined: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        relayed_in: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        join_hist: Histogram::new(),
        relay_hist: Histogram::new(),
        last_error: std::sync::Mutex::new(None),
    });
    let peak_rss = Arc::new(AtomicU64::new(baseline.unwrap_or(0)));
    {
        let peak = Arc::clone(&peak_rss);
        let pid = args.server_pid;
        tokio::spawn(async move {
            loop {
                if let Some(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }
    eprintln!(
        "signal-load: {} peers over {} channels, {} s at {} relayed msg/s; server RSS before: {:?} KiB",
        args.peers, args.channels, args.seconds, args.rate, baseline
    );
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (go_tx, go_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(args.peers);
    let setup_start = Instant::now();
    for i in 0..args.peers {
        tasks.push(tokio::spawn(client(
            Arc::clone(&shared),
            i,
            Arc::clone(&gate),
            go_rx.clone(),
            done_rx.clone(),
        )));
    }
    // Setup: until everyone joined or failed.
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let joined = shared.joined.load(Ordering::Relaxed);
        let errors = shared.errors.load(Ordering::Relaxed);
        eprintln!(
            "  setup {:>5.1} s: connected {} joined {} errors {}",
            setup_start.elapsed().as_secs_f64(),
            shared.connected.load(Ordering::Relaxed),
            joined,
            errors
        );
        if joined + errors >= args.peers as u64 || setup_start.elapsed() > Duration::from_secs(300)
        {
            break;
        }
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    let rss_joined = rss_kib(args.server_pid);
    let _ = go_tx.send(true);
    // One second of warm-up, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let measure_start = Instant::now();
    let server_pid = args.server_pid.map(|p| p.to_string());
    let server_cpu0 = server_pid.as_deref().and_then(cpu_s);
    let own_cpu0 = cpu_s("self");
    let mut last = 0;
    for s in 1..=args.seconds {
        tokio::time::sleep_until((measure_start + Duration::from_secs(s)).into()).await;
        let now = shared.relayed_in.load(Ordering::Relaxed);
        eprintln!(
            "  run {s:>3} s: relayed {:>7}/s  p99 {:>6.2} ms  joined {}  errors {}",
            now - last,
            shared.relay_hist.quantile_ms(0.99),
            shared.joined.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
        );
        last = now;
    }
    shared.stopping.store(true, Ordering::Relaxed);
    let measured = measure_start.elapsed().as_secs_f64();
    let cpu_pct = |before: Option<f64>, pid: Option<&str>| -> Option<f64> {
        Some(round((cpu_s(pid?)? - before?) / measured * 100.0))
    };
    let server_cpu = cpu_pct(server_cpu0, server_pid.as_deref());
    let own_cpu = cpu_pct(own_cpu0, Some("self"));
    // Let in-flight exchanges land (not counted in the rate, which uses `measured`).
    let relayed_at_stop = shared.relayed_in.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let rss_end = rss_kib(args.server_pid);
    let _ = done_tx.send(true);
    // Sockets still open now are the peers that held the whole run.
    let held = shared
        .joined
        .load(Ordering::Relaxed)
        .saturating_sub(0)
        .min(args.peers as u64);
    let peak = peak_rss.load(Ordering::Relaxed).max(rss_end.unwrap_or(0));
    let per_peer = match (baseline, held) {
        (Some(b), h) if h > 0 => Some((peak.saturating_sub(b)) as f64 / h as f64),
        _ => None,
    };
    let last_error = shared
        .last_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let json = serde_json::json!({
        "peers_connected": shared.connected.load(Ordering::Relaxed),
        "peers_joined": held,
        "channels": args.channels,
        "setup_s": round(setup_s),
        "join_p99_ms": round(shared.join_hist.quantile_ms(0.99)),
        "relay_msgs_per_s": (relayed_at_stop as f64 / measured).round(),
        "target_rate": args.rate,
        "relay_p50_ms": round(shared.relay_hist.quantile_ms(0.50)),
        "relay_p99_ms": round(shared.relay_hist.quantile_ms(0.99)),
        "relay_p999_ms": round(shared.relay_hist.quantile_ms(0.999)),
        "seconds": args.seconds,
        "server_cpu_pct": server_cpu,
        "loadgen_cpu_pct": own_cpu,
        "errors": shared.errors.load(Ordering::Relaxed),
        "first_error": last_error,
        "server_rss_baseline_mib": baseline.map(|b| round(b as f64 / 1024.0)),
        "server_rss_joined_mib": rss_joined.map(|b| round(b as f64 / 1024.0)),
        "server_rss_mib": args.server_pid.map(|_| round(peak as f64 / 1024.0)),
        "server_rss_per_peer_kib": per_peer.map(round),
    });
    println!("{json}");
    // Exit without waiting for 19,000 closing handshakes.
    std::process::exit(0);
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
