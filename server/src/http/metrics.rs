//! `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::media::Media;

/// Renders every channel's metrics, then what the hooks add (signaling, seeder).
pub fn render(media: &Media) -> String {
    let mut out = String::new();
    let channels: Vec<_> = media.channels().collect();
    let mut family =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&crate::media::Channel) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for c in &channels {
                let _ = writeln!(out, "{name}{{channel=\"{}\"}} {}", c.name(), value(c));
            }
        };
    let n = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed).to_string();
    family(
        "shoal_channel_viewers",
        "gauge",
        "Viewers in the channel's swarm.",
        &|c| media.viewers(c.name()).to_string(),
    );
    family(
        "shoal_channel_live",
        "gauge",
        "1 while chunks are arriving.",
        &|c| u8::from(c.snapshot().live).to_string(),
    );
    family(
        "shoal_ingest_bitrate_bps",
        "gauge",
        "Media bitrate over the live window while live (else 0), bits per second.",
        &|c| {
            let s = c.snapshot();
            let bps = if s.live {
                s.bitrate_bps.unwrap_or(0.0)
            } else {
                0.0
            };
            bps.round().to_string()
        },
    );
    family("shoal_chunks_total", "counter", "Chunks published.", &|c| {
        n(&c.counters.chunks)
    });
    family(
        "shoal_ingest_bytes_total",
        "counter",
        "Bytes of chunks published.",
        &|c| n(&c.counters.ingest_bytes),
    );
    family(
        "shoal_latest_seq",
        "gauge",
        "Newest chunk's sequence number.",
        &|c| {
            c.snapshot()
                .latest_seq
                .map_or("NaN".into(), |s| s.to_string())
        },
    );
    family(
        "shoal_ingest_sessions_total",
        "counter",
        "Push ingest connections accepted.",
        &|c| n(&c.counters.ingests),
    );
    family(
        "shoal_ingest_errors_total",
        "counter",
        "Push ingests that ended with an error.",
        &|c| n(&c.counters.ingest_errors),
    );
    family(
        "shoal_verification_failures_total",
        "counter",
        "Chunks or pieces peers reported failing verification.",
        &|c| n(&c.counters.verification_failures),
    );
    family(
        "shoal_http_fallback_refused_total",
        "counter",
        "Swarm fallback chunk requests refused (503) because the HTTP budget's queue was full.",
        &|c| n(&c.counters.http_refused),
    );
    family(
        "shoal_http_chunk_waiting",
        "gauge",
        "Chunk requests (`?wait`) held open until their chunk is published.",
        &|c| c.counters.http_waiting.load(Ordering::Relaxed).to_string(),
    );
    family(
        "shoal_viewer_bytes_received_total",
        "counter",
        "Bytes viewers reported receiving from any source.",
        &|c| n(&c.counters.bytes_received_by_viewers),
    );
    let _ = writeln!(
        out,
        "# HELP shoal_bytes_out_total Bytes the origin sent, by path."
    );
    let _ = writeln!(out, "# TYPE shoal_bytes_out_total counter");
    for c in &channels {
        for (path, v) in [
            ("seeder", &c.counters.bytes_out_seeder),
            ("http", &c.counters.bytes_out_http),
        ] {
            let _ = writeln!(
                out,
                "shoal_bytes_out_total{{channel=\"{}\",path=\"{path}\"}} {}",
                c.name(),
                n(v)
            );
        }
    }
    let hooks = media
        .hooks
        .metrics
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for hook in hooks.iter() {
        hook(&mut out);
    }
    out
}

/// `GET /metrics`.
pub async fn metrics(State(media): State<Arc<Media>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&media),
    )
        .into_response()
}
