//! The synthetic media payload: what a publisher puts in each RTP packet so that a subscriber
//! can tell when it was sent and which packet it was, after the SFU has rewritten the RTP header.
//!
//! Layout: one VP8 payload-descriptor byte (start of partition 0, so an SFU that peeks at the
//! descriptor sees a well-formed packet), the magic `RKLT`, the send time in nanoseconds on the
//! process clock ([`clock_ns`]) and the publisher's own packet counter, both big-endian, then
//! filler up to the requested size.

use std::sync::OnceLock;
use std::time::Instant;

const MAGIC: &[u8; 4] = b"RKLT";
/// Bytes the stamp takes at the start of every payload.
pub const STAMP_LEN: usize = 1 + 4 + 8 + 8;

/// Nanoseconds since the first call in this process: publishers and subscribers run in the
/// same process, so they share this clock and one-way latency needs no synchronisation.
pub fn clock_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A payload of `len` bytes (at least [`STAMP_LEN`]) stamped with `sent_ns` and `counter`.
pub fn stamp(buf: &mut Vec<u8>, len: usize, sent_ns: u64, counter: u64) {
    buf.clear();
    buf.push(0x10);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&sent_ns.to_be_bytes());
    buf.extend_from_slice(&counter.to_be_bytes());
    buf.resize(len.max(STAMP_LEN), 0x5a);
}

/// The send time and counter of a stamped payload; `None` for anything else.
pub fn read_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    if payload.len() < STAMP_LEN || &payload[1..5] != MAGIC {
        return None;
    }
    let sent = u64::from_be_bytes(payload[5..13].try_into().ok()?);
    let counter = u64::from_be_bytes(payload[13..21].try_into().ok()?);
    Some((sent, counter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_garbage_is_refused() {
        let mut buf = Vec::new();
        stamp(&mut buf, 1100, 123_456_789, 42);
        assert_eq!(buf.len(), 1100);
        assert_eq!(read_stamp(&buf), Some((123_456_789, 42)));
        stamp(&mut buf, 3, 1, 2);
        assert_eq!(buf.len(), STAMP_LEN);
        assert_eq!(read_stamp(&buf), Some((1, 2)));
        assert_eq!(read_stamp(&buf[..STAMP_LEN - 1]), None);
        assert_eq!(read_stamp(&[0u8; 64]), None);
        assert_eq!(read_stamp(&[]), None);
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = clock_ns();
        let b = clock_ns();
        assert!(b >= a);
    }
}
