//! EBML encoding (RFC 8794): element IDs, variable-size integers and values.

use std::io::Read;

use crate::error::{Error, Result};

/// The 8-byte "unknown size" marker of live-written master elements.
pub const UNKNOWN_SIZE: u64 = (1 << 56) - 1;

pub fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// Size as the shortest VINT (the all-ones value of each length is reserved).
pub fn put_size(out: &mut Vec<u8>, size: u64) {
    let len = (1..=8).find(|&n| size < (1u64 << (7 * n)) - 1).unwrap_or(8);
    put_size_len(out, size, len);
}

/// Size as a VINT of exactly `len` bytes (for later patching).
pub fn put_size_len(out: &mut Vec<u8>, size: u64, len: usize) {
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

pub fn put_master(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_id(out, id);
    put_size(out, body.len() as u64);
    out.extend_from_slice(body);
}

pub fn put_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    put_master(out, id, &bytes[skip..]);
}

pub fn put_float(out: &mut Vec<u8>, id: u32, value: f64) {
    put_master(out, id, &value.to_be_bytes());
}

pub fn put_str(out: &mut Vec<u8>, id: u32, value: &str) {
    put_master(out, id, value.as_bytes());
}

/// An element header read from a stream.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub id: u32,
    /// `None` for unknown size.
    pub size: Option<u64>,
    /// Bytes taken by the ID and size fields.
    pub len: u64,
}

fn read_byte(r: &mut impl Read) -> Result<Option<u8>> {
    let mut b = [0u8];
    match r.read(&mut b) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(b[0])),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => read_byte(r),
        Err(e) => Err(e.into()),
    }
}

/// The value bits of a VINT's first byte when the VINT is `len` bytes long.
fn marker_mask(len: u32) -> u8 {
    u8::try_from(0xffu16 >> len).unwrap_or(0)
}

/// Reads a VINT; returns its value with the marker removed, whether it was the
/// all-ones (unknown) value, and its length. `Ok(None)` at clean end of input.
fn read_vint(r: &mut impl Read) -> Result<Option<(u64, bool, u64)>> {
    let Some(first) = read_byte(r)? else {
        return Ok(None);
    };
    if first == 0 {
        return Err(Error::malformed("EBML", "invalid variable-size integer"));
    }
    let len = first.leading_zeros() + 1;
    let mask = marker_mask(len);
    let mut value = u64::from(first & mask);
    let mut all_ones = value == u64::from(mask);
    for _ in 1..len {
        let b = read_byte(r)?.ok_or_else(|| Error::malformed("EBML", "truncated integer"))?;
        all_ones &= b == 0xff;
        value = (value << 8) | u64::from(b);
    }
    Ok(Some((value, all_ones, u64::from(len))))
}

/// Reads an element header; `Ok(None)` at clean end of input.
pub fn read_header(r: &mut impl Read) -> Result<Option<Header>> {
    let Some(first) = read_byte(r)? else {
        return Ok(None);
    };
    if first == 0 || first.leading_zeros() > 3 {
        return Err(Error::malformed(
            "EBML",
            format!("invalid element ID byte {first:#x}"),
        ));
    }
    let id_len = first.leading_zeros() + 1;
    let mut id = u32::from(first);
    for _ in 1..id_len {
        let b = read_byte(r)?.ok_or_else(|| Error::malformed("EBML", "truncated ID"))?;
        id = (id << 8) | u32::from(b);
    }
    let (size, unknown, size_len) =
        read_vint(r)?.ok_or_else(|| Error::malformed("EBML", "truncated element size"))?;
    Ok(Some(Header {
        id,
        size: (!unknown).then_some(size),
        len: u64::from(id_len) + size_len,
    }))
}

/// Reads a VINT from the front of a slice (block track numbers, lace sizes).
pub fn slice_vint(data: &[u8]) -> Option<(u64, usize)> {
    let first = *data.first()?;
    if first == 0 {
        return None;
    }
    let len = usize::try_from(first.leading_zeros()).ok()? + 1;
    let mut value = u64::from(first & marker_mask(len as u32));
    for &b in data.get(1..len)? {
        value = (value << 8) | u64::from(b);
    }
    Some((value, len))
}

pub fn parse_uint(body: &[u8]) -> u64 {
    body.iter()
        .take(8)
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

pub fn parse_float(body: &[u8]) -> Option<f64> {
    match body.len() {
        4 => Some(f64::from(f32::from_be_bytes(body.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(body.try_into().ok()?)),
        _ => None,
    }
}

/// Iterates the children of an in-memory master element body.
pub fn children(mut body: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    std::iter::from_fn(move || {
        let h = read_header(&mut body).ok()??;
        let size = usize::try_from(h.size?).ok()?;
        let child = body.get(..size)?;
        body = &body[size..];
        Some((h.id, child))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        for size in [0u64, 1, 126, 127, 128, 16_382, 16_383, 1 << 40] {
            let mut out = Vec::new();
            put_id(&mut out, 0xA3);
            put_size(&mut out, size);
            let h = read_header(&mut out.as_slice())
                .expect("ok")
                .expect("header");
            assert_eq!((h.id, h.size), (0xA3, Some(size)));
        }
        let mut unknown = vec![0x18, 0x53, 0x80, 0x67];
        put_size_len(&mut unknown, UNKNOWN_SIZE, 8);
        let h = read_header(&mut unknown.as_slice())
            .expect("ok")
            .expect("header");
        assert_eq!((h.id, h.size, h.len), (0x1853_8067, None, 12));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(read_header(&mut [0u8, 1].as_slice()).is_err());
        assert!(read_header(&mut [0x1A, 0x45].as_slice()).is_err());
        assert!(read_header(&mut [].as_slice()).expect("eof").is_none());
    }
}
