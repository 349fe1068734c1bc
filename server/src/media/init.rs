//! The initialization segment (`ftyp` + `moov`): what each track is and how to read its
//! fragments.

use super::codec::codec_string;
use super::mp4::{children, find, Mp4Error, Reader};

/// What the segmenter needs to know about one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// `track_ID` from `tkhd`.
    pub id: u32,
    /// Ticks per second of the track's media time (`mdhd`).
    pub timescale: u32,
    /// Handler type: `vide`, `soun`, ...
    pub handler: [u8; 4],
    /// RFC 6381 codec string of the first sample entry.
    pub codec: String,
    /// `trex` default sample duration.
    pub default_duration: u32,
    /// `trex` default sample flags.
    pub default_flags: u32,
}

impl Track {
    /// Whether this is a video track.
    pub fn is_video(&self) -> bool {
        &self.handler == b"vide"
    }
}

/// A parsed `moov`, with the init segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSegment {
    /// `ftyp` (when sent) followed by `moov`: what a player appends first.
    pub bytes: Vec<u8>,
    /// The tracks, in `moov` order.
    pub tracks: Vec<Track>,
}

impl InitSegment {
    /// The codec list for MSE, e.g. `avc1.42c01e,mp4a.40.2` (video tracks first).
    pub fn codecs(&self) -> String {
        let mut tracks: Vec<&Track> = self.tracks.iter().collect();
        tracks.sort_by_key(|t| !t.is_video());
        tracks
            .iter()
            .map(|t| t.codec.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The MIME type for `MediaSource.isTypeSupported` / `addSourceBuffer`.
    pub fn mime(&self) -> String {
        let video = self.tracks.iter().any(Track::is_video);
        let kind = if video { "video" } else { "audio" };
        format!("{kind}/mp4; codecs=\"{}\"", self.codecs())
    }

    /// The track that times the channel: the first video track, else the first track.
    pub fn primary(&self) -> Option<&Track> {
        self.tracks
            .iter()
            .find(|t| t.is_video())
            .or_else(|| self.tracks.first())
    }

    /// The track with this id.
    pub fn track(&self, id: u32) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// Parses `moov`'s payload; `bytes` is the whole init segment to keep.
    pub fn parse(moov: &[u8], bytes: Vec<u8>) -> Result<Self, Mp4Error> {
        let mut tracks = Vec::new();
        let mut trex = Vec::new();
        for child in children(moov, 0) {
            let child = child?;
            match &child.kind {
                b"trak" => tracks.push(parse_trak(child.payload)?),
                b"mvex" => {
                    for t in children(child.payload, 0) {
                        let t = t?;
                        if &t.kind == b"trex" {
                            let mut r = Reader::new(t.payload, t.kind);
                            r.version_flags()?;
                            let id = r.u32()?;
                            r.u32()?; // default_sample_description_index
                            let duration = r.u32()?;
                            r.u32()?; // default_sample_size
                            let flags = r.u32()?;
                            trex.push((id, duration, flags));
                        }
                    }
                }
                _ => {}
            }
        }
        if tracks.is_empty() {
            return Err(Mp4Error::Invalid("moov has no tracks"));
        }
        for (id, duration, flags) in trex {
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.default_duration = duration;
                t.default_flags = flags;
            }
        }
        Ok(InitSegment { bytes, tracks })
    }
}

fn need<'a>(buf: &'a [u8], kind: &[u8; 4], what: &'static str) -> Result<&'a [u8], Mp4Error> {
    Ok(find(buf, 0, kind)?.ok_or(Mp4Error::Invalid(what))?.payload)
}

fn parse_trak(trak: &[u8]) -> Result<Track, Mp4Error> {
    let tkhd = need(trak, b"tkhd", "trak without tkhd")?;
    let mut r = Reader::new(tkhd, *b"tkhd");
    let (version, _) = r.version_flags()?;
    r.skip(if version == 1 { 16 } else { 8 })?; // creation and modification time
    let id = r.u32()?;

    let mdia = need(trak, b"mdia", "trak without mdia")?;
    let mdhd = need(mdia, b"mdhd", "mdia without mdhd")?;
    let mut r = Reader::new(mdhd, *b"mdhd");
    let (version, _) = r.version_flags()?;
    r.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(Mp4Error::Invalid("track timescale is 0"));
    }

    let hdlr = need(mdia, b"hdlr", "mdia without hdlr")?;
    let mut r = Reader::new(hdlr, *b"hdlr");
    r.version_flags()?;
    r.u32()?; // pre_defined
    let mut handler = [0u8; 4];
    handler.copy_from_slice(r.take(4)?);

    let minf = need(mdia, b"minf", "mdia without minf")?;
    let stbl = need(minf, b"stbl", "minf without stbl")?;
    let stsd = need(stbl, b"stsd", "stbl without stsd")?;
    let mut r = Reader::new(stsd, *b"stsd");
    r.version_flags()?;
    r.u32()?; // entry_count
    let entries = r.rest();
    let entry = children(entries, 0)
        .next()
        .ok_or(Mp4Error::Invalid("stsd has no sample entry"))??;
    let codec = codec_string(entry.kind, entry.payload)?;
    Ok(Track {
        id,
        timescale,
        handler,
        codec,
        default_duration: 0,
        default_flags: 0,
    })
}
