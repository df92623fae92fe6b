//! RtpEndpoint's media side: plain RTP (or SRTP keyed with SDES) to one remote peer — a SIP
//! gateway, ffmpeg, GStreamer — negotiated with classic SDP offer/answer.
//!
//! The element binds one RTP/RTCP port pair (even, odd) per media when it makes its offer or
//! answer ([`sdp`], [`negotiate`]); once both descriptions are known it starts its media
//! threads ([`io`]), which meet the pipeline's router through the element's [`ElementPort`]:
//! inbound RTP is routed like a WebRTC peer's, routed packets go to the remote under its payload
//! types. Nothing is transcoded: a codec the remote did not negotiate is not sent to it.

mod io;
mod negotiate;
mod rtcp;
pub mod sdes;
pub mod sdp;

use std::net::{IpAddr, SocketAddr, UdpSocket};

use parking_lot::Mutex;

use super::ElementEvents;
use crate::graph::MediaKind;
use crate::webrtc::{ElementPort, EndpointStats, WebRtcError};

use negotiate::Local;
use sdes::MasterKey;
use sdp::SessionDescription;

/// Why an RtpEndpoint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RtpError {
    /// The SDP text is not SDP.
    #[error("invalid SDP: {0}")]
    Sdp(String),
    /// A remote offer rkms cannot answer.
    #[error("cannot answer the offer: {0}")]
    Offer(String),
    /// An answer that does not fit rkms's offer.
    #[error("cannot use the answer: {0}")]
    Answer(String),
    /// No offer was asked for (offerToReceiveAudio and offerToReceiveVideo both false).
    #[error("nothing to offer: {0}")]
    NothingToOffer(String),
    /// Negotiation already completed.
    #[error("the endpoint is already negotiated")]
    AlreadyNegotiated,
    /// `processAnswer` before `generateOffer`.
    #[error("no offer was generated")]
    NotOfferGenerated,
    /// A second `processAnswer`.
    #[error("an answer was already processed")]
    AnswerAlreadyProcessed,
    /// An SDES key that does not fit its suite.
    #[error("bad SDES key: {0}")]
    BadKey(String),
    /// Sockets or threads could not be set up.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The element's loop is gone.
    #[error(transparent)]
    Loop(#[from] WebRtcError),
}

/// Where an RtpEndpoint binds its ports and what address its SDP announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpAddressing {
    /// Address the sockets bind to.
    pub bind: IpAddr,
    /// Address written in `c=` and `o=`.
    pub advertised: IpAddr,
    /// Lowest port (0 with `port_max` 0: any free pair).
    pub port_min: u16,
    /// Highest port.
    pub port_max: u16,
}

/// Binds an RTP socket on an even port and its RTCP socket on the next one.
fn bind_pair(a: &RtpAddressing) -> Result<(UdpSocket, UdpSocket), RtpError> {
    let try_pair = |rtp: UdpSocket| -> Option<(UdpSocket, UdpSocket)> {
        let port = rtp.local_addr().ok()?.port();
        if port % 2 != 0 {
            return None;
        }
        let rtcp = UdpSocket::bind(SocketAddr::new(a.bind, port.checked_add(1)?)).ok()?;
        Some((rtp, rtcp))
    };
    if a.port_min == 0 && a.port_max == 0 {
        // The kernel's pick, until it is even and its neighbour free.
        for _ in 0..64 {
            if let Some(pair) = try_pair(UdpSocket::bind(SocketAddr::new(a.bind, 0))?) {
                return Ok(pair);
            }
        }
    } else {
        let first = a.port_min.next_multiple_of(2);
        for port in (first..a.port_max).step_by(2) {
            if let Some(pair) = UdpSocket::bind(SocketAddr::new(a.bind, port))
                .ok()
                .and_then(try_pair)
            {
                return Ok(pair);
            }
        }
    }
    Err(RtpError::Io(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!(
            "no free RTP/RTCP port pair on {} in {}-{}",
            a.bind, a.port_min, a.port_max
        ),
    )))
}

