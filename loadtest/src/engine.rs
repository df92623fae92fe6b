//! The client peers: `rtc` sans-IO peer connections with real ICE, DTLS and SRTP, many per
//! thread. Each shard is one thread running a mio loop over its peers' sockets (one socket per
//! peer, so a server that serves every peer on one port is still demultiplexed by the kernel).
//!
//! Publishers pace synthetic media ([`crate::payload`]). Subscribers account every RTP packet
//! from its clear-text header (loss, jitter, bytes) and hand one packet in `sample_every` to
//! their peer connection, which verifies and decrypts it; the decrypted payload's stamp gives
//! the one-way latency. Sampling is what lets one machine play hundreds of subscribers: SRTP
//! is still verified on a steady sample of every stream, and `--sample-every 1` verifies all.
//!
//! Signalling code (async, elsewhere) drives a shard by sending it closures ([`Engine::exec`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use rtc::ice::tcp_type::TcpType;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;

use rkms_media::webrtc::peer_io::{host_candidate, udp_datagram};

use crate::Error;
use crate::payload::{clock_ns, read_stamp, stamp};
use crate::stats::{Latency, StreamStats};

const VP8_PT: u8 = 96;
const OPUS_PT: u8 = 111;
const WAKER: Token = Token(usize::MAX);
/// A publisher that fell this far behind its schedule skips ahead instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(100);

/// What a publisher sends.
#[derive(Debug, Clone, Copy)]
pub struct MediaProfile {
    pub video_bps: u64,
    pub audio_bps: u64,
    pub fps: u32,
    /// RTP payload bytes of a full video packet.
    pub packet_size: usize,
    /// A frame's packets leave at this multiple of the video bitrate (0: back to back).
    pub pacing: f64,
}

impl MediaProfile {
    /// Video packets per second this profile sends.
    pub fn video_pps(&self) -> f64 {
        let fps = f64::from(self.fps.max(1));
        self.frame_packets() as f64 * fps
    }

    fn frame_bytes(&self) -> usize {
        (self.video_bps / 8 / u64::from(self.fps.max(1))) as usize
    }

    fn frame_packets(&self) -> usize {
        self.frame_bytes().div_ceil(self.packet_size.max(64)).max(1)
    }

    /// The gap between two packets of one frame.
    fn packet_gap(&self) -> Duration {
        if self.pacing <= 0.0 {
            return Duration::ZERO;
        }
        let frame = 1.0 / f64::from(self.fps.max(1));
        Duration::from_secs_f64(frame / self.pacing / self.frame_packets() as f64)
    }

    fn audio_packet_bytes(&self) -> usize {
        (self.audio_bps / 8 / 50) as usize
    }
}

/// What one client peer does.
#[derive(Debug, Clone, Copy)]
pub struct PeerSpec {
    pub send: bool,
    pub receive: bool,
    /// When its session started (the first signalling request), for the setup time.
    pub created: Instant,
}

/// Where a peer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerRef {
    pub shard: usize,
    pub index: usize,
}

/// A local description and the peer's one host candidate, for signalling.
#[derive(Debug, Clone)]
pub struct LocalDescription {
    pub peer: PeerRef,
    pub sdp: String,
    pub candidate: RTCIceCandidateInit,
}

/// Counters of one shard.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Received packets decrypted and checked by the peer connection.
    pub packets_verified: u64,
    /// Datagrams the peer connection refused (SRTP authentication, malformed).
    pub read_errors: u64,
}

/// What a shard reports: its counters plus its receivers' streams.
#[derive(Debug, Default, Clone)]
pub struct ShardReport {
    pub counters: Counters,
    pub expected: u64,
    pub lost: u64,
    pub jitter_ms_sum: f64,
    pub streams: u64,
    pub receivers: u64,
    pub receivers_with_media: u64,
    /// Fewest and most packets one receiver got in the window.
    pub receiver_packets_min: Option<u64>,
    pub receiver_packets_max: u64,
    /// Receivers that got no media at all, and peers whose connection failed.
    pub failed_peers: u64,
    pub connected: u64,
    pub peers: u64,
}

struct Track {
    sender: RTCRtpSenderId,
    ssrc: u32,
    pt: u8,
    seq: u16,
    ts: u32,
    /// When the next frame starts.
    next: Instant,
    /// Packets of the current frame still to send, and when the next of them leaves.
    frame_left: usize,
    packet_at: Instant,
}

