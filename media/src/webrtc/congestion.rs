//! Transport-wide congestion control toward a subscriber (rkms sending).
//!
//! A browser that negotiated transport-cc (the `transport-cc` RTCP feedback and the
//! transport-wide-cc header extension) and receives packets carrying a transport-wide sequence
//! number does not estimate its downlink itself: it reports each packet's arrival time in
//! TransportLayerCc feedback and leaves the estimate to the sender, and it sends no REMB for those
//! packets. So for such a subscriber rkms numbers every packet it sends it (forwarded, RTX; rkms
//! sends no padding) on the fast path, remembers when each left and its size ([`SendLog`]), and
//! runs `rtc`'s Google congestion control on the feedback ([`SendSideEstimate`]). The estimate
//! then takes the place of the subscriber's REMB in [`super::feedback::ReceiverEstimate`] and
//! bounds its publisher the same way.
//!
//! What is `rtc`'s and what is rkms's: the feedback is decoded by `rtc::interceptor::convert_twcc`
//! and the estimate is `rtc::interceptor::Gcc` (delay gradient and loss, combined by `min`). The
//! crate's send history (`rtc::interceptor::History`) is not used: it keeps three hash maps
//! written per sent packet, and the fast path must stay allocation-free and cheap per sink. The
//! [`SendLog`] is the minimum instead: a fixed ring indexed by the sequence number, written with
//! one store per packet, read when feedback arrives (about every 100 ms).
//!
//! Departure is the loop pass's clock (`now` of the pass that writes the packet into the send
//! batch), not the `sendmmsg` that follows at the end of the pass: the same offset for every
//! packet of a pass, which the delay gradient does not see.

use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, Gcc, PacketReport, convert_twcc};
use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

/// Packets the log remembers: ~1 s at 1,000 packets a second (a 10 Mbps stream), well past the
/// feedback interval (50-250 ms in browsers) and a congested queue's delay. 8 KB per subscriber.
const LOG_LEN: usize = 1024;

/// What rkms's estimate of a subscriber's downlink starts from: the crate's maximum, not its
/// 300 kbps. rkms does not probe, and its estimate only bounds a publisher once congestion has
/// shown (see [`super::feedback`]): from the top, the delay half falls to 0.85x the received
/// rate at the first overuse, and the loss half moves only on sustained loss above 10%. From
/// 300 kbps, the loss half, which climbs only while loss stays under 2%, never came back up
/// through a few percent of random loss and held the publisher at that.
const INITIAL_BPS: f64 = rtc::interceptor::GCC_MAX_BITRATE;
/// Its floor: the lowest bound rkms asks a publisher for anyway.
const MIN_BPS: f64 = 30_000.0;

/// One sent packet: its transport-wide number (to tell a stale slot), size, departure.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    seq: u16,
    /// Datagram bytes; 0 for a slot never written or already reported.
    size: u16,
    /// Microseconds since the log's origin, wrapping (71 minutes; entries live for seconds).
    departure_us: u32,
}

/// The transport-wide sequence of one peer and what was sent under it (the fast path's part).
pub struct SendLog {
    next_seq: u16,
    origin: Instant,
    sent: Box<[Sent; LOG_LEN]>,
}

impl Default for SendLog {
    fn default() -> Self {
        SendLog {
            next_seq: 1,
            origin: Instant::now(),
            sent: Box::new([Sent::default(); LOG_LEN]),
        }
    }
}

impl SendLog {
    /// The number the next packet sent carries.
    #[inline]
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Records that the packet numbered [`SendLog::next_seq`] left at `now`, `size` bytes long,
    /// and moves to the next number.
    #[inline]
    pub fn sent(&mut self, size: usize, now: Instant) {
        let seq = self.next_seq;
        self.sent[usize::from(seq) % LOG_LEN] = Sent {
            seq,
            size: size.min(usize::from(u16::MAX)) as u16,
            departure_us: self.micros(now),
        };
        self.next_seq = seq.wrapping_add(1);
    }

    fn micros(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.origin).as_micros() as u32
    }

    /// The departure and size of the packet numbered `seq`, once: a packet reported again (or
    /// never sent, or so old its slot was reused) gives `None`.
    fn take(&mut self, seq: u16, now: Instant) -> Option<(Instant, usize)> {
        let now_us = self.micros(now);
        let slot = &mut self.sent[usize::from(seq) % LOG_LEN];
        if slot.seq != seq || slot.size == 0 {
            return None;
        }
        let size = usize::from(std::mem::take(&mut slot.size));
        let age = now_us.wrapping_sub(slot.departure_us);
        let departure = now.checked_sub(Duration::from_micros(u64::from(age)))?;
        Some((departure, size))
    }
}

/// rkms's estimate of what one subscriber's downlink takes (the cold part, off the fast path).
pub struct SendSideEstimate {
    gcc: Gcc,
    /// Reused for each feedback's reports.
    reports: Vec<PacketReport>,
}

