//! The sockets of one loop thread, their `sendmmsg` batches and their STUN/TURN state
//! (index-aligned), and how a datagram for a peer leaves: straight from the socket its pair's
//! local candidate names, or through that socket's TURN allocation for a relay candidate.

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::UdpSocket;

use super::ice_servers::IceServers;
use super::server_candidates::{CHANNEL_HEADER, ServerCandidates, frame_channel_data};
use super::udp::{SLOT_LEN, SendBatch};

/// One bound socket and the host candidate address that names it.
pub(super) struct LoopSocket {
    pub(super) socket: UdpSocket,
    /// The address the host candidate announces (what the ICE agent calls this socket).
    pub(super) addr: SocketAddr,
    batch: SendBatch,
    pub(super) servers: Option<ServerCandidates>,
}

/// How a peer's pair reaches its remote.
#[derive(Clone, Copy)]
enum Route {
    /// From socket `index`.
    Direct(usize),
    /// Through socket `index`'s TURN allocation.
    Relayed(usize),
}

pub(super) struct Sockets(pub(super) Vec<LoopSocket>);

impl Sockets {
    /// The sockets with their STUN/TURN state (DNS lookups of the servers happen here).
    pub(super) fn new(sockets: Vec<(UdpSocket, SocketAddr)>, servers: &IceServers) -> Self {
        let mut sockets = Sockets(
            sockets
                .into_iter()
                .map(|(socket, addr)| LoopSocket {
                    socket,
                    addr,
                    batch: SendBatch::new(64),
                    servers: None,
                })
                .collect(),
        );
        sockets.set_servers(servers, Instant::now());
        sockets
    }

    /// Starts over with `servers` (their first requests go out at the next [`Self::ask_servers`]).
    pub(super) fn set_servers(&mut self, servers: &IceServers, now: Instant) {
        for s in &mut self.0 {
            s.servers = (!servers.is_empty())
                .then(|| ServerCandidates::new(s.addr, servers, now))
                .flatten();
        }
    }

    fn route(&self, local: SocketAddr) -> Option<Route> {
        if let Some(index) = self.0.iter().position(|s| s.addr == local) {
            return Some(Route::Direct(index));
        }
        self.0
            .iter()
            .position(|s| {
                s.servers
                    .as_ref()
                    .is_some_and(|c| c.relayed_addr() == Some(local))
            })
            .map(Route::Relayed)
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
                let _ = self.0[index].socket.send_to(datagram, to);
            }
            Some(Route::Relayed(index)) => {
                let s = &mut self.0[index];
                if let Some(servers) = s.servers.as_mut() {
                    servers.send_relayed(now, to, datagram, &s.socket);
                }
            }
            None => {}
        }
    }

    /// Sends one forwarded packet, written in place by `fill` (which returns its length), from
    /// `local` to `to`: into the socket's batch, framed as ChannelData when relayed over a
    /// bound channel. Until the channel is bound a relayed packet takes the TURN client's path.
    pub(super) fn push(
        &mut self,
        local: SocketAddr,
        to: SocketAddr,
        now: Instant,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) {
        match self.route(local) {
            Some(Route::Direct(index)) => {
                let s = &mut self.0[index];
                s.batch.push(&s.socket, to, |slot| fill(&mut slot[..]));
            }
            Some(Route::Relayed(index)) => {
                let s = &mut self.0[index];
                let Some(servers) = s.servers.as_mut() else {
                    return;
                };
                if let Some((turn, number)) = servers.channel(to) {
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

    /// Sends every batched datagram.
    pub(super) fn flush(&mut self) {
        for s in &mut self.0 {
            if !s.batch.is_empty() {
                s.batch.flush(&s.socket);
            }
        }
    }

    /// Asks the STUN/TURN servers what is due (first requests, refreshes, retries).
    pub(super) fn ask_servers(&mut self, now: Instant) {
        for s in &mut self.0 {
            if let Some(servers) = s.servers.as_mut() {
                servers.ask(now, &s.socket);
                servers.handle_timeout(now, &s.socket);
            }
        }
    }

    /// Whether every socket's servers have answered or been given up on.
    pub(super) fn servers_settled(&mut self, now: Instant) -> bool {
        // Every socket's lookups are settled (timed out ones given up), not only the first.
        let mut all = true;
        for servers in self.0.iter_mut().filter_map(|s| s.servers.as_mut()) {
            all &= servers.settled(now);
        }
        all
    }

    /// The server candidates of every socket.
    pub(super) fn server_candidates(
        &self,
    ) -> impl Iterator<Item = &rtc::peer_connection::transport::RTCIceCandidateInit> {
        self.0
            .iter()
            .filter_map(|s| s.servers.as_ref())
            .flat_map(|servers| servers.candidates())
    }
}
