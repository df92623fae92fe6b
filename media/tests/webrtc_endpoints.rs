//! WebRTC endpoints against real client `rtc` peers over loopback UDP: offer/answer, ICE + DTLS,
//! loopback media, one-to-many fan-out, typed errors for bad input.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rkms_media::graph::{ElementId, MediaKind};
use rkms_media::webrtc::codecs::media_setup;
use rkms_media::webrtc::peer_io::{host_candidate, udp_datagram};
use rkms_media::webrtc::{
    BandwidthLimits, ConnectionState, EndpointEvent, EndpointOptions, NetworkSettings, WebRtcError,
    WebRtcHost,
};
use rtc::ice::tcp_type::TcpType;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::configure_twcc_sender_only;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use tokio::sync::mpsc::UnboundedReceiver;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A client peer on its own socket, driven by hand.
struct Client {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    connected: bool,
    sender: Option<RTCRtpSenderId>,
    ssrc: u32,
    received: Vec<rtc::rtp::Packet>,
    /// Picture loss indications received.
    plis: usize,
    /// Sender reports received (compound packets starting with an SR).
    srs: usize,
    /// Transport-wide congestion control feedback packets received.
    twcc: usize,
    /// Bitrates of the receiver estimates (REMB) received.
    rembs: Vec<f32>,
    /// Simulated loss: the first arrival of every RTP packet whose sequence number is a
    /// multiple of this is dropped before the peer sees it.
    lose_every: Option<u16>,
    lost: HashSet<u16>,
    /// Where rkms's datagrams come from.
    server: Option<SocketAddr>,
}

impl Client {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        // rkms's own set-up (it lets REMB through to the application), plus transport-wide
        // sequence numbers on what the client sends, as browsers do.
        let (mut engine, registry) = media_setup(true)?;
        let registry = configure_twcc_sender_only(registry, &mut engine)?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())?;
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        pc.add_local_candidate(host_candidate(local, TcpType::Unspecified)?)?;
        Ok(Client {
            pc,
            socket,
            local,
            connected: false,
            sender: None,
            ssrc: 0,
            received: Vec::new(),
            plis: 0,
            srs: 0,
            twcc: 0,
            rembs: Vec::new(),
            lose_every: None,
            lost: HashSet::new(),
            server: None,
        })
    }

    /// A client that sends VP8 video (and receives video on the same m-line).
    fn publisher(ssrc: u32) -> Result<Self, Box<dyn std::error::Error>> {
        let mut c = Client::new()?;
        let track = MediaStreamTrack::new(
            "client-stream".into(),
            "client-video".into(),
            "client-video".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_VP8.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        );
        c.sender = Some(c.pc.add_track(track)?);
        c.ssrc = ssrc;
        Ok(c)
    }

    /// A client that only receives video.
    fn viewer() -> Result<Self, Box<dyn std::error::Error>> {
        let mut c = Client::new()?;
        c.pc.add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )?;
        Ok(c)
    }

    fn offer(&mut self) -> Result<String, Box<dyn std::error::Error>> {
        let offer = self.pc.create_offer(None)?;
        self.pc
            .set_local_description(Instant::now(), offer.clone())?;
        Ok(offer.sdp)
    }

    fn accept(&mut self, answer: String) -> TestResult {
        self.pc
            .set_remote_description(Instant::now(), RTCSessionDescription::answer(answer)?)?;
        Ok(())
    }

    /// One pass: read what arrived, fire timers, send what is due.
    fn pump(&mut self) -> TestResult {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = self.socket.recv_from(&mut buf) {
            self.server = Some(from);
            let is_rtp = len >= 12 && (128..192).contains(&buf[0]) && !(192..224).contains(&buf[1]);
            // SRTCP leaves the first header in clear: count PLIs (PSFB, FMT 1) on the wire.
            if len >= 12 && buf[1] == 206 && buf[0] & 0x1f == 1 {
                self.plis += 1;
            }
            if len >= 28 && buf[1] == 200 {
                self.srs += 1;
            }
            if len >= 12 && buf[1] == 205 && buf[0] & 0x1f == 15 {
                self.twcc += 1;
            }
            if let Some(every) = self.lose_every
                && is_rtp
            {
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                if seq.is_multiple_of(every) && self.lost.insert(seq) {
                    continue;
                }
            }
            let r =
                self.pc
                    .handle_read(udp_datagram(Instant::now(), self.local, from, &buf[..len]));
            if let Err(e) = r {
                return Err(format!("client could not read a datagram: {e}").into());
            }
        }
        let now = Instant::now();
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.pc.handle_timeout(now);
        }
        while let Some(msg) = self.pc.poll_write() {
            let _ = self.socket.send_to(&msg.message, msg.transport.peer_addr);
        }
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                self.connected = state == RTCPeerConnectionState::Connected;
            }
        }
        while let Some(msg) = self.pc.poll_read() {
            match msg.message {
                RTCMessage::RtpPacket(_, packet) => self.received.push(packet),
                RTCMessage::RtcpPacket(_, packets) => self.rembs.extend(
                    packets
                        .iter()
                        .filter_map(|p| {
                            p.as_any().downcast_ref::<ReceiverEstimatedMaximumBitrate>()
                        })
                        .map(|r| r.bitrate),
                ),
                _ => {}
            }
        }
        Ok(())
    }

    fn send_video(&mut self, seq: u16, payload: Bytes) -> TestResult {
        let mut packet = rtc::rtp::Packet::default();
        packet.header.version = 2;
        packet.header.payload_type = 96;
        packet.header.sequence_number = seq;
        packet.header.timestamp = u32::from(seq) * 3000;
        packet.header.ssrc = self.ssrc;
        packet.payload = payload;
        let sender = self.sender.ok_or("not a publisher")?;
        self.pc
            .rtp_sender(sender)
            .ok_or("no sender")?
            .write_rtp(Instant::now(), packet)?;
        self.pump()
    }
}

