//! The media core as the signaling layer sees it: a port through which
//! `create WebRtcEndpoint` (or `RtpEndpoint`) gets a negotiable endpoint (and `create
//! RecorderEndpoint`/`PlayerEndpoint` a recorder or player) and their
//! events come back. The server plugs the real WebRTC layer in; tests plug
//! a fake. Nothing here knows JSON or RTP.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rkms_media::webrtc::{BandwidthLimits, DataChannelOptions, EndpointStats};
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
    /// An SDES key of the `kind` stream ends soon (RtpEndpoint's `OnKeySoftLimit`).
    KeySoftLimit(MediaKind),
    Error {
        kind: String,
        description: String,
        code: i32,
    },
}

/// A WebRtcEndpoint's own `stunServerAddress`, `stunServerPort` and `turnUrl`, as set before
/// `gatherCandidates`; unset ones leave the configured servers in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServerProperties {
    pub stun_server_address: Option<String>,
    pub stun_server_port: Option<u16>,
    pub turn_url: Option<String>,
}

/// Where an endpoint sends its events; called from any thread.
pub type EventSink = Arc<dyn Fn(EndpointEvent) + Send + Sync>;

/// A negotiable WebRTC endpoint of the media core. An RtpEndpoint's media side implements it
/// too: its API has the SDP and bandwidth operations but no ICE or data-channel ones, so those
/// are never called for it.
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
    /// Starts trickling local candidates as `IceCandidateFound` events; server candidates
    /// come from the endpoint's own STUN/TURN properties where set.
    fn gather_candidates(
        &self,
        servers: IceServerProperties,
    ) -> BoxFuture<'_, Result<(), NegotiationError>>;
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
    /// Kurento's `iceTcp` property of this endpoint: whether it offers TCP candidates. Before
    /// the first negotiation it decides what the SDP carries too; later it only affects the
    /// candidates a later `gatherCandidates` announces.
    fn set_ice_tcp(&self, _on: bool) {}
    /// Opens a data channel to the remote peer; `DataChannelOpened` follows.
    fn create_data_channel(&self, options: DataChannelOptions)
    -> BoxFuture<'_, Result<(), String>>;
    /// Closes the data channel whose SCTP stream id is `channel_id`.
    fn close_data_channel(&self, channel_id: u16) -> BoxFuture<'_, Result<(), String>>;
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

    /// Creates an RtpEndpoint; its events arrive as a WebRTC endpoint's do.
    fn create_rtp_endpoint(
        &self,
        _pipeline: &Arc<Pipeline>,
        _element: ElementId,
        _options: RtpOptions,
        _events: EventSink,
    ) -> Result<Arc<dyn WebRtcEndpoint>, UriElementError> {
        Err(UriElementError::NotSupported)
    }

    /// Creates a RecorderEndpoint on the pipeline's media thread.
    fn create_recorder(
        &self,
        _pipeline: &Arc<Pipeline>,
        _element: ElementId,
        _options: RecorderOptions,
        _events: UriEventSink,
    ) -> Result<Arc<dyn RecorderEndpoint>, UriElementError> {
        Err(UriElementError::NotSupported)
    }

    /// Creates a PlayerEndpoint on the pipeline's media thread.
    fn create_player(
        &self,
        _pipeline: &Arc<Pipeline>,
        _element: ElementId,
        _options: PlayerOptions,
        _events: UriEventSink,
    ) -> Result<Arc<dyn PlayerEndpoint>, UriElementError> {
        Err(UriElementError::NotSupported)
    }
}

/// Constructor options of an RtpEndpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpOptions {
    /// Kurento's `SDES` parameter, when its `crypto` suite is set (encryption on).
    pub crypto: Option<SdesOptions>,
    pub use_ipv6: bool,
}

/// Kurento's `SDES`: a suite and, optionally, the master key and salt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdesOptions {
    /// Kurento's `CryptoSuite` name (`AES_128_CM_HMAC_SHA1_80`, ...).
    pub suite: String,
    /// Key and salt as plain text.
    pub key: Option<String>,
    /// Key and salt in base64.
    pub key_base64: Option<String>,
}

/// Constructor options of a RecorderEndpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecorderOptions {
    pub uri: String,
    /// Kurento's `MediaProfileSpecType` name (`WEBM`, `MP4_AUDIO_ONLY`, ...).
    pub profile: String,
    pub stop_on_end_of_stream: bool,
}

/// Constructor options of a PlayerEndpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayerOptions {
    pub uri: String,
    pub use_encoded_media: bool,
    /// Milliseconds of buffering for network inputs.
    pub network_cache_ms: u32,
}

/// Why a recorder, player or RtpEndpoint could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriElementError {
    /// A constructor parameter is refused: a `uri` outside the recording roots, with `..`, of a
    /// scheme rkms does not handle; a profile rkms does not record.
    #[error("parameter '{param}': {why}")]
    BadParam { param: &'static str, why: String },
    #[error("{0}")]
    Failed(String),
    #[error("not supported by this media backend")]
    NotSupported,
}

/// What a recorder or player reports to its clients.
#[derive(Clone, Debug, PartialEq)]
pub enum UriEndpointEvent {
    Recording,
    Paused,
    Stopped,
    EndOfStream,
    MediaFlowIn {
        kind: MediaKind,
        flowing: bool,
    },
    MediaFlowOut {
        kind: MediaKind,
        flowing: bool,
    },
    /// `kind` is Kurento's error type (`RESOURCE_ERROR_OPEN`, `URI_ERROR`, ...).
    Error {
        kind: String,
        description: String,
    },
}

/// Where a recorder or player sends its events; called from any thread.
pub type UriEventSink = Arc<dyn Fn(UriEndpointEvent) + Send + Sync>;

/// A RecorderEndpoint of the media core.
pub trait RecorderEndpoint: Send + Sync {
    /// Starts or resumes recording (`Recording` is raised once media is written).
    fn record(&self);
    fn pause(&self);
    /// Stops; the file is closed in the background.
    fn stop(&self);
    /// Stops; resolves once the file is closed.
    fn stop_and_wait(&self) -> BoxFuture<'_, ()>;
    fn release(&self);
}

/// `getVideoInfo`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoInfo {
    pub seekable: bool,
    pub duration_ms: u64,
}

/// A PlayerEndpoint of the media core.
pub trait PlayerEndpoint: Send + Sync {
    fn play(&self);
    fn pause(&self);
    fn stop(&self);
    fn position_ms(&self) -> u64;
    fn set_position(&self, ms: u64) -> BoxFuture<'_, Result<(), String>>;
    fn video_info(&self) -> BoxFuture<'_, Result<VideoInfo, String>>;
    fn release(&self);
}
