//! The peer-to-peer wire protocol: versioned binary messages of at most [`MAX_MESSAGE`] bytes.
//!
//! Every message starts with the protocol version and a type byte. [`Message::decode`] rejects
//! anything malformed with a [`DecodeError`]; it never panics and never allocates more than the
//! message itself holds.

use crate::chunk::{ChunkHeader, MAX_MESSAGE, MAX_PIECES, PIECE_SIZE};
use crate::codec::{DecodeError, Reader, Writer};

/// The protocol version this crate speaks. Version 2 halved the piece size
/// ([`PIECE_SIZE`]): a peer of version 1 would cut chunks into pieces this one rejects.
pub const VERSION: u8 = 2;
/// Most substreams a channel may be split into (masks are 16 bits).
pub const MAX_SUBSTREAMS: usize = 16;
/// Chunks covered by a [`Message::Status`] bitmap.
pub const MAP_CHUNKS: u64 = 128;
/// Depth value meaning "not connected to this substream's tree".
pub const NO_DEPTH: u8 = u8::MAX;

const T_STATUS: u8 = 1;
const T_HAVE: u8 = 2;
const T_HEADER: u8 = 3;
const T_PIECE: u8 = 4;
const T_REQUEST: u8 = 5;
const T_REJECT: u8 = 6;
const T_SUBSCRIBE: u8 = 7;
const T_ACCEPT: u8 = 8;
const T_UNSUBSCRIBE: u8 = 9;
const T_CANCEL: u8 = 10;

/// A piece message read in place: its data borrows the message's bytes
/// (see [`Message::decode_piece`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceRef<'a> {
    /// The chunk.
    pub seq: u64,
    /// Piece index within the chunk.
    pub index: u16,
    /// The piece's bytes.
    pub data: &'a [u8],
}

/// One message between two peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// What the sender holds and how it sits in the push trees; sent on open and periodically.
    Status {
        /// First chunk the bitmap describes.
        base: u64,
        /// Bit `i` set: the sender holds chunk `base + i` complete and verified.
        have: u128,
        /// Newest chunk the sender knows of (its view of the live edge).
        latest: u64,
        /// Per substream: the sender's hop count from the origin in that substream's push tree
        /// ([`NO_DEPTH`] when it has no parent there).
        depths: Vec<u8>,
        /// How many more substream subscriptions the sender would accept.
        spare_slots: u8,
        /// How many substream subscriptions the sender serves now (its fan-out): parents
        /// push to children with children of their own first.
        children: u8,
    },
    /// The sender now holds chunk `seq` complete and verified.
    Have {
        /// The chunk.
        seq: u64,
    },
    /// A chunk's signed header.
    Header(ChunkHeader),
    /// One piece of a chunk.
    Piece {
        /// The chunk.
        seq: u64,
        /// Piece index within the chunk.
        index: u16,
        /// The piece's bytes.
        data: Vec<u8>,
    },
    /// Asks for a chunk's header and/or pieces.
    Request {
        /// The chunk.
        seq: u64,
        /// Whether the header is wanted.
        header: bool,
        /// Wanted piece indices.
        pieces: Vec<u16>,
    },
    /// The sender will not serve a request for this chunk.
    Reject {
        /// The chunk.
        seq: u64,
        /// True: it holds the chunk but its upload is full for now (ask elsewhere, no fault);
        /// false: it does not hold the chunk, or never uploads.
        busy: bool,
    },
    /// Asks the receiver to push every new piece of these substreams (bit per substream).
    Subscribe {
        /// Substreams wanted.
        mask: u16,
    },
    /// The substreams the sender now pushes to the receiver (the whole set, not a change).
    Accept {
        /// Substreams served.
        mask: u16,
    },
    /// Ends pushes of these substreams (from a child: stop sending; from a parent: I stopped).
    Unsubscribe {
        /// Substreams ended.
        mask: u16,
    },
    /// The sender already holds this chunk: send nothing more of it.
    Cancel {
        /// The chunk.
        seq: u64,
    },
}

