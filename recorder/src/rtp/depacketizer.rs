//! RTP packets of one track → access units.
//!
//! Packets pass through a [`ReorderBuffer`]; a video frame is emitted only if
//! all its packets arrived and it began cleanly. After a loss, frames are
//! dropped until the next keyframe and a keyframe request is raised (the
//! caller sends PLI/FIR). A recording also starts by waiting for a keyframe.

use super::av1::{self, Av1Assembler};
use super::h264::{self, H264Assembler};
use super::reorder::{Event, OwnedPacket, ReorderBuffer};
use super::{RtpPacket, vp8, vp9};
use crate::codec::{av1 as av1_bits, h264 as h264_bits, vp8 as vp8_bits, vp9 as vp9_bits};
use crate::media::{Codec, CodecConfig, TrackKind};

/// Packets held waiting for a missing one: ~100-300 ms of 1-3 Mbps video.
const VIDEO_WINDOW: usize = 32;
const AUDIO_WINDOW: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub rtp_timestamp: u32,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

enum Assembler {
    /// VP8/VP9: payload data concatenated.
    Concat(Vec<u8>),
    H264(H264Assembler),
    Av1(Av1Assembler),
    Opus,
}

struct FrameState {
    timestamp: u32,
    clean_start: bool,
    broken: bool,
}

pub struct Depacketizer {
    codec: Codec,
    reorder: ReorderBuffer,
    assembler: Assembler,
    frame: Option<FrameState>,
    after_gap: bool,
    waiting_keyframe: bool,
    keyframe_request: bool,
    size: Option<(u16, u16)>,
    events: Vec<Event>,
    dropped_frames: u64,
}

