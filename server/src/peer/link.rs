//! One WebRTC connection to one neighbour, on the `webrtc` crate.
//!
//! Each link is a small task that owns its `PeerConnection` and data channel. It does only
//! I/O: it forwards what happens (local SDP to signal, open, messages, drained bytes, close)
//! to the swarm peer's task as [`LinkEvent`]s, and carries out that task's [`LinkCmd`]s.
//! The swarm state machine itself stays in the driver task, never behind a lock.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rtc::ice::mdns::MulticastDnsMode;
use swarm::PeerId;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};

/// The data channel's label (both sides use one channel per connection).
const LABEL: &str = "shoal";
/// How long to wait for ICE gathering before sending the description as it is.
const GATHER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the drained byte count is checked while bytes are in flight.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How long a link may take to open before it is given up.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings shared by every link of one peer.
#[derive(Clone)]
pub(crate) struct LinkSettings {
    /// STUN/TURN servers from the signaling welcome.
    pub(crate) ice_servers: Vec<RTCIceServer>,
    /// Local UDP addresses to gather on (`127.0.0.1:0` for loopback).
    pub(crate) udp_addrs: Vec<String>,
}

/// From a link task to the peer's task. `conn` tells connections to one neighbour apart.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// Send this offer/answer to the neighbour over signaling.
    Description {
        peer: PeerId,
        conn: u64,
        sdp: String,
    },
    /// The data channel opened.
    Open { peer: PeerId, conn: u64 },
    /// A message arrived.
    Message {
        peer: PeerId,
        conn: u64,
        bytes: BytesMut,
    },
    /// Bytes left the data channel's send buffer (acknowledged by the remote SCTP stack).
    Drained {
        peer: PeerId,
        conn: u64,
        bytes: usize,
    },
    /// The connection failed or closed.
    Closed { peer: PeerId, conn: u64 },
}

/// From the peer's task to a link task.
#[derive(Debug)]
pub(crate) enum LinkCmd {
    /// The neighbour's answer (for a link we offered).
    Answer(String),
    /// A trickled ICE candidate from the neighbour.
    Candidate(RTCIceCandidateInit),
    /// One swarm message to send.
    Send(Vec<u8>),
}

/// Whether this side offers (dials) or answers.
pub(crate) enum Role {
    /// Create the data channel and offer.
    Offer,
    /// Answer this remote offer.
    Answer(String),
}

struct Handler {
    gathered: mpsc::UnboundedSender<()>,
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
    failed: mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            let _ = self.failed.send(());
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        // Only hand it over: the link task polls it (awaiting here would stall the driver).
        let _ = self.channels.send(channel);
    }
}

/// Runs one link until it closes, is told to (its command sender dropped), or fails.
/// Always ends by reporting [`LinkEvent::Closed`].
pub(crate) async fn run(
    peer: PeerId,
    conn: u64,
    role: Role,
    settings: LinkSettings,
    cmds: mpsc::UnboundedReceiver<LinkCmd>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    if let Err(e) = run_inner(peer, conn, role, settings, cmds, &events).await {
        tracing::debug!(peer, "link ended: {e}");
    }
    let _ = events.send(LinkEvent::Closed { peer, conn });
}

