//! Codecs rkms forwards, how peers are configured for them, and payload-type mapping.
//!
//! Forwarding never transcodes here: a packet goes to a sink only if the sink negotiated the
//! same codec ([`CodecId`]), under the sink's own payload type.

use std::sync::OnceLock;

use rtc::interceptor::{
    NackGeneratorBuilder, ReceiverReportBuilder, Registry, Slot, TwccReceiverBuilder,
};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};

use crate::graph::MediaKind;

use super::extensions::{ABS_SEND_TIME, AUDIO_LEVEL, VIDEO_ORIENTATION};
use super::feedback::{FEEDBACK_TAP_SLOT, FeedbackTap};

/// A codec as far as forwarding cares: same id, same bitstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecId {
    /// Opus.
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// H.264 packetization-mode 0 (single NAL unit).
    H264SingleNal,
    /// H.264 packetization-mode 1 (non-interleaved).
    H264NonInterleaved,
    /// AV1.
    Av1,
}

impl CodecId {
    /// How many codecs there are.
    pub const COUNT: usize = 8;

    /// A dense index (0..[`CodecId::COUNT`]), for per-codec tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The codec of an `rtpmap` name (`VP8`, `opus`, ...) and its `fmtp` line; `None` for codecs
    /// rkms does not forward (rtx, red, ulpfec, telephone-event, ...).
    pub fn from_name(name: &str, fmtp: &str) -> Option<CodecId> {
        let name = name.rsplit('/').next().unwrap_or(name);
        Some(match name.to_ascii_lowercase().as_str() {
            "opus" => CodecId::Opus,
            "pcmu" => CodecId::Pcmu,
            "pcma" => CodecId::Pcma,
            "vp8" => CodecId::Vp8,
            "vp9" => CodecId::Vp9,
            "av1" => CodecId::Av1,
            "h264" if fmtp.contains("packetization-mode=1") => CodecId::H264NonInterleaved,
            "h264" => CodecId::H264SingleNal,
            _ => return None,
        })
    }

    /// The encoding name as SDP writes it.
    pub fn name(self) -> &'static str {
        match self {
            CodecId::Opus => "opus",
            CodecId::Pcmu => "PCMU",
            CodecId::Pcma => "PCMA",
            CodecId::Vp8 => "VP8",
            CodecId::Vp9 => "VP9",
            CodecId::H264SingleNal | CodecId::H264NonInterleaved => "H264",
            CodecId::Av1 => "AV1",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecId::Opus => 48_000,
            CodecId::Pcmu | CodecId::Pcma => 8_000,
            _ => 90_000,
        }
    }

    /// The codec of negotiated parameters.
    pub fn of(codec: &RTCRtpCodec) -> Option<CodecId> {
        CodecId::from_name(&codec.mime_type, &codec.sdp_fmtp_line)
    }
}

/// The media kind of a crate codec kind.
pub fn media_kind(kind: RtpCodecKind) -> Option<MediaKind> {
    match kind {
        RtpCodecKind::Audio => Some(MediaKind::Audio),
        RtpCodecKind::Video => Some(MediaKind::Video),
        _ => None,
    }
}

/// The crate codec kind of a media kind.
pub fn rtp_kind(kind: MediaKind) -> RtpCodecKind {
    match kind {
        MediaKind::Audio => RtpCodecKind::Audio,
        _ => RtpCodecKind::Video,
    }
}

/// A media engine with every codec rkms forwards (opus, PCMU, PCMA, VP8, VP9, H264 in both
/// packetization modes, AV1, each video codec with rtx; video feedback nack, nack pli, ccm fir,
/// goog-remb, transport-cc) and the header extensions mid, abs-send-time, transport-wide-cc,
/// ssrc-audio-level, video-orientation;
/// plus the interceptors: the [`FeedbackTap`] that lets keyframe requests and NACKs through to
/// the socket loop, and, when the remote sends media (`inbound`), NACK generation, receiver
/// reports and TWCC feedback.
///
/// The engine is built once and cloned for each peer: a clone's codec and feedback lists are
/// sized exactly, where registering feedback per peer left ~4 KB of growth slack in each.
pub fn media_setup(inbound: bool) -> Result<(MediaEngine, Registry), rtc::shared::error::Error> {
    static TEMPLATE: OnceLock<MediaEngine> = OnceLock::new();
    let engine = match TEMPLATE.get() {
        Some(engine) => engine.clone(),
        None => {
            let engine = engine_template()?;
            TEMPLATE.get_or_init(|| engine).clone()
        }
    };
    // Not the crate's NACK responder nor its sender reports: forwarded packets never pass the
    // crate's sender, so rkms answers NACKs from the routing core's history and writes its own
    // sender reports; the responder would keep an empty 1,024-packet buffer (~110 KB) per video
    // stream, the report generator a stream and two queues that never carry anything.
    // Every interceptor keeps a read and a write queue (~1 KB once used) that all RTCP passes
    // through, so a peer that only receives from rkms (a subscriber) gets only the tap.
    let registry = if inbound {
        Registry::new()
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
    } else {
        Registry::new()
    };
    let registry = registry.with(Slot::Custom(FEEDBACK_TAP_SLOT), FeedbackTap::default());
    Ok((engine, registry))
}

