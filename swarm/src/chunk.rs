//! Signed chunks: the unit a live channel is cut into, and the pieces it travels as.
//!
//! A chunk is one fMP4 fragment. Its [`ChunkHeader`] carries the SHA-256 of the whole chunk,
//! the SHA-256 of every piece, and an Ed25519 signature by the channel's key over all of it.
//! A peer that holds a verified header can therefore check each piece the moment it arrives
//! and relay it on at once, instead of waiting for the whole chunk.

use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::DecodeError;

/// Largest wire message, in bytes. Every browser's SCTP stack accepts messages this size.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Bytes of chunk data carried by one piece (all pieces but a chunk's last are this long):
/// half a message, less room for the piece message's own framing.
///
/// A relay verifies a piece, and so can forward it, only once the whole piece is in, so
/// every hop of a push tree waits for one piece at the parent's share of its uplink. Half
/// of a whole message halves that wait: in the simulator's `thousand` (trees 8-10 hops
/// deep) delivery p95 fell on every one of seeds 1-6, from 3.83 s to 3.54 s on average,
/// and in `hundred` (seeds 1-16) from 1.28 s to 1.20 s, for 0.4 % more bytes of framing.
pub const PIECE_SIZE: usize = MAX_MESSAGE / 2 - 64;
/// Most pieces a chunk may have: its header, with one hash per piece, must fit one message.
pub const MAX_PIECES: usize = 500;
/// Largest chunk, in bytes (about 4 MB: 16 s at 2 Mbit/s, or 1.6 s at 20 Mbit/s).
pub const MAX_CHUNK_BYTES: usize = PIECE_SIZE * MAX_PIECES;

/// Domain separation for chunk signatures, so a signature can never be replayed as anything else.
const SIGN_CONTEXT: &[u8] = b"shoal-chunk-v1\0";
/// Bytes of a header before its piece hashes and signature.
const FIXED_LEN: usize = 8 + 8 + 4 + 1 + 4 + 32 + 2;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Why a chunk or piece failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The Ed25519 signature does not match the channel's key.
    BadSignature,
    /// The bytes' SHA-256 differs from the signed one.
    HashMismatch,
    /// The bytes' length differs from the signed one.
    LengthMismatch,
    /// The piece index is outside the chunk.
    NoSuchPiece,
    /// The header's piece list does not fit its length.
    Inconsistent,
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            VerifyError::BadSignature => "chunk signature does not verify with the channel key",
            VerifyError::HashMismatch => "bytes do not match the signed SHA-256",
            VerifyError::LengthMismatch => "bytes do not have the signed length",
            VerifyError::NoSuchPiece => "piece index outside the chunk",
            VerifyError::Inconsistent => "header's piece hashes do not fit its length",
        })
    }
}

impl std::error::Error for VerifyError {}

/// A channel's public key from its 64-digit hex form (either case), as the server's API and
/// signaling hand it out; `None` if it is not one.
pub fn public_key_from_hex(hex: &str) -> Option<VerifyingKey> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        bytes[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The signed description of one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Sequence number, increasing by one per chunk for the life of the channel.
    pub seq: u64,
    /// Origin timestamp of the chunk's publication, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Media duration, microseconds.
    pub duration_us: u32,
    /// Whether the chunk starts with a keyframe (a player may join here).
    pub keyframe: bool,
    /// Length of the chunk's bytes.
    pub len: u32,
    /// SHA-256 of the whole chunk.
    pub hash: Hash,
    /// SHA-256 of each piece, in order.
    pub piece_hashes: Vec<Hash>,
    /// Ed25519 signature by the channel key over everything above.
    pub signature: [u8; 64],
}

/// Number of pieces a chunk of `len` bytes travels as.
pub fn piece_count(len: usize) -> usize {
    len.div_ceil(PIECE_SIZE).max(1)
}

/// Byte range of piece `index` in a chunk of `len` bytes.
pub fn piece_range(len: usize, index: usize) -> core::ops::Range<usize> {
    let start = (index * PIECE_SIZE).min(len);
    let end = (start + PIECE_SIZE).min(len);
    start..end
}

fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

impl ChunkHeader {
    /// Describes and signs `bytes` as chunk `seq`. Fails if the chunk is larger than
    /// [`MAX_CHUNK_BYTES`].
    pub fn sign(
        key: &SigningKey,
        seq: u64,
        timestamp_us: u64,
        duration_us: u32,
        keyframe: bool,
        bytes: &[u8],
    ) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_CHUNK_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let piece_hashes = (0..piece_count(bytes.len()))
            .map(|i| sha256(&bytes[piece_range(bytes.len(), i)]))
            .collect();
        let mut header = ChunkHeader {
            seq,
            timestamp_us,
            duration_us,
            keyframe,
            // Bounded by MAX_CHUNK_BYTES above, which fits u32.
            len: bytes.len() as u32,
            hash: sha256(bytes),
            piece_hashes,
            signature: [0; 64],
        };
        header.signature = key.sign(&header.signed_bytes()).to_bytes();
        Ok(header)
    }

    /// The bytes the signature covers.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(SIGN_CONTEXT.len() + self.encoded_len());
        w.bytes(SIGN_CONTEXT);
        self.encode_unsigned(&mut w);
        w.into_inner()
    }

    fn encode_unsigned(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.u64(self.timestamp_us);
        w.u32(self.duration_us);
        w.u8(self.keyframe as u8);
        w.u32(self.len);
        w.bytes(&self.hash);
        // At most MAX_PIECES, checked on decode and by construction in `sign`.
        w.u16(self.piece_hashes.len() as u16);
        for h in &self.piece_hashes {
            w.bytes(h);
        }
    }

    /// Length of [`ChunkHeader::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + 32 * self.piece_hashes.len() + 64
    }

    /// Appends the header's wire form.
    pub fn encode(&self, w: &mut Writer) {
        self.encode_unsigned(w);
        w.bytes(&self.signature);
    }

    /// The header's wire form as a fresh buffer (used by the HTTP fallback).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_len());
        self.encode(&mut w);
        w.into_inner()
    }

    /// Reads a header; checks its shape (piece count fits the length), not its signature.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let seq = r.u64()?;
        let timestamp_us = r.u64()?;
        let duration_us = r.u32()?;
        let keyframe = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("keyframe flag")),
        };
        let len = r.u32()?;
        if len as usize > MAX_CHUNK_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let hash = r.array::<32>()?;
        let n = r.u16()? as usize;
        if n != piece_count(len as usize) {
            return Err(DecodeError::Invalid(
                "piece count does not fit chunk length",
            ));
        }
        // n is bounded by MAX_PIECES through the length check above, and each hash is read
        // from the message itself, so this never allocates more than the message holds.
        r.need(32 * n + 64)?;
        let mut piece_hashes = Vec::with_capacity(n);
        for _ in 0..n {
            piece_hashes.push(r.array::<32>()?);
        }
        let signature = r.array::<64>()?;
        Ok(ChunkHeader {
            seq,
            timestamp_us,
            duration_us,
            keyframe,
            len,
            hash,
            piece_hashes,
            signature,
        })
    }

    /// Parses a header from exactly `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let h = Self::decode(&mut r)?;
        r.finish()?;
        Ok(h)
    }

    /// Checks the signature with the channel's key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        if self.piece_hashes.len() != piece_count(self.len as usize) {
            return Err(VerifyError::Inconsistent);
        }
        let sig = Signature::from_bytes(&self.signature);
        key.verify(&self.signed_bytes(), &sig)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// Number of pieces of this chunk.
    pub fn pieces(&self) -> usize {
        self.piece_hashes.len()
    }

    /// Expected length of piece `index`.
    pub fn piece_len(&self, index: usize) -> usize {
        piece_range(self.len as usize, index).len()
    }

    /// Checks one piece against its signed hash (the header must have been verified).
    pub fn verify_piece(&self, index: usize, data: &[u8]) -> Result<(), VerifyError> {
        let want = self
            .piece_hashes
            .get(index)
            .ok_or(VerifyError::NoSuchPiece)?;
        if data.len() != self.piece_len(index) {
            return Err(VerifyError::LengthMismatch);
        }
        if &sha256(data) != want {
            return Err(VerifyError::HashMismatch);
        }
        Ok(())
    }

    /// Checks a whole chunk's bytes against the signed length and SHA-256.
    pub fn verify_bytes(&self, bytes: &[u8]) -> Result<(), VerifyError> {
        if bytes.len() != self.len as usize {
            return Err(VerifyError::LengthMismatch);
        }
        if sha256(bytes) != self.hash {
            return Err(VerifyError::HashMismatch);
        }
        Ok(())
    }
}

