//! ISO BMFF (MP4) box basics: headers, a bounds-checked big-endian reader, and iteration over
//! the child boxes of a box that is already wholly in memory.
//!
//! Everything here reads remote input, so nothing may panic: every read is checked and every
//! failure is an [`Mp4Error`].

use std::fmt;

/// Why a stream was refused. Ends that ingest; the channel keeps what it already published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mp4Error {
    /// A box's size field is impossible (smaller than its own header).
    BadSize { kind: [u8; 4], size: u64 },
    /// A box is larger than the segmenter accepts for its kind.
    TooLarge {
        kind: [u8; 4],
        size: u64,
        limit: u64,
    },
    /// A box's size is 0 ("extends to the end of the file"), which a live stream cannot use.
    Unbounded { kind: [u8; 4] },
    /// The stream ended inside a box.
    Truncated { kind: Option<[u8; 4]> },
    /// A box's payload ended before a field it must hold.
    ShortBox { kind: [u8; 4] },
    /// Boxes arrived in an order fragmented MP4 does not allow.
    Order(&'static str),
    /// A required box or field is missing or invalid.
    Invalid(&'static str),
}

/// Prints a box type as text when it is printable, as hex otherwise.
pub(crate) struct FourCc(pub(crate) [u8; 4]);

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            // All bytes are ASCII, so this is valid UTF-8.
            f.write_str(std::str::from_utf8(&self.0).unwrap_or("????"))
        } else {
            write!(f, "0x{:08x}", u32::from_be_bytes(self.0))
        }
    }
}

impl fmt::Display for Mp4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mp4Error::BadSize { kind, size } => {
                write!(f, "box '{}' has impossible size {size}", FourCc(*kind))
            }
            Mp4Error::TooLarge { kind, size, limit } => write!(
                f,
                "box '{}' is {size} bytes, over the {limit}-byte limit",
                FourCc(*kind)
            ),
            Mp4Error::Unbounded { kind } => write!(
                f,
                "box '{}' has size 0 (to end of file); a live stream needs sized boxes",
                FourCc(*kind)
            ),
            Mp4Error::Truncated { kind: Some(k) } => {
                write!(f, "stream ended inside box '{}'", FourCc(*k))
            }
            Mp4Error::Truncated { kind: None } => f.write_str("stream ended inside a box header"),
            Mp4Error::ShortBox { kind } => {
                write!(f, "box '{}' is too short for its fields", FourCc(*kind))
            }
            Mp4Error::Order(what) => write!(f, "boxes out of order: {what}"),
            Mp4Error::Invalid(what) => write!(f, "invalid stream: {what}"),
        }
    }
}

impl std::error::Error for Mp4Error {}

/// A parsed box header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    /// The four-character type.
    pub kind: [u8; 4],
    /// Total size including the header.
    pub size: u64,
    /// Length of the header itself (8, or 16 with a 64-bit size).
    pub header_len: usize,
}

/// Parses a box header from the start of `buf`. `Ok(None)` means more bytes are needed.
/// `uuid` boxes keep their 16-byte user type inside the payload.
pub fn parse_header(buf: &[u8]) -> Result<Option<BoxHeader>, Mp4Error> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = [buf[4], buf[5], buf[6], buf[7]];
    let (size, header_len) = match size32 {
        0 => return Err(Mp4Error::Unbounded { kind }),
        1 => {
            if buf.len() < 16 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[8..16]);
            (u64::from_be_bytes(b), 16)
        }
        n => (u64::from(n), 8),
    };
    if size < header_len as u64 {
        return Err(Mp4Error::BadSize { kind, size });
    }
    Ok(Some(BoxHeader {
        kind,
        size,
        header_len,
    }))
}

/// One child box inside a parent held in memory.
#[derive(Debug, Clone, Copy)]
pub struct ChildBox<'a> {
    /// The four-character type.
    pub kind: [u8; 4],
    /// Offset of the box's first byte within the buffer iterated over.
    pub offset: usize,
    /// The payload (after the header).
    pub payload: &'a [u8],
    /// Offset of the payload's first byte within the buffer iterated over.
    pub payload_offset: usize,
}

