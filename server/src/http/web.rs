//! The viewer-facing web: the channel list, the channel and embed pages, the `<shoal-player>`
//! element, the `<script>` embed and the JS API module, all from `web/`, embedded in the
//! binary.
//!
//! Scripts carry `Access-Control-Allow-Origin: *`: pages on any origin load `embed.js`,
//! `player.js` and `shoal.js` from this server. Everything is `Cache-Control: no-cache`, so a
//! new server build is picked up at once (browsers still revalidate cheaply).

use axum::extract::Path;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use signaling::protocol::valid_channel_name;

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const CHANNEL_HTML: &str = include_str!("../../../web/channel.html");
const EMBED_HTML: &str = include_str!("../../../web/embed.html");
const EMBED_JS: &str = include_str!("../../../web/embed.js");
const PLAYER_JS: &str = include_str!("../../../web/player.js");
const SHOAL_JS: &str = include_str!("../../../web/shoal.js");
const SHOAL_D_TS: &str = include_str!("../../../web/shoal.d.ts");
const STYLE_CSS: &str = include_str!("../../../web/style.css");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const TS: &str = "application/typescript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The pages and scripts: `/`, `/c/{channel}`, `/embed/{channel}`, `/embed.js`,
/// `/player.js`, `/shoal.js`, `/shoal.d.ts` and `/style.css`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { page(INDEX_HTML) }))
        .route("/c/{channel}", get(channel_page))
        .route("/embed/{channel}", get(embed_page))
        .route("/embed.js", get(|| async { shared(JS, EMBED_JS) }))
        .route("/player.js", get(|| async { shared(JS, PLAYER_JS) }))
        .route("/shoal.js", get(|| async { shared(JS, SHOAL_JS) }))
        .route("/shoal.d.ts", get(|| async { shared(TS, SHOAL_D_TS) }))
        .route("/style.css", get(|| async { shared(CSS, STYLE_CSS) }))
}

async fn channel_page(Path(channel): Path<String>) -> Response {
    if valid_channel_name(&channel) {
        page(CHANNEL_HTML)
    } else {
        bad_channel()
    }
}

async fn embed_page(Path(channel): Path<String>) -> Response {
    if valid_channel_name(&channel) {
        page(EMBED_HTML)
    } else {
        bad_channel()
    }
}

fn page(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HTML),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A script or style sheet that pages on other origins may load.
fn shared(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, &str); 4] = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (headers, body).into_response()
}

/// The page for a name no channel can have (the name is not echoed back).
fn bad_channel() -> Response {
    const BODY: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>No such channel — Shoal</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
<body class=\"notfound\"><main><h1>No such channel</h1>\
<p>Channel names are 1 to 64 letters, digits, <code>-</code> or <code>_</code>.</p>\
<p><a href=\"/\">See the channels on this server</a></p></main></body></html>\n";
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, HTML),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        BODY,
    )
        .into_response()
}
