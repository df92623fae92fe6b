//! In-place SRTP protection of forwarded RTP packets (the fast path).
//!
//! `rtc`'s send path (`RTCRtpSender::write_rtp`) checks the packet against the sender's
//! parameters, runs the interceptor chain, marshals into a new buffer and encrypts into another.
//! A forwarded packet needs none of that: the routing core writes the rewritten header and the
//! shared payload into one reusable buffer and [`SrtpOut::protect`] encrypts it there, with keys
//! derived (RFC 3711 §4.3) from the master key [`super::srtp_tap`] learned from the session.
//! [`OutStream`] is one forwarded stream of a sink: it writes a routed packet as that sink's
//! datagram (its SSRC, payload type, extension ids) and protects it.
//!
//! # Resends and RTX
//!
//! [`OutStream::write_resend`] writes a packet a sink NACKed, from the source's history. When the
//! sink negotiated rtx for the packet's codec (`a=rtpmap:<pt> rtx/<rate>` with `a=fmtp:<pt>
//! apt=<codec pt>`) and rkms announced an rtx SSRC for the stream (`a=ssrc-group:FID <ssrc>
//! <rtx ssrc>`), it goes out as RFC 4588 §4 says: the rtx payload type, the rtx SSRC, the rtx
//! stream's own sequence number (and so its own SRTP rollover counter), the original's timestamp
//! and marker, and the payload prefixed with the original sequence number (OSN, in the sink's
//! numbering). The receiver counts it as a retransmission and gives the original back to its
//! jitter buffer. Without rtx it goes out as a plain copy of the forwarded packet. Either way the
//! payload is copied once, into the datagram, as for every forwarded packet.

use std::time::Instant;

use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CryptoError, HmacAlgorithm, Mac, RTCCrypto,
    StreamCipher, StreamCipherAlgorithm,
};

use rtc::rtcp::sender_report::SenderReport;

use super::codecs::CodecId;
use super::congestion::SendLog;
use super::extensions::{CarriedExtensions, SinkIds};
use super::srtp_tap::{SrtpMasterKey, SrtpProfile};
use crate::routing::{Kept, Rewritten, RtpPacket};

/// The most bytes [`SrtpOut::protect`] appends to a packet.
pub const MAX_SRTP_OVERHEAD: usize = 16;

const LABEL_RTP_ENCRYPTION: u8 = 0x00;
const LABEL_RTP_AUTH: u8 = 0x01;
const LABEL_RTP_SALT: u8 = 0x02;
const GCM_TAG_LEN: usize = 16;
const SHA1_80_TAG_LEN: usize = 10;

enum Cipher {
    Gcm {
        aead: Box<dyn AeadCipher>,
        salt: [u8; 12],
    },
    CmSha1 {
        ctr: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
        salt: [u8; 14],
    },
}

/// Outbound SRTP for the RTP streams the fast path owns on one peer connection.
pub struct SrtpOut {
    cipher: Cipher,
}

impl SrtpOut {
    /// Derives the session keys from `master` and keys the ciphers once.
    pub fn new(master: &SrtpMasterKey, crypto: &dyn RTCCrypto) -> Result<Self, CryptoError> {
        let salt = &master.salt[..master.profile.salt_len()];
        let mut session_key = [0u8; 16];
        kdf(
            crypto,
            &master.key,
            salt,
            LABEL_RTP_ENCRYPTION,
            &mut session_key,
        )?;
        let cipher = match master.profile {
            SrtpProfile::AeadAes128Gcm => {
                let mut session_salt = [0u8; 12];
                kdf(crypto, &master.key, salt, LABEL_RTP_SALT, &mut session_salt)?;
                Cipher::Gcm {
                    aead: crypto.new_aead(AeadAlgorithm::Aes128Gcm, &session_key)?,
                    salt: session_salt,
                }
            }
            SrtpProfile::Aes128CmHmacSha1_80 => {
                let mut session_salt = [0u8; 14];
                kdf(crypto, &master.key, salt, LABEL_RTP_SALT, &mut session_salt)?;
                let mut auth_key = [0u8; 20];
                kdf(crypto, &master.key, salt, LABEL_RTP_AUTH, &mut auth_key)?;
                Cipher::CmSha1 {
                    ctr: crypto
                        .new_stream_cipher(StreamCipherAlgorithm::Aes128Ctr, &session_key)?,
                    mac: crypto.new_hmac(HmacAlgorithm::Sha1, &auth_key)?,
                    salt: session_salt,
                }
            }
        };
        Ok(SrtpOut { cipher })
    }

