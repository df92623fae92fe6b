//! ICE-TCP (RFC 6544): the loop's passive TCP host candidates and the connections remote
//! peers open to them, each carrying RFC 4571 frames (a 2-byte length, then one STUN, DTLS,
//! RTP or RTCP packet) for one endpoint.
//!
//! A new connection belongs to nobody until its first frame, which must be a STUN request whose
//! USERNAME names an endpoint's ufrag (the loop checks it, as for a new UDP address); anything
//! else closes it. From then on its frames go to that endpoint as received on the listener's
//! candidate address over TCP, which is how the ICE agent pairs them with the passive
//! candidate. What the stack or the fast path sends on such a pair is framed into the
//! connection's output buffer and written once per loop pass. A connection is closed when the
//! remote closes it or it fails, when it stays anonymous too long, when its output backs up
//! too far (a dead peer), and when its endpoint is released. Its endpoint then sees the pair go
//! silent, as with a vanished UDP remote.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::udp::SLOT_LEN;
use crate::graph::ElementId;

/// Tokens from here on are TCP listeners, then connections (below: the UDP sockets).
pub(super) const FIRST_TCP_TOKEN: usize = 1 << 16;
/// Open connections per loop beyond which new ones are refused.
const MAX_CONNECTIONS: usize = 4096;
/// How long a connection may stay without a valid first STUN request.
const ANONYMOUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Unwritten output beyond which a connection's peer is taken for dead.
const MAX_BACKLOG: usize = 1 << 20;
/// Bytes read from one connection per pass, so one fast sender cannot hold the loop.
const READ_BUDGET: usize = 256 * 1024;
/// RFC 4571 length prefix.
const LEN_PREFIX: usize = 2;
/// STUN header; a connection's first frame is a STUN request at least this long.
const STUN_HEADER: usize = 20;
/// Longest first frame accepted: an ICE binding request is a few hundred bytes.
const MAX_FIRST_FRAME: usize = 1500;

/// Where a connection's frames come from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Link {
    /// The passive candidate's address (the listener as announced).
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) owner: Option<ElementId>,
}

struct Connection {
    stream: TcpStream,
    link: Link,
    opened: Instant,
    /// Bytes received and not yet framed.
    input: Vec<u8>,
    /// Framed output.
    output: Outbox,
    /// Registered for writability (the kernel buffer was full).
    waits_writable: bool,
    /// Whether a whole frame has arrived yet.
    framed: bool,
}

impl Connection {
    /// Whether what came before the first whole frame can still be a STUN request: anything
    /// else (an HTTP request, a TLS hello, a tiny or huge length) is closed at once rather than
    /// left to time out.
    fn may_start_with_stun(&self) -> bool {
        if self.framed {
            return true;
        }
        let Some(header) = self.input.get(..LEN_PREFIX) else {
            return true;
        };
        let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
        let first = self.input.get(LEN_PREFIX).copied().unwrap_or(0);
        (STUN_HEADER..=MAX_FIRST_FRAME).contains(&len) && first & 0xC0 == 0
    }

    fn backlog(&self) -> usize {
        self.output.backlog()
    }

    /// Takes every complete frame out of `input`. Frames are at most 64 KiB by their 16-bit
    /// length, so `input` stays bounded; empty frames are skipped.
    fn frames(&mut self, frames: &mut Vec<BytesMut>) {
        let mut at = 0;
        while let Some(header) = self.input.get(at..at + LEN_PREFIX) {
            let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
            let Some(frame) = self.input.get(at + LEN_PREFIX..at + LEN_PREFIX + len) else {
                break;
            };
            if len > 0 {
                frames.push(BytesMut::from(frame));
                self.framed = true;
            }
            at += LEN_PREFIX + len;
        }
        self.input.drain(..at);
    }

