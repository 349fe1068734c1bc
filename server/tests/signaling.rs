//! The signaling endpoint end to end: a real server on port 0, real WebSocket clients.
//!
//! No assertion depends on timing: every wait is for an event, with a generous timeout that
//! only matters when the test is already failing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use futures_util::{SinkExt, StreamExt};
use shoal::signal::{ChannelInfo, Signal, SignalConfig, StaticDirectory};
use signaling::protocol::{
    encode_client, parse_server, ClientMessage, ErrorCode, ServerMessage, UnlinkReason,
};
use signaling::tracker::PeerId;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    signal: Signal,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves channels "demo", "one" and "two" with these limits through `shoal::serve`.
    async fn start(config: SignalConfig) -> Server {
        let directory = StaticDirectory::new(false);
        for name in ["demo", "one", "two"] {
            directory.insert(
                name,
                ChannelInfo {
                    public_key: "ab".repeat(32),
                    codec: Some("avc1.42E01E".into()),
                    init_url: format!("/api/channels/{name}/init"),
                    chunk_url: None,
                },
            );
        }
        let signal = Signal::new(config, Arc::new(directory));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        // The same wiring as `shoal::serve` without the media side (the binary test below
        // covers the whole server).
        let router = signal.router();
        let on_stop = signal.clone();
        let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.await;
            on_stop.shutdown(Duration::from_secs(5)).await;
        });
        let done = tokio::spawn(async move { serve.await });
        Server {
            addr,
            signal,
            stop: Some(stop),
            done,
        }
    }

    async fn client(&self) -> Client {
        let url = format!("ws://{}/ws", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Client { ws }
    }
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq)]
enum Closed {
    Code(u16),
    NoFrame,
}

impl Client {
    async fn send(&mut self, msg: &ClientMessage) {
        self.send_raw(encode_client(msg)).await;
    }

