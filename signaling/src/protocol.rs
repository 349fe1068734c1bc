//! The signaling protocol: JSON messages over one WebSocket per peer.
//!
//! Every message is a JSON object carrying the protocol version `v` and a `type`:
//!
//! ```text
//! client → server   {"v":1,"type":"join","channel":"demo"}
//! server → client   {"v":1,"type":"welcome","peer_id":7,"ice_servers":[],
//!                    "channel":{"public_key":"…","codec":null,"init_url":"/…"},"neighbours":[3,5]}
//! client → server   {"v":1,"type":"offer","to":3,"sdp":"v=0…"}
//! server → peer 3   {"v":1,"type":"offer","from":7,"sdp":"v=0…"}
//! ```
//!
//! A joining peer dials (sends offers to) the neighbours it is handed in `welcome` and `peers`;
//! it answers offers that arrive from others. Fields a receiver does not know are ignored, so
//! later minor additions stay compatible; a different `v` is refused.
//!
//! The server parses untrusted bytes with [`parse_client`], which never panics and maps every
//! failure to an [`ErrorCode`] the server sends back in an `error` message.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::tracker::PeerId;

/// The protocol version this crate speaks.
pub const VERSION: u64 = 1;

/// Longest channel name accepted.
pub const MAX_CHANNEL_NAME: usize = 64;

/// The signaling WebSocket's URL for a server given by its base URL: `http(s)://host[:port]`
/// becomes `ws(s)://host[:port]/ws`; a `ws(s)://` URL is taken as it is (with `/ws` added if
/// missing). `None` for any other scheme.
pub fn signaling_url(server: &str) -> Option<String> {
    let base = server.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("http://") {
        Some(format!("ws://{rest}/ws"))
    } else if let Some(rest) = base.strip_prefix("https://") {
        Some(format!("wss://{rest}/ws"))
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        Some(match base.ends_with("/ws") {
            true => base.to_owned(),
            false => format!("{base}/ws"),
        })
    } else {
        None
    }
}

/// Whether `name` is an acceptable channel name: 1 to [`MAX_CHANNEL_NAME`] ASCII letters,
/// digits, `-` or `_` (names appear in URLs and file paths).
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Why a peer dropped a neighbour, as it tells the tracker in [`ClientMessage::Unlink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlinkReason {
    /// It sent data that failed verification (a forged piece or header, a malformed message).
    Lying,
    /// It kept failing requests for chunks it had announced.
    Useless,
}

/// A message from a peer to the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Join a channel's swarm (once per connection).
    Join {
        /// Channel name, see [`valid_channel_name`].
        channel: String,
    },
    /// An SDP offer for peer `to`.
    Offer {
        /// The receiving peer (same channel).
        to: PeerId,
        /// Session description.
        sdp: String,
    },
    /// An SDP answer for peer `to`.
    Answer {
        /// The receiving peer (same channel).
        to: PeerId,
        /// Session description.
        sdp: String,
    },
    /// A trickled ICE candidate for peer `to`.
    Candidate {
        /// The receiving peer (same channel).
        to: PeerId,
        /// The candidate line (empty for end of candidates).
        candidate: String,
        /// Media stream id the candidate belongs to.
        #[serde(skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// Index of the m-line the candidate belongs to.
        #[serde(skip_serializing_if = "Option::is_none")]
        sdp_m_line_index: Option<u32>,
    },
    /// Ask for up to `want` more neighbours to dial.
    More {
        /// How many more neighbours the peer would like.
        want: u32,
    },
    /// What the peer can offer: spare upload and newest chunk held.
    Report {
        /// Upload it can still offer, in copies of the stream.
        spare_upload: f32,
        /// Newest chunk sequence number it holds.
        latest_seq: u64,
        /// Hops from the origin in its deepest push tree (255: cut off from one); absent
        /// until the peer knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        depth: Option<u8>,
    },
    /// The link to `peer` closed or failed: frees both sides' neighbour slots.
    Unlink {
        /// The former neighbour.
        peer: PeerId,
        /// Why the peer dropped it, when it was for misbehaving; absent for a link that
        /// closed or went silent. The tracker stops handing out a peer several of its
        /// neighbours dropped for [`UnlinkReason::Lying`] (see
        /// [`crate::tracker::Tracker::accuse`]); `useless` is told but not held against it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<UnlinkReason>,
    },
    /// Leave the channel (the server then closes the socket).
    Leave,
    /// Application-level keepalive (browsers cannot send WebSocket pings); answered by `pong`.
    Ping,
}

/// An ICE server the peer should use (the shape of WebRTC's `RTCIceServer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// STUN or TURN URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What a peer needs to know about its channel to verify and play it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The channel's Ed25519 public key, hex encoded (chunks are signed with it).
    pub public_key: String,
    /// RFC 6381 codecs string for Media Source Extensions, once known.
    #[serde(default)]
    pub codec: Option<String>,
    /// Where to fetch the init segment over HTTP.
    #[serde(default)]
    pub init_url: String,
    /// URL template for the HTTP fallback, `{seq}` standing for the chunk number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_url: Option<String>,
}

