//! Keyframes: merging and rate-limiting requests (PLI/FIR) on their way to a source, and
//! telling from a packet's payload that it starts one.

use std::time::{Duration, Instant};

use crate::webrtc::codecs::CodecId;

/// The shortest time between two keyframe requests sent to one source.
pub const MIN_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Collapses every sink's keyframe requests for one source into at most one request per
/// [`MIN_KEYFRAME_INTERVAL`]; a request that arrives too early is remembered and sent when the
/// interval ends, so no sink's request is lost, unless a keyframe from the source passes in the
/// meantime (the one the previous request brought answers it: no second keyframe is asked
/// for, and the sink gets its picture a round trip sooner than at the interval's end).
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

    /// Whether a request is waiting for the interval to end: only then does the router look at
    /// whether a packet starts a keyframe.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// A keyframe from the source passed: it answers every request made so far.
    pub fn keyframe_passed(&mut self) {
        self.pending = false;
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

/// Whether an RTP payload of `codec` is the first packet of a keyframe (a picture a decoder can
/// start from), read from the payload descriptor or NAL header only. Audio never is.
pub fn starts_keyframe(codec: CodecId, payload: &[u8]) -> bool {
    match codec {
        CodecId::Vp8 => vp8_starts_keyframe(payload),
        // RFC 9628: B (start of frame) set, P (inter-picture predicted) clear.
        CodecId::Vp9 => payload.first().is_some_and(|b| b & 0x48 == 0x08),
        CodecId::H264SingleNal | CodecId::H264NonInterleaved => h264_starts_keyframe(payload),
        // AV1 aggregation header: N, the first packet of a coded video sequence.
        CodecId::Av1 => payload.first().is_some_and(|b| b & 0x08 != 0),
        CodecId::Opus | CodecId::Pcmu | CodecId::Pcma => false,
    }
}

/// RFC 7741: the start (S) of partition 0 whose VP8 payload header has P (inter frame) clear.
fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        at = 2;
        if x & 0x80 != 0 {
            // PictureID: 15 bits when M is set, else 7.
            at += if payload.get(2).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(at).is_some_and(|b| b & 0x01 == 0)
}

/// An IDR slice or a sequence parameter set, alone, in a STAP-A, or starting a FU-A.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    let Some(&header) = payload.first() else {
        return false;
    };
    match header & 0x1F {
        24 => {
            let mut at = 1;
            while let Some(size) = payload.get(at..at + 2) {
                let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                match payload.get(at + 2) {
                    Some(nal) if key(nal & 0x1F) => return true,
                    Some(_) => at += 2 + size,
                    None => return false,
                }
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1F)),
        nal_type => key(nal_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_keyframe_starts_per_codec() {
        // VP8: X, I with a 15-bit picture id, S and partition 0, then the payload header.
        assert!(starts_keyframe(
            CodecId::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x10]
        ));
        assert!(!starts_keyframe(
            CodecId::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x11]
        ));
        assert!(
            !starts_keyframe(CodecId::Vp8, &[0x80, 0x80, 0x81, 0x23, 0x10]),
            "not S"
        );
        assert!(starts_keyframe(CodecId::Vp8, &[0x10, 0x9c]));
        assert!(!starts_keyframe(CodecId::Vp8, &[0x90]), "truncated");
        // H264: IDR, SPS in a STAP-A, FU-A start of an IDR, a P slice.
        assert!(starts_keyframe(CodecId::H264NonInterleaved, &[0x65, 0]));
        assert!(starts_keyframe(
            CodecId::H264NonInterleaved,
            &[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]
        ));
        assert!(starts_keyframe(CodecId::H264NonInterleaved, &[0x7c, 0x85]));
        assert!(!starts_keyframe(CodecId::H264NonInterleaved, &[0x7c, 0x05]));
        assert!(!starts_keyframe(CodecId::H264SingleNal, &[0x41, 0]));
        assert!(!starts_keyframe(CodecId::H264SingleNal, &[0x78, 0, 9]));
        // VP9: B without P; AV1: N.
        assert!(starts_keyframe(CodecId::Vp9, &[0x0c]));
        assert!(!starts_keyframe(CodecId::Vp9, &[0x4c]));
        assert!(starts_keyframe(CodecId::Av1, &[0x18]));
        assert!(!starts_keyframe(CodecId::Opus, &[0xff]));
    }

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

    #[test]
    fn a_keyframe_in_flight_answers_the_deferred_request() {
        let t0 = Instant::now();
        let mut g = KeyframeGate::default();
        assert!(g.request(t0));
        assert!(!g.request(t0 + Duration::from_millis(10)));
        assert!(g.is_pending());
        g.keyframe_passed();
        assert!(
            !g.poll(t0 + Duration::from_millis(600)),
            "nothing left to ask"
        );
        assert!(g.request(t0 + Duration::from_millis(700)));
    }
}
