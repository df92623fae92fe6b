//! The SDP an RtpEndpoint reads and writes: classic RTP m-lines (`RTP/AVP`, `RTP/AVPF`, and
//! with SDES `RTP/SAVP`, `RTP/SAVPF`), one per media, each on its own port with RTCP on the
//! next one (or on the same one with `a=rtcp-mux`). No ICE, no DTLS, no BUNDLE.
//!
//! Parsing goes through `rtc`'s SDP parser (so malformed text is refused the same way as for
//! WebRTC endpoints); writing is plain text.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use crate::graph::MediaKind;
use crate::webrtc::codecs::CodecId;

use super::RtpError;
use super::sdes::CryptoAttribute;

/// The profiles an RtpEndpoint speaks.
const PROTOCOLS: [&str; 4] = ["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"];

/// An m-line's `a=sendrecv` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (also when absent).
    SendRecv,
    /// Its writer only sends.
    SendOnly,
    /// Its writer only receives.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction that answers this one.
    pub fn answer(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether the line's writer takes media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// A payload type of a codec rkms forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The payload type number.
    pub pt: u8,
    /// The codec.
    pub codec: CodecId,
    /// The `rtpmap` value after the number (`VP8/90000`).
    pub rtpmap: String,
    /// The `fmtp` value after the number, if any.
    pub fmtp: Option<String>,
}

impl Payload {
    /// A payload type as rkms offers it.
    pub fn new(pt: u8, codec: CodecId, rtpmap: &str, fmtp: Option<&str>) -> Self {
        Self {
            pt,
            codec,
            rtpmap: rtpmap.to_owned(),
            fmtp: fmtp.map(str::to_owned),
        }
    }
}

/// One m-section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// The media name (`audio`, `video`, or anything else, which rkms rejects).
    pub media: String,
    /// RTP port; 0 for a rejected line.
    pub port: u16,
    /// Transport profile.
    pub proto: String,
    /// The payload types as listed on the m-line.
    pub formats: Vec<String>,
    /// Connection address (the line's own, else the session's).
    pub addr: Option<IpAddr>,
    /// `a=rtcp` port and address, if given.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// Direction.
    pub direction: Direction,
    /// Payload types of codecs rkms forwards, in the line's order.
    pub payloads: Vec<Payload>,
    /// `a=crypto` attributes rkms can use.
    pub crypto: Vec<CryptoAttribute>,
    /// The first `a=ssrc` of the line.
    pub ssrc: Option<u32>,
}

impl MediaLine {
    /// Audio or video; `None` for other media.
    pub fn kind(&self) -> Option<MediaKind> {
        match self.media.as_str() {
            "audio" => Some(MediaKind::Audio),
            "video" => Some(MediaKind::Video),
            _ => None,
        }
    }

    /// Whether the profile is one rkms speaks.
    pub fn known_protocol(&self) -> bool {
        PROTOCOLS.contains(&self.proto.as_str())
    }

    /// Whether the profile is SRTP.
    pub fn secure(&self) -> bool {
        self.proto.contains("SAVP")
    }

    /// Whether the profile carries RTCP feedback (AVPF).
    fn feedback(&self) -> bool {
        self.proto.ends_with('F')
    }

