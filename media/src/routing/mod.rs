//! The RTP routing core: which element's media goes to which sinks, and how each sink sees it.
//!
//! An element's incoming RTP per media kind (a source pad) fans out to any number of sink pads;
//! a sink pad has at most one source, and connecting it again replaces that source (its
//! [`Rewriter`] moves along, so the sink's stream stays continuous, as it does when a source
//! starts a new stream: see below). Connecting an element to itself is loopback.
//!
//! The router is plain data owned by the one thread that forwards the media (the WebRTC host's
//! socket loop): no locks, no channels. [`Router::route`] walks a source's list of legs and hands
//! each sink its rewritten sequence number and timestamp; the caller writes the packet (sink SSRC,
//! payload type, header extensions) straight into its send buffer, so nothing is allocated per
//! leg and the payload (`bytes::Bytes`) is never copied except into the encrypted datagram.
//!
//! Feedback from sinks flows back through the same table: keyframe requests are merged and
//! rate-limited per source ([`KeyframeGate`]); a new sink asks for one.
//!
//! # Loss recovery
//!
//! [`Router::route`] keeps each packet it forwards in its source pad's [`History`] (the last
//! [`HISTORY_LEN`] packets: header fields, codec and the shared payload, no copy). A sink's NACK
//! ([`Router::nack`]) names packets in the sink's numbering; the sink's rewriter maps them back to
//! the source's, and each one still kept is handed to the caller with the sink's header fields
//! and its codec, so a resend works whatever the source (a peer, an RtpEndpoint, a player). The
//! WebRTC host writes it as RTX (RFC 4588: the sink's rtx payload type and SSRC, the original
//! sequence number prepended to the payload) when the sink negotiated rtx for that codec, or as a
//! plain copy of the forwarded packet otherwise. A lost packet the history does not hold is
//! returned to be asked of the source (a WebRTC publisher that negotiated NACK), once per
//! [`UPSTREAM_NACK_INTERVAL`] however many sinks lost it.
//!
//! # Duplicates
//!
//! A packet the source sends again that its history still holds (same sequence number and
//! timestamp) is not forwarded again. Chromium probes its uplink with RTX copies of packets it
//! has already sent, and a publisher may answer one lost packet's NACK twice; the sinks already
//! had those packets. Their second copy is dropped by the sink's SRTP replay check before its
//! transport-wide number is recorded, so forwarding it would cost the sink's bandwidth and make
//! rkms's congestion control toward the sink (see `webrtc::congestion`) read it as loss. A
//! resend of a packet rkms never received is not in the history and goes through.
//!
//! A video sink pad whose source is replaced (a Dispatcher switching, an application
//! re-connecting) keeps its old source's picture until the new source's next keyframe starts,
//! then switches on that packet: the viewer sees no frozen picture while the keyframe it needs
//! is requested and sent. A disconnected video sink lingers on its source for
//! [`LINGER`] so that the connect that usually follows (graph changes arrive as removals, then
//! additions) is seen as a replacement; [`SWITCH_TIMEOUT`] bounds the wait for the keyframe.
//!
//! # A source's new stream
//!
//! A source pad remembers the SSRC it last forwarded. A packet under another one is a new
//! stream from the same element (a remote that restarted or moved its sender, a player that
//! reopened its input, a publisher whose SSRC changed): its numbers have nothing to do with the
//! old stream's. Every sink's rewriter re-anchors on it as on a new source (the sink's sequence
//! goes on at +1, its timestamp by the wall-clock time elapsed, so a browser does not freeze on
//! a jump of thousands), the pad's history is cleared (the old stream's packets must neither
//! answer NACKs in the new numbering nor pass for duplicates of the new stream's), and a video
//! source is asked for a keyframe unless that packet starts one. The sinks get the new
//! stream at once: the old one has ended, there is no picture to keep. Sender reports are passed
//! on only for the stream being forwarded. Per packet this costs one SSRC comparison.

