//! Hostile and broken clients: malformed datagrams, bad integrity, oversized
//! attributes, stale nonces, allocation floods. Each gets a clean error (or
//! silence) and a live allocation keeps relaying throughout.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::client::{Client, Transactions, echo_socket};
use common::{config, start};
use rkms_turn::TurnConfig;
use rkms_turn::auth::long_term_key;
use rkms_turn::stun::{Class, Message, Writer, attr, method};

/// An allocation with a channel to a local echo socket, to prove it still
/// relays after each attack.
struct LiveChannel {
    client: Client,
    _echo: tokio::task::JoinHandle<()>,
}

async fn live_channel(server: SocketAddr) -> LiveChannel {
    let (echo_addr, echo_task) = echo_socket().await;
    let mut client = Client::new(server).await;
    assert_eq!(client.allocate("user", "pass").await.class, Class::Success);
    let bound = client
        .request(method::CHANNEL_BIND, Some(("user", "pass")), |w| {
            w.u32(attr::CHANNEL_NUMBER, 0x4000_0000)
                .xor_address(attr::XOR_PEER_ADDRESS, echo_addr);
        })
        .await;
    assert_eq!(
        bound.class,
        Class::Success,
        "channel bind: {:?}",
        bound.code
    );
    LiveChannel {
        client,
        _echo: echo_task,
    }
}

impl LiveChannel {
    async fn assert_relays(&mut self) {
        let mut frame = vec![0x40, 0x00, 0x00, 0x05];
        frame.extend_from_slice(b"hello\0\0\0");
        self.client.send_raw(&frame).await;
        let back = self
            .client
            .recv(Duration::from_secs(2))
            .await
            .expect("the live allocation stopped relaying");
        assert_eq!(&back[..9], &frame[..9]);
    }
}

fn relay_config() -> TurnConfig {
    TurnConfig {
        allow_loopback_peers: true,
        ..config()
    }
}

#[tokio::test]
async fn malformed_datagrams_are_dropped_and_nothing_else_is_disturbed() {
    let relay = start(relay_config()).await;
    let server = relay.udp_addrs()[0];
    let mut live = live_channel(server).await;
    let mut attacker = Client::new(server).await;

    let mut valid = Vec::new();
    Writer::new(&mut valid, method::BINDING, Class::Request, [9; 12]).attr(attr::SOFTWARE, b"abcd");
    let mut lying_attr = valid.clone();
    lying_attr[22..24].copy_from_slice(&0xFFFFu16.to_be_bytes());
    let mut lying_len = valid.clone();
    lying_len[2..4].copy_from_slice(&0xFFF0u16.to_be_bytes());
    let mut bad_cookie = valid.clone();
    bad_cookie[5] ^= 0x55;
    let mut bad_fingerprint = Vec::new();
    Writer::new(
        &mut bad_fingerprint,
        method::BINDING,
        Class::Request,
        [8; 12],
    )
    .fingerprint();
    let n = bad_fingerprint.len();
    bad_fingerprint[n - 1] ^= 1;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0; 19],
        valid[..valid.len() - 2].to_vec(),
        lying_attr,
        lying_len,
        bad_cookie,
        bad_fingerprint,
        vec![0x40, 0x00, 0xFF, 0xFF, 1, 2, 3], // ChannelData longer than the datagram
        vec![0x7F, 0xFF, 0x00, 0x00],          // ChannelData without an allocation
        vec![0xFF; 1500],                      // neither STUN nor ChannelData
        (0..60000u32).map(|i| (i * 7919) as u8).collect(),
    ];
    for g in &garbage {
        attacker.send_raw(g).await;
    }
    assert!(
        attacker.recv(Duration::from_millis(300)).await.is_none(),
        "malformed input must get no reply"
    );
    live.assert_relays().await;
    assert!(relay.metrics().malformed >= 8, "{:?}", relay.metrics());

    // Still answers a well-formed Binding request from the same source.
    attacker.send_raw(&valid).await;
    let reply = attacker
        .recv(Duration::from_secs(2))
        .await
        .expect("binding answered");
    assert_eq!(Message::parse(&reply).unwrap().class, Class::Success);
}

