//! TCP relay allocations (RFC 6062) driven by hand: Connect, ConnectionBind
//! and ConnectionAttempt with a TCP echo peer on loopback, their error
//! cases, timeouts, the bandwidth cap, and hostile input on control and data
//! connections.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::client::{Client, Response, Transactions};
use common::stream::{StreamClient, TCP, connection_id, tcp_echo};
use common::{config, start};
use rkms_turn::auth::long_term_key;
use rkms_turn::stun::{Class, Message, Writer, attr, method};
use rkms_turn::{RelayHandle, TurnConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USER: (&str, &str) = ("user", "pass");
const WAIT: Duration = Duration::from_secs(5);

fn tcp_config() -> TurnConfig {
    TurnConfig {
        allow_loopback_peers: true,
        users: vec!["user:pass".into(), "other:word".into()],
        tcp_connection_timeout_secs: 1,
        ..config()
    }
}

/// A control connection with a TCP allocation; gives its relayed address.
async fn tcp_allocation(relay: &RelayHandle) -> (StreamClient, SocketAddr) {
    let mut c = StreamClient::connect(relay.tcp_addrs()[0]).await;
    let r = c.allocate_tcp("user", "pass").await;
    assert_eq!((r.class, r.code), (Class::Success, None));
    let msg = r.msg();
    let relayed = msg
        .xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap())
        .unwrap();
    (c, relayed)
}

/// Connect to `peer` (after a permission) and ConnectionBind: the data connection.
async fn connected(relay: &RelayHandle, c: &mut StreamClient, peer: SocketAddr) -> StreamClient {
    assert_eq!(c.permit(peer).await.class, Class::Success);
    let r = c.connect_peer(peer).await;
    assert_eq!((r.class, r.code), (Class::Success, None));
    let (r, data) = c
        .bind_data(relay.tcp_addrs()[0], connection_id(&r.raw), USER)
        .await;
    assert_eq!((r.class, r.code), (Class::Success, None));
    data
}

async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .expect("no data")
        .unwrap();
    buf
}

/// Writes `payload` to an echo peer through `stream` while reading it back.
async fn echo_through(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = stream.split();
    let (written, back) = tokio::join!(wr.write_all(payload), async {
        let mut back = vec![0u8; payload.len()];
        tokio::time::timeout(WAIT, rd.read_exact(&mut back))
            .await
            .expect("the echo stopped")
            .map(|_| back)
    });
    written.unwrap();
    back.unwrap()
}