mod history;
mod keyframe;
mod rewriter;

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use history::{HISTORY_LEN, History, Kept, UPSTREAM_NACK_INTERVAL};
pub use keyframe::{KeyframeGate, MIN_KEYFRAME_INTERVAL, starts_keyframe};
pub use rewriter::{Rewriter, Rewritten};

pub use crate::graph::{ElementId, MediaKind};
use crate::webrtc::codecs::CodecId;

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
    /// The SSRC of the stream last forwarded: a packet under another one starts a new stream.
    ssrc: Option<u32>,
    /// Video sinks that switch to this source at its next keyframe.
    incoming: Vec<ElementId>,
}

/// How long a disconnected video sink pad stays on its source, waiting for a replacement.
pub const LINGER: Duration = Duration::from_millis(100);
/// The longest a video sink pad waits for its new source's keyframe before switching anyway.
pub const SWITCH_TIMEOUT: Duration = Duration::from_millis(1500);

/// The forwarding table of every element's media.
#[derive(Default)]
pub struct Router {
    sources: HashMap<(ElementId, MediaKind), SourcePad>,
    /// Each sink pad's current source.
    source_of: HashMap<(ElementId, MediaKind), ElementId>,
    /// Rewriters of disconnected sink pads, kept so a later source continues their stream.
    parked: HashMap<(ElementId, MediaKind), Rewriter>,
    /// Video sink pads switching source: the new source, and since when.
    switching: HashMap<ElementId, (ElementId, Instant)>,
    /// Video sink pads disconnected from their (still feeding) source, and when.
    lingering: HashMap<ElementId, Instant>,
    /// Sinks that ask for a keyframe when they need one (a recorder at `record`), so their
    /// first connection asks for none: a request then would hold theirs back by the keyframe
    /// interval. The flag: it asked while it had no source, so its connection asks for it.
    own_keyframes: HashMap<ElementId, bool>,
}

impl Router {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// `sink` asks for its own keyframes: its first connection asks for one only if it asked
    /// before; later ones (a new source after a disconnection, a switch) always do.
    pub fn asks_own_keyframes(&mut self, sink: ElementId) {
        self.own_keyframes.insert(sink, false);
    }

    /// Feeds `sink`'s `kind` pad from `source`, replacing its previous source (for video, at the
    /// new source's next keyframe). For video, asks the source for a keyframe (returns `true`
    /// when the request should go out now).
    pub fn connect(
        &mut self,
        source: ElementId,
        sink: ElementId,
        kind: MediaKind,
        now: Instant,
    ) -> bool {
        if kind == MediaKind::Video {
            self.cancel_switch(sink);
            let lingered = self.lingering.remove(&sink).is_some();
            match self.source_of(sink, kind) {
                Some(old) if old == source && lingered => return false,
                Some(old) if old != source => {
                    self.switching.insert(sink, (source, now));
                    let pad = self.sources.entry((source, kind)).or_default();
                    pad.incoming.push(sink);
                    return pad.keyframes.request(now);
                }
                _ => {}
            }
        }
        let rewriter = self.detach(sink, kind);
        let quiet = rewriter.is_none()
            && self
                .own_keyframes
                .get_mut(&sink)
                .is_some_and(|asked| !std::mem::take(asked));
        let mut rewriter = rewriter.unwrap_or_default();
        rewriter.source_changed();
        self.source_of.insert((sink, kind), source);
        let pad = self.sources.entry((source, kind)).or_default();
        pad.legs.push(Leg { sink, rewriter });
        kind == MediaKind::Video && !quiet && pad.keyframes.request(now)
    }

    /// Stops feeding `sink`'s `kind` pad from `source` (no effect if it is fed by another). A
    /// video pad lingers for [`LINGER`] (see [`Router::settle`]).
    pub fn disconnect(
        &mut self,
        source: ElementId,
        sink: ElementId,
        kind: MediaKind,
        now: Instant,
    ) {
        if kind == MediaKind::Video && self.switching.get(&sink).is_some_and(|s| s.0 == source) {
            self.cancel_switch(sink);
            return;
        }
        if self.source_of.get(&(sink, kind)) != Some(&source) {
            return;
        }
        if kind == MediaKind::Video {
            self.cancel_switch(sink);
            self.lingering.insert(sink, now);
        } else {
            self.park(sink, kind);
        }
    }

