//! The built-in demo channel: a bundled 16 s clip (426x240 H.264 baseline + AAC, 0.5 s
//! fragments, made by `server/assets/make-demo.sh`) published in real time, over and over.
//!
//! Each pass through the clip is a new timeline [`Session`], so the channel's media time
//! runs on without a jump and mfhd sequence numbers keep increasing. The clip's audio is
//! exactly as long as its video (750 AAC frames of 1024 samples at 48 kHz = 16 s), so a
//! loop leaves neither a gap nor an overlap in either track.

use std::sync::Arc;
use std::time::Duration;

use super::channel::{Channel, Session};
use super::segmenter::{Event, Fragment, Limits, Segmenter};

/// The clip.
pub static CLIP: &[u8] = include_bytes!("../../assets/demo.mp4");

/// The clip's fragments, in order.
pub fn fragments() -> Result<Vec<Fragment>, String> {
    let mut segmenter = Segmenter::new(Limits::default());
    let mut events = Vec::new();
    segmenter
        .push(CLIP, &mut events)
        .and_then(|()| segmenter.finish())
        .map_err(|e| format!("demo clip: {e}"))?;
    let fragments: Vec<Fragment> = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Fragment(f) => Some(f),
            Event::Init(_) => None,
        })
        .collect();
    if fragments.is_empty() || fragments.iter().any(|f| f.duration_us() == 0) {
        return Err("demo clip has no usable fragments".into());
    }
    Ok(fragments)
}

/// Publishes the clip on `channel` in real time, forever: each fragment when its duration
/// has passed, as a live encoder would.
pub async fn run(channel: Arc<Channel>) {
    let fragments = match fragments() {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("demo channel off: {e}");
            return;
        }
    };
    let mut next = tokio::time::Instant::now();
    loop {
        let mut session = Session::new();
        for fragment in &fragments {
            next += Duration::from_micros(u64::from(fragment.duration_us()));
            tokio::time::sleep_until(next).await;
            if let Err(e) = channel.publish(&mut session, fragment.clone(), None) {
                tracing::error!(channel = channel.name(), "demo: {e}");
            }
        }
    }
}
