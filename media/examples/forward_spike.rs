//! The forwarding spike: one publisher, N subscribers, real ICE + DTLS + SRTP, and the server's
//! CPU per forwarded packet for three send paths next to the floor measured in the same run.
//!
//! ```text
//! cargo run --release -p rkms-media --example forward_spike -- --subscribers 100 --seconds 5
//! ```
//!
//! The server thread runs every rkms-side `rtc` peer on ONE UDP socket from its own mio loop
//! (demultiplexed by remote address, new addresses learned from the STUN USERNAME). A second
//! thread runs the client peers, each on its own socket. Once every subscriber is connected the
//! server forwards the publisher's video packets to all subscribers, in three phases:
//!
//! - `crate`: rewrite the header and call `RTCRtpSender::write_rtp`, then `poll_write` + `send_to`;
//! - `fast`: write the rewritten header + payload into a reusable buffer, protect it in place
//!   with the session's SRTP key (`SrtpOut`), one `send_to` per subscriber;
//! - `batch`: as `fast`, but all copies of a packet leave in `sendmmsg` batches of 64.
//!
//! and then measures the floor: one in-place protect + one `send_to` of the same packet.
//! CPU is the server thread's user+sys time (`getrusage(RUSAGE_THREAD)`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use rkms_media::webrtc::srtp_out::{MAX_SRTP_OVERHEAD, RolloverCounter, SrtpOut};
use rkms_media::webrtc::srtp_tap::{SUPPORTED_PROFILES, SrtpKeyTap};
use rkms_media::webrtc::udp::{SendBatch, stun_local_ufrag};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

type Error = Box<dyn std::error::Error + Send + Sync>;

const VIDEO_PT: u8 = 96;
const PAYLOAD_LEN: usize = 1_080;
const FLOOR_ITERATIONS: u32 = 20_000;

