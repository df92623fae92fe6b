//! The sockets of one loop thread, their `sendmmsg` batches and their STUN/TURN state
//! (index-aligned), and how a datagram for a peer leaves: straight from the socket its pair's
//! local candidate names, through that socket's TURN allocation for a relay candidate, or
//! framed on the TCP connection of a passive TCP candidate. Every local candidate of a loop has
//! an address of its own (a TCP listener never takes its UDP socket's port), so the local
//! address alone says which way a datagram goes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::UdpSocket;
use mio::{Registry, Token};

use super::ice_servers::IceServers;
use super::server_candidates::{CHANNEL_HEADER, ServerCandidates, frame_channel_data};
use super::tcp::TcpSockets;
use super::udp::{SLOT_LEN, SendBatch};

/// Tokens from here on (below the waker's) are connections to TURN servers over TCP; the TCP
/// listeners and ICE-TCP connections sit below.
pub(super) const FIRST_TURN_TOKEN: usize = 1 << 30;

/// One bound socket and the host candidate address that names it.
pub(super) struct LoopSocket {
    pub(super) socket: UdpSocket,
    /// The address the host candidate announces (what the ICE agent calls this socket).
    pub(super) addr: SocketAddr,
    batch: SendBatch,
    /// STUN/TURN state of each server set in use on this socket: the loop's, and those
    /// endpoints named themselves.
    servers: Vec<ServerCandidates>,
}

/// How a peer's pair reaches its remote.
#[derive(Clone, Copy)]
enum Route {
    /// From socket `index`.
    Direct(usize),
    /// Through socket `index`'s TURN allocation of server set `set`.
    Relayed { index: usize, set: usize },
    /// On the TCP connection from a passive candidate.
    Tcp,
}

pub(super) struct Sockets {
    pub(super) udp: Vec<LoopSocket>,
    pub(super) tcp: TcpSockets,
    /// The servers of endpoints that name none of their own.
    default_servers: IceServers,
    /// The server sets endpoints gathered with, and how many endpoints use each.
    in_use: HashMap<IceServers, usize>,
    /// Registers connections to TURN servers over TCP (`None`: none are made).
    registry: Option<Registry>,
    next_turn_token: usize,
}

impl Sockets {
    /// The sockets with their STUN/TURN state (DNS lookups of the servers happen here);
    /// `registry` registers the connections to TURN servers reached over TCP.
    pub(super) fn new(
        sockets: Vec<(UdpSocket, SocketAddr)>,
        tcp: TcpSockets,
        servers: &IceServers,
        registry: Option<Registry>,
    ) -> Self {
        let mut sockets = Sockets {
            udp: sockets
                .into_iter()
                .map(|(socket, addr)| LoopSocket {
                    socket,
                    addr,
                    batch: SendBatch::new(64),
                    servers: Vec::new(),
                })
                .collect(),
            tcp,
            default_servers: IceServers::default(),
            in_use: HashMap::new(),
            registry,
            next_turn_token: FIRST_TURN_TOKEN,
        };
        sockets.set_servers(servers, Instant::now());
        sockets
    }

    /// Makes `servers` the default (their first requests go out at the next
    /// [`Self::ask_servers`]); the old default's state stays while endpoints use it.
    pub(super) fn set_servers(&mut self, servers: &IceServers, now: Instant) {
        let old = std::mem::replace(&mut self.default_servers, servers.clone());
        if !self.in_use.contains_key(&old) {
            self.remove_set(&old, now);
        }
        self.add_set(servers, now);
    }

    /// The servers an endpoint that names `own` gathers from: its own, the default's for what
    /// it leaves out.
    pub(super) fn servers_for(&self, own: &IceServers) -> IceServers {
        IceServers {
            stun: own
                .stun
                .clone()
                .or_else(|| self.default_servers.stun.clone()),
            turn: own
                .turn
                .clone()
                .or_else(|| self.default_servers.turn.clone()),
        }
    }

    /// Counts one more endpoint gathering with `servers`, asking them if nobody did yet.
    pub(super) fn use_servers(&mut self, servers: &IceServers, now: Instant) {
        *self.in_use.entry(servers.clone()).or_default() += 1;
        self.add_set(servers, now);
    }

    /// Counts one endpoint less on `servers`; the last one (unless they are the default)
    /// drops their state and allocations.
    pub(super) fn release_servers(&mut self, servers: &IceServers, now: Instant) {
        let Some(users) = self.in_use.get_mut(servers) else {
            return;
        };
        *users -= 1;
        if *users == 0 {
            self.in_use.remove(servers);
            if *servers != self.default_servers {
                self.remove_set(servers, now);
            }
        }
    }

    fn add_set(&mut self, servers: &IceServers, now: Instant) {
        if servers.is_empty() {
            return;
        }
        for s in &mut self.udp {
            if s.servers.iter().any(|c| c.servers() == servers) {
                continue;
            }
            let tcp = self
                .registry
                .as_ref()
                .map(|registry| (registry, Token(self.next_turn_token)));
            if let Some(state) = ServerCandidates::new(s.addr, servers, now, tcp) {
                if state.over_tcp() {
                    self.next_turn_token += 1;
                }
                s.servers.push(state);
            }
        }
    }

    fn remove_set(&mut self, servers: &IceServers, now: Instant) {
        for s in &mut self.udp {
            let socket = &s.socket;
            s.servers.retain_mut(|c| {
                if c.servers() != servers {
                    return true;
                }
                c.deallocate(now, socket);
                false
            });
        }
    }

