//! Which peers the relay may talk to.
//!
//! Safe by default: loopback, private, shared (CGNAT), link-local,
//! multicast, reserved and unspecified addresses are refused, and so are
//! IPv6 forms that embed such an IPv4 address (IPv4-mapped, -compatible,
//! -translated, NAT64, 6to4). Those forms are reduced to their IPv4 address
//! before every check, which closes the CVE-2020-26262 bypasses
//! (`0.0.0.0`, `[::]`, `[::1]`, `[::ffff:127.0.0.1]`).
//!
//! Inside rkms, the media server's own sockets are usually on a private
//! address (a container's, a LAN's). They are exempt by exact address *and
//! port* ([`PeerPolicy::own_media`]), so a browser relaying through rkms
//! reaches rkms's endpoints while every other port of that host, and every
//! other private address, stays refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

/// A range entry that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an address, `first-last` range or CIDR block")]
pub struct BadRange(pub String);

impl std::str::FromStr for IpRange {
    type Err = BadRange;

    /// `ip`, `first-last` (coturn's form) or `ip/prefix`.
    fn from_str(s: &str) -> Result<Self, BadRange> {
        let bad = || BadRange(s.to_owned());
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let (start, end): (IpAddr, IpAddr) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if start.is_ipv4() != end.is_ipv4() || bits(start) > bits(end) {
                return Err(bad());
            }
            return Ok(IpRange {
                start: canonical(start),
                end: canonical(end),
            });
        }
        if let Some((a, p)) = s.split_once('/') {
            let ip: IpAddr = a.parse().map_err(|_| bad())?;
            let prefix: u32 = p.parse().map_err(|_| bad())?;
            let width = if ip.is_ipv4() { 32 } else { 128 };
            if prefix > width {
                return Err(bad());
            }
            let host_mask = if prefix == 0 {
                u128::MAX
            } else {
                (1u128 << (width - prefix)) - 1
            };
            let host_mask = if width == 32 {
                host_mask & 0xFFFF_FFFF
            } else {
                host_mask
            };
            let base = bits(ip) & !host_mask;
            let (start, end) = (
                from_bits(base, ip.is_ipv4()),
                from_bits(base | host_mask, ip.is_ipv4()),
            );
            return Ok(IpRange {
                start: canonical(start),
                end: canonical(end),
            });
        }
        let ip = canonical(s.parse().map_err(|_| bad())?);
        Ok(IpRange { start: ip, end: ip })
    }
}

impl IpRange {
    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4()
            && bits(self.start) <= bits(ip)
            && bits(ip) <= bits(self.end)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_bits(b: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(b as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

/// The IPv4 address an IPv6 address stands for, if it embeds one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (translated, RFC 2765).
        [0, 0, 0, 0, 0, 0xFFFF, _, _] | [0, 0, 0, 0, 0xFFFF, 0, _, _] => Some(tail),
        // ::a.b.c.d (deprecated compatible form); `::` and `::1` stay IPv6.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(tail),
        // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
        [0x64, 0xFF9B, 0, 0, 0, 0, _, _] | [0x64, 0xFF9B, 1, ..] => Some(tail),
        // 6to4: 2002:AABB:CCDD::/48.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from(((hi as u32) << 16) | lo as u32)),
        _ => None,
    }
}

/// Reduces IPv6 forms of IPv4 addresses to the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_loopback(),
        IpAddr::V6(v) => v.is_loopback(),
    }
}

/// Addresses no public relay should reach unless told to.
fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            o[0] == 0                                   // "this network", 0.0.0.0
                || o[0] == 10
                || o[0] == 127
                || (o[0] == 100 && o[1] & 0xC0 == 64)   // 100.64/10 shared address space
                || (o[0] == 169 && o[1] == 254)
                || (o[0] == 172 && o[1] & 0xF0 == 16)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 192 && o[1] == 168)
                || (o[0] == 198 && o[1] & 0xFE == 18)   // benchmarking
                || o[0] >= 224 // multicast, reserved, broadcast
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            v.is_unspecified()
                || v.is_loopback()
                || s[0] & 0xFE00 == 0xFC00 // unique local
                || s[0] & 0xFFC0 == 0xFE80 // link-local
                || s[0] & 0xFFC0 == 0xFEC0 // site-local (deprecated)
                || s[0] & 0xFF00 == 0xFF00 // multicast
        }
    }
}

