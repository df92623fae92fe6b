//! `rkms turn`: the relay on its own, with coturn's flag names, so a
//! `turnserver` command line ports over by changing the program name.
//! `-c FILE` reads a `turnserver.conf` (`key=value` or bare `key` lines);
//! options of coturn that rkms does not have are reported and skipped there,
//! and flags given on the command line win over the file.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{CommandFactory as _, FromArgMatches as _};

use crate::{Error, Relay, TurnConfig};

/// Command-line options of `rkms turn` (coturn's names and short flags).
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "rkms turn", about = "STUN/TURN relay with coturn's flags")]
pub struct TurnArgs {
    /// turnserver.conf-style configuration file.
    #[arg(short = 'c', value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Use no configuration file (accepted for coturn compatibility; the default here).
    #[arg(short = 'n')]
    pub no_config_file: bool,
    /// Listener IP address; repeat for several (default: all IPv4 addresses).
    #[arg(short = 'L', long = "listening-ip", value_name = "IP")]
    pub listening_ip: Vec<IpAddr>,
    /// UDP and TCP listener port (default 3478).
    #[arg(short = 'p', long = "listening-port", value_name = "PORT")]
    pub listening_port: Option<u16>,
    /// TLS listener port (default 5349), when --cert and --pkey are given.
    #[arg(long = "tls-listening-port", value_name = "PORT")]
    pub tls_listening_port: Option<u16>,
    /// Local address of relay sockets; repeat for several.
    #[arg(short = 'E', long = "relay-ip", value_name = "IP")]
    pub relay_ip: Vec<IpAddr>,
    /// Public address announced for relayed addresses, `public[/private]`.
    #[arg(short = 'X', long = "external-ip", value_name = "PUBLIC[/PRIVATE]")]
    pub external_ip: Vec<String>,
    /// Lower bound of the relay port range (default 49152).
    #[arg(long = "min-port", value_name = "PORT")]
    pub min_port: Option<u16>,
    /// Upper bound of the relay port range (default 65535).
    #[arg(long = "max-port", value_name = "PORT")]
    pub max_port: Option<u16>,
    /// Long-term credentials (always on; accepted for compatibility).
    #[arg(short = 'a', long = "lt-cred-mech")]
    pub lt_cred_mech: bool,
    /// Anonymous access is not offered: rkms refuses this flag.
    #[arg(short = 'z', long = "no-auth")]
    pub no_auth: bool,
    /// User account `name:password` or `name:0xKEY`; repeat for several.
    #[arg(short = 'u', long = "user", value_name = "USER:PASSWORD")]
    pub user: Vec<String>,
    /// Realm (default "rkms").
    #[arg(short = 'r', long = "realm")]
    pub realm: Option<String>,
    /// TURN REST API credentials with --static-auth-secret.
    #[arg(long = "use-auth-secret")]
    pub use_auth_secret: bool,
    /// Shared secret of the TURN REST API; repeat for several.
    #[arg(long = "static-auth-secret", value_name = "SECRET")]
    pub static_auth_secret: Vec<String>,
    /// PEM certificate chain for TLS.
    #[arg(long = "cert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long = "pkey", value_name = "FILE")]
    pub pkey: Option<PathBuf>,
    #[arg(long = "no-udp")]
    pub no_udp: bool,
    #[arg(long = "no-tcp")]
    pub no_tcp: bool,
    #[arg(long = "no-tls")]
    pub no_tls: bool,
    /// No TCP relayed addresses (RFC 6062) for TCP clients.
    #[arg(long = "no-tcp-relay")]
    pub no_tcp_relay: bool,
    /// DTLS is not offered; accepted for compatibility.
    #[arg(long = "no-dtls")]
    pub no_dtls: bool,
    /// Allow peers on loopback addresses.
    #[arg(long = "allow-loopback-peers")]
    pub allow_loopback_peers: bool,
    /// Peer addresses to refuse: `ip`, `first-last` or CIDR; repeat for several.
    #[arg(long = "denied-peer-ip", value_name = "RANGE")]
    pub denied_peer_ip: Vec<String>,
    /// Peer addresses to allow even when denied or private; repeat for several.
    #[arg(long = "allowed-peer-ip", value_name = "RANGE")]
    pub allowed_peer_ip: Vec<String>,
    /// Concurrent allocations per user (0: no limit).
    #[arg(short = 'q', long = "user-quota", value_name = "N")]
    pub user_quota: Option<u32>,
    /// Concurrent allocations in total (0: no limit).
    #[arg(short = 'Q', long = "total-quota", value_name = "N")]
    pub total_quota: Option<u32>,
    /// Bytes per second an allocation may relay in each direction (0: no cap).
    #[arg(short = 's', long = "max-bps", value_name = "BYTES")]
    pub max_bps: Option<u64>,
    /// Nonce lifetime in seconds (default 600).
    #[arg(long = "stale-nonce", value_name = "SECS", num_args = 0..=1, default_missing_value = "600", require_equals = true)]
    pub stale_nonce: Option<u64>,
    #[arg(long = "max-allocate-lifetime", value_name = "SECS")]
    pub max_allocate_lifetime: Option<u32>,
    #[arg(long = "channel-lifetime", value_name = "SECS")]
    pub channel_lifetime: Option<u32>,
    #[arg(long = "permission-lifetime", value_name = "SECS")]
    pub permission_lifetime: Option<u32>,
    /// Fingerprints are always sent; accepted for compatibility.
    #[arg(short = 'f', long = "fingerprint")]
    pub fingerprint: bool,
    /// Accepted for compatibility; logging follows RUST_LOG.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Accepted for compatibility (rkms has no telnet CLI).
    #[arg(long = "no-cli")]
    pub no_cli: bool,
    /// Accepted for compatibility; rkms logs to standard error.
    #[arg(long = "log-file", value_name = "FILE")]
    pub log_file: Option<String>,
    /// Accepted for compatibility.
    #[arg(long = "simple-log")]
    pub simple_log: bool,
    /// Multicast peers are always refused unless allowed; accepted for compatibility.
    #[arg(long = "no-multicast-peers")]
    pub no_multicast_peers: bool,
}