impl Depacketizer {
    pub fn new(codec: Codec) -> Self {
        let video = codec.kind() == TrackKind::Video;
        let assembler = match codec {
            Codec::Vp8 | Codec::Vp9 => Assembler::Concat(Vec::new()),
            Codec::H264 => Assembler::H264(H264Assembler::default()),
            Codec::Av1 => Assembler::Av1(Av1Assembler::default()),
            Codec::Opus | Codec::Aac => Assembler::Opus,
        };
        Self {
            codec,
            reorder: ReorderBuffer::new(if video { VIDEO_WINDOW } else { AUDIO_WINDOW }),
            assembler,
            frame: None,
            // Nothing says the first packet seen opens a frame: treat the
            // start like a loss so only a codec frame-start flag counts.
            after_gap: true,
            waiting_keyframe: video,
            keyframe_request: video,
            size: None,
            events: Vec::new(),
            dropped_frames: 0,
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Feeds one packet; complete access units are appended to `out`.
    pub fn push(&mut self, packet: &RtpPacket<'_>, out: &mut Vec<AccessUnit>) {
        let owned = OwnedPacket {
            marker: packet.marker,
            timestamp: packet.timestamp,
            payload: packet.payload.to_vec(),
        };
        let mut events = std::mem::take(&mut self.events);
        self.reorder.push(packet.sequence, owned, &mut events);
        self.handle(&mut events, out);
        self.events = events;
    }

    /// Releases packets still held for reordering (end of stream).
    pub fn flush(&mut self, out: &mut Vec<AccessUnit>) {
        let mut events = std::mem::take(&mut self.events);
        self.reorder.flush(&mut events);
        self.handle(&mut events, out);
        self.finish_frame(out);
        self.events = events;
    }

    /// True once after each loss (and at start) for video: the sender should
    /// be asked for a keyframe.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    /// Restarts video at the next keyframe (a frame was discarded, or the
    /// recording resumed). A keyframe is requested when the wait begins, or
    /// always with `force_request`.
    pub fn wait_for_keyframe(&mut self, force_request: bool) {
        if self.codec.kind() == TrackKind::Video {
            self.keyframe_request |= force_request || !self.waiting_keyframe;
            self.waiting_keyframe = true;
        }
    }

    /// Video frames dropped because of loss or while waiting for a keyframe.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// The container configuration, once the stream has shown it (H264
    /// parameter sets, AV1 sequence header, VP8/VP9 keyframe size).
    pub fn config(&self) -> Option<CodecConfig> {
        let (w, h) = self.size.unwrap_or((0, 0));
        match &self.assembler {
            Assembler::Opus => Some(CodecConfig::opus()),
            Assembler::Concat(_) => self
                .size
                .map(|_| CodecConfig::video(self.codec, w, h, Vec::new())),
            Assembler::H264(a) => {
                let (sps, pps) = (a.sps.as_ref()?, a.pps.as_ref()?);
                let (w, h) = h264_bits::sps_dimensions(sps).unwrap_or((w, h));
                Some(CodecConfig::video(
                    Codec::H264,
                    w,
                    h,
                    h264_bits::avcc_record(sps, pps),
                ))
            }
            Assembler::Av1(a) => {
                let seq = a.sequence_header.as_ref()?;
                let (obu, _) = av1_bits::parse_obu(seq)?;
                let info = av1_bits::parse_sequence_header(obu.payload)?;
                Some(CodecConfig::video(
                    Codec::Av1,
                    info.width,
                    info.height,
                    av1_bits::av1c_record(&info, seq),
                ))
            }
        }
    }

    fn handle(&mut self, events: &mut Vec<Event>, out: &mut Vec<AccessUnit>) {
        for event in events.drain(..) {
            match event {
                Event::Gap => {
                    if let Some(f) = self.frame.as_mut() {
                        f.broken = true;
                    }
                    self.after_gap = true;
                }
                Event::Packet(p) => self.packet(p, out),
            }
        }
    }

    fn packet(&mut self, p: OwnedPacket, out: &mut Vec<AccessUnit>) {
        // Padding-only packets (bandwidth probes) just fill their sequence number.
        if p.payload.is_empty() {
            return;
        }
        if matches!(self.assembler, Assembler::Opus) {
            if !p.payload.is_empty() {
                out.push(AccessUnit {
                    rtp_timestamp: p.timestamp,
                    keyframe: true,
                    data: p.payload,
                });
            }
            return;
        }
        if self
            .frame
            .as_ref()
            .is_some_and(|f| f.timestamp != p.timestamp)
        {
            self.finish_frame(out);
        }
        // Codec-specific payload parsing: (packet opens a frame, parsed ok).
        let (start, ok) = match &mut self.assembler {
            Assembler::Concat(buf) => {
                let parsed = if self.codec == Codec::Vp8 {
                    vp8::parse(&p.payload)
                } else {
                    // Only the base spatial layer is recorded.
                    vp9::parse(&p.payload).map(|v| {
                        if v.spatial_layer == 0 {
                            (v.start, v.data)
                        } else {
                            (false, &[][..])
                        }
                    })
                };
                match parsed {
                    Ok((s, d)) => {
                        if self.frame.is_none() {
                            buf.clear();
                        }
                        buf.extend_from_slice(d);
                        (s, true)
                    }
                    Err(_) => (false, false),
                }
            }
            Assembler::H264(a) => {
                if self.frame.is_none() {
                    a.reset();
                }
                (h264::is_start(&p.payload), a.push(&p.payload).is_ok())
            }
            Assembler::Av1(a) => {
                if self.frame.is_none() {
                    a.reset();
                }
                (av1::is_start(&p.payload), a.push(&p.payload).is_ok())
            }
            Assembler::Opus => (true, true),
        };
        let after_gap = std::mem::take(&mut self.after_gap);
        let frame = self.frame.get_or_insert(FrameState {
            timestamp: p.timestamp,
            clean_start: !after_gap || start,
            broken: false,
        });
        frame.broken |= !ok;
        if p.marker {
            self.finish_frame(out);
        }
    }

    fn finish_frame(&mut self, out: &mut Vec<AccessUnit>) {
        let Some(frame) = self.frame.take() else {
            return;
        };
        let assembled = match &mut self.assembler {
            Assembler::Concat(buf) => {
                let data = std::mem::take(buf);
                let keyframe = if self.codec == Codec::Vp8 {
                    if vp8_bits::is_keyframe(&data)
                        && let Some(size) = vp8_bits::dimensions(&data)
                    {
                        self.size = Some(size);
                    }
                    vp8_bits::is_keyframe(&data)
                } else {
                    let header = vp9_bits::parse_header(&data);
                    if let Some(size) = header.as_ref().and_then(|h| h.size) {
                        self.size = Some(size);
                    }
                    header.is_some_and(|h| h.keyframe)
                };
                (!data.is_empty()).then_some((data, keyframe))
            }
            Assembler::H264(a) => a.finish(),
            Assembler::Av1(a) => a.finish(),
            Assembler::Opus => None,
        };
        let usable = !frame.broken && frame.clean_start;
        match assembled {
            Some((data, keyframe)) if usable && (keyframe || !self.waiting_keyframe) => {
                self.waiting_keyframe = false;
                out.push(AccessUnit {
                    rtp_timestamp: frame.timestamp,
                    keyframe,
                    data,
                });
            }
            _ => {
                self.dropped_frames += 1;
                if !usable && !self.waiting_keyframe {
                    self.waiting_keyframe = true;
                    self.keyframe_request = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Frame;
    use crate::rtp::Packetizer;

    fn vp8_frame(i: u8, keyframe: bool) -> Frame {
        let mut data = vec![i; 3000];
        data[0] = u8::from(!keyframe);
        Frame {
            pts_us: u64::from(i) * 33_333,
            keyframe,
            data,
        }
    }

    #[test]
    fn padding_packets_between_frames_are_ignored() {
        let cfg = CodecConfig::video(Codec::Vp8, 0, 0, Vec::new());
        let mut packetizer = Packetizer::new(&cfg, 96, 1, 10, 0);
        let mut depacketizer = Depacketizer::new(Codec::Vp8);
        let mut out = Vec::new();
        let mut sequence = 10u16;
        for i in 0..5 {
            for bytes in packetizer.packetize(&vp8_frame(i, i == 0)) {
                let p = RtpPacket::parse(&bytes).expect("parse");
                depacketizer.push(&RtpPacket { sequence, ..p }, &mut out);
                sequence = sequence.wrapping_add(1);
            }
            // A padding-only packet takes the next sequence number.
            let padding = RtpPacket {
                payload_type: 96,
                marker: false,
                sequence,
                timestamp: 0,
                ssrc: 1,
                payload: &[],
            };
            depacketizer.push(&padding, &mut out);
            sequence = sequence.wrapping_add(1);
        }
        assert_eq!(out.len(), 5, "every frame survives the padding");
        assert_eq!(depacketizer.dropped_frames(), 0);
        assert!(
            depacketizer.take_keyframe_request(),
            "the start asks for a keyframe"
        );
        assert!(
            !depacketizer.take_keyframe_request(),
            "padding asks for nothing"
        );
    }
}
