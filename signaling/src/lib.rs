//! The Kurento protocol for rkms: JSON-RPC 2.0 frames, sessions, the object
//! registry, method dispatch, events and transactions.
//!
//! A text frame travels: transport → [`engine::Connection::handle_text`] →
//! [`frame::parse_request`] → the session it names ([`session`]) → the
//! response cache → `dispatch` (create, invoke, subscribe, release, ...)
//! → an answer frame. Events raised by objects go through [`events`] to
//! each subscribed session's current connection.
//!
//! Requests are checked against the Kurento API model ([`model`]) before
//! anything runs, so a bad request gets Kurento's error code and nothing
//! else happens. This crate knows the API model, not RTP: media work is
//! done by `rkms-media`.

pub mod backend;
mod dispatch;
pub mod engine;
pub mod error;
pub mod events;
pub mod frame;
mod invoke;
pub mod model;
mod player_endpoint;
pub mod process_stats;
mod recorder_endpoint;
pub mod registry;
mod rtp_endpoint;
mod server_manager;
pub mod session;
mod uri_endpoint;
pub mod values;
mod webrtc_endpoint;
mod webrtc_stats;

pub use engine::{Connection, Engine, EngineConfig};
pub use error::{ErrorCode, RpcError};
