//! AV1 OBUs (AV1 spec §5.3): LEB128 sizes, the low-overhead bitstream format
//! containers store, and the `av1C` record built from a sequence header.

use super::bits::BitReader;

pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
pub const OBU_TILE_LIST: u8 = 8;

pub fn obu_type(header: u8) -> u8 {
    (header >> 3) & 0x0f
}

pub fn has_extension(header: u8) -> bool {
    header & 0x04 != 0
}

pub fn has_size_field(header: u8) -> bool {
    header & 0x02 != 0
}

/// Reads a LEB128 value; returns it and the bytes it took.
pub fn read_leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

pub fn write_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = u8::try_from(value & 0x7f).unwrap_or(0);
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One OBU split into its header bytes (1 or 2, without size field) and payload.
#[derive(Debug, Clone, Copy)]
pub struct Obu<'a> {
    pub header: &'a [u8],
    pub payload: &'a [u8],
}

impl Obu<'_> {
    pub fn kind(&self) -> u8 {
        obu_type(self.header[0])
    }
}

/// Parses one OBU from `data`; without a size field it extends to the end.
/// Returns the OBU and the bytes consumed.
pub fn parse_obu(data: &[u8]) -> Option<(Obu<'_>, usize)> {
    let first = *data.first()?;
    let hlen = if has_extension(first) { 2 } else { 1 };
    let header = data.get(..hlen)?;
    if has_size_field(first) {
        let (size, n) = read_leb128(data.get(hlen..)?)?;
        let start = hlen + n;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        Some((
            Obu {
                header,
                payload: data.get(start..end)?,
            },
            end,
        ))
    } else {
        Some((
            Obu {
                header,
                payload: &data[hlen..],
            },
            data.len(),
        ))
    }
}

/// Iterates the OBUs of a low-overhead-format temporal unit.
pub fn obus(data: &[u8]) -> impl Iterator<Item = Obu<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (obu, used) = parse_obu(rest)?;
        rest = &rest[used..];
        Some(obu)
    })
}

/// Appends an OBU in low-overhead format (size field set).
pub fn push_sized_obu(out: &mut Vec<u8>, header: &[u8], payload: &[u8]) {
    let Some((&first, ext)) = header.split_first() else {
        return;
    };
    out.push(first | 0x02);
    out.extend_from_slice(ext);
    write_leb128(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// What `av1C` and the container's video header need from a sequence header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceInfo {
    pub profile: u8,
    pub level: u8,
    pub tier: u8,
    pub width: u16,
    pub height: u16,
}

pub fn parse_sequence_header(payload: &[u8]) -> Option<SequenceInfo> {
    let mut r = BitReader::new(payload);
    let profile = r.bits(3)?;
    r.bit()?; // still_picture
    let reduced = r.bit()?;
    let (mut level, mut tier) = (0, 0);
    if reduced {
        level = r.bits(5)?;
    } else {
        let mut decoder_model_info = false;
        let mut buffer_delay_len = 0;
        if r.bit()? {
            // timing_info
            r.bits(32)?;
            r.bits(32)?;
            if r.bit()? {
                // num_ticks_per_picture_minus_1 as uvlc
                let mut zeros = 0;
                while !r.bit()? {
                    zeros += 1;
                    if zeros >= 32 {
                        return None;
                    }
                }
                r.bits(zeros)?;
            }
            decoder_model_info = r.bit()?;
            if decoder_model_info {
                buffer_delay_len = r.bits(5)? + 1;
                r.bits(32)?;
                r.bits(5)?;
                r.bits(5)?;
            }
        }
        let initial_display_delay = r.bit()?;
        let op_count = r.bits(5)? + 1;
        for i in 0..op_count {
            r.bits(12)?; // operating_point_idc
            let lvl = r.bits(5)?;
            let t = if lvl > 7 { r.bits(1)? } else { 0 };
            if i == 0 {
                level = lvl;
                tier = t;
            }
            if decoder_model_info && r.bit()? {
                r.bits(buffer_delay_len)?;
                r.bits(buffer_delay_len)?;
                r.bit()?;
            }
            if initial_display_delay && r.bit()? {
                r.bits(4)?;
            }
        }
    }
    let wbits = r.bits(4)? + 1;
    let hbits = r.bits(4)? + 1;
    let width = u16::try_from(r.bits(wbits)? + 1).ok()?;
    let height = u16::try_from(r.bits(hbits)? + 1).ok()?;
    Some(SequenceInfo {
        profile: u8::try_from(profile).ok()?,
        level: u8::try_from(level).ok()?,
        tier: u8::try_from(tier).ok()?,
        width,
        height,
    })
}

/// The `AV1CodecConfigurationRecord` (AV1-ISOBMFF §2.3) holding the sequence
/// header OBU. Bit depth and chroma fields state WebRTC's 8-bit 4:2:0; decoders
/// read the real values from the embedded sequence header.
pub fn av1c_record(info: &SequenceInfo, sequence_header_obu: &[u8]) -> Vec<u8> {
    let mut r = vec![
        0x81,
        (info.profile << 5) | (info.level & 0x1f),
        (info.tier << 7) | 0b0000_1100, // chroma_subsampling_x = y = 1
        0,
    ];
    r.extend_from_slice(sequence_header_obu);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 20] {
            let mut out = Vec::new();
            write_leb128(&mut out, v);
            assert_eq!(read_leb128(&out), Some((v, out.len())));
        }
        assert_eq!(read_leb128(&[0x80]), None);
    }

    #[test]
    fn obu_iteration() {
        let mut tu = Vec::new();
        push_sized_obu(&mut tu, &[OBU_SEQUENCE_HEADER << 3], &[1, 2, 3]);
        push_sized_obu(&mut tu, &[6 << 3], &[4]);
        let kinds: Vec<u8> = obus(&tu).map(|o| o.kind()).collect();
        assert_eq!(kinds, vec![OBU_SEQUENCE_HEADER, 6]);
        // A size beyond the buffer ends iteration instead of panicking.
        assert_eq!(obus(&[0x0a, 0x7f, 1]).count(), 0);
    }
}
