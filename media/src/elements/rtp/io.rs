//! The media threads of a negotiated RtpEndpoint.
//!
//! Why threads of its own rather than the shared socket loops: an RtpEndpoint talks to one
//! remote peer on ports of its own (nothing to demultiplex by ICE username), with its own SDES
//! keys and RTCP, and a server carries few such gateway legs next to its WebRTC peers. Like a
//! recorder or a player it meets the pipeline's router through its [`ElementPort`], so the
//! WebRTC loops never wait on it and its crypto never runs on them. Two threads:
//!
//! - **in** (`rkms-rtp-in`): a `mio` poll over the RTP and RTCP sockets. Inbound RTP is
//!   decrypted (SDES), mapped from the local payload types to a codec and handed to the router
//!   with [`ElementPort::send_rtp`]; inbound RTCP gives the remote's sender reports and keyframe
//!   requests (passed to this element's sources with [`ElementPort::request_keyframe`]). It
//!   also sends every RTCP packet of the element — reports each second, PLI+FIR when the
//!   router asks this element for a keyframe — so each SRTCP context has one user.
//! - **out** (`rkms-rtp-out`): takes the packets routed to the element ([`ElementPort::receive`])
//!   and sends them from the RTP socket (symmetric RTP) under the remote's payload type and this
//!   element's SSRC, encrypted when SDES is on.
//!
//! The in thread also publishes the element's statistics (for `getStats`) every [`TICK`], so
//! reading them never waits on either thread.
//!
//! A renegotiation changes running legs in place ([`Running::update`]): where media and RTCP
//! go, the payload types, whether rkms sends (hold), the remote's SDES key. Each thread takes
//! its part from a channel before its next packet; sockets, SSRCs and the element's port stay,
//! so the router sees one continuous source and sink.
//!
//! Every SDES packet is counted against its master key's lifetime ([`KeyUsage`]): the packet
//! reaching the soft limit raises [`ElementEvent::KeySoftLimit`] (once per key), and packets
//! past the lifetime are dropped, never sent or accepted under a spent key.
//!
//! Dropping [`Running`] stops the in thread, which drops the port; the loop then lets go of the
//! out thread's channel and that thread ends too.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use rtc::shared::marshal::Unmarshal;
use rtc::srtp::context::Context;

use super::RtpError;
use super::rtcp::{self, Reception, RemoteReception, SentCounters};
use super::sdes::{KeyState, KeyUsage, MasterKey, Packets};
use crate::elements::{ElementEvent, ElementEvents, Flows};
use crate::graph::MediaKind;
use crate::routing::RtpPacket;
use crate::webrtc::codecs::CodecId;
use crate::webrtc::{ElementPort, EndpointStats, RtpStreamStats, SinkPacket};

/// How often reports go out and timers run.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// The in thread's longest sleep (flow timeouts).
const TICK: Duration = Duration::from_millis(200);
/// Without RTCP from the remote for this long, the media state is disconnected.
const RTCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets queued between the loop and the out thread (about 2 s of a 720p call).
const QUEUE: usize = 1024;
const WAKER: Token = Token(usize::MAX);

/// What a negotiation agreed for one media line, which a renegotiation may change.
#[derive(Clone)]
pub(super) struct LegParams {
    pub remote_rtp: SocketAddr,
    pub remote_rtcp: SocketAddr,
    /// RTCP shares the RTP ports (`a=rtcp-mux` on both sides).
    pub mux: bool,
    /// Payload types rkms receives, with their codecs.
    pub recv: Vec<(u8, CodecId)>,
    /// Payload types the remote takes, by codec; empty when it takes no media (hold).
    pub send: Vec<(CodecId, u8)>,
    /// The remote's SSRC, if its SDP names it.
    pub remote_ssrc: Option<u32>,
}

/// One direction's SDES master key: its count against its lifetime, and the SRTP and SRTCP
/// contexts keyed with it.
pub(super) struct Keyed {
    usage: Arc<KeyUsage>,
    rtp: Context,
    rtcp: Context,
}

