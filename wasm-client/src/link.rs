//! One WebRTC connection to a neighbour: an `RTCPeerConnection` with one ordered, reliable
//! data channel labelled `shoal` (the native peers use the same). The link owns every JS
//! callback it registers and unregisters them when dropped, then closes the connection, so
//! nothing leaks per neighbour.

use swarm::PeerId;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    MessageEvent, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcDataChannelType,
    RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType,
    RtcSessionDescriptionInit,
};

/// The data channel's label.
const LABEL: &str = "shoal";

/// What happened on a link, for the driver.
pub(crate) enum LinkEvent {
    /// A local ICE candidate to trickle to the neighbour.
    Candidate {
        candidate: String,
        sdp_mid: Option<String>,
        sdp_m_line_index: Option<u16>,
    },
    /// The answering side was given the data channel (attach it with [`Link::attach`]).
    Channel(RtcDataChannel),
    /// The data channel opened.
    Open,
    /// A message arrived.
    Message(Vec<u8>),
    /// The data channel or the connection closed or failed.
    Closed,
}

/// Where a link's events go: (neighbour, connection number, event).
pub(crate) type Sink = std::rc::Rc<dyn Fn(PeerId, u64, LinkEvent)>;

pub(crate) struct Link {
    pub(crate) conn: u64,
    pub(crate) pc: RtcPeerConnection,
    dc: Option<RtcDataChannel>,
    pub(crate) offered: bool,
    pub(crate) open: bool,
    /// When the link was started (driver clock, µs): links that never open are given up.
    pub(crate) since: u64,
    /// Candidates that arrived before the remote description was set.
    pending: Vec<RtcIceCandidateInit>,
    pub(crate) remote_set: bool,
    /// Bytes handed to the data channel, and of those, drained ones already reported.
    sent: u64,
    reported: u64,
    peer: PeerId,
    sink: Sink,
    pc_callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
    dc_callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Link {
    /// A new connection to `peer`; the offering side creates the data channel.
    pub(crate) fn new(
        peer: PeerId,
        conn: u64,
        offered: bool,
        ice_servers: &JsValue,
        sink: Sink,
        now: u64,
    ) -> Result<Link, JsValue> {
        let config = js_sys::Object::new();
        js_sys::Reflect::set(&config, &"iceServers".into(), ice_servers)?;
        let pc = RtcPeerConnection::new_with_configuration(config.unchecked_ref())?;
        let mut link = Link {
            conn,
            pc,
            dc: None,
            offered,
            open: false,
            since: now,
            pending: Vec::new(),
            remote_set: false,
            sent: 0,
            reported: 0,
            peer,
            sink,
            pc_callbacks: Vec::new(),
            dc_callbacks: Vec::new(),
        };
        let (sink, p) = (link.sink.clone(), peer);
        let on_candidate = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let e: RtcPeerConnectionIceEvent = e.unchecked_into();
            if let Some(c) = e.candidate() {
                sink(
                    p,
                    conn,
                    LinkEvent::Candidate {
                        candidate: c.candidate(),
                        sdp_mid: c.sdp_mid(),
                        sdp_m_line_index: c.sdp_m_line_index(),
                    },
                );
            }
        });
        link.pc
            .set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
        link.pc_callbacks.push(on_candidate);
        let (sink, pc) = (link.sink.clone(), link.pc.clone());
        let on_state = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            use web_sys::RtcPeerConnectionState as S;
            if matches!(pc.connection_state(), S::Failed | S::Closed) {
                sink(p, conn, LinkEvent::Closed);
            }
        });
        link.pc
            .set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        link.pc_callbacks.push(on_state);
        if offered {
            let init = RtcDataChannelInit::new();
            init.set_ordered(true);
            let dc = link
                .pc
                .create_data_channel_with_data_channel_dict(LABEL, &init);
            link.attach(dc);
        } else {
            let sink = link.sink.clone();
            let on_channel = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
                let e: RtcDataChannelEvent = e.unchecked_into();
                sink(p, conn, LinkEvent::Channel(e.channel()));
            });
            link.pc
                .set_ondatachannel(Some(on_channel.as_ref().unchecked_ref()));
            link.pc_callbacks.push(on_channel);
        }
        Ok(link)
    }

    /// Takes a data channel: the offerer's own, or the one the answerer was given. Returns
    /// whether it is open already.
    pub(crate) fn attach(&mut self, dc: RtcDataChannel) -> bool {
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        let (sink, p, conn) = (self.sink.clone(), self.peer, self.conn);
        let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| sink(p, conn, LinkEvent::Open));
        dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        let sink = self.sink.clone();
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let e: MessageEvent = e.unchecked_into();
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                sink(
                    p,
                    conn,
                    LinkEvent::Message(js_sys::Uint8Array::new(&buf).to_vec()),
                );
            }
        });
        dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let sink = self.sink.clone();
        let on_close =
            Closure::<dyn FnMut(JsValue)>::new(move |_| sink(p, conn, LinkEvent::Closed));
        dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        dc.set_onerror(Some(on_close.as_ref().unchecked_ref()));
        self.dc_callbacks = vec![on_open, on_message, on_close];
        let open = dc.ready_state() == web_sys::RtcDataChannelState::Open;
        self.dc = Some(dc);
        open
    }

    pub(crate) fn is_channel_open(&self) -> bool {
        self.dc
            .as_ref()
            .is_some_and(|dc| dc.ready_state() == web_sys::RtcDataChannelState::Open)
    }

    /// Sends one message; false if the channel refused it (closed or over its buffer).
    pub(crate) fn send(&mut self, bytes: &[u8]) -> bool {
        let Some(dc) = &self.dc else { return false };
        if dc.send_with_u8_array(bytes).is_err() {
            return false;
        }
        self.sent += bytes.len() as u64;
        true
    }

    /// Bytes that left the send buffer since the last call.
    pub(crate) fn drained(&mut self) -> usize {
        let Some(dc) = &self.dc else { return 0 };
        let left = self.sent.saturating_sub(u64::from(dc.buffered_amount()));
        let new = left.saturating_sub(self.reported);
        self.reported = self.reported.max(left);
        usize::try_from(new).unwrap_or(usize::MAX)
    }

    /// Bytes handed to the channel and not yet reported drained.
    pub(crate) fn outstanding(&self) -> u64 {
        self.sent - self.reported
    }

    /// Adds a remote candidate (as trickled through signaling) now, or once the remote
    /// description is set. An empty one (end of candidates) is ignored.
    pub(crate) fn add_candidate(
        &mut self,
        candidate: &str,
        sdp_mid: Option<&str>,
        sdp_m_line_index: Option<u16>,
    ) {
        if candidate.is_empty() {
            return;
        }
        let init = RtcIceCandidateInit::new(candidate);
        init.set_sdp_mid(sdp_mid);
        init.set_sdp_m_line_index(sdp_m_line_index);
        if self.remote_set {
            let _ = self
                .pc
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
        } else if self.pending.len() < 64 {
            self.pending.push(init);
        }
    }

    /// The remote description is in: add the candidates that waited for it.
    pub(crate) fn remote_description_set(&mut self) {
        self.remote_set = true;
        for init in std::mem::take(&mut self.pending) {
            let _ = self
                .pc
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(dc) = self.dc.take() {
            dc.set_onopen(None);
            dc.set_onmessage(None);
            dc.set_onclose(None);
            dc.set_onerror(None);
            dc.close();
        }
        self.pc.set_onicecandidate(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ondatachannel(None);
        self.pc.close();
    }
}

/// A session description of `kind` with `sdp`.
pub(crate) fn description(kind: RtcSdpType, sdp: &str) -> RtcSessionDescriptionInit {
    let d = RtcSessionDescriptionInit::new(kind);
    d.set_sdp(sdp);
    d
}

/// Creates our offer (`kind` Offer) or answer (`kind` Answer), makes it the local
/// description and returns its SDP for the neighbour.
pub(crate) async fn set_local_description(
    pc: &RtcPeerConnection,
    kind: RtcSdpType,
) -> Result<String, JsValue> {
    let created = match kind {
        RtcSdpType::Offer => pc.create_offer(),
        _ => pc.create_answer(),
    };
    let created = wasm_bindgen_futures::JsFuture::from(created).await?;
    let sdp = js_sys::Reflect::get(&created, &"sdp".into())?
        .as_string()
        .unwrap_or_default();
    wasm_bindgen_futures::JsFuture::from(pc.set_local_description(&description(kind, &sdp)))
        .await?;
    Ok(sdp)
}
