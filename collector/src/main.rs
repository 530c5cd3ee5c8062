//! The `seam` binary: parse config, init tracing, open the store, bind, run.

use clap::{Parser, Subcommand};
use seam_collector::{AppState, Config};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "seam",
    version,
    about = "seam customer data platform collector (Segment HTTP tracking API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector.
    Serve(Config),
    /// Run the collector with the demo storefront and profile viewer: creates the data dir,
    /// accepts the write key `demo-write-key`, and makes up an admin token unless given one.
    Demo(Config),
}

/// Ingestion allocates many small JSON values per request; mimalloc serves them faster and
/// returns memory more readily than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The write key the demo storefront pages use.
const DEMO_WRITE_KEY: &str = "demo-write-key";

#[tokio::main]
async fn main() -> ExitCode {
    seam_collector::os::disable_transparent_huge_pages();
    // `RUST_LOG` filters; `SEAM_LOG_FORMAT=json` gives one JSON object per line for collectors.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if std::env::var("SEAM_LOG_FORMAT").as_deref() == Ok("json") {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        // Colours only on a terminal, so files and log shippers get plain text.
        tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init();
    }
    let (mut config, demo) = match Cli::parse().command {
        Command::Serve(c) => (c, false),
        Command::Demo(c) => (c, true),
    };
    if demo {
        if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
            eprintln!(
                "seam: --data-dir {}: cannot create: {e}",
                config.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
        config.write_keys.push(DEMO_WRITE_KEY.into());
        config
            .admin_token
            .get_or_insert_with(seam_collector::auth::random_token);
        config
            .site_dir
            .get_or_insert_with(|| PathBuf::from("demo-site"));
    }
    let state = match AppState::open(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("seam: {e}");
            return ExitCode::FAILURE;
        }
    };
    if state.sources.is_empty() {
        tracing::warn!(
            "No write key configured (--write-key, SEAM_WRITE_KEYS or --config): every event will be refused."
        );
    }
    let listener = match tokio::net::TcpListener::bind(&config.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("seam: --addr {}: cannot listen: {e}", config.addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(addr = %addr, demo, data_dir = %config.data_dir.display(), "Listening.");
    if demo {
        println!("seam demo is running");
        println!("  storefront:     http://{addr}/");
        println!("  profile viewer: http://{addr}/profiles/");
        println!("  write key:      {DEMO_WRITE_KEY}");
        println!(
            "  admin token:    {}",
            config.admin_token.as_deref().unwrap_or_default()
        );
    }
    let store = state.store.clone();
    let served = seam_collector::run(listener, state, shutdown_signal()).await;
    // Every answered request is already durable; this waits for the writer to go idle.
    drop(store);
    match served {
        Ok(()) => {
            tracing::info!("Stopped.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seam: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
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
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("Shutting down: finishing in-flight requests.");
}