#[tokio::test]
async fn wrong_or_tampered_integrity_gets_401() {
    let relay = start(relay_config()).await;
    let server = relay.udp_addrs()[0];
    let mut live = live_channel(server).await;

    let mut c = Client::new(server).await;
    let r = c.allocate("user", "not-the-password").await;
    assert_eq!((r.class, r.code), (Class::Error, Some(401)));
    assert!(r.msg().has(attr::NONCE) && r.msg().has(attr::REALM));

    // A correctly signed request altered after signing.
    let key = long_term_key("user", &c.realm, "pass");
    let mut buf = Vec::new();
    Writer::new(&mut buf, method::ALLOCATE, Class::Request, [5; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(attr::USERNAME, b"user")
        .attr(attr::REALM, c.realm.as_bytes())
        .attr(attr::NONCE, c.nonce.as_bytes())
        .integrity(&key);
    buf[24] = 6; // REQUESTED-TRANSPORT now says TCP
    c.send_raw(&buf).await;
    let reply = c.recv(Duration::from_secs(2)).await.unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(msg.class, Class::Error);
    assert_eq!(
        msg.get(attr::ERROR_CODE).map(|v| v[2..4].to_vec()),
        Some(vec![4, 1])
    );

    // A request missing USERNAME but carrying MESSAGE-INTEGRITY: 400.
    let mut buf = Vec::new();
    Writer::new(&mut buf, method::ALLOCATE, Class::Request, [6; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .integrity(&key);
    c.send_raw(&buf).await;
    let reply = c.recv(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        Message::parse(&reply)
            .unwrap()
            .get(attr::ERROR_CODE)
            .map(|v| v[2]),
        Some(4)
    );

    assert!(relay.metrics().auth_failures >= 2);
    live.assert_relays().await;
}

#[tokio::test]
async fn oversized_and_unknown_attributes_get_clean_errors() {
    let relay = start(relay_config()).await;
    let server = relay.udp_addrs()[0];
    let mut live = live_channel(server).await;

    let mut c = Client::new(server).await;
    let huge_user = "u".repeat(4000);
    let r = c.allocate(&huge_user, "pass").await;
    assert_eq!((r.class, r.code), (Class::Error, Some(401)));

    let r = c
        .request(method::ALLOCATE, Some(("user", "pass")), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                .attr(0x7777, &[0; 30000]);
        })
        .await;
    assert_eq!((r.class, r.code), (Class::Error, Some(420)));
    assert_eq!(
        r.msg().get(attr::UNKNOWN_ATTRIBUTES),
        Some(&[0x77, 0x77][..])
    );

    let r = c
        .request(method::ALLOCATE, Some(("user", "pass")), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[132, 0, 0, 0]);
        })
        .await;
    assert_eq!(r.code, Some(442), "SCTP relaying is not offered");

    // Bad peer addresses and channel numbers on a real allocation.
    assert_eq!(c.allocate("user", "pass").await.class, Class::Success);
    let r = c
        .request(method::CREATE_PERMISSION, Some(("user", "pass")), |w| {
            w.attr(attr::XOR_PEER_ADDRESS, &[0, 9, 0, 0]);
        })
        .await;
    assert_eq!(r.code, Some(400));
    let r = c
        .request(method::CHANNEL_BIND, Some(("user", "pass")), |w| {
            w.u32(attr::CHANNEL_NUMBER, 0x3FFF_0000)
                .xor_address(attr::XOR_PEER_ADDRESS, "127.0.0.1:9".parse().unwrap());
        })
        .await;
    assert_eq!(r.code, Some(400));
    live.assert_relays().await;
}

#[tokio::test]
async fn cve_2020_26262_peer_forms_are_forbidden() {
    let relay = start(config()).await;
    let mut c = Client::new(relay.udp_addrs()[0]).await;
    assert_eq!(c.allocate("user", "pass").await.class, Class::Success);
    for peer in [
        "0.0.0.0:5000",
        "127.0.0.1:5000",
        "10.0.0.1:5000",
        "224.0.0.1:5000",
    ] {
        let r = c
            .request(method::CREATE_PERMISSION, Some(("user", "pass")), |w| {
                w.xor_address(attr::XOR_PEER_ADDRESS, peer.parse().unwrap());
            })
            .await;
        assert_eq!(r.code, Some(403), "{peer}");
    }
    // IPv6 forms against an IPv4 allocation: refused either way (family or policy).
    for peer in ["[::]:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        let r = c
            .request(method::CREATE_PERMISSION, Some(("user", "pass")), |w| {
                w.xor_address(attr::XOR_PEER_ADDRESS, peer.parse().unwrap());
            })
            .await;
        assert!(matches!(r.code, Some(403 | 443)), "{peer}: {:?}", r.code);
    }
    assert!(relay.metrics().peers_denied >= 4);
}

#[tokio::test]
async fn allocation_flood_stops_at_the_quota() {
    let relay = start(TurnConfig {
        user_quota: 3,
        total_quota: 4,
        ..relay_config()
    })
    .await;
    let server = relay.udp_addrs()[0];
    let mut live = live_channel(server).await;
    let mut codes = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = Client::new(server).await;
        codes.push(c.allocate("user", "pass").await.code);
        clients.push(c);
    }
    // The live channel holds one of the user's three.
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 2, "{codes:?}");
    assert!(codes.iter().flatten().all(|c| *c == 486), "{codes:?}");
    assert_eq!(relay.metrics().quota_rejections, 8);
    live.assert_relays().await;

    // A REST user still fits under the total quota, then the total is reached.
    let expiry = rkms_turn::auth::unix_now() + 60;
    let name = format!("{expiry}:other");
    let pass = rkms_turn::auth::rest_password(b"rest-secret", &name);
    let mut c = Client::new(server).await;
    assert_eq!(c.allocate(&name, &pass).await.class, Class::Success);
    let mut c2 = Client::new(server).await;
    assert_eq!(c2.allocate(&name, &pass).await.code, Some(486));

    // Freeing one (Refresh with lifetime 0) makes room again.
    let r = clients[0].request(method::REFRESH, Some(("user", "pass")), |w| {
        w.u32(attr::LIFETIME, 0);
    });
    assert_eq!(r.await.class, Class::Success);
    assert_eq!(c2.allocate("user", "pass").await.class, Class::Success);
}