impl Keyed {
    pub(super) fn new(key: &MasterKey, usage: Arc<KeyUsage>) -> Result<Self, RtpError> {
        Ok(Self {
            usage,
            rtp: key.context()?,
            rtcp: key.context()?,
        })
    }
}

/// Counts one packet of `kind` against its key's lifetime, raising OnKeySoftLimit at the soft
/// limit; `false` when the key is spent and the packet must be dropped.
fn spend(usage: &KeyUsage, packets: Packets, kind: MediaKind, events: &ElementEvents) -> bool {
    match usage.count(packets) {
        KeyState::Expired => false,
        KeyState::SoftLimit => {
            events(ElementEvent::KeySoftLimit(kind));
            true
        }
        KeyState::Fresh => true,
    }
}

/// A context and the lifetime count of its key.
type Counted = (Arc<KeyUsage>, Context);

/// One negotiated media line.
pub(super) struct Leg {
    pub kind: MediaKind,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    /// This element's SSRC on the line.
    pub ssrc: u32,
    pub params: LegParams,
    /// SDES keys: rkms's own (encrypts) and the remote's (decrypts).
    pub keys: Option<(Keyed, Keyed)>,
}

/// A renegotiation's change to one running leg.
pub(super) struct LegUpdate {
    pub kind: MediaKind,
    /// `None`: the stream is stopped (port 0, or left out of the new description).
    pub params: Option<LegParams>,
    /// rkms's new key, when it changed.
    pub local_key: Option<Keyed>,
    /// The remote's new key, when it changed.
    pub remote_key: Option<Keyed>,
}

/// The in thread's part of a [`LegUpdate`].
struct InUpdate {
    kind: MediaKind,
    params: Option<LegParams>,
    protect_rtcp: Option<Counted>,
    remote_key: Option<Keyed>,
}

/// The out thread's part of a [`LegUpdate`].
struct OutUpdate {
    kind: MediaKind,
    to: Option<SocketAddr>,
    send: Vec<(CodecId, u8)>,
    encrypt: Option<Counted>,
}

/// The media threads of a session; dropping it stops them.
pub(super) struct Running {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    stats: Arc<Mutex<EndpointStats>>,
    to_in: Sender<InUpdate>,
    to_out: Sender<OutUpdate>,
}

impl Running {
    /// The statistics as of the in thread's last tick.
    pub(super) fn stats(&self) -> EndpointStats {
        self.stats.lock().clone()
    }

    /// Applies a renegotiation to the running legs; each thread takes it before its next packet.
    pub(super) fn update(&self, updates: Vec<LegUpdate>) {
        for u in updates {
            let (encrypt, protect_rtcp) = match u.local_key {
                Some(k) => (Some((k.usage.clone(), k.rtp)), Some((k.usage, k.rtcp))),
                None => (None, None),
            };
            let _ = self.to_out.send(OutUpdate {
                kind: u.kind,
                to: u.params.as_ref().map(|p| p.remote_rtp),
                send: u
                    .params
                    .as_ref()
                    .map(|p| p.send.clone())
                    .unwrap_or_default(),
                encrypt,
            });
            let _ = self.to_in.send(InUpdate {
                kind: u.kind,
                params: u.params,
                protect_rtcp,
                remote_key: u.remote_key,
            });
        }
        let _ = self.waker.wake();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
    }
}

