//! The incremental segmenter: bytes of a fragmented MP4 stream in, init segments and
//! fragments out.
//!
//! It holds at most one box at a time (the init segment, or one `moof`+`mdat`), never the
//! stream, and refuses any box over its limit before reading its body. Feeding the same
//! bytes split at any points gives the same events as feeding them at once.

use std::sync::Arc;

use super::fragment::FragmentInfo;
use super::init::InitSegment;
use super::mp4::{parse_header, BoxHeader, Mp4Error};

/// Largest `ftyp` accepted.
const MAX_FTYP: u64 = 4 * 1024;
/// Most bytes of the growing buffer reserved ahead of what actually arrived, so a forged
/// size costs the sender its own bytes, not our memory.
const MAX_RESERVE: usize = 256 * 1024;

/// Size limits, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest `moov`.
    pub max_init: u64,
    /// Largest `moof` + `mdat` (one chunk).
    pub max_fragment: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_init: 1024 * 1024,
            max_fragment: swarm::chunk::MAX_CHUNK_BYTES as u64,
        }
    }
}

/// One fragment: a `moof` and its `mdat`, ready to become a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The `moof` and `mdat` boxes, as received.
    pub bytes: Vec<u8>,
    /// What the `moof` says.
    pub info: FragmentInfo,
    /// The init segment the fragment belongs to.
    pub init: Arc<InitSegment>,
}

impl Fragment {
    /// Media duration in microseconds: the primary track's, else the longest track's.
    pub fn duration_us(&self) -> u32 {
        let primary = self
            .init
            .primary()
            .and_then(|p| self.info.track(p.id).map(|f| (p, f)));
        let ticks_us = |id: u32, ticks: u64| {
            let ts = self.init.track(id).map_or(1, |t| t.timescale);
            u128::from(ticks) * 1_000_000 / u128::from(ts)
        };
        let us = match primary {
            Some((p, f)) => ticks_us(p.id, f.duration),
            None => self
                .info
                .tracks
                .iter()
                .map(|t| ticks_us(t.track_id, t.duration))
                .max()
                .unwrap_or(0),
        };
        u32::try_from(us).unwrap_or(u32::MAX)
    }

    /// Whether a player can start here: the video track starts with a sync sample (always
    /// true for audio-only streams).
    pub fn keyframe(&self) -> bool {
        match self.init.primary() {
            Some(p) if p.is_video() => self.info.track(p.id).is_some_and(|f| f.starts_with_sync),
            _ => true,
        }
    }
}

/// What the segmenter found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new init segment (the stream's first, or a changed one).
    Init(Arc<InitSegment>),
    /// A complete fragment.
    Fragment(Fragment),
}

#[derive(Debug)]
enum State {
    /// Reading a box header (`hdr` holds what arrived of it).
    Header,
    /// Reading a box body.
    Body {
        header: BoxHeader,
        remaining: u64,
        keep: bool,
    },
}

/// The incremental segmenter. See the module docs.
#[derive(Debug)]
pub struct Segmenter {
    limits: Limits,
    state: State,
    hdr: Vec<u8>,
    /// The box being kept (for `mdat`, appended to its `moof`).
    buf: Vec<u8>,
    ftyp: Option<Vec<u8>>,
    init: Option<Arc<InitSegment>>,
    /// A parsed `moof` waiting for its `mdat`.
    pending: Option<FragmentInfo>,
    failed: Option<Mp4Error>,
}

impl Segmenter {
    /// A segmenter with these limits.
    pub fn new(limits: Limits) -> Self {
        Segmenter {
            limits,
            state: State::Header,
            hdr: Vec::with_capacity(16),
            buf: Vec::new(),
            ftyp: None,
            init: None,
            pending: None,
            failed: None,
        }
    }

    /// The current init segment, once `moov` arrived.
    pub fn init(&self) -> Option<&Arc<InitSegment>> {
        self.init.as_ref()
    }

