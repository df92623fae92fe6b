//! Server-reflexive and relay candidates of one loop socket.
//!
//! The STUN binding and the TURN allocation are made from the loop's own socket, once for every
//! endpoint on it, with `rtc`'s sans-IO TURN client: the loop hands it the datagrams that come
//! from the servers and sends what it writes. An endpoint whose selected pair uses the relay
//! candidate sends through the allocation: ICE checks, DTLS and the crate's RTCP through the
//! client (Send indications, then ChannelData once a channel is bound), forwarded media with the
//! channel number learned from those, framed in place by the fast path ([`frame_channel_data`]).
//!
//! A TURN server named with `?transport=tcp` is reached over a TCP connection of its own per
//! socket ([`TurnStream`]): the client's TURN messages and ChannelData travel on it, STUN
//! binding requests still leave from the UDP socket (the srflx address is the UDP one). When
//! that connection fails or closes, the allocation is gone with it: the client starts afresh
//! and the connection is opened again when the relay is next due.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::UdpSocket;
use mio::{Registry, Token};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateRelayConfig, CandidateServerReflexiveConfig, RTCIceCandidate,
    RTCIceCandidateInit,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::stun::message::TransactionId;
use rtc::turn::client::{Client, ClientConfig, Event};

use super::ice_servers::{IceServers, TurnTransport, resolve};
use super::turn_tcp::TurnStream;

/// How long gathering waits for a server's answer before it completes without that candidate.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the server-reflexive address is asked again (NAT mappings rarely move).
const SRFLX_REFRESH: Duration = Duration::from_secs(600);
/// How long after a failure a server is asked again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long a CreatePermission may go unanswered before it is sent again.
const PERMISSION_RETRY: Duration = Duration::from_secs(5);
/// ChannelData header: channel number and length (RFC 8656 §12.4).
pub(super) const CHANNEL_HEADER: usize = 4;

/// One address asked of a server.
struct Lookup {
    found: Option<SocketAddr>,
    /// The request in flight, until the client reports its answer, error or timeout: a new
    /// one is not sent meanwhile (over TCP the client waits 39.5 s for an answer, RFC 8489
    /// §6.2.2, and a second request would only be a duplicate on a reliable transport).
    in_flight: Option<TransactionId>,
    /// When gathering stops waiting for the request in flight.
    waiting: Option<Instant>,
    /// When to ask (again); `None`: never.
    next_ask: Option<Instant>,
}

