//! VP9 RTP payload format (RFC 9628).

use crate::error::{Error, Result};

pub struct Vp9Payload<'a> {
    /// B bit: first packet of a layer frame.
    pub start: bool,
    pub spatial_layer: u8,
    pub data: &'a [u8],
}

pub fn parse(payload: &[u8]) -> Result<Vp9Payload<'_>> {
    let bad = || Error::malformed("VP9 RTP", "truncated payload descriptor");
    let byte = |at: usize| payload.get(at).copied().ok_or_else(bad);
    let b0 = byte(0)?;
    let (i, p, l, f, b, v) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x10 != 0,
        b0 & 0x08 != 0,
        b0 & 0x02 != 0,
    );
    let mut at = 1;
    if i {
        at += if byte(at)? & 0x80 != 0 { 2 } else { 1 };
    }
    let mut spatial_layer = 0;
    if l {
        spatial_layer = (byte(at)? >> 1) & 0x07;
        at += if f { 1 } else { 2 };
    }
    if f && p {
        for _ in 0..3 {
            let diff = byte(at)?;
            at += 1;
            if diff & 1 == 0 {
                break;
            }
        }
    }
    if v {
        let ss = byte(at)?;
        at += 1;
        let layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            at += 4 * layers;
        }
        if ss & 0x08 != 0 {
            let groups = byte(at)?;
            at += 1;
            for _ in 0..groups {
                let refs = usize::from((byte(at)? >> 2) & 0x03);
                at += 1 + refs;
            }
        }
    }
    let data = payload
        .get(at..)
        .filter(|d| !d.is_empty())
        .ok_or_else(bad)?;
    Ok(Vp9Payload {
        start: b,
        spatial_layer,
        data,
    })
}

/// Splits a frame into payloads (non-flexible mode, one layer). No
/// scalability structure is sent: receivers read the size from the
/// bitstream, and some (ffmpeg) refuse packets that carry one.
pub fn packetize(
    frame: &[u8],
    keyframe: bool,
    picture_id: u16,
    max: usize,
    out: &mut Vec<Vec<u8>>,
) {
    let chunk = max - 3;
    let count = frame.len().div_ceil(chunk).max(1);
    for (n, part) in frame.chunks(chunk).enumerate() {
        let mut p = Vec::with_capacity(part.len() + 3);
        let mut b0 = 0x80; // I: picture ID present
        if !keyframe {
            b0 |= 0x40; // P: inter-predicted
        }
        if n == 0 {
            b0 |= 0x08; // B: first packet of the frame
        }
        if n + 1 == count {
            b0 |= 0x04; // E: last packet of the frame
        }
        p.push(b0);
        p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
        p.extend_from_slice(part);
        out.push(p);
    }
}
