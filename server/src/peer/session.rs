//! One signaling session: from `welcome` until the socket closes. Owns the swarm peer, its
//! links and its timer; see the module doc of [`super`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use signaling::protocol::{
    encode_client, parse_server, ClientMessage, ServerMessage, UnlinkReason,
};
use swarm::{DropReason, Input, Output, Peer, PeerId, Time, VerifyingKey};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use webrtc::peer_connection::{RTCIceCandidateInit, RTCIceServer};

use super::link::{self, LinkCmd, LinkEvent, LinkSettings, Role};
use super::{fetch, PeerOptions, PeerStats};

/// Stats are refreshed (and published) this often even when nothing prints them.
const STATS_TICK: Duration = Duration::from_secs(1);
/// Completion times kept for the stats (a few minutes of 0.5 s chunks).
const COMPLETIONS_KEPT: usize = 480;
/// The print interval when nothing prints (a year: far enough, and safe to add to now).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

struct Link {
    conn: u64,
    cmds: mpsc::UnboundedSender<LinkCmd>,
    open: bool,
    offered: bool,
}

/// Rates since the last stats tick, for the printed line.
#[derive(Default)]
struct Last {
    from_peers: u64,
    from_seeder: u64,
    from_http: u64,
    out: u64,
    at: Option<Instant>,
}

struct Session<'a> {
    opts: &'a mut PeerOptions,
    me: PeerId,
    peer: Peer,
    start: Instant,
    links: HashMap<PeerId, Link>,
    seeders: HashSet<PeerId>,
    next_conn: u64,
    settings: LinkSettings,
    events: mpsc::UnboundedSender<LinkEvent>,
    http: mpsc::UnboundedSender<(u64, Option<Vec<u8>>)>,
    /// Signaling messages to send after the current input.
    outbox: Vec<ClientMessage>,
    wake: Option<Time>,
    sessions: u64,
    last: Last,
    key: VerifyingKey,
    played: u64,
    corrupt_played: u64,
    completed: Vec<(u64, Instant)>,
}

/// Connects, joins and runs until the socket closes.
pub(super) async fn run(opts: &mut PeerOptions, sessions: u64) -> Result<(), String> {
    let ws_url = signaling_url(&opts.server, opts.seeder_token.as_deref())?;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .map_err(|e| format!("connect {ws_url}: {e}"))?;
    let join = ClientMessage::Join {
        channel: opts.channel.clone(),
    };
    ws.send(WsMessage::text(encode_client(&join)))
        .await
        .map_err(|e| format!("join: {e}"))?;
    // Wait for the welcome; everything else before it is an error from the server.
    let (me, ice_servers, key, neighbours, seeders) = loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("signaling: {e}")),
            None => return Err("signaling closed before welcome".into()),
        };
        let WsMessage::Text(text) = msg else { continue };
        match parse_server(text.as_bytes()) {
            Ok(ServerMessage::Welcome {
                peer_id,
                ice_servers,
                channel,
                neighbours,
                seeders,
            }) => {
                let key = swarm::public_key_from_hex(&channel.public_key)
                    .ok_or_else(|| "welcome carries no valid public key".to_owned())?;
                break (peer_id, ice_servers, key, neighbours, seeders);
            }
            Ok(ServerMessage::Error { code, message }) => {
                return Err(format!("join refused: {code}: {message}"))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("bad message from server: {e}")),
        }
    };
    let start = Instant::now();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (http_tx, mut http) = mpsc::unbounded_channel();
    let settings = LinkSettings {
        ice_servers: ice_servers
            .into_iter()
            .map(|s| RTCIceServer {
                urls: s.urls,
                username: s.username.unwrap_or_default(),
                credential: s.credential.unwrap_or_default(),
            })
            .collect(),
        udp_addrs: opts.udp_addrs.clone(),
    };
    let mut config = opts.config.clone();
    if !config.origin {
        // The swarm sizes its push trees by the bitrate: start from the channel's figure
        // rather than the built-in guess (which is far off for small streams).
        if let Some(bps) = channel_bitrate(&opts.server, &opts.channel).await {
            config.bitrate_hint = bps / 8.0;
        }
    }
    tracing::info!(peer = me, channel = %opts.channel, bitrate_hint = config.bitrate_hint, "joined");
    let peer = Peer::new(config, key, 0, rand_seed(me));
    let mut publish = opts.publish.take();

    let mut s = Session {
        opts,
        me,
        peer,
        start,
        links: HashMap::new(),
        seeders: seeders.into_iter().collect(),
        next_conn: 0,
        settings,
        events: events_tx,
        http: http_tx,
        outbox: Vec::new(),
        wake: None,
        sessions,
        last: Last::default(),
        key,
        played: 0,
        corrupt_played: 0,
        completed: Vec::new(),
    };
    for n in neighbours {
        s.dial(n);
    }
    s.drain();
    flush(&mut ws, &mut s.outbox).await?;
    let mut stats_tick = tokio::time::interval(STATS_TICK);
    let mut print_tick = tokio::time::interval(s.opts.print_every.unwrap_or(NEVER));
    print_tick.tick().await;
    let result = loop {
        let wake_at = s
            .wake
            .map(|at| tokio::time::Instant::from_std(s.start + Duration::from_micros(at)));
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(WsMessage::Text(text))) => match parse_server(text.as_bytes()) {
                    Ok(m) => s.on_server(m),
                    Err(e) => tracing::debug!("bad message from server: {e}"),
                },
                Some(Ok(WsMessage::Close(_))) | None => break Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(format!("signaling: {e}")),
            },
            Some(ev) = events.recv() => s.on_link(ev),
            Some((seq, body)) = http.recv() => {
                let now = s.now();
                s.peer.handle(Input::Http { seq, body: body.as_deref() }, now);
            }
            chunk = recv_chunk(&mut publish) => {
                if let Some(chunk) = chunk {
                    let now = s.now();
                    s.peer.handle(Input::Publish((*chunk).clone()), now);
                }
            }
            () = sleep_until(wake_at) => {
                s.wake = None;
                let now = s.now();
                s.peer.handle(Input::Timeout, now);
            }
            _ = stats_tick.tick() => {
                if let Some(limit) = s.opts.upload_limit.as_ref().map(|f| f()) {
                    if s.peer.config().upload_limit != limit {
                        s.peer.set_upload_limit(limit);
                    }
                }
                s.publish_stats();
            }
            _ = print_tick.tick() => s.print_stats(),
        }
        s.drain();
        if let Err(e) = flush(&mut ws, &mut s.outbox).await {
            break Err(e);
        }
    };
    s.opts.publish = publish;
    let _ = ws.close(None).await;
    result
}

