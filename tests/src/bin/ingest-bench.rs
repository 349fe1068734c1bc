//! ingest-bench: how long after a broadcaster sends a fragment's last byte the chunk is
//! available over HTTP, and how much server CPU a Mbit/s of ingest costs.
//!
//! It starts `target/release/shoal serve --no-demo --channel bench:KEY`, encodes a test
//! stream once with ffmpeg (not timed), then replays it in real time over one chunked PUT,
//! fragment by fragment, as a live encoder would.
//! - Phase 1 (delay): a poller asks for `/api/channels/bench/chunks/{next}` every
//!   `--poll-ms`; delay = first 200 − when the fragment's last byte was written.
//! - Phase 2 (CPU): the same replay with no poller; server CPU from /proc/PID/stat.
//!
//! Prints progress to stderr and one JSON object as the last line of stdout.
//!
//! `cargo run --release -p shoal-tests --bin ingest-bench -- --seconds 20 --kbps 4000`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use shoal::media::segmenter::{Event, Limits, Segmenter};

const KEY: &str = "bench-key";

#[derive(Parser)]
struct Args {
    /// Seconds of media per phase.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// Video bitrate of the test stream, kbit/s.
    #[arg(long, default_value_t = 4000)]
    kbps: u32,
    /// Poll interval of the delay phase, ms.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// The server binary.
    #[arg(long, default_value = "target/release/shoal")]
    server: PathBuf,
}

struct Server {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn start_server(binary: &PathBuf) -> Server {
    let data_dir = std::env::temp_dir().join(format!("shoal-ingest-bench-{}", std::process::id()));
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-demo",
            "--data-dir",
        ])
        .arg(&data_dir)
        .args(["--channel", &format!("bench:{KEY}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (build it with cargo build --release)",
                binary.display()
            )
        });
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("server banner");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Server {
        child,
        addr,
        data_dir,
    }
}

/// The test stream's init segment and fragments (bytes, media duration).
fn encode(seconds: u32, kbps: u32) -> (Vec<u8>, Vec<(Vec<u8>, Duration)>) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1280x720:rate=30")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            &seconds.to_string(),
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k")])
        .args(["-bufsize", &format!("{}k", kbps / 2)])
        .args([
            "-g",
            "15",
            "-keyint_min",
            "15",
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
        ])
        .args([
            "-f",
            "mp4",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
            "-",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("ffmpeg (scripts/setup installs it)");
    assert!(out.status.success(), "ffmpeg failed");
    let mut s = Segmenter::new(Limits::default());
    let mut events = Vec::new();
    s.push(&out.stdout, &mut events)
        .expect("ffmpeg's stream parses");
    let mut init = Vec::new();
    let mut fragments = Vec::new();
    for e in events {
        match e {
            Event::Init(i) => init = i.bytes.clone(),
            Event::Fragment(f) => {
                let d = Duration::from_micros(u64::from(f.duration_us()));
                fragments.push((f.bytes, d));
            }
        }
    }
    (init, fragments)
}

fn chunked(tcp: &mut TcpStream, bytes: &[u8]) {
    let mut frame = format!("{:x}\r\n", bytes.len()).into_bytes();
    frame.extend_from_slice(bytes);
    frame.extend_from_slice(b"\r\n");
    tcp.write_all(&frame).expect("ingest write");
}

/// Replays the stream in real time; returns when each fragment's last byte was written.
fn replay(addr: SocketAddr, init: &[u8], fragments: &[(Vec<u8>, Duration)]) -> Vec<Instant> {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).ok();
    let head = format!(
        "PUT /ingest/bench?key={KEY} HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).expect("ingest head");
    chunked(&mut tcp, init);
    let start = Instant::now();
    let mut due = start;
    let mut sent = Vec::with_capacity(fragments.len());
    for (bytes, duration) in fragments {
        // A live encoder emits a fragment once its whole duration has been captured.
        due += *duration;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        chunked(&mut tcp, bytes);
        sent.push(Instant::now());
    }
    tcp.write_all(b"0\r\n\r\n").expect("ingest end");
    let mut response = String::new();
    let _ = tcp.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "ingest: {response}");
    sent
}

fn status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut tcp) = TcpStream::connect(addr) else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    if tcp.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if tcp.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn latest_seq(addr: SocketAddr) -> Option<u64> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.write_all(b"GET /api/channels/bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).ok()?;
    let body = raw.split("\r\n\r\n").nth(1)?;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["latest_seq"].as_u64()
}

/// utime + stime of `pid`, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    ticks / hz
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args = Args::parse();
    eprintln!(
        "ingest-bench: encoding {} s at {} kbit/s",
        args.seconds, args.kbps
    );
    let (init, fragments) = encode(args.seconds, args.kbps);
    let bytes: usize = fragments.iter().map(|(b, _)| b.len()).sum();
    let media: Duration = fragments.iter().map(|(_, d)| *d).sum();
    let mbps = bytes as f64 * 8.0 / media.as_secs_f64() / 1e6;
    let server = start_server(&args.server);
    eprintln!(
        "ingest-bench: {} fragments, {mbps:.2} Mbit/s, server at {}",
        fragments.len(),
        server.addr
    );

    // Phase 1: delay.
    let available: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; fragments.len()]));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (available, done, addr, poll) =
            (available.clone(), done.clone(), server.addr, args.poll_ms);
        let n = fragments.len();
        std::thread::spawn(move || {
            let mut next = 0usize;
            while next < n && !done.load(std::sync::atomic::Ordering::Relaxed) {
                if status(addr, &format!("/api/channels/bench/chunks/{next}")) == 200 {
                    available.lock().unwrap()[next] = Some(Instant::now());
                    next += 1;
                    continue;
                }
                std::thread::sleep(Duration::from_millis(poll));
            }
        })
    };
    let sent = replay(server.addr, &init, &fragments);
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.join().expect("poller");
    let available = available.lock().unwrap().clone();
    let mut delays: Vec<f64> = sent
        .iter()
        .zip(&available)
        .filter_map(|(s, a)| a.map(|a| a.saturating_duration_since(*s).as_secs_f64() * 1e3))
        .collect();
    delays.sort_by(f64::total_cmp);
    let missing = fragments.len() - delays.len();

    // Phase 2: CPU, with nothing but the ingest running.
    let pid = server.child.id();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    replay(server.addr, &init, &fragments);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let cpu_percent = cpu / wall * 100.0;
    let seq = latest_seq(server.addr);

    let result = serde_json::json!({
        "bench": "ingest",
        "seconds": args.seconds,
        "fragments": fragments.len(),
        "fragment_s": media.as_secs_f64() / fragments.len() as f64,
        "ingest_mbps": (mbps * 1000.0).round() / 1000.0,
        "poll_ms": args.poll_ms,
        "delay_ms": {
            "p50": percentile(&delays, 0.5),
            "p95": percentile(&delays, 0.95),
            "p99": percentile(&delays, 0.99),
            "max": delays.last().copied().unwrap_or(f64::NAN),
            "missing": missing,
        },
        "cpu_percent": (cpu_percent * 100.0).round() / 100.0,
        "cpu_percent_per_mbps": (cpu_percent / mbps * 1000.0).round() / 1000.0,
        "latest_seq": seq,
    });
    println!("{result}");
}
