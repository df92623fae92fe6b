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
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use rkms_media::webrtc::peer_io::udp_datagram;
use rkms_media::webrtc::srtp_out::{MAX_SRTP_OVERHEAD, RolloverCounter, SrtpOut};
use rkms_media::webrtc::srtp_tap::SrtpKeyTap;
use rkms_media::webrtc::udp::{SendBatch, stun_local_ufrag};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;

#[path = "support/clients.rs"]
mod clients;

use clients::{
    ClientPeer, Error, Shared, VIDEO_PT, add_host_candidate, new_peer, run_clients, set_buffers,
    thread_cpu, video_track,
};

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

    let shared = Arc::new(Shared::default());
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
            let read = peer
                .pc
                .handle_read(udp_datagram(now, local_addr, from, datagram));
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
