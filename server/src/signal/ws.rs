//! A minimal server-side WebSocket (RFC 6455) tuned for many idle sockets.
//!
//! Why not tungstenite: it keeps a read buffer and a write buffer per socket for the socket's
//! whole life (a few KiB each once a message has passed), which alone breaks the budget of
//! 4 KiB of server memory per connected peer. Here an idle socket holds no buffer at all:
//! reads land in a stack array and only the bytes of an incomplete frame are kept; writes go
//! out from a frame built for that write and dropped after it.
//!
//! Supported: text, binary, fragmentation, ping/pong, close. No extensions are negotiated
//! (so RSV bits must be 0), frames from the client must be masked.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::{header, HeaderMap};
use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes read from the socket per read call (a stack array, not kept per socket).
const READ_CHUNK: usize = 4096;

/// The `Sec-WebSocket-Accept` value for a valid upgrade request, or why it is not one.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<String, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    if !has_token(header::UPGRADE, "websocket") {
        return Err("expected Upgrade: websocket");
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err("expected Connection: upgrade");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("expected Sec-WebSocket-Version: 13");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    Ok(base64::engine::general_purpose::STANDARD.encode(sha.finalize()))
}

/// A complete message or control frame from the peer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A text or binary message, reassembled and unmasked.
    Data(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    /// The peer closes, with its status code if it gave one.
    Close(Option<u16>),
}

/// Why the connection must end at the framing level; each maps to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Not valid WebSocket framing (1002).
    Protocol,
    /// A frame or message larger than the hard cap (1009).
    TooBig,
}

const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// Frame decoder state: bytes of an incomplete frame and a message being reassembled.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    pending: Vec<u8>,
    fragments: Option<Vec<u8>>,
}

impl Decoder {
    /// Appends bytes read from the socket.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Takes the next complete message or control frame out of the buffered bytes; `None`
    /// when more bytes are needed. `cap` bounds frames and reassembled messages.
    pub(crate) fn next(&mut self, cap: usize) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(RawFrame {
                fin,
                opcode,
                payload,
                used,
            }) = parse_frame(&self.pending, cap)?
            else {
                return Ok(None);
            };
            // Free the buffer once it is drained: an idle socket keeps no allocation.
            if used == self.pending.len() {
                self.pending = Vec::new();
            } else {
                self.pending.drain(..used);
            }
            match opcode {
                OP_TEXT | OP_BINARY => {
                    if self.fragments.is_some() {
                        return Err(FrameError::Protocol);
                    }
                    if fin {
                        return Ok(Some(Incoming::Data(payload)));
                    }
                    self.fragments = Some(payload);
                }
                OP_CONT => {
                    let Some(mut message) = self.fragments.take() else {
                        return Err(FrameError::Protocol);
                    };
                    if message.len() + payload.len() > cap {
                        return Err(FrameError::TooBig);
                    }
                    message.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(Incoming::Data(message)));
                    }
                    self.fragments = Some(message);
                }
                OP_CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Some(Incoming::Close(code)));
                }
                OP_PING => return Ok(Some(Incoming::Ping(payload))),
                OP_PONG => return Ok(Some(Incoming::Pong)),
                _ => return Err(FrameError::Protocol),
            }
        }
    }
}

/// One client frame, unmasked.
struct RawFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
    /// Bytes of the buffer it took.
    used: usize,
}

/// Parses one client frame at the start of `buf`, `None` if it is not all there yet.
fn parse_frame(buf: &[u8], cap: usize) -> Result<Option<RawFrame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
        // Reserved bits without a negotiated extension, or an unmasked client frame.
        return Err(FrameError::Protocol);
    }
    let control = opcode >= 8;
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u16::from_be_bytes([b[0], b[1]]) as u64, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            (u64::from_be_bytes(a), 10)
        }
        n => (n as u64, 2),
    };
    if control && (!fin || len > 125) {
        return Err(FrameError::Protocol);
    }
    if len > cap as u64 {
        return Err(FrameError::TooBig);
    }
    let len = len as usize;
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    at += 4;
    let Some(body) = buf.get(at..at + len) else {
        return Ok(None);
    };
    let payload = body
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i & 3])
        .collect();
    Ok(Some(RawFrame {
        fin,
        opcode,
        payload,
        used: at + len,
    }))
}

/// Appends one unmasked server frame to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A text frame for `text`.
pub(crate) fn text_frame(out: &mut Vec<u8>, text: &str) {
    encode_frame(out, OP_TEXT, text.as_bytes());
}