/// Starts the threads of `legs`, taking the element's port.
pub(super) fn start(
    legs: Vec<Leg>,
    port: ElementPort,
    events: ElementEvents,
) -> Result<Running, RtpError> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let (keyframes_tx, keyframes) = crossbeam_channel::unbounded();
    let hook_waker = waker.clone();
    port.on_keyframe_request(Box::new(move |kind| {
        let _ = keyframes_tx.send(kind);
        let _ = hook_waker.wake();
    }))?;
    let media = port.receive(QUEUE)?;

    let mut ins = Vec::new();
    let mut outs = Vec::new();
    for (index, leg) in legs.into_iter().enumerate() {
        let sent = Arc::new(SentCounters::default());
        let (encrypt, protect_rtcp, remote_key) = match leg.keys {
            Some((local, remote)) => (
                Some((local.usage.clone(), local.rtp)),
                Some((local.usage, local.rtcp)),
                Some(remote),
            ),
            None => (None, None, None),
        };
        outs.push(OutLeg {
            kind: leg.kind,
            socket: leg.rtp.try_clone()?,
            to: leg.params.remote_rtp,
            send: leg.params.send.clone(),
            ssrc: leg.ssrc,
            encrypt,
            sent: sent.clone(),
            refused: Vec::new(),
        });
        // Non-blocking for mio; the out thread's clone shares the flag, so a full send
        // buffer drops that datagram rather than stalling the thread.
        leg.rtp.set_nonblocking(true)?;
        leg.rtcp.set_nonblocking(true)?;
        let mut rtp = mio::net::UdpSocket::from_std(leg.rtp);
        let mut rtcp_socket = mio::net::UdpSocket::from_std(leg.rtcp);
        poll.registry()
            .register(&mut rtp, Token(index * 2), Interest::READABLE)?;
        poll.registry()
            .register(&mut rtcp_socket, Token(index * 2 + 1), Interest::READABLE)?;
        ins.push(InLeg {
            kind: leg.kind,
            rtp,
            rtcp: rtcp_socket,
            params: leg.params,
            stopped: false,
            ssrc: leg.ssrc,
            remote_key,
            protect_rtcp,
            reception: None,
            sent,
            fir_seq: 0,
            unknown_pt_logged: false,
            codec: None,
            bytes: 0,
            keyframe_requests: 0,
            plis: 0,
            firs: 0,
            remote: None,
        });
    }

    let (to_out, out_updates) = crossbeam_channel::unbounded();
    let (to_in, in_updates) = crossbeam_channel::unbounded();
    let out = OutThread {
        legs: outs,
        updates: out_updates,
        events: events.clone(),
        flows: Flows::default(),
        epoch,
        buf: Vec::with_capacity(1500),
    };
    std::thread::Builder::new()
        .name("rkms-rtp-out".into())
        .spawn(move || out.run(media))?;
    let stats = Arc::new(Mutex::new(EndpointStats::default()));
    let thread = InThread {
        poll,
        stats: stats.clone(),
        wire_received: 0,
        legs: ins,
        port,
        events,
        keyframes,
        updates: in_updates,
        stop: stop.clone(),
        flows: Flows::default(),
        epoch,
        last_rtcp: None,
    };
    std::thread::Builder::new()
        .name("rkms-rtp-in".into())
        .spawn(move || thread.run())?;
    Ok(Running {
        stop,
        waker,
        stats,
        to_in,
        to_out,
    })
}

struct InLeg {
    kind: MediaKind,
    rtp: mio::net::UdpSocket,
    rtcp: mio::net::UdpSocket,
    /// As negotiated; its `send` names the codec the out leg sends, for the statistics.
    params: LegParams,
    /// Stopped by a renegotiation (port 0): nothing is received or reported.
    stopped: bool,
    ssrc: u32,
    /// The remote's key: decrypts its SRTP and SRTCP.
    remote_key: Option<Keyed>,
    /// rkms's key: protects the SRTCP it sends.
    protect_rtcp: Option<Counted>,
    /// The remote's current stream (a new SSRC replaces it).
    reception: Option<Reception>,
    sent: Arc<SentCounters>,
    fir_seq: u8,
    unknown_pt_logged: bool,
    /// Payload type and codec of the last packet received.
    codec: Option<(u8, CodecId)>,
    /// Payload bytes received.
    bytes: u64,
    /// Keyframe requests sent (each a PLI and a FIR).
    keyframe_requests: u64,
    /// PLIs and FIRs received.
    plis: u64,
    firs: u64,
    /// The remote's latest report block on what rkms sends, with the round trip it gave.
    remote: Option<(RemoteReception, Option<f64>)>,
}

