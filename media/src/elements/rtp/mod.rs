//! RtpEndpoint's media side: plain RTP (or SRTP keyed with SDES) to one remote peer — a SIP
//! gateway, ffmpeg, GStreamer — negotiated with classic SDP offer/answer.
//!
//! The element binds one RTP/RTCP port pair (even, odd) per media when it makes its offer or
//! answer ([`sdp`], [`negotiate`]); once both descriptions are known it starts its media
//! threads ([`io`]), which meet the pipeline's router through the element's [`ElementPort`]:
//! inbound RTP is routed like a WebRTC peer's, routed packets go to the remote under its payload
//! types. Nothing is transcoded: a codec the remote did not negotiate is not sent to it.
//!
//! Once negotiated it negotiates again as SIP re-INVITEs need (RFC 3264 §8): a remote re-offer
//! (hold, resume, a moved address, a new codec order, a new SDES key) or rkms's own re-offer
//! keeps its ports, SSRCs and `o=` session id (the version goes up by one per description),
//! and the running media threads take the changes ([`io::LegUpdate`]).
//!
//! rkms's own SDES key is the `crypto` parameter's until it wears out: the first description
//! made after it reached its soft limit carries a fresh random key of the same suite.

mod io;
mod negotiate;
mod rtcp;
pub mod sdes;
pub mod sdp;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

use parking_lot::Mutex;

use super::ElementEvents;
use crate::graph::MediaKind;
use crate::webrtc::{ElementPort, EndpointStats, WebRtcError};

use negotiate::{Agreed, Local};
use sdes::{CryptoAttribute, KeyUsage, MasterKey};
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
    /// A remote offer while rkms's first offer waits for its answer (Kurento's answer to it).
    #[error("the endpoint is already negotiated")]
    AlreadyNegotiated,
    /// A remote offer while rkms's own re-offer waits for its answer (glare).
    #[error("rkms's offer is waiting for its answer; process it (or a new offer of rkms) first")]
    OfferPending,
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

/// One media's sockets and SSRC, until the media threads take them.
struct Ports {
    kind: MediaKind,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    ssrc: u32,
}

/// One stream the media threads run.
struct Stream {
    kind: MediaKind,
    port: u16,
    ssrc: u32,
    /// The count of rkms's key its threads encrypt with.
    local_usage: Option<Arc<KeyUsage>>,
    /// The remote's key they decrypt with, and its count.
    remote_key: Option<(CryptoAttribute, Arc<KeyUsage>)>,
}

/// rkms's SDES key and its count, shared by every stream it encrypts.
#[derive(Clone)]
struct OwnKey {
    key: MasterKey,
    usage: Arc<KeyUsage>,
}

impl OwnKey {
    fn new(key: MasterKey) -> Self {
        Self {
            key,
            usage: Arc::new(KeyUsage::new(None)),
        }
    }
}

#[derive(Default)]
struct State {
    /// Until the media threads take it.
    port: Option<ElementPort>,
    ports: Vec<Ports>,
    /// Running streams, once negotiated.
    streams: Vec<Stream>,
    /// SDES key rkms announces; `None` for plain RTP.
    key: Option<OwnKey>,
    /// rkms's last description (an offer waiting for its answer when `offer_pending`).
    local: Option<SessionDescription>,
    remote: Option<SessionDescription>,
    offer_pending: bool,
    version: u64,
    running: Option<io::Running>,
}

