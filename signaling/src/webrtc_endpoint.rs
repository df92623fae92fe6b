//! WebRtcEndpoint (and the SdpEndpoint/BaseRtpEndpoint operations it
//! inherits) on top of the media backend's [`WebRtcEndpoint`] port: SDP
//! negotiation, trickle ICE, and the endpoint's events turned into
//! Kurento's, with the states they report kept for the getters.

use std::sync::{Arc, Weak};

use serde_json::{Map, Value, json};

use rkms_media::MediaKind;
use rkms_media::webrtc::{BandwidthLimits, DataChannelOptions};

use crate::backend::{
    DtlsState, EndpointEvent, EventSink, IceComponentState, IceServerProperties, NegotiationError,
    WebRtcEndpoint,
};
use crate::dispatch::value;
use crate::engine::{Engine, Fields};
use crate::error::{ErrorCode, RpcError, RpcResult};
use crate::registry::{Kind, MediaObject};
use crate::values::complex;
use crate::webrtc_stats::stats_report;

impl From<NegotiationError> for RpcError {
    fn from(e: NegotiationError) -> Self {
        let code = match e {
            NegotiationError::Parse(_) => ErrorCode::SdpParse,
            NegotiationError::ProcessOffer(_) => ErrorCode::ProcessOffer,
            NegotiationError::ProcessAnswer(_) => ErrorCode::ProcessAnswer,
            NegotiationError::GenerateOffer(_) => ErrorCode::GenerateOffer,
            NegotiationError::AlreadyNegotiated => ErrorCode::AlreadyNegotiated,
            NegotiationError::NotOfferGenerated => ErrorCode::NotOfferGenerated,
            NegotiationError::AnswerAlreadyProcessed => ErrorCode::AnswerAlreadyProcessed,
            NegotiationError::Gather(_) => ErrorCode::IceGather,
            NegotiationError::BadCandidate(_) => ErrorCode::IceAddCandidate,
        };
        RpcError::new(code, e.to_string())
    }
}

