//! WebRtcEndpoint's Kurento surface over a fake media backend: SDP
//! operations and their error codes, trickle ICE events, and the states
//! the getters report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use rkms_media::webrtc::{BandwidthLimits, DataChannelOptions, EndpointStats};
use rkms_media::{ElementId, MediaKind, Pipeline};
use rkms_signaling::backend::{
    BackendError, BoxFuture, EndpointEvent, EventSink, IceServerProperties, MediaBackend,
    NegotiationError, WebRtcEndpoint, WebRtcOptions,
};
use rkms_signaling::{Connection, Engine, EngineConfig};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Default)]
struct FakeEndpoint {
    events: Mutex<Option<EventSink>>,
    remote: Mutex<Option<String>>,
    released: AtomicBool,
    bandwidth: Mutex<BandwidthLimits>,
    /// The last `iceTcp` the endpoint was given.
    ice_tcp: Mutex<Option<bool>>,
    /// What the backend saw, in order, shared with it.
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl FakeEndpoint {
    fn emit(&self, e: EndpointEvent) {
        if let Some(sink) = self.events.lock().as_ref() {
            sink(e);
        }
    }
}

impl WebRtcEndpoint for FakeEndpoint {
    fn process_offer(&self, offer: String) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async move {
            if !offer.starts_with("v=0") {
                return Err(NegotiationError::Parse("no v= line".into()));
            }
            let mut remote = self.remote.lock();
            if remote.is_some() {
                return Err(NegotiationError::AlreadyNegotiated);
            }
            *remote = Some(offer);
            Ok("v=0\r\nanswer".into())
        })
    }
    fn generate_offer(
        &self,
        audio: bool,
        video: bool,
    ) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async move { Ok(format!("v=0\r\noffer audio={audio} video={video}")) })
    }
    fn process_answer(&self, _answer: String) -> BoxFuture<'_, Result<String, NegotiationError>> {
        Box::pin(async { Err(NegotiationError::NotOfferGenerated) })
    }
    fn local_description(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
    fn remote_description(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.remote.lock().clone() })
    }
    fn gather_candidates(
        &self,
        _servers: IceServerProperties,
    ) -> BoxFuture<'_, Result<(), NegotiationError>> {
        Box::pin(async move {
            self.emit(EndpointEvent::IceCandidateFound {
                candidate: "candidate:1 1 UDP 2015363327 127.0.0.1 40000 typ host".into(),
                sdp_mid: "0".into(),
                sdp_mline_index: 0,
            });
            self.emit(EndpointEvent::IceGatheringDone);
            self.emit(EndpointEvent::Media(true));
            self.emit(EndpointEvent::MediaFlowIn {
                kind: MediaKind::Video,
                flowing: true,
            });
            Ok(())
        })
    }
    fn add_ice_candidate(
        &self,
        candidate: String,
        _mid: Option<String>,
        _index: Option<u32>,
    ) -> BoxFuture<'_, Result<(), NegotiationError>> {
        Box::pin(async move {
            if candidate.starts_with("candidate:") {
                Ok(())
            } else {
                Err(NegotiationError::BadCandidate(candidate))
            }
        })
    }
    fn bandwidth(&self) -> BandwidthLimits {
        *self.bandwidth.lock()
    }
    fn set_bandwidth(&self, limits: BandwidthLimits) {
        *self.bandwidth.lock() = limits;
    }
    fn set_ice_tcp(&self, on: bool) {
        *self.ice_tcp.lock() = Some(on);
    }
    fn create_data_channel(
        &self,
        _options: DataChannelOptions,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn close_data_channel(&self, channel_id: u16) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { Err(format!("no channel {channel_id}")) })
    }
    fn stats(&self) -> BoxFuture<'_, Option<EndpointStats>> {
        Box::pin(async { Some(EndpointStats::default()) })
    }
    fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.log.lock().push("release");
    }
}

