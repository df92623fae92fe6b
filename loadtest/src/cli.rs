//! Command-line options of `rkms loadtest`.

use clap::{Args, Subcommand};

use crate::rpc::RpcArgs;

#[derive(Debug, Args)]
pub struct LoadtestArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Kurento protocol throughput and latency, and memory per element.
    Rpc(RpcArgs),
}

/// Runs the chosen scenario and prints its report.
pub async fn run(args: LoadtestArgs) -> Result<(), crate::Error> {
    match args.scenario {
        Scenario::Rpc(a) => crate::rpc::run(a).await,
    }
}