impl Lookup {
    fn new(now: Instant) -> Self {
        Lookup {
            found: None,
            in_flight: None,
            waiting: None,
            next_ask: Some(now),
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.in_flight.is_none() && self.next_ask.is_some_and(|t| now >= t)
    }

    fn sent(&mut self, request: TransactionId, now: Instant) {
        self.in_flight = Some(request);
        self.waiting = Some(now + ANSWER_TIMEOUT);
    }

    fn answered(&mut self, addr: SocketAddr, next_ask: Option<Instant>) {
        self.found = Some(addr);
        self.in_flight = None;
        self.waiting = None;
        self.next_ask = next_ask;
    }

    fn failed(&mut self, now: Instant) {
        self.found = None;
        self.in_flight = None;
        self.waiting = None;
        self.next_ask = Some(now + RETRY_AFTER);
    }

    /// Whether gathering need not wait for this lookup; past its deadline it stops waiting,
    /// and the request stays in flight until the client reports how it ended.
    fn settle(&mut self, now: Instant, what: &str, server: SocketAddr) -> bool {
        match self.waiting {
            Some(deadline) if self.found.is_none() && now >= deadline => {
                tracing::warn!(
                    "{what} server {server} did not answer within {ANSWER_TIMEOUT:?}; \
                     gathering completes without its candidate"
                );
                self.waiting = None;
                true
            }
            Some(_) => self.found.is_some(),
            None => true,
        }
    }
}

/// The STUN/TURN state of one loop socket.
pub(super) struct ServerCandidates {
    /// The servers asked, as configured.
    servers: IceServers,
    /// The socket's host candidate address (the candidates' related address).
    base: SocketAddr,
    client: Client,
    stun: Option<SocketAddr>,
    turn: Option<SocketAddr>,
    srflx: Lookup,
    relay: Lookup,
    candidates: Vec<RTCIceCandidateInit>,
    /// Remote addresses a permission was asked for, and when.
    permissions: HashMap<SocketAddr, Instant>,
    /// Channel numbers the client bound, by remote address.
    channels: HashMap<SocketAddr, u16>,
    /// With a TURN server over TCP: how to (re)open the connection, and the connection.
    tcp: Option<TcpLeg>,
}

/// The TCP leg to a TURN server named with `?transport=tcp`.
struct TcpLeg {
    registry: Registry,
    token: Token,
    stream: Option<TurnStream>,
}

impl ServerCandidates {
    /// The state for the socket whose host candidate is `base`; `None` when no server is
    /// configured or none resolves. A TURN server over TCP is connected with `registry`, its
    /// readiness reported under `token`.
    pub(super) fn new(
        base: SocketAddr,
        servers: &IceServers,
        now: Instant,
        tcp: Option<(&Registry, Token)>,
    ) -> Option<Self> {
        let stun = servers.stun.as_deref().and_then(|s| resolve(s, base));
        let turn = servers
            .turn
            .as_ref()
            .and_then(|t| resolve(&t.host_port(), base));
        if stun.is_none() && turn.is_none() {
            return None;
        }
        let over_tcp = turn.is_some()
            && servers
                .turn
                .as_ref()
                .is_some_and(|t| t.transport == TurnTransport::Tcp);
        let tcp = match (over_tcp, tcp) {
            (false, _) => None,
            (true, Some((registry, token))) => match registry.try_clone() {
                Ok(registry) => Some(TcpLeg {
                    registry,
                    token,
                    stream: None,
                }),
                Err(e) => {
                    tracing::warn!("no TCP connection to the TURN server for {base}: {e}");
                    return None;
                }
            },
            (true, None) => return None,
        };
        let client = match new_client(base, servers, stun, turn, tcp.is_some()) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!("no STUN/TURN client for {base}: {e}");
                return None;
            }
        };
        Some(ServerCandidates {
            servers: servers.clone(),
            base,
            client,
            stun,
            turn,
            srflx: Lookup::new(now),
            relay: Lookup::new(now),
            candidates: Vec::new(),
            permissions: HashMap::new(),
            channels: HashMap::new(),
            tcp,
        })
    }

    /// The servers asked.
    pub(super) fn servers(&self) -> &IceServers {
        &self.servers
    }

    /// Whether `from` is one of this socket's servers (its datagrams go to [`Self::handle_read`]).
    pub(super) fn is_server(&self, from: SocketAddr) -> bool {
        self.stun == Some(from) || self.turn == Some(from)
    }

    /// The allocation's relayed address, once allocated.
    pub(super) fn relayed_addr(&self) -> Option<SocketAddr> {
        self.relay.found
    }

    /// The srflx and relay candidates known now.
    pub(super) fn candidates(&self) -> &[RTCIceCandidateInit] {
        &self.candidates
    }

    /// Sends the requests that are due: a first binding and allocation, a rare srflx refresh,
    /// a retry after a failure.
    pub(super) fn ask(&mut self, now: Instant, socket: &UdpSocket) {
        if self.stun.is_some() && self.srflx.due(now) {
            match self.client.send_binding_request(now) {
                Ok(request) => self.srflx.sent(request, now),
                Err(e) => {
                    tracing::warn!("STUN binding request not sent: {e}");
                    self.srflx.failed(now);
                }
            }
        }
        if let Some(turn) = self.turn
            && self.relay.due(now)
            && let Some(leg) = &mut self.tcp
            && leg.stream.is_none()
        {
            let local = socket.local_addr().map_or(self.base.ip(), |a| a.ip());
            match TurnStream::connect(turn, local, &leg.registry, leg.token) {
                Ok(stream) => leg.stream = Some(stream),
                Err(e) => {
                    tracing::warn!("TURN server {turn} over TCP: cannot connect: {e}");
                    self.relay.failed(now);
                }
            }
        }
        if self.turn.is_some() && self.relay.due(now) {
            match self.client.allocate(now) {
                Ok(request) => self.relay.sent(request, now),
                Err(e) => {
                    tracing::warn!("TURN allocation not requested: {e}");
                    self.relay.failed(now);
                }
            }
        }
        self.flush(socket);
    }

    /// Whether every configured server has answered or been given up on.
    pub(super) fn settled(&mut self, now: Instant) -> bool {
        let srflx = match self.stun {
            Some(server) => self.srflx.settle(now, "STUN", server),
            None => true,
        };
        let relay = match self.turn {
            Some(server) => self.relay.settle(now, "TURN", server),
            None => true,
        };
        srflx && relay
    }

    /// Feeds a datagram from a server. Data relayed from remote peers is appended to `relayed`
    /// as (relayed address, remote address, data).
    pub(super) fn handle_read(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        socket: &UdpSocket,
        relayed: &mut Vec<(SocketAddr, SocketAddr, BytesMut)>,
    ) {
        self.feed(
            now,
            from,
            TransportProtocol::UDP,
            BytesMut::from(datagram),
            socket,
            relayed,
        );
    }

    /// Gives the allocation back before this state is dropped (its last endpoint is gone): a
    /// UDP allocation would stay on the server until it expires, and meanwhile the server
    /// refuses another one from the same socket (437), so the next endpoint naming that server
    /// would get no relay candidate. Over TCP, closing the connection ends the allocation.
    pub(super) fn deallocate(&mut self, now: Instant, socket: &UdpSocket) {
        if self.tcp.is_some() {
            return;
        }
        if let Some(relayed) = self.relay.found
            && let Ok(mut relay) = self.client.relay(relayed)
        {
            if let Err(e) = relay.close(now) {
                tracing::debug!("TURN allocation {relayed} not released: {e}");
            }
            self.flush(socket);
        }
    }

    /// The connection to the TURN server, when it is reached over TCP.
    pub(super) fn tcp_token(&self) -> Option<Token> {
        self.tcp.as_ref().map(|leg| leg.token)
    }

    /// Handles readiness of the TCP connection to the TURN server: the messages it carried
    /// are fed to the client like datagrams. A failed or closed connection takes the
    /// allocation with it.
    pub(super) fn tcp_ready(
        &mut self,
        now: Instant,
        readable: bool,
        writable: bool,
        socket: &UdpSocket,
        relayed: &mut Vec<(SocketAddr, SocketAddr, BytesMut)>,
    ) {
        let (Some(turn), Some(stream)) = (
            self.turn,
            self.tcp.as_mut().and_then(|leg| leg.stream.as_mut()),
        ) else {
            return;
        };
        let mut messages = Vec::new();
        let result = stream.ready(readable, writable, &mut messages);
        for message in messages {
            self.feed(now, turn, TransportProtocol::TCP, message, socket, relayed);
        }
        if let Err(e) = result {
            self.tcp_lost(now, &e);
        }
    }

    /// Writes what was queued on the TCP connection this pass.
    pub(super) fn flush_tcp(&mut self, now: Instant) {
        if let Some(stream) = self.tcp.as_mut().and_then(|leg| leg.stream.as_mut())
            && let Err(e) = stream.flush()
        {
            self.tcp_lost(now, &e);
        }
    }

    /// The TCP connection to the TURN server is gone, and the allocation with it: the client
    /// starts afresh (the srflx address is asked again), the relay is retried later.
    fn tcp_lost(&mut self, now: Instant, e: &std::io::Error) {
        let Some(leg) = &mut self.tcp else {
            return;
        };
        leg.stream = None;
        tracing::warn!(
            "TCP connection to TURN server {:?} for {} lost: {e}",
            self.turn,
            self.base
        );
        match new_client(self.base, &self.servers, self.stun, self.turn, true) {
            Ok(client) => self.client = client,
            Err(e) => tracing::warn!("no STUN/TURN client for {}: {e}", self.base),
        }
        self.permissions.clear();
        self.channels.clear();
        self.srflx = Lookup::new(now);
        self.relay.failed(now);
        self.refresh_candidates();
    }

    fn feed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        protocol: TransportProtocol,
        data: BytesMut,
        socket: &UdpSocket,
        relayed: &mut Vec<(SocketAddr, SocketAddr, BytesMut)>,
    ) {
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.base,
                peer_addr: from,
                ecn: None,
                transport_protocol: protocol,
            },
            message: data,
        };
        if let Err(e) = self.client.handle_read(message) {
            tracing::debug!("datagram from ICE server {from} dropped: {e}");
        }
        self.take_events(now, relayed);
        self.flush(socket);
    }

    /// Runs the client's retransmissions and refreshes (allocation, permissions).
    pub(super) fn handle_timeout(&mut self, now: Instant, socket: &UdpSocket) {
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.client.handle_timeout(now);
            self.take_events(now, &mut Vec::new());
            self.flush(socket);
        }
    }

    /// Sends `datagram` to `to` through the allocation. Until the server permits `to` it is
    /// dropped (ICE and DTLS retransmit).
    pub(super) fn send_relayed(
        &mut self,
        now: Instant,
        to: SocketAddr,
        datagram: &[u8],
        socket: &UdpSocket,
    ) {
        let Some(relayed) = self.relay.found else {
            return;
        };
        let Ok(mut relay) = self.client.relay(relayed) else {
            return;
        };
        if relay.send_to(now, datagram, to).is_err() {
            let asked = self.permissions.get(&to);
            if asked.is_none_or(|at| now.saturating_duration_since(*at) > PERMISSION_RETRY) {
                self.permissions.insert(to, now);
                if let Err(e) = relay.create_permission(now, to) {
                    tracing::debug!("TURN permission for {to} not requested: {e}");
                }
            }
        }
        // The client writes ChannelData only once a channel is bound; this one is for `to`.
        while let Some(out) = self.client.poll_write() {
            if let Some(number) = channel_number(&out.message) {
                self.channels.insert(to, number);
            }
            self.transmit(socket, &out.message, out.transport.peer_addr);
        }
    }

    /// Queues a forwarded packet for `to` as ChannelData on the TCP connection, written in
    /// place by `fill`; dropped when no channel is bound or the connection is down.
    pub(super) fn push_tcp_channel_data(
        &mut self,
        to: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) {
        if let Some(&number) = self.channels.get(&to)
            && let Some(stream) = self.tcp.as_mut().and_then(|leg| leg.stream.as_mut())
        {
            stream.push_channel_data(number, fill);
        }
    }

    /// Whether the TURN server is reached over TCP.
    pub(super) fn over_tcp(&self) -> bool {
        self.tcp.is_some()
    }

    /// The TURN server and the channel bound for `to`, when the fast path may frame media
    /// for it itself.
    pub(super) fn channel(&self, to: SocketAddr) -> Option<(SocketAddr, u16)> {
        Some((self.turn?, *self.channels.get(&to)?))
    }

    fn take_events(&mut self, now: Instant, relayed: &mut Vec<(SocketAddr, SocketAddr, BytesMut)>) {
        let before = (self.srflx.found, self.relay.found);
        while let Some(event) = self.client.poll_event() {
            match event {
                Event::BindingResponse(_, mapped) => {
                    self.srflx.answered(mapped, Some(now + SRFLX_REFRESH));
                }
                Event::AllocateResponse(_, relayed_addr) => {
                    tracing::info!("TURN allocation {relayed_addr} for {}", self.base);
                    // The client refreshes the allocation itself.
                    self.relay.answered(relayed_addr, None);
                }
                Event::BindingError(_, e) => {
                    tracing::warn!("STUN binding for {} failed: {e}", self.base);
                    self.srflx.failed(now);
                }
                Event::AllocateError(_, e) => {
                    tracing::warn!("TURN allocation for {} failed: {e}", self.base);
                    self.relay.failed(now);
                }
                Event::TransactionTimeout(request) => {
                    // The allocation's id is not always the one that times out (its first,
                    // unauthenticated attempt has its own): what is not the binding is it.
                    if self.srflx.in_flight == Some(request) {
                        self.srflx.failed(now);
                    } else if self.relay.in_flight.is_some() {
                        self.relay.failed(now);
                    }
                }
                Event::DataIndicationOrChannelData(_, from, data) => {
                    if let Some(relayed_addr) = self.relay.found {
                        relayed.push((relayed_addr, from, data));
                    }
                }
                Event::CreatePermissionError(_, e) => {
                    tracing::debug!("TURN permission refused: {e}");
                }
                _ => {}
            }
        }
        if before != (self.srflx.found, self.relay.found) {
            self.refresh_candidates();
        }
    }

    fn refresh_candidates(&mut self) {
        self.candidates = [
            self.srflx.found.map(|a| srflx_candidate(a, self.base)),
            self.relay.found.map(|a| relay_candidate(a, self.base)),
        ]
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c.map_err(|e| tracing::warn!("server candidate not built: {e}"))
                .ok()
        })
        .collect();
    }

    fn flush(&mut self, socket: &UdpSocket) {
        while let Some(out) = self.client.poll_write() {
            self.transmit(socket, &out.message, out.transport.peer_addr);
        }
    }

    /// Sends what the client wrote: to a TURN server over TCP on its connection (queued until
    /// it is up), anything else (STUN binding requests included) from the UDP socket.
    fn transmit(&mut self, socket: &UdpSocket, message: &[u8], to: SocketAddr) {
        if Some(to) == self.turn
            && !is_binding_request(message)
            && let Some(leg) = &mut self.tcp
        {
            if let Some(stream) = &mut leg.stream {
                stream.send(message);
            }
            return;
        }
        send(socket, message, to);
    }
}

