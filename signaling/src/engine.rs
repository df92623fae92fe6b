//! The protocol engine: owns the registry, the sessions and the event hub,
//! and turns each incoming text frame into at most one answer frame.
//!
//! A transport (the server's WebSocket) opens a [`Connection`] per socket,
//! feeds it text frames in order, and writes whatever arrives on the
//! connection's outbound channel (answers and events) back to the client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc};

use crate::backend::MediaBackend;
use crate::error::{ErrorCode, RpcError};
use crate::events::EventHub;
use crate::frame::{Request, parse_request, response_frame};
use crate::model::Model;
use crate::registry::{Kind, MediaObject, Registry, SERVER_MANAGER_ID};
use crate::session::{Outbound, Session, Sessions};

/// Frames a connection may have queued; an event that finds them all unsent closes the
/// connection (its client stopped reading).
pub const OUTBOUND_QUEUE: usize = 4096;

/// Settings of the protocol engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long a session without a connection keeps its objects.
    pub gc_period: Duration,
    /// Text returned by `ServerManager.getMetadata`.
    pub metadata: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            gc_period: Duration::from_secs(240),
            metadata: String::new(),
        }
    }
}

/// Shared state of the Kurento protocol server.
pub struct Engine {
    pub(crate) model: &'static Model,
    pub(crate) registry: Registry,
    pub(crate) sessions: Sessions,
    pub(crate) events: EventHub,
    pub(crate) config: EngineConfig,
    pub(crate) backend: Option<Arc<dyn MediaBackend>>,
    /// The engine itself, for endpoint event sinks that outlive a request.
    pub(crate) me: Weak<Engine>,
    next_connection: AtomicU64,
}

impl Engine {
    /// An engine with no media backend: endpoint types answer NOT_IMPLEMENTED.
    pub fn new(config: EngineConfig) -> Arc<Self> {
        Self::with_backend(config, None)
    }

    /// An engine whose endpoints are made by `backend`.
    pub fn with_backend(config: EngineConfig, backend: Option<Arc<dyn MediaBackend>>) -> Arc<Self> {
        let model = Model::get();
        let registry = Registry::default();
        let manager_class = model
            .class("ServerManager")
            .expect("the API model declares ServerManager");
        registry.insert(Arc::new(MediaObject::new(
            SERVER_MANAGER_ID.into(),
            manager_class,
            None,
            Kind::ServerManager,
        )));
        Arc::new_cyclic(|me| Self {
            model,
            registry,
            sessions: Sessions::default(),
            events: EventHub::default(),
            config,
            backend,
            me: me.clone(),
            next_connection: AtomicU64::new(1),
        })
    }

    /// Opens a connection whose answers and events go to `tx`.
    pub fn connect(self: &Arc<Self>, tx: mpsc::Sender<String>) -> Connection {
        Connection {
            engine: self.clone(),
            id: self.next_connection.fetch_add(1, Ordering::Relaxed),
            tx,
            stuck: Arc::default(),
            session: None,
        }
    }

    /// Number of live objects, the ServerManager included.
    pub fn object_count(&self) -> usize {
        self.registry.len()
    }

    /// Releases what sessions detached longer than the period held. Runs
    /// until the engine is dropped by everybody else.
    pub async fn run_garbage_collector(self: Arc<Self>) {
        let tick =
            (self.config.gc_period / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            self.collect_garbage(Instant::now());
        }
    }

    pub(crate) fn collect_garbage(&self, now: Instant) {
        for session in self.sessions.take_expired(self.config.gc_period, now) {
            tracing::info!(session = %session.id, "session expired; releasing what only it held");
            self.drop_session(&session);
        }
    }

    /// Forgets a session and releases every object nobody else holds.
    pub(crate) fn drop_session(&self, session: &Session) {
        for id in session.take_held() {
            let Some(object) = self.registry.get(&id) else {
                continue;
            };
            let orphan = {
                let mut state = object.state.lock();
                state.holders.remove(&session.id);
                state.holders.is_empty()
            };
            if orphan {
                self.release(&object);
            }
        }
        self.events.prune();
    }
}

