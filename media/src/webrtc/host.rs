//! The WebRTC host: the socket loop thread that owns every endpoint's peer connection and the
//! routing table, and the cheap handles ([`WebRtcHost`], [`Endpoint`]) the signaling layer uses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use rtc::ice::tcp_type::TcpType;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::{mpsc, oneshot};

use super::codecs::CodecId;
use super::data::{DataChannelOptions, DataRoutes};
use super::error::WebRtcError;
use super::events::EndpointEvent;
use super::extensions::CarriedExtensions;
use super::ice_servers::IceServers;
use super::peer::{Inbound, Peer};
use super::peer_io::host_candidate;
use super::settings::{BandwidthLimits, EndpointOptions, NetworkSettings};
use super::sockets::{FIRST_TURN_TOKEN, Sockets};
use super::stats::EndpointStats;
use super::taps::{ElementPort, SinkSenderReport, TapInput, Taps};
use super::tcp::{FIRST_TCP_TOKEN, TcpSockets, bind_listener};
use super::udp::{enlarge_buffers, stun_local_ufrag};
use crate::graph::{ElementId, MediaKind};
use crate::routing::{Rewritten, Router, RtpPacket, starts_keyframe};

const WAKER: Token = Token(usize::MAX);
/// The longest the loop sleeps, so flow timeouts and deferred keyframe requests run.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// How often forwarded streams get a sender report.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Datagrams read per socket per pass before timers run again.
const READ_BUDGET: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, WebRtcError>>;

pub(super) enum Command {
    Add(ElementId, Box<Peer>, Reply<()>),
    Release(ElementId),
    ProcessOffer(ElementId, String, Reply<String>),
    GenerateOffer(ElementId, Reply<String>),
    ProcessAnswer(ElementId, String, Reply<()>),
    LocalDescription(ElementId, Reply<Option<String>>),
    RemoteDescription(ElementId, Reply<Option<String>>),
    AddIceCandidate(ElementId, RTCIceCandidateInit, Reply<()>),
    /// With the endpoint's own STUN/TURN servers (unset ones: the loop's).
    GatherCandidates(ElementId, IceServers, Reply<()>),
    SetBandwidth(ElementId, BandwidthLimits),
    SetIceTcp(ElementId, bool),
    Stats(ElementId, Reply<EndpointStats>),
    CreateDataChannel(ElementId, DataChannelOptions, Reply<()>),
    CloseDataChannel(ElementId, u16, Reply<()>),
    Connect(ElementId, ElementId, MediaKind),
    Disconnect(ElementId, ElementId, MediaKind),
    /// New STUN/TURN servers for every socket of the loop.
    SetIceServers(IceServers),
    /// From a non-WebRTC element ([`super::taps`]).
    Tap(ElementId, TapInput),
    Shutdown,
}

impl Command {
    /// The endpoint a command is about (the sink for connections).
    fn endpoint(&self) -> ElementId {
        match self {
            Command::Add(id, ..)
            | Command::Release(id)
            | Command::ProcessOffer(id, ..)
            | Command::GenerateOffer(id, ..)
            | Command::ProcessAnswer(id, ..)
            | Command::LocalDescription(id, ..)
            | Command::RemoteDescription(id, ..)
            | Command::AddIceCandidate(id, ..)
            | Command::GatherCandidates(id, ..)
            | Command::SetBandwidth(id, _)
            | Command::SetIceTcp(id, _)
            | Command::Stats(id, _)
            | Command::CreateDataChannel(id, ..)
            | Command::CloseDataChannel(id, ..)
            | Command::Connect(_, id, _)
            | Command::Disconnect(_, id, _)
            | Command::Tap(id, _) => *id,
            Command::Shutdown | Command::SetIceServers(_) => ElementId(u32::MAX),
        }
    }
}

/// Handle to the loop: sends commands and wakes it.
#[derive(Clone)]
pub(super) struct LoopHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl LoopHandle {
    pub(super) fn send(&self, command: Command) -> Result<(), WebRtcError> {
        self.commands
            .send(command)
            .map_err(|_| WebRtcError::HostStopped)?;
        self.waker.wake().map_err(WebRtcError::Io)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, WebRtcError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| WebRtcError::HostStopped)?
    }
}

/// One socket loop thread and the sockets it owns.
struct Shard {
    handle: LoopHandle,
    local_candidates: Vec<RTCIceCandidateInit>,
    local_addrs: Vec<SocketAddr>,
    advertised_addrs: Vec<SocketAddr>,
    thread: Option<JoinHandle<()>>,
}

