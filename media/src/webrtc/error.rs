//! Errors of the WebRTC layer.

/// What can go wrong with an endpoint or the host.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// The SDP text could not be parsed.
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    /// The SDP parsed but could not be applied (wrong state, nothing in common, ...).
    #[error("SDP negotiation failed: {0}")]
    Negotiation(String),
    /// An ICE candidate could not be parsed or applied.
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    /// No UDP port of the configured range could be bound.
    #[error("no free UDP port in {min}-{max} on {address}")]
    NoPort {
        /// Bind address.
        address: std::net::IpAddr,
        /// Range start.
        min: u16,
        /// Range end.
        max: u16,
    },
    /// Socket or thread set-up failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer connection could not be created.
    #[error("peer connection: {0}")]
    Peer(String),
    /// The endpoint id is already taken.
    #[error("endpoint {0} already exists")]
    Duplicate(u32),
    /// The endpoint was released (or never existed).
    #[error("unknown or released endpoint {0}")]
    UnknownEndpoint(u32),
    /// The two endpoints live on different loop threads (different groups).
    #[error("endpoints {0} and {1} are on different media threads; connect endpoints of one group")]
    DifferentThreads(u32, u32),
    /// A data channel could not be created or closed.
    #[error("data channel: {0}")]
    DataChannel(String),
    /// The host's loop thread has stopped.
    #[error("the WebRTC host has stopped")]
    HostStopped,
}