impl InLeg {
    /// Sends a compound RTCP packet to the remote (encrypted with SDES).
    fn send_rtcp(
        &mut self,
        packets: &[Box<dyn rtc::rtcp::packet::Packet>],
        events: &ElementEvents,
    ) {
        if self.stopped {
            return;
        }
        let Ok(clear) = rtc::rtcp::packet::marshal(packets) else {
            return;
        };
        let datagram = match &mut self.protect_rtcp {
            Some((usage, ctx)) => {
                if !spend(usage, Packets::Rtcp, self.kind, events) {
                    return;
                }
                match ctx.encrypt_rtcp(&clear) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!("rtp endpoint: cannot protect RTCP: {e}");
                        return;
                    }
                }
            }
            None => clear,
        };
        let socket = if self.params.mux {
            &self.rtp
        } else {
            &self.rtcp
        };
        if socket.send_to(&datagram, self.params.remote_rtcp).is_ok() {
            self.sent.control(datagram.len());
        }
    }

    fn request_keyframe(&mut self, events: &ElementEvents) {
        let Some(media_ssrc) = self
            .reception
            .as_ref()
            .map(Reception::ssrc)
            .or(self.params.remote_ssrc)
        else {
            return;
        };
        self.fir_seq = self.fir_seq.wrapping_add(1);
        self.keyframe_requests += 1;
        let packets = rtcp::keyframe_request(self.ssrc, media_ssrc, self.fir_seq);
        self.send_rtcp(&packets, events);
    }

    /// Takes a renegotiation's change; `true` when the remote needs a keyframe (it takes media
    /// again, or at a new address).
    fn apply(&mut self, update: InUpdate) -> bool {
        if let Some(key) = update.remote_key {
            self.remote_key = Some(key);
        }
        if let Some(key) = update.protect_rtcp {
            self.protect_rtcp = Some(key);
        }
        let Some(params) = update.params else {
            self.stopped = true;
            // Nothing is sent on a stopped stream: no outbound statistics either.
            self.params.send.clear();
            return false;
        };
        let was_sending = !self.stopped && !self.params.send.is_empty();
        let moved = params.remote_rtp != self.params.remote_rtp;
        self.unknown_pt_logged = false;
        self.params = params;
        self.stopped = false;
        !self.params.send.is_empty() && (moved || !was_sending)
    }
}

struct InThread {
    poll: Poll,
    legs: Vec<InLeg>,
    port: ElementPort,
    events: ElementEvents,
    keyframes: Receiver<MediaKind>,
    updates: Receiver<InUpdate>,
    stop: Arc<AtomicBool>,
    flows: Flows,
    epoch: Instant,
    last_rtcp: Option<Instant>,
    stats: Arc<Mutex<EndpointStats>>,
    /// Datagram bytes received, RTCP included.
    wire_received: u64,
}

