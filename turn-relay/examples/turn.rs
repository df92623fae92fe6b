//! `rkms turn` without the rest of rkms: the same options, for tests and
//! benchmarks of the relay alone (`cargo run -p rkms-turn --example turn -- --help`).

use clap::Parser as _;
use rkms_turn::cli::{self, TurnArgs};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(TurnArgs::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkms turn: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
