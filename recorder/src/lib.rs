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
//!
//! Driving a recording (RecorderEndpoint), all on the pipeline thread:
//! 1. `roots.resolve(uri)` ([`path_policy::RecordingRoots`]) → path, or a
//!    `URI_ERROR`; `MediaProfile::from_kurento(name)`;
//! 2. at `record`: [`Recorder::new`]`(path, profile, &negotiated_codecs,
//!    epoch)` (refuses codecs the container cannot hold, creates the file:
//!    errors map to Kurento types with [`Error::kurento_type`]);
//! 3. per decrypted RTP packet of the primary payload type (not RTX, RED or
//!    FEC: unwrap or drop those first) `push_rtp(kind, bytes, arrival)`; the
//!    last RTCP SR of each stream at start, then each new one,
//!    `push_sender_report`; after each push, `take_keyframe_request()` →
//!    send PLI. A `Malformed` error from `push_rtp` concerns that packet only;
//!    an `Io` error ends the recording;
//! 4. `pause(now)` / `resume(now)`; `stop()` flushes and closes (also what
//!    `stopAndWait` waits for). A recording in which no frame was written
//!    leaves no file; any other leaves a playable one even if the process
//!    dies (clusters/fragments are flushed about every second).
//!
//! Playing (PlayerEndpoint): [`player::open`]`(uri)` → `Box<dyn Source>`;
//! per track a [`rtp::Packetizer`]; loop `next_frame()`, wait until
//! [`rtp::Pacer::due`], send `packetize(&frame)`; `seek()` then
//! `Pacer::reset()`; `duration_us()`/`seekable()` answer `getVideoInfo`.
//! AAC tracks (MP4 files) are reported but cannot be sent over WebRTC.

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