    /// Protects the RTP packet in `buf[..len]` (header of `header_len` bytes, SSRC and sequence
    /// number already rewritten) in place and appends the tag. `buf` must have
    /// [`MAX_SRTP_OVERHEAD`] spare bytes after `len`. Returns the protected length.
    pub fn protect(
        &mut self,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
        ssrc: u32,
        seq: u16,
        roc: u32,
    ) -> Result<usize, CryptoError> {
        match &mut self.cipher {
            Cipher::Gcm { aead, salt } => {
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(&seq.to_be_bytes());
                iv.iter_mut().zip(salt.iter()).for_each(|(v, s)| *v ^= s);
                let (packet, rest) = buf.split_at_mut(len);
                let (aad, payload) = packet.split_at_mut(header_len);
                aead.seal_in_place(&iv, aad, payload, &mut rest[..GCM_TAG_LEN])?;
                Ok(len + GCM_TAG_LEN)
            }
            Cipher::CmSha1 { ctr, mac, salt } => {
                let mut iv = [0u8; 16];
                iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
                iv[8..12].copy_from_slice(&roc.to_be_bytes());
                iv[12..14].copy_from_slice(&seq.to_be_bytes());
                iv.iter_mut().zip(salt.iter()).for_each(|(v, s)| *v ^= s);
                ctr.apply_keystream(&iv, &mut buf[header_len..len])?;
                let mut tag = [0u8; 20];
                mac.sign(&[&buf[..len], &roc.to_be_bytes()], &mut tag)?;
                buf[len..len + SHA1_80_TAG_LEN].copy_from_slice(&tag[..SHA1_80_TAG_LEN]);
                Ok(len + SHA1_80_TAG_LEN)
            }
        }
    }
}

/// Room a forwarded datagram needs besides its payload: header, largest extension block, tag.
pub const DATAGRAM_OVERHEAD: usize = 12 + 40 + MAX_SRTP_OVERHEAD;

/// One RTP stream rkms forwards on a peer connection: its SSRC, what the session negotiated for
/// it, its rollover counter and the counters its sender reports carry.
#[derive(Debug, Clone)]
pub struct OutStream {
    ssrc: u32,
    /// Negotiated payload type of each codec, by [`CodecId::index`] (inline: the fan-out reads
    /// it for every sink of every packet, and a heap lookup cost a cache miss each).
    payload_types: [Option<u8>; CodecId::COUNT],
    /// The first negotiated codec and its payload type.
    first: Option<(CodecId, u8)>,
    extensions: SinkIds,
    roc: RolloverCounter,
    /// The last timestamp sent, when, and at what clock rate.
    last_sent: Option<(u32, Instant, u32)>,
    /// Packets and payload bytes forwarded, datagram bytes sent (SRTP included).
    packets: u64,
    octets: u64,
    datagram_bytes: u64,
    /// Packets not sent because their codec was not negotiated (no transcoding).
    unnegotiated: u64,
    /// The retransmission stream, when rkms announced one (boxed: the fan-out reads the
    /// fields above for every packet, resends are rare).
    rtx: Option<Box<RtxStream>>,
    /// NACKed packets resent as plain copies.
    resent_plain: u64,
}