/// An RtpEndpoint. Dropping it stops its threads and takes it off its loop.
pub struct RtpElement {
    addressing: RtpAddressing,
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
            events,
            session_id: u64::from(crate::webrtc::random_u32()),
            state: Mutex::new(State {
                port: Some(port),
                key: key.map(OwnKey::new),
                ..State::default()
            }),
        }
    }

    /// The next description's origin and key: the version after the last one, and a fresh key
    /// when rkms's has worn out. `commit` makes them the state's once the description stands.
    fn next_local(&self, state: &State) -> (Local, Option<OwnKey>) {
        let key = state.key.as_ref().map(|own| {
            if own.usage.worn() {
                OwnKey::new(MasterKey::generate(own.key.suite))
            } else {
                own.clone()
            }
        });
        let local = Local {
            addr: self.addressing.advertised,
            session_id: self.session_id,
            version: state.version + 1,
            key: key.as_ref().map(|k| k.key.clone()),
        };
        (local, key)
    }

    fn commit(state: &mut State, local: &Local, key: Option<OwnKey>) {
        state.version = local.version;
        state.key = key;
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

    /// Makes an offer with a line for each wanted media. Once negotiated, a re-offer of the
    /// running session: the same lines and ports, each `sendrecv` or, when rkms does not want
    /// to receive that kind, `sendonly`.
    pub fn generate_offer(&self, audio: bool, video: bool) -> Result<String, RtpError> {
        let mut state = self.state.lock();
        if !audio && !video {
            return Err(RtpError::NothingToOffer(
                "offerToReceiveAudio and offerToReceiveVideo are both false".into(),
            ));
        }
        let (local, key) = self.next_local(&state);
        let offer = match (&state.running, &state.local) {
            (Some(_), Some(previous)) => {
                let legs: Vec<(MediaKind, u16, u32)> = state
                    .streams
                    .iter()
                    .map(|s| (s.kind, s.port, s.ssrc))
                    .collect();
                negotiate::reoffer(previous, &local, &legs, |kind| match kind {
                    MediaKind::Audio => audio,
                    _ => video,
                })
            }
            _ => {
                let media: Vec<MediaKind> = [(audio, MediaKind::Audio), (video, MediaKind::Video)]
                    .into_iter()
                    .filter_map(|(wanted, kind)| wanted.then_some(kind))
                    .collect();
                let mut ports = std::mem::take(&mut state.ports);
                let offer =
                    negotiate::offer(&local, &media, |kind| self.ports_of(&mut ports, kind));
                state.ports = ports;
                offer?
            }
        };
        Self::commit(&mut state, &local, key);
        let text = offer.write();
        state.local = Some(offer);
        state.offer_pending = true;
        Ok(text)
    }

    /// Answers a remote offer and starts the media; once negotiated, answers the remote's
    /// re-offer and applies it to the running media.
    pub fn process_offer(&self, text: &str) -> Result<String, RtpError> {
        let mut state = self.state.lock();
        if state.running.is_some() {
            if state.offer_pending {
                return Err(RtpError::OfferPending);
            }
        } else if state.local.is_some() {
            return Err(RtpError::AlreadyNegotiated);
        }
        let remote = SessionDescription::parse(text)?;
        let (local, key) = self.next_local(&state);
        let answer = if state.running.is_some() {
            let streams = &state.streams;
            negotiate::answer(&remote, &local, true, |kind| {
                Ok(streams
                    .iter()
                    .find(|s| s.kind == kind)
                    .map(|s| (s.port, s.ssrc)))
            })?
        } else {
            let mut ports = std::mem::take(&mut state.ports);
            let answer = negotiate::answer(&remote, &local, false, |kind| {
                self.ports_of(&mut ports, kind).map(Some)
            });
            state.ports = ports;
            answer?
        };
        let agreed = negotiate::agreed(&answer, &remote).map_err(RtpError::Offer)?;
        self.apply(&mut state, &key, agreed)?;
        Self::commit(&mut state, &local, key);
        let text = answer.write();
        state.local = Some(answer);
        state.remote = Some(remote);
        Ok(text)
    }

    /// Applies the answer to rkms's offer and starts (or updates) the media; returns the local
    /// description.
    pub fn process_answer(&self, text: &str) -> Result<String, RtpError> {
        let mut state = self.state.lock();
        if !state.offer_pending {
            return Err(if state.running.is_some() {
                RtpError::AnswerAlreadyProcessed
            } else {
                RtpError::NotOfferGenerated
            });
        }
        let Some(local) = &state.local else {
            return Err(RtpError::NotOfferGenerated);
        };
        let remote = SessionDescription::parse(text)?;
        let agreed = negotiate::agreed(local, &remote).map_err(RtpError::Answer)?;
        let text = local.write();
        let key = state.key.clone();
        self.apply(&mut state, &key, agreed)?;
        state.remote = Some(remote);
        state.offer_pending = false;
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

    /// Starts the media threads on the agreed lines, or updates the running ones (`key`: rkms's
    /// key in the description that agreed them).
    fn apply(
        &self,
        state: &mut State,
        key: &Option<OwnKey>,
        agreed: Vec<Agreed>,
    ) -> Result<(), RtpError> {
        if let Some(running) = &state.running {
            running.update(renegotiated(&mut state.streams, key, &agreed)?);
            return Ok(());
        }
        if agreed.is_empty() {
            return Err(RtpError::Answer("no media line was accepted".into()));
        }
        let mut legs = Vec::new();
        let mut streams: Vec<Stream> = Vec::new();
        for line in agreed {
            let Some(index) = state.ports.iter().position(|p| p.kind == line.kind) else {
                continue;
            };
            let ports = state.ports.swap_remove(index);
            let Some(params) = leg_params(&line) else {
                continue;
            };
            let mut stream = Stream {
                kind: line.kind,
                port: ports.rtp.local_addr()?.port(),
                ssrc: ports.ssrc,
                local_usage: None,
                remote_key: None,
            };
            let keys = match (key, line.remote_key) {
                (Some(own), Some(theirs)) => Some((
                    stream.use_local_key(own)?,
                    stream.use_remote_key(&streams, theirs)?,
                )),
                _ => None,
            };
            legs.push(io::Leg {
                kind: line.kind,
                rtp: ports.rtp,
                rtcp: ports.rtcp,
                ssrc: ports.ssrc,
                params,
                keys,
            });
            streams.push(stream);
        }
        // Ports of refused lines are closed.
        state.ports.clear();
        let port = state.port.take().ok_or(RtpError::AlreadyNegotiated)?;
        state.running = Some(io::start(legs, port, self.events.clone())?);
        state.streams = streams;
        Ok(())
    }
}

/// The running streams' updates for a renegotiation: a stream without an agreed line stops, the
/// others take the line's addresses, payload types and direction, and the keys that changed (a
/// new SRTP context, counted from zero). The streams record the keys in use only when all
/// updates could be made.
fn renegotiated(
    streams: &mut [Stream],
    key: &Option<OwnKey>,
    agreed: &[Agreed],
) -> Result<Vec<io::LegUpdate>, RtpError> {
    let mut next: Vec<Stream> = Vec::new();
    let mut updates = Vec::new();
    for stream in streams.iter() {
        let mut now = Stream {
            local_usage: stream.local_usage.clone(),
            remote_key: stream.remote_key.clone(),
            ..*stream
        };
        let mut update = io::LegUpdate {
            kind: stream.kind,
            params: None,
            local_key: None,
            remote_key: None,
        };
        if let Some(line) = agreed.iter().find(|a| a.kind == stream.kind) {
            update.params = leg_params(line);
            if let (Some(own), Some(theirs)) = (key, &line.remote_key) {
                if !now
                    .local_usage
                    .as_ref()
                    .is_some_and(|u| Arc::ptr_eq(u, &own.usage))
                {
                    update.local_key = Some(now.use_local_key(own)?);
                }
                let same = now
                    .remote_key
                    .as_ref()
                    .is_some_and(|(k, _)| k.key == theirs.key && k.lifetime == theirs.lifetime);
                if !same {
                    let others = next.iter().chain(streams.iter());
                    update.remote_key = Some(now.use_remote_key(others, theirs.clone())?);
                }
            }
        }
        updates.push(update);
        next.push(now);
    }
    for (stream, now) in streams.iter_mut().zip(next) {
        *stream = now;
    }
    Ok(updates)
}

impl Stream {
    /// Keys this stream's encryption with rkms's key.
    fn use_local_key(&mut self, own: &OwnKey) -> Result<io::Keyed, RtpError> {
        self.local_usage = Some(own.usage.clone());
        io::Keyed::new(&own.key, own.usage.clone())
    }

    /// Keys this stream's decryption with the remote's key; a key another stream of `others`
    /// already uses shares its count (a key's lifetime covers every stream it protects).
    fn use_remote_key<'a>(
        &mut self,
        others: impl IntoIterator<Item = &'a Stream>,
        theirs: CryptoAttribute,
    ) -> Result<io::Keyed, RtpError> {
        let usage = others
            .into_iter()
            .filter_map(|s| s.remote_key.as_ref())
            .find(|(k, _)| k.key == theirs.key)
            .map_or_else(
                || Arc::new(KeyUsage::new(theirs.lifetime)),
                |(_, u)| u.clone(),
            );
        let keyed = io::Keyed::new(&theirs.key, usage.clone())?;
        self.remote_key = Some((theirs, usage));
        Ok(keyed)
    }
}

