//! One endpoint's state inside the socket loop: its `rtc` peer connection, its negotiated send
//! streams and the fast path that writes forwarded packets for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::crypto::SignatureScheme;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{
    RTCIceCandidate, RTCIceCandidateInit, RTCIceProtocol, RTCIceTcpCandidateType,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use tokio::sync::mpsc::UnboundedSender;

use super::codecs::{CodecId, first_offered_codec, media_kind, media_setup, rtp_kind};
use super::congestion::{SendLog, SendSideEstimate};
use super::data::{DataChannelOptions, DataMessage, OpenChannel, pick_channel};
use super::error::WebRtcError;
use super::events::{ConnectionState, DtlsState, EndpointEvent, FlowState, IceComponentState};
use super::extensions::{CarriedExtensions, SinkIds, SourceIds, abs_send_time};
use super::feedback::{
    RateMeter, ReceiverEstimate, RembPacer, announce_bandwidth, publisher_bound,
};
use super::resend_budget::ResendBudget;
use super::settings::{BandwidthLimits, EndpointOptions, NetworkSettings};
use super::srtp_out::{OutStream, SendStamps, SrtpOut};
use super::srtp_tap::{SUPPORTED_PROFILES, SrtpKeyTap};
use super::stats::{CandidatePairStats, EndpointStats, RtpStreamStats};
use crate::graph::MediaKind;
use crate::routing::{Kept, Rewritten, RtpPacket};

/// How long without packets before a flow is reported as stopped.
const FLOW_TIMEOUT: Duration = Duration::from_secs(2);

/// A stream rkms sends on this peer (one per media kind).
struct SendStream {
    sender: RTCRtpSenderId,
    fwd: OutStream,
    /// Feedback the remote sent about this stream.
    plis: u64,
    firs: u64,
    nacks: u64,
}

/// A stream rkms receives on this peer.
struct RecvStream {
    track_id: String,
    kind: MediaKind,
    receiver: RTCRtpReceiverId,
    /// Codec of each payload type.
    codecs: Vec<(u8, CodecId)>,
    extensions: SourceIds,
    /// Keyframe requests rkms sent the remote for this stream.
    plis: u64,
    /// The payload type and codec of the last packet.
    current: Option<(u8, CodecId)>,
    /// Whether the remote takes generic NACKs for this stream (`a=rtcp-fb:<pt> nack`).
    nack: bool,
}

/// What the loop must do after servicing a peer.
pub(crate) enum Inbound {
    /// A media packet to route.
    Rtp(MediaKind, CodecId, RtpPacket, CarriedExtensions),
    /// The remote asked for a keyframe on the stream of `kind` rkms sends it.
    KeyframeRequest(MediaKind),
    /// The remote lost these packets (its numbering) of the stream of `kind`.
    Nack(MediaKind, Vec<u16>),
    /// The remote sent a data channel message.
    Data(DataMessage),
    /// The remote's RTCP sender report for the stream of `kind` it sends (SSRC `ssrc`): its
    /// wall clock (64-bit NTP) at RTP time `rtp_time`.
    SenderReport {
        kind: MediaKind,
        ssrc: u32,
        ntp: u64,
        rtp_time: u32,
    },
}

/// Per-direction flow bookkeeping of one media kind.
#[derive(Default, Clone, Copy)]
struct Flow {
    last: Option<Instant>,
    flowing: bool,
}

/// The part of a peer the fan-out reads and writes for every packet it forwards to it: in one
/// place, so that writing a packet for a sink touches a few adjacent cache lines of its ~9 KB
/// peer rather than lines scattered across it (each a miss with hundreds of sinks).
pub(crate) struct FastPath {
    /// Where media goes: the remote address and local socket of the selected pair.
    pub(crate) remote: Option<(SocketAddr, SocketAddr)>,
    out: Option<SrtpOut>,
    send: [Option<SendStream>; 2],
    flow_out: [Flow; 2],
    /// Origin of the abs-send-time clock.
    created: Instant,
    /// The transport-wide sequence of what rkms sends this peer, when it negotiated
    /// transport-cc (see [`super::congestion`]).
    transport: Option<SendLog>,
}

/// What a peer connection is built from, kept until its first negotiation: a peer whose remote
/// offers to send nothing (a subscriber) is built again then, with the same ICE credentials,
/// certificate and local candidates but without the interceptors that serve inbound media.
struct Seed {
    pwd: String,
    certificate: RTCCertificate,
    mtu: usize,
    /// Server-reflexive and relay candidates added since.
    gathered: Vec<RTCIceCandidateInit>,
}

impl Seed {
    fn build(
        &self,
        tap: &Arc<SrtpKeyTap>,
        ufrag: &str,
        local_candidates: &[RTCIceCandidateInit],
        ice_tcp: bool,
        inbound: bool,
    ) -> Result<RTCPeerConnection, WebRtcError> {
        let (engine, registry) = media_setup(inbound).map_err(peer_error)?;
        let setting_engine = SettingEngineBuilder::new()
            .with_crypto_provider(tap.clone())
            .with_srtp_protection_profiles(SUPPORTED_PROFILES.to_vec())
            .with_ice_credentials(ufrag.to_owned(), self.pwd.clone())
            .with_receive_mtu(self.mtu)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_certificates(vec![self.certificate.clone()])
                    .build(),
            )
            .with_setting_engine(setting_engine)
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .map_err(peer_error)?;
        let offered = local_candidates.iter().filter(|c| ice_tcp || !is_tcp(c));
        for candidate in offered.chain(&self.gathered) {
            pc.add_local_candidate(candidate.clone())
                .map_err(peer_error)?;
        }
        Ok(pc)
    }
}

impl FastPath {
    /// What writing a packet of `kind` for this peer takes: its SRTP context, its send stream
    /// and the stamps of a send at `now`; `None` before it is connected or without that stream.
    #[inline]
    fn stream(
        &mut self,
        kind: MediaKind,
        now: Instant,
    ) -> Option<(&mut SrtpOut, &mut OutStream, SendStamps<'_>)> {
        let out = self.out.as_mut()?;
        let stream = self.send[kind_index(kind)].as_mut()?;
        let stamps = SendStamps {
            abs_send_time: abs_send_time(now.saturating_duration_since(self.created)),
            transport: self.transport.as_mut(),
        };
        Some((out, &mut stream.fwd, stamps))
    }
}