impl Default for SendSideEstimate {
    fn default() -> Self {
        SendSideEstimate {
            gcc: Gcc::new(INITIAL_BPS, MIN_BPS, INITIAL_BPS),
            reports: Vec::new(),
        }
    }
}

impl SendSideEstimate {
    /// Takes the subscriber's feedback on what `log` sent; returns the new estimate (bps) when
    /// the feedback named packets rkms sent.
    pub fn on_feedback(
        &mut self,
        log: &mut SendLog,
        feedback: &TransportLayerCc,
        now: Instant,
    ) -> Option<u64> {
        self.reports.clear();
        // In sequence order, which is send order: what the delay gradient groups by. Only the
        // `packet_status_count` packets the feedback is about: the decoder also reports the
        // padding of a last, partly filled status vector as "not received", and those numbers
        // may belong to packets still in flight.
        let acks = convert_twcc(feedback);
        for ack in acks.iter().take(usize::from(feedback.packet_status_count)) {
            let Some((departure, size)) = log.take(ack.sequence_number, now) else {
                continue;
            };
            self.reports.push(PacketReport {
                ssrc: 0,
                id: u64::from(ack.sequence_number),
                rtp_sequence_number: 0,
                is_twcc: true,
                twcc_sequence_number: ack.sequence_number,
                size,
                arrived: ack.arrived,
                departure,
                arrival: ack.arrival,
                ecn: Ecn::NotEct,
            });
        }
        if self.reports.is_empty() {
            return None;
        }
        self.gcc.on_reports(now, &self.reports);
        // The fields are counted only when the trace is on: not per feedback otherwise.
        tracing::trace!(
            delay_bps = self.gcc.delay_based_bitrate() as u64,
            loss_bps = self.gcc.loss_based_bitrate() as u64,
            lost = self.reports.iter().filter(|r| !r.arrived).count(),
            reported = self.reports.len(),
            "send-side estimate"
        );
        Some(self.gcc.target_bitrate() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk,
        SymbolSizeTypeTcc, SymbolTypeTcc,
    };

    /// The feedback on packets from `base`: each arrived at its time (µs on the subscriber's
    /// clock) or was lost.
    fn feedback_on(base: u16, arrivals: &[Option<i64>]) -> TransportLayerCc {
        let symbol = |a: &Option<i64>| match a {
            Some(_) => SymbolTypeTcc::PacketReceivedLargeDelta,
            None => SymbolTypeTcc::PacketNotReceived,
        };
        let mut previous = 0;
        TransportLayerCc {
            base_sequence_number: base,
            packet_status_count: arrivals.len() as u16,
            packet_chunks: arrivals
                .iter()
                .map(|a| {
                    PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                        type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                        packet_status_symbol: symbol(a),
                        run_length: 1,
                    })
                })
                .collect(),
            recv_deltas: arrivals
                .iter()
                .flatten()
                .map(|&at| {
                    let delta = at - std::mem::replace(&mut previous, at);
                    RecvDelta {
                        type_tcc_packet: SymbolTypeTcc::PacketReceivedLargeDelta,
                        delta,
                    }
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Sends 5 packets of 1,200 bytes every 20 ms (2.4 Mbps) for `rounds` rounds through a link
    /// taking `link_us` per packet, whose queue drops what would wait more than 100 ms; the
    /// subscriber's feedback on each round comes 5 ms after its last arrival. Returns the
    /// estimates.
    fn run(
        log: &mut SendLog,
        estimate: &mut SendSideEstimate,
        rounds: u32,
        link_us: i64,
    ) -> Vec<u64> {
        let t0 = log.origin;
        let mut estimates = Vec::new();
        let mut link_free_us: i64 = 0;
        for round in 0..rounds {
            let sent_us = i64::from(round) * 20_000;
            let at = t0 + Duration::from_micros(sent_us as u64);
            let base = log.next_seq();
            let mut arrivals = Vec::new();
            for _ in 0..5 {
                log.sent(1200, at);
                let start = link_free_us.max(sent_us);
                if start - sent_us > 100_000 {
                    arrivals.push(None);
                } else {
                    link_free_us = start + link_us;
                    arrivals.push(Some(link_free_us));
                }
            }
            let last = arrivals.iter().flatten().last().copied();
            let now =
                t0 + Duration::from_micros((last.unwrap_or(sent_us + 100_000) + 5_000) as u64);
            if let Some(bps) = estimate.on_feedback(log, &feedback_on(base, &arrivals), now) {
                estimates.push(bps);
            }
        }
        estimates
    }

    #[test]
    fn an_open_link_keeps_the_estimate_high_and_a_narrow_one_brings_it_down() {
        let mut log = SendLog::default();
        let mut open = SendSideEstimate::default();
        let estimates = run(&mut log, &mut open, 250, 100);
        let last = *estimates.last().expect("estimates");
        assert!(last > 10_000_000, "open link: {last}");

        // The same stream through a 500 kbps link: 19.2 ms per packet.
        let mut log = SendLog::default();
        let mut narrow = SendSideEstimate::default();
        let estimates = run(&mut log, &mut narrow, 250, 19_200);
        let last = *estimates.last().expect("estimates");
        assert!(last < 600_000, "narrow link: {last}");
    }

    #[test]
    fn sustained_losses_bring_the_estimate_down_a_few_percent_do_not() {
        let mut log = SendLog::default();
        let t0 = log.origin;
        let mut estimate = SendSideEstimate::default();
        let before = *run(&mut log, &mut estimate, 100, 100)
            .last()
            .expect("estimates");
        let mut last = before;
        for round in 100..200u32 {
            let at = t0 + Duration::from_millis(u64::from(round) * 20);
            let base = log.next_seq();
            for _ in 0..5 {
                log.sent(1200, at);
            }
            // One in twenty lost, the others on time; from round 150, two in five.
            let arrivals = if round < 150 && round % 4 != 0 {
                [Some(0), Some(50), Some(100), Some(150), Some(200)]
            } else if round < 150 {
                [Some(0), None, Some(100), Some(150), Some(200)]
            } else {
                [Some(0), None, Some(100), None, Some(200)]
            }
            .map(|a| a.map(|us| i64::from(round) * 20_000 + us));
            if round == 150 {
                assert!(
                    last >= before,
                    "random loss is no congestion: {before} -> {last}"
                );
            }
            last = estimate
                .on_feedback(
                    &mut log,
                    &feedback_on(base, &arrivals),
                    at + Duration::from_millis(5),
                )
                .expect("reported");
        }
        assert!(last * 10 < before * 7, "{before} -> {last}");
    }

    #[test]
    fn feedback_counts_each_packet_once_and_only_packets_sent() {
        let mut log = SendLog::default();
        let t0 = log.origin;
        let mut estimate = SendSideEstimate::default();
        // Nothing sent under these numbers.
        assert_eq!(
            estimate.on_feedback(
                &mut log,
                &feedback_on(100, &[Some(0), Some(1000), Some(2000)]),
                t0
            ),
            None
        );
        let base = log.next_seq();
        for _ in 0..3 {
            log.sent(1000, t0);
        }
        assert!(
            estimate
                .on_feedback(
                    &mut log,
                    &feedback_on(base, &[Some(0), Some(1000), Some(2000)]),
                    t0
                )
                .is_some()
        );
        // Reported again: already counted.
        assert_eq!(
            estimate.on_feedback(
                &mut log,
                &feedback_on(base, &[Some(0), Some(1000), Some(2000)]),
                t0
            ),
            None
        );
        // A slot reused a whole log later no longer answers for its old number.
        for _ in 0..LOG_LEN {
            log.sent(1000, t0);
        }
        assert!(log.take(base, t0).is_none());
        assert!(
            log.take(base.wrapping_add(LOG_LEN as u16 + 2), t0)
                .is_some()
        );
    }

    #[test]
    fn the_padding_of_a_status_vector_is_not_taken_for_lost_packets() {
        let mut log = SendLog::default();
        let t0 = log.origin;
        let mut estimate = SendSideEstimate::default();
        let base = log.next_seq();
        for _ in 0..5 {
            log.sent(1000, t0);
        }
        // Three packets received, in a vector of seven two-bit symbols: four are padding while
        // the last two packets are still on their way.
        let received = SymbolTypeTcc::PacketReceivedSmallDelta;
        let padding = SymbolTypeTcc::PacketNotReceived;
        let feedback = TransportLayerCc {
            base_sequence_number: base,
            packet_status_count: 3,
            packet_chunks: vec![PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                symbol_size: SymbolSizeTypeTcc::TwoBit,
                symbol_list: [[received; 3].as_slice(), &[padding; 4]].concat(),
            })],
            recv_deltas: (0..3)
                .map(|_| RecvDelta {
                    type_tcc_packet: received,
                    delta: 1000,
                })
                .collect(),
            ..Default::default()
        };
        let now = t0 + Duration::from_millis(10);
        assert!(estimate.on_feedback(&mut log, &feedback, now).is_some());
        assert!(log.take(base.wrapping_add(2), now).is_none(), "reported");
        assert!(log.take(base.wrapping_add(3), now).is_some(), "in flight");
        assert!(log.take(base.wrapping_add(4), now).is_some(), "in flight");
    }

    #[test]
    fn numbers_wrap_and_departures_come_back() {
        let mut log = SendLog {
            next_seq: u16::MAX,
            ..SendLog::default()
        };
        let t0 = log.origin;
        log.sent(500, t0 + Duration::from_millis(5));
        log.sent(600, t0 + Duration::from_millis(7));
        assert_eq!(log.next_seq(), 1);
        let now = t0 + Duration::from_millis(100);
        let (departure, size) = log.take(0, now).expect("sent");
        assert_eq!(size, 600);
        let error = departure.saturating_duration_since(t0 + Duration::from_millis(7));
        assert!(error < Duration::from_micros(2), "{error:?}");
    }
}
