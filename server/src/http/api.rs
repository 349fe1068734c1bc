//! `GET /api/channels`, `/api/channels/{name}`, `.../init` and `.../chunks/{seq}`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::media::{Channel, Media, DEMO_CHANNEL};

/// Chunks never change once published: any cache may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Live state changes every chunk.
const NO_CACHE: &str = "no-cache";
/// A chunk missing now may exist a moment later: never cache the miss.
const NO_STORE: &str = "no-store";

/// One channel in the API.
#[derive(Debug, Serialize)]
pub struct ChannelJson {
    /// Channel name.
    pub name: String,
    /// Whether chunks are arriving.
    pub live: bool,
    /// MSE codec list, e.g. `avc1.42c01e,mp4a.40.2` (null before the first chunk).
    pub codec: Option<String>,
    /// Full MIME type for `addSourceBuffer`.
    pub mime: Option<String>,
    /// Where the init segment is.
    pub init_url: String,
    /// Changes when the init segment does (first 16 hex digits of its SHA-256).
    pub init_id: Option<String>,
    /// URL of chunk `{seq}` (framed: header length u32 BE, signed header, bytes).
    pub chunk_url_template: String,
    /// Newest chunk.
    pub latest_seq: Option<u64>,
    /// Oldest chunk still served.
    pub oldest_seq: Option<u64>,
    /// Newest chunk starting with a keyframe: where a new player joins.
    pub latest_keyframe_seq: Option<u64>,
    /// Newest chunk's origin timestamp, Unix microseconds.
    pub latest_timestamp_us: Option<u64>,
    /// Mean chunk duration, seconds.
    pub chunk_duration_s: Option<f64>,
    /// Media bitrate over the window, bits per second.
    pub bitrate_bps: Option<f64>,
    /// Viewers in the swarm.
    pub viewers: u64,
    /// Ed25519 public key chunks verify with: lowercase hex of 32 bytes.
    pub public_key: String,
    /// 1 − origin bytes out / bytes viewers received (null until viewers report).
    pub offload: Option<f64>,
    /// Whether the channel takes push ingest (false for the demo).
    pub ingest: bool,
    /// Whether this is the built-in demo.
    pub demo: bool,
}

/// The JSON for `channel`.
pub fn channel_json(media: &Media, channel: &Channel) -> ChannelJson {
    let s = channel.snapshot();
    let name = channel.name().to_string();
    let c = &channel.counters;
    let out = c.bytes_out_http.load(Ordering::Relaxed) + c.bytes_out_seeder.load(Ordering::Relaxed);
    let received = c.bytes_received_by_viewers.load(Ordering::Relaxed);
    ChannelJson {
        live: s.live,
        codec: s.init.as_ref().map(|i| i.codec.clone()),
        mime: s.init.as_ref().map(|i| i.mime.clone()),
        init_url: format!("/api/channels/{name}/init"),
        init_id: s.init.as_ref().map(|i| i.id.clone()),
        chunk_url_template: format!("/api/channels/{name}/chunks/{{seq}}"),
        latest_seq: s.latest_seq,
        oldest_seq: s.oldest_seq,
        latest_keyframe_seq: s.latest_keyframe_seq,
        latest_timestamp_us: s.latest_timestamp_us,
        chunk_duration_s: s.chunk_duration_s,
        bitrate_bps: s.bitrate_bps,
        viewers: media.viewers(&name),
        public_key: channel.public_key().to_string(),
        offload: (received > 0).then(|| 1.0 - out as f64 / received as f64),
        ingest: channel.accepts_ingest(),
        demo: name == DEMO_CHANNEL && !channel.accepts_ingest(),
        name,
    }
}

fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, NO_STORE)],
        what + "\n",
    )
        .into_response()
}

