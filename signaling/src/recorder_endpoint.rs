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
            "record" => {
                recorder.record();
                UriState::Start
            }
            "pause" => {
                recorder.pause();
                UriState::Pause
            }
            "stop" => {
                recorder.stop();
                UriState::Stop
            }
            "stopAndWait" => {
                recorder.stop_and_wait().await;
                UriState::Stop
            }
            _ => return None,
        };
        self.set_uri_state(object, state);
        Some(Ok(Fields::new()))
    }
}
