//! Live media: the channel registry, push ingest, the fMP4 segmenter, chunk signing and
//! the built-in demo channel.
//!
//! The seeder and signaling use [`Media::channel`] then [`Channel::subscribe`] (new chunks),
//! [`Channel::window`] / [`Channel::chunk`] (recent chunks), [`Channel::init`] (codec and
//! init segment) and [`Channel::counters`] (bytes out, verification failures).

pub mod channel;
pub mod codec;
pub mod demo;
pub mod fragment;
pub mod ingest;
pub mod init;
pub mod keys;
pub mod mp4;
pub mod segmenter;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use swarm::SigningKey;

pub use channel::{Channel, ChannelCounters, PublishedInit, Snapshot};

/// Name of the built-in demo channel.
pub const DEMO_CHANNEL: &str = "demo";

/// How the media side is configured: from the command line, merged with a config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MediaOptions {
    /// Channel config file (TOML): `data_dir`, `demo` and `[[channel]]` tables with
    /// `name`, `stream_key` and optionally `signing_key` / `signing_key_file`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A push-ingest channel and its stream key (repeatable).
    #[arg(long = "channel", value_name = "NAME:KEY")]
    pub channels: Vec<String>,
    /// Where channel signing keys are kept (generated on first use) [default: ./shoal-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Leave out the built-in demo channel.
    #[arg(long)]
    pub no_demo: bool,
    /// Upload the HTTP chunk fallback may use, all channels together, in bits per second
    /// with an optional k, M or G suffix (`30M`): typically the origin's link less the
    /// seeder's cap. A swarm viewer's fallback request that would wait more than a second
    /// behind the chunks already being sent gets 503 at once, so it turns to its peers or
    /// skips instead of waiting for a chunk that comes too late (viewers in HTTP-only mode
    /// are always served, and count towards the queue). Default: no limit.
    #[arg(long, value_name = "RATE", value_parser = crate::peer::parse_rate)]
    pub http_fallback_rate: Option<u64>,
}

/// The HTTP chunk fallback's share of the origin's upload, kept as a queue: each chunk
/// served books its bytes at the configured rate, after the ones before it.
#[derive(Debug)]
pub struct HttpBudget {
    bytes_per_s: f64,
    /// When what is booked so far has left, at the configured rate.
    free_at: Mutex<Instant>,
}

impl HttpBudget {
    /// How deep the queue may be before a refusable request is refused.
    pub const MAX_QUEUE: Duration = Duration::from_secs(1);

