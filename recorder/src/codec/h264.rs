//! H264 NAL units: types, AVCC framing, the `avcC` record and SPS dimensions.

use super::bits::BitReader;

pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Appends one NAL unit in AVCC framing (4-byte length prefix).
pub fn push_avcc(out: &mut Vec<u8>, nal: &[u8]) {
    let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(nal);
}

/// Iterates the NAL units of an AVCC sample with `length_size`-byte prefixes.
/// Stops at the first truncated unit.
pub fn avcc_nals(sample: &[u8], length_size: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = sample;
    std::iter::from_fn(move || {
        if rest.len() < length_size || length_size == 0 {
            return None;
        }
        let len = rest[..length_size]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let nal = rest.get(length_size..length_size + len)?;
        rest = &rest[length_size + len..];
        Some(nal)
    })
}

/// The `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3) for one SPS
/// and PPS, with 4-byte NAL lengths.
pub fn avcc_record(sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut r = vec![
        1,
        sps.get(1).copied().unwrap_or(66),
        sps.get(2).copied().unwrap_or(0),
    ];
    r.push(sps.get(3).copied().unwrap_or(31));
    r.push(0xff); // 6 reserved bits + lengthSizeMinusOne = 3
    r.push(0xe1); // 3 reserved bits + one SPS
    r.extend_from_slice(&u16::try_from(sps.len()).unwrap_or(0).to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&u16::try_from(pps.len()).unwrap_or(0).to_be_bytes());
    r.extend_from_slice(pps);
    r
}

/// Parameter sets and NAL length size from an `avcC` record.
pub struct AvcConfig {
    pub length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

pub fn parse_avcc_record(rec: &[u8]) -> Option<AvcConfig> {
    let length_size = usize::from(rec.get(4)? & 3) + 1;
    let mut pos = 5;
    let read_sets = |count: usize, pos: &mut usize| -> Option<Vec<Vec<u8>>> {
        let mut sets = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*rec.get(*pos)?, *rec.get(*pos + 1)?]));
            sets.push(rec.get(*pos + 2..*pos + 2 + len)?.to_vec());
            *pos += 2 + len;
        }
        Some(sets)
    };
    let n_sps = usize::from(rec.get(pos)? & 0x1f);
    pos += 1;
    let sps = read_sets(n_sps, &mut pos)?;
    let n_pps = usize::from(*rec.get(pos)?);
    pos += 1;
    let pps = read_sets(n_pps, &mut pos)?;
    Some(AvcConfig {
        length_size,
        sps,
        pps,
    })
}

/// Removes emulation-prevention bytes (00 00 03 → 00 00).
fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Display width and height from a sequence parameter set NAL unit.
pub fn sps_dimensions(sps: &[u8]) -> Option<(u16, u16)> {
    let rbsp = unescape_rbsp(sps.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags + level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.bit()? {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (sub_w, sub_h) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let unit_y = sub_h * (2 - u32::from(frame_mbs_only));
        crop_x = (left + right) * if chroma_array_type == 0 { 1 } else { sub_w };
        crop_y = (top + bottom)
            * if chroma_array_type == 0 {
                2 - u32::from(frame_mbs_only)
            } else {
                unit_y
            };
    }
    let width = (width_mbs * 16).checked_sub(crop_x)?;
    let height = (height_map_units * 16 * (2 - u32::from(frame_mbs_only))).checked_sub(crop_y)?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sps_of_640x480_baseline() {
        // x264 baseline SPS for 640x480.
        let sps = [
            0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x3d, 0xa1, 0x00, 0x00, 0x03, 0x00, 0x01,
            0x00, 0x00, 0x03, 0x00, 0x3c, 0x8f, 0x16, 0x2e, 0x48,
        ];
        assert_eq!(sps_dimensions(&sps), Some((640, 480)));
        let rec = avcc_record(&sps, &[0x68, 0xcb, 0x83, 0xcb, 0x20]);
        let parsed = parse_avcc_record(&rec).expect("record");
        assert_eq!(parsed.length_size, 4);
        assert_eq!(parsed.sps[0], sps);
        assert_eq!(sps_dimensions(&[0x67]), None);
    }

    #[test]
    fn avcc_iteration_stops_at_truncation() {
        let mut s = Vec::new();
        push_avcc(&mut s, &[0x65, 1, 2]);
        push_avcc(&mut s, &[0x41, 3]);
        s.extend_from_slice(&[0, 0, 0, 9, 1]);
        let nals: Vec<_> = avcc_nals(&s, 4).collect();
        assert_eq!(nals, vec![&[0x65, 1, 2][..], &[0x41, 3][..]]);
    }
}