impl InThread {
    fn run(mut self) {
        // The remote's decoder starts with a keyframe.
        self.port.request_keyframe(MediaKind::Video);
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; 2048];
        let mut next_report = Instant::now();
        let mut next_stats = next_report;
        while !self.stop.load(Ordering::Relaxed) {
            let wait = next_report
                .saturating_duration_since(Instant::now())
                .min(TICK);
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("rtp endpoint poll failed: {e}");
                break;
            }
            // Before the sockets: what arrives after a renegotiation's answer is the new session's.
            while let Ok(update) = self.updates.try_recv() {
                let kind = update.kind;
                let resumed = self
                    .legs
                    .iter_mut()
                    .find(|l| l.kind == kind)
                    .is_some_and(|leg| leg.apply(update));
                if resumed {
                    self.port.request_keyframe(kind);
                }
            }
            for event in &events {
                if event.token() == WAKER {
                    continue;
                }
                let (index, is_rtcp_socket) = (event.token().0 / 2, event.token().0 % 2 == 1);
                self.drain(index, is_rtcp_socket, &mut buf);
            }
            while let Ok(kind) = self.keyframes.try_recv() {
                for leg in self.legs.iter_mut().filter(|l| l.kind == kind) {
                    leg.request_keyframe(&self.events);
                }
            }
            let now = Instant::now();
            if now >= next_report {
                next_report = now + REPORT_INTERVAL;
                self.send_reports(now);
            }
            self.check_timeouts(now);
            if now >= next_stats {
                next_stats = now + TICK;
                *self.stats.lock() = self.snapshot();
            }
        }
        for kind in self.flows.stopped(Instant::now(), true) {
            (self.events)(ElementEvent::FlowIn(kind, false));
        }
        if self.last_rtcp.is_some() {
            (self.events)(ElementEvent::RemoteRtcp(false));
        }
    }

    fn drain(&mut self, index: usize, is_rtcp_socket: bool, buf: &mut [u8]) {
        loop {
            let Some(leg) = self.legs.get(index) else {
                return;
            };
            let socket = if is_rtcp_socket { &leg.rtcp } else { &leg.rtp };
            let len = match socket.recv_from(buf) {
                Ok((len, _)) => len,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // ICMP errors (the remote's port closed) concern that send only.
                Err(_) => continue,
            };
            let datagram = &buf[..len];
            self.wire_received += len as u64;
            let now = Instant::now();
            if is_rtcp_socket || rtcp::is_rtcp(datagram) {
                self.on_rtcp(index, datagram, now);
            } else {
                self.on_rtp(index, datagram, now);
            }
        }
    }

    fn on_rtp(&mut self, index: usize, datagram: &[u8], now: Instant) {
        let since = now.saturating_duration_since(self.epoch);
        let leg = &mut self.legs[index];
        if leg.stopped {
            return;
        }
        let mut bytes = match &mut leg.remote_key {
            Some(key) => {
                if key.usage.expired(Packets::Rtp) {
                    return;
                }
                let clear = match key.rtp.decrypt_rtp(datagram) {
                    Ok(clear) => clear.freeze(),
                    Err(e) => {
                        tracing::trace!("rtp endpoint: dropped an SRTP packet: {e}");
                        return;
                    }
                };
                // Counted once authentic: forged packets do not use the key up.
                if !spend(&key.usage, Packets::Rtp, leg.kind, &self.events) {
                    return;
                }
                clear
            }
            None => Bytes::copy_from_slice(datagram),
        };
        let Ok(packet) = RtpPacket::unmarshal(&mut bytes) else {
            return;
        };
        let pt = packet.header.payload_type;
        let Some(&(_, codec)) = leg.params.recv.iter().find(|(p, _)| *p == pt) else {
            if !std::mem::replace(&mut leg.unknown_pt_logged, true) {
                tracing::warn!(pt, "rtp endpoint: payload type not negotiated; dropped");
            }
            return;
        };
        let header = &packet.header;
        // A new SSRC is a new remote stream (a restarted or moved sender): its reception
        // statistics start again, and the router continues the element's sinks' streams.
        let reception = match &mut leg.reception {
            Some(r) if r.ssrc() == header.ssrc => r,
            slot => slot.insert(Reception::new(
                header.ssrc,
                header.sequence_number,
                codec.clock_rate(),
            )),
        };
        reception.on_packet(header.sequence_number, header.timestamp, since);
        leg.codec = Some((pt, codec));
        leg.bytes += packet.payload.len() as u64;
        let kind = leg.kind;
        if self.flows.saw(kind, now) {
            (self.events)(ElementEvent::FlowIn(kind, true));
        }
        let _ = self.port.send_rtp(kind, codec, packet);
    }

    fn on_rtcp(&mut self, index: usize, datagram: &[u8], now: Instant) {
        let leg = &mut self.legs[index];
        if leg.stopped {
            return;
        }
        let clear;
        let datagram = match &mut leg.remote_key {
            Some(key) => {
                if key.usage.expired(Packets::Rtcp) {
                    return;
                }
                match key.rtcp.decrypt_rtcp(datagram) {
                    Ok(c) => clear = c,
                    Err(e) => {
                        tracing::trace!("rtp endpoint: dropped an SRTCP packet: {e}");
                        return;
                    }
                }
                if !spend(&key.usage, Packets::Rtcp, leg.kind, &self.events) {
                    return;
                }
                &clear[..]
            }
            None => datagram,
        };
        let Some(received) = rtcp::read(datagram, leg.ssrc) else {
            return;
        };
        leg.plis += u64::from(received.plis);
        leg.firs += u64::from(received.firs);
        if let Some(block) = received.about_ours {
            leg.remote = Some((block, block.round_trip(crate::webrtc::ntp_now())));
        }
        let kind = leg.kind;
        if let (Some((ssrc, ntp, rtp_time)), Some(r)) = (received.sender_report, &mut leg.reception)
            && ssrc == r.ssrc()
        {
            r.on_sender_report(ntp, now);
            // Recorders of this element's media align its audio and video by these.
            let _ = self.port.send_sender_report(kind, ssrc, ntp, rtp_time);
        }
        if received.wants_keyframe() {
            self.port.request_keyframe(kind);
        }
        if self.last_rtcp.replace(now).is_none() {
            (self.events)(ElementEvent::RemoteRtcp(true));
        }
    }

    fn send_reports(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.epoch);
        let ntp = crate::webrtc::ntp_now();
        for leg in self.legs.iter_mut().filter(|l| !l.stopped) {
            let packets =
                rtcp::report(leg.ssrc, &leg.sent, leg.reception.as_mut(), since, now, ntp);
            leg.send_rtcp(&packets, &self.events);
        }
    }

    /// The element's statistics now: per leg, the stream received and the stream sent.
    fn snapshot(&self) -> EndpointStats {
        let mut out = EndpointStats {
            bytes_received: self.wire_received,
            ..EndpointStats::default()
        };
        for leg in &self.legs {
            out.bytes_sent += leg.sent.wire_bytes();
            if let Some(r) = &leg.reception {
                let mut s = RtpStreamStats::new(leg.kind, r.ssrc());
                s.codec = leg.codec;
                s.packets = u64::from(r.packets());
                s.bytes = leg.bytes;
                s.packets_lost = r.lost();
                s.jitter = r.jitter();
                s.pli_count = leg.keyframe_requests;
                s.fir_count = leg.keyframe_requests;
                out.inbound.push(s);
            }
            if !leg.params.send.is_empty() {
                let mut s = RtpStreamStats::new(leg.kind, leg.ssrc);
                let (packets, octets) = leg.sent.counts();
                s.packets = u64::from(packets);
                s.bytes = u64::from(octets);
                s.codec = leg.sent.payload_type().and_then(|pt| {
                    let (codec, _) = leg.params.send.iter().find(|(_, p)| *p == pt)?;
                    Some((pt, *codec))
                });
                if let Some((block, rtt)) = &leg.remote {
                    s.packets_lost = i64::from(block.total_lost);
                    s.fraction_lost = f64::from(block.fraction_lost) / 256.0;
                    s.round_trip_time = rtt.unwrap_or(0.0);
                }
                s.pli_count = leg.plis;
                s.fir_count = leg.firs;
                out.outbound.push(s);
            }
        }
        out
    }

    fn check_timeouts(&mut self, now: Instant) {
        for kind in self.flows.stopped(now, false) {
            (self.events)(ElementEvent::FlowIn(kind, false));
        }
        if self
            .last_rtcp
            .is_some_and(|at| now.saturating_duration_since(at) > RTCP_TIMEOUT)
        {
            self.last_rtcp = None;
            (self.events)(ElementEvent::RemoteRtcp(false));
        }
    }
}

