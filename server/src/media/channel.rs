//! One live channel: its keys, its init segment, the window of recent signed chunks, and the
//! broadcast that tells the seeder and signaling about each new chunk.
//!
//! The state sits behind one `std::sync::Mutex`, held only to store a chunk or copy out a
//! snapshot; nothing awaits while holding it. A second mutex makes publishers take turns. Counters are atomics so the HTTP and
//! signaling paths can bump them without the lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use swarm::{Chunk, ChunkHeader, SigningKey, VerifyingKey};
use tokio::sync::{broadcast, watch};

use super::init::InitSegment;
use super::keys::hex;
use super::segmenter::Fragment;

/// How much recent media a channel keeps for late joiners and the HTTP fallback.
pub const WINDOW: Duration = Duration::from_secs(30);
/// Most bytes a channel's window holds, whatever its bitrate (30 s at ~25 Mbit/s).
pub const MAX_WINDOW_BYTES: usize = 96 * 1024 * 1024;
/// New chunks a slow subscriber may fall behind before it sees `Lagged`.
const BROADCAST_CAPACITY: usize = 64;
/// How many chunks past the next one a request may wait for (see [`Channel::chunk_or_wait`]).
pub const WAIT_AHEAD: u64 = 2;
/// Most requests a channel holds open waiting for a chunk; beyond that they are answered at
/// once, as without waiting.
pub const MAX_WAITING: usize = 10_000;

/// Counters for `/metrics` and the channel API. Other modules add to them.
#[derive(Debug, Default)]
pub struct ChannelCounters {
    /// Chunks published.
    pub chunks: AtomicU64,
    /// Bytes of chunks published (media bytes in).
    pub ingest_bytes: AtomicU64,
    /// Ingest connections accepted.
    pub ingests: AtomicU64,
    /// Ingest connections that ended with an error.
    pub ingest_errors: AtomicU64,
    /// Bytes served by the HTTP fallback (init and chunk bodies).
    pub bytes_out_http: AtomicU64,
    /// Swarm fallback requests refused (503) because the HTTP budget's queue was full.
    pub http_refused: AtomicU64,
    /// Chunk requests waiting for their chunk to be published (a gauge).
    pub http_waiting: AtomicUsize,
    /// Bytes the origin seeder uploaded to peers (bumped by the seeder).
    pub bytes_out_seeder: AtomicU64,
    /// Bytes viewers reported receiving, from any source (bumped by signaling from peer
    /// stats); the denominator of offload.
    pub bytes_received_by_viewers: AtomicU64,
    /// Chunks or pieces peers reported failing verification.
    pub verification_failures: AtomicU64,
}

/// The channel's current init segment as served.
#[derive(Debug)]
pub struct PublishedInit {
    /// `ftyp` + `moov`.
    pub bytes: Vec<u8>,
    /// Codec list for MSE, e.g. `avc1.42c01e,mp4a.40.2`.
    pub codec: String,
    /// MIME type with codecs, for `addSourceBuffer`.
    pub mime: String,
    /// First 16 hex digits of the init segment's SHA-256: changes when the init does.
    pub id: String,
    segment: Arc<InitSegment>,
}

/// Where the channel's media time goes on, in ticks of its primary track.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    timescale: u32,
    next: u64,
}

#[derive(Debug, Default)]
struct State {
    init: Option<Arc<PublishedInit>>,
    window: VecDeque<Arc<Chunk>>,
    window_bytes: usize,
    next_seq: u64,
    timeline: Option<Timeline>,
    last_publish: Option<Instant>,
}

impl State {
    fn chunk(&self, seq: u64) -> Option<Arc<Chunk>> {
        let first = self.window.front()?.header.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.window.get(i).cloned()
    }
}

