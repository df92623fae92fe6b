//! rkms-recorder: the media-independent core of RecorderEndpoint and
//! PlayerEndpoint. Everything here is synchronous and single-threaded so the
//! media core can drive it from one pipeline thread.
//!
//! Module layout:
//! - [`profile`]: Kurento's media profiles, their containers and which codecs
//!   each container holds.
//! - [`path_policy`]: `file://` URIs to paths, confined to the recording roots.
//! - [`media`]: codec, track and frame types shared by every layer.
//! - [`codec`]: per-codec bitstream helpers (H264 SPS/`avcC`, AV1 OBUs/`av1C`,
//!   VP8/VP9 headers, Opus TOC).
//! - [`rtp`]: RTP parsing, reordering and loss detection, depacketizers
//!   (RTP → access units), packetizers (access units → RTP) and a pacer.
//! - [`timing`]: RTP timestamps → media time per track, sender-report A/V
//!   sync, pause gaps.
//! - [`mkv`], [`mp4`]: live writers (crash-safe: playable after SIGKILL) and
//!   demuxers; [`writer`] picks one per profile.
//! - [`recorder`]: [`Recorder`], RTP in, file out.
//! - [`player`]: [`player::Source`], the demuxed-input abstraction the
//!   PlayerEndpoint paces and packetizes.

pub mod codec;
pub mod error;
pub mod media;
pub mod mkv;
pub mod mp4;
pub mod path_policy;
pub mod player;
pub mod profile;
pub mod recorder;
pub mod rtp;
pub mod timing;
pub mod writer;

pub use error::{Error, Result};
pub use media::{Codec, CodecConfig, Frame, TrackKind};
pub use profile::{Container, MediaProfile};
pub use recorder::{Recorder, RecordingStats};