impl Shard {
    fn start(settings: &NetworkSettings, index: usize) -> Result<Self, WebRtcError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut sockets = Vec::new();
        let mut local_addrs = Vec::new();
        let mut local_candidates = Vec::new();
        let mut advertised_addrs = Vec::new();
        let mut listeners = Vec::new();
        for &ip in &settings.bind_addresses {
            let std_socket = bind_in_range(ip, settings.port_min, settings.port_max)?;
            std_socket.set_nonblocking(true)?;
            enlarge_buffers(&std_socket);
            let local = std_socket.local_addr()?;
            let advertised = SocketAddr::new(advertised_ip(ip, settings), local.port());
            advertised_addrs.push(advertised);
            local_candidates.push(host_candidate(advertised, TcpType::Unspecified)?);
            let mut socket = UdpSocket::from_std(std_socket);
            poll.registry()
                .register(&mut socket, Token(sockets.len()), Interest::READABLE)?;
            local_addrs.push(local);
            // The loop calls a socket by its host candidate's address, as the ICE agent does:
            // a socket bound on 0.0.0.0 is known by the address it announces.
            sockets.push((socket, advertised));
            if settings.ice_tcp {
                match bind_listener(ip, settings.port_min, settings.port_max, local.port()) {
                    Ok(std_listener) => {
                        std_listener.set_nonblocking(true)?;
                        let port = std_listener.local_addr()?.port();
                        let advertised = SocketAddr::new(advertised.ip(), port);
                        let mut listener = TcpListener::from_std(std_listener);
                        let token = Token(FIRST_TCP_TOKEN + listeners.len());
                        poll.registry()
                            .register(&mut listener, token, Interest::READABLE)?;
                        local_candidates.push(host_candidate(advertised, TcpType::Passive)?);
                        listeners.push((listener, advertised));
                    }
                    Err(e) => tracing::warn!("no ICE-TCP candidate on {ip}: {e}"),
                }
            }
        }
        let tcp = if listeners.is_empty() {
            TcpSockets::none()
        } else {
            TcpSockets::new(listeners, Some(poll.registry().try_clone()?))
        };
        let sockets = Sockets::new(
            sockets,
            tcp,
            &settings.ice_servers,
            Some(poll.registry().try_clone()?),
        );
        let (commands, command_rx) = channel();
        let event_loop = EventLoop::new(poll, sockets, command_rx);
        let thread = std::thread::Builder::new()
            .name(format!("rkms-webrtc-{index}"))
            .spawn(move || event_loop.run())?;
        Ok(Shard {
            handle: LoopHandle { commands, waker },
            local_candidates,
            local_addrs,
            advertised_addrs,
            thread: Some(thread),
        })
    }
}

/// Which loop thread each endpoint lives on (control plane only; the media path never reads it).
pub(super) type Placement = Arc<parking_lot::Mutex<HashMap<ElementId, usize>>>;

/// The WebRTC host: socket loop threads serving every endpoint on shared UDP ports.
///
/// With `threads > 1` in [`NetworkSettings`], each thread owns its own sockets (one port per bind
/// address) and its own routing table; endpoints created with the same
/// [`EndpointOptions::group`] (a pipeline) land on the same thread, so media between them never
/// crosses threads. Connecting endpoints of different threads is refused.
pub struct WebRtcHost {
    shards: Vec<Shard>,
    settings: NetworkSettings,
    placement: Placement,
}

impl WebRtcHost {
    /// Binds the sockets and starts the loop thread(s).
    pub fn start(settings: NetworkSettings) -> Result<Self, WebRtcError> {
        let shards = (0..settings.threads.max(1))
            .map(|index| Shard::start(&settings, index))
            .collect::<Result<_, _>>()?;
        Ok(WebRtcHost {
            shards,
            settings,
            placement: Placement::default(),
        })
    }

    /// Replaces the STUN/TURN servers every socket gathers server candidates from (the
    /// embedded relay starts after the host). Names are resolved on the loop threads.
    pub fn set_ice_servers(&self, servers: &IceServers) -> Result<(), WebRtcError> {
        for shard in &self.shards {
            shard.handle.send(Command::SetIceServers(servers.clone()))?;
        }
        Ok(())
    }

    /// The bound socket addresses of every loop thread.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shards
            .iter()
            .flat_map(|s| s.local_addrs.iter().copied())
            .collect()
    }

    /// The addresses the host candidates announce, of every loop thread.
    pub fn advertised_addrs(&self) -> Vec<SocketAddr> {
        self.shards
            .iter()
            .flat_map(|s| s.advertised_addrs.iter().copied())
            .collect()
    }

    /// Where plain RTP elements (RtpEndpoint) bind their own ports and what address they
    /// announce: the host's first bind address of the family (for IPv6 without one: `::1` when
    /// the host is bound to loopback, else `::`), advertised like the host's candidates, in the
    /// host's port range.
    pub fn rtp_addressing(&self, ipv6: bool) -> crate::elements::rtp::RtpAddressing {
        let settings = &self.settings;
        let bind = settings
            .bind_addresses
            .iter()
            .copied()
            .find(|ip| ip.is_ipv6() == ipv6)
            .unwrap_or_else(|| {
                let loopback = settings.bind_addresses.iter().any(|ip| ip.is_loopback());
                match (ipv6, loopback) {
                    (true, true) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                    (true, false) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                    (false, true) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                    (false, false) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                }
            });
        let advertised = advertised_ip(bind, settings);
        crate::elements::rtp::RtpAddressing {
            bind,
            // An unspecified address announces nothing usable; loopback at least works locally.
            advertised: if advertised.is_unspecified() {
                if ipv6 {
                    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                }
            } else {
                advertised
            },
            port_min: settings.port_min,
            port_max: settings.port_max,
        }
    }

    /// Creates a WebRTC endpoint with the element id the control plane uses for it. Its
    /// events arrive on the returned receiver.
    pub async fn create_endpoint(
        &self,
        id: ElementId,
        options: EndpointOptions,
    ) -> Result<(Endpoint, mpsc::UnboundedReceiver<EndpointEvent>), WebRtcError> {
        let index = self.shard_index(options.group);
        let shard = &self.shards[index];
        let (events, event_rx) = mpsc::unbounded_channel();
        // Key generation for the DTLS certificate happens here, off the socket loop.
        let peer = Peer::new(
            &self.settings,
            options,
            shard.local_candidates.clone(),
            events,
        )?;
        shard
            .handle
            .call(|reply| Command::Add(id, Box::new(peer), reply))
            .await?;
        self.placement.lock().insert(id, index);
        let endpoint = Endpoint {
            id,
            handle: shard.handle.clone(),
            placement: self.placement.clone(),
        };
        Ok((endpoint, event_rx))
    }

    /// The loop a group's elements live on.
    fn shard_index(&self, group: Option<u64>) -> usize {
        group.map_or(0, |g| (g % self.shards.len() as u64) as usize)
    }

    /// Places a non-WebRTC element (recorder, player) on the loop of its `group` (pipeline).
    pub fn add_element(&self, id: ElementId, group: Option<u64>) -> ElementPort {
        let index = self.shard_index(group);
        self.placement.lock().insert(id, index);
        ElementPort::new(
            id,
            self.shards[index].handle.clone(),
            self.placement.clone(),
        )
    }

    /// The loop both elements live on.
    fn shard_of(&self, source: ElementId, sink: ElementId) -> Result<&Shard, WebRtcError> {
        let placement = self.placement.lock();
        let on = |id: ElementId| {
            placement
                .get(&id)
                .copied()
                .ok_or(WebRtcError::UnknownEndpoint(id.0))
        };
        let (a, b) = (on(source)?, on(sink)?);
        if a != b {
            return Err(WebRtcError::DifferentThreads(source.0, sink.0));
        }
        Ok(&self.shards[a])
    }

    /// Feeds `sink`'s `kind` media from `source` (replacing its previous source).
    pub fn connect(
        &self,
        source: ElementId,
        sink: ElementId,
        kind: MediaKind,
    ) -> Result<(), WebRtcError> {
        self.shard_of(source, sink)?
            .handle
            .send(Command::Connect(source, sink, kind))
    }

    /// Stops feeding `sink`'s `kind` media from `source`.
    pub fn disconnect(
        &self,
        source: ElementId,
        sink: ElementId,
        kind: MediaKind,
    ) -> Result<(), WebRtcError> {
        self.shard_of(source, sink)?
            .handle
            .send(Command::Disconnect(source, sink, kind))
    }
}

