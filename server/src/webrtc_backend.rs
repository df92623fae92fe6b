//! The WebRTC layer of `rkms-media` (one socket-loop host serving every
//! endpoint) plugged into the signaling layer's media backend port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use parking_lot::Mutex;
use rkms_media::webrtc::{
    BandwidthLimits, ConnectionState, DataChannelOptions, DtlsState as HostDtls, Endpoint,
    EndpointEvent as HostEvent, EndpointOptions, EndpointStats, FlowState,
    IceComponentState as HostIce, IceServers, NetworkSettings, TurnServer, TurnTransport,
    TurnUrlError, WebRtcError, WebRtcHost,
};
use rkms_media::{ElementId, MediaKind, Pipeline};
use rkms_recorder::path_policy::RecordingRoots;
use rkms_signaling::backend::{
    BackendError, BoxFuture, DtlsState, EndpointEvent, EventSink, IceComponentState,
    IceServerProperties, MediaBackend, NegotiationError, PlayerEndpoint, PlayerOptions,
    RecorderEndpoint, RecorderOptions, RtpOptions, UriElementError, UriEventSink, WebRtcEndpoint,
    WebRtcOptions,
};
use tokio::sync::mpsc;

use crate::endpoint_settings::EndpointSettings;
use crate::{rtp_endpoint, uri_elements};

/// Kurento reports one bundled stream and component.
const STREAM: u32 = 1;
const COMPONENT: u32 = 1;

pub struct WebRtcBackend {
    host: WebRtcHost,
    /// The configured STUN/TURN servers (the embedded relay may be added).
    ice_servers: IceServers,
    /// New endpoints' bandwidth properties.
    bandwidth: BandwidthLimits,
    recording_roots: RecordingRoots,
}

impl WebRtcBackend {
    /// Starts the host on the configured interfaces and ports.
    pub fn start(settings: &EndpointSettings, recording_roots: RecordingRoots) -> Result<Self> {
        let network = network_settings(settings)?;
        let ice_servers = network.ice_servers.clone();
        let host = WebRtcHost::start(network).context("starting the WebRTC host")?;
        tracing::info!(addresses = ?host.local_addrs(), "WebRTC host listening");
        Ok(Self {
            host,
            ice_servers,
            bandwidth: settings.bandwidth,
            recording_roots,
        })
    }

    /// Where peers reach the media sockets: the announced addresses, and the
    /// bound ones when bound to a specific address.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs = self.host.advertised_addrs();
        for bound in self.host.local_addrs() {
            if !bound.ip().is_unspecified() && !addrs.contains(&bound) {
                addrs.push(bound);
            }
        }
        addrs
    }
}

impl WebRtcBackend {
    /// Makes the embedded relay the endpoints' TURN server (when no `turnURL` is configured),
    /// reached on its UDP listener, with credentials minted for rkms that never leave it.
    pub fn use_embedded_relay(&self, relay: &rkms_turn::RelayHandle) {
        let Some(listener) = relay.udp_addrs().first() else {
            return;
        };
        let host = match listener.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let credentials = relay.mint_credentials("rkms-webrtc", EMBEDDED_RELAY_CREDENTIALS);
        let mut servers = self.ice_servers.clone();
        servers.turn = Some(TurnServer {
            host: host.to_string(),
            port: listener.port(),
            username: credentials.username,
            password: credentials.password,
            transport: TurnTransport::Udp,
        });
        match self.host.set_ice_servers(&servers) {
            Ok(()) => tracing::info!("endpoints gather relay candidates from the embedded relay"),
            Err(e) => tracing::warn!("embedded relay not used by endpoints: {e}"),
        }
    }
}