struct OutLeg {
    kind: MediaKind,
    socket: UdpSocket,
    to: SocketAddr,
    /// Empty while the remote takes no media (hold, stopped).
    send: Vec<(CodecId, u8)>,
    ssrc: u32,
    encrypt: Option<Counted>,
    sent: Arc<SentCounters>,
    /// Codecs already reported as not negotiated with the remote.
    refused: Vec<CodecId>,
}

struct OutThread {
    legs: Vec<OutLeg>,
    updates: Receiver<OutUpdate>,
    events: ElementEvents,
    flows: Flows,
    epoch: Instant,
    buf: Vec<u8>,
}

impl OutThread {
    fn run(mut self, media: Receiver<SinkPacket>) {
        loop {
            let packet = media.recv_timeout(TICK);
            // A renegotiation applies from the next packet on.
            while let Ok(update) = self.updates.try_recv() {
                self.apply(update);
            }
            match packet {
                Ok(p) => self.send(&p),
                Err(RecvTimeoutError::Timeout) => {}
                // The element left the loop (released).
                Err(RecvTimeoutError::Disconnected) => break,
            }
            for kind in self.flows.stopped(Instant::now(), false) {
                (self.events)(ElementEvent::FlowOut(kind, false));
            }
        }
        for kind in self.flows.stopped(Instant::now(), true) {
            (self.events)(ElementEvent::FlowOut(kind, false));
        }
    }