impl Drop for WebRtcHost {
    fn drop(&mut self) {
        for shard in &mut self.shards {
            let _ = shard.handle.send(Command::Shutdown);
            if let Some(thread) = shard.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A WebRTC endpoint (Kurento's WebRtcEndpoint transport). Dropping it releases it.
pub struct Endpoint {
    id: ElementId,
    handle: LoopHandle,
    placement: Placement,
}

impl Endpoint {
    /// The element id.
    pub fn id(&self) -> ElementId {
        self.id
    }

    /// Applies a remote offer; returns the answer (offerer's payload types kept).
    pub async fn process_offer(&self, sdp: String) -> Result<String, WebRtcError> {
        self.handle
            .call(|r| Command::ProcessOffer(self.id, sdp, r))
            .await
    }

    /// Creates an offer (audio + video, data if enabled).
    pub async fn generate_offer(&self) -> Result<String, WebRtcError> {
        self.handle
            .call(|r| Command::GenerateOffer(self.id, r))
            .await
    }

    /// Applies the remote answer to [`Endpoint::generate_offer`]'s offer.
    pub async fn process_answer(&self, sdp: String) -> Result<(), WebRtcError> {
        self.handle
            .call(|r| Command::ProcessAnswer(self.id, sdp, r))
            .await
    }

    /// The local SDP, once negotiated.
    pub async fn local_description(&self) -> Result<Option<String>, WebRtcError> {
        self.handle
            .call(|r| Command::LocalDescription(self.id, r))
            .await
    }

    /// The remote SDP, once received.
    pub async fn remote_description(&self) -> Result<Option<String>, WebRtcError> {
        self.handle
            .call(|r| Command::RemoteDescription(self.id, r))
            .await
    }

    /// Adds a remote ICE candidate (kept if the remote description has not arrived yet).
    pub async fn add_ice_candidate(
        &self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), WebRtcError> {
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid,
            sdp_mline_index,
            ..Default::default()
        };
        self.handle
            .call(|r| Command::AddIceCandidate(self.id, init, r))
            .await
    }

    /// Announces the local candidates as `IceCandidateFound` events, then `IceGatheringDone`.
    /// Server candidates come from `own` servers (Kurento's endpoint properties), and from the
    /// host's for what `own` leaves unset.
    pub async fn gather_candidates(&self, own: IceServers) -> Result<(), WebRtcError> {
        self.handle
            .call(|r| Command::GatherCandidates(self.id, own, r))
            .await
    }
}

impl Endpoint {
    /// Opens a data channel to the remote; `DataChannelOpened` tells its id.
    pub async fn create_data_channel(
        &self,
        options: DataChannelOptions,
    ) -> Result<(), WebRtcError> {
        self.handle
            .call(|r| Command::CreateDataChannel(self.id, options, r))
            .await
    }

    /// Closes the data channel of SCTP stream `channel_id`.
    pub async fn close_data_channel(&self, channel_id: u16) -> Result<(), WebRtcError> {
        self.handle
            .call(|r| Command::CloseDataChannel(self.id, channel_id, r))
            .await
    }

    /// The endpoint's statistics.
    pub async fn stats(&self) -> Result<EndpointStats, WebRtcError> {
        self.handle.call(|r| Command::Stats(self.id, r)).await
    }

    /// Changes the bandwidth limits: the REMB bounds at once, `b=AS` from the next negotiation.
    pub fn set_bandwidth(&self, limits: BandwidthLimits) -> Result<(), WebRtcError> {
        self.handle.send(Command::SetBandwidth(self.id, limits))
    }

    /// Whether this endpoint offers the host's passive TCP candidates (Kurento's `iceTcp`,
    /// on by default): before the first negotiation the SDP follows, later only what a later
    /// gathering announces.
    pub fn set_ice_tcp(&self, on: bool) -> Result<(), WebRtcError> {
        self.handle.send(Command::SetIceTcp(self.id, on))
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.placement.lock().remove(&self.id);
        let _ = self.handle.send(Command::Release(self.id));
    }
}

fn bind_in_range(ip: IpAddr, min: u16, max: u16) -> Result<StdUdpSocket, WebRtcError> {
    if min == 0 && max == 0 {
        return Ok(StdUdpSocket::bind(SocketAddr::new(ip, 0))?);
    }
    (min..=max)
        .find_map(|port| StdUdpSocket::bind(SocketAddr::new(ip, port)).ok())
        .ok_or(WebRtcError::NoPort {
            address: ip,
            min,
            max,
        })
}

/// The address put in candidates for a socket bound on `ip`.
fn advertised_ip(ip: IpAddr, settings: &NetworkSettings) -> IpAddr {
    let external = match ip {
        IpAddr::V4(_) => settings.external_ipv4.map(IpAddr::V4),
        IpAddr::V6(_) => settings.external_ipv6.map(IpAddr::V6),
    };
    external.unwrap_or_else(|| {
        if ip.is_unspecified() {
            default_route_ip(ip).unwrap_or(ip)
        } else {
            ip
        }
    })
}

/// The local address the kernel would use to reach the Internet (no packet is sent).
fn default_route_ip(family: IpAddr) -> Option<IpAddr> {
    let (bind, probe): (SocketAddr, SocketAddr) = match family {
        IpAddr::V4(_) => ("0.0.0.0:0".parse().ok()?, "192.0.2.1:9".parse().ok()?),
        IpAddr::V6(_) => ("[::]:0".parse().ok()?, "[2001:db8::1]:9".parse().ok()?),
    };
    let socket = StdUdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// The loop thread's state. Everything here is touched by that thread only.
struct EventLoop {
    poll: Poll,
    sockets: Sockets,
    commands: Receiver<Command>,
    /// Boxed: a peer connection is ~9 KB, and a map of inline values would keep up to as much
    /// again in empty slots after each doubling.
    peers: HashMap<ElementId, Box<Peer>>,
    /// Each peer's next timer, apart from the peers: the loop looks for the earliest every pass,
    /// and reading it from hundreds of ~9 KB peers cost a cache miss each.
    deadlines: HashMap<ElementId, Instant>,
    by_addr: HashMap<SocketAddr, ElementId>,
    by_ufrag: HashMap<Vec<u8>, ElementId>,
    router: Router,
    data_routes: DataRoutes,
    inbound: Vec<Inbound>,
    taps: Taps,
    /// Endpoints whose gathering waits for the STUN/TURN servers' answers.
    gathering: Vec<ElementId>,
    /// The STUN/TURN servers each endpoint gathered with (their allocations live as long).
    gathered_with: HashMap<ElementId, IceServers>,
    /// Data a TURN server relayed: relay candidate, remote address, data (reused buffer).
    relayed: Vec<(SocketAddr, SocketAddr, BytesMut)>,
    /// Frames read from TCP connections this pass (reused buffer).
    tcp_frames: Vec<(Token, BytesMut)>,
}

impl EventLoop {
    fn new(poll: Poll, sockets: Sockets, commands: Receiver<Command>) -> Self {
        EventLoop {
            poll,
            sockets,
            commands,
            peers: HashMap::new(),
            deadlines: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            router: Router::new(),
            data_routes: DataRoutes::default(),
            inbound: Vec::with_capacity(64),
            taps: Taps::default(),
            gathering: Vec::new(),
            gathered_with: HashMap::new(),
            relayed: Vec::new(),
            tcp_frames: Vec::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 2048];
        let mut next_housekeeping = Instant::now();
        let mut next_report = Instant::now() + REPORT_INTERVAL;
        // Server candidates are asked for at once, so the first endpoint rarely waits.
        self.sockets.ask_servers(Instant::now());
        loop {
            let now = Instant::now();
            let next = self
                .deadlines
                .values()
                .copied()
                .min()
                .unwrap_or(now + MAX_SLEEP);
            let sleep = next.saturating_duration_since(now).min(MAX_SLEEP);
            if let Err(e) = self.poll.poll(&mut events, Some(sleep))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("socket loop poll failed: {e}");
                return;
            }
            while let Ok(command) = self.commands.try_recv() {
                if matches!(command, Command::Shutdown) {
                    return;
                }
                let id = command.endpoint();
                self.guarded(id, |this| this.on_command(command));
            }
            for index in 0..self.sockets.udp.len() {
                self.read_socket(index, &mut buf);
            }
            self.read_tcp(&events);
            let now = Instant::now();
            let due: Vec<ElementId> = self
                .deadlines
                .iter()
                .filter(|(_, deadline)| **deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if let Some(peer) = self.peers.get_mut(&id) {
                    let _ = peer.pc.handle_timeout(now);
                }
                self.service(id, now);
            }
            if now >= next_housekeeping {
                next_housekeeping = now + Duration::from_millis(100);
                let mut due_keyframes = Vec::new();
                self.router
                    .due_keyframe_requests(now, |source, kind| due_keyframes.push((source, kind)));
                for (source, kind) in due_keyframes {
                    self.send_keyframe_request(source, kind, now);
                }
                self.router.settle(now);
                for peer in self.peers.values_mut() {
                    peer.check_flows(now);
                }
                self.bound_publishers(now);
                self.sockets.ask_servers(now);
                self.finish_gathering(now);
                self.sockets.tcp.expire(now);
                if now >= next_report {
                    next_report = now + REPORT_INTERVAL;
                    let ids: Vec<ElementId> = self.peers.keys().copied().collect();
                    for id in ids {
                        if let Some(peer) = self.peers.get_mut(&id) {
                            peer.send_reports(now);
                        }
                        self.service(id, now);
                    }
                }
            }
            self.flush();
        }
    }

    fn read_socket(&mut self, index: usize, buf: &mut [u8]) {
        for _ in 0..READ_BUDGET {
            let s = &mut self.sockets.udp[index];
            let (len, from) = match s.socket.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors surface here on Linux; they concern one remote, not the socket.
                    tracing::trace!("recv_from: {e}");
                    continue;
                }
            };
            let local_addr = s.addr;
            let datagram = &buf[..len];
            let now = Instant::now();
            let mut relayed = std::mem::take(&mut self.relayed);
            if self
                .sockets
                .read_from_server(index, from, datagram, now, &mut relayed)
            {
                self.deliver_relayed(&mut relayed, now);
                self.relayed = relayed;
            } else {
                self.relayed = relayed;
                self.deliver(local_addr, from, BytesMut::from(datagram), now);
            }
        }
    }

    /// Accepts, reads and writes the TCP connections that are ready, and hands their frames to
    /// their endpoints; a connection whose first frame names no endpoint is closed.
    fn read_tcp(&mut self, events: &Events) {
        let now = Instant::now();
        let mut frames = std::mem::take(&mut self.tcp_frames);
        for event in events
            .iter()
            .filter(|e| e.token().0 >= FIRST_TCP_TOKEN && e.token() != WAKER)
        {
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            if event.token().0 >= FIRST_TURN_TOKEN {
                self.read_turn_tcp(event.token(), readable, event.is_writable(), now);
                continue;
            }
            self.sockets.tcp.ready(
                event.token(),
                readable,
                event.is_writable(),
                now,
                &mut frames,
            );
        }
        self.sockets.tcp.read_again(&mut frames);
        self.tcp_paths_lost(now);
        for (token, frame) in frames.drain(..) {
            let Some(link) = self.sockets.tcp.link(token) else {
                continue;
            };
            let id = match link.owner {
                Some(id) => id,
                None => match stun_local_ufrag(&frame).and_then(|u| self.by_ufrag.get(u)) {
                    Some(&id) => {
                        self.sockets.tcp.set_owner(token, id);
                        id
                    }
                    None => {
                        tracing::debug!("ICE-TCP {}: no endpoint's STUN request", link.remote);
                        self.sockets.tcp.close(token);
                        continue;
                    }
                },
            };
            let transport = TransportContext {
                local_addr: link.local,
                peer_addr: link.remote,
                ecn: None,
                transport_protocol: TransportProtocol::TCP,
            };
            self.hand_to(id, transport, frame, now);
        }
        self.tcp_frames = frames;
    }

    /// Closes the peers whose selected pair ran on an ICE-TCP connection that is gone.
    fn tcp_paths_lost(&mut self, now: Instant) {
        for link in self.sockets.tcp.take_closed() {
            let Some(id) = link.owner else {
                continue;
            };
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if !peer.uses_path(link.remote, link.local) {
                continue;
            }
            tracing::debug!("endpoint {}: its ICE-TCP connection closed", id.0);
            peer.transport_lost();
            self.service(id, now);
            if let Some(peer) = self.peers.get_mut(&id) {
                // What the close wrote went nowhere; nothing more is forwarded to it.
                peer.fast.remote = None;
            }
        }
    }

    /// Feeds what a TURN server sent on its TCP connection to the TURN client, and what it
    /// relayed to the endpoints, as [`Self::read_socket`] does for datagrams.
    fn read_turn_tcp(&mut self, token: Token, readable: bool, writable: bool, now: Instant) {
        let mut relayed = std::mem::take(&mut self.relayed);
        if self
            .sockets
            .turn_ready(token, readable, writable, now, &mut relayed)
        {
            self.deliver_relayed(&mut relayed, now);
        }
        self.relayed = relayed;
    }

    /// Hands what TURN servers relayed to the endpoints, as received on their relay
    /// candidates, and completes the gatherings the servers' answers settled.
    fn deliver_relayed(
        &mut self,
        relayed: &mut Vec<(SocketAddr, SocketAddr, BytesMut)>,
        now: Instant,
    ) {
        for (relayed_addr, remote, message) in relayed.drain(..) {
            self.deliver(relayed_addr, remote, message, now);
        }
        self.finish_gathering(now);
    }

    /// Hands a datagram that reached local candidate `local_addr` to the endpoint `from` belongs
    /// to (learned from the STUN USERNAME for a new address).
    fn deliver(
        &mut self,
        local_addr: SocketAddr,
        from: SocketAddr,
        message: BytesMut,
        now: Instant,
    ) {
        let id = match self.by_addr.get(&from) {
            Some(id) => *id,
            None => match stun_local_ufrag(&message).and_then(|u| self.by_ufrag.get(u)) {
                Some(&id) => {
                    self.by_addr.insert(from, id);
                    id
                }
                None => return,
            },
        };
        let transport = TransportContext {
            local_addr,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        };
        self.hand_to(id, transport, message, now);
    }

    /// Feeds what arrived on `transport` to endpoint `id`'s stack and acts on the outcome.
    fn hand_to(
        &mut self,
        id: ElementId,
        transport: TransportContext,
        message: BytesMut,
        now: Instant,
    ) {
        self.guarded(id, |this| {
            if let Some(peer) = this.peers.get_mut(&id)
                && let Err(e) = peer.pc.handle_read(TaggedBytesMut {
                    now,
                    transport,
                    message,
                })
            {
                tracing::debug!("endpoint {}: dropped a datagram: {e}", id.0);
            }
            this.service(id, now);
        });
    }

    /// Completes the gathering of the endpoints that waited for their servers, once each of
    /// those has answered or been given up on.
    fn finish_gathering(&mut self, now: Instant) {
        for id in std::mem::take(&mut self.gathering) {
            let Some(servers) = self.gathered_with.get(&id) else {
                continue;
            };
            if !self.sockets.servers_settled(servers, now) {
                self.gathering.push(id);
                continue;
            }
            let candidates = self.sockets.server_candidates(servers);
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.finish_gathering(&candidates);
            }
            self.service(id, now);
        }
    }

