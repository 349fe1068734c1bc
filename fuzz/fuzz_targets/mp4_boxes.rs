//! Any bytes a broadcaster pushes to `/ingest/{channel}`: the segmenter never panics, and
//! feeding the bytes in two parts gives exactly what feeding them at once gives. Inputs with
//! an odd first byte follow the demo clip's init segment, so the fuzzer reaches `moof`
//! parsing without having to invent a valid `moov` first.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shoal::media::demo::CLIP;
use shoal::media::segmenter::{Event, Limits, Segmenter};

fn init() -> &'static [u8] {
    static INIT: OnceLock<Vec<u8>> = OnceLock::new();
    INIT.get_or_init(|| {
        let mut s = Segmenter::new(Limits::default());
        let mut events = Vec::new();
        let _ = s.push(CLIP, &mut events);
        match events.first() {
            Some(Event::Init(i)) => i.bytes.clone(),
            _ => Vec::new(),
        }
    })
}

fn run(parts: &[&[u8]]) -> (Vec<Event>, bool) {
    let mut s = Segmenter::new(Limits::default());
    let mut events = Vec::new();
    for p in parts {
        if s.push(p, &mut events).is_err() {
            return (events, false);
        }
    }
    let ok = s.finish().is_ok();
    for e in &events {
        if let Event::Fragment(f) = e {
            let _ = (f.duration_us(), f.keyframe(), f.init.codecs(), f.init.mime());
        }
    }
    (events, ok)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if first & 1 == 1 {
        input.extend_from_slice(init());
    }
    input.extend_from_slice(rest);
    let cut = (usize::from(first >> 1) * 97) % (input.len() + 1);
    let whole = run(&[&input]);
    let split = run(&[&input[..cut], &input[cut..]]);
    assert_eq!(whole, split);
});
