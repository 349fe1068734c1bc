//! `shoal`: the Shoal server.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "shoal", version, about = "Peer-to-peer live video server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve channels: HTTP API, ingest and WebSocket signaling.
    Serve(shoal::ServeConfig),
    /// Join a channel as a headless relay peer (verifies and forwards, never plays).
    Peer(shoal::peer::PeerArgs),
}

/// Shoal at info; the WebRTC crates only when something is wrong.
const DEFAULT_LOG: &str = "info,rtc=warn,rtc_ice=error,rtc_dtls=error,rtc_sctp=warn,webrtc=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The WebRTC stack logs every state change at info: keep its warnings only.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .init();
    let files = shoal::raise_open_file_limit();
    tracing::debug!(files, "open file limit");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shoal: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(config) => runtime.block_on(shoal::run(config)),
        Command::Peer(args) => runtime.block_on(shoal::peer::run_relay(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e}");
            ExitCode::FAILURE
        }
    }
}
