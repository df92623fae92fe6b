//! The RTCP feedback an SFU acts on: letting it out of `rtc`'s interceptor chain, and deciding
//! the bandwidth rkms asks each remote sender for.
//!
//! In `rtc` 0.21 inbound RTCP stops at the end of the interceptor chain unless an interceptor
//! marks the packet [`Attribute::DeliverToApplication`]. [`FeedbackTap`] sits last in the chain
//! and marks compound packets holding a keyframe request (PLI, FIR), a NACK, a receiver estimate
//! (REMB) or transport-cc feedback about what rkms sends, so the socket loop can relay them to
//! the source, answer them from the routing core's history, or bound the publisher. Reports stay
//! with the interceptors that consume them.
//!
//! The crate hands a compound packet to the application under the track of the first SSRC the
//! compound's first packet names, and drops it when no track has that SSRC. A browser's
//! receiver report leads with report blocks about every stream it receives, RTX streams
//! included, and rkms's RTX SSRCs belong to no track: once a browser had received one
//! retransmission, its NACKs (which follow the report) were dropped with it. [`FeedbackTap`]
//! therefore moves the first feedback packet of a compound to its front: it names the media SSRC
//! of a stream rkms sends or receives. Transport-cc feedback is about the transport, and a
//! browser names in it the SSRC of the last packet it received, an RTX one as well: the tap
//! names one of rkms's send streams instead.
//!
//! # Bandwidth
//!
//! A browser sending to rkms runs Google congestion control on the transport-wide-cc feedback
//! `rtc`'s TWCC receiver interceptor writes (every 100 ms, for every packet carrying the
//! transport-wide sequence number): that measures the publisher's uplink to rkms and nothing
//! more. What its subscribers can take is told by an estimate of each subscriber's downlink.
//! rkms offers and answers both goog-remb and transport-cc, and the subscriber's side decides:
//!
//! - transport-cc negotiated (every Chromium, with or without goog-remb): rkms numbers what it
//!   sends the subscriber and estimates the downlink itself from the subscriber's feedback
//!   (`super::congestion`). Chromium sends no REMB about packets that carry the transport-wide
//!   number, so this is the only estimate there is; a REMB that still comes is ignored;
//! - goog-remb only: rkms writes abs-send-time alone, the subscriber estimates on its side and
//!   answers with REMB.
//!
//! Either estimate goes through [`ReceiverEstimate`]. rkms folds them into one bound per
//! publisher and sends it as REMB, which the browser's congestion control takes as a ceiling:
//!
//! - a subscriber's estimate bounds its publisher only while that subscriber is congested. A
//!   receiver's estimate of a stream that does not fill its link follows the rate it receives
//!   (it never grows past ~1.5x of it, and lags behind keyframe bursts), so taken as a ceiling it
//!   would pin a quiet picture (a static scene, a camera starting up) at its current bitrate,
//!   and a browser whose estimate was pulled down while its encoder does not fill it does not
//!   climb back. Congestion shows as an estimate that drops; it is over once the estimate is
//!   back above the rate rkms sends that subscriber (all its streams: the estimate covers them
//!   all). rkms's own estimate (transport-cc) does not follow the rate received: it climbs by
//!   itself while nothing is lost or queued, so once it dropped it stays the bound. Lifted like
//!   a receiver's, it made a sawtooth through a narrow link: the publisher jumped back into the
//!   link every few seconds, and the losses took the estimate down again. While
//!   congested, the estimate is clamped to the subscriber's
//!   `[minVideoSendBandwidth, maxVideoSendBandwidth]`; otherwise the subscriber contributes its
//!   `maxVideoSendBandwidth` alone, if it has one (by default it has none: see
//!   [`BandwidthLimits`]'s default);
//! - the publisher is asked for the smallest of those, clamped to its own
//!   `[max(minVideoRecvBandwidth, 30 kbps), maxVideoRecvBandwidth]`;
//! - no subscriber and no maximum: no bound (after a bound was sent, a high one lifts it).
//!
//! [`RembPacer`] sends a bound at once when it drops by more than 3%, otherwise once a second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;

use super::settings::BandwidthLimits;

/// The chain position of [`FeedbackTap`]: after every built-in interceptor.
pub const FEEDBACK_TAP_SLOT: usize = 1_000_000;

/// Marks inbound PLI, FIR, NACK, REMB, transport-cc feedback and sender reports for delivery to
/// the application.
#[derive(Default)]
pub struct FeedbackTap {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
    /// The media SSRCs of the streams rkms sends (the crate delivers RTCP naming one).
    sent: Vec<u32>,
}

