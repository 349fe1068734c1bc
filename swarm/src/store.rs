//! The sliding window of chunks a peer holds or is fetching.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::chunk::{piece_range, ChunkHeader};
use crate::{PeerId, Time};

/// Pieces that arrived before their chunk's header, held until it comes (bounded).
pub(crate) const MAX_STASHED: usize = 64;

/// How a piece arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Pushed by the substream's parent.
    Parent,
    /// Pulled from another neighbour because the push was late.
    Pulled,
    /// Anything that says nothing about the parent (HTTP, publish, not yet arrived).
    Other,
}

/// One chunk in the window.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Verified header, once known.
    pub(crate) header: Option<ChunkHeader>,
    /// The chunk's bytes, allocated when the first piece comes (many slots get a header
    /// and never a piece: the chunk is pulled elsewhere, skipped or evicted first); shared
    /// with the player once complete (see [`crate::chunk::Playable`]), and written only
    /// before that. With a memo of checks (see [`crate::Verified`]) they may be the memo's
    /// checked copy from the first piece on (see [`Slot::put_piece`]).
    pub(crate) data: Arc<[u8]>,
    /// Which pieces are held (verified).
    pub(crate) have: Vec<bool>,
    pub(crate) have_count: usize,
    /// When the peer first heard of this chunk.
    pub(crate) first_seen: Time,
    /// When the chunk became complete and verified.
    pub(crate) complete_at: Option<Time>,
    /// Outstanding request per piece: who and when it times out.
    pub(crate) requested: Vec<Option<(PeerId, Time)>>,
    /// Outstanding header request.
    pub(crate) header_requested: Option<(PeerId, Time)>,
    /// Pieces received before the header: (index, bytes, sender).
    pub(crate) stash: Vec<(u16, Vec<u8>, PeerId)>,
    /// An HTTP fallback fetch is under way.
    pub(crate) http_pending: bool,
    /// Per piece: how it arrived (for judging the substream's parent).
    pub(crate) src: Vec<Via>,
}

impl Slot {
    pub(crate) fn new(now: Time) -> Self {
        Slot {
            header: None,
            data: Arc::default(),
            have: Vec::new(),
            have_count: 0,
            first_seen: now,
            complete_at: None,
            requested: Vec::new(),
            header_requested: None,
            stash: Vec::new(),
            http_pending: false,
            src: Vec::new(),
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.complete_at.is_some()
    }

    /// Installs a verified header (the bytes get room when the first piece comes).
    pub(crate) fn set_header(&mut self, header: ChunkHeader) {
        let n = header.pieces();
        self.data = Arc::default();
        self.have = vec![false; n];
        self.requested = vec![None; n];
        self.src = vec![Via::Other; n];
        self.have_count = 0;
        self.header = Some(header);
        self.header_requested = None;
    }

    /// Copies in a verified piece. Returns false if it was already held.
    ///
    /// `whole` is the chunk's bytes, already checked, when a memo of checks vouched for
    /// this piece (see [`crate::Verified`]): a slot with no bytes yet holds those rather
    /// than a copy of its own, and a slot already holding them has nothing to write. Bytes
    /// of pieces not yet held are then present but never read: `have` says what is held.
    pub(crate) fn put_piece(
        &mut self,
        index: usize,
        bytes: &[u8],
        whole: Option<&Arc<[u8]>>,
    ) -> bool {
        if self.have.get(index).copied().unwrap_or(true) {
            return false;
        }
        let len = self.header.as_ref().map_or(0, |h| h.len as usize);
        let whole = whole.filter(|w| w.len() == len);
        if self.data.len() != len {
            self.data = match whole {
                Some(w) => Arc::clone(w),
                None => std::iter::repeat_n(0, len).collect(),
            };
        }
        if !whole.is_some_and(|w| Arc::ptr_eq(w, &self.data)) {
            let range = piece_range(len, index);
            // Unshared until the chunk is complete (or shared with a memo's checked copy,
            // which the first piece from elsewhere copies once).
            Arc::make_mut(&mut self.data)[range].copy_from_slice(bytes);
        }
        self.have[index] = true;
        self.requested[index] = None;
        self.have_count += 1;
        true
    }

    /// Bytes of piece `index` (the slot must hold it).
    pub(crate) fn piece(&self, index: usize) -> &[u8] {
        &self.data[piece_range(self.data.len(), index)]
    }

    pub(crate) fn all_pieces(&self) -> bool {
        !self.have.is_empty() && self.have_count == self.have.len()
    }

    pub(crate) fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        self.have
            .iter()
            .enumerate()
            .filter(|(_, h)| !**h)
            .map(|(i, _)| i)
    }
}

