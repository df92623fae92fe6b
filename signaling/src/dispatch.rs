//! The protocol's methods: create, invoke, subscribe, release, describe,
//! transaction and the session housekeeping ones.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use rkms_media::hub::HubRouting;

use crate::backend::WebRtcOptions;
use crate::engine::{Engine, Fields};
use crate::error::{ErrorCode, RpcError, RpcResult};
use crate::model::NAMESPACE;
use crate::registry::{
    Kind, MediaObject, SERVER_MANAGER_ID, UriElement, new_element_id, new_pipeline_id,
};
use crate::session::Session;
use crate::values::{check_params, object_refs_as_ids};

/// Types whose media rkms builds without a backend; `create` refuses the
/// others with NOT_IMPLEMENTED rather than hand out an object that would do
/// nothing.
const BUILT_IN_TYPES: &[&str] = &[
    "MediaPipeline",
    "PassThrough",
    "Dispatcher",
    "DispatcherOneToMany",
    "HubPort",
];

type DispatchFuture<'a> = Pin<Box<dyn Future<Output = RpcResult<Fields>> + Send + 'a>>;

impl Engine {
    /// Runs one method. The session is `None` only for a `ping` that
    /// carries none on a connection that has none yet.
    pub(crate) fn dispatch<'a>(
        &'a self,
        method: &'a str,
        params: &'a Map<String, Value>,
        session: Option<&'a Arc<Session>>,
    ) -> DispatchFuture<'a> {
        Box::pin(async move {
            match (method, session) {
                ("ping", _) => Ok(value(json!("pong"))),
                (_, None) => Err(RpcError::new(ErrorCode::InvalidSession, "no session")),
                ("connect" | "keepAlive", Some(_)) => Ok(Fields::new()),
                ("create", Some(s)) => self.create(params, s).await,
                ("invoke", Some(_)) => self.invoke(params).await,
                ("subscribe", Some(s)) => self.subscribe(params, s),
                ("unsubscribe", Some(_)) => self.unsubscribe(params),
                ("release", Some(_)) => {
                    let object = self.object_param(params)?;
                    if matches!(object.kind, Kind::ServerManager) {
                        return Err(RpcError::new(
                            ErrorCode::OperationNotSupported,
                            "the ServerManager cannot be released",
                        ));
                    }
                    self.release(&object);
                    Ok(Fields::new())
                }
                ("describe", Some(s)) => self.describe(params, s),
                ("ref", Some(s)) => {
                    let object = self.object_param(params)?;
                    self.hold(&object, s);
                    Ok(Fields::new())
                }
                ("unref", Some(s)) => self.unref(params, s),
                ("closeSession", Some(s)) => {
                    if let Some(session) = self.sessions.remove(&s.id) {
                        self.drop_session(&session);
                    }
                    Ok(Fields::new())
                }
                ("transaction", Some(s)) => self.transaction(params, s).await,
                _ => Err(RpcError::new(
                    ErrorCode::MethodNotFound,
                    format!("method '{method}' not found"),
                )),
            }
        })
    }

    async fn create(
        &self,
        params: &Map<String, Value>,
        session: &Arc<Session>,
    ) -> RpcResult<Fields> {
        let type_name = str_param(params, "type")?;
        let class = self
            .model
            .resolve_class(type_name)
            .filter(|c| !c.is_abstract)
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::TypeNotFound,
                    format!("type '{type_name}' not found"),
                )
            })?;
        let webrtc_backend = match (class.name.as_str(), &self.backend) {
            ("WebRtcEndpoint" | "RtpEndpoint", Some(backend)) => Some(backend.clone()),
            _ => None,
        };
        let uri_type = matches!(class.name.as_str(), "RecorderEndpoint" | "PlayerEndpoint")
            && self.backend.is_some();
        if webrtc_backend.is_none() && !uri_type && !BUILT_IN_TYPES.contains(&class.name.as_str()) {
            return Err(RpcError::new(
                ErrorCode::NotImplemented,
                format!("type '{}' is not implemented in rkms yet", class.name),
            ));
        }
        let empty = Map::new();
        let ctor_params = match params.get("constructorParams") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "'constructorParams' must be an object",
                ));
            }
        };
        let declared = class
            .constructor
            .as_ref()
            .map(|c| c.params.as_slice())
            .unwrap_or_default();
        let ctor_params = &object_refs_as_ids(self.model, declared, ctor_params);
        check_params(self.model, &self.registry, declared, ctor_params)?;

        let object = if class.name == "MediaPipeline" {
            let id = new_pipeline_id();
            MediaObject::new(
                id.into(),
                class,
                None,
                Kind::Pipeline {
                    media: Default::default(),
                },
            )
        } else {
            // Checked above: the constructor names a live pipeline, or for a
            // HubPort a live hub (whose pipeline the port joins).
            let hub = match ctor_params.get("hub").and_then(Value::as_str) {
                Some(hub) => Some(self.object(hub)?),
                None => None,
            };
            let (pipeline_id, media, parent) = match &hub {
                Some(hub) => match &hub.kind {
                    Kind::Element {
                        pipeline_id, media, ..
                    } => (pipeline_id.clone(), media.clone(), hub.id.clone()),
                    _ => return Err(RpcError::illegal_param("hub", "not a hub")),
                },
                None => {
                    let pipeline_id = ctor_params
                        .get("mediaPipeline")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let pipeline = self.object(pipeline_id)?;
                    let Kind::Pipeline { media } = &pipeline.kind else {
                        return Err(RpcError::illegal_param("mediaPipeline", "not a pipeline"));
                    };
                    (pipeline.id.clone(), media.clone(), pipeline.id.clone())
                }
            };
            let media = &media;
            let id: Arc<str> = new_element_id(&pipeline_id, &class.name).into();
            let element = media.add_element(&class.name, &id);
            let hub_set_up = match (class.name.as_str(), &hub) {
                ("Dispatcher", _) => {
                    media.add_hub(element, HubRouting::Dispatcher(Default::default()))
                }
                ("DispatcherOneToMany", _) => media.add_hub(element, HubRouting::OneToMany(None)),
                (_, Some(hub)) => match &hub.kind {
                    Kind::Element {
                        element: hub_element,
                        ..
                    } => media.attach_port(*hub_element, element),
                    _ => Ok(()),
                },
                _ => Ok(()),
            };
            if let Err(e) = hub_set_up {
                media.remove_element(element);
                return Err(RpcError::illegal_param("hub", e));
            }
            let webrtc = match webrtc_backend {
                None => None,
                Some(backend) if class.name == "RtpEndpoint" => {
                    match self.create_rtp_endpoint(&*backend, media, element, ctor_params, &id) {
                        Ok(endpoint) => Some(endpoint),
                        Err(e) => {
                            media.remove_element(element);
                            return Err(e);
                        }
                    }
                }
                Some(backend) => {
                    let flag = |name: &str| {
                        ctor_params
                            .get(name)
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                    };
                    let options = WebRtcOptions {
                        use_data_channels: flag("useDataChannels"),
                        recvonly: flag("recvonly"),
                        sendonly: flag("sendonly"),
                    };
                    let sink = self.endpoint_event_sink(id.clone());
                    match backend
                        .create_webrtc_endpoint(media, element, options, sink)
                        .await
                    {
                        Ok(endpoint) => Some(endpoint),
                        Err(e) => {
                            media.remove_element(element);
                            tracing::error!(error = %e, "cannot create a WebRtcEndpoint");
                            return Err(RpcError::new(
                                ErrorCode::UnexpectedError,
                                format!("cannot create the WebRtcEndpoint: {e}"),
                            ));
                        }
                    }
                }
            };
            let uri = match self.create_uri_element(class, media, element, ctor_params, &id) {
                Ok(uri) => uri,
                Err(e) => {
                    if let Some(endpoint) = webrtc {
                        endpoint.release();
                    }
                    media.remove_element(element);
                    return Err(e);
                }
            };
            MediaObject::new(
                id,
                class,
                Some(parent),
                Kind::Element {
                    pipeline_id,
                    media: media.clone(),
                    element,
                    webrtc,
                    uri,
                },
            )
        };
        let object = Arc::new(object);
        crate::uri_endpoint::init_properties(&object, ctor_params);
        if let Some(Value::Object(props)) = params.get("properties")
            && let Err(e) = self.apply_initial_properties(&object, props)
        {
            discard(&object);
            if let Kind::Element { media, element, .. } = &object.kind {
                media.remove_element(*element);
            }
            return Err(e);
        }
        self.registry.insert(object.clone());
        if let Some(parent) = object.parent.as_ref().and_then(|p| self.registry.get(p)) {
            parent.state.lock().children.push(object.id.clone());
        }
        self.hold(&object, session);
        tracing::debug!(id = %object.id, "created");
        if let Some(manager) = self.registry.get(SERVER_MANAGER_ID) {
            let mut fields = Map::new();
            fields.insert("object".into(), json!(object.id));
            self.events.emit(&manager, "ObjectCreated", fields);
        }
        Ok(value(json!(object.id)))
    }

    fn subscribe(&self, params: &Map<String, Value>, session: &Arc<Session>) -> RpcResult<Fields> {
        let object = self.object_param(params)?;
        let event = str_param(params, "type")?;
        if !self.model.raises(object.class, event) {
            return Err(RpcError::new(
                ErrorCode::EventNotSupported,
                format!("{} does not raise '{event}'", object.class.name),
            ));
        }
        let id = self.events.subscribe(&object.id, event, session);
        Ok(value(json!(id)))
    }

    fn unsubscribe(&self, params: &Map<String, Value>) -> RpcResult<Fields> {
        let object = str_param(params, "object")?;
        let subscription = str_param(params, "subscription")?;
        if !self.events.unsubscribe(object, subscription) {
            tracing::debug!(
                object,
                subscription,
                "unsubscribe of an unknown subscription"
            );
        }
        Ok(Fields::new())
    }

    fn describe(&self, params: &Map<String, Value>, session: &Arc<Session>) -> RpcResult<Fields> {
        let object = self.object_param(params)?;
        // Describing an object is how a second client takes hold of it.
        if !matches!(object.kind, Kind::ServerManager) {
            self.hold(&object, session);
        }
        let mut fields = Map::new();
        fields.insert("type".into(), json!(object.class.name));
        fields.insert(
            "qualifiedType".into(),
            json!(format!("{NAMESPACE}.{}", object.class.name)),
        );
        fields.insert(
            "hierarchy".into(),
            json!(self.model.hierarchy(object.class)),
        );
        Ok(fields)
    }

    fn unref(&self, params: &Map<String, Value>, session: &Arc<Session>) -> RpcResult<Fields> {
        let object = self.object_param(params)?;
        session.let_go(&object.id);
        let orphan = {
            let mut state = object.state.lock();
            state.holders.remove(&session.id) && state.holders.is_empty()
        };
        if orphan && !matches!(object.kind, Kind::ServerManager) {
            self.release(&object);
        }
        Ok(Fields::new())
    }

    /// Runs the operations in order. `"newref:N"` in later parameters
    /// stands for the value returned by operation N.
    async fn transaction(
        &self,
        params: &Map<String, Value>,
        session: &Arc<Session>,
    ) -> RpcResult<Fields> {
        let operations = params
            .get("operations")
            .and_then(Value::as_array)
            .ok_or_else(|| RpcError::invalid_params("'operations' must be an array"))?;
        let mut values: Vec<Option<Value>> = Vec::with_capacity(operations.len());
        let mut answers = Vec::with_capacity(operations.len());
        for op in operations {
            let id = op.get("id").cloned().unwrap_or(Value::Null);
            let outcome = match parse_operation(op, &values) {
                Ok((method, _)) if method == "transaction" => Err(RpcError::new(
                    ErrorCode::MalformedTransaction,
                    "transactions do not nest",
                )),
                Ok((method, op_params)) => self
                    .dispatch(&method, &op_params, Some(session))
                    .await
                    .map(|mut fields| {
                        fields.insert("sessionId".into(), json!(session.id));
                        fields
                    }),
                Err(e) => Err(e),
            };
            values.push(outcome.as_ref().ok().and_then(|f| f.get("value").cloned()));
            answers.push(match outcome {
                Ok(fields) => json!({"jsonrpc": "2.0", "id": id, "result": fields}),
                Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
            });
        }
        Ok(value(Value::Array(answers)))
    }

    /// Holds `object` on behalf of `session` until released or unref'd.
    pub(crate) fn hold(&self, object: &MediaObject, session: &Session) {
        object.state.lock().holders.insert(session.id.clone());
        session.hold(object.id.clone());
    }

    /// Releases an object: its children first, then its connections, then
    /// itself. Raises ElementDisconnected and ObjectDestroyed.
    pub(crate) fn release(&self, object: &MediaObject) {
        let (children, holders) = {
            let mut state = object.state.lock();
            (
                std::mem::take(&mut state.children),
                std::mem::take(&mut state.holders),
            )
        };
        for child in children {
            if let Some(child) = self.registry.get(&child) {
                self.release(&child);
            }
        }
        if let Kind::Element { media, element, .. } = &object.kind {
            for c in media.remove_element(*element) {
                self.connection_changed(media, &c, false, Some((*element, object)));
            }
            self.sync_routes(media);
        }
        // After its routes are gone, so the media path never sees a route
        // to an endpoint it already freed.
        discard(object);
        if let Some(parent) = object.parent.as_ref().and_then(|p| self.registry.get(p)) {
            parent.state.lock().children.retain(|c| *c != object.id);
        }
        for holder in holders {
            if let Some(session) = self.sessions.get(&holder) {
                session.let_go(&object.id);
            }
        }
        if let Some(manager) = self.registry.get(SERVER_MANAGER_ID) {
            let mut fields = Map::new();
            fields.insert("objectId".into(), json!(object.id));
            self.events.emit(&manager, "ObjectDestroyed", fields);
        }
        self.events.forget_object(&object.id);
        self.registry.remove(&object.id);
        tracing::debug!(id = %object.id, "released");
    }

    pub(crate) fn object(&self, id: &str) -> RpcResult<Arc<MediaObject>> {
        self.registry
            .get(id)
            .ok_or_else(|| RpcError::object_not_found(id))
    }

    pub(crate) fn object_param(&self, params: &Map<String, Value>) -> RpcResult<Arc<MediaObject>> {
        self.object(str_param(params, "object")?)
    }
}