/// Whether the other side closed `stream` (end of stream or reset) within [`WAIT`].
async fn closed_by_relay(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn code(r: &Response) -> Option<u16> {
    assert_eq!(r.class == Class::Error, r.code.is_some());
    r.code
}

#[tokio::test]
async fn connect_then_bind_relays_bytes_both_ways() {
    let (echo, _echo) = tcp_echo().await;
    let relay = start(tcp_config()).await;
    let (mut c, relayed) = tcp_allocation(&relay).await;
    assert_eq!(relayed.ip(), common::LOOPBACK);
    let mut data = connected(&relay, &mut c, echo).await;
    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let back = echo_through(&mut data.stream, &payload).await;
    assert!(back == payload, "the echo came back different");
    // The relay counts a chunk once it is written: give it a moment.
    for _ in 0..100 {
        if relay.metrics().bytes_to_client == 100_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = relay.metrics();
    assert_eq!(
        (m.bytes_to_peer, m.bytes_to_client),
        (100_000, 100_000),
        "{m:?}"
    );
    assert!(m.packets_to_peer > 0 && m.packets_to_client > 0, "{m:?}");
    assert_eq!(
        m.allocations_active, 1,
        "a data connection is no allocation"
    );
}

#[tokio::test]
async fn a_permitted_peer_connecting_in_is_announced_and_bound() {
    let relay = start(tcp_config()).await;
    let (mut c, relayed) = tcp_allocation(&relay).await;
    // Permissions are per IP: 127.0.0.1 may come in, 127.0.0.2 may not.
    assert_eq!(
        c.permit("127.0.0.1:9".parse().unwrap()).await.class,
        Class::Success
    );
    let stranger = tokio::net::TcpSocket::new_v4().unwrap();
    stranger.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stranger = stranger.connect(relayed).await.unwrap();
    assert!(
        closed_by_relay(&mut stranger).await,
        "a peer without permission stays"
    );

    let mut peer = TcpStream::connect(relayed).await.unwrap();
    peer.write_all(b"early bytes wait for the bind")
        .await
        .unwrap();
    let raw = c.indication(WAIT).await.expect("no ConnectionAttempt");
    let msg = Message::parse(&raw).unwrap();
    assert_eq!(
        (msg.method, msg.class),
        (method::CONNECTION_ATTEMPT, Class::Indication)
    );
    let from = msg
        .xor_address(msg.get(attr::XOR_PEER_ADDRESS).unwrap())
        .unwrap();
    assert_eq!(from, peer.local_addr().unwrap());
    let (r, mut data) = c
        .bind_data(relay.tcp_addrs()[0], connection_id(&raw), USER)
        .await;
    assert_eq!(r.class, Class::Success);
    assert_eq!(data.read_bytes(29).await, b"early bytes wait for the bind");
    data.stream.write_all(b"pong").await.unwrap();
    assert_eq!(read_exact(&mut peer, 4).await, b"pong");

    // The peer closing its side closes the client's data connection.
    drop(peer);
    assert!(closed_by_relay(&mut data.stream).await);
}

#[tokio::test]
async fn connection_bind_refuses_what_it_cannot_bind() {
    let (echo, _echo) = tcp_echo().await;
    let relay = start(tcp_config()).await;
    let server = relay.tcp_addrs()[0];
    let (mut c, _) = tcp_allocation(&relay).await;
    assert_eq!(c.permit(echo).await.class, Class::Success);
    let id = connection_id(&c.connect_peer(echo).await.raw);

    let (r, _) = c.bind_data(server, id ^ 1, USER).await;
    assert_eq!(code(&r), Some(400), "unknown CONNECTION-ID");
    let (r, _) = c.bind_data(server, id, ("other", "word")).await;
    assert_eq!(code(&r), Some(441), "another user's connection");
    let (r, _) = c.bind_data(server, id, ("user", "wrong")).await;
    assert_eq!(code(&r), Some(401), "wrong password");
    let r = c
        .request(method::CONNECTION_BIND, Some(USER), |w| {
            w.u32(attr::CONNECTION_ID, id);
        })
        .await;
    assert_eq!(code(&r), Some(400), "bind on the control connection");
    let mut d = StreamClient::connect(server).await;
    let r = d
        .request(method::CONNECTION_BIND, Some(USER), |w| {
            w.attr(attr::CONNECTION_ID, &[1, 2]);
        })
        .await;
    assert_eq!(code(&r), Some(400), "short CONNECTION-ID");

    // After all that the connection is still there to bind, once.
    let (r, mut data) = c.bind_data(server, id, USER).await;
    assert_eq!(r.class, Class::Success);
    let (r, _) = c.bind_data(server, id, USER).await;
    assert_eq!(code(&r), Some(400), "bound twice");
    data.stream.write_all(b"still relays").await.unwrap();
    assert_eq!(data.read_bytes(12).await, b"still relays");

    // Over UDP there is nothing to bind.
    let mut udp = Client::new(relay.udp_addrs()[0]).await;
    let r = udp
        .request(method::CONNECTION_BIND, Some(USER), |w| {
            w.u32(attr::CONNECTION_ID, id);
        })
        .await;
    assert_eq!(code(&r), Some(400));
}

#[tokio::test]
async fn an_unbound_connection_is_closed_after_the_timeout() {
    let (echo, _echo) = tcp_echo().await;
    let relay = start(tcp_config()).await;
    let (mut c, relayed) = tcp_allocation(&relay).await;
    assert_eq!(c.permit(echo).await.class, Class::Success);
    let id = connection_id(&c.connect_peer(echo).await.raw);
    let mut peer = TcpStream::connect(relayed).await.unwrap();
    assert!(c.indication(WAIT).await.is_some());
    // The configured timeout is 1 s: the unbound peer's connection closes.
    assert!(closed_by_relay(&mut peer).await);
    let (r, _) = c.bind_data(relay.tcp_addrs()[0], id, USER).await;
    assert_eq!(code(&r), Some(400), "expired");
    // The peer's place is free again.
    assert_eq!(c.connect_peer(echo).await.class, Class::Success);
}

#[tokio::test]
async fn connect_needs_a_permitted_reachable_new_peer() {
    let (echo, _echo) = tcp_echo().await;
    let relay = start(tcp_config()).await;
    let (mut c, _) = tcp_allocation(&relay).await;
    assert_eq!(
        code(&c.connect_peer(echo).await),
        Some(403),
        "no permission"
    );
    assert_eq!(c.permit(echo).await.class, Class::Success);
    assert_eq!(c.connect_peer(echo).await.class, Class::Success);
    assert_eq!(
        code(&c.connect_peer(echo).await),
        Some(446),
        "already connected"
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    assert_eq!(
        code(&c.connect_peer(closed).await),
        Some(447),
        "nothing listens"
    );
    let r = c
        .request(method::CONNECT, Some(USER), |w| {
            w.attr(attr::XOR_PEER_ADDRESS, &[0, 1, 2]);
        })
        .await;
    assert_eq!(code(&r), Some(400), "bad XOR-PEER-ADDRESS");
    let r = c
        .request(method::CHANNEL_BIND, Some(USER), |w| {
            w.u32(attr::CHANNEL_NUMBER, 0x4000_0000)
                .xor_address(attr::XOR_PEER_ADDRESS, echo);
        })
        .await;
    assert_eq!(code(&r), Some(400), "no channels on a TCP allocation");

    // A UDP allocation has nothing to connect.
    let mut udp = StreamClient::connect(relay.tcp_addrs()[0]).await;
    let r = udp
        .request(method::ALLOCATE, Some(USER), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        })
        .await;
    assert_eq!(r.class, Class::Success);
    assert_eq!(udp.permit(echo).await.class, Class::Success);
    assert_eq!(code(&udp.connect_peer(echo).await), Some(400));
}

#[tokio::test]
async fn loopback_peers_are_refused_by_default() {
    let (echo, _echo) = tcp_echo().await;
    let relay = start(TurnConfig {
        tcp_connection_timeout_secs: 1,
        ..config()
    })
    .await;
    let (mut c, relayed) = tcp_allocation(&relay).await;
    assert_eq!(code(&c.permit(echo).await), Some(403));
    assert_eq!(code(&c.connect_peer(echo).await), Some(403));
    let mut peer = TcpStream::connect(relayed).await.unwrap();
    assert!(closed_by_relay(&mut peer).await);
    assert!(relay.metrics().peers_denied >= 2);
}

#[tokio::test]
async fn tcp_allocations_are_refused_where_rfc_6062_says_so() {
    let relay = start(tcp_config()).await;
    let mut udp = Client::new(relay.udp_addrs()[0]).await;
    let r = udp
        .request(method::ALLOCATE, Some(USER), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &TCP);
        })
        .await;
    assert_eq!(code(&r), Some(400), "TCP allocation over UDP");
    for extra in [attr::EVEN_PORT, attr::DONT_FRAGMENT] {
        let mut c = StreamClient::connect(relay.tcp_addrs()[0]).await;
        let r = c
            .request(method::ALLOCATE, Some(USER), |w| {
                w.attr(attr::REQUESTED_TRANSPORT, &TCP).attr(extra, &[]);
            })
            .await;
        assert_eq!(code(&r), Some(400), "attribute {extra:#x}");
    }
    let off = start(TurnConfig {
        tcp_relay: false,
        ..tcp_config()
    })
    .await;
    let mut c = StreamClient::connect(off.tcp_addrs()[0]).await;
    assert_eq!(code(&c.allocate_tcp("user", "pass").await), Some(442));

    let quota = start(TurnConfig {
        user_quota: 1,
        ..tcp_config()
    })
    .await;
    let _first = tcp_allocation(&quota).await;
    let mut c = StreamClient::connect(quota.tcp_addrs()[0]).await;
    assert_eq!(code(&c.allocate_tcp("user", "pass").await), Some(486));
    assert_eq!(relay.metrics().allocations_total, 0);
}

