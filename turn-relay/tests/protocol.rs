//! Protocol features driven by hand over UDP: external-address mapping,
//! EVEN-PORT reservations, permission and channel lifetimes, the bandwidth cap.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::client::{Client, Transactions, echo_socket};
use common::{config, start};
use rkms_turn::TurnConfig;
use rkms_turn::stun::{Class, Message, Writer, attr, method};

fn loopback_allowed() -> TurnConfig {
    TurnConfig {
        allow_loopback_peers: true,
        ..config()
    }
}

fn relayed(r: &common::client::Response) -> std::net::SocketAddr {
    let msg = r.msg();
    msg.xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap())
        .unwrap()
}

#[tokio::test]
async fn external_ip_replaces_the_private_relay_address() {
    let relay = start(TurnConfig {
        external_ips: vec!["203.0.113.5/127.0.0.1".into()],
        ..config()
    })
    .await;
    let mut c = Client::new(relay.udp_addrs()[0]).await;
    let r = c.allocate("user", "pass").await;
    assert_eq!(r.class, Class::Success);
    assert_eq!(relayed(&r).ip().to_string(), "203.0.113.5");
    let msg = r.msg();
    let mapped = msg
        .xor_address(msg.get(attr::XOR_MAPPED_ADDRESS).unwrap())
        .unwrap();
    assert_eq!(
        mapped,
        c.sock.local_addr().unwrap(),
        "the client's own address is not mapped"
    );
    assert!(
        relay.urls().iter().all(|u| u.contains("127.0.0.1")),
        "listening address is explicit: {:?}",
        relay.urls()
    );
}

#[tokio::test]
async fn even_port_reserves_the_next_port_for_a_second_allocation() {
    let relay = start(config()).await;
    let mut rtp = Client::new(relay.udp_addrs()[0]).await;
    let r = rtp
        .request(method::ALLOCATE, Some(("user", "pass")), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                .attr(attr::EVEN_PORT, &[0x80]);
        })
        .await;
    assert_eq!(r.class, Class::Success);
    let port = relayed(&r).port();
    assert_eq!(port % 2, 0);
    let token = r.msg().get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    let mut rtcp = Client::new(relay.udp_addrs()[0]).await;
    let r = rtcp
        .request(method::ALLOCATE, Some(("user", "pass")), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                .attr(attr::RESERVATION_TOKEN, &token);
        })
        .await;
    assert_eq!(r.class, Class::Success);
    assert_eq!(relayed(&r).port(), port + 1);
    // A token works once.
    let mut again = Client::new(relay.udp_addrs()[0]).await;
    let r = again
        .request(method::ALLOCATE, Some(("user", "pass")), |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                .attr(attr::RESERVATION_TOKEN, &token);
        })
        .await;
    assert_eq!(r.code, Some(508));
}

/// Sends `payload` to `peer` in a Send indication; returns the DATA of the
/// Data indication that comes back, if any.
async fn send_and_echo(
    c: &mut Client,
    peer: std::net::SocketAddr,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    Writer::new(&mut buf, method::SEND, Class::Indication, [1; 12])
        .xor_address(attr::XOR_PEER_ADDRESS, peer)
        .attr(attr::DATA, payload);
    c.send_raw(&buf).await;
    let back = c.recv(Duration::from_millis(500)).await?;
    let msg = Message::parse(&back).unwrap();
    assert_eq!((msg.method, msg.class), (method::DATA, Class::Indication));
    assert_eq!(
        msg.xor_address(msg.get(attr::XOR_PEER_ADDRESS).unwrap()),
        Some(peer)
    );
    Some(msg.get(attr::DATA).unwrap().to_vec())
}

#[tokio::test]
async fn permissions_and_channels_expire() {
    let relay = start(TurnConfig {
        permission_lifetime_secs: 1,
        channel_lifetime_secs: 1,
        ..loopback_allowed()
    })
    .await;
    let (echo, _task) = echo_socket().await;
    let mut c = Client::new(relay.udp_addrs()[0]).await;
    assert_eq!(c.allocate("user", "pass").await.class, Class::Success);
    assert_eq!(
        send_and_echo(&mut c, echo, b"no permission yet").await,
        None
    );
    let r = c
        .request(method::CREATE_PERMISSION, Some(("user", "pass")), |w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, echo);
        })
        .await;
    assert_eq!(r.class, Class::Success);
    assert_eq!(
        send_and_echo(&mut c, echo, b"hi").await.as_deref(),
        Some(&b"hi"[..])
    );

    let r = c
        .request(method::CHANNEL_BIND, Some(("user", "pass")), |w| {
            w.u32(attr::CHANNEL_NUMBER, 0x4001_0000)
                .xor_address(attr::XOR_PEER_ADDRESS, echo);
        })
        .await;
    assert_eq!(r.class, Class::Success);
    let frame = [0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c', 0];
    c.send_raw(&frame).await;
    let back = c
        .recv(Duration::from_millis(500))
        .await
        .expect("channel data echoed");
    assert_eq!(&back[..7], &frame[..7]);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.send_raw(&frame).await;
    assert!(
        c.recv(Duration::from_millis(300)).await.is_none(),
        "channel expired"
    );
    assert_eq!(
        send_and_echo(&mut c, echo, b"late").await,
        None,
        "permission expired"
    );
    assert!(relay.metrics().dropped >= 2);
}

#[tokio::test]
async fn max_bps_caps_what_an_allocation_relays() {
    let relay = start(TurnConfig {
        max_bps: 10_000,
        ..loopback_allowed()
    })
    .await;
    let (echo, _task) = echo_socket().await;
    let mut c = Client::new(relay.udp_addrs()[0]).await;
    assert_eq!(c.allocate("user", "pass").await.class, Class::Success);
    let r = c
        .request(method::CHANNEL_BIND, Some(("user", "pass")), |w| {
            w.u32(attr::CHANNEL_NUMBER, 0x4000_0000)
                .xor_address(attr::XOR_PEER_ADDRESS, echo);
        })
        .await;
    assert_eq!(r.class, Class::Success);
    let mut frame = vec![0x40, 0x00, 0x03, 0xE8];
    frame.resize(4 + 1000, 7);
    for _ in 0..100 {
        c.send_raw(&frame).await;
    }
    let mut echoed = 0;
    while c.recv(Duration::from_millis(300)).await.is_some() {
        echoed += 1;
    }
    // One second's worth (10 kB) passes the cap right away; 100 kB do not.
    assert!((5..=12).contains(&echoed), "{echoed} of 100 came back");
    assert!(relay.metrics().dropped >= 80, "{:?}", relay.metrics());
}
