//! Offer/answer of an RtpEndpoint (RFC 3264 without ICE): the offer rkms makes, its answer to a
//! remote offer, and the media legs an offer and its answer agree on.
//!
//! A negotiated endpoint may negotiate again (RFC 3264 §8, a SIP re-INVITE): its re-offers and
//! re-answers keep its ports and SSRCs, and a line it cannot take, or one the remote stops
//! (port 0), stops that stream rather than failing the session. rkms adds no media in a
//! renegotiation: a new line of a kind it has no ports for is refused.

use std::net::IpAddr;

use crate::graph::MediaKind;
use crate::webrtc::codecs::CodecId;

use super::RtpError;
use super::sdes::{CryptoAttribute, MasterKey};
use super::sdp::{Direction, MediaLine, Payload, SessionDescription};

/// What rkms offers per media: the codecs it forwards, under common payload types.
fn offered_payloads(kind: MediaKind) -> Vec<Payload> {
    match kind {
        MediaKind::Audio => vec![
            Payload::new(
                111,
                CodecId::Opus,
                "opus/48000/2",
                Some("minptime=10;useinbandfec=1"),
            ),
            Payload::new(0, CodecId::Pcmu, "PCMU/8000", None),
            Payload::new(8, CodecId::Pcma, "PCMA/8000", None),
        ],
        _ => vec![
            Payload::new(96, CodecId::Vp8, "VP8/90000", None),
            Payload::new(
                97,
                CodecId::H264NonInterleaved,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
            ),
            Payload::new(98, CodecId::Vp9, "VP9/90000", None),
            Payload::new(99, CodecId::Av1, "AV1/90000", None),
        ],
    }
}

/// The line rkms writes for `kind` on `port` (RTCP on the next one).
fn local_line(
    kind: MediaKind,
    port: u16,
    proto: &str,
    addr: IpAddr,
    payloads: Vec<Payload>,
    ssrc: u32,
) -> MediaLine {
    MediaLine {
        media: kind.as_str().to_ascii_lowercase(),
        port,
        proto: proto.to_owned(),
        formats: payloads.iter().map(|p| p.pt.to_string()).collect(),
        addr: Some(addr),
        rtcp: Some((port + 1, None)),
        rtcp_mux: true,
        direction: Direction::SendRecv,
        payloads,
        crypto: Vec::new(),
        ssrc: Some(ssrc),
    }
}

/// Where rkms's side of the media lives.
pub(super) struct Local {
    pub addr: IpAddr,
    pub session_id: u64,
    pub version: u64,
    /// SDES key rkms encrypts with, when encryption is on.
    pub key: Option<MasterKey>,
}

/// rkms's offer: one line per kind in `media`, each with the port `port_of` gives it.
pub(super) fn offer(
    local: &Local,
    media: &[MediaKind],
    mut port_of: impl FnMut(MediaKind) -> Result<(u16, u32), RtpError>,
) -> Result<SessionDescription, RtpError> {
    let proto = if local.key.is_some() {
        "RTP/SAVPF"
    } else {
        "RTP/AVPF"
    };
    let mut lines = Vec::new();
    for &kind in media {
        let (port, ssrc) = port_of(kind)?;
        let mut line = local_line(kind, port, proto, local.addr, offered_payloads(kind), ssrc);
        if let Some(key) = &local.key {
            line.crypto.push(CryptoAttribute {
                tag: 1,
                key: key.clone(),
                lifetime: None,
            });
        }
        lines.push(line);
    }
    Ok(SessionDescription {
        session_id: local.session_id,
        version: local.version,
        addr: local.addr,
        media: lines,
    })
}

/// rkms's re-offer in a negotiated session: `previous` (its last description) again, with the
/// same ports and SSRCs (`legs`: kind, port, SSRC of each running stream), the payload types
/// already agreed first, and the direction `receive` asks for per kind. Stopped lines stay
/// stopped.
pub(super) fn reoffer(
    previous: &SessionDescription,
    local: &Local,
    legs: &[(MediaKind, u16, u32)],
    receive: impl Fn(MediaKind) -> bool,
) -> SessionDescription {
    let media = previous
        .media
        .iter()
        .map(|line| {
            let Some(&(kind, port, ssrc)) = line
                .kind()
                .filter(|_| line.port != 0)
                .and_then(|kind| legs.iter().find(|l| l.0 == kind))
            else {
                return line.rejected();
            };
            let mut payloads = line.payloads.clone();
            for p in offered_payloads(kind) {
                if !payloads.iter().any(|q| q.codec == p.codec || q.pt == p.pt) {
                    payloads.push(p);
                }
            }
            let mut ours = local_line(kind, port, &line.proto, local.addr, payloads, ssrc);
            ours.rtcp_mux = line.rtcp_mux;
            ours.direction = if receive(kind) {
                Direction::SendRecv
            } else {
                Direction::SendOnly
            };
            if let Some(key) = &local.key {
                ours.crypto.push(CryptoAttribute {
                    tag: line.crypto.first().map_or(1, |c| c.tag),
                    key: key.clone(),
                    lifetime: None,
                });
            }
            ours
        })
        .collect();
    SessionDescription {
        session_id: local.session_id,
        version: local.version,
        addr: local.addr,
        media,
    }
}

