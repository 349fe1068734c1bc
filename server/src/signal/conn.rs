//! One task per WebSocket: reads the peer's messages, answers or forwards them, writes what
//! others queued for it, and keeps the heartbeat. Its only state is this small struct; the
//! socket's buffers are kept small by the upgrade settings in `mod.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use signaling::protocol::{
    encode_server, parse_client, valid_channel_name, ClientMessage, ErrorCode, ServerMessage,
    UnlinkReason,
};
use signaling::tracker::{PeerId, PeerReport};
use tokio::time::{timeout, Instant};

use super::hub::{Hub, RoomHandle};
use super::mailbox::{Closing, Mailbox};
use super::room::RoomCmd;
use super::stats::SignalStats;
use super::ws::{self, FrameError, Incoming, Socket};

/// The upgraded HTTP connection a peer's WebSocket runs on.
pub(crate) type WebSocket = Socket<TokioIo<Upgraded>>;

/// Why a connection ends, and the close code it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The peer closed or the socket failed: nothing to send.
    Gone,
    /// The peer sent a close frame: echo it, nothing more to read.
    PeerClosed,
    Leave,
    Shutdown,
    Slow,
    Heartbeat,
    TooLarge,
    Flood,
    /// Connected but never joined a channel within the heartbeat timeout.
    JoinTimeout,
    /// The peer broke WebSocket framing rules.
    Framing(FrameError),
}

impl End {
    /// Close code and reason, `None` when the socket is already gone.
    fn close(self) -> Option<(u16, &'static str)> {
        Some(match self {
            End::Gone => return None,
            End::PeerClosed => (1000, ""),
            End::Leave => (1000, "bye"),
            End::Shutdown => (1001, "server shutting down"),
            End::Heartbeat => (1001, "heartbeat timeout"),
            End::Slow => (1008, "not reading fast enough"),
            End::Flood => (1008, "rate limit exceeded"),
            End::TooLarge => (1009, "message too large"),
            End::Framing(FrameError::Protocol) => (1002, "bad WebSocket framing"),
            End::Framing(FrameError::TooBig) => (1009, "frame too large"),
            End::JoinTimeout => (1008, "join a channel first"),
        })
    }
}

enum Step {
    Continue,
    End(End),
}

/// Token bucket: `rate` tokens a second, holding at most `burst`.
struct Bucket {
    tokens: f32,
    last: Instant,
    /// Messages dropped since the last one let through.
    dropped: u32,
}

struct Conn {
    hub: Arc<Hub>,
    mailbox: Arc<Mailbox>,
    room: Option<RoomHandle>,
    bucket: Bucket,
    /// Something arrived since the last heartbeat tick.
    heard: bool,
    missed: u32,
    /// Heartbeat ticks while not joined: a socket must join within the heartbeat timeout.
    idle_ticks: u32,
}

impl Drop for Conn {
    // In Drop so that a cancelled task (runtime shutdown) still leaves the room and registry
    // consistent.
    fn drop(&mut self) {
        if let Some(room) = &self.room {
            let _ = room.tx.send(RoomCmd::Leave {
                peer: self.mailbox.peer,
            });
        }
        self.hub.disconnect(self.mailbox.peer);
    }
}

/// Serves one upgraded WebSocket until it closes.
pub(crate) async fn serve(mut ws: WebSocket, hub: Arc<Hub>, seeder: bool) {
    let Some(mailbox) = hub.connect() else {
        let _ = send_close(&mut ws, End::Shutdown).await;
        return;
    };
    if seeder {
        mailbox.set_seeder();
    }
    let mut conn = Conn {
        bucket: Bucket {
            tokens: hub.config.msg_burst as f32,
            last: Instant::now(),
            dropped: 0,
        },
        hub,
        mailbox,
        room: None,
        heard: false,
        missed: 0,
        idle_ticks: 0,
    };
    let end = conn.run(&mut ws).await;
    tracing::debug!(peer = conn.mailbox.peer, ?end, "connection ends");
    if end == End::Heartbeat || end == End::Slow {
        SignalStats::inc(&conn.hub.stats.heartbeat_timeouts);
    }
    drop(conn);
    let drain = !matches!(end, End::Heartbeat | End::PeerClosed);
    if end != End::Gone && send_close(&mut ws, end).await.is_ok() && drain {
        // Finish the closing handshake: read (and drop) until the peer's close frame. Dropping
        // the socket with unread input would reset the connection and could lose our close
        // frame and the error before it.
        let drain = async {
            while let Ok(Ok(Some(m))) = ws.recv().await {
                if matches!(m, Incoming::Close(_)) {
                    break;
                }
            }
        };
        let _ = timeout(Duration::from_secs(1), drain).await;
    }
    ws.shutdown().await;
}