/// One client connection (a WebSocket).
pub struct Connection {
    engine: Arc<Engine>,
    id: u64,
    tx: mpsc::Sender<String>,
    stuck: Arc<Notify>,
    /// The session the connection last used.
    session: Option<Arc<Session>>,
}

impl Connection {
    /// Resolves when the connection must close because its client stopped reading: an event
    /// found its queue full. Its session is already detached (and kept for a reconnection).
    pub fn stuck(&self) -> impl Future<Output = ()> + Send + 'static {
        let stuck = self.stuck.clone();
        async move { stuck.notified().await }
    }

    /// Handles one text frame; returns the answer frame, if any.
    pub async fn handle_text(&mut self, text: &str) -> Option<String> {
        let request = match parse_request(text) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.error, "bad frame from client");
                return Some(response_frame(&e.id, Err(&e.error)));
            }
        };
        let id = request.id.clone();
        let answer = self.handle_request(request).await;
        id.map(|id| answer.frame(&id))
    }

    async fn handle_request(&mut self, request: Request) -> Answer {
        let session = match self.session_for(&request) {
            Ok(s) => s,
            Err(e) => return Answer::fresh(Err(e)),
        };
        let cache_key = session
            .as_ref()
            .and(request.id.as_ref())
            .map(|id| cache_key(id, &request));
        if let (Some(s), Some(key)) = (&session, &cache_key)
            && let Some(cached) = s.cached_response(key)
        {
            return Answer::Cached(cached);
        }
        let result = self
            .engine
            .dispatch(&request.method, &request.params, session.as_ref())
            .await
            .map(|mut value| {
                if let Some(s) = &session {
                    value.insert("sessionId".into(), json!(s.id));
                }
                Value::Object(value)
            });
        if let Err(e) = &result
            && tracing::enabled!(tracing::Level::DEBUG)
        {
            let params = serde_json::Value::Object(request.params.clone());
            tracing::debug!(method = %request.method, %params, error = %e, "request failed");
        }
        match (session, cache_key, request.id) {
            (Some(s), Some(key), Some(id)) => {
                let frame = response_frame(&id, result.as_ref());
                s.cache_response(key, frame.clone());
                Answer::Cached(frame)
            }
            _ => Answer::fresh(result),
        }
    }

    /// Finds the session a request belongs to, creating or attaching as
    /// Kurento does. `ping` never creates one.
    fn session_for(&mut self, request: &Request) -> Result<Option<Arc<Session>>, RpcError> {
        let named = request.params.get("sessionId").and_then(Value::as_str);
        let session = match (request.method.as_str(), named) {
            ("connect", Some(id)) => self.engine.sessions.get(id).ok_or_else(|| {
                RpcError::new(ErrorCode::InvalidSession, format!("invalid session '{id}'"))
            })?,
            ("connect", None) => self.engine.sessions.create(),
            ("ping", None) => return Ok(self.session.clone()),
            (_, Some(id)) => match &self.session {
                Some(s) if &*s.id == id => s.clone(),
                _ => self.engine.sessions.get_or_create(id),
            },
            (_, None) => match &self.session {
                Some(s) => s.clone(),
                None => self.engine.sessions.create(),
            },
        };
        if self
            .session
            .as_ref()
            .is_none_or(|s| !Arc::ptr_eq(s, &session))
        {
            if let Some(old) = self.session.take() {
                old.detach(self.id);
            }
            session.attach(Outbound {
                connection: self.id,
                tx: self.tx.clone(),
                stuck: self.stuck.clone(),
            });
            self.session = Some(session.clone());
        }
        Ok(Some(session))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(s) = &self.session {
            s.detach(self.id);
        }
    }
}

