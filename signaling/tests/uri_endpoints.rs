//! RecorderEndpoint's and PlayerEndpoint's Kurento surface over a fake media backend: the uri
//! refusal, methods and the states they report, events, and `stopOnEndOfStream`.
//! The fake recorder raises `Recording`, `Paused` and `Stopped` from inside the call that
//! causes them, as a media thread may, before the call returns to the engine.

use std::sync::Arc;

use parking_lot::Mutex;

use rkms_media::{ElementId, MediaKind, Pipeline};
use rkms_signaling::backend::{
    BackendError, BoxFuture, EventSink, MediaBackend, PlayerEndpoint, PlayerOptions,
    RecorderEndpoint, RecorderOptions, UriElementError, UriEndpointEvent, UriEventSink, VideoInfo,
    WebRtcEndpoint, WebRtcOptions,
};
use rkms_signaling::{Engine, EngineConfig};
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Log = Arc<Mutex<Vec<String>>>;

/// Run by a fake recorder right after it raised an event, before its call returns.
type Hook = Arc<Mutex<Option<Box<dyn Fn() + Send>>>>;

struct FakeElement {
    log: Log,
    events: UriEventSink,
    hook: Hook,
}

impl FakeElement {
    fn note(&self, what: &str) {
        self.log.lock().push(what.to_owned());
    }
    fn raise(&self, event: UriEndpointEvent) {
        (self.events)(event);
        if let Some(hook) = &*self.hook.lock() {
            hook();
        }
    }
}

impl RecorderEndpoint for FakeElement {
    fn record(&self) {
        self.note("record");
        self.raise(UriEndpointEvent::Recording);
    }
    fn pause(&self) {
        self.note("pause");
        self.raise(UriEndpointEvent::Paused);
    }
    fn stop(&self) {
        self.note("stop");
        self.raise(UriEndpointEvent::Stopped);
    }
    fn stop_and_wait(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.note("stopAndWait");
            self.raise(UriEndpointEvent::Stopped);
        })
    }
    fn release(&self) {
        self.note("release");
    }
}

impl PlayerEndpoint for FakeElement {
    fn play(&self) {
        self.note("play");
    }
    fn pause(&self) {
        self.note("pause");
    }
    fn stop(&self) {
        self.note("stop");
    }
    fn position_ms(&self) -> u64 {
        1234
    }
    fn set_position(&self, ms: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.note(&format!("seek {ms}"));
            Ok(())
        })
    }
    fn video_info(&self) -> BoxFuture<'_, Result<VideoInfo, String>> {
        Box::pin(async {
            Ok(VideoInfo {
                seekable: true,
                duration_ms: 4000,
            })
        })
    }
    fn release(&self) {
        self.note("release");
    }
}

#[derive(Default)]
struct FakeBackend {
    recorders: Mutex<Vec<Log>>,
    players: Mutex<Vec<(Log, UriEventSink)>>,
    hook: Hook,
}

impl MediaBackend for FakeBackend {
    fn create_webrtc_endpoint<'a>(
        &'a self,
        _pipeline: &'a Arc<Pipeline>,
        _element: ElementId,
        _options: WebRtcOptions,
        _events: EventSink,
    ) -> BoxFuture<'a, Result<Arc<dyn WebRtcEndpoint>, BackendError>> {
        Box::pin(async { Err(BackendError("no WebRTC here".into())) })
    }
    fn connect(&self, _source: ElementId, _sink: ElementId, _kind: MediaKind) {}
    fn disconnect(&self, _source: ElementId, _sink: ElementId, _kind: MediaKind) {}
    fn create_recorder(
        &self,
        _pipeline: &Arc<Pipeline>,
        _element: ElementId,
        options: RecorderOptions,
        events: UriEventSink,
    ) -> Result<Arc<dyn RecorderEndpoint>, UriElementError> {
        if !options.uri.starts_with("file:///rec/") {
            return Err(UriElementError::BadParam {
                param: "uri",
                why: "outside the recording roots".into(),
            });
        }
        let log = Log::default();
        self.recorders.lock().push(log.clone());
        let hook = self.hook.clone();
        Ok(Arc::new(FakeElement { log, events, hook }))
    }
    fn create_player(
        &self,
        _pipeline: &Arc<Pipeline>,
        _element: ElementId,
        _options: PlayerOptions,
        events: UriEventSink,
    ) -> Result<Arc<dyn PlayerEndpoint>, UriElementError> {
        let log = Log::default();
        self.players.lock().push((log.clone(), events.clone()));
        let hook = self.hook.clone();
        Ok(Arc::new(FakeElement { log, events, hook }))
    }
}