/// Lifetime of the credentials rkms mints for its own allocations on the embedded relay: as
/// long as the process (the client signs refreshes with them).
const EMBEDDED_RELAY_CREDENTIALS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Kurento's endpoint settings as the host takes them.
fn network_settings(s: &EndpointSettings) -> Result<NetworkSettings> {
    let mut net = NetworkSettings {
        bind_addresses: interface_addresses(&s.network_interfaces)?,
        port_min: s.min_port.unwrap_or(0),
        port_max: s.max_port.unwrap_or(0),
        // On unless configured off, as in Kurento.
        ice_tcp: s.ice_tcp.unwrap_or(true),
        // One socket loop per core; a pipeline stays on one of them.
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..NetworkSettings::default()
    };
    if let Some(mtu) = s.mtu {
        net.mtu = usize::from(mtu);
    }
    match s.external_ipv4.as_deref() {
        None | Some("auto") => {}
        Some(ip) => net.external_ipv4 = Some(ip.parse().context("externalIPv4")?),
    }
    match s.external_ipv6.as_deref() {
        None | Some("auto") => {}
        Some(ip) => net.external_ipv6 = Some(ip.parse().context("externalIPv6")?),
    }
    if let Some(stun) = &s.stun_server_address {
        net.ice_servers.stun = Some(IceServers::stun_address(stun, s.stun_server_port));
    }
    if let Some(url) = &s.turn_url {
        match url.parse::<TurnServer>() {
            Ok(turn) => net.ice_servers.turn = Some(turn),
            Err(e @ TurnUrlError::UnsupportedTransport(_)) => {
                tracing::warn!("turnURL ignored: {e}");
            }
            Err(e) => bail!("turnURL: {e}"),
        }
    }
    Ok(net)
}

/// Addresses of the named interfaces (names or literal addresses); every
/// IPv4 address when none is named.
fn interface_addresses(names: &[String]) -> Result<Vec<IpAddr>> {
    if names.is_empty() {
        return Ok(vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]);
    }
    let interfaces = if_addrs::get_if_addrs().context("listing network interfaces")?;
    let mut found = Vec::new();
    for name in names {
        if let Ok(ip) = name.parse::<IpAddr>() {
            found.push(ip);
            continue;
        }
        let before = found.len();
        found.extend(
            interfaces
                .iter()
                .filter(|i| &i.name == name && i.ip().is_ipv4())
                .map(|i| i.ip()),
        );
        if found.len() == before {
            bail!("network interface '{name}' has no IPv4 address");
        }
    }
    Ok(found)
}

impl MediaBackend for WebRtcBackend {
    fn create_webrtc_endpoint<'a>(
        &'a self,
        pipeline: &'a Arc<Pipeline>,
        element: ElementId,
        options: WebRtcOptions,
        events: EventSink,
    ) -> BoxFuture<'a, Result<Arc<dyn WebRtcEndpoint>, BackendError>> {
        Box::pin(async move {
            let (endpoint, rx) = self
                .host
                .create_endpoint(
                    element,
                    EndpointOptions {
                        use_data_channels: options.use_data_channels,
                        group: Some(pipeline.id()),
                        bandwidth: self.bandwidth,
                    },
                )
                .await
                .map_err(|e| BackendError(e.to_string()))?;
            tokio::spawn(forward_events(rx, events));
            Ok(Arc::new(EndpointAdapter {
                endpoint: Mutex::new(Some(Arc::new(endpoint))),
                negotiation: Mutex::new(Negotiation::Idle),
                bandwidth: Mutex::new(self.bandwidth),
            }) as Arc<dyn WebRtcEndpoint>)
        })
    }

    fn connect(&self, source: ElementId, sink: ElementId, kind: MediaKind) {
        if let Err(e) = self.host.connect(source, sink, kind) {
            tracing::warn!(error = %e, ?source, ?sink, %kind, "cannot route media");
        }
    }

    fn disconnect(&self, source: ElementId, sink: ElementId, kind: MediaKind) {
        if let Err(e) = self.host.disconnect(source, sink, kind) {
            tracing::warn!(error = %e, ?source, ?sink, %kind, "cannot unroute media");
        }
    }

    fn create_rtp_endpoint(
        &self,
        pipeline: &Arc<Pipeline>,
        element: ElementId,
        options: RtpOptions,
        events: EventSink,
    ) -> Result<Arc<dyn WebRtcEndpoint>, UriElementError> {
        rtp_endpoint::create_rtp_endpoint(
            &self.host,
            pipeline,
            element,
            options,
            self.bandwidth,
            events,
        )
    }

    fn create_recorder(
        &self,
        pipeline: &Arc<Pipeline>,
        element: ElementId,
        options: RecorderOptions,
        events: UriEventSink,
    ) -> Result<Arc<dyn RecorderEndpoint>, UriElementError> {
        uri_elements::create_recorder(
            &self.host,
            &self.recording_roots,
            pipeline,
            element,
            options,
            events,
        )
    }

    fn create_player(
        &self,
        pipeline: &Arc<Pipeline>,
        element: ElementId,
        options: PlayerOptions,
        events: UriEventSink,
    ) -> Result<Arc<dyn PlayerEndpoint>, UriElementError> {
        uri_elements::create_player(&self.host, pipeline, element, options, events)
    }
}