    /// Runs `f` for endpoint `id`; if it panics (a bug in the stack met input it did not
    /// expect), that endpoint is closed and told, and every other session carries on.
    fn guarded(&mut self, id: ElementId, f: impl FnOnce(&mut Self)) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if result.is_err() {
            tracing::error!("endpoint {}: internal error; closing it", id.0);
            self.inbound.clear();
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.fail("internal error while processing input; endpoint closed");
            }
            self.release(id);
        }
    }

    fn release(&mut self, id: ElementId) {
        self.deadlines.remove(&id);
        if let Some(mut peer) = self.peers.remove(&id) {
            peer.close();
            self.by_ufrag.remove(peer.ufrag.as_bytes());
            self.by_addr.retain(|_, v| *v != id);
        }
        self.sockets.tcp.release(id);
        if let Some(servers) = self.gathered_with.remove(&id) {
            self.sockets.release_servers(&servers, Instant::now());
        }
        self.taps.remove(id);
        self.router.remove_element(id);
        self.data_routes.remove_element(id);
    }

    /// Drains one peer and acts on what it received: routes media, answers feedback.
    fn service(&mut self, id: ElementId, now: Instant) {
        let mut inbound = std::mem::take(&mut self.inbound);
        if let Some(peer) = self.peers.get_mut(&id) {
            let sockets = &mut self.sockets;
            peer.service(
                now,
                |local, to, datagram| sockets.send(local, to, datagram, now),
                &mut inbound,
            );
            self.deadlines.insert(id, peer.deadline);
        }
        for item in inbound.drain(..) {
            match item {
                Inbound::Rtp(kind, codec, packet, carried) => {
                    self.forward(id, kind, codec, &packet, &carried, now)
                }
                Inbound::KeyframeRequest(kind) => {
                    if let Some(source) = self.router.keyframe_requested(id, kind, now) {
                        self.send_keyframe_request(source, kind, now);
                    }
                }
                Inbound::Nack(kind, lost) => self.answer_nack(id, kind, lost, now),
                Inbound::SenderReport {
                    kind,
                    ssrc,
                    ntp,
                    rtp_time,
                } => self.pass_sender_report(id, kind, ssrc, ntp, rtp_time, now),
                Inbound::Data(message) => {
                    for sink in self.data_routes.sinks_of(id).to_vec() {
                        if let Some(peer) = self.peers.get_mut(&sink) {
                            peer.send_data(&message, now);
                        }
                        self.service(sink, now);
                    }
                }
            }
        }
        self.inbound = inbound;
    }

    fn forward(
        &mut self,
        source: ElementId,
        kind: MediaKind,
        codec: CodecId,
        packet: &RtpPacket,
        carried: &CarriedExtensions,
        now: Instant,
    ) {
        let peers = &mut self.peers;
        let sockets = &mut self.sockets;
        let taps = &self.taps;
        let leg = Leg {
            kind,
            codec,
            packet,
            carried,
        };
        let starts_keyframe = || starts_keyframe(codec, &packet.payload);
        let new_stream = self.router.route(
            source,
            kind,
            codec,
            packet,
            now,
            starts_keyframe,
            |sink, rewritten| {
                if !taps.deliver(sink, kind, codec, packet, rewritten, now) {
                    send_to_sink(peers, sockets, sink, &leg, rewritten, now);
                }
            },
        );
        if new_stream {
            self.send_keyframe_request(source, kind, now);
        }
    }

    /// Hands `source`'s sender report on its stream `ssrc` to the sink elements it feeds that
    /// take reports, its RTP time renumbered for each.
    fn pass_sender_report(
        &self,
        source: ElementId,
        kind: MediaKind,
        ssrc: u32,
        ntp: u64,
        rtp_time: u32,
        now: Instant,
    ) {
        let taps = &self.taps;
        self.router
            .sink_timestamps(source, kind, ssrc, rtp_time, |sink, timestamp| {
                taps.deliver_report(
                    sink,
                    SinkSenderReport {
                        kind,
                        ntp,
                        timestamp,
                        arrival: now,
                    },
                )
            });
    }

    /// Answers a sink's NACK from its source's history (RTX when the sink negotiated it) and
    /// relays what the history lacks to a WebRTC source that negotiated NACK. Element sources
    /// are answered alike: the history keeps each packet's codec, nothing is asked of them.
    fn answer_nack(&mut self, sink: ElementId, kind: MediaKind, lost: Vec<u16>, now: Instant) {
        let peers = &mut self.peers;
        let sockets = &mut self.sockets;
        let mut upstream = Vec::new();
        let source = self
            .router
            .nack(sink, kind, &lost, now, &mut upstream, |kept, rewritten| {
                let Some(peer) = peers.get_mut(&sink) else {
                    return;
                };
                let Some((to, local)) = peer.fast.remote else {
                    return;
                };
                sockets.push(local, to, now, |buf| {
                    peer.write_resend(kind, kept, rewritten, buf, now)
                });
            });
        if let Some(source) = source
            && !upstream.is_empty()
            && let Some(peer) = self.peers.get_mut(&source)
        {
            peer.nack_upstream(kind, &upstream, now);
            self.service(source, now);
        }
    }

    /// Sends each video publisher the bound its subscribers' estimates set (see `feedback`).
    fn bound_publishers(&mut self, now: Instant) {
        let mut demands: HashMap<ElementId, Option<u64>> = HashMap::new();
        for (&sink, peer) in &mut self.peers {
            if let Some(source) = self.router.source_of(sink, MediaKind::Video) {
                let demand = peer.video_demand(now);
                let entry = demands.entry(source).or_insert(demand);
                *entry = match (*entry, demand) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        let ids: Vec<ElementId> = self.peers.keys().copied().collect();
        for id in ids {
            let demand = demands.get(&id).copied().flatten();
            if self
                .peers
                .get_mut(&id)
                .is_some_and(|p| p.bound_video_sender(demand, now))
            {
                self.service(id, now);
            }
        }
    }

    fn send_keyframe_request(&mut self, source: ElementId, kind: MediaKind, now: Instant) {
        match self.peers.get_mut(&source) {
            Some(peer) => peer.request_keyframe(kind, now),
            None => self.taps.request_keyframe(source, kind),
        }
        self.service(source, now);
    }

    fn flush(&mut self) {
        self.sockets.flush();
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Add(id, peer, reply) => {
                let result = if self.peers.contains_key(&id) {
                    Err(WebRtcError::Duplicate(id.0))
                } else {
                    self.by_ufrag.insert(peer.ufrag.clone().into_bytes(), id);
                    self.deadlines.insert(id, peer.deadline);
                    self.peers.insert(id, peer);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::Release(id) => self.release(id),
            Command::ProcessOffer(id, sdp, reply) => {
                let _ = reply.send(self.with_peer(id, |p| p.process_offer(sdp, now)));
                self.service(id, now);
            }
            Command::GenerateOffer(id, reply) => {
                let _ = reply.send(self.with_peer(id, |p| p.generate_offer(now)));
                self.service(id, now);
            }
            Command::ProcessAnswer(id, sdp, reply) => {
                let _ = reply.send(self.with_peer(id, |p| p.process_answer(sdp, now)));
                self.service(id, now);
            }
            Command::LocalDescription(id, reply) => {
                let _ = reply.send(self.with_peer(id, |p| Ok(p.local_description())));
            }
            Command::RemoteDescription(id, reply) => {
                let _ = reply.send(self.with_peer(id, |p| Ok(p.remote_description())));
            }
            Command::AddIceCandidate(id, candidate, reply) => {
                let _ = reply.send(self.with_peer(id, |p| p.add_ice_candidate(candidate)));
                self.service(id, now);
            }
            Command::GatherCandidates(id, own, reply) => {
                let _ = reply.send(self.with_peer(id, |p| {
                    p.start_gathering();
                    Ok(())
                }));
                if self.peers.contains_key(&id) {
                    let servers = self.sockets.servers_for(&own);
                    self.sockets.use_servers(&servers, now);
                    if let Some(old) = self.gathered_with.insert(id, servers) {
                        self.sockets.release_servers(&old, now);
                    }
                    self.gathering.push(id);
                    self.sockets.ask_servers(now);
                    self.finish_gathering(now);
                }
            }
            Command::CreateDataChannel(id, options, reply) => {
                let _ = reply.send(self.with_peer(id, |p| p.create_data_channel(options)));
                self.service(id, now);
            }
            Command::CloseDataChannel(id, channel, reply) => {
                let _ = reply.send(self.with_peer(id, |p| p.close_data_channel(channel)));
                self.service(id, now);
            }
            Command::Stats(id, reply) => {
                let _ = reply.send(self.with_peer(id, |p| Ok(p.stats(now))));
            }
            Command::SetBandwidth(id, limits) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.set_bandwidth(limits);
                }
            }
            Command::SetIceTcp(id, on) => {
                if let Some(peer) = self.peers.get_mut(&id)
                    && let Err(e) = peer.set_ice_tcp(on)
                {
                    tracing::warn!("endpoint {}: iceTcp not applied: {e}", id.0);
                }
            }
            Command::Connect(source, sink, MediaKind::Data) => {
                self.data_routes.connect(source, sink);
            }
            Command::Disconnect(source, sink, MediaKind::Data) => {
                self.data_routes.disconnect(source, sink);
            }
            Command::Connect(source, sink, kind) => {
                if self.router.connect(source, sink, kind, now) {
                    self.send_keyframe_request(source, kind, now);
                }
            }
            Command::Disconnect(source, sink, kind) => {
                self.router.disconnect(source, sink, kind, now)
            }
            Command::Tap(id, TapInput::AttachSink(tap)) => self.taps.attach(id, tap),
            Command::Tap(id, TapInput::OwnKeyframes) => self.router.asks_own_keyframes(id),
            Command::Tap(id, TapInput::AttachReports(tx)) => self.taps.attach_reports(id, tx),
            Command::Tap(id, TapInput::AttachKeyframeHook(hook)) => {
                self.taps.attach_keyframe_hook(id, hook)
            }
            Command::Tap(id, TapInput::Rtp(kind, codec, packet)) => {
                self.forward(id, kind, codec, &packet, &CarriedExtensions::default(), now)
            }
            Command::Tap(
                id,
                TapInput::SenderReport {
                    kind,
                    ssrc,
                    ntp,
                    rtp_time,
                },
            ) => self.pass_sender_report(id, kind, ssrc, ntp, rtp_time, now),
            Command::Tap(id, TapInput::KeyframeRequest(kind)) => {
                if let Some(source) = self.router.keyframe_requested(id, kind, now) {
                    self.send_keyframe_request(source, kind, now);
                }
            }
            Command::SetIceServers(servers) => {
                self.sockets.set_servers(&servers, now);
                self.sockets.ask_servers(now);
            }
            Command::Shutdown => {}
        }
    }

    fn with_peer<T>(
        &mut self,
        id: ElementId,
        f: impl FnOnce(&mut Peer) -> Result<T, WebRtcError>,
    ) -> Result<T, WebRtcError> {
        let peer = self
            .peers
            .get_mut(&id)
            .ok_or(WebRtcError::UnknownEndpoint(id.0))?;
        f(peer)
    }
}

