//! PlayerEndpoint's `rtsp://` inputs (IP cameras), through the `retina` RTSP client.
//!
//! - [`target`]: the URI: credentials, and the transport (TCP interleaved by default,
//!   `?transport=udp` or the server's default for UDP);
//! - [`session`]: DESCRIBE/SETUP/PLAY and which camera streams are forwarded;
//! - [`clock`]: output timestamps of a live source across reconnections;
//! - [`live`]: the player's thread: sends frames as they arrive, reconnects when the camera
//!   goes away, raises the element's events.
//!
//! Nothing is decoded or buffered: retina delivers frames in order and they are forwarded at
//! once, so `networkCache` (Kurento's jitter buffer, 2 s by default) has nothing to size and
//! is accepted and ignored. Over UDP retina keeps no reorder buffer either: a reordered or lost
//! packet costs the frame, and video waits for the camera's next keyframe.

mod clock;
pub(super) mod live;
mod session;
mod target;

pub use target::{RtspTarget, RtspTransport};
