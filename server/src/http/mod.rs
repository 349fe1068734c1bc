//! The origin's HTTP side: push ingest, the channel API, the init segment and chunk
//! fallback, Prometheus metrics, and the viewers' pages and scripts.
//!
//! [`router`] returns these routes with the registry as state; the server merges them with
//! signaling's.

pub mod api;
pub mod client;
pub mod metrics;
pub mod web;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;

use crate::media::{ingest, Media};

/// The media routes (`/ingest/{channel}`, `/api/channels...`, `/metrics`) and the web
/// pages and scripts ([`web`]).
pub fn router(media: Arc<Media>) -> Router {
    let api = Router::new()
        .route("/api/channels", get(api::list))
        .route("/api/channels/{name}", get(api::channel))
        .route("/api/channels/{name}/init", get(api::init))
        .route("/api/channels/{name}/chunks/{seq}", get(api::chunk))
        // Players embedded on other origins read the API and fetch chunks directly.
        .layer(axum::middleware::map_response(allow_any_origin));
    Router::new()
        .route(
            "/ingest/{channel}",
            put(ingest::ingest).post(ingest::ingest),
        )
        .route("/metrics", get(metrics::metrics))
        .merge(api)
        .merge(web::router())
        .merge(client::routes())
        .with_state(media)
}

async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