/// Why a fragment was not published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// A newer ingest took the channel over.
    Replaced,
    /// The fragment cannot be rewritten or signed.
    Invalid(&'static str),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Replaced => f.write_str("a newer ingest replaced this one"),
            PublishError::Invalid(why) => write!(f, "cannot publish fragment: {why}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Per track id, what to add to its decode times, in that track's ticks.
type Offsets = Vec<(u32, i128)>;

/// Per-source timeline mapping: one ingest connection, or one pass of the demo loop. The
/// first fragment it publishes is placed right where the channel's media time ended, so a
/// reconnecting broadcaster (or the looping demo) neither jumps nor repeats.
#[derive(Debug, Default)]
pub struct Session {
    /// Offset per track id, in that track's ticks, for the init segment it was made for.
    offsets: Option<(Arc<InitSegment>, Offsets)>,
}

impl Session {
    /// A fresh mapping (computed at its first fragment).
    pub fn new() -> Self {
        Self::default()
    }
}

/// A point-in-time view of a channel for the API and metrics.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Whether a chunk was published recently.
    pub live: bool,
    /// The current init segment, if any chunk was published.
    pub init: Option<Arc<PublishedInit>>,
    /// Newest chunk's sequence number.
    pub latest_seq: Option<u64>,
    /// Oldest chunk still in the window.
    pub oldest_seq: Option<u64>,
    /// Newest chunk that starts with a keyframe: where a new player joins.
    pub latest_keyframe_seq: Option<u64>,
    /// Chunks in the window.
    pub window_chunks: usize,
    /// Mean chunk duration over the window, seconds.
    pub chunk_duration_s: Option<f64>,
    /// Media bitrate over the window, bits per second.
    pub bitrate_bps: Option<f64>,
    /// Newest chunk's origin timestamp, Unix microseconds.
    pub latest_timestamp_us: Option<u64>,
}

/// One channel. Shared as `Arc<Channel>`.
#[derive(Debug)]
pub struct Channel {
    name: String,
    stream_key: Option<String>,
    signing: SigningKey,
    public_key: String,
    state: Mutex<State>,
    publishing: Mutex<()>,
    chunks_tx: broadcast::Sender<Arc<Chunk>>,
    ingest_gen: watch::Sender<u64>,
    window: Duration,
    /// Counters for metrics and the API.
    pub counters: ChannelCounters,
}

/// Wall-clock Unix microseconds.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Channel {
    /// A channel signing with `signing`; `stream_key` of `None` takes no push ingest.
    pub fn new(name: String, stream_key: Option<String>, signing: SigningKey) -> Self {
        let public_key = hex(signing.verifying_key().as_bytes());
        Channel {
            name,
            stream_key,
            signing,
            public_key,
            state: Mutex::new(State::default()),
            publishing: Mutex::new(()),
            chunks_tx: broadcast::channel(BROADCAST_CAPACITY).0,
            ingest_gen: watch::Sender::new(0),
            window: WINDOW,
            counters: ChannelCounters::default(),
        }
    }

    /// Keeps `window` of recent media instead of [`WINDOW`].
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters more than losing the channel, so keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key as lowercase hex of its 32 bytes (what clients get).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The key chunks verify with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Whether this channel takes push ingest.
    pub fn accepts_ingest(&self) -> bool {
        self.stream_key.is_some()
    }

    /// Checks a stream key in constant time (for equal lengths).
    pub fn check_key(&self, key: &str) -> bool {
        let Some(want) = &self.stream_key else {
            return false;
        };
        let (a, b) = (want.as_bytes(), key.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Every new chunk, as it is published. A receiver that falls more than a few dozen
    /// chunks behind gets `Lagged` and should catch up from [`Channel::window`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Chunk>> {
        self.chunks_tx.subscribe()
    }

    /// The chunks in the live window, oldest first.
    pub fn window(&self) -> Vec<Arc<Chunk>> {
        self.state().window.iter().cloned().collect()
    }

    /// Chunk `seq`, if still in the window.
    pub fn chunk(&self, seq: u64) -> Option<Arc<Chunk>> {
        self.state().chunk(seq)
    }

    /// Chunk `seq`, waiting up to `hold` for it if it is not published yet but is the next
    /// chunk or at most [`WAIT_AHEAD`] after it: a blocking request, like LL-HLS's blocking
    /// playlist reload, so a player at the live edge asks once for the next chunk and gets
    /// it the moment it is published, rather than polling and being told 404 until then.
    /// `None` at once when the chunk has left the window or is further ahead, or when
    /// [`MAX_WAITING`] requests already wait; `None` after `hold` when it did not come.
    pub async fn chunk_or_wait(&self, seq: u64, hold: Duration) -> Option<Arc<Chunk>> {
        if let Some(c) = self.chunk(seq) {
            return Some(c);
        }
        // Subscribe, then look again, so a chunk published in between is not missed.
        let mut rx = self.chunks_tx.subscribe();
        let next = {
            let state = self.state();
            if let Some(c) = state.chunk(seq) {
                return Some(c);
            }
            state.next_seq
        };
        if seq < next || seq - next > WAIT_AHEAD {
            return None;
        }
        let _waiting = Waiting::enter(&self.counters.http_waiting)?;
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(c) if c.header.seq == seq => return Some(c),
                    Ok(c) if c.header.seq > seq => return self.chunk(seq),
                    Ok(_) => {}
                    // Missed some news: the window says whether it came.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(c) = self.chunk(seq) {
                            return Some(c);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        tokio::time::timeout(hold, wait).await.ok().flatten()
    }

    /// The current init segment.
    pub fn init(&self) -> Option<Arc<PublishedInit>> {
        self.state().init.clone()
    }

    /// The API's view of the channel.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        let latest = state.window.back();
        let live = match (state.last_publish, latest) {
            (Some(at), Some(c)) => {
                let grace = Duration::from_micros(u64::from(c.header.duration_us) * 4);
                at.elapsed() < grace.max(Duration::from_secs(5))
            }
            _ => false,
        };
        let total_us: u64 = state
            .window
            .iter()
            .map(|c| u64::from(c.header.duration_us))
            .sum();
        let n = state.window.len();
        Snapshot {
            live,
            init: state.init.clone(),
            latest_seq: latest.map(|c| c.header.seq),
            oldest_seq: state.window.front().map(|c| c.header.seq),
            latest_keyframe_seq: state
                .window
                .iter()
                .rev()
                .find(|c| c.header.keyframe)
                .map(|c| c.header.seq),
            window_chunks: n,
            chunk_duration_s: (n > 0).then(|| total_us as f64 / n as f64 / 1e6),
            bitrate_bps: (total_us > 0)
                .then(|| state.window_bytes as f64 * 8.0 / (total_us as f64 / 1e6)),
            latest_timestamp_us: latest.map(|c| c.header.timestamp_us),
        }
    }

    /// Starts a push ingest: any earlier one is told to stop. Returns its generation and a
    /// receiver that changes when a newer ingest replaces it.
    pub fn begin_ingest(&self) -> (u64, watch::Receiver<u64>) {
        let mut gen = 0;
        self.ingest_gen.send_modify(|g| {
            *g += 1;
            gen = *g;
        });
        self.counters.ingests.fetch_add(1, Ordering::Relaxed);
        (gen, self.ingest_gen.subscribe())
    }

    /// Rewrites `fragment` onto the channel's timeline, signs it as the next chunk and
    /// publishes it. `ingest` is the generation from [`Channel::begin_ingest`] (`None` for
    /// the demo loop).
    pub fn publish(
        &self,
        session: &mut Session,
        mut fragment: Fragment,
        ingest: Option<u64>,
    ) -> Result<Arc<Chunk>, PublishError> {
        // Publishers take turns for the whole publish; readers wait on `state` only while
        // the chunk is stored, not while it is hashed and signed.
        let _turn = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let (timeline, seq) = {
            let state = self.state();
            (state.timeline, state.next_seq)
        };
        if ingest.is_some_and(|g| g != *self.ingest_gen.borrow()) {
            return Err(PublishError::Replaced);
        }
        let init = fragment.init.clone();
        let offsets = match &session.offsets {
            Some((i, o)) if Arc::ptr_eq(i, &init) => o.clone(),
            _ => {
                let o = offsets(&init, &fragment, timeline);
                session.offsets = Some((init.clone(), o.clone()));
                o
            }
        };
        let mut primary_end = None;
        for t in &fragment.info.tracks {
            let offset = offsets
                .iter()
                .find(|(id, _)| *id == t.track_id)
                .map_or(0, |(_, o)| *o);
            let time = (i128::from(t.decode_time) + offset).max(0);
            let at = t.tfdt.offset;
            let field = if t.tfdt.wide {
                let v = u64::try_from(time).map_err(|_| PublishError::Invalid("tfdt overflow"))?;
                v.to_be_bytes().to_vec()
            } else {
                let v = u32::try_from(time)
                    .map_err(|_| PublishError::Invalid("32-bit tfdt overflow"))?;
                v.to_be_bytes().to_vec()
            };
            fragment
                .bytes
                .get_mut(at..at + field.len())
                .ok_or(PublishError::Invalid("tfdt outside the fragment"))?
                .copy_from_slice(&field);
            if let Some(p) = init.primary().filter(|p| p.id == t.track_id) {
                // time >= 0 here, and the sum saturates.
                let end = (time as u64).saturating_add(t.duration);
                primary_end = Some(Timeline {
                    timescale: p.timescale,
                    next: end,
                });
            }
        }
        let so = fragment.info.sequence_offset;
        // mfhd sequence numbers only need to increase; the low 32 bits of seq + 1 do.
        let mfhd = ((seq.wrapping_add(1)) as u32).to_be_bytes();
        fragment
            .bytes
            .get_mut(so..so + 4)
            .ok_or(PublishError::Invalid("mfhd outside the fragment"))?
            .copy_from_slice(&mfhd);

        let now = now_us();
        let header = ChunkHeader::sign(
            &self.signing,
            seq,
            now,
            fragment.duration_us(),
            fragment.keyframe(),
            &fragment.bytes,
        )
        .map_err(|_| PublishError::Invalid("fragment larger than a chunk may be"))?;
        let chunk = Arc::new(Chunk {
            header,
            bytes: fragment.bytes,
        });

        let mut state = self.state();
        if state
            .init
            .as_ref()
            .is_none_or(|i| i.segment.bytes != init.bytes)
        {
            let digest = Sha256::digest(&init.bytes);
            state.init = Some(Arc::new(PublishedInit {
                bytes: init.bytes.clone(),
                codec: init.codecs(),
                mime: init.mime(),
                id: hex(&digest[..8]),
                segment: init.clone(),
            }));
        }
        if primary_end.is_some() {
            state.timeline = primary_end;
        }
        state.next_seq += 1;
        state.last_publish = Some(Instant::now());
        state.window_bytes += chunk.bytes.len();
        state.window.push_back(chunk.clone());
        let horizon =
            now.saturating_sub(u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX));
        while let Some(front) = state.window.front() {
            let old = front.header.timestamp_us < horizon;
            if state.window.len() > 1 && (old || state.window_bytes > MAX_WINDOW_BYTES) {
                state.window_bytes -= front.bytes.len();
                state.window.pop_front();
            } else {
                break;
            }
        }
        drop(state);
        self.counters.chunks.fetch_add(1, Ordering::Relaxed);
        self.counters
            .ingest_bytes
            .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
        // No subscriber is fine: nobody is watching yet.
        let _ = self.chunks_tx.send(chunk.clone());
        Ok(chunk)
    }
}

