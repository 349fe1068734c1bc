//! Push ingest: `PUT`/`POST /ingest/{channel}` with a streaming fMP4 body.
//!
//! The body goes through the segmenter as it arrives; each complete fragment is signed and
//! published at once. One ingest per channel at a time: a new authenticated ingest replaces
//! the running one (a broadcaster that reconnects after a network drop must not wait for
//! the server to notice its dead connection), and the old one ends with 409.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use super::channel::{PublishError, Session};
use super::segmenter::{Event, Limits, Segmenter};
use super::Media;

/// An ingest that sends nothing for this long is ended (its connection is probably dead).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// `?key=` on the ingest URL.
#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    key: Option<String>,
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body + "\n",
    )
        .into_response()
}

/// The stream key from `?key=`, `X-Shoal-Key` or `Authorization: Bearer`.
fn stream_key(query: &KeyQuery, headers: &HeaderMap) -> Option<String> {
    if let Some(k) = &query.key {
        return Some(k.clone());
    }
    if let Some(k) = headers.get("x-shoal-key").and_then(|v| v.to_str().ok()) {
        return Some(k.to_string());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    auth.strip_prefix("Bearer ").map(|k| k.trim().to_string())
}

/// Notices an ingest whose connection closed under it: the server then drops the handler
/// mid-await, so only `Drop` sees the end.
struct Running {
    channel: Arc<super::Channel>,
    gen: u64,
    published: u64,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            self.channel
                .counters
                .ingest_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                channel = self.channel.name(),
                gen = self.gen,
                published = self.published,
                "ingest connection closed mid-stream"
            );
        }
    }
}

/// How an ingest ended badly.
enum Failure {
    Replaced,
    Stream(String),
}

/// The ingest handler.
pub async fn ingest(
    State(media): State<Arc<Media>>,
    Path(name): Path<String>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(channel) = media.channel(&name) else {
        return text(StatusCode::NOT_FOUND, format!("unknown channel {name:?}"));
    };
    if !channel.accepts_ingest() {
        return text(
            StatusCode::FORBIDDEN,
            format!("channel {name:?} is the built-in demo and takes no ingest"),
        );
    }
    let Some(key) = stream_key(&query, &headers) else {
        return text(
            StatusCode::UNAUTHORIZED,
            format!(
                "channel {name:?} needs its stream key: add ?key=KEY, an X-Shoal-Key header \
                 or Authorization: Bearer KEY"
            ),
        );
    };
    if !channel.check_key(&key) {
        return text(
            StatusCode::UNAUTHORIZED,
            format!("wrong stream key for channel {name:?}"),
        );
    }

    let (gen, mut replaced) = channel.begin_ingest();
    tracing::info!(channel = %name, gen, "ingest started");
    let mut stream = body.into_data_stream();
    let mut segmenter = Segmenter::new(Limits::default());
    let mut session = Session::new();
    let mut events = Vec::new();
    let mut running = Running {
        channel: channel.clone(),
        gen,
        published: 0,
        finished: false,
    };
    let outcome = loop {
        let next = tokio::select! {
            biased;
            _ = replaced.changed() => break Err(Failure::Replaced),
            next = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => next,
        };
        let bytes = match next {
            Err(_) => break Err(Failure::Stream(format!("no data for {IDLE_TIMEOUT:?}"))),
            Ok(None) => {
                break segmenter
                    .finish()
                    .map_err(|e| Failure::Stream(e.to_string()))
            }
            Ok(Some(Err(e))) => break Err(Failure::Stream(format!("request body: {e}"))),
            Ok(Some(Ok(bytes))) => bytes,
        };
        if let Err(e) = segmenter.push(&bytes, &mut events) {
            break Err(Failure::Stream(e.to_string()));
        }
        let mut failed = None;
        for event in events.drain(..) {
            if let Event::Fragment(fragment) = event {
                match channel.publish(&mut session, fragment, Some(gen)) {
                    Ok(_) => running.published += 1,
                    Err(PublishError::Replaced) => {
                        failed = Some(Failure::Replaced);
                        break;
                    }
                    Err(e) => {
                        failed = Some(Failure::Stream(e.to_string()));
                        break;
                    }
                }
            }
        }
        if let Some(f) = failed {
            break Err(f);
        }
    };
    running.finished = true;
    let published = running.published;
    match outcome {
        Ok(()) => {
            tracing::info!(channel = %name, gen, published, "ingest ended");
            text(
                StatusCode::OK,
                format!("ingest ended: {published} chunks published"),
            )
        }
        Err(Failure::Replaced) => {
            tracing::info!(channel = %name, gen, published, "ingest replaced by a newer one");
            text(
                StatusCode::CONFLICT,
                format!("a newer ingest took over channel {name:?} after {published} chunks"),
            )
        }
        Err(Failure::Stream(e)) => {
            channel
                .counters
                .ingest_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(channel = %name, gen, published, "ingest failed: {e}");
            text(
                StatusCode::BAD_REQUEST,
                format!("ingest ended after {published} chunks: {e}"),
            )
        }
    }
}