#[derive(Default)]
struct FakeBackend {
    made: Mutex<Vec<(WebRtcOptions, Arc<FakeEndpoint>)>>,
    /// Routing calls: (connected?, source, sink, kind).
    routes: Mutex<Vec<(bool, ElementId, ElementId, MediaKind)>>,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl MediaBackend for FakeBackend {
    fn create_webrtc_endpoint<'a>(
        &'a self,
        _pipeline: &'a Arc<Pipeline>,
        _element: ElementId,
        options: WebRtcOptions,
        events: EventSink,
    ) -> BoxFuture<'a, Result<Arc<dyn WebRtcEndpoint>, BackendError>> {
        Box::pin(async move {
            let endpoint = Arc::new(FakeEndpoint {
                log: self.log.clone(),
                ..FakeEndpoint::default()
            });
            *endpoint.events.lock() = Some(events);
            self.made.lock().push((options, endpoint.clone()));
            Ok(endpoint as Arc<dyn WebRtcEndpoint>)
        })
    }
    fn connect(&self, source: ElementId, sink: ElementId, kind: MediaKind) {
        self.routes.lock().push((true, source, sink, kind));
    }
    fn disconnect(&self, source: ElementId, sink: ElementId, kind: MediaKind) {
        self.routes.lock().push((false, source, sink, kind));
        self.log.lock().push("disconnect");
    }
}

struct Client {
    conn: Connection,
    rx: mpsc::Receiver<String>,
    id: u64,
}

impl Client {
    async fn send(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let frame = json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params});
        let answer = self.conn.handle_text(&frame.to_string()).await;
        serde_json::from_str(&answer.expect("requests get answers")).expect("answers are JSON")
    }
    async fn ok(&mut self, method: &str, params: Value) -> Value {
        let a = self.send(method, params).await;
        assert!(a.get("error").is_none(), "{a}");
        a["result"]["value"].clone()
    }
    async fn code(&mut self, method: &str, params: Value) -> i64 {
        self.send(method, params).await["error"]["code"]
            .as_i64()
            .unwrap_or(0)
    }
    fn events(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.rx.try_recv().ok())
            .map(|t| {
                serde_json::from_str::<Value>(&t).expect("events are JSON")["params"]["value"]
                    .clone()
            })
            .collect()
    }
}

