//! A minimal Kurento protocol client: one request at a time per connection,
//! as the load scenarios need.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::Error;

pub struct KurentoClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session_id: Option<String>,
}

impl KurentoClient {
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let (ws, _) = connect_async(url).await?;
        Ok(Self {
            ws,
            next_id: 0,
            session_id: None,
        })
    }

    /// Sends one request and waits for its answer; returns `result.value`.
    /// Events arriving meanwhile are skipped.
    pub async fn call(&mut self, method: &str, mut params: Value) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        if let (Some(s), Some(p)) = (&self.session_id, params.as_object_mut()) {
            p.insert("sessionId".into(), json!(s));
        }
        let frame = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ws.send(Message::text(frame.to_string())).await?;
        loop {
            let msg = self.ws.next().await.ok_or(Error::Closed)??;
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(_) => return Err(Error::Closed),
                _ => continue,
            };
            let answer: Value = serde_json::from_str(&text).map_err(|_| Error::Unexpected {
                method: method.into(),
                answer: text.to_string(),
            })?;
            if answer.get("id") != Some(&json!(id)) {
                continue;
            }
            if let Some(err) = answer.get("error") {
                return Err(Error::Rpc {
                    method: method.into(),
                    code: err["code"].as_i64().unwrap_or_default(),
                    message: err["message"].as_str().unwrap_or_default().into(),
                });
            }
            let result = &answer["result"];
            if let Some(s) = result.get("sessionId").and_then(Value::as_str) {
                self.session_id = Some(s.to_owned());
            }
            return Ok(result.get("value").cloned().unwrap_or(Value::Null));
        }
    }

    /// Creates an object; returns its id.
    pub async fn create(&mut self, ty: &str, ctor: Value) -> Result<String, Error> {
        let v = self
            .call("create", json!({"type": ty, "constructorParams": ctor}))
            .await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Unexpected {
                method: "create".into(),
                answer: v.to_string(),
            })
    }

    pub async fn invoke(
        &mut self,
        object: &str,
        operation: &str,
        args: Value,
    ) -> Result<Value, Error> {
        self.call(
            "invoke",
            json!({"object": object, "operation": operation, "operationParams": args}),
        )
        .await
    }

    pub async fn release(&mut self, object: &str) -> Result<(), Error> {
        self.call("release", json!({"object": object}))
            .await
            .map(drop)
    }
}