impl TurnArgs {
    /// Fills what the command line left unset from `file`.
    fn merged_with(mut self, file: TurnArgs) -> TurnArgs {
        macro_rules! take {
            (opt: $($f:ident),*; list: $($l:ident),*; flag: $($b:ident),*) => {
                $( if self.$f.is_none() { self.$f = file.$f; } )*
                $( if self.$l.is_empty() { self.$l = file.$l; } )*
                $( self.$b |= file.$b; )*
            };
        }
        take!(
            opt: listening_port, tls_listening_port, min_port, max_port, realm, cert, pkey, user_quota,
                 total_quota, max_bps, stale_nonce, max_allocate_lifetime, channel_lifetime, permission_lifetime,
                 log_file;
            list: listening_ip, relay_ip, external_ip, user, static_auth_secret, denied_peer_ip, allowed_peer_ip;
            flag: lt_cred_mech, no_auth, use_auth_secret, no_udp, no_tcp, no_tls, no_tcp_relay, no_dtls, allow_loopback_peers,
                  fingerprint, verbose, no_cli, simple_log, no_multicast_peers
        );
        self
    }

    /// Resolves the options into the relay's configuration.
    pub fn to_config(&self) -> Result<TurnConfig, Error> {
        if self.no_auth {
            return Err(Error::Config(
                "--no-auth: rkms does not run an open relay; give --user or --static-auth-secret"
                    .into(),
            ));
        }
        let d = TurnConfig::default();
        let secrets = if self.use_auth_secret {
            self.static_auth_secret.clone()
        } else {
            if !self.static_auth_secret.is_empty() {
                tracing::warn!(
                    "--static-auth-secret is ignored without --use-auth-secret (as in coturn)"
                );
            }
            Vec::new()
        };
        if self.use_auth_secret && secrets.is_empty() {
            return Err(Error::Config(
                "--use-auth-secret needs --static-auth-secret".into(),
            ));
        }
        if self.user.is_empty() && secrets.is_empty() {
            return Err(Error::Config("no credentials: give --user NAME:PASSWORD or --use-auth-secret --static-auth-secret SECRET".into()));
        }
        Ok(TurnConfig {
            enabled: true,
            listening_ips: if self.listening_ip.is_empty() {
                d.listening_ips
            } else {
                self.listening_ip.clone()
            },
            listening_port: self.listening_port.unwrap_or(d.listening_port),
            tls_listening_port: self.tls_listening_port.unwrap_or(d.tls_listening_port),
            udp: !self.no_udp,
            tcp: !self.no_tcp,
            tls_cert: self.cert.clone().filter(|_| !self.no_tls),
            tls_key: self.pkey.clone().filter(|_| !self.no_tls),
            relay_ips: self.relay_ip.clone(),
            external_ips: self.external_ip.clone(),
            min_port: self.min_port.unwrap_or(d.min_port),
            max_port: self.max_port.unwrap_or(d.max_port),
            realm: self.realm.clone().unwrap_or(d.realm),
            users: self.user.clone(),
            static_auth_secrets: secrets,
            allow_loopback_peers: self.allow_loopback_peers,
            allowed_peer_ips: self.allowed_peer_ip.clone(),
            denied_peer_ips: self.denied_peer_ip.clone(),
            user_quota: self.user_quota.unwrap_or(d.user_quota),
            total_quota: self.total_quota.unwrap_or(d.total_quota),
            max_bps: self.max_bps.unwrap_or(d.max_bps),
            stale_nonce_secs: self.stale_nonce.unwrap_or(d.stale_nonce_secs),
            default_lifetime_secs: d.default_lifetime_secs,
            max_allocate_lifetime_secs: self
                .max_allocate_lifetime
                .unwrap_or(d.max_allocate_lifetime_secs),
            permission_lifetime_secs: self
                .permission_lifetime
                .unwrap_or(d.permission_lifetime_secs),
            channel_lifetime_secs: self.channel_lifetime.unwrap_or(d.channel_lifetime_secs),
            tcp_relay: !self.no_tcp_relay,
            tcp_connection_timeout_secs: d.tcp_connection_timeout_secs,
        })
    }
}

