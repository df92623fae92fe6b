//! A hand-driven TURN client over TCP for RFC 6062 tests: a control
//! connection, the data connections it binds, and a TCP echo peer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use rkms_turn::stun::{Message, attr, method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::LOOPBACK;
use super::client::{Response, Transactions};

pub const TCP: [u8; 4] = [6, 0, 0, 0];

pub struct StreamClient {
    pub stream: TcpStream,
    pub realm: String,
    pub nonce: String,
    /// Bytes read but not yet a whole message.
    inbox: Vec<u8>,
    /// Messages that came while a response was awaited (indications).
    queued: VecDeque<Vec<u8>>,
    buf: Vec<u8>,
}

impl StreamClient {
    pub async fn connect(server: SocketAddr) -> StreamClient {
        StreamClient {
            stream: TcpStream::connect(server).await.unwrap(),
            realm: String::new(),
            nonce: String::new(),
            inbox: Vec::new(),
            queued: VecDeque::new(),
            buf: Vec::new(),
        }
    }

    /// The next message that is not a response (an indication).
    pub async fn indication(&mut self, wait: Duration) -> Option<Vec<u8>> {
        match self.queued.pop_front() {
            Some(m) => Some(m),
            None => self.recv(wait).await,
        }
    }

    pub async fn allocate_tcp(&mut self, user: &str, pass: &str) -> Response {
        self.request(method::ALLOCATE, Some((user, pass)), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &TCP);
        })
        .await
    }

    pub async fn permit(&mut self, peer: SocketAddr) -> Response {
        self.request(method::CREATE_PERMISSION, Some(("user", "pass")), |w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
        .await
    }

    pub async fn connect_peer(&mut self, peer: SocketAddr) -> Response {
        self.request(method::CONNECT, Some(("user", "pass")), |w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
        .await
    }

    /// Opens a data connection and binds it to `id` as `user`; gives the
    /// response and the connection.
    pub async fn bind_data(
        &self,
        server: SocketAddr,
        id: u32,
        (user, pass): (&str, &str),
    ) -> (Response, StreamClient) {
        let mut data = StreamClient::connect(server).await;
        data.realm = self.realm.clone();
        data.nonce = self.nonce.clone();
        let r = data
            .request(method::CONNECTION_BIND, Some((user, pass)), |w| {
                w.u32(attr::CONNECTION_ID, id);
            })
            .await;
        (r, data)
    }

    /// The next `n` bytes of a bound data connection (some may have come
    /// with the bind response).
    pub async fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out: Vec<u8> = self.inbox.drain(..n.min(self.inbox.len())).collect();
        let start = out.len();
        out.resize(n, 0);
        tokio::time::timeout(
            Duration::from_secs(5),
            self.stream.read_exact(&mut out[start..]),
        )
        .await
        .expect("no data")
        .unwrap();
        out
    }
}

impl Transactions for StreamClient {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self, wait: Duration) -> Option<Vec<u8>> {
        loop {
            if self.inbox.len() >= 20 {
                let len = 20 + usize::from(u16::from_be_bytes([self.inbox[2], self.inbox[3]]));
                if self.inbox.len() >= len {
                    return Some(self.inbox.drain(..len).collect());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(wait, self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.inbox.extend_from_slice(&chunk[..n]);
        }
    }

    fn auth_state(&mut self) -> (&mut String, &mut String, &mut Vec<u8>) {
        (&mut self.realm, &mut self.nonce, &mut self.buf)
    }

    fn unanswered(&mut self, raw: Vec<u8>) {
        self.queued.push_back(raw);
    }
}

/// The CONNECTION-ID of a Connect response or ConnectionAttempt.
pub fn connection_id(raw: &[u8]) -> u32 {
    Message::parse(raw)
        .unwrap()
        .get_u32(attr::CONNECTION_ID)
        .expect("no CONNECTION-ID")
}

/// A TCP listener on loopback that sends every byte back on each
/// connection; stops when the task is aborted.
pub async fn tcp_echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            conns.spawn(async move {
                let (mut rd, mut wr) = conn.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
            });
        }
    });
    (addr, task)
}
