//! Access units → RTP packets for the player.

use super::{MAX_PAYLOAD, RtpPacket, av1, h264, vp8, vp9};
use crate::codec::h264 as h264_bits;
use crate::media::{Codec, CodecConfig, Frame};

pub struct Packetizer {
    codec: Codec,
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp_offset: u32,
    clock_rate: u32,
    picture_id: u16,
    /// H264 parameter sets sent ahead of every IDR that lacks them.
    parameter_sets: Vec<Vec<u8>>,
    max_payload: usize,
}

impl Packetizer {
    /// `initial_sequence` and `timestamp_offset` should be random per stream (RFC 3550).
    pub fn new(
        config: &CodecConfig,
        payload_type: u8,
        ssrc: u32,
        initial_sequence: u16,
        timestamp_offset: u32,
    ) -> Self {
        let parameter_sets = if config.codec == Codec::H264 {
            h264_bits::parse_avcc_record(&config.private)
                .map(|c| c.sps.into_iter().chain(c.pps).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Self {
            codec: config.codec,
            payload_type,
            ssrc,
            sequence: initial_sequence,
            timestamp_offset,
            clock_rate: config.codec.rtp_clock_rate(),
            picture_id: initial_sequence & 0x7fff,
            parameter_sets,
            max_payload: MAX_PAYLOAD,
        }
    }

    /// The RTP timestamp of a media time.
    pub fn rtp_timestamp(&self, pts_us: u64) -> u32 {
        let ticks = u128::from(pts_us) * u128::from(self.clock_rate) / 1_000_000;
        self.timestamp_offset.wrapping_add(ticks as u32)
    }

    /// Serialised RTP packets for one frame; the marker is set on the last
    /// packet of a video frame.
    pub fn packetize(&mut self, frame: &Frame) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        match self.codec {
            Codec::Vp8 => vp8::packetize(
                &frame.data,
                self.picture_id,
                self.max_payload,
                &mut payloads,
            ),
            Codec::Vp9 => vp9::packetize(
                &frame.data,
                frame.keyframe,
                self.picture_id,
                self.max_payload,
                &mut payloads,
            ),
            Codec::Av1 => {
                av1::packetize(&frame.data, frame.keyframe, self.max_payload, &mut payloads)
            }
            Codec::H264 => {
                let has_sps = h264_bits::avcc_nals(&frame.data, 4)
                    .any(|n| h264_bits::nal_type(n) == h264_bits::NAL_SPS);
                let prefix = if frame.keyframe && !has_sps {
                    &self.parameter_sets[..]
                } else {
                    &[]
                };
                let nals = prefix
                    .iter()
                    .map(Vec::as_slice)
                    .chain(h264_bits::avcc_nals(&frame.data, 4));
                h264::packetize(nals, self.max_payload, &mut payloads);
            }
            Codec::Opus | Codec::Aac => payloads.push(frame.data.clone()),
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let timestamp = self.rtp_timestamp(frame.pts_us);
        let video = self.codec.kind() == crate::TrackKind::Video;
        let count = payloads.len();
        payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| {
                let packet = RtpPacket {
                    payload_type: self.payload_type,
                    marker: video && i + 1 == count,
                    sequence: self.sequence,
                    timestamp,
                    ssrc: self.ssrc,
                    payload,
                };
                self.sequence = self.sequence.wrapping_add(1);
                packet.to_bytes()
            })
            .collect()
    }
}
