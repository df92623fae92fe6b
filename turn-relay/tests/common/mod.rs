//! Shared by the integration tests: an in-process relay on loopback and
//! coturn's test clients, which must be installed (Debian package `coturn`).

#![allow(dead_code, clippy::unwrap_used)]

pub mod client;
pub mod stream;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use rkms_turn::{Relay, RelayHandle, TurnConfig};
use tokio::process::{Child, Command};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A relay config on loopback, port 0, user `user:pass`, REST secret `rest-secret`.
pub fn config() -> TurnConfig {
    TurnConfig {
        listening_ips: vec![LOOPBACK],
        listening_port: 0,
        relay_ips: vec![LOOPBACK],
        users: vec!["user:pass".into()],
        static_auth_secrets: vec!["rest-secret".into()],
        ..TurnConfig::default()
    }
}

pub async fn start(config: TurnConfig) -> RelayHandle {
    Relay::start(config).await.unwrap()
}

pub fn require(program: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is missing: install the Debian package `coturn` (scripts/test.sh does)"
    );
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `turnutils_peer`, an echo peer on loopback; killed on drop.
pub struct EchoPeer {
    pub port: u16,
    _child: Child,
}

pub async fn echo_peer() -> EchoPeer {
    require("turnutils_peer");
    let port = free_udp_port();
    let child = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    EchoPeer {
        port,
        _child: child,
    }
}

/// What a `turnutils_uclient` run reported.
#[derive(Debug)]
pub struct UclientRun {
    pub success: bool,
    pub sent: u64,
    pub received: u64,
    pub lost: Option<u64>,
    pub output: String,
}

/// Runs `turnutils_uclient` against `turn` with extra flags (e.g. `-t`, `-u`).
pub async fn uclient(turn: SocketAddr, peer_port: u16, flags: &[&str]) -> UclientRun {
    require("turnutils_uclient");
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(flags)
        .args([
            "-p",
            &turn.port().to_string(),
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port.to_string(),
            "-X",
        ])
        .arg(turn.ip().to_string())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("uclient hung")
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let number_after = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let totals = output
        .lines()
        .rev()
        .find(|l| l.contains("start_mclient: tot_send_msgs="));
    let lost = output
        .lines()
        .find(|l| l.contains("Total lost packets"))
        .and_then(|l| number_after(l, "Total lost packets"));
    UclientRun {
        success: out.status.success(),
        sent: totals
            .and_then(|l| number_after(l, "tot_send_msgs="))
            .unwrap_or(0),
        received: totals
            .and_then(|l| number_after(l, "tot_recv_msgs="))
            .unwrap_or(0),
        lost,
        output,
    }
}
