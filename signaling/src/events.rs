//! Subscriptions and event delivery.
//!
//! An event is serialized once and handed to every subscribed session's
//! current connection. A session without a connection misses events, as
//! with Kurento. A connection whose queue is full has a client that stopped
//! reading its socket: rather than lose events silently (a lost
//! IceCandidateFound breaks a call unseen), the session is detached from it
//! and the connection told to close, so a live client reconnects with its
//! sessionId and knows it missed events. The element raising the event
//! never waits.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::error::TrySendError;

use crate::registry::{MediaObject, unix_time};
use crate::session::Session;

struct Subscription {
    id: String,
    event: String,
    session: Weak<Session>,
}

/// Every subscription, by the object it watches.
#[derive(Default)]
pub struct EventHub {
    by_object: Mutex<HashMap<Arc<str>, Vec<Subscription>>>,
}

impl EventHub {
    /// Subscribes `session` to `event` on `object`; returns the subscription id.
    pub fn subscribe(&self, object: &Arc<str>, event: &str, session: &Arc<Session>) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.by_object
            .lock()
            .entry(object.clone())
            .or_default()
            .push(Subscription {
                id: id.clone(),
                event: event.to_owned(),
                session: Arc::downgrade(session),
            });
        id
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&self, object: &str, subscription: &str) -> bool {
        let mut map = self.by_object.lock();
        let Some(subs) = map.get_mut(object) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|s| s.id != subscription);
        let removed = subs.len() != before;
        if subs.is_empty() {
            map.remove(object);
        }
        removed
    }

    /// Forgets every subscription to a released object.
    pub fn forget_object(&self, object: &str) {
        self.by_object.lock().remove(object);
    }

    /// Drops subscriptions whose session is gone.
    pub fn prune(&self) {
        self.by_object.lock().retain(|_, subs| {
            subs.retain(|s| s.session.strong_count() > 0);
            !subs.is_empty()
        });
    }

    /// Raises `event` on `source` with its specific `fields`.
    pub fn emit(&self, source: &MediaObject, event: &str, fields: Map<String, Value>) {
        let sessions: Vec<Arc<Session>> = {
            let map = self.by_object.lock();
            let Some(subs) = map.get(&source.id) else {
                return;
            };
            subs.iter()
                .filter(|s| s.event == event)
                .filter_map(|s| s.session.upgrade())
                .collect()
        };
        if sessions.is_empty() {
            return;
        }
        let frame = event_frame(source, event, fields);
        for session in sessions {
            let Some(out) = session.outbound() else {
                continue;
            };
            match out.tx.try_send(frame.clone()) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => {
                    if session.detach(out.connection) {
                        out.stuck.notify_one();
                        tracing::warn!(
                            session = %session.id,
                            connection = out.connection,
                            queued = out.tx.max_capacity(),
                            event,
                            object = %source.id,
                            "client stopped reading its socket: closing the connection \
                             (its session is kept for a reconnection)"
                        );
                    }
                }
            }
        }
    }
}

/// The `onEvent` notification for one event.
fn event_frame(source: &MediaObject, event: &str, fields: Map<String, Value>) -> String {
    let now = unix_time();
    let tags: Vec<Value> = {
        let state = source.state.lock();
        if state.send_tags_in_events {
            state
                .tags
                .iter()
                .map(|(k, v)| crate::values::tag(k, v))
                .collect()
        } else {
            Vec::new()
        }
    };
    let mut data = Map::new();
    data.insert("source".into(), json!(source.id));
    data.insert("type".into(), json!(event));
    data.insert("timestamp".into(), json!(now.as_secs().to_string()));
    data.insert("timestampMillis".into(), json!(now.as_millis().to_string()));
    data.insert("tags".into(), Value::Array(tags));
    data.extend(fields);
    json!({
        "jsonrpc": "2.0",
        "method": "onEvent",
        "params": { "value": { "object": source.id, "type": event, "data": data } },
    })
    .to_string()
}
