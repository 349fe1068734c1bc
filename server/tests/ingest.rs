//! Ingest, the demo channel and the HTTP side, against a real server on port 0.
//!
//! The HTTP client here is a few lines over a TCP socket on purpose: the tests need to send
//! a chunked body slowly, break it mid-stream and drop the connection, which a full client
//! hides.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shoal::media::demo::CLIP;
use shoal::media::segmenter::{Event, Limits, Segmenter};
use shoal::media::MediaOptions;
use swarm::{Chunk, VerifyingKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::Server;

const KEY: &str = "s3cret";

async fn start(demo: bool) -> Server {
    let config = shoal::ServeConfig {
        media: MediaOptions {
            channels: vec![format!("live:{KEY}")],
            data_dir: Some(common::data_dir("ingest")),
            no_demo: !demo,
            config: None,
            http_fallback_rate: None,
        },
        ..Default::default()
    };
    common::serve(config).await
}

struct Response {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

async fn read_response(mut tcp: TcpStream) -> Response {
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 4 + n..];
        }
        body = out;
    }
    Response {
        status,
        headers: head,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    read_response(tcp).await
}

/// Opens `PUT path` with a chunked body; the caller writes with [`send`].
async fn open_ingest(addr: SocketAddr, path: &str, extra: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "PUT {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n{extra}Connection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp
}