impl Engine {
    /// Runs an SdpEndpoint/WebRtcEndpoint operation; `None` when the
    /// operation is not one of theirs.
    pub(crate) async fn webrtc_method(
        &self,
        object: &MediaObject,
        endpoint: &Arc<dyn WebRtcEndpoint>,
        operation: &str,
        args: &Map<String, Value>,
    ) -> Option<RpcResult<Fields>> {
        let text = |name: &str| {
            args.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let result = match operation {
            "processOffer" => endpoint
                .process_offer(text("offer"))
                .await
                .map(|sdp| value(json!(sdp)))
                .map_err(RpcError::from),
            "generateOffer" => {
                let option = |name: &str| {
                    args.get("options")
                        .and_then(|o| o.get(name))
                        .and_then(Value::as_bool)
                        .unwrap_or(true)
                };
                endpoint
                    .generate_offer(option("offerToReceiveAudio"), option("offerToReceiveVideo"))
                    .await
                    .map(|sdp| value(json!(sdp)))
                    .map_err(RpcError::from)
            }
            "processAnswer" => endpoint
                .process_answer(text("answer"))
                .await
                .map(|sdp| value(json!(sdp)))
                .map_err(RpcError::from),
            "getLocalSessionDescriptor" => endpoint
                .local_description()
                .await
                .map(|sdp| value(json!(sdp)))
                .ok_or_else(|| RpcError::new(ErrorCode::NoLocalSdp, "no local description yet")),
            "getRemoteSessionDescriptor" => endpoint
                .remote_description()
                .await
                .map(|sdp| value(json!(sdp)))
                .ok_or_else(|| RpcError::new(ErrorCode::NoRemoteSdp, "no remote description yet")),
            "createDataChannel" => {
                let number = |name: &str| {
                    args.get(name)
                        .and_then(Value::as_i64)
                        .filter(|v| *v >= 0)
                        .map(|v| u16::try_from(v).unwrap_or(u16::MAX))
                };
                let options = DataChannelOptions {
                    label: text("label"),
                    ordered: args.get("ordered").and_then(Value::as_bool).unwrap_or(true),
                    max_packet_life_time: number("maxPacketLifeTime"),
                    max_retransmits: number("maxRetransmits"),
                    protocol: text("protocol"),
                };
                endpoint
                    .create_data_channel(options)
                    .await
                    .map(|()| Fields::new())
                    .map_err(|e| RpcError::new(ErrorCode::OperationNotSupported, e))
            }
            "closeDataChannel" => {
                let id = args.get("channelId").and_then(Value::as_i64).unwrap_or(-1);
                match u16::try_from(id) {
                    Ok(id) => endpoint
                        .close_data_channel(id)
                        .await
                        .map(|()| Fields::new())
                        .map_err(|e| RpcError::illegal_param("channelId", e)),
                    Err(_) => Err(RpcError::illegal_param("channelId", "not a channel id")),
                }
            }
            "getStats" => {
                let kind = args
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .and_then(MediaKind::parse);
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let stats = endpoint.stats().await.unwrap_or_default();
                Ok(value(stats_report(&stats, kind, now_ms)))
            }
            "gatherCandidates" => endpoint
                .gather_candidates(ice_server_properties(object))
                .await
                .map(|()| Fields::new())
                .map_err(RpcError::from),
            "addIceCandidate" => {
                // The model check guarantees an IceCandidate object.
                let c = args.get("candidate").cloned().unwrap_or(Value::Null);
                let Some(candidate) = c.get("candidate").and_then(Value::as_str) else {
                    return Some(Err(RpcError::new(
                        ErrorCode::IceAddCandidate,
                        "the IceCandidate has no 'candidate' string",
                    )));
                };
                let mid = c.get("sdpMid").and_then(Value::as_str).map(str::to_owned);
                let index = c
                    .get("sdpMLineIndex")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok());
                endpoint
                    .add_ice_candidate(candidate.to_owned(), mid, index)
                    .await
                    .map(|()| Fields::new())
                    .map_err(RpcError::from)
            }
            _ => return None,
        };
        Some(result)
    }

    /// The sink through which an endpoint's events reach its subscribers.
    pub(crate) fn endpoint_event_sink(&self, object_id: Arc<str>) -> EventSink {
        let engine: Weak<Engine> = self.me.clone();
        Arc::new(move |event| {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let Some(object) = engine.registry.get(&object_id) else {
                return;
            };
            raise(&engine, &object, event);
        })
    }
}

