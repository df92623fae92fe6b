//! RecorderEndpoint's operations on top of the media backend's [`RecorderEndpoint`] port:
//! `record`, `pause`, `stop`, `stopAndWait`. Its events (`Recording`, `Paused`, `Stopped`,
//! `MediaFlowInStateChanged`, `Error`) come from the media side through
//! [`crate::uri_endpoint`].

use std::sync::Arc;

use crate::backend::RecorderEndpoint;
use crate::engine::{Engine, Fields};
use crate::error::RpcResult;
use crate::registry::MediaObject;
use crate::uri_endpoint::UriState;

impl Engine {
    /// Runs a RecorderEndpoint operation; `None` when the operation is not one of its own.
    pub(crate) async fn recorder_method(
        &self,
        object: &MediaObject,
        recorder: &Arc<dyn RecorderEndpoint>,
        operation: &str,
    ) -> Option<RpcResult<Fields>> {
        let state = match operation {
            "record" => UriState::Start,
            "pause" => UriState::Pause,
            "stop" | "stopAndWait" => UriState::Stop,
            _ => return None,
        };
        // The state first: the recorder's Recording, Paused or Stopped comes from its own
        // thread and may reach a client (this one or another) before this call goes on; a
        // client reading the state while handling it must see the state it stands for.
        self.set_uri_state(object, state);
        match operation {
            "record" => recorder.record(),
            "pause" => recorder.pause(),
            "stop" => recorder.stop(),
            _ => recorder.stop_and_wait().await, // stopAndWait
        }
        Some(Ok(Fields::new()))
    }
}