/// Why the server refused something; sent in `error` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not valid JSON, or not a JSON object.
    BadJson,
    /// Missing or unsupported protocol version `v`.
    BadVersion,
    /// A `type` this server does not know.
    UnknownType,
    /// A known type with missing or ill-typed fields.
    BadMessage,
    /// The message is larger than the server's limit (the socket is closed).
    TooLarge,
    /// Too many messages per second: the message was dropped.
    RateLimited,
    /// The channel name has characters or a length that are not allowed.
    BadChannel,
    /// No such channel on this server.
    UnknownChannel,
    /// The channel has as many peers as the server allows.
    ChannelFull,
    /// The server has as many channels as it allows.
    ServerFull,
    /// The message needs a joined channel.
    NotJoined,
    /// The connection already joined a channel.
    AlreadyJoined,
    /// The addressed peer is not in this channel (left, or never was).
    UnknownPeer,
    /// The addressed peer is not reading its messages fast enough: the message was dropped.
    PeerBusy,
    /// The server is shutting down.
    ShuttingDown,
    /// A code this version does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadVersion => "bad_version",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadChannel => "bad_channel",
            ErrorCode::UnknownChannel => "unknown_channel",
            ErrorCode::ChannelFull => "channel_full",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::PeerBusy => "peer_busy",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message from the server to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Reply to `join`: who you are, how to connect, what you watch, whom to dial first.
    Welcome {
        /// This peer's id in the channel.
        peer_id: PeerId,
        /// ICE servers to configure `RTCPeerConnection` with (empty on loopback).
        ice_servers: Vec<IceServer>,
        /// The channel's key and media info.
        channel: ChannelInfo,
        /// Peers to dial now.
        neighbours: Vec<PeerId>,
        /// Which of `neighbours` are the channel's origin seeder (absent: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        seeders: Vec<PeerId>,
    },
    /// More peers to dial (reply to `more`).
    Peers {
        /// Peers to dial now.
        neighbours: Vec<PeerId>,
        /// Which of `neighbours` are the channel's origin seeder (absent: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        seeders: Vec<PeerId>,
    },
    /// An SDP offer from `from`.
    Offer {
        /// The sending peer.
        from: PeerId,
        /// Session description.
        sdp: String,
    },
    /// An SDP answer from `from`.
    Answer {
        /// The sending peer.
        from: PeerId,
        /// Session description.
        sdp: String,
    },
    /// A trickled ICE candidate from `from`.
    Candidate {
        /// The sending peer.
        from: PeerId,
        /// The candidate line (empty for end of candidates).
        candidate: String,
        /// Media stream id the candidate belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// Index of the m-line the candidate belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_m_line_index: Option<u32>,
    },
    /// A neighbour left the channel (or its socket dropped): close the link to it.
    PeerLeft {
        /// The peer that left.
        peer: PeerId,
    },
    /// Reply to `ping`.
    Pong,
    /// Something the peer sent was refused.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// Why bytes could not be read as a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Not UTF-8 JSON, or not a JSON object (detail from the JSON parser).
    Json(String),
    /// `v` missing or not [`VERSION`].
    Version(Option<u64>),
    /// No `type` field.
    MissingType,
    /// A `type` this version does not know.
    UnknownType(String),
    /// A field this type needs is absent.
    MissingField {
        /// The message type.
        kind: &'static str,
        /// The absent field.
        field: &'static str,
    },
    /// A field has the wrong JSON type or range (detail from the JSON parser).
    Invalid(String),
}

