//! The driver: one `Driver` per player owns the swarm peer, the signaling socket, the links,
//! the media element and one timer. Browser callbacks hold a `Weak` to it and go through
//! [`with`], which borrows it, feeds the input, drains the swarm's outputs, re-arms the timer
//! and only then, outside the borrow, calls the page's event callback.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::{Rc, Weak};

use serde_json::json;
use signaling::protocol::{
    encode_client, parse_server, ClientMessage, ServerMessage, UnlinkReason,
};
use swarm::{DropReason, Input, Output, Peer, PeerId, Time, VerifyingKey};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{HtmlVideoElement, RtcSdpType, WebSocket};

use crate::link::{self, Link, LinkEvent};
use crate::media::{Media, MediaEvent};
use crate::options::Options;

/// Playback control and housekeeping cadence, µs.
const CONTROL_EVERY: Time = 200_000;
/// The `stats` event's cadence, µs.
const STATS_EVERY: Time = 1_000_000;
/// Drained-bytes polling while a link has bytes outstanding, µs.
const DRAIN_POLL: Time = 10_000;
/// A connection that has not opened after this long is given up, µs.
const OPEN_TIMEOUT: Time = 15_000_000;
/// Signaling reconnect backoff, µs.
const BACKOFF_MIN: Time = 1_000_000;
const BACKOFF_MAX: Time = 15_000_000;
/// HTTP-only mode: wait before asking again for a chunk the origin did not have, µs.
const HTTP_RETRY: Time = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    P2p,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Playing,
    Stalled,
    Reconnecting,
    Destroyed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Playing => "playing",
            State::Stalled => "stalled",
            State::Reconnecting => "reconnecting",
            State::Destroyed => "destroyed",
        }
    }
}

/// Counters carried over from swarm peers of earlier signaling sessions and HTTP-only play.
#[derive(Default, Clone, Copy)]
struct Totals {
    from_peers: u64,
    from_seeder: u64,
    from_http: u64,
    to_peers: u64,
    verified: u64,
    rejected: u64,
}