pub(crate) struct Peer {
    pub(crate) pc: RTCPeerConnection,
    /// What `pc` was built from, until the first negotiation.
    seed: Option<Box<Seed>>,
    tap: Arc<SrtpKeyTap>,
    events: UnboundedSender<EndpointEvent>,
    pub(crate) ufrag: String,
    options: EndpointOptions,
    local_candidates: Vec<RTCIceCandidateInit>,
    /// Whether the TCP ones among `local_candidates` are offered (Kurento's `iceTcp`).
    ice_tcp: bool,
    early_remote_candidates: Vec<RTCIceCandidateInit>,
    /// What the fan-out touches per forwarded packet, kept together.
    pub(crate) fast: FastPath,
    recv: Vec<RecvStream>,
    pub(crate) deadline: Instant,
    flow_in: [Flow; 2],
    /// Set when the transport comes up: the video it will be sent needs a keyframe.
    wants_keyframe: bool,
    /// The addresses (remote, local) of the pair last reported as `NewCandidatePairSelected`.
    reported_pair: Option<(SocketAddr, SocketAddr)>,
    /// A hash of the crate's local SDP and the limits its announced form carries (fixed when
    /// it was negotiated). Not the SDPs themselves: ~3 KB per endpoint, kept for its lifetime.
    announced: Option<(u64, BandwidthLimits)>,
    /// What the remote's downlink takes: its receiver estimates (REMB), or rkms's own estimate
    /// from its transport-cc feedback when it negotiated that.
    remote_estimate: ReceiverEstimate,
    /// rkms's estimate of the remote's downlink, when it negotiated transport-cc.
    send_side: Option<Box<SendSideEstimate>>,
    /// When the bound rkms asks the remote sender for goes out.
    remb: RembPacer,
    /// The rate of everything rkms forwards this peer, resends included (what an estimate of
    /// its downlink covers).
    sent_rate: RateMeter,
    /// What answers to its NACKs may still take of its downlink.
    resend_budget: ResendBudget,
    data_channels_opened: u32,
    data_channels_closed: u32,
    /// Open data channels.
    channels: Vec<OpenChannel>,
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        _ => 1,
    }
}

fn peer_error(e: impl std::fmt::Display) -> WebRtcError {
    WebRtcError::Peer(e.to_string())
}

impl Peer {
    /// Builds the peer connection (certificate generation included) in the caller's thread.
    pub(crate) fn new(
        settings: &NetworkSettings,
        options: EndpointOptions,
        local_candidates: Vec<RTCIceCandidateInit>,
        events: UnboundedSender<EndpointEvent>,
    ) -> Result<Self, WebRtcError> {
        let tap = SrtpKeyTap::new().map_err(peer_error)?;
        let ufrag = random_token(16);
        let seed = Box::new(Seed {
            pwd: random_token(32),
            certificate: RTCCertificate::generate(
                tap.inner_crypto(),
                SignatureScheme::EcdsaP256Sha256,
                CertificateParams::new(vec!["rkms".to_owned()]).map_err(peer_error)?,
            )
            .map_err(peer_error)?,
            mtu: settings.mtu.max(1200),
            gathered: Vec::new(),
        });
        let pc = seed.build(&tap, &ufrag, &local_candidates, true, true)?;
        Ok(Peer {
            pc,
            seed: Some(seed),
            tap,
            events,
            ufrag,
            options,
            local_candidates,
            ice_tcp: true,
            early_remote_candidates: Vec::new(),
            fast: FastPath {
                remote: None,
                out: None,
                send: [None, None],
                flow_out: [Flow::default(); 2],
                created: Instant::now(),
                transport: None,
            },
            recv: Vec::new(),
            deadline: Instant::now(),
            flow_in: [Flow::default(); 2],
            wants_keyframe: false,
            reported_pair: None,
            announced: None,
            remote_estimate: ReceiverEstimate::default(),
            send_side: None,
            remb: RembPacer::default(),
            data_channels_opened: 0,
            data_channels_closed: 0,
            sent_rate: RateMeter::default(),
            resend_budget: ResendBudget::default(),
            channels: Vec::new(),
        })
    }

    /// A peer that receives forwarded video as if negotiated (VP8 on 96, its rtx on 97) and
    /// connected to `remote` from `local` with `srtp`, for tests of the socket loop.
    #[cfg(test)]
    pub(crate) fn connected_video_sink(
        remote: SocketAddr,
        local: SocketAddr,
        srtp: SrtpOut,
    ) -> Result<Self, WebRtcError> {
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let mut peer = Peer::new(
            &NetworkSettings::default(),
            EndpointOptions::default(),
            Vec::new(),
            events,
        )?;
        peer.add_send_stream(MediaKind::Video, default_codec(RtpCodecKind::Video), true)?;
        let stream = peer.fast.send[kind_index(MediaKind::Video)]
            .as_mut()
            .ok_or_else(|| WebRtcError::Negotiation("no video stream".into()))?;
        stream
            .fwd
            .negotiated(vec![(CodecId::Vp8, 96)], SinkIds::default());
        stream.fwd.negotiated_rtx(&[(CodecId::Vp8, 97)]);
        peer.fast.out = Some(srtp);
        peer.fast.remote = Some((remote, local));
        Ok(peer)
    }

    /// The SSRCs of the video this peer is sent: the stream's and its RTX stream's.
    #[cfg(test)]
    pub(crate) fn video_ssrcs(&self) -> Option<(u32, Option<u32>)> {
        let stream = self.fast.send[kind_index(MediaKind::Video)].as_ref()?;
        Some((stream.fwd.ssrc(), stream.fwd.rtx_ssrc()))
    }

    fn emit(&self, event: EndpointEvent) {
        // The receiver is gone when the endpoint was dropped; nothing to tell then.
        let _ = self.events.send(event);
    }

