//! Two RtpEndpoints on one socket loop between UDP peers of this test: a sender's G.711 packets
//! enter one endpoint, go through the router, and leave the other for a receiver. The receiver's
//! side renegotiates (re-offers as SIP re-INVITEs do, and answers rkms's re-offer), and the
//! sender's SDES key runs out its lifetime; what the receiving sockets count is the assertion.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rkms_media::elements::rtp::sdes::{CryptoAttribute, CryptoSuite, MasterKey};
use rkms_media::elements::rtp::{RtpAddressing, RtpElement, RtpError};
use rkms_media::elements::{ElementEvent, ElementEvents};
use rkms_media::webrtc::{NetworkSettings, WebRtcHost};
use rkms_media::{ElementId, MediaKind};

const LOOPBACK: RtpAddressing = RtpAddressing {
    bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    advertised: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    port_min: 0,
    port_max: 0,
};

fn collector() -> (ElementEvents, Arc<Mutex<Vec<ElementEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let events: ElementEvents = Arc::new(move |e| sink.lock().expect("lock").push(e));
    (events, seen)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A peer's SDP with one audio line.
fn sdp(version: u32, port: u16, proto: &str, formats: &str, extra: &[String]) -> String {
    let mut s = format!(
        "v=0\r\no=- 42 {version} IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} {proto} {formats}\r\n"
    );
    for line in extra {
        s.push_str(line);
        s.push_str("\r\n");
    }
    s
}

/// The port of the answer's audio line and its `o=` session id and version.
fn audio_port_and_origin(sdp: &str) -> (u16, String, u64) {
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("an audio line");
    let origin: Vec<&str> = sdp
        .lines()
        .find_map(|l| l.strip_prefix("o="))
        .expect("o=")
        .split(' ')
        .collect();
    (
        port,
        origin[1].to_owned(),
        origin[2].parse().expect("version"),
    )
}

/// A UDP socket counting the RTP packets it receives, the payload type of the last one, and
/// the sequence numbers that jumped (by more than 100).
struct Counter {
    port: u16,
    count: Arc<AtomicUsize>,
    pt: Arc<AtomicU8>,
    jumps: Arc<AtomicUsize>,
}

impl Counter {
    fn bind(stop: &Arc<AtomicBool>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let port = socket.local_addr().expect("addr").port();
        let (count, pt) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU8::new(0)));
        let jumps = Arc::new(AtomicUsize::new(0));
        let (c, p, j, stop) = (count.clone(), pt.clone(), jumps.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let mut last: Option<u16> = None;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf)
                    && n >= 12
                    && !(200..=206).contains(&buf[1])
                {
                    let seq = u16::from_be_bytes([buf[2], buf[3]]);
                    if last.is_some_and(|l| seq.wrapping_sub(l) > 100) {
                        j.fetch_add(1, Ordering::Relaxed);
                    }
                    last = Some(seq);
                    p.store(buf[1] & 0x7f, Ordering::Relaxed);
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            port,
            count,
            pt,
            jumps,
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits for `n` more packets than now.
    fn wait_more(&self, n: usize, what: &str) {
        let from = self.count();
        wait_until(what, || self.count() >= from + n);
    }
}

/// A G.711 packet (PCMU, payload type 0).
fn pcmu(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// A sender endpoint (`into`) routed to a receiver endpoint (`out_of`) on one loop.
struct Bridge {
    _host: WebRtcHost,
    into: RtpElement,
    out_of: RtpElement,
    into_events: Arc<Mutex<Vec<ElementEvent>>>,
}

fn bridge(into_key: Option<MasterKey>) -> Bridge {
    let host = WebRtcHost::start(NetworkSettings::default()).expect("host");
    let (a, b) = (ElementId(1), ElementId(2));
    let (events, into_events) = collector();
    let into = RtpElement::new(host.add_element(a, Some(9)), LOOPBACK, into_key, events);
    let (events, _) = collector();
    let out_of = RtpElement::new(host.add_element(b, Some(9)), LOOPBACK, None, events);
    host.connect(a, b, MediaKind::Audio).expect("connect");
    Bridge {
        _host: host,
        into,
        out_of,
        into_events,
    }
}

/// Sends PCMU packets to `to` every 2 ms until `stop`; counts them in `sent`. Setting `restart`
/// makes it a new stream: another SSRC, its sequence 30000 further.
fn keep_sending(
    to: SocketAddr,
    stop: &Arc<AtomicBool>,
    restart: &Arc<AtomicBool>,
) -> Arc<AtomicUsize> {
    let sent = Arc::new(AtomicUsize::new(0));
    let (s, stop, restart) = (sent.clone(), stop.clone(), restart.clone());
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (mut seq, mut ssrc) = (0u16, 0x5eed);
        while !stop.load(Ordering::Relaxed) {
            if restart.swap(false, Ordering::Relaxed) {
                (seq, ssrc) = (seq.wrapping_add(30_000), ssrc + 1);
            }
            let _ = socket.send_to(&pcmu(seq, ssrc), to);
            seq = seq.wrapping_add(1);
            s.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    sent
}

#[test]
fn re_offers_move_hold_resume_stop_and_restart_the_stream() {
    let stop = Arc::new(AtomicBool::new(false));
    let b = bridge(None);
    let answer = b
        .into
        .process_offer(&sdp(1, 9, "RTP/AVP", "0", &["a=sendonly".into()]))
        .expect("answer");
    let (into_port, ..) = audio_port_and_origin(&answer);
    let restart = Arc::new(AtomicBool::new(false));
    let sent = keep_sending(([127, 0, 0, 1], into_port).into(), &stop, &restart);

    let first = Counter::bind(&stop);
    let answer = b
        .out_of
        .process_offer(&sdp(1, first.port, "RTP/AVP", "0", &["a=recvonly".into()]))
        .expect("answer");
    let (port, session, version) = audio_port_and_origin(&answer);
    assert!(answer.contains("a=sendonly"), "{answer}");
    first.wait_more(20, "media at the first address");

    // The remote moved its media: same rkms port, same session, the next version.
    let moved = Counter::bind(&stop);
    let answer = b
        .out_of
        .process_offer(&sdp(2, moved.port, "RTP/AVP", "0", &["a=sendrecv".into()]))
        .expect("answer");
    assert_eq!(
        audio_port_and_origin(&answer),
        (port, session.clone(), version + 1)
    );
    moved.wait_more(20, "media at the new address");
    let left = first.count();
    moved.wait_more(20, "more media at the new address");
    assert_eq!(first.count(), left, "nothing more goes to the old address");

    // The sender restarts (new SSRC, sequence far away): the receiver's stream goes on.
    restart.store(true, Ordering::Relaxed);
    wait_until("the restart", || !restart.load(Ordering::Relaxed));
    moved.wait_more(20, "media of the restarted sender");
    assert_eq!(
        moved.jumps.load(Ordering::Relaxed),
        0,
        "one continuous stream"
    );

    // Hold: the remote only sends. rkms answers recvonly and sends nothing, while its source
    // keeps sending.
    let answer = b
        .out_of
        .process_offer(&sdp(3, moved.port, "RTP/AVP", "0", &["a=sendonly".into()]))
        .expect("answer");
    assert!(answer.contains("a=recvonly"), "{answer}");
    let held = moved.count();
    let from = sent.load(Ordering::Relaxed);
    wait_until("the source to send 100 packets", || {
        sent.load(Ordering::Relaxed) >= from + 100
    });
    assert!(
        moved.count() <= held + 1,
        "{} sent on hold",
        moved.count() - held
    );

    // Resume, with PCMU under a dynamic payload type of the remote's.
    let answer = b
        .out_of
        .process_offer(&sdp(
            4,
            moved.port,
            "RTP/AVP",
            "101",
            &["a=rtpmap:101 PCMU/8000".into()],
        ))
        .expect("answer");
    assert!(answer.contains("a=sendrecv"), "{answer}");
    moved.wait_more(20, "media after the hold");
    assert_eq!(moved.pt.load(Ordering::Relaxed), 101);

    // Port 0 stops the stream (RFC 3264 §8.2); it is not an error.
    let answer = b
        .out_of
        .process_offer(&sdp(5, 0, "RTP/AVP", "0", &[]))
        .expect("a stopped stream is answered");
    assert_eq!(audio_port_and_origin(&answer).0, 0, "{answer}");
    let stopped = moved.count();
    let from = sent.load(Ordering::Relaxed);
    wait_until("the source to send 100 packets", || {
        sent.load(Ordering::Relaxed) >= from + 100
    });
    assert!(moved.count() <= stopped + 1);

    // An offer rkms cannot take at all is refused as before, and changes nothing.
    let refused = b.out_of.process_offer(&sdp(
        6,
        moved.port,
        "RTP/AVP",
        "96",
        &["a=rtpmap:96 theora/90000".into()],
    ));
    assert!(matches!(refused, Err(RtpError::Offer(_))), "{refused:?}");
    assert!(matches!(
        b.out_of.process_offer("not sdp"),
        Err(RtpError::Sdp(_))
    ));

    // rkms re-offers: same port and session, the version after the last answer; the answer
    // brings the stream back at the first address.
    let offer = b.out_of.generate_offer(true, true).expect("re-offer");
    assert_eq!(
        audio_port_and_origin(&offer),
        (0, session.clone(), version + 5)
    );
    assert!(!offer.contains("m=video"), "no media is added: {offer}");
    let answer = b
        .out_of
        .process_offer(&sdp(7, first.port, "RTP/AVP", "0", &[]));
    assert!(matches!(answer, Err(RtpError::OfferPending)), "{answer:?}");
    // The stopped line stays stopped in rkms's re-offer; the remote re-offers it.
    b.out_of
        .process_answer(&sdp(7, 0, "RTP/AVP", "0", &[]))
        .expect("answer to the re-offer");
    let answer = b
        .out_of
        .process_offer(&sdp(8, first.port, "RTP/AVP", "0", &[]))
        .expect("answer");
    assert_eq!(
        audio_port_and_origin(&answer),
        (port, session.clone(), version + 6)
    );
    first.wait_more(20, "media at the first address again");

    let offer = b.out_of.generate_offer(true, false).expect("re-offer");
    assert_eq!(audio_port_and_origin(&offer), (port, session, version + 7));
    b.out_of
        .process_answer(&sdp(9, moved.port, "RTP/AVP", "0", &["a=recvonly".into()]))
        .expect("answer to the re-offer");
    moved.wait_more(20, "media where the answer to rkms's re-offer says");
    assert!(matches!(
        b.out_of
            .process_answer(&sdp(9, moved.port, "RTP/AVP", "0", &[])),
        Err(RtpError::AnswerAlreadyProcessed)
    ));
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_remote_key_ends_at_its_lifetime_and_a_re_key_starts_a_new_one() {
    let stop = Arc::new(AtomicBool::new(false));
    let b = bridge(Some(MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_80)));
    let crypto = |key: &MasterKey, lifetime| {
        let attr = CryptoAttribute {
            tag: 1,
            key: key.clone(),
            lifetime,
        };
        format!("a=crypto:{}", attr.value())
    };
    let first_key = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_80);
    let answer = b
        .into
        .process_offer(&sdp(
            1,
            9,
            "RTP/SAVP",
            "0",
            &[crypto(&first_key, Some(1 << 10)), "a=sendonly".into()],
        ))
        .expect("answer");
    let (into_port, ..) = audio_port_and_origin(&answer);
    let receiver = Counter::bind(&stop);
    b.out_of
        .process_offer(&sdp(
            1,
            receiver.port,
            "RTP/AVP",
            "0",
            &["a=recvonly".into()],
        ))
        .expect("answer");

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let to: SocketAddr = ([127, 0, 0, 1], into_port).into();
    let mut srtp = first_key.context().expect("context");
    let mut seq = 0u16;
    let mut send = |srtp: &mut rtc::srtp::context::Context, n: usize| {
        for _ in 0..n {
            let packet = srtp.encrypt_rtp(&pcmu(seq, 0xabc)).expect("protect");
            socket.send_to(&packet, to).expect("send");
            seq = seq.wrapping_add(1);
            // Paced so that no socket buffer overflows.
            std::thread::sleep(Duration::from_micros(300));
        }
    };
    let soft = |events: &Mutex<Vec<ElementEvent>>| {
        events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| **e == ElementEvent::KeySoftLimit(MediaKind::Audio))
            .count()
    };

    send(&mut srtp, 900);
    wait_until("900 packets through", || receiver.count() >= 900);
    assert_eq!(
        soft(&b.into_events),
        0,
        "no warning 122 packets before the end"
    );
    // Packets 1024 and later of a 2^10 lifetime are refused.
    send(&mut srtp, 200);
    wait_until("1023 packets through", || receiver.count() >= 1023);
    assert_eq!(soft(&b.into_events), 1, "one OnKeySoftLimit per key");

    // A re-offer with a new key (and the default lifetime): a new SRTP context, counted from 0.
    let second_key = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_80);
    b.into
        .process_offer(&sdp(
            2,
            9,
            "RTP/SAVP",
            "0",
            &[crypto(&second_key, None), "a=sendonly".into()],
        ))
        .expect("answer to the re-key");
    let mut srtp = second_key.context().expect("context");
    send(&mut srtp, 50);
    wait_until("the re-keyed packets", || receiver.count() >= 1073);
    assert_eq!(
        receiver.count(),
        1023 + 50,
        "the 77 packets past the first key's lifetime were dropped"
    );
    assert_eq!(soft(&b.into_events), 1);
    stop.store(true, Ordering::Relaxed);
}
