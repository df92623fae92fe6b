//! VP8 frame header (RFC 6386 §9.1).

/// Whether a VP8 frame is a keyframe (P bit of the frame tag clear).
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// Width and height of a keyframe.
pub fn dimensions(frame: &[u8]) -> Option<(u16, u16)> {
    if !is_keyframe(frame) || frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], *frame.get(7)?]) & 0x3fff;
    let h = u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff;
    Some((w, h))
}