struct Client {
    conn: rkms_signaling::Connection,
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
    async fn invoke(&mut self, object: &Value, operation: &str, params: Value) -> Value {
        self.ok(
            "invoke",
            json!({"object": object, "operation": operation, "operationParams": params}),
        )
        .await
    }
    /// Event types received so far, in order.
    fn event_types(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.rx.try_recv().ok())
            .map(|t| {
                let v: Value = serde_json::from_str(&t).expect("events are JSON");
                v["params"]["value"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
    /// The type of the next event, waiting for it.
    async fn next_event_type(&mut self) -> String {
        let text = self.rx.recv().await.expect("the connection is open");
        let v: Value = serde_json::from_str(&text).expect("events are JSON");
        v["params"]["value"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn connect(engine: &Arc<Engine>) -> Client {
    let (tx, rx) = mpsc::channel(64);
    Client {
        conn: engine.connect(tx),
        rx,
        id: 0,
    }
}

fn setup() -> (Arc<FakeBackend>, Arc<Engine>, Client) {
    let backend = Arc::new(FakeBackend::default());
    let engine = Engine::with_backend(EngineConfig::default(), Some(backend.clone()));
    let client = connect(&engine);
    (backend, engine, client)
}

#[tokio::test]
async fn recorder_refuses_bad_uris_and_reports_its_state() {
    let (backend, _engine, mut c) = setup();
    let p = c.ok("create", json!({"type": "MediaPipeline"})).await;
    let refused = c
        .send(
            "create",
            json!({"type": "RecorderEndpoint", "constructorParams": {"mediaPipeline": p, "uri": "file:///etc/x.webm"}}),
        )
        .await;
    assert_eq!(refused["error"]["code"], 40107, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("uri") && m.contains("recording roots")),
        "{refused}"
    );

    let uri = "file:///rec/a.webm";
    let r = c
        .ok(
            "create",
            json!({"type": "RecorderEndpoint", "constructorParams": {"mediaPipeline": p, "uri": uri, "mediaProfile": "MP4"}}),
        )
        .await;
    for event in ["Recording", "UriEndpointStateChanged"] {
        c.ok("subscribe", json!({"object": r, "type": event})).await;
    }
    assert_eq!(c.invoke(&r, "getUri", json!({})).await, uri);
    assert_eq!(c.invoke(&r, "getState", json!({})).await, "STOP");
    c.invoke(&r, "record", json!({})).await;
    assert_eq!(c.invoke(&r, "getState", json!({})).await, "START");
    c.invoke(&r, "pause", json!({})).await;
    assert_eq!(c.invoke(&r, "getState", json!({})).await, "PAUSE");
    c.invoke(&r, "stopAndWait", json!({})).await;
    assert_eq!(c.invoke(&r, "getState", json!({})).await, "STOP");
    assert_eq!(
        c.event_types(),
        // The state changes before the element is asked, so the state announced comes first
        // and a client handling the element's event reads the state that event stands for.
        [
            "UriEndpointStateChanged",
            "Recording",
            "UriEndpointStateChanged",
            "UriEndpointStateChanged"
        ]
    );
    c.ok("release", json!({"object": p})).await;
    assert_eq!(
        *backend.recorders.lock()[0].lock(),
        ["record", "pause", "stopAndWait", "release"]
    );
}

#[tokio::test]
async fn player_methods_and_end_of_stream_stopping_its_recorders() {
    let (backend, _engine, mut c) = setup();
    let p = c.ok("create", json!({"type": "MediaPipeline"})).await;
    let player = c
        .ok(
            "create",
            json!({"type": "PlayerEndpoint", "constructorParams": {"mediaPipeline": p, "uri": "file:///media/in.webm"}}),
        )
        .await;
    let mut recorders = Vec::new();
    for stop in [true, false] {
        let r = c
            .ok(
                "create",
                json!({"type": "RecorderEndpoint", "constructorParams": {"mediaPipeline": p, "uri": "file:///rec/b.mkv", "stopOnEndOfStream": stop}}),
            )
            .await;
        c.invoke(&player, "connect", json!({"sink": r})).await;
        recorders.push(r);
    }
    c.ok(
        "subscribe",
        json!({"object": player, "type": "EndOfStream"}),
    )
    .await;
    c.invoke(&player, "play", json!({})).await;
    assert_eq!(c.invoke(&player, "getPosition", json!({})).await, 1234);
    c.invoke(&player, "setPosition", json!({"position": 2000}))
        .await;
    let info = c.invoke(&player, "getVideoInfo", json!({})).await;
    assert_eq!(info["isSeekable"], true);
    assert_eq!(info["duration"], 4000);
    assert_eq!(info["__type__"], "VideoInfo");

    let (player_log, player_events) = backend.players.lock()[0].clone();
    player_events(UriEndpointEvent::EndOfStream);
    assert_eq!(c.event_types(), ["EndOfStream"]);
    assert_eq!(*player_log.lock(), ["play", "seek 2000"]);
    let logs = backend.recorders.lock().clone();
    assert_eq!(*logs[0].lock(), ["stop"], "stopOnEndOfStream");
    assert!(logs[1].lock().is_empty(), "without stopOnEndOfStream");
    assert_eq!(c.invoke(&recorders[0], "getState", json!({})).await, "STOP");
}

/// A client watching a recorder from another connection reads, from inside each event's
/// handler, the state that event stands for, even while the call that caused it is still
/// running on the controlling connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_read_while_handling_an_event_matches_it() {
    let (backend, engine, mut c) = setup();
    let p = c.ok("create", json!({"type": "MediaPipeline"})).await;
    let r = c
        .ok(
            "create",
            json!({"type": "RecorderEndpoint", "constructorParams": {"mediaPipeline": p, "uri": "file:///rec/c.webm"}}),
        )
        .await;
    let mut watcher = connect(&engine);
    for event in ["Recording", "Paused", "Stopped"] {
        watcher
            .ok("subscribe", json!({"object": r, "type": event}))
            .await;
    }
    // The recorder's call returns only once the watcher has read the state.
    let (read, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    *backend.hook.lock() = Some(Box::new(move || {
        let _ = gate.lock().recv();
    }));
    for (operation, event, state) in [
        ("record", "Recording", "START"),
        ("pause", "Paused", "PAUSE"),
        ("record", "Recording", "START"),
        ("stop", "Stopped", "STOP"),
        ("record", "Recording", "START"),
        ("stopAndWait", "Stopped", "STOP"),
    ] {
        let r2 = r.clone();
        let call = tokio::spawn(async move {
            c.invoke(&r2, operation, json!({})).await;
            c
        });
        assert_eq!(watcher.next_event_type().await, event);
        let seen = watcher.invoke(&r, "getState", json!({})).await;
        read.send(()).expect("the recorder waits");
        c = call.await.expect("the call ends");
        assert_eq!(seen, state, "getState while handling {event}");
    }
}