struct Args {
    subscribers: usize,
    seconds: u64,
    pps: u64,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        subscribers: 100,
        seconds: 5,
        pps: 170,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--subscribers" => args.subscribers = value.parse()?,
            "--seconds" => args.seconds = value.parse()?,
            "--pps" => args.pps = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

fn thread_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD reports the calling thread.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn vp8_codec() -> RTCRtpCodec {
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
fn new_peer(tap: Option<Arc<SrtpKeyTap>>, ufrag: &str) -> Result<RTCPeerConnection, Error> {
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

fn add_host_candidate(pc: &mut RTCPeerConnection, addr: SocketAddr) -> Result<(), Error> {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    Ok(())
}

fn video_track(ssrc: u32, name: &str) -> MediaStreamTrack {
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

/// One rkms-side peer on the shared socket.
struct ServerPeer {
    pc: RTCPeerConnection,
    tap: Arc<SrtpKeyTap>,
    deadline: Instant,
    connected: bool,
    /// For subscribers: the sender the forwarded video goes out on and its outbound state.
    sender: Option<RTCRtpSenderId>,
    ssrc: u32,
    seq: u16,
    roc: RolloverCounter,
    out: Option<SrtpOut>,
    remote: Option<SocketAddr>,
}

/// One client peer with its own socket.
struct ClientPeer {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    deadline: Instant,
    connected: bool,
    sender: Option<RTCRtpSenderId>,
    ssrc: u32,
    rtp_seen: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    Warmup,
    Idle,
    Crate,
    Fast,
    Batch,
    Done,
}

#[derive(Default)]
struct PhaseFigure {
    cpu: Duration,
    legs: u64,
    source_packets: u64,
}

struct Report {
    idle: PhaseFigure,
    crate_path: PhaseFigure,
    fast: PhaseFigure,
    batch: PhaseFigure,
    floor_send: Duration,
    floor_protect: Duration,
}

struct Shared {
    stop: AtomicBool,
    subscribers_connected: AtomicU64,
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let n = args.subscribers;

    let server_socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let server_addr = server_socket.local_addr()?;
    // Loopback fan-out bursts are large; a deep send buffer keeps the kernel from dropping them.
    set_buffers(&server_socket);

    // The publisher: the client offers one video track, the server answers.
    let mut server_peers = Vec::with_capacity(n + 1);
    let mut clients = Vec::with_capacity(n + 1);
    let mut ufrags = HashMap::new();
    for i in 0..=n {
        let tap = SrtpKeyTap::new()?;
        let ufrag = format!("s{i:07}");
        let mut server = new_peer(Some(tap.clone()), &ufrag)?;
        let client_socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        set_buffers(&client_socket);
        let client_addr = client_socket.local_addr()?;
        let mut client = new_peer(None, &format!("c{i:07}"))?;
        add_host_candidate(&mut client, client_addr)?;
        add_host_candidate(&mut server, server_addr)?;
        let ssrc = 0x1000_0000 + i as u32;
        let (mut server_sender, mut client_sender) = (None, None);
        if i == 0 {
            client_sender = Some(client.add_track(video_track(ssrc, "publisher"))?);
            let offer = client.create_offer(None)?;
            client.set_local_description(Instant::now(), offer.clone())?;
            server
                .set_remote_description(Instant::now(), RTCSessionDescription::offer(offer.sdp)?)?;
            let answer = server.create_answer(None)?;
            server.set_local_description(Instant::now(), answer.clone())?;
            client.set_remote_description(
                Instant::now(),
                RTCSessionDescription::answer(answer.sdp)?,
            )?;
        } else {
            server_sender = Some(server.add_track(video_track(ssrc, &format!("sub{i}")))?);
            let offer = server.create_offer(None)?;
            server.set_local_description(Instant::now(), offer.clone())?;
            client
                .set_remote_description(Instant::now(), RTCSessionDescription::offer(offer.sdp)?)?;
            let answer = client.create_answer(None)?;
            client.set_local_description(Instant::now(), answer.clone())?;
            server.set_remote_description(
                Instant::now(),
                RTCSessionDescription::answer(answer.sdp)?,
            )?;
        }
        ufrags.insert(ufrag.into_bytes(), i);
        server_peers.push(ServerPeer {
            pc: server,
            tap,
            deadline: Instant::now(),
            connected: false,
            sender: server_sender,
            ssrc,
            seq: 1000,
            roc: RolloverCounter::default(),
            out: None,
            remote: None,
        });
        client_socket.set_nonblocking(true)?;
        clients.push(ClientPeer {
            pc: client,
            socket: UdpSocket::from_std(client_socket),
            local: client_addr,
            deadline: Instant::now(),
            connected: false,
            sender: client_sender,
            ssrc,
            rtp_seen: 0,
        });
    }
    eprintln!("{n} subscribers + 1 publisher negotiated; connecting...");

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        subscribers_connected: AtomicU64::new(0),
    });
    let client_shared = shared.clone();
    let pps = args.pps;
    let client_thread = std::thread::Builder::new()
        .name("clients".into())
        .spawn(move || run_clients(clients, pps, &client_shared))?;

    server_socket.set_nonblocking(true)?;
    let report = run_server(
        UdpSocket::from_std(server_socket),
        server_addr,
        server_peers,
        ufrags,
        Duration::from_secs(args.seconds),
        &shared,
    )?;
    shared.stop.store(true, Ordering::Relaxed);
    let (received, decrypted) = client_thread
        .join()
        .map_err(|_| "client thread panicked")??;

    // The idle phase receives the publisher's packets without forwarding them: its CPU per
    // source packet (receive, decrypt, timers, RTCP) is taken out so that the figure is the cost
    // of the fan-out itself.
    let idle_per_source = report.idle.cpu.as_secs_f64() / report.idle.source_packets.max(1) as f64;
    let per = |f: &PhaseFigure| {
        let fanout = f.cpu.as_secs_f64() - idle_per_source * f.source_packets as f64;
        fanout * 1e6 / f.legs.max(1) as f64
    };
    let floor = report.floor_send.as_secs_f64() * 1e6 / f64::from(FLOOR_ITERATIONS);
    let protect = report.floor_protect.as_secs_f64() * 1e6 / f64::from(FLOOR_ITERATIONS);
    println!("subscribers={n} pps={pps} seconds/phase={}", args.seconds);
    println!(
        "idle: {} source packets, {:.2} us CPU per source packet (receive, decrypt, timers)",
        report.idle.source_packets,
        idle_per_source * 1e6
    );
    println!("floor: protect {protect:.2} us, protect+send_to {floor:.2} us per packet");
    for (name, f) in [
        ("crate", &report.crate_path),
        ("fast", &report.fast),
        ("batch", &report.batch),
    ] {
        println!(
            "{name:>5}: {:>9} forwarded, {:.2} us CPU per forwarded packet ({:.2}x floor)",
            f.legs,
            per(f),
            per(f) / floor
        );
    }
    println!("clients: {received} RTP datagrams received, {decrypted} sampled packets decrypted");
    Ok(())
}

fn set_buffers(socket: &std::net::UdpSocket) {
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

fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && (128..192).contains(&datagram[0]) && !(192..224).contains(&datagram[1])
}

/// Drains a peer's outputs; returns the RTP packets it received.
fn service_server(
    peer: &mut ServerPeer,
    socket: &UdpSocket,
    received: &mut Vec<rtc::rtp::Packet>,
) -> Result<(), Error> {
    while let Some(msg) = peer.pc.poll_write() {
        peer.remote = Some(msg.transport.peer_addr);
        let _ = socket.send_to(&msg.message, msg.transport.peer_addr);
    }
    while let Some(event) = peer.pc.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
            peer.connected = state == RTCPeerConnectionState::Connected;
            if peer.connected
                && peer.out.is_none()
                && let Some(key) = peer.tap.local_key()
            {
                peer.out = Some(SrtpOut::new(&key, peer.tap.inner_crypto())?);
            }
        }
    }
    while let Some(msg) = peer.pc.poll_read() {
        if let RTCMessage::RtpPacket(_, packet) = msg.message {
            received.push(packet);
        }
    }
    peer.deadline = peer
        .pc
        .poll_timeout()
        .unwrap_or(Instant::now() + Duration::from_secs(1));
    Ok(())
}

