//! A source's recent packets, kept to answer sinks' NACKs without asking the source.
//!
//! Each entry keeps what a resend needs whatever the source is (a WebRTC peer, an RtpEndpoint, a
//! player): the header fields of the original, its codec (the sink's payload type and, with RTX,
//! its retransmission payload type are looked up by codec) and the shared payload. Nothing of the
//! source has to be asked again when a NACK comes, so a source element answers like a peer.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::RtpPacket;
use crate::webrtc::codecs::CodecId;

/// How many packets a source keeps (about 1 s of 1.5 Mbps video).
pub const HISTORY_LEN: usize = 512;

/// How long a sequence number asked of the source stays asked: other sinks' NACKs for the same
/// lost packet in that time are not relayed again (one upstream NACK, not one per subscriber).
pub const UPSTREAM_NACK_INTERVAL: Duration = Duration::from_millis(100);

/// Upstream NACKs remembered for [`UPSTREAM_NACK_INTERVAL`], by sequence number modulo this.
const ASKED_LEN: usize = 64;

/// A kept packet: what a resend writes.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The source's sequence number.
    pub seq: u16,
    /// The source's timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// The codec it was forwarded as.
    pub codec: CodecId,
    /// The payload, shared with the forwarded copies (never copied to be kept).
    pub payload: Bytes,
}

/// A ring of the last [`HISTORY_LEN`] packets by sequence number, and the sequence numbers
/// recently asked of the source.
pub struct History {
    slots: Vec<Option<Kept>>,
    /// The highest sequence number kept.
    highest: Option<u16>,
    asked: [Option<(u16, Instant)>; ASKED_LEN],
}

impl Default for History {
    fn default() -> Self {
        History {
            slots: vec![None; HISTORY_LEN],
            highest: None,
            asked: [None; ASKED_LEN],
        }
    }
}

impl History {
    /// Remembers a packet (replacing the one `HISTORY_LEN` numbers older): header fields, codec
    /// and the shared payload. Header extensions and CSRCs are left out, so keeping a packet
    /// allocates nothing.
    pub fn push(&mut self, packet: &RtpPacket, codec: CodecId) {
        let h = &packet.header;
        let seq = h.sequence_number;
        self.slots[usize::from(seq) % HISTORY_LEN] = Some(Kept {
            seq,
            timestamp: h.timestamp,
            marker: h.marker,
            codec,
            payload: packet.payload.clone(),
        });
        if self
            .highest
            .is_none_or(|high| seq.wrapping_sub(high).wrapping_sub(1) < 0x7fff)
        {
            self.highest = Some(seq);
        }
    }

    /// Forgets everything: the source started a new stream, whose numbers say nothing about
    /// the old one's packets (they must neither answer its NACKs nor pass for its duplicates).
    pub fn clear(&mut self) {
        self.slots.fill(None);
        self.highest = None;
        self.asked = [None; ASKED_LEN];
    }

    /// Whether this very packet (same sequence number and timestamp) is already kept: the
    /// source sent it again.
    pub fn holds(&self, seq: u16, timestamp: u32) -> bool {
        self.get(seq)
            .is_some_and(|kept| kept.timestamp == timestamp)
    }

    /// The packet numbered `seq`, if still kept.
    pub fn get(&self, seq: u16) -> Option<&Kept> {
        self.slots[usize::from(seq) % HISTORY_LEN]
            .as_ref()
            .filter(|p| p.seq == seq)
    }

    /// Whether to ask the source for packet `seq`, which a sink lost and the history does not
    /// hold: not when it is ahead of anything the source sent (a sink's NACK from before a
    /// source switch maps to nonsense), nor when it was asked less than
    /// [`UPSTREAM_NACK_INTERVAL`] ago. Records it as asked.
    pub fn ask_upstream(&mut self, seq: u16, now: Instant) -> bool {
        let Some(highest) = self.highest else {
            return false;
        };
        if highest.wrapping_sub(seq) >= 0x8000 {
            return false;
        }
        let slot = &mut self.asked[usize::from(seq) % ASKED_LEN];
        if let Some((asked, at)) = *slot
            && asked == seq
            && now.saturating_duration_since(at) < UPSTREAM_NACK_INTERVAL
        {
            return false;
        }
        *slot = Some((seq, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(h: &mut History, seq: u16) {
        let mut p = RtpPacket::default();
        p.header.sequence_number = seq;
        h.push(&p, CodecId::Vp8);
    }

    #[test]
    fn keeps_recent_packets_only() {
        let mut h = History::default();
        for seq in 0..600u16 {
            push(&mut h, seq);
        }
        assert!(h.get(599).is_some());
        assert!(h.get(100).is_some());
        assert!(h.get(50).is_none(), "overwritten by 562");
    }

    #[test]
    fn asks_upstream_once_per_interval_and_never_for_the_future() {
        let now = Instant::now();
        let mut h = History::default();
        assert!(!h.ask_upstream(5, now), "nothing sent yet");
        push(&mut h, 65_534);
        push(&mut h, 3);
        push(&mut h, 65_535); // late: 3 stays the highest
        assert!(!h.ask_upstream(4, now), "not sent yet");
        assert!(h.ask_upstream(1, now));
        assert!(
            !h.ask_upstream(1, now + UPSTREAM_NACK_INTERVAL / 2),
            "just asked"
        );
        assert!(h.ask_upstream(1, now + UPSTREAM_NACK_INTERVAL));
        assert!(
            h.ask_upstream(60_000, now),
            "older than the history, the source may have it"
        );
    }
}
