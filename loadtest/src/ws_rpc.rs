//! A WebSocket carrying many concurrent requests: answers are matched to their request by a
//! key (Kurento's JSON-RPC `id`, Janus's `transaction`); everything else (events, acks) goes to
//! one channel for the caller to route.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::Error;

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

pub struct WsRpc {
    sink: tokio::sync::Mutex<Sink>,
    pending: Pending,
}

impl WsRpc {
    /// Connects to `url`, offering `subprotocol` if given. `key_of` names the request a frame
    /// answers; frames it returns `None` for go to the returned channel.
    pub async fn connect(
        url: &str,
        subprotocol: Option<&str>,
        key_of: fn(&Value) -> Option<String>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Value>), Error> {
        let mut request = url.into_client_request()?;
        if let Some(p) = subprotocol {
            let value = p.parse().map_err(|_| Error::Unexpected {
                method: "connect".into(),
                answer: format!("bad subprotocol {p}"),
            })?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
        }
        let (ws, _) = connect_async(request).await?;
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    tracing::warn!("unparsable frame: {text}");
                    continue;
                };
                let waiter = key_of(&frame).and_then(|k| {
                    reader_pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&k)
                });
                match waiter {
                    Some(w) => {
                        let _ = w.send(frame);
                    }
                    None => {
                        let _ = events_tx.send(frame);
                    }
                }
            }
            // Dropping the waiters fails every request still waiting.
            reader_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        });
        Ok((
            Arc::new(Self {
                sink: tokio::sync::Mutex::new(sink),
                pending,
            }),
            events_rx,
        ))
    }

    /// Sends `frame` and waits for the frame whose key is `key`.
    pub async fn request(&self, key: String, frame: Value) -> Result<Value, Error> {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, tx);
        self.send(frame).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Sends `frame` without waiting for anything.
    pub async fn send(&self, frame: Value) -> Result<(), Error> {
        self.sink
            .lock()
            .await
            .send(Message::text(frame.to_string()))
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self.sink.lock().await.close().await;
    }
}