#[tokio::test]
async fn webrtc_endpoint_over_a_backend() {
    let backend = Arc::new(FakeBackend::default());
    let engine = Engine::with_backend(EngineConfig::default(), Some(backend.clone()));
    let (tx, rx) = mpsc::channel(256);
    let mut c = Client {
        conn: engine.connect(tx),
        rx,
        id: 0,
    };

    let p = c.ok("create", json!({"type": "MediaPipeline"})).await;
    let e = c
        .ok(
            "create",
            json!({"type": "WebRtcEndpoint",
                             "constructorParams": {"mediaPipeline": p, "useDataChannels": true}}),
        )
        .await;
    assert!(e.as_str().unwrap().ends_with("_kurento.WebRtcEndpoint"));
    assert!(backend.made.lock()[0].0.use_data_channels);
    for ev in ["IceCandidateFound", "IceGatheringDone", "MediaStateChanged"] {
        c.ok("subscribe", json!({"object": e, "type": ev})).await;
    }

    let invoke =
        |op: &str, args: Value| json!({"object": e, "operation": op, "operationParams": args});
    assert_eq!(
        c.code(
            "invoke",
            invoke("processOffer", json!({"offer": "garbage"}))
        )
        .await,
        40201
    );
    assert_eq!(
        c.code("invoke", invoke("getRemoteSessionDescriptor", json!({})))
            .await,
        40203
    );
    assert_eq!(
        c.code("invoke", invoke("getLocalSessionDescriptor", json!({})))
            .await,
        40202
    );
    let answer = c
        .ok(
            "invoke",
            invoke("processOffer", json!({"offer": "v=0\r\noffer"})),
        )
        .await;
    assert_eq!(answer, "v=0\r\nanswer");
    assert_eq!(
        c.code(
            "invoke",
            invoke("processOffer", json!({"offer": "v=0\r\nagain"}))
        )
        .await,
        40208
    );
    assert_eq!(
        c.code("invoke", invoke("processAnswer", json!({"answer": "v=0"})))
            .await,
        40209
    );
    let offer = c
        .ok(
            "invoke",
            invoke(
                "generateOffer",
                json!({"options": {"offerToReceiveAudio": false}}),
            ),
        )
        .await;
    assert_eq!(offer, "v=0\r\noffer audio=false video=true");

    let bad = json!({"candidate": {"__module__": "kurento", "__type__": "IceCandidate",
                                   "candidate": "nonsense", "sdpMid": "0", "sdpMLineIndex": 0}});
    assert_eq!(
        c.code("invoke", invoke("addIceCandidate", bad)).await,
        40401
    );
    assert_eq!(
        c.code("invoke", invoke("addIceCandidate", json!({"candidate": 5})))
            .await,
        40107
    );
    let good = json!({"candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host",
                                    "sdpMid": "0", "sdpMLineIndex": 0}});
    c.ok("invoke", invoke("addIceCandidate", good)).await;

    assert_eq!(
        c.ok("invoke", invoke("getMediaState", json!({}))).await,
        "DISCONNECTED"
    );
    c.ok("invoke", invoke("gatherCandidates", json!({}))).await;
    let events = c.events();
    let names: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["IceCandidateFound", "IceGatheringDone", "MediaStateChanged"]
    );
    let cand = &events[0]["data"]["candidate"];
    assert_eq!(cand["__type__"], "IceCandidate");
    assert_eq!(cand["sdpMid"], "0");
    assert_eq!(cand["sdpMLineIndex"], 0);
    assert_eq!(events[2]["data"]["oldState"], "DISCONNECTED");
    assert_eq!(events[2]["data"]["newState"], "CONNECTED");
    assert_eq!(
        c.ok("invoke", invoke("getMediaState", json!({}))).await,
        "CONNECTED"
    );
    assert_eq!(
        c.ok(
            "invoke",
            invoke("isMediaFlowingIn", json!({"mediaType": "VIDEO"}))
        )
        .await,
        true
    );
    assert_eq!(
        c.ok(
            "invoke",
            invoke("isMediaFlowingIn", json!({"mediaType": "AUDIO"}))
        )
        .await,
        false
    );

    // Bandwidth properties are the media core's: its defaults (no send ceiling, unlike
    // Kurento's 500 kbps), and setters reach it.
    assert_eq!(
        c.ok("invoke", invoke("getMaxVideoSendBandwidth", json!({})))
            .await,
        0
    );
    c.ok(
        "invoke",
        invoke(
            "setMaxVideoRecvBandwidth",
            json!({"maxVideoRecvBandwidth": 300}),
        ),
    )
    .await;
    assert_eq!(
        backend.made.lock()[0].1.bandwidth().max_video_recv_kbps,
        300
    );
    assert_eq!(
        c.ok("invoke", invoke("getMaxVideoRecvBandwidth", json!({})))
            .await,
        300
    );

    // iceTcp reaches the media core (Kurento's 1/0 as a boolean) and the getter reports it.
    c.ok("invoke", invoke("setIceTcp", json!({"iceTcp": false})))
        .await;
    assert_eq!(*backend.made.lock()[0].1.ice_tcp.lock(), Some(false));
    assert_eq!(c.ok("invoke", invoke("getIceTcp", json!({}))).await, false);

    // Loopback: media follows the graph through the backend, both ways.
    c.ok(
        "invoke",
        invoke("connect", json!({"sink": e, "mediaType": "VIDEO"})),
    )
    .await;
    {
        let routes = backend.routes.lock();
        assert_eq!(routes.len(), 1);
        assert!(routes[0].0 && routes[0].1 == routes[0].2 && routes[0].3 == MediaKind::Video);
    }
    c.ok("release", json!({"object": p})).await;
    assert!(backend.made.lock()[0].1.released.load(Ordering::SeqCst));
    let routes = backend.routes.lock();
    assert_eq!(routes.len(), 2);
    assert!(!routes[1].0, "releasing tears the route down");
    assert_eq!(
        *backend.log.lock(),
        ["disconnect", "release"],
        "routes go before the endpoint"
    );
}

#[tokio::test]
async fn without_a_backend_webrtc_is_not_implemented() {
    let engine = Engine::new(EngineConfig::default());
    let (tx, rx) = mpsc::channel(16);
    let mut c = Client {
        conn: engine.connect(tx),
        rx,
        id: 0,
    };
    let p = c.ok("create", json!({"type": "MediaPipeline"})).await;
    let code = c
        .code(
            "create",
            json!({"type": "WebRtcEndpoint", "constructorParams": {"mediaPipeline": p}}),
        )
        .await;
    assert_eq!(code, 40006);
}
