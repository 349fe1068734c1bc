//! Reading a movie fragment (`moof`): per track, its decode time, duration and whether it
//! starts on a keyframe, plus where the fields the timeline rewriter changes sit.

use super::init::InitSegment;
use super::mp4::{children, Mp4Error, Reader};

/// `sample_is_non_sync_sample` in ISO BMFF sample flags.
const NON_SYNC: u32 = 0x0001_0000;

/// A `tfdt` field's place in the fragment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TfdtField {
    /// Offset of the `baseMediaDecodeTime` value from the start of the `moof` box.
    pub offset: usize,
    /// 64-bit (version 1) or 32-bit (version 0).
    pub wide: bool,
}

/// One track's part of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFragment {
    /// Which track.
    pub track_id: u32,
    /// `baseMediaDecodeTime`, in the track's timescale.
    pub decode_time: u64,
    /// Where `tfdt` sits, to rewrite it.
    pub tfdt: TfdtField,
    /// Sum of the samples' durations, in the track's timescale.
    pub duration: u64,
    /// Whether the first sample is a sync sample.
    pub starts_with_sync: bool,
}

/// What the segmenter reads from one `moof`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Offset of `mfhd`'s sequence number from the start of the `moof` box.
    pub sequence_offset: usize,
    /// One entry per `traf`.
    pub tracks: Vec<TrackFragment>,
}

impl FragmentInfo {
    /// Parses a whole `moof` box (`header_len` bytes of header, then payload) against the
    /// tracks of `init`.
    pub fn parse(moof: &[u8], header_len: usize, init: &InitSegment) -> Result<Self, Mp4Error> {
        let payload = moof
            .get(header_len..)
            .ok_or(Mp4Error::ShortBox { kind: *b"moof" })?;
        let mut sequence_offset = None;
        let mut tracks = Vec::new();
        for child in children(payload, header_len) {
            let child = child?;
            match &child.kind {
                b"mfhd" => {
                    if child.payload.len() < 8 {
                        return Err(Mp4Error::ShortBox { kind: child.kind });
                    }
                    sequence_offset = Some(child.payload_offset + 4);
                }
                b"traf" => tracks.push(parse_traf(child.payload, child.payload_offset, init)?),
                _ => {}
            }
        }
        let sequence_offset = sequence_offset.ok_or(Mp4Error::Invalid("moof without mfhd"))?;
        if tracks.is_empty() {
            return Err(Mp4Error::Invalid("moof without traf"));
        }
        Ok(FragmentInfo {
            sequence_offset,
            tracks,
        })
    }

    /// The part of the track with this id.
    pub fn track(&self, id: u32) -> Option<&TrackFragment> {
        self.tracks.iter().find(|t| t.track_id == id)
    }
}

fn parse_traf(traf: &[u8], base: usize, init: &InitSegment) -> Result<TrackFragment, Mp4Error> {
    let mut track = None;
    let mut default_duration = None;
    let mut default_flags = None;
    let mut tfdt = None;
    let mut duration = 0u64;
    let mut first_flags = None;
    for child in children(traf, base) {
        let child = child?;
        let mut r = Reader::new(child.payload, child.kind);
        match &child.kind {
            b"tfhd" => {
                let (_, flags) = r.version_flags()?;
                let id = r.u32()?;
                let t = init
                    .track(id)
                    .ok_or(Mp4Error::Invalid("traf names a track the moov lacks"))?;
                if flags & 0x01 != 0 {
                    r.u64()?; // base_data_offset
                }
                if flags & 0x02 != 0 {
                    r.u32()?; // sample_description_index
                }
                default_duration = Some(if flags & 0x08 != 0 {
                    r.u32()?
                } else {
                    t.default_duration
                });
                if flags & 0x10 != 0 {
                    r.u32()?; // default_sample_size
                }
                default_flags = Some(if flags & 0x20 != 0 {
                    r.u32()?
                } else {
                    t.default_flags
                });
                track = Some(id);
            }
            b"tfdt" => {
                let (version, _) = r.version_flags()?;
                let wide = version == 1;
                let offset = child.payload_offset + 4;
                let time = if wide { r.u64()? } else { u64::from(r.u32()?) };
                tfdt = Some((TfdtField { offset, wide }, time));
            }
            b"trun" => {
                let (Some(dd), Some(df)) = (default_duration, default_flags) else {
                    return Err(Mp4Error::Order("trun before tfhd"));
                };
                let (d, f) = parse_trun(&mut r, dd, df)?;
                duration = duration.saturating_add(d);
                if first_flags.is_none() {
                    first_flags = f;
                }
            }
            _ => {}
        }
    }
    let track_id = track.ok_or(Mp4Error::Invalid("traf without tfhd"))?;
    let (tfdt, decode_time) = tfdt.ok_or(Mp4Error::Invalid(
        "traf without tfdt (use -movflags default_base_moof)",
    ))?;
    Ok(TrackFragment {
        track_id,
        decode_time,
        tfdt,
        duration,
        starts_with_sync: first_flags.is_some_and(|f| f & NON_SYNC == 0),
    })
}

/// Returns the run's total duration and its first sample's flags (`None` if it is empty).
fn parse_trun(
    r: &mut Reader<'_>,
    default_duration: u32,
    default_flags: u32,
) -> Result<(u64, Option<u32>), Mp4Error> {
    let (_, flags) = r.version_flags()?;
    let count = r.u32()?;
    if flags & 0x001 != 0 {
        r.u32()?; // data_offset
    }
    let first_sample_flags = if flags & 0x004 != 0 {
        Some(r.u32()?)
    } else {
        None
    };
    let per_sample = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count()
        * 4;
    // Check the whole table is there before walking it, so a forged count costs nothing.
    if (count as u64).saturating_mul(per_sample as u64) > r.remaining() as u64 {
        return Err(Mp4Error::ShortBox { kind: *b"trun" });
    }
    if count == 0 {
        return Ok((0, None));
    }
    if flags & 0x100 == 0 {
        let first = first_sample_flags.or(if flags & 0x400 != 0 {
            // Sample 0's own flags follow its (absent) duration and optional size.
            r.skip(if flags & 0x200 != 0 { 4 } else { 0 })?;
            Some(r.u32()?)
        } else {
            Some(default_flags)
        });
        return Ok((u64::from(count) * u64::from(default_duration), first));
    }
    let mut total = 0u64;
    let mut first = first_sample_flags;
    for i in 0..count {
        total += u64::from(r.u32()?);
        if flags & 0x200 != 0 {
            r.u32()?;
        }
        if flags & 0x400 != 0 {
            let f = r.u32()?;
            if i == 0 && first.is_none() {
                first = Some(f);
            }
        }
        if flags & 0x800 != 0 {
            r.u32()?;
        }
    }
    Ok((total, first.or(Some(default_flags))))
}
