//! Media elements that are not WebRTC peers but live on their pipeline's socket loop through an
//! [`crate::webrtc::ElementPort`]: the recorder (a sink, writing files with `rkms-recorder` on its
//! own thread), the player (a source, pacing a demuxed input into the loop from its own
//! thread, or forwarding an RTSP camera's frames as they come) and the RtpEndpoint (both,
//! exchanging plain RTP or SDES-SRTP with one remote peer from threads of its own). None ever
//! blocks the loop; all report what happens as [`ElementEvent`]s.

pub mod http;
pub mod player;
pub mod recorder;
pub mod rtp;
pub mod rtsp;

use std::sync::Arc;

use rkms_recorder::Codec;

use crate::graph::MediaKind;
use crate::webrtc::codecs::CodecId;

pub use player::{PlayerElement, VideoInfo};
pub use recorder::RecorderElement;
pub use rtp::RtpElement;

/// Something that happened to an element, for the signaling layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementEvent {
    /// The recorder writes media to its file.
    Recording,
    /// The recorder paused.
    Paused,
    /// The recorder stopped and closed its file.
    Stopped,
    /// The player reached the end of its input.
    EndOfStream,
    /// Media of `kind` started (`true`) or stopped arriving.
    FlowIn(MediaKind, bool),
    /// Media of `kind` started (`true`) or stopped leaving.
    FlowOut(MediaKind, bool),
    /// RTCP from the remote peer started (`true`) or stopped arriving (RtpEndpoint).
    RemoteRtcp(bool),
    /// An SDES key of the `kind` stream reached its soft usage limit and ends soon
    /// (RtpEndpoint); raised once per key.
    KeySoftLimit(MediaKind),
    /// A failure, with Kurento's error type (`RESOURCE_ERROR_OPEN`, `STREAM_ERROR_FORMAT`, ...).
    Error {
        /// Kurento's error type.
        kind: &'static str,
        /// What failed, for people.
        description: String,
    },
}

/// Where an element reports its events; called from the element's thread.
pub type ElementEvents = Arc<dyn Fn(ElementEvent) + Send + Sync>;

/// How long without packets before a flow counts as stopped (as for WebRTC endpoints).
const FLOW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The container codec of a forwarded codec; `None` for codecs no container here holds.
fn container_codec(codec: CodecId) -> Option<Codec> {
    Some(match codec {
        CodecId::Opus => Codec::Opus,
        CodecId::Vp8 => Codec::Vp8,
        CodecId::Vp9 => Codec::Vp9,
        CodecId::Av1 => Codec::Av1,
        CodecId::H264SingleNal | CodecId::H264NonInterleaved => Codec::H264,
        CodecId::Pcmu | CodecId::Pcma => return None,
    })
}

/// The forwarded codec a file's codec is sent as; `None` for AAC, which WebRTC cannot carry.
fn forwarded_codec(codec: Codec) -> Option<CodecId> {
    Some(match codec {
        Codec::Opus => CodecId::Opus,
        Codec::Vp8 => CodecId::Vp8,
        Codec::Vp9 => CodecId::Vp9,
        Codec::Av1 => CodecId::Av1,
        // The packetizer fragments large NAL units (FU-A): packetization-mode 1.
        Codec::H264 => CodecId::H264NonInterleaved,
        Codec::Aac => return None,
    })
}

fn media_kind(kind: rkms_recorder::TrackKind) -> MediaKind {
    match kind {
        rkms_recorder::TrackKind::Audio => MediaKind::Audio,
        rkms_recorder::TrackKind::Video => MediaKind::Video,
    }
}

fn track_kind(kind: MediaKind) -> Option<rkms_recorder::TrackKind> {
    match kind {
        MediaKind::Audio => Some(rkms_recorder::TrackKind::Audio),
        MediaKind::Video => Some(rkms_recorder::TrackKind::Video),
        _ => None,
    }
}

/// Per-kind flow bookkeeping shared by the elements.
#[derive(Default)]
struct Flows {
    last: [Option<std::time::Instant>; 2],
    flowing: [bool; 2],
}

impl Flows {
    fn index(kind: MediaKind) -> usize {
        usize::from(kind == MediaKind::Video)
    }

    /// Media of `kind` passed at `now`; returns `true` when it starts flowing.
    fn saw(&mut self, kind: MediaKind, now: std::time::Instant) -> bool {
        let i = Self::index(kind);
        self.last[i] = Some(now);
        !std::mem::replace(&mut self.flowing[i], true)
    }

    /// The kinds that stopped flowing by `now` (or all flowing ones when `all`).
    fn stopped(&mut self, now: std::time::Instant, all: bool) -> Vec<MediaKind> {
        let mut out = Vec::new();
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let i = Self::index(kind);
            let idle = self.last[i].is_none_or(|t| now.saturating_duration_since(t) > FLOW_TIMEOUT);
            if self.flowing[i] && (all || idle) {
                self.flowing[i] = false;
                out.push(kind);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn flows_start_once_and_time_out() {
        let t0 = Instant::now();
        let mut f = Flows::default();
        assert!(f.saw(MediaKind::Video, t0));
        assert!(!f.saw(MediaKind::Video, t0));
        assert!(f.stopped(t0 + Duration::from_secs(1), false).is_empty());
        assert_eq!(
            f.stopped(t0 + Duration::from_secs(3), false),
            [MediaKind::Video]
        );
        assert!(f.stopped(t0 + Duration::from_secs(9), true).is_empty());
    }

    #[test]
    fn codecs_map_both_ways() {
        for codec in [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::Av1, Codec::H264] {
            let id = forwarded_codec(codec).expect("forwardable");
            assert_eq!(container_codec(id), Some(codec));
        }
        assert_eq!(forwarded_codec(Codec::Aac), None);
        assert_eq!(container_codec(CodecId::Pcmu), None);
    }
}
