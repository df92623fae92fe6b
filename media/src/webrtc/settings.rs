//! Network settings of the WebRTC host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ice_servers::IceServers;

/// Where the host listens and what it advertises.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// Addresses to bind one UDP socket each on (all endpoints share them). An unspecified
    /// address (0.0.0.0) is advertised as the external address if one is set, else as the
    /// address of the default route.
    pub bind_addresses: Vec<IpAddr>,
    /// Lowest UDP port to use (0 with `port_max` 0: any free port).
    pub port_min: u16,
    /// Highest UDP port to use.
    pub port_max: u16,
    /// Public IPv4 address to advertise in candidates (server behind 1:1 NAT).
    pub external_ipv4: Option<Ipv4Addr>,
    /// Public IPv6 address to advertise in candidates.
    pub external_ipv6: Option<Ipv6Addr>,
    /// The STUN/TURN servers each socket gathers its srflx and relay candidates from.
    pub ice_servers: IceServers,
    /// Largest datagram sent.
    pub mtu: usize,
    /// Whether each loop also listens on TCP per bind address and offers a passive TCP host
    /// candidate there (ICE-TCP, RFC 6544), for clients whose UDP is blocked.
    pub ice_tcp: bool,
    /// Socket loop threads (each with its own ports); endpoints are placed by group.
    pub threads: usize,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            bind_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            port_min: 0,
            port_max: 0,
            external_ipv4: None,
            external_ipv6: None,
            ice_servers: IceServers::default(),
            mtu: 1200,
            ice_tcp: false,
            threads: 1,
        }
    }
}

/// Options of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    /// Negotiate an SCTP association for data channels.
    pub use_data_channels: bool,
    /// Endpoints of one group (a pipeline) share a loop thread, so they can be connected;
    /// `None` places the endpoint on the first thread.
    pub group: Option<u64>,
    /// Bandwidth limits (changeable later with [`super::Endpoint::set_bandwidth`]).
    pub bandwidth: BandwidthLimits,
}

/// Kurento's bandwidth properties of an endpoint, in kbps; 0 means no limit. How rkms applies
/// them is described in the `feedback` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandwidthLimits {
    /// Floor of the bound rkms sends the remote sender as REMB (never below 30 kbps).
    pub min_video_recv_kbps: u32,
    /// Ceiling of the same, also announced as `b=AS` in video m-sections.
    pub max_video_recv_kbps: u32,
    /// Announced as `b=AS` in audio m-sections.
    pub max_audio_recv_kbps: u32,
    /// Floor of this endpoint's receiver estimate when it bounds its publisher.
    pub min_video_send_kbps: u32,
    /// Ceiling of the same.
    pub max_video_send_kbps: u32,
}

impl Default for BandwidthLimits {
    /// Kurento's defaults but one: `maxVideoSendBandwidth` is unlimited rather than 500 kbps.
    /// rkms forwards and does not encode, so that value would be a ceiling asked of every
    /// publisher with a subscriber: the 500 kbps that keeps Kurento's calls below 720p.
    /// Congested subscribers still bound their publisher (see the `feedback` module).
    fn default() -> Self {
        BandwidthLimits {
            min_video_recv_kbps: 0,
            max_video_recv_kbps: 0,
            max_audio_recv_kbps: 0,
            min_video_send_kbps: 100,
            max_video_send_kbps: 0,
        }
    }
}
