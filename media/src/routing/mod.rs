//! The RTP routing core: which element's media goes to which sinks, and how each sink sees it.
//!
//! An element's incoming RTP per media kind (a source pad) fans out to any number of sink pads;
//! a sink pad has at most one source, and connecting it again replaces that source (its
//! [`Rewriter`] moves along, so the sink's stream stays continuous). Connecting an element to
//! itself is loopback.
//!
//! The router is plain data owned by the one thread that forwards the media (the WebRTC host's
//! socket loop): no locks, no channels. [`Router::route`] walks a source's list of legs and hands
//! each sink its rewritten sequence number and timestamp; the caller writes the packet (sink SSRC,
//! payload type, header extensions) straight into its send buffer, so nothing is allocated per
//! leg and the payload (`bytes::Bytes`) is never copied except into the encrypted datagram.
//!
//! Feedback from sinks flows back through the same table: keyframe requests are merged and
//! rate-limited per source ([`KeyframeGate`]); a new sink asks for one; NACKs are answered from
//! the source's [`History`] with the sink's own numbering.

mod history;
mod keyframe;
mod rewriter;

use std::collections::HashMap;
use std::time::Instant;

pub use history::{HISTORY_LEN, History};
pub use keyframe::{KeyframeGate, MIN_KEYFRAME_INTERVAL};
pub use rewriter::{Rewriter, Rewritten};

pub use crate::graph::{ElementId, MediaKind};

/// An RTP packet as the routing core sees it: a parsed header and a shared payload.
pub type RtpPacket = rtc::rtp::Packet;

/// One sink of a source pad.
struct Leg {
    sink: ElementId,
    rewriter: Rewriter,
}

#[derive(Default)]
struct SourcePad {
    legs: Vec<Leg>,
    history: History,
    keyframes: KeyframeGate,
}

/// The forwarding table of every element's media.
#[derive(Default)]
pub struct Router {
    sources: HashMap<(ElementId, MediaKind), SourcePad>,
    /// Each sink pad's current source.
    source_of: HashMap<(ElementId, MediaKind), ElementId>,
    /// Rewriters of disconnected sink pads, kept so a later source continues their stream.
    parked: HashMap<(ElementId, MediaKind), Rewriter>,
}

fn clock_rate(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => 48_000,
        _ => 90_000,
    }
}

impl Router {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `sink`'s `kind` pad from `source`, replacing its previous source. For video, asks
    /// the source for a keyframe (returns `true` when the request should go out now).
    pub fn connect(
        &mut self,
        source: ElementId,
        sink: ElementId,
        kind: MediaKind,
        now: Instant,
    ) -> bool {
        let rewriter = self.detach(sink, kind);
        let mut rewriter = rewriter.unwrap_or_else(|| Rewriter::new(clock_rate(kind)));
        rewriter.source_changed();
        self.source_of.insert((sink, kind), source);
        let pad = self.sources.entry((source, kind)).or_default();
        pad.legs.push(Leg { sink, rewriter });
        kind == MediaKind::Video && pad.keyframes.request(now)
    }

    /// Stops feeding `sink`'s `kind` pad from `source` (no effect if it is fed by another).
    pub fn disconnect(&mut self, source: ElementId, sink: ElementId, kind: MediaKind) {
        if self.source_of.get(&(sink, kind)) == Some(&source)
            && let Some(rewriter) = self.detach(sink, kind)
        {
            self.parked.insert((sink, kind), rewriter);
        }
    }

    /// Forgets an element: its source pads, its sink pads.
    pub fn remove_element(&mut self, element: ElementId) {
        for kind in MediaKind::ALL {
            self.detach(element, kind);
            self.parked.remove(&(element, kind));
            if let Some(pad) = self.sources.remove(&(element, kind)) {
                for leg in pad.legs {
                    self.source_of.remove(&(leg.sink, kind));
                }
            }
        }
    }

    /// The source feeding `sink`'s `kind` pad.
    pub fn source_of(&self, sink: ElementId, kind: MediaKind) -> Option<ElementId> {
        self.source_of.get(&(sink, kind)).copied()
    }

    /// How many sinks `source`'s `kind` pad feeds.
    pub fn sink_count(&self, source: ElementId, kind: MediaKind) -> usize {
        self.sources
            .get(&(source, kind))
            .map_or(0, |p| p.legs.len())
    }

    /// Takes the sink pad off its source, returning its rewriter.
    fn detach(&mut self, sink: ElementId, kind: MediaKind) -> Option<Rewriter> {
        let source = self.source_of.remove(&(sink, kind));
        let from_source = source.and_then(|source| {
            let pad = self.sources.get_mut(&(source, kind))?;
            let at = pad.legs.iter().position(|l| l.sink == sink)?;
            Some(pad.legs.swap_remove(at).rewriter)
        });
        from_source.or_else(|| self.parked.remove(&(sink, kind)))
    }

    /// Forwards a packet that `source` received: remembers it for NACKs and calls `send` once
    /// per sink with the sink's header fields.
    pub fn route(
        &mut self,
        source: ElementId,
        kind: MediaKind,
        packet: &RtpPacket,
        now: Instant,
        mut send: impl FnMut(ElementId, Rewritten),
    ) {
        let Some(pad) = self.sources.get_mut(&(source, kind)) else {
            return;
        };
        if pad.legs.is_empty() {
            return;
        }
        pad.history.push(packet);
        let (seq, ts) = (packet.header.sequence_number, packet.header.timestamp);
        for leg in pad.legs.iter_mut() {
            send(leg.sink, leg.rewriter.rewrite(seq, ts, now));
        }
    }