    async fn send_raw(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next signaling message (WebSocket pings are answered and skipped).
    async fn recv(&mut self) -> ServerMessage {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("no message in time")
                .expect("socket ended")
                .expect("socket error");
            match msg {
                Message::Text(t) => return parse_server(t.as_bytes()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    async fn expect_error(&mut self, code: ErrorCode) {
        match self.recv().await {
            ServerMessage::Error { code: got, .. } => assert_eq!(got, code),
            other => panic!("expected error {code}, got {other:?}"),
        }
    }

    /// Reads until the server closes the socket; skips anything before.
    async fn expect_closed(&mut self) -> Closed {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("not closed in time");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => return Closed::Code(frame.code.into()),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Closed::NoFrame,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Proves the connection is alive and nothing else was queued for it before now.
    async fn ping(&mut self) {
        self.send(&ClientMessage::Ping).await;
        assert_eq!(self.recv().await, ServerMessage::Pong);
    }

    async fn join(&mut self, channel: &str) -> (PeerId, Vec<PeerId>) {
        self.send(&ClientMessage::Join {
            channel: channel.into(),
        })
        .await;
        match self.recv().await {
            ServerMessage::Welcome {
                peer_id,
                neighbours,
                channel,
                ice_servers,
                ..
            } => {
                assert_eq!(channel.public_key, "ab".repeat(32));
                assert!(ice_servers.is_empty());
                (peer_id, neighbours)
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn join_hands_out_neighbours_and_counts_viewers() {
    let server = Server::start(SignalConfig::default()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;
    let (ida, first) = a.join("demo").await;
    assert!(first.is_empty());
    let (idb, nb) = b.join("demo").await;
    assert_eq!(nb, vec![ida]);
    let (idc, mut nc) = c.join("demo").await;
    nc.sort();
    let mut expect = vec![ida, idb];
    expect.sort();
    assert_eq!(nc, expect);
    assert!(ida != idb && idb != idc && ida != idc);
    assert_eq!(server.signal.viewers("demo"), 3);
    assert_eq!(server.signal.viewers("one"), 0);
    assert_eq!(server.signal.channels(), vec![("demo".to_string(), 3)]);

    // A second join on the same socket is refused; asking for more works.
    a.send(&ClientMessage::Join {
        channel: "one".into(),
    })
    .await;
    a.expect_error(ErrorCode::AlreadyJoined).await;
    a.send(&ClientMessage::More { want: 4 }).await;
    match a.recv().await {
        ServerMessage::Peers { neighbours, .. } => assert!(!neighbours.contains(&ida)),
        other => panic!("expected peers, got {other:?}"),
    }
    a.send(&ClientMessage::Report {
        spare_upload: 2.0,
        latest_seq: 10,
        depth: Some(2),
    })
    .await;
    a.send(&ClientMessage::Unlink {
        peer: idb,
        reason: None,
    })
    .await;
    a.ping().await;

    // An unknown channel is refused without closing the socket.
    let mut d = server.client().await;
    d.send(&ClientMessage::Join {
        channel: "nosuch".into(),
    })
    .await;
    d.expect_error(ErrorCode::UnknownChannel).await;
    d.ping().await;
}

#[tokio::test]
async fn a_peer_two_neighbours_dropped_for_lying_is_handed_to_nobody() {
    let server = Server::start(SignalConfig::default()).await;
    let mut x = server.client().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let (idx, _) = x.join("demo").await;
    let (ida, na) = a.join("demo").await;
    assert_eq!(na, vec![idx]);
    let (idb, nb) = b.join("demo").await;
    assert!(nb.contains(&idx) && nb.contains(&ida), "{nb:?}");

    // One neighbour's word is not enough: a newcomer still gets x.
    a.send(&ClientMessage::Unlink {
        peer: idx,
        reason: Some(UnlinkReason::Lying),
    })
    .await;
    a.ping().await;
    let mut c = server.client().await;
    let (_, nc) = c.join("demo").await;
    assert!(nc.contains(&idx), "{nc:?}");

    // Failed requests are not held against it (an overloaded honest peer fails them too).
    b.send(&ClientMessage::Unlink {
        peer: idx,
        reason: Some(UnlinkReason::Useless),
    })
    .await;
    b.ping().await;
    let mut e = server.client().await;
    let (_, ne) = e.join("demo").await;
    assert!(ne.contains(&idx), "{ne:?}");

    // A second neighbour that got forged data from it shuns it: the next newcomer gets the
    // others only, and x gets nobody more when it asks.
    let mut f = server.client().await;
    let (idf, nf) = f.join("demo").await;
    assert!(nf.contains(&idx), "{nf:?}");
    f.send(&ClientMessage::Unlink {
        peer: idx,
        reason: Some(UnlinkReason::Lying),
    })
    .await;
    f.ping().await;
    let mut d = server.client().await;
    let (_, nd) = d.join("demo").await;
    assert!(
        !nd.contains(&idx) && [ida, idb, idf].iter().all(|p| nd.contains(p)),
        "{nd:?}"
    );
    x.send(&ClientMessage::More { want: 4 }).await;
    match x.recv().await {
        ServerMessage::Peers { neighbours, .. } => assert!(neighbours.is_empty(), "{neighbours:?}"),
        other => panic!("expected peers, got {other:?}"),
    }
}

#[tokio::test]
async fn offer_answer_and_candidates_are_relayed() {
    let server = Server::start(SignalConfig::default()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let (ida, _) = a.join("demo").await;
    let (idb, nb) = b.join("demo").await;
    assert_eq!(nb, vec![ida]);

    b.send(&ClientMessage::Offer {
        to: ida,
        sdp: "v=0 offer \"quoted\"\r\n".into(),
    })
    .await;
    assert_eq!(
        a.recv().await,
        ServerMessage::Offer {
            from: idb,
            sdp: "v=0 offer \"quoted\"\r\n".into()
        }
    );
    a.send(&ClientMessage::Answer {
        to: idb,
        sdp: "v=0 answer".into(),
    })
    .await;
    assert_eq!(
        b.recv().await,
        ServerMessage::Answer {
            from: ida,
            sdp: "v=0 answer".into()
        }
    );
    a.send(&ClientMessage::Candidate {
        to: idb,
        candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    })
    .await;
    assert_eq!(
        b.recv().await,
        ServerMessage::Candidate {
            from: ida,
            candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        }
    );
    assert_eq!(server.signal.stats().relayed.load(Ordering::Relaxed), 3);

    // A client-initiated close is answered with a close frame (a clean close for browsers).
    let mut c = server.client().await;
    c.ping().await;
    c.ws.close(None).await.unwrap();
    assert_eq!(c.expect_closed().await, Closed::Code(1000));

    // Leaving tells the neighbour; relaying to the departed peer fails cleanly.
    b.send(&ClientMessage::Leave).await;
    assert_eq!(b.expect_closed().await, Closed::Code(1000));
    assert_eq!(a.recv().await, ServerMessage::PeerLeft { peer: idb });
    a.send(&ClientMessage::Offer {
        to: idb,
        sdp: "x".into(),
    })
    .await;
    a.expect_error(ErrorCode::UnknownPeer).await;
}

#[tokio::test]
async fn no_relay_across_channels_or_before_joining() {
    let server = Server::start(SignalConfig::default()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut loner = server.client().await;
    let (ida, _) = a.join("one").await;
    let (idb, _) = b.join("two").await;

    b.send(&ClientMessage::Offer {
        to: ida,
        sdp: "sneaky".into(),
    })
    .await;
    b.expect_error(ErrorCode::UnknownPeer).await;
    // Anything relayed to `a` would have been queued before this pong.
    a.ping().await;

    loner
        .send(&ClientMessage::Offer {
            to: idb,
            sdp: "x".into(),
        })
        .await;
    loner.expect_error(ErrorCode::NotJoined).await;
    b.ping().await;

    // Nor to oneself.
    a.send(&ClientMessage::Answer {
        to: ida,
        sdp: "me".into(),
    })
    .await;
    a.expect_error(ErrorCode::UnknownPeer).await;
    assert_eq!(server.signal.stats().relayed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn malformed_messages_get_errors_not_disconnects() {
    let server = Server::start(SignalConfig::default()).await;
    let mut c = server.client().await;
    let cases: [(&str, ErrorCode); 7] = [
        ("not json at all", ErrorCode::BadJson),
        ("{\"v\":1,\"type\":", ErrorCode::BadJson),
        ("[]", ErrorCode::BadMessage),
        ("{\"type\":\"ping\"}", ErrorCode::BadVersion),
        ("{\"v\":1,\"type\":\"teleport\"}", ErrorCode::UnknownType),
        (
            "{\"v\":1,\"type\":\"offer\",\"to\":1}",
            ErrorCode::BadMessage,
        ),
        (
            "{\"v\":1,\"type\":\"join\",\"channel\":7}",
            ErrorCode::BadMessage,
        ),
    ];
    for (text, code) in cases {
        c.send_raw(text.into()).await;
        c.expect_error(code).await;
    }
    for bad in ["../etc", "a b", "", ".hidden", "ünï", &"x".repeat(65)] {
        c.send(&ClientMessage::Join {
            channel: bad.into(),
        })
        .await;
        c.expect_error(ErrorCode::BadChannel).await;
    }
    // Binary frames are read as the same JSON.
    c.ws.send(Message::binary(
        encode_client(&ClientMessage::Ping).into_bytes(),
    ))
    .await
    .unwrap();
    assert_eq!(c.recv().await, ServerMessage::Pong);
    let (_, _) = c.join("demo").await;
}

#[tokio::test]
async fn oversized_message_is_refused_and_others_keep_going() {
    let config = SignalConfig {
        max_message_bytes: 1024,
        ..SignalConfig::default()
    };
    let server = Server::start(config).await;
    let mut big = server.client().await;
    let mut other = server.client().await;
    let (idbig, _) = big.join("demo").await;
    other.join("demo").await;
    big.send(&ClientMessage::Offer {
        to: 1,
        sdp: "x".repeat(1500),
    })
    .await;
    big.expect_error(ErrorCode::TooLarge).await;
    assert_eq!(big.expect_closed().await, Closed::Code(1009));
    assert_eq!(other.recv().await, ServerMessage::PeerLeft { peer: idbig });
    other.ping().await;
    // A message just under the limit passes.
    other
        .send(&ClientMessage::Offer {
            to: 999_999,
            sdp: "x".repeat(900),
        })
        .await;
    other.expect_error(ErrorCode::UnknownPeer).await;
}

#[tokio::test]
async fn flooding_is_rate_limited_then_closed() {
    // No refill at all, so the count below does not depend on how fast the test runs.
    let config = SignalConfig {
        msgs_per_sec: 0,
        msg_burst: 10,
        ..SignalConfig::default()
    };
    let server = Server::start(config).await;
    let mut flood = server.client().await;
    let mut calm = server.client().await;
    let ping = encode_client(&ClientMessage::Ping);
    for _ in 0..100 {
        if flood.ws.feed(Message::text(ping.clone())).await.is_err() {
            break;
        }
    }
    let _ = flood.ws.flush().await;
    let mut pongs = 0;
    let mut limited = 0;
    let closed = loop {
        let next = tokio::time::timeout(PATIENCE, flood.ws.next())
            .await
            .expect("no message in time");
        match next {
            Some(Ok(Message::Text(t))) => match parse_server(t.as_bytes()).unwrap() {
                ServerMessage::Pong => pongs += 1,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } => limited += 1,
                other => panic!("unexpected {other:?}"),
            },
            Some(Ok(Message::Close(Some(frame)))) => break Closed::Code(frame.code.into()),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => break Closed::NoFrame,
        }
    };
    assert_eq!(closed, Closed::Code(1008));
    assert_eq!(pongs, 10);
    assert_eq!(limited, 2, "one warning, then the closing error");
    assert!(server.signal.stats().rate_limited.load(Ordering::Relaxed) >= 11);
    calm.ping().await;
}

#[tokio::test]
async fn missed_heartbeats_close_the_socket_and_tell_neighbours() {
    // Roomy enough that the polled client never misses three pings on a loaded machine.
    let config = SignalConfig {
        heartbeat_ms: 200,
        heartbeat_missed: 3,
        ..SignalConfig::default()
    };
    let server = Server::start(config).await;
    let mut silent = server.client().await;
    let mut awake = server.client().await;
    let (ids, _) = silent.join("demo").await;
    let (_, n) = awake.join("demo").await;
    assert_eq!(n, vec![ids]);
    // `silent` is not polled from here on, so it never answers the server's pings; `awake`
    // is, and tungstenite answers them for it.
    assert_eq!(awake.recv().await, ServerMessage::PeerLeft { peer: ids });
    assert!(matches!(
        silent.expect_closed().await,
        Closed::Code(1001) | Closed::NoFrame
    ));
    awake.ping().await;
    assert_eq!(server.signal.viewers("demo"), 1);
    assert!(
        server
            .signal
            .stats()
            .heartbeat_timeouts
            .load(Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn sockets_that_never_join_are_closed() {
    let config = SignalConfig {
        heartbeat_ms: 50,
        heartbeat_missed: 2,
        ..SignalConfig::default()
    };
    let server = Server::start(config).await;
    let mut lurker = server.client().await;
    // Answers pings (it is polled) but never joins.
    assert_eq!(lurker.expect_closed().await, Closed::Code(1008));
}

#[tokio::test]
async fn graceful_shutdown_closes_sockets_and_returns() {
    let mut server = Server::start(SignalConfig::default()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join("demo").await;
    b.ping().await;
    let _ = server.stop.take().unwrap().send(());
    assert_eq!(a.expect_closed().await, Closed::Code(1001));
    assert_eq!(b.expect_closed().await, Closed::Code(1001));
    let result = tokio::time::timeout(PATIENCE, &mut server.done)
        .await
        .expect("server did not stop");
    result.unwrap().unwrap();
    assert_eq!(
        server
            .signal
            .stats()
            .connections_open
            .load(Ordering::Relaxed),
        0
    );
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await;
    assert!(refused.is_err());
}

/// The real binary: prints its URL, serves, and on SIGTERM closes sockets with 1001 and exits 0.
#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let data = std::env::temp_dir().join(format!("shoal-signal-test-{}", std::process::id()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--any-channel",
            "--no-demo",
        ])
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("no URL printed")
        .unwrap()
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .expect("a ws:// URL")
        .trim_end_matches(')')
        .to_string();
    let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut c = Client { ws };
    c.send(&ClientMessage::Join {
        channel: "anything".into(),
    })
    .await;
    assert!(matches!(c.recv().await, ServerMessage::Welcome { .. }));
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    assert_eq!(c.expect_closed().await, Closed::Code(1001));
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("server did not exit")
        .unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&data);
}

/// An emptied channel room retires; joining it again starts a fresh one.
#[tokio::test]
async fn empty_rooms_retire_and_reopen() {
    let server = Server::start(SignalConfig::default()).await;
    for round in 0..3 {
        let mut a = server.client().await;
        let mut b = server.client().await;
        let (ida, _) = a.join("one").await;
        let (_, nb) = b.join("one").await;
        assert_eq!(nb, vec![ida], "round {round}");
        assert_eq!(server.signal.channels(), vec![("one".to_string(), 2)]);
        a.send(&ClientMessage::Leave).await;
        b.send(&ClientMessage::Leave).await;
        a.expect_closed().await;
        b.expect_closed().await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !server.signal.channels().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "room never retired");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let stats = server.signal.stats();
    assert_eq!(stats.channels_active.load(Ordering::Relaxed), 0);
    assert_eq!(stats.peers_joined.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn channel_and_server_capacity_limits() {
    let config = SignalConfig {
        max_peers_per_channel: 1,
        max_channels: 1,
        ..SignalConfig::default()
    };
    let server = Server::start(config).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;
    a.join("one").await;
    b.send(&ClientMessage::Join {
        channel: "one".into(),
    })
    .await;
    b.expect_error(ErrorCode::ChannelFull).await;
    c.send(&ClientMessage::Join {
        channel: "two".into(),
    })
    .await;
    c.expect_error(ErrorCode::ServerFull).await;
    // Refused sockets stay usable.
    b.ping().await;
    c.ping().await;
    a.ping().await;
}
