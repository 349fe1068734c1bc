//! The tracker: picks whom a peer should dial. Sans-IO and deterministic for a given seed, so
//! the signaling server and the simulator run exactly the same logic.
//!
//! One [`Tracker`] serves one channel. It records every pair it hands out until one side
//! reports the link closed (or leaves), so it never assigns the same pair twice at once and
//! can bound each peer's neighbour count. Candidates are scored by free neighbour slots, spare
//! upload and closeness to the live edge; a random sample keeps each pick O(sample) however
//! large the channel grows, and the random tie-break spreads load so no peer is swamped.

use std::collections::{BTreeSet, HashMap};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A peer's id within one channel.
pub type PeerId = u64;

/// Depth assumed for a peer that has not reported one.
pub const UNKNOWN_DEPTH: u8 = 4;

/// Beyond [`TrackerConfig::seeder_neighbours`], the seeder gets one more neighbour for every
/// this many peers in the channel: two per copy of the stream it pushes to a large audience
/// (`swarm::Config::seeder_copies`, one copy per 100 viewers), since each copy feeds two
/// substream roots.
pub const VIEWERS_PER_SEEDER_LINK: usize = 50;

/// Neighbours that must have dropped a peer for misbehaving ([`Tracker::accuse`]) before the
/// tracker stops handing it out. One is not enough: a single liar could then shut an honest
/// peer out.
pub const ACCUSERS_TO_SHUN: usize = 2;

/// Accusers remembered per peer.
const MAX_ACCUSERS: usize = 8;

/// Tracker limits.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Neighbours handed to a joining peer.
    pub initial_neighbours: usize,
    /// Most neighbours any viewer is given (links it dials plus links dialled to it).
    pub max_neighbours: usize,
    /// Most viewers the origin seeder is a neighbour of in a channel of up to
    /// `seeder_neighbours * VIEWERS_PER_SEEDER_LINK` peers; one more per
    /// [`VIEWERS_PER_SEEDER_LINK`] beyond.
    pub seeder_neighbours: usize,
    /// Candidates scored per pick (a random sample when the channel is larger).
    pub sample: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            initial_neighbours: 6,
            // Room beyond what a viewer asks for (8, 12 when deep in a push tree), so that in
            // a flash crowd established viewers can still take newcomers. At 20, every viewer
            // more than 3 s old had all its slots taken within seconds (`flash` seed 1: each
            // of 349 at 11 s), newcomers were linked only to peers under a second old, which
            // hold no history to start on and no place in the trees, and the trees grew
            // from newcomer to newcomer. At 24, over `flash` seeds 1-6 continuity rose from
            // 0.9917 to 0.9996 and delivery p95 fell from 2.60 s to 2.39 s (`hundred` seeds
            // 1-16: 1.48 s to 1.29 s); 28 did better on `flash` (0.9995, 1.93 s) but let
            // `hostile` fall from 0.9994 to 0.9971 (seeds 1-8) with newcomers meeting more
            // liars.
            max_neighbours: 24,
            // Twice the seeder's usual root slots: when a root leaves, viewers that can
            // take its place are already linked to the seeder. With 4, its links could
            // all be held by full roots while a substream had none to spare, and nobody
            // else could reach the seeder for tens of seconds (`hundred` seed 20).
            seeder_neighbours: 8,
            sample: 48,
        }
    }
}

/// What a peer last told the tracker about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerReport {
    /// Upload it can still offer, in copies of the stream (0 for consume-only peers).
    pub spare_upload: f32,
    /// Newest chunk it holds.
    pub latest_seq: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    neighbours: BTreeSet<PeerId>,
    report: PeerReport,
    /// Hops from the origin in the peer's deepest push tree, as it last said
    /// ([`UNKNOWN_DEPTH`] until it says).
    depth: u8,
    seeder: bool,
    /// Distinct neighbours that dropped this peer for misbehaving (at most [`MAX_ACCUSERS`]).
    accused_by: Vec<PeerId>,
    /// Position in `Tracker::order`.
    slot: usize,
}

