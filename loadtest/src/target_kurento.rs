//! Driving rkms (or any Kurento Media Server) the way the Kurento tutorials' application
//! servers do: one WebSocket, a MediaPipeline per room, one WebRtcEndpoint per browser peer,
//! `processOffer`, `gatherCandidates`, candidates both ways (`IceCandidateFound` /
//! `addIceCandidate`), and `publisher.connect(subscriber)`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rtc::peer_connection::transport::RTCIceCandidateInit;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Error;
use crate::engine::{Engine, PeerSpec};
use crate::ws_rpc::WsRpc;

type Listeners = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>>;

pub struct KurentoTarget {
    rpc: Arc<WsRpc>,
    next_id: AtomicU64,
    session: Mutex<Option<String>>,
    listeners: Listeners,
}

fn key_of(frame: &Value) -> Option<String> {
    frame.get("id").map(Value::to_string)
}

impl KurentoTarget {
    pub async fn connect(url: &str) -> Result<Arc<Self>, Error> {
        let (rpc, mut events) = WsRpc::connect(url, None, key_of).await?;
        let listeners: Listeners = Arc::default();
        let router = listeners.clone();
        tokio::spawn(async move {
            while let Some(frame) = events.recv().await {
                let value = &frame["params"]["value"];
                let Some(object) = value["object"].as_str() else {
                    continue;
                };
                let listeners = router.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(tx) = listeners.get(object) {
                    let _ = tx.send(value["data"].clone());
                }
            }
        });
        Ok(Arc::new(Self {
            rpc,
            next_id: AtomicU64::new(1),
            session: Mutex::new(None),
            listeners,
        }))
    }

    /// One request; returns `result.value`.
    pub async fn call(&self, method: &str, mut params: Value) -> Result<Value, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let (Some(s), Some(p)) = (session, params.as_object_mut()) {
            p.insert("sessionId".into(), json!(s));
        }
        let frame = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.rpc.request(id.to_string(), frame).await?;
        if let Some(err) = answer.get("error") {
            return Err(Error::Rpc {
                method: method.into(),
                code: err["code"].as_i64().unwrap_or_default(),
                message: err["message"].as_str().unwrap_or_default().into(),
            });
        }
        let result = &answer["result"];
        if let Some(s) = result.get("sessionId").and_then(Value::as_str) {
            *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.to_owned());
        }
        Ok(result.get("value").cloned().unwrap_or(Value::Null))
    }

    async fn invoke(&self, object: &str, operation: &str, args: Value) -> Result<Value, Error> {
        self.call(
            "invoke",
            json!({"object": object, "operation": operation, "operationParams": args}),
        )
        .await
    }

    async fn create(&self, ty: &str, ctor: Value) -> Result<String, Error> {
        let v = self
            .call("create", json!({"type": ty, "constructorParams": ctor}))
            .await?;
        v.as_str().map(str::to_owned).ok_or(Error::Unexpected {
            method: "create".into(),
            answer: v.to_string(),
        })
    }

    pub async fn create_pipeline(&self) -> Result<String, Error> {
        self.create("MediaPipeline", json!({})).await
    }

    pub async fn release(&self, object: &str) -> Result<(), Error> {
        self.call("release", json!({"object": object}))
            .await
            .map(drop)
    }

    /// A WebRtcEndpoint in `pipeline` negotiated with a new client peer. `source` is connected
    /// to it first (a subscriber); `loopback` connects it to itself.
    pub async fn endpoint(
        &self,
        engine: &Arc<Engine>,
        pipeline: &str,
        spec: PeerSpec,
        source: Option<&str>,
        loopback: bool,
    ) -> Result<String, Error> {
        let ep = self
            .create("WebRtcEndpoint", json!({"mediaPipeline": pipeline}))
            .await?;
        let (tx, mut candidates) = mpsc::unbounded_channel();
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ep.clone(), tx);
        self.call(
            "subscribe",
            json!({"object": ep, "type": "IceCandidateFound"}),
        )
        .await?;
        if let Some(src) = source {
            self.invoke(src, "connect", json!({"sink": ep})).await?;
        }
        if loopback {
            self.invoke(&ep, "connect", json!({"sink": ep})).await?;
        }
        let shard = engine.pick_shard();
        let local = engine.exec(shard, move |s| s.offer(spec)).await??;
        let answer = self
            .invoke(&ep, "processOffer", json!({"offer": local.sdp}))
            .await?;
        let answer = answer.as_str().ok_or(Error::Unexpected {
            method: "processOffer".into(),
            answer: answer.to_string(),
        })?;
        let index = local.peer.index;
        let answer = answer.to_owned();
        engine
            .exec(shard, move |s| s.apply_answer(index, answer))
            .await??;
        let engine_for_candidates = engine.clone();
        tokio::spawn(async move {
            while let Some(data) = candidates.recv().await {
                let c = &data["candidate"];
                let Some(candidate) = c["candidate"].as_str() else {
                    continue;
                };
                let init = RTCIceCandidateInit {
                    candidate: candidate.to_owned(),
                    sdp_mid: c["sdpMid"].as_str().map(str::to_owned),
                    sdp_mline_index: c["sdpMLineIndex"]
                        .as_u64()
                        .and_then(|i| u16::try_from(i).ok()),
                    ..Default::default()
                };
                let added = engine_for_candidates
                    .exec(shard, move |s| s.add_remote_candidate(index, init))
                    .await;
                if let Ok(Err(e)) = added {
                    tracing::warn!("server candidate refused: {e}");
                }
            }
        });
        let candidate = json!({
            "__module__": "kurento",
            "__type__": "IceCandidate",
            "candidate": local.candidate.candidate,
            "sdpMid": local.candidate.sdp_mid,
            "sdpMLineIndex": local.candidate.sdp_mline_index,
        });
        self.invoke(&ep, "addIceCandidate", json!({"candidate": candidate}))
            .await?;
        self.invoke(&ep, "gatherCandidates", json!({})).await?;
        Ok(ep)
    }

    /// The server's resident memory in bytes.
    pub async fn used_memory(&self) -> Result<u64, Error> {
        let v = self
            .invoke("manager_ServerManager", "getUsedMemory", json!({}))
            .await?;
        v.as_u64().map(|kib| kib * 1024).ok_or(Error::Unexpected {
            method: "getUsedMemory".into(),
            answer: v.to_string(),
        })
    }

    /// CPU seconds the server used over the next `interval_ms` (its `getUsedCpu` percentage
    /// of the whole machine times the elapsed time and core count).
    pub async fn used_cpu_seconds(&self, interval_ms: u64, cores: f64) -> Result<f64, Error> {
        let v = self
            .invoke(
                "manager_ServerManager",
                "getUsedCpu",
                json!({"interval": interval_ms}),
            )
            .await?;
        let pct = v.as_f64().ok_or(Error::Unexpected {
            method: "getUsedCpu".into(),
            answer: v.to_string(),
        })?;
        Ok(pct / 100.0 * cores * interval_ms as f64 / 1000.0)
    }

    pub async fn cpu_count(&self) -> Result<f64, Error> {
        let v = self
            .invoke("manager_ServerManager", "getCpuCount", json!({}))
            .await?;
        Ok(v.as_f64().unwrap_or(1.0))
    }

    pub async fn close(&self) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.rpc.close().await;
    }
}
