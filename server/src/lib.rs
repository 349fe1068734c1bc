//! The Shoal server as a library: the `shoal` binary and the integration tests build on it.

pub mod signal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use axum::Router;

use crate::signal::{Signal, SignalConfig, StaticDirectory};

/// Options of `shoal serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on (HTTP and WebSocket).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Signaling limits.
    #[command(flatten)]
    pub signal: SignalConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            signal: SignalConfig::default(),
        }
    }
}

/// The services behind the router.
#[derive(Clone)]
pub struct App {
    /// WebSocket signaling.
    pub signal: Signal,
}

impl App {
    /// Builds every service from the configuration.
    pub fn new(config: &ServeConfig) -> Self {
        let directory = Arc::new(StaticDirectory::new(config.signal.any_channel));
        App {
            signal: Signal::new(config.signal.clone(), directory),
        }
    }
}

/// The whole HTTP surface: each service merges its routes here.
pub fn router(app: &App) -> Router {
    Router::new().merge(app.signal.router())
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
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("TCP_NODELAY: {e}");
        }
    });
    let signal = app.signal.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            signal.shutdown(SHUTDOWN_GRACE).await;
        })
        .await
}

/// Binds `config.listen`, prints the URL and serves until SIGINT or SIGTERM.
pub async fn run(config: ServeConfig) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    println!("shoal: serving on http://{addr}/ (signaling at ws://{addr}/ws)");
    let app = App::new(&config);
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
