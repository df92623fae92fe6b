//! The objects every session can see, by id.
//!
//! Ids follow Kurento's shapes so clients can reason about them:
//! `UUID_kurento.MediaPipeline` for a pipeline, `PIPELINE/UUID_kurento.Type`
//! for an element (the client drops a released pipeline's children from its
//! cache by that prefix), and `manager_ServerManager` for the singleton.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use rkms_media::{ElementId, Pipeline};
use serde_json::Value;

use crate::backend::{PlayerEndpoint, RecorderEndpoint, WebRtcEndpoint};
use crate::model::{ClassDef, NAMESPACE};

/// Id of the ServerManager singleton.
pub const SERVER_MANAGER_ID: &str = "manager_ServerManager";

/// What an object is, beyond its API class.
pub enum Kind {
    ServerManager,
    Pipeline {
        media: Arc<Pipeline>,
    },
    Element {
        pipeline_id: Arc<str>,
        media: Arc<Pipeline>,
        element: ElementId,
        /// The media backend's endpoint, for WebRtcEndpoint and RtpEndpoint objects.
        webrtc: Option<Arc<dyn WebRtcEndpoint>>,
        /// The media backend's recorder or player, for those objects.
        uri: Option<UriElement>,
    },
}

/// A RecorderEndpoint's or PlayerEndpoint's media side.
#[derive(Clone)]
pub enum UriElement {
    Recorder(Arc<dyn RecorderEndpoint>),
    Player(Arc<dyn PlayerEndpoint>),
}

/// Mutable per-object state, changed by requests.
#[derive(Default)]
pub struct ObjectState {
    pub name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub send_tags_in_events: bool,
    /// Values of properties that are plain settings (no behaviour yet).
    pub properties: HashMap<String, Value>,
    pub children: Vec<Arc<str>>,
    /// Sessions that hold the object; it is released when the last one lets go.
    pub holders: HashSet<Arc<str>>,
}

/// One remote object.
pub struct MediaObject {
    pub id: Arc<str>,
    pub class: &'static ClassDef,
    pub parent: Option<Arc<str>>,
    /// Seconds since the UNIX epoch.
    pub creation_time: u64,
    pub kind: Kind,
    pub state: Mutex<ObjectState>,
}

impl MediaObject {
    pub fn new(
        id: Arc<str>,
        class: &'static ClassDef,
        parent: Option<Arc<str>>,
        kind: Kind,
    ) -> Self {
        Self {
            id,
            class,
            parent,
            creation_time: unix_time().as_secs(),
            kind,
            state: Mutex::new(ObjectState::default()),
        }
    }

    /// The pipeline the object belongs to (a pipeline belongs to itself).
    pub fn pipeline_id(&self) -> Option<&Arc<str>> {
        match &self.kind {
            Kind::ServerManager => None,
            Kind::Pipeline { .. } => Some(&self.id),
            Kind::Element { pipeline_id, .. } => Some(pipeline_id),
        }
    }

    pub fn media_pipeline(&self) -> Option<&Arc<Pipeline>> {
        match &self.kind {
            Kind::ServerManager => None,
            Kind::Pipeline { media } | Kind::Element { media, .. } => Some(media),
        }
    }

    /// The object's name: the one set by a client, or else its id.
    pub fn name(&self) -> String {
        self.state
            .lock()
            .name
            .clone()
            .unwrap_or_else(|| self.id.to_string())
    }
}

/// A new pipeline id.
pub fn new_pipeline_id() -> String {
    format!("{}_{NAMESPACE}.MediaPipeline", uuid::Uuid::new_v4())
}

/// A new id for an element of `type_name` inside `pipeline_id`.
pub fn new_element_id(pipeline_id: &str, type_name: &str) -> String {
    format!(
        "{pipeline_id}/{}_{NAMESPACE}.{type_name}",
        uuid::Uuid::new_v4()
    )
}

pub fn unix_time() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Every live object.
#[derive(Default)]
pub struct Registry {
    objects: RwLock<HashMap<Arc<str>, Arc<MediaObject>>>,
}

impl Registry {
    pub fn insert(&self, object: Arc<MediaObject>) {
        self.objects.write().insert(object.id.clone(), object);
    }

    pub fn get(&self, id: &str) -> Option<Arc<MediaObject>> {
        self.objects.read().get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<MediaObject>> {
        self.objects.write().remove(id)
    }

    /// Ids of every live pipeline.
    pub fn pipelines(&self) -> Vec<Arc<str>> {
        self.objects
            .read()
            .values()
            .filter(|o| matches!(o.kind, Kind::Pipeline { .. }))
            .map(|o| o.id.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.objects.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_kurento_shapes() {
        let p = new_pipeline_id();
        assert!(p.ends_with("_kurento.MediaPipeline"));
        assert_eq!(p.len(), 36 + "_kurento.MediaPipeline".len());
        let e = new_element_id(&p, "PassThrough");
        let (prefix, rest) = e.split_once('/').unwrap();
        assert_eq!(prefix, p);
        assert!(rest.ends_with("_kurento.PassThrough"));
    }
}