/// Iterates over the boxes laid end to end in `buf`; an error ends the iteration.
pub struct Children<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

/// The boxes in `buf`, whose first byte sits at `base` in the enclosing buffer (offsets in
/// the yielded [`ChildBox`]es are relative to that enclosing buffer).
pub fn children(buf: &[u8], base: usize) -> Children<'_> {
    Children {
        buf,
        pos: 0,
        base,
        failed: false,
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<ChildBox<'a>, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = match parse_header(rest) {
            Ok(Some(h)) if h.size <= rest.len() as u64 => {
                // size <= rest.len() so it fits usize.
                let size = h.size as usize;
                let child = ChildBox {
                    kind: h.kind,
                    offset: self.base + self.pos,
                    payload: &rest[h.header_len..size],
                    payload_offset: self.base + self.pos + h.header_len,
                };
                self.pos += size;
                Ok(child)
            }
            Ok(Some(h)) => Err(Mp4Error::ShortBox { kind: h.kind }),
            Ok(None) => Err(Mp4Error::Invalid(
                "trailing bytes shorter than a box header",
            )),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

/// Finds the first child of type `kind`.
pub fn find<'a>(
    buf: &'a [u8],
    base: usize,
    kind: &[u8; 4],
) -> Result<Option<ChildBox<'a>>, Mp4Error> {
    for child in children(buf, base) {
        let child = child?;
        if &child.kind == kind {
            return Ok(Some(child));
        }
    }
    Ok(None)
}

/// A bounds-checked big-endian cursor over one box's payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: [u8; 4],
}

impl<'a> Reader<'a> {
    /// Reads the payload of a box of type `kind` (named in errors).
    pub fn new(buf: &'a [u8], kind: [u8; 4]) -> Self {
        Reader { buf, pos: 0, kind }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        if self.remaining() < n {
            return Err(Mp4Error::ShortBox { kind: self.kind });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        self.take(n).map(|_| ())
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Mp4Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(self.array::<1>()?[0])
    }

    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16, Mp4Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Big-endian 24-bit value.
    pub fn u24(&mut self) -> Result<u32, Mp4Error> {
        let [a, b, c] = self.array::<3>()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    /// Big-endian u32.
    pub fn u32(&mut self) -> Result<u32, Mp4Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Big-endian u64.
    pub fn u64(&mut self) -> Result<u64, Mp4Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A full box's version and flags.
    pub fn version_flags(&mut self) -> Result<(u8, u32), Mp4Error> {
        let v = self.u8()?;
        let f = self.u24()?;
        Ok((v, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(parse_header(b"\0\0\0"), Ok(None));
        let h = parse_header(b"\0\0\0\x10moofxxxxxxxx").unwrap().unwrap();
        assert_eq!((h.kind, h.size, h.header_len), (*b"moof", 16, 8));
        assert_eq!(parse_header(b"\0\0\0\x01mdat\0\0\0"), Ok(None));
        let h = parse_header(b"\0\0\0\x01mdat\0\0\0\0\0\0\0\x20")
            .unwrap()
            .unwrap();
        assert_eq!((h.size, h.header_len), (32, 16));
        assert!(parse_header(b"\0\0\0\x04free").is_err());
        assert!(parse_header(b"\0\0\0\0mdat").is_err());
        assert!(parse_header(b"\0\0\0\x01mdat\0\0\0\0\0\0\0\x08").is_err());
    }

    #[test]
    fn children_and_reader() {
        let buf = b"\0\0\0\x0cabcd\0\0\0\x01\0\0\0\x08efgh";
        let kids: Vec<_> = children(buf, 100).collect::<Result<_, _>>().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1].offset, 112);
        assert_eq!(kids[0].payload_offset, 108);
        let mut r = Reader::new(kids[0].payload, kids[0].kind);
        assert_eq!(r.u32(), Ok(1));
        assert!(r.u8().is_err());
        let bad = b"\0\0\0\x20abcd";
        assert!(children(bad, 0).next().unwrap().is_err());
        assert_eq!(FourCc(*b"moov").to_string(), "moov");
        assert_eq!(FourCc([0, 1, 2, 3]).to_string(), "0x00010203");
    }
}
