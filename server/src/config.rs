//! rkms's configuration: Kurento's `kurento.conf.json` as Kurento users
//! already write it, with the shipped defaults embedded in the binary so
//! that no file is needed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

/// The defaults shipped in `configs/kurento.conf.json`.
const EMBEDDED_DEFAULTS: &str = include_str!("../../configs/kurento.conf.json");

/// Settings rkms acts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub address: String,
    pub port: u16,
    /// WebSocket path without the leading slash, e.g. `kurento`.
    pub path: String,
    pub gc_period: Duration,
    /// The embedded STUN/TURN relay (`rkms.turn` in the file).
    pub turn: rkms_turn::TurnConfig,
    /// Directories RecorderEndpoints may write into (`rkms.recording.roots`).
    pub recording_roots: Vec<PathBuf>,
}

/// Where recordings may go when the configuration does not say: `/tmp`, where Kurento's
/// tutorials and many applications record, and a directory meant for it.
const DEFAULT_RECORDING_ROOTS: [&str; 2] = ["/tmp", "/var/lib/rkms/recordings"];

/// The subset of `kurento.conf.json` rkms reads; unknown keys are ignored
/// so an existing Kurento file loads as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KurentoFile {
    #[serde(default)]
    media_server: MediaServer,
    /// rkms's own settings, beside Kurento's.
    #[serde(default)]
    rkms: RkmsSection,
}

#[derive(Debug, Default, Deserialize)]
struct RkmsSection {
    turn: Option<rkms_turn::TurnConfig>,
    recording: Option<Recording>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recording {
    roots: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaServer {
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    net: Net,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resources {
    garbage_collector_period: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct Net {
    #[serde(default)]
    websocket: WebSocket,
}

#[derive(Debug, Default, Deserialize)]
struct WebSocket {
    address: Option<String>,
    port: Option<u16>,
    path: Option<String>,
}

impl Config {
    /// The embedded defaults, overlaid with `file` when given.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut config = Self::from_json(EMBEDDED_DEFAULTS, Self::fallback())
            .context("embedded default configuration")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading configuration {}", path.display()))?;
            config = Self::from_json(&text, config)
                .with_context(|| format!("parsing configuration {}", path.display()))?;
        }
        Ok(config)
    }

    fn fallback() -> Self {
        Self {
            address: "0.0.0.0".into(),
            port: 8888,
            path: "kurento".into(),
            gc_period: Duration::from_secs(240),
            turn: rkms_turn::TurnConfig::default(),
            recording_roots: DEFAULT_RECORDING_ROOTS.map(PathBuf::from).to_vec(),
        }
    }

    /// Overlays the settings present in a `kurento.conf.json` text.
    fn from_json(text: &str, base: Self) -> Result<Self> {
        let file: KurentoFile = serde_json::from_str(&strip_comments(text))?;
        let ws = file.media_server.net.websocket;
        Ok(Self {
            address: ws.address.unwrap_or(base.address),
            port: ws.port.unwrap_or(base.port),
            path: ws
                .path
                .map(|p| p.trim_matches('/').to_owned())
                .unwrap_or(base.path),
            gc_period: file
                .media_server
                .resources
                .garbage_collector_period
                .map(Duration::from_secs)
                .unwrap_or(base.gc_period),
            turn: file.rkms.turn.unwrap_or(base.turn),
            recording_roots: file
                .rkms
                .recording
                .map_or(base.recording_roots, |r| r.roots),
        })
    }
}

impl Config {
    /// Overlays the embedded relay's settings from the environment, for
    /// containers configured like Kurento's Docker image (`KMS_*`):
    /// `RKMS_TURN_STATIC_AUTH_SECRET` (TURN REST API secret), `RKMS_TURN_REALM`
    /// and `RKMS_TURN_EXTERNAL_IP` (`public` or `public/private`). Set and not
    /// empty, they win over the file.
    pub fn apply_env(&mut self, env: &std::collections::HashMap<String, String>) {
        let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        if let Some(secret) = get("RKMS_TURN_STATIC_AUTH_SECRET") {
            self.turn.static_auth_secrets = vec![secret];
        }
        if let Some(realm) = get("RKMS_TURN_REALM") {
            self.turn.realm = realm;
        }
        if let Some(external) = get("RKMS_TURN_EXTERNAL_IP") {
            self.turn.external_ips = vec![external];
        }
    }
}

/// Kurento's shipped JSON files carry `//` and `/* */` comments; strip them
/// (outside strings) before parsing.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_kurentos() {
        let c = Config::load(None).unwrap();
        assert_eq!(c, Config::fallback());
    }