/// The RTX stream (RFC 4588) paired with an [`OutStream`]: its own SSRC and sequence numbers.
#[derive(Debug, Clone)]
struct RtxStream {
    ssrc: u32,
    /// The rtx payload type repairing each codec, by [`CodecId::index`].
    payload_types: [Option<u8>; CodecId::COUNT],
    next_seq: u16,
    roc: RolloverCounter,
    /// Packets and payload bytes (the OSN included) sent.
    packets: u64,
    octets: u64,
}

/// What a datagram is stamped with as it leaves, besides its stream's own fields.
pub struct SendStamps<'a> {
    /// abs-send-time of the send (6.18 fixed-point seconds).
    pub abs_send_time: u32,
    /// The peer's transport-wide sequence, when it negotiated transport-cc: a stream that
    /// carries the number takes the next one and records the datagram's departure and size.
    pub transport: Option<&'a mut SendLog>,
}

/// The header of one datagram [`write_rtp`] writes.
struct RtpFields {
    payload_type: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
}

impl OutStream {
    /// A stream sending as `ssrc`, with nothing negotiated yet.
    pub fn new(ssrc: u32) -> Self {
        OutStream {
            ssrc,
            payload_types: [None; CodecId::COUNT],
            first: None,
            extensions: SinkIds::default(),
            roc: RolloverCounter::default(),
            last_sent: None,
            packets: 0,
            octets: 0,
            datagram_bytes: 0,
            unnegotiated: 0,
            rtx: None,
            resent_plain: 0,
        }
    }

    /// Pairs the stream with an RTX stream sent as `ssrc` whose first sequence number is
    /// `first_seq` (random, RFC 3550 §5.1); its payload types come with
    /// [`OutStream::negotiated_rtx`].
    pub fn with_rtx(mut self, ssrc: u32, first_seq: u16) -> Self {
        self.rtx = Some(Box::new(RtxStream {
            ssrc,
            payload_types: [None; CodecId::COUNT],
            next_seq: first_seq,
            roc: RolloverCounter::default(),
            packets: 0,
            octets: 0,
        }));
        self
    }

    /// The SSRC of the paired RTX stream, if any.
    pub fn rtx_ssrc(&self) -> Option<u32> {
        self.rtx.as_ref().map(|r| r.ssrc)
    }

    /// Records the rtx payload type the session negotiated for each codec (empty when the remote
    /// did not negotiate rtx: resends then go out as plain copies).
    pub fn negotiated_rtx(&mut self, payload_types: &[(CodecId, u8)]) {
        if let Some(rtx) = self.rtx.as_mut() {
            rtx.payload_types = [None; CodecId::COUNT];
            for &(codec, pt) in payload_types.iter().rev() {
                rtx.payload_types[codec.index()] = Some(pt);
            }
        }
    }

    /// NACKed packets resent on the RTX stream.
    pub fn resent_rtx(&self) -> u64 {
        self.rtx.as_ref().map_or(0, |r| r.packets)
    }

    /// NACKed packets resent as plain copies.
    pub fn resent_plain(&self) -> u64 {
        self.resent_plain
    }

    /// The SSRC rkms sends this stream as.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The first negotiated codec and its payload type.
    pub fn first_codec(&self) -> Option<(CodecId, u8)> {
        self.first
    }

    /// Packets forwarded.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Payload bytes forwarded.
    pub fn octets(&self) -> u64 {
        self.octets
    }

    /// Packets not sent because the peer did not negotiate their codec.
    pub fn unnegotiated(&self) -> u64 {
        self.unnegotiated
    }

    /// Datagram bytes sent (headers and SRTP tags included).
    pub fn datagram_bytes(&self) -> u64 {
        self.datagram_bytes
    }

    /// Records what the session negotiated: payload type per codec, header extension ids.
    pub fn negotiated(&mut self, payload_types: Vec<(CodecId, u8)>, extensions: SinkIds) {
        self.payload_types = [None; CodecId::COUNT];
        // The first payload type of a codec wins, as in the SDP's order of preference.
        for &(codec, pt) in payload_types.iter().rev() {
            self.payload_types[codec.index()] = Some(pt);
        }
        self.first = payload_types.first().copied();
        self.extensions = extensions;
    }