/// Neighbour picking for one channel.
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    peers: HashMap<PeerId, Entry>,
    /// Every peer id, for uniform sampling.
    order: Vec<PeerId>,
    rng: ChaCha8Rng,
    live_edge: u64,
    /// The channel's seeders (kept apart so a pick need not scan every peer for them).
    seeders: Vec<PeerId>,
}

impl Tracker {
    /// A tracker for one channel, with its own seeded randomness.
    pub fn new(config: TrackerConfig, seed: u64) -> Self {
        Tracker {
            config,
            peers: HashMap::new(),
            order: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            live_edge: 0,
            seeders: Vec::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Number of peers (viewers and seeder) in the channel.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the channel has no peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether `peer` is in the channel.
    pub fn contains(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// Current neighbours of `peer` (assigned and not yet reported closed).
    pub fn neighbours(&self, peer: PeerId) -> impl Iterator<Item = PeerId> + '_ {
        self.peers
            .get(&peer)
            .into_iter()
            .flat_map(|e| e.neighbours.iter().copied())
    }

    fn insert(&mut self, peer: PeerId, seeder: bool) -> bool {
        if self.peers.contains_key(&peer) {
            return false;
        }
        self.peers.insert(
            peer,
            Entry {
                neighbours: BTreeSet::new(),
                report: PeerReport {
                    spare_upload: if seeder { 0.0 } else { 1.0 },
                    latest_seq: self.live_edge,
                },
                seeder,
                depth: if seeder { 0 } else { UNKNOWN_DEPTH },
                accused_by: Vec::new(),
                slot: self.order.len(),
            },
        );
        self.order.push(peer);
        true
    }

    /// Adds the channel's origin seeder. It is never handed out to more than
    /// [`TrackerConfig::seeder_neighbours`] viewers at once.
    pub fn add_seeder(&mut self, peer: PeerId) {
        if self.insert(peer, true) {
            self.seeders.push(peer);
        }
    }

    /// Adds a viewer and returns its first neighbours to dial (empty if it was already in).
    pub fn join(&mut self, peer: PeerId) -> Vec<PeerId> {
        if !self.insert(peer, false) {
            return Vec::new();
        }
        let want = self.config.initial_neighbours;
        self.more(peer, want)
    }

    /// Picks up to `want` new neighbours for `peer` and records the pairs.
    pub fn more(&mut self, peer: PeerId, want: usize) -> Vec<PeerId> {
        let Some(me) = self.peers.get(&peer) else {
            return Vec::new();
        };
        if self.shunned(me) {
            // Found out: it keeps the links it has and gets no more.
            return Vec::new();
        }
        let limit = self.limit(me);
        let want = want.min(limit.saturating_sub(me.neighbours.len()));
        if want == 0 {
            return Vec::new();
        }
        let me_seeder = me.seeder;
        let candidates = self.sample_candidates();
        let jitter: Vec<f32> = candidates
            .iter()
            .map(|_| (self.rng.next_u32() % 1000) as f32 / 1000.0)
            .collect();
        let mut scored: Vec<(f32, PeerId)> = candidates
            .into_iter()
            .zip(jitter)
            .filter_map(|(c, jitter)| {
                if c == peer {
                    return None;
                }
                let e = &self.peers[&c];
                if e.neighbours.contains(&peer) || (e.seeder && me_seeder) || self.shunned(e) {
                    return None;
                }
                let free = self.limit(e).saturating_sub(e.neighbours.len());
                if free == 0 {
                    return None;
                }
                Some((self.score(e, free) + jitter, c))
            })
            .collect();
        // Highest score first; ties broken by id for determinism.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let picked: Vec<PeerId> = scored.into_iter().take(want).map(|(_, c)| c).collect();
        for &c in &picked {
            self.link(peer, c);
        }
        picked
    }

    fn limit(&self, e: &Entry) -> usize {
        if e.seeder {
            // A large audience gets more roots from the seeder (`Config::seeder_copies`),
            // and each root needs a link to it.
            self.config
                .seeder_neighbours
                .max(self.peers.len() / VIEWERS_PER_SEEDER_LINK)
        } else {
            self.config.max_neighbours
        }
    }

    /// Higher is better: free slots, spare upload, close to the live edge; the seeder first
    /// while it has room (newcomers need the freshest data).
    fn score(&self, e: &Entry, free: usize) -> f32 {
        let lag = self.live_edge.saturating_sub(e.report.latest_seq).min(20) as f32;
        let seeder_bonus = if e.seeder { 2.0 } else { 0.0 };
        // Shallow peers with spare upload make the best parents: handing them to newcomers
        // keeps the push trees flat.
        let spare = e.report.spare_upload.clamp(0.0, 4.0);
        // A parent candidate: fed from the origin and with upload to spare. Shallower is
        // better; a peer that is full or cut off is worth only its repair links.
        let parent = if e.seeder {
            0.0
        } else if e.depth < 16 && spare > 0.0 {
            1.5 + 0.25 * spare - 0.25 * e.depth as f32
        } else {
            0.0
        };
        free as f32 / self.config.max_neighbours as f32 + parent.max(0.0) - lag * 0.1 + seeder_bonus
    }

    /// All peers when the channel is small, else a uniform random sample.
    fn sample_candidates(&mut self) -> Vec<PeerId> {
        let n = self.order.len();
        if n <= self.config.sample {
            return self.order.clone();
        }
        let mut out = Vec::with_capacity(self.config.sample + 1);
        for _ in 0..self.config.sample {
            let i = (self.rng.next_u64() % n as u64) as usize;
            out.push(self.order[i]);
        }
        // Seeders are few and matter most to newcomers: always consider them.
        out.extend(self.seeders.iter().copied());
        out.sort_unstable();
        out.dedup();
        out
    }

    fn link(&mut self, a: PeerId, b: PeerId) {
        if let Some(e) = self.peers.get_mut(&a) {
            e.neighbours.insert(b);
        }
        if let Some(e) = self.peers.get_mut(&b) {
            e.neighbours.insert(a);
        }
    }

    /// Records what `peer` says of itself (spare upload, newest chunk).
    pub fn report(&mut self, peer: PeerId, report: PeerReport) {
        self.live_edge = self.live_edge.max(report.latest_seq);
        if let Some(e) = self.peers.get_mut(&peer) {
            e.report = report;
        }
    }

    /// Records how deep `peer` sits in the push trees (hops from the origin, its deepest
    /// substream; 255 when cut off from one).
    pub fn report_depth(&mut self, peer: PeerId, depth: u8) {
        if let Some(e) = self.peers.get_mut(&peer) {
            if !e.seeder {
                e.depth = depth;
            }
        }
    }

    /// Tells the tracker the newest chunk published (keeps lag scores meaningful).
    pub fn set_live_edge(&mut self, seq: u64) {
        self.live_edge = self.live_edge.max(seq);
    }

    /// The link between `a` and `b` is gone (closed, failed or dropped by either side): both
    /// get the slot back and the pair may be assigned again later.
    pub fn unlink(&mut self, a: PeerId, b: PeerId) {
        if let Some(e) = self.peers.get_mut(&a) {
            e.neighbours.remove(&b);
        }
        if let Some(e) = self.peers.get_mut(&b) {
            e.neighbours.remove(&a);
        }
    }

    /// `by` dropped its neighbour `peer` for sending data that failed verification. Call
    /// before [`Tracker::unlink`]; an accusation counts only between peers linked at the time.
    /// Only forged data accuses, never a neighbour that failed requests: an overloaded honest
    /// peer fails them too (the simulator's `thousand`, where uploads fall short: 998 of 1025
    /// viewers were dropped so by two or more neighbours within 100 s). A peer accused by
    /// [`ACCUSERS_TO_SHUN`] neighbours still in the channel, each itself accused by fewer, is
    /// no longer handed out, so a newcomer is not surrounded by liars its predecessors have
    /// already found out (in the simulator's `hostile`, such a newcomer waited up to two
    /// minutes for its first frame), and gets no more neighbours itself: a liar whose
    /// neighbours all dropped it would otherwise be handed fresh victims on every ask. The
    /// seeder is never shunned.
    pub fn accuse(&mut self, by: PeerId, peer: PeerId) {
        let Some(e) = self.peers.get_mut(&peer) else {
            return;
        };
        if e.seeder
            || !e.neighbours.contains(&by)
            || e.accused_by.contains(&by)
            || e.accused_by.len() >= MAX_ACCUSERS
        {
            return;
        }
        e.accused_by.push(by);
    }

    /// Whether enough credible neighbours accused `e` (see [`Tracker::accuse`]).
    fn shunned(&self, e: &Entry) -> bool {
        !e.seeder
            && e.accused_by
                .iter()
                .filter(|a| {
                    self.peers
                        .get(a)
                        .is_some_and(|x| x.accused_by.len() < ACCUSERS_TO_SHUN)
                })
                .count()
                >= ACCUSERS_TO_SHUN
    }

    /// Removes `peer`; returns the neighbours that should be told it left.
    pub fn leave(&mut self, peer: PeerId) -> Vec<PeerId> {
        let Some(e) = self.peers.remove(&peer) else {
            return Vec::new();
        };
        if e.seeder {
            self.seeders.retain(|&s| s != peer);
        }
        // Swap-remove from the sampling order, fixing the moved peer's slot.
        let last = self.order.len() - 1;
        self.order.swap(e.slot, last);
        self.order.pop();
        if e.slot < self.order.len() {
            let moved = self.order[e.slot];
            if let Some(m) = self.peers.get_mut(&moved) {
                m.slot = e.slot;
            }
        }
        for n in &e.neighbours {
            if let Some(ne) = self.peers.get_mut(n) {
                ne.neighbours.remove(&peer);
            }
        }
        e.neighbours.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_the_same_pair_twice_and_limits_hold() {
        let cfg = TrackerConfig {
            initial_neighbours: 4,
            max_neighbours: 6,
            seeder_neighbours: 2,
            sample: 16,
        };
        let mut t = Tracker::new(cfg, 1);
        t.add_seeder(0);
        for p in 1..200 {
            let got = t.join(p);
            let mut dedup = got.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), got.len());
            assert!(!got.contains(&p));
        }
        for p in 1..200 {
            assert!(t.neighbours(p).count() <= 6);
            // Symmetric.
            for n in t.neighbours(p).collect::<Vec<_>>() {
                assert!(t.neighbours(n).any(|x| x == p));
            }
        }
        // 200 peers: one seeder link per 50 (`VIEWERS_PER_SEEDER_LINK`), above the 2.
        assert_eq!(t.neighbours(0).count(), 4);
        // Asking again for an existing pair never returns it.
        let before: Vec<_> = t.neighbours(5).collect();
        let more = t.more(5, 10);
        assert!(more.iter().all(|m| !before.contains(m)));
    }

    #[test]
    fn a_large_channel_s_seeder_gets_a_link_per_fifty_viewers() {
        let mut t = Tracker::new(TrackerConfig::default(), 4);
        t.add_seeder(0);
        for p in 1..=100 {
            t.join(p);
        }
        assert_eq!(
            t.neighbours(0).count(),
            8,
            "a small channel: the configured 8"
        );
        for p in 101..=1000 {
            t.join(p);
        }
        // Every newcomer scores the seeder first while it has room.
        assert_eq!(t.neighbours(0).count(), 20);
    }

    /// Every peer handed to `n` newcomers from id `first` on, each leaving right after its
    /// join so the channel and its free slots stay as they were.
    fn picks_after(t: &mut Tracker, first: PeerId, n: PeerId) -> BTreeSet<PeerId> {
        let mut seen = BTreeSet::new();
        for p in first..first + n {
            seen.extend(t.join(p));
            t.leave(p);
        }
        seen
    }

    #[test]
    fn a_peer_two_neighbours_dropped_for_lying_is_no_longer_handed_out() {
        let mut t = Tracker::new(TrackerConfig::default(), 5);
        t.add_seeder(0);
        for p in 1..=10 {
            t.join(p);
        }
        // Link 3 to 4, 5, 6 and 9 for certain (`link` is idempotent).
        for a in [4, 5, 6, 9] {
            t.link(3, a);
        }
        // One accuser is not enough: a single liar must not shut an honest peer out.
        t.accuse(4, 3);
        t.unlink(4, 3);
        assert!(picks_after(&mut t, 100, 40).contains(&3));
        // Nor is one who was not linked to it (accusing from afar), nor the same one twice.
        t.unlink(7, 3);
        t.accuse(7, 3);
        t.accuse(4, 3);
        assert!(picks_after(&mut t, 200, 40).contains(&3));
        // A second neighbour's word shuns it: nobody is handed it, and it gets nobody more.
        t.accuse(5, 3);
        t.unlink(5, 3);
        assert!(!picks_after(&mut t, 300, 60).contains(&3));
        assert_eq!(t.more(3, 4), Vec::<PeerId>::new());
        assert!(!t.more(8, 2).is_empty());
        // Accusers who are themselves shunned do not count: 3 is cleared once one of its
        // two accusers is found out by two others.
        for a in [1, 2] {
            t.link(5, a);
            t.accuse(a, 5);
        }
        assert!(picks_after(&mut t, 400, 40).contains(&3));
        assert!(!picks_after(&mut t, 500, 60).contains(&5));
        // Accusers that left no longer count either.
        t.accuse(6, 3);
        assert!(!picks_after(&mut t, 600, 60).contains(&3));
        t.leave(6);
        assert!(picks_after(&mut t, 700, 40).contains(&3));
        // The seeder is never shunned, whatever its neighbours say.
        for a in [1, 2, 4] {
            t.link(0, a);
            t.accuse(a, 0);
        }
        assert!(picks_after(&mut t, 800, 10).contains(&0));
    }

    #[test]
    fn leave_frees_slots_and_reports_neighbours() {
        let mut t = Tracker::new(TrackerConfig::default(), 2);
        t.add_seeder(0);
        let first = t.join(1);
        assert_eq!(first, vec![0]);
        t.join(2);
        let told = t.leave(1);
        assert!(told.contains(&0));
        assert_eq!(t.neighbours(0).filter(|&n| n == 1).count(), 0);
        assert!(!t.contains(1));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn prefers_spare_upload_and_fresh_peers() {
        let mut t = Tracker::new(TrackerConfig::default(), 3);
        for p in 1..=20 {
            t.join(p);
            for n in t.neighbours(p).collect::<Vec<_>>() {
                t.unlink(p, n);
            }
        }
        t.report(
            7,
            PeerReport {
                spare_upload: 4.0,
                latest_seq: 100,
            },
        );
        for p in 1..=20 {
            if p != 7 {
                t.report(
                    p,
                    PeerReport {
                        spare_upload: 0.0,
                        latest_seq: 90,
                    },
                );
            }
        }
        let got = t.join(99);
        assert_eq!(got[0], 7);
    }

    #[test]
    fn same_seed_same_picks() {
        let run = || {
            let mut t = Tracker::new(TrackerConfig::default(), 42);
            (0..300).map(|p| t.join(p)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