enum Answer {
    Fresh(Result<Value, RpcError>),
    Cached(String),
}

impl Answer {
    fn fresh(result: Result<Value, RpcError>) -> Self {
        Answer::Fresh(result)
    }

    fn frame(self, id: &Value) -> String {
        match self {
            Answer::Fresh(result) => response_frame(id, result.as_ref()),
            Answer::Cached(frame) => frame,
        }
    }
}

/// What identifies a retried request: its id, method and params, but not
/// the session id, which a client learns from the first answer and may add
/// when it retries.
fn cache_key(id: &Value, request: &Request) -> String {
    let mut params = request.params.clone();
    params.remove("sessionId");
    format!("{id}\u{0}{}\u{0}{}", request.method, Value::Object(params))
}

/// A JSON object, as results are built.
pub(crate) type Fields = Map<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;

    struct Client {
        conn: Connection,
        rx: mpsc::Receiver<String>,
        next_id: u64,
    }

    impl Client {
        fn new(engine: &Arc<Engine>) -> Self {
            Self::with_queue(engine, 64)
        }

        fn with_queue(engine: &Arc<Engine>, frames: usize) -> Self {
            let (tx, rx) = mpsc::channel(frames);
            Self {
                conn: engine.connect(tx),
                rx,
                next_id: 0,
            }
        }

        async fn send(&mut self, method: &str, params: Value) -> Value {
            self.next_id += 1;
            let frame =
                json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
            let answer = self.conn.handle_text(&frame.to_string()).await.unwrap();
            serde_json::from_str(&answer).unwrap()
        }

        async fn value(&mut self, method: &str, params: Value) -> Value {
            let answer = self.send(method, params).await;
            assert!(answer.get("error").is_none(), "{answer}");
            answer["result"]["value"].clone()
        }

        fn events(&mut self) -> Vec<Value> {
            std::iter::from_fn(|| self.rx.try_recv().ok())
                .map(|t| serde_json::from_str(&t).unwrap())
                .collect()
        }
    }

    fn engine(gc_period: Duration) -> Arc<Engine> {
        Engine::new(EngineConfig {
            gc_period,
            metadata: String::new(),
        })
    }

    #[tokio::test]
    async fn ping_needs_no_session_and_create_makes_one() {
        let e = engine(Duration::from_secs(60));
        let mut c = Client::new(&e);
        let pong = c.send("ping", json!({"interval": 5000})).await;
        assert_eq!(pong["result"], json!({"value": "pong"}));
        let created = c.send("create", json!({"type": "MediaPipeline"})).await;
        assert!(created["result"]["sessionId"].is_string());
        let id = created["result"]["value"].as_str().unwrap();
        assert!(id.ends_with("_kurento.MediaPipeline"));
        assert_eq!(e.object_count(), 2);
    }

    #[tokio::test]
    async fn notifications_get_no_answer() {
        let e = engine(Duration::from_secs(60));
        let mut c = Client::new(&e);
        let answer = c
            .conn
            .handle_text(r#"{"jsonrpc":"2.0","method":"ping"}"#)
            .await;
        assert!(answer.is_none());
    }

    #[tokio::test]
    async fn release_cascades_and_raises_object_destroyed() {
        let e = engine(Duration::from_secs(60));
        let mut c = Client::new(&e);
        c.value(
            "subscribe",
            json!({"object": SERVER_MANAGER_ID, "type": "ObjectDestroyed"}),
        )
        .await;
        let p = c.value("create", json!({"type": "MediaPipeline"})).await;
        let a = c
            .value(
                "create",
                json!({"type": "PassThrough", "constructorParams": {"mediaPipeline": p}}),
            )
            .await;
        c.value("release", json!({"object": p})).await;
        let destroyed: Vec<Value> = c
            .events()
            .into_iter()
            .map(|ev| ev["params"]["value"]["data"]["objectId"].clone())
            .collect();
        assert_eq!(destroyed, [a, p]);
        assert_eq!(e.object_count(), 1);
    }

    #[tokio::test]
    async fn garbage_collection_releases_what_only_a_gone_session_held() {
        let e = engine(Duration::from_millis(10));
        let mut gone = Client::new(&e);
        let p = gone.value("create", json!({"type": "MediaPipeline"})).await;
        let session = gone.send("ping", json!({})).await["result"]["sessionId"].clone();
        let mut keeper = Client::new(&e);
        let kept = keeper
            .value("create", json!({"type": "MediaPipeline"}))
            .await;
        drop(gone);

        e.collect_garbage(Instant::now() + Duration::from_secs(1));
        assert!(e.registry.get(p.as_str().unwrap()).is_none());
        assert!(e.registry.get(kept.as_str().unwrap()).is_some());
        let answer = keeper.send("connect", json!({"sessionId": session})).await;
        assert_eq!(answer["error"]["code"], 40007);
    }

    #[tokio::test]
    async fn reconnecting_moves_the_session_to_the_new_connection() {
        let e = engine(Duration::from_millis(10));
        let mut first = Client::new(&e);
        let p = first
            .value("create", json!({"type": "MediaPipeline"}))
            .await;
        let session = first.send("ping", json!({})).await["result"]["sessionId"].clone();
        drop(first);
        let mut second = Client::new(&e);
        let answer = second.send("connect", json!({"sessionId": session})).await;
        assert_eq!(answer["result"]["sessionId"], session);
        e.collect_garbage(Instant::now() + Duration::from_secs(1));
        assert!(
            e.registry.get(p.as_str().unwrap()).is_some(),
            "attached sessions are kept"
        );
    }

    /// Whether the connection has been told to close since last asked.
    async fn told_to_close(c: &Client) -> bool {
        tokio::time::timeout(Duration::ZERO, c.conn.stuck())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_disconnected_and_keeps_its_session() {
        let e = engine(Duration::from_secs(60));
        let mut reader = Client::new(&e);
        let mut stuck = Client::with_queue(&e, 4);
        let p = reader
            .value("create", json!({"type": "MediaPipeline"}))
            .await;
        let mut elements = Vec::new();
        for _ in 0..2 {
            let params = json!({"type": "PassThrough", "constructorParams": {"mediaPipeline": p}});
            elements.push(reader.value("create", params).await);
        }
        let (a, b) = (&elements[0], &elements[1]);
        for c in [&mut reader, &mut stuck] {
            c.value(
                "subscribe",
                json!({"object": a, "type": "ElementConnected"}),
            )
            .await;
        }
        let session = stuck.send("ping", json!({})).await["result"]["sessionId"].clone();
        let connect = json!({"object": a, "operation": "connect",
            "operationParams": {"sink": b, "mediaType": "VIDEO"}});
        let disconnect = json!({"object": a, "operation": "disconnect",
            "operationParams": {"sink": b, "mediaType": "VIDEO"}});
        let mut closed_at = None;
        for round in 0..10 {
            reader.value("invoke", connect.clone()).await;
            reader.value("invoke", disconnect.clone()).await;
            assert_eq!(
                reader.events().len(),
                1,
                "round {round}: the reader's event"
            );
            if told_to_close(&stuck).await {
                assert!(closed_at.replace(round).is_none(), "told once");
            }
        }
        assert_eq!(closed_at, Some(4), "the event that found the queue full");
        // The queue holds what fit; nothing was queued once the session let go of it.
        assert_eq!(stuck.events().len(), 4);
        let mut back = Client::new(&e);
        let answer = back.send("connect", json!({"sessionId": session})).await;
        assert_eq!(answer["result"]["sessionId"], session, "{answer}");
        reader.value("invoke", connect).await;
        assert_eq!(back.events().len(), 1, "the subscription survived");
        assert_eq!(reader.events().len(), 1);
    }
}