    /// A sink asked for a keyframe: returns the source to send a request to now, if any (merged
    /// with other sinks' requests and rate-limited; a deferred one comes out of
    /// [`Router::due_keyframe_requests`]).
    pub fn keyframe_requested(
        &mut self,
        sink: ElementId,
        kind: MediaKind,
        now: Instant,
    ) -> Option<ElementId> {
        let source = self.source_of(sink, kind)?;
        let pad = self.sources.get_mut(&(source, kind))?;
        pad.keyframes.request(now).then_some(source)
    }

    /// Deferred keyframe requests that are due now.
    pub fn due_keyframe_requests(
        &mut self,
        now: Instant,
        mut send: impl FnMut(ElementId, MediaKind),
    ) {
        for ((source, kind), pad) in self.sources.iter_mut() {
            if pad.keyframes.poll(now) {
                send(*source, *kind);
            }
        }
    }

    /// A sink lost the packets numbered `lost` (its own numbering): calls `resend` with each
    /// one still in its source's history, renumbered for the sink. Returns how many were found.
    pub fn nack(
        &self,
        sink: ElementId,
        kind: MediaKind,
        lost: impl IntoIterator<Item = u16>,
        mut resend: impl FnMut(&RtpPacket, Rewritten),
    ) -> usize {
        let Some(source) = self.source_of(sink, kind) else {
            return 0;
        };
        let Some(pad) = self.sources.get(&(source, kind)) else {
            return 0;
        };
        let Some(leg) = pad.legs.iter().find(|l| l.sink == sink) else {
            return 0;
        };
        let mut found = 0;
        for sink_seq in lost {
            if let Some(packet) = pad.history.get(leg.rewriter.source_seq(sink_seq)) {
                found += 1;
                resend(
                    packet,
                    leg.rewriter
                        .resend(packet.header.sequence_number, packet.header.timestamp),
                );
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32) -> RtpPacket {
        let mut p = RtpPacket::default();
        p.header.sequence_number = seq;
        p.header.timestamp = ts;
        p.payload = bytes::Bytes::from_static(b"frame");
        p
    }

    fn routed(
        r: &mut Router,
        source: u32,
        kind: MediaKind,
        p: &RtpPacket,
    ) -> Vec<(u32, Rewritten)> {
        let mut out = Vec::new();
        r.route(ElementId(source), kind, p, Instant::now(), |sink, rw| {
            out.push((sink.0, rw))
        });
        out.sort_by_key(|(s, _)| *s);
        out
    }

    #[test]
    fn fans_out_replaces_sources_and_loops_back() {
        let now = Instant::now();
        let mut r = Router::new();
        let (a, b, c) = (ElementId(1), ElementId(2), ElementId(3));
        assert!(
            r.connect(a, b, MediaKind::Video, now),
            "a new video sink asks for a keyframe"
        );
        r.connect(a, c, MediaKind::Video, now);
        r.connect(a, a, MediaKind::Video, now);
        let out = routed(&mut r, 1, MediaKind::Video, &packet(10, 900));
        assert_eq!(out.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(routed(&mut r, 1, MediaKind::Audio, &packet(10, 900)).is_empty());

        // c switches to b as its source; a no longer feeds it and its stream continues.
        r.connect(b, c, MediaKind::Video, now);
        assert_eq!(r.sink_count(a, MediaKind::Video), 2);
        let out = routed(&mut r, 2, MediaKind::Video, &packet(5000, 1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.seq, 11);

        r.disconnect(b, c, MediaKind::Video);
        assert!(routed(&mut r, 2, MediaKind::Video, &packet(5001, 2)).is_empty());
        r.remove_element(a);
        assert_eq!(r.source_of(b, MediaKind::Video), None);
    }

    #[test]
    fn answers_nacks_from_history_in_the_sinks_numbering() {
        let now = Instant::now();
        let mut r = Router::new();
        let (a, b, c) = (ElementId(1), ElementId(2), ElementId(3));
        r.connect(a, b, MediaKind::Video, now);
        routed(&mut r, 1, MediaKind::Video, &packet(100, 0));
        r.connect(c, b, MediaKind::Video, now); // b now continues at 101 from c's 7
        routed(&mut r, 3, MediaKind::Video, &packet(7, 0));
        routed(&mut r, 3, MediaKind::Video, &packet(8, 0));
        let mut resent = Vec::new();
        let found = r.nack(b, MediaKind::Video, [102, 300], |p, rw| {
            resent.push((p.header.sequence_number, rw.seq))
        });
        assert_eq!(found, 1);
        assert_eq!(resent, [(8, 102)]);
    }

    #[test]
    fn merges_keyframe_requests_per_source() {
        let now = Instant::now();
        let mut r = Router::new();
        let (a, b, c) = (ElementId(1), ElementId(2), ElementId(3));
        r.connect(a, b, MediaKind::Video, now);
        r.connect(a, c, MediaKind::Video, now);
        assert_eq!(
            r.keyframe_requested(b, MediaKind::Video, now),
            None,
            "just asked on connect"
        );
        let later = now + MIN_KEYFRAME_INTERVAL;
        let mut due = Vec::new();
        r.due_keyframe_requests(later, |s, k| due.push((s, k)));
        assert_eq!(due, [(a, MediaKind::Video)]);
        assert_eq!(r.keyframe_requested(c, MediaKind::Video, later), None);
    }
}
