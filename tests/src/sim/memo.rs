//! The simulator's memo of checks (see [`swarm::Verified`]): each published chunk's
//! signature and bytes are checked once here, and the thousand peers that receive the same
//! bytes skip hashing and checking them again. Peers still check everything the memo does not
//! hold byte for byte, so forgeries are caught as in a real swarm.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use swarm::chunk::{piece_range, ChunkHeader};
use swarm::{Verified, VerifyingKey};

/// Checked chunks by sequence number: the header and the bytes it was checked against.
type Checked = BTreeMap<u64, (ChunkHeader, Arc<[u8]>)>;

/// The channel's key and the chunks checked against it.
#[derive(Debug)]
pub(crate) struct Memo {
    key: VerifyingKey,
    chunks: Mutex<Checked>,
}

impl Memo {
    /// An empty memo for the channel `key` signs.
    pub(crate) fn new(key: VerifyingKey) -> Self {
        Memo {
            key,
            chunks: Mutex::new(BTreeMap::new()),
        }
    }

    fn chunks(&self) -> MutexGuard<'_, Checked> {
        // The map is only ever replaced whole under the lock: a panic elsewhere cannot have
        // left it half-written.
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks `header` and `bytes` as a peer would, and records them if they pass; returns
    /// whether they did.
    pub(crate) fn check(&self, header: &ChunkHeader, bytes: &Arc<[u8]>) -> bool {
        let ok = header.verify(&self.key).is_ok()
            && header.verify_bytes(bytes).is_ok()
            && (0..header.pieces()).all(|i| {
                header
                    .verify_piece(i, &bytes[piece_range(bytes.len(), i)])
                    .is_ok()
            });
        if ok {
            self.chunks()
                .insert(header.seq, (header.clone(), Arc::clone(bytes)));
        }
        ok
    }
}

impl Verified for Memo {
    fn header(&self, key: &VerifyingKey, header: &ChunkHeader) -> bool {
        *key == self.key
            && self
                .chunks()
                .get(&header.seq)
                .is_some_and(|(h, _)| h == header)
    }

    fn piece(&self, header: &ChunkHeader, index: usize, data: &[u8]) -> Option<Arc<[u8]>> {
        if index >= header.pieces() {
            return None;
        }
        let chunks = self.chunks();
        let (h, bytes) = chunks.get(&header.seq)?;
        (h == header && bytes.get(piece_range(bytes.len(), index)) == Some(data))
            .then(|| Arc::clone(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm::SigningKey;

    fn signed(key: &SigningKey, seq: u64, bytes: &[u8]) -> ChunkHeader {
        ChunkHeader::sign(key, seq, 0, 500_000, true, bytes).unwrap()
    }

    #[test]
    fn vouches_only_for_what_it_checked_byte_for_byte() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let memo = Memo::new(key.verifying_key());
        let bytes: Arc<[u8]> = (0..40_000u32).map(|i| i as u8).collect::<Vec<_>>().into();
        let h = signed(&key, 3, &bytes);
        assert!(
            !memo.header(&key.verifying_key(), &h),
            "nothing checked yet"
        );
        assert!(memo.check(&h, &bytes));
        assert!(memo.header(&key.verifying_key(), &h));
        let piece = &bytes[piece_range(bytes.len(), 1)];
        let whole = memo.piece(&h, 1, piece).expect("a checked piece");
        assert!(Arc::ptr_eq(&whole, &bytes), "the checked bytes, shared");

        // Anything else is "not known", so the peer checks it itself.
        let mut forged = piece.to_vec();
        forged[0] ^= 1;
        assert!(memo.piece(&h, 1, &forged).is_none(), "a changed byte");
        assert!(
            memo.piece(&h, 0, piece).is_none(),
            "the right bytes at the wrong index"
        );
        assert!(
            memo.piece(&h, h.pieces(), &[]).is_none(),
            "a piece past the end"
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(
            !memo.header(&other.verifying_key(), &h),
            "another channel's key"
        );
        let mut lying = h.clone();
        lying.timestamp_us += 1;
        assert!(
            !memo.header(&key.verifying_key(), &lying),
            "a changed field"
        );
        assert!(
            memo.piece(&lying, 1, piece).is_none(),
            "a piece under a changed header"
        );

        // A header the key did not sign is never recorded.
        let stranger = signed(&other, 4, &bytes);
        assert!(!memo.check(&stranger, &bytes));
        assert!(!memo.header(&key.verifying_key(), &stranger));
    }
}