fn is_feedback(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<TransportLayerNack>()
        || any.is::<ReceiverEstimatedMaximumBitrate>()
        || any.is::<SenderReport>()
        || any.is::<TransportLayerCc>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet
            && let Some(first) = packets.iter().position(|p| is_feedback(p.as_ref()))
        {
            if let Some(&sent) = self.sent.first() {
                for packet in packets.iter_mut() {
                    if let Some(cc) = packet.as_any().downcast_ref::<TransportLayerCc>()
                        && !self.sent.contains(&cc.media_ssrc)
                    {
                        *packet = Box::new(TransportLayerCc {
                            media_ssrc: sent,
                            ..cc.clone()
                        });
                    }
                }
            }
            packets[..=first].rotate_right(1);
            if !msg.message.has(&Attribute::DeliverToApplication) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.sent.push(info.ssrc);
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.sent.retain(|&ssrc| ssrc != info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// The lowest bound rkms ever asks a sender for, whatever the settings (as Kurento's).
const FLOOR_BPS: u64 = 30_000;
/// What a lifted bound is sent as: far above any camera.
const UNBOUNDED_BPS: u64 = 1_000_000_000;
/// How often a bound is repeated.
const REMB_INTERVAL: Duration = Duration::from_secs(1);

fn kbps(limit: u32) -> Option<u64> {
    (limit > 0).then(|| u64::from(limit) * 1000)
}

/// An estimate of what a subscriber's downlink takes: its receiver estimates (REMB), or rkms's
/// own from its transport-cc feedback.
#[derive(Debug, Default)]
pub(crate) struct ReceiverEstimate {
    latest: Option<u64>,
    congested: bool,
    /// Whether the estimate is rkms's own (see [`ReceiverEstimate::update_own`]).
    own: bool,
}

impl ReceiverEstimate {
    /// Takes a new receiver estimate (REMB, bps); one that drops by more than 3% signals
    /// congestion.
    pub(crate) fn update(&mut self, bps: u64) {
        if self
            .latest
            .is_some_and(|previous| bps * 100 < previous * 97)
        {
            self.congested = true;
        }
        self.latest = Some(bps);
    }

    /// Takes a new estimate of rkms's own (transport-cc, bps). Unlike a receiver's, it does not
    /// follow the rate received: it climbs by itself while nothing is lost or queued, so once
    /// congestion showed it stays the bound, and the publisher is let back up only as fast as
    /// the link proves it takes more.
    pub(crate) fn update_own(&mut self, bps: u64) {
        self.own = true;
        self.update(bps);
    }

    /// The latest estimate, in bps.
    pub(crate) fn latest(&self) -> Option<u64> {
        self.latest
    }

    /// What this subscriber lets its publisher be asked for, in bps, now that rkms sends it
    /// `sent_bps`: its estimate while congested, clamped to its send limits; otherwise its
    /// maximum only. A receiver's estimate stops bounding once it is back above `sent_bps`;
    /// rkms's own does not.
    pub(crate) fn demand(&mut self, limits: &BandwidthLimits, sent_bps: u64) -> Option<u64> {
        let max = kbps(limits.max_video_send_kbps);
        match self.latest {
            Some(estimate) if self.congested && (self.own || estimate < sent_bps) => {
                let floored = estimate.max(u64::from(limits.min_video_send_kbps) * 1000);
                Some(max.map_or(floored, |max| floored.min(max)))
            }
            _ => {
                self.congested = false;
                max
            }
        }
    }
}

/// The bitrate of a byte counter, measured over windows of a second.
#[derive(Debug, Default)]
pub(crate) struct RateMeter {
    window: Option<(u64, Instant)>,
    bps: u64,
}

impl RateMeter {
    /// Feeds the counter's total; returns the rate of the last complete window.
    pub(crate) fn update(&mut self, total_bytes: u64, now: Instant) -> u64 {
        match self.window {
            None => self.window = Some((total_bytes, now)),
            Some((start_bytes, start)) => {
                let elapsed = now.saturating_duration_since(start);
                if elapsed >= Duration::from_secs(1) {
                    let bits = total_bytes.saturating_sub(start_bytes) * 8;
                    self.bps = (bits as f64 / elapsed.as_secs_f64()) as u64;
                    self.window = Some((total_bytes, now));
                }
            }
        }
        self.bps
    }
}

/// The bound rkms asks a publisher for, in bps, from the smallest demand of its subscribers.
pub(crate) fn publisher_bound(limits: &BandwidthLimits, demand: Option<u64>) -> Option<u64> {
    let max = kbps(limits.max_video_recv_kbps);
    let floor = (u64::from(limits.min_video_recv_kbps) * 1000).max(FLOOR_BPS);
    match (demand, max) {
        (None, max) => max.map(|m| m.max(FLOOR_BPS)),
        (Some(d), None) => Some(d.max(floor)),
        (Some(d), Some(max)) => Some(d.max(floor).min(max.max(FLOOR_BPS))),
    }
}

/// `sdp` with `b=AS:` lines (kbps) in its audio and video m-sections for the limits set.
pub(crate) fn announce_bandwidth(sdp: &str, limits: &BandwidthLimits) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    let mut pending: Option<u32> = None;
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end();
        // b= goes after m=, i= and c= (RFC 8866); an existing one is kept.
        if !text.starts_with("c=")
            && !text.starts_with("i=")
            && let Some(kbps) = pending.take()
            && !text.starts_with("b=")
        {
            out.push_str(&format!("b=AS:{kbps}\r\n"));
        }
        out.push_str(line);
        if text.starts_with("m=") {
            let limit = if text.starts_with("m=video") {
                limits.max_video_recv_kbps
            } else if text.starts_with("m=audio") {
                limits.max_audio_recv_kbps
            } else {
                0
            };
            pending = (limit > 0).then_some(limit);
        }
    }
    if let Some(kbps) = pending {
        out.push_str(&format!("b=AS:{kbps}\r\n"));
    }
    out
}

/// When the bound of one publisher goes out.
#[derive(Debug, Default)]
pub(crate) struct RembPacer {
    last: Option<(u64, Instant)>,
}

impl RembPacer {
    /// The last bound sent, in bps.
    pub(crate) fn last(&self) -> Option<u64> {
        self.last.map(|(bps, _)| bps)
    }

    /// The REMB bitrate to send now for `bound`, if one is due.
    pub(crate) fn due(&mut self, bound: Option<u64>, now: Instant) -> Option<u64> {
        let value = match (bound, self.last) {
            (Some(b), _) => b,
            // Never bounded: nothing to say.
            (None, None) => return None,
            (None, Some(_)) => UNBOUNDED_BPS,
        };
        let send = match self.last {
            None => true,
            Some((last, at)) => {
                value * 100 < last * 97 || now.saturating_duration_since(at) >= REMB_INTERVAL
            }
        };
        if send {
            self.last = Some((value, now));
        }
        send.then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KURENTO: BandwidthLimits = BandwidthLimits {
        min_video_recv_kbps: 0,
        max_video_recv_kbps: 0,
        max_audio_recv_kbps: 0,
        min_video_send_kbps: 100,
        max_video_send_kbps: 500,
    };
    /// No send limits.
    const OPEN: BandwidthLimits = BandwidthLimits {
        min_video_send_kbps: 0,
        max_video_send_kbps: 0,
        ..KURENTO
    };

    #[test]
    fn subscribers_bound_their_publisher_only_while_congested() {
        let mut estimate = ReceiverEstimate::default();
        assert_eq!(estimate.demand(&KURENTO, 0), Some(500_000));
        // A receiver following a quiet stream up: no bound but the maximum.
        for bps in [20_000, 30_000, 50_000, 50_000] {
            estimate.update(bps);
            assert_eq!(estimate.demand(&KURENTO, 200_000), Some(500_000));
        }
        // Its estimate drops below what it is sent: congested, clamped to the send limits.
        estimate.update(40_000);
        assert_eq!(estimate.demand(&KURENTO, 200_000), Some(100_000));
        estimate.update(300_000);
        assert_eq!(estimate.demand(&KURENTO, 400_000), Some(300_000));
        // Back above the forwarded rate: the bound is lifted.
        estimate.update(450_000);
        assert_eq!(estimate.demand(&KURENTO, 400_000), Some(500_000));
        estimate.update(420_000);
        assert_eq!(estimate.demand(&KURENTO, 1_000_000), Some(420_000));

        // rkms's own estimate stays the bound once it dropped, above the forwarded rate too.
        let mut own = ReceiverEstimate::default();
        own.update_own(2_000_000);
        assert_eq!(own.demand(&OPEN, 200_000), None);
        own.update_own(300_000);
        own.update_own(310_000);
        assert_eq!(own.demand(&OPEN, 200_000), Some(310_000));

        let mut estimate = ReceiverEstimate::default();
        assert_eq!(estimate.demand(&OPEN, 0), None);
        estimate.update(9_000_000);
        estimate.update(1_500_000);
        assert_eq!(estimate.demand(&OPEN, 2_000_000), Some(1_500_000));
    }

    /// Reads an RTCP compound through `tap`; the packets it passes on, checked to be for the
    /// application.
    fn delivered(
        tap: &mut FeedbackTap,
        compound: Vec<Box<dyn rtc::rtcp::Packet>>,
    ) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        use rtc::interceptor::AttributedPacket;
        use rtc::shared::{TransportContext, TransportMessage};
        tap.handle_read(TransportMessage {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(compound)),
        })
        .expect("read");
        let out = tap.poll_read().expect("passed on");
        assert!(out.message.has(&Attribute::DeliverToApplication));
        let Packet::Rtcp(packets) = out.message.packet else {
            panic!("RTCP expected");
        };
        packets
    }

    #[test]
    fn feedback_leads_its_compound_and_is_delivered() {
        use rtc::rtcp::receiver_report::ReceiverReport;
        use rtc::rtcp::reception_report::ReceptionReport;
        // A browser's report about an RTX stream (no track of rkms's), then its NACK.
        let report = ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport {
                ssrc: 0x2222,
                ..Default::default()
            }],
            ..Default::default()
        };
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 0x1111,
            nacks: vec![],
        };
        let mut tap = FeedbackTap::default();
        let packets = delivered(&mut tap, vec![Box::new(report), Box::new(nack)]);
        assert_eq!(packets[0].destination_ssrc(), [0x1111]);
        assert_eq!(packets.len(), 2);
    }

    #[test]
    fn transport_feedback_names_a_stream_rkms_sends() {
        let mut tap = FeedbackTap::default();
        tap.bind_local_stream(&StreamInfo {
            ssrc: 0x1111,
            ssrc_rtx: Some(0x2222),
            ..Default::default()
        });
        // About the RTX stream, whose SSRC belongs to no track.
        let cc = TransportLayerCc {
            sender_ssrc: 1,
            media_ssrc: 0x2222,
            base_sequence_number: 7,
            ..Default::default()
        };
        let packets = delivered(&mut tap, vec![Box::new(cc)]);
        assert_eq!(packets[0].destination_ssrc(), [0x1111]);
        let cc = packets[0].as_any().downcast_ref::<TransportLayerCc>();
        assert_eq!(cc.map(|cc| cc.base_sequence_number), Some(7));
    }

    #[test]
    fn rate_meter_measures_whole_windows() {
        let mut meter = RateMeter::default();
        let t0 = Instant::now();
        assert_eq!(meter.update(1_000, t0), 0);
        assert_eq!(meter.update(60_000, t0 + Duration::from_millis(500)), 0);
        assert_eq!(
            meter.update(126_000, t0 + Duration::from_secs(1)),
            1_000_000
        );
    }

    #[test]
    fn publishers_bound_respects_their_receive_limits_and_the_floor() {
        assert_eq!(publisher_bound(&KURENTO, None), None);
        assert_eq!(publisher_bound(&KURENTO, Some(10_000)), Some(30_000));
        assert_eq!(publisher_bound(&KURENTO, Some(2_000_000)), Some(2_000_000));
        let capped = BandwidthLimits {
            min_video_recv_kbps: 200,
            max_video_recv_kbps: 300,
            ..KURENTO
        };
        assert_eq!(publisher_bound(&capped, None), Some(300_000));
        assert_eq!(publisher_bound(&capped, Some(100_000)), Some(200_000));
        assert_eq!(publisher_bound(&capped, Some(2_000_000)), Some(300_000));
    }

    #[test]
    fn bandwidth_is_announced_per_media_section() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
                   a=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n";
        let limits = BandwidthLimits {
            max_video_recv_kbps: 300,
            ..KURENTO
        };
        let out = announce_bandwidth(sdp, &limits);
        assert_eq!(out.matches("b=AS:").count(), 1, "{out}");
        assert!(
            out.contains(
                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:300\r\na=mid:1"
            ),
            "{out}"
        );
        assert_eq!(announce_bandwidth(sdp, &KURENTO), sdp);
        let parsed = rtc::sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(out));
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn remb_goes_out_at_once_when_the_bound_drops_else_every_second() {
        let mut pacer = RembPacer::default();
        let t0 = Instant::now();
        assert_eq!(pacer.due(None, t0), None);
        assert_eq!(pacer.due(Some(1_000_000), t0), Some(1_000_000));
        assert_eq!(pacer.due(Some(990_000), t0), None);
        assert_eq!(pacer.due(Some(900_000), t0), Some(900_000));
        assert_eq!(pacer.due(Some(2_000_000), t0), None);
        let t1 = t0 + REMB_INTERVAL;
        assert_eq!(pacer.due(Some(2_000_000), t1), Some(2_000_000));
        // A lifted bound is sent high, and kept up.
        assert_eq!(pacer.due(None, t1 + REMB_INTERVAL), Some(UNBOUNDED_BPS));
    }
}
