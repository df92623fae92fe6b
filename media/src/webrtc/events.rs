//! Events an endpoint reports to the signaling layer.

use crate::graph::MediaKind;

/// ICE component state, as Kurento names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceComponentState {
    /// Not connected.
    Disconnected,
    /// Gathering candidates.
    Gathering,
    /// Checking candidate pairs.
    Connecting,
    /// A pair works.
    Connected,
    /// Checks are over and a pair is selected.
    Ready,
    /// No pair works.
    Failed,
}

/// Connection state of the transport (ICE + DTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not (or no longer) connected.
    Disconnected,
    /// Connected.
    Connected,
}

/// DTLS transport state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsState {
    /// Handshaking.
    Connecting,
    /// Keys agreed.
    Connected,
    /// Closed or failed.
    Closed,
}

/// Whether media is flowing in one direction of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Packets are passing.
    Flowing,
    /// No packets for a while.
    NotFlowing,
}

/// Something that happened to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A local candidate to send to the remote peer.
    IceCandidateFound {
        /// `candidate:...` attribute text.
        candidate: String,
        /// The m-line's mid.
        sdp_mid: String,
        /// The m-line's index.
        sdp_mline_index: u16,
    },
    /// Every local candidate has been announced.
    IceGatheringDone,
    /// The ICE component changed state.
    IceComponentStateChanged(IceComponentState),
    /// A candidate pair was selected.
    NewCandidatePairSelected {
        /// The local candidate (`candidate:...` attribute text).
        local: String,
        /// The remote candidate, peer-reflexive when it was never signalled.
        remote: String,
    },
    /// The DTLS transport changed state.
    DtlsConnectionStateChange(DtlsState),
    /// The connection changed state.
    ConnectionStateChanged(ConnectionState),
    /// Media can (or no longer can) flow.
    MediaStateChanged(ConnectionState),
    /// Incoming media of `kind` started or stopped.
    MediaFlowInStateChanged(MediaKind, FlowState),
    /// Outgoing media of `kind` started or stopped.
    MediaFlowOutStateChanged(MediaKind, FlowState),
    /// A data channel opened.
    DataChannelOpened(u16),
    /// A data channel closed.
    DataChannelClosed(u16),
    /// Something failed on this endpoint.
    Error(String),
}
