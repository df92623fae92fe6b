//! A WebRtcEndpoint's statistics as Kurento's `getStats` returns them: a map from stats id to
//! `RTCInboundRTPStreamStats`, `RTCOutboundRTPStreamStats`, `RTCCodec`, `RTCTransportStats`,
//! `RTCIceCandidatePairStats`, `RTCPeerConnectionStats` and `EndpointStats` values, with the
//! field names and `StatsType` values of Kurento's module descriptors.

use rkms_media::MediaKind;
use rkms_media::webrtc::{EndpointStats, RtpStreamStats};
use serde_json::{Map, Value, json};

use crate::values::complex;

const TRANSPORT_ID: &str = "RTCTransportStats";
const PAIR_ID: &str = "RTCIceCandidatePairStats";

/// The report; RTP streams only of `kind` when given. `now_ms` stamps every entry.
pub(crate) fn stats_report(stats: &EndpointStats, kind: Option<MediaKind>, now_ms: i64) -> Value {
    let mut report = Map::new();
    let mut put = |id: String, ty: &str, stats_type: &str, mut fields: Map<String, Value>| {
        fields.insert("id".into(), json!(id));
        fields.insert("type".into(), json!(stats_type));
        fields.insert("timestampMillis".into(), json!(now_ms));
        report.insert(id, complex(ty, fields));
    };

    let mut endpoint = Map::new();
    endpoint.insert("inputLatency".into(), json!([]));
    endpoint.insert("E2ELatency".into(), json!([]));
    put(
        "EndpointStats".into(),
        "EndpointStats",
        "endpoint",
        endpoint,
    );

    let mut pc = Map::new();
    pc.insert(
        "dataChannelsOpened".into(),
        json!(stats.data_channels_opened),
    );
    pc.insert(
        "dataChannelsClosed".into(),
        json!(stats.data_channels_closed),
    );
    put(
        "RTCPeerConnectionStats".into(),
        "RTCPeerConnectionStats",
        "session",
        pc,
    );

    let mut transport = Map::new();
    transport.insert("bytesSent".into(), json!(stats.bytes_sent));
    transport.insert("bytesReceived".into(), json!(stats.bytes_received));
    transport.insert("rtcpTransportStatsId".into(), json!(TRANSPORT_ID));
    transport.insert(
        "activeConnection".into(),
        json!(stats.candidate_pair.is_some()),
    );
    let selected = if stats.candidate_pair.is_some() {
        PAIR_ID
    } else {
        ""
    };
    transport.insert("selectedCandidatePairId".into(), json!(selected));
    transport.insert("localCertificateId".into(), json!(""));
    transport.insert("remoteCertificateId".into(), json!(""));
    put(
        TRANSPORT_ID.into(),
        "RTCTransportStats",
        "transport",
        transport,
    );

    if let Some(pair) = &stats.candidate_pair {
        let mut f = Map::new();
        f.insert("transportId".into(), json!(TRANSPORT_ID));
        f.insert("localCandidateId".into(), json!(pair.local));
        f.insert("remoteCandidateId".into(), json!(pair.remote));
        f.insert("state".into(), json!("succeeded"));
        f.insert("priority".into(), json!(0));
        f.insert("nominated".into(), json!(true));
        f.insert("writable".into(), json!(true));
        f.insert("readable".into(), json!(true));
        f.insert("bytesSent".into(), json!(pair.bytes_sent));
        f.insert("bytesReceived".into(), json!(pair.bytes_received));
        f.insert("roundTripTime".into(), json!(pair.round_trip_time));
        f.insert(
            "availableOutgoingBitrate".into(),
            json!(pair.available_outgoing_bitrate),
        );
        f.insert(
            "availableIncomingBitrate".into(),
            json!(pair.available_incoming_bitrate),
        );
        put(
            PAIR_ID.into(),
            "RTCIceCandidatePairStats",
            "candidatepair",
            f,
        );
    }

    let wanted = |s: &&RtpStreamStats| kind.is_none_or(|k| s.kind == k);
    for (inbound, streams) in [(true, &stats.inbound), (false, &stats.outbound)] {
        for s in streams.iter().filter(wanted) {
            let codec_id = s.codec.map(|(pt, codec)| {
                let id = format!("RTCCodec_{}_{pt}", s.kind.as_str());
                let mut f = Map::new();
                f.insert("payloadType".into(), json!(pt));
                f.insert("codec".into(), json!(codec.name()));
                f.insert("clockRate".into(), json!(codec.clock_rate()));
                let channels = if codec == rkms_media::webrtc::codecs::CodecId::Opus {
                    2
                } else {
                    1
                };
                f.insert("channels".into(), json!(channels));
                f.insert("parameters".into(), json!(""));
                put(id.clone(), "RTCCodec", "codec", f);
                id
            });
            let mut f = Map::new();
            f.insert("ssrc".into(), json!(s.ssrc.to_string()));
            f.insert("associateStatsId".into(), json!(""));
            f.insert("isRemote".into(), json!(false));
            f.insert("mediaTrackId".into(), json!(s.kind.as_str()));
            f.insert("transportId".into(), json!(TRANSPORT_ID));
            f.insert("codecId".into(), json!(codec_id.unwrap_or_default()));
            f.insert("firCount".into(), json!(s.fir_count));
            f.insert("pliCount".into(), json!(s.pli_count));
            f.insert("nackCount".into(), json!(s.nack_count));
            f.insert("sliCount".into(), json!(0));
            f.insert("remb".into(), json!(s.remb));
            f.insert("packetsLost".into(), json!(s.packets_lost));
            f.insert("fractionLost".into(), json!(s.fraction_lost));
            if inbound {
                f.insert("packetsReceived".into(), json!(s.packets));
                f.insert("bytesReceived".into(), json!(s.bytes));
                f.insert("jitter".into(), json!(s.jitter));
                let id = format!("RTCInboundRTPStreamStats_{}", s.ssrc);
                put(id, "RTCInboundRTPStreamStats", "inboundrtp", f);
            } else {
                f.insert("packetsSent".into(), json!(s.packets));
                f.insert("bytesSent".into(), json!(s.bytes));
                f.insert("targetBitrate".into(), json!(s.remb as f64));
                f.insert("roundTripTime".into(), json!(s.round_trip_time));
                let id = format!("RTCOutboundRTPStreamStats_{}", s.ssrc);
                put(id, "RTCOutboundRTPStreamStats", "outboundrtp", f);
            }
        }
    }
    Value::Object(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkms_media::webrtc::codecs::CodecId;

    #[test]
    fn kurento_types_and_fields() {
        let mut inbound = RtpStreamStats::new(MediaKind::Video, 1234);
        inbound.packets = 10;
        inbound.codec = Some((96, CodecId::Vp8));
        let stats = EndpointStats {
            inbound: vec![inbound, RtpStreamStats::new(MediaKind::Audio, 99)],
            outbound: vec![RtpStreamStats::new(MediaKind::Video, 5678)],
            ..EndpointStats::default()
        };
        let all = stats_report(&stats, None, 1);
        let i = &all["RTCInboundRTPStreamStats_1234"];
        assert_eq!(i["__type__"], "RTCInboundRTPStreamStats");
        assert_eq!(i["type"], "inboundrtp");
        assert_eq!(i["packetsReceived"], 10);
        assert_eq!(i["ssrc"], "1234");
        assert_eq!(all[i["codecId"].as_str().unwrap()]["codec"], "VP8");
        assert_eq!(all["RTCOutboundRTPStreamStats_5678"]["type"], "outboundrtp");
        assert_eq!(all["EndpointStats"]["type"], "endpoint");
        assert_eq!(all["RTCTransportStats"]["__type__"], "RTCTransportStats");
        let video = stats_report(&stats, Some(MediaKind::Video), 1);
        assert!(video.get("RTCInboundRTPStreamStats_99").is_none());
        assert!(video.get("RTCInboundRTPStreamStats_1234").is_some());
    }
}