/// Raises one endpoint event on its object, remembering the states that
/// getters (`getMediaState`, `isMediaFlowingIn`, ...) report. A state
/// "change" to the state already held is not raised.
fn raise(engine: &Engine, object: &MediaObject, event: EndpointEvent) {
    let mut f = Map::new();
    let name = match event {
        EndpointEvent::IceCandidateFound {
            candidate,
            sdp_mid,
            sdp_mline_index,
        } => {
            let mut c = Map::new();
            c.insert("candidate".into(), json!(candidate));
            c.insert("sdpMid".into(), json!(sdp_mid));
            c.insert("sdpMLineIndex".into(), json!(sdp_mline_index));
            f.insert("candidate".into(), complex("IceCandidate", c));
            "IceCandidateFound"
        }
        EndpointEvent::IceGatheringDone => "IceGatheringDone",
        EndpointEvent::IceComponentStateChanged {
            stream_id,
            component_id,
            state,
        } => {
            f.insert("streamId".into(), json!(stream_id));
            f.insert("componentId".into(), json!(component_id));
            f.insert("state".into(), json!(ice_state(state)));
            remember(
                object,
                "IceConnectionState",
                json!([{
                    "__module__": "kurento", "__type__": "IceConnection",
                    "streamId": stream_id.to_string(), "componentId": component_id,
                    "state": ice_state(state),
                }]),
            );
            "IceComponentStateChanged"
        }
        EndpointEvent::NewCandidatePairSelected {
            stream_id,
            component_id,
            local_candidate,
            remote_candidate,
        } => {
            let mut pair = Map::new();
            pair.insert("streamId".into(), json!(stream_id));
            pair.insert("componentId".into(), json!(component_id));
            pair.insert("localCandidate".into(), json!(local_candidate));
            pair.insert("remoteCandidate".into(), json!(remote_candidate));
            let pair = complex("IceCandidatePair", pair);
            remember(object, "ICECandidatePairs", json!([pair.clone()]));
            f.insert("candidatePair".into(), pair);
            "NewCandidatePairSelected"
        }
        EndpointEvent::DtlsConnectionStateChange {
            stream_id,
            component_id,
            connection_id,
            state,
        } => {
            f.insert("streamId".into(), json!(stream_id));
            f.insert("componentId".into(), json!(component_id));
            f.insert("connectionId".into(), json!(connection_id));
            f.insert("state".into(), json!(dtls_state(state)));
            "DtlsConnectionStateChange"
        }
        EndpointEvent::Connection(up) => {
            let (old, new) = transition(object, "connectionState", up);
            if old == new {
                return;
            }
            f.insert("oldState".into(), json!(old));
            f.insert("newState".into(), json!(new));
            "ConnectionStateChanged"
        }
        EndpointEvent::Media(up) => {
            let (old, new) = transition(object, "mediaState", up);
            if old == new {
                return;
            }
            f.insert("oldState".into(), json!(old));
            f.insert("newState".into(), json!(new));
            "MediaStateChanged"
        }
        EndpointEvent::MediaFlowIn { kind, flowing }
        | EndpointEvent::MediaFlowOut { kind, flowing } => {
            let inbound = matches!(event, EndpointEvent::MediaFlowIn { .. });
            let key = format!(
                "{}:{}",
                if inbound { "flowIn" } else { "flowOut" },
                kind.as_str()
            );
            remember(object, &key, json!(flowing));
            f.insert(
                "state".into(),
                json!(if flowing { "FLOWING" } else { "NOT_FLOWING" }),
            );
            f.insert(
                "padName".into(),
                json!(rkms_media::graph::DEFAULT_DESCRIPTION),
            );
            f.insert("mediaType".into(), json!(kind.as_str()));
            if inbound {
                "MediaFlowInStateChanged"
            } else {
                "MediaFlowOutStateChanged"
            }
        }
        EndpointEvent::MediaSessionStarted => "MediaSessionStarted",
        EndpointEvent::MediaSessionTerminated => "MediaSessionTerminated",
        EndpointEvent::DataChannelOpened(id) => {
            f.insert("channelId".into(), json!(id));
            "DataChannelOpened"
        }
        EndpointEvent::DataChannelClosed(id) => {
            f.insert("channelId".into(), json!(id));
            "DataChannelClosed"
        }
        EndpointEvent::KeySoftLimit(kind) => {
            f.insert("mediaType".into(), json!(kind.as_str()));
            "OnKeySoftLimit"
        }
        EndpointEvent::Error {
            kind,
            description,
            code,
        } => {
            tracing::warn!(object = %object.id, %kind, %description, "endpoint error");
            f.insert("type".into(), json!(kind));
            f.insert("description".into(), json!(description));
            f.insert("errorCode".into(), json!(code));
            "Error"
        }
    };
    engine.events.emit(object, name, f);
}

/// The field of a bandwidth property (kbps) of an RTP endpoint.
fn bandwidth_field<'a>(limits: &'a mut BandwidthLimits, name: &str) -> Option<&'a mut u32> {
    Some(match name {
        "minVideoRecvBandwidth" => &mut limits.min_video_recv_kbps,
        "maxVideoRecvBandwidth" => &mut limits.max_video_recv_kbps,
        "maxAudioRecvBandwidth" => &mut limits.max_audio_recv_kbps,
        "minVideoSendBandwidth" => &mut limits.min_video_send_kbps,
        "maxVideoSendBandwidth" => &mut limits.max_video_send_kbps,
        _ => return None,
    })
}

