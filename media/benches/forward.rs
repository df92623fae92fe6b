//! CPU per forwarded packet of the routing core's fast path, against the floor measured in the
//! same run.
//!
//! One source's video packet (1,100-byte payload, carrying the three header extensions a
//! browser puts on video) goes to 1, 10, 100 and 1000 sinks through what the WebRTC host runs
//! per packet: [`Router::route`] (history, per-sink rewriter), [`OutStream::write`] (the sink's
//! header and extensions, the payload copy, in-place SRTP with the sink's own AES-128-GCM key)
//! into a [`SendBatch`] slot, and `sendmmsg` when the batch is full and at the end of the pass.
//! The floor is one [`SrtpOut::protect`] plus one `send_to` of a datagram of the same size.
//! Datagrams go to a loopback socket drained by another thread.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so the draining thread
//! and other processes on this machine do not count; on loopback the sender's CPU time includes
//! the kernel's delivery into the receiving socket, for the floor and the forwarding alike.
//! After criterion's own report, a table gives µs per forwarded packet and its ratio to the floor.
//!
//! Run: `cargo bench -p rkms-media --bench forward`.
//!
//! Figures (2 shared vCPUs, AES-128-GCM, load average ~1): floor 3.91 µs; per forwarded
//! packet 4.40 µs at 1 sink (1.12× floor), 3.48 (0.89×) at 10, 3.64 (0.93×) at 100, 3.74
//! (0.96×) at 1000. A first run under load average ~10: floor 4.10; 1.24×, 0.98×, 0.95×, 0.80×.
//! Beyond one sink the path is at the floor: `sendmmsg` pays one system call per 64 datagrams
//! where the floor pays one per datagram, which covers the routing, header and copy work.
//! The whole host (`examples/forward_host.rs`, 200 subscribers) costs 1.3–1.7× the floor: a
//! profile (`perf record -g` on the loop) puts ~65% of the loop in the kernel's loopback send
//! and delivery to 200 sockets, ~10% in AES-GCM, and ~11% in the host's own per-sink code
//! (peer lookup and the cache misses of touching 200 peers, header writing, the copy); ~4% since
//! the peer's fast-path state sits together (`loadtest/README.md`, 2026-12-02).
//!
//! `twcc-sinks` are the same fan-out to sinks that negotiated transport-cc: each datagram also
//! carries the peer's transport-wide number and its departure and size go into the peer's send
//! log. Three runs alternating with the build before transport-cc (load average ~9): the plain
//! fan-out 1.00-1.06x of the older build's cost per packet relative to each run's floor (noise
//! of that order), transport-cc sinks 1.03x (1 sink), 1.13x (10), 1.06x (100), 1.11x (1000) of
//! the plain fan-out in the same runs.
//!
//! The router's duplicate check and its SSRC comparison (a source's new stream), against the
//! build before both, seven rounds alternating (2026-12-03, load average ~1.5): medians of
//! new/old per packet relative to each run's floor 1.05 (1 sink), 0.94 (10), 1.01 (100), 1.01
//! (1000), transport-cc sinks 1.04, 0.91, 0.94, 1.03, each in a spread of about ±20%: no cost
//! that stands out of the noise. The new build's medians: floor 4.54 µs, 1.11x of it at 1
//! sink, 0.88-0.94x at 10 to 1000.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use rkms_media::graph::{ElementId, MediaKind};
use rkms_media::routing::{Router, RtpPacket};
use rkms_media::webrtc::codecs::CodecId;
use rkms_media::webrtc::congestion::SendLog;
use rkms_media::webrtc::extensions::{
    ABS_SEND_TIME, CarriedExtensions, MID, SinkIds, TRANSPORT_CC, abs_send_time,
};
use rkms_media::webrtc::srtp_out::{MAX_SRTP_OVERHEAD, OutStream, SendStamps, SrtpOut};
use rkms_media::webrtc::srtp_tap::{SrtpMasterKey, SrtpProfile};
use rkms_media::webrtc::udp::SendBatch;
use rtc::rtp::header::Extension;
use rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionParameters;