/// What the media threads need of an agreed line; `None` without a remote address.
fn leg_params(line: &Agreed) -> Option<io::LegParams> {
    let remote_rtp = line.remote.rtp_addr()?;
    let remote_rtcp = line.remote.rtcp_addr()?;
    let mux = line.local.rtcp_mux && line.remote.rtcp_mux;
    Some(io::LegParams {
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
        remote_ssrc: line.remote.ssrc,
    })
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

    #[test]
    fn a_worn_key_of_rkms_is_replaced_in_its_next_description() {
        let host = crate::webrtc::WebRtcHost::start(crate::webrtc::NetworkSettings::default())
            .expect("host");
        let a = RtpAddressing {
            bind: "127.0.0.1".parse().expect("ip"),
            advertised: "127.0.0.1".parse().expect("ip"),
            port_min: 0,
            port_max: 0,
        };
        let key = MasterKey::generate(sdes::CryptoSuite::Aes128CmHmacSha1_32);
        let element = RtpElement::new(
            host.add_element(crate::ElementId(1), Some(1)),
            a,
            Some(key.clone()),
            Arc::new(|_| {}),
        );
        let crypto_line = |sdp: &str| {
            sdp.lines()
                .find(|l| l.starts_with("a=crypto:"))
                .expect("a=crypto")
                .to_owned()
        };
        let first = element.generate_offer(false, true).expect("offer");
        assert!(
            first.contains(
                &CryptoAttribute {
                    tag: 1,
                    key: key.clone(),
                    lifetime: None
                }
                .value()
            )
        );
        // Worn down to its soft limit: a short lifetime stands in for 2^48 packets.
        let short = Arc::new(KeyUsage::new(Some(20)));
        while !short.worn() {
            short.count(sdes::Packets::Rtp);
        }
        element.state.lock().key = Some(OwnKey { key, usage: short });
        let second = element.generate_offer(false, true).expect("offer");
        assert_ne!(crypto_line(&second), crypto_line(&first));
        assert!(!element.state.lock().key.as_ref().expect("key").usage.worn());
    }
}