impl Message {
    /// Encodes the message; the result is at most [`MAX_MESSAGE`] bytes for any message this
    /// crate builds (piece data at most [`PIECE_SIZE`], requests at most [`MAX_PIECES`] indices).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_len_hint());
        w.u8(VERSION);
        match self {
            Message::Status {
                base,
                have,
                latest,
                depths,
                spare_slots,
                children,
            } => {
                w.u8(T_STATUS);
                w.u64(*base);
                w.bytes(&have.to_be_bytes());
                w.u64(*latest);
                w.u8(depths.len().min(MAX_SUBSTREAMS) as u8);
                w.bytes(&depths[..depths.len().min(MAX_SUBSTREAMS)]);
                w.u8(*spare_slots);
                w.u8(*children);
            }
            Message::Have { seq } => {
                w.u8(T_HAVE);
                w.u64(*seq);
            }
            Message::Header(h) => {
                w.u8(T_HEADER);
                h.encode(&mut w);
            }
            Message::Piece { seq, index, data } => write_piece(&mut w, *seq, *index, data),
            Message::Request {
                seq,
                header,
                pieces,
            } => {
                w.u8(T_REQUEST);
                w.u64(*seq);
                w.u8(*header as u8);
                let n = pieces.len().min(MAX_PIECES);
                w.u16(n as u16);
                for p in &pieces[..n] {
                    w.u16(*p);
                }
            }
            Message::Reject { seq, busy } => {
                w.u8(T_REJECT);
                w.u64(*seq);
                w.u8(*busy as u8);
            }
            Message::Subscribe { mask } => {
                w.u8(T_SUBSCRIBE);
                w.u16(*mask);
            }
            Message::Accept { mask } => {
                w.u8(T_ACCEPT);
                w.u16(*mask);
            }
            Message::Unsubscribe { mask } => {
                w.u8(T_UNSUBSCRIBE);
                w.u16(*mask);
            }
            Message::Cancel { seq } => {
                w.u8(T_CANCEL);
                w.u64(*seq);
            }
        }
        w.into_inner()
    }

    /// Encodes a piece message straight from borrowed data: the same bytes as encoding a
    /// [`Message::Piece`], without first copying the data into one (pieces are most of the
    /// traffic, and each copy of them costs).
    pub fn encode_piece(seq: u64, index: u16, data: &[u8]) -> Vec<u8> {
        let mut w = Writer::with_capacity(12 + data.len());
        w.u8(VERSION);
        write_piece(&mut w, seq, index, data);
        w.into_inner()
    }

    /// Reads a piece message in place: `None` if `bytes` are not a piece message (decode
    /// those with [`Message::decode`]), otherwise the piece, borrowing its data from `bytes`,
    /// or the error [`Message::decode`] would have failed with.
    pub fn decode_piece(bytes: &[u8]) -> Option<Result<PieceRef<'_>, DecodeError>> {
        if bytes.get(..2) != Some(&[VERSION, T_PIECE]) {
            return None;
        }
        if bytes.len() > MAX_MESSAGE {
            return Some(Err(DecodeError::TooLarge));
        }
        Some(read_piece(&mut Reader::new(&bytes[2..])))
    }

    fn encoded_len_hint(&self) -> usize {
        match self {
            Message::Header(h) => 2 + h.encoded_len(),
            Message::Piece { data, .. } => 12 + data.len(),
            Message::Request { pieces, .. } => 13 + 2 * pieces.len(),
            _ => 48,
        }
    }

    /// Decodes one whole message.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let msg = match r.u8()? {
            T_STATUS => {
                let base = r.u64()?;
                let have = u128::from_be_bytes(r.array()?);
                let latest = r.u64()?;
                let n = r.u8()? as usize;
                if n > MAX_SUBSTREAMS {
                    return Err(DecodeError::Invalid("substream count"));
                }
                let depths = r.take(n)?.to_vec();
                let spare_slots = r.u8()?;
                let children = r.u8()?;
                Message::Status {
                    base,
                    have,
                    latest,
                    depths,
                    spare_slots,
                    children,
                }
            }
            T_HAVE => Message::Have { seq: r.u64()? },
            T_HEADER => Message::Header(ChunkHeader::decode(&mut r)?),
            T_PIECE => {
                let PieceRef { seq, index, data } = read_piece(&mut r)?;
                Message::Piece {
                    seq,
                    index,
                    data: data.to_vec(),
                }
            }
            T_REQUEST => {
                let seq = r.u64()?;
                let header = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("request header flag")),
                };
                let n = r.u16()? as usize;
                if n > MAX_PIECES {
                    return Err(DecodeError::Invalid("request piece count"));
                }
                r.need(2 * n)?;
                let mut pieces = Vec::with_capacity(n);
                for _ in 0..n {
                    let p = r.u16()?;
                    if p as usize >= MAX_PIECES {
                        return Err(DecodeError::Invalid("piece index"));
                    }
                    pieces.push(p);
                }
                Message::Request {
                    seq,
                    header,
                    pieces,
                }
            }
            T_REJECT => Message::Reject {
                seq: r.u64()?,
                busy: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("reject busy flag")),
                },
            },
            T_SUBSCRIBE => Message::Subscribe { mask: r.u16()? },
            T_ACCEPT => Message::Accept { mask: r.u16()? },
            T_UNSUBSCRIBE => Message::Unsubscribe { mask: r.u16()? },
            T_CANCEL => Message::Cancel { seq: r.u64()? },
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Writes a piece message's type and fields (after the version byte).
fn write_piece(w: &mut Writer, seq: u64, index: u16, data: &[u8]) {
    w.u8(T_PIECE);
    w.u64(seq);
    w.u16(index);
    w.bytes(data);
}