/// One media's sockets and SSRC.
struct Ports {
    kind: MediaKind,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    ssrc: u32,
}

#[derive(Default)]
struct State {
    /// Until the media threads take it.
    port: Option<ElementPort>,
    ports: Vec<Ports>,
    local: Option<SessionDescription>,
    remote: Option<SessionDescription>,
    version: u64,
    running: Option<io::Running>,
}

/// An RtpEndpoint. Dropping it stops its threads and takes it off its loop.
pub struct RtpElement {
    addressing: RtpAddressing,
    /// SDES key rkms encrypts with; `None` for plain RTP.
    key: Option<MasterKey>,
    events: ElementEvents,
    session_id: u64,
    state: Mutex<State>,
}

impl RtpElement {
    /// An endpoint on `port`'s loop, binding as `addressing` says, encrypting with `key`.
    pub fn new(
        port: ElementPort,
        addressing: RtpAddressing,
        key: Option<MasterKey>,
        events: ElementEvents,
    ) -> Self {
        Self {
            addressing,
            key,
            events,
            session_id: u64::from(crate::webrtc::random_u32()),
            state: Mutex::new(State {
                port: Some(port),
                ..State::default()
            }),
        }
    }

    fn local<'a>(&'a self, state: &mut State) -> Local<'a> {
        state.version += 1;
        Local {
            addr: self.addressing.advertised,
            session_id: self.session_id,
            version: state.version,
            key: self.key.as_ref(),
        }
    }

    /// The port and SSRC of `kind`, binding its pair the first time.
    fn ports_of(&self, ports: &mut Vec<Ports>, kind: MediaKind) -> Result<(u16, u32), RtpError> {
        if let Some(p) = ports.iter().find(|p| p.kind == kind) {
            return Ok((p.rtp.local_addr()?.port(), p.ssrc));
        }
        let (rtp, rtcp) = bind_pair(&self.addressing)?;
        let port = rtp.local_addr()?.port();
        let ssrc = crate::webrtc::random_u32();
        ports.push(Ports {
            kind,
            rtp,
            rtcp,
            ssrc,
        });
        Ok((port, ssrc))
    }

    /// Makes an offer with a line for each wanted media.
    pub fn generate_offer(&self, audio: bool, video: bool) -> Result<String, RtpError> {
        let mut state = self.state.lock();
        if state.running.is_some() {
            return Err(RtpError::AlreadyNegotiated);
        }
        let media: Vec<MediaKind> = [(audio, MediaKind::Audio), (video, MediaKind::Video)]
            .into_iter()
            .filter_map(|(wanted, kind)| wanted.then_some(kind))
            .collect();
        if media.is_empty() {
            return Err(RtpError::NothingToOffer(
                "offerToReceiveAudio and offerToReceiveVideo are both false".into(),
            ));
        }
        let local = self.local(&mut state);
        let mut ports = std::mem::take(&mut state.ports);
        let offer = negotiate::offer(&local, &media, |kind| self.ports_of(&mut ports, kind));
        state.ports = ports;
        let offer = offer?;
        let text = offer.write();
        state.local = Some(offer);
        Ok(text)
    }

    /// Answers a remote offer and starts the media.
    pub fn process_offer(&self, text: &str) -> Result<String, RtpError> {
        let mut state = self.state.lock();
        if state.running.is_some() || state.local.is_some() {
            return Err(RtpError::AlreadyNegotiated);
        }
        let remote = SessionDescription::parse(text)?;
        let local = self.local(&mut state);
        let mut ports = std::mem::take(&mut state.ports);
        let answer = negotiate::answer(&remote, &local, |kind| self.ports_of(&mut ports, kind));
        state.ports = ports;
        let answer = answer?;
        let agreed = negotiate::agreed(&answer, &remote).map_err(RtpError::Offer)?;
        self.start(&mut state, agreed)?;
        let text = answer.write();
        state.local = Some(answer);
        state.remote = Some(remote);
        Ok(text)
    }

    /// Applies the answer to rkms's offer and starts the media; returns the local description.
    pub fn process_answer(&self, text: &str) -> Result<String, RtpError> {
        let mut state = self.state.lock();
        if state.running.is_some() {
            return Err(RtpError::AnswerAlreadyProcessed);
        }
        let Some(local) = &state.local else {
            return Err(RtpError::NotOfferGenerated);
        };
        let remote = SessionDescription::parse(text)?;
        let agreed = negotiate::agreed(local, &remote).map_err(RtpError::Answer)?;
        let text = local.write();
        self.start(&mut state, agreed)?;
        state.remote = Some(remote);
        Ok(text)
    }

    /// The local description, once there is one.
    pub fn local_description(&self) -> Option<String> {
        self.state
            .lock()
            .local
            .as_ref()
            .map(SessionDescription::write)
    }

    /// The remote description, once there is one.
    pub fn remote_description(&self) -> Option<String> {
        self.state
            .lock()
            .remote
            .as_ref()
            .map(SessionDescription::write)
    }

    /// The statistics of the streams received and sent, once negotiated.
    pub fn stats(&self) -> Option<EndpointStats> {
        self.state.lock().running.as_ref().map(io::Running::stats)
    }

    /// Starts the media threads on the agreed lines.
    fn start(&self, state: &mut State, agreed: Vec<negotiate::Agreed>) -> Result<(), RtpError> {
        let mut legs = Vec::new();
        for line in agreed {
            let Some(index) = state.ports.iter().position(|p| p.kind == line.kind) else {
                continue;
            };
            let ports = state.ports.swap_remove(index);
            let (Some(remote_rtp), Some(remote_rtcp)) =
                (line.remote.rtp_addr(), line.remote.rtcp_addr())
            else {
                continue;
            };
            let mux = line.local.rtcp_mux && line.remote.rtcp_mux;
            legs.push(io::Leg {
                kind: line.kind,
                rtp: ports.rtp,
                rtcp: ports.rtcp,
                remote_rtp,
                remote_rtcp: if mux { remote_rtp } else { remote_rtcp },
                mux,
                recv: line
                    .local
                    .payloads
                    .iter()
                    .map(|p| (p.pt, p.codec))
                    .collect(),
                send: if line.remote.direction.receives() {
                    line.remote
                        .payloads
                        .iter()
                        .map(|p| (p.codec, p.pt))
                        .collect()
                } else {
                    Vec::new()
                },
                ssrc: ports.ssrc,
                remote_ssrc: line.remote.ssrc,
                keys: self.key.clone().zip(line.remote_key),
            });
        }
        // Ports of refused lines are closed.
        state.ports.clear();
        let port = state.port.take().ok_or(RtpError::AlreadyNegotiated)?;
        state.running = Some(io::start(legs, port, self.events.clone())?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs_are_even_and_adjacent() {
        let a = RtpAddressing {
            bind: "127.0.0.1".parse().expect("ip"),
            advertised: "127.0.0.1".parse().expect("ip"),
            port_min: 0,
            port_max: 0,
        };
        let (rtp, rtcp) = bind_pair(&a).expect("pair");
        let port = rtp.local_addr().expect("addr").port();
        assert_eq!(port % 2, 0);
        assert_eq!(rtcp.local_addr().expect("addr").port(), port + 1);
        let ranged = RtpAddressing {
            port_min: port + 1,
            port_max: port + 5,
            ..a
        };
        let (next, _) = bind_pair(&ranged).expect("pair in range");
        let next = next.local_addr().expect("addr").port();
        assert!(
            next % 2 == 0 && (port + 2..port + 5).contains(&next),
            "{next}"
        );
    }
}