fn engine_template() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut engine = MediaEngine::default();
    // The default codecs already carry the nack and nack pli feedback.
    engine.register_default_codecs()?;
    // Besides mid and transport-wide-cc, which the crate's interceptor set-up registers.
    for (uri, kind) in [
        (ABS_SEND_TIME, RtpCodecKind::Audio),
        (ABS_SEND_TIME, RtpCodecKind::Video),
        (AUDIO_LEVEL, RtpCodecKind::Audio),
        (VIDEO_ORIENTATION, RtpCodecKind::Video),
    ] {
        engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: uri.to_owned(),
            },
            kind,
            None,
        )?;
    }
    configure_simulcast_extension_headers(&mut engine)?;
    // Only for what it registers on the engine (transport-cc feedback and extension): each
    // peer's registry gets its own TWCC receiver in `media_setup`.
    configure_twcc_receiver_only(Registry::new(), &mut engine)?;
    Ok(engine)
}

/// The first codec of `kind` that rkms forwards among an SDP's m-sections, as crate codec
/// parameters (the track rkms sends on that m-line is declared with it).
pub fn first_offered_codec(sdp: &str, kind: MediaKind) -> Option<RTCRtpCodecParameters> {
    let media = match kind {
        MediaKind::Audio => "m=audio",
        _ => "m=video",
    };
    let mut in_section = false;
    let mut order: Vec<u8> = Vec::new();
    let mut found: Vec<(u8, String, u32, u16)> = Vec::new();
    let mut fmtps: Vec<(u8, String)> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if line.starts_with("m=") {
            if in_section {
                break;
            }
            in_section = line.starts_with(media);
            if in_section {
                order = line
                    .split(' ')
                    .skip(3)
                    .filter_map(|p| p.parse().ok())
                    .collect();
            }
        } else if in_section {
            if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                let (pt, desc) = rest.split_once(' ')?;
                let mut parts = desc.split('/');
                let name = parts.next()?.to_owned();
                let rate = parts.next().and_then(|r| r.parse().ok()).unwrap_or(90_000);
                let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                found.push((pt.parse().ok()?, name, rate, channels));
            } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
                let (pt, params) = rest.split_once(' ')?;
                fmtps.push((pt.parse().ok()?, params.to_owned()));
            }
        }
    }
    // Static payload types (PCMU 0, PCMA 8) may come without an rtpmap.
    for (pt, name) in [(0u8, "PCMU"), (8, "PCMA")] {
        if order.contains(&pt) && !found.iter().any(|f| f.0 == pt) {
            found.push((pt, name.to_owned(), 8000, 0));
        }
    }
    order.iter().find_map(|pt| {
        let (pt, name, rate, channels) = found.iter().find(|f| f.0 == *pt)?;
        let fmtp = fmtps
            .iter()
            .find(|f| f.0 == *pt)
            .map(|f| f.1.clone())
            .unwrap_or_default();
        CodecId::from_name(name, &fmtp)?;
        let prefix = if kind == MediaKind::Audio {
            "audio"
        } else {
            "video"
        };
        Some(RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: format!("{prefix}/{name}"),
                clock_rate: *rate,
                channels: *channels,
                sdp_fmtp_line: fmtp,
                rtcp_feedback: vec![],
            },
            payload_type: *pt,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_indexes_fit_the_tables() {
        assert_eq!(CodecId::Av1.index(), CodecId::COUNT - 1);
    }

    #[test]
    fn picks_the_first_forwardable_codec_in_offer_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 97 102 96\r\na=rtpmap:96 VP8/90000\r\n\
                   a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\n\
                   a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";
        let video = first_offered_codec(sdp, MediaKind::Video).expect("video");
        assert_eq!(video.payload_type, 102);
        assert_eq!(
            CodecId::of(&video.rtp_codec),
            Some(CodecId::H264NonInterleaved)
        );
        let audio = first_offered_codec(sdp, MediaKind::Audio).expect("audio");
        assert_eq!((audio.payload_type, audio.rtp_codec.channels), (111, 2));
        assert!(first_offered_codec("garbage", MediaKind::Video).is_none());
    }
}
