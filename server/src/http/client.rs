//! The browser client built by `server/build.rs`: the wasm module and its JS glue, embedded in
//! the binary. `web/shoal.js` loads them from `/assets/`. Pages on any origin may load them
//! (the script embed), so they carry `Access-Control-Allow-Origin: *`; they revalidate with an
//! `ETag` (a hash of the content) so a new server version is picked up at once.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// The generated JS glue (ES module, `wasm-bindgen --target web`).
pub const GLUE_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/client/shoal_client.js"));
/// The client's WebAssembly module.
pub const CLIENT_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/client/shoal_client_bg.wasm"));

/// `/assets/shoal_client.js` and `/assets/shoal_client_bg.wasm`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/assets/shoal_client.js",
            get(|headers: HeaderMap| async move {
                static TAG: OnceLock<String> = OnceLock::new();
                serve(&headers, GLUE_JS, "text/javascript; charset=utf-8", &TAG)
            }),
        )
        .route(
            "/assets/shoal_client_bg.wasm",
            get(|headers: HeaderMap| async move {
                static TAG: OnceLock<String> = OnceLock::new();
                serve(&headers, CLIENT_WASM, "application/wasm", &TAG)
            }),
        )
}

fn serve(
    headers: &HeaderMap,
    body: &'static [u8],
    content_type: &'static str,
    tag: &OnceLock<String>,
) -> Response {
    let tag = tag.get_or_init(|| {
        let hash = Sha256::digest(body);
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    });
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_embedded() {
        // A real wasm module (magic + version 1) and glue that loads it.
        assert_eq!(&CLIENT_WASM[..8], b"\0asm\x01\0\0\0");
        let glue = std::str::from_utf8(GLUE_JS).unwrap();
        assert!(glue.contains("shoal_client_bg.wasm"));
        assert!(glue.contains("class Client"));
    }
}
