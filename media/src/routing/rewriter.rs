//! Per-sink RTP header rewriting: one continuous stream per sink pad whatever its source does.

use std::time::Instant;

/// What a forwarded packet becomes for one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// The sink's sequence number.
    pub seq: u16,
    /// The sink's timestamp.
    pub timestamp: u32,
}

/// Maps a source's sequence numbers and timestamps onto a sink's stream.
///
/// Within one source stream the mapping is a fixed offset, so reordering and resends keep their
/// distance. When the sink's source changes (another element, or the same one starting a new
/// stream under another SSRC), the new stream's first packet continues the sink's sequence at
/// +1 and its timestamp at +(wall-clock time since the last packet) so the decoder sees one
/// stream, not a jump.
#[derive(Debug, Clone)]
pub struct Rewriter {
    seq_offset: u16,
    ts_offset: u32,
    /// Highest sequence number and its timestamp sent so far, and when.
    last: Option<(u16, u32, Instant)>,
    /// Set when the source changed: the next packet re-anchors the offsets.
    reanchor: bool,
}

/// A rewriter whose first packet keeps its numbers.
impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            seq_offset: 0,
            ts_offset: 0,
            last: None,
            reanchor: true,
        }
    }
}

impl Rewriter {
    /// The sink's source changed: the next packet starts a new mapping.
    pub fn source_changed(&mut self) {
        self.reanchor = true;
    }

    /// Rewrites the header fields of a source packet for this sink. `clock_rate` is the
    /// packet's media clock (Hz), used only to size the timestamp step at a re-anchoring. The
    /// sink's SSRC and payload type are the sink endpoint's business.
    pub fn rewrite(
        &mut self,
        seq: u16,
        timestamp: u32,
        clock_rate: u32,
        now: Instant,
    ) -> Rewritten {
        if self.reanchor {
            self.reanchor = false;
            match self.last {
                Some((last_seq, last_ts, at)) => {
                    let elapsed = now.saturating_duration_since(at);
                    let ticks = (elapsed.as_micros() as u64 * u64::from(clock_rate) / 1_000_000)
                        .max(1) as u32;
                    self.seq_offset = last_seq.wrapping_add(1).wrapping_sub(seq);
                    self.ts_offset = last_ts.wrapping_add(ticks).wrapping_sub(timestamp);
                }
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
            }
        }
        let out = Rewritten {
            seq: seq.wrapping_add(self.seq_offset),
            timestamp: timestamp.wrapping_add(self.ts_offset),
        };
        let newer = match self.last {
            Some((last_seq, ..)) => {
                let d = out.seq.wrapping_sub(last_seq);
                d != 0 && d < 0x8000
            }
            None => true,
        };
        if newer {
            self.last = Some((out.seq, out.timestamp, now));
        }
        out
    }

    /// The source sequence number a sink sequence number was mapped from (for NACKs), valid for
    /// packets of the current source.
    pub fn source_seq(&self, sink_seq: u16) -> u16 {
        sink_seq.wrapping_sub(self.seq_offset)
    }

    /// `timestamp` of the current source in the sink's numbering (for passing a sender report
    /// on); `None` until that source's first packet has set the mapping.
    pub fn timestamp(&self, timestamp: u32) -> Option<u32> {
        (self.last.is_some() && !self.reanchor).then(|| timestamp.wrapping_add(self.ts_offset))
    }

    /// The sink's header fields for a resent packet of the current source (no state change).
    pub fn resend(&self, seq: u16, timestamp: u32) -> Rewritten {
        Rewritten {
            seq: seq.wrapping_add(self.seq_offset),
            timestamp: timestamp.wrapping_add(self.ts_offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_source_keeps_its_spacing_and_a_new_source_continues_the_stream() {
        let t0 = Instant::now();
        let mut r = Rewriter::default();
        assert_eq!(
            r.rewrite(100, 5000, 90_000, t0),
            Rewritten {
                seq: 100,
                timestamp: 5000
            }
        );
        assert_eq!(r.rewrite(102, 8000, 90_000, t0).seq, 102);
        assert_eq!(
            r.rewrite(101, 8000, 90_000, t0).seq,
            101,
            "reordered packets keep their place"
        );
        r.source_changed();
        let t1 = t0 + Duration::from_millis(100);
        let first = r.rewrite(60_000, 1_000_000, 90_000, t1);
        assert_eq!(first.seq, 103);
        assert_eq!(first.timestamp, 8000 + 9000, "100 ms at 90 kHz later");
        assert_eq!(r.rewrite(60_001, 1_003_000, 90_000, t1).seq, 104);
        assert_eq!(r.source_seq(104), 60_001);
    }

    #[test]
    fn wraps_around() {
        let t0 = Instant::now();
        let mut r = Rewriter::default();
        r.rewrite(65_535, u32::MAX, 48_000, t0);
        let next = r.rewrite(0, 959, 48_000, t0);
        assert_eq!((next.seq, next.timestamp), (0, 959));
    }
}