/// Writes `bytes` as body chunks. Write errors are left to the response to explain: a
/// refused ingest is answered and closed before its body is read.
async fn send(tcp: &mut TcpStream, bytes: &[u8]) {
    for part in bytes.chunks(7_000) {
        let mut frame = format!("{:x}\r\n", part.len()).into_bytes();
        frame.extend_from_slice(part);
        frame.extend_from_slice(b"\r\n");
        if tcp.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn end(mut tcp: TcpStream) -> Response {
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    read_response(tcp).await
}

/// Byte offsets in the demo clip where its init segment and each fragment end.
fn clip_boundaries() -> Vec<usize> {
    let mut s = Segmenter::new(Limits::default());
    let mut events = Vec::new();
    s.push(CLIP, &mut events).unwrap();
    let mut at = 0;
    events
        .iter()
        .map(|e| {
            at += match e {
                Event::Init(i) => i.bytes.len(),
                Event::Fragment(f) => f.bytes.len(),
            };
            at
        })
        .collect()
}

fn public_key(json: &serde_json::Value) -> VerifyingKey {
    let hex = json["public_key"].as_str().unwrap();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap()
}

async fn channel(addr: SocketAddr, name: &str) -> serde_json::Value {
    let r = get(addr, &format!("/api/channels/{name}")).await;
    assert_eq!(r.status, 200);
    r.json()
}

/// The demo channel's API view once its newest chunk is `seq` or later (it publishes one
/// every 0.5 s from start-up).
async fn demo_from(addr: SocketAddr, seq: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let json = channel(addr, "demo").await;
        if json["latest_seq"].as_u64() >= Some(seq) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "the demo has no chunk {seq} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Prometheus text of `GET /metrics`.
async fn metrics(addr: SocketAddr) -> String {
    String::from_utf8(get(addr, "/metrics").await.body).expect("metrics are UTF-8")
}

async fn fetch_chunk(addr: SocketAddr, name: &str, seq: u64, key: &VerifyingKey) -> Chunk {
    let r = get(addr, &format!("/api/channels/{name}/chunks/{seq}")).await;
    assert_eq!(r.status, 200, "chunk {seq}");
    Chunk::from_framed(&r.body, key).expect("chunk verifies with the channel key")
}

/// The video track's tfdt in a chunk of the demo clip's layout.
fn video_decode_time(init: &[u8], chunk: &[u8]) -> u64 {
    let mut s = Segmenter::new(Limits::default());
    let mut events = Vec::new();
    s.push(init, &mut events).unwrap();
    s.push(chunk, &mut events).unwrap();
    match events.last() {
        Some(Event::Fragment(f)) => f.info.track(1).unwrap().decode_time,
        _ => panic!("chunk is not a fragment"),
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::test]
async fn demo_chunks_follow_the_wall_clock() {
    let server = start(true).await;
    let json = demo_from(server.addr, 0).await;
    assert_eq!(json["codec"], "avc1.42c01e,mp4a.40.2");
    assert_eq!(json["live"], true);
    assert_eq!(json["demo"], true);
    assert_eq!(json["latest_keyframe_seq"], json["latest_seq"]);
    let key = public_key(&json);
    let first_seq = json["latest_seq"].as_u64().unwrap();
    let first = fetch_chunk(server.addr, "demo", first_seq, &key).await;
    let wall = now_us();
    assert!(wall.abs_diff(first.header.timestamp_us) < 1_000_000);
    assert!(first.header.keyframe);
    assert_eq!(first.header.duration_us, 500_000);

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let json = channel(server.addr, "demo").await;
    let seq = json["latest_seq"].as_u64().unwrap();
    let later = fetch_chunk(server.addr, "demo", seq, &key).await;
    let elapsed = now_us() - wall;
    assert!(seq >= first_seq + 3, "{first_seq} -> {seq} in 2 s");
    let advanced = later.header.timestamp_us - first.header.timestamp_us;
    assert!(
        advanced.abs_diff(elapsed) < 900_000,
        "timestamps advanced {advanced} us over {elapsed} us of wall clock"
    );
    let chunks = (advanced as f64 / 500_000.0).round() as u64;
    assert_eq!(chunks, seq - first_seq, "one chunk per 0.5 s");

    let init = get(server.addr, "/api/channels/demo/init").await;
    assert_eq!(init.status, 200);
    assert_eq!(init.header("content-type"), Some("video/mp4"));
    assert_eq!(init.header("access-control-allow-origin"), Some("*"));
    let c = get(server.addr, &format!("/api/channels/demo/chunks/{seq}")).await;
    assert!(c.header("cache-control").unwrap().contains("immutable"));
    let missing = get(
        server.addr,
        &format!("/api/channels/demo/chunks/{}", seq + 100),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("cache-control"), Some("no-store"));

    let metrics = metrics(server.addr).await;
    assert!(metrics.contains("shoal_chunks_total{channel=\"demo\"}"));
    assert!(metrics.contains("shoal_bytes_out_total{channel=\"demo\",path=\"http\"}"));
    assert!(metrics.contains("shoal_signal_connections_total"));
}

#[tokio::test]
async fn unknown_channel_and_wrong_key_change_nothing() {
    let server = start(false).await;
    let mut tcp = open_ingest(server.addr, "/ingest/nope?key=x", "").await;
    send(&mut tcp, &CLIP[..10_000]).await;
    let r = end(tcp).await;
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("unknown channel"));

    for (path, extra) in [
        ("/ingest/live?key=wrong", ""),
        ("/ingest/live", "X-Shoal-Key: wrong\r\n"),
        ("/ingest/live", "Authorization: Bearer wrong\r\n"),
        ("/ingest/live", ""),
    ] {
        let mut tcp = open_ingest(server.addr, path, extra).await;
        send(&mut tcp, &CLIP[..20_000]).await;
        let r = end(tcp).await;
        assert_eq!(r.status, 401, "{path} {extra}");
        assert!(String::from_utf8_lossy(&r.body).contains("stream key"));
    }
    let json = channel(server.addr, "live").await;
    assert!(json["latest_seq"].is_null());
    assert_eq!(json["live"], false);
    assert_eq!(get(server.addr, "/api/channels/demo").await.status, 404);
}

#[tokio::test]
async fn broken_body_keeps_earlier_chunks() {
    let server = start(false).await;
    let cuts = clip_boundaries();
    // Init and three fragments, then garbage where the next box header should be.
    let mut tcp = open_ingest(server.addr, &format!("/ingest/live?key={KEY}"), "").await;
    send(&mut tcp, &CLIP[..cuts[3]]).await;
    send(&mut tcp, b"\0\0\0\x02junkjunk").await;
    let r = end(tcp).await;
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("impossible size"));
    let json = channel(server.addr, "live").await;
    assert_eq!(json["latest_seq"], 2);
    let key = public_key(&json);
    for seq in 0..3 {
        fetch_chunk(server.addr, "live", seq, &key).await;
    }

    // A connection dropped in the middle of a fragment: again nothing earlier is lost and
    // the half fragment is not published.
    let mut tcp = open_ingest(server.addr, &format!("/ingest/live?key={KEY}"), "").await;
    send(&mut tcp, &CLIP[..cuts[2] + 500]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let json = channel(server.addr, "live").await;
    assert_eq!(json["latest_seq"], 4);
    for seq in 0..5 {
        fetch_chunk(server.addr, "live", seq, &key).await;
    }
}

#[tokio::test]
async fn reconnect_continues_sequence_and_media_time() {
    let server = start(false).await;
    let cuts = clip_boundaries();
    let path = format!("/ingest/live?key={KEY}");
    let mut first = open_ingest(server.addr, &path, "").await;
    send(&mut first, &CLIP[..cuts[4]]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let json = channel(server.addr, "live").await;
    assert_eq!(json["latest_seq"], 3);
    let key = public_key(&json);

    // The broadcaster reconnects while the server still holds the old connection: the new
    // ingest takes over and the old one is told so.
    let mut second = open_ingest(server.addr, &path, "Authorization: Bearer s3cret\r\n").await;
    send(&mut second, &CLIP[..cuts[6]]).await;
    let r = end(second).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let old = read_response(first).await;
    assert_eq!(old.status, 409);

    let json = channel(server.addr, "live").await;
    assert_eq!(json["latest_seq"], 3 + 6);
    let init = get(server.addr, "/api/channels/live/init").await.body;
    let mut expected = None;
    for seq in 0..=9 {
        let c = fetch_chunk(server.addr, "live", seq, &key).await;
        assert_eq!(c.header.seq, seq);
        let t = video_decode_time(&init, &c.bytes);
        if let Some(e) = expected {
            assert_eq!(t, e, "chunk {seq} continues the media time");
        }
        expected = Some(t + 7_680);
    }
}

#[tokio::test]
async fn ffmpeg_push_gives_playable_verified_chunks() {
    if std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: ffmpeg is not installed (scripts/setup installs it)");
        return;
    }
    let server = start(false).await;
    let url = format!("http://{}/ingest/live?key={KEY}", server.addr);
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=30")
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "3"])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
        ])
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
        ])
        .args(["-method", "PUT", &url])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let json = channel(server.addr, "live").await;
    let codec = json["codec"].as_str().unwrap();
    assert!(
        codec.starts_with("avc1.42") && codec.ends_with(",mp4a.40.2"),
        "{codec}"
    );
    let last = json["latest_seq"].as_u64().unwrap();
    assert!(last >= 4, "3 s in 0.5 s fragments: {last}");
    let key = public_key(&json);
    let mut file = get(server.addr, "/api/channels/live/init").await.body;
    let mut media_us = 0u64;
    for seq in 0..=last {
        let c = fetch_chunk(server.addr, "live", seq, &key).await;
        media_us += u64::from(c.header.duration_us);
        file.extend_from_slice(&c.bytes);
    }
    assert!((2_500_000..=3_600_000).contains(&media_us), "{media_us} us");
    // The chunks, appended to the init segment, decode without an error.
    let path = std::env::temp_dir().join(format!("shoal-ingest-{}.mp4", std::process::id()));
    std::fs::write(&path, &file).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A chunk request with `?wait` for the chunk after the newest is held until the demo
