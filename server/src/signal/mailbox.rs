//! A peer's outbound queue: other tasks push encoded messages, the peer's connection task
//! drains them to its socket.
//!
//! Deliberately not a `tokio::sync::mpsc` channel: that allocates a block of 32 slots per
//! channel up front, while an idle peer here costs only the empty `VecDeque` header. The lock
//! is held only to push or to swap the queue out, never across an await.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use signaling::tracker::PeerId;

/// Why a connection must close, set by another task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The server is shutting down.
    Shutdown,
    /// The peer did not drain its queue: control messages for it were lost.
    Slow,
}

/// Push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue holds its limit of messages.
    Full,
    /// The connection is closing.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<String>,
    closing: Option<Closing>,
}

/// One per connection, shared by the registry, the channel task and the connection task.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) peer: PeerId,
    /// Id of the channel room the peer joined; 0 before it joins.
    room: AtomicU64,
    /// The connection proved it is the server's own origin seeder (see `Hub::seeder_token`).
    seeder: AtomicBool,
    state: Mutex<State>,
    notify: Notify,
}

impl Mailbox {
    pub(crate) fn new(peer: PeerId) -> Self {
        Mailbox {
            peer,
            room: AtomicU64::new(0),
            seeder: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        }
    }

    pub(crate) fn room(&self) -> u64 {
        self.room.load(Ordering::Acquire)
    }

    pub(crate) fn is_seeder(&self) -> bool {
        self.seeder.load(Ordering::Acquire)
    }

    pub(crate) fn set_seeder(&self) {
        self.seeder.store(true, Ordering::Release);
    }

    pub(crate) fn set_room(&self, room: u64) {
        self.room.store(room, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msg` unless `limit` messages already wait or the connection is closing.
    pub(crate) fn push(&self, msg: String, limit: usize) -> Result<(), PushError> {
        let was_empty = {
            let mut s = self.lock();
            if s.closing.is_some() {
                return Err(PushError::Closed);
            }
            if s.queue.len() >= limit {
                return Err(PushError::Full);
            }
            s.queue.push_back(msg);
            s.queue.len() == 1
        };
        // The consumer takes the whole queue at once, so only the first message after a drain
        // needs to wake it; `notify_one` stores a permit if it is not waiting yet.
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Asks the connection to close (first reason wins).
    pub(crate) fn close(&self, why: Closing) {
        {
            let mut s = self.lock();
            if s.closing.is_some() {
                return;
            }
            s.closing = Some(why);
        }
        self.notify.notify_one();
    }

    /// Waits until something was pushed or a close was asked for.
    pub(crate) async fn ready(&self) {
        self.notify.notified().await
    }

    /// Takes every queued message (freeing the queue's memory) and any close request.
    pub(crate) fn take(&self) -> (VecDeque<String>, Option<Closing>) {
        let mut s = self.lock();
        (std::mem::take(&mut s.queue), s.closing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_closable() {
        let m = Mailbox::new(1);
        m.push("a".into(), 2).unwrap();
        m.push("b".into(), 2).unwrap();
        assert_eq!(m.push("c".into(), 2), Err(PushError::Full));
        let (q, closing) = m.take();
        assert_eq!(q, ["a", "b"]);
        assert_eq!(closing, None);
        m.close(Closing::Slow);
        m.close(Closing::Shutdown);
        assert_eq!(m.push("d".into(), 2), Err(PushError::Closed));
        assert_eq!(m.take().1, Some(Closing::Slow));
    }
}
