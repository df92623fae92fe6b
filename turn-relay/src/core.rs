//! The TURN protocol logic shared by the UDP and TCP/TLS drivers: request
//! handling, authentication, and the two relaying directions.
//!
//! The drivers own the sockets and the session table; everything here is
//! synchronous and writes replies into a caller-owned buffer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::allocation::{Allocation, Bucket, Permit, Quotas, RelaySocket, Route, Session};
use crate::auth::{AuthError, Authenticator, Key, unix_now};
use crate::config::TurnConfig;
use crate::metrics::Metrics;
use crate::policy::PeerPolicy;
use crate::stun::{self, Class, Message, Writer, attr, channel_data, method};
use crate::tcp_relay::{self, BindError, PeerConnection, PeerSlot, Refused, TcpRelay, Unbound};

const SOFTWARE: &str = concat!("rkms-turn ", env!("CARGO_PKG_VERSION"));
const UDP_PROTOCOL: u8 = 17;
const TCP_PROTOCOL: u8 = 6;

/// Room left before a payload in relay buffers for the largest header
/// (a Data indication to an IPv6 peer).
pub(crate) const MAX_HEADER: usize = 48;

/// Comprehension-required attributes this relay understands.
const KNOWN_REQUIRED: &[u16] = &[
    attr::MAPPED_ADDRESS,
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::UNKNOWN_ATTRIBUTES,
    attr::CHANNEL_NUMBER,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::REALM,
    attr::NONCE,
    attr::XOR_RELAYED_ADDRESS,
    attr::REQUESTED_ADDRESS_FAMILY,
    attr::EVEN_PORT,
    attr::REQUESTED_TRANSPORT,
    attr::DONT_FRAGMENT,
    attr::XOR_MAPPED_ADDRESS,
    attr::RESERVATION_TOKEN,
    attr::PRIORITY,
    attr::USE_CANDIDATE,
    attr::CONNECTION_ID,
];

