//! The browser glue in a real browser: `cargo test --target wasm32-unknown-unknown -p
//! shoal-wasm-client` with wasm-bindgen-test-runner and headless Chromium (scripts/test).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

use crate::link::{self, Link, LinkEvent};
use crate::media::{Media, MediaEvent};

wasm_bindgen_test_configure!(run_in_browser);

/// The server's demo clip: fragmented MP4, H.264 baseline + AAC, 0.5 s fragments.
const DEMO: &[u8] = include_bytes!("../../server/assets/demo.mp4");
const DEMO_MIME: &str = "video/mp4; codecs=\"avc1.42c01e,mp4a.40.2\"";

async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let _ = web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}

/// Waits up to `ms` for `cond`.
async fn until(ms: i32, mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..ms / 20 {
        if cond() {
            return true;
        }
        sleep(20).await;
    }
    cond()
}

/// Splits a fragmented MP4 into its init segment (`ftyp`+`moov`) and `moof`+`mdat` fragments.
fn split_fragments(mut data: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut init = Vec::new();
    let mut fragments: Vec<Vec<u8>> = Vec::new();
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        let (b, rest) = data.split_at(size);
        match &b[4..8] {
            b"ftyp" | b"moov" => init.extend_from_slice(b),
            b"moof" => fragments.push(b.to_vec()),
            b"mdat" => fragments.last_mut().unwrap().extend_from_slice(b),
            _ => {}
        }
        data = rest;
    }
    (init, fragments)
}

fn video() -> web_sys::HtmlVideoElement {
    let doc = web_sys::window().unwrap().document().unwrap();
    let v: web_sys::HtmlVideoElement = doc.create_element("video").unwrap().unchecked_into();
    v.set_muted(true);
    doc.body().unwrap().append_child(&v).unwrap();
    v
}

#[wasm_bindgen_test]
async fn media_source_plays_chunks_on_the_clock() {
    let (init, fragments) = split_fragments(DEMO);
    assert!(
        fragments.len() >= 8,
        "demo has {} fragments",
        fragments.len()
    );
    let events = Rc::new(RefCell::new(Vec::new()));
    let ev = events.clone();
    let v = video();
    let mut media = Media::new(v.clone(), DEMO_MIME, move |e| ev.borrow_mut().push(e)).unwrap();
    assert!(until(5000, || events.borrow().contains(&MediaEvent::Open)).await);
    let ev = events.clone();
    media.open(init, move |e| ev.borrow_mut().push(e)).unwrap();
    // Origin timestamps 0.5 s apart, as the server cuts them.
    let t0 = 1_700_000_000_000_000u64;
    for (i, f) in fragments.iter().take(8).enumerate() {
        media.push(f.clone(), t0 + i as u64 * 500_000);
    }
    // Each append finishes with updateend; the driver pumps the queue on it.
    let ok = until(10_000, || {
        media.pump();
        media.media_time(t0).is_some() && media.buffer_ahead() > 3.0
    })
    .await;
    assert!(ok, "buffered ahead: {}", media.buffer_ahead());
    let base = media.media_time(t0).unwrap();
    let later = media.media_time(t0 + 1_000_000).unwrap();
    assert!((later - base - 1.0).abs() < 1e-6);
    // The controller holds playback back until the clock reaches the media, then starts it
    // at the target and keeps it there.
    assert_eq!(media.control(base - 1.0, 1.0), 0.0);
    assert!(v.paused());
    media.control(base + 0.5, 1.0);
    media.started = true;
    assert!(
        until(5000, || v.current_time() > base + 0.6).await,
        "never played"
    );
    assert!(events.borrow().contains(&MediaEvent::Playing));
    // On a clock that runs fast (the swarm's catching up), the element runs at the clock's
    // rate, a little faster still while behind it, and back at 1 with the clock.
    let now = v.current_time();
    media.control(now, 1.2);
    assert!(
        (v.playback_rate() - 1.2).abs() < 1e-6,
        "{}",
        v.playback_rate()
    );
    media.control(now + 1.0, 1.2);
    assert!(
        (v.playback_rate() - 1.25).abs() < 1e-6,
        "{}",
        v.playback_rate()
    );
    media.control(v.current_time(), 1.0);
    assert!(
        (v.playback_rate() - 1.0).abs() < 1e-6,
        "{}",
        v.playback_rate()
    );
    // Far off the clock: it seeks.
    let now = v.current_time();
    media.control(now + 2.8, 1.0);
    assert!(
        (v.current_time() - (now + 2.8)).abs() < 0.3,
        "at {}",
        v.current_time()
    );
    drop(media);
    assert!(
        v.get_attribute("src").is_none(),
        "the element is detached on drop"
    );
}

