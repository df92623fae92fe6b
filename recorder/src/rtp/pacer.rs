//! Real-time pacing: maps frame times to the instants they are due.

use std::time::{Duration, Instant};

pub struct Pacer {
    anchor: Option<(Instant, u64)>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacer {
    pub fn new() -> Self {
        Self { anchor: None }
    }

    /// When the frame at `pts_us` is due; the first frame after `new`/`reset`
    /// is due at `now`. Frames before the anchor are due at once.
    pub fn due(&mut self, pts_us: u64, now: Instant) -> Instant {
        let (start, base) = *self.anchor.get_or_insert((now, pts_us));
        start + Duration::from_micros(pts_us.saturating_sub(base))
    }

    /// Re-anchors on the next frame (after pause, seek, or a stall).
    pub fn reset(&mut self) {
        self.anchor = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_due_at_their_offsets() {
        let mut p = Pacer::new();
        let t0 = Instant::now();
        assert_eq!(p.due(5_000_000, t0), t0);
        assert_eq!(
            p.due(5_040_000, t0 + Duration::from_millis(1)),
            t0 + Duration::from_millis(40)
        );
        p.reset();
        let t1 = t0 + Duration::from_secs(9);
        assert_eq!(p.due(1_000, t1), t1);
    }
}
