//! Kurento's recording profiles and which codecs each container may hold.

use crate::error::{Error, Result};
use crate::media::{Codec, TrackKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// The WebM subset of Matroska: VP8/VP9/AV1 video, Opus audio.
    Webm,
    /// Full Matroska.
    Mkv,
    /// Fragmented ISO-BMFF.
    Mp4,
}

/// Kurento's `MediaProfileSpecType` values that rkms records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaProfile {
    Webm,
    WebmAudioOnly,
    WebmVideoOnly,
    Mkv,
    MkvAudioOnly,
    MkvVideoOnly,
    Mp4,
    Mp4AudioOnly,
    Mp4VideoOnly,
}

impl MediaProfile {
    pub const ALL: [MediaProfile; 9] = [
        MediaProfile::Webm,
        MediaProfile::WebmAudioOnly,
        MediaProfile::WebmVideoOnly,
        MediaProfile::Mkv,
        MediaProfile::MkvAudioOnly,
        MediaProfile::MkvVideoOnly,
        MediaProfile::Mp4,
        MediaProfile::Mp4AudioOnly,
        MediaProfile::Mp4VideoOnly,
    ];

    /// Parses the Kurento name (`WEBM_AUDIO_ONLY`, ...).
    pub fn from_kurento(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.kurento_name() == name)
    }

    pub fn kurento_name(self) -> &'static str {
        match self {
            MediaProfile::Webm => "WEBM",
            MediaProfile::WebmAudioOnly => "WEBM_AUDIO_ONLY",
            MediaProfile::WebmVideoOnly => "WEBM_VIDEO_ONLY",
            MediaProfile::Mkv => "MKV",
            MediaProfile::MkvAudioOnly => "MKV_AUDIO_ONLY",
            MediaProfile::MkvVideoOnly => "MKV_VIDEO_ONLY",
            MediaProfile::Mp4 => "MP4",
            MediaProfile::Mp4AudioOnly => "MP4_AUDIO_ONLY",
            MediaProfile::Mp4VideoOnly => "MP4_VIDEO_ONLY",
        }
    }

    pub fn container(self) -> Container {
        match self {
            MediaProfile::Webm | MediaProfile::WebmAudioOnly | MediaProfile::WebmVideoOnly => {
                Container::Webm
            }
            MediaProfile::Mkv | MediaProfile::MkvAudioOnly | MediaProfile::MkvVideoOnly => {
                Container::Mkv
            }
            MediaProfile::Mp4 | MediaProfile::Mp4AudioOnly | MediaProfile::Mp4VideoOnly => {
                Container::Mp4
            }
        }
    }

    pub fn has_audio(self) -> bool {
        !matches!(
            self,
            MediaProfile::WebmVideoOnly | MediaProfile::MkvVideoOnly | MediaProfile::Mp4VideoOnly
        )
    }

    pub fn has_video(self) -> bool {
        !matches!(
            self,
            MediaProfile::WebmAudioOnly | MediaProfile::MkvAudioOnly | MediaProfile::Mp4AudioOnly
        )
    }

    pub fn has(self, kind: TrackKind) -> bool {
        match kind {
            TrackKind::Audio => self.has_audio(),
            TrackKind::Video => self.has_video(),
        }
    }

    /// Checks that `codec` can be remuxed into this profile's file.
    pub fn check_codec(self, codec: Codec) -> Result<()> {
        if !self.has(codec.kind()) {
            return Err(Error::TrackNotInProfile {
                profile: self,
                kind: codec.kind().name(),
            });
        }
        if self.container().holds(codec) {
            Ok(())
        } else {
            Err(Error::CodecNotSupported {
                codec,
                container: self.container(),
                profile: self,
            })
        }
    }
}

impl Container {
    pub fn holds(self, codec: Codec) -> bool {
        match self {
            Container::Webm => matches!(codec, Codec::Vp8 | Codec::Vp9 | Codec::Av1 | Codec::Opus),
            Container::Mkv => {
                matches!(
                    codec,
                    Codec::Vp8 | Codec::Vp9 | Codec::Av1 | Codec::H264 | Codec::Opus
                )
            }
            Container::Mp4 => matches!(codec, Codec::H264 | Codec::Opus),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kurento_names_round_trip() {
        for p in MediaProfile::ALL {
            assert_eq!(MediaProfile::from_kurento(p.kurento_name()), Some(p));
        }
        assert_eq!(MediaProfile::from_kurento("FLV"), None);
    }

    #[test]
    fn codec_matrix() {
        assert!(MediaProfile::Webm.check_codec(Codec::Vp9).is_ok());
        assert!(MediaProfile::Webm.check_codec(Codec::Opus).is_ok());
        assert!(matches!(
            MediaProfile::Webm.check_codec(Codec::H264),
            Err(Error::CodecNotSupported { .. })
        ));
        assert!(MediaProfile::Mkv.check_codec(Codec::H264).is_ok());
        assert!(MediaProfile::Mp4.check_codec(Codec::H264).is_ok());
        assert!(matches!(
            MediaProfile::Mp4.check_codec(Codec::Vp8),
            Err(Error::CodecNotSupported { .. })
        ));
        assert!(matches!(
            MediaProfile::WebmAudioOnly.check_codec(Codec::Vp8),
            Err(Error::TrackNotInProfile { .. })
        ));
    }
}
