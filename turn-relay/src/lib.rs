//! rkms's embedded STUN/TURN relay (RFC 8489, RFC 8656/5766), in place of
//! a coturn installed next to the media server.
//!
//! # Design
//! - **Codec** ([`stun`]): a zero-copy STUN parser over the received
//!   datagram and a writer into a reused buffer. The relay does its own
//!   framing rather than use the `turn` crate's server because the hot path
//!   must not allocate, and because authentication, quotas, peer policy and
//!   coturn's REST credentials all sit in the middle of request handling.
//! - **Protocol** (`core`): request handling (Binding, Allocate, Refresh,
//!   CreatePermission, ChannelBind), long-term authentication with stateless
//!   nonces that go stale ([`auth`]), the peer policy ([`policy`]), quotas
//!   and bandwidth caps. It is synchronous and writes replies into the
//!   caller's buffer; the drivers own sockets and sessions.
//! - **UDP driver**: one task per listening socket owns the table of
//!   allocations keyed by client address, so client → peer relaying
//!   (ChannelData or Send indication) is a table lookup, a short
//!   permission/channel scan and one `sendto`. One task per allocation
//!   receives from its relay socket and writes ChannelData or a Data
//!   indication header *in front of* the payload in its receive buffer,
//!   then sends it on the listening socket: no copy, no allocation. Both
//!   read with `recvmmsg` and the allocation's task sends with `sendmmsg`
//!   (`batch`), so a loaded relay drains its sockets instead of letting
//!   the kernel drop what overflows them.
//! - **TCP/TLS driver**: one task per connection serves both directions of
//!   that connection's single allocation.
//! - **TCP relay** (RFC 6062, `tcp_relay`): over TCP or TLS a client may
//!   ask for a TCP relayed address. Connect opens a connection to a
//!   permitted peer, a permitted peer's connection to the relayed address
//!   is announced with ConnectionAttempt; either waits (at most 30 s) under
//!   a CONNECTION-ID until the client binds it from a new connection with
//!   ConnectionBind, whose task then copies bytes both ways through two
//!   fixed buffers, paced (not dropped) by the bandwidth cap.
//! - **Peer policy**: loopback, private, link-local, multicast, reserved and
//!   unspecified peers — in any IPv4-embedding IPv6 form — are refused unless
//!   configured (`allowed-peer-ip`, `allow-loopback-peers`). Inside rkms, the
//!   media server's own sockets are reachable by exact address and port
//!   ([`Relay::start_for_media`]), so relay-only clients need no set-up.
//!
//! # Use
//! [`Relay::start`] with a [`TurnConfig`] returns a [`RelayHandle`] giving
//! the bound addresses, [`MetricsSnapshot`]s and short-lived credentials
//! for rkms's own endpoints ([`RelayHandle::mint_credentials`]); `rkms turn`
//! runs the same relay from coturn-style flags ([`cli`]).

mod allocation;
pub mod auth;
mod batch;
pub mod cli;
mod config;
mod core;
mod metrics;
pub mod policy;
mod relay;
pub mod stun;
mod tcp;
mod tcp_relay;
mod tls;
mod udp;

pub use config::TurnConfig;
pub use metrics::MetricsSnapshot;
pub use relay::{Credentials, Relay, RelayHandle};

/// Errors of the relay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid TURN configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS set-up: {0}")]
    Tls(String),
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("waiting for a shutdown signal: {0}")]
    Signal(std::io::Error),
}
