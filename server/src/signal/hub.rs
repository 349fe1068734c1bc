//! Shared signaling state: the channel rooms and the registry of connected peers.
//!
//! Two maps, each with one job and short critical sections (no lock is held across an await):
//! - `rooms`: channel name → handle of the task that owns that channel's tracker. Touched only
//!   when a peer joins and when a room empties.
//! - `peers`: peer id → its [`Mailbox`], sharded so relays from many sockets rarely contend.
//!   Relaying is a lookup plus a push; it does not go through the room task, so the hot path
//!   costs one queue hop, not two.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use signaling::protocol::{encode_server, ErrorCode, IceServer, ServerMessage};
use signaling::tracker::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::config::SignalConfig;
use super::directory::ChannelDirectory;
use super::mailbox::{Closing, Mailbox, PushError};
use super::room::{self, RoomCmd};
use super::stats::SignalStats;

const SHARDS: usize = 64;

/// 32 random hex digits (or a time-derived value if the OS has no randomness to give).
fn new_token() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    if rand_core::OsRng.try_fill_bytes(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = t.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a joined connection keeps of its room.
#[derive(Debug, Clone)]
pub(crate) struct RoomHandle {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::UnboundedSender<RoomCmd>,
    viewers: Arc<AtomicUsize>,
}

pub(crate) struct Hub {
    pub(crate) config: SignalConfig,
    pub(crate) ice_servers: Vec<IceServer>,
    pub(crate) directory: Arc<dyn ChannelDirectory>,
    pub(crate) stats: SignalStats,
    /// A secret only this process knows: a socket that opens `/ws?seeder=TOKEN` is the
    /// server's own origin seeder and joins its channel's tracker as the seeder.
    pub(crate) seeder_token: String,
    rooms: Mutex<HashMap<String, RoomHandle>>,
    peers: Vec<Mutex<HashMap<PeerId, Arc<Mailbox>>>>,
    next_peer: AtomicU64,
    next_room: AtomicU64,
    shutting_down: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the map consistent, so a poisoned lock is safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub(crate) fn new(config: SignalConfig, directory: Arc<dyn ChannelDirectory>) -> Self {
        Hub {
            ice_servers: config.ice_server_list(),
            config,
            directory,
            stats: SignalStats::default(),
            seeder_token: new_token(),
            rooms: Mutex::new(HashMap::new()),
            peers: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_peer: AtomicU64::new(1),
            next_room: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        }
    }

    fn shard(&self, peer: PeerId) -> &Mutex<HashMap<PeerId, Arc<Mailbox>>> {
        &self.peers[(peer % SHARDS as u64) as usize]
    }

    /// A fresh mailbox for a new connection, registered; `None` when shutting down or full.
    pub(crate) fn connect(&self) -> Option<Arc<Mailbox>> {
        let open = self.stats.connections_open.fetch_add(1, Ordering::Relaxed);
        SignalStats::inc(&self.stats.connections_total);
        if open as usize >= self.config.max_connections {
            SignalStats::dec(&self.stats.connections_open);
            return None;
        }
        let peer = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::new(peer));
        lock(self.shard(peer)).insert(peer, Arc::clone(&mailbox));
        // Checked after registering: `shutdown` sets the flag before it walks the registry, so
        // either it sees this mailbox or this sees the flag.
        if self.shutting_down.load(Ordering::SeqCst) {
            self.disconnect(peer);
            return None;
        }
        Some(mailbox)
    }

    pub(crate) fn disconnect(&self, peer: PeerId) {
        if lock(self.shard(peer)).remove(&peer).is_some() {
            SignalStats::dec(&self.stats.connections_open);
        }
    }

    /// Delivers `msg` to `to` if it is in room `room`.
    pub(crate) fn relay(
        &self,
        room: u64,
        to: PeerId,
        msg: &ServerMessage,
    ) -> Result<(), ErrorCode> {
        let target = lock(self.shard(to)).get(&to).cloned();
        let Some(target) = target.filter(|t| t.room() == room) else {
            return Err(ErrorCode::UnknownPeer);
        };
        match target.push(encode_server(msg), self.config.peer_queue) {
            Ok(()) => {
                SignalStats::inc(&self.stats.relayed);
                Ok(())
            }
            Err(PushError::Full) => {
                SignalStats::inc(&self.stats.peer_busy);
                Err(ErrorCode::PeerBusy)
            }
            Err(PushError::Closed) => Err(ErrorCode::UnknownPeer),
        }
    }

    /// Joins `mailbox`'s peer to channel `name` (already validated and looked up).
    pub(crate) async fn join(
        self: &Arc<Self>,
        name: &str,
        mailbox: &Arc<Mailbox>,
    ) -> Result<(RoomHandle, room::Joined), ErrorCode> {
        // A room that empties retires itself; a join racing with that finds its command
        // dropped and tries again with a fresh room.
        for _ in 0..3 {
            let handle = self.room(name)?;
            let (reply, answer) = oneshot::channel();
            let cmd = RoomCmd::Join {
                mailbox: Arc::clone(mailbox),
                reply,
            };
            if handle.tx.send(cmd).is_err() {
                continue;
            }
            if let Ok(result) = answer.await {
                return result.map(|joined| (handle, joined));
            }
        }
        Err(ErrorCode::ShuttingDown)
    }

    fn room(self: &Arc<Self>, name: &str) -> Result<RoomHandle, ErrorCode> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ErrorCode::ShuttingDown);
        }
        let mut rooms = lock(&self.rooms);
        if let Some(h) = rooms.get(name) {
            return Ok(h.clone());
        }
        if rooms.len() >= self.config.max_channels {
            return Err(ErrorCode::ServerFull);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = RoomHandle {
            id: self.next_room.fetch_add(1, Ordering::Relaxed),
            tx,
            viewers: Arc::new(AtomicUsize::new(0)),
        };
        rooms.insert(name.to_owned(), handle.clone());
        SignalStats::inc(&self.stats.channels_active);
        tokio::spawn(room::run(
            Arc::clone(self),
            name.to_owned(),
            handle.id,
            rx,
            Arc::clone(&handle.viewers),
        ));
        Ok(handle)
    }

    /// Called by an empty room: removes it unless a command is already waiting for it.
    pub(crate) fn retire(
        &self,
        name: &str,
        id: u64,
        rx: &mpsc::UnboundedReceiver<RoomCmd>,
    ) -> bool {
        let mut rooms = lock(&self.rooms);
        if !rx.is_empty() {
            return false;
        }
        if rooms.get(name).is_some_and(|h| h.id == id) {
            rooms.remove(name);
            SignalStats::dec(&self.stats.channels_active);
        }
        true
    }

    pub(crate) fn viewers(&self, name: &str) -> usize {
        lock(&self.rooms)
            .get(name)
            .map_or(0, |h| h.viewers.load(Ordering::Relaxed))
    }

    pub(crate) fn channels(&self) -> Vec<(String, usize)> {
        let mut list: Vec<(String, usize)> = lock(&self.rooms)
            .iter()
            .map(|(name, h)| (name.clone(), h.viewers.load(Ordering::Relaxed)))
            .collect();
        list.sort();
        list
    }

    pub(crate) fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for shard in &self.peers {
            for mailbox in lock(shard).values() {
                mailbox.close(Closing::Shutdown);
            }
        }
    }

    pub(crate) fn open_connections(&self) -> u64 {
        self.stats.connections_open.load(Ordering::Relaxed)
    }
}
