//! An endpoint's statistics, shaped after what Kurento's `getStats` reports: the crate's own
//! figures for what it handles (inbound RTP, ICE, transport) and rkms's counters for what the
//! fast path sends (outbound RTP).

use super::codecs::CodecId;
use crate::graph::MediaKind;

/// One RTP stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RtpStreamStats {
    /// Audio or video.
    pub kind: MediaKind,
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Payload type and codec, when known.
    pub codec: Option<(u8, CodecId)>,
    /// Packets received (inbound) or sent (outbound).
    pub packets: u64,
    /// Payload bytes received or sent.
    pub bytes: u64,
    /// Packets lost (inbound: as counted here; outbound: as the remote reports).
    pub packets_lost: i64,
    /// Fraction lost in the last report interval (outbound, from the remote's reports).
    pub fraction_lost: f64,
    /// Interarrival jitter in seconds (inbound).
    pub jitter: f64,
    /// Round trip time in seconds (outbound, from the remote's reports).
    pub round_trip_time: f64,
    /// FIRs sent (inbound) or received (outbound).
    pub fir_count: u64,
    /// PLIs sent (inbound) or received (outbound).
    pub pli_count: u64,
    /// NACKs sent (inbound) or received (outbound).
    pub nack_count: u64,
    /// REMB bitrate: the bound sent to the remote sender (inbound) or the remote's estimate
    /// (outbound), in bps.
    pub remb: u64,
}

impl RtpStreamStats {
    /// A stream with no traffic counted yet.
    pub fn new(kind: MediaKind, ssrc: u32) -> Self {
        RtpStreamStats {
            kind,
            ssrc,
            codec: None,
            packets: 0,
            bytes: 0,
            packets_lost: 0,
            fraction_lost: 0.0,
            jitter: 0.0,
            round_trip_time: 0.0,
            fir_count: 0,
            pli_count: 0,
            nack_count: 0,
            remb: 0,
        }
    }
}

/// The selected ICE candidate pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CandidatePairStats {
    /// Local address of the pair.
    pub local: String,
    /// Remote address of the pair.
    pub remote: String,
    /// Bytes sent on the pair (media included).
    pub bytes_sent: u64,
    /// Bytes received on the pair.
    pub bytes_received: u64,
    /// Current round trip time of the connectivity checks, in seconds.
    pub round_trip_time: f64,
    /// What the remote's receiver estimate allows rkms to send it, in bps.
    pub available_outgoing_bitrate: f64,
    /// The bound rkms asks the remote sender for, in bps.
    pub available_incoming_bitrate: f64,
}

/// Everything one endpoint reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointStats {
    /// Streams rkms receives.
    pub inbound: Vec<RtpStreamStats>,
    /// Streams rkms sends.
    pub outbound: Vec<RtpStreamStats>,
    /// The selected pair, once connected.
    pub candidate_pair: Option<CandidatePairStats>,
    /// Transport bytes sent, media included.
    pub bytes_sent: u64,
    /// Transport bytes received.
    pub bytes_received: u64,
    /// Data channels opened and closed so far.
    pub data_channels_opened: u32,
    /// Data channels closed so far.
    pub data_channels_closed: u32,
}
