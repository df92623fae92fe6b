//! RtpEndpoint of `rkms-media` ([`RtpElement`], on the pipeline's socket loop through an
//! element port, with media threads of its own) plugged into the signaling layer's media backend
//! port as a negotiable endpoint. Its SDES key is checked at `create`: a key that does not fit
//! the suite is refused with the reason.

use std::sync::Arc;

use parking_lot::Mutex;
use rkms_media::elements::rtp::sdes::{CryptoSuite, MasterKey};
use rkms_media::elements::rtp::{RtpElement, RtpError};
use rkms_media::elements::{ElementEvent, ElementEvents};
use rkms_media::webrtc::{BandwidthLimits, DataChannelOptions, EndpointStats, WebRtcHost};
use rkms_media::{ElementId, Pipeline};
use rkms_signaling::backend::{
    BoxFuture, EndpointEvent, EventSink, IceServerProperties, NegotiationError, RtpOptions,
    SdesOptions, UriElementError, WebRtcEndpoint,
};

pub fn create_rtp_endpoint(
    host: &WebRtcHost,
    pipeline: &Pipeline,
    element: ElementId,
    options: RtpOptions,
    bandwidth: BandwidthLimits,
    events: EventSink,
) -> Result<Arc<dyn WebRtcEndpoint>, UriElementError> {
    let key = options.crypto.as_ref().map(master_key).transpose()?;
    let port = host.add_element(element, Some(pipeline.id()));
    let rtp = RtpElement::new(
        port,
        host.rtp_addressing(options.use_ipv6),
        key,
        element_events(events.clone()),
    );
    Ok(Arc::new(RtpAdapter {
        element: Mutex::new(Some(Arc::new(rtp))),
        bandwidth: Mutex::new(bandwidth),
        events,
    }))
}

fn master_key(sdes: &SdesOptions) -> Result<MasterKey, UriElementError> {
    let bad = |why: String| UriElementError::BadParam {
        param: "crypto",
        why,
    };
    let suite = CryptoSuite::from_kurento(&sdes.suite)
        .ok_or_else(|| bad(format!("unknown crypto suite '{}'", sdes.suite)))?;
    MasterKey::from_sdes(suite, sdes.key.as_deref(), sdes.key_base64.as_deref())
        .map_err(|e| bad(e.to_string()))
}

fn element_events(sink: EventSink) -> ElementEvents {
    Arc::new(move |event| {
        sink(match event {
            ElementEvent::FlowIn(kind, flowing) => EndpointEvent::MediaFlowIn { kind, flowing },
            ElementEvent::FlowOut(kind, flowing) => EndpointEvent::MediaFlowOut { kind, flowing },
            ElementEvent::RemoteRtcp(up) => EndpointEvent::Media(up),
            ElementEvent::KeySoftLimit(kind) => EndpointEvent::KeySoftLimit(kind),
            ElementEvent::Error { kind, description } => EndpointEvent::Error {
                kind: kind.to_owned(),
                description,
                code: 40003,
            },
            // Recorder and player events.
            ElementEvent::Recording
            | ElementEvent::Paused
            | ElementEvent::Stopped
            | ElementEvent::EndOfStream => return,
        })
    })
}

/// Kurento's error for a failed negotiation step; `step` names the step's own code.
fn negotiation_error(e: RtpError, step: fn(String) -> NegotiationError) -> NegotiationError {
    match e {
        RtpError::Sdp(why) => NegotiationError::Parse(why),
        RtpError::Offer(why) => NegotiationError::ProcessOffer(why),
        RtpError::Answer(why) => NegotiationError::ProcessAnswer(why),
        RtpError::NothingToOffer(why) => NegotiationError::GenerateOffer(why),
        RtpError::AlreadyNegotiated => NegotiationError::AlreadyNegotiated,
        RtpError::NotOfferGenerated => NegotiationError::NotOfferGenerated,
        RtpError::AnswerAlreadyProcessed => NegotiationError::AnswerAlreadyProcessed,
        RtpError::OfferPending => NegotiationError::ProcessOffer(e.to_string()),
        other => {
            tracing::warn!(error = %other, "RtpEndpoint negotiation failed");
            step(other.to_string())
        }
    }
}

/// Taken (and so dropped, which stops the media threads) on release.
struct RtpAdapter {
    element: Mutex<Option<Arc<RtpElement>>>,
    bandwidth: Mutex<BandwidthLimits>,
    events: EventSink,
}

impl RtpAdapter {
    fn element(&self) -> Result<Arc<RtpElement>, NegotiationError> {
        self.element
            .lock()
            .clone()
            .ok_or_else(|| NegotiationError::ProcessOffer("the endpoint was released".into()))
    }

    /// Runs a step that completes negotiation: the connection is up once it succeeds.
    fn completing(
        &self,
        result: Result<String, NegotiationError>,
    ) -> Result<String, NegotiationError> {
        if result.is_ok() {
            (self.events)(EndpointEvent::Connection(true));
        }
        result
    }
}

impl WebRtcEndpoint for RtpAdapter {
    fn process_offer(&self, offer: String) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async move {
            let result = self
                .element()?
                .process_offer(&offer)
                .map_err(|e| negotiation_error(e, NegotiationError::ProcessOffer));
            self.completing(result)
        })
    }

    fn generate_offer(
        &self,
        offer_audio: bool,
        offer_video: bool,
    ) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async move {
            self.element()?
                .generate_offer(offer_audio, offer_video)
                .map_err(|e| negotiation_error(e, NegotiationError::GenerateOffer))
        })
    }

    fn process_answer(&self, answer: String) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async move {
            let result = self
                .element()?
                .process_answer(&answer)
                .map_err(|e| negotiation_error(e, NegotiationError::ProcessAnswer));
            self.completing(result)
        })
    }

    fn local_description(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.element().ok()?.local_description() })
    }

    fn remote_description(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.element().ok()?.remote_description() })
    }

    fn gather_candidates(
        &self,
        _servers: IceServerProperties,
    ) -> BoxFuture<'_, Result<(), NegotiationError>> {
        Box::pin(async { Err(NegotiationError::Gather("an RtpEndpoint has no ICE".into())) })
    }

    fn add_ice_candidate(
        &self,
        _candidate: String,
        _sdp_mid: Option<String>,
        _sdp_mline_index: Option<u32>,
    ) -> BoxFuture<'_, Result<(), NegotiationError>> {
        Box::pin(async {
            Err(NegotiationError::BadCandidate(
                "an RtpEndpoint has no ICE".into(),
            ))
        })
    }

    /// Kept for the getters; plain RTP peers get no bandwidth feedback from rkms.
    fn bandwidth(&self) -> BandwidthLimits {
        *self.bandwidth.lock()
    }

    fn set_bandwidth(&self, limits: BandwidthLimits) {
        *self.bandwidth.lock() = limits;
    }

    fn create_data_channel(&self, _: DataChannelOptions) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Err("an RtpEndpoint has no data channels".into()) })
    }

    fn close_data_channel(&self, _: u16) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Err("an RtpEndpoint has no data channels".into()) })
    }

    fn stats(&self) -> BoxFuture<'_, Option<EndpointStats>> {
        Box::pin(async move { self.element().ok()?.stats() })
    }

    fn release(&self) {
        self.element.lock().take();
    }
}