/// `GET /api/channels`: `{"channels": [...]}`.
pub async fn list(State(media): State<Arc<Media>>) -> Response {
    let channels: Vec<ChannelJson> = media.channels().map(|c| channel_json(&media, c)).collect();
    (
        [(header::CACHE_CONTROL, NO_CACHE)],
        Json(serde_json::json!({ "channels": channels })),
    )
        .into_response()
}

/// `GET /api/channels/{name}`.
pub async fn channel(State(media): State<Arc<Media>>, Path(name): Path<String>) -> Response {
    match media.channel(&name) {
        Some(c) => (
            [(header::CACHE_CONTROL, NO_CACHE)],
            Json(channel_json(&media, &c)),
        )
            .into_response(),
        None => not_found(format!("unknown channel {name:?}")),
    }
}

/// `GET /api/channels/{name}/init`: the init segment (`ftyp` + `moov`).
pub async fn init(State(media): State<Arc<Media>>, Path(name): Path<String>) -> Response {
    let Some(channel) = media.channel(&name) else {
        return not_found(format!("unknown channel {name:?}"));
    };
    let Some(init) = channel.init() else {
        return not_found(format!("channel {name:?} has not started yet"));
    };
    if let Some(budget) = &media.http_budget {
        // Every viewer needs it, so it is never refused; it takes its place in the queue.
        budget.book(init.bytes.len(), false);
    }
    channel
        .counters
        .bytes_out_http
        .fetch_add(init.bytes.len() as u64, Ordering::Relaxed);
    (
        [
            (header::CONTENT_TYPE, "video/mp4".to_string()),
            // The init segment changes only when the broadcaster's encoding does.
            (header::CACHE_CONTROL, NO_CACHE.to_string()),
            (header::ETAG, format!("\"{}\"", init.id)),
        ],
        init.bytes.clone(),
    )
        .into_response()
}

/// How long a chunk request with `?wait` is held for a chunk not yet published.
pub const CHUNK_WAIT: Duration = Duration::from_secs(5);

/// A chunk URL's query: `?swarm` marks a swarm viewer's fallback; `?wait` asks the server to
/// hold the request until the chunk is published (see [`Channel::chunk_or_wait`]).
#[derive(Debug, Deserialize)]
pub struct ChunkQuery {
    swarm: Option<String>,
    wait: Option<String>,
}

/// `GET /api/channels/{name}/chunks/{seq}`: the framed, signed chunk (see
/// `swarm::Chunk::to_framed`); 404 outside the live window. With `?wait`, a chunk not yet
/// published but due next (or up to two after) is waited for, up to [`CHUNK_WAIT`]: the
/// browser client's HTTP-only mode asks so. A swarm viewer's fallback asks with `?swarm`:
/// with an HTTP budget (`--http-fallback-rate`) whose queue is full, that gets 503 with
/// `Retry-After` at once (the viewer has peers to turn to).
pub async fn chunk(
    State(media): State<Arc<Media>>,
    Path((name, seq)): Path<(String, String)>,
    Query(query): Query<ChunkQuery>,
) -> Response {
    let Some(channel) = media.channel(&name) else {
        return not_found(format!("unknown channel {name:?}"));
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return (StatusCode::BAD_REQUEST, "chunk number must be an integer\n").into_response();
    };
    let chunk = if query.wait.is_some() {
        channel.chunk_or_wait(seq, CHUNK_WAIT).await
    } else {
        channel.chunk(seq)
    };
    let Some(chunk) = chunk else {
        return not_found(format!("chunk {seq} of {name:?} is not in the live window"));
    };
    if let Some(budget) = &media.http_budget {
        if !budget.book(chunk.framed_len(), query.swarm.is_some()) {
            channel
                .counters
                .http_refused
                .fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::RETRY_AFTER, "1"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                "the origin's HTTP fallback is busy: get the chunk from peers, or retry in a second\n",
            )
                .into_response();
        }
    }
    let body = chunk.to_framed();
    channel
        .counters
        .bytes_out_http
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, IMMUTABLE),
        ],
        body,
    )
        .into_response()
}
