//! Latency histograms and their summaries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 60 s at 3 significant digits.
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

#[cfg(test)]
mod tests {
    use super::*;

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
