//! UDP helpers for the socket loop: a `sendmmsg` batch for fan-out to many peers and the STUN
//! USERNAME lookup that demultiplexes a shared port.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Largest datagram a batch slot holds (Ethernet MTU payload plus slack for SRTP tags).
pub const SLOT_LEN: usize = 1536;

/// Outgoing datagrams collected during one pass of the loop and sent with one `sendmmsg`.
///
/// Slots are allocated once; [`SendBatch::slot`] hands out the next one for the caller to fill
/// in place, so forwarding a packet to many peers writes each copy exactly once.
pub struct SendBatch {
    bufs: Vec<[u8; SLOT_LEN]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    used: usize,
}

impl SendBatch {
    /// A batch of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        SendBatch {
            bufs: vec![[0u8; SLOT_LEN]; capacity],
            lens: vec![0; capacity],
            addrs: vec![zero_addr; capacity],
            addr_lens: vec![0; capacity],
            used: 0,
        }
    }

    /// Whether every slot is taken (the caller then flushes).
    pub fn is_full(&self) -> bool {
        self.used == self.bufs.len()
    }

    /// Number of datagrams waiting.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no datagram is waiting.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// The next free slot, addressed to `to`; the caller writes the datagram and calls
    /// [`SendBatch::commit`] with its length. Returns `None` when the batch is full.
    pub fn slot(&mut self, to: SocketAddr) -> Option<&mut [u8; SLOT_LEN]> {
        if self.is_full() {
            return None;
        }
        let (storage, len) = sockaddr_of(to);
        self.addrs[self.used] = storage;
        self.addr_lens[self.used] = len;
        Some(&mut self.bufs[self.used])
    }

    /// Adds one datagram to `to`, written in place by `fill` (which returns its length, or `None`
    /// to leave the slot free). A full batch is flushed on `socket` first. Returns whether a
    /// datagram was added.
    pub fn push(
        &mut self,
        socket: &impl AsRawFd,
        to: SocketAddr,
        fill: impl FnOnce(&mut [u8; SLOT_LEN]) -> Option<usize>,
    ) -> bool {
        if self.is_full() {
            self.flush(socket);
        }
        let Some(len) = self.slot(to).and_then(fill) else {
            return false;
        };
        self.commit(len);
        true
    }

    /// Marks the slot last handed out as filled with `len` bytes.
    pub fn commit(&mut self, len: usize) {
        self.lens[self.used] = len.min(SLOT_LEN);
        self.used += 1;
    }

    /// Sends every waiting datagram. Datagrams the kernel refuses (full buffer, unreachable
    /// peer) are dropped, as a router would; the batch is empty afterwards. Returns how many
    /// were sent.
    pub fn flush(&mut self, socket: &impl AsRawFd) -> usize {
        let mut sent = 0;
        while sent < self.used {
            let n = self.used - sent;
            let mut iovs: [libc::iovec; 64] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 64];
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut msgs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
            let n = n.min(64);
            for i in 0..n {
                let slot = sent + i;
                iovs[i] = libc::iovec {
                    iov_base: self.bufs[slot].as_mut_ptr().cast(),
                    iov_len: self.lens[slot],
                };
                msgs[i].msg_hdr.msg_name =
                    (&mut self.addrs[slot] as *mut libc::sockaddr_storage).cast();
                msgs[i].msg_hdr.msg_namelen = self.addr_lens[slot];
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: every pointer in msgs points into self or iovs, which outlive the call.
            let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
            if r <= 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Skip the datagram the kernel refused and carry on with the rest.
                tracing::trace!(%err, "sendmmsg dropped a datagram");
                sent += 1;
            } else {
                sent += r as usize;
            }
        }
        let done = self.used;
        self.used = 0;
        done
    }
}

/// Kernel buffer asked for each shared socket, receive and send: ~900 full-size datagrams (the
/// kernel's accounting counts about twice their size), about a second of what 500 subscribers
/// and their publisher send one loop, so a loop pass fanning a frame out to hundreds of sinks,
/// or a moment without CPU, does not overflow the socket every endpoint of the loop receives
/// on. The kernel's default (~200 KB) held a tenth of that. More would only turn an overloaded
/// loop's loss into seconds of delay.
pub const SOCKET_BUFFER: usize = 2 << 20;

/// Asks the kernel for [`SOCKET_BUFFER`] bytes of receive and send buffer on `socket` (beyond
/// `net.core.rmem_max`/`wmem_max` when the process may), and warns when it got less.
pub fn enlarge_buffers(socket: &impl AsRawFd) {
    for (option, force, sysctl) in [
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, "net.core.rmem_max"),
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, "net.core.wmem_max"),
    ] {
        // Linux reports twice the size asked for (its bookkeeping overhead); half is usable.
        let got = |fd| get_int_option(fd, option).map_or(0, |v| v / 2);
        let fd = socket.as_raw_fd();
        if set_int_option(fd, force, SOCKET_BUFFER).is_err() {
            let _ = set_int_option(fd, option, SOCKET_BUFFER);
        }
        let size = got(fd);
        if size < SOCKET_BUFFER {
            tracing::warn!(
                "UDP socket buffer capped at {size} bytes (asked {SOCKET_BUFFER}): raise {sysctl} \
                 to at least {SOCKET_BUFFER}, or bursts to many subscribers may drop packets"
            );
        }
    }
}

fn set_int_option(fd: libc::c_int, option: libc::c_int, value: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `value` (an int, as these options take) during the call only.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int_option(fd: libc::c_int, option: libc::c_int) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, an int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(usize::try_from(value).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_ATTR_USERNAME: u16 = 0x0006;

/// The local ufrag named by a STUN request's USERNAME (`local:remote`), if `datagram` is one.
/// This is how a shared port learns which peer a new remote address belongs to.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&[u8]> {
    if datagram.len() < 20 || datagram[0] & 0xC0 != 0 || datagram[4..8] != STUN_MAGIC_COOKIE {
        return None;
    }
    let body_len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let body = datagram.get(20..20 + body_len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == STUN_ATTR_USERNAME {
            let colon = value.iter().position(|&b| b == b':')?;
            return Some(&value[..colon]);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_local_ufrag_and_rejects_garbage() {
        let mut m = vec![0x00, 0x01, 0, 0];
        m.extend_from_slice(&STUN_MAGIC_COOKIE);
        m.extend_from_slice(&[0u8; 12]);
        let user = b"abcd:wxyz";
        m.extend_from_slice(&0x0024u16.to_be_bytes()); // PRIORITY first
        m.extend_from_slice(&4u16.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 1]);
        m.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&(user.len() as u16).to_be_bytes());
        m.extend_from_slice(user);
        m.extend_from_slice(&[0, 0, 0]);
        let body = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&body.to_be_bytes());
        assert_eq!(stun_local_ufrag(&m), Some(&b"abcd"[..]));
        assert_eq!(stun_local_ufrag(&m[..30]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        assert_eq!(stun_local_ufrag(&[]), None);
    }
}
