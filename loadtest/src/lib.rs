//! `rkms loadtest`: measures a running rkms the way applications use it.
//!
//! Scenarios:
//! - `rpc`: the Kurento protocol alone: requests per second and latency of
//!   `invoke` and of `create`+`release`, with `ping` as the same-run
//!   baseline, and the server's memory per live element.
//! - `one2many`, `group`, `loopback`: real WebRTC peers (ICE, DTLS, SRTP; [`engine`])
//!   set up over the Kurento protocol ([`target_kurento`]) or through Janus's VideoRoom
//!   ([`target_janus`]), sending stamped synthetic media ([`payload`]); reports loss,
//!   latency, jitter, setup time and the server's CPU and memory ([`scenario`]).

pub mod cli;
pub mod engine;
pub mod floor;
pub mod kurento;
pub mod payload;
pub mod plot;
pub mod rpc;
pub mod scenario;
pub mod stats;
pub mod target_janus;
pub mod target_kurento;
pub mod usage;
pub mod ws_rpc;

/// Errors of a load run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server answered {method} with error {code}: {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("unexpected answer to {method}: {answer}")]
    Unexpected { method: String, answer: String },
    #[error("client peer: {0}")]
    Peer(String),
    #[error("the peer threads stopped")]
    EngineStopped,
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
