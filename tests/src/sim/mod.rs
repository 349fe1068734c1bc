//! A discrete-event simulator: many `swarm` peers and an origin in virtual time.
//!
//! What it models, and how:
//! - **Upload** of every node (viewers and the origin) is one serialising queue: a message
//!   leaves only after everything queued before it, at the node's capacity. The sender learns
//!   that bytes left through [`Input::Sent`], exactly as a data channel's buffered amount tells
//!   a browser.
//! - **Download** is a serialising queue too, so a burst from many senders queues at the receiver.
//! - **Latency**: one-way, per pair of nodes, drawn once from the scenario's range.
//! - **Overhead**: every message pays per-packet headers (SCTP+DTLS+UDP+IP, about 60 bytes per
//!   1,200-byte packet) on both queues.
//! - **Connection set-up**: the tracker's pairing reaches both peers over signaling, then the
//!   link opens after the set-up delay; a dial to a peer that already left never opens.
//! - **Churn**: leavers vanish without a word; neighbours notice only by silence, and the
//!   tracker only after a heartbeat timeout.
//! - **Neighbour choice** is the signaling crate's [`Tracker`], the same code the server runs.
//! - **Hostile viewers** lie in their status and `Have` messages, and either corrupt every
//!   piece they send or send none at all.
//!
//! A peer learns only what messages tell it. Everything is driven by one seeded RNG and a
//! deterministic event order, so a seed reproduces a run byte for byte.

mod memo;
mod scenario;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;
use signaling::tracker::{PeerReport, Tracker, TrackerConfig};
use swarm::chunk::ChunkHeader;
use swarm::{Chunk, Config, DropReason, Input, Output, Peer, PeerId, Playable, SigningKey, Time};

use memo::Memo;
pub use scenario::{Scenario, Uploads};

const SEC: f64 = 1e6;
/// The origin node's id.
const ORIGIN: usize = 0;
/// Bytes of packet headers per 1,200 bytes of message.
const PACKET_OVERHEAD: usize = 60;
const PACKET_PAYLOAD: usize = 1200;
/// How long the signaling server takes to notice a vanished peer.
const HEARTBEAT_TIMEOUT: Time = 10_000_000;
/// A peer counts as settled this long after joining (see `Report::continuity_settled`).
pub const SETTLE_S: u64 = 10;
/// The origin refuses HTTP fallback requests (503) when its HTTP queue is this deep (as
/// `shoal serve --http-fallback-rate` does, `shoal::media::HttpBudget::MAX_QUEUE`).
const HTTP_MAX_QUEUE: Time = 1_000_000;