impl Track {
    /// When this track next has something to send.
    fn due(&self) -> Instant {
        if self.frame_left > 0 {
            self.packet_at
        } else {
            self.next
        }
    }
}

struct Peer {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    deadline: Instant,
    connected: bool,
    failed: bool,
    spec: PeerSpec,
    video: Option<Track>,
    audio: Option<Track>,
    audio_pts: Vec<u8>,
    first_media: Option<Instant>,
    streams: Vec<StreamStats>,
    rtp_seen: u64,
}

/// One thread's peers and measurements.
pub struct Shard {
    id: usize,
    poll: Poll,
    peers: Vec<Peer>,
    /// Indices of the peers that send media, so pacing does not scan every subscriber.
    senders: Vec<usize>,
    profile: MediaProfile,
    local_ip: IpAddr,
    sample_every: u64,
    sending: bool,
    counters: Counters,
    /// Latency over the measurement window, and over the current plot interval.
    pub window_latency: Latency,
    pub interval_latency: Latency,
    pub setup: Latency,
    earliest: Instant,
    payload: Vec<u8>,
    stamp_counter: u64,
    stop: bool,
}

type Command = Box<dyn FnOnce(&mut Shard) + Send>;

struct ShardHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The client peers, spread over `threads` shards.
pub struct Engine {
    shards: Vec<ShardHandle>,
    next: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub threads: usize,
    pub profile: MediaProfile,
    pub local_ip: IpAddr,
    pub sample_every: u64,
}

fn peer_err(e: impl std::fmt::Display) -> Error {
    Error::Peer(e.to_string())
}

impl Engine {
    pub fn start(config: EngineConfig) -> Result<Self, Error> {
        let mut shards = Vec::new();
        for id in 0..config.threads.max(1) {
            let poll = Poll::new().map_err(peer_err)?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(peer_err)?);
            let (tx, rx) = mpsc::channel::<Command>();
            let shard = Shard {
                id,
                poll,
                peers: Vec::new(),
                senders: Vec::new(),
                profile: config.profile,
                local_ip: config.local_ip,
                sample_every: config.sample_every.max(1),
                sending: false,
                counters: Counters::default(),
                window_latency: Latency::default(),
                interval_latency: Latency::default(),
                setup: Latency::default(),
                earliest: Instant::now(),
                payload: Vec::with_capacity(2048),
                stamp_counter: 0,
                stop: false,
            };
            let thread = std::thread::Builder::new()
                .name(format!("peers-{id}"))
                .spawn(move || shard.run(&rx))
                .map_err(peer_err)?;
            shards.push(ShardHandle {
                commands: tx,
                waker,
                thread: Some(thread),
            });
        }
        Ok(Self {
            shards,
            next: Default::default(),
        })
    }

    /// The shard the next peer goes to (round robin).
    pub fn pick_shard(&self) -> usize {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.shards.len()
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Runs `f` on shard `shard`'s thread and returns its result.
    pub async fn exec<R: Send + 'static>(
        &self,
        shard: usize,
        f: impl FnOnce(&mut Shard) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let handle = self.shards.get(shard).ok_or(Error::EngineStopped)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let command: Command = Box::new(move |s| {
            let _ = tx.send(f(s));
        });
        handle
            .commands
            .send(command)
            .map_err(|_| Error::EngineStopped)?;
        handle.waker.wake().map_err(peer_err)?;
        rx.await.map_err(|_| Error::EngineStopped)
    }

    /// Runs `f` on every shard; returns the results in shard order.
    pub async fn each<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Shard) -> R + Send + Clone + 'static,
    ) -> Result<Vec<R>, Error> {
        let mut out = Vec::with_capacity(self.shards.len());
        for i in 0..self.shards.len() {
            out.push(self.exec(i, f.clone()).await?);
        }
        Ok(out)
    }

    /// Stops every shard (dropping their peers) and waits for the threads.
    pub async fn shutdown(mut self) {
        let _ = self.each(|s| s.stop = true).await;
        for shard in &mut self.shards {
            if let Some(t) = shard.thread.take() {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        }
    }
}

fn media_engine() -> Result<MediaEngine, Error> {
    let mut engine = MediaEngine::default();
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8_codec(),
                payload_type: VP8_PT,
            },
            RtpCodecKind::Video,
        )
        .map_err(peer_err)?;
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(peer_err)?;
    Ok(engine)
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

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn encodings(ssrc: u32, codec: RTCRtpCodec) -> Vec<RTCRtpEncodingParameters> {
    vec![RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        },
        codec,
        ..Default::default()
    }]
}

