//! A hand-driven TURN client over UDP, for protocol-level tests.

use std::net::SocketAddr;
use std::time::Duration;

use rkms_turn::auth::long_term_key;
use rkms_turn::stun::{Class, Message, Writer, attr, method};
use tokio::net::UdpSocket;

use super::LOOPBACK;

/// A hand-driven TURN client over UDP.
pub struct Client {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub realm: String,
    pub nonce: String,
    buf: Vec<u8>,
}

pub struct Response {
    pub class: Class,
    pub code: Option<u16>,
    pub raw: Vec<u8>,
}

impl Response {
    pub fn msg(&self) -> Message<'_> {
        Message::parse(&self.raw).unwrap()
    }

    /// The REALM and NONCE of a 401 challenge.
    pub fn realm_and_nonce(&self) -> (String, String) {
        let msg = self.msg();
        let get = |a| msg.get_str(a).unwrap().to_owned();
        (get(attr::REALM), get(attr::NONCE))
    }

    /// `raw` as the response to transaction `tid`, if it is that.
    pub fn answering(tid: [u8; 12], raw: Vec<u8>) -> Option<Response> {
        let msg = Message::parse(&raw).ok()?;
        if msg.transaction_id != tid {
            return None;
        }
        let code = msg
            .get(attr::ERROR_CODE)
            .map(|v| u16::from(v[2]) * 100 + u16::from(v[3]));
        Some(Response {
            class: msg.class,
            code,
            raw,
        })
    }
}

/// Writes a request built by `fill` into `buf`, signed with `auth` under
/// `(realm, nonce)` when given; returns its transaction id.
pub fn encode_request(
    buf: &mut Vec<u8>,
    m: u16,
    auth: Option<(&str, &str)>,
    (realm, nonce): (&str, &str),
    fill: &impl Fn(&mut Writer<'_>),
) -> [u8; 12] {
    let tid: [u8; 12] = rand_tid();
    let mut w = Writer::new(buf, m, Class::Request, tid);
    fill(&mut w);
    if let Some((user, pass)) = auth {
        let key = long_term_key(user, realm, pass);
        w.attr(attr::USERNAME, user.as_bytes())
            .attr(attr::REALM, realm.as_bytes())
            .attr(attr::NONCE, nonce.as_bytes())
            .integrity(&key)
            .fingerprint();
    }
    tid
}

/// STUN transactions over a hand-driven client's transport, with the
/// long-term credentials' realm and nonce learnt from the first challenge.
#[allow(async_fn_in_trait)] // test-only, never boxed or sent across threads
pub trait Transactions {
    async fn send_raw(&mut self, bytes: &[u8]);
    /// The next whole STUN message; `None` after `wait` (or at the end of a stream).
    async fn recv(&mut self, wait: Duration) -> Option<Vec<u8>>;
    /// Realm, nonce and the buffer requests are encoded in.
    fn auth_state(&mut self) -> (&mut String, &mut String, &mut Vec<u8>);
    /// A message that came while a response was awaited; dropped unless the
    /// client keeps indications.
    fn unanswered(&mut self, _raw: Vec<u8>) {}

    /// Sends a request built by `fill`, signed with `auth` when given (after
    /// learning realm and nonce), and returns the response.
    async fn request(
        &mut self,
        m: u16,
        auth: Option<(&str, &str)>,
        fill: impl Fn(&mut Writer<'_>),
    ) -> Response {
        if auth.is_some() && self.auth_state().1.is_empty() {
            let challenge = self.exchange(m, None, &fill).await.realm_and_nonce();
            let (realm, nonce, _) = self.auth_state();
            (*realm, *nonce) = challenge;
        }
        self.exchange(m, auth, &fill).await
    }

    async fn exchange(
        &mut self,
        m: u16,
        auth: Option<(&str, &str)>,
        fill: &impl Fn(&mut Writer<'_>),
    ) -> Response {
        let (realm, nonce, buf) = self.auth_state();
        let tid = encode_request(buf, m, auth, (realm, nonce), fill);
        let bytes = buf.clone();
        self.send_raw(&bytes).await;
        loop {
            let raw = self
                .recv(Duration::from_secs(5))
                .await
                .expect("no response");
            match Response::answering(tid, raw.clone()) {
                Some(r) => return r,
                None => self.unanswered(raw),
            }
        }
    }
}

impl Client {
    pub async fn new(server: SocketAddr) -> Client {
        let sock = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        Client {
            sock,
            server,
            realm: String::new(),
            nonce: String::new(),
            buf: Vec::new(),
        }
    }

    pub async fn allocate(&mut self, user: &str, pass: &str) -> Response {
        self.request(method::ALLOCATE, Some((user, pass)), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        })
        .await
    }
}

impl Transactions for Client {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    async fn recv(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .unwrap();
        buf.truncate(n);
        Some(buf)
    }

    fn auth_state(&mut self) -> (&mut String, &mut String, &mut Vec<u8>) {
        (&mut self.realm, &mut self.nonce, &mut self.buf)
    }
}

fn rand_tid() -> [u8; 12] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let mut t = [0u8; 12];
    t[4..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    t
}

/// A UDP socket on loopback that sends every datagram back; stops when the
/// task is aborted.
pub async fn echo_socket() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let echo = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let addr = echo.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    (addr, task)
}
