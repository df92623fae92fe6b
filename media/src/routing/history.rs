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
    /// Remembers a packet (replacing the one `HISTORY_LEN` numbers older).
    pub fn push(&mut self, packet: &RtpPacket) {
        self.slots[usize::from(packet.header.sequence_number) % HISTORY_LEN] = Some(packet.clone());
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
