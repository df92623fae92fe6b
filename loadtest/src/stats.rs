//! Latency histograms, RTP stream accounting (loss, jitter) and their summaries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 60 s at 3 significant digits.
#[derive(Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn clear(&mut self) {
        self.0.reset();
    }

    /// p50/p95/p99 in milliseconds.
    pub fn summary(&self) -> Percentiles {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One received RTP stream, accounted from its RTP headers (which SRTP leaves in the clear),
/// so every packet counts even when only a sample is decrypted.
#[derive(Debug, Clone)]
pub struct StreamStats {
    pub ssrc: u32,
    clock_rate: u32,
    /// Extended sequence number of the first packet of the window.
    base: Option<u64>,
    highest: u64,
    received: u64,
    last: Option<(u64, u32)>,
    /// RFC 3550 interarrival jitter, in RTP timestamp units.
    jitter: f64,
}

impl StreamStats {
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        Self {
            ssrc,
            clock_rate: clock_rate.max(1),
            base: None,
            highest: 0,
            received: 0,
            last: None,
            jitter: 0.0,
        }
    }

    /// Accounts one packet with sequence number `seq` and RTP timestamp `ts`, arrived at
    /// `arrival_ns` on the process clock.
    pub fn record(&mut self, seq: u16, ts: u32, arrival_ns: u64) {
        let ext = match self.base {
            None => {
                // Far enough from zero that a reordered packet before the first cannot underflow.
                let ext = (1u64 << 32) + u64::from(seq);
                self.base = Some(ext);
                self.highest = ext;
                ext
            }
            Some(_) => {
                // The extended number nearest the highest seen (RFC 3550 A.1).
                let delta = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
                self.highest.saturating_add_signed(delta)
            }
        };
        if ext > self.highest {
            self.highest = ext;
        }
        if let Some(base) = self.base
            && ext < base
        {
            self.base = Some(ext);
        }
        self.received += 1;
        if let Some((last_ns, last_ts)) = self.last {
            let arrival = (arrival_ns as f64 - last_ns as f64) * f64::from(self.clock_rate) / 1e9;
            let sent = f64::from(ts.wrapping_sub(last_ts) as i32);
            let d = (arrival - sent).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last = Some((arrival_ns, ts));
    }

    /// Starts a new measurement window: counts restart at the next packet.
    pub fn reset(&mut self) {
        *self = Self::new(self.ssrc, self.clock_rate);
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets between the first and the highest sequence number seen.
    pub fn expected(&self) -> u64 {
        self.base.map_or(0, |b| self.highest - b + 1)
    }

    /// Packets expected but not received (duplicates do not make it negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }
}

/// `lost / expected`, 0 when nothing was expected.
pub fn loss_ratio(lost: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        lost as f64 / expected as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_across_a_sequence_wrap() {
        let mut s = StreamStats::new(1, 90_000);
        let mut seq = 65_530u16;
        for i in 0..20u32 {
            if i != 7 && i != 12 {
                s.record(seq, i * 3000, u64::from(i) * 33_333_333);
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(s.expected(), 20);
        assert_eq!(s.received(), 18);
        assert_eq!(s.lost(), 2);
        assert!((loss_ratio(s.lost(), s.expected()) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn reordering_and_duplicates_are_not_loss() {
        let mut s = StreamStats::new(1, 48_000);
        for seq in [10u16, 12, 11, 13, 13, 9] {
            s.record(seq, 0, 0);
        }
        assert_eq!(s.expected(), 5); // 9..=13
        assert_eq!(s.lost(), 0);
        s.reset();
        assert_eq!((s.expected(), s.received()), (0, 0));
        s.record(100, 0, 0);
        assert_eq!(s.expected(), 1);
    }

    #[test]
    fn jitter_is_zero_for_perfect_pacing_and_grows_with_variation() {
        let mut steady = StreamStats::new(1, 90_000);
        let mut shaky = StreamStats::new(2, 90_000);
        for i in 0..200u64 {
            let ts = (i * 3000) as u32;
            steady.record(i as u16, ts, i * 33_333_333);
            let wobble = if i % 2 == 0 { 0 } else { 5_000_000 };
            shaky.record(i as u16, ts, i * 33_333_333 + wobble);
        }
        assert!(steady.jitter_ms() < 0.01, "{}", steady.jitter_ms());
        // Alternating 5 ms late: |D| = 5 ms every packet, so J converges to 5 ms.
        assert!(
            (shaky.jitter_ms() - 5.0).abs() < 0.1,
            "{}",
            shaky.jitter_ms()
        );
    }

    #[test]
    fn loss_ratio_of_nothing_is_zero() {
        assert_eq!(loss_ratio(0, 0), 0.0);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us * 10));
        }
        let s = l.summary();
        assert_eq!(l.count(), 1000);
        assert!((s.p50 - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.p99 - 9.9).abs() < 0.02, "{s:?}");
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!(a.summary().p99 >= 2.9);
    }
}