impl ProtocolError {
    /// The code to send back to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::Json(_) => ErrorCode::BadJson,
            ProtocolError::Version(_) => ErrorCode::BadVersion,
            ProtocolError::MissingType | ProtocolError::UnknownType(_) => ErrorCode::UnknownType,
            ProtocolError::MissingField { .. } | ProtocolError::Invalid(_) => ErrorCode::BadMessage,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Json(e) => write!(f, "not a JSON object: {e}"),
            ProtocolError::Version(Some(v)) => {
                write!(
                    f,
                    "protocol version {v} not supported (this server speaks {VERSION})"
                )
            }
            ProtocolError::Version(None) => write!(f, "missing protocol version \"v\""),
            ProtocolError::MissingType => write!(f, "missing \"type\""),
            ProtocolError::UnknownType(t) => {
                let t: String = t.chars().take(32).collect();
                write!(f, "unknown message type {t:?}")
            }
            ProtocolError::MissingField { kind, field } => {
                write!(f, "{kind:?} needs field {field:?}")
            }
            ProtocolError::Invalid(e) => write!(f, "invalid field: {e}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Every field any client message may carry, all optional: parsing in one pass into this
/// flat shape (instead of serde's buffering internally-tagged enum) is faster on the relay
/// path and lets each failure name the field that is wrong.
#[derive(Deserialize)]
struct RawClient<'a> {
    v: Option<u64>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    channel: Option<String>,
    to: Option<PeerId>,
    sdp: Option<String>,
    candidate: Option<String>,
    sdp_mid: Option<String>,
    sdp_m_line_index: Option<u32>,
    want: Option<u32>,
    spare_upload: Option<f32>,
    latest_seq: Option<u64>,
    depth: Option<u8>,
    peer: Option<PeerId>,
    reason: Option<UnlinkReason>,
}

fn need<T>(v: Option<T>, kind: &'static str, field: &'static str) -> Result<T, ProtocolError> {
    v.ok_or(ProtocolError::MissingField { kind, field })
}

/// Parses one client message. Total: any input gives a message or an error, never a panic.
pub fn parse_client(bytes: &[u8]) -> Result<ClientMessage, ProtocolError> {
    let raw: RawClient<'_> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ProtocolError::Invalid(e.to_string())
        } else {
            ProtocolError::Json(e.to_string())
        }
    })?;
    match raw.v {
        Some(VERSION) => {}
        other => return Err(ProtocolError::Version(other)),
    }
    let kind = raw.kind.ok_or(ProtocolError::MissingType)?;
    Ok(match kind.as_ref() {
        "join" => ClientMessage::Join {
            channel: need(raw.channel, "join", "channel")?,
        },
        "offer" => ClientMessage::Offer {
            to: need(raw.to, "offer", "to")?,
            sdp: need(raw.sdp, "offer", "sdp")?,
        },
        "answer" => ClientMessage::Answer {
            to: need(raw.to, "answer", "to")?,
            sdp: need(raw.sdp, "answer", "sdp")?,
        },
        "candidate" => ClientMessage::Candidate {
            to: need(raw.to, "candidate", "to")?,
            candidate: need(raw.candidate, "candidate", "candidate")?,
            sdp_mid: raw.sdp_mid,
            sdp_m_line_index: raw.sdp_m_line_index,
        },
        "more" => ClientMessage::More {
            want: need(raw.want, "more", "want")?,
        },
        "report" => ClientMessage::Report {
            spare_upload: need(raw.spare_upload, "report", "spare_upload")?,
            latest_seq: need(raw.latest_seq, "report", "latest_seq")?,
            depth: raw.depth,
        },
        "unlink" => ClientMessage::Unlink {
            peer: need(raw.peer, "unlink", "peer")?,
            reason: raw.reason,
        },
        "leave" => ClientMessage::Leave,
        "ping" => ClientMessage::Ping,
        other => return Err(ProtocolError::UnknownType(other.to_owned())),
    })
}