#[wasm_bindgen_test]
async fn links_connect_over_loopback_and_carry_messages() {
    // Chrome hands out plain loopback candidates only with a media permission (ENVIRONMENT.md);
    // the test browser grants it without a prompt (webdriver.json).
    let devices = web_sys::window()
        .unwrap()
        .navigator()
        .media_devices()
        .unwrap();
    let c = web_sys::MediaStreamConstraints::new();
    c.set_audio(&true.into());
    let stream = JsFuture::from(devices.get_user_media_with_constraints(&c).unwrap())
        .await
        .unwrap();
    let stream: web_sys::MediaStream = stream.unchecked_into();

    type Log = Rc<RefCell<Vec<(swarm::PeerId, LinkEvent)>>>;
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let sink: link::Sink = Rc::new(move |peer, _conn, ev| l.borrow_mut().push((peer, ev)));
    let servers = js_sys::Array::new().into();
    let mut a = Link::new(2, 1, true, &servers, sink.clone(), 0).unwrap();
    let mut b = Link::new(1, 1, false, &servers, sink, 0).unwrap();
    // Offer/answer as signaling would carry them.
    let sdp = link::set_local_description(&a.pc, web_sys::RtcSdpType::Offer)
        .await
        .unwrap();
    let d = link::description(web_sys::RtcSdpType::Offer, &sdp);
    JsFuture::from(b.pc.set_remote_description(&d))
        .await
        .unwrap();
    b.remote_description_set();
    let sdp = link::set_local_description(&b.pc, web_sys::RtcSdpType::Answer)
        .await
        .unwrap();
    let d = link::description(web_sys::RtcSdpType::Answer, &sdp);
    JsFuture::from(a.pc.set_remote_description(&d))
        .await
        .unwrap();
    a.remote_description_set();
    // Trickle candidates across and hand B its data channel, until both ends are open.
    let opened = until(10_000, || {
        for (peer, ev) in log.borrow_mut().drain(..) {
            // Events of link `a` carry its neighbour's id (2): they are for `b`, and back.
            let to = if peer == 2 { &mut b } else { &mut a };
            match ev {
                LinkEvent::Candidate {
                    candidate,
                    sdp_mid,
                    sdp_m_line_index,
                } => {
                    to.add_candidate(&candidate, sdp_mid.as_deref(), sdp_m_line_index);
                }
                LinkEvent::Channel(dc) => {
                    b.attach(dc);
                }
                _ => {}
            }
        }
        a.is_channel_open() && b.is_channel_open()
    })
    .await;
    assert!(opened, "the data channel never opened");
    // A full-size message arrives whole; the sender sees it drain.
    let msg: Vec<u8> = (0..16_384u32).map(|i| (i * 7) as u8).collect();
    assert!(a.send(&msg));
    let got = until(5000, || {
        log.borrow()
            .iter()
            .any(|(p, e)| *p == 1 && matches!(e, LinkEvent::Message(m) if *m == msg))
    })
    .await;
    assert!(got, "message not received");
    assert!(until(2000, || a.outstanding() == 0 || a.drained() > 0).await);
    // Dropping one end closes the other.
    drop(a);
    let closed = until(10_000, || {
        log.borrow()
            .iter()
            .any(|(p, e)| *p == 1 && matches!(e, LinkEvent::Closed))
    })
    .await;
    assert!(closed, "the far end never saw the close");
    for t in stream.get_tracks().iter() {
        t.unchecked_into::<web_sys::MediaStreamTrack>().stop();
    }
}

#[wasm_bindgen_test]
fn client_refuses_bad_options() {
    let v = video();
    let f = js_sys::Function::new_no_args("");
    let err = crate::Client::new(v.clone(), "{\"channel\":\"x\"}", f.clone()).err();
    assert!(err.is_some());
    let err = crate::Client::new(v, "not json", f).err();
    assert!(err.is_some());
}