#[tokio::test]
async fn deleting_the_allocation_closes_its_connections() {
    let (echo, _echo) = tcp_echo().await;
    let relay = start(tcp_config()).await;
    let (mut c, relayed) = tcp_allocation(&relay).await;
    let mut data = connected(&relay, &mut c, echo).await;
    let r = c
        .request(method::REFRESH, Some(USER), |w| {
            w.u32(attr::LIFETIME, 0);
        })
        .await;
    assert_eq!(r.class, Class::Success);
    assert!(closed_by_relay(&mut data.stream).await);
    assert!(
        TcpStream::connect(relayed).await.is_err(),
        "the listener is gone"
    );
    assert_eq!(relay.metrics().allocations_active, 0);
}

#[tokio::test]
async fn the_bandwidth_cap_slows_a_connection_without_losing_bytes() {
    let (echo, _echo) = tcp_echo().await;
    let relay = start(TurnConfig {
        max_bps: 40_000,
        ..tcp_config()
    })
    .await;
    let (mut c, _) = tcp_allocation(&relay).await;
    let mut data = connected(&relay, &mut c, echo).await;
    let payload = vec![7u8; 60_000];
    let back = echo_through(&mut data.stream, &payload).await;
    assert!(back == payload);
    assert_eq!(relay.metrics().dropped, 0);
}

