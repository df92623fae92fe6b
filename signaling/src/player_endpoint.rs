//! PlayerEndpoint's operations on top of the media backend's [`PlayerEndpoint`] port: `play`,
//! `pause`, `stop`, the `position` property (`getPosition`/`setPosition`) and `videoInfo`.
//! Its events (`EndOfStream`, `MediaFlowOutStateChanged`, `Error`) come from the media side
//! through [`crate::uri_endpoint`].

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::backend::PlayerEndpoint;
use crate::dispatch::value;
use crate::engine::{Engine, Fields};
use crate::error::{ErrorCode, RpcError, RpcResult};
use crate::registry::MediaObject;
use crate::uri_endpoint::UriState;
use crate::values::complex;

impl Engine {
    /// Runs a PlayerEndpoint operation; `None` when the operation is not one of its own.
    pub(crate) async fn player_method(
        &self,
        object: &MediaObject,
        player: &Arc<dyn PlayerEndpoint>,
        operation: &str,
        args: &Map<String, Value>,
    ) -> Option<RpcResult<Fields>> {
        let state = match operation {
            "play" => {
                player.play();
                UriState::Start
            }
            "pause" => {
                player.pause();
                UriState::Pause
            }
            "stop" => {
                player.stop();
                UriState::Stop
            }
            "getPosition" => return Some(Ok(value(json!(player.position_ms())))),
            "setPosition" => {
                let ms = args
                    .get("position")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .max(0);
                let result = player.set_position(ms as u64).await;
                return Some(
                    result
                        .map(|()| Fields::new())
                        .map_err(|why| RpcError::new(ErrorCode::OperationNotSupported, why)),
                );
            }
            "getVideoInfo" => {
                let result = player.video_info().await.map(|info| {
                    let mut f = Map::new();
                    f.insert("isSeekable".into(), json!(info.seekable));
                    f.insert("seekableInit".into(), json!(0));
                    f.insert(
                        "seekableEnd".into(),
                        json!(if info.seekable { info.duration_ms } else { 0 }),
                    );
                    f.insert("duration".into(), json!(info.duration_ms));
                    value(complex("VideoInfo", f))
                });
                return Some(result.map_err(|why| RpcError::new(ErrorCode::UnexpectedError, why)));
            }
            _ => return None,
        };
        self.set_uri_state(object, state);
        Some(Ok(Fields::new()))
    }
}
