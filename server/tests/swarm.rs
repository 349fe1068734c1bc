//! A real swarm on loopback: `shoal serve` on port 0 with its demo channel and origin
//! seeder, and native peers over real WebRTC data channels (the `webrtc` crate).
//!
//! Every wait is for a condition, with a deadline that only matters when the test is failing
//! (generous, for a loaded 2-core machine).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shoal::media::{Channel, MediaOptions};
use shoal::peer::{PeerOptions, PeerStats};
use swarm::Config;
use tokio::sync::{oneshot, watch};

/// Honest peers in the swarm.
const PEERS: usize = 4;
/// Deadline for every wait.
const PATIENCE: Duration = Duration::from_secs(45);

mod common;
use common::Server;

async fn start_server() -> Server {
    start_server_with(shoal::peer::seeder::SeederOptions::default()).await
}

async fn start_server_with(seeder: shoal::peer::seeder::SeederOptions) -> Server {
    let config = shoal::ServeConfig {
        media: MediaOptions {
            data_dir: Some(common::data_dir("swarm")),
            ..Default::default()
        },
        seeder,
        ..Default::default()
    };
    common::serve(config).await
}

struct TestPeer {
    stats: watch::Receiver<PeerStats>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestPeer {
    fn start(server: &Server, corrupt: bool) -> TestPeer {
        let (tx, stats) = watch::channel(PeerStats::default());
        let mut opts = PeerOptions::relay(&format!("http://{}", server.addr), "demo", None);
        // Viewers that play, so continuity is measured too.
        opts.config = Config::default();
        opts.stats = Some(tx);
        opts.corrupt_pieces = corrupt;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(shoal::peer::run(opts, async move {
            let _ = stopped.await;
        }));
        TestPeer {
            stats,
            stop: Some(stop),
            task,
        }
    }

    fn now(&self) -> PeerStats {
        self.stats.borrow().clone()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Waits until `ok` holds; panics with `what` after [`PATIENCE`].
async fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    assert!(wait_until(ok).await, "timed out waiting for {what}");
}

/// Waits until `ok` holds, checking every 250 ms; false after [`PATIENCE`].
async fn wait_until(mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    true
}

fn live_edge(channel: &Channel) -> u64 {
    channel.snapshot().latest_seq.unwrap_or(0)
}

/// Holds the newest chunks: at most two behind the channel's live edge, and verified at
/// least `min_chunks` since joining.
fn at_live_edge(st: &PeerStats, edge: u64, min_chunks: u64) -> bool {
    st.latest.is_some_and(|l| l + 2 >= edge) && st.metrics.chunks_verified >= min_chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_peers_reach_the_live_edge_and_relay_to_each_other() {
    let server = start_server().await;
    let channel = server.app.media.channel("demo").expect("demo channel");
    wait_for("the demo channel to publish", || live_edge(&channel) >= 2).await;

    let peers: Vec<TestPeer> = (0..PEERS)
        .map(|_| TestPeer::start(&server, false))
        .collect();
    wait_for("every peer at the live edge", || {
        let edge = live_edge(&channel);
        peers.iter().all(|p| at_live_edge(&p.now(), edge, 8))
    })
    .await;
    // Keep watching a little: they stay at the edge and keep playing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let edge = live_edge(&channel);
    let stats: Vec<PeerStats> = peers.iter().map(TestPeer::now).collect();
    for st in &stats {
        assert!(
            at_live_edge(st, edge, 10),
            "peer {} fell behind: {st:?}",
            st.peer_id
        );
        assert_eq!(st.metrics.chunks_rejected, 0, "{st:?}");
    }

    // Bytes flowed peer to peer: viewers received far more than the origin sent, and the
    // relays uploaded to each other.
    let received: u64 = stats.iter().map(|s| s.metrics.bytes_in()).sum();
    let relayed: u64 = stats.iter().map(|s| s.metrics.bytes_to_peers).sum();
    let c = &channel.counters;
    let origin =
        c.bytes_out_seeder.load(Ordering::Relaxed) + c.bytes_out_http.load(Ordering::Relaxed);
    assert!(origin > 0, "the origin seeder sent nothing");
    assert!(relayed > 0, "no peer uploaded anything");
    assert!(
        received as f64 > 1.5 * origin as f64,
        "viewers received {received} bytes, the origin sent {origin}: little peer-to-peer flow"
    );

    for p in peers {
        p.stop().await;
    }
}

/// The seeder keeps its default cap (1.25 copies), so the liar, first to join, takes all of
/// it. Once the honest peers ban it (their only parent) they must still make progress: the
/// seeder hands one of the liar's two roots to an honest peer, and peers follow chunks their
/// neighbours announce even when no header reaches them by push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_corrupt_pieces_is_banned_and_the_others_keep_playing() {
    let server = start_server_with(shoal::peer::seeder::SeederOptions::default()).await;
    let channel = server.app.media.channel("demo").expect("demo channel");
    wait_for("the demo channel to publish", || live_edge(&channel) >= 2).await;

    // The liar joins first, so it is next to the seeder and a likely parent for the others.
    let liar = TestPeer::start(&server, true);
    wait_for("the liar to hold chunks", || {
        liar.now().metrics.chunks_verified >= 2
    })
    .await;
    let peers: Vec<TestPeer> = (0..PEERS)
        .map(|_| TestPeer::start(&server, false))
        .collect();
    wait_for("an honest peer to ban the liar", || {
        peers.iter().any(|p| p.now().metrics.peers_banned > 0)
    })
    .await;
    let banned_at = live_edge(&channel);
    let ok = wait_until(|| {
        let edge = live_edge(&channel);
        edge >= banned_at + 6 && peers.iter().all(|p| at_live_edge(&p.now(), edge, 8))
    })
    .await;
    if !ok {
        for p in &peers {
            eprintln!("{:?}", p.now());
        }
        eprintln!("edge {} liar {:?}", live_edge(&channel), liar.now());
        panic!("the honest peers did not keep playing at the live edge after the ban");
    }

    liar.stop().await;
    for p in peers {
        p.stop().await;
    }
}