#[tokio::test]
async fn hostile_input_on_control_and_data_connections_is_survived() {
    let (echo, _echo) = tcp_echo().await;
    let relay = start(tcp_config()).await;
    let server = relay.tcp_addrs()[0];
    let (mut c, _) = tcp_allocation(&relay).await;
    let mut data = connected(&relay, &mut c, echo).await;

    // Garbage where a ConnectionBind should be: the connection is closed.
    let mut junk = TcpStream::connect(server).await.unwrap();
    junk.write_all(&[0xFF; 64]).await.unwrap();
    assert!(closed_by_relay(&mut junk).await);

    // Requests with every TCP-relay attribute mangled, on fresh connections
    // and on the control connection: answered or dropped, never a crash.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let key = long_term_key("user", &c.realm, "pass");
    for i in 0..200 {
        let m = [method::CONNECT, method::CONNECTION_BIND, method::ALLOCATE][i % 3];
        let mut raw = Vec::new();
        let mut w = Writer::new(&mut raw, m, Class::Request, [i as u8; 12]);
        for _ in 0..(next() % 4) {
            let typ = [
                attr::CONNECTION_ID,
                attr::XOR_PEER_ADDRESS,
                attr::REQUESTED_TRANSPORT,
            ][(next() % 3) as usize];
            let len = (next() % 24) as usize;
            let value: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            w.attr(typ, &value);
        }
        w.attr(attr::USERNAME, b"user")
            .attr(attr::REALM, c.realm.as_bytes())
            .attr(attr::NONCE, c.nonce.as_bytes())
            .integrity(&key);
        if i % 2 == 0 {
            let mut fresh = StreamClient::connect(server).await;
            fresh.send_raw(&raw).await;
            fresh.recv(WAIT).await.expect("no answer");
        } else {
            let fuzzed = i as u8;
            c.send_raw(&raw).await;
            let answer = c.recv(WAIT).await.expect("no answer");
            assert_eq!(answer[8], fuzzed, "answers the fuzzed request");
        }
    }

    // Bytes on a bound data connection are the peer's, not STUN.
    let stun_looking: Vec<u8> = {
        let mut raw = Vec::new();
        Writer::new(&mut raw, method::ALLOCATE, Class::Request, [3; 12])
            .attr(attr::REQUESTED_TRANSPORT, &TCP);
        raw
    };
    data.stream.write_all(&stun_looking).await.unwrap();
    assert_eq!(data.read_bytes(stun_looking.len()).await, stun_looking);
}

#[tokio::test]
async fn the_relay_connects_to_peers_from_the_relayed_address() {
    let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = start(tcp_config()).await;
    let (mut c, relayed) = tcp_allocation(&relay).await;
    let peer_addr = peer.local_addr().unwrap();
    assert_eq!(c.permit(peer_addr).await.class, Class::Success);
    assert_eq!(c.connect_peer(peer_addr).await.class, Class::Success);
    let (_, from) = peer.accept().await.unwrap();
    assert_eq!(from, relayed);
}
