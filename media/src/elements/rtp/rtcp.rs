//! RTCP of an RtpEndpoint: reception statistics of the remote sender's stream (RFC 3550
//! §6.4.1, appendix A.3 and A.8), the compound reports rkms sends (SR or RR plus SDES), keyframe
//! requests to the remote sender (PLI and FIR), and what rkms reads in the remote's RTCP.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtcp::packet::Packet;
use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};

/// The CNAME rkms gives its streams.
const CNAME: &str = "rkms";

/// Whether a datagram on a muxed port is RTCP (RFC 5761 §4: packet types 192–223).
pub(super) fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && (192..=223).contains(&datagram[1])
}

/// Statistics of one inbound stream, for the reception report block.
pub(super) struct Reception {
    ssrc: u32,
    clock_rate: u32,
    base_seq: u32,
    /// Highest sequence number, extended with the wrap count.
    max_seq: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Interarrival jitter in RTP units, scaled by 16 (RFC 3550 A.8).
    jitter_q4: u32,
    last_transit: Option<u32>,
    /// Middle 32 bits of the last sender report's NTP time, and when it came.
    last_sr: Option<(u32, Instant)>,
}

impl Reception {
    pub(super) fn new(ssrc: u32, seq: u16, clock_rate: u32) -> Self {
        Self {
            ssrc,
            clock_rate,
            base_seq: u32::from(seq),
            max_seq: u32::from(seq),
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            last_transit: None,
            last_sr: None,
        }
    }

    pub(super) fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// A packet arrived; `since` is its arrival on a clock shared by the stream's packets.
    pub(super) fn on_packet(&mut self, seq: u16, timestamp: u32, since: Duration) {
        self.received = self.received.wrapping_add(1);
        let delta = seq.wrapping_sub(self.max_seq as u16) as i16;
        if delta > 0 {
            let cycles = self.max_seq & !0xffff;
            let wrapped = seq < self.max_seq as u16;
            self.max_seq = (if wrapped { cycles + 0x1_0000 } else { cycles }) | u32::from(seq);
        }
        let arrival = (since.as_secs_f64() * f64::from(self.clock_rate)) as u64 as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit.replace(transit) {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter_q4 = self
                .jitter_q4
                .wrapping_add(d)
                .wrapping_sub((self.jitter_q4 + 8) >> 4);
        }
    }

    /// Packets received.
    pub(super) fn packets(&self) -> u32 {
        self.received
    }

    /// Packets lost since the first one (negative with duplicates).
    pub(super) fn lost(&self) -> i64 {
        let expected = self.max_seq.wrapping_sub(self.base_seq).wrapping_add(1);
        i64::from(expected) - i64::from(self.received)
    }

    /// Interarrival jitter, in seconds.
    pub(super) fn jitter(&self) -> f64 {
        f64::from(self.jitter_q4 >> 4) / f64::from(self.clock_rate)
    }

    /// The remote sent a sender report with this NTP time.
    pub(super) fn on_sender_report(&mut self, ntp: u64, now: Instant) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// The report block for now; starts the next interval.
    pub(super) fn report(&mut self, now: Instant) -> ReceptionReport {
        let expected = self.max_seq.wrapping_sub(self.base_seq).wrapping_add(1);
        let lost = self.lost();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sender_report, delay) = match self.last_sr {
            Some((lsr, at)) => {
                let waited = now.saturating_duration_since(at).as_secs_f64();
                (lsr, (waited * 65_536.0) as u32)
            }
            None => (0, 0),
        };
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            // A 24-bit signed field.
            total_lost: lost.clamp(0, 0x7f_ffff) as u32,
            last_sequence_number: self.max_seq,
            jitter: self.jitter_q4 >> 4,
            last_sender_report,
            delay,
        }
    }
}

/// What rkms sent on one stream, written by the sending thread and read for sender reports by
/// the thread that sends RTCP.
#[derive(Default)]
pub(super) struct SentCounters {
    packets: AtomicU32,
    octets: AtomicU32,
    last_timestamp: AtomicU32,
    clock_rate: AtomicU32,
    /// Payload type of the last packet, plus one (0: none).
    payload_type: AtomicU32,
    /// Microseconds from the session's start to the last packet's routing, plus one (0: none).
    last_at_us: AtomicU64,
    /// Datagram bytes sent, RTCP included.
    wire: AtomicU64,
}

