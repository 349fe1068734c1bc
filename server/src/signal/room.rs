//! One task per channel: the single owner of that channel's [`Tracker`] and of its members'
//! mailboxes. It handles joins, leaves and neighbour requests; relays bypass it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signaling::protocol::{encode_server, ErrorCode, ServerMessage};
use signaling::tracker::{PeerId, PeerReport, Tracker};
use tokio::sync::{mpsc, oneshot};

use super::hub::Hub;
use super::mailbox::{Closing, Mailbox};
use super::stats::SignalStats;

/// A joined peer's first neighbours, and which of them are origin seeders.
pub(crate) type Joined = (Vec<PeerId>, Vec<PeerId>);

/// Extra queue room for the server's own notices, beyond what relays may fill.
const CONTROL_HEADROOM: usize = 16;

pub(crate) enum RoomCmd {
    Join {
        mailbox: Arc<Mailbox>,
        reply: oneshot::Sender<Result<Joined, ErrorCode>>,
    },
    Leave {
        peer: PeerId,
    },
    More {
        peer: PeerId,
        want: usize,
    },
    Report {
        peer: PeerId,
        report: PeerReport,
        depth: Option<u8>,
    },
    Unlink {
        peer: PeerId,
        other: PeerId,
        /// Whether `peer` dropped `other` for misbehaving.
        accused: bool,
    },
}

struct Room {
    hub: Arc<Hub>,
    id: u64,
    tracker: Tracker,
    members: HashMap<PeerId, Arc<Mailbox>>,
    /// Members that are the server's own seeders (not viewers).
    seeders: usize,
    viewers: Arc<AtomicUsize>,
}

pub(crate) async fn run(
    hub: Arc<Hub>,
    name: String,
    id: u64,
    mut rx: mpsc::UnboundedReceiver<RoomCmd>,
    viewers: Arc<AtomicUsize>,
) {
    tracing::debug!(channel = %name, room = id, "room opened");
    let mut room = Room {
        tracker: Tracker::new(hub.config.tracker(), id),
        hub,
        id,
        members: HashMap::new(),
        seeders: 0,
        viewers,
    };
    while let Some(cmd) = rx.recv().await {
        room.handle(cmd);
        if room.members.is_empty() && room.hub.retire(&name, id, &rx) {
            break;
        }
    }
    tracing::debug!(channel = %name, room = id, "room closed");
}

impl Room {
    fn handle(&mut self, cmd: RoomCmd) {
        match cmd {
            RoomCmd::Join { mailbox, reply } => {
                let result = self.join(&mailbox);
                let _ = reply.send(result);
            }
            RoomCmd::Leave { peer } => {
                let Some(mailbox) = self.members.remove(&peer) else {
                    return;
                };
                if mailbox.is_seeder() {
                    self.seeders = self.seeders.saturating_sub(1);
                }
                SignalStats::dec(&self.hub.stats.peers_joined);
                self.viewers.store(self.viewer_count(), Ordering::Relaxed);
                let told = self.tracker.leave(peer);
                if !told.is_empty() {
                    let notice = encode_server(&ServerMessage::PeerLeft { peer });
                    for n in told {
                        self.notify(n, notice.clone());
                    }
                }
            }
            RoomCmd::More { peer, want } => {
                if !self.members.contains_key(&peer) {
                    return;
                }
                let neighbours = self.tracker.more(peer, want);
                let seeders = self.seeders_among(&neighbours);
                let msg = encode_server(&ServerMessage::Peers {
                    neighbours,
                    seeders,
                });
                self.notify(peer, msg);
            }
            RoomCmd::Report {
                peer,
                report,
                depth,
            } => {
                self.tracker.report(peer, report);
                if let Some(depth) = depth {
                    self.tracker.report_depth(peer, depth);
                }
            }
            RoomCmd::Unlink {
                peer,
                other,
                accused,
            } => {
                if accused {
                    self.tracker.accuse(peer, other);
                }
                self.tracker.unlink(peer, other);
            }
        }
    }

    fn viewer_count(&self) -> usize {
        self.members.len().saturating_sub(self.seeders)
    }

    fn seeders_among(&self, peers: &[PeerId]) -> Vec<PeerId> {
        peers
            .iter()
            .copied()
            .filter(|p| self.members.get(p).is_some_and(|m| m.is_seeder()))
            .collect()
    }

    fn join(&mut self, mailbox: &Arc<Mailbox>) -> Result<Joined, ErrorCode> {
        if self.members.len() >= self.hub.config.max_peers_per_channel {
            return Err(ErrorCode::ChannelFull);
        }
        let peer = mailbox.peer;
        mailbox.set_room(self.id);
        self.members.insert(peer, Arc::clone(mailbox));
        SignalStats::inc(&self.hub.stats.peers_joined);
        if mailbox.is_seeder() {
            // The origin seeder dials no one: the tracker hands it to joining viewers.
            self.seeders += 1;
            self.viewers.store(self.viewer_count(), Ordering::Relaxed);
            self.tracker.add_seeder(peer);
            return Ok((Vec::new(), Vec::new()));
        }
        self.viewers.store(self.viewer_count(), Ordering::Relaxed);
        let neighbours = self.tracker.join(peer);
        let seeders = self.seeders_among(&neighbours);
        Ok((neighbours, seeders))
    }

    /// Queues a server notice; a peer whose queue is full even with headroom is closed, since
    /// it would otherwise miss who left and whom to dial.
    fn notify(&self, peer: PeerId, msg: String) {
        if let Some(m) = self.members.get(&peer) {
            if m.push(msg, self.hub.config.peer_queue + CONTROL_HEADROOM)
                .is_err()
            {
                m.close(Closing::Slow);
            }
        }
    }
}
