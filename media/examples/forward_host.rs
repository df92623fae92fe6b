//! The production forwarding path measured: one publisher, N subscribers, all through
//! [`WebRtcHost`] (socket loop, routing core, per-sink rewriting and extensions, in-place SRTP,
//! `sendmmsg`), against client `rtc` peers doing real ICE + DTLS + SRTP.
//!
//! ```text
//! cargo run --release -p rkms-media --example forward_host -- --subscribers 100 --seconds 5
//! ```
//!
//! Reports the loop thread's CPU (user+sys from `/proc/self/task/<tid>/stat`) per forwarded
//! packet: an idle phase (the publisher's packets arrive, nobody is connected to it) is taken
//! out of the forwarding phase, and the floor (one in-place protect + one `send_to` of the same
//! size, on this thread) is measured in the same run.

#[path = "support/clients.rs"]
mod clients;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clients::{
    ClientPeer, Error, PAYLOAD_LEN, Shared, add_host_candidate, new_peer, run_clients, set_buffers,
    thread_cpu, video_track,
};
use rkms_media::graph::{ElementId, MediaKind};
use rkms_media::webrtc::srtp_out::{MAX_SRTP_OVERHEAD, RolloverCounter, SrtpOut};
use rkms_media::webrtc::srtp_tap::{SrtpMasterKey, SrtpProfile};
use rkms_media::webrtc::{EndpointOptions, NetworkSettings, WebRtcHost};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

const FLOOR_ITERATIONS: u32 = 20_000;

fn arg(name: &str, default: u64) -> Result<u64, Error> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

/// This process's resident set, KiB.
fn rss_kib() -> Result<u64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// CPU time of the thread called `name` in this process.
fn named_thread_cpu(name: &str) -> Result<Duration, Error> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        if std::fs::read_to_string(path.join("comm"))?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat"))?;
        let after = stat.rsplit_once(") ").ok_or("bad stat")?.1;
        let fields: Vec<&str> = after.split(' ').collect();
        let used: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        return Ok(Duration::from_nanos(used * 1_000_000_000 / ticks));
    }
    Err(format!("no thread {name}").into())
}

fn main() -> Result<(), Error> {
    let n = arg("--subscribers", 100)? as usize;
    let seconds = arg("--seconds", 5)?;
    let pps = arg("--pps", 170)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let host = WebRtcHost::start(NetworkSettings::default())?;
    let rss_before = rss_kib()?;

    let mut endpoints = Vec::new();
    let mut clients = Vec::new();
    for i in 0..=n {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        set_buffers(&socket);
        let local = socket.local_addr()?;
        let mut pc = new_peer(None, &format!("c{i:07}"))?;
        add_host_candidate(&mut pc, local)?;
        let ssrc = 0x2000_0000 + i as u32;
        let mut sender = None;
        if i == 0 {
            sender = Some(pc.add_track(video_track(ssrc, "publisher"))?);
        } else {
            pc.add_transceiver_from_kind(
                RtpCodecKind::Video,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )?;
        }
        let offer = pc.create_offer(None)?;
        pc.set_local_description(Instant::now(), offer.clone())?;
        let (endpoint, _events) = runtime
            .block_on(host.create_endpoint(ElementId(i as u32), EndpointOptions::default()))?;
        let answer = runtime.block_on(endpoint.process_offer(offer.sdp))?;
        pc.set_remote_description(Instant::now(), RTCSessionDescription::answer(answer)?)?;
        endpoints.push(endpoint);
        socket.set_nonblocking(true)?;
        clients.push(ClientPeer {
            pc,
            socket: mio::net::UdpSocket::from_std(socket),
            local,
            deadline: Instant::now(),
            connected: false,
            sender,
            ssrc,
            rtp_seen: 0,
        });
    }
    eprintln!("{n} subscribers + 1 publisher negotiated; connecting...");
    let shared = Arc::new(Shared::default());
    let client_shared = shared.clone();
    let client_thread = std::thread::Builder::new()
        .name("clients".into())
        .spawn(move || run_clients(clients, pps, &client_shared))?;

    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.clients_connected.load(Ordering::Relaxed) < n as u64 {
        if Instant::now() > deadline {
            return Err("subscribers did not connect".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both sides of every connection live in this process: the client peers (no interceptors)
    // are in this figure too, so compare it between builds, not with the load test's.
    let rss_per_pair = (rss_kib()? - rss_before) as f64 / (n + 1) as f64;
    shared
        .subscribers_connected
        .store(n as u64, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));

    let phase = |secs: u64| -> Result<(Duration, u64), Error> {
        let (cpu0, sent0) = (
            named_thread_cpu("rkms-webrtc-0")?,
            shared.published.load(Ordering::Relaxed),
        );
        std::thread::sleep(Duration::from_secs(secs));
        let (cpu1, sent1) = (
            named_thread_cpu("rkms-webrtc-0")?,
            shared.published.load(Ordering::Relaxed),
        );
        Ok((cpu1 - cpu0, sent1 - sent0))
    };
    let (idle_cpu, idle_packets) = phase(seconds)?;
    for i in 1..=n {
        host.connect(ElementId(0), ElementId(i as u32), MediaKind::Video)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let (fwd_cpu, fwd_packets) = phase(seconds)?;
    shared.stop.store(true, Ordering::Relaxed);
    let (received, _) = client_thread
        .join()
        .map_err(|_| "client thread panicked")??;

    // The floor on this thread: protect in place + send_to, to a socket drained by a thread.
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let sink_addr = sink.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while sink.recv(&mut buf).is_ok() {}
    });
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let crypto = rtc::crypto::default_provider()?;
    let key = SrtpMasterKey {
        profile: SrtpProfile::AeadAes128Gcm,
        key: [1; 16],
        salt: [2; 14],
    };
    let mut out = SrtpOut::new(&key, crypto.crypto())?;
    let mut roc = RolloverCounter::default();
    let mut buf = vec![0u8; 12 + PAYLOAD_LEN + MAX_SRTP_OVERHEAD];
    let start = thread_cpu();
    for i in 0..FLOOR_ITERATIONS {
        let seq = i as u16;
        buf[0] = 0x80;
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        let len = out.protect(&mut buf, 12, 12 + PAYLOAD_LEN, 7, seq, roc.next(seq))?;
        sender.send_to(&buf[..len], sink_addr)?;
    }
    let floor = (thread_cpu() - start).as_secs_f64() * 1e6 / f64::from(FLOOR_ITERATIONS);

    let idle_per_source = idle_cpu.as_secs_f64() / idle_packets.max(1) as f64;
    let legs = fwd_packets * n as u64;
    let fanout = fwd_cpu.as_secs_f64() - idle_per_source * fwd_packets as f64;
    let per_leg = fanout * 1e6 / legs.max(1) as f64;
    println!("subscribers={n} pps={pps} seconds/phase={seconds}");
    println!(
        "idle: {:.1} us loop CPU per source packet",
        idle_per_source * 1e6
    );
    println!("floor: {floor:.2} us (protect + send_to)");
    println!(
        "host: {legs} forwarded, {per_leg:.2} us loop CPU per forwarded packet ({:.2}x floor); loop thread at {:.0}% of a core",
        per_leg / floor,
        fwd_cpu.as_secs_f64() * 100.0 / seconds as f64
    );
    println!("clients: {received} RTP datagrams received (forwarding phase and warm-up)");
    println!("memory: {rss_per_pair:.1} KiB RSS per connected pair (rkms endpoint + client peer)");
    drop(endpoints);
    Ok(())
}
