//! Client peers for the forwarding examples: `rtc` peers on their own sockets in one thread,
//! a publisher paced at a fixed packet rate and subscribers that count what arrives.

#![allow(dead_code)] // each example uses part of this

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use rkms_media::webrtc::peer_io::{host_candidate, udp_datagram};
use rkms_media::webrtc::srtp_tap::{SUPPORTED_PROFILES, SrtpKeyTap};
use rtc::ice::tcp_type::TcpType;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub const VIDEO_PT: u8 = 96;
pub const PAYLOAD_LEN: usize = 1_080;

pub fn thread_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD reports the calling thread.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

pub fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// A peer; the server's peers get the crate's default interceptors (NACK, reports, TWCC), the
/// clients none: they see only a sample of the media and must not NACK the rest.
pub fn new_peer(tap: Option<Arc<SrtpKeyTap>>, ufrag: &str) -> Result<RTCPeerConnection, Error> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs()?;
    let registry = if tap.is_some() {
        register_default_interceptors(Registry::new(), &mut media_engine)?
    } else {
        Registry::new()
    };
    let mut settings = SettingEngineBuilder::new()
        .with_srtp_protection_profiles(SUPPORTED_PROFILES.to_vec())
        .with_ice_credentials(ufrag.to_owned(), format!("{ufrag}-password-of-24-chars"));
    if let Some(tap) = tap {
        settings = settings.with_crypto_provider(tap);
    }
    Ok(RTCPeerConnectionBuilder::new()
        .with_setting_engine(settings.build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(Instant::now())?)
}

pub fn add_host_candidate(pc: &mut RTCPeerConnection, addr: SocketAddr) -> Result<(), Error> {
    pc.add_local_candidate(host_candidate(addr, TcpType::Unspecified)?)?;
    Ok(())
}

pub fn video_track(ssrc: u32, name: &str) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("{name}-stream"),
        format!("{name}-video"),
        format!("{name}-video"),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: vp8_codec(),
            ..Default::default()
        }],
    )
}

/// One client peer with its own socket.
pub struct ClientPeer {
    pub pc: RTCPeerConnection,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub deadline: Instant,
    pub connected: bool,
    pub sender: Option<RTCRtpSenderId>,
    pub ssrc: u32,
    pub rtp_seen: u64,
}

/// State shared between the server side and the client thread.
#[derive(Default)]
pub struct Shared {
    /// Ends the client thread.
    pub stop: AtomicBool,
    /// Subscribers the server side has set up; the publisher starts when all are.
    pub subscribers_connected: AtomicU64,
    /// Subscribers the client thread sees connected.
    pub clients_connected: AtomicU64,
    /// Packets the publisher has sent.
    pub published: AtomicU64,
}

pub fn set_buffers(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads `size` for the duration of the call.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

pub fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && (128..192).contains(&datagram[0]) && !(192..224).contains(&datagram[1])
}

pub fn run_clients(
    mut clients: Vec<ClientPeer>,
    pps: u64,
    shared: &Shared,
) -> Result<(u64, u64), Error> {
    let mut poll = Poll::new()?;
    for (i, c) in clients.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.socket, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 2048];
    let payload = Bytes::from(vec![0x5a; PAYLOAD_LEN]);
    let interval = Duration::from_nanos(1_000_000_000 / pps.max(1));
    let mut next_send = Instant::now();
    let mut seq = 0u16;
    let mut sending = false;
    let mut decrypted = 0u64;
    let subscribers = clients.len() as u64 - 1;
    // Feed a sample of the media to the client peers (decrypting everything would need more
    // CPU than this machine has); every datagram is still counted.
    let sample_every = (subscribers / 10).max(1);

    while !shared.stop.load(Ordering::Relaxed) {
        let wait = next_send
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(2));
        poll.poll(&mut events, Some(wait))?;
        for event in events.iter() {
            let c = &mut clients[event.token().0];
            while let Ok((len, from)) = c.socket.recv_from(&mut buf) {
                let datagram = &buf[..len];
                if c.connected && is_rtp(datagram) {
                    c.rtp_seen += 1;
                    if !c.rtp_seen.is_multiple_of(sample_every) {
                        continue;
                    }
                }
                let _ =
                    c.pc.handle_read(udp_datagram(Instant::now(), c.local, from, datagram));
                decrypted += service_client(c)?;
            }
        }
        let now = Instant::now();
        for c in clients.iter_mut() {
            if c.deadline <= now {
                let _ = c.pc.handle_timeout(now);
                decrypted += service_client(c)?;
            }
        }
        let connected = clients.iter().skip(1).filter(|c| c.connected).count();
        shared
            .clients_connected
            .store(connected as u64, Ordering::Relaxed);
        // The publisher paces its video.
        let publisher = &mut clients[0];
        if publisher.connected
            && (sending || shared.subscribers_connected.load(Ordering::Relaxed) == subscribers)
        {
            sending = true;
            if now.saturating_duration_since(next_send) > Duration::from_millis(100) {
                next_send = now; // fell behind: skip rather than burst
            }
            while next_send <= now {
                next_send += interval;
                seq = seq.wrapping_add(1);
                let mut packet = rtc::rtp::Packet::default();
                packet.header.version = 2;
                packet.header.payload_type = VIDEO_PT;
                packet.header.sequence_number = seq;
                packet.header.timestamp = u32::from(seq) * 3000;
                packet.header.ssrc = publisher.ssrc;
                packet.payload = payload.clone();
                if let Some(sender) = publisher.sender
                    && let Some(mut s) = publisher.pc.rtp_sender(sender)
                {
                    s.write_rtp(now, packet)?;
                    shared.published.fetch_add(1, Ordering::Relaxed);
                }
                service_client(publisher)?;
            }
        } else {
            next_send = now;
        }
    }
    let received = clients.iter().skip(1).map(|c| c.rtp_seen).sum();
    Ok((received, decrypted))
}

/// Drains a client's outputs; returns how many RTP packets it decrypted.
pub fn service_client(c: &mut ClientPeer) -> Result<u64, Error> {
    while let Some(msg) = c.pc.poll_write() {
        let _ = c.socket.send_to(&msg.message, msg.transport.peer_addr);
    }
    while let Some(event) = c.pc.poll_event() {
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                c.connected = state == RTCPeerConnectionState::Connected;
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(_)) => {}
            _ => {}
        }
    }
    let mut rtp = 0;
    while let Some(msg) = c.pc.poll_read() {
        if let RTCMessage::RtpPacket(..) = msg.message {
            rtp += 1;
        }
    }
    c.deadline =
        c.pc.poll_timeout()
            .unwrap_or(Instant::now() + Duration::from_secs(1));
    Ok(rtp)
}
