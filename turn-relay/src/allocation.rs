//! One TURN allocation: its relay socket, permissions and channels, and the
//! client-side session that owns it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::policy::Verdict;
use crate::tcp_relay::TcpRelay;

/// Where a datagram from a peer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// No permission for the peer's address: drop it.
    Denied,
    /// Wrap it as ChannelData on this channel.
    Channel(u16),
    /// Wrap it in a Data indication.
    Indication,
}

/// A channel-binding conflict (RFC 8656 §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelConflict;

#[derive(Debug, Clone, Copy)]
struct Channel {
    number: u16,
    peer: SocketAddr,
    expires: Instant,
}

/// What a permission covers: a peer's IP (RFC 8656 §9), or only one address
/// of it when the peer policy exempts just that socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    Ip(IpAddr),
    Addr(SocketAddr),
}

impl Permit {
    /// The permission the policy's verdict allows for `peer`; `None` when denied.
    pub fn for_peer(peer: SocketAddr, verdict: Verdict) -> Option<Self> {
        match verdict {
            Verdict::Denied => None,
            Verdict::AnyPort => Some(Permit::Ip(peer.ip())),
            Verdict::ThisPortOnly => Some(Permit::Addr(peer)),
        }
    }

    fn covers(&self, peer: SocketAddr) -> bool {
        match *self {
            Permit::Ip(ip) => ip == peer.ip(),
            Permit::Addr(addr) => addr == peer,
        }
    }
}

/// Permissions and channels: short lists, scanned linearly (a WebRTC
/// allocation has one or two peers), behind a lock taken once per packet
/// and only ever held for that scan.
#[derive(Debug, Default)]
struct PeerTables {
    permissions: Vec<(Permit, Instant)>,
    channels: Vec<Channel>,
}

impl PeerTables {
    fn permitted(&self, peer: SocketAddr, now: Instant) -> bool {
        self.permissions
            .iter()
            .any(|(p, exp)| p.covers(peer) && *exp > now)
    }
}

/// The relayed transport: a UDP socket, or a TCP listener (RFC 6062).
#[derive(Debug)]
pub(crate) enum RelaySocket {
    Udp(UdpSocket),
    Tcp(TcpRelay),
}

/// The part of an allocation shared by the client-side driver and the task
/// relaying peer traffic back.
#[derive(Debug)]
pub(crate) struct Allocation {
    pub socket: RelaySocket,
    /// The relayed transport address announced to the client (after
    /// external-address mapping).
    pub relayed: SocketAddr,
    tables: Mutex<PeerTables>,
}

impl Allocation {
    pub fn new(socket: RelaySocket, relayed: SocketAddr) -> Self {
        Allocation {
            socket,
            relayed,
            tables: Mutex::default(),
        }
    }

    pub fn udp(&self) -> Option<&UdpSocket> {
        match &self.socket {
            RelaySocket::Udp(s) => Some(s),
            RelaySocket::Tcp(_) => None,
        }
    }

    pub fn tcp(&self) -> Option<&TcpRelay> {
        match &self.socket {
            RelaySocket::Tcp(t) => Some(t),
            RelaySocket::Udp(_) => None,
        }
    }

    pub fn permit(&self, permit: Permit, until: Instant) {
        let mut t = self.tables.lock();
        let now = Instant::now();
        t.permissions.retain(|(_, exp)| *exp > now);
        match t.permissions.iter_mut().find(|(p, _)| *p == permit) {
            Some(entry) => entry.1 = until,
            None => t.permissions.push((permit, until)),
        }
    }

    pub fn is_permitted(&self, peer: SocketAddr, now: Instant) -> bool {
        self.tables.lock().permitted(peer, now)
    }

    /// Binds or refreshes `number` ↔ `peer`; refreshes `permit` (the peer's
    /// permission) too.
    pub fn bind_channel(
        &self,
        number: u16,
        peer: SocketAddr,
        permit: Permit,
        channel_until: Instant,
        permission_until: Instant,
    ) -> Result<(), ChannelConflict> {
        {
            let mut t = self.tables.lock();
            let now = Instant::now();
            t.channels.retain(|c| c.expires > now);
            if t.channels
                .iter()
                .any(|c| (c.number == number) != (c.peer == peer))
            {
                return Err(ChannelConflict);
            }
            match t.channels.iter_mut().find(|c| c.number == number) {
                Some(c) => c.expires = channel_until,
                None => t.channels.push(Channel {
                    number,
                    peer,
                    expires: channel_until,
                }),
            }
        }
        self.permit(permit, permission_until);
        Ok(())
    }

    /// The peer of a live channel that still has a permission.
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        let t = self.tables.lock();
        let c = t
            .channels
            .iter()
            .find(|c| c.number == number && c.expires > now)?;
        let peer = c.peer;
        t.permitted(peer, now).then_some(peer)
    }

    pub fn route_from_peer(&self, peer: SocketAddr, now: Instant) -> Route {
        let t = self.tables.lock();
        if !t.permitted(peer, now) {
            return Route::Denied;
        }
        match t
            .channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
        {
            Some(c) => Route::Channel(c.number),
            None => Route::Indication,
        }
    }
}

/// A token bucket holding at most one second of traffic.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: u64,
    tokens: u64,
    last: Instant,
}

