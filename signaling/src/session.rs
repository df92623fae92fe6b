//! Client sessions.
//!
//! A session outlives its WebSocket: a client that reconnects with
//! `connect {sessionId}` finds its objects and subscriptions as it left
//! them. A session whose socket stays closed longer than the garbage
//! collector period is dropped, and the objects only it held are released.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

/// How many answers a session remembers for retried requests...
const RESPONSE_CACHE_LEN: usize = 128;
/// ...and how many bytes of them at most (a `getKmd` answer alone is 28 KiB).
const RESPONSE_CACHE_BYTES: usize = 256 * 1024;
/// What a session keeps of them once its connection closed, for the garbage collector period
/// (4 minutes by default): a reconnecting client re-sends only the requests it got no answer
/// for, the last few it sent before the connection dropped.
const DETACHED_CACHE_LEN: usize = 16;
const DETACHED_CACHE_BYTES: usize = 32 * 1024;

/// Where a session's frames go: the current connection's writer.
#[derive(Clone)]
pub struct Outbound {
    /// Identifies the connection, so a stale one cannot detach a newer one.
    pub connection: u64,
    pub tx: mpsc::Sender<String>,
    /// Woken when the connection must close: its client stopped reading.
    pub stuck: Arc<Notify>,
}

/// Remembers recent answers so a retried request gets the same answer
/// instead of, for example, creating a second pipeline.
#[derive(Default)]
struct ResponseCache {
    entries: VecDeque<CachedResponse>,
    bytes: usize,
}

struct CachedResponse {
    /// The request's id, method and params, serialized.
    key: String,
    response: String,
}

impl ResponseCache {
    fn get(&self, key: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.response.clone())
    }

    fn put(&mut self, key: String, response: String) {
        let size = key.len() + response.len();
        if size > RESPONSE_CACHE_BYTES {
            return;
        }
        self.trim(RESPONSE_CACHE_LEN - 1, RESPONSE_CACHE_BYTES - size);
        self.bytes += size;
        self.entries.push_back(CachedResponse { key, response });
    }

    /// Forgets the oldest answers until at most `len` of them and `bytes` are left.
    fn trim(&mut self, len: usize, bytes: usize) {
        while self.entries.len() > len || self.bytes > bytes {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old.key.len() + old.response.len();
        }
    }
}

/// One client session.
pub struct Session {
    pub id: Arc<str>,
    outbound: Mutex<Option<Outbound>>,
    detached_since: Mutex<Option<Instant>>,
    cache: Mutex<ResponseCache>,
    held: Mutex<HashSet<Arc<str>>>,
}

impl Session {
    fn new(id: Arc<str>) -> Self {
        Self {
            id,
            outbound: Mutex::new(None),
            detached_since: Mutex::new(None),
            cache: Mutex::new(ResponseCache::default()),
            held: Mutex::new(HashSet::new()),
        }
    }

    /// Routes the session's frames to a connection.
    pub fn attach(&self, outbound: Outbound) {
        *self.outbound.lock() = Some(outbound);
        *self.detached_since.lock() = None;
    }

    /// Called when `connection` closes; a newer connection stays attached. Returns whether
    /// `connection` was the attached one.
    pub fn detach(&self, connection: u64) -> bool {
        let mut out = self.outbound.lock();
        let attached = out.as_ref().is_some_and(|o| o.connection == connection);
        if attached {
            *out = None;
            *self.detached_since.lock() = Some(Instant::now());
            let mut cache = self.cache.lock();
            cache.trim(DETACHED_CACHE_LEN, DETACHED_CACHE_BYTES);
            cache.entries.shrink_to_fit();
        }
        attached
    }

    pub fn outbound(&self) -> Option<Outbound> {
        self.outbound.lock().clone()
    }

    fn detached_for(&self, now: Instant) -> Option<Duration> {
        self.detached_since.lock().map(|t| now.duration_since(t))
    }

    pub fn cached_response(&self, key: &str) -> Option<String> {
        self.cache.lock().get(key)
    }

    pub fn cache_response(&self, key: String, response: String) {
        self.cache.lock().put(key, response);
    }

    pub fn hold(&self, object: Arc<str>) {
        self.held.lock().insert(object);
    }

    pub fn let_go(&self, object: &str) {
        self.held.lock().remove(object);
    }

