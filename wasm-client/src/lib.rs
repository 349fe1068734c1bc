//! Shoal's browser peer: drives a [`swarm::Peer`] with the browser's WebSocket (signaling),
//! `RTCPeerConnection`/`RTCDataChannel` (neighbours), `fetch` (the HTTP fallback) and one
//! timer, and plays the verified chunks through Media Source Extensions.
//!
//! The public JavaScript API is `web/shoal.js` (typed by `web/shoal.d.ts`); it fetches the
//! channel's description, checks the browser, and creates a [`Client`] here. Everything the
//! client registers with the browser is owned by a Rust value that unregisters it on drop.

#[cfg(target_arch = "wasm32")]
mod driver;
#[cfg(target_arch = "wasm32")]
mod link;
#[cfg(target_arch = "wasm32")]
mod media;
mod options;

#[cfg(all(test, target_arch = "wasm32"))]
mod browser_tests;

pub use options::Options;
pub use swarm;

#[cfg(target_arch = "wasm32")]
pub use client::Client;

#[cfg(target_arch = "wasm32")]
mod client {
    use std::cell::RefCell;
    use std::rc::Rc;

    use wasm_bindgen::prelude::*;

    use crate::driver::Driver;
    use crate::options::Options;

    /// One player: a video element watching one channel. Created by `shoal.js`.
    #[wasm_bindgen]
    pub struct Client {
        driver: Rc<RefCell<Driver>>,
    }

    #[wasm_bindgen]
    impl Client {
        /// Starts playing. `options` is a JSON [`Options`]; `on_event(kind, json)` hears
        /// `state`, `stats`, `peer` and `error` events (called outside any Rust borrow).
        #[wasm_bindgen(constructor)]
        pub fn new(
            video: web_sys::HtmlVideoElement,
            options: &str,
            on_event: js_sys::Function,
        ) -> Result<Client, JsError> {
            let options = Options::parse(options).map_err(|e| JsError::new(&e))?;
            let driver = Driver::start(video, options, on_event).map_err(|e| JsError::new(&e))?;
            Ok(Client { driver })
        }

        /// The player's counters as JSON (see `Stats` in shoal.d.ts).
        pub fn stats(&self) -> String {
            match self.driver.try_borrow() {
                Ok(d) => d.stats_json(),
                Err(_) => "null".to_owned(),
            }
        }

        /// Stops everything: signaling, connections, fetches, timers; detaches the video.
        pub fn destroy(&self) {
            Driver::destroy(&self.driver);
        }
    }

    impl Drop for Client {
        fn drop(&mut self) {
            Driver::destroy(&self.driver);
        }
    }
}
