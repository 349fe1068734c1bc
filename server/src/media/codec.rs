//! RFC 6381 codec strings for Media Source Extensions, read from an `stsd` sample entry:
//! `avc1.42c01e` from `avcC`, `mp4a.40.2` from `esds`, and the like.

use super::mp4::{children, find, Mp4Error, Reader};

/// Bytes of a VisualSampleEntry before its child boxes.
const VISUAL_ENTRY_LEN: usize = 78;
/// Bytes of an AudioSampleEntry (version 0) before its child boxes.
const AUDIO_ENTRY_LEN: usize = 28;

/// The codec string of one sample entry (`kind` is its type, `payload` its body).
/// Unknown codecs yield their four-character type, which MSE will then refuse or accept.
pub fn codec_string(kind: [u8; 4], payload: &[u8]) -> Result<String, Mp4Error> {
    let fourcc = String::from_utf8_lossy(&kind).into_owned();
    match &kind {
        b"avc1" | b"avc3" => {
            let avcc =
                visual_child(payload, b"avcC")?.ok_or(Mp4Error::Invalid("avc1 without avcC"))?;
            let mut r = Reader::new(avcc, *b"avcC");
            r.u8()?; // configurationVersion
            let profile = r.u8()?;
            let compat = r.u8()?;
            let level = r.u8()?;
            Ok(format!("{fourcc}.{profile:02x}{compat:02x}{level:02x}"))
        }
        b"hvc1" | b"hev1" => {
            let hvcc =
                visual_child(payload, b"hvcC")?.ok_or(Mp4Error::Invalid("hvc1 without hvcC"))?;
            hevc(&fourcc, hvcc)
        }
        b"vp09" => {
            let vpcc =
                visual_child(payload, b"vpcC")?.ok_or(Mp4Error::Invalid("vp09 without vpcC"))?;
            let mut r = Reader::new(vpcc, *b"vpcC");
            r.version_flags()?;
            let profile = r.u8()?;
            let level = r.u8()?;
            let depth = r.u8()? >> 4;
            Ok(format!("vp09.{profile:02}.{level:02}.{depth:02}"))
        }
        b"av01" => {
            let av1c =
                visual_child(payload, b"av1C")?.ok_or(Mp4Error::Invalid("av01 without av1C"))?;
            let mut r = Reader::new(av1c, *b"av1C");
            r.u8()?; // marker and version
            let b1 = r.u8()?;
            let b2 = r.u8()?;
            let profile = b1 >> 5;
            let level = b1 & 0x1f;
            let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
            let depth = match (b2 & 0x40 != 0, b2 & 0x20 != 0) {
                (true, true) => 12,
                (true, false) => 10,
                _ => 8,
            };
            Ok(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
        }
        b"mp4a" => {
            let esds =
                audio_child(payload, b"esds")?.ok_or(Mp4Error::Invalid("mp4a without esds"))?;
            esds_codec(esds)
        }
        b"Opus" => Ok("opus".into()),
        b"fLaC" => Ok("flac".into()),
        _ => Ok(fourcc),
    }
}

fn visual_child<'a>(payload: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4Error> {
    let boxes = payload
        .get(VISUAL_ENTRY_LEN..)
        .ok_or(Mp4Error::Invalid("visual sample entry too short"))?;
    Ok(find(boxes, 0, kind)?.map(|b| b.payload))
}

fn audio_child<'a>(payload: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4Error> {
    let mut r = Reader::new(payload, *b"mp4a");
    r.skip(8)?;
    let version = r.u16()?;
    // QuickTime sound entry versions 1 and 2 carry 16 and 36 more bytes.
    let extra = match version {
        0 => 0,
        1 => 16,
        2 => 36,
        _ => return Err(Mp4Error::Invalid("unknown audio sample entry version")),
    };
    let boxes = payload
        .get(AUDIO_ENTRY_LEN + extra..)
        .ok_or(Mp4Error::Invalid("audio sample entry too short"))?;
    for child in children(boxes, 0) {
        let child = child?;
        if &child.kind == kind {
            return Ok(Some(child.payload));
        }
        // Some muxers wrap esds in a 'wave' box.
        if &child.kind == b"wave" {
            if let Some(b) = find(child.payload, 0, kind)? {
                return Ok(Some(b.payload));
            }
        }
    }
    Ok(None)
}

