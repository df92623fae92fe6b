//! VP9 uncompressed frame header, as far as keyframe flag and size.

use super::bits::BitReader;

pub struct Vp9Header {
    pub keyframe: bool,
    /// Present on keyframes.
    pub size: Option<(u16, u16)>,
}

pub fn parse_header(frame: &[u8]) -> Option<Vp9Header> {
    let mut r = BitReader::new(frame);
    if r.bits(2)? != 2 {
        return None; // frame_marker
    }
    let profile = r.bits(1)? | (r.bits(1)? << 1);
    if profile == 3 {
        r.bit()?;
    }
    if r.bit()? {
        // show_existing_frame
        return Some(Vp9Header {
            keyframe: false,
            size: None,
        });
    }
    let keyframe = !r.bit()?;
    if !keyframe {
        return Some(Vp9Header {
            keyframe,
            size: None,
        });
    }
    r.bit()?; // show_frame
    r.bit()?; // error_resilient_mode
    if r.bits(24)? != 0x49_83_42 {
        return None;
    }
    if profile >= 2 {
        r.bit()?; // ten_or_twelve_bit
    }
    let color_space = r.bits(3)?;
    if color_space != 7 {
        r.bit()?;
        if profile == 1 || profile == 3 {
            r.bits(3)?;
        }
    } else if profile == 1 || profile == 3 {
        r.bit()?;
    }
    let w = u16::try_from(r.bits(16)? + 1).ok()?;
    let h = u16::try_from(r.bits(16)? + 1).ok()?;
    Some(Vp9Header {
        keyframe,
        size: Some((w, h)),
    })
}