    /// Feeds the next bytes of the stream; appends what they complete to `out`. After an
    /// error every call fails with the same error.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Event>) -> Result<(), Mp4Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.push_inner(data, out);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf = Vec::new();
        }
        result
    }

    /// Declares the end of the stream: fails if it stopped inside a box or fragment.
    pub fn finish(&self) -> Result<(), Mp4Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match &self.state {
            State::Body { header, .. } => Err(Mp4Error::Truncated {
                kind: Some(header.kind),
            }),
            State::Header if !self.hdr.is_empty() => Err(Mp4Error::Truncated { kind: None }),
            State::Header if self.pending.is_some() => Err(Mp4Error::Truncated {
                kind: Some(*b"mdat"),
            }),
            State::Header => Ok(()),
        }
    }

    fn push_inner(&mut self, mut data: &[u8], out: &mut Vec<Event>) -> Result<(), Mp4Error> {
        while !data.is_empty() {
            match &mut self.state {
                State::Header => {
                    let need = if self.hdr.len() >= 4 && self.hdr[..4] == [0, 0, 0, 1] {
                        16
                    } else {
                        8
                    };
                    let n = (need - self.hdr.len()).min(data.len());
                    self.hdr.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.hdr.len() < need {
                        continue;
                    }
                    if let Some(header) = parse_header(&self.hdr)? {
                        self.start_box(header)?;
                        if let State::Body { remaining: 0, .. } = self.state {
                            self.finish_box(out)?;
                        }
                    }
                }
                State::Body {
                    remaining, keep, ..
                } => {
                    // remaining is bounded by data.len() in the min, so it fits usize.
                    let n = (*remaining).min(data.len() as u64) as usize;
                    if *keep {
                        self.buf.extend_from_slice(&data[..n]);
                    }
                    *remaining -= n as u64;
                    data = &data[n..];
                    if *remaining == 0 {
                        self.finish_box(out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn start_box(&mut self, header: BoxHeader) -> Result<(), Mp4Error> {
        let too_large = |limit: u64| Mp4Error::TooLarge {
            kind: header.kind,
            size: header.size,
            limit,
        };
        let keep = match &header.kind {
            b"ftyp" | b"moov" | b"moof" | b"mdat"
                if self.pending.is_some() != (&header.kind == b"mdat") =>
            {
                return Err(Mp4Error::Order(if self.pending.is_some() {
                    "moof not followed by its mdat"
                } else {
                    "mdat without a moof before it"
                }));
            }
            b"ftyp" if header.size > MAX_FTYP => return Err(too_large(MAX_FTYP)),
            b"moov" if header.size > self.limits.max_init => {
                return Err(too_large(self.limits.max_init))
            }
            b"moof" if self.init.is_none() => return Err(Mp4Error::Order("moof before moov")),
            b"moof" if header.size > self.limits.max_fragment => {
                return Err(too_large(self.limits.max_fragment))
            }
            b"mdat" if self.buf.len() as u64 + header.size > self.limits.max_fragment => {
                return Err(too_large(self.limits.max_fragment - self.buf.len() as u64))
            }
            b"ftyp" | b"moov" | b"moof" => {
                self.buf = Vec::with_capacity((header.size as usize).min(MAX_RESERVE));
                true
            }
            b"mdat" => {
                self.buf.reserve((header.size as usize).min(MAX_RESERVE));
                true
            }
            // Anything else (styp, sidx, prft, emsg, free, ...) is passed over unread.
            _ => false,
        };
        if keep {
            self.buf.extend_from_slice(&self.hdr);
        }
        self.hdr.clear();
        self.state = State::Body {
            header,
            remaining: header.size - header.header_len as u64,
            keep,
        };
        Ok(())
    }

    fn finish_box(&mut self, out: &mut Vec<Event>) -> Result<(), Mp4Error> {
        let State::Body { header, keep, .. } = std::mem::replace(&mut self.state, State::Header)
        else {
            return Ok(());
        };
        if !keep {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        match &header.kind {
            b"ftyp" => self.ftyp = Some(buf),
            b"moov" => {
                let mut bytes = self.ftyp.take().unwrap_or_default();
                bytes.extend_from_slice(&buf);
                let init = Arc::new(InitSegment::parse(&buf[header.header_len..], bytes)?);
                self.init = Some(init.clone());
                out.push(Event::Init(init));
            }
            b"moof" => {
                let Some(init) = &self.init else {
                    return Err(Mp4Error::Order("moof before moov"));
                };
                self.pending = Some(FragmentInfo::parse(&buf, header.header_len, init)?);
                self.buf = buf;
            }
            b"mdat" => {
                let (Some(info), Some(init)) = (self.pending.take(), self.init.clone()) else {
                    return Err(Mp4Error::Order("mdat without a moof before it"));
                };
                out.push(Event::Fragment(Fragment {
                    bytes: buf,
                    info,
                    init,
                }));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::demo::CLIP;
    use proptest::prelude::*;

    fn run(chunks: &[&[u8]]) -> (Vec<Event>, Result<(), Mp4Error>) {
        let mut s = Segmenter::new(Limits::default());
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = s.push(c, &mut out) {
                return (out, Err(e));
            }
        }
        let end = s.finish();
        (out, end)
    }

    fn fragments(events: &[Event]) -> Vec<&Fragment> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Fragment(f) => Some(f),
                Event::Init(_) => None,
            })
            .collect()
    }

    #[test]
    fn demo_clip_is_32_keyframe_half_seconds() {
        let (events, end) = run(&[CLIP]);
        end.unwrap();
        let Event::Init(init) = &events[0] else {
            panic!("first event is not the init segment");
        };
        assert_eq!(init.codecs(), "avc1.42c01e,mp4a.40.2");
        assert_eq!(init.mime(), "video/mp4; codecs=\"avc1.42c01e,mp4a.40.2\"");
        let frags = fragments(&events);
        assert_eq!(frags.len(), 32);
        let mut audio = 0;
        for (i, f) in frags.iter().enumerate() {
            assert_eq!(f.duration_us(), 500_000, "fragment {i}");
            assert!(f.keyframe(), "fragment {i}");
            assert_eq!(f.info.tracks[0].decode_time, i as u64 * 7680);
            audio += f.info.track(2).map_or(0, |t| t.duration);
        }
        // The loop relies on the audio being exactly as long as the video.
        assert_eq!(audio, 16 * 48_000);
        let total: usize = init.bytes.len() + frags.iter().map(|f| f.bytes.len()).sum::<usize>();
        // Everything but the trailing 'mfra' index, which the segmenter passes over.
        let mfra = u32::from_be_bytes(CLIP[CLIP.len() - 4..].try_into().unwrap()) as usize;
        assert_eq!(&CLIP[CLIP.len() - mfra + 4..][..4], b"mfra");
        assert_eq!(total + mfra, CLIP.len());
    }

    #[test]
    fn truncation_keeps_earlier_fragments_and_reports() {
        let (full, _) = run(&[CLIP]);
        for cut in [10, 700, 5_000, CLIP.len() / 2, CLIP.len() - 1] {
            let (events, end) = run(&[&CLIP[..cut]]);
            assert!(
                matches!(end, Err(Mp4Error::Truncated { .. })),
                "cut at {cut}"
            );
            assert_eq!(events[..], full[..events.len()]);
        }
    }

    #[test]
    fn oversized_and_misordered_boxes_are_refused() {
        let (events, _) = run(&[CLIP]);
        let Event::Init(init) = &events[0] else {
            panic!("no init");
        };
        let mut huge = init.bytes.clone();
        huge.extend_from_slice(&0x4000_0000u32.to_be_bytes());
        huge.extend_from_slice(b"moof");
        let (_, end) = run(&[&huge]);
        assert!(matches!(end, Err(Mp4Error::TooLarge { .. })), "{end:?}");
        let (_, end) = run(&[b"\0\0\0\x10mdat01234567"]);
        assert!(matches!(end, Err(Mp4Error::Order(_))), "{end:?}");
        let (_, end) = run(&[b"\0\0\0\x10moof01234567"]);
        assert!(matches!(end, Err(Mp4Error::Order(_))), "{end:?}");
        let (_, end) = run(&[b"\0\0\0\x04free"]);
        assert!(matches!(end, Err(Mp4Error::BadSize { .. })), "{end:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn split_anywhere_gives_the_same_events(mut cuts in proptest::collection::vec(0..CLIP.len(), 0..40)) {
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts {
                parts.push(&CLIP[at..c]);
                at = c;
            }
            parts.push(&CLIP[at..]);
            let (one, _) = run(&[CLIP]);
            let (split, end) = run(&parts);
            prop_assert!(end.is_ok());
            prop_assert_eq!(one, split);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = run(&[&bytes]);
        }

        #[test]
        fn corrupted_clip_never_panics(flips in proptest::collection::vec((0..6_000usize, any::<u8>()), 1..8)) {
            let mut clip = CLIP[..6_000.min(CLIP.len())].to_vec();
            for (i, b) in flips {
                clip[i] ^= b | 1;
            }
            let (events, _) = run(&[&clip]);
            for f in fragments(&events) {
                let _ = (f.duration_us(), f.keyframe());
            }
        }
    }
}
