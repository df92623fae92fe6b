//! RTP timestamps → one media timeline for all tracks of a recording.
//!
//! Each track maps its (unwrapped) RTP timestamps onto a local clock in
//! microseconds: first from the arrival time of its first packet, then, once
//! RTCP sender reports come, from their NTP↔RTP pairs, which puts audio and
//! video of one sender on the same clock (lip sync). The first frame of any
//! track is media time zero; time spent paused is cut out; each track's
//! output only moves forward.

use std::time::Instant;

use crate::media::TrackKind;

/// An RTP timestamp this far from the previous one of its track means the
/// sender restarted its clock: the track is re-anchored on arrival time.
const MAX_CLOCK_JUMP_US: i64 = 5_000_000;
/// Once a track follows its sender's reports, a later report re-anchors it only when the two
/// clocks have drifted this far apart: reports carry jitter of their own, and re-anchoring on
/// each one would shake the track's timestamps back and forth.
const MAX_REPORT_DRIFT_US: i64 = 40_000;
/// The smallest step between two frames of a track: every container counts at least
/// milliseconds (WebM counts nothing finer), so two frames closer than this would share a time.
const MIN_STEP_US: u64 = 1_000;

struct TrackClock {
    clock_rate: i64,
    /// Last extended timestamp seen.
    last: Option<i64>,
    /// (extended RTP timestamp, local µs) anchor.
    anchor: Option<(i64, i64)>,
    last_out: Option<u64>,
    /// Anchored by a sender report (not only by arrival).
    synced: bool,
}

impl TrackClock {
    /// Extends `ts` relative to the last one seen without updating state.
    fn extend(&self, ts: u32) -> i64 {
        match self.last {
            None => i64::from(ts),
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
        }
    }

    fn local_us(&self, ext: i64) -> Option<i64> {
        let (ref_ts, ref_us) = self.anchor?;
        Some(ref_us + (ext - ref_ts) * 1_000_000 / self.clock_rate)
    }
}

pub struct Timeline {
    epoch: Instant,
    audio: TrackClock,
    video: TrackClock,
    /// local µs = NTP µs + offset, shared by the tracks of one sender.
    ntp_offset: Option<i64>,
    origin: Option<i64>,
    paused_total: i64,
    paused_since: Option<i64>,
}

fn ntp_to_us(ntp: u64) -> i64 {
    let secs = (ntp >> 32) as i64;
    let frac = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
    secs * 1_000_000 + frac as i64
}

impl Timeline {
    pub fn new(epoch: Instant, audio_clock: u32, video_clock: u32) -> Self {
        let clock = |rate: u32| TrackClock {
            clock_rate: i64::from(rate.max(1)),
            last: None,
            anchor: None,
            last_out: None,
            synced: false,
        };
        Self {
            epoch,
            audio: clock(audio_clock),
            video: clock(video_clock),
            ntp_offset: None,
            origin: None,
            paused_total: 0,
            paused_since: None,
        }
    }

