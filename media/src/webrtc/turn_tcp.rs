//! A loop socket's connection to a TURN server reached over TCP (`turnURL` with
//! `?transport=tcp`): STUN messages and ChannelData on one stream (RFC 5766 §11.5: a STUN
//! message carries its own length; ChannelData is padded to a multiple of 4 bytes). The
//! connection is non-blocking and owned by the socket loop: it is opened without waiting,
//! output is queued and written once per loop pass, and what arrives is cut into whole
//! messages for the TURN client. The relayed address stays UDP: only the leg between rkms and
//! the server is TCP.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::server_candidates::CHANNEL_HEADER;
use super::tcp::Outbox;
use super::udp::SLOT_LEN;

/// STUN header: type, length, magic cookie, transaction id.
const STUN_HEADER: usize = 20;

/// The connection to one TURN server.
pub(super) struct TurnStream {
    stream: TcpStream,
    /// Whether the non-blocking connect has completed.
    connected: bool,
    /// Bytes received and not yet a whole message.
    input: Vec<u8>,
    output: Outbox,
}

impl TurnStream {
    /// Starts connecting to `server` from `local` (any port), the address of the loop socket
    /// that would have sent over UDP; from the address the kernel's route picks when `local`
    /// is unspecified or of the other family. The loop's poll reports progress under `token`.
    pub(super) fn connect(
        server: SocketAddr,
        local: IpAddr,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::for_address(server),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        if !local.is_unspecified() && local.is_ipv4() == server.is_ipv4() {
            socket.bind(&SocketAddr::new(local, 0).into())?;
        }
        match socket.connect(&server.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        // Both interests for the whole life of the stream: mio is edge-triggered, so writability
        // is only reported when the kernel buffer frees up (and when the connect completes).
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        let _ = stream.set_nodelay(true);
        Ok(TurnStream {
            stream,
            connected: false,
            input: Vec::new(),
            output: Outbox::default(),
        })
    }

    /// Queues one STUN or ChannelData message as the TURN client wrote it, padded to 4 bytes.
    pub(super) fn send(&mut self, message: &[u8]) -> bool {
        self.output.push(
            0,
            padded(message.len()),
            |buf| {
                buf[..message.len()].copy_from_slice(message);
                Some(message.len())
            },
            pad,
        )
    }

    /// Queues a ChannelData message for channel `number` whose data `fill` writes in place.
    pub(super) fn push_channel_data(
        &mut self,
        number: u16,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        self.output
            .push(CHANNEL_HEADER, SLOT_LEN + 3, fill, |message, n| {
                let len = u16::try_from(n).ok()?;
                message[..2].copy_from_slice(&number.to_be_bytes());
                message[2..CHANNEL_HEADER].copy_from_slice(&len.to_be_bytes());
                pad(message, CHANNEL_HEADER + n)
            })
    }

    /// Handles a readiness event: completes the connect, writes, and appends the whole
    /// messages read to `messages`. `Err`: the connection failed or the server closed it.
    pub(super) fn ready(
        &mut self,
        readable: bool,
        writable: bool,
        messages: &mut Vec<BytesMut>,
    ) -> io::Result<()> {
        if !self.connected && (writable || readable) {
            if let Some(e) = self.stream.take_error()? {
                return Err(e);
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                // Not yet: a spurious wake-up.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.flush()?;
        if readable {
            self.read(messages)?;
        }
        Ok(())
    }

    /// Writes the queued output once connected.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if self.connected && self.output.backlog() > 0 {
            self.output.write_to(&mut self.stream)?;
        }
        Ok(())
    }

    /// Reads until the kernel has nothing more (edge-triggered). The stream comes from the
    /// configured TURN server, whose pace the relayed media sets.
    fn read(&mut self, messages: &mut Vec<BytesMut>) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    let taken = split_messages(&self.input, messages)?;
                    self.input.drain(..taken);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// `len` rounded up to a multiple of 4.
fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Zeroes the padding after the first `len` bytes of `message`; returns the padded length.
fn pad(message: &mut [u8], len: usize) -> Option<usize> {
    let total = padded(len);
    message.get_mut(len..total)?.fill(0);
    Some(total)
}

/// Appends every whole message at the start of `input` to `messages` (ChannelData without its
/// padding); returns how many bytes they took. What is neither STUN nor ChannelData breaks
/// the stream's framing: `Err`.
fn split_messages(input: &[u8], messages: &mut Vec<BytesMut>) -> io::Result<usize> {
    let mut at = 0;
    while let Some(head) = input.get(at..at + CHANNEL_HEADER) {
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let (message, framed) = match head[0] >> 6 {
            0b00 => (STUN_HEADER + len, STUN_HEADER + len),
            0b01 => (CHANNEL_HEADER + len, padded(CHANNEL_HEADER + len)),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "neither STUN nor ChannelData from the TURN server",
                ));
            }
        };
        if input.len() < at + framed {
            break;
        }
        messages.push(BytesMut::from(&input[at..at + message]));
        at += framed;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    #[test]
    fn messages_are_cut_whole_and_channel_data_unpadded() {
        // A STUN response with 4 bytes of attributes, ChannelData of 5 bytes (3 of padding),
        // then half of the next message.
        let mut stream = vec![0x01, 0x01, 0, 4];
        stream.extend([0x21, 0x12, 0xA4, 0x42]);
        stream.extend([7u8; 12]);
        stream.extend([1, 2, 3, 4]);
        stream.extend([0x40, 0x00, 0, 5, 9, 9, 9, 9, 9, 0, 0, 0]);
        stream.extend([0x40, 0x01, 0, 8, 1]);
        let mut messages = Vec::new();
        let taken = split_messages(&stream, &mut messages).unwrap();
        assert_eq!(taken, 24 + 12);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].len(), 24);
        assert_eq!(&messages[1][..], &[0x40, 0x00, 0, 5, 9, 9, 9, 9, 9]);
        assert!(split_messages(&[0x80, 0, 0, 0], &mut messages).is_err());
    }

    #[test]
    fn output_is_padded_and_reaches_the_server() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut turn = TurnStream::connect(
            server.local_addr().unwrap(),
            IpAddr::from([0, 0, 0, 0]),
            poll.registry(),
            Token(7),
        )
        .unwrap();
        // Queued before the connection is up: written once it is.
        assert!(turn.send(&[0x40, 0x00, 0, 1, 0xAA]));
        assert!(turn.push_channel_data(0x4001, |buf| {
            buf[..2].copy_from_slice(&[0xBB, 0xCC]);
            Some(2)
        }));
        let (mut accepted, _) = server.accept().unwrap();
        accepted.write_all(&[0x40, 0x01, 0, 2, 5, 6, 0, 0]).unwrap();
        let mut messages = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while messages.is_empty() && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for event in events.iter() {
                turn.ready(event.is_readable(), event.is_writable(), &mut messages)
                    .unwrap();
            }
        }
        assert_eq!(messages.len(), 1);
        assert_eq!(&messages[0][..], &[0x40, 0x01, 0, 2, 5, 6]);
        let mut got = [0u8; 16];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(
            got,
            [
                0x40, 0, 0, 1, 0xAA, 0, 0, 0, 0x40, 0x01, 0, 2, 0xBB, 0xCC, 0, 0
            ]
        );
        drop(accepted);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut closed = false;
        while !closed && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for event in events.iter() {
                closed |= turn
                    .ready(
                        event.is_readable() || event.is_read_closed(),
                        false,
                        &mut messages,
                    )
                    .is_err();
            }
        }
        assert!(closed, "a closed connection is reported");
    }
}