#[derive(Serialize)]
struct Versioned<'a, T> {
    v: u64,
    #[serde(flatten)]
    msg: &'a T,
}

#[derive(Deserialize)]
struct VersionedServer {
    v: Option<u64>,
    #[serde(flatten)]
    msg: ServerMessage,
}

fn encode<T: Serialize>(msg: &T) -> String {
    // Serializing these types cannot fail: every map key is a string and no value is a
    // non-finite float that serde_json refuses (those are written as null).
    serde_json::to_string(&Versioned { v: VERSION, msg }).unwrap_or_default()
}

/// Encodes a client message as JSON text with the version field.
pub fn encode_client(msg: &ClientMessage) -> String {
    encode(msg)
}

/// Encodes a server message as JSON text with the version field.
pub fn encode_server(msg: &ServerMessage) -> String {
    encode(msg)
}

/// Parses one server message (for peers: browsers, native peers, load generators).
pub fn parse_server(bytes: &[u8]) -> Result<ServerMessage, ProtocolError> {
    let raw: VersionedServer = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ProtocolError::Invalid(e.to_string())
        } else {
            ProtocolError::Json(e.to_string())
        }
    })?;
    match raw.v {
        Some(VERSION) => Ok(raw.msg),
        other => Err(ProtocolError::Version(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signaling_urls() {
        let url = |s| signaling_url(s);
        assert_eq!(
            url("http://127.0.0.1:8080/").as_deref(),
            Some("ws://127.0.0.1:8080/ws")
        );
        assert_eq!(
            url("https://live.example.org").as_deref(),
            Some("wss://live.example.org/ws")
        );
        assert_eq!(url("ws://h:1/ws").as_deref(), Some("ws://h:1/ws"));
        assert_eq!(url("wss://h:1").as_deref(), Some("wss://h:1/ws"));
        assert_eq!(url("ftp://x"), None);
    }

    fn all_client() -> Vec<ClientMessage> {
        vec![
            ClientMessage::Join {
                channel: "demo".into(),
            },
            ClientMessage::Offer {
                to: 3,
                sdp: "v=0\r\n\"quoted\"".into(),
            },
            ClientMessage::Answer {
                to: u64::MAX,
                sdp: String::new(),
            },
            ClientMessage::Candidate {
                to: 9,
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            },
            ClientMessage::Candidate {
                to: 9,
                candidate: String::new(),
                sdp_mid: None,
                sdp_m_line_index: None,
            },
            ClientMessage::More { want: 4 },
            ClientMessage::Report {
                spare_upload: 1.5,
                latest_seq: 77,
                depth: None,
            },
            ClientMessage::Report {
                spare_upload: 0.0,
                latest_seq: 0,
                depth: Some(3),
            },
            ClientMessage::Unlink {
                peer: 5,
                reason: None,
            },
            ClientMessage::Unlink {
                peer: 6,
                reason: Some(UnlinkReason::Lying),
            },
            ClientMessage::Unlink {
                peer: 7,
                reason: Some(UnlinkReason::Useless),
            },
            ClientMessage::Leave,
            ClientMessage::Ping,
        ]
    }

    #[test]
    fn client_messages_round_trip() {
        for m in all_client() {
            let text = encode_client(&m);
            assert!(text.starts_with("{\"v\":1,"), "{text}");
            assert_eq!(parse_client(text.as_bytes()).unwrap(), m, "{text}");
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = vec![
            ServerMessage::Welcome {
                peer_id: 7,
                ice_servers: vec![IceServer {
                    urls: vec!["stun:127.0.0.1:3478".into()],
                    username: None,
                    credential: None,
                }],
                channel: ChannelInfo {
                    public_key: "ab".repeat(32),
                    codec: Some("avc1.42E01E".into()),
                    init_url: "/c/demo/init.mp4".into(),
                    chunk_url: None,
                },
                neighbours: vec![1, 2],
                seeders: vec![1],
            },
            ServerMessage::Peers {
                neighbours: vec![],
                seeders: vec![],
            },
            ServerMessage::Peers {
                neighbours: vec![3, 4],
                seeders: vec![4],
            },
            ServerMessage::Offer {
                from: 1,
                sdp: "x".into(),
            },
            ServerMessage::Answer {
                from: 1,
                sdp: "y".into(),
            },
            ServerMessage::Candidate {
                from: 2,
                candidate: "c".into(),
                sdp_mid: None,
                sdp_m_line_index: Some(1),
            },
            ServerMessage::PeerLeft { peer: 4 },
            ServerMessage::Pong,
            ServerMessage::Error {
                code: ErrorCode::PeerBusy,
                message: "slow".into(),
            },
        ];
        for m in msgs {
            let text = encode_server(&m);
            assert!(text.starts_with("{\"v\":1,"), "{text}");
            assert_eq!(parse_server(text.as_bytes()).unwrap(), m, "{text}");
        }
    }

    #[test]
    fn wire_shape_is_stable() {
        assert_eq!(
            encode_client(&ClientMessage::Offer {
                to: 3,
                sdp: "s".into()
            }),
            r#"{"v":1,"type":"offer","to":3,"sdp":"s"}"#
        );
        assert_eq!(
            encode_server(&ServerMessage::PeerLeft { peer: 3 }),
            r#"{"v":1,"type":"peer_left","peer":3}"#
        );
        assert_eq!(
            encode_server(&ServerMessage::Error {
                code: ErrorCode::TooLarge,
                message: "m".into()
            }),
            r#"{"v":1,"type":"error","code":"too_large","message":"m"}"#
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&[u8], ErrorCode)] = &[
            (b"", ErrorCode::BadJson),
            (b"not json", ErrorCode::BadJson),
            (b"[1,2]", ErrorCode::BadMessage),
            (b"{\"v\":1,\"type\":\"offer\"", ErrorCode::BadJson),
            (b"\xff\xfe", ErrorCode::BadJson),
            (br#"{"type":"ping"}"#, ErrorCode::BadVersion),
            (br#"{"v":2,"type":"ping"}"#, ErrorCode::BadVersion),
            (br#"{"v":1}"#, ErrorCode::UnknownType),
            (br#"{"v":1,"type":"teleport"}"#, ErrorCode::UnknownType),
            (br#"{"v":1,"type":"offer","to":1}"#, ErrorCode::BadMessage),
            (
                br#"{"v":1,"type":"offer","to":"x","sdp":""}"#,
                ErrorCode::BadMessage,
            ),
            (
                br#"{"v":1,"type":"offer","to":-1,"sdp":""}"#,
                ErrorCode::BadMessage,
            ),
            (
                br#"{"v":1,"type":"ping","type":"ping"}"#,
                ErrorCode::BadMessage,
            ),
            (
                br#"{"v":1,"type":"unlink","peer":3,"reason":"rude"}"#,
                ErrorCode::BadMessage,
            ),
        ];
        for (input, code) in cases {
            let err = parse_client(input).unwrap_err();
            assert_eq!(
                err.code(),
                *code,
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let m = parse_client(br#"{"v":1,"type":"ping","extra":{"a":[1]}}"#).unwrap();
        assert_eq!(m, ClientMessage::Ping);
        let m = parse_server(br#"{"v":1,"type":"error","code":"from_the_future","message":""}"#)
            .unwrap();
        assert_eq!(
            m,
            ServerMessage::Error {
                code: ErrorCode::Other,
                message: String::new()
            }
        );
    }

    #[test]
    fn channel_names() {
        for ok in ["demo", "a", "Live-1_b2", &"x".repeat(MAX_CHANNEL_NAME)] {
            assert!(valid_channel_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a.b",
            "a/b",
            "a b",
            "ümlaut",
            "a\0",
            &"x".repeat(MAX_CHANNEL_NAME + 1),
        ] {
            assert!(!valid_channel_name(bad), "{bad:?}");
        }
    }
}
