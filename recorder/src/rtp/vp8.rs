//! VP8 RTP payload format (RFC 7741).

use crate::error::{Error, Result};

/// Strips the payload descriptor: (starts a frame, VP8 data).
pub fn parse(payload: &[u8]) -> Result<(bool, &[u8])> {
    let bad = || Error::malformed("VP8 RTP", "truncated payload descriptor");
    let b0 = *payload.first().ok_or_else(bad)?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(at).ok_or_else(bad)?;
        at += 1;
        if x & 0x80 != 0 {
            let pid = *payload.get(at).ok_or_else(bad)?;
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1;
        }
        if x & 0x30 != 0 {
            at += 1;
        }
    }
    let data = payload
        .get(at..)
        .filter(|d| !d.is_empty())
        .ok_or_else(bad)?;
    Ok((start, data))
}

/// Splits a frame into payloads with a descriptor carrying a 15-bit picture ID.
pub fn packetize(frame: &[u8], picture_id: u16, max: usize, out: &mut Vec<Vec<u8>>) {
    let chunk = max - 4;
    for (i, part) in frame.chunks(chunk).enumerate() {
        let mut p = Vec::with_capacity(part.len() + 4);
        p.push(0x80 | if i == 0 { 0x10 } else { 0 });
        p.push(0x80);
        p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
        p.extend_from_slice(part);
        out.push(p);
    }
}