/// Payload types the SDP maps to opus (48 kHz clock); everything else is video (90 kHz).
fn opus_payload_types(sdp: &str) -> Vec<u8> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter(|l| l.to_ascii_lowercase().contains("opus/48000"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && (128..192).contains(&d[0]) && !(192..224).contains(&d[1])
}

fn set_receive_buffer(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 1 << 20;
    // SAFETY: setsockopt only reads `size` for the duration of the call.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl Shard {
    /// A new peer that offers: a publisher sends audio + video (`sendonly`, or `sendrecv` when it
    /// also receives, as in loopback), a subscriber receives them (`recvonly`).
    pub fn offer(&mut self, spec: PeerSpec) -> Result<LocalDescription, Error> {
        let index = self.new_peer(spec)?;
        let peer = &mut self.peers[index];
        let direction = match (spec.send, spec.receive) {
            (true, true) => RTCRtpTransceiverDirection::Sendrecv,
            (true, false) => RTCRtpTransceiverDirection::Sendonly,
            _ => RTCRtpTransceiverDirection::Recvonly,
        };
        let base_ssrc = ((self.id as u32) << 24) | ((index as u32) << 2);
        for (kind, codec, ssrc) in [
            (RtpCodecKind::Audio, opus_codec(), base_ssrc | 1),
            (RtpCodecKind::Video, vp8_codec(), base_ssrc | 2),
        ] {
            if spec.send {
                let name = format!("p{}-{index}", self.id);
                let t = MediaStreamTrack::new(
                    format!("{name}-stream"),
                    format!("{name}-{kind}"),
                    format!("{name}-{kind}"),
                    kind,
                    encodings(ssrc, codec.clone()),
                );
                let init = RTCRtpTransceiverInit {
                    direction,
                    streams: vec![],
                    send_encodings: encodings(ssrc, codec),
                };
                peer.pc
                    .add_transceiver_from_track(t, Some(init))
                    .map_err(peer_err)?;
            } else {
                peer.pc
                    .add_transceiver_from_kind(kind, None)
                    .map_err(peer_err)?;
            }
        }
        let offer = peer.pc.create_offer(None).map_err(peer_err)?;
        let sdp = offer.sdp.clone();
        peer.pc
            .set_local_description(Instant::now(), offer)
            .map_err(peer_err)?;
        self.local_description(index, sdp)
    }

    /// A new receiving peer that answers `offer_sdp` (as Janus subscribers do).
    pub fn answer(&mut self, spec: PeerSpec, offer_sdp: String) -> Result<LocalDescription, Error> {
        let index = self.new_peer(spec)?;
        let peer = &mut self.peers[index];
        peer.audio_pts = opus_payload_types(&offer_sdp);
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(peer_err)?;
        peer.pc
            .set_remote_description(Instant::now(), offer)
            .map_err(peer_err)?;
        let answer = peer.pc.create_answer(None).map_err(peer_err)?;
        let sdp = answer.sdp.clone();
        peer.pc
            .set_local_description(Instant::now(), answer)
            .map_err(peer_err)?;
        self.service(index);
        self.local_description(index, sdp)
    }

    /// Applies the server's answer to a peer that offered.
    pub fn apply_answer(&mut self, index: usize, sdp: String) -> Result<(), Error> {
        let peer = self.peers.get_mut(index).ok_or(Error::EngineStopped)?;
        peer.audio_pts = opus_payload_types(&sdp);
        let answer = RTCSessionDescription::answer(sdp).map_err(peer_err)?;
        peer.pc
            .set_remote_description(Instant::now(), answer)
            .map_err(peer_err)?;
        self.service(index);
        Ok(())
    }

    /// Adds a candidate the server signalled.
    pub fn add_remote_candidate(
        &mut self,
        index: usize,
        candidate: RTCIceCandidateInit,
    ) -> Result<(), Error> {
        let peer = self.peers.get_mut(index).ok_or(Error::EngineStopped)?;
        peer.pc.add_remote_candidate(candidate).map_err(peer_err)?;
        self.service(index);
        Ok(())
    }

    /// Starts or stops the publishers' media.
    pub fn set_sending(&mut self, on: bool) {
        self.sending = on;
        let now = Instant::now();
        for &i in &self.senders {
            let p = &mut self.peers[i];
            for t in [&mut p.video, &mut p.audio].into_iter().flatten() {
                t.next = now;
                t.frame_left = 0;
            }
        }
    }

    /// Starts a new measurement window: counters and streams restart.
    pub fn begin_window(&mut self) {
        self.counters = Counters::default();
        self.window_latency.clear();
        self.interval_latency.clear();
        for p in &mut self.peers {
            p.streams.iter_mut().for_each(StreamStats::reset);
        }
    }

    /// How many sending peers are connected, and how many there are.
    pub fn senders_connected(&self) -> (u64, u64) {
        let senders = self.peers.iter().filter(|p| p.spec.send);
        let connected = senders.clone().filter(|p| p.connected).count();
        (connected as u64, senders.count() as u64)
    }

    /// How many receiving peers got media, and how many peers exist.
    pub fn media_progress(&self) -> (u64, u64) {
        let receivers = self.peers.iter().filter(|p| p.spec.receive);
        let with = receivers
            .clone()
            .filter(|p| p.first_media.is_some())
            .count();
        (with as u64, receivers.count() as u64)
    }

    pub fn report(&self) -> ShardReport {
        let mut r = ShardReport {
            counters: self.counters.clone(),
            peers: self.peers.len() as u64,
            ..Default::default()
        };
        for p in &self.peers {
            r.connected += u64::from(p.connected);
            if p.failed || (p.spec.receive && p.first_media.is_none()) {
                r.failed_peers += 1;
            }
            if p.spec.receive {
                r.receivers += 1;
                r.receivers_with_media += u64::from(p.first_media.is_some());
                let got: u64 = p.streams.iter().map(StreamStats::received).sum();
                r.receiver_packets_min = Some(r.receiver_packets_min.map_or(got, |m| m.min(got)));
                r.receiver_packets_max = r.receiver_packets_max.max(got);
            }
            for s in &p.streams {
                r.expected += s.expected();
                r.lost += s.lost();
                r.jitter_ms_sum += s.jitter_ms();
                r.streams += 1;
            }
        }
        r
    }

    fn new_peer(&mut self, spec: PeerSpec) -> Result<usize, Error> {
        let index = self.peers.len();
        let std_socket = std::net::UdpSocket::bind((self.local_ip, 0)).map_err(peer_err)?;
        set_receive_buffer(&std_socket);
        std_socket.set_nonblocking(true).map_err(peer_err)?;
        let local = std_socket.local_addr().map_err(peer_err)?;
        let mut socket = UdpSocket::from_std(std_socket);
        self.poll
            .registry()
            .register(&mut socket, Token(index), Interest::READABLE)
            .map_err(peer_err)?;
        // No interceptors: subscribers see only a sample of their packets in the stack and must
        // not NACK the rest; publishers send synthetic media that cannot be repaired anyway.
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_media_engine(media_engine()?)
            .with_interceptor_registry(Registry::new())
            .build(Instant::now())
            .map_err(peer_err)?;
        let init = host_candidate(local, TcpType::Unspecified).map_err(peer_err)?;
        pc.add_local_candidate(init).map_err(peer_err)?;
        pc.add_local_candidate(RTCIceCandidateInit::default())
            .map_err(peer_err)?;
        if spec.send {
            self.senders.push(index);
        }
        self.peers.push(Peer {
            pc,
            socket,
            local,
            deadline: Instant::now(),
            connected: false,
            failed: false,
            spec,
            video: None,
            audio: None,
            audio_pts: Vec::new(),
            first_media: None,
            streams: Vec::new(),
            rtp_seen: 0,
        });
        Ok(index)
    }

    fn local_description(&self, index: usize, sdp: String) -> Result<LocalDescription, Error> {
        let peer = &self.peers[index];
        let mut candidate = host_candidate(peer.local, TcpType::Unspecified).map_err(peer_err)?;
        candidate.sdp_mid = Some("0".to_owned());
        candidate.sdp_mline_index = Some(0);
        Ok(LocalDescription {
            peer: PeerRef {
                shard: self.id,
                index,
            },
            sdp,
            candidate,
        })
    }

    fn run(mut self, commands: &mpsc::Receiver<Command>) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 2048];
        while !self.stop {
            let now = Instant::now();
            let wake = self.earliest.min(self.next_send());
            let wait = wake
                .saturating_duration_since(now)
                .min(Duration::from_millis(5));
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("peer loop: {e}");
                return;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    while let Ok(command) = commands.try_recv() {
                        command(&mut self);
                    }
                    continue;
                }
                let index = event.token().0;
                while let Some(peer) = self.peers.get(index) {
                    match peer.socket.recv_from(&mut buf) {
                        Ok((len, from)) => self.on_datagram(index, &buf[..len], from),
                        Err(_) => break,
                    }
                }
            }
            let now = Instant::now();
            if now >= self.earliest {
                self.run_timers(now);
            }
            if self.sending {
                self.send_due(now);
            }
        }
    }

    fn on_datagram(&mut self, index: usize, datagram: &[u8], from: SocketAddr) {
        let sample_every = self.sample_every;
        let peer = &mut self.peers[index];
        if peer.connected && is_rtp(datagram) {
            if !peer.spec.receive {
                return;
            }
            let arrival = clock_ns();
            let pt = datagram[1] & 0x7f;
            let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
            let ts = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
            let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
            let stream = match peer.streams.iter().position(|s| s.ssrc == ssrc) {
                Some(i) => &mut peer.streams[i],
                None => {
                    let clock = if peer.audio_pts.contains(&pt) {
                        48_000
                    } else {
                        90_000
                    };
                    peer.streams.push(StreamStats::new(ssrc, clock));
                    peer.streams.last_mut().expect("just pushed")
                }
            };
            stream.record(seq, ts, arrival);
            self.counters.packets_received += 1;
            self.counters.bytes_received += datagram.len() as u64;
            if peer.first_media.is_none() {
                let now = Instant::now();
                peer.first_media = Some(now);
                self.setup.record(now - peer.spec.created);
            }
            peer.rtp_seen += 1;
            if !peer.rtp_seen.is_multiple_of(sample_every) {
                return;
            }
        }
        let read = peer
            .pc
            .handle_read(udp_datagram(Instant::now(), peer.local, from, datagram));
        if read.is_err() {
            self.counters.read_errors += 1;
        }
        self.service(index);
    }

    /// Sends what the peer wants sent, takes its events and decrypted packets, rearms its timer.
    fn service(&mut self, index: usize) {
        let peer = &mut self.peers[index];
        while let Some(msg) = peer.pc.poll_write() {
            let _ = peer.socket.send_to(&msg.message, msg.transport.peer_addr);
        }
        while let Some(event) = peer.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                match state {
                    RTCPeerConnectionState::Connected => {
                        peer.connected = true;
                        if peer.spec.send && peer.video.is_none() {
                            setup_tracks(peer);
                        }
                    }
                    RTCPeerConnectionState::Failed => peer.failed = true,
                    _ => {}
                }
            }
        }
        while let Some(msg) = peer.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, packet) = msg.message {
                self.counters.packets_verified += 1;
                if let Some((sent, _)) = read_stamp(&packet.payload) {
                    let d = Duration::from_nanos(clock_ns().saturating_sub(sent));
                    self.window_latency.record(d);
                    self.interval_latency.record(d);
                }
            }
        }
        peer.deadline = peer
            .pc
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        self.earliest = self.earliest.min(peer.deadline);
    }

    fn run_timers(&mut self, now: Instant) {
        self.earliest = now + Duration::from_secs(1);
        for index in 0..self.peers.len() {
            if self.peers[index].deadline <= now {
                let _ = self.peers[index].pc.handle_timeout(now);
                self.service(index);
            } else {
                self.earliest = self.earliest.min(self.peers[index].deadline);
            }
        }
    }

    fn next_send(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(1);
        if !self.sending {
            return far;
        }
        self.senders
            .iter()
            .map(|&i| &self.peers[i])
            .flat_map(|p| [&p.video, &p.audio])
            .flatten()
            .map(Track::due)
            .min()
            .unwrap_or(far)
    }

    fn send_due(&mut self, now: Instant) {
        let profile = self.profile;
        let frame_packets = profile.frame_packets();
        let video_len = profile.frame_bytes() / frame_packets;
        let frame_interval = Duration::from_secs(1) / profile.fps.max(1);
        let packet_gap = profile.packet_gap();
        for s in 0..self.senders.len() {
            let index = self.senders[s];
            let peer = &mut self.peers[index];
            if !peer.connected {
                continue;
            }
            let mut sent = false;
            if let Some(video) = &mut peer.video
                && profile.video_bps > 0
            {
                if now.saturating_duration_since(video.due()) > MAX_LAG {
                    video.next = now;
                    video.frame_left = 0;
                }
                loop {
                    if video.frame_left == 0 {
                        if video.next > now {
                            break;
                        }
                        video.frame_left = frame_packets;
                        video.packet_at = video.next;
                        video.next += frame_interval;
                    }
                    if video.packet_at > now {
                        break;
                    }
                    video.frame_left -= 1;
                    video.packet_at += packet_gap;
                    let marker = video.frame_left == 0;
                    self.stamp_counter += 1;
                    stamp(&mut self.payload, video_len, clock_ns(), self.stamp_counter);
                    write(
                        &mut peer.pc,
                        video,
                        marker,
                        &self.payload,
                        &mut self.counters,
                    );
                    if marker {
                        video.ts = video.ts.wrapping_add(90_000 / profile.fps.max(1));
                    }
                    sent = true;
                }
            }
            if let Some(audio) = &mut peer.audio
                && profile.audio_bps > 0
            {
                if now.saturating_duration_since(audio.next) > MAX_LAG {
                    audio.next = now;
                }
                while audio.next <= now {
                    audio.next += Duration::from_millis(20);
                    self.stamp_counter += 1;
                    let len = profile.audio_packet_bytes();
                    stamp(&mut self.payload, len, clock_ns(), self.stamp_counter);
                    write(&mut peer.pc, audio, true, &self.payload, &mut self.counters);
                    audio.ts = audio.ts.wrapping_add(960);
                    sent = true;
                }
            }
            if sent {
                self.service(index);
            }
        }
    }
}