    /// Declares the track rkms sends for `kind`, declared with `codec`; with `rtx`, a video
    /// track also gets an RTX SSRC (announced as `a=ssrc-group:FID`) for resends.
    fn add_send_stream(
        &mut self,
        kind: MediaKind,
        codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec,
        rtx: bool,
    ) -> Result<(), WebRtcError> {
        if self.fast.send[kind_index(kind)].is_some() {
            return Ok(());
        }
        let ssrc = random_u32();
        let rtx_ssrc = (rtx && kind == MediaKind::Video).then(random_u32);
        let label = format!("rkms-{}", kind.as_str().to_ascii_lowercase());
        let track = MediaStreamTrack::new(
            format!("rkms-{}", self.ufrag),
            label.clone(),
            label,
            rtp_kind(kind),
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    rtx: rtx_ssrc.map(|ssrc| RTCRtpRtxParameters { ssrc }),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        let sender = self
            .pc
            .add_track(track)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        let fwd = match rtx_ssrc {
            Some(rtx_ssrc) => {
                let first_seq = random_bytes::<2>();
                OutStream::new(ssrc).with_rtx(rtx_ssrc, u16::from_be_bytes(first_seq))
            }
            None => OutStream::new(ssrc),
        };
        self.fast.send[kind_index(kind)] = Some(SendStream {
            sender,
            fwd,
            plis: 0,
            firs: 0,
            nacks: 0,
        });
        Ok(())
    }

    /// Applies a remote offer and returns the answer.
    pub(crate) fn process_offer(
        &mut self,
        sdp: String,
        now: Instant,
    ) -> Result<String, WebRtcError> {
        let offer = RTCSessionDescription::offer(sdp)
            .map_err(|e| WebRtcError::InvalidSdp(e.to_string()))?;
        if let Some(seed) = self.seed.take()
            && !offer_sends(&offer.sdp)
        {
            self.pc = seed.build(
                &self.tap,
                &self.ufrag,
                &self.local_candidates,
                self.ice_tcp,
                false,
            )?;
        }
        let offered: Vec<_> = [MediaKind::Audio, MediaKind::Video]
            .into_iter()
            .filter(|kind| offer_receives(&offer.sdp, *kind))
            .filter_map(|kind| {
                let rtx = offers_rtx(&offer.sdp, kind);
                first_offered_codec(&offer.sdp, kind).map(|c| (kind, c, rtx))
            })
            .collect();
        self.pc
            .set_remote_description(now, offer)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        self.apply_early_candidates();
        for (kind, codec, rtx) in offered {
            self.add_send_stream(kind, codec.rtp_codec, rtx)?;
        }
        let answer = self
            .pc
            .create_answer(None)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        self.pc
            .set_local_description(now, answer)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        self.learn_payload_types();
        self.local_description()
            .ok_or_else(|| WebRtcError::Negotiation("no local description".into()))
    }

    /// Creates an offer sending and receiving audio and video (and data, if enabled).
    pub(crate) fn generate_offer(&mut self, now: Instant) -> Result<String, WebRtcError> {
        self.seed = None;
        for (kind, codec) in [
            (MediaKind::Audio, default_codec(RtpCodecKind::Audio)),
            (MediaKind::Video, default_codec(RtpCodecKind::Video)),
        ] {
            // The crate drops the RTX SSRC again if the answer negotiates no rtx.
            self.add_send_stream(kind, codec, true)?;
        }
        if self.options.use_data_channels {
            self.pc
                .create_data_channel("rkms", None)
                .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        }
        let offer = self
            .pc
            .create_offer(None)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        self.pc
            .set_local_description(now, offer)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        self.local_description()
            .ok_or_else(|| WebRtcError::Negotiation("no local description".into()))
    }

    /// Applies the remote answer to an offer rkms generated.
    pub(crate) fn process_answer(&mut self, sdp: String, now: Instant) -> Result<(), WebRtcError> {
        let answer = RTCSessionDescription::answer(sdp)
            .map_err(|e| WebRtcError::InvalidSdp(e.to_string()))?;
        self.pc
            .set_remote_description(now, answer)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        self.apply_early_candidates();
        self.learn_payload_types();
        Ok(())
    }

    /// The local SDP as the remote gets it: the crate's, with the bandwidth rkms announces
    /// (fixed when it was negotiated).
    pub(crate) fn local_description(&mut self) -> Option<String> {
        let sdp = self.pc.local_description()?.sdp;
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            sdp.hash(&mut hasher);
            hasher.finish()
        };
        let limits = match self.announced {
            Some((from, limits)) if from == hash => limits,
            _ => {
                self.announced = Some((hash, self.options.bandwidth));
                self.options.bandwidth
            }
        };
        Some(announce_bandwidth(&sdp, &limits))
    }

    pub(crate) fn remote_description(&self) -> Option<String> {
        self.pc.remote_description().map(|d| d.sdp.clone())
    }

    /// Adds a remote candidate now, or keeps it until the remote description arrives.
    pub(crate) fn add_ice_candidate(
        &mut self,
        candidate: RTCIceCandidateInit,
    ) -> Result<(), WebRtcError> {
        if candidate.candidate.trim().is_empty() {
            return Ok(()); // end-of-candidates
        }
        if self.pc.remote_description().is_none() {
            self.early_remote_candidates.push(candidate);
            return Ok(());
        }
        self.pc
            .add_remote_candidate(candidate)
            .map_err(|e| WebRtcError::InvalidCandidate(e.to_string()))
    }

    fn apply_early_candidates(&mut self) {
        for candidate in std::mem::take(&mut self.early_remote_candidates) {
            if let Err(e) = self.pc.add_remote_candidate(candidate) {
                self.emit(EndpointEvent::Error(format!(
                    "early ICE candidate rejected: {e}"
                )));
            }
        }
    }

    /// Starts gathering: the host candidates, known up front, are announced at once.
    pub(crate) fn start_gathering(&mut self) {
        self.emit(EndpointEvent::IceComponentStateChanged(
            IceComponentState::Gathering,
        ));
        let mid = self.first_mid();
        for candidate in &self.local_candidates {
            if self.ice_tcp || !is_tcp(candidate) {
                self.announce(candidate, &mid);
            }
        }
    }

    /// Kurento's `iceTcp`: before the first negotiation the peer connection is built again
    /// with or without the TCP candidates (so the SDP agrees); later only the next gathering's
    /// announcements follow.
    pub(crate) fn set_ice_tcp(&mut self, on: bool) -> Result<(), WebRtcError> {
        if self.ice_tcp == on {
            return Ok(());
        }
        self.ice_tcp = on;
        if let Some(seed) = &self.seed {
            self.pc = seed.build(&self.tap, &self.ufrag, &self.local_candidates, on, true)?;
        }
        Ok(())
    }

    /// Completes gathering with the socket's server-reflexive and relay candidates.
    pub(crate) fn finish_gathering(&mut self, server_candidates: &[RTCIceCandidateInit]) {
        let mid = self.first_mid();
        for candidate in server_candidates {
            match self.pc.add_local_candidate(candidate.clone()) {
                Ok(()) => {
                    if let Some(seed) = &mut self.seed {
                        seed.gathered.push(candidate.clone());
                    }
                    self.announce(candidate, &mid)
                }
                Err(e) => tracing::debug!("server candidate not added: {e}"),
            }
        }
        self.emit(EndpointEvent::IceGatheringDone);
    }

    fn announce(&self, candidate: &RTCIceCandidateInit, mid: &str) {
        self.emit(EndpointEvent::IceCandidateFound {
            candidate: candidate.candidate.clone(),
            sdp_mid: mid.to_owned(),
            sdp_mline_index: 0,
        });
    }

    /// The mid of the first m-section (the bundle's), which candidates are announced for.
    fn first_mid(&mut self) -> String {
        self.local_description()
            .and_then(|sdp| {
                sdp.lines()
                    .find_map(|l| l.strip_prefix("a=mid:").map(|m| m.trim().to_owned()))
            })
            .unwrap_or_else(|| "0".to_owned())
    }

