//! Connections between elements, with Kurento's rules:
//!
//! - a source pad fans out to any number of sinks;
//! - a sink pad (element, media kind, description) has at most one source,
//!   so a new connection to it replaces the previous one;
//! - an element may be connected to itself (loopback).
//!
//! The graph only records who feeds whom. It reports every connection it
//! adds or removes so the caller can raise `ElementConnected` /
//! `ElementDisconnected` and re-route media.

use std::fmt;

/// Identifies an element inside one pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElementId(pub u32);

/// The kinds of media a pad carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    Audio,
    Video,
    Data,
}

impl MediaKind {
    /// Every kind, in the order connections are made when none is named.
    pub const ALL: [MediaKind; 3] = [MediaKind::Audio, MediaKind::Video, MediaKind::Data];

    /// The Kurento `MediaType` enum value.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "AUDIO",
            MediaKind::Video => "VIDEO",
            MediaKind::Data => "DATA",
        }
    }

    /// Parses a Kurento `MediaType` enum value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "AUDIO" => Some(MediaKind::Audio),
            "VIDEO" => Some(MediaKind::Video),
            "DATA" => Some(MediaKind::Data),
            _ => None,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pad description Kurento uses when a client names none.
pub const DEFAULT_DESCRIPTION: &str = "default";

/// One link from a source pad to a sink pad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub source: ElementId,
    pub sink: ElementId,
    pub kind: MediaKind,
    pub source_description: String,
    pub sink_description: String,
}

/// What one `connect` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// Connections replaced because their sink pad got a new source.
    pub replaced: Vec<Connection>,
    /// Connections made (an identical existing one is not made again).
    pub added: Vec<Connection>,
}

/// Filters connections by media kind and pad description; `None` matches all.
#[derive(Clone, Copy, Debug, Default)]
pub struct PadFilter<'a> {
    pub kind: Option<MediaKind>,
    pub description: Option<&'a str>,
}

/// All connections of one pipeline.
#[derive(Debug, Default)]
pub struct Graph {
    connections: Vec<Connection>,
}

impl Graph {
    /// Connects `source` to `sink` for each of `kinds`.
    pub fn connect(
        &mut self,
        source: ElementId,
        sink: ElementId,
        kinds: &[MediaKind],
        source_description: &str,
        sink_description: &str,
    ) -> ConnectOutcome {
        let mut outcome = ConnectOutcome::default();
        for &kind in kinds {
            let wanted = Connection {
                source,
                sink,
                kind,
                source_description: source_description.to_owned(),
                sink_description: sink_description.to_owned(),
            };
            if self.connections.contains(&wanted) {
                continue;
            }
            let same_sink_pad = |c: &Connection| {
                c.sink == sink && c.kind == kind && c.sink_description == sink_description
            };
            outcome
                .replaced
                .extend(self.connections.extract_if(.., |c| same_sink_pad(c)));
            self.connections.push(wanted.clone());
            outcome.added.push(wanted);
        }
        outcome
    }

    /// Removes the connections from `source` to `sink` of the given kinds
    /// (every kind when empty) and descriptions; returns what was removed.
    pub fn disconnect(
        &mut self,
        source: ElementId,
        sink: ElementId,
        kinds: &[MediaKind],
        source_description: &str,
        sink_description: &str,
    ) -> Vec<Connection> {
        self.connections
            .extract_if(.., |c| {
                c.source == source
                    && c.sink == sink
                    && (kinds.is_empty() || kinds.contains(&c.kind))
                    && c.source_description == source_description
                    && c.sink_description == sink_description
            })
            .collect()
    }

    /// Removes every connection that touches `element`.
    pub fn remove_element(&mut self, element: ElementId) -> Vec<Connection> {
        self.connections
            .extract_if(.., |c| c.source == element || c.sink == element)
            .collect()
    }

    /// Connections whose sink is `element` (what feeds it).
    pub fn sources_of(&self, element: ElementId, filter: PadFilter<'_>) -> Vec<Connection> {
        self.matching(filter, |c| c.sink == element, |c| &c.sink_description)
    }

    /// Connections whose source is `element` (what it feeds).
    pub fn sinks_of(&self, element: ElementId, filter: PadFilter<'_>) -> Vec<Connection> {
        self.matching(filter, |c| c.source == element, |c| &c.source_description)
    }

    /// Every connection, in the order they were made.
    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    fn matching(
        &self,
        filter: PadFilter<'_>,
        side: impl Fn(&Connection) -> bool,
        description: impl Fn(&Connection) -> &String,
    ) -> Vec<Connection> {
        self.connections
            .iter()
            .filter(|c| side(c))
            .filter(|c| filter.kind.is_none_or(|k| k == c.kind))
            .filter(|c| filter.description.is_none_or(|d| d == description(c)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ElementId = ElementId(1);
    const B: ElementId = ElementId(2);
    const C: ElementId = ElementId(3);
    const D: &str = DEFAULT_DESCRIPTION;

    #[test]
    fn connect_without_kind_links_every_kind() {
        let mut g = Graph::default();
        let out = g.connect(A, B, &MediaKind::ALL, D, D);
        assert_eq!(out.added.len(), 3);
        assert!(out.replaced.is_empty());
        assert_eq!(g.sinks_of(A, PadFilter::default()).len(), 3);
    }

    #[test]
    fn source_fans_out_and_sink_pad_takes_one_source() {
        let mut g = Graph::default();
        g.connect(A, B, &[MediaKind::Video], D, D);
        g.connect(A, C, &[MediaKind::Video], D, D);
        assert_eq!(g.sinks_of(A, PadFilter::default()).len(), 2);

        let out = g.connect(C, B, &[MediaKind::Video], D, D);
        assert_eq!(out.replaced.len(), 1);
        assert_eq!(out.replaced[0].source, A);
        let feeding_b = g.sources_of(B, PadFilter::default());
        assert_eq!(feeding_b.len(), 1);
        assert_eq!(feeding_b[0].source, C);
    }

    #[test]
    fn reconnecting_the_same_pads_changes_nothing() {
        let mut g = Graph::default();
        g.connect(A, B, &[MediaKind::Audio], D, D);
        let out = g.connect(A, B, &[MediaKind::Audio], D, D);
        assert_eq!(out, ConnectOutcome::default());
        assert_eq!(g.connections().len(), 1);
    }

    #[test]
    fn loopback_is_legal() {
        let mut g = Graph::default();
        g.connect(A, A, &MediaKind::ALL, D, D);
        assert_eq!(g.sources_of(A, PadFilter::default()).len(), 3);
        assert_eq!(g.remove_element(A).len(), 3);
        assert!(g.connections().is_empty());
    }

    #[test]
    fn disconnect_by_kind_leaves_the_others() {
        let mut g = Graph::default();
        g.connect(A, B, &MediaKind::ALL, D, D);
        let removed = g.disconnect(A, B, &[MediaKind::Video], D, D);
        assert_eq!(removed.len(), 1);
        let filter = PadFilter {
            kind: Some(MediaKind::Video),
            description: None,
        };
        assert!(g.sinks_of(A, filter).is_empty());
        assert_eq!(g.disconnect(A, B, &[], D, D).len(), 2);
    }

    #[test]
    fn descriptions_name_distinct_pads() {
        let mut g = Graph::default();
        g.connect(A, B, &[MediaKind::Video], D, "left");
        let out = g.connect(C, B, &[MediaKind::Video], D, "right");
        assert!(out.replaced.is_empty());
        let filter = PadFilter {
            kind: None,
            description: Some("right"),
        };
        assert_eq!(g.sources_of(B, filter)[0].source, C);
    }
}
