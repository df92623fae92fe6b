//! `invoke`: operations on objects. Each call is checked against the API
//! model first (unknown operation → 40105, bad argument → 40107), then
//! runs the behaviour of the object's class.

use serde_json::{Map, Value, json};

use rkms_media::graph::{DEFAULT_DESCRIPTION, PadFilter};
use rkms_media::hub::HubRouting;
use rkms_media::{Connection, ElementId, MediaKind, Pipeline};

use crate::dispatch::{str_param, value};
use crate::engine::{Engine, Fields};
use crate::error::{ErrorCode, RpcError, RpcResult};
use crate::model::{Operation, ParamDef, PropertyDef};
use crate::registry::{Kind, MediaObject, UriElement};
use crate::values::{check_params, complex, default_value, object_refs_as_ids, tag};
use crate::webrtc_endpoint::{
    apply_ice_tcp_property, bandwidth_property, is_flowing, set_bandwidth_property,
};

impl Engine {
    pub(crate) async fn invoke(&self, params: &Map<String, Value>) -> RpcResult<Fields> {
        let object = self.object_param(params)?;
        let operation = str_param(params, "operation")?;
        let empty = Map::new();
        let args = match params.get("operationParams") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "'operationParams' must be an object",
                ));
            }
        };
        let op = self
            .model
            .operation(object.class, operation)
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::OperationNotFound,
                    format!("{} has no operation '{operation}'", object.class.name),
                )
            })?;
        match op {
            Operation::Method(m) => {
                let args = &object_refs_as_ids(self.model, &m.params, args);
                check_params(self.model, &self.registry, &m.params, args)?;
                self.call_method(&object, operation, args).await
            }
            Operation::Getter(p) => match self.uri_element_method(&object, operation, args).await {
                Some(result) => result,
                None => self.get_property(&object, &p.name, &p.ty).await,
            },
            Operation::Setter(p) => {
                let v = args.get(&p.name).cloned().unwrap_or(Value::Null);
                if p.name == "position" {
                    self.set_checked(&object, p, v)?;
                    if let Some(result) = self.uri_element_method(&object, operation, args).await {
                        return result;
                    }
                    return Ok(Fields::new());
                }
                self.set_checked(&object, p, v)?;
                Ok(Fields::new())
            }
        }
    }

    async fn call_method(
        &self,
        object: &MediaObject,
        operation: &str,
        args: &Map<String, Value>,
    ) -> RpcResult<Fields> {
        if let Kind::Element {
            webrtc: Some(endpoint),
            ..
        } = &object.kind
            && let Some(result) = self.webrtc_method(object, endpoint, operation, args).await
        {
            return result;
        }
        if let Some(result) = self.uri_element_method(object, operation, args).await {
            return result;
        }
        if self.model.is_a(object.class, "Hub")
            && let Kind::Element { media, element, .. } = &object.kind
            && matches!(operation, "connect" | "setSource" | "removeSource")
        {
            return self.hub_method(media, *element, operation, args);
        }
        let arg = |name: &str| args.get(name).and_then(Value::as_str);
        match (&object.kind, operation) {
            (_, "addTag") => {
                let (key, val) = (
                    arg("key").unwrap_or_default(),
                    arg("value").unwrap_or_default(),
                );
                let mut state = object.state.lock();
                state.tags.retain(|(k, _)| k != key);
                state.tags.push((key.to_owned(), val.to_owned()));
                Ok(Fields::new())
            }
            (_, "removeTag") => {
                let key = arg("key").unwrap_or_default();
                object.state.lock().tags.retain(|(k, _)| k != key);
                Ok(Fields::new())
            }
            (_, "getTag") => {
                let key = arg("key").unwrap_or_default();
                let state = object.state.lock();
                let found = state.tags.iter().find(|(k, _)| k == key);
                match found {
                    Some((_, v)) => Ok(value(json!(v))),
                    None => Err(RpcError::new(
                        ErrorCode::TagKeyNotFound,
                        format!("tag '{key}' not found"),
                    )),
                }
            }
            (_, "getTags") => {
                let state = object.state.lock();
                Ok(value(Value::Array(
                    state.tags.iter().map(|(k, v)| tag(k, v)).collect(),
                )))
            }
            (Kind::ServerManager, _) => self.server_manager_method(operation, args).await,
            (Kind::Pipeline { media } | Kind::Element { media, .. }, "getGstreamerDot") => {
                let name = object
                    .pipeline_id()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                Ok(value(json!(media.to_dot(&name))))
            }
            (Kind::Pipeline { media } | Kind::Element { media, .. }, "dumpGstreamerDot") => {
                let name = object
                    .pipeline_id()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                tracing::info!(pipeline = %name, dot = %media.to_dot(&name), "pipeline graph");
                Ok(Fields::new())
            }
            (Kind::Element { media, element, .. }, "connect" | "disconnect") => {
                self.connect_or_disconnect(object, media, *element, operation == "connect", args)
            }
            (Kind::Element { media, element, .. }, "getSourceConnections") => {
                let list = media.sources_of(*element, pad_filter(args, "description"));
                Ok(value(self.connection_list(media, &list)))
            }
            (Kind::Element { media, element, .. }, "getSinkConnections") => {
                let list = media.sinks_of(*element, pad_filter(args, "description"));
                Ok(value(self.connection_list(media, &list)))
            }
            // Flow states are what the element last reported; nothing
            // transcodes yet.
            (Kind::Element { .. }, "isMediaFlowingIn" | "isMediaFlowingOut") => {
                let kind = arg("mediaType").unwrap_or_default();
                let inbound = operation == "isMediaFlowingIn";
                Ok(value(json!(is_flowing(object, inbound, kind))))
            }
            (Kind::Element { .. }, "isMediaTranscoding") => Ok(value(json!(false))),
            (Kind::Element { .. }, "getStats") => Ok(value(json!({}))),
            _ => Err(RpcError::new(
                ErrorCode::NotImplemented,
                format!(
                    "{}.{operation} is not implemented in rkms yet",
                    object.class.name
                ),
            )),
        }
    }

    /// A RecorderEndpoint's or PlayerEndpoint's own operations.
    async fn uri_element_method(
        &self,
        object: &MediaObject,
        operation: &str,
        args: &Map<String, Value>,
    ) -> Option<RpcResult<Fields>> {
        match &object.kind {
            Kind::Element {
                uri: Some(UriElement::Recorder(r)),
                ..
            } => self.recorder_method(object, r, operation).await,
            Kind::Element {
                uri: Some(UriElement::Player(p)),
                ..
            } => self.player_method(object, p, operation, args).await,
            _ => None,
        }
    }

    fn connect_or_disconnect(
        &self,
        source: &MediaObject,
        media: &Pipeline,
        source_element: ElementId,
        connect: bool,
        args: &Map<String, Value>,
    ) -> RpcResult<Fields> {
        // The model check guarantees `sink` names a live MediaElement.
        let sink = self.object(args.get("sink").and_then(Value::as_str).unwrap_or_default())?;
        let Kind::Element {
            pipeline_id: sink_pipeline,
            element: sink_element,
            ..
        } = &sink.kind
        else {
            return Err(RpcError::illegal_param("sink", "not a media element"));
        };
        if Some(sink_pipeline) != source.pipeline_id() {
            return Err(RpcError::illegal_param(
                "sink",
                "source and sink belong to different pipelines",
            ));
        }
        let kinds: Vec<MediaKind> = match args.get("mediaType").and_then(Value::as_str) {
            Some(kind) => MediaKind::parse(kind).into_iter().collect(),
            None if connect => MediaKind::ALL.to_vec(),
            None => Vec::new(),
        };
        let description = |name: &str| {
            args.get(name)
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_DESCRIPTION)
        };
        let (src_desc, sink_desc) = (
            description("sourceMediaDescription"),
            description("sinkMediaDescription"),
        );
        let unknown = |e| RpcError::new(ErrorCode::ObjectNotFound, format!("{e}"));
        if connect {
            let outcome = media
                .connect(source_element, *sink_element, &kinds, src_desc, sink_desc)
                .map_err(unknown)?;
            for c in &outcome.replaced {
                self.connection_changed(media, c, false, None);
            }
            for c in &outcome.added {
                self.connection_changed(media, c, true, None);
            }
        } else {
            let removed = media
                .disconnect(source_element, *sink_element, &kinds, src_desc, sink_desc)
                .map_err(unknown)?;
            for c in &removed {
                self.connection_changed(media, c, false, None);
            }
        }
        self.sync_routes(media);
        Ok(Fields::new())
    }

    /// Dispatcher.connect, DispatcherOneToMany.setSource/removeSource.
    fn hub_method(
        &self,
        media: &Pipeline,
        hub: ElementId,
        operation: &str,
        args: &Map<String, Value>,
    ) -> RpcResult<Fields> {
        // The model check guarantees the named ports are live HubPorts.
        let port = |name: &str| -> RpcResult<ElementId> {
            let object = self.object(args.get(name).and_then(Value::as_str).unwrap_or_default())?;
            match &object.kind {
                Kind::Element { element, .. } => Ok(*element),
                _ => Err(RpcError::illegal_param(name, "not a HubPort")),
            }
        };
        let not_ours = |e| RpcError::illegal_param("source", format!("{e}"));
        match operation {
            "connect" => {
                let (source, sink) = (port("source")?, port("sink")?);
                media
                    .route_hub(hub, &[source, sink], |r| {
                        if let HubRouting::Dispatcher(links) = r {
                            links.insert(sink, source);
                        }
                    })
                    .map_err(not_ours)?;
            }
            "setSource" => {
                let source = port("source")?;
                media
                    .route_hub(hub, &[source], |r| *r = HubRouting::OneToMany(Some(source)))
                    .map_err(not_ours)?;
            }
            _ => {
                media
                    .route_hub(hub, &[], |r| *r = HubRouting::OneToMany(None))
                    .map_err(not_ours)?;
            }
        }
        self.sync_routes(media);
        Ok(Fields::new())
    }

    /// A connection was made (or removed): its source element raises
    /// `ElementConnected` (or `ElementDisconnected`). `gone` names an element already removed from
    /// `media`, whose label can no longer be looked up there.
    pub(crate) fn connection_changed(
        &self,
        media: &Pipeline,
        c: &Connection,
        made: bool,
        gone: Option<(ElementId, &MediaObject)>,
    ) {
        let event = if made {
            "ElementConnected"
        } else {
            "ElementDisconnected"
        };
        let source = match gone {
            Some((id, object)) if id == c.source => self.registry.get(&object.id),
            _ => media.label(c.source).and_then(|l| self.registry.get(&l)),
        };
        if let Some(source) = source {
            self.emit_connection_event(&source, event, media, c, gone);
        }
    }

    /// Makes the media path follow the pipeline's graph.
    pub(crate) fn sync_routes(&self, media: &Pipeline) {
        let changes = media.sync_routes();
        tracing::debug!(pipeline = media.id(), ?changes, "routes changed");
        if let Some(backend) = &self.backend {
            for r in changes.removed {
                backend.disconnect(r.source, r.sink, r.kind);
            }
            for r in changes.added {
                backend.connect(r.source, r.sink, r.kind);
            }
        }
    }

    fn emit_connection_event(
        &self,
        source: &MediaObject,
        event: &str,
        media: &Pipeline,
        c: &Connection,
        gone: Option<(ElementId, &MediaObject)>,
    ) {
        let sink = match gone {
            Some((id, object)) if id == c.sink => Some(object.id.to_string()),
            _ => media.label(c.sink),
        };
        let mut fields = Map::new();
        fields.insert("sink".into(), json!(sink));
        fields.insert("mediaType".into(), json!(c.kind.as_str()));
        fields.insert("sourceMediaDescription".into(), json!(c.source_description));
        fields.insert("sinkMediaDescription".into(), json!(c.sink_description));
        self.events.emit(source, event, fields);
    }

    fn connection_list(&self, media: &Pipeline, list: &[Connection]) -> Value {
        Value::Array(
            list.iter()
                .map(|c| {
                    let mut fields = Map::new();
                    fields.insert("source".into(), json!(media.label(c.source)));
                    fields.insert("sink".into(), json!(media.label(c.sink)));
                    fields.insert("type".into(), json!(c.kind.as_str()));
                    fields.insert("sourceDescription".into(), json!(c.source_description));
                    fields.insert("sinkDescription".into(), json!(c.sink_description));
                    complex("ElementConnectionData", fields)
                })
                .collect(),
        )
    }

    async fn get_property(&self, object: &MediaObject, name: &str, ty: &str) -> RpcResult<Fields> {
        if let Some(v) = bandwidth_property(object, name) {
            return Ok(value(v));
        }
        let v = match name {
            "id" => json!(object.id),
            "name" => json!(object.name()),
            "sendTagsInEvents" => json!(object.state.lock().send_tags_in_events),
            "creationTime" => json!(object.creation_time),
            "mediaPipeline" => json!(object.pipeline_id()),
            "parent" => json!(object.parent),
            "children" => json!(object.state.lock().children),
            "info" | "pipelines" | "sessions" | "metadata" => {
                return self
                    .server_manager_method(&format!("get{}", upper_first(name)), &Map::new())
                    .await;
            }
            _ => object
                .state
                .lock()
                .properties
                .get(name)
                .cloned()
                .unwrap_or_else(|| default_value(self.model, ty)),
        };
        Ok(value(v))
    }

    /// Checks a value against the property's type, then sets it.
    fn set_checked(&self, object: &MediaObject, p: &PropertyDef, v: Value) -> RpcResult<()> {
        let declared = [ParamDef {
            name: p.name.clone(),
            ty: p.ty.clone(),
            optional: false,
        }];
        let mut args = Map::new();
        args.insert(p.name.clone(), v);
        check_params(self.model, &self.registry, &declared, &args)?;
        let v = args.remove(&p.name).unwrap_or(Value::Null);
        if set_bandwidth_property(object, &p.name, &v) {
            return Ok(());
        }
        apply_ice_tcp_property(object, &p.name, &v);
        let mut state = object.state.lock();
        match p.name.as_str() {
            "name" => state.name = v.as_str().map(str::to_owned),
            "sendTagsInEvents" => state.send_tags_in_events = v.as_bool().unwrap_or(false),
            name => {
                state.properties.insert(name.to_owned(), v);
            }
        }
        Ok(())
    }

    /// Applies `create`'s `properties` that name settable properties.
    pub(crate) fn apply_initial_properties(
        &self,
        object: &MediaObject,
        props: &Map<String, Value>,
    ) -> RpcResult<()> {
        for (name, v) in props {
            let setter = format!("set{}", upper_first(name));
            if let Some(Operation::Setter(p)) = self.model.operation(object.class, &setter) {
                self.set_checked(object, p, v.clone())?;
            }
        }
        Ok(())
    }
}

fn pad_filter<'a>(args: &'a Map<String, Value>, description: &str) -> PadFilter<'a> {
    PadFilter {
        kind: args
            .get("mediaType")
            .and_then(Value::as_str)
            .and_then(MediaKind::parse),
        description: args.get(description).and_then(Value::as_str),
    }
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