/// An error code and reason phrase for a reply.
type ErrorReply = (u16, &'static str);
type ReservationToken = [u8; 8];

/// How long the second port of an EVEN-PORT pair stays reserved.
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// Kernel receive buffer of relay sockets: room for a few hundred
/// milliseconds of a video call while the relay task waits for a core.
const RELAY_SOCKET_BUFFER: usize = 1 << 20;

fn bind_relay_port(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    // Best effort: the kernel caps it at its configured maximum.
    let _ = socket.set_recv_buffer_size(RELAY_SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn into_tokio(s: std::net::UdpSocket) -> std::io::Result<UdpSocket> {
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// Lifetimes and limits resolved from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub default_lifetime: u32,
    pub max_lifetime: u32,
    pub permission_lifetime: Duration,
    pub channel_lifetime: Duration,
    pub max_bps: u64,
    pub min_port: u16,
    pub max_port: u16,
    /// Whether clients may ask for TCP relayed addresses (RFC 6062).
    pub tcp_relay: bool,
    /// How long a TCP relay connection may take to open, and to be bound.
    pub tcp_timeout: Duration,
}

/// `public` announced for relay addresses on `private` (any, when `None`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExternalIp {
    pub public: IpAddr,
    pub private: Option<IpAddr>,
}

/// Everything the drivers share.
pub(crate) struct Core {
    pub auth: Authenticator,
    pub policy: PeerPolicy,
    pub metrics: Arc<Metrics>,
    pub quotas: Arc<Quotas>,
    pub limits: Limits,
    pub relay_ips: Vec<IpAddr>,
    pub external: Vec<ExternalIp>,
    /// Ports reserved by EVEN-PORT, by RESERVATION-TOKEN.
    reservations: parking_lot::Mutex<HashMap<[u8; 8], (UdpSocket, Instant)>>,
    /// TCP peer connections waiting for a ConnectionBind.
    pub unbound: Unbound,
}

/// The transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Udp,
    /// TCP or TLS: where TCP allocations and their data connections live.
    Stream,
}

/// What a driver must do after [`Core::handle_stun`].
pub(crate) enum Outcome {
    /// Send the reply in the buffer, if any.
    Reply,
    /// A new allocation was made: start relaying its peer traffic, then reply.
    Allocated,
    /// A Connect passed its checks: open the connection to the peer
    /// ([`tcp_relay::connect`]), then answer with [`Core::connected`].
    Connect(ConnectRequest),
    /// A ConnectionBind succeeded: send the reply, then this connection
    /// carries the peer connection's bytes.
    Bound(PeerConnection),
}

/// A Connect being served; the answer needs the request's key and id.
pub(crate) struct ConnectRequest {
    pub peer: SocketAddr,
    /// Where the relay connects from: the relayed address.
    pub local: SocketAddr,
    slot: PeerSlot,
    key: Key,
    transaction_id: [u8; 12],
    username: String,
    closed: tokio::sync::watch::Receiver<()>,
}

/// A request that passed authentication.
struct Authed {
    key: Key,
    username: String,
}

/// Error replies to an authenticated request carry MESSAGE-INTEGRITY.
fn error_reply(out: &mut Vec<u8>, req: &Message<'_>, code: u16, reason: &str, key: Option<&Key>) {
    let mut w = Writer::reply(out, req, Class::Error);
    w.error_code(code, reason)
        .attr(attr::SOFTWARE, SOFTWARE.as_bytes());
    if let Some(key) = key {
        w.integrity(key);
    }
    w.fingerprint();
}

impl Core {
    pub fn new(
        cfg: &TurnConfig,
        auth: Authenticator,
        policy: PeerPolicy,
        relay_ips: Vec<IpAddr>,
        external: Vec<ExternalIp>,
    ) -> Self {
        Core {
            auth,
            policy,
            metrics: Arc::default(),
            quotas: Arc::new(Quotas::new(cfg.user_quota, cfg.total_quota)),
            limits: Limits {
                default_lifetime: cfg.default_lifetime_secs.max(1),
                max_lifetime: cfg
                    .max_allocate_lifetime_secs
                    .max(cfg.default_lifetime_secs)
                    .max(1),
                permission_lifetime: Duration::from_secs(cfg.permission_lifetime_secs.into()),
                channel_lifetime: Duration::from_secs(cfg.channel_lifetime_secs.into()),
                max_bps: cfg.max_bps,
                min_port: cfg.min_port,
                max_port: cfg.max_port,
                tcp_relay: cfg.tcp_relay,
                tcp_timeout: Duration::from_secs(cfg.tcp_connection_timeout_secs.max(1).into()),
            },
            relay_ips,
            external,
            reservations: Default::default(),
            unbound: Unbound::default(),
        }
    }

    /// Handles a STUN message (not a Send indication) from `client` over
    /// `control`, whose allocation slot is `session`. Leaves the reply in
    /// `out` (empty when none is due).
    pub fn handle_stun(
        &self,
        msg: &Message<'_>,
        (client, control): (SocketAddr, Control),
        session: &mut Option<Session>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        if msg.class != Class::Request || !msg.fingerprint_ok() {
            return Outcome::Reply;
        }
        if msg.method == method::BINDING {
            Writer::reply(out, msg, Class::Success)
                .xor_address(attr::XOR_MAPPED_ADDRESS, client)
                .mapped_address(client)
                .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
                .fingerprint();
            return Outcome::Reply;
        }
        if !matches!(
            msg.method,
            method::ALLOCATE
                | method::REFRESH
                | method::CREATE_PERMISSION
                | method::CHANNEL_BIND
                | method::CONNECT
                | method::CONNECTION_BIND
        ) {
            error_reply(out, msg, 400, "Unknown method", None);
            return Outcome::Reply;
        }
        let Some(authed) = self.authenticate(msg, out) else {
            return Outcome::Reply;
        };
        let key = Some(&authed.key);
        if let Some(s) = session.as_ref()
            && s.username != authed.username
        {
            error_reply(out, msg, 441, "Wrong Credentials", key);
            return Outcome::Reply;
        }
        let unknown = msg.unknown_required(KNOWN_REQUIRED);
        if !unknown.is_empty() {
            let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
            let mut w = Writer::reply(out, msg, Class::Error);
            w.error_code(420, "Unknown Attribute")
                .attr(attr::UNKNOWN_ATTRIBUTES, &list);
            w.integrity(&authed.key).fingerprint();
            return Outcome::Reply;
        }
        match msg.method {
            method::ALLOCATE => self.allocate(msg, (client, control), authed, session, out),
            method::CONNECT => self.connect(msg, &authed, session.as_ref(), out),
            method::CONNECTION_BIND => {
                self.connection_bind(msg, control, &authed, session.as_ref(), out)
            }
            method::REFRESH => {
                self.refresh(msg, &authed, session, out);
                Outcome::Reply
            }
            method::CREATE_PERMISSION => {
                self.create_permission(msg, &authed, session.as_ref(), out);
                Outcome::Reply
            }
            _ => {
                self.channel_bind(msg, &authed, session.as_ref(), out);
                Outcome::Reply
            }
        }
    }

    /// Checks the long-term credentials; on failure writes the challenge or
    /// error reply and returns `None`.
    fn authenticate(&self, msg: &Message<'_>, out: &mut Vec<u8>) -> Option<Authed> {
        let now = unix_now();
        let challenge = |out: &mut Vec<u8>, code: u16, reason: &str| {
            let mut w = Writer::reply(out, msg, Class::Error);
            w.error_code(code, reason)
                .attr(attr::REALM, self.auth.realm().as_bytes())
                .attr(attr::NONCE, self.auth.nonce(now).as_bytes())
                .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
                .fingerprint();
        };
        if !msg.has(attr::MESSAGE_INTEGRITY) {
            challenge(out, 401, "Unauthorized");
            return None;
        }
        let (Some(username), Some(_realm), Some(nonce)) = (
            msg.get_str(attr::USERNAME),
            msg.get(attr::REALM),
            msg.get_str(attr::NONCE),
        ) else {
            error_reply(out, msg, 400, "Bad Request", None);
            return None;
        };
        if !self.auth.nonce_fresh(nonce, now) {
            challenge(out, 438, "Stale Nonce");
            return None;
        }
        let keys = match self.auth.candidate_keys(username, now) {
            Ok(keys) => keys,
            Err(e) => {
                self.metrics.auth_failure();
                tracing::debug!(username, error = %e, "TURN authentication refused");
                challenge(
                    out,
                    401,
                    if e == AuthError::Expired {
                        "Credentials Expired"
                    } else {
                        "Unauthorized"
                    },
                );
                return None;
            }
        };
        match keys
            .into_iter()
            .find(|k| msg.check_integrity(k) == Some(true))
        {
            Some(key) => Some(Authed {
                key,
                username: username.to_owned(),
            }),
            None => {
                self.metrics.auth_failure();
                tracing::debug!(username, "TURN message integrity check failed");
                challenge(out, 401, "Unauthorized");
                None
            }
        }
    }

    fn lifetime(&self, msg: &Message<'_>) -> u32 {
        match msg.get_u32(attr::LIFETIME) {
            Some(0) => 0,
            Some(asked) => asked.min(self.limits.max_lifetime),
            None => self.limits.default_lifetime,
        }
    }

    fn allocate(
        &self,
        msg: &Message<'_>,
        (client, control): (SocketAddr, Control),
        authed: Authed,
        session: &mut Option<Session>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let key = Some(&authed.key);
        if let Some(s) = session.as_ref() {
            if s.allocate_tid == msg.transaction_id {
                // A retransmission of the request that created it: same answer.
                let lifetime = s
                    .expires
                    .saturating_duration_since(Instant::now())
                    .as_secs() as u32;
                self.allocate_success(
                    msg,
                    client,
                    s.alloc.relayed,
                    (lifetime, None),
                    &authed.key,
                    out,
                );
            } else {
                error_reply(out, msg, 437, "Allocation Mismatch", key);
            }
            return Outcome::Reply;
        }
        let tcp = match self.requested_transport(msg, control) {
            Ok(tcp) => tcp,
            Err((code, reason)) => {
                error_reply(out, msg, code, reason, key);
                return Outcome::Reply;
            }
        };
        if !self.quotas.acquire(&authed.username) {
            self.metrics.quota_rejection();
            error_reply(out, msg, 486, "Allocation Quota Reached", key);
            return Outcome::Reply;
        }
        let relay = if tcp {
            self.tcp_listener(msg).map(|r| (r, None))
        } else {
            self.relay_socket(msg)
                .map(|(s, token)| (RelaySocket::Udp(s), token))
        };
        let (socket, token) = match relay {
            Ok(found) => found,
            Err((code, reason)) => {
                self.quotas.release(&authed.username);
                error_reply(out, msg, code, reason, key);
                return Outcome::Reply;
            }
        };
        let local = match &socket {
            RelaySocket::Udp(s) => s.local_addr(),
            RelaySocket::Tcp(t) => t.listener.local_addr(),
        };
        let Ok(local) = local else {
            self.quotas.release(&authed.username);
            error_reply(out, msg, 508, "Insufficient Capacity", key);
            return Outcome::Reply;
        };
        let relayed = self.announced(local);
        let lifetime = self.lifetime(msg).max(1);
        self.metrics.allocation_opened();
        *session = Some(Session {
            alloc: Arc::new(Allocation::new(socket, relayed)),
            username: authed.username,
            expires: Instant::now() + Duration::from_secs(lifetime.into()),
            allocate_tid: msg.transaction_id,
            to_peer: Bucket::new(self.limits.max_bps),
            relay_task: None,
            quotas: self.quotas.clone(),
            metrics: self.metrics.clone(),
        });
        self.allocate_success(msg, client, relayed, (lifetime, token), &authed.key, out);
        tracing::debug!(%client, %relayed, lifetime, tcp, "TURN allocation created");
        Outcome::Allocated
    }

    /// Whether an Allocate asks for a TCP relayed address (else UDP).
    fn requested_transport(&self, msg: &Message<'_>, control: Control) -> Result<bool, ErrorReply> {
        let Some(value) = msg.get(attr::REQUESTED_TRANSPORT) else {
            return Err((400, "Missing REQUESTED-TRANSPORT"));
        };
        match value.first() {
            Some(&UDP_PROTOCOL) => Ok(false),
            Some(&TCP_PROTOCOL) if self.limits.tcp_relay => {
                if control == Control::Udp {
                    return Err((400, "TCP allocations need a TCP or TLS connection"));
                }
                // RFC 6062 §5.1: these only make sense for UDP.
                if msg.has(attr::EVEN_PORT)
                    || msg.has(attr::RESERVATION_TOKEN)
                    || msg.has(attr::DONT_FRAGMENT)
                {
                    return Err((400, "Bad Request"));
                }
                Ok(true)
            }
            _ => Err((442, "Unsupported Transport Protocol")),
        }
    }

    /// The relayed side of a TCP allocation: a listener on a free port of the range.
    fn tcp_listener(&self, msg: &Message<'_>) -> Result<RelaySocket, ErrorReply> {
        let relay_ip = self.relay_ip(msg)?;
        let listener = self
            .probe_ports(false, false, |port| {
                tcp_relay::bind_listener(SocketAddr::new(relay_ip, port))
            })
            .map_err(|e| {
                tracing::warn!(%relay_ip, error = %e, "no TCP relay port available");
                (508, "Insufficient Capacity")
            })?;
        Ok(RelaySocket::Tcp(TcpRelay::new(
            listener,
            self.limits.max_bps,
        )))
    }

    fn allocate_success(
        &self,
        msg: &Message<'_>,
        client: SocketAddr,
        relayed: SocketAddr,
        (lifetime, token): (u32, Option<ReservationToken>),
        key: &Key,
        out: &mut Vec<u8>,
    ) {
        let mut w = Writer::reply(out, msg, Class::Success);
        w.xor_address(attr::XOR_RELAYED_ADDRESS, relayed)
            .u32(attr::LIFETIME, lifetime)
            .xor_address(attr::XOR_MAPPED_ADDRESS, client);
        if let Some(token) = token {
            w.attr(attr::RESERVATION_TOKEN, &token);
        }
        w.attr(attr::SOFTWARE, SOFTWARE.as_bytes())
            .integrity(key)
            .fingerprint();
    }

    /// The relay socket for an Allocate: a reserved one (RESERVATION-TOKEN),
    /// an even port with the next one reserved (EVEN-PORT with R set, for
    /// RTP/RTCP pairs), or any port. Also returns a new reservation's token.
    fn relay_socket(
        &self,
        msg: &Message<'_>,
    ) -> Result<(UdpSocket, Option<ReservationToken>), ErrorReply> {
        const NO_CAPACITY: (u16, &str) = (508, "Insufficient Capacity");
        if let Some(token) = msg.get(attr::RESERVATION_TOKEN) {
            if msg.has(attr::EVEN_PORT) || msg.has(attr::REQUESTED_ADDRESS_FAMILY) {
                return Err((400, "Bad Request"));
            }
            let token: [u8; 8] = token
                .try_into()
                .map_err(|_| (400, "Bad RESERVATION-TOKEN"))?;
            let mut reservations = self.reservations.lock();
            let now = Instant::now();
            reservations.retain(|_, (_, until)| *until > now);
            return reservations
                .remove(&token)
                .map(|(socket, _)| (socket, None))
                .ok_or(NO_CAPACITY);
        }
        let relay_ip = self.relay_ip(msg)?;
        let even_port = msg.get(attr::EVEN_PORT);
        let reserve = even_port
            .and_then(|v| v.first())
            .is_some_and(|b| b & 0x80 != 0);
        let (socket, reserved) = self
            .bind_relay(relay_ip, even_port.is_some(), reserve)
            .map_err(|e| {
                tracing::warn!(%relay_ip, error = %e, "no relay port available");
                NO_CAPACITY
            })?;
        let token = reserved.map(|next| {
            let token: [u8; 8] = rand::random();
            let mut reservations = self.reservations.lock();
            let now = Instant::now();
            reservations.retain(|_, (_, until)| *until > now);
            reservations.insert(token, (next, now + RESERVATION_LIFETIME));
            token
        });
        Ok((socket, token))
    }

    /// The relay address of the family an Allocate asks for.
    fn relay_ip(&self, msg: &Message<'_>) -> Result<IpAddr, ErrorReply> {
        let want_v6 = match msg
            .get(attr::REQUESTED_ADDRESS_FAMILY)
            .and_then(|v| v.first())
        {
            None | Some(0x01) => false,
            Some(0x02) => true,
            Some(_) => return Err((440, "Address Family not Supported")),
        };
        self.relay_ips
            .iter()
            .copied()
            .find(|ip| ip.is_ipv6() == want_v6)
            .ok_or((440, "Address Family not Supported"))
    }

    /// Binds a relay socket on a random free port of the range; with
    /// `reserve`, also the next port, returned as the second socket.
    fn bind_relay(
        &self,
        ip: IpAddr,
        even: bool,
        reserve: bool,
    ) -> std::io::Result<(UdpSocket, Option<UdpSocket>)> {
        let (s, next) = self.probe_ports(even, reserve, |port| {
            let s = bind_relay_port(SocketAddr::new(ip, port))?;
            let next = match reserve {
                true => Some(bind_relay_port(SocketAddr::new(ip, port + 1))?),
                false => None,
            };
            Ok((s, next))
        })?;
        Ok((into_tokio(s)?, next.map(into_tokio).transpose()?))
    }

    /// Calls `bind` on ports of the relay range until one works: an even
    /// one with `even`, one below the top with `reserve` (for its neighbour).
    fn probe_ports<T>(
        &self,
        even: bool,
        reserve: bool,
        mut bind: impl FnMut(u16) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let (lo, hi) = (
            self.limits.min_port,
            self.limits.max_port.max(self.limits.min_port),
        );
        let mut last_err =
            std::io::Error::new(std::io::ErrorKind::AddrInUse, "relay port range exhausted");
        let span = u32::from(hi - lo) + 1;
        let start: u32 = rand::random_range(0..span);
        // Random start, then a linear probe: finds a free port even when the range is nearly full.
        for i in 0..span.min(4096) {
            let port = lo as u32 + (start + i) % span;
            if even && port % 2 == 1 {
                continue;
            }
            if reserve && port >= hi as u32 {
                continue;
            }
            match bind(port as u16) {
                Ok(bound) => return Ok(bound),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// The relayed address as clients must see it (external-IP mapping).
    pub fn announced(&self, local: SocketAddr) -> SocketAddr {
        self.external
            .iter()
            .find(|e| {
                e.private.is_none_or(|p| p == local.ip()) && e.public.is_ipv4() == local.is_ipv4()
            })
            .map_or(local, |e| SocketAddr::new(e.public, local.port()))
    }

    fn refresh(
        &self,
        msg: &Message<'_>,
        authed: &Authed,
        session: &mut Option<Session>,
        out: &mut Vec<u8>,
    ) {
        let Some(s) = session.as_mut() else {
            error_reply(out, msg, 437, "Allocation Mismatch", Some(&authed.key));
            return;
        };
        let lifetime = self.lifetime(msg);
        if lifetime == 0 {
            *session = None;
        } else {
            s.expires = Instant::now() + Duration::from_secs(lifetime.into());
        }
        Writer::reply(out, msg, Class::Success)
            .u32(attr::LIFETIME, lifetime)
            .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
            .integrity(&authed.key)
            .fingerprint();
    }

    /// Checks one XOR-PEER-ADDRESS against the peer policy; gives the peer
    /// and the permission it may have, or writes the error reply.
    fn check_peer(
        &self,
        msg: &Message<'_>,
        value: &[u8],
        s: &Session,
        key: &Key,
        out: &mut Vec<u8>,
    ) -> Option<(SocketAddr, Permit)> {
        let Some(peer) = msg.xor_address(value) else {
            error_reply(out, msg, 400, "Bad XOR-PEER-ADDRESS", Some(key));
            return None;
        };
        if peer.is_ipv4() != s.alloc.relayed.is_ipv4() {
            error_reply(out, msg, 443, "Peer Address Family Mismatch", Some(key));
            return None;
        }
        let Some(permit) = Permit::for_peer(peer, self.policy.verdict(peer)) else {
            self.metrics.peer_denied();
            tracing::debug!(%peer, "peer refused by policy");
            error_reply(out, msg, 403, "Forbidden", Some(key));
            return None;
        };
        Some((peer, permit))
    }

    fn create_permission(
        &self,
        msg: &Message<'_>,
        authed: &Authed,
        session: Option<&Session>,
        out: &mut Vec<u8>,
    ) {
        let Some(s) = session else {
            error_reply(out, msg, 437, "Allocation Mismatch", Some(&authed.key));
            return;
        };
        let mut permits = Vec::new();
        for (t, v, _) in msg.attributes() {
            if t == attr::XOR_PEER_ADDRESS {
                let Some((_, permit)) = self.check_peer(msg, v, s, &authed.key, out) else {
                    return;
                };
                permits.push(permit);
            }
        }
        if permits.is_empty() {
            error_reply(out, msg, 400, "Missing XOR-PEER-ADDRESS", Some(&authed.key));
            return;
        }
        let until = Instant::now() + self.limits.permission_lifetime;
        for permit in permits {
            s.alloc.permit(permit, until);
        }
        Writer::reply(out, msg, Class::Success)
            .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
            .integrity(&authed.key)
            .fingerprint();
    }

    fn channel_bind(
        &self,
        msg: &Message<'_>,
        authed: &Authed,
        session: Option<&Session>,
        out: &mut Vec<u8>,
    ) {
        let key = &authed.key;
        let Some(s) = session else {
            error_reply(out, msg, 437, "Allocation Mismatch", Some(key));
            return;
        };
        let number = msg
            .get(attr::CHANNEL_NUMBER)
            .and_then(|v| v.get(..2))
            .map(|v| u16::from_be_bytes([v[0], v[1]]));
        let (Some(number), Some(peer_attr)) = (number, msg.get(attr::XOR_PEER_ADDRESS)) else {
            error_reply(
                out,
                msg,
                400,
                "Missing CHANNEL-NUMBER or XOR-PEER-ADDRESS",
                Some(key),
            );
            return;
        };
        if !channel_data::NUMBERS.contains(&number) {
            error_reply(out, msg, 400, "Bad Channel Number", Some(key));
            return;
        }
        if s.alloc.tcp().is_some() {
            error_reply(out, msg, 400, "No channels on a TCP allocation", Some(key));
            return;
        }
        let Some((peer, permit)) = self.check_peer(msg, peer_attr, s, key, out) else {
            return;
        };
        let now = Instant::now();
        let bound = s.alloc.bind_channel(
            number,
            peer,
            permit,
            now + self.limits.channel_lifetime,
            now + self.limits.permission_lifetime,
        );
        if bound.is_err() {
            error_reply(out, msg, 400, "Channel Already Bound", Some(key));
            return;
        }
        Writer::reply(out, msg, Class::Success)
            .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
            .integrity(key)
            .fingerprint();
    }

    /// Connect (RFC 6062 §5.2): checks the peer as CreatePermission does,
    /// and that the allocation has a permission for it and no connection
    /// with it yet; the connection itself is the driver's to open.
    fn connect(
        &self,
        msg: &Message<'_>,
        authed: &Authed,
        session: Option<&Session>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let key = &authed.key;
        let Some(s) = session else {
            error_reply(out, msg, 437, "Allocation Mismatch", Some(key));
            return Outcome::Reply;
        };
        let Some(tcp) = s.alloc.tcp() else {
            error_reply(out, msg, 400, "Connect needs a TCP allocation", Some(key));
            return Outcome::Reply;
        };
        let Some(value) = msg.get(attr::XOR_PEER_ADDRESS) else {
            error_reply(out, msg, 400, "Missing XOR-PEER-ADDRESS", Some(key));
            return Outcome::Reply;
        };
        let Some((peer, _)) = self.check_peer(msg, value, s, key, out) else {
            return Outcome::Reply;
        };
        if !s.alloc.is_permitted(peer, Instant::now()) {
            error_reply(out, msg, 403, "No Permission for the Peer", Some(key));
            return Outcome::Reply;
        }
        let (slot, local) = match (tcp.reserve(peer), tcp.listener.local_addr()) {
            (Ok(slot), Ok(local)) => (slot, local),
            (Err(Refused::Exists), _) => {
                error_reply(out, msg, 446, "Connection Already Exists", Some(key));
                return Outcome::Reply;
            }
            _ => {
                error_reply(out, msg, 447, "Connection Timeout or Failure", Some(key));
                return Outcome::Reply;
            }
        };
        Outcome::Connect(ConnectRequest {
            peer,
            local,
            slot,
            key: authed.key,
            transaction_id: msg.transaction_id,
            username: authed.username.clone(),
            closed: tcp.closed(),
        })
    }

    /// Answers a Connect once its connection is open (filed under a new
    /// CONNECTION-ID) or has failed.
    pub fn connected(
        &self,
        req: ConnectRequest,
        stream: std::io::Result<tokio::net::TcpStream>,
        out: &mut Vec<u8>,
    ) {
        let tid = req.transaction_id;
        match stream {
            Ok(stream) => {
                let id = self.unbound.insert(
                    PeerConnection {
                        stream,
                        username: req.username,
                        slot: req.slot,
                        closed: req.closed,
                    },
                    self.limits.tcp_timeout,
                );
                tracing::debug!(peer = %req.peer, id, "TCP relay connected to a peer");
                Writer::new(out, method::CONNECT, Class::Success, tid)
                    .u32(attr::CONNECTION_ID, id)
                    .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
                    .integrity(&req.key)
                    .fingerprint();
            }
            Err(e) => {
                tracing::debug!(peer = %req.peer, error = %e, "TCP relay cannot reach a peer");
                Writer::new(out, method::CONNECT, Class::Error, tid)
                    .error_code(447, "Connection Timeout or Failure")
                    .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
                    .integrity(&req.key)
                    .fingerprint();
            }
        }
    }

    /// A peer connected to a TCP allocation's relayed address: kept for a
    /// ConnectionBind and announced with a ConnectionAttempt indication in
    /// `out` when the peer has a permission, else closed (`out` empty).
    pub fn peer_arrived(
        &self,
        s: &Session,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let Some(tcp) = s.alloc.tcp() else { return };
        if !s.alloc.is_permitted(peer, Instant::now()) {
            self.metrics.drop_packet();
            tracing::debug!(%peer, "TCP connection from a peer without permission refused");
            return;
        }
        let Ok(slot) = tcp.reserve(peer) else {
            self.metrics.drop_packet();
            return;
        };
        let _ = stream.set_nodelay(true);
        let id = self.unbound.insert(
            PeerConnection {
                stream,
                username: s.username.clone(),
                slot,
                closed: tcp.closed(),
            },
            self.limits.tcp_timeout,
        );
        Writer::new(
            out,
            method::CONNECTION_ATTEMPT,
            Class::Indication,
            rand::random(),
        )
        .xor_address(attr::XOR_PEER_ADDRESS, peer)
        .u32(attr::CONNECTION_ID, id)
        .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
        .fingerprint();
    }

    /// ConnectionBind (RFC 6062 §5.4), on a new connection of the
    /// allocation's user: the pending connection it names becomes this
    /// connection's.
    fn connection_bind(
        &self,
        msg: &Message<'_>,
        control: Control,
        authed: &Authed,
        session: Option<&Session>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let key = Some(&authed.key);
        if control == Control::Udp || session.is_some() {
            error_reply(
                out,
                msg,
                400,
                "ConnectionBind needs a new TCP connection",
                key,
            );
            return Outcome::Reply;
        }
        let Some(id) = msg.get_u32(attr::CONNECTION_ID) else {
            error_reply(out, msg, 400, "Missing CONNECTION-ID", key);
            return Outcome::Reply;
        };
        match self.unbound.bind(id, &authed.username) {
            Ok(conn) => {
                Writer::reply(out, msg, Class::Success)
                    .attr(attr::SOFTWARE, SOFTWARE.as_bytes())
                    .integrity(&authed.key)
                    .fingerprint();
                Outcome::Bound(conn)
            }
            Err(BindError::WrongUser) => {
                error_reply(out, msg, 441, "Wrong Credentials", key);
                Outcome::Reply
            }
            Err(BindError::Unknown) => {
                error_reply(out, msg, 400, "Unknown CONNECTION-ID", key);
                Outcome::Reply
            }
        }
    }

    /// Client → peer for a Send indication (silently dropped when not allowed).
    pub fn relay_send_indication(&self, msg: &Message<'_>, s: &mut Session) {
        let (Some(peer), Some(data)) = (
            msg.get(attr::XOR_PEER_ADDRESS)
                .and_then(|v| msg.xor_address(v)),
            msg.get(attr::DATA),
        ) else {
            self.metrics.malformed_packet();
            return;
        };
        let now = Instant::now();
        if !s.alloc.is_permitted(peer, now) {
            self.metrics.drop_packet();
            return;
        }
        self.send_to_peer(s, data, peer, now);
    }

    /// Client → peer for ChannelData.
    pub fn relay_channel_data(&self, packet: &[u8], s: &mut Session) {
        let Some((number, data)) = channel_data::parse(packet) else {
            self.metrics.malformed_packet();
            return;
        };
        let now = Instant::now();
        match s.alloc.channel_peer(number, now) {
            Some(peer) => self.send_to_peer(s, data, peer, now),
            None => self.metrics.drop_packet(),
        }
    }

    fn send_to_peer(&self, s: &mut Session, data: &[u8], peer: SocketAddr, now: Instant) {
        if let Some(bucket) = s.to_peer.as_mut()
            && !bucket.take(data.len(), now)
        {
            self.metrics.drop_packet();
            return;
        }
        // UDP sends seldom block; a full socket buffer drops, as a router
        // would. A TCP allocation relays only over data connections.
        match s.alloc.udp().map(|socket| socket.try_send_to(data, peer)) {
            Some(Ok(_)) => self.metrics.relayed_to_peer(data.len()),
            _ => self.metrics.drop_packet(),
        }
    }

    /// Peer → client: frames the `n`-byte payload received at
    /// `buf[MAX_HEADER..]` for the client, in place, and gives the frame's
    /// range in `buf`. `stream` pads ChannelData to 4 bytes as TCP requires.
    /// `None` drops the packet; the caller counts the packet as relayed once
    /// it is sent.
    pub fn frame_for_client(
        &self,
        alloc: &Allocation,
        peer: SocketAddr,
        buf: &mut [u8],
        n: usize,
        stream: bool,
        bucket: &mut Option<Bucket>,
    ) -> Option<Range<usize>> {
        let now = Instant::now();
        let route = alloc.route_from_peer(peer, now);
        if route == Route::Denied
            || bucket.as_mut().is_some_and(|b| !b.take(n, now))
            || MAX_HEADER + n + 3 > buf.len()
        {
            self.metrics.drop_packet();
            return None;
        }
        let end = MAX_HEADER + n;
        let padded_end = MAX_HEADER + ((n + 3) & !3);
        match route {
            Route::Channel(number) => {
                let start = MAX_HEADER - 4;
                channel_data::write_header(&mut buf[start..MAX_HEADER], number, n);
                let end = if stream {
                    buf[end..padded_end].fill(0);
                    padded_end
                } else {
                    end
                };
                Some(start..end)
            }
            _ => {
                let start = MAX_HEADER - stun::data_indication_header_len(peer);
                buf[end..padded_end].fill(0);
                let tid: [u8; 12] = rand::random();
                stun::write_data_indication_header(&mut buf[start..MAX_HEADER], peer, n, &tid);
                Some(start..padded_end)
            }
        }
    }
}