async fn send_close(ws: &mut WebSocket, end: End) -> Result<(), ()> {
    let Some((code, reason)) = end.close() else {
        return Ok(());
    };
    let mut frame = Vec::new();
    ws::close_frame(&mut frame, code, reason);
    match timeout(Duration::from_secs(1), ws.send_raw(&frame)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

impl Conn {
    fn peer(&self) -> PeerId {
        self.mailbox.peer
    }

    /// Longest a write may stall before the peer counts as gone.
    fn write_deadline(&self) -> Duration {
        self.hub.config.heartbeat() * self.hub.config.heartbeat_missed.max(1)
    }

    async fn run(&mut self, ws: &mut WebSocket) -> End {
        let beat = self.hub.config.heartbeat();
        let tick = tokio::time::sleep(beat);
        tokio::pin!(tick);
        loop {
            tokio::select! {
                biased;
                () = self.mailbox.ready() => {
                    let (queue, closing) = self.mailbox.take();
                    if !queue.is_empty() {
                        if let Err(end) = self.write_all(ws, queue).await {
                            return end;
                        }
                    }
                    match closing {
                        Some(Closing::Shutdown) => return End::Shutdown,
                        Some(Closing::Slow) => return End::Slow,
                        None => {}
                    }
                }
                () = &mut tick => {
                    if self.room.is_none() {
                        self.idle_ticks += 1;
                        if self.idle_ticks >= self.hub.config.heartbeat_missed.max(1) {
                            return End::JoinTimeout;
                        }
                    }
                    if self.heard {
                        self.heard = false;
                        self.missed = 0;
                    } else {
                        self.missed += 1;
                        if self.missed >= self.hub.config.heartbeat_missed.max(1) {
                            return End::Heartbeat;
                        }
                    }
                    let mut frame = Vec::with_capacity(2);
                    ws::ping_frame(&mut frame);
                    if let Err(end) = self.write(ws, &frame).await {
                        return end;
                    }
                    tick.as_mut().reset(Instant::now() + beat);
                }
                msg = ws.recv() => {
                    let msg = match msg {
                        Ok(Ok(Some(m))) => m,
                        Ok(Err(framing)) => return End::Framing(framing),
                        // End of stream or a socket error.
                        Ok(Ok(None)) | Err(_) => return End::Gone,
                    };
                    self.heard = true;
                    if let Step::End(end) = self.handle(ws, msg).await {
                        return end;
                    }
                }
            }
        }
    }

    async fn write(&self, ws: &mut WebSocket, frames: &[u8]) -> Result<(), End> {
        match timeout(self.write_deadline(), ws.send_raw(frames)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Heartbeat),
        }
    }

    /// Writes everything queued for this peer in one go.
    async fn write_all(&self, ws: &mut WebSocket, queue: VecDeque<String>) -> Result<(), End> {
        let n = queue.len() as u64;
        let mut frames = Vec::with_capacity(queue.iter().map(|t| t.len() + 4).sum());
        for text in &queue {
            ws::text_frame(&mut frames, text);
        }
        drop(queue);
        self.write(ws, &frames).await?;
        self.hub
            .stats
            .messages_out
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn reply(&self, ws: &mut WebSocket, msg: &ServerMessage) -> Step {
        SignalStats::inc(&self.hub.stats.messages_out);
        let mut frame = Vec::new();
        ws::text_frame(&mut frame, &encode_server(msg));
        match self.write(ws, &frame).await {
            Ok(()) => Step::Continue,
            Err(end) => Step::End(end),
        }
    }

    async fn error(&self, ws: &mut WebSocket, code: ErrorCode, message: String) -> Step {
        SignalStats::inc(&self.hub.stats.errors_sent);
        self.reply(ws, &ServerMessage::Error { code, message })
            .await
    }

    /// Whether a message may pass the rate limit now.
    fn admit(&mut self) -> bool {
        // The server's own seeder answers every viewer that joins: never throttled.
        if self.mailbox.is_seeder() {
            return true;
        }
        let now = Instant::now();
        let cfg = &self.hub.config;
        let b = &mut self.bucket;
        let elapsed = now.saturating_duration_since(b.last).as_secs_f32();
        b.last = now;
        b.tokens = (b.tokens + elapsed * cfg.msgs_per_sec as f32).min(cfg.msg_burst as f32);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.dropped = 0;
            true
        } else {
            b.dropped += 1;
            false
        }
    }

    async fn handle(&mut self, ws: &mut WebSocket, msg: Incoming) -> Step {
        let bytes = match msg {
            Incoming::Data(bytes) => bytes,
            Incoming::Close(_) => return Step::End(End::PeerClosed),
            Incoming::Pong => return Step::Continue,
            Incoming::Ping(payload) => {
                let mut frame = Vec::new();
                ws::pong_frame(&mut frame, &payload);
                return match self.write(ws, &frame).await {
                    Ok(()) => Step::Continue,
                    Err(end) => Step::End(end),
                };
            }
        };
        SignalStats::inc(&self.hub.stats.messages_in);
        let limit = self.hub.config.max_message_bytes;
        if bytes.len() > limit {
            let detail = format!("{} bytes, limit {limit}", bytes.len());
            let _ = self.error(ws, ErrorCode::TooLarge, detail).await;
            return Step::End(End::TooLarge);
        }
        if !self.admit() {
            SignalStats::inc(&self.hub.stats.rate_limited);
            let dropped = self.bucket.dropped;
            if dropped > self.hub.config.msg_burst.max(1) {
                let _ = self
                    .error(ws, ErrorCode::RateLimited, "still flooding".into())
                    .await;
                return Step::End(End::Flood);
            }
            if dropped == 1 {
                let detail = format!(
                    "over {} messages/s: message dropped",
                    self.hub.config.msgs_per_sec
                );
                return self.error(ws, ErrorCode::RateLimited, detail).await;
            }
            return Step::Continue;
        }
        match parse_client(&bytes) {
            Ok(m) => self.dispatch(ws, m).await,
            Err(e) => self.error(ws, e.code(), e.to_string()).await,
        }
    }

    async fn dispatch(&mut self, ws: &mut WebSocket, msg: ClientMessage) -> Step {
        let me = self.peer();
        let relayed = match msg {
            ClientMessage::Join { channel } => return self.join(ws, channel).await,
            ClientMessage::Ping => return self.reply(ws, &ServerMessage::Pong).await,
            ClientMessage::Leave => return Step::End(End::Leave),
            ClientMessage::Offer { to, sdp } => (to, ServerMessage::Offer { from: me, sdp }),
            ClientMessage::Answer { to, sdp } => (to, ServerMessage::Answer { from: me, sdp }),
            ClientMessage::Candidate {
                to,
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => (
                to,
                ServerMessage::Candidate {
                    from: me,
                    candidate,
                    sdp_mid,
                    sdp_m_line_index,
                },
            ),
            ClientMessage::More { want } => {
                let want = (want as usize).min(self.hub.config.max_neighbours);
                return self.to_room(ws, RoomCmd::More { peer: me, want }).await;
            }
            ClientMessage::Report {
                spare_upload,
                latest_seq,
                depth,
            } => {
                let spare_upload = if spare_upload.is_finite() {
                    spare_upload
                } else {
                    0.0
                };
                let report = PeerReport {
                    spare_upload,
                    latest_seq,
                };
                let cmd = RoomCmd::Report {
                    peer: me,
                    report,
                    depth,
                };
                return self.to_room(ws, cmd).await;
            }
            ClientMessage::Unlink { peer, reason } => {
                return self
                    .to_room(
                        ws,
                        RoomCmd::Unlink {
                            peer: me,
                            other: peer,
                            // Only forged data accuses (`Tracker::accuse`).
                            accused: reason == Some(UnlinkReason::Lying),
                        },
                    )
                    .await;
            }
        };
        let (to, msg) = relayed;
        let Some(room) = &self.room else {
            return self
                .error(ws, ErrorCode::NotJoined, "join a channel first".into())
                .await;
        };
        let result = if to == me {
            Err(ErrorCode::UnknownPeer)
        } else {
            self.hub.relay(room.id, to, &msg)
        };
        match result {
            Ok(()) => Step::Continue,
            Err(code) => self.error(ws, code, format!("peer {to}")).await,
        }
    }

    async fn to_room(&self, ws: &mut WebSocket, cmd: RoomCmd) -> Step {
        match &self.room {
            Some(room) => {
                // The room outlives its members, so this only fails during runtime teardown.
                let _ = room.tx.send(cmd);
                Step::Continue
            }
            None => {
                self.error(ws, ErrorCode::NotJoined, "join a channel first".into())
                    .await
            }
        }
    }

    async fn join(&mut self, ws: &mut WebSocket, channel: String) -> Step {
        if self.room.is_some() {
            return self
                .error(
                    ws,
                    ErrorCode::AlreadyJoined,
                    "one channel per connection".into(),
                )
                .await;
        }
        if !valid_channel_name(&channel) {
            return self
                .error(
                    ws,
                    ErrorCode::BadChannel,
                    "channel names are 1-64 of A-Z a-z 0-9 - _".into(),
                )
                .await;
        }
        let Some(info) = self.hub.directory.lookup(&channel) else {
            return self
                .error(
                    ws,
                    ErrorCode::UnknownChannel,
                    format!("no channel {channel:?}"),
                )
                .await;
        };
        match self.hub.join(&channel, &self.mailbox).await {
            Ok((room, (neighbours, seeders))) => {
                self.room = Some(room);
                let welcome = ServerMessage::Welcome {
                    peer_id: self.peer(),
                    ice_servers: self.hub.ice_servers.clone(),
                    channel: info,
                    neighbours,
                    seeders,
                };
                self.reply(ws, &welcome).await
            }
            Err(code) => {
                self.error(ws, code, format!("cannot join {channel:?}"))
                    .await
            }
        }
    }
}
