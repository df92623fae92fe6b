//! One RTSP session with a camera: DESCRIBE, SETUP of the streams rkms forwards, PLAY, and
//! retina's demuxer giving whole frames.
//!
//! Forwarded as they are: the first H264 video stream and the first PCMU or PCMA audio
//! stream. AAC cannot travel over WebRTC and retina has no Opus depacketizer, so those (and
//! H265, MJPEG, ONVIF metadata) are left out with a log line, as a file's AAC track is.

use std::time::Duration;

use retina::client::{
    Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, Stream, TcpTransportOptions,
    Transport, UdpTransportOptions,
};
use retina::codec::{FrameFormat, ParameterSetInsertion, h26x::Framing};

use super::target::{RtspTarget, RtspTransport};
use crate::graph::MediaKind;
use crate::webrtc::codecs::CodecId;

/// H264 as the packetizer takes it (4-byte NAL lengths), with the camera's latest SPS and PPS
/// in front of every IDR: from the SDP's sprop-parameter-sets when the camera never sends them
/// in band, so a viewer joining at any keyframe can decode.
const FRAME_FORMAT: FrameFormat = FrameFormat {
    h26x_framing: Framing::FourByteLength,
    parameter_set_insertion: ParameterSetInsertion::EachKeyFrame,
    aac_framing: retina::codec::aac::Framing::Raw,
};

/// A playing session.
pub(super) struct Playing {
    pub demuxed: Demuxed,
    /// Per stream of the camera: the kind and codec it is forwarded as, if it is.
    pub streams: Vec<Option<(MediaKind, CodecId)>>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum RtspError {
    #[error("{}", first_line(.0))]
    Rtsp(#[from] retina::Error),
    #[error("no answer from the camera within {0:?}")]
    Timeout(Duration),
    #[error("no media from the camera for {0:?}")]
    Stalled(Duration),
    #[error("the camera closed the stream")]
    Ended,
    #[error(
        "the camera offers nothing rkms forwards without transcoding (H264 video, PCMU or PCMA \
         audio); it offers {0}"
    )]
    NothingToForward(String),
}

impl RtspError {
    /// Kurento's error type for an `Error` event.
    pub fn kurento_type(&self) -> &'static str {
        match self {
            RtspError::NothingToForward(_) => "STREAM_ERROR_FORMAT",
            RtspError::Stalled(_) | RtspError::Ended => "RESOURCE_ERROR_READ",
            RtspError::Rtsp(_) | RtspError::Timeout(_) => "RESOURCE_ERROR_OPEN",
        }
    }

    /// Whether trying again may help.
    pub fn transient(&self) -> bool {
        !matches!(self, RtspError::NothingToForward(_))
    }
}

/// retina's errors carry their connection context on further lines; the first says what failed.
fn first_line(e: &retina::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// Connects to the camera and starts playing what rkms forwards.
pub(super) async fn connect(target: &RtspTarget) -> Result<Playing, RtspError> {
    let options = SessionOptions::default()
        .creds(target.credentials.clone())
        .user_agent(format!("rkms/{}", env!("CARGO_PKG_VERSION")));
    let mut session = Session::describe(target.url.clone(), options).await?;
    let streams = choose(session.streams());
    if streams.iter().all(Option::is_none) {
        let offered: Vec<String> = session.streams().iter().map(describe).collect();
        return Err(RtspError::NothingToForward(offered.join(", ")));
    }
    for (i, _) in streams.iter().enumerate().filter(|(_, s)| s.is_some()) {
        let transport = match target.transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        let setup = SetupOptions::default()
            .transport(transport)
            .frame_format(FRAME_FORMAT);
        session.setup(i, setup).await?;
    }
    let demuxed = session.play(PlayOptions::default()).await?.demuxed()?;
    Ok(Playing { demuxed, streams })
}

/// What each stream is forwarded as: the first H264 video and the first G.711 audio.
fn choose(streams: &[Stream]) -> Vec<Option<(MediaKind, CodecId)>> {
    let mut taken = [false, false];
    streams
        .iter()
        .map(|s| {
            let chosen = forwarded(s);
            match chosen {
                Some((kind, _)) if !taken[usize::from(kind == MediaKind::Video)] => {
                    taken[usize::from(kind == MediaKind::Video)] = true;
                    chosen
                }
                Some(_) => None,
                None => {
                    tracing::warn!(
                        stream = %describe(s),
                        "camera stream cannot be forwarded (no transcoding); playing without it"
                    );
                    None
                }
            }
        })
        .collect()
}

fn forwarded(s: &Stream) -> Option<(MediaKind, CodecId)> {
    match (s.media(), s.encoding_name()) {
        ("video", "h264") => Some((MediaKind::Video, CodecId::H264NonInterleaved)),
        ("audio", "pcmu") if s.clock_rate_hz() == 8000 => Some((MediaKind::Audio, CodecId::Pcmu)),
        ("audio", "pcma") if s.clock_rate_hz() == 8000 => Some((MediaKind::Audio, CodecId::Pcma)),
        _ => None,
    }
}

fn describe(s: &Stream) -> String {
    format!("{} {}/{}", s.media(), s.encoding_name(), s.clock_rate_hz())
}