/// A STUN Binding request (the srflx lookup), which always leaves from the UDP socket.
fn is_binding_request(message: &[u8]) -> bool {
    message.get(..2) == Some(&[0x00, 0x01])
}

/// The sans-IO STUN/TURN client of one socket.
fn new_client(
    base: SocketAddr,
    servers: &IceServers,
    stun: Option<SocketAddr>,
    turn: Option<SocketAddr>,
    over_tcp: bool,
) -> Result<Client, String> {
    let credentials = servers.turn.as_ref().filter(|_| turn.is_some());
    let config = ClientConfig {
        stun_serv_addr: stun.map(|a| a.to_string()).unwrap_or_default(),
        turn_serv_addr: turn.map(|a| a.to_string()).unwrap_or_default(),
        local_addr: base,
        transport_protocol: if over_tcp {
            TransportProtocol::TCP
        } else {
            TransportProtocol::UDP
        },
        username: credentials.map(|t| t.username.clone()).unwrap_or_default(),
        password: credentials.map(|t| t.password.clone()).unwrap_or_default(),
        software: "rkms".to_owned(),
        ..ClientConfig::default()
    };
    let provider = rtc::crypto::default_provider().map_err(|e| e.to_string())?;
    Client::new(config, provider).map_err(|e| e.to_string())
}