    fn apply(&mut self, update: OutUpdate) {
        let Some(leg) = self.legs.iter_mut().find(|l| l.kind == update.kind) else {
            return;
        };
        if let Some(key) = update.encrypt {
            leg.encrypt = Some(key);
        }
        if let Some(to) = update.to {
            leg.to = to;
        }
        leg.send = update.send;
        leg.refused.clear();
    }

    fn send(&mut self, p: &SinkPacket) {
        let Some(leg) = self.legs.iter_mut().find(|l| l.kind == p.kind) else {
            return;
        };
        if leg.send.is_empty() {
            return;
        }
        let Some(&(_, pt)) = leg.send.iter().find(|(c, _)| *c == p.codec) else {
            if !leg.refused.contains(&p.codec) {
                leg.refused.push(p.codec);
                tracing::warn!(
                    codec = ?p.codec,
                    "rtp endpoint: the remote did not negotiate this codec; not sent (no transcoding)"
                );
            }
            return;
        };
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(&[0x80, pt | if p.marker { 0x80 } else { 0 }]);
        buf.extend_from_slice(&p.seq.to_be_bytes());
        buf.extend_from_slice(&p.timestamp.to_be_bytes());
        buf.extend_from_slice(&leg.ssrc.to_be_bytes());
        buf.extend_from_slice(&p.payload);
        let result = match &mut leg.encrypt {
            Some((usage, ctx)) => {
                if !spend(usage, Packets::Rtp, p.kind, &self.events) {
                    return;
                }
                match ctx.encrypt_rtp(buf) {
                    Ok(protected) => leg.socket.send_to(&protected, leg.to),
                    Err(e) => {
                        tracing::debug!("rtp endpoint: cannot protect RTP: {e}");
                        return;
                    }
                }
            }
            None => leg.socket.send_to(buf, leg.to),
        };
        let Ok(datagram) = result else {
            return;
        };
        let since = p.arrival.saturating_duration_since(self.epoch);
        leg.sent.sent(
            rtcp::Sent {
                timestamp: p.timestamp,
                clock_rate: p.codec.clock_rate(),
                payload_type: pt,
                payload: p.payload.len(),
                datagram,
            },
            since,
        );
        if self.flows.saw(p.kind, p.arrival) {
            (self.events)(ElementEvent::FlowOut(p.kind, true));
        }
    }
}