/// publishes it (every 0.5 s), and answered with it; one far ahead is answered 404 at once.
#[tokio::test]
async fn a_waiting_chunk_request_is_answered_when_the_chunk_is_published() {
    let server = start(true).await;
    let json = demo_from(server.addr, 0).await;
    let key = public_key(&json);
    let latest = json["latest_seq"].as_u64().unwrap();
    let t = Instant::now();
    let r = get(
        server.addr,
        &format!("/api/channels/demo/chunks/{}?wait", latest + 1),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let chunk = Chunk::from_framed(&r.body, &key).expect("the chunk verifies");
    assert_eq!(chunk.header.seq, latest + 1);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    let t = Instant::now();
    let far = get(
        server.addr,
        &format!("/api/channels/demo/chunks/{}?wait", latest + 100),
    )
    .await;
    assert_eq!(far.status, 404);
    assert_eq!(far.header("cache-control"), Some("no-store"));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let metrics = metrics(server.addr).await;
    assert!(
        metrics.contains("shoal_http_chunk_waiting{channel=\"demo\"} 0\n"),
        "{metrics}"
    );
}

/// With an HTTP budget, a swarm viewer's fallback request (`?swarm`) that would queue more
/// than a second behind what is already being sent gets 503 at once; a request from a viewer
/// in HTTP-only mode (no `?swarm`) is still served, and the refusal is counted.
#[tokio::test]
async fn a_full_http_budget_refuses_swarm_fallback_requests_at_once() {
    let config = shoal::ServeConfig {
        media: MediaOptions {
            data_dir: Some(common::data_dir("ingest")),
            // 20 kbit/s: one demo chunk (5-20 KB) books 2-8 s of the queue.
            http_fallback_rate: Some(20_000),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = common::serve(config).await;
    demo_from(server.addr, 2).await;
    let first = channel(server.addr, "demo").await["oldest_seq"]
        .as_u64()
        .unwrap();
    let url = |seq: u64, swarm: bool| {
        format!(
            "/api/channels/demo/chunks/{seq}{}",
            if swarm { "?swarm" } else { "" }
        )
    };
    let served = get(server.addr, &url(first, true)).await;
    assert_eq!(served.status, 200, "an empty queue serves");
    let refused = get(server.addr, &url(first + 1, true)).await;
    assert_eq!(refused.status, 503, "{}", refused.headers);
    let head = refused.headers.to_ascii_lowercase();
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(String::from_utf8_lossy(&refused.body).contains("busy"));
    let http_only = get(server.addr, &url(first + 1, false)).await;
    assert_eq!(http_only.status, 200, "HTTP-only viewers are always served");
    let metrics = metrics(server.addr).await;
    assert!(
        metrics.contains("shoal_http_fallback_refused_total{channel=\"demo\"} 1\n"),
        "{metrics}"
    );
}

/// The demo's init segment and first chunks, fetched from the API and appended to a Media
/// Source Extensions SourceBuffer in headless Chromium, buffer as one continuous range.
///
/// The page posts its result to a listener this test owns, and the test waits for that post.
/// (`--dump-dom` with a virtual-time budget was flaky: virtual time runs on while an MSE
/// append is in flight, so on a loaded machine the DOM was dumped before the page finished.)
#[tokio::test]
async fn demo_chunks_append_in_chromium_mse() {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok()
    });
    let Some(chromium) = chromium else {
        eprintln!("SKIPPED: chromium is not installed (scripts/setup installs it)");
        return;
    };
    let server = start(true).await;
    demo_from(server.addr, 3).await;
    let report = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = format!(
        r#"<html><body><pre id=out>pending</pre><script>
const out = document.getElementById('out');
const report = text => {{
  out.textContent = text;
  fetch('http://{report}/result', {{method: 'POST', mode: 'no-cors', body: text}});
}};
(async () => {{
  try {{
    const base = 'http://{server}/api/channels/demo';
    const j = await (await fetch(base)).json();
    const ms = new MediaSource();
    const v = document.createElement('video');
    v.muted = true;
    document.body.appendChild(v);
    v.src = URL.createObjectURL(ms);
    await new Promise(r => ms.addEventListener('sourceopen', r, {{once: true}}));
    const sb = ms.addSourceBuffer(j.mime);
    const append = b => new Promise((ok, bad) => {{
      sb.onupdateend = ok;
      sb.onerror = () => bad(new Error('append: ' + (v.error && v.error.message)));
      sb.appendBuffer(b);
    }});
    await append(await (await fetch(base + '/init')).arrayBuffer());
    for (let s = j.oldest_seq; s <= j.oldest_seq + 3; s++) {{
      const b = new Uint8Array(await (await fetch(base + '/chunks/' + s)).arrayBuffer());
      await append(b.subarray(4 + new DataView(b.buffer).getUint32(0)));
    }}
    const r = [];
    for (let i = 0; i < sb.buffered.length; i++)
      r.push(sb.buffered.start(i).toFixed(2) + '-' + sb.buffered.end(i).toFixed(2));
    report('ranges=' + r.join(','));
  }} catch (e) {{ report('error ' + e); }}
}})();
</script></body></html>"#,
        server = server.addr,
        report = report.local_addr().unwrap(),
    );
    let dir = std::env::temp_dir().join(format!("shoal-mse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("mse.html");
    std::fs::write(&html, page).unwrap();
    let mut browser = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("chromium.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let result = tokio::select! {
        posted = tokio::time::timeout(Duration::from_secs(60), read_post(&report)) => {
            posted.expect("the page reported within 60 s")
        }
        exited = browser.wait() => {
            let err = std::fs::read_to_string(dir.join("chromium.log")).unwrap_or_default();
            panic!("chromium exited ({exited:?}) before the page reported: {err}");
        }
    };
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Four 0.5 s chunks from the first: one range, 2 s long.
    let ranges = result
        .strip_prefix("ranges=")
        .unwrap_or_else(|| panic!("the page failed: {result}"));
    assert!(!ranges.contains(','), "gaps: {ranges}");
    let (start, end) = ranges.split_once('-').expect("one range");
    let len = end.parse::<f64>().unwrap() - start.parse::<f64>().unwrap();
    assert!((len - 2.0).abs() < 0.05, "{ranges}");
}

/// The body of the first POST that reaches `listener`, answered with 204. Other requests (a
/// browser may ask for /favicon.ico) are answered with 404 and skipped.
async fn read_post(listener: &tokio::net::TcpListener) -> String {
    loop {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(i + 4);
            }
            let mut part = [0u8; 4096];
            match tcp.read(&mut part).await {
                Ok(0) | Err(_) => break None,
                Ok(n) => buf.extend_from_slice(&part[..n]),
            }
        };
        let Some(head_end) = head_end else { continue };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if !head.starts_with("post ") {
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut part = [0u8; 4096];
            match tcp.read(&mut part).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&part[..n]),
            }
        }
        let _ = tcp
            .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .await;
        let end = buf.len().min(head_end + len);
        return String::from_utf8_lossy(&buf[head_end..end]).into_owned();
    }
}
