//! The TCP and TLS driver: one task per connection owns that connection's
//! allocation (a TCP 5-tuple carries at most one) and serves both
//! directions, so nothing is shared with other tasks but counters. For a
//! TCP allocation (RFC 6062, [`crate::tcp_relay`]) the same task accepts
//! peers on the relayed address and opens connections to peers; a
//! connection that sends ConnectionBind becomes a data connection and its
//! task copies bytes with the peer from then on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::allocation::{Allocation, Bucket, Session};
use crate::core::{ConnectRequest, Control, Core, MAX_HEADER, Outcome};
use crate::stun::{self, Class, Message, channel_data, method};
use crate::tcp_relay::{self, PeerConnection};

const MAX_FRAME: usize = stun::HEADER_LEN + 65535 + 3;
/// A connection without an allocation that sends no complete frame for
/// this long is closed.
const IDLE_WITHOUT_ALLOCATION: Duration = Duration::from_secs(60);
/// A TLS client must finish its handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How accepted connections are wrapped (plain TCP, or a TLS handshake).
pub(crate) trait Acceptor: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

pub(crate) struct Plain;

impl Acceptor for Plain {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self, tcp: tokio::net::TcpStream) -> std::io::Result<Self::Stream> {
        Ok(tcp)
    }
}

pub(crate) async fn serve<A: Acceptor>(listener: TcpListener, acceptor: Arc<A>, core: Arc<Core>) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, client) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, core) = (acceptor.clone(), core.clone());
                connections.spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, client, core).await,
                        Ok(Err(e)) => tracing::debug!(%client, error = %e, "TURN TLS handshake failed"),
                        Err(_) => tracing::debug!(%client, "TURN TLS handshake timed out"),
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Out of file descriptors (say), a listener stays readable and every
/// accept fails at once: wait a little instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "TURN cannot accept a TCP connection");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Splits the stream into frames: STUN messages and (padded) ChannelData.
fn next_frame(buf: &[u8]) -> Result<Option<usize>, ()> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = if channel_data::is_channel_data(buf) {
        channel_data::framed_len(buf)
    } else if buf[0] & 0xC0 == 0 {
        stun::framed_len(buf)
    } else {
        None
    };
    match len {
        Some(len) if buf.len() >= len => Ok(Some(len)),
        Some(_) => Ok(None),
        None => Err(()),
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    client: SocketAddr,
    core: Arc<Core>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut inbuf = vec![0u8; MAX_FRAME + 4];
    let mut filled = 0;
    let mut out = Vec::with_capacity(1500);
    let mut relay_buf = vec![0u8; MAX_HEADER + 65536 + 4];
    let mut session: Option<Session> = None;
    let mut to_client: Option<Bucket> = None;
    let mut idle_deadline = Instant::now() + IDLE_WITHOUT_ALLOCATION;
    // Connect requests whose connection to the peer is being opened.
    let mut connects: JoinSet<(ConnectRequest, std::io::Result<tokio::net::TcpStream>)> =
        JoinSet::new();
    let mut bound: Option<PeerConnection> = None;
    loop {
        let deadline = session.as_ref().map_or(idle_deadline, |s| s.expires);
        let alloc = session.as_ref().map(|s| s.alloc.clone());
        tokio::select! {
            read = rd.read(&mut inbuf[filled..]) => {
                let Ok(n @ 1..) = read else { return };
                filled += n;
                let mut start = 0;
                loop {
                    let frame_len = match next_frame(&inbuf[start..filled]) {
                        Ok(Some(len)) => len,
                        Ok(None) => break,
                        Err(()) => {
                            core.metrics.malformed_packet();
                            return;
                        }
                    };
                    let frame = &inbuf[start..start + frame_len];
                    start += frame_len;
                    idle_deadline = Instant::now() + IDLE_WITHOUT_ALLOCATION;
                    if channel_data::is_channel_data(frame) {
                        match session.as_mut() {
                            Some(s) => core.relay_channel_data(frame, s),
                            None => core.metrics.drop_packet(),
                        }
                        continue;
                    }
                    let Ok(msg) = Message::parse(frame) else {
                        core.metrics.malformed_packet();
                        continue;
                    };
                    if msg.class == Class::Indication && msg.method == method::SEND {
                        match session.as_mut() {
                            Some(s) => core.relay_send_indication(&msg, s),
                            None => core.metrics.drop_packet(),
                        }
                        continue;
                    }
                    match core.handle_stun(&msg, (client, Control::Stream), &mut session, &mut out) {
                        Outcome::Connect(req) => {
                            let timeout = core.limits.tcp_timeout;
                            connects.spawn(async move {
                                let stream = tcp_relay::connect(req.local, req.peer, timeout).await;
                                (req, stream)
                            });
                        }
                        Outcome::Bound(conn) => bound = Some(conn),
                        Outcome::Reply | Outcome::Allocated => {}
                    }
                    if session.is_some() && to_client.is_none() {
                        to_client = Bucket::new(core.limits.max_bps);
                    }
                    if !out.is_empty() && wr.write_all(&out).await.is_err() {
                        return;
                    }
                    if bound.is_some() {
                        break;
                    }
                }
                if let Some(conn) = bound.take() {
                    // From here on this is a data connection: raw bytes both
                    // ways, starting with any the client sent after its bind.
                    // The framing buffers go; the copy has its own.
                    let early = inbuf[start..filled].to_vec();
                    drop((inbuf, relay_buf, out));
                    return tcp_relay::relay_data(rd, wr, &early, conn, &core.metrics).await;
                }
                inbuf.copy_within(start..filled, 0);
                filled -= start;
            }
            accepted = accept_or_pending(alloc.as_deref()) => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                };
                let Some(s) = session.as_ref() else { continue };
                core.peer_arrived(s, stream, peer, &mut out);
                if !out.is_empty() && wr.write_all(&out).await.is_err() {
                    return;
                }
            }
            Some(Ok((req, stream))) = connects.join_next(), if !connects.is_empty() => {
                core.connected(req, stream, &mut out);
                if wr.write_all(&out).await.is_err() {
                    return;
                }
            }
            received = recv_or_pending(alloc.as_deref(), &mut relay_buf) => {
                let (Ok((n, peer)), Some(alloc)) = (received, alloc.as_deref()) else { continue };
                if let Some(frame) = core.frame_for_client(alloc, peer, &mut relay_buf, n, true, &mut to_client) {
                    if wr.write_all(&relay_buf[frame]).await.is_err() {
                        return;
                    }
                    core.metrics.relayed_to_client(n);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if session.take().is_none() {
                    return;
                }
                idle_deadline = Instant::now() + IDLE_WITHOUT_ALLOCATION;
            }
        }
    }
}

async fn recv_or_pending(
    alloc: Option<&Allocation>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match alloc.and_then(Allocation::udp) {
        Some(socket) => {
            socket
                .recv_from(&mut buf[MAX_HEADER..MAX_HEADER + 65536])
                .await
        }
        None => std::future::pending().await,
    }
}

/// A peer's connection to a TCP allocation's relayed address.
async fn accept_or_pending(
    alloc: Option<&Allocation>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match alloc.and_then(Allocation::tcp) {
        Some(tcp) => tcp.listener.accept().await,
        None => std::future::pending().await,
    }
}
