//! Opus: the `OpusHead` identification header (RFC 7845) and packet durations.

/// Pre-skip and gain zero, 48 kHz, mapping family 0.
pub fn opus_head(channels: u8, pre_skip: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1);
    h.push(channels);
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// Reads channel count and pre-skip back from an `OpusHead`.
pub fn parse_opus_head(head: &[u8]) -> Option<(u8, u16)> {
    if head.len() < 19 || &head[..8] != b"OpusHead" {
        return None;
    }
    Some((head[9], u16::from_le_bytes([head[10], head[11]])))
}

/// Duration of one Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1).
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    Some(frame * frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_ms_celt_packet() {
        // config 31 (CELT FB 20 ms), one frame.
        assert_eq!(packet_samples(&[31 << 3]), Some(960));
        assert_eq!(packet_samples(&[]), None);
        assert_eq!(parse_opus_head(&opus_head(2, 312)), Some((2, 312)));
    }
}
