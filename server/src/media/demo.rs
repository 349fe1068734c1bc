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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::segmenter::{Event, Limits, Segmenter};
    use swarm::SigningKey;

    /// Two passes of the loop, published back to back: every track's decode time runs on
    /// exactly where its previous fragment ended, across the loop point too.
    #[test]
    fn loop_continues_every_track() {
        let channel = Channel::new("demo".into(), None, SigningKey::from_bytes(&[1; 32]));
        let fragments = fragments().unwrap();
        let init = fragments[0].init.bytes.clone();
        let mut next = std::collections::HashMap::new();
        for pass in 0..2 {
            let mut session = Session::new();
            for (i, f) in fragments.iter().enumerate() {
                let chunk = channel.publish(&mut session, f.clone(), None).unwrap();
                chunk.header.verify(&channel.verifying_key()).unwrap();
                let mut s = Segmenter::new(Limits::default());
                let mut events = Vec::new();
                s.push(&init, &mut events).unwrap();
                s.push(&chunk.bytes, &mut events).unwrap();
                let Some(Event::Fragment(out)) = events.pop() else {
                    panic!("chunk is not a fragment");
                };
                assert_eq!(chunk.header.seq, (pass * fragments.len() + i) as u64);
                for t in &out.info.tracks {
                    if let Some(want) = next.get(&t.track_id) {
                        assert_eq!(t.decode_time, *want, "pass {pass} fragment {i}");
                    }
                    next.insert(t.track_id, t.decode_time + t.duration);
                }
            }
        }
        assert_eq!(next[&1], 2 * 16 * 15_360);
        assert_eq!(next[&2], 2 * 16 * 48_000);
    }
}
