//! The `seam` binary: parse config, init tracing, bind, run.

use clap::{Args, Parser, Subcommand};
use seam_collector::AppState;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "seam",
    version,
    about = "seam customer data platform collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector.
    Serve(ServeArgs),
    /// Run the collector with the demo storefront and profile viewer.
    Demo(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SEAM_ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Directory of the built SDK, served under /sdk/.
    #[arg(long, env = "SEAM_SDK_DIR", default_value = "target/sdk")]
    sdk_dir: PathBuf,
    /// Directory of the demo storefront (demo mode).
    #[arg(long, env = "SEAM_SITE_DIR", default_value = "demo-site")]
    site_dir: PathBuf,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let (args, demo) = match cli.command {
        Command::Serve(a) => (a, false),
        Command::Demo(a) => (a, true),
    };
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    let state = AppState {
        sdk_dir: Some(args.sdk_dir),
        site_dir: demo.then_some(args.site_dir),
    };
    tracing::info!(addr = %listener.local_addr()?, demo, "Listening.");
    seam_collector::run(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
