//! AV1 RTP payload format (AOM "RTP Payload Format for AV1" v1.0): the
//! aggregation header and OBU elements, converted to and from the
//! low-overhead bitstream format containers store.

use crate::codec::av1::{
    self as bitstream, OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER, OBU_TILE_LIST,
};
use crate::error::{Error, Result};

/// Collects the OBUs of one temporal unit from its packets.
#[derive(Default)]
pub struct Av1Assembler {
    obus: Vec<Vec<u8>>,
    /// An OBU element continued in the next packet (Y bit).
    partial: Option<Vec<u8>>,
    /// Latest sequence header OBU (low-overhead form), for `av1C`.
    pub sequence_header: Option<Vec<u8>>,
    new_sequence: bool,
}

/// Whether a packet can open a temporal unit (its first element is not a continuation).
pub fn is_start(payload: &[u8]) -> bool {
    payload.first().is_some_and(|h| h & 0x80 == 0)
}

impl Av1Assembler {
    pub fn push(&mut self, payload: &[u8]) -> Result<()> {
        let bad = |r: &str| Error::malformed("AV1 RTP", r);
        let agg = *payload.first().ok_or_else(|| bad("empty payload"))?;
        let (z, y, w, n) = (
            agg & 0x80 != 0,
            agg & 0x40 != 0,
            usize::from((agg >> 4) & 3),
            agg & 0x08 != 0,
        );
        self.new_sequence |= n;
        let mut rest = &payload[1..];
        let mut elements = Vec::new();
        let mut index = 0;
        while !rest.is_empty() {
            index += 1;
            let element = if w != 0 && index == w {
                std::mem::take(&mut rest)
            } else {
                let (len, used) =
                    bitstream::read_leb128(rest).ok_or_else(|| bad("bad element length"))?;
                let len = usize::try_from(len).map_err(|_| bad("element length"))?;
                let e = rest
                    .get(used..used + len)
                    .ok_or_else(|| bad("truncated element"))?;
                rest = &rest[used + len..];
                e
            };
            elements.push(element);
        }
        let count = elements.len();
        for (i, element) in elements.into_iter().enumerate() {
            let mut obu = if i == 0 && z {
                let mut p = self
                    .partial
                    .take()
                    .ok_or_else(|| bad("continuation without its start"))?;
                p.extend_from_slice(element);
                p
            } else {
                element.to_vec()
            };
            if i + 1 == count && y {
                self.partial = Some(std::mem::take(&mut obu));
            } else {
                self.obu(&obu)?;
            }
        }
        Ok(())
    }

    fn obu(&mut self, element: &[u8]) -> Result<()> {
        let (obu, _) =
            bitstream::parse_obu(element).ok_or_else(|| Error::malformed("AV1 RTP", "bad OBU"))?;
        let kind = obu.kind();
        if kind == OBU_TEMPORAL_DELIMITER || kind == OBU_TILE_LIST {
            return Ok(());
        }
        let mut sized = Vec::with_capacity(element.len() + 4);
        bitstream::push_sized_obu(&mut sized, obu.header, obu.payload);
        if kind == OBU_SEQUENCE_HEADER {
            self.sequence_header = Some(sized.clone());
        }
        self.obus.push(sized);
        Ok(())
    }

    /// The temporal unit in low-overhead format and whether it starts a coded
    /// video sequence (carries a sequence header or had the N bit).
    pub fn finish(&mut self) -> Option<(Vec<u8>, bool)> {
        let obus = std::mem::take(&mut self.obus);
        let new_sequence = std::mem::take(&mut self.new_sequence);
        if self.partial.take().is_some() || obus.is_empty() {
            return None;
        }
        let keyframe = new_sequence
            || obus
                .iter()
                .any(|o| bitstream::obu_type(o[0]) == OBU_SEQUENCE_HEADER);
        Some((obus.concat(), keyframe))
    }

    pub fn reset(&mut self) {
        self.obus.clear();
        self.partial = None;
        self.new_sequence = false;
    }
}

/// Packetizes a low-overhead temporal unit: every element length-prefixed
/// (W = 0), OBUs split across packets with the Y/Z bits when needed.
pub fn packetize(tu: &[u8], keyframe: bool, max: usize, out: &mut Vec<Vec<u8>>) {
    let mut current = vec![if keyframe { 0x08 } else { 0 }];
    for obu in bitstream::obus(tu) {
        if matches!(obu.kind(), OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST) {
            continue;
        }
        // RTP elements carry OBUs without their size field.
        let mut element = Vec::with_capacity(obu.header.len() + obu.payload.len());
        element.push(obu.header[0] & !0x02);
        element.extend_from_slice(&obu.header[1..]);
        element.extend_from_slice(obu.payload);
        let mut rest = &element[..];
        loop {
            let room = max.saturating_sub(current.len() + 4);
            if rest.len() <= room {
                bitstream::write_leb128(&mut current, rest.len() as u64);
                current.extend_from_slice(rest);
                break;
            }
            if room > 16 {
                bitstream::write_leb128(&mut current, room as u64);
                current.extend_from_slice(&rest[..room]);
                rest = &rest[room..];
                current[0] |= 0x40; // Y: continued in the next packet
                out.push(std::mem::replace(&mut current, vec![0x80])); // Z
            } else {
                out.push(std::mem::replace(&mut current, vec![0]));
            }
        }
    }
    if current.len() > 1 {
        out.push(current);
    }
}