/// Where an endpoint is in offer/answer, so Kurento's state errors are
/// exact whatever the host reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Negotiation {
    Idle,
    Offered,
    Done,
}

struct EndpointAdapter {
    /// Taken (and so dropped, which releases it in the host) on release.
    endpoint: Mutex<Option<Arc<Endpoint>>>,
    negotiation: Mutex<Negotiation>,
    bandwidth: Mutex<BandwidthLimits>,
}

impl EndpointAdapter {
    fn endpoint(&self) -> Result<Arc<Endpoint>, NegotiationError> {
        self.endpoint
            .lock()
            .clone()
            .ok_or_else(|| NegotiationError::ProcessOffer("the endpoint was released".into()))
    }
}

/// Maps a host error: unparsable SDP and bad candidates keep their codes,
/// anything else is the operation's own failure.
fn negotiation_error(e: WebRtcError, other: fn(String) -> NegotiationError) -> NegotiationError {
    match e {
        WebRtcError::InvalidSdp(m) => NegotiationError::Parse(m),
        WebRtcError::InvalidCandidate(m) => NegotiationError::BadCandidate(m),
        e => other(e.to_string()),
    }
}

impl WebRtcEndpoint for EndpointAdapter {
    fn process_offer(&self, offer: String) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async move {
            if *self.negotiation.lock() != Negotiation::Idle {
                return Err(NegotiationError::AlreadyNegotiated);
            }
            let answer = self
                .endpoint()?
                .process_offer(offer)
                .await
                .map_err(|e| negotiation_error(e, NegotiationError::ProcessOffer))?;
            *self.negotiation.lock() = Negotiation::Done;
            Ok(answer)
        })
    }

    fn generate_offer(
        &self,
        _offer_audio: bool,
        _offer_video: bool,
    ) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async move {
            if *self.negotiation.lock() == Negotiation::Done {
                return Err(NegotiationError::AlreadyNegotiated);
            }
            let offer = self
                .endpoint()?
                .generate_offer()
                .await
                .map_err(|e| negotiation_error(e, NegotiationError::GenerateOffer))?;
            *self.negotiation.lock() = Negotiation::Offered;
            Ok(offer)
        })
    }

    fn process_answer(&self, answer: String) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async move {
            match *self.negotiation.lock() {
                Negotiation::Idle => return Err(NegotiationError::NotOfferGenerated),
                Negotiation::Done => return Err(NegotiationError::AnswerAlreadyProcessed),
                Negotiation::Offered => {}
            }
            let endpoint = self.endpoint()?;
            endpoint
                .process_answer(answer)
                .await
                .map_err(|e| negotiation_error(e, NegotiationError::ProcessAnswer))?;
            *self.negotiation.lock() = Negotiation::Done;
            let local = endpoint.local_description().await.ok().flatten();
            Ok(local.unwrap_or_default())
        })
    }

    fn local_description(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let endpoint = self.endpoint().ok()?;
            endpoint.local_description().await.ok().flatten()
        })
    }

    fn remote_description(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let endpoint = self.endpoint().ok()?;
            endpoint.remote_description().await.ok().flatten()
        })
    }

    fn gather_candidates(
        &self,
        servers: IceServerProperties,
    ) -> BoxFuture<'_, Result<(), NegotiationError>> {
        Box::pin(async move {
            self.endpoint()?
                .gather_candidates(own_ice_servers(&servers))
                .await
                .map_err(|e| NegotiationError::Gather(e.to_string()))
        })
    }

    fn add_ice_candidate(
        &self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u32>,
    ) -> BoxFuture<'_, Result<(), NegotiationError>> {
        Box::pin(async move {
            // An empty candidate only marks the end of the remote's candidates.
            if candidate.trim().is_empty() {
                return Ok(());
            }
            check_candidate(&candidate).map_err(NegotiationError::BadCandidate)?;
            let index = sdp_mline_index.and_then(|i| u16::try_from(i).ok());
            self.endpoint()?
                .add_ice_candidate(candidate, sdp_mid, index)
                .await
                .map_err(|e| negotiation_error(e, NegotiationError::BadCandidate))
        })
    }

    fn bandwidth(&self) -> BandwidthLimits {
        *self.bandwidth.lock()
    }

    fn set_bandwidth(&self, limits: BandwidthLimits) {
        *self.bandwidth.lock() = limits;
        if let Ok(endpoint) = self.endpoint()
            && let Err(e) = endpoint.set_bandwidth(limits)
        {
            tracing::warn!(error = %e, "bandwidth limits not applied");
        }
    }

    fn set_ice_tcp(&self, on: bool) {
        if let Ok(endpoint) = self.endpoint()
            && let Err(e) = endpoint.set_ice_tcp(on)
        {
            tracing::warn!(error = %e, "iceTcp not applied");
        }
    }

    fn create_data_channel(
        &self,
        options: DataChannelOptions,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let endpoint = self.endpoint().map_err(|e| e.to_string())?;
            endpoint
                .create_data_channel(options)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn close_data_channel(&self, channel_id: u16) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let endpoint = self.endpoint().map_err(|e| e.to_string())?;
            endpoint
                .close_data_channel(channel_id)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn stats(&self) -> BoxFuture<'_, Option<EndpointStats>> {
        Box::pin(async move {
            let endpoint = self.endpoint().ok()?;
            endpoint.stats().await.ok()
        })
    }

    fn release(&self) {
        self.endpoint.lock().take();
    }
}