    /// A budget of `bits_per_s` (at least 1 bit per second).
    pub fn new(bits_per_s: u64) -> Self {
        HttpBudget {
            bytes_per_s: bits_per_s.max(1) as f64 / 8.0,
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// Books `bytes` behind what is queued and returns true, or, when the request is
    /// `refusable` and the queue is already more than [`Self::MAX_QUEUE`] deep, books
    /// nothing and returns false.
    pub fn book(&self, bytes: usize, refusable: bool) -> bool {
        let now = Instant::now();
        let mut free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*free_at).max(now);
        if refusable && start > now + Self::MAX_QUEUE {
            return false;
        }
        // (At most a day: anything longer refuses the same, and the clock cannot overflow.)
        let day = Duration::from_secs(86_400);
        let took = Duration::try_from_secs_f64(bytes as f64 / self.bytes_per_s)
            .map_or(day, |t| t.min(day));
        *free_at = start.checked_add(took).unwrap_or(start);
        true
    }
}

#[derive(Debug, Deserialize, Default)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    demo: Option<bool>,
    #[serde(default)]
    channel: Vec<FileChannel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChannel {
    name: String,
    stream_key: String,
    /// The channel's Ed25519 secret key, 64 hex digits (else generated and kept).
    signing_key: Option<String>,
    /// A file holding that hex key.
    signing_key_file: Option<PathBuf>,
}

/// Checks a channel name: 1–64 of `A-Z a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses a `--channel NAME:KEY` value.
pub fn parse_channel_flag(value: &str) -> Result<(String, String), String> {
    let (name, key) = value
        .split_once(':')
        .ok_or_else(|| format!("--channel {value:?}: expected NAME:KEY"))?;
    if !valid_name(name) {
        return Err(format!(
            "--channel {value:?}: a channel name is 1-64 of A-Z a-z 0-9 _ -"
        ));
    }
    if key.is_empty() {
        return Err(format!("--channel {value:?}: the stream key is empty"));
    }
    Ok((name.to_string(), key.to_string()))
}

/// Viewers of a channel, by name.
pub type ViewerCount = Box<dyn Fn(&str) -> u64 + Send + Sync>;
/// Appends Prometheus text.
pub type MetricsWriter = Box<dyn Fn(&mut String) + Send + Sync>;

/// Hooks other server parts plug in, so this module needs none of their types.
#[derive(Default)]
pub struct Hooks {
    /// Viewers currently in a channel's swarm (from signaling).
    pub viewers: OnceLock<ViewerCount>,
    /// Extra Prometheus text appended to `/metrics` (signaling, seeder).
    pub metrics: Mutex<Vec<MetricsWriter>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

/// The channel registry. Channels are fixed at start-up.
#[derive(Debug)]
pub struct Media {
    channels: BTreeMap<String, Arc<Channel>>,
    demo: bool,
    /// The HTTP chunk fallback's upload budget (`--http-fallback-rate`), if limited.
    pub http_budget: Option<HttpBudget>,
    /// Plug-in points for signaling and the seeder.
    pub hooks: Hooks,
}

impl Media {
    /// Builds the registry: reads the config file, merges the flags, loads or creates each
    /// channel's signing key.
    pub fn new(options: &MediaOptions) -> Result<Arc<Media>, String> {
        let file: FileConfig = match &options.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let data_dir = options
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("shoal-data"));
        let demo = !options.no_demo && file.demo.unwrap_or(true);
        let mut channels = BTreeMap::new();
        let mut add = |name: String, key: Option<String>, signing: SigningKey| {
            if channels.contains_key(&name) {
                return Err(format!("channel {name:?} is configured twice"));
            }
            let channel = Arc::new(Channel::new(name.clone(), key, signing));
            channels.insert(name, channel);
            Ok(())
        };
        for c in file.channel {
            if !valid_name(&c.name) || c.name == DEMO_CHANNEL {
                return Err(format!("invalid channel name {:?}", c.name));
            }
            let signing = signing_key(&data_dir, &c)?;
            add(c.name, Some(c.stream_key), signing)?;
        }
        for flag in &options.channels {
            let (name, key) = parse_channel_flag(flag)?;
            if name == DEMO_CHANNEL {
                return Err("the channel name \"demo\" is reserved for the demo".into());
            }
            let signing = keys::load_or_create(&data_dir, &name)?;
            add(name, Some(key), signing)?;
        }
        if demo {
            let signing = keys::load_or_create(&data_dir, DEMO_CHANNEL)?;
            add(DEMO_CHANNEL.to_string(), None, signing)?;
        }
        Ok(Arc::new(Media {
            channels,
            demo,
            http_budget: options.http_fallback_rate.map(HttpBudget::new),
            hooks: Hooks::default(),
        }))
    }

    /// A registry with no channels at all (no demo, nothing on disk): for tests of other
    /// services.
    pub fn without_channels() -> Arc<Media> {
        Arc::new(Media {
            channels: BTreeMap::new(),
            demo: false,
            http_budget: None,
            hooks: Hooks::default(),
        })
    }

    /// Starts the demo loop, if the demo channel is on. Needs a tokio runtime.
    pub fn start(&self) -> Option<tokio::task::JoinHandle<()>> {
        if !self.demo {
            return None;
        }
        let channel = self.channel(DEMO_CHANNEL)?;
        Some(tokio::spawn(demo::run(channel)))
    }

    /// The channel called `name`.
    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.get(name).cloned()
    }

    /// All channels, by name.
    pub fn channels(&self) -> impl Iterator<Item = &Arc<Channel>> {
        self.channels.values()
    }