    /// Takes every object the session holds, leaving it holding none.
    pub fn take_held(&self) -> Vec<Arc<str>> {
        self.held.lock().drain().collect()
    }
}

/// Every session, by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<Arc<str>, Arc<Session>>>,
}

impl Sessions {
    /// A session with a fresh id.
    pub fn create(&self) -> Arc<Session> {
        let id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        self.get_or_create(&id)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map.lock().get(id).cloned()
    }

    /// The session with this id, created if unknown.
    pub fn get_or_create(&self, id: &str) -> Arc<Session> {
        self.map
            .lock()
            .entry(id.into())
            .or_insert_with(|| Arc::new(Session::new(id.into())))
            .clone()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.map.lock().remove(id)
    }

    pub fn ids(&self) -> Vec<Arc<str>> {
        self.map.lock().keys().cloned().collect()
    }

    /// Removes and returns sessions detached for longer than `period`.
    pub fn take_expired(&self, period: Duration, now: Instant) -> Vec<Arc<Session>> {
        let mut map = self.map.lock();
        let expired: Vec<Arc<str>> = map
            .values()
            .filter(|s| s.detached_for(now).is_some_and(|d| d >= period))
            .map(|s| s.id.clone())
            .collect();
        expired.iter().filter_map(|id| map.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(connection: u64) -> Outbound {
        let (tx, _rx) = mpsc::channel(1);
        Outbound {
            connection,
            tx,
            stuck: Arc::default(),
        }
    }

    #[test]
    fn cache_returns_the_same_answer_and_forgets_old_ones() {
        let s = Session::new("s".into());
        s.cache_response("k0".into(), "r0".into());
        assert_eq!(s.cached_response("k0").as_deref(), Some("r0"));
        for i in 1..=RESPONSE_CACHE_LEN {
            s.cache_response(format!("k{i}"), format!("r{i}"));
        }
        assert!(s.cached_response("k0").is_none());
        assert!(s.cached_response("k1").is_some());
    }

    #[test]
    fn cache_stays_within_its_byte_budget() {
        let s = Session::new("s".into());
        let big = "x".repeat(RESPONSE_CACHE_BYTES / 3);
        for i in 0..10 {
            s.cache_response(format!("k{i}"), big.clone());
        }
        let cache = s.cache.lock();
        assert!(cache.bytes <= RESPONSE_CACHE_BYTES);
        assert_eq!(cache.entries.len(), 2);
        drop(cache);
        assert!(s.cached_response("k9").is_some());
        s.cache_response("huge".into(), "y".repeat(RESPONSE_CACHE_BYTES + 1));
        assert!(s.cached_response("huge").is_none());
    }

    #[test]
    fn a_detached_session_keeps_only_its_last_answers() {
        let s = Session::new("s".into());
        s.attach(outbound(1));
        for i in 0..RESPONSE_CACHE_LEN {
            s.cache_response(format!("k{i}"), "r".repeat(1024));
        }
        s.detach(1);
        let cache = s.cache.lock();
        assert!(cache.entries.len() <= DETACHED_CACHE_LEN);
        assert!(cache.bytes <= DETACHED_CACHE_BYTES);
        assert!(cache.entries.capacity() <= DETACHED_CACHE_LEN);
        drop(cache);
        assert!(
            s.cached_response(&format!("k{}", RESPONSE_CACHE_LEN - 1))
                .is_some()
        );
        assert!(s.cached_response("k0").is_none());
    }

    #[test]
    fn stale_connection_does_not_detach_a_newer_one() {
        let s = Session::new("s".into());
        s.attach(outbound(1));
        s.attach(outbound(2));
        s.detach(1);
        assert_eq!(s.outbound().map(|o| o.connection), Some(2));
        s.detach(2);
        assert!(s.outbound().is_none());
    }

    #[test]
    fn only_sessions_detached_past_the_period_expire() {
        let sessions = Sessions::default();
        let attached = sessions.create();
        attached.attach(outbound(1));
        let gone = sessions.create();
        gone.attach(outbound(2));
        gone.detach(2);
        let later = Instant::now() + Duration::from_secs(10);
        assert!(
            sessions
                .take_expired(Duration::from_secs(60), later)
                .is_empty()
        );
        let expired = sessions.take_expired(Duration::from_secs(5), later);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, gone.id);
        assert!(sessions.get(&gone.id).is_none());
        assert!(sessions.get(&attached.id).is_some());
    }
}