    fn us(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX)
    }

    fn track(&mut self, kind: TrackKind) -> &mut TrackClock {
        match kind {
            TrackKind::Audio => &mut self.audio,
            TrackKind::Video => &mut self.video,
        }
    }

    /// An RTCP sender report of `kind`'s stream: `ntp` is the 64-bit NTP
    /// timestamp paired with `rtp_timestamp`.
    pub fn sender_report(
        &mut self,
        kind: TrackKind,
        ntp: u64,
        rtp_timestamp: u32,
        arrival: Instant,
    ) {
        let arrival_us = self.us(arrival);
        let ntp_us = ntp_to_us(ntp);
        let offset = self.ntp_offset;
        let track = self.track(kind);
        let ext = track.extend(rtp_timestamp);
        let offset = offset.unwrap_or_else(|| track.local_us(ext).unwrap_or(arrival_us) - ntp_us);
        let drift = track
            .local_us(ext)
            .map(|local| (local - (ntp_us + offset)).abs());
        if track.synced && drift.is_some_and(|d| d < MAX_REPORT_DRIFT_US) {
            return;
        }
        track.anchor = Some((ext, ntp_us + offset));
        track.synced = true;
        if track.last.is_none() {
            track.last = Some(ext);
        }
        self.ntp_offset = Some(offset);
    }

    /// Media time of a frame; `None` while paused or for a frame captured
    /// before the recording's first frame.
    pub fn media_time(
        &mut self,
        kind: TrackKind,
        rtp_timestamp: u32,
        arrival: Instant,
    ) -> Option<u64> {
        let paused = self.paused_since.is_some();
        let arrival_us = self.us(arrival);
        let track = self.track(kind);
        let ext = track.extend(rtp_timestamp);
        // Only a jump of the RTP clock itself (the sender restarted its
        // timestamps) re-anchors on arrival: frames that merely arrive late
        // (a stall, then a burst) keep the times their timestamps give.
        let jumped = track.last.is_some_and(|last| {
            ((ext - last) * 1_000_000 / track.clock_rate).abs() > MAX_CLOCK_JUMP_US
        });
        track.last = Some(ext);
        if jumped || track.anchor.is_none() {
            track.anchor = Some((ext, arrival_us));
        }
        if paused {
            return None;
        }
        let local = track.local_us(ext)?;
        let origin = *self.origin.get_or_insert(local);
        let paused = self.paused_total;
        let track = self.track(kind);
        // A frame captured before the recording's first frame (audio that
        // arrived late, say) is dropped rather than squeezed in at zero.
        let t = u64::try_from(local - origin - paused).ok()?;
        let t = match track.last_out {
            Some(last) if t < last + MIN_STEP_US => last + MIN_STEP_US,
            _ => t,
        };
        track.last_out = Some(t);
        Some(t)
    }

    pub fn pause(&mut self, now: Instant) {
        if self.paused_since.is_none() {
            self.paused_since = Some(self.us(now));
        }
    }

    pub fn resume(&mut self, now: Instant) {
        if let Some(since) = self.paused_since.take()
            && self.origin.is_some()
        {
            self.paused_total += self.us(now) - since;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wraparound_pause_and_sync() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut tl = Timeline::new(t0, 48_000, 90_000);
        // Video starts near the 32-bit wrap.
        let v0 = u32::MAX - 1500;
        assert_eq!(tl.media_time(TrackKind::Video, v0, ms(100)), Some(0));
        assert_eq!(
            tl.media_time(TrackKind::Video, v0.wrapping_add(3000), ms(133)),
            Some(33_333)
        );
        // Audio arrives 20 ms after the first video frame.
        assert_eq!(tl.media_time(TrackKind::Audio, 1000, ms(120)), Some(20_000));
        // Sender reports say audio ts 1000 was captured with video ts v0+900
        // (10 ms after the first video frame): audio moves to 10 ms.
        let ntp = 1u64 << 40;
        tl.sender_report(TrackKind::Video, ntp, v0.wrapping_add(900), ms(200));
        tl.sender_report(TrackKind::Audio, ntp, 1000, ms(200));
        assert_eq!(tl.media_time(TrackKind::Audio, 1960, ms(140)), Some(30_000));
        // Two seconds of pause are cut out.
        tl.pause(ms(1000));
        assert_eq!(
            tl.media_time(TrackKind::Video, v0.wrapping_add(90_000), ms(1100)),
            None
        );
        tl.resume(ms(3000));
        let after = tl
            .media_time(TrackKind::Video, v0.wrapping_add(270_000), ms(3100))
            .expect("resumed");
        assert!((after as i64 - 1_000_000).abs() < 2_000, "{after}");
        // A stall followed by a burst keeps the RTP times...
        let stalled = tl
            .media_time(TrackKind::Video, v0.wrapping_add(273_000), ms(9_000))
            .expect("late");
        assert!((stalled as i64 - 1_033_333).abs() < 2_000, "{stalled}");
        // ...a restarted RTP clock follows arrival.
        let restarted = tl
            .media_time(TrackKind::Video, v0.wrapping_add(90_000 * 3600), ms(9_100))
            .expect("restart");
        assert!((restarted as i64 - 7_000_000).abs() < 2_000, "{restarted}");
        // Output never goes back.
        let back = tl
            .media_time(TrackKind::Video, v0.wrapping_add(269_000), ms(3101))
            .expect("resumed");
        assert!(back >= after + MIN_STEP_US);
    }

    #[test]
    fn report_jitter_does_not_move_a_synced_track() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut tl = Timeline::new(t0, 48_000, 90_000);
        assert_eq!(tl.media_time(TrackKind::Audio, 0, ms(0)), Some(0));
        let ntp = 1u64 << 40;
        let ntp_ms = |n: u64| ntp + (n << 32) / 1000;
        tl.sender_report(TrackKind::Audio, ntp, 0, ms(10));
        // 5 ms of report jitter: ignored.
        tl.sender_report(TrackKind::Audio, ntp_ms(1005), 48_000, ms(1010));
        assert_eq!(
            tl.media_time(TrackKind::Audio, 48_960, ms(1030)),
            Some(1_020_000)
        );
        // 100 ms of drift: followed.
        tl.sender_report(TrackKind::Audio, ntp_ms(2100), 96_000, ms(2010));
        let followed = tl
            .media_time(TrackKind::Audio, 96_960, ms(2030))
            .expect("time");
        assert!((followed as i64 - 2_120_000).abs() <= 1, "{followed}");
    }

    #[test]
    fn frames_of_a_track_are_at_least_a_millisecond_apart() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(t0, 48_000, 90_000);
        assert_eq!(tl.media_time(TrackKind::Audio, 0, t0), Some(0));
        assert_eq!(tl.media_time(TrackKind::Audio, 24, t0), Some(1_000));
        assert_eq!(tl.media_time(TrackKind::Audio, 960, t0), Some(20_000));
    }
}
