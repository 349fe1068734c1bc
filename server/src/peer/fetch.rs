//! The HTTP fallback: one plain HTTP/1.1 GET of a framed chunk from the origin.
//!
//! Small on purpose (the server's own chunk route, `http://` only): no client library for
//! one request shape. The body is capped, so a misbehaving server cannot make us hold more.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest chunk body accepted (the server's window limits a chunk far below this).
const MAX_BODY: usize = 16 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `url` (`http://host:port/path`); the body on a 200, else `None`.
pub(crate) async fn get(url: &str) -> Option<Vec<u8>> {
    tokio::time::timeout(TIMEOUT, get_inner(url))
        .await
        .ok()
        .flatten()
}

async fn get_inner(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(host).await.ok()?;
    let _ = stream.set_nodelay(true);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut piece = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut piece).await.ok()?;
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_BODY + 16 * 1024 {
            return None;
        }
        buf.extend_from_slice(&piece[..n]);
    }
    parse_response(&buf)
}

/// The body of a complete `200` response with a `Content-Length` or chunked body.
fn parse_response(buf: &[u8]) -> Option<Vec<u8>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let body = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    if status.split(' ').nth(1)? != "200" {
        return None;
    }
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    if chunked {
        return dechunk(body);
    }
    let length = length?;
    (length <= MAX_BODY && body.len() >= length).then(|| body[..length].to_vec())
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if size > MAX_BODY || out.len() + size > MAX_BODY || body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcdef";
        assert_eq!(parse_response(r), Some(b"abc".to_vec()));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r), Some(b"abcde".to_vec()));
        assert_eq!(
            parse_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\nab"),
            None
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
            None
        );
    }
}