    fn route(&self, local: SocketAddr) -> Option<Route> {
        if let Some(index) = self.udp.iter().position(|s| s.addr == local) {
            return Some(Route::Direct(index));
        }
        if self.tcp.is_listener(local) {
            return Some(Route::Tcp);
        }
        self.udp.iter().enumerate().find_map(|(index, s)| {
            let set = s
                .servers
                .iter()
                .position(|c| c.relayed_addr() == Some(local))?;
            Some(Route::Relayed { index, set })
        })
    }

    /// Sends a datagram the `rtc` stack wrote (ICE, DTLS, RTCP, data channels).
    pub(super) fn send(
        &mut self,
        local: SocketAddr,
        to: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) {
        match self.route(local) {
            Some(Route::Direct(index)) => {
                let _ = self.udp[index].socket.send_to(datagram, to);
            }
            Some(Route::Tcp) => {
                self.tcp.send(local, to, datagram);
            }
            Some(Route::Relayed { index, set }) => {
                let s = &mut self.udp[index];
                s.servers[set].send_relayed(now, to, datagram, &s.socket);
            }
            None => {}
        }
    }

    /// Sends one forwarded packet, written in place by `fill` (which returns its length), from
    /// `local` to `to`: into the socket's batch, framed as ChannelData when relayed over a
    /// bound channel (on the server's TCP connection when it is reached over TCP). Until the
    /// channel is bound a relayed packet takes the TURN client's path.
    pub(super) fn push(
        &mut self,
        local: SocketAddr,
        to: SocketAddr,
        now: Instant,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) {
        match self.route(local) {
            Some(Route::Direct(index)) => {
                let s = &mut self.udp[index];
                s.batch.push(&s.socket, to, |slot| fill(&mut slot[..]));
            }
            Some(Route::Tcp) => {
                self.tcp.push(local, to, fill);
            }
            Some(Route::Relayed { index, set }) => {
                let s = &mut self.udp[index];
                let servers = &mut s.servers[set];
                let channel = servers.channel(to);
                if channel.is_some() && servers.over_tcp() {
                    servers.push_tcp_channel_data(to, fill);
                } else if let Some((turn, number)) = channel {
                    s.batch.push(&s.socket, turn, |slot| {
                        let n = fill(&mut slot[CHANNEL_HEADER..])?;
                        Some(frame_channel_data(slot, number, n))
                    });
                } else {
                    let mut buf = [0u8; SLOT_LEN];
                    if let Some(n) = fill(&mut buf) {
                        servers.send_relayed(now, to, &buf[..n], &s.socket);
                    }
                }
            }
            None => {}
        }
    }

    /// Sends every batched datagram and the TCP output of the pass.
    pub(super) fn flush(&mut self) {
        let now = Instant::now();
        for s in &mut self.udp {
            if !s.batch.is_empty() {
                s.batch.flush(&s.socket);
            }
            for servers in s.servers.iter_mut().filter(|c| c.over_tcp()) {
                servers.flush_tcp(now);
            }
        }
        self.tcp.flush();
    }

    /// Handles readiness of the TCP connection to a TURN server (`token` from
    /// [`FIRST_TURN_TOKEN`]); what the server relayed is appended to `relayed` as for a
    /// datagram. `false`: no such connection (any more).
    pub(super) fn turn_ready(
        &mut self,
        token: Token,
        readable: bool,
        writable: bool,
        now: Instant,
        relayed: &mut Vec<(SocketAddr, SocketAddr, BytesMut)>,
    ) -> bool {
        for s in &mut self.udp {
            if let Some(servers) = s.servers.iter_mut().find(|c| c.tcp_token() == Some(token)) {
                servers.tcp_ready(now, readable, writable, &s.socket, relayed);
                return true;
            }
        }
        false
    }

    /// Feeds a datagram that socket `index` received from `from` to the state of every server
    /// set `from` serves; what they unwrapped from remote peers is appended to `relayed` with
    /// the relay candidate it reached. `false`: `from` is none of the socket's servers.
    pub(super) fn read_from_server(
        &mut self,
        index: usize,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        relayed: &mut Vec<(SocketAddr, SocketAddr, BytesMut)>,
    ) -> bool {
        let s = &mut self.udp[index];
        let mut any = false;
        // Sets sharing a server each get the datagram: a response belongs to the client whose
        // transaction it answers, the others drop it.
        for servers in s.servers.iter_mut().filter(|c| c.is_server(from)) {
            servers.handle_read(now, from, datagram, &s.socket, relayed);
            any = true;
        }
        any
    }

    /// Asks the STUN/TURN servers what is due (first requests, refreshes, retries).
    pub(super) fn ask_servers(&mut self, now: Instant) {
        for s in &mut self.udp {
            for servers in &mut s.servers {
                servers.ask(now, &s.socket);
                servers.handle_timeout(now, &s.socket);
            }
        }
    }

    fn sets_of<'a>(
        &'a mut self,
        servers: &'a IceServers,
    ) -> impl Iterator<Item = &'a mut ServerCandidates> {
        self.udp
            .iter_mut()
            .flat_map(|s| s.servers.iter_mut())
            .filter(move |c| c.servers() == servers)
    }

    /// Whether every socket's state for `servers` has its answers or has given up on them.
    pub(super) fn servers_settled(&mut self, servers: &IceServers, now: Instant) -> bool {
        // Every socket's lookups are settled (timed out ones given up), not only the first.
        let mut all = true;
        for state in self.sets_of(servers) {
            all &= state.settled(now);
        }
        all
    }

    /// The server candidates every socket got from `servers`.
    pub(super) fn server_candidates(
        &mut self,
        servers: &IceServers,
    ) -> Vec<rtc::peer_connection::transport::RTCIceCandidateInit> {
        self.sets_of(servers)
            .flat_map(|state| state.candidates().iter().cloned())
            .collect()
    }
}
