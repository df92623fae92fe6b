//! RecorderEndpoint and PlayerEndpoint of `rkms-media` ([`RecorderElement`], [`PlayerElement`],
//! on the pipeline's socket loop) plugged into the signaling layer's media backend port.
//!
//! Recordings are confined to the configured roots (`rkms.recording.roots`): a `uri` outside
//! them, or with a `..` component, is refused at `create` with the reason. Players read WebM,
//! MKV and MP4 files from `file://` URIs (or absolute paths) and `http(s)://` URLs, and live
//! `rtsp://` cameras (TCP interleaved unless the URI says `?transport=udp`).

use std::sync::Arc;

use parking_lot::Mutex;
use rkms_media::elements::player::Opener;
use rkms_media::elements::rtsp::{RtspTarget, RtspTransport};
use rkms_media::elements::{ElementEvent, ElementEvents, PlayerElement, RecorderElement};
use rkms_media::webrtc::WebRtcHost;
use rkms_media::{ElementId, Pipeline};
use rkms_recorder::MediaProfile;
use rkms_recorder::path_policy::RecordingRoots;
use rkms_signaling::backend::{
    BoxFuture, PlayerEndpoint, PlayerOptions, RecorderEndpoint, RecorderOptions, UriElementError,
    UriEndpointEvent, UriEventSink, VideoInfo,
};

/// How long a player's HTTP download may take.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn bad_uri(why: impl ToString) -> UriElementError {
    UriElementError::BadParam {
        param: "uri",
        why: why.to_string(),
    }
}

pub fn create_recorder(
    host: &WebRtcHost,
    roots: &RecordingRoots,
    pipeline: &Pipeline,
    element: ElementId,
    options: RecorderOptions,
    events: UriEventSink,
) -> Result<Arc<dyn RecorderEndpoint>, UriElementError> {
    let path = roots.resolve(&options.uri).map_err(bad_uri)?;
    let profile =
        MediaProfile::from_kurento(&options.profile).ok_or_else(|| UriElementError::BadParam {
            param: "mediaProfile",
            why: format!(
                "{} is not recorded by rkms (WEBM, MKV, MP4 and their _AUDIO_ONLY/_VIDEO_ONLY variants are)",
                options.profile
            ),
        })?;
    let port = host.add_element(element, Some(pipeline.id()));
    let recorder = RecorderElement::start(port, path, profile, element_events(events))
        .map_err(|e| UriElementError::Failed(e.to_string()))?;
    Ok(Arc::new(RecorderAdapter(Mutex::new(Some(Arc::new(
        recorder,
    ))))))
}

pub fn create_player(
    host: &WebRtcHost,
    pipeline: &Pipeline,
    element: ElementId,
    options: PlayerOptions,
    events: UriEventSink,
) -> Result<Arc<dyn PlayerEndpoint>, UriElementError> {
    let uri = options.uri;
    if uri.starts_with("rtsp://") || uri.starts_with("rtsps://") {
        let target = RtspTarget::parse(&uri, RtspTransport::default()).map_err(bad_uri)?;
        let port = host.add_element(element, Some(pipeline.id()));
        let player = PlayerElement::start_live(port, target, element_events(events))
            .map_err(|e| UriElementError::Failed(e.to_string()))?;
        return Ok(Arc::new(PlayerAdapter(Mutex::new(Some(Arc::new(player))))));
    }
    let open: Opener = if uri.starts_with("file://") || uri.starts_with('/') {
        Arc::new(rkms_recorder::player::open)
    } else if uri.starts_with("http://") || uri.starts_with("https://") {
        Arc::new(|uri: &str| rkms_media::elements::http::open(uri, HTTP_TIMEOUT))
    } else {
        return Err(bad_uri(format!(
            "'{uri}': rkms plays file://, http:// and https:// URIs of WebM, MKV and MP4 \
             files, and rtsp:// cameras"
        )));
    };
    let port = host.add_element(element, Some(pipeline.id()));
    let player = PlayerElement::start(port, uri, open, element_events(events))
        .map_err(|e| UriElementError::Failed(e.to_string()))?;
    Ok(Arc::new(PlayerAdapter(Mutex::new(Some(Arc::new(player))))))
}

fn element_events(sink: UriEventSink) -> ElementEvents {
    Arc::new(move |event| {
        sink(match event {
            ElementEvent::Recording => UriEndpointEvent::Recording,
            ElementEvent::Paused => UriEndpointEvent::Paused,
            ElementEvent::Stopped => UriEndpointEvent::Stopped,
            ElementEvent::EndOfStream => UriEndpointEvent::EndOfStream,
            ElementEvent::FlowIn(kind, flowing) => UriEndpointEvent::MediaFlowIn { kind, flowing },
            ElementEvent::FlowOut(kind, flowing) => {
                UriEndpointEvent::MediaFlowOut { kind, flowing }
            }
            ElementEvent::Error { kind, description } => UriEndpointEvent::Error {
                kind: kind.to_owned(),
                description,
            },
            // Raised by RtpEndpoints only.
            ElementEvent::RemoteRtcp(_) | ElementEvent::KeySoftLimit(_) => return,
        })
    })
}

/// Taken (and so dropped, which stops it and takes it off its loop) on release.
struct RecorderAdapter(Mutex<Option<Arc<RecorderElement>>>);

impl RecorderAdapter {
    fn get(&self) -> Option<Arc<RecorderElement>> {
        self.0.lock().clone()
    }
}

impl RecorderEndpoint for RecorderAdapter {
    fn record(&self) {
        if let Some(r) = self.get() {
            r.record();
        }
    }

    fn pause(&self) {
        if let Some(r) = self.get() {
            r.pause();
        }
    }

    fn stop(&self) {
        if let Some(r) = self.get() {
            r.stop();
        }
    }

    fn stop_and_wait(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(r) = self.get() {
                r.stop_and_wait().await;
            }
        })
    }

    fn release(&self) {
        self.0.lock().take();
    }
}

struct PlayerAdapter(Mutex<Option<Arc<PlayerElement>>>);

impl PlayerAdapter {
    fn get(&self) -> Result<Arc<PlayerElement>, String> {
        self.0
            .lock()
            .clone()
            .ok_or_else(|| "the player was released".to_owned())
    }
}

impl PlayerEndpoint for PlayerAdapter {
    fn play(&self) {
        if let Ok(p) = self.get() {
            p.play();
        }
    }

    fn pause(&self) {
        if let Ok(p) = self.get() {
            p.pause();
        }
    }

    fn stop(&self) {
        if let Ok(p) = self.get() {
            p.stop();
        }
    }

    fn position_ms(&self) -> u64 {
        self.get().map_or(0, |p| p.position_ms())
    }

    fn set_position(&self, ms: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.get()?.set_position(ms).await })
    }

    fn video_info(&self) -> BoxFuture<'_, Result<VideoInfo, String>> {
        Box::pin(async move {
            let info = self.get()?.video_info().await?;
            Ok(VideoInfo {
                seekable: info.seekable,
                duration_ms: info.duration_ms,
            })
        })
    }

    fn release(&self) {
        self.0.lock().take();
    }
}
