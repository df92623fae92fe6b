//! Network defaults of rkms's RTP and WebRTC endpoints, read the way
//! Kurento users already write them: `BaseRtpEndpoint.conf.ini` and
//! `WebRtcEndpoint.conf.ini` in the modules configuration folder, then the
//! `KMS_*` environment variables of Kurento's Docker image on top.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rkms_media::webrtc::BandwidthLimits;

/// Endpoint network settings; `None` leaves the choice to rkms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSettings {
    pub min_port: Option<u16>,
    pub max_port: Option<u16>,
    pub mtu: Option<u16>,
    /// Interfaces to gather candidates on (comma-separated in the files).
    pub network_interfaces: Vec<String>,
    /// Address to advertise instead of the local IPv4 one, or `auto`.
    pub external_ipv4: Option<String>,
    pub external_ipv6: Option<String>,
    pub stun_server_address: Option<String>,
    pub stun_server_port: Option<u16>,
    /// `user:password@host:port?transport=udp|tcp`.
    pub turn_url: Option<String>,
    pub ice_tcp: Option<bool>,
    pub pem_certificate_rsa: Option<String>,
    pub pem_certificate_ecdsa: Option<String>,
    /// Defaults of the endpoints' bandwidth properties (Kurento's unless configured).
    pub bandwidth: BandwidthLimits,
}

impl EndpointSettings {
    /// Reads the `.conf.ini` files found in `modules_dir` (missing files are
    /// fine), then applies the environment.
    pub fn load(modules_dir: Option<&Path>, env: &HashMap<String, String>) -> Result<Self> {
        let mut s = Self::default();
        if let Some(dir) = modules_dir {
            for name in ["BaseRtpEndpoint.conf.ini", "WebRtcEndpoint.conf.ini"] {
                let path = dir.join(name);
                if !path.exists() {
                    continue;
                }
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                for (key, value) in parse_ini(&text) {
                    s.set(&key, &value)
                        .with_context(|| format!("{}: {key}", path.display()))?;
                }
            }
        }
        for (var, key) in ENV_KEYS {
            if let Some(value) = env.get(*var).filter(|v| !v.is_empty()) {
                s.set(key, value)
                    .with_context(|| format!("environment {var}"))?;
            }
        }
        if let (Some(min), Some(max)) = (s.min_port, s.max_port)
            && min > max
        {
            bail!("minPort {min} is above maxPort {max}");
        }
        Ok(s)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let kbps = |v: &str| {
            v.parse::<u32>()
                .with_context(|| format!("'{v}' is not a bitrate in kbps"))
        };
        let port = |v: &str| {
            v.parse::<u16>()
                .with_context(|| format!("'{v}' is not a port"))
        };
        match key {
            "minPort" => self.min_port = Some(port(value)?),
            "maxPort" => self.max_port = Some(port(value)?),
            "mtu" => {
                self.mtu = Some(
                    value
                        .parse()
                        .with_context(|| format!("bad mtu '{value}'"))?,
                )
            }
            "networkInterfaces" => {
                self.network_interfaces = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            // Older set-ups give one address for both families.
            "externalAddress" => {
                if value.contains(':') {
                    self.external_ipv6 = Some(value.to_owned());
                } else {
                    self.external_ipv4 = Some(value.to_owned());
                }
            }
            "externalIPv4" => self.external_ipv4 = Some(value.to_owned()),
            "externalIPv6" => self.external_ipv6 = Some(value.to_owned()),
            "stunServerAddress" => self.stun_server_address = Some(value.to_owned()),
            "stunServerPort" => self.stun_server_port = Some(port(value)?),
            "turnURL" => self.turn_url = Some(value.to_owned()),
            "iceTcp" => {
                self.ice_tcp = Some(match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    other => bail!("'{other}' is not a boolean"),
                })
            }
            "minVideoRecvBandwidth" => self.bandwidth.min_video_recv_kbps = kbps(value)?,
            "maxVideoRecvBandwidth" => self.bandwidth.max_video_recv_kbps = kbps(value)?,
            "maxAudioRecvBandwidth" => self.bandwidth.max_audio_recv_kbps = kbps(value)?,
            "minVideoSendBandwidth" => self.bandwidth.min_video_send_kbps = kbps(value)?,
            "maxVideoSendBandwidth" => self.bandwidth.max_video_send_kbps = kbps(value)?,
            "pemCertificateRSA" => self.pem_certificate_rsa = Some(value.to_owned()),
            "pemCertificateECDSA" => self.pem_certificate_ecdsa = Some(value.to_owned()),
            other => tracing::warn!(key = other, "unknown endpoint setting ignored"),
        }
        Ok(())
    }
}

