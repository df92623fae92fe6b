//! `rkms`: the Kurento-compatible media server.

mod config;
mod endpoint_settings;
mod http;
mod rtp_endpoint;
mod uri_elements;
mod webrtc_backend;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::serve::ListenerExt;
use clap::{Parser, Subcommand};
use rkms_signaling::{Engine, EngineConfig};
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::endpoint_settings::EndpointSettings;
use crate::webrtc_backend::WebRtcBackend;

#[derive(Debug, Parser)]
#[command(name = "rkms", version, about = "A Kurento-compatible media server")]
struct Cli {
    /// Address to listen on (default from the configuration: 0.0.0.0).
    #[arg(long)]
    bind: Option<String>,
    /// Port to listen on; 0 picks a free one (default: 8888).
    #[arg(long)]
    port: Option<u16>,
    /// A Kurento `kurento.conf.json`; the embedded defaults fill the rest.
    #[arg(long, short = 'f', alias = "conf-file")]
    config: Option<PathBuf>,
    /// Folder of Kurento's module settings (`WebRtcEndpoint.conf.ini`, ...);
    /// default: `modules/kurento` beside the configuration file.
    #[arg(long)]
    modules_config_path: Option<PathBuf>,
    /// Log filter in RUST_LOG syntax, e.g. `info` or `rkms_signaling=debug` (default: `info`;
    /// `warn,rtc=error` for `loadtest`, whose thousands of peers would otherwise drown its
    /// report).
    #[arg(long, env = "RUST_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs only the STUN/TURN relay, with coturn's flag names.
    Turn(Box<rkms_turn::cli::TurnArgs>),
    /// Measures a running rkms (see `rkms loadtest --help`).
    Loadtest(Box<rkms_loadtest::cli::LoadtestArgs>),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_log = match cli.command {
        // The load test's own peers warn of STUN checks that arrive before their answer is
        // applied, hundreds of times during a ramp: expected, so kept out by default.
        Some(Command::Loadtest(_)) => "warn,rtc=error",
        _ => "info",
    };
    let log = cli.log.as_deref().unwrap_or(default_log);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_new(log).context("invalid log filter")?)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rkms")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Some(Command::Turn(args)) => rkms_turn::cli::run(*args).await.map_err(Into::into),
            Some(Command::Loadtest(args)) => {
                rkms_loadtest::cli::run(*args).await.map_err(Into::into)
            }
            None => serve(cli.bind, cli.port, cli.config, cli.modules_config_path).await,
        }
    })
}

async fn serve(
    bind: Option<String>,
    port: Option<u16>,
    file: Option<PathBuf>,
    modules_dir: Option<PathBuf>,
) -> Result<()> {
    let mut config = Config::load(file.as_deref())?;
    let modules_dir = modules_dir.or_else(|| {
        let dir = file.as_deref()?.parent()?.join("modules/kurento");
        dir.is_dir().then_some(dir)
    });
    let env: HashMap<String, String> = std::env::vars().collect();
    config.apply_env(&env);
    let endpoint_settings = EndpointSettings::load(modules_dir.as_deref(), &env)?;
    let recording_roots =
        rkms_recorder::path_policy::RecordingRoots::new(config.recording_roots.clone());
    let webrtc = WebRtcBackend::start(&endpoint_settings, recording_roots)?;
    if let Some(bind) = bind {
        config.address = bind;
    }
    if let Some(port) = port {
        config.port = port;
    }
    let turn = start_turn(config.turn.clone(), webrtc.media_addrs()).await;
    if let Some(relay) = &turn
        && endpoint_settings.turn_url.is_none()
    {
        webrtc.use_embedded_relay(relay);
    }
    let engine = Engine::with_backend(
        EngineConfig {
            gc_period: config.gc_period,
            metadata: format!("rkms {}", env!("CARGO_PKG_VERSION")),
        },
        Some(Arc::new(webrtc)),
    );
    tokio::spawn(engine.clone().run_garbage_collector());

    let listener = tokio::net::TcpListener::bind((config.address.as_str(), config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.address, config.port))?;
    let local: SocketAddr = listener.local_addr()?;
    // An answer often follows an event its request raised (ElementConnected, IceCandidateFound):
    // with Nagle on, that second small frame waited for the client's delayed ACK, ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    // Tests and scripts read this line to learn the port when 0 was asked.
    println!("rkms listening on ws://{local}/{}", config.path);
    tracing::info!(%local, path = %config.path, "serving the Kurento protocol");

    axum::serve(listener, http::router(engine, &config.path))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    if let Some(relay) = turn {
        relay.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the embedded relay when enabled. Clients may relay to rkms's own
/// media sockets (`media_addrs`, exact addresses and ports) with no peer
/// policy configured, so relay-only browsers work out of the box. A relay
/// that cannot start (its port taken, say) is logged and left out: the media
/// server still serves.
async fn start_turn(
    config: rkms_turn::TurnConfig,
    media_addrs: Vec<SocketAddr>,
) -> Option<rkms_turn::RelayHandle> {
    if !config.enabled {
        return None;
    }
    match rkms_turn::Relay::start_for_media(config, media_addrs).await {
        Ok(relay) => {
            println!("rkms TURN relay on {}", relay.urls().join(" "));
            Some(relay)
        }
        Err(e) => {
            tracing::error!(error = %e, "embedded TURN relay not started");
            None
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