fn send(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(datagram, to) {
        tracing::trace!("send to ICE server {to}: {e}");
    }
}

/// The channel number of a ChannelData message (first two bits 01).
fn channel_number(datagram: &[u8]) -> Option<u16> {
    let header = datagram.get(..CHANNEL_HEADER)?;
    (header[0] & 0xC0 == 0x40).then(|| u16::from_be_bytes([header[0], header[1]]))
}

/// Writes the ChannelData header in front of the `len` bytes already at
/// `slot[CHANNEL_HEADER..]`; returns the datagram length. Over UDP no padding is needed.
pub(super) fn frame_channel_data(slot: &mut [u8], number: u16, len: usize) -> usize {
    slot[..2].copy_from_slice(&number.to_be_bytes());
    slot[2..CHANNEL_HEADER].copy_from_slice(&(len as u16).to_be_bytes());
    CHANNEL_HEADER + len
}

fn config(addr: SocketAddr) -> CandidateConfig {
    CandidateConfig {
        network: "udp".to_owned(),
        address: addr.ip().to_string(),
        port: addr.port(),
        component: 1,
        ..Default::default()
    }
}

fn srflx_candidate(mapped: SocketAddr, base: SocketAddr) -> Result<RTCIceCandidateInit, String> {
    let candidate = CandidateServerReflexiveConfig {
        base_config: config(mapped),
        rel_addr: base.ip().to_string(),
        rel_port: base.port(),
        url: None,
    }
    .new_candidate_server_reflexive()
    .map_err(|e| e.to_string())?;
    RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(|e| e.to_string())
}