    /// Ends the lingering of video sink pads disconnected [`LINGER`] ago or more and not
    /// reconnected since (call periodically).
    pub fn settle(&mut self, now: Instant) {
        let done: Vec<ElementId> = self
            .lingering
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= LINGER)
            .map(|(sink, _)| *sink)
            .collect();
        for sink in done {
            self.lingering.remove(&sink);
            self.park(sink, MediaKind::Video);
        }
    }

    fn park(&mut self, sink: ElementId, kind: MediaKind) {
        if let Some(rewriter) = self.detach(sink, kind) {
            self.parked.insert((sink, kind), rewriter);
        }
    }

    /// Forgets a pending switch of `sink`'s video pad.
    fn cancel_switch(&mut self, sink: ElementId) {
        if let Some((to, _)) = self.switching.remove(&sink)
            && let Some(pad) = self.sources.get_mut(&(to, MediaKind::Video))
        {
            pad.incoming.retain(|s| *s != sink);
        }
    }

    /// Moves `sink`'s video pad to the source it is switching to.
    fn complete_switch(&mut self, sink: ElementId) {
        let Some((to, _)) = self.switching.remove(&sink) else {
            return;
        };
        let kind = MediaKind::Video;
        let mut rewriter = self.detach(sink, kind).unwrap_or_default();
        rewriter.source_changed();
        self.source_of.insert((sink, kind), to);
        let pad = self.sources.entry((to, kind)).or_default();
        pad.incoming.retain(|s| *s != sink);
        pad.legs.push(Leg { sink, rewriter });
    }

    /// Forgets an element: its source pads, its sink pads. Sinks that were switching away from
    /// it switch now; sinks that were switching to it stay where they are.
    pub fn remove_element(&mut self, element: ElementId) {
        self.cancel_switch(element);
        self.lingering.remove(&element);
        self.own_keyframes.remove(&element);
        for kind in MediaKind::ALL {
            self.detach(element, kind);
            self.parked.remove(&(element, kind));
            if let Some(pad) = self.sources.remove(&(element, kind)) {
                for sink in pad.incoming {
                    self.switching.remove(&sink);
                }
                for leg in pad.legs {
                    self.source_of.remove(&(leg.sink, kind));
                    self.lingering.remove(&leg.sink);
                    if kind == MediaKind::Video && self.switching.contains_key(&leg.sink) {
                        self.parked.insert((leg.sink, kind), leg.rewriter);
                        self.complete_switch(leg.sink);
                    }
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

    /// Forwards a packet of `codec` that `source` received: remembers it for NACKs and calls
    /// `send` once per sink with the sink's header fields. `starts_keyframe` tells whether the
    /// packet starts a keyframe; it is asked only while sinks are switching to this source, a
    /// keyframe request to it is deferred, or the packet starts a new stream. Returns `true`
    /// when `source` should be asked for a keyframe now (its video started a new stream).
    #[allow(clippy::too_many_arguments)]
    pub fn route(
        &mut self,
        source: ElementId,
        kind: MediaKind,
        codec: CodecId,
        packet: &RtpPacket,
        now: Instant,
        starts_keyframe: impl FnOnce() -> bool,
        mut send: impl FnMut(ElementId, Rewritten),
    ) -> bool {
        let Some(pad) = self.sources.get_mut(&(source, kind)) else {
            return false;
        };
        let h = &packet.header;
        let (seq, ts) = (h.sequence_number, h.timestamp);
        let new_stream = pad.ssrc != Some(h.ssrc);
        if !new_stream && pad.history.holds(seq, ts) {
            // A copy of a packet already forwarded: see "Duplicates" above.
            return false;
        }
        let keyframe = if !new_stream && pad.incoming.is_empty() && !pad.keyframes.is_pending() {
            false
        } else {
            starts_keyframe()
        };
        let mut ask_keyframe = false;
        if new_stream && pad.ssrc.replace(h.ssrc).is_some() {
            // See "A source's new stream" above.
            pad.history.clear();
            for leg in &mut pad.legs {
                leg.rewriter.source_changed();
            }
            ask_keyframe = kind == MediaKind::Video
                && !keyframe
                && !pad.legs.is_empty()
                && pad.keyframes.request(now);
        }
        if keyframe {
            pad.keyframes.keyframe_passed();
        }
        if !pad.incoming.is_empty() {
            let due: Vec<ElementId> = pad
                .incoming
                .iter()
                .copied()
                .filter(|sink| {
                    keyframe
                        || self.switching.get(sink).is_none_or(|(_, since)| {
                            now.saturating_duration_since(*since) >= SWITCH_TIMEOUT
                        })
                })
                .collect();
            for sink in due {
                self.complete_switch(sink);
            }
        }
        let Some(pad) = self.sources.get_mut(&(source, kind)) else {
            return ask_keyframe;
        };
        if pad.legs.is_empty() {
            return ask_keyframe;
        }
        pad.history.push(packet, codec);
        let clock_rate = codec.clock_rate();
        for leg in pad.legs.iter_mut() {
            send(leg.sink, leg.rewriter.rewrite(seq, ts, clock_rate, now));
        }
        ask_keyframe
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
        let Some(source) = self.source_of(sink, kind) else {
            if let Some(asked) = self.own_keyframes.get_mut(&sink) {
                *asked = true;
            }
            return None;
        };
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

    /// Calls `each` with every sink that `source`'s `kind` pad feeds and `timestamp` (the RTP
    /// time of the source's stream `ssrc`) in that sink's numbering: how a sender report
    /// reaches sink elements. A report on another stream than the one being forwarded (an
    /// ended one, or a new one whose packets have not come yet) reaches none.
    pub fn sink_timestamps(
        &self,
        source: ElementId,
        kind: MediaKind,
        ssrc: u32,
        timestamp: u32,
        mut each: impl FnMut(ElementId, u32),
    ) {
        let Some(pad) = self.sources.get(&(source, kind)) else {
            return;
        };
        if pad.ssrc != Some(ssrc) {
            return;
        }
        for leg in &pad.legs {
            if let Some(ts) = leg.rewriter.timestamp(timestamp) {
                each(leg.sink, ts);
            }
        }
    }

    /// A sink lost the packets numbered `lost` (its own numbering): calls `resend` with each
    /// one still in its source's history and the sink's header fields for it, and appends to
    /// `upstream` (in the source's numbering) those to ask the source for (see
    /// [`History::ask_upstream`]). Returns the source, if the sink has one.
    pub fn nack(
        &mut self,
        sink: ElementId,
        kind: MediaKind,
        lost: &[u16],
        now: Instant,
        upstream: &mut Vec<u16>,
        mut resend: impl FnMut(&Kept, Rewritten),
    ) -> Option<ElementId> {
        let source = self.source_of(sink, kind)?;
        let pad = self.sources.get_mut(&(source, kind))?;
        let leg = pad.legs.iter().find(|l| l.sink == sink)?;
        for &sink_seq in lost {
            let seq = leg.rewriter.source_seq(sink_seq);
            match pad.history.get(seq) {
                Some(kept) => resend(kept, leg.rewriter.resend(kept.seq, kept.timestamp)),
                None => {
                    if pad.history.ask_upstream(seq, now) {
                        upstream.push(seq);
                    }
                }
            }
        }
        Some(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first payload byte of a keyframe's first packet, in these tests.
    const KEY: u8 = 0x4b;

    fn keyframe(seq: u16, ts: u32) -> RtpPacket {
        let mut p = packet(seq, ts);
        p.payload = bytes::Bytes::from_static(&[KEY]);
        p
    }

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
        r.route(
            ElementId(source),
            kind,
            CodecId::Vp8,
            p,
            Instant::now(),
            || p.payload.first() == Some(&KEY),
            |sink, rw| out.push((sink.0, rw)),
        );
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

        // c switches to b as its source: a feeds it until b's keyframe starts, then b does and
        // c's stream continues.
        r.connect(b, c, MediaKind::Video, now);
        assert!(routed(&mut r, 2, MediaKind::Video, &packet(4999, 1)).is_empty());
        assert_eq!(
            routed(&mut r, 1, MediaKind::Video, &packet(11, 990)).len(),
            3
        );
        let out = routed(&mut r, 2, MediaKind::Video, &keyframe(5000, 1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.seq, 12);
        assert_eq!(r.sink_count(a, MediaKind::Video), 2);

        // A disconnected video pad lingers, then stops.
        r.disconnect(b, c, MediaKind::Video, now);
        assert_eq!(
            routed(&mut r, 2, MediaKind::Video, &packet(5001, 2)).len(),
            1
        );
        r.settle(now + LINGER);
        assert!(routed(&mut r, 2, MediaKind::Video, &packet(5002, 3)).is_empty());
        r.remove_element(a);
        assert_eq!(r.source_of(b, MediaKind::Video), None);
    }

    #[test]
    fn a_replaced_video_source_feeds_until_the_new_keyframe_or_the_timeout() {
        let now = Instant::now();
        let mut r = Router::new();
        let (a, b, c, v) = (ElementId(1), ElementId(2), ElementId(3), ElementId(9));
        r.connect(a, v, MediaKind::Video, now);
        r.connect(a, v, MediaKind::Audio, now);
        // As graph changes arrive: the old route removed, then the new one added.
        r.disconnect(a, v, MediaKind::Video, now);
        r.disconnect(a, v, MediaKind::Audio, now);
        assert!(
            r.connect(b, v, MediaKind::Video, now),
            "b is asked for a keyframe"
        );
        r.connect(b, v, MediaKind::Audio, now);
        r.settle(now + LINGER);
        assert_eq!(routed(&mut r, 1, MediaKind::Video, &packet(1, 0)).len(), 1);
        assert!(routed(&mut r, 1, MediaKind::Audio, &packet(1, 0)).is_empty());
        assert_eq!(routed(&mut r, 2, MediaKind::Audio, &packet(1, 0)).len(), 1);
        assert_eq!(r.source_of(v, MediaKind::Video), Some(a));
        // No keyframe from c in time: the switch happens anyway.
        r.connect(c, v, MediaKind::Video, now);
        let mut out = Vec::new();
        let late = now + SWITCH_TIMEOUT;
        r.route(
            c,
            MediaKind::Video,
            CodecId::Vp8,
            &packet(7, 0),
            late,
            || false,
            |s, _| out.push(s),
        );
        assert_eq!(out, [v]);
        assert!(routed(&mut r, 1, MediaKind::Video, &packet(2, 0)).is_empty());
        // The source that was being left is released mid-switch: the sink moves at once.
        r.connect(b, v, MediaKind::Video, now);
        r.remove_element(c);
        assert_eq!(r.source_of(v, MediaKind::Video), Some(b));
    }

    #[test]
    fn answers_nacks_from_history_in_the_sinks_numbering() {
        let now = Instant::now();
        let mut r = Router::new();
        let (a, b, c) = (ElementId(1), ElementId(2), ElementId(3));
        r.connect(a, b, MediaKind::Video, now);
        routed(&mut r, 1, MediaKind::Video, &packet(100, 0));
        r.connect(c, b, MediaKind::Video, now); // b continues at 101 from c's keyframe, 7
        routed(&mut r, 3, MediaKind::Video, &keyframe(7, 0));
        routed(&mut r, 3, MediaKind::Video, &packet(8, 0));
        let mut resent = Vec::new();
        let mut upstream = Vec::new();
        let source = r.nack(
            b,
            MediaKind::Video,
            &[102, 99],
            now,
            &mut upstream,
            |p, rw| resent.push((p.seq, p.codec, rw.seq)),
        );
        assert_eq!(source, Some(c));
        assert_eq!(resent, [(8, CodecId::Vp8, 102)]);
        // 99 is c's 5, before its first forwarded packet: c is asked for it, once.
        assert_eq!(upstream, [5]);
        r.nack(b, MediaKind::Video, &[99], now, &mut upstream, |_, _| {});
        assert_eq!(upstream, [5]);
    }

    #[test]
    fn sender_report_times_reach_the_sinks_a_source_feeds_in_their_numbering() {
        let now = Instant::now();
        let mut r = Router::new();
        let (a, b, c) = (ElementId(1), ElementId(2), ElementId(3));
        r.connect(a, b, MediaKind::Audio, now);
        routed(&mut r, 1, MediaKind::Audio, &packet(100, 5000));
        r.connect(c, b, MediaKind::Audio, now);
        let mut seen = Vec::new();
        r.sink_timestamps(c, MediaKind::Audio, 0, 900, |sink, ts| {
            seen.push((sink, ts))
        });
        assert!(
            seen.is_empty(),
            "no mapping before c's first packet reaches b"
        );
        let first = routed(&mut r, 3, MediaKind::Audio, &packet(7, 1000));
        assert_eq!(first.len(), 1);
        r.sink_timestamps(c, MediaKind::Audio, 0, 1960, |sink, ts| {
            seen.push((sink, ts))
        });
        assert_eq!(seen, [(b, first[0].1.timestamp + 960)]);
        let mut from_a = Vec::new();
        r.sink_timestamps(a, MediaKind::Audio, 0, 5000, |sink, ts| {
            from_a.push((sink, ts))
        });
        assert!(from_a.is_empty(), "a feeds nobody now");
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

    #[test]
    fn a_sink_that_asks_its_own_keyframes_is_connected_without_one() {
        let now = Instant::now();
        let mut r = Router::new();
        let (a, recorder) = (ElementId(1), ElementId(2));
        r.asks_own_keyframes(recorder);
        assert!(!r.connect(a, recorder, MediaKind::Video, now));
        assert_eq!(
            r.keyframe_requested(recorder, MediaKind::Video, now),
            Some(a),
            "its own request goes out at once"
        );
        // Fed again after a disconnection, by another source: that one is asked.
        let later = now + MIN_KEYFRAME_INTERVAL;
        r.disconnect(a, recorder, MediaKind::Video, later);
        r.settle(later + LINGER);
        assert!(r.connect(ElementId(3), recorder, MediaKind::Video, later + LINGER));

        // One that asked before it had a source is asked for at its connection.
        let early = ElementId(4);
        r.asks_own_keyframes(early);
        assert_eq!(r.keyframe_requested(early, MediaKind::Video, now), None);
        assert!(r.connect(ElementId(5), early, MediaKind::Video, now));
    }

    #[test]
    fn a_keyframe_passing_answers_a_deferred_request() {
        let now = Instant::now();
        let mut r = Router::new();
        let (a, b) = (ElementId(1), ElementId(2));
        r.connect(a, b, MediaKind::Video, now);
        assert_eq!(r.keyframe_requested(b, MediaKind::Video, now), None);
        routed(&mut r, 1, MediaKind::Video, &keyframe(1, 0));
        let mut due = Vec::new();
        r.due_keyframe_requests(now + MIN_KEYFRAME_INTERVAL, |s, k| due.push((s, k)));
        assert_eq!(due, [], "the keyframe that passed was the answer");
    }

    #[test]
    fn a_packet_sent_again_is_forwarded_once_and_a_late_repair_goes_through() {
        let now = Instant::now();
        let mut r = Router::new();
        r.connect(ElementId(1), ElementId(2), MediaKind::Video, now);
        assert_eq!(
            routed(&mut r, 1, MediaKind::Video, &packet(10, 900)).len(),
            1
        );
        // 11 is lost on the way in; 12 arrives, then a probe's copy of 10 and 12.
        assert_eq!(
            routed(&mut r, 1, MediaKind::Video, &packet(12, 990)).len(),
            1
        );
        assert!(routed(&mut r, 1, MediaKind::Video, &packet(10, 900)).is_empty());
        assert!(routed(&mut r, 1, MediaKind::Video, &packet(12, 990)).is_empty());
        // The resend of 11 repairs a loss the sink also had.
        let out = routed(&mut r, 1, MediaKind::Video, &packet(11, 990));
        assert_eq!(out.len(), 1);
        assert!(routed(&mut r, 1, MediaKind::Video, &packet(11, 990)).is_empty());
        // The same number with another timestamp is another packet (a source that restarted).
        assert_eq!(
            routed(&mut r, 1, MediaKind::Video, &packet(10, 5000)).len(),
            1
        );
    }

    #[test]
    fn a_sources_new_stream_continues_the_sinks_stream() {
        let t0 = Instant::now();
        let mut r = Router::new();
        let (a, b) = (ElementId(1), ElementId(2));
        assert!(r.connect(a, b, MediaKind::Video, t0));
        r.connect(a, b, MediaKind::Audio, t0);
        let route = |r: &mut Router, kind, p: &RtpPacket, at| {
            let mut out = Vec::new();
            let ask = r.route(
                a,
                kind,
                CodecId::Vp8,
                p,
                at,
                || p.payload.first() == Some(&KEY),
                |_, rw| out.push(rw),
            );
            (out, ask)
        };
        let of = |ssrc, mut p: RtpPacket| {
            p.header.ssrc = ssrc;
            p
        };
        for seq in 100..=110 {
            route(&mut r, MediaKind::Video, &of(5, packet(seq, 900)), t0);
        }
        // The sender restarts a second later under SSRC 6, its numbers overlapping the old
        // stream's: its 105 is no duplicate of the old 105, the sink's sequence goes on, its
        // timestamp moves on by the second, and a keyframe is asked for.
        let t1 = t0 + Duration::from_secs(1);
        let (out, ask) = route(&mut r, MediaKind::Video, &of(6, packet(105, 900)), t1);
        assert_eq!(
            out,
            [Rewritten {
                seq: 111,
                timestamp: 900 + 90_000
            }]
        );
        assert!(ask, "a keyframe of the new stream is asked for");
        let (out, ask) = route(&mut r, MediaKind::Video, &of(6, packet(106, 3900)), t1);
        assert_eq!(out[0].seq, 112);
        assert!(!ask);
        // The sink's NACKs: its 110 was the old stream's (mapped to the new one's 104, which
        // the old stream's 104 must not answer); its 112 is the new one's 106.
        let mut resent = Vec::new();
        r.nack(
            b,
            MediaKind::Video,
            &[110, 112],
            t1,
            &mut Vec::new(),
            |p, rw| resent.push((p.seq, rw.seq)),
        );
        assert_eq!(resent, [(106, 112)]);
        // Sender reports count for the stream being forwarded only.
        let mut seen = Vec::new();
        r.sink_timestamps(a, MediaKind::Video, 5, 900, |_, ts| seen.push(ts));
        r.sink_timestamps(a, MediaKind::Video, 6, 900, |_, ts| seen.push(ts));
        assert_eq!(seen, [900 + 90_000]);
        // A new stream that starts with a keyframe needs no request; audio needs none.
        let t2 = t1 + MIN_KEYFRAME_INTERVAL;
        let (out, ask) = route(&mut r, MediaKind::Video, &of(7, keyframe(9, 0)), t2);
        assert_eq!((out[0].seq, ask), (113, false));
        let mut due = Vec::new();
        r.due_keyframe_requests(t2 + MIN_KEYFRAME_INTERVAL, |s, k| due.push((s, k)));
        assert_eq!(due, []);
        route(&mut r, MediaKind::Audio, &of(5, packet(1, 960)), t0);
        let (out, ask) = route(&mut r, MediaKind::Audio, &of(6, packet(40_000, 7)), t1);
        assert_eq!((out[0].seq, ask), (2, false));
    }
}