/// One run's figures (definitions in ARCHITECTURE.md).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Concurrent viewers.
    pub peers: usize,
    /// RNG seed.
    pub seed: u64,
    /// 1 − origin bytes sent / bytes viewers received.
    pub offload: f64,
    /// (N−1)/N for the mean number of concurrent viewers.
    pub offload_bound: f64,
    /// `offload` over honest viewers alone, from their own counts of the chunk bytes they
    /// kept: 1 − bytes they got from the seeder and the HTTP fallback / all they got.
    /// Without liars it is within 0.004 of `offload`, which counts every byte on the wire
    /// (duplicates and message overhead too); in `hostile` the liars, banned by every
    /// neighbour they lie to, get most of their stream over HTTP, and that (part of
    /// `offload`) is their cost, not the honest viewers'.
    pub offload_honest: f64,
    /// Delivery delay percentiles over all (honest peer, chunk), seconds.
    pub delivery_p50_s: f64,
    /// 95th percentile.
    pub delivery_p95_s: f64,
    /// 99th percentile.
    pub delivery_p99_s: f64,
    /// Median of sampled playback delay behind the live edge, seconds.
    pub playback_delay_p50_s: f64,
    /// 95th percentile of the same.
    pub playback_delay_p95_s: f64,
    /// Chunks played on time / chunks due, honest peers.
    pub continuity: f64,
    /// The same over chunks due in each peer's first [`SETTLE_S`] seconds after joining
    /// (while it finds parents), and over the rest: where the misses are.
    pub continuity_joining: f64,
    /// See `continuity_joining`.
    pub continuity_settled: f64,
    /// 95th percentile of join → first frame (the playout clock reaching the first chunk,
    /// start buffer included), seconds.
    pub startup_p95_s: f64,
    /// The same over viewers that joined a running swarm (after the scenario's join
    /// window), who can start on history their neighbours hold; `null` when none did.
    pub startup_late_p95_s: Option<f64>,
    /// Bytes received that were already held / all chunk bytes received.
    pub duplicate_ratio: f64,
    /// Played chunks whose bytes differ from the origin's.
    pub corrupt_chunks_played: u64,
    /// Origin upload (seeder + HTTP fallback), Mbit/s over the run.
    pub origin_mbit_s: f64,
    /// Share of origin bytes that went over the HTTP fallback.
    pub http_share: f64,
    /// HTTP fallback requests the origin refused because its HTTP queue was full.
    pub http_refused: u64,
    /// Honest peers that banned at least one hostile neighbour / hostile peers banned total.
    pub bans: u64,
    /// Honest viewers that joined during the run.
    pub joined: usize,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Fingerprint of every delivered message, its time and endpoints (the run's trace).
    pub trace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostility {
    Corrupt,
    Withhold,
}

struct Node {
    peer: Peer,
    alive: bool,
    hostile: Option<Hostility>,
    /// Upload and download, bytes per second.
    up: f64,
    down: f64,
    up_free: Time,
    down_free: Time,
    wake: Time,
    joined: Time,
    /// Its (chunks due, chunks on time) when it had watched for [`SETTLE_S`] seconds.
    settled: Option<(u64, u64)>,
    /// The nodes it has an open link to, ascending (a link is in both ends' lists). Kept per
    /// node rather than as one set of pairs: every delivery checks its link, and a node's own
    /// short list is at hand where one large set was a tree walk away.
    links: Vec<usize>,
}

impl Node {
    fn linked(&self, other: usize) -> bool {
        self.links.binary_search(&other).is_ok()
    }
}

#[derive(Debug)]
enum Ev {
    Publish,
    Wake(usize),
    /// Bytes arrive at `to` from `from`.
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    /// Bytes have come through `to`'s download queue.
    Arrive {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    /// The sender's uplink finished sending `n` bytes to `to`.
    Sent {
        node: usize,
        to: usize,
        n: usize,
    },
    Connect(usize, usize),
    Disconnect {
        node: usize,
        peer: usize,
    },
    Join,
    Leave,
    TrackerLeave(usize),
    HttpAtOrigin {
        node: usize,
        seq: u64,
    },
    HttpDone {
        node: usize,
        seq: u64,
        body: Option<Vec<u8>>,
    },
    Sample,
}

/// `ok` of `due` as a share (1 when nothing was due).
fn share(ok: u64, due: u64) -> f64 {
    if due == 0 {
        1.0
    } else {
        ok as f64 / due as f64
    }
}

/// Puts a message of `n` bytes (plus packet overhead) through a serialising queue that is
/// free from `*free` on and runs at `rate` bytes per second; returns when it has passed.
fn serialise(free: &mut Time, now: Time, rate: f64, n: usize) -> Time {
    let wire = n + n.div_ceil(PACKET_PAYLOAD).max(1) * PACKET_OVERHEAD;
    let done = (*free).max(now) + (wire as f64 / rate * SEC) as Time;
    *free = done;
    done
}

/// A fast fingerprint of a byte stream: foldhash with a fixed seed over every write, and the
/// stream's length. Not cryptographic: it only has to show that two runs delivered the same
/// bytes in the same order, without costing as much as the run (SHA-256 over every message
/// did, and a hand-rolled two-lane hash was still a twelfth of a large run).
#[derive(Clone)]
struct Fingerprint {
    hash: foldhash::fast::FoldHasher<'static>,
    len: u64,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint {
            hash: foldhash::fast::FixedState::with_seed(0x5b0a1).build_hasher(),
            len: 0,
        }
    }
}

impl Fingerprint {
    fn update(&mut self, bytes: &[u8]) {
        self.hash.write(bytes);
        self.len += bytes.len() as u64;
    }

    fn finish(&self) -> String {
        format!("{:016x}{:016x}", self.hash.finish(), self.len)
    }
}

/// When an event happens and where it waits: ordered by time, then by scheduling order
/// (deterministic). The event itself waits in [`Sim::slots`], so the heap moves only this
/// one number, not whole events (popping the heap was a tenth of a large run's time): the
/// time in the high 64 bits, then the scheduling order, then the slot in the low
/// [`Scheduled::SLOT_BITS`]. The order is unique, so the slot never decides a comparison,
/// and one integer compares faster than three fields.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled(u128);

impl Scheduled {
    const SLOT_BITS: u32 = 24;

    fn new(at: Time, order: u64, slot: u32) -> Self {
        assert!(
            order < 1 << (64 - Self::SLOT_BITS),
            "fewer than 2^40 events a run"
        );
        assert!(
            slot < 1 << Self::SLOT_BITS,
            "fewer than 2^24 pending events"
        );
        Scheduled(u128::from(at) << 64 | u128::from(order) << Self::SLOT_BITS | u128::from(slot))
    }

    fn at(&self) -> Time {
        (self.0 >> 64) as Time
    }

    fn slot(&self) -> u32 {
        self.0 as u32 & ((1 << Self::SLOT_BITS) - 1)
    }
}

/// A chunk the origin published.
struct Published {
    /// When.
    at: Time,
    chunk: Chunk,
    /// Its bytes, shared with every peer that completes the chunk (see
    /// [`Peer::share_chunk`]): one copy of each chunk instead of one a peer.
    bytes: Arc<[u8]>,
}

/// The simulator for one scenario and seed.
pub struct Sim {
    sc: Scenario,
    seed: u64,
    rng: ChaCha8Rng,
    now: Time,
    order: u64,
    events: BinaryHeap<Reverse<Scheduled>>,
    /// The scheduled events, by `Scheduled::slot`; `None` once taken.
    slots: Vec<Option<Ev>>,
    /// Free indices in `slots`.
    free_slots: Vec<u32>,
    nodes: Vec<Node>,
    tracker: Tracker,
    key: SigningKey,
    next_seq: u64,
    /// What the origin published, for checking what viewers play.
    truth: BTreeMap<u64, Published>,
    /// The checks of what the origin published, shared by every peer.
    memo: Arc<Memo>,
    // accounting
    origin_sent: u64,
    http_sent: u64,
    viewers_received: u64,
    delivery: Vec<f64>,
    playback: Vec<f64>,
    corrupt_played: u64,
    viewer_seconds: f64,
    trace: Fingerprint,
    quiet: bool,
    trace_tree: bool,
    debug: bool,
    /// `SIM_TREES=S`: print every node's place in the push trees each second of the first S.
    trees_s: Option<f64>,
    /// (time, via HTTP, delivery delay) of every completion, when debugging.
    completions: Vec<(Time, bool, f64)>,
    /// The seeder's upload cap, bytes per second (reserved on the origin's link).
    seeder_cap: u64,
    /// `SIM_SEEDER_COPIES`: the seeder's cap in copies, fixed.
    fixed_copies: Option<f64>,
    /// `SIM_KNOWN_UPLOAD=1`: every viewer starts capped at its link's rate, as if a free and
    /// exact upload probe had measured it (an experiment's bound, not a model of the client).
    known_upload: bool,
    /// When the origin's HTTP queue drains.
    http_free: Time,
    http_refused: u64,
}

impl Sim {
    /// A simulator for `sc` with `seed`.
    pub fn new(sc: Scenario, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut key_bytes = [0u8; 32];
        rng.fill_bytes(&mut key_bytes);
        let key = SigningKey::from_bytes(&key_bytes);
        let tracker = Tracker::new(TrackerConfig::default(), rng.next_u64());
        let memo = Arc::new(Memo::new(key.verifying_key()));
        let mut sim = Sim {
            sc,
            seed,
            rng,
            now: 0,
            order: 0,
            events: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            nodes: Vec::new(),
            tracker,
            key,
            next_seq: 0,
            truth: BTreeMap::new(),
            memo,
            origin_sent: 0,
            http_sent: 0,
            viewers_received: 0,
            delivery: Vec::new(),
            playback: Vec::new(),
            corrupt_played: 0,
            viewer_seconds: 0.0,
            trace: Fingerprint::default(),
            quiet: false,
            trace_tree: std::env::var_os("SIM_TRACE").is_some(),
            trees_s: std::env::var("SIM_TREES").ok().and_then(|v| v.parse().ok()),
            debug: std::env::var_os("SIM_DEBUG").is_some(),
            completions: Vec::new(),
            seeder_cap: 0,
            fixed_copies: None,
            known_upload: std::env::var_os("SIM_KNOWN_UPLOAD").is_some(),
            http_free: 0,
            http_refused: 0,
        };
        sim.add_origin();
        sim
    }

    /// Silences progress output (for tests).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    fn bytes_per_s(&self, multiple: f64) -> f64 {
        multiple * self.sc.bitrate / 8.0
    }

    fn add_origin(&mut self) {
        // The seeder's upload cap follows the audience as the server's does
        // (`Config::seeder_copies`); the swarm carries the rest and the HTTP fallback shares
        // the origin's link on top. `SIM_SEEDER_COPIES` fixes it for experiments.
        self.fixed_copies = std::env::var("SIM_SEEDER_COPIES")
            .ok()
            .and_then(|v| v.parse::<f64>().ok());
        let copies = self.fixed_copies.unwrap_or(Config::seeder_copies(0));
        let cap = self.bytes_per_s(copies) as u64;
        self.seeder_cap = cap;
        let cfg = Config {
            bitrate_hint: self.bytes_per_s(1.0),
            substreams: self.viewer_config().substreams,
            ..Config::origin(Some(cap))
        };
        let mut peer = Peer::new(cfg, self.key.verifying_key(), 0, self.seed ^ 0x5eed);
        peer.share_verified(self.memo.clone());
        self.nodes.push(Node {
            peer,
            alive: true,
            hostile: None,
            up: self.sc.origin_bps / 8.0,
            down: self.sc.origin_bps / 8.0,
            up_free: 0,
            down_free: 0,
            wake: 0,
            joined: 0,
            settled: None,
            links: Vec::new(),
        });
        self.tracker.add_seeder(ORIGIN as PeerId);
        self.drain(ORIGIN);
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.order += 1;
        let slot = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                u32::try_from(self.slots.len() - 1).expect("fewer than 4 billion pending events")
            }
        };
        self.events
            .push(Reverse(Scheduled::new(at, self.order, slot)));
    }

    /// Opens the link between `a` and `b`.
    fn link(&mut self, a: usize, b: usize) {
        for (x, y) in [(a, b), (b, a)] {
            let links = &mut self.nodes[x].links;
            if let Err(i) = links.binary_search(&y) {
                links.insert(i, y);
            }
        }
    }

    /// Closes the link between `a` and `b`; false if there was none.
    fn unlink(&mut self, a: usize, b: usize) -> bool {
        let mut was = false;
        for (x, y) in [(a, b), (b, a)] {
            let links = &mut self.nodes[x].links;
            if let Ok(i) = links.binary_search(&y) {
                links.remove(i);
                was = true;
            }
        }
        was
    }

    fn latency(&self, a: usize, b: usize) -> Time {
        let (lo, hi) = self.sc.latency_ms;
        let (x, y) = (a.min(b) as u64, a.max(b) as u64);
        // A fixed value per pair, from the seed: splitmix64 of the pair.
        let mut z = self.seed ^ (x << 32 | y).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = (z % 1_000_000) as f64 / 1e6;
        let ms = lo + (hi - lo) * u;
        (ms * 1000.0) as Time
    }

    fn draw_upload(&mut self) -> f64 {
        let u = (self.rng.next_u64() % 1_000_000) as f64 / 1e6;
        match &self.sc.uploads {
            Uploads::Fixed(m) => *m,
            Uploads::Uniform(a, b) => a + (b - a) * u,
            Uploads::Classes(classes) => {
                let mut acc = 0.0;
                for (share, m) in classes {
                    acc += share;
                    if u < acc {
                        return *m;
                    }
                }
                classes.last().map_or(1.0, |c| c.1)
            }
        }
    }

    /// A viewer's settings: the defaults, with overrides from `SIM_SUBSTREAMS`,
    /// `SIM_TARGET_DELAY_MS`, `SIM_FALLBACK_MS`, `SIM_PUSH_GRACE_MS` and
    /// `SIM_START_BUFFER_MS` for experiments.
    fn viewer_config(&self) -> Config {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let mut cfg = Config {
            bitrate_hint: self.bytes_per_s(1.0),
            upload_limit: self.sc.upload_cap.map(|m| self.bytes_per_s(m) as u64),
            ..Config::default()
        };
        if let Some(k) = env("SIM_SUBSTREAMS") {
            cfg.substreams = k as usize;
        }
        if let Some(ms) = env("SIM_TARGET_DELAY_MS") {
            cfg.target_delay = ms * 1000;
        }
        if let Some(ms) = env("SIM_FALLBACK_MS") {
            cfg.fallback_margin = ms * 1000;
        }
        if let Some(ms) = env("SIM_PUSH_GRACE_MS") {
            cfg.push_grace = ms * 1000;
        }
        if let Some(ms) = env("SIM_START_BUFFER_MS") {
            cfg.start_buffer = ms * 1000;
        }
        cfg
    }

    /// Sets the seeder's cap for the current audience (after every join and leave).
    fn update_seeder_cap(&mut self) {
        if self.fixed_copies.is_some() {
            return;
        }
        let viewers = self.nodes[1..].iter().filter(|n| n.alive).count();
        let cap = self.bytes_per_s(Config::seeder_copies(viewers)) as u64;
        if cap != self.seeder_cap {
            self.seeder_cap = cap;
            self.nodes[ORIGIN].peer.set_upload_limit(Some(cap));
        }
    }

    fn join(&mut self) {
        let id = self.nodes.len();
        let up = self.draw_upload();
        // Exactly the scenario's share of joiners lie: every (1/share)-th one.
        let every = if self.sc.hostile > 0.0 {
            (1.0 / self.sc.hostile).round().max(1.0) as usize
        } else {
            usize::MAX
        };
        let hostile = if id % every == 0 {
            Some(if (id / every) % 2 == 0 {
                Hostility::Corrupt
            } else {
                Hostility::Withhold
            })
        } else {
            None
        };
        let mut cfg = self.viewer_config();
        if self.known_upload {
            // What a perfect, free upload probe at join would give (an experiment's bound).
            let link = self.bytes_per_s(up) as u64;
            cfg.upload_limit = Some(cfg.upload_limit.map_or(link, |c| c.min(link)));
        }
        let mut peer = Peer::new(
            cfg,
            self.key.verifying_key(),
            self.now,
            self.seed ^ id as u64,
        );
        peer.share_verified(self.memo.clone());
        self.nodes.push(Node {
            peer,
            alive: true,
            hostile,
            up: self.bytes_per_s(up),
            down: self.bytes_per_s(self.sc.download),
            up_free: self.now,
            down_free: self.now,
            wake: 0,
            joined: self.now,
            settled: None,
            links: Vec::new(),
        });
        // The join reaches the tracker over signaling; its answer comes back the same way.
        let rtt = 2 * self.latency(id, ORIGIN);
        let picked = self.tracker.join(id as PeerId);
        for n in picked {
            let at = self.now + rtt + (self.sc.connect_s * SEC) as Time;
            self.push(at, Ev::Connect(id, n as usize));
        }
        self.drain(id);
    }

    fn leave(&mut self) {
        let alive: Vec<usize> = (1..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect();
        if alive.is_empty() {
            return;
        }
        let victim = alive[(self.rng.next_u64() % alive.len() as u64) as usize];
        self.viewer_seconds += (self.now - self.nodes[victim].joined) as f64 / SEC;
        self.nodes[victim].alive = false;
        for other in self.nodes[victim].links.clone() {
            self.unlink(victim, other);
        }
        self.push(self.now + HEARTBEAT_TIMEOUT, Ev::TrackerLeave(victim));
    }

    /// Hands a node's outputs to the network, the tracker and the player.
    fn drain(&mut self, id: usize) {
        while let Some(out) = self.nodes[id].peer.poll() {
            match out {
                Output::Send { to, bytes } => self.send(id, to as usize, bytes),
                Output::HttpFetch { seq } => {
                    let at = self.now + self.latency(id, ORIGIN);
                    self.push(at, Ev::HttpAtOrigin { node: id, seq });
                }
                Output::Play(chunk) => self.check_played(id, &chunk),
                Output::Drop { peer, reason } => {
                    let peer = peer as usize;
                    if self.trace_tree {
                        eprintln!(
                            "{:>9.3} {id:>3} drops {peer} ({reason:?})",
                            self.now as f64 / SEC
                        );
                    }
                    // As the server does: only forged data accuses (see `Tracker::accuse`).
                    // Liars' own drops accuse too: the tracker cannot tell them apart.
                    if reason == DropReason::Lying {
                        self.tracker.accuse(id as PeerId, peer as PeerId);
                    }
                    self.tracker.unlink(id as PeerId, peer as PeerId);
                    if self.unlink(id, peer) {
                        let at = self.now + self.latency(id, peer);
                        self.push(
                            at,
                            Ev::Disconnect {
                                node: peer,
                                peer: id,
                            },
                        );
                    }
                }
                Output::NeedPeers { count } => {
                    let rtt = 2 * self.latency(id, ORIGIN);
                    for n in self.tracker.more(id as PeerId, count) {
                        let at = self.now + rtt + (self.sc.connect_s * SEC) as Time;
                        self.push(at, Ev::Connect(id, n as usize));
                    }
                }
                Output::Report {
                    spare_upload,
                    latest,
                    depth,
                } => {
                    if self.nodes[id].hostile.is_none() {
                        self.tracker.report_depth(id as PeerId, depth);
                        self.tracker.report(
                            id as PeerId,
                            PeerReport {
                                spare_upload,
                                latest_seq: latest,
                            },
                        );
                    } else {
                        // Liars claim to be ideal neighbours.
                        self.tracker.report_depth(id as PeerId, 1);
                        self.tracker.report(
                            id as PeerId,
                            PeerReport {
                                spare_upload: 4.0,
                                latest_seq: self.next_seq,
                            },
                        );
                    }
                }
                Output::Event(swarm::Event::ChunkComplete { seq, http }) => {
                    if let Some(p) = self.truth.get(&seq) {
                        self.nodes[id].peer.share_chunk(seq, &p.bytes);
                    }
                    if self.nodes[id].hostile.is_none() && id != ORIGIN {
                        if let Some(&Published { at: published, .. }) = self.truth.get(&seq) {
                            if published >= self.nodes[id].joined {
                                let d = (self.now - published) as f64 / SEC;
                                self.delivery.push(d);
                                if self.debug {
                                    self.completions.push((self.now, http, d));
                                }
                            }
                        }
                    }
                }
                Output::Event(_) => {}
                Output::Wake(at) => {
                    self.nodes[id].wake = at;
                    self.push(at, Ev::Wake(id));
                }
            }
        }
    }

    fn check_played(&mut self, id: usize, chunk: &Playable) {
        let ok = self
            .truth
            .get(&chunk.header.seq)
            .is_some_and(|p| Arc::ptr_eq(&p.bytes, &chunk.bytes) || p.bytes[..] == chunk.bytes[..]);
        if !ok {
            self.corrupt_played += 1;
        }
        let _ = id;
    }

    fn send(&mut self, from: usize, to: usize, mut bytes: Vec<u8>) {
        if !self.nodes[from].alive {
            return;
        }
        if let Some(h) = self.nodes[from].hostile {
            if !self.lie(from, h, &mut bytes) {
                return;
            }
        }
        let n = bytes.len();
        let node = &mut self.nodes[from];
        let done = serialise(&mut node.up_free, self.now, node.up, n);
        if from == ORIGIN {
            self.origin_sent += n as u64;
        }
        self.push(done, Ev::Sent { node: from, to, n });
        let at = done + self.latency(from, to);
        self.push(at, Ev::Deliver { from, to, bytes });
    }

    /// Rewrites a hostile node's message; false drops it.
    fn lie(&mut self, _from: usize, how: Hostility, bytes: &mut [u8]) -> bool {
        use swarm::wire::Message;
        let Ok(msg) = Message::decode(bytes) else {
            return true;
        };
        match msg {
            Message::Piece { .. } | Message::Header(_) if how == Hostility::Withhold => false,
            Message::Piece { .. } => {
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0x55;
                }
                true
            }
            Message::Status {
                depths,
                spare_slots: _,
                ..
            } => {
                let latest = self.next_seq.saturating_sub(1);
                let fake = Message::Status {
                    base: latest.saturating_sub(127),
                    have: u128::MAX,
                    latest,
                    depths: vec![0; depths.len()],
                    spare_slots: 16,
                    children: 0,
                };
                let enc = fake.encode();
                if enc.len() == bytes.len() {
                    bytes.copy_from_slice(&enc);
                }
                true
            }
            Message::Reject { .. } => false,
            _ => true,
        }
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if !self.nodes[to].alive || !self.nodes[to].linked(from) {
            return;
        }
        // Download queue: the message is usable once it has fully arrived.
        let node = &mut self.nodes[to];
        let done = serialise(&mut node.down_free, self.now, node.down, bytes.len());
        if done > self.now {
            // Re-deliver when the download queue has passed it (download is not instant).
            self.push(done, Ev::Arrive { from, to, bytes });
            return;
        }
        self.receive(from, to, &bytes);
    }

    fn receive(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if !self.nodes[to].alive || !self.nodes[to].linked(from) {
            return;
        }
        if to != ORIGIN {
            self.viewers_received += bytes.len() as u64;
        }
        if self.trace_tree {
            use swarm::wire::Message;
            if let Ok(
                m @ (Message::Subscribe { .. }
                | Message::Accept { .. }
                | Message::Unsubscribe { .. }),
            ) = Message::decode(bytes)
            {
                eprintln!("{:>9.3} {from:>3} -> {to:<3} {m:?}", self.now as f64 / SEC);
            }
        }
        if self.nodes[to].hostile == Some(Hostility::Corrupt) {
            // An attacker answers every request with fabricated pieces.
            use swarm::wire::Message;
            if let Ok(Message::Request { seq, pieces, .. }) = Message::decode(bytes) {
                for index in pieces {
                    let mut data = vec![0u8; swarm::chunk::PIECE_SIZE];
                    self.rng.fill_bytes(&mut data);
                    let forged = Message::Piece { seq, index, data }.encode();
                    self.send(to, from, forged);
                }
                return;
            }
        }
        self.trace.update(&self.now.to_be_bytes());
        self.trace.update(&(from as u64).to_be_bytes());
        self.trace.update(&(to as u64).to_be_bytes());
        self.trace.update(bytes);
        self.nodes[to].peer.handle(
            Input::Message {
                from: from as PeerId,
                bytes,
            },
            self.now,
        );
        self.drain(to);
    }

    fn publish(&mut self) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let base = self.sc.bitrate / 8.0 * self.sc.chunk_s;
        // ±15 % variable bitrate.
        let vbr = 0.85 + 0.3 * (self.rng.next_u64() % 1000) as f64 / 1000.0;
        let len = (base * vbr) as usize;
        let mut bytes = vec![0u8; len];
        self.rng.fill_bytes(&mut bytes);
        let header = ChunkHeader::sign(
            &self.key,
            seq,
            self.now,
            (self.sc.chunk_s * SEC) as u32,
            true,
            &bytes,
        )
        .expect("a 2 Mbit/s chunk is far below the size limit");
        let chunk = Chunk { header, bytes };
        let shared: Arc<[u8]> = chunk.bytes.as_slice().into();
        assert!(
            self.memo.check(&chunk.header, &shared),
            "the origin's own chunk passes its checks"
        );
        self.truth.insert(
            seq,
            Published {
                at: self.now,
                bytes: shared,
                chunk: chunk.clone(),
            },
        );
        self.tracker.set_live_edge(seq);
        self.nodes[ORIGIN]
            .peer
            .handle(Input::Publish(chunk), self.now);
        self.drain(ORIGIN);
        // Hostile viewers announce the new chunk at once, without holding it.
        let liars: Vec<usize> = (1..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].hostile.is_some())
            .collect();
        for l in liars {
            for t in self.nodes[l].links.clone() {
                let msg = swarm::wire::Message::Have { seq }.encode();
                self.send(l, t, msg);
            }
        }
        let next = self.now + (self.sc.chunk_s * SEC) as Time;
        self.push(next, Ev::Publish);
    }

    fn http_at_origin(&mut self, node: usize, seq: u64) {
        // The body is built only once the request is served: in a saturated run most are
        // refused, and framing a whole chunk for each of them was a large share of the run.
        let n = self.nodes[ORIGIN]
            .peer
            .has_chunk(seq)
            .then(|| self.truth.get(&seq))
            .flatten()
            .map(|p| p.chunk.framed_len());
        let Some(n) = n else {
            let at = self.now + self.latency(node, ORIGIN);
            self.push(
                at,
                Ev::HttpDone {
                    node,
                    seq,
                    body: None,
                },
            );
            return;
        };
        // HTTP gets what the origin's link has beyond the seeder's reserved cap (the server
        // gives its seeder's flows priority), and nothing when the seeder's cap takes the
        // whole link. When the HTTP queue is already more than a second deep the server
        // answers 503 at once rather than serve a chunk too late.
        let wire = n + n.div_ceil(1400) * 60;
        let rate = self.sc.origin_bps / 8.0 - self.seeder_cap as f64;
        let start = self.http_free.max(self.now);
        if rate < 1.0 || start > self.now + HTTP_MAX_QUEUE {
            let at = self.now + self.latency(node, ORIGIN);
            self.http_refused += 1;
            self.push(
                at,
                Ev::HttpDone {
                    node,
                    seq,
                    body: None,
                },
            );
            return;
        }
        let framed = self.truth[&seq].chunk.to_framed();
        let done = start + (wire as f64 / rate * SEC) as Time;
        self.http_free = done;
        self.origin_sent += n as u64;
        self.http_sent += n as u64;
        let at = done + self.latency(node, ORIGIN);
        self.push(
            at,
            Ev::HttpDone {
                node,
                seq,
                body: Some(framed),
            },
        );
    }

    fn sample(&mut self) {
        let mut alive = 0;
        for i in 1..self.nodes.len() {
            let now = self.now;
            let n = &mut self.nodes[i];
            if !n.alive || n.hostile.is_some() {
                continue;
            }
            alive += 1;
            if n.settled.is_none() && now >= n.joined + SETTLE_S * SEC as Time {
                let m = n.peer.metrics();
                n.settled = Some((m.chunks_due, m.chunks_on_time));
            }
            if let Some(ts) = n.peer.playhead_timestamp(self.now) {
                self.playback.push(self.now.saturating_sub(ts) as f64 / SEC);
            }
        }
        let t = self.now as f64 / SEC;
        if self.trees_s.is_some_and(|s| t <= s) {
            for (i, n) in self.nodes.iter().enumerate() {
                eprintln!(
                    "TREE t={t} node={i} alive={} up={:.2} joined={:.2} {} latest={:?}",
                    n.alive,
                    n.up / self.bytes_per_s(1.0),
                    n.joined as f64 / SEC,
                    n.peer.debug_summary(),
                    n.peer.latest()
                );
            }
        }
        if !self.quiet && (t as u64) % 10 == 0 {
            let (due, ok) = self.continuity_counts();
            eprintln!(
                "sim {}: t={:>5.0}s viewers={} origin={:.1} Mbit/s continuity={:.4} events={}",
                self.sc.name,
                t,
                alive,
                self.origin_sent as f64 * 8.0 / t.max(1.0) / 1e6,
                share(ok, due),
                self.order,
            );
        }
        self.push(self.now + SEC as Time, Ev::Sample);
    }

    fn continuity_counts(&self) -> (u64, u64) {
        let mut due = 0;
        let mut ok = 0;
        for n in &self.nodes[1..] {
            if n.hostile.is_none() {
                due += n.peer.metrics().chunks_due;
                ok += n.peer.metrics().chunks_on_time;
            }
        }
        (due, ok)
    }

    /// Runs the scenario to its end and reports.
    pub fn run(mut self) -> Report {
        let started = std::time::Instant::now();
        let end = (self.sc.duration_s * SEC) as Time;
        self.push(0, Ev::Publish);
        self.push(SEC as Time, Ev::Sample);
        let window = (self.sc.join_window_s * SEC) as Time;
        for i in 0..self.sc.peers {
            let at = if self.sc.peers > 1 {
                window * i as Time / self.sc.peers as Time
            } else {
                0
            } + 1_000_000;
            self.push(at, Ev::Join);
        }
        // Churn: leaves at the scenario's rate, each replaced by a newcomer.
        let per_s = self.sc.churn_per_min * self.sc.peers as f64 / 60.0;
        if per_s > 0.0 {
            let gap = SEC / per_s;
            let mut t = window as f64 + 1e6 + gap;
            while t < end as f64 {
                self.push(t as Time, Ev::Leave);
                self.push(t as Time + 1, Ev::Join);
                t += gap;
            }
        }
        while let Some(Reverse(next)) = self.events.pop() {
            let (at, slot) = (next.at(), next.slot());
            if at > end {
                break;
            }
            let ev = self.slots[slot as usize]
                .take()
                .expect("a scheduled slot holds its event");
            self.free_slots.push(slot);
            self.now = at;
            match ev {
                Ev::Publish => self.publish(),
                Ev::Wake(id) => {
                    if self.nodes[id].alive && self.nodes[id].wake == at {
                        self.nodes[id].peer.handle(Input::Timeout, at);
                        self.drain(id);
                    }
                }
                Ev::Deliver { from, to, bytes } => self.deliver(from, to, bytes),
                Ev::Arrive { from, to, bytes } => self.receive(from, to, &bytes),
                Ev::Sent { node, to, n } => {
                    if self.nodes[node].alive {
                        self.nodes[node].peer.handle(
                            Input::Sent {
                                to: to as PeerId,
                                bytes: n,
                            },
                            at,
                        );
                        self.drain(node);
                    }
                }
                Ev::Connect(a, b) => {
                    let linked = self.nodes[a].linked(b);
                    if self.nodes[a].alive && self.nodes[b].alive && !linked {
                        self.link(a, b);
                        for (x, y) in [(a, b), (b, a)] {
                            self.nodes[x].peer.handle(
                                Input::Connected {
                                    peer: y as PeerId,
                                    seeder: y == ORIGIN,
                                },
                                at,
                            );
                            self.drain(x);
                        }
                    } else if !linked {
                        self.tracker.unlink(a as PeerId, b as PeerId);
                    }
                }
                Ev::Disconnect { node, peer } => {
                    if self.nodes[node].alive {
                        self.nodes[node].peer.handle(
                            Input::Disconnected {
                                peer: peer as PeerId,
                            },
                            at,
                        );
                        self.drain(node);
                    }
                }
                Ev::Join => {
                    self.join();
                    self.update_seeder_cap();
                }
                Ev::Leave => {
                    self.leave();
                    self.update_seeder_cap();
                }
                Ev::TrackerLeave(id) => {
                    self.tracker.leave(id as PeerId);
                }
                Ev::HttpAtOrigin { node, seq } => self.http_at_origin(node, seq),
                Ev::HttpDone { node, seq, body } => {
                    if self.nodes[node].alive {
                        if let Some(b) = &body {
                            self.viewers_received += b.len() as u64;
                        }
                        self.nodes[node].peer.handle(
                            Input::Http {
                                seq,
                                body: body.as_deref(),
                            },
                            at,
                        );
                        self.drain(node);
                    }
                }
                Ev::Sample => self.sample(),
            }
        }
        self.now = end;
        self.report(started.elapsed().as_secs_f64())
    }

    fn report(mut self, wall_s: f64) -> Report {
        let end = self.now;
        if self.debug {
            // Delivery by 20 s window, split by how the chunk completed.
            let mut t0 = 0;
            while t0 < end {
                let t1 = t0 + 20_000_000;
                for http in [false, true] {
                    let mut v: Vec<f64> = self
                        .completions
                        .iter()
                        .filter(|c| c.0 >= t0 && c.0 < t1 && c.1 == http)
                        .map(|c| c.2)
                        .collect();
                    v.sort_by(f64::total_cmp);
                    let p = |q: f64| v.get(((v.len() as f64 - 1.0) * q) as usize).copied();
                    eprintln!(
                        "window {:>3}-{:<3}s http={http:<5} n={:<6} p50={:?} p95={:?}",
                        t0 / 1_000_000,
                        t1 / 1_000_000,
                        v.len(),
                        p(0.5),
                        p(0.95)
                    );
                }
                t0 = t1;
            }
            for (i, n) in self.nodes.iter().enumerate() {
                let m = n.peer.metrics();
                eprintln!(
                    "node {i} alive={} hostile={:?} up={:.0} {} peers={} seeder={} http={} dup={} verified={} due={} ok={} startup={:?}",
                    n.alive, n.hostile, n.up, n.peer.debug_summary(), m.bytes_from_peers, m.bytes_from_seeder, m.bytes_from_http, m.duplicate_bytes, m.chunks_verified, m.chunks_due, m.chunks_on_time, m.startup
                );
            }
        }
        let mut startup = Vec::new();
        let mut startup_late = Vec::new();
        // The initial joins run from 1 s to 1 s plus the window (`run`).
        let late_after = (self.sc.join_window_s * SEC) as Time + 1_000_000;
        let mut dup = 0u64;
        let mut received = 0u64;
        let (mut honest_in, mut honest_origin) = (0u64, 0u64);
        let mut bans = 0u64;
        let mut joined = 0usize;
        for i in 1..self.nodes.len() {
            let n = &self.nodes[i];
            if n.alive {
                self.viewer_seconds += (end - n.joined) as f64 / SEC;
            }
            if n.hostile.is_some() {
                continue;
            }
            joined += 1;
            let m = n.peer.metrics();
            let took = match m.startup {
                Some(s) => Some(s as f64 / SEC),
                // Never started: count as the whole time it watched.
                None if n.alive && end - n.joined > 5_000_000 => {
                    Some((end - n.joined) as f64 / SEC)
                }
                None => None,
            };
            if let Some(t) = took {
                startup.push(t);
                if n.joined > late_after {
                    startup_late.push(t);
                }
            }
            dup += m.duplicate_bytes;
            received += m.bytes_in() + m.duplicate_bytes;
            honest_in += m.bytes_in();
            honest_origin += m.bytes_from_seeder + m.bytes_from_http;
            bans += m.peers_banned;
        }
        let (due, ok) = self.continuity_counts();
        // Split each honest peer's counts at the moment it settled.
        let (mut join_due, mut join_ok) = (0, 0);
        for n in self.nodes[1..].iter().filter(|n| n.hostile.is_none()) {
            let m = n.peer.metrics();
            let (d, o) = n.settled.unwrap_or((m.chunks_due, m.chunks_on_time));
            join_due += d;
            join_ok += o;
        }
        let mean_viewers = self.viewer_seconds / self.sc.duration_s;
        let pct = |v: &mut Vec<f64>, p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            v.sort_by(f64::total_cmp);
            let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
            (v[i] * 1000.0).round() / 1000.0
        };
        let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
        let trace = self.trace.finish();
        Report {
            scenario: self.sc.name.to_string(),
            peers: self.sc.peers,
            seed: self.seed,
            offload: round(1.0 - self.origin_sent as f64 / self.viewers_received.max(1) as f64),
            offload_bound: round((mean_viewers - 1.0).max(0.0) / mean_viewers.max(1.0)),
            offload_honest: round(1.0 - honest_origin as f64 / honest_in.max(1) as f64),
            delivery_p50_s: pct(&mut self.delivery, 50.0),
            delivery_p95_s: pct(&mut self.delivery, 95.0),
            delivery_p99_s: pct(&mut self.delivery, 99.0),
            playback_delay_p50_s: pct(&mut self.playback, 50.0),
            playback_delay_p95_s: pct(&mut self.playback, 95.0),
            continuity: round(share(ok, due)),
            continuity_joining: round(share(join_ok, join_due)),
            continuity_settled: round(share(ok - join_ok, due - join_due)),
            startup_p95_s: pct(&mut startup, 95.0),
            startup_late_p95_s: (!startup_late.is_empty()).then(|| pct(&mut startup_late, 95.0)),
            duplicate_ratio: round(dup as f64 / received.max(1) as f64),
            corrupt_chunks_played: self.corrupt_played,
            origin_mbit_s: round(self.origin_sent as f64 * 8.0 / self.sc.duration_s / 1e6),
            http_share: round(self.http_sent as f64 / self.origin_sent.max(1) as f64),
            http_refused: self.http_refused,
            bans,
            joined,
            wall_s: (wall_s * 100.0).round() / 100.0,
            trace,
        }
    }
}