/// A close frame with a status code and reason.
pub(crate) fn close_frame(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    encode_frame(out, OP_CLOSE, &payload);
}

pub(crate) fn ping_frame(out: &mut Vec<u8>) {
    encode_frame(out, OP_PING, &[]);
}

pub(crate) fn pong_frame(out: &mut Vec<u8>, payload: &[u8]) {
    encode_frame(out, OP_PONG, payload);
}

/// A server WebSocket over any byte stream.
pub(crate) struct Socket<S> {
    io: S,
    decoder: Decoder,
    /// Hard cap on a frame or message.
    cap: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    pub(crate) fn new(io: S, cap: usize) -> Self {
        Socket {
            io,
            decoder: Decoder::default(),
            cap,
        }
    }

    /// The next message or control frame; `Ok(None)` at end of stream. Cancel-safe: partial
    /// input stays in the decoder.
    pub(crate) async fn recv(&mut self) -> io::Result<Result<Option<Incoming>, FrameError>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Result<Option<Incoming>, FrameError>>> {
        loop {
            match self.decoder.next(self.cap) {
                Ok(Some(m)) => return Poll::Ready(Ok(Ok(Some(m)))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Ok(Err(e))),
            }
            // A stack buffer: it exists only during this call, never per idle socket.
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(Ok(None)));
            }
            self.decoder.extend(buf.filled());
        }
    }

    /// Writes already-encoded frames and flushes.
    pub(crate) async fn send_raw(&mut self, frames: &[u8]) -> io::Result<()> {
        self.io.write_all(frames).await?;
        self.io.flush().await
    }

    /// Shuts the write side down.
    pub(crate) async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 65535 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn decodes_byte_by_byte_and_frees_the_buffer() {
        let mut wire = client_frame(true, OP_TEXT, b"hello");
        wire.extend(client_frame(true, OP_BINARY, &[7u8; 300]));
        wire.extend(client_frame(true, OP_PING, b"p"));
        wire.extend(client_frame(false, OP_TEXT, b"ab"));
        wire.extend(client_frame(true, OP_PONG, b""));
        wire.extend(client_frame(true, OP_CONT, b"cd"));
        wire.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in wire {
            d.extend(&[b]);
            while let Some(m) = d.next(1024).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(
            got,
            vec![
                Incoming::Data(b"hello".to_vec()),
                Incoming::Data(vec![7u8; 300]),
                Incoming::Ping(b"p".to_vec()),
                Incoming::Pong,
                Incoming::Data(b"abcd".to_vec()),
                Incoming::Close(Some(1000)),
            ]
        );
        assert_eq!(d.pending.capacity(), 0);
    }

    #[test]
    fn refuses_bad_frames() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (
                vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
                FrameError::Protocol,
            ), // unmasked
            (client_frame(true, 3, b""), FrameError::Protocol), // opcode 3
            (client_frame(false, OP_PING, b""), FrameError::Protocol), // fragmented ping
            (client_frame(true, OP_PING, &[0; 126]), FrameError::Protocol), // long ping
            (client_frame(true, OP_CONT, b"x"), FrameError::Protocol), // stray continuation
            (client_frame(true, OP_TEXT, &[0; 2000]), FrameError::TooBig),
            (
                {
                    let mut f = client_frame(true, OP_TEXT, b"x");
                    f[0] |= 0x40; // RSV1
                    f
                },
                FrameError::Protocol,
            ),
        ];
        for (wire, err) in cases {
            let mut d = Decoder::default();
            d.extend(&wire);
            assert_eq!(d.next(1024), Err(err), "{wire:?}");
        }
        // A frame announcing a huge length is refused before its body arrives.
        let mut d = Decoder::default();
        d.extend(&[0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next(1024), Err(FrameError::TooBig));
        let mut d = Decoder::default();
        let mut wire = client_frame(false, OP_TEXT, &[1; 600]);
        wire.extend(client_frame(true, OP_CONT, &[1; 600]));
        d.extend(&wire);
        assert_eq!(d.next(1024), Err(FrameError::TooBig));
    }

    #[test]
    fn encodes_lengths() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &vec![b'a'; len]);
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x81);
        }
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        h.insert(header::SEC_WEBSOCKET_VERSION, "13".parse().unwrap());
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        assert_eq!(accept_key(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        h.remove(header::SEC_WEBSOCKET_VERSION);
        assert!(accept_key(&h).is_err());
    }
}