const PAYLOAD_LEN: usize = 1_100;
const VP8_PT: u8 = 96;
const SINKS: [usize; 4] = [1, 10, 100, 1000];

/// Mean CPU time per iteration of each benchmark, over everything criterion ran.
static TOTALS: Mutex<Vec<(String, Duration, u64)>> = Mutex::new(Vec::new());

fn record(name: &str, cpu: Duration, iters: u64) {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match totals.iter_mut().find(|(n, ..)| n == name) {
        Some((_, c, i)) => {
            *c += cpu;
            *i += iters;
        }
        None => totals.push((name.to_owned(), cpu, iters)),
    }
}

fn mean_us(name: &str) -> Option<f64> {
    let totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let (_, cpu, iters) = totals.iter().find(|(n, ..)| n == name)?;
    Some(cpu.as_secs_f64() * 1e6 / (*iters).max(1) as f64)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime only writes the struct it is given.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A loopback socket whose datagrams another thread reads and discards.
fn drained_socket() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the drain socket");
    set_rcvbuf(&socket);
    let addr = socket.local_addr().expect("drain address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while socket.recv(&mut buf).is_ok() {}
    });
    addr
}

fn set_rcvbuf(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt reads `size` for the duration of the call.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

fn srtp(seed: u32) -> SrtpOut {
    let provider = rtc::crypto::default_provider().expect("crypto provider");
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&seed.to_be_bytes());
    let master = SrtpMasterKey {
        profile: SrtpProfile::AeadAes128Gcm,
        key,
        salt: [7; 14],
    };
    SrtpOut::new(&master, provider.crypto()).expect("SRTP context")
}

/// A sink as the host sees it: its SRTP context, its forwarded video stream, its address, and
/// its transport-wide sequence when it negotiated transport-cc.
struct Sink {
    srtp: SrtpOut,
    stream: OutStream,
    to: SocketAddr,
    transport: Option<SendLog>,
}

fn sink(seed: u32, to: SocketAddr, transport_cc: bool) -> Sink {
    let ext = |uri: &str, id| RTCRtpHeaderExtensionParameters {
        uri: uri.into(),
        id,
        encrypted: false,
    };
    // Browsers negotiate rtx: the sink's stream carries its RTX stream, as in the host.
    let mut stream = OutStream::new(0x1000_0000 + seed).with_rtx(0x2000_0000 + seed, 0);
    stream.negotiated(
        vec![(CodecId::Vp8, VP8_PT)],
        SinkIds::from_negotiated(
            &[ext(MID, 4), ext(ABS_SEND_TIME, 2), ext(TRANSPORT_CC, 3)],
            Some("1".into()),
            transport_cc,
        ),
    );
    stream.negotiated_rtx(&[(CodecId::Vp8, VP8_PT + 1)]);
    Sink {
        srtp: srtp(seed),
        stream,
        to,
        transport: transport_cc.then(SendLog::default),
    }
}

/// A video packet as a browser sends it: abs-send-time, transport-cc and mid extensions.
fn source_packet() -> RtpPacket {
    let mut p = RtpPacket::default();
    p.header.version = 2;
    p.header.payload_type = VP8_PT;
    p.header.ssrc = 0x5eed;
    p.header.extension = true;
    p.header.extension_profile = 0xBEDE;
    p.header.extensions = vec![
        Extension {
            id: 2,
            payload: Bytes::from_static(&[1, 2, 3]),
        },
        Extension {
            id: 3,
            payload: Bytes::from_static(&[0, 9]),
        },
        Extension {
            id: 4,
            payload: Bytes::from_static(b"1"),
        },
    ];
    p.payload = Bytes::from((0..PAYLOAD_LEN).map(|i| i as u8).collect::<Vec<_>>());
    p
}