/// Kurento Docker image variables and the setting each one sets.
const ENV_KEYS: &[(&str, &str)] = &[
    ("KMS_MIN_PORT", "minPort"),
    ("KMS_MAX_PORT", "maxPort"),
    ("KMS_MTU", "mtu"),
    ("KMS_EXTERNAL_ADDRESS", "externalAddress"),
    ("KMS_EXTERNAL_IPV4", "externalIPv4"),
    ("KMS_EXTERNAL_IPV6", "externalIPv6"),
    ("KMS_NETWORK_INTERFACES", "networkInterfaces"),
    ("KMS_ICE_TCP", "iceTcp"),
    ("KMS_STUN_IP", "stunServerAddress"),
    ("KMS_STUN_PORT", "stunServerPort"),
    ("KMS_TURN_URL", "turnURL"),
    ("KMS_PEM_CERTIFICATE_RSA", "pemCertificateRSA"),
    ("KMS_PEM_CERTIFICATE_ECDSA", "pemCertificateECDSA"),
];

/// `key=value` lines; `;` and `#` start comments; `[sections]` are ignored.
fn parse_ini(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with([';', '#', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kurento_files_then_environment() {
        let dir = std::env::temp_dir().join(format!("rkms-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("BaseRtpEndpoint.conf.ini"),
            "; RTP ports\nminPort=40000\nmaxPort=40100\nmtu=1200\nmaxVideoSendBandwidth=2000\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("WebRtcEndpoint.conf.ini"),
            "[WebRtcEndpoint]\nstunServerAddress=203.0.113.5\nstunServerPort=3478\n\
             ;turnURL=nobody\nnetworkInterfaces=eth0, eth1\niceTcp=0\n",
        )
        .unwrap();
        let s = EndpointSettings::load(
            Some(&dir),
            &env(&[
                ("KMS_MAX_PORT", "40200"),
                ("KMS_TURN_URL", "u:p@198.51.100.1:3478?transport=udp"),
            ]),
        )
        .unwrap();
        assert_eq!(s.min_port, Some(40000));
        assert_eq!(s.max_port, Some(40200));
        assert_eq!(s.mtu, Some(1200));
        assert_eq!(s.stun_server_address.as_deref(), Some("203.0.113.5"));
        assert_eq!(s.network_interfaces, ["eth0", "eth1"]);
        assert_eq!(s.ice_tcp, Some(false));
        assert_eq!(s.bandwidth.max_video_send_kbps, 2000);
        assert_eq!(s.bandwidth.min_video_send_kbps, 100, "Kurento's default");
        assert_eq!(
            s.turn_url.as_deref(),
            Some("u:p@198.51.100.1:3478?transport=udp")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn external_address_fills_the_right_family() {
        let s =
            EndpointSettings::load(None, &env(&[("KMS_EXTERNAL_ADDRESS", "2001:db8::1")])).unwrap();
        assert_eq!(s.external_ipv6.as_deref(), Some("2001:db8::1"));
        let s = EndpointSettings::load(
            None,
            &env(&[
                ("KMS_EXTERNAL_ADDRESS", "192.0.2.9"),
                ("KMS_EXTERNAL_IPV4", "auto"),
            ]),
        )
        .unwrap();
        assert_eq!(s.external_ipv4.as_deref(), Some("auto"));
    }

    #[test]
    fn bad_values_are_errors_that_say_where() {
        let e = EndpointSettings::load(None, &env(&[("KMS_MIN_PORT", "lots")])).unwrap_err();
        assert!(format!("{e:#}").contains("KMS_MIN_PORT"), "{e:#}");
        let e = EndpointSettings::load(
            None,
            &env(&[("KMS_MIN_PORT", "50000"), ("KMS_MAX_PORT", "40000")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("above"));
        assert!(EndpointSettings::load(None, &env(&[("KMS_ICE_TCP", "maybe")])).is_err());
    }
}