/// What is forwarded: the same for every sink of a packet.
struct Leg<'a> {
    kind: MediaKind,
    codec: CodecId,
    packet: &'a RtpPacket,
    carried: &'a CarriedExtensions,
}

/// Writes one forwarded packet for `sink` into its socket's batch.
fn send_to_sink(
    peers: &mut HashMap<ElementId, Box<Peer>>,
    sockets: &mut Sockets,
    sink: ElementId,
    leg: &Leg<'_>,
    rewritten: Rewritten,
    now: Instant,
) {
    let Some(peer) = peers.get_mut(&sink) else {
        return;
    };
    let Some((to, local)) = peer.fast.remote else {
        return;
    };
    sockets.push(local, to, now, |buf| {
        peer.write_forwarded(
            leg.kind,
            leg.codec,
            leg.packet,
            leg.carried,
            rewritten,
            buf,
            now,
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webrtc::srtp_out::SrtpOut;
    use crate::webrtc::srtp_tap::{SrtpMasterKey, SrtpProfile};
    use rtc::shared::marshal::Unmarshal;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    const MASTER: SrtpMasterKey = SrtpMasterKey {
        profile: SrtpProfile::AeadAes128Gcm,
        key: [3; 16],
        salt: [5; 14],
    };

    fn receive(socket: &StdUdpSocket, context: &mut Context) -> RtpPacket {
        let mut buf = [0u8; 2048];
        let n = socket.recv(&mut buf).expect("a datagram");
        let plain = context.decrypt_rtp(&buf[..n]).expect("decrypt");
        RtpPacket::unmarshal(&mut &plain[..]).expect("RTP")
    }

    /// A source that is not a peer (a player, an RtpEndpoint) feeds a WebRTC sink through the
    /// loop; the sink's NACK is answered from the history as RTX, with no peer to ask for the
    /// codec.
    #[test]
    fn nacks_for_an_element_source_are_answered_as_rtx() {
        let provider = rtc::crypto::default_provider().expect("crypto provider");
        let socket = UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let local = socket.local_addr().expect("local addr");
        let remote = StdUdpSocket::bind("127.0.0.1:0").expect("bind the remote");
        remote
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let remote_addr = remote.local_addr().expect("remote addr");
        let (_commands, command_rx) = channel();
        let sockets = Sockets::new(
            vec![(socket, local)],
            crate::webrtc::tcp::TcpSockets::none(),
            &IceServers::default(),
            None,
        );
        let mut event_loop = EventLoop::new(Poll::new().expect("poll"), sockets, command_rx);
        let srtp = SrtpOut::new(&MASTER, provider.crypto()).expect("SRTP");
        let peer = Peer::connected_video_sink(remote_addr, local, srtp).expect("peer");
        let (ssrc, rtx_ssrc) = peer.video_ssrcs().expect("video");
        let rtx_ssrc = rtx_ssrc.expect("an RTX stream");
        let (player, viewer) = (ElementId(1), ElementId(2));
        event_loop.peers.insert(viewer, Box::new(peer));
        event_loop.on_command(Command::Connect(player, viewer, MediaKind::Video));
        for seq in 1000..1003u16 {
            let mut packet = RtpPacket::default();
            packet.header.sequence_number = seq;
            packet.header.timestamp = 90 * u32::from(seq);
            packet.payload = bytes::Bytes::from(vec![seq as u8; 100]);
            let input = TapInput::Rtp(MediaKind::Video, CodecId::Vp8, packet);
            event_loop.on_command(Command::Tap(player, input));
        }
        event_loop.flush();
        let salt = &MASTER.salt[..MASTER.profile.salt_len()];
        let mut context = Context::new(
            &MASTER.key,
            salt,
            ProtectionProfile::AeadAes128Gcm,
            None,
            None,
            provider.crypto(),
        )
        .expect("SRTP context");
        let forwarded: Vec<RtpPacket> = (0..3).map(|_| receive(&remote, &mut context)).collect();
        assert!(forwarded.iter().all(|p| p.header.ssrc == ssrc));
        let lost = &forwarded[1].header;
        // The viewer lost the second packet, and one the history never held.
        event_loop.answer_nack(
            viewer,
            MediaKind::Video,
            vec![lost.sequence_number, lost.sequence_number.wrapping_add(100)],
            Instant::now(),
        );
        event_loop.flush();
        let rtx = receive(&remote, &mut context);
        assert_eq!(
            (
                rtx.header.ssrc,
                rtx.header.payload_type,
                rtx.header.timestamp
            ),
            (rtx_ssrc, 97, lost.timestamp)
        );
        assert_eq!(rtx.payload[..2], lost.sequence_number.to_be_bytes());
        assert_eq!(rtx.payload[2..], forwarded[1].payload[..]);
        remote
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        assert!(
            remote.recv(&mut [0u8; 2048]).is_err(),
            "only the kept packet is resent"
        );
    }
}
