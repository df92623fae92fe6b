//! The relay against coturn's own clients: `turnutils_stunclient`,
//! `turnutils_uclient` (UDP, TCP, and TCP relay allocations) and
//! `turnutils_peer` on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{config, echo_peer, require, start, uclient};
use rkms_turn::TurnConfig;
use rkms_turn::auth::rest_password;

fn loopback_allowed() -> TurnConfig {
    TurnConfig {
        allow_loopback_peers: true,
        ..config()
    }
}

/// 2 clients × 10 messages, each with an RTP and an RTCP allocation.
const LOAD: [&str; 4] = ["-n", "10", "-m", "2"];

fn assert_all_echoed(run: &common::UclientRun) {
    assert!(run.success, "uclient failed:\n{}", run.output);
    assert_eq!(run.sent, 20, "uclient output:\n{}", run.output);
    assert_eq!(run.received, run.sent, "messages lost:\n{}", run.output);
    assert_eq!(run.lost, Some(0), "uclient output:\n{}", run.output);
}

#[tokio::test]
async fn stunclient_learns_its_reflexive_address() {
    require("turnutils_stunclient");
    let relay = start(config()).await;
    let port = relay.udp_addrs()[0].port().to_string();
    let out = tokio::process::Command::new("turnutils_stunclient")
        .args(["-p", &port, "127.0.0.1"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("UDP reflexive addr: 127.0.0.1:"),
        "{text}"
    );
}

#[tokio::test]
async fn uclient_udp_channels_relay_every_message() {
    let peer = echo_peer().await;
    let relay = start(loopback_allowed()).await;
    let run = uclient(
        relay.udp_addrs()[0],
        peer.port,
        &[&LOAD[..], &["-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert_all_echoed(&run);
    let m = relay.metrics();
    assert!(
        m.packets_to_peer >= 20 && m.packets_to_client >= 20,
        "{m:?}"
    );
    assert!(m.bytes_to_peer >= 20 * 100, "{m:?}");
    assert!(m.allocations_total >= 2, "{m:?}");
}

#[tokio::test]
async fn uclient_udp_send_indications_relay_every_message() {
    let peer = echo_peer().await;
    let relay = start(loopback_allowed()).await;
    let run = uclient(
        relay.udp_addrs()[0],
        peer.port,
        &[&LOAD[..], &["-s", "-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert_all_echoed(&run);
    assert!(relay.metrics().packets_to_client >= 20);
}

#[tokio::test]
async fn uclient_tcp_relays_every_message() {
    let peer = echo_peer().await;
    let relay = start(loopback_allowed()).await;
    let run = uclient(
        relay.tcp_addrs()[0],
        peer.port,
        &[&LOAD[..], &["-t", "-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert_all_echoed(&run);
    let m = relay.metrics();
    assert!(
        m.packets_to_peer >= 20 && m.packets_to_client >= 20,
        "{m:?}"
    );
}

#[tokio::test]
async fn rest_api_credentials_work_until_they_expire() {
    let peer = echo_peer().await;
    let relay = start(loopback_allowed()).await;
    let turn = relay.udp_addrs()[0];

    // Minted as an app server would for coturn: username "expiry:user".
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let username = format!("{expiry}:alice");
    let password = rest_password(b"rest-secret", &username);
    let run = uclient(
        turn,
        peer.port,
        &[&LOAD[..], &["-u", &username, "-w", &password]].concat(),
    )
    .await;
    assert_all_echoed(&run);

    // The relay's own minted credentials (what rkms hands its endpoints).
    let own = relay.mint_credentials("rkms", Duration::from_secs(60));
    let run = uclient(
        turn,
        peer.port,
        &[&LOAD[..], &["-u", &own.username, "-w", &own.password]].concat(),
    )
    .await;
    assert_all_echoed(&run);

    let before = relay.metrics().auth_failures;
    let expired = "1000:alice";
    let run = uclient(
        turn,
        peer.port,
        &[
            "-n",
            "2",
            "-u",
            expired,
            "-w",
            &rest_password(b"rest-secret", expired),
        ],
    )
    .await;
    assert!(
        !run.success && run.output.contains("Cannot complete Allocation"),
        "{}",
        run.output
    );
    assert!(relay.metrics().auth_failures > before);

    let forged = format!("{expiry}:mallory");
    let run = uclient(
        turn,
        peer.port,
        &[
            "-n",
            "2",
            "-u",
            &forged,
            "-w",
            &rest_password(b"other-secret", &forged),
        ],
    )
    .await;
    assert!(!run.success, "{}", run.output);
}

#[tokio::test]
async fn wrong_password_cannot_allocate() {
    let peer = echo_peer().await;
    let relay = start(loopback_allowed()).await;
    let run = uclient(
        relay.udp_addrs()[0],
        peer.port,
        &["-n", "2", "-u", "user", "-w", "wrong"],
    )
    .await;
    assert!(
        !run.success && run.output.contains("Cannot complete Allocation"),
        "{}",
        run.output
    );
    let m = relay.metrics();
    assert!(m.auth_failures > 0 && m.allocations_total == 0, "{m:?}");
    let run = uclient(
        relay.tcp_addrs()[0],
        peer.port,
        &["-t", "-n", "2", "-u", "nobody", "-w", "pass"],
    )
    .await;
    assert!(!run.success, "{}", run.output);
}

#[tokio::test]
async fn loopback_peer_is_refused_by_default() {
    let peer = echo_peer().await;
    let relay = start(config()).await;
    let run = uclient(
        relay.udp_addrs()[0],
        peer.port,
        &[&LOAD[..], &["-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert!(!run.success && run.output.contains("403"), "{}", run.output);
    let m = relay.metrics();
    assert!(m.peers_denied > 0, "{m:?}");
    assert_eq!((m.packets_to_peer, m.packets_to_client), (0, 0), "{m:?}");
}

#[tokio::test]
async fn allowed_peer_range_opens_loopback_without_the_global_switch() {
    let peer = echo_peer().await;
    let relay = start(TurnConfig {
        allowed_peer_ips: vec!["127.0.0.1".into()],
        ..config()
    })
    .await;
    let run = uclient(
        relay.udp_addrs()[0],
        peer.port,
        &[&LOAD[..], &["-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert_all_echoed(&run);
}

#[tokio::test]
async fn uclient_over_tls_relays_every_message() {
    let dir = std::env::temp_dir().join(format!("rkms-turn-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let peer = echo_peer().await;
    let relay = start(TurnConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_listening_port: 0,
        ..loopback_allowed()
    })
    .await;
    let run = uclient(
        relay.tls_addrs()[0],
        peer.port,
        &[&LOAD[..], &["-t", "-S", "-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert_all_echoed(&run);
    assert!(relay.metrics().packets_to_client >= 20);
    // TCP relay allocations, with their data connections over TLS too.
    let run = uclient(
        relay.tls_addrs()[0],
        peer.port,
        &[&LOAD[..], &["-T", "-S", "-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert_all_echoed(&run);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn own_media_sockets_are_reachable_and_nothing_else_on_their_ip() {
    let media = echo_peer().await;
    let other = echo_peer().await;
    // uclient's second client talks to the peer's next port, where
    // turnutils_peer also listens.
    let media_addrs = [media.port, media.port + 1]
        .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .to_vec();
    let relay = rkms_turn::Relay::start_for_media(config(), media_addrs)
        .await
        .unwrap();
    let turn = relay.udp_addrs()[0];
    for transport in [&[][..], &["-s"], &["-t"]] {
        let turn = if transport == ["-t"] {
            relay.tcp_addrs()[0]
        } else {
            turn
        };
        let flags = [&LOAD[..], transport, &["-u", "user", "-w", "pass"]].concat();
        assert_all_echoed(&uclient(turn, media.port, &flags).await);
        let refused = uclient(turn, other.port, &flags).await;
        assert!(
            !refused.success && refused.output.contains("403"),
            "{}",
            refused.output
        );
    }
}

/// `-T`: pairs of TCP allocations (RFC 6062); one of each pair Connects to
/// the other's relayed address, which gets a ConnectionAttempt; both bind
/// data connections and exchange every message through them. `-T` ignores
/// the peer (`-e`, `-r`).
#[tokio::test]
async fn uclient_tcp_relay_allocations_reach_each_other() {
    let relay = start(loopback_allowed()).await;
    let run = uclient(
        relay.tcp_addrs()[0],
        9,
        &[&LOAD[..], &["-T", "-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert_all_echoed(&run);
    let m = relay.metrics();
    assert!(m.allocations_total >= 2, "{m:?}");
    assert!(
        m.bytes_to_peer >= 20 * 100 && m.bytes_to_client >= 20 * 100,
        "{m:?}"
    );
}

/// `-P`: a plain TCP peer connects in to the relayed address (ConnectionAttempt only).
#[tokio::test]
async fn uclient_passive_tcp_relay_takes_a_peer_connecting_in() {
    let relay = start(loopback_allowed()).await;
    let run = uclient(
        relay.tcp_addrs()[0],
        9,
        &[&LOAD[..], &["-P", "-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    // Both sides send 10; uclient counts only what its client side receives
    // in this mode (it reports the same 20/10 against coturn's turnserver).
    assert!(run.success, "uclient failed:\n{}", run.output);
    assert_eq!(
        (run.sent, run.received),
        (20, 10),
        "uclient output:\n{}",
        run.output
    );
    let m = relay.metrics();
    assert!(
        m.bytes_to_peer >= 10 * 100 && m.bytes_to_client >= 10 * 100,
        "{m:?}"
    );
}

#[tokio::test]
async fn uclient_tcp_relay_to_loopback_is_refused_by_default() {
    let relay = start(config()).await;
    let run = uclient(
        relay.tcp_addrs()[0],
        9,
        &[&LOAD[..], &["-T", "-u", "user", "-w", "pass"]].concat(),
    )
    .await;
    assert!(!run.success && run.output.contains("403"), "{}", run.output);
    let m = relay.metrics();
    assert!(m.peers_denied > 0, "{m:?}");
    assert_eq!((m.bytes_to_peer, m.bytes_to_client), (0, 0), "{m:?}");
}

#[tokio::test]
async fn uclient_tcp_relay_with_a_wrong_password_cannot_allocate() {
    let relay = start(loopback_allowed()).await;
    let run = uclient(
        relay.tcp_addrs()[0],
        9,
        &["-T", "-n", "2", "-u", "user", "-w", "wrong"],
    )
    .await;
    assert!(!run.success, "{}", run.output);
    let m = relay.metrics();
    assert!(m.auth_failures > 0 && m.allocations_total == 0, "{m:?}");
}
