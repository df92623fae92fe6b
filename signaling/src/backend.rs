//! The media core as the signaling layer sees it: a port through which
//! `create WebRtcEndpoint` gets a negotiable endpoint and the endpoint's
//! events come back. The server plugs the real WebRTC layer in; tests plug
//! a fake. Nothing here knows JSON or RTP.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rkms_media::webrtc::{BandwidthLimits, EndpointStats};
use rkms_media::{ElementId, MediaKind, Pipeline};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Constructor options of a WebRtcEndpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebRtcOptions {
    pub use_data_channels: bool,
    pub recvonly: bool,
    pub sendonly: bool,
}

/// Why an SDP or ICE operation failed; each maps to a Kurento error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("cannot parse the SDP: {0}")]
    Parse(String),
    #[error("cannot process the offer: {0}")]
    ProcessOffer(String),
    #[error("cannot process the answer: {0}")]
    ProcessAnswer(String),
    #[error("cannot generate an offer: {0}")]
    GenerateOffer(String),
    #[error("the endpoint is already negotiated")]
    AlreadyNegotiated,
    #[error("no offer was generated before this answer")]
    NotOfferGenerated,
    #[error("an answer was already processed")]
    AnswerAlreadyProcessed,
    #[error("cannot gather candidates: {0}")]
    Gather(String),
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
}

/// Could not create an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// States as Kurento names them in events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceComponentState {
    Disconnected,
    Gathering,
    Connecting,
    Connected,
    Ready,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtlsState {
    New,
    Closed,
    Failed,
    Connecting,
    Connected,
}

/// What a WebRTC endpoint reports to its clients.
#[derive(Clone, Debug, PartialEq)]
pub enum EndpointEvent {
    IceCandidateFound {
        candidate: String,
        sdp_mid: String,
        sdp_mline_index: u32,
    },
    IceGatheringDone,
    IceComponentStateChanged {
        stream_id: u32,
        component_id: u32,
        state: IceComponentState,
    },
    NewCandidatePairSelected {
        stream_id: String,
        component_id: u32,
        local_candidate: String,
        remote_candidate: String,
    },
    DtlsConnectionStateChange {
        stream_id: String,
        component_id: String,
        connection_id: String,
        state: DtlsState,
    },
    /// The transport (ICE + DTLS) is up (`true`) or down.
    Connection(bool),
    /// RTCP flows between the peers (`true`) or stopped.
    Media(bool),
    MediaFlowIn {
        kind: MediaKind,
        flowing: bool,
    },
    MediaFlowOut {
        kind: MediaKind,
        flowing: bool,
    },
    MediaSessionStarted,
    MediaSessionTerminated,
    DataChannelOpened(u32),
    DataChannelClosed(u32),
    Error {
        kind: String,
        description: String,
        code: i32,
    },
}

/// Where an endpoint sends its events; called from any thread.
pub type EventSink = Arc<dyn Fn(EndpointEvent) + Send + Sync>;

/// A negotiable WebRTC endpoint of the media core.
pub trait WebRtcEndpoint: Send + Sync {
    /// Answers a remote offer.
    fn process_offer(&self, offer: String) -> BoxFuture<'_, Result<String, NegotiationError>>;
    /// Makes an offer (`offer_audio`/`offer_video`: what to receive).
    fn generate_offer(
        &self,
        offer_audio: bool,
        offer_video: bool,
    ) -> BoxFuture<'_, Result<String, NegotiationError>>;
    /// Applies the answer to our offer; returns the local description.
    fn process_answer(&self, answer: String) -> BoxFuture<'_, Result<String, NegotiationError>>;
    fn local_description(&self) -> BoxFuture<'_, Option<String>>;
    fn remote_description(&self) -> BoxFuture<'_, Option<String>>;
    /// Starts trickling local candidates as `IceCandidateFound` events.
    fn gather_candidates(&self) -> BoxFuture<'_, Result<(), NegotiationError>>;
    /// Adds a remote candidate; before the remote description it is kept.
    fn add_ice_candidate(
        &self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u32>,
    ) -> BoxFuture<'_, Result<(), NegotiationError>>;
    /// Kurento's bandwidth properties (`maxVideoRecvBandwidth`, ...) as they stand.
    fn bandwidth(&self) -> BandwidthLimits;
    /// Changes them: feedback to the remote sender at once, SDP from the next negotiation.
    fn set_bandwidth(&self, limits: BandwidthLimits);
    /// The endpoint's statistics (`None` once released).
    fn stats(&self) -> BoxFuture<'_, Option<EndpointStats>>;
    /// Closes the peer connection and frees its resources.
    fn release(&self);
}

/// Creates the media core's endpoints and routes media between elements.
pub trait MediaBackend: Send + Sync {
    fn create_webrtc_endpoint<'a>(
        &'a self,
        pipeline: &'a Arc<Pipeline>,
        element: ElementId,
        options: WebRtcOptions,
        events: EventSink,
    ) -> BoxFuture<'a, Result<Arc<dyn WebRtcEndpoint>, BackendError>>;

    /// `sink`'s `kind` media now comes from `source`: a route the graph
    /// implies, with transparent elements (PassThrough) resolved away.
    fn connect(&self, source: ElementId, sink: ElementId, kind: MediaKind);

    /// `sink` no longer takes `kind` media from `source`.
    fn disconnect(&self, source: ElementId, sink: ElementId, kind: MediaKind);
}