fn run_server(
    socket: UdpSocket,
    local_addr: SocketAddr,
    mut peers: Vec<ServerPeer>,
    ufrags: HashMap<Vec<u8>, usize>,
    phase_len: Duration,
    shared: &Shared,
) -> Result<Report, Error> {
    let mut socket = socket;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(16);
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut received = Vec::with_capacity(64);
    let mut batch = SendBatch::new(64);
    let mut scratch = [0u8; 1600];

    let mut phase = Phase::Connecting;
    let mut phase_started = Instant::now();
    let mut phase_cpu = thread_cpu();
    let mut legs = 0u64;
    let mut source_packets = 0u64;
    let mut progress_at = Duration::from_secs(2);
    let mut report = Report {
        idle: PhaseFigure::default(),
        crate_path: PhaseFigure::default(),
        fast: PhaseFigure::default(),
        batch: PhaseFigure::default(),
        floor_send: Duration::ZERO,
        floor_protect: Duration::ZERO,
    };
    let mut last_packet: Option<rtc::rtp::Packet> = None;

    while phase != Phase::Done {
        let next_deadline = peers
            .iter()
            .map(|p| p.deadline)
            .min()
            .unwrap_or_else(Instant::now);
        let wait = next_deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        poll.poll(&mut events, Some(wait))?;

        // A bounded number of datagrams per pass, so timers and phases keep running under load.
        for _ in 0..256 {
            let (len, from) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            let datagram = &buf[..len];
            let index = match by_addr.get(&from) {
                Some(&i) => i,
                None => match stun_local_ufrag(datagram).and_then(|u| ufrags.get(u)) {
                    Some(&i) => {
                        by_addr.insert(from, i);
                        i
                    }
                    None => continue,
                },
            };
            let now = Instant::now();
            let peer = &mut peers[index];
            let read = peer.pc.handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: BytesMut::from(datagram),
            });
            if let Err(e) = read {
                tracing::debug!("peer {index}: {e}");
            }
            service_server(peer, &socket, &mut received)?;
            if index == 0 {
                for packet in received.drain(..) {
                    if matches!(phase, Phase::Crate | Phase::Fast | Phase::Batch) {
                        legs += forward(phase, &packet, &mut peers[1..], &socket, &mut batch, now)?;
                    }
                    source_packets += 1;
                    last_packet = Some(packet);
                }
            }
        }

        let now = Instant::now();
        for peer in peers.iter_mut() {
            if peer.deadline <= now {
                let _ = peer.pc.handle_timeout(now);
                service_server(peer, &socket, &mut received)?;
            }
        }
        received.clear();

        let connected = peers[1..]
            .iter()
            .filter(|p| p.connected && p.out.is_some())
            .count();
        shared
            .subscribers_connected
            .store(connected as u64, Ordering::Relaxed);
        let elapsed = phase_started.elapsed();
        if phase == Phase::Connecting && elapsed >= progress_at {
            progress_at += Duration::from_secs(2);
            let dtls = peers.iter().filter(|p| p.connected).count();
            eprintln!("{:?}: {dtls} connected, {connected} with keys", elapsed);
        }
        let next = match phase {
            Phase::Connecting if connected == peers.len() - 1 && peers[0].connected => {
                Some(Phase::Warmup)
            }
            Phase::Warmup if elapsed >= Duration::from_secs(1) => Some(Phase::Idle),
            Phase::Idle if elapsed >= phase_len => Some(Phase::Crate),
            Phase::Crate if elapsed >= phase_len => Some(Phase::Fast),
            Phase::Fast if elapsed >= phase_len => Some(Phase::Batch),
            Phase::Batch if elapsed >= phase_len => Some(Phase::Done),
            _ => None,
        };
        if let Some(next) = next {
            let cpu = thread_cpu();
            let figure = PhaseFigure {
                cpu: cpu - phase_cpu,
                legs,
                source_packets,
            };
            match phase {
                Phase::Idle => report.idle = figure,
                Phase::Crate => report.crate_path = figure,
                Phase::Fast => report.fast = figure,
                Phase::Batch => report.batch = figure,
                _ => {}
            }
            eprintln!("{phase:?} -> {next:?} ({legs} forwarded)");
            phase = next;
            phase_started = Instant::now();
            phase_cpu = thread_cpu();
            legs = 0;
            source_packets = 0;
        }
    }

    // The floor: one in-place protect + one send_to of the same packet, to subscriber 1.
    let packet = last_packet.ok_or("the publisher sent nothing")?;
    let sub = &mut peers[1];
    let to = sub.remote.ok_or("subscriber without address")?;
    let start = thread_cpu();
    for _ in 0..FLOOR_ITERATIONS {
        let len = write_packet(&mut scratch, &packet, sub);
        let _ = socket.send_to(&scratch[..len], to);
    }
    report.floor_send = thread_cpu() - start;
    let start = thread_cpu();
    for _ in 0..FLOOR_ITERATIONS {
        write_packet(&mut scratch, &packet, sub);
    }
    report.floor_protect = thread_cpu() - start;
    Ok(report)
}