#[tokio::test]
async fn stale_nonces_are_refused_with_438_and_a_fresh_one() {
    let relay = start(TurnConfig {
        stale_nonce_secs: 1,
        ..relay_config()
    })
    .await;
    let mut c = Client::new(relay.udp_addrs()[0]).await;
    assert_eq!(c.allocate("user", "pass").await.class, Class::Success);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = c
        .request(method::REFRESH, Some(("user", "pass")), |w| {
            w.u32(attr::LIFETIME, 600);
        })
        .await;
    assert_eq!(r.code, Some(438));
    let fresh = r.msg().get_str(attr::NONCE).unwrap().to_owned();
    assert_ne!(fresh, c.nonce);
    c.nonce = fresh;
    let r = c
        .request(method::REFRESH, Some(("user", "pass")), |w| {
            w.u32(attr::LIFETIME, 600);
        })
        .await;
    assert_eq!(r.class, Class::Success);
}

#[tokio::test]
async fn allocations_expire_at_the_end_of_their_lifetime() {
    let relay = start(relay_config()).await;
    let mut live = live_channel(relay.udp_addrs()[0]).await;
    let mut c = Client::new(relay.udp_addrs()[0]).await;
    let r = c
        .request(method::ALLOCATE, Some(("user", "pass")), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                .u32(attr::LIFETIME, 1);
        })
        .await;
    assert_eq!(r.class, Class::Success);
    assert_eq!(relay.metrics().allocations_active, 2);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(relay.metrics().allocations_active, 1);
    let r = c
        .request(method::CREATE_PERMISSION, Some(("user", "pass")), |w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, "127.0.0.1:9".parse().unwrap());
        })
        .await;
    assert_eq!(r.code, Some(437), "the allocation is gone");
    live.assert_relays().await;
}