/// rkms's answer to `offer`: the first audio and the first video line it can take are
/// accepted with the offerer's payload types (of codecs rkms forwards) and profile, every other
/// line is refused (port 0). `port_of` gives a kind's port and SSRC, `None` when that kind
/// cannot be added (a renegotiation). Fails when no line is accepted, saying why; a re-offer
/// (`renegotiation`) whose lines are all at port 0 is answered (every stream stops).
pub(super) fn answer(
    offer: &SessionDescription,
    local: &Local,
    renegotiation: bool,
    mut port_of: impl FnMut(MediaKind) -> Result<Option<(u16, u32)>, RtpError>,
) -> Result<SessionDescription, RtpError> {
    let mut lines = Vec::new();
    let mut refusals = Vec::new();
    let mut taken: Vec<MediaKind> = Vec::new();
    for line in &offer.media {
        let accepted = match acceptable(line, local.key.as_ref(), &taken) {
            Ok((kind, crypto)) => match port_of(kind)? {
                Some(port) => Ok((kind, crypto, port)),
                None => Err("rkms adds no media in a renegotiation".to_owned()),
            },
            Err(why) => Err(why),
        };
        match accepted {
            Ok((kind, crypto, (port, ssrc))) => {
                taken.push(kind);
                let mut ours = local_line(
                    kind,
                    port,
                    &line.proto,
                    local.addr,
                    line.payloads.clone(),
                    ssrc,
                );
                ours.rtcp_mux = line.rtcp_mux;
                ours.direction = line.direction.answer();
                ours.crypto.extend(crypto);
                lines.push(ours);
            }
            Err(why) => {
                refusals.push(format!("m={} refused: {why}", line.media));
                lines.push(line.rejected());
            }
        }
    }
    let all_stopped = offer.media.iter().all(|l| l.port == 0);
    if taken.is_empty() && !(renegotiation && all_stopped && !offer.media.is_empty()) {
        return Err(RtpError::Offer(if refusals.is_empty() {
            "the offer has no media".into()
        } else {
            refusals.join("; ")
        }));
    }
    Ok(SessionDescription {
        session_id: local.session_id,
        version: local.version,
        addr: local.addr,
        media: lines,
    })
}

/// Whether rkms can take an offered line; its kind and rkms's `a=crypto` answer if so.
fn acceptable(
    line: &MediaLine,
    key: Option<&MasterKey>,
    taken: &[MediaKind],
) -> Result<(MediaKind, Option<CryptoAttribute>), String> {
    let kind = line.kind().ok_or("only audio and video are taken")?;
    if line.port == 0 {
        return Err("the offerer disabled it".into());
    }
    if taken.contains(&kind) {
        return Err(format!("one {} line is taken", line.media));
    }
    if !line.known_protocol() {
        return Err(format!(
            "profile {} (RtpEndpoint speaks RTP/AVP, RTP/AVPF, RTP/SAVP, RTP/SAVPF)",
            line.proto
        ));
    }
    if line.payloads.is_empty() {
        return Err("none of its codecs is one rkms forwards".into());
    }
    let crypto = match (line.secure(), key) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err("plain RTP offered to an RtpEndpoint created with crypto".into());
        }
        (true, None) => {
            return Err("SRTP offered to an RtpEndpoint created without crypto".into());
        }
        (true, Some(key)) => {
            let offered = line
                .crypto
                .iter()
                .find(|c| c.key.suite == key.suite)
                .ok_or_else(|| format!("no a=crypto line of suite {}", key.suite.kurento_name()))?;
            Some(CryptoAttribute {
                tag: offered.tag,
                key: key.clone(),
                lifetime: None,
            })
        }
    };
    Ok((kind, crypto))
}

/// One media line both sides agreed on.
#[derive(Debug)]
pub(super) struct Agreed {
    pub kind: MediaKind,
    /// rkms's line.
    pub local: MediaLine,
    /// The remote's line.
    pub remote: MediaLine,
    /// The remote's SDES key and its lifetime, when encrypted.
    pub remote_key: Option<CryptoAttribute>,
}