/// An endpoint's own STUN/TURN servers from its properties. A `turnUrl` that does not parse
/// is left out with a warning (the configured TURN server, if any, stays), as is a
/// `stunServerPort` without a `stunServerAddress`.
fn own_ice_servers(p: &IceServerProperties) -> IceServers {
    IceServers {
        stun: p
            .stun_server_address
            .as_deref()
            .map(|address| IceServers::stun_address(address, p.stun_server_port)),
        turn: p.turn_url.as_deref().and_then(|url| {
            url.parse::<TurnServer>()
                .map_err(|e| tracing::warn!("the endpoint's turnUrl is ignored: {e}"))
                .ok()
        }),
    }
}

/// Checks the syntax of an ICE candidate attribute (RFC 8839 section 5.1),
/// so a malformed one is refused at once rather than kept until the remote
/// description arrives and then silently ignored.
fn check_candidate(candidate: &str) -> Result<(), String> {
    let text = candidate.trim();
    let text = text.strip_prefix("a=").unwrap_or(text);
    let fields: Vec<&str> = text
        .strip_prefix("candidate:")
        .ok_or_else(|| format!("'{candidate}' does not start with 'candidate:'"))?
        .split_whitespace()
        .collect();
    let bad = |why: &str| Err(format!("'{candidate}': {why}"));
    if fields.len() < 8 {
        return bad("too few fields");
    }
    if fields[1].parse::<u16>().is_err() {
        return bad("the component is not a number");
    }
    if !["udp", "tcp"].contains(&fields[2].to_ascii_lowercase().as_str()) {
        return bad("the transport is neither UDP nor TCP");
    }
    if fields[3].parse::<u32>().is_err() {
        return bad("the priority is not a number");
    }
    if fields[5].parse::<u16>().is_err() {
        return bad("the port is not a port");
    }
    if fields[6] != "typ" || !["host", "srflx", "prflx", "relay"].contains(&fields[7]) {
        return bad("no valid 'typ'");
    }
    Ok(())
}