/// A whole, verified chunk: header plus bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The signed header.
    pub header: ChunkHeader,
    /// The fMP4 fragment (`moof`+`mdat`).
    pub bytes: Vec<u8>,
}

impl Chunk {
    /// The HTTP fallback's body: the header's length (u32, big-endian), the header, the bytes.
    pub fn to_framed(&self) -> Vec<u8> {
        let header = self.header.to_bytes();
        let mut w = Writer::with_capacity(4 + header.len() + self.bytes.len());
        // A header is at most one message long, far below u32::MAX.
        w.u32(header.len() as u32);
        w.bytes(&header);
        w.bytes(&self.bytes);
        w.into_inner()
    }

    /// Length of [`Chunk::to_framed`]'s output, without building it.
    pub fn framed_len(&self) -> usize {
        4 + self.header.encoded_len() + self.bytes.len()
    }

    /// Parses [`Chunk::to_framed`]'s output and checks it against `key`: the signature, the
    /// length and the SHA-256 of the bytes.
    pub fn from_framed(body: &[u8], key: &VerifyingKey) -> Result<Chunk, ChunkError> {
        let (header, bytes) = Chunk::verify_framed(body, key)?;
        Ok(Chunk {
            header,
            bytes: bytes.to_vec(),
        })
    }

    /// [`Chunk::from_framed`] without copying the bytes out: the verified header, and the
    /// chunk's bytes borrowed from `body`.
    pub fn verify_framed<'a>(
        body: &'a [u8],
        key: &VerifyingKey,
    ) -> Result<(ChunkHeader, &'a [u8]), ChunkError> {
        let mut r = Reader::new(body);
        let n = r.u32()? as usize;
        if n > MAX_MESSAGE {
            return Err(DecodeError::TooLarge.into());
        }
        let header = ChunkHeader::from_bytes(r.take(n)?)?;
        header.verify(key)?;
        let bytes = r.rest();
        header.verify_bytes(bytes)?;
        Ok((header, bytes))
    }
}

/// A verified chunk handed to the player: its header, and its bytes shared with the peer's
/// store rather than copied (a copy of every chunk for every viewer was a large share of a
/// simulated swarm's time; a player that needs its own buffer copies from these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playable {
    /// The signed header.
    pub header: ChunkHeader,
    /// The fMP4 fragment (`moof`+`mdat`), verified.
    pub bytes: Arc<[u8]>,
}

/// Why a framed chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// Malformed bytes.
    Decode(DecodeError),
    /// Well-formed but not what the channel key signed.
    Verify(VerifyError),
}

impl From<DecodeError> for ChunkError {
    fn from(e: DecodeError) -> Self {
        ChunkError::Decode(e)
    }
}

impl From<VerifyError> for ChunkError {
    fn from(e: VerifyError) -> Self {
        ChunkError::Verify(e)
    }
}

