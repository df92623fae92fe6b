//! What RecorderEndpoint and PlayerEndpoint share as UriEndpoints: creation through the media
//! backend, the `uri` and `state` properties, `UriEndpointStateChanged`, and their media events
//! turned into Kurento's.

use std::sync::{Arc, Weak};

use serde_json::{Map, Value, json};

use rkms_media::graph::PadFilter;
use rkms_media::{ElementId, Pipeline};

use crate::backend::{
    PlayerOptions, RecorderOptions, UriElementError, UriEndpointEvent, UriEventSink,
};
use crate::engine::Engine;
use crate::error::{ErrorCode, RpcError, RpcResult};
use crate::model::ClassDef;
use crate::registry::{Kind, MediaObject, UriElement};
use crate::webrtc_endpoint::remember;

/// Kurento's `UriEndpointState` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UriState {
    Stop,
    Start,
    Pause,
}

impl UriState {
    fn name(self) -> &'static str {
        match self {
            UriState::Stop => "STOP",
            UriState::Start => "START",
            UriState::Pause => "PAUSE",
        }
    }
}

/// The error code carried by `Error` events of recorders and players (their `type` names the
/// failure).
const ELEMENT_ERROR_CODE: i32 = 40003;

impl Engine {
    /// Makes the media side of a RecorderEndpoint or PlayerEndpoint; `None` for other types.
    pub(crate) fn create_uri_element(
        &self,
        class: &ClassDef,
        media: &Arc<Pipeline>,
        element: ElementId,
        ctor: &Map<String, Value>,
        id: &Arc<str>,
    ) -> RpcResult<Option<UriElement>> {
        let Some(backend) = &self.backend else {
            return Ok(None);
        };
        let uri = ctor
            .get("uri")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let events = self.uri_event_sink(id.clone());
        let made = match class.name.as_str() {
            "RecorderEndpoint" => {
                let options = RecorderOptions {
                    uri,
                    profile: ctor
                        .get("mediaProfile")
                        .and_then(Value::as_str)
                        .unwrap_or("WEBM")
                        .to_owned(),
                    stop_on_end_of_stream: ctor
                        .get("stopOnEndOfStream")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                };
                backend
                    .create_recorder(media, element, options, events)
                    .map(UriElement::Recorder)
            }
            "PlayerEndpoint" => {
                let options = PlayerOptions {
                    uri,
                    use_encoded_media: ctor
                        .get("useEncodedMedia")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    network_cache_ms: ctor
                        .get("networkCache")
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or(2000),
                };
                backend
                    .create_player(media, element, options, events)
                    .map(UriElement::Player)
            }
            _ => return Ok(None),
        };
        made.map(Some).map_err(|e| creation_error(&class.name, e))
    }

    /// Moves a UriEndpoint to `state`, raising `UriEndpointStateChanged` if it changed.
    pub(crate) fn set_uri_state(&self, object: &MediaObject, state: UriState) {
        let old = object
            .state
            .lock()
            .properties
            .insert("state".into(), json!(state.name()));
        if old != Some(json!(state.name())) {
            let mut f = Map::new();
            f.insert("state".into(), json!(state.name()));
            self.events.emit(object, "UriEndpointStateChanged", f);
        }
    }

    fn uri_event_sink(&self, object_id: Arc<str>) -> UriEventSink {
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

/// The answer to a `create` the media backend refused.
pub(crate) fn creation_error(type_name: &str, e: UriElementError) -> RpcError {
    match e {
        UriElementError::BadParam { param, why } => RpcError::illegal_param(param, why),
        UriElementError::NotSupported => RpcError::new(
            ErrorCode::NotImplemented,
            format!("type '{type_name}' is not implemented by this media backend"),
        ),
        UriElementError::Failed(why) => RpcError::new(
            ErrorCode::UnexpectedError,
            format!("cannot create the {type_name}: {why}"),
        ),
    }
}

/// The `uri` and initial `state` a UriEndpoint reports.
pub(crate) fn init_properties(object: &MediaObject, ctor: &Map<String, Value>) {
    if let Kind::Element { uri: Some(_), .. } = &object.kind {
        let mut state = object.state.lock();
        state.properties.insert(
            "uri".into(),
            ctor.get("uri").cloned().unwrap_or(Value::Null),
        );
        state
            .properties
            .insert("state".into(), json!(UriState::Stop.name()));
        if let Some(stop) = ctor.get("stopOnEndOfStream") {
            state
                .properties
                .insert(STOP_ON_END_OF_STREAM.into(), stop.clone());
        }
    }
}

/// Where a recorder keeps its `stopOnEndOfStream` constructor flag.
const STOP_ON_END_OF_STREAM: &str = "stopOnEndOfStream";

/// A player reached its end: the recorders it feeds directly that were created with
/// `stopOnEndOfStream` stop (and close their files).
fn stop_recorders_fed_by(engine: &Engine, player: &MediaObject) {
    let Kind::Element { media, element, .. } = &player.kind else {
        return;
    };
    let mut sinks: Vec<ElementId> = media
        .sinks_of(*element, PadFilter::default())
        .iter()
        .map(|c| c.sink)
        .collect();
    sinks.sort_by_key(|e| e.0);
    sinks.dedup();
    for sink in sinks {
        let Some(object) = media.label(sink).and_then(|l| engine.registry.get(&l)) else {
            continue;
        };
        let Kind::Element {
            uri: Some(UriElement::Recorder(recorder)),
            ..
        } = &object.kind
        else {
            continue;
        };
        let stop = object
            .state
            .lock()
            .properties
            .get(STOP_ON_END_OF_STREAM)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if stop {
            // The state first: the recorder's Stopped event comes from the media thread and
            // may reach the client before this thread goes on.
            engine.set_uri_state(&object, UriState::Stop);
            recorder.stop();
        }
    }
}

fn raise(engine: &Engine, object: &MediaObject, event: UriEndpointEvent) {
    let mut f = Map::new();
    let name = match event {
        UriEndpointEvent::Recording => "Recording",
        UriEndpointEvent::Paused => "Paused",
        UriEndpointEvent::Stopped => "Stopped",
        UriEndpointEvent::EndOfStream => {
            stop_recorders_fed_by(engine, object);
            "EndOfStream"
        }
        UriEndpointEvent::MediaFlowIn { kind, flowing }
        | UriEndpointEvent::MediaFlowOut { kind, flowing } => {
            let inbound = matches!(event, UriEndpointEvent::MediaFlowIn { .. });
            let direction = if inbound { "flowIn" } else { "flowOut" };
            remember(
                object,
                &format!("{direction}:{}", kind.as_str()),
                json!(flowing),
            );
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
        UriEndpointEvent::Error { kind, description } => {
            tracing::warn!(object = %object.id, %kind, %description, "element error");
            f.insert("type".into(), json!(kind));
            f.insert("description".into(), json!(description));
            f.insert("errorCode".into(), json!(ELEMENT_ERROR_CODE));
            "Error"
        }
    };
    engine.events.emit(object, name, f);
}