/// Finds the publisher's senders and their negotiated payload types once connected.
fn setup_tracks(peer: &mut Peer) {
    let senders: Vec<RTCRtpSenderId> = peer.pc.get_senders().collect();
    let now = Instant::now();
    for id in senders {
        let Some(mut sender) = peer.pc.rtp_sender(id) else {
            continue;
        };
        let kind = sender.track().kind();
        let Some(ssrc) = sender.track().ssrcs().next() else {
            continue;
        };
        let params = sender.get_parameters();
        let Some(pt) = params.rtp_parameters.codecs.first().map(|c| c.payload_type) else {
            continue;
        };
        let t = Track {
            sender: id,
            ssrc,
            pt,
            seq: 1,
            ts: 0,
            next: now,
            frame_left: 0,
            packet_at: now,
        };
        match kind {
            RtpCodecKind::Video => peer.video = Some(t),
            RtpCodecKind::Audio => peer.audio = Some(t),
            _ => {}
        }
    }
}

fn write(
    pc: &mut RTCPeerConnection,
    track: &mut Track,
    marker: bool,
    payload: &[u8],
    counters: &mut Counters,
) {
    let mut packet = rtc::rtp::Packet::default();
    packet.header.version = 2;
    packet.header.marker = marker;
    packet.header.payload_type = track.pt;
    packet.header.sequence_number = track.seq;
    packet.header.timestamp = track.ts;
    packet.header.ssrc = track.ssrc;
    packet.payload = Bytes::copy_from_slice(payload);
    track.seq = track.seq.wrapping_add(1);
    if let Some(mut sender) = pc.rtp_sender(track.sender)
        && sender.write_rtp(Instant::now(), packet).is_ok()
    {
        counters.packets_sent += 1;
        counters.bytes_sent += payload.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1_5_mbps_profile_sends_about_170_packets_a_second() {
        let p = MediaProfile {
            video_bps: 1_500_000,
            audio_bps: 64_000,
            fps: 30,
            packet_size: 1100,
            pacing: 2.5,
        };
        // 6,250 bytes a frame in 6 packets of ~1,041 bytes, 30 frames a second, sent over
        // 40% of the frame's 33 ms.
        assert_eq!(p.frame_packets(), 6);
        assert_eq!(p.packet_gap().as_micros(), 2_222);
        assert_eq!(
            MediaProfile { pacing: 0.0, ..p }.packet_gap(),
            Duration::ZERO
        );
        assert!((p.video_pps() - 180.0).abs() < 1e-9);
        assert_eq!(p.audio_packet_bytes(), 160);
    }

    #[test]
    fn finds_opus_payload_types_in_sdp() {
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(opus_payload_types(sdp), vec![111]);
    }

    #[test]
    fn tells_rtp_from_rtcp() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 96;
        assert!(is_rtp(&rtp));
        rtp[1] = 200; // sender report
        assert!(!is_rtp(&rtp));
        assert!(!is_rtp(&[0x00, 0x01, 0, 0]));
    }
}
