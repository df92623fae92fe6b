//! A zero-copy STUN codec (RFC 8489) with the TURN attributes (RFC 8656).
//!
//! Parsing borrows the datagram and validates the attribute layout once, so
//! the hot path (Send indications) reads a message without allocating.
//! Building writes into a caller-owned `Vec` that the listener reuses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const HEADER_LEN: usize = 20;
const FINGERPRINT_XOR: u32 = 0x5354_554E;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// STUN/TURN methods.
pub mod method {
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
    /// RFC 6062 (TCP relay allocations).
    pub const CONNECT: u16 = 0x00A;
    pub const CONNECTION_BIND: u16 = 0x00B;
    pub const CONNECTION_ATTEMPT: u16 = 0x00C;
}

/// Attribute types this relay reads or writes.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const CONNECTION_ID: u16 = 0x002A;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// The four STUN message classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
}

/// Why a datagram is not a well-formed STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("not a STUN message (bad leading bits or magic cookie)")]
    NotStun,
    #[error("message length does not match the datagram")]
    BadLength,
    #[error("an attribute runs past the end of the message")]
    TruncatedAttribute,
}

/// A parsed STUN message borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    raw: &'a [u8],
    pub method: u16,
    pub class: Class,
    pub transaction_id: [u8; 12],
}

/// Total length of the STUN message at the start of `buf`, read from its
/// header, when `buf` holds at least a header (used to frame TCP streams).
pub fn framed_len(header: &[u8]) -> Option<usize> {
    let len = u16::from_be_bytes([*header.get(2)?, *header.get(3)?]) as usize;
    Some(HEADER_LEN + len)
}

impl<'a> Message<'a> {
    /// Parses one whole message; the datagram must end where the message does.
    pub fn parse(raw: &'a [u8]) -> Result<Self, DecodeError> {
        if raw.len() < HEADER_LEN {
            return Err(DecodeError::TooShort);
        }
        let typ = u16::from_be_bytes([raw[0], raw[1]]);
        let cookie = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
        if typ & 0xC000 != 0 || cookie != MAGIC_COOKIE {
            return Err(DecodeError::NotStun);
        }
        let len = u16::from_be_bytes([raw[2], raw[3]]) as usize;
        if !len.is_multiple_of(4) || HEADER_LEN + len != raw.len() {
            return Err(DecodeError::BadLength);
        }
        // Walk the attributes once so every later lookup can trust the layout.
        let mut off = HEADER_LEN;
        while off < raw.len() {
            if off + 4 > raw.len() {
                return Err(DecodeError::TruncatedAttribute);
            }
            let alen = u16::from_be_bytes([raw[off + 2], raw[off + 3]]) as usize;
            off += 4 + padded(alen);
            if off > raw.len() {
                return Err(DecodeError::TruncatedAttribute);
            }
        }
        let method = (typ & 0x000F) | ((typ & 0x00E0) >> 1) | ((typ & 0x3E00) >> 2);
        let class = match ((typ >> 7) & 0b10) | ((typ >> 4) & 0b01) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        };
        let mut transaction_id = [0; 12];
        transaction_id.copy_from_slice(&raw[8..20]);
        Ok(Message {
            raw,
            method,
            class,
            transaction_id,
        })
    }

    /// The attributes in order, as (type, value, offset of the attribute header).
    pub fn attributes(&self) -> impl Iterator<Item = (u16, &'a [u8], usize)> + 'a {
        let raw = self.raw;
        let mut off = HEADER_LEN;
        std::iter::from_fn(move || {
            if off + 4 > raw.len() {
                return None;
            }
            let typ = u16::from_be_bytes([raw[off], raw[off + 1]]);
            let alen = u16::from_be_bytes([raw[off + 2], raw[off + 3]]) as usize;
            let start = off;
            off += 4 + padded(alen);
            Some((typ, raw.get(start + 4..start + 4 + alen)?, start))
        })
    }

    /// The first attribute of a type, ignoring anything after
    /// MESSAGE-INTEGRITY other than FINGERPRINT (RFC 8489 §14.5).
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        let mut after_integrity = false;
        for (t, v, _) in self.attributes() {
            if t == typ && (!after_integrity || t == attr::FINGERPRINT) {
                return Some(v);
            }
            after_integrity |= t == attr::MESSAGE_INTEGRITY;
        }
        None
    }

    pub fn get_str(&self, typ: u16) -> Option<&'a str> {
        self.get(typ).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn get_u32(&self, typ: u16) -> Option<u32> {
        let v = self.get(typ)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// Decodes an XOR-*-ADDRESS attribute value.
    pub fn xor_address(&self, value: &[u8]) -> Option<SocketAddr> {
        decode_xor_address(value, &self.transaction_id)
    }

    /// Comprehension-required attributes (type < 0x8000) this relay does not know.
    pub fn unknown_required(&self, known: &[u16]) -> Vec<u16> {
        self.attributes()
            .map(|(t, _, _)| t)
            .filter(|t| *t < 0x8000 && !known.contains(t))
            .collect()
    }

    /// Checks MESSAGE-INTEGRITY against a long-term key; `None` if the
    /// message carries none.
    pub fn check_integrity(&self, key: &[u8]) -> Option<bool> {
        let (_, value, off) = self
            .attributes()
            .find(|(t, _, _)| *t == attr::MESSAGE_INTEGRITY)?;
        if value.len() != 20 {
            return Some(false);
        }
        Some(
            hmac_over(self.raw, off, 24, key)
                .verify_slice(value)
                .is_ok(),
        )
    }

    /// Checks FINGERPRINT when present (it must be the last attribute).
    pub fn fingerprint_ok(&self) -> bool {
        let Some((_, value, off)) = self.attributes().find(|(t, _, _)| *t == attr::FINGERPRINT)
        else {
            return true;
        };
        if value.len() != 4 || off + 8 != self.raw.len() {
            return false;
        }
        let expected = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
        fingerprint_over(self.raw, off) == expected
    }

    pub fn has(&self, typ: u16) -> bool {
        self.get(typ).is_some()
    }
}

fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// HMAC-SHA1 over `raw[..off]` with the header length patched as if the
/// message ended `extra` bytes after `off`.
fn hmac_over(raw: &[u8], off: usize, extra: usize, key: &[u8]) -> Hmac<Sha1> {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&raw[..HEADER_LEN]);
    header[2..4].copy_from_slice(&((off + extra - HEADER_LEN) as u16).to_be_bytes());
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(&header);
    mac.update(&raw[HEADER_LEN..off]);
    mac
}

fn fingerprint_over(raw: &[u8], off: usize) -> u32 {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&raw[..HEADER_LEN]);
    header[2..4].copy_from_slice(&((off + 8 - HEADER_LEN) as u16).to_be_bytes());
    let mut digest = CRC32.digest();
    digest.update(&header);
    digest.update(&raw[HEADER_LEN..off]);
    digest.finalize() ^ FINGERPRINT_XOR
}

pub fn decode_xor_address(value: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match value[1] {
        0x01 if value.len() == 8 => {
            let mut ip = [0u8; 4];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = value[4 + i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        0x02 if value.len() == 20 => {
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                let mask = if i < 4 { cookie[i] } else { tid[i - 4] };
                *b = value[4 + i] ^ mask;
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Builds one STUN message into a reusable buffer.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    tid: [u8; 12],
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut Vec<u8>, method: u16, class: Class, tid: [u8; 12]) -> Self {
        buf.clear();
        let m = method & 0x0FFF;
        let c = class.bits();
        let typ = (m & 0x000F)
            | ((m & 0x0070) << 1)
            | ((m & 0x0F80) << 2)
            | ((c & 0b01) << 4)
            | ((c & 0b10) << 7);
        buf.extend_from_slice(&typ.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid);
        Writer { buf, tid }
    }

    /// A response to `req` of the given class.
    pub fn reply(buf: &'b mut Vec<u8>, req: &Message<'_>, class: Class) -> Self {
        Self::new(buf, req.method, class, req.transaction_id)
    }

    pub fn attr(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = padded(value.len()) - value.len();
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
        self
    }

    pub fn u32(&mut self, typ: u16, v: u32) -> &mut Self {
        self.attr(typ, &v.to_be_bytes())
    }

    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let mut v = [0u8; 20];
        let n = encode_xor_address(addr, &self.tid, &mut v);
        self.attr(typ, &v[..n])
    }

    /// Plain MAPPED-ADDRESS, still read by old STUN clients.
    pub fn mapped_address(&mut self, addr: SocketAddr) -> &mut Self {
        let mut v = [0u8; 20];
        v[2..4].copy_from_slice(&addr.port().to_be_bytes());
        let n = match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = 0x01;
                v[4..8].copy_from_slice(&ip.octets());
                8
            }
            IpAddr::V6(ip) => {
                v[1] = 0x02;
                v[4..20].copy_from_slice(&ip.octets());
                20
            }
        };
        self.attr(attr::MAPPED_ADDRESS, &v[..n])
    }

    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = Vec::with_capacity(4 + reason.len());
        v.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        v.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &v)
    }

    pub fn integrity(&mut self, key: &[u8]) -> &mut Self {
        let off = self.buf.len();
        let tag = hmac_over(self.buf, off, 24, key).finalize().into_bytes();
        self.attr(attr::MESSAGE_INTEGRITY, &tag)
    }

    pub fn fingerprint(&mut self) -> &mut Self {
        let off = self.buf.len();
        let v = fingerprint_over(self.buf, off);
        self.u32(attr::FINGERPRINT, v)
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Writes an XOR-*-ADDRESS value into `out`, returning its length (8 or 20).
pub fn encode_xor_address(addr: SocketAddr, tid: &[u8; 12], out: &mut [u8; 20]) -> usize {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    out[0] = 0;
    out[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ cookie[i];
            }
            8
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            for (i, b) in ip.octets().iter().enumerate() {
                let mask = if i < 4 { cookie[i] } else { tid[i - 4] };
                out[4 + i] = b ^ mask;
            }
            20
        }
    }
}