/// The lines an offer and its answer agree on (same order, both ports set; none when every
/// line is refused); fails on an answer that does not match the offer.
pub(super) fn agreed(
    local: &SessionDescription,
    remote: &SessionDescription,
) -> Result<Vec<Agreed>, String> {
    if local.media.len() != remote.media.len() {
        return Err(format!(
            "{} m-lines answer {} offered",
            remote.media.len(),
            local.media.len()
        ));
    }
    let mut out = Vec::new();
    for (ours, theirs) in local.media.iter().zip(&remote.media) {
        if ours.port == 0 || theirs.port == 0 {
            continue;
        }
        let Some(kind) = ours.kind().filter(|k| Some(*k) == theirs.kind()) else {
            return Err(format!("m={} answered by m={}", ours.media, theirs.media));
        };
        if ours.secure() != theirs.secure() {
            return Err(format!(
                "m={} is {} on one side and {} on the other",
                ours.media, ours.proto, theirs.proto
            ));
        }
        let remote_key = match ours.crypto.first() {
            None => None,
            Some(mine) => Some(
                theirs
                    .crypto
                    .iter()
                    .find(|c| c.tag == mine.tag && c.key.suite == mine.key.suite)
                    .or_else(|| theirs.crypto.iter().find(|c| c.key.suite == mine.key.suite))
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "m={} has no a=crypto line of suite {}",
                            theirs.media,
                            mine.key.suite.kurento_name()
                        )
                    })?,
            ),
        };
        if theirs.payloads.is_empty() {
            return Err(format!("m={} has no codec rkms forwards", theirs.media));
        }
        out.push(Agreed {
            kind,
            local: ours.clone(),
            remote: theirs.clone(),
            remote_key,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elements::rtp::sdes::CryptoSuite;

    fn local(key: Option<&MasterKey>) -> Local {
        Local {
            addr: "127.0.0.1".parse().expect("ip"),
            session_id: 1,
            version: 1,
            key: key.cloned(),
        }
    }

    fn answer_new(
        offer: &SessionDescription,
        local: &Local,
    ) -> Result<SessionDescription, RtpError> {
        answer(offer, local, false, |kind| ports(kind).map(Some))
    }

    fn ports(kind: MediaKind) -> Result<(u16, u32), RtpError> {
        Ok(match kind {
            MediaKind::Audio => (30000, 11),
            _ => (30002, 22),
        })
    }

    #[test]
    fn the_offer_lists_every_forwarded_codec_per_media() {
        let o = offer(&local(None), &[MediaKind::Audio, MediaKind::Video], ports).expect("offer");
        let text = o.write();
        assert!(
            text.contains("m=audio 30000 RTP/AVPF 111 0 8\r\n"),
            "{text}"
        );
        assert!(
            text.contains("m=video 30002 RTP/AVPF 96 97 98 99\r\n"),
            "{text}"
        );
        assert!(text.contains("a=rtcp:30003\r\n"));
        assert!(text.contains("a=fmtp:97 level-asymmetry-allowed=1;packetization-mode=1"));
        let back = SessionDescription::parse(&text).expect("parses");
        assert_eq!(back.media[1].payloads.len(), 4);
    }

    #[test]
    fn an_answer_keeps_the_offerers_payload_types_and_refuses_the_rest() {
        let remote = SessionDescription::parse(
            "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video 5004 RTP/AVP 100 101\r\na=rtpmap:100 H264/90000\r\n\
             a=fmtp:100 packetization-mode=1\r\na=rtpmap:101 theora/90000\r\na=sendonly\r\n\
             m=video 5008 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
             m=application 5010 UDP/DTLS/SCTP webrtc-datachannel\r\n",
        )
        .expect("parses");
        let a = answer_new(&remote, &local(None)).expect("answer");
        let first = &a.media[0];
        assert_eq!((first.port, first.proto.as_str()), (30002, "RTP/AVP"));
        assert_eq!(first.payloads, remote.media[0].payloads[..1]);
        assert_eq!(first.direction, Direction::RecvOnly);
        assert_eq!(a.media[1].port, 0);
        assert_eq!(a.media[2].port, 0);
        let lines = agreed(&a, &remote).expect("agreed");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].remote.rtp_addr(), "127.0.0.1:5004".parse().ok());
    }

    #[test]
    fn nothing_usable_is_a_process_offer_error() {
        let remote = SessionDescription::parse(
            "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n",
        )
        .expect("parses");
        let Err(RtpError::Offer(why)) = answer_new(&remote, &local(None)) else {
            panic!("refused");
        };
        assert!(why.contains("UDP/TLS/RTP/SAVPF"), "{why}");
    }

    #[test]
    fn sdes_answers_take_the_offered_suite_and_give_rkms_key() {
        let mine = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_80);
        let theirs = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_80);
        let attr = |tag, key: &MasterKey| CryptoAttribute {
            tag,
            key: key.clone(),
            lifetime: None,
        };
        let text = format!(
            "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 5004 RTP/SAVP 0\r\na=crypto:{}\r\na=crypto:{}\r\n",
            attr(1, &MasterKey::generate(CryptoSuite::Aes256CmHmacSha1_80)).value(),
            attr(2, &theirs).value()
        );
        let remote = SessionDescription::parse(&text).expect("parses");
        let a = answer_new(&remote, &local(Some(&mine))).expect("answer");
        assert_eq!(a.media[0].crypto, [attr(2, &mine)]);
        let lines = agreed(&a, &remote).expect("agreed");
        assert_eq!(lines[0].remote_key, Some(attr(2, &theirs)));

        // Plain RTP offered to an encrypted endpoint, and the other way round.
        let plain = SessionDescription::parse(
            "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 5004 RTP/AVP 0\r\n",
        )
        .expect("parses");
        assert!(answer_new(&plain, &local(Some(&mine))).is_err());
        assert!(answer_new(&remote, &local(None)).is_err());
    }

    #[test]
    fn answers_that_do_not_match_the_offer_are_refused() {
        let key = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_32);
        let ours = offer(&local(Some(&key)), &[MediaKind::Video], ports).expect("offer");
        let plain = SessionDescription::parse(
            "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video 5004 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
        )
        .expect("parses");
        assert!(agreed(&ours, &plain).unwrap_err().contains("RTP/SAVPF"));
        let two = SessionDescription::parse(
            "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video 5004 RTP/AVP 96\r\nm=audio 5006 RTP/AVP 0\r\n",
        )
        .expect("parses");
        assert!(agreed(&ours, &two).is_err());
        let plain_offer = offer(&local(None), &[MediaKind::Video], ports).expect("offer");
        let refused = SessionDescription::parse(
            "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=video 0 RTP/AVP 96\r\n",
        )
        .expect("parses");
        assert!(
            agreed(&plain_offer, &refused)
                .expect("all refused")
                .is_empty()
        );
        assert_eq!(agreed(&plain_offer, &plain).expect("ok").len(), 1);
    }

    #[test]
    fn a_re_offer_keeps_ports_agreed_payload_types_and_stopped_lines() {
        let remote = SessionDescription::parse(
            "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 0 RTP/AVP 0\r\n\
             m=video 5004 RTP/AVP 100\r\na=rtpmap:100 H264/90000\r\n\
             a=fmtp:100 packetization-mode=1\r\n",
        )
        .expect("parses");
        let first = answer_new(&remote, &local(None)).expect("answer");
        let next = Local {
            version: 2,
            ..local(None)
        };
        let again = reoffer(&first, &next, &[(MediaKind::Video, 30002, 22)], |_| false);
        assert_eq!((again.session_id, again.version), (1, 2));
        assert_eq!(again.media[0].port, 0, "a stopped line stays stopped");
        let video = &again.media[1];
        assert_eq!((video.port, video.proto.as_str()), (30002, "RTP/AVP"));
        assert_eq!(video.ssrc, Some(22));
        assert_eq!(video.direction, Direction::SendOnly, "video is not wanted");
        let pts: Vec<u8> = video.payloads.iter().map(|p| p.pt).collect();
        assert_eq!(pts, [100, 96, 98, 99], "H264 keeps its agreed type, first");
    }

    #[test]
    fn a_renegotiation_refuses_new_media_and_answers_stopped_streams() {
        let text = |audio: u16, video: u16| {
            format!(
                "v=0\r\no=- 5 6 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {audio} RTP/AVP 0\r\nm=video {video} RTP/AVP 96\r\n\
                 a=rtpmap:96 VP8/90000\r\n"
            )
        };
        // Only video runs: a new audio line is refused, video keeps its port.
        let only_video = |kind| Ok((kind == MediaKind::Video).then_some((30002, 22)));
        let offer = SessionDescription::parse(&text(5000, 5004)).expect("parses");
        let a = answer(&offer, &local(None), true, only_video).expect("answer");
        assert_eq!((a.media[0].port, a.media[1].port), (0, 30002));
        // Every line at port 0: every stream stops, which is no error in a renegotiation.
        let none = SessionDescription::parse(&text(0, 0)).expect("parses");
        let a = answer(&none, &local(None), true, only_video).expect("answer");
        assert!(a.media.iter().all(|m| m.port == 0));
        assert!(agreed(&a, &none).expect("agreed").is_empty());
        assert!(answer(&none, &local(None), false, only_video).is_err());
        // Nothing rkms can take in what is offered: refused, as a first offer is.
        let audio_only = SessionDescription::parse(&text(5000, 0)).expect("parses");
        assert!(matches!(
            answer(&audio_only, &local(None), true, only_video),
            Err(RtpError::Offer(_))
        ));
    }
}