/// One request counted in [`ChannelCounters::http_waiting`] while it waits (also when its
/// client goes away and the wait is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts a waiting request, or `None` when [`MAX_WAITING`] already wait.
    fn enter(count: &'a AtomicUsize) -> Option<Self> {
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_WAITING).then_some(n + 1)
            })
            .ok()
            .map(|_| Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Offsets that move `fragment`'s primary track to where the channel's timeline ended, and
/// every other track by the same amount of time (so audio stays in sync with video).
fn offsets(init: &InitSegment, fragment: &Fragment, timeline: Option<Timeline>) -> Offsets {
    let Some(timeline) = timeline else {
        // The channel's first media: keep the source's own times.
        return init.tracks.iter().map(|t| (t.id, 0)).collect();
    };
    let reference = init
        .primary()
        .and_then(|p| {
            fragment
                .info
                .track(p.id)
                .map(|f| (p.timescale, f.decode_time))
        })
        .or_else(|| {
            let f = fragment.info.tracks.first()?;
            Some((init.track(f.track_id)?.timescale, f.decode_time))
        });
    let Some((ts, start)) = reference else {
        return Vec::new();
    };
    let next = i128::from(timeline.next) * i128::from(ts) / i128::from(timeline.timescale);
    let offset = next - i128::from(start);
    init.tracks
        .iter()
        .map(|t| (t.id, offset * i128::from(t.timescale) / i128::from(ts)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::demo::fragments;

    fn channel(window: Duration) -> Channel {
        Channel::new(
            "t".into(),
            Some("k".into()),
            SigningKey::from_bytes(&[2; 32]),
        )
        .with_window(window)
    }

    #[test]
    fn window_lookup_and_subscription() {
        let c = channel(WINDOW);
        let mut rx = c.subscribe();
        let mut session = Session::new();
        let frags = fragments().unwrap();
        for f in &frags[..5] {
            c.publish(&mut session, f.clone(), None).unwrap();
        }
        let window = c.window();
        assert_eq!(window.len(), 5);
        for (i, chunk) in window.iter().enumerate() {
            assert_eq!(chunk.header.seq, i as u64);
            assert_eq!(rx.try_recv().unwrap().header.seq, i as u64);
            assert_eq!(c.chunk(i as u64).unwrap().header.seq, i as u64);
        }
        assert!(c.chunk(5).is_none());
        let s = c.snapshot();
        assert!(s.live);
        assert_eq!((s.oldest_seq, s.latest_seq), (Some(0), Some(4)));
        assert_eq!(s.chunk_duration_s, Some(0.5));
        assert_eq!(s.init.unwrap().codec, "avc1.42c01e,mp4a.40.2");
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_next_chunk_when_it_is_published() {
        let c = Arc::new(channel(WINDOW));
        let mut session = Session::new();
        let frags = fragments().unwrap();
        for f in &frags[..2] {
            c.publish(&mut session, f.clone(), None).unwrap();
        }
        let hold = Duration::from_secs(10);
        // Held: seq 2 and 3 are the next ones.
        let waiters: Vec<_> = [2, 3]
            .into_iter()
            .map(|seq| {
                let c = c.clone();
                tokio::spawn(async move { c.chunk_or_wait(seq, hold).await })
            })
            .collect();
        // At once: published, too far ahead, or never published in time.
        let quick = Duration::from_secs(1);
        let t = tokio::time::Instant::now();
        assert_eq!(c.chunk_or_wait(1, hold).await.unwrap().header.seq, 1);
        assert!(
            c.chunk_or_wait(5, hold).await.is_none(),
            "three past the next"
        );
        assert!(t.elapsed() < quick);
        assert!(c
            .chunk_or_wait(4, Duration::from_millis(50))
            .await
            .is_none());
        while c.counters.http_waiting.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        for f in &frags[2..4] {
            c.publish(&mut session, f.clone(), None).unwrap();
        }
        for (w, seq) in waiters.into_iter().zip([2, 3]) {
            let got = tokio::time::timeout(quick, w).await.unwrap().unwrap();
            assert_eq!(got.unwrap().header.seq, seq);
        }
        assert_eq!(c.counters.http_waiting.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_gone_chunk_is_not_waited_for() {
        let c = channel(Duration::ZERO);
        let mut session = Session::new();
        for f in &fragments().unwrap()[..3] {
            c.publish(&mut session, f.clone(), None).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let t = std::time::Instant::now();
        assert!(c.chunk_or_wait(0, Duration::from_secs(10)).await.is_none());
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn waiting_requests_are_capped() {
        let count = AtomicUsize::new(MAX_WAITING - 1);
        let last = Waiting::enter(&count).expect("room for one more");
        assert!(Waiting::enter(&count).is_none());
        drop(last);
        assert_eq!(count.load(Ordering::Relaxed), MAX_WAITING - 1);
    }

    #[test]
    fn old_chunks_leave_the_window() {
        let c = channel(Duration::ZERO);
        let mut session = Session::new();
        for f in &fragments().unwrap()[..4] {
            c.publish(&mut session, f.clone(), None).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(c.window().len(), 1);
        assert!(c.chunk(2).is_none());
        assert_eq!(c.chunk(3).unwrap().header.seq, 3);
    }

    #[test]
    fn a_replaced_ingest_publishes_nothing() {
        let c = channel(WINDOW);
        let frag = fragments().unwrap().remove(0);
        let (old, _) = c.begin_ingest();
        let (new, _) = c.begin_ingest();
        let mut session = Session::new();
        assert_eq!(
            c.publish(&mut session, frag.clone(), Some(old)),
            Err(PublishError::Replaced)
        );
        assert!(c.window().is_empty());
        c.publish(&mut session, frag, Some(new)).unwrap();
        assert!(c.check_key("k") && !c.check_key("K") && !c.check_key(""));
    }
}