async fn flush<S>(ws: &mut S, outbox: &mut Vec<ClientMessage>) -> Result<(), String>
where
    S: futures_util::Sink<WsMessage, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    for msg in outbox.drain(..) {
        ws.send(WsMessage::text(encode_client(&msg)))
            .await
            .map_err(|e| format!("signaling send: {e}"))?;
    }
    Ok(())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next published chunk; pends forever without a feed. A lagging receiver skips ahead.
async fn recv_chunk(
    rx: &mut Option<broadcast::Receiver<std::sync::Arc<swarm::Chunk>>>,
) -> Option<std::sync::Arc<swarm::Chunk>> {
    let Some(r) = rx else {
        return std::future::pending().await;
    };
    loop {
        match r.recv().await {
            Ok(c) => return Some(c),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "seeder fell behind the channel");
            }
            Err(broadcast::error::RecvError::Closed) => {
                *rx = None;
                return std::future::pending().await;
            }
        }
    }
}

fn signaling_url(server: &str, seeder_token: Option<&str>) -> Result<String, String> {
    let ws = signaling::protocol::signaling_url(server)
        .ok_or_else(|| format!("server URL must start with http:// or ws://: {server}"))?;
    Ok(match seeder_token {
        Some(token) => format!("{ws}?seeder={token}"),
        None => ws,
    })
}

/// The HTTP base for the fallback (`http://host:port`) from the server URL.
fn http_base(server: &str) -> String {
    let base = server.trim_end_matches('/');
    let base = base.strip_suffix("/ws").unwrap_or(base);
    if let Some(rest) = base.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if let Some(rest) = base.strip_prefix("wss://") {
        format!("https://{rest}")
    } else {
        base.to_owned()
    }
}

/// The channel's measured bitrate (bits per second) from `GET /api/channels/{name}`.
async fn channel_bitrate(server: &str, channel: &str) -> Option<f64> {
    let url = format!("{}/api/channels/{channel}", http_base(server));
    let body = fetch::get(&url).await?;
    let info: serde_json::Value = serde_json::from_slice(&body).ok()?;
    info.get("bitrate_bps")?
        .as_f64()
        .filter(|b| b.is_finite() && *b > 0.0)
}

fn rand_seed(me: PeerId) -> u64 {
    let mut seed = [0u8; 8];
    if rand_core::OsRng.try_fill_bytes(&mut seed).is_err() {
        return me ^ 0x5eed_5eed;
    }
    u64::from_le_bytes(seed) ^ me
}

use rand_core::RngCore;