/// One RTP packet sent.
pub(super) struct Sent {
    pub timestamp: u32,
    pub clock_rate: u32,
    pub payload_type: u8,
    /// Payload bytes.
    pub payload: usize,
    /// Datagram bytes.
    pub datagram: usize,
}

impl SentCounters {
    pub(super) fn sent(&self, packet: Sent, since: Duration) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.octets
            .fetch_add(packet.payload as u32, Ordering::Relaxed);
        self.last_timestamp
            .store(packet.timestamp, Ordering::Relaxed);
        self.clock_rate.store(packet.clock_rate, Ordering::Relaxed);
        self.payload_type
            .store(u32::from(packet.payload_type) + 1, Ordering::Relaxed);
        self.last_at_us
            .store(since.as_micros() as u64 + 1, Ordering::Relaxed);
        self.wire
            .fetch_add(packet.datagram as u64, Ordering::Relaxed);
    }

    /// An RTCP datagram of `len` bytes went out.
    pub(super) fn control(&self, len: usize) {
        self.wire.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Datagram bytes sent, RTCP included.
    pub(super) fn wire_bytes(&self) -> u64 {
        self.wire.load(Ordering::Relaxed)
    }

    /// Payload type of the last packet sent.
    pub(super) fn payload_type(&self) -> Option<u8> {
        let pt = self.payload_type.load(Ordering::Relaxed).checked_sub(1)?;
        u8::try_from(pt).ok()
    }

    /// Packets and payload bytes sent.
    pub(super) fn counts(&self) -> (u32, u32) {
        (
            self.packets.load(Ordering::Relaxed),
            self.octets.load(Ordering::Relaxed),
        )
    }

    /// A sender report as of `since` (on the same clock as [`Self::sent`]), once something
    /// was sent.
    fn sender_report(&self, ssrc: u32, since: Duration, ntp: u64) -> Option<SenderReport> {
        let at_us = self.last_at_us.load(Ordering::Relaxed).checked_sub(1)?;
        let elapsed = since.saturating_sub(Duration::from_micros(at_us));
        let clock_rate = self.clock_rate.load(Ordering::Relaxed);
        let advance = (elapsed.as_secs_f64() * f64::from(clock_rate)) as u32;
        Some(SenderReport {
            ssrc,
            ntp_time: ntp,
            rtp_time: self
                .last_timestamp
                .load(Ordering::Relaxed)
                .wrapping_add(advance),
            packet_count: self.packets.load(Ordering::Relaxed),
            octet_count: self.octets.load(Ordering::Relaxed),
            ..Default::default()
        })
    }
}

fn sdes(ssrc: u32) -> Box<dyn Packet> {
    Box::new(SourceDescription {
        chunks: vec![SourceDescriptionChunk {
            source: ssrc,
            items: vec![SourceDescriptionItem {
                sdes_type: SdesType::SdesCname,
                text: Bytes::from_static(CNAME.as_bytes()),
            }],
        }],
    })
}

/// A compound report of stream `ssrc`: an SR once it sent something (else an RR), with the
/// reception block of the remote's stream if one arrives, and the CNAME.
pub(super) fn report(
    ssrc: u32,
    sent: &SentCounters,
    reception: Option<&mut Reception>,
    since: Duration,
    now: Instant,
    ntp: u64,
) -> Vec<Box<dyn Packet>> {
    let reports: Vec<ReceptionReport> = reception.map(|r| r.report(now)).into_iter().collect();
    let first: Box<dyn Packet> = match sent.sender_report(ssrc, since, ntp) {
        Some(sr) => Box::new(SenderReport { reports, ..sr }),
        None => Box::new(ReceiverReport {
            ssrc,
            reports,
            ..Default::default()
        }),
    };
    vec![first, sdes(ssrc)]
}