    /// Records the payload types (rtx ones included) and header extensions the session
    /// negotiated for rkms's send streams, and whether rkms runs transport-wide congestion
    /// control toward the remote (it negotiated transport-cc: feedback and extension).
    fn learn_payload_types(&mut self) {
        let local_sdp = self.local_description().unwrap_or_default();
        let remote_sdp = self.remote_description().unwrap_or_default();
        let mut transport_wide = false;
        for slot in self.fast.send.iter_mut().flatten() {
            if let Some(mut sender) = self.pc.rtp_sender(slot.sender) {
                let sent = sender.get_parameters();
                let parameters = &sent.rtp_parameters;
                let payload_types: Vec<(CodecId, u8)> = parameters
                    .codecs
                    .iter()
                    .filter_map(|c| CodecId::of(&c.rtp_codec).map(|id| (id, c.payload_type)))
                    .collect();
                // RTX only while the crate keeps the stream's RTX SSRC (it drops it when the
                // remote negotiated no rtx) and for codecs an rtx `apt` points at.
                let rtx_kept = sent
                    .encodings
                    .iter()
                    .any(|e| e.rtp_coding_parameters.rtx.is_some());
                let rtx_payload_types: Vec<(CodecId, u8)> = parameters
                    .codecs
                    .iter()
                    .filter(|_| rtx_kept)
                    .filter_map(|c| {
                        let apt = rtx_apt(&c.rtp_codec)?;
                        let codec = payload_types.iter().find(|(_, pt)| *pt == apt)?.0;
                        Some((codec, c.payload_type))
                    })
                    .collect();
                let mid = mid_of_ssrc(&local_sdp, slot.fwd.ssrc());
                // rkms offers and answers transport-cc: the remote's side decides.
                let transport_cc = mid
                    .as_deref()
                    .and_then(|mid| section_of_mid(&remote_sdp, mid))
                    .is_some_and(takes_transport_cc);
                let extensions =
                    SinkIds::from_negotiated(&parameters.header_extensions, mid, transport_cc);
                transport_wide |= extensions.transport_wide();
                slot.fwd.negotiated(payload_types, extensions);
                slot.fwd.negotiated_rtx(&rtx_payload_types);
            }
        }
        // A renegotiation keeps the numbering and the estimate going.
        if transport_wide {
            self.fast.transport.get_or_insert_with(SendLog::default);
            self.send_side.get_or_insert_with(Box::default);
        } else {
            self.fast.transport = None;
            self.send_side = None;
        }
    }