    /// Writes a routed packet into `buf` as this stream's datagram (rewritten header, this
    /// stream's extensions with the `stamps`, payload) and protects it in place with `srtp`.
    /// Returns the datagram length, or `None` if the codec was not negotiated or `buf` is too
    /// small.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        srtp: &mut SrtpOut,
        codec: CodecId,
        packet: &RtpPacket,
        carried: &CarriedExtensions,
        rewritten: Rewritten,
        stamps: SendStamps<'_>,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<usize> {
        let Some(pt) = self.payload_types[codec.index()] else {
            // A source in a codec this peer did not negotiate (a player's file, say).
            if self.unnegotiated == 0 {
                tracing::warn!(
                    ssrc = self.ssrc,
                    ?codec,
                    "the peer did not negotiate this codec; not sent (no transcoding), counted"
                );
            }
            self.unnegotiated += 1;
            return None;
        };
        let fields = RtpFields {
            payload_type: pt,
            marker: packet.header.marker,
            seq: rewritten.seq,
            timestamp: rewritten.timestamp,
            ssrc: self.ssrc,
        };
        let roc = &mut self.roc;
        let n = write_rtp(
            srtp,
            &self.extensions,
            carried,
            stamps,
            now,
            &fields,
            None,
            &packet.payload,
            |seq| roc.next(seq),
            buf,
        )?;
        self.last_sent = Some((rewritten.timestamp, now, codec.clock_rate()));
        self.packets += 1;
        self.octets += packet.payload.len() as u64;
        self.datagram_bytes += n as u64;
        Some(n)
    }

    /// Writes a packet a sink NACKed, `rewritten` being its header fields in the sink's
    /// numbering: on the RTX stream when the sink negotiated rtx for its codec, else as a plain
    /// copy (see the module documentation). Returns the datagram length, or `None` if the codec
    /// was not negotiated or `buf` is too small.
    pub fn write_resend(
        &mut self,
        srtp: &mut SrtpOut,
        kept: &Kept,
        rewritten: Rewritten,
        stamps: SendStamps<'_>,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<usize> {
        let pt = self.payload_types[kept.codec.index()]?;
        let rtx_pt = self
            .rtx
            .as_ref()
            .and_then(|r| r.payload_types[kept.codec.index()]);
        // RTX: its own payload type, SSRC, numbering and rollover counter, the OSN first.
        let (fields, osn, roc) = match (self.rtx.as_deref_mut(), rtx_pt) {
            (Some(rtx), Some(rtx_pt)) => (
                RtpFields {
                    payload_type: rtx_pt,
                    marker: kept.marker,
                    seq: rtx.next_seq,
                    timestamp: rewritten.timestamp,
                    ssrc: rtx.ssrc,
                },
                Some(rewritten.seq),
                &mut rtx.roc,
            ),
            _ => (
                RtpFields {
                    payload_type: pt,
                    marker: kept.marker,
                    seq: rewritten.seq,
                    timestamp: rewritten.timestamp,
                    ssrc: self.ssrc,
                },
                None,
                &mut self.roc,
            ),
        };
        let n = write_rtp(
            srtp,
            &self.extensions,
            &CarriedExtensions::default(),
            stamps,
            now,
            &fields,
            osn,
            &kept.payload,
            |seq| roc.next(seq),
            buf,
        )?;
        match self.rtx.as_deref_mut() {
            Some(rtx) if osn.is_some() => {
                rtx.next_seq = rtx.next_seq.wrapping_add(1);
                rtx.packets += 1;
                rtx.octets += kept.payload.len() as u64 + 2;
            }
            _ => self.resent_plain += 1,
        }
        self.datagram_bytes += n as u64;
        Some(n)
    }

    /// A sender report for this stream, once it has sent something: the last forwarded
    /// timestamp advanced to `now`, paired with the wall clock `ntp`.
    pub fn sender_report(&self, now: Instant, ntp: u64) -> Option<SenderReport> {
        let (ts, at, clock_rate) = self.last_sent?;
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        Some(SenderReport {
            ssrc: self.ssrc,
            ntp_time: ntp,
            rtp_time: ts.wrapping_add((elapsed * f64::from(clock_rate)) as u32),
            // The report's counters wrap at 32 bits.
            packet_count: self.packets as u32,
            octet_count: self.octets as u32,
            ..Default::default()
        })
    }

    /// A sender report for the RTX stream, once it has resent something: on the clock of the
    /// stream it repairs (RFC 4588 §8.1: same timestamps), with its own counters.
    pub fn rtx_sender_report(&self, now: Instant, ntp: u64) -> Option<SenderReport> {
        let rtx = self.rtx.as_deref().filter(|rtx| rtx.packets > 0)?;
        Some(SenderReport {
            ssrc: rtx.ssrc,
            packet_count: rtx.packets as u32,
            octet_count: rtx.octets as u32,
            ..self.sender_report(now, ntp)?
        })
    }
}