    #[test]
    fn a_kurento_file_with_comments_overrides_what_it_sets() {
        let text = r#"{
          // Kurento ships files like this one
          "mediaServer": {
            "resources": { "garbageCollectorPeriod": 5, "exceptionLimit": "0.8" },
            /* the WebSocket */
            "net": { "websocket": { "port": 9999, "path": "/kms", "threads": 10,
                                    "secure": { "port": 8433 } } }
          }
        }"#;
        let c = Config::from_json(text, Config::fallback()).unwrap();
        assert_eq!(c.port, 9999);
        assert_eq!(c.path, "kms");
        assert_eq!(c.gc_period, Duration::from_secs(5));
        assert_eq!(c.address, "0.0.0.0");
        assert_eq!(c.turn, rkms_turn::TurnConfig::default());
    }

    #[test]
    fn the_rkms_section_configures_the_embedded_relay() {
        let text = r#"{"rkms": {"turn": {"listening_port": 0, "realm": "example.org"}}}"#;
        let c = Config::from_json(text, Config::fallback()).unwrap();
        assert_eq!(c.turn.listening_port, 0);
        assert_eq!(c.turn.realm, "example.org");
        assert!(c.turn.enabled);
        let bad = r#"{"rkms": {"turn": {"listening_prot": 0}}}"#;
        assert!(Config::from_json(bad, Config::fallback()).is_err());
    }

    #[test]
    fn the_rkms_section_names_the_recording_roots() {
        let c = Config::from_json("{}", Config::fallback()).unwrap();
        assert_eq!(
            c.recording_roots,
            [
                PathBuf::from("/tmp"),
                PathBuf::from("/var/lib/rkms/recordings")
            ]
        );
        let text = r#"{"rkms": {"recording": {"roots": ["/srv/rec"]}}}"#;
        let c = Config::from_json(text, Config::fallback()).unwrap();
        assert_eq!(c.recording_roots, [PathBuf::from("/srv/rec")]);
        let bad = r#"{"rkms": {"recording": {"root": ["/srv/rec"]}}}"#;
        assert!(Config::from_json(bad, Config::fallback()).is_err());
    }

    #[test]
    fn environment_sets_the_relay_secret_realm_and_external_ip() {
        let text = r#"{"rkms": {"turn": {"static_auth_secrets": ["from-file"], "realm": "file"}}}"#;
        let mut c = Config::from_json(text, Config::fallback()).unwrap();
        let env: std::collections::HashMap<String, String> = [
            ("RKMS_TURN_STATIC_AUTH_SECRET", "from-env"),
            ("RKMS_TURN_REALM", ""),
            ("RKMS_TURN_EXTERNAL_IP", "203.0.113.7/10.0.0.2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        c.apply_env(&env);
        assert_eq!(c.turn.static_auth_secrets, ["from-env"]);
        assert_eq!(c.turn.realm, "file", "an empty variable changes nothing");
        assert_eq!(c.turn.external_ips, ["203.0.113.7/10.0.0.2"]);
    }

    #[test]
    fn comment_markers_inside_strings_are_kept() {
        assert_eq!(
            strip_comments(r#"{"a":"http://x/*y*/"} // z"#),
            r#"{"a":"http://x/*y*/"} "#
        );
    }
}