    /// Viewers of `channel` as signaling counts them (0 until signaling plugs in).
    pub fn viewers(&self, channel: &str) -> u64 {
        self.hooks.viewers.get().map_or(0, |f| f(channel))
    }
}

impl crate::signal::ChannelDirectory for Media {
    fn lookup(&self, name: &str) -> Option<crate::signal::ChannelInfo> {
        let channel = self.channel(name)?;
        Some(crate::signal::ChannelInfo {
            public_key: channel.public_key().to_string(),
            codec: channel.init().map(|i| i.codec.clone()),
            init_url: format!("/api/channels/{name}/init"),
            chunk_url: Some(format!("/api/channels/{name}/chunks/{{seq}}")),
        })
    }
}

fn signing_key(data_dir: &Path, c: &FileChannel) -> Result<SigningKey, String> {
    let hex = match (&c.signing_key, &c.signing_key_file) {
        (Some(k), None) => k.clone(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?
        }
        (None, None) => return keys::load_or_create(data_dir, &c.name),
        (Some(_), Some(_)) => {
            return Err(format!(
                "channel {:?}: give signing_key or signing_key_file, not both",
                c.name
            ))
        }
    };
    let bytes = keys::parse_key_hex(&hex).map_err(|e| format!("channel {:?}: {e}", c.name))?;
    Ok(SigningKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("shoal-media-{name}-{}", std::process::id()))
    }

    #[test]
    fn the_http_budget_refuses_only_refusable_requests_past_a_second_of_queue() {
        // 1,000 bytes a second: 2,000 bytes book 2 s.
        let budget = HttpBudget::new(8_000);
        assert!(budget.book(2_000, true), "an empty queue takes anything");
        assert!(!budget.book(10, true), "2 s deep: refused");
        assert!(budget.book(10, false), "not refusable: queued behind");
        // Zero is a rate too (nothing is ever sent quickly), and no size overflows the clock.
        let none = HttpBudget::new(0);
        assert!(none.book(usize::MAX, true));
        assert!(!none.book(1, true));
        assert!(none.book(usize::MAX, false));
    }

    #[test]
    fn config_file_and_flags_merge() {
        let dir = temp("cfg");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("shoal.toml");
        let key = "11".repeat(32);
        std::fs::write(
            &config,
            format!(
                "demo = false\n[[channel]]\nname = \"studio\"\nstream_key = \"a\"\n\
                 signing_key = \"{key}\"\n"
            ),
        )
        .unwrap();
        let options = MediaOptions {
            config: Some(config.clone()),
            channels: vec!["talk:b".into()],
            data_dir: Some(dir.join("data")),
            no_demo: false,
            http_fallback_rate: None,
        };
        let media = Media::new(&options).unwrap();
        let names: Vec<_> = media.channels().map(|c| c.name().to_string()).collect();
        assert_eq!(names, ["studio", "talk"]);
        let studio = media.channel("studio").unwrap();
        let expected = SigningKey::from_bytes(&[0x11; 32]).verifying_key();
        assert_eq!(studio.verifying_key(), expected);
        assert!(studio.check_key("a") && !studio.check_key("b"));
        // talk's generated key is kept: a restart signs with the same key.
        let again = Media::new(&options).unwrap();
        assert_eq!(
            again.channel("talk").unwrap().public_key(),
            media.channel("talk").unwrap().public_key()
        );

        let twice = MediaOptions {
            channels: vec!["studio:x".into()],
            ..options.clone()
        };
        assert!(Media::new(&twice).unwrap_err().contains("twice"));
        std::fs::write(&config, "[[channel]]\nname = \"x\"\nstreamkey = \"a\"\n").unwrap();
        assert!(Media::new(&options).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn channel_flags_are_checked() {
        assert!(parse_channel_flag("a:b").is_ok());
        assert!(parse_channel_flag("a:b:c").is_ok());
        assert!(parse_channel_flag("ab").is_err());
        assert!(parse_channel_flag("a:").is_err());
        assert!(parse_channel_flag("a/b:c").is_err());
        assert!(parse_channel_flag(":c").is_err());
    }
}
