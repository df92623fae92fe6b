//! `rkms loadtest`: measures a running rkms the way applications use it.
//!
//! Scenarios:
//! - `rpc`: the Kurento protocol alone: requests per second and latency of
//!   `invoke` and of `create`+`release`, with `ping` as the same-run
//!   baseline, and the server's memory per live element.

pub mod cli;
pub mod engine;
pub mod kurento;
pub mod payload;
pub mod rpc;
pub mod stats;

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