    /// Drains the peer connection's outputs: datagrams go to `send`, events are translated,
    /// media and feedback are appended to `inbound`.
    pub(crate) fn service(
        &mut self,
        now: Instant,
        mut send: impl FnMut(SocketAddr, SocketAddr, &[u8]),
        inbound: &mut Vec<Inbound>,
    ) {
        while let Some(msg) = self.pc.poll_write() {
            send(
                msg.transport.local_addr,
                msg.transport.peer_addr,
                &msg.message,
            );
            self.fast.remote = Some((msg.transport.peer_addr, msg.transport.local_addr));
        }
        while let Some(event) = self.pc.poll_event() {
            self.on_event(event);
        }
        if std::mem::take(&mut self.wants_keyframe) {
            inbound.push(Inbound::KeyframeRequest(MediaKind::Video));
        }
        while let Some(msg) = self.pc.poll_read() {
            match msg.message {
                RTCMessage::RtpPacket(track_id, packet) => {
                    let Some(stream) = self.recv.iter_mut().find(|s| s.track_id == track_id) else {
                        continue;
                    };
                    let pt = packet.header.payload_type;
                    let Some(&(_, codec)) = stream.codecs.iter().find(|(p, _)| *p == pt) else {
                        continue;
                    };
                    stream.current = Some((pt, codec));
                    let kind = stream.kind;
                    let carried = stream.extensions.read(&packet);
                    let flow = &mut self.flow_in[kind_index(kind)];
                    flow.last = Some(now);
                    if !flow.flowing {
                        flow.flowing = true;
                        self.emit(EndpointEvent::MediaFlowInStateChanged(
                            kind,
                            FlowState::Flowing,
                        ));
                    }
                    inbound.push(Inbound::Rtp(kind, codec, packet, carried));
                }
                RTCMessage::RtcpPacket(_, packets) => self.on_rtcp(&packets, now, inbound),
                RTCMessage::DataChannelMessage(handle, message) => {
                    if let Some(channel) = self.channels.iter().find(|c| c.handle == handle) {
                        inbound.push(Inbound::Data(DataMessage {
                            label: channel.label.clone(),
                            stream_id: channel.stream_id,
                            message,
                        }));
                    }
                }
                _ => {}
            }
        }
        self.deadline = self
            .pc
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1));
    }

    fn send_kind_of_ssrc(&self, ssrc: u32) -> Option<MediaKind> {
        [MediaKind::Audio, MediaKind::Video].into_iter().find(|k| {
            self.fast.send[kind_index(*k)]
                .as_ref()
                .is_some_and(|s| s.fwd.ssrc() == ssrc)
        })
    }

    fn recv_kind_of_ssrc(&mut self, ssrc: u32) -> Option<MediaKind> {
        self.recv.iter().find_map(|stream| {
            let receiver = self.pc.rtp_receiver(stream.receiver)?;
            let found = receiver.track().ssrcs().any(|s| s == ssrc);
            found.then_some(stream.kind)
        })
    }

    fn on_rtcp(
        &mut self,
        packets: &[Box<dyn rtc::rtcp::Packet>],
        now: Instant,
        inbound: &mut Vec<Inbound>,
    ) {
        for packet in packets {
            let any = packet.as_any();
            if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                if let Some(kind) = self.send_kind_of_ssrc(pli.media_ssrc) {
                    self.count_feedback(kind, |s| &mut s.plis);
                    inbound.push(Inbound::KeyframeRequest(kind));
                }
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                let ssrc = fir.fir.first().map_or(fir.media_ssrc, |e| e.ssrc);
                if let Some(kind) = self.send_kind_of_ssrc(ssrc) {
                    self.count_feedback(kind, |s| &mut s.firs);
                    inbound.push(Inbound::KeyframeRequest(kind));
                }
            } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                tracing::trace!("{remb}");
                // With transport-cc the estimate is rkms's own; a REMB besides it (about packets
                // without a transport-wide number) would make two series of one estimate.
                if self.send_side.is_none() {
                    self.remote_estimate.update(remb.bitrate as u64);
                }
            } else if let Some(feedback) = any.downcast_ref::<TransportLayerCc>() {
                if let (Some(estimate), Some(log)) =
                    (self.send_side.as_mut(), self.fast.transport.as_mut())
                    && let Some(bps) = estimate.on_feedback(log, feedback, now)
                {
                    tracing::trace!(bps, "transport-cc estimate");
                    self.remote_estimate.update_own(bps);
                }
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>()
                && let Some(kind) = self.send_kind_of_ssrc(nack.media_ssrc)
            {
                self.count_feedback(kind, |s| &mut s.nacks);
                let lost = nack
                    .nacks
                    .iter()
                    .flat_map(|pair| pair.packet_list())
                    .collect();
                inbound.push(Inbound::Nack(kind, lost));
            } else if let Some(sr) = any.downcast_ref::<SenderReport>()
                && let Some(kind) = self.recv_kind_of_ssrc(sr.ssrc)
            {
                inbound.push(Inbound::SenderReport {
                    kind,
                    ssrc: sr.ssrc,
                    ntp: sr.ntp_time,
                    rtp_time: sr.rtp_time,
                });
            }
        }
    }

    fn count_feedback(
        &mut self,
        kind: MediaKind,
        counter: impl FnOnce(&mut SendStream) -> &mut u64,
    ) {
        if let Some(stream) = self.fast.send[kind_index(kind)].as_mut() {
            *counter(stream) += 1;
        }
    }

    fn on_event(&mut self, event: RTCPeerConnectionEvent) {
        match event {
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
                let state = match state {
                    RTCIceConnectionState::Checking => IceComponentState::Connecting,
                    RTCIceConnectionState::Connected => IceComponentState::Connected,
                    RTCIceConnectionState::Completed => IceComponentState::Ready,
                    RTCIceConnectionState::Failed => IceComponentState::Failed,
                    _ => IceComponentState::Disconnected,
                };
                self.emit(EndpointEvent::IceComponentStateChanged(state));
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                RTCPeerConnectionState::Connecting => {
                    self.emit(EndpointEvent::DtlsConnectionStateChange(
                        DtlsState::Connecting,
                    ));
                }
                RTCPeerConnectionState::Connected => {
                    if self.fast.out.is_none() {
                        match self
                            .tap
                            .local_key()
                            .map(|k| SrtpOut::new(&k, self.tap.inner_crypto()))
                        {
                            Some(Ok(out)) => self.fast.out = Some(out),
                            Some(Err(e)) => self.emit(EndpointEvent::Error(format!("SRTP: {e}"))),
                            None => {
                                self.emit(EndpointEvent::Error("SRTP key not negotiated".into()))
                            }
                        }
                    }
                    self.report_selected_pair();
                    self.wants_keyframe = true;
                    self.emit(EndpointEvent::DtlsConnectionStateChange(
                        DtlsState::Connected,
                    ));
                    self.emit(EndpointEvent::ConnectionStateChanged(
                        ConnectionState::Connected,
                    ));
                    self.emit(EndpointEvent::MediaStateChanged(ConnectionState::Connected));
                }
                RTCPeerConnectionState::Disconnected
                | RTCPeerConnectionState::Failed
                | RTCPeerConnectionState::Closed => {
                    self.emit(EndpointEvent::DtlsConnectionStateChange(DtlsState::Closed));
                    self.emit(EndpointEvent::ConnectionStateChanged(
                        ConnectionState::Disconnected,
                    ));
                    self.emit(EndpointEvent::MediaStateChanged(
                        ConnectionState::Disconnected,
                    ));
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnDataChannel(event) => match event {
                RTCDataChannelEvent::OnOpen(handle) => {
                    let Some(channel) = self.pc.data_channel(handle) else {
                        return;
                    };
                    let Some(stream_id) = channel.stream_id() else {
                        return;
                    };
                    let label = channel.label().to_owned();
                    self.channels.push(OpenChannel {
                        handle,
                        stream_id,
                        label,
                    });
                    self.data_channels_opened += 1;
                    self.emit(EndpointEvent::DataChannelOpened(stream_id));
                }
                RTCDataChannelEvent::OnClose(handle) => {
                    if let Some(at) = self.channels.iter().position(|c| c.handle == handle) {
                        let channel = self.channels.remove(at);
                        self.data_channels_closed += 1;
                        self.emit(EndpointEvent::DataChannelClosed(channel.stream_id));
                    }
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                if let Some(mut receiver) = self.pc.rtp_receiver(init.receiver_id) {
                    let Some(kind) = media_kind(receiver.track().kind()) else {
                        return;
                    };
                    let parameters = &receiver.get_parameters().rtp_parameters;
                    let codecs = parameters
                        .codecs
                        .iter()
                        .filter_map(|c| CodecId::of(&c.rtp_codec).map(|id| (c.payload_type, id)))
                        .collect();
                    let extensions = SourceIds::from_negotiated(&parameters.header_extensions);
                    let nack = parameters.codecs.iter().any(|c| {
                        c.rtp_codec
                            .rtcp_feedback
                            .iter()
                            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty())
                    });
                    self.recv.push(RecvStream {
                        track_id: init.track_id,
                        kind,
                        receiver: init.receiver_id,
                        codecs,
                        extensions,
                        plis: 0,
                        current: None,
                        nack,
                    });
                }
            }
            _ => {}
        }
    }

    /// Asks the remote sender of `kind` for the packets numbered `lost` (its numbering), if it
    /// negotiated NACK: sinks lost them and the routing core's history did not hold them.
    pub(crate) fn nack_upstream(&mut self, kind: MediaKind, lost: &[u16], now: Instant) {
        let Some(stream) = self.recv.iter().find(|s| s.kind == kind && s.nack) else {
            return;
        };
        let Some(mut receiver) = self.pc.rtp_receiver(stream.receiver) else {
            return;
        };
        let Some(media_ssrc) = receiver.track().ssrcs().next() else {
            return;
        };
        let nack = TransportLayerNack {
            sender_ssrc: 0,
            media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(lost),
        };
        if let Err(e) = receiver.write_rtcp(now, vec![Box::new(nack)]) {
            tracing::debug!("NACK not relayed: {e}");
        }
    }

    /// Asks the remote sender of `kind` for a keyframe.
    pub(crate) fn request_keyframe(&mut self, kind: MediaKind, now: Instant) {
        let Some(stream) = self.recv.iter_mut().find(|s| s.kind == kind) else {
            return;
        };
        stream.plis += 1;
        let receiver = stream.receiver;
        if let Some(mut receiver) = self.pc.rtp_receiver(receiver) {
            let Some(media_ssrc) = receiver.track().ssrcs().next() else {
                return;
            };
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            if let Err(e) = receiver.write_rtcp(now, vec![Box::new(pli)]) {
                tracing::debug!("PLI not sent: {e}");
            }
        }
    }

    /// Opens a data channel to the remote (`createDataChannel`); `DataChannelOpened` follows.
    pub(crate) fn create_data_channel(
        &mut self,
        options: DataChannelOptions,
    ) -> Result<(), WebRtcError> {
        if !self.options.use_data_channels {
            return Err(WebRtcError::DataChannel(
                "the endpoint was created without useDataChannels".into(),
            ));
        }
        // The channel lives in this peer connection: it is not built again.
        self.seed = None;
        let init = rtc::data_channel::RTCDataChannelInit {
            ordered: options.ordered,
            max_packet_life_time: options.max_packet_life_time,
            max_retransmits: options.max_retransmits,
            protocol: options.protocol,
            negotiated: None,
        };
        self.pc
            .create_data_channel(&options.label, Some(init))
            .map(|_| ())
            .map_err(|e| WebRtcError::DataChannel(e.to_string()))
    }

    /// Closes the data channel of SCTP stream `stream_id` (`closeDataChannel`).
    pub(crate) fn close_data_channel(&mut self, stream_id: u16) -> Result<(), WebRtcError> {
        let handle = self
            .channels
            .iter()
            .find(|c| c.stream_id == stream_id)
            .map(|c| c.handle)
            .ok_or_else(|| WebRtcError::DataChannel(format!("no open channel {stream_id}")))?;
        self.pc
            .data_channel(handle)
            .ok_or_else(|| WebRtcError::DataChannel(format!("no channel {stream_id}")))?
            .close()
            .map_err(|e| WebRtcError::DataChannel(e.to_string()))
    }

    /// Sends a message another endpoint (or this one) received; see [`super::data`].
    pub(crate) fn send_data(&mut self, data: &DataMessage, now: Instant) {
        let Some(handle) =
            pick_channel(&self.channels, &data.label, data.stream_id).map(|c| c.handle)
        else {
            return;
        };
        let Some(mut channel) = self.pc.data_channel(handle) else {
            return;
        };
        let bytes = data.message.data.clone();
        let sent = match std::str::from_utf8(&bytes) {
            Ok(text) if data.message.is_string => channel.send_text(now, text),
            _ => channel.send(now, bytes),
        };
        if let Err(e) = sent {
            tracing::debug!("data channel message dropped: {e}");
        }
    }

    /// Changes the bandwidth limits (`b=AS` lines of a later negotiation, the REMB bounds now).
    pub(crate) fn set_bandwidth(&mut self, limits: BandwidthLimits) {
        self.options.bandwidth = limits;
    }

    /// Datagram bytes the fast path sent this peer (forwarded and resent, every stream).
    fn forwarded_bytes(&self) -> u64 {
        self.fast
            .send
            .iter()
            .flatten()
            .map(|s| s.fwd.datagram_bytes())
            .sum()
    }

    /// What this peer, as a subscriber, lets its video publisher be asked for (bps).
    pub(crate) fn video_demand(&mut self, now: Instant) -> Option<u64> {
        let sent = self.forwarded_bytes();
        let sent_bps = self.sent_rate.update(sent, now);
        self.remote_estimate
            .demand(&self.options.bandwidth, sent_bps)
    }

    /// Sends the remote's video sender the bound its subscribers' `demand` sets, when due.
    /// Returns whether a REMB was written (the peer then needs servicing).
    pub(crate) fn bound_video_sender(&mut self, demand: Option<u64>, now: Instant) -> bool {
        let Some(stream) = self.recv.iter().find(|s| s.kind == MediaKind::Video) else {
            return false;
        };
        let receiver = stream.receiver;
        let Some(bitrate) = self
            .remb
            .due(publisher_bound(&self.options.bandwidth, demand), now)
        else {
            return false;
        };
        let Some(mut receiver) = self.pc.rtp_receiver(receiver) else {
            return false;
        };
        let ssrcs: Vec<u32> = receiver.track().ssrcs().collect();
        if ssrcs.is_empty() {
            return false;
        }
        let remb = ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 0,
            bitrate: bitrate as f32,
            ssrcs,
        };
        if let Err(e) = receiver.write_rtcp(now, vec![Box::new(remb)]) {
            tracing::debug!("REMB not sent: {e}");
            return false;
        }
        true
    }

    /// Writes a forwarded packet for this peer into `buf` (header rewritten to this peer's
    /// stream, payload, SRTP tag). Returns the datagram length, or `None` when this peer cannot
    /// take it (not connected, codec not negotiated).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_forwarded(
        &mut self,
        kind: MediaKind,
        codec: CodecId,
        packet: &RtpPacket,
        carried: &CarriedExtensions,
        rewritten: Rewritten,
        buf: &mut [u8],
        now: Instant,
    ) -> Option<usize> {
        let (out, stream, stamps) = self.fast.stream(kind, now)?;
        let n = stream.write(out, codec, packet, carried, rewritten, stamps, now, buf)?;
        let flow = &mut self.fast.flow_out[kind_index(kind)];
        flow.last = Some(now);
        if !flow.flowing {
            flow.flowing = true;
            self.emit(EndpointEvent::MediaFlowOutStateChanged(
                kind,
                FlowState::Flowing,
            ));
        }
        Some(n)
    }

    /// Writes a packet this peer NACKed into `buf`, RTX when negotiated (see
    /// [`OutStream::write_resend`]). Returns the datagram length, or `None` when this peer
    /// cannot take it, or its resend budget (see [`super::resend_budget`]) is spent.
    pub(crate) fn write_resend(
        &mut self,
        kind: MediaKind,
        kept: &Kept,
        rewritten: Rewritten,
        buf: &mut [u8],
        now: Instant,
    ) -> Option<usize> {
        if !self
            .resend_budget
            .allows(self.remote_estimate.latest(), now)
        {
            return None;
        }
        let (out, stream, stamps) = self.fast.stream(kind, now)?;
        let len = stream.write_resend(out, kept, rewritten, stamps, now, buf)?;
        self.resend_budget.spend(len);
        Some(len)
    }

    /// Sends a sender report for each stream rkms forwards on this peer, and its RTX stream
    /// once that resent something (the crate's report interceptor never sees those packets).
    /// The RTP/NTP pair maps the last forwarded timestamp to the wall clock, advanced to `now`.
    pub(crate) fn send_reports(&mut self, now: Instant) {
        let ntp = ntp_now();
        for stream in self.fast.send.iter().flatten() {
            let Some(report) = stream.fwd.sender_report(now, ntp) else {
                continue;
            };
            let mut reports: Vec<Box<dyn rtc::rtcp::Packet>> = vec![Box::new(report)];
            if let Some(rtx) = stream.fwd.rtx_sender_report(now, ntp) {
                reports.push(Box::new(rtx));
            }
            if let Some(mut sender) = self.pc.rtp_sender(stream.sender)
                && let Err(e) = sender.write_rtcp(now, reports)
            {
                tracing::debug!("sender report not sent: {e}");
            }
        }
    }

    /// The endpoint's statistics: the crate's for what it receives and its transport, rkms's
    /// counters for what the fast path sends.
    pub(crate) fn stats(&mut self, now: Instant) -> EndpointStats {
        use rtc::statistics::StatsSelector;
        use rtc::statistics::report::RTCStatsReportEntry;
        let report = self.pc.get_stats(now, StatsSelector::None);
        let bound = self.remb.last().unwrap_or(0);
        let estimate = self.remote_estimate.latest().unwrap_or(0);
        let mut out = EndpointStats {
            data_channels_opened: self.data_channels_opened,
            data_channels_closed: self.data_channels_closed,
            ..EndpointStats::default()
        };
        for received in report.inbound_rtp_streams() {
            let rtp = &received.received_rtp_stream_stats;
            let Some(kind) = media_kind(rtp.rtp_stream_stats.kind) else {
                continue;
            };
            let mut stream = RtpStreamStats::new(kind, rtp.rtp_stream_stats.ssrc);
            let ours = self.recv.iter().find(|s| s.kind == kind);
            stream.codec = ours.and_then(|s| s.current);
            stream.packets = rtp.packets_received;
            stream.bytes = received.bytes_received;
            stream.packets_lost = rtp.packets_lost;
            // The crate counts jitter in RTP timestamp units; Kurento reports seconds.
            stream.jitter = stream
                .codec
                .map_or(0.0, |(_, c)| rtp.jitter / f64::from(c.clock_rate()));
            stream.nack_count = u64::from(received.nack_count);
            stream.fir_count = u64::from(received.fir_count);
            stream.pli_count = ours.map_or(0, |s| s.plis);
            stream.remb = if kind == MediaKind::Video { bound } else { 0 };
            out.inbound.push(stream);
        }
        for (kind, send) in [MediaKind::Audio, MediaKind::Video]
            .into_iter()
            .filter_map(|k| self.fast.send[kind_index(k)].as_ref().map(|s| (k, s)))
        {
            let mut stream = RtpStreamStats::new(kind, send.fwd.ssrc());
            stream.codec = send.fwd.first_codec().map(|(codec, pt)| (pt, codec));
            stream.packets = send.fwd.packets();
            stream.bytes = send.fwd.octets();
            stream.pli_count = send.plis;
            stream.fir_count = send.firs;
            stream.nack_count = send.nacks;
            stream.remb = if kind == MediaKind::Video {
                estimate
            } else {
                0
            };
            let remote = report.iter().find_map(|entry| match entry {
                RTCStatsReportEntry::RemoteInboundRtp(r)
                    if r.received_rtp_stream_stats.rtp_stream_stats.ssrc == send.fwd.ssrc() =>
                {
                    Some(r)
                }
                _ => None,
            });
            if let Some(remote) = remote {
                stream.packets_lost = remote.received_rtp_stream_stats.packets_lost;
                stream.fraction_lost = remote.fraction_lost;
                stream.round_trip_time = remote.round_trip_time;
            }
            out.bytes_sent += send.fwd.datagram_bytes();
            out.outbound.push(stream);
        }
        if let Some(transport) = report.transport() {
            out.bytes_sent += transport.bytes_sent;
            out.bytes_received = transport.bytes_received;
        }
        let forwarded = self.forwarded_bytes();
        out.candidate_pair = report
            .candidate_pairs()
            .find(|p| p.nominated)
            .zip(self.fast.remote)
            .map(|(pair, (remote, local))| CandidatePairStats {
                local: local.to_string(),
                remote: remote.to_string(),
                bytes_sent: pair.bytes_sent + forwarded,
                bytes_received: pair.bytes_received,
                round_trip_time: pair.current_round_trip_time,
                available_outgoing_bitrate: estimate as f64,
                available_incoming_bitrate: bound as f64,
            });
        out
    }

    /// The ICE agent's selected pair: its (remote, local) addresses and both candidates as
    /// `candidate:` attribute text (a remote that was never signalled is peer-reflexive).
    fn selected_pair(&mut self) -> Option<((SocketAddr, SocketAddr), String, String)> {
        // Every sender, receiver and the SCTP association share the one bundled transport.
        let pair = if let Some(id) = self.fast.send.iter().flatten().map(|s| s.sender).next() {
            let sender = self.pc.rtp_sender(id)?;
            sender
                .transport()?
                .ice_transport()
                .get_selected_candidate_pair()
        } else if let Some(id) = self.recv.first().map(|r| r.receiver) {
            let receiver = self.pc.rtp_receiver(id)?;
            receiver
                .transport()?
                .ice_transport()
                .get_selected_candidate_pair()
        } else {
            let sctp = self.pc.sctp()?;
            sctp.transport()
                .ice_transport()
                .get_selected_candidate_pair()
        }?;
        let addr = |c: &RTCIceCandidate| Some(SocketAddr::new(c.address.parse().ok()?, c.port));
        let addrs = (addr(pair.remote())?, addr(pair.local())?);
        Some((
            addrs,
            candidate_text(pair.local()),
            candidate_text(pair.remote()),
        ))
    }

    /// Raises `NewCandidatePairSelected` for the agent's selected pair unless it was reported.
    fn report_selected_pair(&mut self) {
        let Some((addrs, local, remote)) = self.selected_pair() else {
            return;
        };
        if self.reported_pair != Some(addrs) {
            self.reported_pair = Some(addrs);
            self.emit(EndpointEvent::NewCandidatePairSelected { local, remote });
        }
    }

    /// Reports flows that stopped, and a pair the remote switched to since the last report
    /// (the agent is asked only when the path the stack last wrote to differs from it).
    pub(crate) fn check_flows(&mut self, now: Instant) {
        if self.fast.out.is_some() && self.fast.remote != self.reported_pair {
            self.report_selected_pair();
        }
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let i = kind_index(kind);
            for (flow, incoming) in [
                (&mut self.flow_in[i], true),
                (&mut self.fast.flow_out[i], false),
            ] {
                if flow.flowing
                    && flow
                        .last
                        .is_some_and(|t| now.saturating_duration_since(t) > FLOW_TIMEOUT)
                {
                    flow.flowing = false;
                    let event = if incoming {
                        EndpointEvent::MediaFlowInStateChanged(kind, FlowState::NotFlowing)
                    } else {
                        EndpointEvent::MediaFlowOutStateChanged(kind, FlowState::NotFlowing)
                    };
                    let _ = self.events.send(event);
                }
            }
        }
    }

    /// Reports a fatal error of this endpoint.
    pub(crate) fn fail(&self, message: &str) {
        self.emit(EndpointEvent::Error(message.to_owned()));
    }

    pub(crate) fn close(&mut self) {
        let _ = self.pc.close();
    }

    /// The connection of the selected pair is gone (the remote closed an ICE-TCP connection,
    /// which is never reopened from this side): with no path left the peer connection is
    /// closed now, rather than when consent checks time out (~30 s). Its state events follow
    /// at the next [`Self::service`]; forwarding to it stops.
    pub(crate) fn transport_lost(&mut self) {
        self.emit(EndpointEvent::IceComponentStateChanged(
            IceComponentState::Disconnected,
        ));
        self.reported_pair = None;
        let _ = self.pc.close();
    }

    /// Whether the selected pair runs from `local` to `remote`.
    pub(crate) fn uses_path(&self, remote: SocketAddr, local: SocketAddr) -> bool {
        self.fast.remote == Some((remote, local))
    }
}

