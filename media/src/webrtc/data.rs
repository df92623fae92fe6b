//! Data channels: what an endpoint's channels are, and how messages travel between endpoints.
//!
//! A message a remote sends on one of its channels leaves the endpoint's DATA source pad; each
//! endpoint fed by that pad (the endpoint itself in a loopback) sends it on its channel with the
//! same label, else with the same SCTP stream id, else on its first open channel. Messages are
//! not queued: an endpoint with no open channel drops them.

use std::collections::HashMap;

use rtc::data_channel::{RTCDataChannelId, RTCDataChannelMessage};

use crate::graph::ElementId;

/// How `createDataChannel` asks for a channel (Kurento's parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataChannelOptions {
    /// The channel's label.
    pub label: String,
    /// In-order delivery.
    pub ordered: bool,
    /// Partial reliability: how long (ms) a message may be retransmitted.
    pub max_packet_life_time: Option<u16>,
    /// Partial reliability: how many times a message may be retransmitted.
    pub max_retransmits: Option<u16>,
    /// The subprotocol name.
    pub protocol: String,
}

/// An open channel of an endpoint.
#[derive(Debug, Clone)]
pub(crate) struct OpenChannel {
    pub(crate) handle: RTCDataChannelId,
    /// The SCTP stream id: Kurento's `channelId`.
    pub(crate) stream_id: u16,
    pub(crate) label: String,
}

/// A message received on a channel, to route.
#[derive(Debug)]
pub(crate) struct DataMessage {
    pub(crate) label: String,
    pub(crate) stream_id: u16,
    pub(crate) message: RTCDataChannelMessage,
}

/// The channel of `channels` a message from `label`/`stream_id` leaves on.
pub(crate) fn pick_channel<'a>(
    channels: &'a [OpenChannel],
    label: &str,
    stream_id: u16,
) -> Option<&'a OpenChannel> {
    channels
        .iter()
        .find(|c| c.label == label)
        .or_else(|| channels.iter().find(|c| c.stream_id == stream_id))
        .or_else(|| channels.first())
}

/// Which endpoints each endpoint's DATA source pad feeds (a sink has one source).
#[derive(Debug, Default)]
pub(crate) struct DataRoutes {
    sinks: HashMap<ElementId, Vec<ElementId>>,
}

impl DataRoutes {
    /// Feeds `sink` from `source`, replacing its previous source.
    pub(crate) fn connect(&mut self, source: ElementId, sink: ElementId) {
        self.disconnect_sink(sink);
        self.sinks.entry(source).or_default().push(sink);
    }

    /// Stops feeding `sink` from `source`.
    pub(crate) fn disconnect(&mut self, source: ElementId, sink: ElementId) {
        if let Some(sinks) = self.sinks.get_mut(&source) {
            sinks.retain(|s| *s != sink);
        }
    }

    fn disconnect_sink(&mut self, sink: ElementId) {
        for sinks in self.sinks.values_mut() {
            sinks.retain(|s| *s != sink);
        }
    }

    /// Forgets an element, as a source and as a sink.
    pub(crate) fn remove_element(&mut self, element: ElementId) {
        self.sinks.remove(&element);
        self.disconnect_sink(element);
    }

    /// The endpoints `source` feeds.
    pub(crate) fn sinks_of(&self, source: ElementId) -> &[ElementId] {
        self.sinks.get(&source).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_has_one_source_and_released_elements_go() {
        let (a, b, c) = (ElementId(1), ElementId(2), ElementId(3));
        let mut routes = DataRoutes::default();
        routes.connect(a, a);
        routes.connect(a, c);
        routes.connect(b, c);
        assert_eq!(routes.sinks_of(a), [a]);
        assert_eq!(routes.sinks_of(b), [c]);
        routes.remove_element(c);
        assert!(routes.sinks_of(b).is_empty());
        routes.disconnect(a, a);
        assert!(routes.sinks_of(a).is_empty());
    }

    #[test]
    fn messages_leave_on_the_channel_with_the_same_label_else_id_else_the_first() {
        let open = |handle, stream_id, label: &str| OpenChannel {
            handle,
            stream_id,
            label: label.into(),
        };
        let channels = [open(0, 1, "chat"), open(1, 3, "files")];
        assert_eq!(
            pick_channel(&channels, "files", 1).map(|c| c.handle),
            Some(1)
        );
        assert_eq!(
            pick_channel(&channels, "other", 3).map(|c| c.handle),
            Some(1)
        );
        assert_eq!(
            pick_channel(&channels, "other", 9).map(|c| c.handle),
            Some(0)
        );
        assert!(pick_channel(&[], "chat", 1).is_none());
    }
}