impl core::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChunkError::Decode(e) => write!(f, "malformed chunk: {e}"),
            ChunkError::Verify(e) => write!(f, "chunk failed verification: {e}"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// What a driver already verified, so a peer need not check it again: a memo of checks, not
/// a source of trust. A driver that runs many peers in one process (the simulator) checks
/// each chunk's signature and pieces once, and every peer it hands the memo to skips the
/// repeated hashing and signature checks for bytes the memo holds (SHA-256 and Ed25519 were
/// a fifth of a thousand-peer run). Anything the memo does not hold byte for byte is checked
/// as always, so a forgery is caught exactly as before. The memo also hands out the checked
/// bytes, so the peers share one copy of each chunk rather than each zeroing, filling and
/// freeing its own. A browser or native peer, alone in its process, has none.
pub trait Verified: Send + Sync + core::fmt::Debug {
    /// Whether `header` equals, field for field, a header already found validly signed by
    /// `key`. `false` means only "not known": the peer then checks it itself.
    fn header(&self, key: &VerifyingKey, header: &ChunkHeader) -> bool;

    /// If `data` equals, byte for byte, piece `index` of a chunk whose bytes were already
    /// found to match `header` (so [`ChunkHeader::verify_piece`] would accept it), those
    /// checked bytes, whole: the peer may hold them as its copy of the chunk rather than
    /// building its own piece by piece (it still counts only the pieces it received).
    /// `None` means only "not known".
    fn piece(&self, header: &ChunkHeader, index: usize, data: &[u8]) -> Option<Arc<[u8]>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_from_hex() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(public_key_from_hex(&hex), Some(key));
        assert_eq!(public_key_from_hex(&hex.to_uppercase()), Some(key));
        assert_eq!(public_key_from_hex("zz"), None);
        assert_eq!(public_key_from_hex(&"g".repeat(64)), None);
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn sign_verify_roundtrip() {
        let bytes: Vec<u8> = (0..2 * PIECE_SIZE as u32 + 500).map(|i| i as u8).collect();
        let h = ChunkHeader::sign(&key(), 5, 1_000, 500_000, true, &bytes).unwrap();
        assert_eq!(h.pieces(), 3);
        h.verify(&key().verifying_key()).unwrap();
        h.verify_bytes(&bytes).unwrap();
        for i in 0..3 {
            h.verify_piece(i, &bytes[piece_range(bytes.len(), i)])
                .unwrap();
        }
        let parsed = ChunkHeader::from_bytes(&h.to_bytes()).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(h.to_bytes().len(), h.encoded_len());
    }

    #[test]
    fn tampering_is_caught() {
        let bytes = vec![1u8; 20_000];
        let h = ChunkHeader::sign(&key(), 1, 0, 500_000, false, &bytes).unwrap();
        let mut forged = h.clone();
        forged.seq = 2;
        assert_eq!(
            forged.verify(&key().verifying_key()),
            Err(VerifyError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            h.verify(&other.verifying_key()),
            Err(VerifyError::BadSignature)
        );
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert_eq!(h.verify_bytes(&bad), Err(VerifyError::HashMismatch));
        assert_eq!(
            h.verify_piece(0, &bad[..PIECE_SIZE]),
            Err(VerifyError::HashMismatch)
        );
        assert_eq!(h.verify_piece(9, &bad), Err(VerifyError::NoSuchPiece));
    }

    #[test]
    fn framed_roundtrip_and_rejects_forgery() {
        let bytes = vec![3u8; 50_000];
        let header = ChunkHeader::sign(&key(), 9, 1, 2, true, &bytes).unwrap();
        let chunk = Chunk { header, bytes };
        let framed = chunk.to_framed();
        assert_eq!(framed.len(), chunk.framed_len());
        let vk = key().verifying_key();
        assert_eq!(Chunk::from_framed(&framed, &vk).unwrap(), chunk);
        let mut bad = framed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            Chunk::from_framed(&bad, &vk),
            Err(ChunkError::Verify(VerifyError::HashMismatch))
        ));
        assert!(Chunk::from_framed(&framed[..10], &vk).is_err());
        let other = SigningKey::from_bytes(&[1; 32]).verifying_key();
        assert!(Chunk::from_framed(&framed, &other).is_err());
    }

    #[test]
    fn empty_chunk_has_one_empty_piece() {
        let h = ChunkHeader::sign(&key(), 0, 0, 0, true, &[]).unwrap();
        assert_eq!(h.pieces(), 1);
        h.verify_piece(0, &[]).unwrap();
    }

    // The biggest header, with its message framing, fits one message.
    const _: () = assert!(FIXED_LEN + 32 * MAX_PIECES + 64 + 16 <= MAX_MESSAGE);
}