    /// Reads what the kernel has (up to the budget). `Ok(true)`: more may be waiting.
    fn read(&mut self, frames: &mut Vec<BytesMut>) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let mut total = 0;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.frames(frames);
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    self.frames(frames);
                    total += n;
                    if total >= READ_BUDGET {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what the kernel takes.
    fn write(&mut self) -> io::Result<()> {
        self.output.write_to(&mut self.stream)
    }

    /// Appends one frame of up to `room` bytes written by `fill`, unless the backlog is full
    /// (the frame is dropped whole: a partial one would break the framing).
    fn push(&mut self, room: usize, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        self.output.push(LEN_PREFIX, room, fill, |frame, n| {
            let len = u16::try_from(n).ok()?;
            frame[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
            Some(LEN_PREFIX + n)
        })
    }
}

/// Bytes queued for a non-blocking stream, written as the kernel takes them; messages are
/// only ever appended or dropped whole, so a stream's framing never breaks.
#[derive(Default)]
pub(super) struct Outbox {
    bytes: Vec<u8>,
    /// How many of `bytes` are written already.
    written: usize,
}

impl Outbox {
    /// Bytes not written yet.
    pub(super) fn backlog(&self) -> usize {
        self.bytes.len() - self.written
    }

    /// Writes what the kernel takes.
    pub(super) fn write_to(&mut self, stream: &mut impl Write) -> io::Result<()> {
        while self.written < self.bytes.len() {
            match stream.write(&self.bytes[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.bytes.len() {
            self.bytes.clear();
            self.written = 0;
        } else if self.written > self.bytes.len() / 2 {
            self.bytes.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }

    /// Appends one message: `header` bytes, then up to `room` bytes written by `fill` (which
    /// returns how many); `frame` gets the message (header and those bytes, zeroed room
    /// after them), writes the header and returns the message's whole length. Nothing is
    /// appended when the backlog is over [`MAX_BACKLOG`] or `fill` or `frame` refuse.
    pub(super) fn push(
        &mut self,
        header: usize,
        room: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
        frame: impl FnOnce(&mut [u8], usize) -> Option<usize>,
    ) -> bool {
        if self.backlog() > MAX_BACKLOG {
            return false;
        }
        let start = self.bytes.len();
        self.bytes.resize(start + header + room, 0);
        let message = &mut self.bytes[start..];
        match fill(&mut message[header..]).and_then(|n| frame(message, n)) {
            Some(len) => {
                self.bytes.truncate(start + len);
                true
            }
            None => {
                self.bytes.truncate(start);
                false
            }
        }
    }
}

/// The loop's TCP listeners and connections.
pub(super) struct TcpSockets {
    registry: Option<Registry>,
    /// Each listener with the address its candidate announces.
    listeners: Vec<(TcpListener, SocketAddr)>,
    connections: HashMap<Token, Connection>,
    by_link: HashMap<(SocketAddr, SocketAddr), Token>,
    next_token: usize,
    /// Connections with output to write at the end of the pass.
    to_write: Vec<Token>,
    /// Connections whose read budget ran out, read again next pass.
    to_read: Vec<Token>,
    /// Owned connections closed since the loop last asked ([`Self::take_closed`]).
    closed: Vec<Link>,
}

impl TcpSockets {
    /// No listener (ICE-TCP off).
    pub(super) fn none() -> Self {
        Self::new(Vec::new(), None)
    }

    /// `listeners` are registered already (tokens from [`FIRST_TCP_TOKEN`], in order); the
    /// registry registers accepted connections.
    pub(super) fn new(
        listeners: Vec<(TcpListener, SocketAddr)>,
        registry: Option<Registry>,
    ) -> Self {
        let next_token = FIRST_TCP_TOKEN + listeners.len();
        TcpSockets {
            registry,
            listeners,
            connections: HashMap::new(),
            by_link: HashMap::new(),
            next_token,
            to_write: Vec::new(),
            to_read: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Whether `local` is one of the passive candidates.
    pub(super) fn is_listener(&self, local: SocketAddr) -> bool {
        self.listeners.iter().any(|(_, addr)| *addr == local)
    }

    /// Handles a readiness event of `token` (a listener or a connection); frames received
    /// are appended to `frames`, with the connection they came on.
    pub(super) fn ready(
        &mut self,
        token: Token,
        readable: bool,
        writable: bool,
        now: Instant,
        frames: &mut Vec<(Token, BytesMut)>,
    ) {
        if let Some(index) = token.0.checked_sub(FIRST_TCP_TOKEN)
            && index < self.listeners.len()
        {
            self.accept(index, now);
            return;
        }
        if writable {
            self.write(token);
        }
        if readable {
            self.read(token, frames);
        }
    }

    /// Reads the connections whose budget ran out last pass.
    pub(super) fn read_again(&mut self, frames: &mut Vec<(Token, BytesMut)>) {
        for token in std::mem::take(&mut self.to_read) {
            self.read(token, frames);
        }
    }

    fn accept(&mut self, index: usize, now: Instant) {
        loop {
            let (stream, remote) = match self.listeners[index].0.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: the listener stays; try at the next event.
                    tracing::warn!("ICE-TCP accept: {e}");
                    return;
                }
            };
            if self.connections.len() >= MAX_CONNECTIONS {
                tracing::warn!("ICE-TCP: {MAX_CONNECTIONS} connections open; refusing {remote}");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let mut stream = stream;
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Some(registry) = &self.registry
                && let Err(e) = registry.register(&mut stream, token, Interest::READABLE)
            {
                tracing::warn!("ICE-TCP: cannot watch {remote}: {e}");
                continue;
            }
            let local = self.listeners[index].1;
            self.by_link.insert((local, remote), token);
            self.connections.insert(
                token,
                Connection {
                    stream,
                    link: Link {
                        local,
                        remote,
                        owner: None,
                    },
                    opened: now,
                    input: Vec::new(),
                    output: Outbox::default(),
                    waits_writable: false,
                    framed: false,
                },
            );
        }
    }

    fn read(&mut self, token: Token, frames: &mut Vec<(Token, BytesMut)>) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        let mut received = Vec::new();
        let mut result = connection.read(&mut received);
        if !connection.may_start_with_stun() {
            result = Err(io::Error::new(io::ErrorKind::InvalidData, "not ICE"));
        }
        frames.extend(received.into_iter().map(|frame| (token, frame)));
        match result {
            Ok(true) => self.to_read.push(token),
            Ok(false) => {}
            Err(e) => {
                tracing::debug!("ICE-TCP {}: closed ({e})", connection.link.remote);
                self.close(token);
            }
        }
    }

    /// The connection a frame came on (`None` once it is closed).
    pub(super) fn link(&self, token: Token) -> Option<Link> {
        self.connections.get(&token).map(|c| c.link)
    }

    /// Gives the connection to `owner` (its first STUN request named it).
    pub(super) fn set_owner(&mut self, token: Token, owner: ElementId) {
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.link.owner = Some(owner);
        }
    }

    pub(super) fn close(&mut self, token: Token) {
        if let Some(mut connection) = self.connections.remove(&token) {
            self.by_link
                .remove(&(connection.link.local, connection.link.remote));
            if connection.link.owner.is_some() {
                self.closed.push(connection.link);
            }
            if let Some(registry) = &self.registry {
                let _ = registry.deregister(&mut connection.stream);
            }
        }
    }

    /// The connections of endpoints closed since the last call (by the remote, a failure, a
    /// backlog): an endpoint whose selected pair one carried has lost its path.
    pub(super) fn take_closed(&mut self) -> Vec<Link> {
        std::mem::take(&mut self.closed)
    }

    /// Closes the connections of a released endpoint.
    pub(super) fn release(&mut self, owner: ElementId) {
        let owned: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| c.link.owner == Some(owner))
            .map(|(token, _)| *token)
            .collect();
        for token in owned {
            self.close(token);
        }
    }

    /// Closes connections that never named an endpoint.
    pub(super) fn expire(&mut self, now: Instant) {
        let stale: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| {
                c.link.owner.is_none()
                    && now.saturating_duration_since(c.opened) > ANONYMOUS_TIMEOUT
            })
            .map(|(token, _)| *token)
            .collect();
        for token in stale {
            self.close(token);
        }
    }

    /// Queues one frame of up to [`SLOT_LEN`] bytes written by `fill` on the connection from
    /// `local` to `to`. `false`: there is no such connection.
    pub(super) fn push(
        &mut self,
        local: SocketAddr,
        to: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        self.push_with_room(local, to, SLOT_LEN, fill)
    }

    /// Queues `datagram` as one frame on the connection from `local` to `to`.
    pub(super) fn send(&mut self, local: SocketAddr, to: SocketAddr, datagram: &[u8]) -> bool {
        self.push_with_room(local, to, datagram.len(), |buf| {
            buf.copy_from_slice(datagram);
            Some(datagram.len())
        })
    }

    fn push_with_room(
        &mut self,
        local: SocketAddr,
        to: SocketAddr,
        room: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let Some(&token) = self.by_link.get(&(local, to)) else {
            return false;
        };
        if let Some(connection) = self.connections.get_mut(&token) {
            let was_empty = connection.backlog() == 0;
            if connection.push(room, fill) && was_empty {
                self.to_write.push(token);
            }
        }
        true
    }

    /// Writes the output queued this pass.
    pub(super) fn flush(&mut self) {
        for token in std::mem::take(&mut self.to_write) {
            self.write(token);
        }
    }

    fn write(&mut self, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        if let Err(e) = connection.write() {
            tracing::debug!("ICE-TCP {}: write failed ({e})", connection.link.remote);
            self.close(token);
            return;
        }
        let waiting = connection.backlog() > 0;
        if waiting && connection.backlog() > MAX_BACKLOG {
            tracing::debug!("ICE-TCP {}: peer stopped reading", connection.link.remote);
            self.close(token);
            return;
        }
        if waiting != connection.waits_writable
            && let Some(registry) = &self.registry
        {
            let interest = if waiting {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut connection.stream, token, interest)
                .is_ok()
            {
                connection.waits_writable = waiting;
            }
        }
    }

    /// Open connections (tests and logs).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.connections.len()
    }
}

/// Binds a listener on `ip` in the port range, avoiding `avoid` (the UDP socket's port, so every
/// local candidate of a loop has an address of its own).
pub(super) fn bind_listener(
    ip: IpAddr,
    min: u16,
    max: u16,
    avoid: u16,
) -> io::Result<StdTcpListener> {
    let any_range = min == 0 && max == 0;
    let ports: Box<dyn Iterator<Item = u16>> = if any_range {
        Box::new(std::iter::repeat_n(0, 8))
    } else {
        Box::new(min..=max)
    };
    for port in ports.filter(|p| *p != avoid || *p == 0) {
        if let Ok(listener) = StdTcpListener::bind(SocketAddr::new(ip, port))
            && listener.local_addr()?.port() != avoid
        {
            return Ok(listener);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free TCP port in {min}-{max} on {ip} besides {avoid}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::net::TcpStream as StdTcpStream;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    /// A loop of one listener, polled by hand.
    struct Harness {
        poll: Poll,
        events: Events,
        tcp: TcpSockets,
        addr: SocketAddr,
    }

    impl Harness {
        fn new() -> Self {
            let poll = Poll::new().unwrap();
            let std = bind_listener("127.0.0.1".parse().unwrap(), 0, 0, 0).unwrap();
            std.set_nonblocking(true).unwrap();
            let addr = std.local_addr().unwrap();
            let mut listener = TcpListener::from_std(std);
            poll.registry()
                .register(&mut listener, Token(FIRST_TCP_TOKEN), Interest::READABLE)
                .unwrap();
            let registry = poll.registry().try_clone().unwrap();
            Harness {
                poll,
                events: Events::with_capacity(16),
                tcp: TcpSockets::new(vec![(listener, addr)], Some(registry)),
                addr,
            }
        }

        /// Polls until `done` holds on the frames received so far (or 5 s pass).
        fn pump(
            &mut self,
            done: impl Fn(&TcpSockets, &[(Token, BytesMut)]) -> bool,
        ) -> Vec<(Token, BytesMut)> {
            let mut frames = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !done(&self.tcp, &frames) && Instant::now() < deadline {
                self.poll
                    .poll(&mut self.events, Some(Duration::from_millis(20)))
                    .unwrap();
                let ready: Vec<_> = self
                    .events
                    .iter()
                    .map(|e| {
                        (
                            e.token(),
                            e.is_readable() || e.is_read_closed(),
                            e.is_writable(),
                        )
                    })
                    .collect();
                for (token, readable, writable) in ready {
                    self.tcp
                        .ready(token, readable, writable, Instant::now(), &mut frames);
                }
                self.tcp.read_again(&mut frames);
                self.tcp.flush();
            }
            frames
        }
    }

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let mut h = Harness::new();
        let mut client = StdTcpStream::connect(h.addr).unwrap();
        let mut bytes = frame(&[1u8; 20]);
        bytes.extend(frame(b""));
        bytes.extend(frame(&[7u8; 3000]));
        // One byte, then the rest: the length prefix itself arrives in two reads.
        client.write_all(&bytes[..1]).unwrap();
        h.pump(|tcp, _| tcp.len() == 1);
        client.write_all(&bytes[1..]).unwrap();
        let frames = h.pump(|_, f| f.len() == 2);
        assert_eq!(&frames[0].1[..], &[1u8; 20][..]);
        assert_eq!(&frames[1].1[..], &[7u8; 3000][..]);
    }

    #[test]
    fn output_is_framed_and_a_closed_connection_goes_away() {
        let mut h = Harness::new();
        let mut client = StdTcpStream::connect(h.addr).unwrap();
        client.write_all(&frame(&[0u8; 20])).unwrap();
        let frames = h.pump(|_, f| !f.is_empty());
        let link = h.tcp.link(frames[0].0).unwrap();
        assert_eq!(link.local, h.addr);
        assert_eq!(link.remote, client.local_addr().unwrap());
        assert!(h.tcp.push(h.addr, link.remote, |buf| {
            buf[..3].copy_from_slice(b"abc");
            Some(3)
        }));
        assert!(
            !h.tcp
                .push(h.addr, "127.0.0.1:9".parse().unwrap(), |_| Some(1))
        );
        h.tcp.flush();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, &[0, 3, b'a', b'b', b'c']);
        drop(client);
        h.pump(|tcp, _| tcp.len() == 0);
        assert_eq!(h.tcp.len(), 0);
        assert!(!h.tcp.push(h.addr, link.remote, |_| Some(1)));
    }

    #[test]
    fn garbage_and_silence_are_survived() {
        let mut h = Harness::new();
        // What cannot start with a STUN request is closed at once: an HTTP request (its first
        // "frame" would be 0x4745 bytes), a frame too short for STUN, a first byte that is not.
        for garbage in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0, 5, 0, 1, 2],
            &[0, 40, 0x80],
        ] {
            let mut client = StdTcpStream::connect(h.addr).unwrap();
            client.write_all(garbage).unwrap();
            h.pump(|tcp, _| tcp.len() == 1);
            let frames = h.pump(|tcp, _| tcp.len() == 0);
            assert!(frames.is_empty());
            let mut rest = Vec::new();
            assert_eq!(
                client.read_to_end(&mut rest).unwrap_or(0),
                0,
                "closed by the loop"
            );
        }
        // A frame announcing more than is ever sent, then a hang-up mid-frame.
        let mut liar = StdTcpStream::connect(h.addr).unwrap();
        liar.write_all(&[0x00, 0x30, 0, 1, 2, 3]).unwrap();
        h.pump(|tcp, _| tcp.len() == 1);
        drop(liar);
        let frames = h.pump(|tcp, _| tcp.len() == 0);
        assert!(frames.is_empty());
        // A plausible first frame, then random bytes by the megabyte: framed as whatever they
        // say, never a panic (the loop hands the frames to the endpoint's stack, which drops
        // what it cannot parse).
        let mut noisy = StdTcpStream::connect(h.addr).unwrap();
        let mut noise = frame(&[0u8; 20]);
        noise.extend((0..1_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        let _ = noisy.write_all(&noise);
        drop(noisy);
        h.pump(|tcp, _| tcp.len() == 1);
        h.pump(|tcp, _| tcp.len() == 0);
        // A silent connection is dropped once it has been anonymous too long.
        let _silent = StdTcpStream::connect(h.addr).unwrap();
        h.pump(|tcp, _| tcp.len() == 1);
        h.tcp
            .expire(Instant::now() + ANONYMOUS_TIMEOUT + Duration::from_secs(1));
        assert_eq!(h.tcp.len(), 0);
    }
}