/// Writes one RTP datagram into `buf`: the header `fields`, the sink's header extensions with
/// the `stamps` (a transport-wide number taken and recorded as sent at `now` if the stream
/// carries one), `osn` (an RTX packet's original sequence number) and `payload`, protected in
/// place with the rollover counter `roc` gives for the sequence number. Returns the protected
/// length, or `None` if `buf` is too small.
#[allow(clippy::too_many_arguments)]
#[inline]
fn write_rtp(
    srtp: &mut SrtpOut,
    extensions: &SinkIds,
    carried: &CarriedExtensions,
    stamps: SendStamps<'_>,
    now: Instant,
    fields: &RtpFields,
    osn: Option<u16>,
    payload: &[u8],
    roc: impl FnOnce(u16) -> u32,
    buf: &mut [u8],
) -> Option<usize> {
    let osn_len = if osn.is_some() { 2 } else { 0 };
    if payload.len() + osn_len + DATAGRAM_OVERHEAD > buf.len() {
        return None;
    }
    let transport = stamps.transport.filter(|_| extensions.transport_wide());
    let transport_seq = transport.as_deref().map(SendLog::next_seq);
    let ext_len = extensions.write(carried, stamps.abs_send_time, transport_seq, buf);
    let header_len = 12 + ext_len;
    let mut at = header_len;
    buf[0] = if ext_len > 0 { 0x90 } else { 0x80 };
    buf[1] = fields.payload_type | if fields.marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&fields.seq.to_be_bytes());
    buf[4..8].copy_from_slice(&fields.timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&fields.ssrc.to_be_bytes());
    if let Some(osn) = osn {
        buf[at..at + 2].copy_from_slice(&osn.to_be_bytes());
        at += 2;
    }
    let len = at + payload.len();
    buf[at..len].copy_from_slice(payload);
    let n = srtp
        .protect(
            buf,
            header_len,
            len,
            fields.ssrc,
            fields.seq,
            roc(fields.seq),
        )
        .ok()?;
    if let Some(log) = transport {
        log.sent(n, now);
    }
    Some(n)
}

/// The SRTP key derivation PRF (AES-CM, key derivation rate 0), RFC 3711 §4.3.3.
fn kdf(
    crypto: &dyn RTCCrypto,
    master_key: &[u8; 16],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), CryptoError> {
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = [0u8; 16];
        block[..master_salt.len()].copy_from_slice(master_salt);
        block[7] ^= label;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        crypto.block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}

/// The rollover counter of one outbound SRTP stream (RFC 3711 §3.3.1), for a sender that
/// numbers its packets itself: mostly increasing, with occasional resends of older numbers.
#[derive(Debug, Default, Clone, Copy)]
pub struct RolloverCounter {
    highest: Option<u16>,
    roc: u32,
}

