//! How much of a subscriber's downlink rkms's answers to its NACKs may take.
//!
//! A subscriber behind a congested link loses packets because the link is full, and NACKs
//! them. Each answer joins the queue that dropped the original, and a browser asks again for a
//! packet still missing every 100 ms (its round trip when it has no measure of one) up to ten
//! times. Answered without a bound, a subscriber behind a 300 kbps link was sent thousands of
//! retransmissions a second; its transport-cc feedback reported ~98% of them lost, and rkms's
//! estimate of its link, which bounds its publisher, fell to the floor.
//!
//! So resends draw on a token bucket refilled at a share of the subscriber's estimate
//! ([`RESEND_SHARE`]), holding at most [`BURST`] of it: the forwarded stream, bounded to the
//! estimate through its publisher, keeps the rest. A subscriber with no estimate (none received
//! yet) is not bounded. A NACK the budget cannot answer is dropped; the browser asks again.

use std::time::{Duration, Instant};

/// The share of a subscriber's estimated downlink that resends may take.
pub const RESEND_SHARE: f64 = 0.25;
/// How much unused budget is kept: a NACK naming a burst of lost packets is answered at once.
const BURST: Duration = Duration::from_millis(500);
/// The smallest bucket: two full packets get through however low the estimate.
const MIN_BUCKET_BYTES: f64 = 2.0 * 1500.0;

/// The bytes of resends one subscriber may still be sent.
#[derive(Debug, Default)]
pub struct ResendBudget {
    /// Bytes available (below zero after a resend larger than what was left), and when they
    /// were last topped up; `None` before the first resend.
    bucket: Option<(f64, Instant)>,
}

impl ResendBudget {
    /// Whether a resend may go now to a subscriber whose downlink is estimated at
    /// `estimate_bps`. One that goes is paid for with [`ResendBudget::spend`] once its size is
    /// known.
    pub fn allows(&mut self, estimate_bps: Option<u64>, now: Instant) -> bool {
        let Some(estimate) = estimate_bps else {
            self.bucket = None;
            return true;
        };
        let rate = estimate as f64 * RESEND_SHARE / 8.0;
        let capacity = (rate * BURST.as_secs_f64()).max(MIN_BUCKET_BYTES);
        let tokens = match self.bucket {
            None => capacity,
            Some((tokens, at)) => {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                (tokens + rate * elapsed).min(capacity)
            }
        };
        self.bucket = Some((tokens, now));
        tokens > 0.0
    }

    /// Pays for a resend of `bytes` that [`ResendBudget::allows`] let go.
    pub fn spend(&mut self, bytes: usize) {
        if let Some((tokens, _)) = &mut self.bucket {
            *tokens -= bytes as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resends of 1,000 bytes granted in one burst at `now`.
    fn granted(budget: &mut ResendBudget, estimate: Option<u64>, now: Instant) -> usize {
        (0..1000)
            .take_while(|_| {
                let go = budget.allows(estimate, now);
                if go {
                    budget.spend(1000);
                }
                go
            })
            .count()
    }

    #[test]
    fn resends_take_a_share_of_the_estimate() {
        let t0 = Instant::now();
        let mut budget = ResendBudget::default();
        // 800 kbps: 25 KB/s for resends, 12.5 KB held at most; the last resend may overdraw.
        assert_eq!(granted(&mut budget, Some(800_000), t0), 13);
        assert_eq!(granted(&mut budget, Some(800_000), t0), 0, "spent");
        let later = t0 + Duration::from_millis(200);
        assert_eq!(
            granted(&mut budget, Some(800_000), later),
            5,
            "5 KB in 200 ms"
        );
        let much_later = later + Duration::from_secs(10);
        assert_eq!(
            granted(&mut budget, Some(800_000), much_later),
            13,
            "no more than the burst is saved up"
        );
    }

    #[test]
    fn a_low_estimate_still_lets_a_repair_through() {
        let mut budget = ResendBudget::default();
        assert_eq!(granted(&mut budget, Some(30_000), Instant::now()), 3);
    }

    #[test]
    fn without_an_estimate_resends_are_not_bounded() {
        let mut budget = ResendBudget::default();
        assert_eq!(granted(&mut budget, None, Instant::now()), 1000);
    }
}
