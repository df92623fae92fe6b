//! The HTTP side: the Kurento WebSocket, `/health`, and nothing else.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use rkms_signaling::engine::OUTBOUND_QUEUE;
use rkms_signaling::frame::response_frame;
use rkms_signaling::{Engine, ErrorCode, RpcError};
use tokio::sync::mpsc;

/// Largest frame a client may send (an SDP is a few KiB).
const MAX_FRAME_BYTES: usize = 4 << 20;

/// How long a closing connection may take to flush what is queued for it.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router(engine: Arc<Engine>, ws_path: &str) -> Router {
    Router::new()
        .route(&format!("/{ws_path}"), get(upgrade))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(engine)
}

/// The parse-error answer to a binary frame that is not UTF-8 text.
fn not_utf8_answer(e: std::str::Utf8Error) -> String {
    tracing::warn!(error = %e, "binary frame is not UTF-8 text");
    let error = RpcError::new(ErrorCode::ParseError, format!("frame is not UTF-8: {e}"));
    response_frame(&serde_json::Value::Null, Err(&error))
}

async fn upgrade(ws: WebSocketUpgrade, State(engine): State<Arc<Engine>>) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| serve_socket(engine, socket))
}

/// Reads frames in order and answers each; a writer task sends answers and
/// events, so a slow client never blocks an element raising an event. A client
/// that stops reading until its queue is full is disconnected (see
/// [`rkms_signaling::Connection::stuck`]).
async fn serve_socket(engine: Arc<Engine>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut connection = engine.connect(tx.clone());
    let stuck = connection.stuck();
    let read = async {
        while let Some(message) = stream.next().await {
            // The npm kurento-client sends its JSON in binary frames.
            let answer = match message {
                Ok(Message::Text(text)) => connection.handle_text(text.as_str()).await,
                Ok(Message::Binary(bytes)) => match std::str::from_utf8(&bytes) {
                    Ok(text) => connection.handle_text(text).await,
                    Err(e) => Some(not_utf8_answer(e)),
                },
                Ok(Message::Close(_)) => break,
                Ok(Message::Ping(_) | Message::Pong(_)) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket read failed");
                    break;
                }
            };
            if let Some(answer) = answer
                && tx.send(answer).await.is_err()
            {
                break;
            }
        }
    };
    let abort = writer.abort_handle();
    tokio::select! {
        () = read => {}
        () = stuck => {
            // Nothing queued would be read: the socket closes now.
            abort.abort();
        }
    }
    drop(connection);
    drop(tx);
    if tokio::time::timeout(FLUSH_TIMEOUT, writer).await.is_err() {
        abort.abort();
    }
}