/// The window: chunks by sequence number.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) slots: BTreeMap<u64, Slot>,
}

impl Store {
    pub(crate) fn get(&self, seq: u64) -> Option<&Slot> {
        self.slots.get(&seq)
    }

    pub(crate) fn get_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        self.slots.get_mut(&seq)
    }

    pub(crate) fn entry(&mut self, seq: u64, now: Time) -> &mut Slot {
        self.slots.entry(seq).or_insert_with(|| Slot::new(now))
    }

    pub(crate) fn has_complete(&self, seq: u64) -> bool {
        self.slots.get(&seq).is_some_and(Slot::is_complete)
    }

    /// Drops every chunk older than `oldest`.
    pub(crate) fn evict_before(&mut self, oldest: u64) {
        while let Some((&seq, _)) = self.slots.first_key_value() {
            if seq >= oldest {
                break;
            }
            self.slots.pop_first();
        }
    }

    /// Bitmap of complete chunks from `base` on.
    pub(crate) fn bitmap(&self, base: u64) -> u128 {
        let mut bits = 0u128;
        for (&seq, slot) in self.slots.range(base..base + crate::wire::MAP_CHUNKS) {
            if slot.is_complete() {
                bits |= 1 << (seq - base);
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::PIECE_SIZE;
    use ed25519_dalek::SigningKey;

    fn slot_for(bytes: &[u8]) -> Slot {
        let key = SigningKey::from_bytes(&[1; 32]);
        let header = ChunkHeader::sign(&key, 0, 0, 500_000, true, bytes).unwrap();
        let mut slot = Slot::new(0);
        slot.set_header(header);
        slot
    }

    #[test]
    fn a_memo_copy_is_held_shared_until_a_piece_comes_from_elsewhere() {
        let whole: Arc<[u8]> = (0..3 * PIECE_SIZE).map(|i| (i % 251) as u8).collect();
        let piece = |i| &whole[piece_range(whole.len(), i)];

        let mut slot = slot_for(&whole);
        assert!(slot.put_piece(1, piece(1), Some(&whole)));
        assert!(Arc::ptr_eq(&slot.data, &whole), "no copy of its own");
        assert!(!slot.put_piece(1, piece(1), Some(&whole)), "already held");
        assert_eq!(slot.missing().collect::<Vec<_>>(), [0, 2], "only what came");
        // A piece the memo did not vouch for (HTTP, or hashed by the peer) is written to
        // the slot's own copy; the memo's bytes are never written.
        assert!(slot.put_piece(0, piece(0), None));
        assert!(!Arc::ptr_eq(&slot.data, &whole));
        assert!(slot.put_piece(2, piece(2), Some(&whole)));
        assert!(slot.all_pieces());
        assert_eq!(slot.data[..], whole[..]);

        // Bytes of another length are not the chunk's, and are ignored.
        let mut slot = slot_for(&whole);
        let short: Arc<[u8]> = whole[..PIECE_SIZE].into();
        assert!(slot.put_piece(0, piece(0), Some(&short)));
        assert_eq!(slot.data.len(), whole.len());
        assert_eq!(slot.piece(0), piece(0));
    }
}
