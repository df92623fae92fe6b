//! RTP on both sides of the recorder and player:
//! - [`packet`]: header parsing and serialisation;
//! - [`reorder`]: a small reordering window that reports losses;
//! - [`depacketizer`]: RTP → access units (drops frames with a missing
//!   packet and waits for the next keyframe);
//! - [`packetizer`]: access units → RTP, and [`pacer`]: when to send them;
//! - [`vp8`], [`vp9`], [`h264`], [`av1`]: each codec's payload format.

pub mod av1;
pub mod depacketizer;
pub mod h264;
pub mod pacer;
pub mod packet;
pub mod packetizer;
pub mod reorder;
pub mod vp8;
pub mod vp9;

pub use depacketizer::{AccessUnit, Depacketizer};
pub use pacer::Pacer;
pub use packet::RtpPacket;
pub use packetizer::Packetizer;

/// Largest RTP payload the packetizers produce: fits a 1280-byte path MTU
/// after IP/UDP/SRTP/header-extension overhead, as WebRTC stacks do.
pub const MAX_PAYLOAD: usize = 1150;
