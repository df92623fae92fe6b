//! Merging and rate-limiting keyframe requests (PLI/FIR) on their way to a source.

use std::time::{Duration, Instant};

/// The shortest time between two keyframe requests sent to one source.
pub const MIN_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Collapses every sink's keyframe requests for one source into at most one request per
/// [`MIN_KEYFRAME_INTERVAL`]; a request that arrives too early is remembered and sent when the
/// interval ends, so no sink's request is lost.
#[derive(Debug, Default, Clone)]
pub struct KeyframeGate {
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeGate {
    /// A sink asked for a keyframe. Returns whether to send a request to the source now.
    pub fn request(&mut self, now: Instant) -> bool {
        self.pending = true;
        self.poll(now)
    }

    /// Whether a deferred request is due now (call on the loop's timer).
    pub fn poll(&mut self, now: Instant) -> bool {
        let ready = self
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= MIN_KEYFRAME_INTERVAL);
        if self.pending && ready {
            self.pending = false;
            self.last_sent = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_requests_and_keeps_the_late_one() {
        let t0 = Instant::now();
        let mut g = KeyframeGate::default();
        assert!(g.request(t0));
        assert!(!g.request(t0 + Duration::from_millis(10)));
        assert!(!g.request(t0 + Duration::from_millis(20)));
        assert!(!g.poll(t0 + Duration::from_millis(400)));
        assert!(
            g.poll(t0 + Duration::from_millis(500)),
            "the merged request goes out"
        );
        assert!(!g.poll(t0 + Duration::from_millis(2000)), "and only once");
    }
}
