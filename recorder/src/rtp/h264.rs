//! H264 RTP payload format (RFC 6184), packetization mode 1: single NAL
//! unit, STAP-A and FU-A.

use crate::codec::h264::{self as bitstream, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};
use crate::error::{Error, Result};

const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Collects the NAL units of one access unit from its packets.
#[derive(Default)]
pub struct H264Assembler {
    nals: Vec<Vec<u8>>,
    fragment: Option<Vec<u8>>,
    /// Latest parameter sets seen, for the container's `avcC`.
    pub sps: Option<Vec<u8>>,
    pub pps: Option<Vec<u8>>,
}

/// Whether a packet can open an access unit (not an FU-A continuation).
pub fn is_start(payload: &[u8]) -> bool {
    match payload.first().map(|b| b & 0x1f) {
        Some(FU_A) => payload.get(1).is_some_and(|h| h & 0x80 != 0),
        Some(_) => true,
        None => false,
    }
}

impl H264Assembler {
    pub fn push(&mut self, payload: &[u8]) -> Result<()> {
        let bad = |r: &str| Error::malformed("H264 RTP", r);
        let header = *payload.first().ok_or_else(|| bad("empty payload"))?;
        match header & 0x1f {
            1..=23 => self.nal(payload.to_vec()),
            STAP_A => {
                let mut rest = &payload[1..];
                while rest.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let nal = rest
                        .get(2..2 + len)
                        .ok_or_else(|| bad("truncated STAP-A"))?;
                    self.nal(nal.to_vec());
                    rest = &rest[2 + len..];
                }
            }
            FU_A => {
                let fu = *payload.get(1).ok_or_else(|| bad("truncated FU-A"))?;
                let data = &payload[2..];
                if fu & 0x80 != 0 {
                    let mut nal = vec![(header & 0xe0) | (fu & 0x1f)];
                    nal.extend_from_slice(data);
                    self.fragment = Some(nal);
                } else {
                    self.fragment
                        .as_mut()
                        .ok_or_else(|| bad("FU-A without its start"))?
                        .extend_from_slice(data);
                }
                if fu & 0x40 != 0
                    && let Some(nal) = self.fragment.take()
                {
                    self.nal(nal);
                }
            }
            t => {
                return Err(bad(&format!(
                    "NAL unit type {t} not supported in packetization mode 1"
                )));
            }
        }
        Ok(())
    }

    fn nal(&mut self, nal: Vec<u8>) {
        match bitstream::nal_type(&nal) {
            NAL_SPS => self.sps = Some(nal.clone()),
            NAL_PPS => self.pps = Some(nal.clone()),
            _ => {}
        }
        if !nal.is_empty() {
            self.nals.push(nal);
        }
    }

    /// The access unit in AVCC framing and whether it holds an IDR slice;
    /// `None` if a fragmented NAL unit was left incomplete or nothing came.
    pub fn finish(&mut self) -> Option<(Vec<u8>, bool)> {
        let nals = std::mem::take(&mut self.nals);
        if self.fragment.take().is_some() || nals.is_empty() {
            return None;
        }
        let keyframe = nals.iter().any(|n| bitstream::nal_type(n) == NAL_IDR);
        let mut out = Vec::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
        for nal in nals.iter().filter(|n| bitstream::nal_type(n) != NAL_AUD) {
            bitstream::push_avcc(&mut out, nal);
        }
        Some((out, keyframe))
    }

    pub fn reset(&mut self) {
        self.nals.clear();
        self.fragment = None;
    }
}

/// Packetizes NAL units: single NAL unit packets, FU-A for larger ones.
pub fn packetize<'a>(nals: impl Iterator<Item = &'a [u8]>, max: usize, out: &mut Vec<Vec<u8>>) {
    for nal in nals {
        if nal.is_empty() {
            continue;
        }
        if nal.len() <= max {
            out.push(nal.to_vec());
            continue;
        }
        let header = nal[0];
        let body = &nal[1..];
        let chunk = max - 2;
        let count = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut fu = header & 0x1f;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == count {
                fu |= 0x40;
            }
            let mut p = Vec::with_capacity(part.len() + 2);
            p.push((header & 0xe0) | FU_A);
            p.push(fu);
            p.extend_from_slice(part);
            out.push(p);
        }
    }
}
