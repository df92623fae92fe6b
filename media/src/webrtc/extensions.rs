//! RTP header extensions carried across a forward: read by URI on the source's side, written
//! under each sink's negotiated ids.

use rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionParameters;

use super::super::routing::RtpPacket;

/// Extension URIs rkms negotiates and what it does with them on forwarded packets.
pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// Written fresh per sink from the send time (feeds the receiver's bandwidth estimate).
pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
/// Written fresh per sink from the peer's transport-wide sequence, when the sink negotiated
/// transport-cc (see [`super::congestion`]).
pub const TRANSPORT_CC: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Copied from the source.
pub const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Copied from the source (camera rotation of mobile senders).
pub const VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";

/// The extension values a forwarded packet carries from its source, independent of ids.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CarriedExtensions {
    /// ssrc-audio-level byte.
    pub audio_level: Option<u8>,
    /// video-orientation byte.
    pub video_orientation: Option<u8>,
}

/// Ids of the carried extensions in a source's stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceIds {
    audio_level: Option<u8>,
    video_orientation: Option<u8>,
}

impl SourceIds {
    /// From the receiver's negotiated extensions.
    pub fn from_negotiated(exts: &[RTCRtpHeaderExtensionParameters]) -> Self {
        let id = |uri: &str| {
            exts.iter()
                .find(|e| e.uri == uri)
                .and_then(|e| u8::try_from(e.id).ok())
        };
        SourceIds {
            audio_level: id(AUDIO_LEVEL),
            video_orientation: id(VIDEO_ORIENTATION),
        }
    }

    /// Reads the carried values of a packet.
    pub fn read(&self, packet: &RtpPacket) -> CarriedExtensions {
        let byte = |id: Option<u8>| {
            let id = id?;
            packet
                .header
                .extensions
                .iter()
                .find(|e| e.id == id)
                .and_then(|e| e.payload.first().copied())
        };
        CarriedExtensions {
            audio_level: byte(self.audio_level),
            video_orientation: byte(self.video_orientation),
        }
    }
}

/// Ids of the extensions rkms writes in one sink stream, and that stream's mid.
///
/// Inline (no heap): the fan-out reads it for every sink of every packet.
#[derive(Debug, Default, Clone)]
pub struct SinkIds {
    /// The mid extension's id, and the mid (at most 16 bytes) with its length.
    mid: Option<(u8, [u8; 16], u8)>,
    abs_send_time: Option<u8>,
    transport_cc: Option<u8>,
    audio_level: Option<u8>,
    video_orientation: Option<u8>,
}

impl SinkIds {
    /// From the sender's negotiated extensions and the m-section's mid; the transport-wide
    /// sequence number only with `transport_cc` (the transport-cc feedback was negotiated too:
    /// without it the receiver would not report on the numbers).
    pub fn from_negotiated(
        exts: &[RTCRtpHeaderExtensionParameters],
        mid: Option<String>,
        transport_cc: bool,
    ) -> Self {
        // One-byte header form: ids 1-14 only.
        let id = |uri: &str| {
            exts.iter()
                .find(|e| e.uri == uri)
                .and_then(|e| u8::try_from(e.id).ok())
                .filter(|id| (1..=14).contains(id))
        };
        let mid = mid.filter(|m| !m.is_empty() && m.len() <= 16).map(|m| {
            let mut bytes = [0u8; 16];
            bytes[..m.len()].copy_from_slice(m.as_bytes());
            (bytes, m.len() as u8)
        });
        SinkIds {
            mid: id(MID).zip(mid).map(|(id, (bytes, len))| (id, bytes, len)),
            abs_send_time: id(ABS_SEND_TIME),
            transport_cc: id(TRANSPORT_CC).filter(|_| transport_cc),
            audio_level: id(AUDIO_LEVEL),
            video_orientation: id(VIDEO_ORIENTATION),
        }
    }

    /// Whether this stream carries the transport-wide sequence number.
    pub fn transport_wide(&self) -> bool {
        self.transport_cc.is_some()
    }

    /// Writes the one-byte-form extension block (RFC 8285) at `buf[12..]`; returns its length
    /// (0 when there is nothing to write). `abs_send_time` is the 6.18 fixed-point send time,
    /// `transport_seq` the transport-wide sequence number (written if the stream carries it).
    pub fn write(
        &self,
        carried: &CarriedExtensions,
        abs_send_time: u32,
        transport_seq: Option<u16>,
        buf: &mut [u8],
    ) -> usize {
        let mut at = 16;
        let mut put = |id: u8, data: &[u8]| {
            buf[at] = (id << 4) | (data.len() as u8 - 1);
            buf[at + 1..at + 1 + data.len()].copy_from_slice(data);
            at += 1 + data.len();
        };
        if let Some((id, mid, len)) = &self.mid {
            put(*id, &mid[..usize::from(*len)]);
        }
        if let Some(id) = self.abs_send_time {
            put(id, &abs_send_time.to_be_bytes()[1..]);
        }
        if let (Some(id), Some(seq)) = (self.transport_cc, transport_seq) {
            put(id, &seq.to_be_bytes());
        }
        if let (Some(id), Some(v)) = (self.audio_level, carried.audio_level) {
            put(id, &[v]);
        }
        if let (Some(id), Some(v)) = (self.video_orientation, carried.video_orientation) {
            put(id, &[v]);
        }
        if at == 16 {
            return 0;
        }
        while at % 4 != 0 {
            buf[at] = 0;
            at += 1;
        }
        buf[12..14].copy_from_slice(&[0xBE, 0xDE]);
        buf[14..16].copy_from_slice(&(((at - 16) / 4) as u16).to_be_bytes());
        at - 12
    }
}

/// abs-send-time of `elapsed` since any fixed origin: 24-bit 6.18 fixed-point seconds.
pub fn abs_send_time(elapsed: std::time::Duration) -> u32 {
    ((elapsed.as_nanos() << 18) / 1_000_000_000) as u32 & 0x00FF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_padded_one_byte_block_that_the_crate_parses() {
        let ext = |uri: &str, id| RTCRtpHeaderExtensionParameters {
            uri: uri.into(),
            id,
            encrypted: false,
        };
        let sink = SinkIds::from_negotiated(
            &[
                ext(MID, 4),
                ext(ABS_SEND_TIME, 2),
                ext(AUDIO_LEVEL, 1),
                ext(TRANSPORT_CC, 3),
            ],
            Some("1".into()),
            true,
        );
        let mut buf = [0u8; 64];
        buf[0] = 0x90;
        buf[1] = 111;
        let carried = CarriedExtensions {
            audio_level: Some(0x85),
            video_orientation: None,
        };
        let n = sink.write(&carried, 0x123456, Some(0xABCD), &mut buf);
        assert_eq!(n % 4, 0);
        use rtc::shared::marshal::Unmarshal;
        let header = rtc::rtp::Header::unmarshal(&mut &buf[..12 + n]).expect("parses");
        let get = |id| {
            header
                .extensions
                .iter()
                .find(|e| e.id == id)
                .map(|e| e.payload.to_vec())
        };
        assert_eq!(get(4), Some(b"1".to_vec()));
        assert_eq!(get(2), Some(vec![0x12, 0x34, 0x56]));
        assert_eq!(get(1), Some(vec![0x85]));
        assert_eq!(get(3), Some(vec![0xAB, 0xCD]));
        // Without the transport-cc feedback, no transport-wide number.
        let without = SinkIds::from_negotiated(&[ext(TRANSPORT_CC, 3)], None, false);
        assert!(!without.transport_wide());
        assert_eq!(without.write(&carried, 0, Some(1), &mut buf), 0);
    }
}