/// A compound asking the sender of `media_ssrc` for a keyframe: RR, SDES, PLI and FIR (FIR for
/// senders that only honour that one; `fir_seq` increments per new request, RFC 5104).
pub(super) fn keyframe_request(ssrc: u32, media_ssrc: u32, fir_seq: u8) -> Vec<Box<dyn Packet>> {
    vec![
        Box::new(ReceiverReport {
            ssrc,
            ..Default::default()
        }),
        sdes(ssrc),
        Box::new(PictureLossIndication {
            sender_ssrc: ssrc,
            media_ssrc,
        }),
        Box::new(FullIntraRequest {
            sender_ssrc: ssrc,
            media_ssrc: 0,
            fir: vec![FirEntry {
                ssrc: media_ssrc,
                sequence_number: fir_seq,
            }],
        }),
    ]
}

/// What rkms acts on in the remote's RTCP.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Received {
    /// PLIs and FIRs: the remote wants a keyframe.
    pub plis: u32,
    pub firs: u32,
    /// The remote's sender report: the SSRC of its stream, its NTP time and the RTP time of
    /// that stream at that moment.
    pub sender_report: Option<(u32, u64, u32)>,
    /// The remote's report block about the stream rkms sends it.
    pub about_ours: Option<RemoteReception>,
}

impl Received {
    pub(super) fn wants_keyframe(&self) -> bool {
        self.plis + self.firs > 0
    }
}

/// How the remote receives the stream rkms sends (a report block of its SR or RR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RemoteReception {
    pub fraction_lost: u8,
    pub total_lost: u32,
    /// Middle 32 bits of the NTP time of rkms's last sender report (0: none yet).
    pub last_sender_report: u32,
    /// Since that report, in 1/65536 s.
    pub delay: u32,
}

impl RemoteReception {
    fn of(r: &ReceptionReport) -> Self {
        Self {
            fraction_lost: r.fraction_lost,
            total_lost: r.total_lost,
            last_sender_report: r.last_sender_report,
            delay: r.delay,
        }
    }

    /// The round trip in seconds at `ntp` (when the block arrived), once rkms's SR was echoed.
    pub(super) fn round_trip(&self, ntp: u64) -> Option<f64> {
        if self.last_sender_report == 0 {
            return None;
        }
        let middle = (ntp >> 16) as u32;
        let rtt = middle
            .wrapping_sub(self.last_sender_report)
            .wrapping_sub(self.delay);
        // A reply older than its own report means a clock step: no figure.
        (rtt < 0x8000_0000).then(|| f64::from(rtt) / 65_536.0)
    }
}