/// The signaling socket with the callbacks it owns.
struct Socket {
    ws: WebSocket,
    /// Kept alive while the socket is (unregistered in `drop`).
    _callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Socket {
    fn send(&self, msg: &ClientMessage) {
        let _ = self.ws.send_with_str(&encode_client(msg));
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

/// The one timer: a `setTimeout` re-armed for the earliest thing due.
struct Timer {
    callback: Closure<dyn FnMut()>,
    handle: Option<(i32, Time)>,
}

pub(crate) struct Driver {
    this: Weak<RefCell<Driver>>,
    opts: Options,
    key: VerifyingKey,
    window: web_sys::Window,
    /// `performance.now()` (ms) at start: the clock's zero.
    zero_ms: f64,
    on_event: js_sys::Function,
    events: Vec<(&'static str, String)>,
    media: Media,
    init: Option<Vec<u8>>,
    mode: Mode,
    state: State,
    // P2P
    socket: Option<Socket>,
    me: Option<PeerId>,
    peer: Option<Peer>,
    ice_servers: JsValue,
    links: HashMap<PeerId, Link>,
    seeders: HashSet<PeerId>,
    next_conn: u64,
    wake: Option<Time>,
    reconnect_at: Option<Time>,
    backoff: Time,
    server_lost: bool,
    /// Signaling sessions that reached `welcome`.
    sessions: u64,
    // HTTP-only
    http_next: Option<u64>,
    http_busy: bool,
    http_retry_at: Option<Time>,
    http_misses: u32,
    edge_offset: Option<i64>,
    http_delivery: VecDeque<Time>,
    // Totals and player figures
    past: Totals,
    startup: Option<f64>,
    stalls: u64,
    stall_time: Time,
    delay: Option<f64>,
    next_control: Time,
    next_stats: Time,
    timer: Option<Timer>,
    destroyed: bool,
}

/// Runs `f` on the driver behind `weak` (if it still lives and is not busy), then drains
/// the swarm, re-arms the timer and delivers queued events to the page.
fn with(weak: &Weak<RefCell<Driver>>, f: impl FnOnce(&mut Driver)) {
    let Some(rc) = weak.upgrade() else { return };
    let events = {
        let Ok(mut d) = rc.try_borrow_mut() else {
            web_sys::console::warn_1(&"shoal: re-entrant browser callback ignored".into());
            return;
        };
        if d.destroyed {
            return;
        }
        f(&mut d);
        d.drain();
        d.arm();
        std::mem::take(&mut d.events)
    };
    let on_event = match rc.try_borrow() {
        Ok(d) => d.on_event.clone(),
        Err(_) => return,
    };
    for (kind, payload) in events {
        let _ = on_event.call2(&JsValue::NULL, &kind.into(), &payload.into());
    }
}

impl Driver {
    pub(crate) fn start(
        video: HtmlVideoElement,
        opts: Options,
        on_event: js_sys::Function,
    ) -> Result<Rc<RefCell<Driver>>, String> {
        let window = web_sys::window().ok_or("no window")?;
        let zero_ms = window.performance().map_or(0.0, |p| p.now());
        let key = opts.key()?;
        // The media element's callbacks need the driver, which needs the media element.
        let slot: Rc<RefCell<Weak<RefCell<Driver>>>> = Rc::new(RefCell::new(Weak::new()));
        let notify_slot = slot.clone();
        let media = Media::new(video, &opts.mime, move |e| {
            let weak = notify_slot.borrow().clone();
            with(&weak, |d| d.on_media(e));
        })?;
        let rc = Rc::new_cyclic(|this: &Weak<RefCell<Driver>>| {
            let mode = if opts.http_only || !has_webrtc() {
                Mode::Http
            } else {
                Mode::P2p
            };
            let d = Driver {
                this: this.clone(),
                key,
                window: window.clone(),
                zero_ms,
                on_event,
                events: Vec::new(),
                media,
                init: None,
                mode,
                state: State::Connecting,
                socket: None,
                me: None,
                peer: None,
                ice_servers: js_sys::Array::new().into(),
                links: HashMap::new(),
                seeders: HashSet::new(),
                next_conn: 0,
                wake: None,
                reconnect_at: None,
                backoff: BACKOFF_MIN,
                server_lost: false,
                sessions: 0,
                http_next: opts.latest_keyframe_seq,
                http_busy: false,
                http_retry_at: None,
                http_misses: 0,
                edge_offset: None,
                http_delivery: VecDeque::new(),
                past: Totals::default(),
                startup: None,
                stalls: 0,
                stall_time: 0,
                delay: None,
                next_control: 0,
                next_stats: STATS_EVERY,
                timer: None,
                destroyed: false,
                opts,
            };
            RefCell::new(d)
        });
        let weak = Rc::downgrade(&rc);
        *slot.borrow_mut() = weak.clone();
        {
            let mut d = rc.borrow_mut();
            let w = weak.clone();
            d.timer = Some(Timer {
                callback: Closure::new(move || with(&w, Driver::on_timer)),
                handle: None,
            });
            if d.mode == Mode::Http && !d.opts.http_only {
                d.emit_error(
                    "no_webrtc",
                    "this browser has no WebRTC: playing over HTTP from the server",
                    false,
                );
            }
            d.fetch_init();
            match d.mode {
                Mode::P2p => d.connect(),
                Mode::Http => d.http_fetch_next(),
            }
            d.arm();
        }
        Ok(rc)
    }

    pub(crate) fn destroy(rc: &Rc<RefCell<Driver>>) {
        let Ok(mut d) = rc.try_borrow_mut() else {
            return;
        };
        if d.destroyed {
            return;
        }
        d.destroyed = true;
        if let Some(s) = &d.socket {
            s.send(&ClientMessage::Leave);
        }
        d.socket = None;
        d.links.clear();
        d.peer = None;
        if let Some(t) = d.timer.take() {
            if let Some((h, _)) = t.handle {
                d.window.clear_timeout_with_handle(h);
            }
        }
        d.state = State::Destroyed;
        // The media element is detached when the driver itself drops (the last Rc).
    }

    fn now(&self) -> Time {
        let ms = self.window.performance().map_or(0.0, |p| p.now()) - self.zero_ms;
        (ms.max(0.0) * 1000.0) as Time
    }

    // ----- events to the page -----

    fn emit(&mut self, kind: &'static str, payload: serde_json::Value) {
        self.events.push((kind, payload.to_string()));
    }

    fn emit_error(&mut self, code: &str, message: &str, fatal: bool) {
        self.emit(
            "error",
            json!({"code": code, "message": message, "fatal": fatal}),
        );
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            self.emit("state", json!(state.as_str()));
        }
    }

    // ----- the timer -----

    fn arm(&mut self) {
        if self.destroyed {
            return;
        }
        let now = self.now();
        let mut next = self.next_control.min(self.next_stats);
        for t in [self.wake, self.reconnect_at, self.http_retry_at]
            .into_iter()
            .flatten()
        {
            next = next.min(t);
        }
        if self.links.values().any(|l| l.outstanding() > 0) {
            next = next.min(now + DRAIN_POLL);
        }
        let Some(timer) = &mut self.timer else { return };
        if let Some((h, at)) = timer.handle {
            if at <= next {
                return;
            }
            self.window.clear_timeout_with_handle(h);
        }
        let ms = (next.saturating_sub(now) / 1000) as i32;
        if let Ok(h) = self
            .window
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                timer.callback.as_ref().unchecked_ref(),
                ms,
            )
        {
            timer.handle = Some((h, next));
        }
    }

    fn on_timer(&mut self) {
        if let Some(t) = &mut self.timer {
            t.handle = None;
        }
        let now = self.now();
        self.poll_drained(now);
        if self.wake.is_some_and(|w| w <= now) {
            self.wake = None;
            if let Some(p) = &mut self.peer {
                p.handle(Input::Timeout, now);
            }
        }
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            self.connect();
        }
        if self.http_retry_at.is_some_and(|t| t <= now) {
            self.http_retry_at = None;
            self.http_fetch_next();
        }
        if now >= self.next_control {
            self.next_control = now + CONTROL_EVERY;
            self.control(now);
            self.expire_links(now);
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_EVERY;
            let stats = self.stats_value();
            self.emit("stats", stats);
        }
    }

    fn poll_drained(&mut self, now: Time) {
        let Some(peer) = &mut self.peer else { return };
        for (&id, link) in &mut self.links {
            if link.open {
                let bytes = link.drained();
                if bytes > 0 {
                    peer.handle(Input::Sent { to: id, bytes }, now);
                }
            }
        }
    }

    // ----- media -----

    fn fetch_init(&mut self) {
        let url = self.opts.init_url.clone();
        let weak = self.this.clone();
        spawn_local(async move {
            let result = fetch_bytes(&url).await;
            with(&weak, move |d| match result {
                Ok((200, body)) => {
                    d.init = Some(body);
                    d.open_media();
                }
                Ok((status, _)) => {
                    d.emit_error("internal", &format!("init segment: HTTP {status}"), true)
                }
                Err(e) => d.emit_error("server_lost", &format!("init segment: {e}"), true),
            });
        });
    }

    fn open_media(&mut self) {
        if self.media.is_open() {
            return;
        }
        let Some(init) = self.init.clone() else {
            return;
        };
        let weak = self.this.clone();
        // `sourceopen` may not have fired yet; then this retries when it does.
        let result = self
            .media
            .open(init, move |e| with(&weak, |d| d.on_media(e)));
        if let Err(e) = result {
            if !e.contains("InvalidStateError") {
                self.emit_error("unsupported", &e, true);
            }
        }
    }

    fn on_media(&mut self, e: MediaEvent) {
        let now = self.now();
        match e {
            MediaEvent::Open => self.open_media(),
            MediaEvent::Updated => {
                self.media.pump();
                if let Some(err) = self.media.failed.take() {
                    self.emit_error("media", &err, true);
                }
            }
            MediaEvent::Playing => {
                if self.startup.is_none() {
                    let now_ms = self.window.performance().map_or(0.0, |p| p.now());
                    let from = if self.opts.started_at > 0.0 {
                        self.opts.started_at
                    } else {
                        self.zero_ms
                    };
                    self.startup = Some(((now_ms - from) / 1000.0).max(0.0));
                }
                self.media.started = true;
                if let Some(since) = self.media.stalled_since.take() {
                    self.stalls += 1;
                    self.stall_time += now.saturating_sub(since);
                }
                self.set_state(State::Playing);
            }
            MediaEvent::Waiting => {
                if self.media.started && self.media.stalled_since.is_none() {
                    self.media.stalled_since = Some(now);
                    if self.state == State::Playing {
                        self.set_state(State::Stalled);
                    }
                }
            }
            MediaEvent::Error => {
                let msg = self
                    .media
                    .video()
                    .error()
                    .map(|e| format!("media error {}: {}", e.code(), e.message()))
                    .unwrap_or_else(|| "media error".to_owned());
                self.emit_error("media", &msg, true);
            }
        }
    }

    /// Keeps the video on the playout clock and records how far behind live it plays.
    fn control(&mut self, now: Time) {
        let target_ts = match self.mode {
            Mode::P2p => self.peer.as_ref().and_then(|p| p.playhead_timestamp(now)),
            Mode::Http => self
                .edge_offset
                .map(|o| (now as i64 - o - self.opts.target_delay_us() as i64).max(0) as u64),
        };
        let Some(target) = target_ts.and_then(|ts| self.media.media_time(ts)) else {
            return;
        };
        let clock_rate = match self.mode {
            Mode::P2p => self.peer.as_ref().map_or(1.0, |p| p.playout_rate()),
            Mode::Http => 1.0,
        };
        let behind = self.media.control(target, clock_rate);
        self.delay = match self.mode {
            Mode::P2p => self
                .peer
                .as_ref()
                .and_then(|p| p.playback_delay(now))
                .map(|d| (d as f64 / 1e6 + behind).max(0.0)),
            Mode::Http => match (self.edge_offset, self.media.playing_ts()) {
                (Some(o), Some(ts)) => Some(((now as i64 - o - ts as i64) as f64 / 1e6).max(0.0)),
                _ => None,
            },
        };
    }

    fn restart_media(&mut self) {
        self.media.detach();
        let weak = self.this.clone();
        match Media::new(self.media.video().clone(), &self.opts.mime, move |e| {
            with(&weak, |d| d.on_media(e));
        }) {
            Ok(m) => self.media = m,
            Err(e) => return self.emit_error("media", &e, true),
        }
        self.init = None;
        self.delay = None;
        self.fetch_init();
    }

    // ----- signaling -----

    fn connect(&mut self) {
        let url = self.opts.signaling_url();
        let ws = match WebSocket::new(&url) {
            Ok(ws) => ws,
            Err(e) => {
                self.lost(&format!("signaling {url}: {e:?}"));
                return;
            }
        };
        let weak = self.this.clone();
        let channel = self.opts.channel.clone();
        let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            let channel = channel.clone();
            with(&weak, move |d| {
                if let Some(s) = &d.socket {
                    s.send(&ClientMessage::Join { channel });
                }
            });
        });
        let weak = self.this.clone();
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let e: web_sys::MessageEvent = e.unchecked_into();
            if let Some(text) = e.data().as_string() {
                with(&weak, |d| d.on_signal(&text));
            }
        });
        let weak = self.this.clone();
        let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            with(&weak, |d| d.lost("the signaling connection closed"));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.socket = Some(Socket {
            ws,
            _callbacks: vec![on_open, on_message, on_close],
        });
    }

    /// Signaling is gone: end this swarm session (its peer id is void) and retry later.
    fn lost(&mut self, why: &str) {
        self.socket = None;
        self.end_session();
        if !self.server_lost {
            self.server_lost = true;
            self.emit_error("server_lost", why, false);
        }
        self.set_state(State::Reconnecting);
        let now = self.now();
        self.reconnect_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn end_session(&mut self) {
        self.links.clear();
        if let Some(p) = self.peer.take() {
            let m = p.metrics();
            self.past.from_peers += m.bytes_from_peers;
            self.past.from_seeder += m.bytes_from_seeder;
            self.past.from_http += m.bytes_from_http;
            self.past.to_peers += m.bytes_to_peers;
            self.past.verified += m.chunks_verified;
            self.past.rejected += m.chunks_rejected;
        }
        self.me = None;
        self.wake = None;
    }

    fn send_signal(&self, msg: &ClientMessage) {
        if let Some(s) = &self.socket {
            s.send(msg);
        }
    }

    fn on_signal(&mut self, text: &str) {
        let msg = match parse_server(text.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                web_sys::console::warn_1(&format!("shoal: bad signaling message: {e}").into());
                return;
            }
        };
        let now = self.now();
        match msg {
            ServerMessage::Welcome {
                peer_id,
                ice_servers,
                neighbours,
                seeders,
                ..
            } => {
                self.end_session();
                if self.sessions > 0 {
                    // After a reconnect the server may have restarted: its chunks' media
                    // times (and even its init segment) may start over. Start playback anew.
                    self.restart_media();
                }
                self.sessions += 1;
                self.server_lost = false;
                self.backoff = BACKOFF_MIN;
                self.me = Some(peer_id);
                self.ice_servers = ice_servers_js(&ice_servers);
                self.seeders = seeders.into_iter().collect();
                let seed = (js_sys::Math::random() * 2f64.powi(53)) as u64 ^ peer_id;
                self.peer = Some(Peer::new(self.opts.swarm_config(), self.key, now, seed));
                if self.state == State::Reconnecting {
                    self.set_state(if self.media.started {
                        State::Playing
                    } else {
                        State::Connecting
                    });
                }
                for n in neighbours {
                    self.dial(n);
                }
            }
            ServerMessage::Peers {
                neighbours,
                seeders,
            } => {
                self.seeders.extend(seeders);
                for n in neighbours {
                    self.dial(n);
                }
            }
            ServerMessage::Offer { from, sdp } => self.on_offer(from, sdp),
            ServerMessage::Answer { from, sdp } => {
                if let Some(link) = self.links.get(&from).filter(|l| l.offered) {
                    let (pc, conn) = (link.pc.clone(), link.conn);
                    let weak = self.this.clone();
                    spawn_local(async move {
                        let desc = link::description(RtcSdpType::Answer, &sdp);
                        let ok = JsFuture::from(pc.set_remote_description(&desc))
                            .await
                            .is_ok();
                        with(&weak, |d| d.remote_set(from, conn, ok));
                    });
                }
            }
            ServerMessage::Candidate {
                from,
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                if let Some(link) = self.links.get_mut(&from) {
                    let index = sdp_m_line_index.and_then(|i| u16::try_from(i).ok());
                    link.add_candidate(&candidate, sdp_mid.as_deref(), index);
                }
            }
            ServerMessage::PeerLeft { peer } => self.close_link(peer, false),
            ServerMessage::Error { code, message } => {
                let code = code.as_str();
                if code == "unknown_channel" || code == "bad_channel" {
                    self.emit_error("not_found", &message, true);
                } else {
                    web_sys::console::warn_1(
                        &format!("shoal: server says {code}: {message}").into(),
                    );
                }
            }
            ServerMessage::Pong => {}
        }
    }

    // ----- links -----

    fn sink(&self) -> link::Sink {
        let weak = self.this.clone();
        Rc::new(move |peer, conn, ev| with(&weak, |d| d.on_link(peer, conn, ev)))
    }

    fn new_link(&mut self, to: PeerId, offered: bool) -> Option<u64> {
        self.next_conn += 1;
        let conn = self.next_conn;
        let now = self.now();
        match Link::new(to, conn, offered, &self.ice_servers, self.sink(), now) {
            Ok(link) => {
                self.links.insert(to, link);
                Some(conn)
            }
            Err(e) => {
                web_sys::console::warn_1(&format!("shoal: RTCPeerConnection: {e:?}").into());
                None
            }
        }
    }

    /// Starts a connection to `to`: we offer.
    fn dial(&mut self, to: PeerId) {
        if Some(to) == self.me
            || self.links.contains_key(&to)
            || self.peer.as_ref().is_none_or(|p| p.is_banned(to))
        {
            return;
        }
        let Some(conn) = self.new_link(to, true) else {
            return;
        };
        let pc = self.links[&to].pc.clone();
        let weak = self.this.clone();
        spawn_local(async move {
            let sdp = link::set_local_description(&pc, RtcSdpType::Offer).await;
            with(&weak, |d| match sdp {
                Ok(sdp) if d.links.get(&to).is_some_and(|l| l.conn == conn) => {
                    d.send_signal(&ClientMessage::Offer { to, sdp });
                }
                Ok(_) => {}
                Err(_) => d.close_link(to, true),
            });
        });
    }

    fn on_offer(&mut self, from: PeerId, sdp: String) {
        if self.peer.as_ref().is_none_or(|p| p.is_banned(from)) {
            return;
        }
        if let Some(link) = self.links.get(&from) {
            // Both dialed each other: the lower id's offer wins.
            if link.offered && !link.open && self.me.is_some_and(|me| me < from) {
                return;
            }
            self.close_link(from, false);
        }
        let Some(conn) = self.new_link(from, false) else {
            return;
        };
        let pc = self.links[&from].pc.clone();
        let weak = self.this.clone();
        spawn_local(async move {
            let desc = link::description(RtcSdpType::Offer, &sdp);
            let ok = JsFuture::from(pc.set_remote_description(&desc))
                .await
                .is_ok();
            with(&weak, |d| d.remote_set(from, conn, ok));
            if !ok {
                return;
            }
            let answer = link::set_local_description(&pc, RtcSdpType::Answer).await;
            with(&weak, |d| match answer {
                Ok(sdp) if d.links.get(&from).is_some_and(|l| l.conn == conn) => {
                    d.send_signal(&ClientMessage::Answer { to: from, sdp });
                }
                Ok(_) => {}
                Err(_) => d.close_link(from, true),
            });
        });
    }

    fn remote_set(&mut self, peer: PeerId, conn: u64, ok: bool) {
        match self.links.get_mut(&peer).filter(|l| l.conn == conn) {
            Some(link) if ok => link.remote_description_set(),
            Some(_) => self.close_link(peer, true),
            None => {}
        }
    }

    /// Forgets the link to `peer`; `unlink` tells the tracker to pair us with someone else.
    fn close_link(&mut self, peer: PeerId, unlink: bool) {
        self.close_link_for(peer, unlink, None);
    }

    /// [`Driver::close_link`], telling the tracker why when the swarm dropped a misbehaving
    /// neighbour (the tracker stops handing out a peer several neighbours dropped so).
    fn close_link_for(&mut self, peer: PeerId, unlink: bool, reason: Option<UnlinkReason>) {
        if let Some(link) = self.links.remove(&peer) {
            if link.open {
                let now = self.now();
                if let Some(p) = &mut self.peer {
                    p.handle(Input::Disconnected { peer }, now);
                }
                let seeder = self.seeders.contains(&peer);
                self.emit(
                    "peer",
                    json!({"event": "disconnected", "peer": peer, "seeder": seeder}),
                );
            }
            if unlink {
                self.send_signal(&ClientMessage::Unlink { peer, reason });
            }
        }
    }

    fn on_link(&mut self, peer: PeerId, conn: u64, ev: LinkEvent) {
        let now = self.now();
        let Some(link) = self.links.get_mut(&peer).filter(|l| l.conn == conn) else {
            return;
        };
        match ev {
            LinkEvent::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                self.send_signal(&ClientMessage::Candidate {
                    to: peer,
                    candidate,
                    sdp_mid,
                    sdp_m_line_index: sdp_m_line_index.map(u32::from),
                });
            }
            LinkEvent::Channel(dc) => {
                if link.attach(dc) {
                    self.opened(peer, now);
                }
            }
            LinkEvent::Open => {
                if !link.open && link.is_channel_open() {
                    self.opened(peer, now);
                }
            }
            LinkEvent::Message(bytes) => {
                if link.open {
                    if let Some(p) = &mut self.peer {
                        p.handle(
                            Input::Message {
                                from: peer,
                                bytes: &bytes,
                            },
                            now,
                        );
                    }
                }
            }
            LinkEvent::Closed => self.close_link(peer, true),
        }
    }

    fn opened(&mut self, peer: PeerId, now: Time) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        link.open = true;
        let seeder = self.seeders.contains(&peer);
        if let Some(p) = &mut self.peer {
            p.handle(Input::Connected { peer, seeder }, now);
        }
        self.emit(
            "peer",
            json!({"event": "connected", "peer": peer, "seeder": seeder}),
        );
    }

    fn expire_links(&mut self, now: Time) {
        let stale: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(_, l)| !l.open && now.saturating_sub(l.since) > OPEN_TIMEOUT)
            .map(|(&p, _)| p)
            .collect();
        for p in stale {
            self.close_link(p, true);
        }
    }

    // ----- the swarm's outputs -----

    fn drain(&mut self) {
        while let Some(out) = self.peer.as_mut().and_then(Peer::poll) {
            match out {
                Output::Send { to, bytes } => {
                    if let Some(link) = self.links.get_mut(&to).filter(|l| l.open) {
                        if !link.send(&bytes) {
                            self.close_link(to, true);
                        }
                    }
                }
                Output::HttpFetch { seq } => self.swarm_fetch(seq),
                Output::Play(chunk) => {
                    self.media
                        .push(chunk.bytes.to_vec(), chunk.header.timestamp_us);
                }
                Output::Drop { peer, reason } => {
                    let reason = match reason {
                        DropReason::Lying => Some(UnlinkReason::Lying),
                        DropReason::Useless => Some(UnlinkReason::Useless),
                        DropReason::Dead | DropReason::Idle => None,
                    };
                    self.close_link_for(peer, true, reason);
                }
                Output::NeedPeers { count } => {
                    let want = u32::try_from(count).unwrap_or(u32::MAX);
                    self.send_signal(&ClientMessage::More { want });
                }
                Output::Report {
                    spare_upload,
                    latest,
                    depth,
                } => self.send_signal(&ClientMessage::Report {
                    spare_upload,
                    latest_seq: latest,
                    depth: Some(depth),
                }),
                Output::Event(_) => {}
                Output::Wake(at) => self.wake = Some(at),
            }
        }
    }

    /// The swarm's HTTP fallback: fetch one framed chunk and hand the body back.
    fn swarm_fetch(&mut self, seq: u64) {
        let url = self.opts.swarm_chunk_url(seq);
        let weak = self.this.clone();
        let me = self.me;
        spawn_local(async move {
            let body = match fetch_bytes(&url).await {
                Ok((200, body)) => Some(body),
                _ => None,
            };
            with(&weak, |d| {
                // A reply for an earlier signaling session's peer is of no use to this one.
                if d.me != me {
                    return;
                }
                let now = d.now();
                if let Some(p) = &mut d.peer {
                    p.handle(
                        Input::Http {
                            seq,
                            body: body.as_deref(),
                        },
                        now,
                    );
                }
            });
        });
    }

    // ----- HTTP-only mode -----

    fn http_fetch_next(&mut self) {
        if self.http_busy || self.destroyed {
            return;
        }
        let Some(seq) = self.http_next else {
            // No chunk yet: ask the API where the live edge is.
            self.http_busy = true;
            let url = format!(
                "{}/api/channels/{}",
                self.opts.server.trim_end_matches('/'),
                self.opts.channel
            );
            let weak = self.this.clone();
            spawn_local(async move {
                let r = fetch_bytes(&url).await;
                with(&weak, |d| {
                    d.http_busy = false;
                    d.http_edge(r);
                });
            });
            return;
        };
        self.http_busy = true;
        // The origin holds this request until the chunk is published (up to 5 s), so at the
        // live edge each chunk is asked for once and comes the moment it exists.
        let url = self.opts.waiting_chunk_url(seq);
        let weak = self.this.clone();
        spawn_local(async move {
            let r = fetch_bytes(&url).await;
            with(&weak, |d| {
                d.http_busy = false;
                d.http_chunk(seq, r);
            });
        });
    }

    fn http_edge(&mut self, r: Result<(u16, Vec<u8>), String>) {
        let now = self.now();
        match r {
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let key = v.get("latest_keyframe_seq").and_then(|s| s.as_u64());
                if key.is_some() {
                    self.http_next = key;
                    self.http_misses = 0;
                    self.http_fetch_next();
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => self.http_lost(&e),
        }
        self.http_retry_at = Some(now + 1_000_000);
    }

    fn http_lost(&mut self, why: &str) {
        if !self.server_lost {
            self.server_lost = true;
            self.emit_error("server_lost", why, false);
            self.set_state(State::Reconnecting);
        }
    }

    fn http_chunk(&mut self, seq: u64, r: Result<(u16, Vec<u8>), String>) {
        let now = self.now();
        match r {
            Ok((200, body)) => {
                if self.server_lost {
                    self.server_lost = false;
                    self.set_state(if self.media.started {
                        State::Playing
                    } else {
                        State::Connecting
                    });
                }
                self.http_misses = 0;
                self.past.from_http += body.len() as u64;
                match swarm::Chunk::from_framed(&body, &self.key) {
                    Ok(chunk) => {
                        self.past.verified += 1;
                        let ts = chunk.header.timestamp_us;
                        let offset = now as i64 - ts as i64;
                        let edge = *self.edge_offset.get_or_insert(offset);
                        self.edge_offset = Some(edge.min(offset));
                        if self.http_delivery.len() >= 240 {
                            self.http_delivery.pop_front();
                        }
                        self.http_delivery
                            .push_back((offset - edge.min(offset)).max(0) as Time);
                        self.media.push(chunk.bytes.to_vec(), ts);
                    }
                    Err(e) => {
                        self.past.rejected += 1;
                        web_sys::console::warn_1(
                            &format!("shoal: chunk {seq} rejected: {e}").into(),
                        );
                    }
                }
                self.http_next = Some(seq + 1);
                self.http_fetch_next();
            }
            Ok((404, _)) => {
                // Not published within the origin's wait (the broadcast paused), or already
                // gone (we fell behind the server's window): after a while, ask where the
                // edge is.
                self.http_misses += 1;
                if self.http_misses >= 25 {
                    self.http_next = None;
                    self.http_misses = 0;
                }
                self.http_retry_at = Some(now + HTTP_RETRY);
            }
            Ok((status, _)) => {
                self.http_lost(&format!("chunk {seq}: HTTP {status}"));
                self.http_retry_at = Some(now + 1_000_000);
            }
            Err(e) => {
                self.http_lost(&e);
                self.http_retry_at = Some(now + 1_000_000);
            }
        }
    }

    // ----- stats -----

    fn stats_value(&self) -> serde_json::Value {
        let now = self.now();
        let mut t = self.past;
        let mut p95 = None;
        if let Some(p) = &self.peer {
            let m = p.metrics();
            t.from_peers += m.bytes_from_peers;
            t.from_seeder += m.bytes_from_seeder;
            t.from_http += m.bytes_from_http;
            t.to_peers += m.bytes_to_peers;
            t.verified += m.chunks_verified;
            t.rejected += m.chunks_rejected;
            p95 = m.delivery_percentile(95.0).map(|d| d as f64 / 1e6);
        }
        if self.mode == Mode::Http && !self.http_delivery.is_empty() {
            let mut v: Vec<Time> = self.http_delivery.iter().copied().collect();
            v.sort_unstable();
            let i = ((v.len() - 1) as f64 * 0.95).round() as usize;
            p95 = Some(v[i] as f64 / 1e6);
        }
        let total = t.from_peers + t.from_seeder + t.from_http;
        let offload = if total == 0 {
            0.0
        } else {
            t.from_peers as f64 / total as f64
        };
        let stall_now = self
            .media
            .stalled_since
            .map_or(0, |s| now.saturating_sub(s));
        let latest = self
            .peer
            .as_ref()
            .and_then(Peer::latest)
            .or(match self.mode {
                Mode::Http => self.http_next.and_then(|n| n.checked_sub(1)),
                Mode::P2p => None,
            });
        json!({
            "state": self.state.as_str(),
            "mode": match self.mode { Mode::P2p => "p2p", Mode::Http => "http" },
            "peerId": self.me,
            "peers": self.links.values().filter(|l| l.open).count(),
            "bytesFromPeers": t.from_peers,
            "bytesFromSeeder": t.from_seeder,
            "bytesFromHttp": t.from_http,
            "bytesToPeers": t.to_peers,
            "offload": offload,
            "playbackDelay": self.delay,
            "deliveryDelayP95": p95,
            "stalls": self.stalls + u64::from(stall_now > 0),
            "stallSeconds": (self.stall_time + stall_now) as f64 / 1e6,
            "chunksVerified": t.verified,
            "chunksRejected": t.rejected,
            "startupSeconds": self.startup,
            "latestSeq": latest,
            "bufferSeconds": self.media.buffer_ahead(),
            "uploadLimit": self.opts.upload_cap().map(|b| b * 8),
        })
    }

    pub(crate) fn stats_json(&self) -> String {
        self.stats_value().to_string()
    }
}