/// Pumps every client until `done` holds or the deadline passes.
async fn pump_until(
    clients: &mut [&mut Client],
    secs: u64,
    done: impl Fn(&[&mut Client]) -> bool,
) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(clients) {
        if Instant::now() > deadline {
            let states: Vec<_> = clients
                .iter()
                .map(|c| (c.connected, c.received.len(), c.plis))
                .collect();
            return Err(format!("timed out; (connected, received, plis) = {states:?}").into());
        }
        for c in clients.iter_mut() {
            c.pump()?;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn host() -> Result<WebRtcHost, WebRtcError> {
    WebRtcHost::start(NetworkSettings::default())
}

fn payload(i: u16) -> Bytes {
    let mut p = vec![0u8; 1000];
    p[..2].copy_from_slice(&i.to_be_bytes());
    p[2..]
        .iter_mut()
        .enumerate()
        .for_each(|(j, b)| *b = (j as u16 ^ i) as u8);
    Bytes::from(p)
}

fn drain(events: &mut UnboundedReceiver<EndpointEvent>) -> Vec<EndpointEvent> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn loopback_returns_the_media_the_client_sent() -> TestResult {
    let host = host()?;
    let (endpoint, mut events) = host
        .create_endpoint(ElementId(1), EndpointOptions::default())
        .await?;
    host.connect(ElementId(1), ElementId(1), MediaKind::Video)?;

    let mut client = Client::publisher(0x1234)?;
    let answer = endpoint.process_offer(client.offer()?).await?;
    assert!(
        answer.contains("a=rtpmap:96 VP8/90000"),
        "answer keeps the offer's VP8 type:\n{answer}"
    );
    client.accept(answer)?;
    pump_until(&mut [&mut client], 10, |c| c[0].connected).await?;
    endpoint.gather_candidates(Default::default()).await?;

    let sent: Vec<Bytes> = (0..60).map(payload).collect();
    for (i, p) in sent.iter().enumerate() {
        client.send_video(i as u16, p.clone())?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pump_until(&mut [&mut client], 5, |c| c[0].received.len() >= 55).await?;
    pump_until(&mut [&mut client], 3, |c| c[0].srs > 0)
        .await
        .map_err(|_| "no sender report for the forwarded stream")?;

    let sent: HashSet<&[u8]> = sent.iter().map(|p| p.as_ref()).collect();
    assert!(
        client
            .received
            .iter()
            .all(|p| sent.contains(p.payload.as_ref())),
        "payloads come back intact"
    );
    assert!(
        client.received.iter().all(|p| p.header.ssrc != 0x1234),
        "rkms sends on its own SSRC"
    );

    let events = drain(&mut events);
    for expected in [
        EndpointEvent::ConnectionStateChanged(ConnectionState::Connected),
        EndpointEvent::MediaFlowInStateChanged(
            MediaKind::Video,
            rkms_media::webrtc::FlowState::Flowing,
        ),
        EndpointEvent::MediaFlowOutStateChanged(
            MediaKind::Video,
            rkms_media::webrtc::FlowState::Flowing,
        ),
        EndpointEvent::IceGatheringDone,
    ] {
        assert!(
            events.contains(&expected),
            "missing {expected:?} in {events:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EndpointEvent::IceCandidateFound { .. }))
    );
    Ok(())
}

#[tokio::test]
async fn one_publisher_fans_out_to_every_subscriber() -> TestResult {
    // Two loop threads: the room (group 3) lives on one of them.
    let host = WebRtcHost::start(NetworkSettings {
        threads: 2,
        ..Default::default()
    })?;
    let room = EndpointOptions {
        group: Some(3),
        ..Default::default()
    };
    let (publisher, _pe) = host.create_endpoint(ElementId(10), room.clone()).await?;
    let (_elsewhere, _ee) = host
        .create_endpoint(
            ElementId(99),
            EndpointOptions {
                group: Some(4),
                ..Default::default()
            },
        )
        .await?;
    assert!(matches!(
        host.connect(ElementId(10), ElementId(99), MediaKind::Video),
        Err(WebRtcError::DifferentThreads(10, 99))
    ));
    let mut pub_client = Client::publisher(0x7777)?;
    let offer = pub_client.offer()?;
    pub_client.accept(publisher.process_offer(offer).await?)?;

    let mut subs = Vec::new();
    let mut viewers = Vec::new();
    for i in 0..3u32 {
        let id = ElementId(20 + i);
        let (endpoint, _events) = host.create_endpoint(id, room.clone()).await?;
        host.connect(ElementId(10), id, MediaKind::Video)?;
        let mut viewer = Client::viewer()?;
        let offer = viewer.offer()?;
        viewer.accept(endpoint.process_offer(offer).await?)?;
        subs.push(endpoint);
        viewers.push(viewer);
    }
    {
        let mut all: Vec<&mut Client> = viewers.iter_mut().collect();
        all.push(&mut pub_client);
        pump_until(&mut all, 10, |c| c.iter().all(|c| c.connected)).await?;
    }
    let sent: Vec<Bytes> = (0..60).map(payload).collect();
    for (i, p) in sent.iter().enumerate() {
        pub_client.send_video(i as u16, p.clone())?;
        for v in viewers.iter_mut() {
            v.pump()?;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut all: Vec<&mut Client> = viewers.iter_mut().collect();
    pump_until(&mut all, 5, |c| c.iter().all(|c| c.received.len() >= 55)).await?;
    let sent: HashSet<&[u8]> = sent.iter().map(|p| p.as_ref()).collect();
    for v in &viewers {
        assert!(v.received.iter().all(|p| sent.contains(p.payload.as_ref())));
        let seqs: HashSet<u16> = v
            .received
            .iter()
            .map(|p| p.header.sequence_number)
            .collect();
        assert_eq!(seqs.len(), v.received.len(), "no duplicates");
    }
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_typed_errors() -> TestResult {
    let host = host()?;
    let (endpoint, _events) = host
        .create_endpoint(ElementId(1), EndpointOptions::default())
        .await?;
    assert!(matches!(
        endpoint.process_offer("this is not sdp".into()).await,
        Err(WebRtcError::InvalidSdp(_))
    ));
    assert!(endpoint.process_answer("v=0\r\n".into()).await.is_err());
    // Candidates before the remote description are kept, not rejected.
    endpoint
        .add_ice_candidate(
            "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
            Some("0".into()),
            Some(0),
        )
        .await?;
    assert!(matches!(
        host.create_endpoint(ElementId(1), EndpointOptions::default())
            .await,
        Err(WebRtcError::Duplicate(1))
    ));
    // The endpoint still works after all that.
    let mut client = Client::publisher(1)?;
    let offer = client.offer()?;
    client.accept(endpoint.process_offer(offer).await?)?;
    assert!(matches!(
        endpoint
            .add_ice_candidate("candidate:garbage".into(), Some("0".into()), Some(0))
            .await,
        Err(WebRtcError::InvalidCandidate(_))
    ));
    pump_until(&mut [&mut client], 10, |c| c[0].connected).await?;
    Ok(())
}

#[tokio::test]
async fn answers_keep_offered_payload_types_and_codec_choice() -> TestResult {
    let host = host()?;
    let (endpoint, _events) = host
        .create_endpoint(ElementId(1), EndpointOptions::default())
        .await?;
    let mut client = Client::viewer()?;
    let offer = client.offer()?;
    // Keep only H264 in the video m-line: the answer must be H264 and keep the offer's types.
    let h264: Vec<&str> = offer
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter(|l| l.contains("H264/90000"))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(!h264.is_empty(), "the client offers H264");
    let keep: HashSet<&str> = h264.iter().copied().collect();
    let filtered: String = offer
        .lines()
        .filter_map(|l| {
            if l.starts_with("m=video") {
                let mut parts: Vec<&str> = l.split(' ').take(3).collect();
                parts.extend(h264.iter());
                return Some(parts.join(" "));
            }
            for prefix in ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"] {
                if let Some(rest) = l.strip_prefix(prefix) {
                    let pt = rest.split(' ').next().unwrap_or("");
                    if !keep.contains(pt) {
                        return None;
                    }
                }
            }
            Some(l.to_owned())
        })
        .map(|l| l + "\r\n")
        .collect();
    let answer = endpoint.process_offer(filtered).await?;
    let video = answer.split("m=video").nth(1).ok_or("no video in answer")?;
    assert!(
        video.contains("H264/90000") && !video.contains("VP8"),
        "H264 answer:\n{answer}"
    );
    let first_pt = video
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(3))
        .ok_or("no pt")?;
    assert!(
        keep.contains(first_pt),
        "answer uses the offer's H264 type {first_pt}"
    );
    Ok(())
}

#[tokio::test]
async fn viewers_get_keyframe_requests_through_and_lost_packets_resent() -> TestResult {
    let host = host()?;
    let (publisher, _pe) = host
        .create_endpoint(ElementId(1), EndpointOptions::default())
        .await?;
    let mut pub_client = Client::publisher(0x5151)?;
    let offer = pub_client.offer()?;
    pub_client.accept(publisher.process_offer(offer).await?)?;
    pump_until(&mut [&mut pub_client], 10, |c| c[0].connected).await?;
    // The publisher is sending before the viewer arrives, as in a live room.
    pub_client.send_video(0, payload(0))?;
    pump_until(&mut [&mut pub_client], 2, |_| true).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (viewer_ep, _ve) = host
        .create_endpoint(ElementId(2), EndpointOptions::default())
        .await?;
    host.connect(ElementId(1), ElementId(2), MediaKind::Video)?;
    let mut viewer = Client::viewer()?;
    viewer.lose_every = Some(7);
    let offer = viewer.offer()?;
    viewer.accept(viewer_ep.process_offer(offer).await?)?;
    pump_until(&mut [&mut viewer, &mut pub_client], 10, |c| {
        c[0].connected && c[1].plis > 0
    })
    .await?;

    let sent: Vec<Bytes> = (1..=60).map(payload).collect();
    for (i, p) in sent.iter().enumerate() {
        pub_client.send_video(i as u16 + 1, p.clone())?;
        viewer.pump()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wanted: HashSet<&[u8]> = sent.iter().map(|p| p.as_ref()).collect();
    let all_arrived = pump_until(&mut [&mut viewer, &mut pub_client], 10, |c| {
        let got: HashSet<&[u8]> = c[0].received.iter().map(|p| p.payload.as_ref()).collect();
        wanted.is_subset(&got)
    })
    .await;
    let got: HashSet<&[u8]> = viewer.received.iter().map(|p| p.payload.as_ref()).collect();
    assert!(
        all_arrived.is_ok(),
        "{} of {} payloads arrived, {} lost on purpose",
        wanted.intersection(&got).count(),
        wanted.len(),
        viewer.lost.len()
    );
    assert!(
        viewer.lost.len() >= 8,
        "the viewer really lost packets: {:?}",
        viewer.lost
    );
    Ok(())
}

#[tokio::test]
async fn generated_offers_negotiate_and_carry_media() -> TestResult {
    let host = host()?;
    let (endpoint, _events) = host
        .create_endpoint(
            ElementId(1),
            EndpointOptions {
                use_data_channels: true,
                ..Default::default()
            },
        )
        .await?;
    host.connect(ElementId(1), ElementId(1), MediaKind::Video)?;
    let offer = endpoint.generate_offer().await?;
    assert!(
        offer.contains("m=audio") && offer.contains("m=video"),
        "{offer}"
    );
    assert!(
        offer.contains("m=application"),
        "data channels offered:\n{offer}"
    );

    let mut client = Client::publisher(0x4242)?;
    client
        .pc
        .set_remote_description(Instant::now(), RTCSessionDescription::offer(offer)?)?;
    let answer = client.pc.create_answer(None)?;
    client
        .pc
        .set_local_description(Instant::now(), answer.clone())?;
    endpoint.process_answer(answer.sdp).await?;
    assert!(endpoint.remote_description().await?.is_some());
    assert!(endpoint.local_description().await?.is_some());
    pump_until(&mut [&mut client], 10, |c| c[0].connected).await?;

    let sent: Vec<Bytes> = (0..40).map(payload).collect();
    for (i, p) in sent.iter().enumerate() {
        client.send_video(i as u16, p.clone())?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pump_until(&mut [&mut client], 5, |c| c[0].received.len() >= 36).await?;
    let sent: HashSet<&[u8]> = sent.iter().map(|p| p.as_ref()).collect();
    assert!(
        client
            .received
            .iter()
            .all(|p| sent.contains(p.payload.as_ref()))
    );
    Ok(())
}

#[tokio::test]
async fn publishers_get_transport_feedback_and_the_bandwidth_bound() -> TestResult {
    let host = host()?;
    let capped = BandwidthLimits {
        max_video_recv_kbps: 300,
        ..BandwidthLimits::default()
    };
    let (endpoint, _events) = host
        .create_endpoint(
            ElementId(1),
            EndpointOptions {
                bandwidth: capped,
                ..EndpointOptions::default()
            },
        )
        .await?;
    host.connect(ElementId(1), ElementId(1), MediaKind::Video)?;
    let mut client = Client::publisher(0x7777)?;
    let answer = endpoint.process_offer(client.offer()?).await?;
    assert!(answer.contains("b=AS:300"), "{answer}");
    client.accept(answer)?;
    pump_until(&mut [&mut client], 10, |c| c[0].connected).await?;
    for i in 0..100 {
        client.send_video(i, payload(i))?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pump_until(&mut [&mut client], 5, |c| {
        c[0].twcc > 0 && c[0].rembs.contains(&300_000.0)
    })
    .await
    .map_err(|e| format!("{e}; twcc {}, rembs {:?}", client.twcc, client.rembs))?;

    // Lifting the receive cap at run time: the loopback sink has no send maximum by default,
    // so the bound is lifted (sent as a bound far above any camera).
    endpoint.set_bandwidth(BandwidthLimits::default())?;
    pump_until(&mut [&mut client], 5, |c| {
        c[0].rembs.last().is_some_and(|bps| *bps > 100_000_000.0)
    })
    .await
    .map_err(|e| format!("{e}; rembs {:?}", client.rembs))?;
    Ok(())
}

/// Endpoint 1 connected to itself and a publisher client connected to it, with media flowing.
async fn loopback_call(
    host: &WebRtcHost,
    ssrc: u32,
) -> Result<(rkms_media::webrtc::Endpoint, Client), Box<dyn std::error::Error>> {
    let (endpoint, _events) = host
        .create_endpoint(ElementId(1), EndpointOptions::default())
        .await?;
    host.connect(ElementId(1), ElementId(1), MediaKind::Video)?;
    let mut client = Client::publisher(ssrc)?;
    let offer = client.offer()?;
    client.accept(endpoint.process_offer(offer).await?)?;
    pump_until(&mut [&mut client], 10, |c| c[0].connected).await?;
    client.send_video(0, payload(0))?;
    pump_until(&mut [&mut client], 5, |c| !c[0].received.is_empty()).await?;
    Ok((endpoint, client))
}

/// A real Chromium offer (audio, video, data channel), the seed of the mutated ones.
const CHROMIUM_OFFER: &str = include_str!("fixtures/chromium-offer.sdp");

/// `offer` damaged the way broken clients and middleboxes damage SDP: a line dropped,
/// doubled, moved or cut short, numbers made huge or negative, bytes that are not text, or the
/// whole description truncated.
fn mutate(offer: &str, rng: &mut impl rand::Rng) -> String {
    let mut lines: Vec<String> = offer.lines().map(str::to_owned).collect();
    for _ in 0..rng.random_range(1..=3) {
        let i = rng.random_range(0..lines.len());
        match rng.random_range(0..7) {
            0 => {
                lines.remove(i);
            }
            1 => lines.insert(i, lines[i].clone()),
            2 => {
                let j = rng.random_range(0..lines.len());
                lines.swap(i, j);
            }
            3 => {
                let cut = rng.random_range(0..=lines[i].len());
                lines[i] = lines[i].chars().take(cut).collect();
            }
            4 => {
                let number = ["0", "-1", "65536", "4294967296", "99999999999999999999", ""]
                    [rng.random_range(0..6)];
                lines[i] = lines[i]
                    .split(' ')
                    .map(|w| match w.parse::<i64>() {
                        Ok(_) => number,
                        Err(_) => w,
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            5 => lines[i].push_str("\u{0}\u{fffd}\u{7f}"),
            _ => {
                let (attribute, value) = [
                    ("a=rtpmap:", "96 VP8/0"),
                    ("a=fmtp:", "96 apt=96"),
                    ("a=ssrc-group:", "FID 1"),
                    ("a=extmap:", "0 urn:x"),
                    ("a=candidate:", "1 1 udp 1 999.1.1.1 0 typ host"),
                    ("m=", "video 9 UDP/TLS/RTP/SAVPF"),
                    ("a=setup:", "passive"),
                    ("a=fingerprint:", "sha-256 00"),
                ][rng.random_range(0..8)];
                lines.insert(i, format!("{attribute}{value}"));
            }
        }
    }
    let mut sdp = lines.join("\r\n") + "\r\n";
    if rng.random_bool(0.1) {
        sdp.truncate(rng.random_range(0..sdp.len()));
        while !sdp.is_char_boundary(sdp.len()) {
            sdp.pop();
        }
    }
    sdp
}

/// Hundreds of damaged offers, each to a new endpoint on the same loop as a live call: every
/// one is answered or refused with an error, none takes the loop down, and the live call's
/// media keeps flowing throughout.
#[tokio::test]
async fn damaged_offers_are_answered_or_refused_and_a_live_call_keeps_its_media() -> TestResult {
    use rand::SeedableRng;
    let host = host()?;
    let (_live, mut client) = loopback_call(&host, 0x4242).await?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut answered, mut refused) = (0, 0);
    for i in 0..400u16 {
        let offer = mutate(CHROMIUM_OFFER, &mut rng);
        let (endpoint, _events) = host
            .create_endpoint(ElementId(1000 + u32::from(i)), EndpointOptions::default())
            .await?;
        match tokio::time::timeout(
            Duration::from_secs(5),
            endpoint.process_offer(offer.clone()),
        )
        .await
        {
            Ok(Ok(_)) => answered += 1,
            // Refused as bad SDP, not lost to an internal error that closed the endpoint.
            Ok(Err(WebRtcError::InvalidSdp(_) | WebRtcError::Negotiation(_))) => refused += 1,
            Ok(Err(e)) => return Err(format!("{e} for:\n{offer}").into()),
            Err(_) => return Err(format!("no answer nor error for:\n{offer}").into()),
        }
        drop(endpoint);
        // The live call keeps forwarding between damaged offers.
        let before = client.received.len();
        // Sequence number 0 went out in the set-up.
        client.send_video(i + 1, payload(i + 1))?;
        pump_until(&mut [&mut client], 5, |c| c[0].received.len() > before)
            .await
            .map_err(|e| format!("live call stopped after offer {i}: {e}\n{offer}"))?;
    }
    eprintln!("{answered} damaged offers answered, {refused} refused");
    assert!(
        answered > 0 && refused > 0,
        "{answered} answered, {refused} refused"
    );
    // The original offer still negotiates a working call on a fresh endpoint.
    let (endpoint, _events) = host
        .create_endpoint(ElementId(2), EndpointOptions::default())
        .await?;
    let mut fresh = Client::publisher(0x4343)?;
    let offer = fresh.offer()?;
    fresh.accept(endpoint.process_offer(offer).await?)?;
    pump_until(&mut [&mut fresh], 10, |c| c[0].connected).await?;
    Ok(())
}

/// A datagram that looks, by its first byte, like STUN, DTLS, RTP or RTCP (the demultiplexing
/// of RFC 7983) and is damaged or random after that.
fn garbage_datagram(rng: &mut impl rand::Rng, ssrc: u32) -> Vec<u8> {
    let len = rng.random_range(0..1500);
    let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    if d.len() < 12 {
        return d;
    }
    match rng.random_range(0..5) {
        // STUN: a binding request header with the magic cookie, its length field lying.
        0 => {
            d[..2].copy_from_slice(&[0x00, 0x01]);
            d[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        }
        // A DTLS record: handshake or application data, version 1.2.
        1 => d[..3].copy_from_slice(&[if rng.random() { 22 } else { 23 }, 0xfe, 0xfd]),
        // RTP with the client's own SSRC: SRTP authentication must refuse it.
        2 => {
            d[..2].copy_from_slice(&[0x80, 96]);
            d[8..12].copy_from_slice(&ssrc.to_be_bytes());
        }
        // RTCP: SR..PSFB with a random count.
        3 => {
            d[0] = 0x80 | rng.random_range(0..32);
            d[1] = rng.random_range(200..=206);
        }
        // Anything at all.
        _ => {}
    }
    d
}

/// Damaged and random datagrams from the call's own address (reaching its peer's ICE, DTLS,
/// SRTP and RTCP parsing) and from a stranger: none closes the call or stops its media.
#[tokio::test]
async fn damaged_datagrams_do_not_break_a_live_call() -> TestResult {
    use rand::SeedableRng;
    let host = host()?;
    let (_live, mut client) = loopback_call(&host, 0x5151).await?;
    let server = client.server.ok_or("no datagram from rkms")?;
    let stranger = UdpSocket::bind("127.0.0.1:0")?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for i in 0..200u16 {
        for _ in 0..10 {
            client
                .socket
                .send_to(&garbage_datagram(&mut rng, 0x5151), server)?;
            stranger.send_to(&garbage_datagram(&mut rng, 0x5151), server)?;
        }
        let before = client.received.len();
        // Sequence number 0 went out in the set-up.
        client.send_video(i + 1, payload(i + 1))?;
        pump_until(&mut [&mut client], 5, |c| c[0].received.len() > before)
            .await
            .map_err(|e| format!("media stopped after {} damaged datagrams: {e}", 20 * i))?;
    }
    assert!(client.connected, "the call was closed");
    Ok(())
}