/// A candidate as SDP attribute text (`candidate:...`, RFC 8839), the way it was announced.
/// Written here because the crate's text of a peer-reflexive candidate has an empty related
/// address and, for TCP, no `tcptype` (such a remote is the active end of the connection).
fn candidate_text(c: &RTCIceCandidate) -> String {
    use std::fmt::Write;
    let mut text = format!(
        "candidate:{} {} {} {} {} {} typ {}",
        c.foundation, c.component, c.protocol, c.priority, c.address, c.port, c.typ
    );
    if !c.related_address.is_empty() {
        let _ = write!(
            text,
            " raddr {} rport {}",
            c.related_address, c.related_port
        );
    }
    if c.protocol == RTCIceProtocol::Tcp {
        let tcp_type = match c.tcp_type {
            RTCIceTcpCandidateType::Passive => "passive",
            RTCIceTcpCandidateType::SimultaneousOpen => "so",
            _ => "active",
        };
        let _ = write!(text, " tcptype {tcp_type}");
    }
    text
}

/// Whether a candidate is a TCP one (RFC 6544).
fn is_tcp(candidate: &RTCIceCandidateInit) -> bool {
    candidate
        .candidate
        .split_whitespace()
        .nth(2)
        .is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
}

/// The mid of the m-section of `sdp` that announces `ssrc`.
fn mid_of_ssrc(sdp: &str, ssrc: u32) -> Option<String> {
    let needle = format!("a=ssrc:{ssrc} ");
    sdp.split("\nm=")
        .find(|section| section.contains(&needle))?
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:").map(|m| m.trim().to_owned()))
}

