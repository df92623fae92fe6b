//! Bitstream helpers per codec: what containers need from the frames
//! themselves (keyframe flags, dimensions, configuration records).

pub mod av1;
pub mod bits;
pub mod h264;
pub mod opus;
pub mod vp8;
pub mod vp9;
