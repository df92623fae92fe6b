//! Driving Janus with the same peers: its WebSocket API (`janus-protocol`), one session, one
//! VideoRoom room per run; publishers `join` + `publish` with their offer, subscribers `join`
//! as subscribers of a feed, answer Janus's offer and `start`; loopback uses the EchoTest
//! plugin. Candidates travel inside the SDP (`trickle: false`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::Error;
use crate::engine::{Engine, PeerSpec};
use crate::ws_rpc::WsRpc;

pub struct JanusTarget {
    rpc: Arc<WsRpc>,
    next_tx: AtomicU64,
    session: u64,
    room: u64,
}

fn key_of(frame: &Value) -> Option<String> {
    if frame["janus"] == "ack" {
        return None;
    }
    frame["transaction"].as_str().map(str::to_owned)
}

fn unexpected(method: &str, answer: &Value) -> Error {
    Error::Unexpected {
        method: method.into(),
        answer: answer.to_string(),
    }
}

impl JanusTarget {
    /// Connects, creates a session (kept alive in the background) and a VideoRoom room.
    pub async fn connect(url: &str, publishers: usize) -> Result<Arc<Self>, Error> {
        let (rpc, mut events) = WsRpc::connect(url, Some("janus-protocol"), key_of).await?;
        tokio::spawn(async move {
            while let Some(frame) = events.recv().await {
                if frame["janus"] == "hangup" {
                    tracing::warn!("janus hung up a handle: {frame}");
                }
            }
        });
        let mut target = Self {
            rpc,
            next_tx: AtomicU64::new(1),
            session: 0,
            room: 0,
        };
        let created = target.request(json!({"janus": "create"})).await?;
        target.session = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| unexpected("create", &created))?;
        let admin = target.attach("janus.plugin.videoroom").await?;
        let room = 1_000_000 + crate::payload::clock_ns() % 1_000_000_000;
        target
            .message(
                admin,
                json!({
                    "request": "create", "room": room, "publishers": publishers.max(1) + 1,
                    "bitrate": 0, "audiocodec": "opus", "videocodec": "vp8",
                    "description": "rkms loadtest"
                }),
                None,
            )
            .await?;
        target.room = room;
        let target = Arc::new(target);
        let keepalive = Arc::downgrade(&target);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let Some(t) = keepalive.upgrade() else { break };
                let frame = json!({"janus": "keepalive", "session_id": t.session,
                    "transaction": t.transaction()});
                if t.rpc.send(frame).await.is_err() {
                    break;
                }
            }
        });
        Ok(target)
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next_tx.fetch_add(1, Ordering::Relaxed))
    }

    async fn request(&self, mut frame: Value) -> Result<Value, Error> {
        let tx = self.transaction();
        frame["transaction"] = json!(tx);
        if self.session != 0 {
            frame["session_id"] = json!(self.session);
        }
        let answer = self.rpc.request(tx, frame.clone()).await?;
        if answer["janus"] == "error" {
            return Err(Error::Rpc {
                method: frame["janus"].as_str().unwrap_or_default().into(),
                code: answer["error"]["code"].as_i64().unwrap_or_default(),
                message: answer["error"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
            });
        }
        Ok(answer)
    }

    async fn attach(&self, plugin: &str) -> Result<u64, Error> {
        let answer = self
            .request(json!({"janus": "attach", "plugin": plugin}))
            .await?;
        answer["data"]["id"]
            .as_u64()
            .ok_or_else(|| unexpected("attach", &answer))
    }

    /// A plugin message; returns the plugin's data and the JSEP Janus sent with it.
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<(Value, Option<Value>), Error> {
        let mut frame = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(j) = jsep {
            frame["jsep"] = j;
        }
        let answer = self.request(frame).await?;
        let data = answer["plugindata"]["data"].clone();
        if let Some(code) = data.get("error_code") {
            return Err(Error::Rpc {
                method: body["request"].as_str().unwrap_or("message").into(),
                code: code.as_i64().unwrap_or_default(),
                message: data["error"].as_str().unwrap_or_default().into(),
            });
        }
        Ok((data, answer.get("jsep").cloned()))
    }

    fn sdp_of(method: &str, jsep: Option<Value>) -> Result<String, Error> {
        let jsep = jsep.unwrap_or(Value::Null);
        jsep["sdp"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| unexpected(method, &jsep))
    }

    /// A publisher in the room; returns its feed id.
    pub async fn publish(&self, engine: &Arc<Engine>, spec: PeerSpec) -> Result<u64, Error> {
        let handle = self.attach("janus.plugin.videoroom").await?;
        let (joined, _) = self
            .message(
                handle,
                json!({"request": "join", "ptype": "publisher", "room": self.room}),
                None,
            )
            .await?;
        let feed = joined["id"]
            .as_u64()
            .ok_or_else(|| unexpected("join", &joined))?;
        let shard = engine.pick_shard();
        let local = engine.exec(shard, move |s| s.offer(spec)).await??;
        let (_, jsep) = self
            .message(
                handle,
                json!({"request": "publish", "audio": true, "video": true}),
                Some(json!({"type": "offer", "sdp": local.sdp, "trickle": false})),
            )
            .await?;
        let answer = Self::sdp_of("publish", jsep)?;
        let index = local.peer.index;
        engine
            .exec(shard, move |s| s.apply_answer(index, answer))
            .await??;
        Ok(feed)
    }

    /// A subscriber of `feed`.
    pub async fn subscribe(
        &self,
        engine: &Arc<Engine>,
        feed: u64,
        spec: PeerSpec,
    ) -> Result<(), Error> {
        let handle = self.attach("janus.plugin.videoroom").await?;
        let (_, jsep) = self
            .message(
                handle,
                json!({"request": "join", "ptype": "subscriber", "room": self.room,
                    "streams": [{"feed": feed}]}),
                None,
            )
            .await?;
        let offer = Self::sdp_of("join", jsep)?;
        let shard = engine.pick_shard();
        let local = engine.exec(shard, move |s| s.answer(spec, offer)).await??;
        self.message(
            handle,
            json!({"request": "start", "room": self.room}),
            Some(json!({"type": "answer", "sdp": local.sdp, "trickle": false})),
        )
        .await?;
        Ok(())
    }

    /// A peer whose media the EchoTest plugin sends back.
    pub async fn loopback(&self, engine: &Arc<Engine>, spec: PeerSpec) -> Result<(), Error> {
        let handle = self.attach("janus.plugin.echotest").await?;
        let shard = engine.pick_shard();
        let local = engine.exec(shard, move |s| s.offer(spec)).await??;
        let (_, jsep) = self
            .message(
                handle,
                json!({"audio": true, "video": true}),
                Some(json!({"type": "offer", "sdp": local.sdp, "trickle": false})),
            )
            .await?;
        let answer = Self::sdp_of("echotest", jsep)?;
        let index = local.peer.index;
        engine
            .exec(shard, move |s| s.apply_answer(index, answer))
            .await??;
        Ok(())
    }

    /// Destroys the session (and with it every handle).
    pub async fn close(&self) {
        let _ = self.request(json!({"janus": "destroy"})).await;
        self.rpc.close().await;
    }
}