fn has_webrtc() -> bool {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &"RTCPeerConnection".into()).is_ok_and(|v| v.is_function())
}

fn ice_servers_js(servers: &[signaling::protocol::IceServer]) -> JsValue {
    let list = js_sys::Array::new();
    for s in servers {
        let o = js_sys::Object::new();
        let urls: js_sys::Array = s.urls.iter().map(|u| JsValue::from_str(u)).collect();
        let _ = js_sys::Reflect::set(&o, &"urls".into(), &urls);
        if let Some(u) = &s.username {
            let _ = js_sys::Reflect::set(&o, &"username".into(), &u.into());
        }
        if let Some(c) = &s.credential {
            let _ = js_sys::Reflect::set(&o, &"credential".into(), &c.into());
        }
        list.push(&o);
    }
    list.into()
}

/// GET `url`: the status and the body.
async fn fetch_bytes(url: &str) -> Result<(u16, Vec<u8>), String> {
    let window = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| format!("fetch {url}: {}", js_message(&e)))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| "fetch: not a Response")?;
    let status = resp.status();
    if status != 200 {
        return Ok((status, Vec::new()));
    }
    let buf = resp
        .array_buffer()
        .map_err(|e| format!("fetch {url}: {}", js_message(&e)))?;
    let buf = JsFuture::from(buf)
        .await
        .map_err(|e| format!("fetch {url}: {}", js_message(&e)))?;
    Ok((status, js_sys::Uint8Array::new(&buf).to_vec()))
}

fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}
