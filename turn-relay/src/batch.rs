//! Batched UDP I/O with Linux's `recvmmsg`/`sendmmsg` (through `nix`): under
//! load one wake-up and one system call move many datagrams, so the relay
//! drains its sockets faster than the kernel's buffers fill and overflow.
//!
//! A [`RecvBatch`] owns `N` receive slots in one buffer, each with free room
//! in front of the datagram so a ChannelData or Data indication header can
//! be written in place, and sends the framed datagrams back out of the same
//! slots ([`RecvBatch::send_to`]): nothing is copied.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;

use memmap2::MmapMut;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

/// The largest UDP payload.
pub(crate) const MAX_DATAGRAM: usize = 65536;

/// `mmsghdr`s, whose raw pointers make them `!Send`.
struct Headers(MultiHeaders<SockaddrStorage>);

// SAFETY: the headers point into their own heap storage (address slots) and,
// only for the duration of one `recvmmsg`/`sendmmsg` call made through
// `&mut`, into the caller's buffers; every call rewrites the buffer pointers
// before the kernel reads them. Nothing is shared, so moving them to another
// thread between calls is sound.
unsafe impl Send for Headers {}

/// Receive slots for up to `N` datagrams.
pub(crate) struct RecvBatch<const N: usize> {
    /// `N` slots of `stride` bytes: `headroom`, the datagram, padding room.
    buf: MmapMut,
    stride: usize,
    headroom: usize,
    /// Separate headers for each direction: `sendmmsg` leaves its
    /// destinations' addresses in the headers it is given.
    recv_headers: Headers,
    send_headers: Headers,
    /// Length and source of each datagram of the last [`RecvBatch::recv`].
    received: [(usize, Option<SocketAddr>); N],
    count: usize,
}

impl<const N: usize> RecvBatch<N> {
    /// Slots with `headroom` free bytes in front of each datagram and 4 after
    /// it (TCP framing pads ChannelData to 4 bytes).
    pub fn new(headroom: usize) -> io::Result<Self> {
        // Page-aligned slots in an anonymous mapping: the kernel backs a page
        // only once a datagram reaches it, so a slot holding small datagrams
        // costs one resident page, not 64 KiB (a heap buffer would not stay
        // untouched: the allocator zeroes recycled memory).
        let stride = (headroom + MAX_DATAGRAM + 4).next_multiple_of(4096);
        Ok(RecvBatch {
            buf: MmapMut::map_anon(stride * N)?,
            stride,
            headroom,
            recv_headers: Headers(MultiHeaders::preallocate(N, None)),
            send_headers: Headers(MultiHeaders::preallocate(N, None)),
            received: [(0, None); N],
            count: 0,
        })
    }

    /// Receives the datagrams waiting on `socket`, at most `N`, without
    /// blocking; `WouldBlock` when there are none. Returns how many.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        let headroom = self.headroom;
        let mut slots = self.buf.chunks_exact_mut(self.stride);
        let mut iovs: [[IoSliceMut<'_>; 1]; N] = std::array::from_fn(|_| {
            let slot = slots.next().map_or(&mut [][..], |s| &mut s[headroom..]);
            let end = slot.len().min(MAX_DATAGRAM);
            [IoSliceMut::new(&mut slot[..end])]
        });
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.recv_headers.0,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        self.count = 0;
        for msg in results {
            self.received[self.count] = (msg.bytes, msg.address.and_then(socket_addr));
            self.count += 1;
        }
        Ok(self.count)
    }

    /// Datagram `i` of the last batch and its source (`None`: not an IP source).
    pub fn datagram(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let (len, from) = self.received[i];
        let start = i * self.stride + self.headroom;
        (&self.buf[start..start + len], from)
    }

    /// The whole slot of datagram `i` (the datagram starts at the headroom),
    /// its length and its source, for framing in place.
    pub fn slot_mut(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>) {
        let (len, from) = self.received[i];
        let start = i * self.stride;
        (&mut self.buf[start..start + self.stride], len, from)
    }

    /// Sends `frames` (ranges within the slots named by index) to `to` with
    /// as few system calls as the kernel allows, without blocking. Returns
    /// how many went out, from the first; `WouldBlock` when none could.
    pub fn send_to(
        &mut self,
        socket: &impl AsRawFd,
        frames: &[(usize, Range<usize>)],
        to: SocketAddr,
    ) -> io::Result<usize> {
        let n = frames.len().min(N);
        let iovs: [[IoSlice<'_>; 1]; N] = std::array::from_fn(|k| {
            let frame = frames.get(k).map_or(&[][..], |(slot, range)| {
                let start = slot * self.stride;
                &self.buf[start + range.start..start + range.end]
            });
            [IoSlice::new(frame)]
        });
        let to = SockaddrStorage::from(to);
        let addrs = [Some(to); N];
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut self.send_headers.0,
            &iovs[..n],
            &addrs[..n],
            &[] as &[ControlMessage<'_>],
            MsgFlags::MSG_DONTWAIT,
        )?;
        Ok(sent.count())
    }
}

fn socket_addr(s: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_a_burst_in_one_call_and_sends_it_back_from_the_slots() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (rx_addr, tx_addr) = (rx.local_addr().unwrap(), tx.local_addr().unwrap());
        let mut batch = RecvBatch::<4>::new(8).unwrap();
        assert_eq!(
            batch.recv(&rx).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..6u8 {
            tx.send_to(&vec![i; 100 + usize::from(i)], rx_addr).unwrap();
        }
        assert_eq!(batch.recv(&rx).unwrap(), 4, "at most N per call");
        for i in 0..4 {
            let (data, from) = batch.datagram(i);
            assert_eq!(
                (data.len(), data[0], from),
                (100 + i, i as u8, Some(tx_addr))
            );
        }
        // Frame datagrams 1 and 3 in place with a 2-byte header and send them back.
        let mut frames = Vec::new();
        for i in [1, 3] {
            let (slot, len, _) = batch.slot_mut(i);
            slot[6..8].copy_from_slice(b"hd");
            frames.push((i, 6..8 + len));
        }
        assert_eq!(batch.send_to(&rx, &frames, tx_addr).unwrap(), 2);
        let mut buf = [0u8; 2048];
        for i in [1u8, 3] {
            let (n, from) = tx.recv_from(&mut buf).unwrap();
            assert_eq!(
                (from, &buf[..2], n),
                (rx_addr, &b"hd"[..], 102 + usize::from(i))
            );
            assert!(buf[2..n].iter().all(|&b| b == i));
        }
        assert_eq!(batch.recv(&rx).unwrap(), 2, "the rest of the burst");
        assert_eq!(batch.datagram(1).0[0], 5);
    }
}