fn relay_candidate(relayed: SocketAddr, base: SocketAddr) -> Result<RTCIceCandidateInit, String> {
    let candidate = CandidateRelayConfig {
        base_config: config(relayed),
        rel_addr: base.ip().to_string(),
        rel_port: base.port(),
        url: None,
    }
    .new_candidate_relay()
    .map_err(|e| e.to_string())?;
    RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_say_their_type_and_base() {
        let base: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let srflx = srflx_candidate("203.0.113.7:50000".parse().unwrap(), base).unwrap();
        assert!(
            srflx
                .candidate
                .contains("203.0.113.7 50000 typ srflx raddr 10.0.0.5 rport 40000"),
            "{}",
            srflx.candidate
        );
        let relay = relay_candidate("198.51.100.2:49152".parse().unwrap(), base).unwrap();
        assert!(
            relay
                .candidate
                .contains("198.51.100.2 49152 typ relay raddr 10.0.0.5 rport 40000"),
            "{}",
            relay.candidate
        );
    }

    #[test]
    fn channel_data_framing_round_trips() {
        let mut slot = [0u8; 64];
        slot[CHANNEL_HEADER..CHANNEL_HEADER + 3].copy_from_slice(&[0x80, 1, 2]);
        let n = frame_channel_data(&mut slot, 0x4001, 3);
        assert_eq!(&slot[..n], &[0x40, 0x01, 0, 3, 0x80, 1, 2]);
        assert_eq!(channel_number(&slot[..n]), Some(0x4001));
        // STUN (00) and RTP (10) are not ChannelData.
        assert_eq!(channel_number(&[0x00, 0x01, 0, 0]), None);
        assert_eq!(channel_number(&[0x80, 0x60, 0, 0]), None);
        assert_eq!(channel_number(&[0x40]), None);
    }

    #[test]
    fn a_silent_server_is_given_up_after_the_timeout() {
        let now = Instant::now();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let mut lookup = Lookup::new(now);
        assert!(lookup.due(now));
        let request = TransactionId::new();
        lookup.sent(request, now);
        assert!(!lookup.settle(now, "STUN", server));
        assert!(lookup.settle(now + ANSWER_TIMEOUT, "STUN", server));
        assert!(
            !lookup.due(now + RETRY_AFTER * 2),
            "not asked again while the request is in flight"
        );
        lookup.failed(now + ANSWER_TIMEOUT);
        assert!(
            !lookup.due(now + ANSWER_TIMEOUT),
            "retried later, not at once"
        );
        assert!(lookup.due(now + ANSWER_TIMEOUT + RETRY_AFTER));
        // A late answer still counts for later gatherings.
        lookup.answered(server, Some(now + SRFLX_REFRESH));
        assert_eq!(lookup.found, Some(server));
    }

    /// Over TCP a request is sent once and waited for (RFC 8489 §6.2.2: Ti, 39.5 s), by the
    /// client and by gathering's own retry alike; the connection leaves from the loop socket's
    /// address, not whichever the kernel's route picks.
    #[test]
    fn a_request_over_tcp_is_sent_once_from_the_loop_socket_address() {
        use super::super::ice_servers::TurnServer;
        use std::io::Read;

        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let turn = server.local_addr().unwrap();
        // Another loopback address than the server's: by route, the kernel would pick 127.0.0.1.
        let socket = UdpSocket::bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let base = socket.local_addr().unwrap();
        let servers = IceServers {
            stun: None,
            turn: Some(TurnServer {
                host: turn.ip().to_string(),
                port: turn.port(),
                username: "user".into(),
                password: "pass".into(),
                transport: TurnTransport::Tcp,
            }),
        };
        let poll = mio::Poll::new().unwrap();
        let start = Instant::now();
        let mut candidates =
            ServerCandidates::new(base, &servers, start, Some((poll.registry(), Token(9))))
                .expect("a TURN server over TCP");
        candidates.ask(start, &socket);
        let (mut accepted, from) = server.accept().unwrap();
        // The server never answers. Everything the client and gathering would do up to Ti.
        let mut now = start;
        while now < start + Duration::from_millis(39_400) {
            now += Duration::from_millis(100);
            candidates.tcp_ready(now, false, true, &socket, &mut Vec::new());
            candidates.settled(now);
            candidates.ask(now, &socket);
            candidates.handle_timeout(now, &socket);
            candidates.flush_tcp(now);
        }
        drop(candidates);
        let mut received = Vec::new();
        accepted.read_to_end(&mut received).unwrap();
        let mut requests = Vec::new();
        let mut rest = &received[..];
        while rest.len() >= 20 {
            let len = 20 + usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            requests.push(u16::from_be_bytes([rest[0], rest[1]]));
            rest = &rest[len.min(rest.len())..];
        }
        assert_eq!(requests, [0x0003], "one Allocate request, sent once");
        assert_eq!(from.ip(), base.ip(), "the connection's source address");
    }
}