/// Reads an MPEG-4 descriptor's tag and length.
fn descriptor(r: &mut Reader<'_>) -> Result<(u8, usize), Mp4Error> {
    let tag = r.u8()?;
    let mut len = 0usize;
    for _ in 0..4 {
        let b = r.u8()?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Ok((tag, len));
        }
    }
    Ok((tag, len))
}

fn esds_codec(esds: &[u8]) -> Result<String, Mp4Error> {
    let mut r = Reader::new(esds, *b"esds");
    r.version_flags()?;
    let (tag, _) = descriptor(&mut r)?;
    if tag != 0x03 {
        return Err(Mp4Error::Invalid("esds without ES_Descriptor"));
    }
    r.skip(2)?; // ES_ID
    let flags = r.u8()?;
    if flags & 0x80 != 0 {
        r.skip(2)?;
    }
    if flags & 0x40 != 0 {
        let n = r.u8()?;
        r.skip(usize::from(n))?;
    }
    if flags & 0x20 != 0 {
        r.skip(2)?;
    }
    let (tag, _) = descriptor(&mut r)?;
    if tag != 0x04 {
        return Err(Mp4Error::Invalid("esds without DecoderConfigDescriptor"));
    }
    let oti = r.u8()?;
    r.skip(12)?; // stream type, buffer size, max and average bitrate
    if oti != 0x40 {
        return Ok(format!("mp4a.{oti:02x}"));
    }
    // Without its AudioSpecificConfig no browser can set up an AAC decoder (ffmpeg writes
    // such an esds when it muxes raw ADTS input into an empty moov).
    let no_asc = Mp4Error::Invalid("AAC track without AudioSpecificConfig in its esds");
    let (tag, _) = descriptor(&mut r).map_err(|_| no_asc.clone())?;
    if tag != 0x05 {
        return Err(no_asc);
    }
    let b0 = r.u8()?;
    let mut aot = b0 >> 3;
    if aot == 31 {
        let b1 = r.u8()?;
        aot = 32 + (((b0 & 0x07) << 3) | (b1 >> 5));
    }
    Ok(format!("mp4a.40.{aot}"))
}

fn hevc(fourcc: &str, hvcc: &[u8]) -> Result<String, Mp4Error> {
    let mut r = Reader::new(hvcc, *b"hvcC");
    r.u8()?; // configurationVersion
    let b = r.u8()?;
    let space = ["", "A", "B", "C"][usize::from(b >> 6)];
    let tier = if b & 0x20 != 0 { 'H' } else { 'L' };
    let profile = b & 0x1f;
    // The compatibility flags are written in reverse bit order.
    let compat = r.u32()?.reverse_bits();
    let constraints = r.take(6)?;
    let level = r.u8()?;
    let mut s = format!("{fourcc}.{space}{profile}.{compat:x}.{tier}{level}");
    let keep = constraints
        .iter()
        .rposition(|&c| c != 0)
        .map_or(0, |i| i + 1);
    for c in &constraints[..keep] {
        s.push_str(&format!(".{c:02x}"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn avc1_from_avcc() {
        let mut entry = vec![0u8; VISUAL_ENTRY_LEN];
        entry.extend(boxed(b"avcC", &[1, 0x42, 0xc0, 0x1e, 0xff]));
        assert_eq!(codec_string(*b"avc1", &entry).unwrap(), "avc1.42c01e");
        assert!(codec_string(*b"avc1", &entry[..10]).is_err());
    }

    #[test]
    fn aac_lc_from_esds() {
        let mut esds = vec![0, 0, 0, 0];
        esds.extend([0x03, 0x80, 0x80, 0x80, 25, 0, 1, 0]);
        esds.extend([
            0x04, 0x80, 0x80, 0x80, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        esds.extend([0x05, 0x80, 0x80, 0x80, 2, 0x11, 0x90]);
        let mut entry = vec![0u8; AUDIO_ENTRY_LEN];
        entry.extend(boxed(b"esds", &esds));
        assert_eq!(codec_string(*b"mp4a", &entry).unwrap(), "mp4a.40.2");
        // The same esds cut before its AudioSpecificConfig.
        let mut entry = vec![0u8; AUDIO_ENTRY_LEN];
        entry.extend(boxed(b"esds", &esds[..esds.len() - 7]));
        assert!(codec_string(*b"mp4a", &entry).is_err());
    }

    #[test]
    fn hevc_string() {
        let mut hvcc = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        hvcc.extend([0; 10]);
        assert_eq!(hevc("hvc1", &hvcc).unwrap(), "hvc1.1.6.L93.90");
    }
}