impl RolloverCounter {
    /// The ROC to protect the packet numbered `seq` with; records it as sent.
    pub fn next(&mut self, seq: u16) -> u32 {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return self.roc;
        };
        let delta = seq.wrapping_sub(highest);
        if delta == 0 {
            self.roc
        } else if delta < 0x8000 {
            // Ahead of the highest number sent: wrapped if the number went down.
            if seq < highest {
                self.roc = self.roc.wrapping_add(1);
            }
            self.highest = Some(seq);
            self.roc
        } else if seq > highest {
            // A resend from before the last wrap.
            self.roc.wrapping_sub(1)
        } else {
            self.roc
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    const NO_STAMPS: SendStamps<'static> = SendStamps {
        abs_send_time: 0,
        transport: None,
    };

    fn packet(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..1000u32).map(|i| i as u8));
        p
    }

    fn same_as_crate(profile: SrtpProfile, crate_profile: ProtectionProfile) {
        let provider = rtc::crypto::default_provider().expect("provider");
        let master = SrtpMasterKey {
            profile,
            key: [7u8; 16],
            salt: [9u8; 14],
        };
        let salt = &master.salt[..profile.salt_len()];
        let mut reference = Context::new(
            &master.key,
            salt,
            crate_profile,
            None,
            None,
            provider.crypto(),
        )
        .expect("context");
        let mut ours = SrtpOut::new(&master, provider.crypto()).expect("srtp out");
        let mut roc = RolloverCounter::default();
        for seq in [65533u16, 65534, 65535, 0, 1, 65535, 2] {
            let plain = packet(0xdead_beef, seq);
            let expected = reference.encrypt_rtp(&plain).expect("encrypt");
            let mut buf = plain.clone();
            buf.resize(plain.len() + MAX_SRTP_OVERHEAD, 0);
            let n = ours
                .protect(&mut buf, 12, plain.len(), 0xdead_beef, seq, roc.next(seq))
                .expect("protect");
            assert_eq!(&buf[..n], &expected[..], "seq {seq}");
        }
    }

    #[test]
    fn gcm_matches_the_crate_context() {
        same_as_crate(SrtpProfile::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm);
    }

    #[test]
    fn a_codec_the_peer_did_not_negotiate_is_counted_not_sent() {
        let provider = rtc::crypto::default_provider().expect("provider");
        let master = SrtpMasterKey {
            profile: SrtpProfile::AeadAes128Gcm,
            key: [7u8; 16],
            salt: [9u8; 14],
        };
        let mut srtp = SrtpOut::new(&master, provider.crypto()).expect("srtp out");
        let mut stream = OutStream::new(1);
        stream.negotiated(vec![(CodecId::Vp8, 96)], SinkIds::default());
        let packet = RtpPacket {
            payload: bytes::Bytes::from_static(b"frame"),
            ..Default::default()
        };
        let rewritten = Rewritten {
            seq: 1,
            timestamp: 0,
        };
        let mut buf = [0u8; 1500];
        let mut write = |stream: &mut OutStream, codec| {
            stream.write(
                &mut srtp,
                codec,
                &packet,
                &CarriedExtensions::default(),
                rewritten,
                NO_STAMPS,
                Instant::now(),
                &mut buf,
            )
        };
        assert!(write(&mut stream, CodecId::H264NonInterleaved).is_none());
        assert!(write(&mut stream, CodecId::H264NonInterleaved).is_none());
        assert!(write(&mut stream, CodecId::Vp8).is_some());
        assert_eq!(stream.unnegotiated(), 2);
        assert_eq!(stream.packets(), 1);
    }

    /// Decrypts with the crate's SRTP context and parses: (payload type, marker, seq, timestamp,
    /// SSRC, payload).
    fn read_back(context: &mut Context, datagram: &[u8]) -> (u8, bool, u16, u32, u32, Vec<u8>) {
        use rtc::shared::marshal::Unmarshal;
        let plain = context.decrypt_rtp(datagram).expect("decrypt");
        let p = RtpPacket::unmarshal(&mut &plain[..]).expect("parse");
        let h = &p.header;
        (
            h.payload_type,
            h.marker,
            h.sequence_number,
            h.timestamp,
            h.ssrc,
            p.payload.to_vec(),
        )
    }

    /// rkms's outbound SRTP and the remote's context that reads it (AES-128-GCM).
    fn srtp_pair() -> (SrtpOut, Context) {
        let provider = rtc::crypto::default_provider().expect("provider");
        let master = SrtpMasterKey {
            profile: SrtpProfile::AeadAes128Gcm,
            key: [7u8; 16],
            salt: [9u8; 14],
        };
        let salt = &master.salt[..master.profile.salt_len()];
        let srtp = SrtpOut::new(&master, provider.crypto()).expect("srtp out");
        let remote = Context::new(
            &master.key,
            salt,
            ProtectionProfile::AeadAes128Gcm,
            None,
            None,
            provider.crypto(),
        )
        .expect("context");
        (srtp, remote)
    }

    #[test]
    fn a_resend_goes_on_the_rtx_stream_when_negotiated_else_as_a_plain_copy() {
        let (mut srtp, mut remote) = srtp_pair();
        let mut stream = OutStream::new(0x1111).with_rtx(0x2222, 65_535);
        stream.negotiated(
            vec![(CodecId::Vp8, 96), (CodecId::Opus, 111)],
            SinkIds::default(),
        );
        stream.negotiated_rtx(&[(CodecId::Vp8, 97)]);
        let kept = |codec| Kept {
            seq: 7,
            timestamp: 3000,
            marker: true,
            codec,
            payload: bytes::Bytes::from_static(b"frame"),
        };
        let mut buf = [0u8; 1500];
        let mut resend = |stream: &mut OutStream, codec, seq| {
            let rewritten = Rewritten {
                seq,
                timestamp: 9000,
            };
            let n = stream
                .write_resend(
                    &mut srtp,
                    &kept(codec),
                    rewritten,
                    NO_STAMPS,
                    Instant::now(),
                    &mut buf,
                )
                .expect("written");
            read_back(&mut remote, &buf[..n])
        };
        // RTX: its own payload type, SSRC and numbering (wrapping, so a new rollover counter),
        // the original's timestamp and marker, the OSN (sink numbering) before the payload.
        for (sink_seq, rtx_seq) in [(500u16, 65_535u16), (501, 0)] {
            let mut payload = sink_seq.to_be_bytes().to_vec();
            payload.extend_from_slice(b"frame");
            assert_eq!(
                resend(&mut stream, CodecId::Vp8, sink_seq),
                (97, true, rtx_seq, 9000, 0x2222, payload)
            );
        }
        // No rtx for this codec, or none negotiated at all: the forwarded packet again.
        let plain = (111, true, 42, 9000, 0x1111, b"frame".to_vec());
        assert_eq!(resend(&mut stream, CodecId::Opus, 42), plain);
        stream.negotiated_rtx(&[]);
        let plain = (96, true, 43, 9000, 0x1111, b"frame".to_vec());
        assert_eq!(resend(&mut stream, CodecId::Vp8, 43), plain);
        assert_eq!((stream.resent_rtx(), stream.resent_plain()), (2, 2));
        // The RTX stream reports itself, on the clock of the stream it repairs (which has
        // forwarded something), with its own counts.
        let forwarded = RtpPacket {
            payload: bytes::Bytes::from_static(b"frame"),
            ..Default::default()
        };
        let rewritten = Rewritten {
            seq: 44,
            timestamp: 9000,
        };
        let mut buf = [0u8; 1500];
        stream
            .write(
                &mut srtp,
                CodecId::Vp8,
                &forwarded,
                &CarriedExtensions::default(),
                rewritten,
                NO_STAMPS,
                Instant::now(),
                &mut buf,
            )
            .expect("forwarded");
        let report = stream
            .rtx_sender_report(Instant::now(), 1)
            .expect("RTX report");
        assert_eq!(
            (report.ssrc, report.packet_count, report.octet_count),
            (0x2222, 2, 2 * (2 + 5))
        );
        // A codec the sink never negotiated is not resent at all.
        assert!(resend_unnegotiated(&mut stream, &mut srtp));
    }

    fn resend_unnegotiated(stream: &mut OutStream, srtp: &mut SrtpOut) -> bool {
        let kept = Kept {
            seq: 1,
            timestamp: 0,
            marker: false,
            codec: CodecId::H264NonInterleaved,
            payload: bytes::Bytes::new(),
        };
        let rewritten = Rewritten {
            seq: 1,
            timestamp: 0,
        };
        stream
            .write_resend(
                srtp,
                &kept,
                rewritten,
                NO_STAMPS,
                Instant::now(),
                &mut [0u8; 1500],
            )
            .is_none()
    }

    #[test]
    fn forwarded_packets_and_resends_share_the_transport_wide_sequence() {
        use super::super::extensions::TRANSPORT_CC;
        use rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionParameters;
        let (mut srtp, mut remote) = srtp_pair();
        let exts = [RTCRtpHeaderExtensionParameters {
            uri: TRANSPORT_CC.into(),
            id: 3,
            encrypted: false,
        }];
        let mut video = OutStream::new(0x1111).with_rtx(0x2222, 0);
        video.negotiated(
            vec![(CodecId::Vp8, 96)],
            SinkIds::from_negotiated(&exts, None, true),
        );
        video.negotiated_rtx(&[(CodecId::Vp8, 97)]);
        // A stream of the same peer whose section did not negotiate transport-cc.
        let mut audio = OutStream::new(0x3333);
        audio.negotiated(
            vec![(CodecId::Opus, 111)],
            SinkIds::from_negotiated(&exts, None, false),
        );
        let mut log = SendLog::default();
        let first = log.next_seq();
        let packet = RtpPacket {
            payload: bytes::Bytes::from_static(b"frame"),
            ..Default::default()
        };
        let rewritten = Rewritten {
            seq: 5,
            timestamp: 0,
        };
        let mut buf = [0u8; 1500];
        let mut numbers = Vec::new();
        let mut read_number = |n: usize, buf: &[u8]| {
            use rtc::shared::marshal::Unmarshal;
            let plain = remote.decrypt_rtp(&buf[..n]).expect("decrypt");
            let p = RtpPacket::unmarshal(&mut &plain[..]).expect("parse");
            numbers.push(
                p.header
                    .get_extension(3)
                    .map(|e| u16::from_be_bytes([e[0], e[1]])),
            );
        };
        for stream in [&mut video, &mut audio] {
            let codec = stream.first_codec().expect("codec").0;
            let stamps = SendStamps {
                abs_send_time: 0,
                transport: Some(&mut log),
            };
            let now = Instant::now();
            let n = stream
                .write(
                    &mut srtp,
                    codec,
                    &packet,
                    &CarriedExtensions::default(),
                    rewritten,
                    stamps,
                    now,
                    &mut buf,
                )
                .expect("written");
            read_number(n, &buf);
        }
        let kept = Kept {
            seq: 1,
            timestamp: 0,
            marker: false,
            codec: CodecId::Vp8,
            payload: bytes::Bytes::from_static(b"frame"),
        };
        let stamps = SendStamps {
            abs_send_time: 0,
            transport: Some(&mut log),
        };
        let n = video
            .write_resend(
                &mut srtp,
                &kept,
                rewritten,
                stamps,
                Instant::now(),
                &mut buf,
            )
            .expect("resent");
        read_number(n, &buf);
        assert_eq!(numbers, [Some(first), None, Some(first.wrapping_add(1))]);
        assert_eq!(log.next_seq(), first.wrapping_add(2));
    }

    #[test]
    fn cm_sha1_matches_the_crate_context() {
        same_as_crate(
            SrtpProfile::Aes128CmHmacSha1_80,
            ProtectionProfile::Aes128CmHmacSha1_80,
        );
    }
}