/// The m-section of `sdp` with the mid `mid` (from its media type on).
fn section_of_mid<'a>(sdp: &'a str, mid: &str) -> Option<&'a str> {
    sdp.split("\nm=").skip(1).find(|section| {
        section
            .lines()
            .any(|l| l.strip_prefix("a=mid:").is_some_and(|m| m.trim() == mid))
    })
}

/// Whether an m-section takes transport-cc feedback for one of its codecs.
fn takes_transport_cc(section: &str) -> bool {
    section
        .lines()
        .any(|l| l.starts_with("a=rtcp-fb:") && l.trim_end().ends_with(" transport-cc"))
}

/// The first m-section of `kind` in `sdp` (from its media type on).
fn first_section(sdp: &str, kind: MediaKind) -> Option<&str> {
    let media = if kind == MediaKind::Audio {
        "audio"
    } else {
        "video"
    };
    sdp.split("\nm=").skip(1).find(|s| s.starts_with(media))
}

/// Whether the remote wants to receive media of `kind` (its first m-section of that kind is not
/// `sendonly` or `inactive`): only then does rkms send a track, so a send-only offer gets a
/// receive-only answer.
fn offer_receives(sdp: &str, kind: MediaKind) -> bool {
    first_section(sdp, kind).is_some_and(|section| {
        !section
            .lines()
            .any(|l| matches!(l.trim_end(), "a=sendonly" | "a=inactive"))
    })
}

