//! Starting the relay from a [`TurnConfig`], and the handle that runs it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

use crate::auth::{Authenticator, rest_password, unix_now};
use crate::config::TurnConfig;
use crate::core::{Core, ExternalIp};
use crate::metrics::MetricsSnapshot;
use crate::policy::{IpRange, PeerPolicy};
use crate::tcp::{self, Plain};
use crate::tls::Tls;
use crate::{Error, udp};

/// Kernel buffer size asked for listening UDP sockets (capped by the
/// kernel's `rmem_max`/`wmem_max`): bursts from many clients must not drop.
const UDP_BUFFER: usize = 4 << 20;

/// The relay; see [`Relay::start`].
pub struct Relay;

/// A running relay. Dropping it (or [`RelayHandle::shutdown`]) stops every
/// listener and closes every allocation.
pub struct RelayHandle {
    core: Arc<Core>,
    internal_secret: [u8; 32],
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
    tasks: JoinSet<()>,
}

/// Long-term TURN credentials for an ICE server entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Relay {
    /// Binds the listeners and starts serving on the current Tokio runtime.
    pub async fn start(config: TurnConfig) -> Result<RelayHandle, Error> {
        Self::start_for_media(config, Vec::new()).await
    }

    /// As [`Relay::start`], for the relay embedded in a media server whose
    /// own sockets are at `media_addrs` (the addresses its ICE candidates
    /// announce): clients may relay to exactly those addresses and ports even
    /// when the peer policy refuses their IP, as it does private ones.
    pub async fn start_for_media(
        config: TurnConfig,
        media_addrs: Vec<SocketAddr>,
    ) -> Result<RelayHandle, Error> {
        let mut core = build_core(&config, media_addrs)?;
        let internal_secret: [u8; 32] = rand::random();
        core.auth.add_secret(hex(&internal_secret).as_bytes());
        let core = Arc::new(core);

        let mut handle = RelayHandle {
            core,
            internal_secret,
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            tasks: JoinSet::new(),
        };
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::from_pem_files(cert, key)?)),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "TLS needs both a certificate and a private key".into(),
                ));
            }
        };
        for &ip in &config.listening_ips {
            let addr = SocketAddr::new(ip, config.listening_port);
            let (udp_sockets, tcp_listener) = bind_plain(&config, addr).await?;
            if let Some(first) = udp_sockets.first() {
                handle.udp.push(local_addr(&first.local_addr(), addr)?);
            }
            for socket in udp_sockets {
                handle
                    .tasks
                    .spawn(udp::serve(Arc::new(socket), handle.core.clone()));
            }
            if let Some(listener) = tcp_listener {
                handle.tcp.push(local_addr(&listener.local_addr(), addr)?);
                handle
                    .tasks
                    .spawn(tcp::serve(listener, Arc::new(Plain), handle.core.clone()));
            }
            if let Some(tls) = &tls {
                let tls_addr = SocketAddr::new(ip, config.tls_listening_port);
                let listener = bind_tcp(tls_addr).await?;
                handle
                    .tls
                    .push(local_addr(&listener.local_addr(), tls_addr)?);
                handle
                    .tasks
                    .spawn(tcp::serve(listener, tls.clone(), handle.core.clone()));
            }
        }
        if handle.udp.is_empty() && handle.tcp.is_empty() && handle.tls.is_empty() {
            return Err(Error::Config(
                "no listener: enable UDP, TCP or TLS on at least one address".into(),
            ));
        }
        tracing::info!(udp = ?handle.udp, tcp = ?handle.tcp, tls = ?handle.tls, relay_ips = ?handle.core.relay_ips,
            media_peers = ?handle.core.policy.own_media, realm = handle.core.auth.realm(), "TURN relay listening");
        Ok(handle)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn local_addr(r: &std::io::Result<SocketAddr>, addr: SocketAddr) -> Result<SocketAddr, Error> {
    r.as_ref().copied().map_err(|e| Error::Bind {
        addr,
        source: std::io::Error::new(e.kind(), e.to_string()),
    })
}

fn udp_sockets_per_address() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
}

/// The UDP sockets and the TCP listener of one listening address. UDP gets
/// one socket per core on the same port (SO_REUSEPORT): the kernel hashes
/// each client to one of them, so every socket's task owns its clients'
/// sessions and the cores share the load. With port 0, TCP follows the port
/// UDP got so one port serves both; when TCP finds that port taken, a few
/// fresh ones are tried.
async fn bind_plain(
    config: &TurnConfig,
    addr: SocketAddr,
) -> Result<(Vec<UdpSocket>, Option<TcpListener>), Error> {
    let mut attempts = if addr.port() == 0 && config.udp && config.tcp {
        8
    } else {
        1
    };
    loop {
        let mut udp = Vec::new();
        let mut port = addr.port();
        if config.udp {
            let first = bind_udp(addr)?;
            let bound = local_addr(&first.local_addr(), addr)?;
            port = bound.port();
            udp.push(first);
            for _ in 1..udp_sockets_per_address() {
                udp.push(bind_udp(bound)?);
            }
        }
        if !config.tcp {
            return Ok((udp, None));
        }
        match bind_tcp(SocketAddr::new(addr.ip(), port)).await {
            Ok(listener) => return Ok((udp, Some(listener))),
            Err(_) if attempts > 1 => attempts -= 1,
            Err(e) => return Err(e),
        }
    }
}

fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, Error> {
    let bind_err = |source| Error::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )
    .map_err(bind_err)?;
    // Best effort: the kernel caps these at its configured maximum.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_reuse_port(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    UdpSocket::from_std(socket.into()).map_err(bind_err)
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// The host's address on its default route, found by "connecting" a UDP
/// socket (nothing is sent); loopback when there is no route.
fn outbound_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and_then(|()| s.local_addr()))
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip())
}

fn build_core(cfg: &TurnConfig, own_media: Vec<SocketAddr>) -> Result<Core, Error> {
    if cfg.min_port > cfg.max_port || cfg.min_port == 0 {
        return Err(Error::Config(format!(
            "bad relay port range {}-{}",
            cfg.min_port, cfg.max_port
        )));
    }
    if cfg.realm.is_empty() {
        return Err(Error::Config("the realm must not be empty".into()));
    }
    let auth = Authenticator::new(
        &cfg.realm,
        &cfg.users,
        &cfg.static_auth_secrets,
        Duration::from_secs(cfg.stale_nonce_secs.max(1)),
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let ranges = |list: &[String]| -> Result<Vec<IpRange>, Error> {
        list.iter()
            .map(|r| {
                r.parse()
                    .map_err(|e: crate::policy::BadRange| Error::Config(e.to_string()))
            })
            .collect()
    };
    let policy = PeerPolicy {
        allow_loopback: cfg.allow_loopback_peers,
        allowed: ranges(&cfg.allowed_peer_ips)?,
        denied: ranges(&cfg.denied_peer_ips)?,
        own_media,
    };
    let mut relay_ips = cfg.relay_ips.clone();
    if relay_ips.is_empty() {
        relay_ips = cfg
            .listening_ips
            .iter()
            .filter(|ip| !ip.is_unspecified())
            .copied()
            .collect();
    }
    if relay_ips.is_empty() {
        relay_ips.push(outbound_ip());
    }
    let external = cfg
        .external_ips
        .iter()
        .map(|e| parse_external(e))
        .collect::<Result<_, _>>()?;
    Ok(Core::new(cfg, auth, policy, relay_ips, external))
}

fn parse_external(s: &str) -> Result<ExternalIp, Error> {
    let bad = || {
        Error::Config(format!(
            "external IP {s:?} is not `public` or `public/private`"
        ))
    };
    let (public, private) = match s.split_once('/') {
        Some((p, q)) => (
            p.parse().map_err(|_| bad())?,
            Some(q.parse().map_err(|_| bad())?),
        ),
        None => (s.parse().map_err(|_| bad())?, None),
    };
    Ok(ExternalIp { public, private })
}

impl RelayHandle {
    /// Bound UDP listening addresses (with the real port when 0 was asked).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls
    }
    pub fn realm(&self) -> &str {
        self.core.auth.realm()
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.core.metrics.snapshot()
    }

    /// REST-API-style credentials valid for `ttl`, signed with a secret made
    /// at start, for rkms's own WebRtcEndpoints (or anything it hands them to).
    pub fn mint_credentials(&self, user: &str, ttl: Duration) -> Credentials {
        let username = format!("{}:{user}", unix_now() + ttl.as_secs());
        let password = rest_password(hex(&self.internal_secret).as_bytes(), &username);
        Credentials { username, password }
    }

    /// `turn:` URLs for an ICE server entry, one per listener, using the
    /// address clients can reach (external IP, else relay IP, when listening
    /// on a wildcard address).
    pub fn urls(&self) -> Vec<String> {
        let host = |a: &SocketAddr| {
            let ip = match self.core.relay_ips.first() {
                Some(relay) if a.ip().is_unspecified() => {
                    self.core.announced(SocketAddr::new(*relay, 0)).ip()
                }
                _ => a.ip(),
            };
            match ip {
                IpAddr::V6(v6) => format!("[{v6}]:{}", a.port()),
                IpAddr::V4(v4) => format!("{v4}:{}", a.port()),
            }
        };
        let udp = self
            .udp
            .iter()
            .map(|a| format!("turn:{}?transport=udp", host(a)));
        let tcp = self
            .tcp
            .iter()
            .map(|a| format!("turn:{}?transport=tcp", host(a)));
        let tls = self
            .tls
            .iter()
            .map(|a| format!("turns:{}?transport=tcp", host(a)));
        udp.chain(tcp).chain(tls).collect()
    }

    /// Stops every listener and allocation and waits for their tasks.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
