//! The output timeline of a live camera: frames keep the spacing of the camera's own
//! timestamps (a frame that arrived late in a burst is not stamped late), and each new RTSP
//! session (a reconnection) is placed at the wall-clock time it starts, after everything sent
//! before, so receivers see one stream whose RTP time never jumps backwards.

use std::time::Instant;

pub(super) struct LiveClock {
    epoch: Instant,
    /// Output time of the latest frame, µs since `epoch`.
    last_us: u64,
    /// Output time − camera time of the current session, µs.
    session_offset: Option<i64>,
}

impl LiveClock {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            last_us: 0,
            session_offset: None,
        }
    }

    /// A new session begins: its first frame is anchored afresh.
    pub fn new_session(&mut self) {
        self.session_offset = None;
    }

    /// The output time (µs) of a frame `camera_us` into the current session, arriving at `now`.
    pub fn output_us(&mut self, camera_us: i64, now: Instant) -> u64 {
        let offset = *self.session_offset.get_or_insert_with(|| {
            let wall = now.saturating_duration_since(self.epoch).as_micros() as u64;
            let start = wall.max(self.last_us + 1);
            start as i64 - camera_us
        });
        let out = camera_us.saturating_add(offset).max(0) as u64;
        self.last_us = self.last_us.max(out);
        out
    }
}

/// Camera time in µs of `ticks` of a `clock_rate` Hz clock.
pub(super) fn ticks_to_us(ticks: i64, clock_rate: u32) -> i64 {
    (i128::from(ticks) * 1_000_000 / i128::from(clock_rate.max(1))) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn camera_spacing_is_kept_and_sessions_never_go_back() {
        let t0 = Instant::now();
        let mut c = LiveClock::new(t0);
        let first = c.output_us(900_000, t0 + Duration::from_millis(50));
        assert_eq!(first, 50_000);
        // A burst: arrival time does not matter, the camera's spacing does.
        assert_eq!(
            c.output_us(966_666, t0 + Duration::from_millis(51)),
            116_666
        );
        // The camera restarts with its own clock at 0, one second later.
        c.new_session();
        let resumed = c.output_us(0, t0 + Duration::from_millis(1_200));
        assert_eq!(resumed, 1_200_000);
        assert_eq!(c.output_us(66_666, t0), 1_266_666);
        // A session anchored at a time already used starts after it.
        c.new_session();
        assert_eq!(c.output_us(5, t0), 1_266_667);
    }

    #[test]
    fn ticks_convert_at_the_stream_rate() {
        assert_eq!(ticks_to_us(90_000, 90_000), 1_000_000);
        assert_eq!(ticks_to_us(160, 8_000), 20_000);
        assert_eq!(ticks_to_us(-9, 90_000), -100);
    }
}