/// Whether the first m-section of `kind` offers rtx (RFC 4588): only then does rkms announce
/// an RTX SSRC in its answer.
fn offers_rtx(sdp: &str, kind: MediaKind) -> bool {
    first_section(sdp, kind).is_some_and(|section| {
        section.lines().any(|l| {
            l.strip_prefix("a=rtpmap:")
                .and_then(|rest| rest.split_once(' '))
                .is_some_and(|(_, name)| name.to_ascii_lowercase().starts_with("rtx/"))
        })
    })
}

/// The payload type an rtx codec repairs (its `apt`), `None` for other codecs.
fn rtx_apt(codec: &rtc::rtp_transceiver::rtp_sender::RTCRtpCodec) -> Option<u8> {
    if !codec.mime_type.eq_ignore_ascii_case("video/rtx") {
        return None;
    }
    codec
        .sdp_fmtp_line
        .split(';')
        .find_map(|p| p.trim().strip_prefix("apt="))
        .and_then(|pt| pt.trim().parse().ok())
}

/// Whether the remote offers to send audio or video: one of those m-sections is accepted (port
/// not 0) and neither `recvonly` nor `inactive`.
fn offer_sends(sdp: &str) -> bool {
    sdp.split("\nm=").skip(1).any(|section| {
        let media = section.starts_with("audio") || section.starts_with("video");
        let port = section.split(' ').nth(1);
        media
            && port != Some("0")
            && !section
                .lines()
                .any(|l| matches!(l.trim_end(), "a=recvonly" | "a=inactive"))
    })
}

/// The wall clock as a 64-bit NTP timestamp.
pub(crate) fn ntp_now() -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The codec a generated offer's track is declared with.
fn default_codec(kind: RtpCodecKind) -> rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
    use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
    let (mime, rate, channels, fmtp) = match kind {
        RtpCodecKind::Audio => (MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1"),
        _ => (MIME_TYPE_VP8, 90_000, 0, ""),
    };
    rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate: rate,
        channels,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    fill_random(&mut bytes);
    bytes
}

/// Fills `out` from the crypto provider's secure random source.
pub(crate) fn fill_random(out: &mut [u8]) {
    if let Ok(provider) = rtc::crypto::default_provider() {
        let _ = provider.random().fill(out);
    }
}

pub(crate) fn random_u32() -> u32 {
    u32::from_be_bytes(random_bytes::<4>()).max(1)
}

/// A random ICE token of `len` characters from the ICE alphabet.
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    random_bytes::<32>()
        .iter()
        .take(len)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::peer_connection::transport::RTCIceCandidateType;

    #[test]
    fn candidates_are_described_as_announced() {
        let passive = RTCIceCandidate {
            foundation: "153441841".into(),
            priority: 2124414975,
            address: "127.0.0.1".into(),
            protocol: RTCIceProtocol::Tcp,
            port: 38157,
            typ: RTCIceCandidateType::Host,
            component: 1,
            tcp_type: RTCIceTcpCandidateType::Passive,
            ..Default::default()
        };
        assert_eq!(
            candidate_text(&passive),
            "candidate:153441841 1 tcp 2124414975 127.0.0.1 38157 typ host tcptype passive"
        );
        // The remote end of an ICE-TCP connection: peer-reflexive, active, no related address.
        let prflx = RTCIceCandidate {
            typ: RTCIceCandidateType::Prflx,
            tcp_type: RTCIceTcpCandidateType::Unspecified,
            port: 53578,
            ..passive.clone()
        };
        assert!(
            candidate_text(&prflx).ends_with(" 127.0.0.1 53578 typ prflx tcptype active"),
            "{}",
            candidate_text(&prflx)
        );
        let relay = RTCIceCandidate {
            protocol: RTCIceProtocol::Udp,
            typ: RTCIceCandidateType::Relay,
            related_address: "127.0.0.2".into(),
            related_port: 40000,
            ..passive
        };
        assert!(
            candidate_text(&relay)
                .ends_with(" udp 2124414975 127.0.0.1 38157 typ relay raddr 127.0.0.2 rport 40000"),
            "{}",
            candidate_text(&relay)
        );
    }

    #[test]
    fn a_send_only_section_does_not_receive() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
        assert!(offer_receives(sdp, MediaKind::Audio));
        assert!(!offer_receives(sdp, MediaKind::Video));
        assert!(!offer_receives("v=0\r\n", MediaKind::Audio));
    }

    #[test]
    fn a_receive_only_offer_sends_nothing() {
        let viewer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n\
                      m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
                      m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert!(!offer_sends(viewer));
        let rejected = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n\
                        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=inactive\r\n";
        assert!(!offer_sends(rejected));
        // No direction attribute means sendrecv.
        assert!(offer_sends("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"));
        assert!(offer_sends(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n"
        ));
    }

    #[test]
    fn transport_cc_is_read_from_the_section_of_the_stream() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                   a=rtcp-fb:111 transport-cc\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtcp-fb:96 goog-remb\r\n";
        assert!(section_of_mid(sdp, "0").is_some_and(takes_transport_cc));
        assert!(!section_of_mid(sdp, "1").is_some_and(takes_transport_cc));
        assert!(section_of_mid(sdp, "2").is_none());
    }

    #[test]
    fn rtx_is_found_in_offers_and_tied_to_its_codec() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\n\
                   a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n";
        assert!(offers_rtx(sdp, MediaKind::Video));
        assert!(!offers_rtx(sdp, MediaKind::Audio));
        let codec = |mime: &str, fmtp: &str| rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
            mime_type: mime.to_owned(),
            sdp_fmtp_line: fmtp.to_owned(),
            ..Default::default()
        };
        assert_eq!(
            rtx_apt(&codec("video/rtx", "apt=96;rtx-time=3000")),
            Some(96)
        );
        assert_eq!(rtx_apt(&codec("video/VP8", "apt=96")), None);
    }
}