impl Bucket {
    /// `None` when `rate` is 0 (no cap).
    pub fn new(rate: u64) -> Option<Self> {
        (rate > 0).then(|| Bucket {
            rate,
            tokens: rate,
            last: Instant::now(),
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        let refill = (elapsed.as_micros() as u64).saturating_mul(self.rate) / 1_000_000;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(self.rate);
            self.last = now;
        }
    }

    /// For streams, which must not lose bytes: takes `bytes` whatever is
    /// left and says how long to wait before sending them, so the stream
    /// slows to the rate.
    pub fn pace(&mut self, bytes: usize, now: Instant) -> Duration {
        self.refill(now);
        let need = bytes as u64;
        if self.tokens >= need {
            self.tokens -= need;
            return Duration::ZERO;
        }
        let wait =
            Duration::from_micros((need - self.tokens).saturating_mul(1_000_000) / self.rate);
        // Empty at the end of the wait; refilling starts from then.
        self.tokens = 0;
        self.last = now + wait;
        wait
    }

    pub fn take(&mut self, bytes: usize, now: Instant) -> bool {
        self.refill(now);
        let need = bytes as u64;
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }
}

/// The per-user and total allocation quotas.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    per_user_limit: u32,
    total_limit: u32,
    counts: Mutex<(u32, HashMap<String, u32>)>,
}

impl Quotas {
    pub fn new(per_user_limit: u32, total_limit: u32) -> Self {
        Quotas {
            per_user_limit,
            total_limit,
            counts: Mutex::default(),
        }
    }

    /// Counts one more allocation for `user`, unless a quota is reached.
    pub fn acquire(&self, user: &str) -> bool {
        let mut guard = self.counts.lock();
        let (total, users) = &mut *guard;
        let mine = users.get(user).copied().unwrap_or(0);
        if (self.total_limit > 0 && *total >= self.total_limit)
            || (self.per_user_limit > 0 && mine >= self.per_user_limit)
        {
            return false;
        }
        *total += 1;
        users.insert(user.to_owned(), mine + 1);
        true
    }

    pub fn release(&self, user: &str) {
        let mut guard = self.counts.lock();
        let (total, users) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
    }
}

/// An allocation as its client-side driver owns it. Dropping it closes the
/// relay socket, stops the peer-side task and gives the quota back.
pub(crate) struct Session {
    pub alloc: Arc<Allocation>,
    pub username: String,
    pub expires: Instant,
    /// The Allocate transaction that created it, to answer retransmissions.
    pub allocate_tid: [u8; 12],
    /// Cap on client → peer traffic.
    pub to_peer: Option<Bucket>,
    pub relay_task: Option<AbortHandle>,
    pub quotas: Arc<Quotas>,
    pub metrics: Arc<Metrics>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = &self.relay_task {
            task.abort();
        }
        self.quotas.release(&self.username);
        self.metrics.allocation_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_count_per_user_and_in_total() {
        let q = Quotas::new(2, 3);
        assert!(q.acquire("a"));
        assert!(q.acquire("a"));
        assert!(!q.acquire("a"));
        assert!(q.acquire("b"));
        assert!(!q.acquire("c"), "total reached");
        q.release("a");
        assert!(q.acquire("c"));
    }

    #[test]
    fn bucket_caps_a_second_of_traffic() {
        let start = Instant::now();
        let mut b = Bucket::new(1000).unwrap();
        assert!(b.take(600, start));
        assert!(!b.take(600, start));
        assert!(b.take(600, start + Duration::from_millis(300)));
        assert!(Bucket::new(0).is_none());
    }

    #[test]
    fn a_paced_stream_waits_for_what_it_overdraws() {
        let start = Instant::now();
        let mut b = Bucket::new(1000).unwrap();
        assert_eq!(b.pace(400, start), Duration::ZERO);
        assert_eq!(b.pace(1600, start), Duration::from_secs(1));
        let later = start + Duration::from_secs(1);
        assert_eq!(
            b.pace(500, later),
            Duration::from_millis(500),
            "empty at the end of the wait"
        );
    }

    #[tokio::test]
    async fn channels_need_a_live_permission_and_do_not_conflict() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = Allocation::new(RelaySocket::Udp(sock), "127.0.0.1:1".parse().unwrap());
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let p1: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let p2: SocketAddr = "192.0.2.1:2000".parse().unwrap();
        assert_eq!(a.route_from_peer(p1, now), Route::Denied);
        a.bind_channel(0x4000, p1, Permit::Ip(p1.ip()), later, later)
            .unwrap();
        assert_eq!(a.route_from_peer(p1, now), Route::Channel(0x4000));
        assert_eq!(
            a.route_from_peer(p2, now),
            Route::Indication,
            "same IP, other port"
        );
        assert_eq!(a.channel_peer(0x4000, now), Some(p1));
        assert_eq!(
            a.bind_channel(0x4001, p1, Permit::Ip(p1.ip()), later, later),
            Err(ChannelConflict)
        );
        assert_eq!(
            a.bind_channel(0x4000, p2, Permit::Ip(p2.ip()), later, later),
            Err(ChannelConflict)
        );
        assert_eq!(a.channel_peer(0x4000, later), None, "expired");
    }

    #[tokio::test]
    async fn an_address_permit_covers_only_its_port() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = Allocation::new(RelaySocket::Udp(sock), "127.0.0.1:1".parse().unwrap());
        let now = Instant::now();
        let own: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let other_port: SocketAddr = "10.0.0.2:22".parse().unwrap();
        a.permit(
            Permit::for_peer(own, Verdict::ThisPortOnly).unwrap(),
            now + Duration::from_secs(60),
        );
        assert!(a.is_permitted(own, now));
        assert!(!a.is_permitted(other_port, now));
        assert_eq!(a.route_from_peer(own, now), Route::Indication);
        assert_eq!(a.route_from_peer(other_port, now), Route::Denied);
        assert_eq!(Permit::for_peer(own, Verdict::Denied), None);
    }
}