/// Reads a piece message's fields (after its version and type bytes), to the end of `r`.
fn read_piece<'a>(r: &mut Reader<'a>) -> Result<PieceRef<'a>, DecodeError> {
    let seq = r.u64()?;
    let index = r.u16()?;
    if index as usize >= MAX_PIECES {
        return Err(DecodeError::Invalid("piece index"));
    }
    let data = r.rest();
    if data.len() > PIECE_SIZE {
        return Err(DecodeError::TooLarge);
    }
    Ok(PieceRef { seq, index, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header_strategy() -> impl Strategy<Value = ChunkHeader> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
            0u32..(3 * PIECE_SIZE as u32),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
        )
            .prop_map(|(seq, ts, dur, kf, len, hash, ph)| ChunkHeader {
                seq,
                timestamp_us: ts,
                duration_us: dur,
                keyframe: kf,
                len,
                hash,
                piece_hashes: vec![ph; crate::chunk::piece_count(len as usize)],
                signature: [9; 64],
            })
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u128>(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_SUBSTREAMS),
                any::<u8>(),
                any::<u8>()
            )
                .prop_map(|(base, have, latest, depths, spare_slots, children)| {
                    Message::Status {
                        base,
                        have,
                        latest,
                        depths,
                        spare_slots,
                        children,
                    }
                }),
            any::<u64>().prop_map(|seq| Message::Have { seq }),
            header_strategy().prop_map(Message::Header),
            (
                any::<u64>(),
                0u16..MAX_PIECES as u16,
                proptest::collection::vec(any::<u8>(), 0..=PIECE_SIZE)
            )
                .prop_map(|(seq, index, data)| Message::Piece { seq, index, data }),
            (
                any::<u64>(),
                any::<bool>(),
                proptest::collection::vec(0u16..MAX_PIECES as u16, 0..=MAX_PIECES)
            )
                .prop_map(|(seq, header, pieces)| Message::Request {
                    seq,
                    header,
                    pieces
                }),
            (any::<u64>(), any::<bool>()).prop_map(|(seq, busy)| Message::Reject { seq, busy }),
            any::<u16>().prop_map(|mask| Message::Subscribe { mask }),
            any::<u16>().prop_map(|mask| Message::Accept { mask }),
            any::<u16>().prop_map(|mask| Message::Unsubscribe { mask }),
            any::<u64>().prop_map(|seq| Message::Cancel { seq }),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip(msg in message_strategy()) {
            let bytes = msg.encode();
            prop_assert!(bytes.len() <= MAX_MESSAGE);
            prop_assert_eq!(Message::decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn pieces_read_in_place_as_decode_reads_them(msg in message_strategy()) {
            let bytes = msg.encode();
            match (&msg, Message::decode_piece(&bytes)) {
                (Message::Piece { seq, index, data }, Some(Ok(p))) => {
                    prop_assert_eq!((p.seq, p.index, p.data), (*seq, *index, &data[..]));
                    prop_assert_eq!(Message::encode_piece(*seq, *index, data), bytes);
                }
                (Message::Piece { .. }, other) => prop_assert!(false, "piece read as {:?}", other),
                (_, got) => prop_assert!(got.is_none()),
            }
        }

        #[test]
        fn decode_piece_fails_as_decode_fails(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut bytes = bytes;
            if bytes.len() >= 2 {
                bytes[0] = VERSION;
                bytes[1] = T_PIECE;
            }
            if let Some(p) = Message::decode_piece(&bytes) {
                let d = Message::decode(&bytes);
                prop_assert_eq!(p.map(|p| (p.seq, p.index, p.data.to_vec())), d.map(|m| match m {
                    Message::Piece { seq, index, data } => (seq, index, data),
                    other => panic!("a piece decoded as {other:?}"),
                }));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn truncation_is_an_error(msg in message_strategy(), cut in any::<prop::sample::Index>()) {
            let bytes = msg.encode();
            let n = cut.index(bytes.len());
            // Pieces carry their data to the end, so a cut piece is still a valid, shorter piece.
            if !matches!(msg, Message::Piece { .. }) {
                prop_assert!(Message::decode(&bytes[..n]).is_err());
            }
        }
    }

    #[test]
    fn rejects_bad_version_type_and_size() {
        assert_eq!(
            Message::decode(&[VERSION + 1, T_HAVE]),
            Err(DecodeError::UnsupportedVersion(VERSION + 1))
        );
        assert_eq!(
            Message::decode(&[VERSION, 99]),
            Err(DecodeError::UnknownType(99))
        );
        assert_eq!(
            Message::decode(&vec![VERSION; MAX_MESSAGE + 1]),
            Err(DecodeError::TooLarge)
        );
        let mut big = vec![0; MAX_MESSAGE + 1];
        big[..2].copy_from_slice(&[VERSION, T_PIECE]);
        assert_eq!(Message::decode(&big), Err(DecodeError::TooLarge));
        assert_eq!(
            Message::decode_piece(&big),
            Some(Err(DecodeError::TooLarge))
        );
        let mut have = Message::Have { seq: 3 }.encode();
        have.push(0);
        assert_eq!(Message::decode(&have), Err(DecodeError::TrailingBytes));
        // A request claiming more pieces than it carries must not allocate for them.
        let lie = [VERSION, T_REQUEST, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x01, 0x00];
        assert_eq!(Message::decode(&lie), Err(DecodeError::Truncated));
    }
}
