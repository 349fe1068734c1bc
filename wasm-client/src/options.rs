//! What `shoal.js` hands the client: the player's options and the channel's description
//! (from `GET /api/channels/{name}`), as one JSON object. Plain Rust, tested natively.

use serde::Deserialize;
use swarm::{Config, VerifyingKey};

/// The client's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Options {
    /// The server's base URL, e.g. `https://live.example.org` (no trailing slash needed).
    pub server: String,
    /// The channel.
    pub channel: String,
    /// The channel's Ed25519 public key, hex.
    pub public_key: String,
    /// MIME type with codecs for `addSourceBuffer`.
    pub mime: String,
    /// Absolute URL of the init segment.
    pub init_url: String,
    /// Absolute URL of chunk `{seq}`.
    pub chunk_url_template: String,
    /// Where a new viewer starts in HTTP-only mode.
    #[serde(default)]
    pub latest_keyframe_seq: Option<u64>,
    /// The channel's measured bitrate, bits per second.
    #[serde(default)]
    pub bitrate_bps: Option<f64>,
    /// Seconds behind the live edge to play at.
    #[serde(default)]
    pub target_delay: Option<f64>,
    /// Upload cap, bits per second.
    #[serde(default)]
    pub upload_limit: Option<f64>,
    /// Never upload.
    #[serde(default)]
    pub consume_only: bool,
    /// Never use WebRTC.
    #[serde(default)]
    pub http_only: bool,
    /// `performance.now()` when the page called `play()`, for the startup time.
    #[serde(default)]
    pub started_at: f64,
}

impl Options {
    /// Parses and checks the JSON from `shoal.js`.
    pub fn parse(json: &str) -> Result<Options, String> {
        let o: Options = serde_json::from_str(json).map_err(|e| format!("bad options: {e}"))?;
        if !signaling::protocol::valid_channel_name(&o.channel) {
            return Err(format!("bad channel name: {:?}", o.channel));
        }
        if !(o.server.starts_with("http://") || o.server.starts_with("https://")) {
            return Err(format!("server must be an http(s) URL: {:?}", o.server));
        }
        if !o.chunk_url_template.contains("{seq}") {
            return Err("chunk URL template has no {seq}".to_owned());
        }
        if let Some(d) = o.target_delay {
            if !(0.2..=60.0).contains(&d) {
                return Err(format!("targetDelay must be 0.2–60 seconds, not {d}"));
            }
        }
        if let Some(u) = o.upload_limit {
            if !(u >= 0.0 && u.is_finite()) {
                return Err(format!("uploadLimit must be ≥ 0 bits per second, not {u}"));
            }
        }
        o.key()?;
        Ok(o)
    }

    /// The channel's verifying key.
    pub fn key(&self) -> Result<VerifyingKey, String> {
        swarm::public_key_from_hex(&self.public_key)
            .ok_or_else(|| format!("bad public key: {:?}", self.public_key))
    }

    /// The upload cap in bytes per second (`Some(0)`: consume-only).
    pub fn upload_cap(&self) -> Option<u64> {
        if self.consume_only {
            return Some(0);
        }
        self.upload_limit.map(|bits| (bits / 8.0) as u64)
    }

    /// How far behind the live edge to play, microseconds (the swarm's default unless set).
    pub fn target_delay_us(&self) -> u64 {
        self.target_delay
            .map_or(Config::default().target_delay, |d| (d * 1e6) as u64)
    }

    /// The swarm settings for a browser viewer.
    pub fn swarm_config(&self) -> Config {
        let mut c = Config {
            upload_limit: self.upload_cap(),
            target_delay: self.target_delay_us(),
            ..Config::default()
        };
        if let Some(bps) = self.bitrate_bps.filter(|b| b.is_finite() && *b > 0.0) {
            c.bitrate_hint = bps / 8.0;
        }
        c
    }

    /// The signaling WebSocket's URL ([`Options::parse`] checked that the server URL is
    /// http(s); were it not, the empty URL makes the socket fail, which the driver retries).
    pub fn signaling_url(&self) -> String {
        signaling::protocol::signaling_url(&self.server).unwrap_or_default()
    }

    /// The URL of chunk `seq`.
    pub fn chunk_url(&self, seq: u64) -> String {
        self.chunk_url_template.replace("{seq}", &seq.to_string())
    }

    /// The URL of chunk `seq` for the swarm's fallback: marked `swarm`, so an origin whose
    /// HTTP budget is full may refuse it at once (503) rather than send it late.
    pub fn swarm_chunk_url(&self, seq: u64) -> String {
        self.flagged_chunk_url(seq, "swarm")
    }

    /// The URL of chunk `seq` for HTTP-only play: marked `wait`, so a Shoal origin holds the
    /// request for a chunk not yet published until it is (a plain file server ignores the
    /// mark and answers 404, and the player asks again shortly).
    pub fn waiting_chunk_url(&self, seq: u64) -> String {
        self.flagged_chunk_url(seq, "wait")
    }

    fn flagged_chunk_url(&self, seq: u64, flag: &str) -> String {
        let url = self.chunk_url(seq);
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{flag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(extra: &str) -> String {
        let key = swarm::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!(
            r#"{{"server":"https://live.example.org/","channel":"demo","publicKey":"{hex}",
            "mime":"video/mp4; codecs=\"avc1.42c01e\"","initUrl":"https://live.example.org/i",
            "chunkUrlTemplate":"https://live.example.org/c/{{seq}}"{extra}}}"#
        )
    }

    #[test]
    fn parses_and_derives() {
        let o = Options::parse(&json(r#","uploadLimit":800000,"targetDelay":2.0"#)).unwrap();
        assert_eq!(o.signaling_url(), "wss://live.example.org/ws");
        assert_eq!(o.chunk_url(42), "https://live.example.org/c/42");
        assert_eq!(o.swarm_chunk_url(42), "https://live.example.org/c/42?swarm");
        let mut q = o.clone();
        q.chunk_url_template = "https://cdn.example.org/c?n={seq}".into();
        assert_eq!(q.swarm_chunk_url(7), "https://cdn.example.org/c?n=7&swarm");
        assert_eq!(
            o.waiting_chunk_url(42),
            "https://live.example.org/c/42?wait"
        );
        assert_eq!(q.waiting_chunk_url(7), "https://cdn.example.org/c?n=7&wait");
        assert_eq!(o.upload_cap(), Some(100_000));
        assert_eq!(o.swarm_config().target_delay, 2_000_000);
        let o = Options::parse(&json(r#","consumeOnly":true"#)).unwrap();
        assert_eq!(o.swarm_config().upload_limit, Some(0));
        let plain = json("").replace("https://live", "http://live");
        assert_eq!(
            Options::parse(&plain).unwrap().signaling_url(),
            "ws://live.example.org/ws"
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Options::parse("{").is_err());
        assert!(Options::parse(&json(r#","targetDelay":0"#)).is_err());
        assert!(Options::parse(&json(r#","uploadLimit":-1"#)).is_err());
        assert!(Options::parse(&json(r#","bogus":1"#)).is_err());
        assert!(Options::parse(&json("").replace("demo", "no spaces")).is_err());
        assert!(Options::parse(&json("").replace("https://live.example.org/\"", "\"")).is_err());
        let bad_key = json("").replacen("publicKey\":\"", "publicKey\":\"zz", 1);
        assert!(Options::parse(&bad_key).is_err());
    }
}
