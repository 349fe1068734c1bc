//! Playback through Media Source Extensions: one `SourceBuffer`, the init segment first, then
//! verified chunks in order. Appends and removals are queued and run one at a time (a
//! `SourceBuffer` takes one operation until `updateend`). The controller keeps the video
//! element's position on the swarm's playout clock: the clock's own rate (faster while it
//! catches up) with a slight correction to close the gap, a seek when far off, gap skipping
//! after a stall, and trimming of what lies behind the playhead so memory stays flat over
//! hours.

use std::collections::VecDeque;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{HtmlVideoElement, MediaSource, MediaSourceReadyState, SourceBuffer, TimeRanges};

/// Seconds kept behind the playhead (enough to rewind a little).
const KEEP_BEHIND: f64 = 10.0;
/// Trim once this much lies behind the playhead.
const TRIM_AFTER: f64 = 30.0;
/// Seek instead of changing the rate when this far (seconds) from the target.
const SEEK_OVER: f64 = 2.5;
/// Within this distance of the target (seconds) play at normal speed.
const DEAD_ZONE: f64 = 0.12;
/// Most the correction moves the rate away from the clock's (5 %: barely audible).
const MAX_RATE_CHANGE: f64 = 0.05;
/// How much earlier than the playout clock (seconds) the first frame may start.
const EARLY_START: f64 = 0.3;
/// Chunks waiting for the source buffer at most; beyond, the oldest are dropped (a tab in
/// the background that stops decoding must not grow without bound).
const MAX_QUEUED: usize = 240;

/// An event listener the media element holds: (event, target, callback).
type Listener = (&'static str, web_sys::EventTarget, Closure<dyn FnMut()>);

enum Op {
    Append(Vec<u8>),
    Remove(f64, f64),
}

/// What the media element did that the driver must know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaEvent {
    /// The source buffer can take data.
    Open,
    /// An append or removal finished.
    Updated,
    /// The element started or resumed playing.
    Playing,
    /// The element ran out of data.
    Waiting,
    /// The decoder or source buffer failed.
    Error,
}

pub(crate) struct Media {
    video: HtmlVideoElement,
    source: MediaSource,
    url: String,
    mime: String,
    buffer: Option<SourceBuffer>,
    queue: VecDeque<Op>,
    /// Origin timestamp (µs) and media time (s) of the first chunk appended, once known.
    base: Option<(u64, f64)>,
    /// The first chunk's timestamp while its append is in flight.
    first_ts: Option<u64>,
    /// Whether the element has played at all.
    pub(crate) started: bool,
    /// Since when the element waits for data (driver clock, µs).
    pub(crate) stalled_since: Option<u64>,
    pub(crate) failed: Option<String>,
    listeners: Vec<Listener>,
    detached: bool,
}

impl Media {
    /// Attaches a new `MediaSource` to `video`; `notify` hears about its events.
    pub(crate) fn new(
        video: HtmlVideoElement,
        mime: &str,
        notify: impl Fn(MediaEvent) + Clone + 'static,
    ) -> Result<Media, String> {
        let source = MediaSource::new().map_err(|e| format!("MediaSource: {e:?}"))?;
        let url = web_sys::Url::create_object_url_with_source(&source)
            .map_err(|e| format!("createObjectURL: {e:?}"))?;
        let mut m = Media {
            video: video.clone(),
            source: source.clone(),
            url,
            mime: mime.to_owned(),
            buffer: None,
            queue: VecDeque::new(),
            base: None,
            first_ts: None,
            started: false,
            stalled_since: None,
            failed: None,
            listeners: Vec::new(),
            detached: false,
        };
        let video_target: web_sys::EventTarget = video.clone().into();
        let source_target: web_sys::EventTarget = source.into();
        m.listen(
            &source_target,
            "sourceopen",
            notify.clone(),
            MediaEvent::Open,
        );
        m.listen(
            &video_target,
            "playing",
            notify.clone(),
            MediaEvent::Playing,
        );
        m.listen(
            &video_target,
            "waiting",
            notify.clone(),
            MediaEvent::Waiting,
        );
        m.listen(&video_target, "error", notify, MediaEvent::Error);
        video.set_src(&m.url);
        Ok(m)
    }

    fn listen(
        &mut self,
        target: &web_sys::EventTarget,
        name: &'static str,
        notify: impl Fn(MediaEvent) + 'static,
        event: MediaEvent,
    ) {
        let cb = Closure::<dyn FnMut()>::new(move || notify(event));
        let _ = target.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        self.listeners.push((name, target.clone(), cb));
    }

    /// Creates the source buffer (on `sourceopen`) and appends the init segment.
    pub(crate) fn open(
        &mut self,
        init: Vec<u8>,
        notify: impl Fn(MediaEvent) + 'static,
    ) -> Result<(), String> {
        if self.buffer.is_some() {
            return Ok(());
        }
        let sb = self
            .source
            .add_source_buffer(&self.mime)
            .map_err(|e| format!("addSourceBuffer({}): {e:?}", self.mime))?;
        let target: web_sys::EventTarget = sb.clone().into();
        self.listen(&target, "updateend", notify, MediaEvent::Updated);
        self.buffer = Some(sb);
        self.queue.push_front(Op::Append(init));
        self.pump();
        Ok(())
    }

    pub(crate) fn is_open(&self) -> bool {
        self.buffer.is_some()
    }

    /// Queues a verified chunk (origin timestamp `ts`, µs) for the source buffer.
    pub(crate) fn push(&mut self, bytes: Vec<u8>, ts: u64) {
        if self.base.is_none() && self.first_ts.is_none() {
            self.first_ts = Some(ts);
        }
        while self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back(Op::Append(bytes));
        self.pump();
    }