/// A WebRTC endpoint's bandwidth property, as the media core applies it.
pub(crate) fn bandwidth_property(object: &MediaObject, name: &str) -> Option<Value> {
    let Kind::Element {
        webrtc: Some(endpoint),
        ..
    } = &object.kind
    else {
        return None;
    };
    let mut limits = endpoint.bandwidth();
    bandwidth_field(&mut limits, name).map(|v| json!(*v))
}

/// Applies a WebRTC endpoint's `iceTcp` property in the media core (1/0 or a boolean); the value
/// is kept for the getter by the caller either way.
pub(crate) fn apply_ice_tcp_property(object: &MediaObject, name: &str, v: &Value) {
    if name != "iceTcp" {
        return;
    }
    let Kind::Element {
        webrtc: Some(endpoint),
        ..
    } = &object.kind
    else {
        return;
    };
    if let Some(on) = v.as_bool().or_else(|| v.as_i64().map(|n| n != 0)) {
        endpoint.set_ice_tcp(on);
    }
}

/// Sets a WebRTC endpoint's bandwidth property in the media core; `false` when `name` is not
/// one (or the object no WebRTC endpoint). Negative values count as 0 (no limit).
pub(crate) fn set_bandwidth_property(object: &MediaObject, name: &str, v: &Value) -> bool {
    let Kind::Element {
        webrtc: Some(endpoint),
        ..
    } = &object.kind
    else {
        return false;
    };
    let mut limits = endpoint.bandwidth();
    let Some(field) = bandwidth_field(&mut limits, name) else {
        return false;
    };
    *field = v
        .as_i64()
        .map_or(0, |kbps| u32::try_from(kbps.max(0)).unwrap_or(u32::MAX));
    endpoint.set_bandwidth(limits);
    true
}

/// Whether media of `kind` flows in (or out of) the element, as last reported.
pub(crate) fn is_flowing(object: &MediaObject, inbound: bool, kind: &str) -> bool {
    let key = format!("{}:{kind}", if inbound { "flowIn" } else { "flowOut" });
    object
        .state
        .lock()
        .properties
        .get(&key)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The endpoint's own STUN/TURN properties (empty strings and port 0 count as unset).
fn ice_server_properties(object: &MediaObject) -> IceServerProperties {
    let state = object.state.lock();
    let text = |name: &str| {
        state
            .properties
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_owned())
    };
    IceServerProperties {
        stun_server_address: text("stunServerAddress"),
        stun_server_port: state
            .properties
            .get("stunServerPort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0),
        turn_url: text("turnUrl"),
    }
}

pub(crate) fn remember(object: &MediaObject, key: &str, v: Value) {
    object.state.lock().properties.insert(key.to_owned(), v);
}

/// Records a CONNECTED/DISCONNECTED state; returns (old, new).
fn transition(object: &MediaObject, key: &str, up: bool) -> (&'static str, &'static str) {
    let new = if up { "CONNECTED" } else { "DISCONNECTED" };
    let mut state = object.state.lock();
    let old = match state.properties.get(key).and_then(Value::as_str) {
        Some("CONNECTED") => "CONNECTED",
        _ => "DISCONNECTED",
    };
    state.properties.insert(key.to_owned(), json!(new));
    (old, new)
}

fn ice_state(s: IceComponentState) -> &'static str {
    match s {
        IceComponentState::Disconnected => "DISCONNECTED",
        IceComponentState::Gathering => "GATHERING",
        IceComponentState::Connecting => "CONNECTING",
        IceComponentState::Connected => "CONNECTED",
        IceComponentState::Ready => "READY",
        IceComponentState::Failed => "FAILED",
    }
}

fn dtls_state(s: DtlsState) -> &'static str {
    match s {
        DtlsState::New => "NEW",
        DtlsState::Closed => "CLOSED",
        DtlsState::Failed => "FAILED",
        DtlsState::Connecting => "CONNECTING",
        DtlsState::Connected => "CONNECTED",
    }
}