/// The peer policy: explicit ranges first, then the media server's own
/// sockets, then the safe defaults.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    pub allow_loopback: bool,
    pub allowed: Vec<IpRange>,
    pub denied: Vec<IpRange>,
    /// Exact addresses of the media server's own sockets, permitted even
    /// where the defaults refuse their IP (not where a denied range covers it).
    pub own_media: Vec<SocketAddr>,
}

/// What a permission for a peer may cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Denied,
    /// Any port of the peer's IP, as TURN permissions normally do.
    AnyPort,
    /// Only this address and port (one of [`PeerPolicy::own_media`]).
    ThisPortOnly,
}

impl PeerPolicy {
    /// Whether the relay may send to (and accept from) `ip`, on any port.
    /// An allowed range wins over a denied one, as in coturn.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allowed.iter().any(|r| r.contains(ip)) {
            return true;
        }
        if self.denied.iter().any(|r| r.contains(ip)) {
            return false;
        }
        if is_loopback(ip) {
            return self.allow_loopback;
        }
        !is_restricted(ip)
    }

    /// How far a permission for `peer` may reach.
    pub fn verdict(&self, peer: SocketAddr) -> Verdict {
        if self.permits(peer.ip()) {
            return Verdict::AnyPort;
        }
        let ip = canonical(peer.ip());
        let own = || {
            self.own_media
                .iter()
                .any(|a| a.port() == peer.port() && canonical(a.ip()) == ip)
        };
        if !self.denied.iter().any(|r| r.contains(ip)) && own() {
            Verdict::ThisPortOnly
        } else {
            Verdict::Denied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn denies_cve_2020_26262_bypasses_by_default() {
        let p = PeerPolicy::default();
        for bad in [
            "0.0.0.0",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.0.1",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!p.permits(ip(bad)), "{bad} must be refused");
        }
        for good in [
            "8.8.8.8",
            "2001:4860::8888",
            "::ffff:8.8.8.8",
            "203.0.114.1",
        ] {
            assert!(p.permits(ip(good)), "{good} must be allowed");
        }
    }

    #[test]
    fn loopback_switch_covers_every_loopback_form_but_not_unspecified() {
        let p = PeerPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(p.permits(ip("::1")));
        assert!(!p.permits(ip("0.0.0.0")));
        assert!(!p.permits(ip("::")));
    }

    #[test]
    fn configured_ranges_override_the_defaults() {
        let p = PeerPolicy {
            allow_loopback: false,
            allowed: vec![
                "10.0.0.0-10.0.0.255".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
            ],
            denied: vec!["8.8.8.0/24".parse().unwrap(), "10.0.0.5".parse().unwrap()],
            ..Default::default()
        };
        assert!(p.permits(ip("10.0.0.7")));
        assert!(p.permits(ip("10.0.0.5")), "allowed wins, as in coturn");
        assert!(!p.permits(ip("10.0.1.1")));
        assert!(p.permits(ip("fd12::1")));
        assert!(!p.permits(ip("8.8.8.8")));
        assert!(!p.permits(ip("::ffff:8.8.8.8")));
        assert!("1.2.3.4-::1".parse::<IpRange>().is_err());
        assert!("1.2.3.4/33".parse::<IpRange>().is_err());
        assert!("nonsense".parse::<IpRange>().is_err());
    }

    #[test]
    fn own_media_sockets_are_exempt_by_exact_address_and_port() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let p = PeerPolicy {
            own_media: vec![addr("127.0.0.1:40000"), addr("172.17.0.2:40002")],
            ..Default::default()
        };
        assert_eq!(p.verdict(addr("127.0.0.1:40000")), Verdict::ThisPortOnly);
        assert_eq!(
            p.verdict(addr("[::ffff:127.0.0.1]:40000")),
            Verdict::ThisPortOnly
        );
        assert_eq!(p.verdict(addr("172.17.0.2:40002")), Verdict::ThisPortOnly);
        for refused in [
            "127.0.0.1:40001",
            "127.0.0.1:22",
            "127.0.0.2:40000",
            "172.17.0.2:40000",
            "0.0.0.0:40000",
            "[::1]:40000",
        ] {
            assert_eq!(p.verdict(addr(refused)), Verdict::Denied, "{refused}");
        }
        assert_eq!(p.verdict(addr("8.8.8.8:53")), Verdict::AnyPort);
        assert!(
            !p.permits(ip("127.0.0.1")),
            "the IP as a whole stays refused"
        );
        let denied = PeerPolicy {
            denied: vec!["172.16.0.0/12".parse().unwrap()],
            ..p
        };
        assert_eq!(
            denied.verdict(addr("172.17.0.2:40002")),
            Verdict::Denied,
            "an operator's denied range wins"
        );
    }
}