    /// Where RTP to this line's writer goes.
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        (self.port != 0).then_some(SocketAddr::new(self.addr?, self.port))
    }

    /// Where RTCP to this line's writer goes: `a=rtcp`, else the next port.
    pub fn rtcp_addr(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_addr()?;
        Some(match self.rtcp {
            Some((port, addr)) => SocketAddr::new(addr.unwrap_or(rtp.ip()), port),
            None => SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?),
        })
    }

    /// The answer's line refusing this one.
    pub fn rejected(&self) -> MediaLine {
        MediaLine {
            port: 0,
            payloads: Vec::new(),
            crypto: Vec::new(),
            rtcp: None,
            rtcp_mux: false,
            ssrc: None,
            direction: Direction::Inactive,
            ..self.clone()
        }
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` session version.
    pub version: u64,
    /// Origin and session-level connection address.
    pub addr: IpAddr,
    /// The m-sections in order.
    pub media: Vec<MediaLine>,
}

fn ip_of(info: &rtc::sdp::description::common::ConnectionInformation) -> Option<IpAddr> {
    info.address
        .as_ref()?
        .address
        .split('/')
        .next()?
        .parse()
        .ok()
}

impl SessionDescription {
    /// Reads an SDP; refuses what is not SDP at all or names no usable connection address.
    pub fn parse(text: &str) -> Result<Self, RtpError> {
        use rtc::sdp::description::session::SessionDescription as Parsed;
        let parsed = Parsed::unmarshal(&mut Cursor::new(text.as_bytes()))
            .map_err(|e| RtpError::Sdp(e.to_string()))?;
        let session_addr = parsed.connection_information.as_ref().and_then(ip_of);
        let origin_addr = parsed.origin.unicast_address.parse().ok();
        let mut media = Vec::new();
        for m in &parsed.media_descriptions {
            let mut line = MediaLine {
                media: m.media_name.media.clone(),
                port: u16::try_from(m.media_name.port.value)
                    .map_err(|_| RtpError::Sdp(format!("bad port {}", m.media_name.port.value)))?,
                proto: m.media_name.protos.join("/"),
                formats: m.media_name.formats.clone(),
                addr: m
                    .connection_information
                    .as_ref()
                    .and_then(ip_of)
                    .or(session_addr),
                rtcp: None,
                rtcp_mux: false,
                direction: Direction::SendRecv,
                payloads: Vec::new(),
                crypto: Vec::new(),
                ssrc: None,
            };
            let mut rtpmaps: Vec<(u8, &str)> = Vec::new();
            let mut fmtps: Vec<(u8, &str)> = Vec::new();
            for a in &m.attributes {
                let value = a.value.as_deref().unwrap_or_default();
                match a.key.as_str() {
                    "rtpmap" | "fmtp" => {
                        let (pt, rest) = value.split_once(' ').unwrap_or((value, ""));
                        if let Ok(pt) = pt.parse::<u8>() {
                            let list = if a.key == "rtpmap" {
                                &mut rtpmaps
                            } else {
                                &mut fmtps
                            };
                            list.push((pt, rest.trim()));
                        }
                    }
                    "rtcp" => line.rtcp = Some(parse_rtcp(value)?),
                    "rtcp-mux" => line.rtcp_mux = true,
                    "sendrecv" => line.direction = Direction::SendRecv,
                    "sendonly" => line.direction = Direction::SendOnly,
                    "recvonly" => line.direction = Direction::RecvOnly,
                    "inactive" => line.direction = Direction::Inactive,
                    "crypto" => line.crypto.extend(CryptoAttribute::parse(value)?),
                    "ssrc" if line.ssrc.is_none() => {
                        line.ssrc = value.split(' ').next().and_then(|s| s.parse().ok());
                    }
                    _ => {}
                }
            }
            for format in &line.formats {
                let Ok(pt) = format.parse::<u8>() else {
                    continue;
                };
                let fmtp = fmtps.iter().find(|(p, _)| *p == pt).map(|(_, f)| *f);
                let rtpmap = match rtpmaps.iter().find(|(p, _)| *p == pt) {
                    Some((_, map)) => *map,
                    // Static payload types need no rtpmap (RFC 3551).
                    None => match pt {
                        0 => "PCMU/8000",
                        8 => "PCMA/8000",
                        _ => continue,
                    },
                };
                let name = rtpmap.split('/').next().unwrap_or_default();
                if let Some(codec) = CodecId::from_name(name, fmtp.unwrap_or_default()) {
                    line.payloads.push(Payload::new(pt, codec, rtpmap, fmtp));
                }
            }
            media.push(line);
        }
        let addr = session_addr
            .or(origin_addr)
            .or_else(|| media.iter().find_map(|m| m.addr))
            .ok_or_else(|| RtpError::Sdp("no connection address (c=)".into()))?;
        for line in &mut media {
            line.addr.get_or_insert(addr);
        }
        Ok(Self {
            session_id: parsed.origin.session_id,
            version: parsed.origin.session_version,
            addr,
            media,
        })
    }

    /// The SDP text.
    pub fn write(&self) -> String {
        let family = if self.addr.is_ipv6() { "IP6" } else { "IP4" };
        let mut s = String::new();
        let _ = write!(
            s,
            "v=0\r\no=- {} {} IN {family} {addr}\r\ns=rkms\r\nc=IN {family} {addr}\r\nt=0 0\r\n",
            self.session_id,
            self.version,
            addr = self.addr
        );
        for m in &self.media {
            let _ = write!(s, "m={} {} {}", m.media, m.port, m.proto);
            if m.port == 0 {
                for f in &m.formats {
                    let _ = write!(s, " {f}");
                }
                s.push_str("\r\n");
                continue;
            }
            for p in &m.payloads {
                let _ = write!(s, " {}", p.pt);
            }
            s.push_str("\r\n");
            for p in &m.payloads {
                let _ = write!(s, "a=rtpmap:{} {}\r\n", p.pt, p.rtpmap);
                if let Some(fmtp) = &p.fmtp {
                    let _ = write!(s, "a=fmtp:{} {fmtp}\r\n", p.pt);
                }
                if m.feedback() && m.kind() == Some(MediaKind::Video) {
                    let _ = write!(
                        s,
                        "a=rtcp-fb:{} nack pli\r\na=rtcp-fb:{} ccm fir\r\n",
                        p.pt, p.pt
                    );
                }
            }
            if let Some((port, _)) = m.rtcp {
                let _ = write!(s, "a=rtcp:{port}\r\n");
            }
            if m.rtcp_mux {
                s.push_str("a=rtcp-mux\r\n");
            }
            for c in &m.crypto {
                let _ = write!(s, "a=crypto:{}\r\n", c.value());
            }
            let _ = write!(s, "a={}\r\n", m.direction.attribute());
            if let Some(ssrc) = m.ssrc {
                let _ = write!(s, "a=ssrc:{ssrc} cname:rkms\r\n");
            }
        }
        s
    }
}

/// `a=rtcp:PORT [IN IP4 ADDR]`.
fn parse_rtcp(value: &str) -> Result<(u16, Option<IpAddr>), RtpError> {
    let mut fields = value.split_ascii_whitespace();
    let port = fields
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| RtpError::Sdp(format!("bad a=rtcp '{value}'")))?;
    let addr = fields.nth(2).and_then(|a| a.parse().ok());
    Ok((port, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elements::rtp::sdes::{CryptoSuite, MasterKey};

    /// What `ffmpeg -f rtp` writes with `-sdp_file` for VP8 video and G.711 audio.
    const FFMPEG: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\na=tool:libavformat 59.27.100\r\nm=video 5004 RTP/AVP 96\r\n\
        a=rtpmap:96 VP8/90000\r\nm=audio 5006 RTP/AVP 0\r\n";

    #[test]
    fn reads_ffmpeg_sdp_with_static_payload_types() {
        let d = SessionDescription::parse(FFMPEG).expect("parses");
        assert_eq!(d.addr, "127.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(d.media.len(), 2);
        let video = &d.media[0];
        assert_eq!(video.kind(), Some(MediaKind::Video));
        assert!(video.known_protocol() && !video.secure());
        assert_eq!(
            video.payloads,
            [Payload::new(96, CodecId::Vp8, "VP8/90000", None)]
        );
        assert_eq!(video.rtp_addr(), "127.0.0.1:5004".parse().ok());
        assert_eq!(video.rtcp_addr(), "127.0.0.1:5005".parse().ok());
        assert_eq!(video.direction, Direction::SendRecv);
        assert_eq!(d.media[1].payloads[0].codec, CodecId::Pcmu);
    }

    #[test]
    fn reads_rtcp_attributes_directions_and_h264_modes() {
        let text = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=video 4000 RTP/SAVPF 97 98 100\r\nc=IN IP4 10.0.0.2\r\n\
            a=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
            a=rtpmap:98 H264/90000\r\na=rtpmap:100 red/90000\r\n\
            a=rtcp:4001 IN IP4 10.0.0.3\r\na=rtcp-mux\r\na=recvonly\r\n\
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0\r\n\
            a=ssrc:1234 cname:x\r\n";
        let d = SessionDescription::parse(text).expect("parses");
        let m = &d.media[0];
        assert!(m.secure());
        assert_eq!(m.addr, "10.0.0.2".parse().ok());
        let codecs: Vec<CodecId> = m.payloads.iter().map(|p| p.codec).collect();
        assert_eq!(
            codecs,
            [CodecId::H264NonInterleaved, CodecId::H264SingleNal]
        );
        assert_eq!(m.rtcp_addr(), "10.0.0.3:4001".parse().ok());
        assert!(m.rtcp_mux);
        assert_eq!(m.direction, Direction::RecvOnly);
        assert_eq!(m.crypto[0].tag, 2);
        assert_eq!(m.ssrc, Some(1234));
    }

    #[test]
    fn refuses_what_is_not_sdp() {
        for bad in [
            "",
            "hello",
            "v=0\r\nm=video 1 RTP/AVP 96\r\n",
            "v=0\r\no=- 0 0 IN IP4 x\r\ns=-\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\n",
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 99999 RTP/AVP 96\r\n",
        ] {
            assert!(
                matches!(SessionDescription::parse(bad), Err(RtpError::Sdp(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn what_it_writes_reads_back() {
        let key = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_80);
        let d = SessionDescription {
            session_id: 7,
            version: 1,
            addr: "127.0.0.1".parse().expect("ip"),
            media: vec![
                MediaLine {
                    media: "video".into(),
                    port: 40000,
                    proto: "RTP/SAVPF".into(),
                    formats: vec!["96".into()],
                    addr: "127.0.0.1".parse().ok(),
                    rtcp: Some((40001, None)),
                    rtcp_mux: true,
                    direction: Direction::SendRecv,
                    payloads: vec![Payload::new(96, CodecId::Vp8, "VP8/90000", None)],
                    crypto: vec![CryptoAttribute {
                        tag: 1,
                        key,
                        lifetime: Some(1 << 20),
                    }],
                    ssrc: Some(99),
                },
                MediaLine {
                    media: "application".into(),
                    port: 0,
                    proto: "UDP/DTLS/SCTP".into(),
                    formats: vec!["webrtc-datachannel".into()],
                    addr: "127.0.0.1".parse().ok(),
                    rtcp: None,
                    rtcp_mux: false,
                    direction: Direction::Inactive,
                    payloads: vec![],
                    crypto: vec![],
                    ssrc: None,
                },
            ],
        };
        let text = d.write();
        assert!(text.contains("a=rtcp-fb:96 ccm fir\r\n"), "{text}");
        assert!(text.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
        let mut back = SessionDescription::parse(&text).expect("parses");
        // A rejected line's direction is not written.
        back.media[1].direction = Direction::Inactive;
        assert_eq!(back, d);
    }
}