async fn run_inner(
    peer: PeerId,
    conn: u64,
    role: Role,
    settings: LinkSettings,
    mut cmds: mpsc::UnboundedReceiver<LinkCmd>,
    events: &mpsc::UnboundedSender<LinkEvent>,
) -> Result<(), String> {
    let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
    let (channels_tx, mut channels) = mpsc::unbounded_channel();
    let (failed_tx, mut failed) = mpsc::unbounded_channel();
    let handler = Arc::new(Handler {
        gathered: gathered_tx,
        channels: channels_tx,
        failed: failed_tx,
    });
    let setting_engine = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .build();
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(settings.ice_servers)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_setting_engine(setting_engine)
        .with_handler(handler)
        .with_udp_addrs(settings.udp_addrs)
        .build()
        .await
        .map_err(|e| format!("build: {e}"))?;
    let result = converse(
        peer,
        conn,
        role,
        &pc,
        &mut cmds,
        events,
        &mut gathered,
        &mut channels,
        &mut failed,
    )
    .await;
    let _ = pc.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn converse(
    peer: PeerId,
    conn: u64,
    role: Role,
    pc: &impl PeerConnection,
    cmds: &mut mpsc::UnboundedReceiver<LinkCmd>,
    events: &mpsc::UnboundedSender<LinkEvent>,
    gathered: &mut mpsc::UnboundedReceiver<()>,
    channels: &mut mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
    failed: &mut mpsc::UnboundedReceiver<()>,
) -> Result<(), String> {
    let err = |what: &str, e: webrtc::error::Error| format!("{what}: {e}");
    let mut channel: Option<Arc<dyn DataChannel>> = None;
    let offering = matches!(role, Role::Offer);
    match role {
        Role::Offer => {
            let dc = pc
                .create_data_channel(LABEL, None)
                .await
                .map_err(|e| err("data channel", e))?;
            channel = Some(dc);
            let offer = pc.create_offer(None).await.map_err(|e| err("offer", e))?;
            pc.set_local_description(offer)
                .await
                .map_err(|e| err("local offer", e))?;
        }
        Role::Answer(sdp) => {
            let offer = RTCSessionDescription::offer(sdp).map_err(|e| err("remote offer", e))?;
            pc.set_remote_description(offer)
                .await
                .map_err(|e| err("remote offer", e))?;
            let answer = pc.create_answer(None).await.map_err(|e| err("answer", e))?;
            pc.set_local_description(answer)
                .await
                .map_err(|e| err("local answer", e))?;
        }
    }
    // Send the description with every candidate in it (no trickling out; loopback and host
    // candidates gather at once). Trickled candidates from the other side are accepted.
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.recv()).await;
    let local = pc
        .local_description()
        .await
        .ok_or_else(|| "no local description".to_owned())?;
    let _ = events.send(LinkEvent::Description {
        peer,
        conn,
        sdp: local.sdp,
    });

    let open_deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    let mut open = false;
    // Bytes handed to the channel, and how many of them were reported drained.
    let mut handed: usize = 0;
    let mut reported: usize = 0;
    let mut drain_tick = tokio::time::interval(DRAIN_POLL);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let dc = channel.clone();
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return Ok(()),
                Some(LinkCmd::Answer(sdp)) if offering => {
                    let answer = RTCSessionDescription::answer(sdp)
                        .map_err(|e| err("remote answer", e))?;
                    pc.set_remote_description(answer)
                        .await
                        .map_err(|e| err("remote answer", e))?;
                }
                Some(LinkCmd::Answer(_)) => {}
                Some(LinkCmd::Candidate(c)) => {
                    // A bad candidate from the remote side is ignored, not fatal.
                    if let Err(e) = pc.add_ice_candidate(c).await {
                        tracing::debug!(peer, "candidate: {e}");
                    }
                }
                Some(LinkCmd::Send(bytes)) => {
                    let Some(dc) = &dc else { continue };
                    let n = bytes.len();
                    dc.send(BytesMut::from(&bytes[..]))
                        .await
                        .map_err(|e| err("send", e))?;
                    handed += n;
                }
            },
            ev = async { match &dc { Some(dc) => dc.poll().await, None => std::future::pending().await } } => {
                match ev {
                    Some(DataChannelEvent::OnOpen) => {
                        if !open {
                            open = true;
                            let _ = events.send(LinkEvent::Open { peer, conn });
                        }
                    }
                    Some(DataChannelEvent::OnMessage(msg)) => {
                        if !open {
                            // Some stacks deliver before the open event: the channel is open.
                            open = true;
                            let _ = events.send(LinkEvent::Open { peer, conn });
                        }
                        let _ = events.send(LinkEvent::Message { peer, conn, bytes: msg.data });
                    }
                    Some(DataChannelEvent::OnClose) | None => return Ok(()),
                    Some(_) => {}
                }
            }
            got = channels.recv(), if channel.is_none() => {
                if let Some(dc) = got {
                    channel = Some(dc);
                }
            }
            _ = failed.recv() => return Err("connection failed".into()),
            _ = drain_tick.tick(), if handed > reported => {
                if let Some(dc) = &dc {
                    let outstanding = dc.outstanding_bytes().await.map_err(|e| err("buffer", e))?;
                    let drained = handed.saturating_sub(outstanding);
                    if drained > reported {
                        let _ = events.send(LinkEvent::Drained { peer, conn, bytes: drained - reported });
                        reported = drained;
                    }
                }
            }
            _ = tokio::time::sleep_until(open_deadline), if !open => {
                return Err("did not open in time".into());
            }
        }
    }
}
