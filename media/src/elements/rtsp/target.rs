//! An `rtsp://` URI as a PlayerEndpoint is given it: the camera's URL, the credentials in its
//! user-info (retina takes them apart from the URL), and the transport rkms asks for.

use percent_encoding::percent_decode_str;
use retina::client::Credentials;
use url::Url;

/// How the camera's RTP reaches rkms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection: nothing lost, passes NATs and firewalls.
    #[default]
    Tcp,
    /// RTP/RTCP over UDP ports rkms binds: lower latency on a clean LAN, but a lost or
    /// reordered packet costs picture until the next keyframe.
    Udp,
}

impl RtspTransport {
    /// Parses `tcp` or `udp`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            _ => None,
        }
    }
}

/// A camera to play.
#[derive(Debug, Clone)]
pub struct RtspTarget {
    /// The URL retina requests: no credentials, no `transport` hint.
    pub(super) url: Url,
    pub(super) credentials: Option<Credentials>,
    pub(super) transport: RtspTransport,
}

/// The query parameter that picks the transport of one player (`?transport=udp`); rkms
/// removes it before talking to the camera.
const TRANSPORT_PARAM: &str = "transport";

impl RtspTarget {
    /// Parses a PlayerEndpoint's `rtsp://` URI; `default` is the transport when the URI does
    /// not name one. The error says what is wrong, for the client.
    pub fn parse(uri: &str, default: RtspTransport) -> Result<Self, String> {
        let mut url = Url::parse(uri).map_err(|e| format!("'{uri}' is not a valid URL: {e}"))?;
        if url.scheme() != "rtsp" {
            return Err(format!(
                "'{}' URIs are not played (rtsp:// is; rtsps:// is not supported)",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("'{uri}' names no host"));
        }
        let credentials = (!url.username().is_empty()).then(|| Credentials {
            username: decode(url.username()),
            password: url.password().map(decode).unwrap_or_default(),
        });
        // `Url` refuses these only for URLs that cannot have a host, which was checked above.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut transport = default;
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            if key.eq_ignore_ascii_case(TRANSPORT_PARAM) {
                transport = RtspTransport::parse(&value).ok_or_else(|| {
                    format!("{TRANSPORT_PARAM}={value}: the transport is tcp or udp")
                })?;
            } else {
                kept.push((key.into_owned(), value.into_owned()));
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else if kept.len() != url.query_pairs().count() {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok(Self {
            url,
            credentials,
            transport,
        })
    }

    /// The camera's URL without credentials, for logs and events.
    pub fn display(&self) -> &str {
        self.url.as_str()
    }

    pub fn transport(&self) -> RtspTransport {
        self.transport
    }
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Result<RtspTarget, String> {
        RtspTarget::parse(uri, RtspTransport::Tcp)
    }

    #[test]
    fn credentials_leave_the_url_decoded() {
        let t = parse("rtsp://admin:p%40ss@10.0.0.9:8554/live?channel=1").expect("valid");
        assert_eq!(t.display(), "rtsp://10.0.0.9:8554/live?channel=1");
        let c = t.credentials.expect("credentials");
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss")
        );
        assert_eq!(t.transport, RtspTransport::Tcp);
    }

    #[test]
    fn the_transport_hint_is_taken_out_of_the_query() {
        let t = parse("rtsp://cam/live?transport=UDP").expect("valid");
        assert_eq!(t.transport, RtspTransport::Udp);
        assert_eq!(t.display(), "rtsp://cam/live");
        let t = parse("rtsp://cam/h264?subtype=0&transport=tcp&channel=1").expect("valid");
        assert_eq!(t.display(), "rtsp://cam/h264?subtype=0&channel=1");
        let t = RtspTarget::parse("rtsp://cam/x?a=%2F", RtspTransport::Udp).expect("valid");
        assert_eq!(
            (t.transport, t.display()),
            (RtspTransport::Udp, "rtsp://cam/x?a=%2F")
        );
    }

    #[test]
    fn bad_uris_say_why() {
        assert!(
            parse("rtsp://cam/x?transport=quic")
                .unwrap_err()
                .contains("tcp or udp")
        );
        assert!(parse("rtsps://cam/x").unwrap_err().contains("rtsps"));
        assert!(parse("rtsp:///x").is_err());
        assert!(
            parse("rtsp://[::1")
                .unwrap_err()
                .contains("not a valid URL")
        );
    }
}
