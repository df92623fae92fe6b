//! The STUN and TURN servers the host gathers server-reflexive and relay candidates from, as
//! Kurento configures them (`stunServerAddress`/`stunServerPort`, `turnURL`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// Where server candidates come from; both optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IceServers {
    /// A STUN server (`host:port`): its answer is the socket's server-reflexive address.
    pub stun: Option<String>,
    /// A TURN server: an allocation on it is the socket's relay candidate.
    pub turn: Option<TurnServer>,
}

impl IceServers {
    /// Whether any server is configured.
    pub fn is_empty(&self) -> bool {
        self.stun.is_none() && self.turn.is_none()
    }

    /// Kurento's `stunServerAddress` and `stunServerPort` (3478 when unset) as `host:port`.
    pub fn stun_address(address: &str, port: Option<u16>) -> String {
        let port = port.unwrap_or(3478);
        if address.contains(':') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        }
    }
}

/// How rkms reaches a TURN server (`?transport=` of the URL). The relayed address is UDP
/// either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    #[default]
    Udp,
    /// One TCP connection per loop socket, carrying STUN and ChannelData (RFC 5766 §11.5).
    Tcp,
}

/// A TURN server with long-term credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TurnServer {
    /// Host name or address.
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub transport: TurnTransport,
}

/// Why a `turnURL` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnUrlError {
    #[error("expected user:password@host:port")]
    Malformed,
    #[error("'{0}' is not a port")]
    BadPort(String),
    #[error("transport '{0}' is not supported (only udp and tcp)")]
    UnsupportedTransport(String),
}

impl FromStr for TurnServer {
    type Err = TurnUrlError;

    /// Kurento's `turnURL`: `user:password@host:port[?transport=udp|tcp]`, optionally prefixed with
    /// `turn:`. As Kurento reads it, the user runs to the last `:` before the last `@`, so a
    /// TURN REST user name (`expiry:user`) fits; the password cannot hold a `:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s.strip_prefix("turn:").unwrap_or(s);
        let (s, query) = s.split_once('?').unwrap_or((s, ""));
        let mut transport = TurnTransport::Udp;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            if let Some(name) = param.strip_prefix("transport=") {
                transport = match name.to_ascii_lowercase().as_str() {
                    "udp" => TurnTransport::Udp,
                    "tcp" => TurnTransport::Tcp,
                    _ => return Err(TurnUrlError::UnsupportedTransport(name.to_owned())),
                };
            }
        }
        let (credentials, address) = s.rsplit_once('@').ok_or(TurnUrlError::Malformed)?;
        let (username, password) = credentials
            .rsplit_once(':')
            .ok_or(TurnUrlError::Malformed)?;
        let (host, port) = address.rsplit_once(':').ok_or(TurnUrlError::Malformed)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if username.is_empty() || host.is_empty() {
            return Err(TurnUrlError::Malformed);
        }
        let port = port
            .parse()
            .map_err(|_| TurnUrlError::BadPort(port.to_owned()))?;
        Ok(TurnServer {
            host: host.to_owned(),
            port,
            username: username.to_owned(),
            password: password.to_owned(),
            transport,
        })
    }
}

/// The first address of `host_port` in the family of `local` (a blocking DNS lookup for names).
pub(super) fn resolve(host_port: &str, local: SocketAddr) -> Option<SocketAddr> {
    match host_port.to_socket_addrs() {
        Ok(mut addrs) => addrs.find(|a| a.is_ipv4() == local.is_ipv4()),
        Err(e) => {
            tracing::warn!("cannot resolve ICE server {host_port}: {e}");
            None
        }
    }
}

impl TurnServer {
    /// `host:port`, bracketing an IPv6 address.
    pub(super) fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(s: &str) -> Result<TurnServer, TurnUrlError> {
        s.parse()
    }

    #[test]
    fn kurento_turn_urls() {
        let t = turn("user:pass@192.0.2.1:3478?transport=udp").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.username.as_str(),
                t.password.as_str()
            ),
            ("192.0.2.1", 3478, "user", "pass")
        );
        assert_eq!(t.transport, TurnTransport::Udp);
        let t = turn("user:pass@192.0.2.1:3478?transport=TCP").unwrap();
        assert_eq!(t.transport, TurnTransport::Tcp);
        // TURN REST user names carry a colon; the password may carry '@'.
        let t = turn("turn:1700000000:alice:s3cr@t@turn.example.com:443").unwrap();
        assert_eq!(t.username, "1700000000:alice");
        assert_eq!(t.password, "s3cr@t");
        assert_eq!(t.host_port(), "turn.example.com:443");
        let t = turn("u:p@[2001:db8::1]:3478").unwrap();
        assert_eq!(t.host, "2001:db8::1");
        assert_eq!(t.host_port(), "[2001:db8::1]:3478");
    }

    #[test]
    fn bad_turn_urls_say_why() {
        assert_eq!(turn("192.0.2.1:3478"), Err(TurnUrlError::Malformed));
        assert_eq!(turn("user@192.0.2.1:3478"), Err(TurnUrlError::Malformed));
        assert_eq!(turn("u:p@192.0.2.1"), Err(TurnUrlError::Malformed));
        assert_eq!(turn(":p@192.0.2.1:1"), Err(TurnUrlError::Malformed));
        assert_eq!(
            turn("u:p@192.0.2.1:99999"),
            Err(TurnUrlError::BadPort("99999".into()))
        );
        assert_eq!(
            turn("u:p@192.0.2.1:5349?transport=tls"),
            Err(TurnUrlError::UnsupportedTransport("tls".into()))
        );
    }

    #[test]
    fn resolves_in_the_socket_family() {
        let v4: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            resolve("127.0.0.1:3478", v4),
            Some("127.0.0.1:3478".parse().unwrap())
        );
        assert_eq!(resolve("[::1]:3478", v4), None);
    }
}
