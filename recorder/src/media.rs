//! Media types shared by the RTP, container and player layers.

/// Codecs rkms moves without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Vp8,
    Vp9,
    Av1,
    H264,
    Opus,
    /// Only ever read from MP4 files; WebRTC cannot carry it.
    Aac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Audio,
    Video,
}

impl Codec {
    pub fn kind(self) -> TrackKind {
        match self {
            Codec::Vp8 | Codec::Vp9 | Codec::Av1 | Codec::H264 => TrackKind::Video,
            Codec::Opus | Codec::Aac => TrackKind::Audio,
        }
    }

    /// RTP clock rate used by WebRTC for this codec.
    pub fn rtp_clock_rate(self) -> u32 {
        match self.kind() {
            TrackKind::Video => 90_000,
            TrackKind::Audio => 48_000,
        }
    }
}

impl TrackKind {
    pub fn name(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        }
    }
}

/// What a container needs to describe a track.
///
/// `private` holds the codec's configuration record: `avcC` for H264, `av1C`
/// for AV1, the `OpusHead` for Opus, the AudioSpecificConfig for AAC; empty
/// for VP8/VP9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecConfig {
    pub codec: Codec,
    pub width: u16,
    pub height: u16,
    pub sample_rate: u32,
    pub channels: u8,
    pub private: Vec<u8>,
}

impl CodecConfig {
    pub fn video(codec: Codec, width: u16, height: u16, private: Vec<u8>) -> Self {
        Self {
            codec,
            width,
            height,
            sample_rate: 0,
            channels: 0,
            private,
        }
    }

    /// Opus as WebRTC sends it: 48 kHz, stereo-capable.
    pub fn opus() -> Self {
        Self {
            codec: Codec::Opus,
            width: 0,
            height: 0,
            sample_rate: 48_000,
            channels: 2,
            private: crate::codec::opus::opus_head(2, 0),
        }
    }
}

/// One access unit (a whole video frame or one audio packet) on a timeline in
/// microseconds.
///
/// Payload formats: H264 in AVCC (4-byte big-endian NAL lengths), AV1 as OBUs
/// with size fields and no temporal delimiters, VP8/VP9/Opus/AAC as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub pts_us: u64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}
