//! Command-line options of `rkms loadtest`.

use clap::{Args, Subcommand};

use crate::floor::FloorArgs;
use crate::rpc::RpcArgs;
use crate::scenario::{MediaArgs, Plan};

#[derive(Debug, Args)]
pub struct LoadtestArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Kurento protocol throughput and latency, and memory per element.
    Rpc(RpcArgs),
    /// P publishers, each received by S subscribers (real WebRTC peers).
    One2many {
        /// Publishers (one room each).
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Subscribers of each publisher.
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// N participants in one room, each receiving every other one.
    Group {
        #[arg(long, default_value_t = 4)]
        participants: usize,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// The floor of forwarding: one SRTP protect plus one UDP send, CPU per packet.
    Floor(FloorArgs),
    /// Peers whose own media the server sends back.
    Loopback {
        #[arg(long, default_value_t = 10)]
        peers: usize,
        #[command(flatten)]
        media: MediaArgs,
    },
}

/// Runs the chosen scenario and prints its report.
pub async fn run(args: LoadtestArgs) -> Result<(), crate::Error> {
    match args.scenario {
        Scenario::Rpc(a) => crate::rpc::run(a).await,
        Scenario::Floor(a) => crate::floor::run(a).await,
        Scenario::One2many {
            publishers,
            subscribers,
            media,
        } => {
            let plan = Plan::One2many {
                publishers,
                subscribers,
            };
            crate::scenario::run(media, plan).await
        }
        Scenario::Group {
            participants,
            media,
        } => crate::scenario::run(media, Plan::Group { participants }).await,
        Scenario::Loopback { peers, media } => {
            crate::scenario::run(media, Plan::Loopback { peers }).await
        }
    }
}