/// Reads a turnserver.conf into the options it sets.
pub fn parse_config_file(path: &std::path::Path) -> Result<TurnArgs, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let cmd = TurnArgs::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    let mut argv = vec!["turn".to_owned()];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (line, None),
        };
        if !known.iter().any(|k| k == key) {
            tracing::warn!(file = %path.display(), line = n + 1, key, "option not supported by rkms turn; skipped");
            continue;
        }
        argv.push(match value {
            Some(v) => format!("--{key}={v}"),
            None => format!("--{key}"),
        });
    }
    let matches = cmd
        .try_get_matches_from(argv)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    TurnArgs::from_arg_matches(&matches).map_err(|e| Error::Config(e.to_string()))
}

/// Runs the relay until Ctrl-C or SIGTERM.
pub async fn run(args: TurnArgs) -> Result<(), Error> {
    let args = match args.config_file.clone() {
        Some(path) => {
            let file = parse_config_file(&path)?;
            args.merged_with(file)
        }
        None => args,
    };
    let relay = Relay::start(args.to_config()?).await?;
    // Scripts and tests read these two lines (the ports when 0 was asked,
    // and what was relayed).
    let list = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "rkms turn listening: udp={} tcp={} tls={}",
        list(relay.udp_addrs()),
        list(relay.tcp_addrs()),
        list(relay.tls_addrs())
    );
    shutdown_signal().await?;
    let metrics = serde_json::to_string(&relay.metrics()).unwrap_or_default();
    println!("rkms turn metrics: {metrics}");
    relay.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> Result<(), Error> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(Error::Signal)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(Error::Signal),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(Error::Signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn a_turnserver_command_line_parses() {
        let args = TurnArgs::try_parse_from([
            "turn",
            "-n",
            "--no-cli",
            "--log-file=stdout",
            "-v",
            "-f",
            "--listening-ip",
            "127.0.0.1",
            "--listening-port",
            "3479",
            "--relay-ip",
            "127.0.0.1",
            "--external-ip",
            "203.0.113.5/127.0.0.1",
            "--min-port",
            "50000",
            "--max-port",
            "50100",
            "--lt-cred-mech",
            "--user",
            "u:p",
            "--user",
            "k:0x00112233445566778899aabbccddeeff",
            "--realm",
            "example.org",
            "--use-auth-secret",
            "--static-auth-secret",
            "s3cret",
            "--no-tls",
            "--no-tcp",
            "--no-tcp-relay",
            "--allow-loopback-peers",
            "--denied-peer-ip",
            "10.0.0.0-10.255.255.255",
            "--allowed-peer-ip",
            "10.1.0.0-10.1.0.255",
            "--user-quota",
            "5",
            "--total-quota",
            "100",
            "--max-bps",
            "64000",
            "--stale-nonce=300",
        ])
        .unwrap();
        let c = args.to_config().unwrap();
        assert_eq!(c.listening_port, 3479);
        assert!(!c.tcp && !c.tcp_relay && c.udp && c.tls_cert.is_none());
        assert_eq!((c.min_port, c.max_port), (50000, 50100));
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.static_auth_secrets, vec!["s3cret".to_owned()]);
        assert_eq!(
            (c.user_quota, c.total_quota, c.max_bps, c.stale_nonce_secs),
            (5, 100, 64000, 300)
        );
        assert_eq!(c.external_ips, vec!["203.0.113.5/127.0.0.1".to_owned()]);
        assert!(c.allow_loopback_peers);
    }

    #[test]
    fn config_file_fills_what_the_command_line_left_unset() {
        let dir = std::env::temp_dir().join(format!("rkms-turn-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("turnserver.conf");
        std::fs::write(
            &path,
            "# coturn file\nlistening-port=3480\nrealm=\"file.realm\"\nlt-cred-mech\nuser=a:b\n\
             no-tlsv1\nverbose\nmax-port=60000\n",
        )
        .unwrap();
        let cli = TurnArgs::try_parse_from([
            "turn",
            "-c",
            path.to_str().unwrap(),
            "--realm",
            "cli.realm",
            "-u",
            "c:d",
        ])
        .unwrap();
        let file = parse_config_file(&path).unwrap();
        let c = cli.merged_with(file).to_config().unwrap();
        assert_eq!(c.listening_port, 3480);
        assert_eq!(c.realm, "cli.realm");
        assert_eq!(c.max_port, 60000);
        assert_eq!(c.users, vec!["c:d".to_owned()]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_an_open_relay_and_missing_credentials() {
        assert!(
            TurnArgs::try_parse_from(["turn", "-z", "-u", "a:b"])
                .unwrap()
                .to_config()
                .is_err()
        );
        assert!(
            TurnArgs::try_parse_from(["turn"])
                .unwrap()
                .to_config()
                .is_err()
        );
        assert!(
            TurnArgs::try_parse_from(["turn", "--use-auth-secret"])
                .unwrap()
                .to_config()
                .is_err()
        );
    }
}
