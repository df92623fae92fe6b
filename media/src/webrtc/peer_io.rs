//! What any `rtc` peer driven on its own UDP socket needs, rkms's endpoints and the client peers
//! of the load tester, examples and tests alike: its host candidate, and a received datagram in
//! the form the stack reads.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::ice::tcp_type::TcpType;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::error::WebRtcError;

/// A UDP host candidate at `addr`, or with `tcp_type` Passive a TCP one (RFC 6544).
pub fn host_candidate(
    addr: SocketAddr,
    tcp_type: TcpType,
) -> Result<RTCIceCandidateInit, WebRtcError> {
    let network = if tcp_type == TcpType::Unspecified {
        "udp"
    } else {
        "tcp"
    };
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: network.to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        tcp_type,
    }
    .new_candidate_host()
    .map_err(|e| WebRtcError::Peer(e.to_string()))?;
    RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(|e| WebRtcError::Peer(e.to_string()))
}

/// `datagram`, received at `now` on the socket bound to `local` from `from`, as
/// `handle_read` takes it.
pub fn udp_datagram(
    now: Instant,
    local: SocketAddr,
    from: SocketAddr,
    datagram: &[u8],
) -> TaggedBytesMut {
    TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: BytesMut::from(datagram),
    }
}
