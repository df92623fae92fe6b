//! RTP fixed header (RFC 3550 §5.1).

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses a packet, skipping CSRCs and header extensions and removing padding.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        let bad = |r: &str| Error::malformed("RTP", r);
        if data.len() < 12 {
            return Err(bad("shorter than the fixed header"));
        }
        if data[0] >> 6 != 2 {
            return Err(bad("version is not 2"));
        }
        let csrc = usize::from(data[0] & 0x0f);
        let mut start = 12 + 4 * csrc;
        if data[0] & 0x10 != 0 {
            let ext = data
                .get(start..start + 4)
                .ok_or_else(|| bad("truncated header extension"))?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            let pad = usize::from(*data.last().unwrap_or(&0));
            end = end
                .checked_sub(pad)
                .ok_or_else(|| bad("padding longer than the packet"))?;
        }
        if start > end {
            return Err(bad("header longer than the packet"));
        }
        Ok(Self {
            payload_type: data[1] & 0x7f,
            marker: data[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            payload: &data[start..end],
        })
    }

    /// Serialises with no CSRC, extension or padding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.payload.len());
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_extensions() {
        let p = RtpPacket {
            payload_type: 96,
            marker: true,
            sequence: 65535,
            timestamp: 7,
            ssrc: 9,
            payload: &[1, 2, 3],
        };
        let bytes = p.to_bytes();
        assert_eq!(RtpPacket::parse(&bytes).expect("parse"), p);
        // One-byte header extension of one word, and two bytes of padding.
        let mut ext = bytes[..12].to_vec();
        ext[0] |= 0x10 | 0x20;
        ext.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 1, 2, 3, 0, 2]);
        assert_eq!(RtpPacket::parse(&ext).expect("parse").payload, &[1, 2, 3]);
        assert!(RtpPacket::parse(&[0x80; 11]).is_err());
        assert!(RtpPacket::parse(&[0xb0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe]).is_err());
    }
}
