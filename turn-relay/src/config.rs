//! The relay's configuration: the `turn` section of rkms's configuration
//! file, and what `rkms turn` builds from coturn's flags.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of the STUN/TURN relay. Every field has a default, so an empty
/// `turn` section gives a working relay on UDP and TCP port 3478.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Whether rkms starts the relay when it serves media.
    pub enabled: bool,
    /// Addresses to listen on (coturn `--listening-ip`).
    pub listening_ips: Vec<IpAddr>,
    /// STUN/TURN port for UDP and TCP (coturn `--listening-port`); 0 picks a free one.
    pub listening_port: u16,
    /// TURN over TLS port (coturn `--tls-listening-port`), used when a certificate is set.
    pub tls_listening_port: u16,
    pub udp: bool,
    pub tcp: bool,
    /// PEM certificate chain and private key; TLS is on when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Local addresses relay sockets bind to (coturn `--relay-ip`). Empty:
    /// the listening address, or the host's outbound address when listening
    /// on a wildcard.
    pub relay_ips: Vec<IpAddr>,
    /// `public` or `public/private` (coturn `--external-ip`): relayed
    /// addresses on `private` (or on any relay address with the bare form)
    /// are announced as `public`.
    pub external_ips: Vec<String>,
    /// Relay port range (coturn `--min-port`/`--max-port`).
    pub min_port: u16,
    pub max_port: u16,
    pub realm: String,
    /// Static users, `name:password` or `name:0xKEY` (a `turnadmin -k` key).
    pub users: Vec<String>,
    /// TURN REST API shared secrets (coturn `--static-auth-secret`).
    pub static_auth_secrets: Vec<String>,
    /// Peer policy (coturn `--allow-loopback-peers`, `--allowed-peer-ip`,
    /// `--denied-peer-ip`); ranges are `ip`, `first-last` or CIDR.
    pub allow_loopback_peers: bool,
    pub allowed_peer_ips: Vec<String>,
    pub denied_peer_ips: Vec<String>,
    /// Concurrent allocations per user and in total; 0 means no limit.
    pub user_quota: u32,
    pub total_quota: u32,
    /// Bytes per second each allocation may relay in each direction; 0 means no cap.
    pub max_bps: u64,
    /// Seconds a nonce stays valid (coturn `--stale-nonce`).
    pub stale_nonce_secs: u64,
    /// Allocation lifetime granted when the client asks for none, and the most it may ask for.
    pub default_lifetime_secs: u32,
    pub max_allocate_lifetime_secs: u32,
    pub permission_lifetime_secs: u32,
    pub channel_lifetime_secs: u32,
    /// Whether TCP clients may ask for TCP relayed addresses (RFC 6062;
    /// coturn `--no-tcp-relay` turns it off).
    pub tcp_relay: bool,
    /// Seconds the relay waits for a TCP peer to accept its connection, and
    /// keeps a peer connection no client has bound (RFC 6062: 30).
    pub tcp_connection_timeout_secs: u32,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            enabled: true,
            listening_ips: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            listening_port: 3478,
            tls_listening_port: 5349,
            udp: true,
            tcp: true,
            tls_cert: None,
            tls_key: None,
            relay_ips: Vec::new(),
            external_ips: Vec::new(),
            min_port: 49152,
            max_port: 65535,
            realm: "rkms".into(),
            users: Vec::new(),
            static_auth_secrets: Vec::new(),
            allow_loopback_peers: false,
            allowed_peer_ips: Vec::new(),
            denied_peer_ips: Vec::new(),
            user_quota: 0,
            total_quota: 0,
            max_bps: 0,
            stale_nonce_secs: 600,
            default_lifetime_secs: 600,
            max_allocate_lifetime_secs: 3600,
            permission_lifetime_secs: 300,
            channel_lifetime_secs: 600,
            tcp_relay: true,
            tcp_connection_timeout_secs: 30,
        }
    }
}
