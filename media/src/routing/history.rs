//! A source's recent packets, kept to answer sinks' NACKs without asking the source.

use super::RtpPacket;

/// How many packets a source keeps (about 1 s of 1.5 Mbps video).
pub const HISTORY_LEN: usize = 512;

/// A ring of the last [`HISTORY_LEN`] packets by sequence number; payloads are shared
/// (`Bytes`), so keeping them costs no copy.
pub struct History {
    slots: Vec<Option<RtpPacket>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            slots: vec![None; HISTORY_LEN],
        }
    }
}

impl History {
    /// Remembers a packet (replacing the one `HISTORY_LEN` numbers older): the header fields a
    /// resend needs and the shared payload. Header extensions and CSRCs are left out, so keeping
    /// a packet allocates nothing.
    pub fn push(&mut self, packet: &RtpPacket) {
        let h = &packet.header;
        let kept = RtpPacket {
            header: rtc::rtp::header::Header {
                version: h.version,
                marker: h.marker,
                payload_type: h.payload_type,
                sequence_number: h.sequence_number,
                timestamp: h.timestamp,
                ssrc: h.ssrc,
                ..Default::default()
            },
            payload: packet.payload.clone(),
        };
        self.slots[usize::from(h.sequence_number) % HISTORY_LEN] = Some(kept);
    }

    /// The packet numbered `seq`, if still kept.
    pub fn get(&self, seq: u16) -> Option<&RtpPacket> {
        self.slots[usize::from(seq) % HISTORY_LEN]
            .as_ref()
            .filter(|p| p.header.sequence_number == seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_packets_only() {
        let mut h = History::default();
        for seq in 0..600u16 {
            let mut p = RtpPacket::default();
            p.header.sequence_number = seq;
            h.push(&p);
        }
        assert!(h.get(599).is_some());
        assert!(h.get(100).is_some());
        assert!(h.get(50).is_none(), "overwritten by 562");
    }
}