/// Turns the host's events into the port's until the endpoint is gone;
/// adds Kurento's session start/end around the transport coming up.
async fn forward_events(mut rx: mpsc::UnboundedReceiver<HostEvent>, sink: EventSink) {
    let mut session_started = false;
    while let Some(event) = rx.recv().await {
        let mapped = match event {
            HostEvent::IceCandidateFound {
                candidate,
                sdp_mid,
                sdp_mline_index,
            } => EndpointEvent::IceCandidateFound {
                candidate,
                sdp_mid,
                sdp_mline_index: u32::from(sdp_mline_index),
            },
            HostEvent::IceGatheringDone => EndpointEvent::IceGatheringDone,
            HostEvent::IceComponentStateChanged(state) => EndpointEvent::IceComponentStateChanged {
                stream_id: STREAM,
                component_id: COMPONENT,
                state: match state {
                    HostIce::Disconnected => IceComponentState::Disconnected,
                    HostIce::Gathering => IceComponentState::Gathering,
                    HostIce::Connecting => IceComponentState::Connecting,
                    HostIce::Connected => IceComponentState::Connected,
                    HostIce::Ready => IceComponentState::Ready,
                    HostIce::Failed => IceComponentState::Failed,
                },
            },
            HostEvent::NewCandidatePairSelected { local, remote } => {
                EndpointEvent::NewCandidatePairSelected {
                    stream_id: STREAM.to_string(),
                    component_id: COMPONENT,
                    local_candidate: local,
                    remote_candidate: remote,
                }
            }
            HostEvent::DtlsConnectionStateChange(state) => {
                EndpointEvent::DtlsConnectionStateChange {
                    stream_id: STREAM.to_string(),
                    component_id: COMPONENT.to_string(),
                    connection_id: "1".into(),
                    state: match state {
                        HostDtls::Connecting => DtlsState::Connecting,
                        HostDtls::Connected => DtlsState::Connected,
                        HostDtls::Closed => DtlsState::Closed,
                    },
                }
            }
            HostEvent::ConnectionStateChanged(state) => {
                let up = state == ConnectionState::Connected;
                sink(EndpointEvent::Connection(up));
                match (up, session_started) {
                    (true, false) => {
                        session_started = true;
                        EndpointEvent::MediaSessionStarted
                    }
                    (false, true) => {
                        session_started = false;
                        EndpointEvent::MediaSessionTerminated
                    }
                    _ => continue,
                }
            }
            HostEvent::MediaStateChanged(state) => {
                EndpointEvent::Media(state == ConnectionState::Connected)
            }
            HostEvent::MediaFlowInStateChanged(kind, flow) => EndpointEvent::MediaFlowIn {
                kind,
                flowing: flow == FlowState::Flowing,
            },
            HostEvent::MediaFlowOutStateChanged(kind, flow) => EndpointEvent::MediaFlowOut {
                kind,
                flowing: flow == FlowState::Flowing,
            },
            HostEvent::DataChannelOpened(id) => EndpointEvent::DataChannelOpened(u32::from(id)),
            HostEvent::DataChannelClosed(id) => EndpointEvent::DataChannelClosed(u32::from(id)),
            HostEvent::Error(description) => EndpointEvent::Error {
                kind: "UNEXPECTED_ERROR".into(),
                description,
                code: 40003,
            },
        };
        sink(mapped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_syntax() {
        for good in [
            "candidate:1 1 UDP 2015363327 127.0.0.1 40000 typ host",
            "a=candidate:842163049 1 udp 1677729535 203.0.113.7 53999 typ srflx raddr 0.0.0.0 rport 0 generation 0",
            "candidate:3 1 tcp 1518280447 ::1 9 typ host tcptype active",
            "candidate:4 1 udp 2 abc.local 5000 typ host",
        ] {
            assert!(check_candidate(good).is_ok(), "{good}");
        }
        for bad in [
            "candidate:nonsense",
            "1 1 UDP 2015363327 127.0.0.1 40000 typ host",
            "candidate:1 x UDP 1 127.0.0.1 40000 typ host",
            "candidate:1 1 SCTP 1 127.0.0.1 40000 typ host",
            "candidate:1 1 UDP 1 127.0.0.1 99999 typ host",
            "candidate:1 1 UDP 1 127.0.0.1 40000 type host",
            "candidate:1 1 UDP 1 127.0.0.1 40000 typ magic",
        ] {
            assert!(check_candidate(bad).is_err(), "{bad}");
        }
    }
}