/// Writes `packet` rewritten for `sub` into `out` and protects it; returns the length.
fn write_packet(out: &mut [u8], packet: &rtc::rtp::Packet, sub: &mut ServerPeer) -> usize {
    let seq = sub.seq;
    sub.seq = sub.seq.wrapping_add(1);
    out[0] = 0x80;
    out[1] = VIDEO_PT | if packet.header.marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&packet.header.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&sub.ssrc.to_be_bytes());
    let len = 12 + packet.payload.len();
    out[12..len].copy_from_slice(&packet.payload);
    let roc = sub.roc.next(seq);
    match sub
        .out
        .as_mut()
        .map(|o| o.protect(out, 12, len, sub.ssrc, seq, roc))
    {
        Some(Ok(n)) => n,
        _ => 0,
    }
}

fn forward(
    phase: Phase,
    packet: &rtc::rtp::Packet,
    subs: &mut [ServerPeer],
    socket: &UdpSocket,
    batch: &mut SendBatch,
    now: Instant,
) -> Result<u64, Error> {
    let mut legs = 0;
    for sub in subs.iter_mut() {
        let Some(to) = sub.remote else { continue };
        match phase {
            Phase::Crate => {
                let Some(sender) = sub.sender else { continue };
                let mut p = packet.clone();
                p.header.ssrc = sub.ssrc;
                p.header.payload_type = VIDEO_PT;
                p.header.sequence_number = sub.seq;
                p.header.extension = false;
                p.header.extensions.clear();
                sub.seq = sub.seq.wrapping_add(1);
                if let Some(mut s) = sub.pc.rtp_sender(sender) {
                    s.write_rtp(now, p)?;
                }
                while let Some(msg) = sub.pc.poll_write() {
                    let _ = socket.send_to(&msg.message, msg.transport.peer_addr);
                }
                sub.deadline = sub
                    .pc
                    .poll_timeout()
                    .unwrap_or(now + Duration::from_secs(1));
            }
            Phase::Fast => {
                let mut out = [0u8; 12 + 1500 + MAX_SRTP_OVERHEAD];
                let len = write_packet(&mut out, packet, sub);
                let _ = socket.send_to(&out[..len], to);
            }
            _ => {
                if batch.is_full() {
                    batch.flush(socket);
                }
                if let Some(slot) = batch.slot(to) {
                    let len = write_packet(slot, packet, sub);
                    batch.commit(len);
                }
            }
        }
        legs += 1;
    }
    batch.flush(socket);
    Ok(legs)
}

fn run_clients(
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
                let _ = c.pc.handle_read(TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr: c.local,
                        peer_addr: from,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(datagram),
                });
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
fn service_client(c: &mut ClientPeer) -> Result<u64, Error> {
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
