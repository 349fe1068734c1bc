//! The Shoal server as a library: the `shoal` binary and the integration tests build on it.

pub mod http;
pub mod media;
pub mod peer;
pub mod signal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use axum::Router;

use crate::media::{Media, MediaOptions};
use crate::peer::seeder::SeederOptions;
use crate::signal::{ChannelDirectory, ChannelInfo, Signal, SignalConfig, StaticDirectory};

/// Options of `shoal serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on (HTTP and WebSocket).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Signaling limits.
    #[command(flatten)]
    pub signal: SignalConfig,
    /// Channels, ingest and the demo.
    #[command(flatten)]
    pub media: MediaOptions,
    /// The origin seeder.
    #[command(flatten)]
    pub seeder: SeederOptions,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            signal: SignalConfig::default(),
            media: MediaOptions::default(),
            seeder: SeederOptions::default(),
        }
    }
}

/// The services behind the router.
#[derive(Clone)]
pub struct App {
    /// WebSocket signaling.
    pub signal: Signal,
    /// Channels: ingest, segmenter, signed chunks, the demo.
    pub media: Arc<Media>,
    /// The origin seeder's settings.
    pub seeder: SeederOptions,
}

/// Channels the registry knows, then (with `--any-channel`) any other name.
struct Directory {
    media: Arc<Media>,
    fallback: StaticDirectory,
}

impl ChannelDirectory for Directory {
    fn lookup(&self, name: &str) -> Option<ChannelInfo> {
        self.media
            .lookup(name)
            .or_else(|| self.fallback.lookup(name))
    }
}

impl App {
    /// Builds every service from the configuration. Fails on a bad channel config or an
    /// unreadable key.
    pub fn new(config: &ServeConfig) -> std::io::Result<Self> {
        let media = Media::new(&config.media).map_err(std::io::Error::other)?;
        let directory = Arc::new(Directory {
            media: media.clone(),
            fallback: StaticDirectory::new(config.signal.any_channel),
        });
        let signal = Signal::new(config.signal.clone(), directory);
        let viewers = signal.clone();
        let _ = media
            .hooks
            .viewers
            .set(Box::new(move |channel| viewers.viewers(channel) as u64));
        let stats = signal.clone();
        media
            .hooks
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(move |out| {
                for (name, value) in stats.stats().snapshot() {
                    let kind = if name.ends_with("_total") {
                        "counter"
                    } else {
                        "gauge"
                    };
                    out.push_str(&format!(
                        "# TYPE shoal_{name} {kind}\nshoal_{name} {value}\n"
                    ));
                }
            }));
        Ok(App {
            signal,
            media,
            seeder: config.seeder.clone(),
        })
    }
}

/// The whole HTTP surface: each service merges its routes here.
pub fn router(app: &App) -> Router {
    Router::new()
        .merge(app.signal.router())
        .merge(http::router(app.media.clone()))
}

/// How long shutdown waits for open WebSockets to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` completes, then closes every WebSocket
/// (code 1001) and finishes in-flight requests. Sets TCP_NODELAY on every socket: signaling
/// messages are small and Nagle plus delayed ACKs would add ~40 ms to each.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(&app);
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("TCP_NODELAY: {e}");
        }
    });
    let signal = app.signal.clone();
    let demo = app.media.start();
    // One origin seeder per channel, talking to this very server over loopback.
    let seeders: Vec<_> = if app.seeder.no_seeder {
        Vec::new()
    } else {
        app.media
            .channels()
            .map(|channel| {
                let media = app.media.clone();
                let name = channel.name().to_owned();
                tokio::spawn(peer::seeder::run(
                    Arc::clone(channel),
                    addr,
                    app.signal.seeder_token().to_owned(),
                    app.seeder.clone(),
                    Arc::new(move || media.viewers(&name)),
                ))
            })
            .collect()
    };
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            signal.shutdown(SHUTDOWN_GRACE).await;
        })
        .await;
    if let Some(demo) = demo {
        demo.abort();
    }
    for s in seeders {
        s.abort();
    }
    result
}

/// Binds `config.listen`, prints the URL and serves until SIGINT or SIGTERM.
pub async fn run(config: ServeConfig) -> std::io::Result<()> {
    // Configuration errors first, so nothing claims to serve when it will not.
    let app = App::new(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    // A wildcard address is not something a browser can open: show loopback instead.
    let shown = if addr.ip().is_unspecified() {
        let ip: std::net::IpAddr = match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        std::net::SocketAddr::new(ip, addr.port())
    } else {
        addr
    };
    println!("shoal: serving on http://{shown}/ (signaling at ws://{shown}/ws)");
    if app.media.channel(media::DEMO_CHANNEL).is_some() {
        println!(
            "shoal: the demo channel plays at http://{shown}/c/{}",
            media::DEMO_CHANNEL
        );
    }
    serve(listener, app, shutdown_signal()).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Raises the open-file soft limit to the hard limit (each peer holds a socket); returns the
/// limit now in force.
pub fn raise_open_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
