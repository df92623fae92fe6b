//! Counters of the relay. Relaxed atomics: each is a plain tally, and the
//! two directions live on separate cache lines because different tasks
//! bump them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Direction {
    packets: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    to_peer: Direction,
    to_client: Direction,
    allocations_active: AtomicU64,
    allocations_total: AtomicU64,
    auth_failures: AtomicU64,
    quota_rejections: AtomicU64,
    peers_denied: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
}

/// A point-in-time copy of the relay's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Allocations alive now, and created since start.
    pub allocations_active: u64,
    pub allocations_total: u64,
    /// Payload packets and bytes relayed client → peer and peer → client.
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
    /// Requests refused for bad credentials, bad integrity or expired REST credentials.
    pub auth_failures: u64,
    /// Allocations refused by the per-user or total quota.
    pub quota_rejections: u64,
    /// Permissions refused by the peer policy.
    pub peers_denied: u64,
    /// Packets dropped: no permission, over the bandwidth cap, send failure.
    pub dropped: u64,
    /// Datagrams that were neither STUN nor valid ChannelData.
    pub malformed: u64,
}

impl MetricsSnapshot {
    pub fn packets_relayed(&self) -> u64 {
        self.packets_to_peer + self.packets_to_client
    }
}

impl Metrics {
    pub(crate) fn relayed_to_peer(&self, bytes: usize) {
        self.to_peer.packets.fetch_add(1, Relaxed);
        self.to_peer.bytes.fetch_add(bytes as u64, Relaxed);
    }
    pub(crate) fn relayed_to_client(&self, bytes: usize) {
        self.to_client.packets.fetch_add(1, Relaxed);
        self.to_client.bytes.fetch_add(bytes as u64, Relaxed);
    }
    pub(crate) fn allocation_opened(&self) {
        self.allocations_active.fetch_add(1, Relaxed);
        self.allocations_total.fetch_add(1, Relaxed);
    }
    pub(crate) fn allocation_closed(&self) {
        self.allocations_active.fetch_sub(1, Relaxed);
    }
    pub(crate) fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }
    pub(crate) fn quota_rejection(&self) {
        self.quota_rejections.fetch_add(1, Relaxed);
    }
    pub(crate) fn peer_denied(&self) {
        self.peers_denied.fetch_add(1, Relaxed);
    }
    pub(crate) fn drop_packet(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }
    pub(crate) fn malformed_packet(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            allocations_active: self.allocations_active.load(Relaxed),
            allocations_total: self.allocations_total.load(Relaxed),
            packets_to_peer: self.to_peer.packets.load(Relaxed),
            bytes_to_peer: self.to_peer.bytes.load(Relaxed),
            packets_to_client: self.to_client.packets.load(Relaxed),
            bytes_to_client: self.to_client.bytes.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            quota_rejections: self.quota_rejections.load(Relaxed),
            peers_denied: self.peers_denied.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
        }
    }
}