impl Session<'_> {
    fn now(&self) -> Time {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Starts a connection to `to`: we offer.
    fn dial(&mut self, to: PeerId) {
        if to == self.me || self.links.contains_key(&to) || self.peer.is_banned(to) {
            return;
        }
        self.spawn_link(to, Role::Offer);
    }

    fn spawn_link(&mut self, to: PeerId, role: Role) {
        self.next_conn += 1;
        let conn = self.next_conn;
        let offered = matches!(role, Role::Offer);
        let (cmds, rx) = mpsc::unbounded_channel();
        tokio::spawn(link::run(
            to,
            conn,
            role,
            self.settings.clone(),
            rx,
            self.events.clone(),
        ));
        self.links.insert(
            to,
            Link {
                conn,
                cmds,
                open: false,
                offered,
            },
        );
    }

    /// Forgets the link to `peer` (its task ends when its command sender drops).
    fn close_link(&mut self, peer: PeerId) {
        if let Some(link) = self.links.remove(&peer) {
            if link.open {
                let now = self.now();
                self.peer.handle(Input::Disconnected { peer }, now);
            }
        }
    }

    fn on_server(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::Peers {
                neighbours,
                seeders,
            } => {
                self.seeders.extend(seeders);
                for n in neighbours {
                    self.dial(n);
                }
            }
            ServerMessage::Offer { from, sdp } => {
                if self.peer.is_banned(from) {
                    return;
                }
                if let Some(link) = self.links.get(&from) {
                    // Both dialed each other: the lower id's offer wins.
                    if link.offered && !link.open && self.me < from {
                        return;
                    }
                    self.close_link(from);
                }
                self.spawn_link(from, Role::Answer(sdp));
            }
            ServerMessage::Answer { from, sdp } => {
                if let Some(link) = self.links.get(&from) {
                    let _ = link.cmds.send(LinkCmd::Answer(sdp));
                }
            }
            ServerMessage::Candidate {
                from,
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                if let Some(link) = self.links.get(&from) {
                    let init = RTCIceCandidateInit {
                        candidate,
                        sdp_mid,
                        sdp_mline_index: sdp_m_line_index.and_then(|i| u16::try_from(i).ok()),
                        ..Default::default()
                    };
                    let _ = link.cmds.send(LinkCmd::Candidate(init));
                }
            }
            ServerMessage::PeerLeft { peer } => self.close_link(peer),
            ServerMessage::Error { code, message } => {
                tracing::debug!(%code, "signaling error: {message}");
            }
            ServerMessage::Welcome { .. } | ServerMessage::Pong => {}
        }
    }

    fn on_link(&mut self, ev: LinkEvent) {
        let (peer, conn) = match &ev {
            LinkEvent::Description { peer, conn, .. }
            | LinkEvent::Open { peer, conn }
            | LinkEvent::Message { peer, conn, .. }
            | LinkEvent::Drained { peer, conn, .. }
            | LinkEvent::Closed { peer, conn } => (*peer, *conn),
        };
        let now = self.now();
        // Events of a connection already replaced or dropped are stale.
        let Some(link) = self.links.get_mut(&peer).filter(|l| l.conn == conn) else {
            return;
        };
        match ev {
            LinkEvent::Description { sdp, .. } => {
                let msg = if link.offered {
                    ClientMessage::Offer { to: peer, sdp }
                } else {
                    ClientMessage::Answer { to: peer, sdp }
                };
                self.outbox.push(msg);
            }
            LinkEvent::Open { .. } => {
                link.open = true;
                let seeder = self.seeders.contains(&peer);
                self.peer.handle(Input::Connected { peer, seeder }, now);
            }
            LinkEvent::Message { bytes, .. } => {
                if link.open {
                    self.peer.handle(
                        Input::Message {
                            from: peer,
                            bytes: &bytes,
                        },
                        now,
                    );
                }
            }
            LinkEvent::Drained { bytes, .. } => {
                if link.open {
                    self.peer.handle(Input::Sent { to: peer, bytes }, now);
                }
            }
            LinkEvent::Closed { .. } => {
                let was_open = link.open;
                self.links.remove(&peer);
                if was_open {
                    self.peer.handle(Input::Disconnected { peer }, now);
                }
                // Let the tracker pair us with someone else.
                self.outbox
                    .push(ClientMessage::Unlink { peer, reason: None });
            }
        }
    }

    /// Carries out everything the swarm peer asked for.
    fn drain(&mut self) {
        while let Some(out) = self.peer.poll() {
            match out {
                Output::Send { to, mut bytes } => {
                    if self.opts.corrupt_pieces {
                        corrupt_piece(&mut bytes);
                    }
                    if let Some(link) = self.links.get(&to).filter(|l| l.open) {
                        let _ = link.cmds.send(LinkCmd::Send(bytes));
                    }
                }
                Output::HttpFetch { seq } => {
                    let url = format!(
                        // `?swarm`: a busy origin may refuse it at once (we have peers).
                        "{}/api/channels/{}/chunks/{seq}?swarm",
                        http_base(&self.opts.server),
                        self.opts.channel
                    );
                    let tx = self.http.clone();
                    tokio::spawn(async move {
                        let body = fetch::get(&url).await;
                        let _ = tx.send((seq, body));
                    });
                }
                Output::Play(chunk) => {
                    // What a player would decode: check it once more, outside the swarm.
                    self.played += 1;
                    let ok = chunk.header.verify(&self.key).is_ok()
                        && chunk.header.verify_bytes(&chunk.bytes).is_ok();
                    if !ok {
                        self.corrupt_played += 1;
                        tracing::error!(
                            seq = chunk.header.seq,
                            "played a chunk that does not verify"
                        );
                    }
                }
                Output::Drop { peer, reason } => {
                    tracing::debug!(peer, ?reason, "dropping neighbour");
                    self.links.remove(&peer);
                    // Tell the tracker why, so it stops handing out a peer others found out.
                    let reason = match reason {
                        DropReason::Lying => Some(UnlinkReason::Lying),
                        DropReason::Useless => Some(UnlinkReason::Useless),
                        DropReason::Dead | DropReason::Idle => None,
                    };
                    self.outbox.push(ClientMessage::Unlink { peer, reason });
                }
                Output::NeedPeers { count } => {
                    let want = u32::try_from(count).unwrap_or(u32::MAX);
                    self.outbox.push(ClientMessage::More { want });
                }
                Output::Report {
                    spare_upload,
                    latest,
                    depth,
                } => self.outbox.push(ClientMessage::Report {
                    spare_upload,
                    latest_seq: latest,
                    depth: Some(depth),
                }),
                Output::Event(swarm::Event::ChunkComplete { seq, .. }) => {
                    if self.completed.len() >= COMPLETIONS_KEPT {
                        self.completed.remove(0);
                    }
                    self.completed.push((seq, Instant::now()));
                }
                Output::Event(_) => {}
                Output::Wake(at) => self.wake = Some(at),
            }
        }
    }

    fn stats(&self) -> PeerStats {
        PeerStats {
            peer_id: self.me,
            neighbours: self.links.values().filter(|l| l.open).count(),
            metrics: self.peer.metrics().clone(),
            latest: self.peer.latest(),
            sessions: self.sessions,
            completed: self.completed.clone(),
            chunks_played: self.played,
            corrupt_chunks_played: self.corrupt_played,
            now: self.now(),
            summary: format!("{} wake={:?}", self.peer.debug_summary(), self.wake),
        }
    }

    fn publish_stats(&self) {
        if let Some(tx) = &self.opts.stats {
            tx.send_replace(self.stats());
        }
    }

    fn print_stats(&mut self) {
        let st = self.stats();
        let m = &st.metrics;
        let now = Instant::now();
        let secs = self
            .last
            .at
            .map_or(1.0, |t| now.duration_since(t).as_secs_f64().max(1e-3));
        let rate = |cur: u64, prev: u64| (cur.saturating_sub(prev)) as f64 * 8.0 / 1000.0 / secs;
        let p95 = m
            .delivery_percentile(95.0)
            .map_or("-".to_owned(), |d| format!("{:.2}s", d as f64 / 1e6));
        eprintln!(
            "shoal peer {}: {} neighbours, in kbit/s peers {:.0} seeder {:.0} http {:.0}, out {:.0}, \
             chunks {} (latest {}), delivery p95 {p95}, continuity {:.4}, banned {}",
            st.peer_id,
            st.neighbours,
            rate(m.bytes_from_peers, self.last.from_peers),
            rate(m.bytes_from_seeder, self.last.from_seeder),
            rate(m.bytes_from_http, self.last.from_http),
            rate(m.bytes_to_peers, self.last.out),
            m.chunks_verified,
            st.latest.map_or("-".to_owned(), |l| l.to_string()),
            m.continuity(),
            m.peers_banned,
        );
        self.last = Last {
            from_peers: m.bytes_from_peers,
            from_seeder: m.bytes_from_seeder,
            from_http: m.bytes_from_http,
            out: m.bytes_to_peers,
            at: Some(now),
        };
    }
}

/// A hostile peer's lie (tests only): flips the last byte of every piece it sends.
fn corrupt_piece(bytes: &mut [u8]) {
    if let Ok(swarm::wire::Message::Piece { .. }) = swarm::wire::Message::decode(bytes) {
        if let Some(last) = bytes.last_mut() {
            *last ^= 0x55;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            signaling_url("http://127.0.0.1:8080/", None).unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            signaling_url("ws://h:1/ws", Some("t")).unwrap(),
            "ws://h:1/ws?seeder=t"
        );
        assert!(signaling_url("ftp://x", None).is_err());
        assert_eq!(http_base("ws://h:1/ws"), "http://h:1");
        assert_eq!(http_base("http://h:1/"), "http://h:1");
    }
}