/// Frees what an element holds in the media core: its endpoint. (Its graph
/// connections are torn down by the caller, which raises the events.)
fn discard(object: &MediaObject) {
    let Kind::Element { webrtc, uri, .. } = &object.kind else {
        return;
    };
    if let Some(endpoint) = webrtc {
        endpoint.release();
    }
    match uri {
        Some(UriElement::Recorder(r)) => r.release(),
        Some(UriElement::Player(p)) => p.release(),
        None => {}
    }
}

/// A result whose only member is `value`.
pub(crate) fn value(v: Value) -> Fields {
    let mut fields = Map::new();
    fields.insert("value".into(), v);
    fields
}

/// A required string member of a method's params (JSON-RPC level).
pub(crate) fn str_param<'a>(params: &'a Map<String, Value>, name: &str) -> RpcResult<&'a str> {
    match params.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(RpcError::invalid_params(format!(
            "'{name}' must be a string"
        ))),
        None => Err(RpcError::invalid_params(format!("missing '{name}'"))),
    }
}

/// Reads one operation of a transaction, resolving `newref:N` references.
fn parse_operation(
    op: &Value,
    values: &[Option<Value>],
) -> RpcResult<(String, Map<String, Value>)> {
    let malformed = |why: String| RpcError::new(ErrorCode::MalformedTransaction, why);
    let method = op
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("an operation has no method".into()))?;
    let params = match op.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(malformed("an operation's params must be an object".into())),
    };
    let mut params = Value::Object(params);
    resolve_newrefs(&mut params, values).map_err(malformed)?;
    let Value::Object(params) = params else {
        unreachable!("resolving references keeps an object an object")
    };
    Ok((method.to_owned(), params))
}

fn resolve_newrefs(v: &mut Value, values: &[Option<Value>]) -> Result<(), String> {
    match v {
        Value::String(s) => {
            if let Some(n) = s.strip_prefix("newref:") {
                let index: usize = n
                    .parse()
                    .map_err(|_| format!("'{s}' is not a valid reference"))?;
                let resolved = values
                    .get(index)
                    .ok_or_else(|| format!("'{s}' refers to no earlier operation"))?
                    .clone()
                    .ok_or_else(|| format!("'{s}' refers to an operation that returned nothing"))?;
                *v = resolved;
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve_newrefs(item, values)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                resolve_newrefs(item, values)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newrefs_resolve_to_earlier_values() {
        let values = vec![Some(json!("pipe")), None];
        let op = json!({"method": "create", "params": {"constructorParams": {"mediaPipeline": "newref:0"}}});
        let (_, params) = parse_operation(&op, &values).unwrap();
        assert_eq!(params["constructorParams"]["mediaPipeline"], "pipe");

        for bad in ["newref:1", "newref:5", "newref:x"] {
            let op = json!({"method": "release", "params": {"object": bad}});
            let err = parse_operation(&op, &values).unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedTransaction, "{bad}");
        }
    }
}