/// Length of the Data-indication header that [`write_data_indication_header`]
/// puts before a payload from `peer`.
pub fn data_indication_header_len(peer: SocketAddr) -> usize {
    HEADER_LEN + 4 + if peer.is_ipv4() { 8 } else { 20 } + 4
}

/// Writes a Data indication header (XOR-PEER-ADDRESS, then the DATA
/// attribute header) into `out`, which must be exactly
/// [`data_indication_header_len`] long; the payload follows it in the
/// caller's buffer, so relaying copies nothing. The transaction id is the
/// caller's (indications need no unique one beyond a fresh-looking value).
pub fn write_data_indication_header(
    out: &mut [u8],
    peer: SocketAddr,
    payload_len: usize,
    tid: &[u8; 12],
) {
    let mut addr = [0u8; 20];
    let alen = encode_xor_address(peer, tid, &mut addr);
    let body = 4 + alen + 4 + padded(payload_len);
    let typ: u16 = 0x0017; // Data indication
    out[0..2].copy_from_slice(&typ.to_be_bytes());
    out[2..4].copy_from_slice(&(body as u16).to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(tid);
    out[20..22].copy_from_slice(&attr::XOR_PEER_ADDRESS.to_be_bytes());
    out[22..24].copy_from_slice(&(alen as u16).to_be_bytes());
    out[24..24 + alen].copy_from_slice(&addr[..alen]);
    let d = 24 + alen;
    out[d..d + 2].copy_from_slice(&attr::DATA.to_be_bytes());
    out[d + 2..d + 4].copy_from_slice(&(payload_len as u16).to_be_bytes());
}

/// ChannelData framing (RFC 8656 §12.4): a 4-byte header, then the payload.
pub mod channel_data {
    /// Channel numbers a client may bind.
    pub const NUMBERS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

    /// Whether a datagram starts like ChannelData rather than STUN.
    pub fn is_channel_data(b: &[u8]) -> bool {
        b.first().is_some_and(|b0| b0 & 0xC0 == 0x40)
    }

    /// (channel number, payload) of a ChannelData message; the payload
    /// must fit in `b` (over UDP trailing padding is allowed).
    pub fn parse(b: &[u8]) -> Option<(u16, &[u8])> {
        if b.len() < 4 {
            return None;
        }
        let number = u16::from_be_bytes([b[0], b[1]]);
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        Some((number, b.get(4..4 + len)?))
    }

    /// Length of the framed message in a stream: over TCP it is padded to 4.
    pub fn framed_len(header: &[u8]) -> Option<usize> {
        let len = u16::from_be_bytes([*header.get(2)?, *header.get(3)?]) as usize;
        Some(4 + ((len + 3) & !3))
    }

    pub fn write_header(out: &mut [u8], number: u16, payload_len: usize) {
        out[0..2].copy_from_slice(&number.to_be_bytes());
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_parses_a_request_with_integrity_and_fingerprint() {
        let mut buf = Vec::new();
        let tid = [7u8; 12];
        let peer: SocketAddr = "192.0.2.1:3000".parse().unwrap();
        Writer::new(&mut buf, method::CREATE_PERMISSION, Class::Request, tid)
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .attr(attr::USERNAME, b"alice")
            .integrity(b"key")
            .fingerprint();
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.method, method::CREATE_PERMISSION);
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.get_str(attr::USERNAME), Some("alice"));
        assert_eq!(
            m.xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap()),
            Some(peer)
        );
        assert_eq!(m.check_integrity(b"key"), Some(true));
        assert_eq!(m.check_integrity(b"other"), Some(false));
        assert!(m.fingerprint_ok());
        let mut bad = buf.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(!Message::parse(&bad).unwrap().fingerprint_ok());
    }

    #[test]
    fn ipv6_xor_address_round_trips() {
        let tid = [0x5a; 12];
        let addr: SocketAddr = "[2001:db8::1]:4242".parse().unwrap();
        let mut out = [0u8; 20];
        let n = encode_xor_address(addr, &tid, &mut out);
        assert_eq!(decode_xor_address(&out[..n], &tid), Some(addr));
    }

    #[test]
    fn rejects_malformed_messages() {
        assert_eq!(Message::parse(&[0; 10]).unwrap_err(), DecodeError::TooShort);
        let mut buf = Vec::new();
        Writer::new(&mut buf, method::BINDING, Class::Request, [1; 12]).attr(attr::SOFTWARE, b"x");
        let mut long = buf.clone();
        long.extend_from_slice(&[0; 4]);
        assert_eq!(Message::parse(&long).unwrap_err(), DecodeError::BadLength);
        let mut lying = buf.clone();
        lying[22..24].copy_from_slice(&400u16.to_be_bytes());
        assert_eq!(
            Message::parse(&lying).unwrap_err(),
            DecodeError::TruncatedAttribute
        );
        let mut cookie = buf;
        cookie[4] ^= 0xFF;
        assert_eq!(Message::parse(&cookie).unwrap_err(), DecodeError::NotStun);
    }

    #[test]
    fn data_indication_header_parses_back() {
        let peer: SocketAddr = "198.51.100.7:9".parse().unwrap();
        let payload = b"hello";
        let h = data_indication_header_len(peer);
        let mut buf = vec![0u8; h + 8];
        buf[h..h + 5].copy_from_slice(payload);
        write_data_indication_header(&mut buf[..h], peer, payload.len(), &[3; 12]);
        let m = Message::parse(&buf).unwrap();
        assert_eq!((m.method, m.class), (method::DATA, Class::Indication));
        assert_eq!(m.get(attr::DATA), Some(&payload[..]));
        assert_eq!(
            m.xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap()),
            Some(peer)
        );
    }
}