fn floor(c: &mut Criterion, to: SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut out = srtp(1);
    let mut stream = sink(1, to, false).stream;
    let mut datagram = vec![0u8; PAYLOAD_LEN + 64 + MAX_SRTP_OVERHEAD];
    // A real forwarded datagram: its header length is what the floor protects around.
    let rewritten = rkms_media::routing::Rewritten {
        seq: 1,
        timestamp: 0,
    };
    let len = stream
        .write(
            &mut out,
            CodecId::Vp8,
            &source_packet(),
            &CarriedExtensions::default(),
            rewritten,
            SendStamps {
                abs_send_time: 0,
                transport: None,
            },
            Instant::now(),
            &mut datagram,
        )
        .expect("datagram");
    let header_len = len - PAYLOAD_LEN - MAX_SRTP_OVERHEAD;
    let plain_len = header_len + PAYLOAD_LEN;
    let mut group = c.benchmark_group("forward");
    group.throughput(Throughput::Elements(1));
    group.bench_function("floor", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for i in 0..iters {
                let seq = i as u16;
                let n = out
                    .protect(&mut datagram, header_len, plain_len, 7, seq, 0)
                    .expect("protect");
                let _ = black_box(socket.send_to(&datagram[..n], to));
            }
            let cpu = thread_cpu() - start;
            record("floor", cpu, iters);
            cpu
        });
    });
    group.finish();
}

/// The fan-out to `SINKS`; with `transport_cc`, every sink negotiated transport-cc (the
/// transport-wide number written and its departure logged per packet).
fn fanout(c: &mut Criterion, to: SocketAddr, transport_cc: bool) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut group = c.benchmark_group("forward");
    let prefix = if transport_cc { "twcc-sinks" } else { "sinks" };
    for n in SINKS {
        let source = ElementId(0);
        let mut router = Router::new();
        let start = Instant::now();
        let mut sinks: Vec<Sink> = (0..=n as u32).map(|i| sink(i, to, transport_cc)).collect();
        for i in 1..=n as u32 {
            router.connect(source, ElementId(i), MediaKind::Video, start);
        }
        let mut batch = SendBatch::new(64);
        let mut packet = source_packet();
        let carried = CarriedExtensions::default();
        let mut seq = 0u16;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new(prefix, n), |b| {
            b.iter_custom(|iters| {
                let cpu0 = thread_cpu();
                for _ in 0..iters {
                    seq = seq.wrapping_add(1);
                    packet.header.sequence_number = seq;
                    packet.header.timestamp = u32::from(seq / 4) * 3000;
                    let now = Instant::now();
                    let abs = abs_send_time(now.saturating_duration_since(start));
                    router.route(
                        source,
                        MediaKind::Video,
                        CodecId::Vp8,
                        &packet,
                        now,
                        || false,
                        |id, rewritten| {
                            let Some(sink) = sinks.get_mut(id.0 as usize) else {
                                return;
                            };
                            batch.push(&socket, sink.to, |slot| {
                                sink.stream.write(
                                    &mut sink.srtp,
                                    CodecId::Vp8,
                                    &packet,
                                    &carried,
                                    rewritten,
                                    SendStamps {
                                        abs_send_time: abs,
                                        transport: sink.transport.as_mut(),
                                    },
                                    now,
                                    slot,
                                )
                            });
                        },
                    );
                    batch.flush(&socket);
                }
                let cpu = thread_cpu() - cpu0;
                record(&format!("{prefix}/{n}"), cpu, iters * n as u64);
                cpu
            });
        });
    }
    group.finish();
}

fn main() {
    let to = drained_socket();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    floor(&mut c, to);
    fanout(&mut c, to, false);
    fanout(&mut c, to, true);
    c.final_summary();

    let Some(floor) = mean_us("floor") else {
        return; // filtered out on the command line
    };
    println!("\nCPU per forwarded packet (this thread), against the floor of this run:");
    println!("floor (protect + send_to): {floor:.3} us");
    for prefix in ["sinks", "twcc-sinks"] {
        for n in SINKS {
            if let Some(us) = mean_us(&format!("{prefix}/{n}")) {
                println!(
                    "{n:>5} {prefix}: {us:.3} us per forwarded packet = {:.2} x floor",
                    us / floor
                );
            }
        }
    }
}
