//! RtpEndpoint's creation: its constructor parameters (`crypto` as Kurento's `SDES`,
//! `useIpv6`) handed to the media backend. Once made it is negotiated and reports events
//! exactly like a WebRtcEndpoint (SdpEndpoint operations, `ConnectionStateChanged`,
//! `MediaStateChanged`, flow events), through [`crate::webrtc_endpoint`].

use std::sync::Arc;

use serde_json::{Map, Value};

use rkms_media::{ElementId, Pipeline};

use crate::backend::{MediaBackend, RtpOptions, SdesOptions, WebRtcEndpoint};
use crate::engine::Engine;
use crate::error::RpcResult;
use crate::uri_endpoint::creation_error;

/// The options of `create RtpEndpoint`. An `SDES` without a `crypto` suite leaves encryption
/// off, as in Kurento.
fn rtp_options(ctor: &Map<String, Value>) -> RtpOptions {
    let sdes = ctor.get("crypto").and_then(Value::as_object);
    let text = |name: &str| {
        sdes.and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    RtpOptions {
        crypto: text("crypto").map(|suite| SdesOptions {
            suite,
            key: text("key"),
            key_base64: text("keyBase64"),
        }),
        use_ipv6: ctor
            .get("useIpv6")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

impl Engine {
    /// Makes the media side of an RtpEndpoint.
    pub(crate) fn create_rtp_endpoint(
        &self,
        backend: &dyn MediaBackend,
        media: &Arc<Pipeline>,
        element: ElementId,
        ctor: &Map<String, Value>,
        id: &Arc<str>,
    ) -> RpcResult<Arc<dyn WebRtcEndpoint>> {
        let events = self.endpoint_event_sink(id.clone());
        backend
            .create_rtp_endpoint(media, element, rtp_options(ctor), events)
            .map_err(|e| creation_error("RtpEndpoint", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(ctor: Value) -> RtpOptions {
        rtp_options(ctor.as_object().expect("object"))
    }

    #[test]
    fn sdes_turns_encryption_on_only_with_a_suite() {
        assert_eq!(options(json!({})), RtpOptions::default());
        assert_eq!(options(json!({"crypto": {}})).crypto, None);
        let o = options(json!({
            "useIpv6": true,
            "crypto": {"__module__": "kurento", "__type__": "SDES",
                       "crypto": "AES_128_CM_HMAC_SHA1_80", "keyBase64": "QUJD"}
        }));
        assert!(o.use_ipv6);
        assert_eq!(
            o.crypto,
            Some(SdesOptions {
                suite: "AES_128_CM_HMAC_SHA1_80".into(),
                key: None,
                key_base64: Some("QUJD".into()),
            })
        );
    }
}