/// Reads a (decrypted) compound RTCP packet about stream `ours`; `None` when it does not parse.
pub(super) fn read(datagram: &[u8], ours: u32) -> Option<Received> {
    let mut buf = Bytes::copy_from_slice(datagram);
    let packets = rtc::rtcp::packet::unmarshal(&mut buf).ok()?;
    let mut out = Received::default();
    let mut blocks: &[ReceptionReport] = &[];
    for p in &packets {
        let any = p.as_any();
        if any.is::<PictureLossIndication>() {
            out.plis += 1;
        } else if any.is::<FullIntraRequest>() {
            out.firs += 1;
        } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
            out.sender_report = Some((sr.ssrc, sr.ntp_time, sr.rtp_time));
            blocks = &sr.reports;
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            blocks = &rr.reports;
        }
        if let Some(block) = blocks.iter().find(|b| b.ssrc == ours) {
            out.about_ours = Some(RemoteReception::of(block));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_packet(timestamp: u32, clock_rate: u32, payload: usize) -> Sent {
        Sent {
            timestamp,
            clock_rate,
            payload_type: 96,
            payload,
            datagram: payload + 12,
        }
    }

    #[test]
    fn reception_counts_loss_wraps_and_jitter() {
        let mut r = Reception::new(5, 65_530, 90_000);
        let mut since = Duration::ZERO;
        // 65530..=65535 then 0..=9 with 3 lost, at a steady 33 ms / 3000 ticks.
        for (i, seq) in (65_530u16..=65_535).chain(0..10).enumerate() {
            since += Duration::from_micros(33_333);
            if matches!(seq, 2..=4) {
                continue;
            }
            r.on_packet(seq, i as u32 * 3000, since);
        }
        let now = Instant::now();
        r.on_sender_report(0x1122_3344_5566_7788, now);
        let block = r.report(now + Duration::from_millis(500));
        assert_eq!(block.ssrc, 5);
        assert_eq!(block.last_sequence_number, 0x1_0009);
        assert_eq!(block.total_lost, 3);
        // 3 lost of 16 expected, in 1/256ths.
        assert_eq!(block.fraction_lost, 48);
        assert!(block.jitter < 5, "steady arrival: {}", block.jitter);
        assert_eq!(block.last_sender_report, 0x3344_5566);
        assert_eq!(block.delay, 32_768);
        // Nothing new: nothing lost in this interval.
        assert_eq!(r.report(now).fraction_lost, 0);
    }

    #[test]
    fn reports_are_sr_once_something_was_sent() {
        let sent = SentCounters::default();
        let now = Instant::now();
        let rr = report(1, &sent, None, Duration::ZERO, now, 0);
        assert!(rr[0].as_any().is::<ReceiverReport>());
        sent.sent(sent_packet(1000, 90_000, 100), Duration::from_secs(1));
        let mut reception = Reception::new(9, 1, 90_000);
        let sr = report(
            1,
            &sent,
            Some(&mut reception),
            Duration::from_secs(2),
            now,
            42,
        );
        let sr = sr[0]
            .as_any()
            .downcast_ref::<SenderReport>()
            .expect("an SR");
        assert_eq!((sr.packet_count, sr.octet_count), (1, 100));
        assert_eq!(sr.rtp_time, 91_000);
        assert_eq!(sr.reports[0].ssrc, 9);
    }

    #[test]
    fn keyframe_requests_read_back_and_rtcp_is_told_from_rtp() {
        let bytes = rtc::rtcp::packet::marshal(&keyframe_request(1, 2, 3)).expect("marshal");
        assert!(is_rtcp(&bytes));
        assert!(!is_rtcp(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]));
        let got = read(&bytes, 2).expect("parses");
        assert!(got.wants_keyframe());
        assert_eq!((got.plis, got.firs), (1, 1));
        let sent = SentCounters::default();
        sent.sent(sent_packet(0, 48_000, 10), Duration::ZERO);
        let sr = report(1, &sent, None, Duration::ZERO, Instant::now(), 77);
        let bytes = rtc::rtcp::packet::marshal(&sr).expect("marshal");
        assert_eq!(
            read(&bytes, 2),
            Some(Received {
                sender_report: Some((1, 77, 0)),
                ..Received::default()
            })
        );
        assert_eq!(read(&[0x80, 200, 0], 2), None);
    }

    #[test]
    fn the_remotes_block_about_our_stream_gives_loss_and_round_trip() {
        let mut r = Reception::new(7, 100, 90_000);
        r.on_packet(100, 0, Duration::ZERO);
        r.on_packet(103, 9_000, Duration::from_millis(100));
        assert_eq!((r.packets(), r.lost()), (2, 2));
        let now = Instant::now();
        r.on_sender_report(0x0001_2345_6789_0000, now);
        let rr = report(
            3,
            &SentCounters::default(),
            Some(&mut r),
            Duration::ZERO,
            now,
            0,
        );
        let bytes = rtc::rtcp::packet::marshal(&rr).expect("marshal");
        let got = read(&bytes, 7)
            .expect("parses")
            .about_ours
            .expect("a block about 7");
        assert_eq!(got.total_lost, 2);
        assert_eq!(got.last_sender_report, 0x2345_6789);
        // Echoed 0.5 s after it was sent, of which the remote held it 0.25 s.
        let echoed = RemoteReception {
            delay: 0x4000,
            ..got
        };
        let rtt = echoed.round_trip(0x0001_2345_e789_0000).expect("an rtt");
        assert!((rtt - 0.25).abs() < 1e-3, "{rtt}");
        assert_eq!(read(&bytes, 8).expect("parses").about_ours, None);
    }
}