    /// Runs the next queued operation if the buffer is idle; call on `updateend` too.
    pub(crate) fn pump(&mut self) {
        let Some(sb) = &self.buffer else { return };
        if sb.updating() || self.source.ready_state() != MediaSourceReadyState::Open {
            return;
        }
        if self.base.is_none() {
            if let (Some(ts), Some(start)) = (self.first_ts, first_start(sb)) {
                self.base = Some((ts, start));
            }
        }
        let Some(op) = self.queue.pop_front() else {
            return;
        };
        let result = match op {
            Op::Append(mut bytes) => sb.append_buffer_with_u8_array(&mut bytes),
            Op::Remove(from, to) => sb.remove(from, to),
        };
        if let Err(e) = result {
            let name = e
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.name()))
                .unwrap_or_default();
            if name == "QuotaExceededError" {
                // Full: drop what lies behind the playhead and carry on with what comes next.
                let now = self.video.current_time();
                if now > 1.0 {
                    self.queue.push_front(Op::Remove(0.0, (now - 1.0).max(0.0)));
                }
            } else {
                self.failed = Some(format!("SourceBuffer: {e:?}"));
            }
        }
    }

    /// Media time (seconds) of origin timestamp `ts` (µs), once the first chunk is in.
    pub(crate) fn media_time(&self, ts: u64) -> Option<f64> {
        let (base_ts, base_t) = self.base?;
        Some(base_t + (ts as f64 - base_ts as f64) / 1e6)
    }

    /// Origin timestamp (µs) of the frame playing now.
    pub(crate) fn playing_ts(&self) -> Option<u64> {
        let (base_ts, base_t) = self.base?;
        let ts = base_ts as f64 + (self.video.current_time() - base_t) * 1e6;
        Some(ts.max(0.0) as u64)
    }

    /// Seconds buffered ahead of the playhead.
    pub(crate) fn buffer_ahead(&self) -> f64 {
        let t = self.video.current_time();
        ranges(&self.video.buffered())
            .into_iter()
            .find(|&(s, e)| s <= t + 0.05 && t < e)
            .map_or(0.0, |(_, e)| e - t)
    }

    /// Keeps the element near `target` media seconds, a clock that runs at `clock_rate`
    /// against real time (1.0, or faster while the swarm's playout clock catches up); returns
    /// how far behind it plays (positive: behind the target).
    pub(crate) fn control(&mut self, target: f64, clock_rate: f64) -> f64 {
        let v = &self.video;
        let have = ranges(&v.buffered());
        if have.is_empty() {
            return 0.0;
        }
        let now = v.current_time();
        let diff = target - now;
        let in_range = |t: f64| have.iter().any(|&(s, e)| s <= t && t < e);
        // Before the first frame: start when the playout clock reaches the buffered media
        // (a little early is fine; the rate control absorbs it), so playback begins at the
        // target delay instead of drifting back to it for many seconds.
        if !self.started && v.paused() && target < have[0].0 - EARLY_START {
            return 0.0;
        }
        if !self.started || diff.abs() > SEEK_OVER || (!in_range(now) && v.ready_state() < 3) {
            // Start, jump, or skip a hole: to the target if it is buffered, else to the
            // nearest buffered start after the playhead.
            let to = if in_range(target) {
                Some(target)
            } else {
                have.iter()
                    .map(|&(s, _)| s)
                    .filter(|&s| s > now - 0.01)
                    .min_by(|a, b| (a - target).abs().total_cmp(&(b - target).abs()))
            };
            if let Some(to) = to.filter(|to| (to - now).abs() > 0.05) {
                v.set_current_time(to);
            }
            if v.paused() {
                if let Ok(p) = v.play() {
                    // Autoplay refusal shows as a paused element; the page offers a button.
                    wasm_bindgen_futures::spawn_local(async move {
                        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
                    });
                }
            }
            v.set_playback_rate(1.0);
            return target - v.current_time();
        }
        let rate = if diff.abs() < DEAD_ZONE {
            clock_rate
        } else {
            clock_rate + (diff * 0.1).clamp(-MAX_RATE_CHANGE, MAX_RATE_CHANGE)
        };
        if (v.playback_rate() - rate).abs() > 0.001 {
            v.set_playback_rate(rate);
        }
        self.trim(now, &have);
        diff
    }

    fn trim(&mut self, now: f64, have: &[(f64, f64)]) {
        let Some(&(first, _)) = have.first() else {
            return;
        };
        let queued_remove = self.queue.iter().any(|op| matches!(op, Op::Remove(..)));
        if now - first > TRIM_AFTER && !queued_remove {
            self.queue.push_back(Op::Remove(0.0, now - KEEP_BEHIND));
            self.pump();
        }
    }

    pub(crate) fn video(&self) -> &HtmlVideoElement {
        &self.video
    }
}

impl Media {
    /// Stops feeding and releases the element (also done on drop).
    pub(crate) fn detach(&mut self) {
        if self.detached {
            return;
        }
        self.detached = true;
        for (name, target, cb) in self.listeners.drain(..) {
            let _ = target.remove_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        }
        if self.source.ready_state() == MediaSourceReadyState::Open {
            let _ = self.source.end_of_stream();
        }
        self.video.remove_attribute("src").ok();
        self.video.load();
        let _ = web_sys::Url::revoke_object_url(&self.url);
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.detach();
    }
}

fn first_start(sb: &SourceBuffer) -> Option<f64> {
    let r = sb.buffered().ok()?;
    (r.length() > 0).then(|| r.start(0).ok()).flatten()
}

fn ranges(r: &TimeRanges) -> Vec<(f64, f64)> {
    (0..r.length())
        .filter_map(|i| Some((r.start(i).ok()?, r.end(i).ok()?)))
        .collect()
}
