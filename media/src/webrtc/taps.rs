//! Elements that live on a socket loop without being WebRTC peers.
//!
//! A pipeline's elements share one loop thread, and the loop's [`crate::routing::Router`] is
//! the only place media is routed. A recorder or a player joins that loop through an
//! [`ElementPort`] (see [`super::WebRtcHost::add_element`]):
//!
//! - a **sink** (RecorderEndpoint) calls [`ElementPort::receive`]: from then on every packet the
//!   router sends it is handed, with the sink's rewritten sequence number and timestamp and the
//!   source's payload `Bytes` (no copy), to a bounded channel that the element's own thread
//!   drains. File I/O never runs on the loop; when the channel is full the packet is dropped and
//!   counted ([`ElementPort::dropped`]), the loop never waits.
//! - a **source** (PlayerEndpoint) calls [`ElementPort::send_rtp`] from its pacing thread; the
//!   packet reaches the loop as a command (woken through the loop's waker) and is routed
//!   exactly like a peer's inbound RTP.
//! - A sink may also call [`ElementPort::sender_reports`]: its sources' RTCP sender reports,
//!   with their RTP time in the sink's numbering, so a recorder puts a sender's audio and video
//!   on one clock.
//! - Either asks its source for a keyframe with [`ElementPort::request_keyframe`], merged and
//!   rate-limited with the WebRTC sinks' PLIs by the router.
//! - A source that can produce keyframes on demand (RtpEndpoint, by asking its remote sender)
//!   hears its sinks' requests through [`ElementPort::on_keyframe_request`].
//! - A source's packets enter the router's history like a peer's, codec included, so its WebRTC
//!   sinks' NACKs are answered on the loop (as RTX when negotiated) without the element.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::codecs::CodecId;
use super::error::WebRtcError;
use super::host::{Command, LoopHandle, Placement};
use crate::graph::{ElementId, MediaKind};
use crate::routing::{Rewritten, RtpPacket};

/// A routed packet as a sink element receives it.
#[derive(Debug, Clone)]
pub struct SinkPacket {
    /// Media kind of the sink pad it arrived on.
    pub kind: MediaKind,
    /// Codec of the payload.
    pub codec: CodecId,
    /// RTP marker bit.
    pub marker: bool,
    /// Sequence number in the sink's numbering.
    pub seq: u16,
    /// RTP timestamp in the sink's numbering.
    pub timestamp: u32,
    /// The payload, shared with every other sink of the packet.
    pub payload: Bytes,
    /// When the loop routed it.
    pub arrival: Instant,
}

/// A source's RTCP sender report as a sink element receives it: the sender's wall clock at an
/// RTP time of the stream the sink receives.
#[derive(Debug, Clone, Copy)]
pub struct SinkSenderReport {
    /// Media kind of the sink pad the stream arrives on.
    pub kind: MediaKind,
    /// The sender's wall clock, 64-bit NTP format.
    pub ntp: u64,
    /// The RTP time `ntp` corresponds to, in the sink's numbering.
    pub timestamp: u32,
    /// When the loop received the report.
    pub arrival: Instant,
}

/// What an element asks of its loop.
pub(crate) enum TapInput {
    /// The element is a sink: routed packets go to this channel.
    AttachSink(SinkTap),
    /// The sink asks for keyframes when it needs them: connecting it asks for none.
    OwnKeyframes,
    /// The sink also wants its sources' sender reports, on this channel.
    AttachReports(Sender<SinkSenderReport>),
    /// A packet the element (a source) produced, to route.
    Rtp(MediaKind, CodecId, RtpPacket),
    /// The sender report of a stream the element (a source) produces (SSRC `ssrc`): its wall
    /// clock (NTP) at an RTP time of that stream, passed on to the sinks that take reports.
    SenderReport {
        kind: MediaKind,
        ssrc: u32,
        ntp: u64,
        rtp_time: u32,
    },
    /// The element (a sink) wants a keyframe from its source.
    KeyframeRequest(MediaKind),
    /// The element (a source) wants to hear its sinks' keyframe requests.
    AttachKeyframeHook(KeyframeHook),
}

/// Called on the loop thread when a source element is asked for a keyframe; must not block.
pub type KeyframeHook = Box<dyn Fn(MediaKind) + Send>;

/// The loop's side of a sink element.
pub(crate) struct SinkTap {
    tx: Sender<SinkPacket>,
    reports: Option<Sender<SinkSenderReport>>,
    dropped: Arc<AtomicU64>,
}

/// The sink elements of one loop, and the source elements that take keyframe requests.
#[derive(Default)]
pub(crate) struct Taps {
    sinks: HashMap<ElementId, SinkTap>,
    keyframe_hooks: HashMap<ElementId, KeyframeHook>,
}

impl Taps {
    pub(crate) fn attach(&mut self, id: ElementId, tap: SinkTap) {
        self.sinks.insert(id, tap);
    }

    pub(crate) fn attach_reports(&mut self, id: ElementId, reports: Sender<SinkSenderReport>) {
        if let Some(tap) = self.sinks.get_mut(&id) {
            tap.reports = Some(reports);
        }
    }

    /// Hands a sender report to `sink` if it is a sink element that asked for them. Reports
    /// come about once a second per stream: one lost to a full channel is not worth a log.
    pub(crate) fn deliver_report(&self, sink: ElementId, report: SinkSenderReport) {
        if let Some(reports) = self.sinks.get(&sink).and_then(|t| t.reports.as_ref()) {
            let _ = reports.try_send(report);
        }
    }

    pub(crate) fn attach_keyframe_hook(&mut self, id: ElementId, hook: KeyframeHook) {
        self.keyframe_hooks.insert(id, hook);
    }

    pub(crate) fn remove(&mut self, id: ElementId) {
        self.sinks.remove(&id);
        self.keyframe_hooks.remove(&id);
    }

    /// Passes a keyframe request to source element `id`, if it takes them.
    pub(crate) fn request_keyframe(&self, id: ElementId, kind: MediaKind) {
        if let Some(hook) = self.keyframe_hooks.get(&id) {
            hook(kind);
        }
    }

    /// Hands a routed packet to `sink` if it is a sink element; `false` when it is not one.
    pub(crate) fn deliver(
        &self,
        sink: ElementId,
        kind: MediaKind,
        codec: CodecId,
        packet: &RtpPacket,
        rewritten: Rewritten,
        now: Instant,
    ) -> bool {
        if self.sinks.is_empty() {
            return false;
        }
        let Some(tap) = self.sinks.get(&sink) else {
            return false;
        };
        let item = SinkPacket {
            kind,
            codec,
            marker: packet.header.marker,
            seq: rewritten.seq,
            timestamp: rewritten.timestamp,
            payload: packet.payload.clone(),
            arrival: now,
        };
        match tap.tx.try_send(item) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                if tap.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        element = sink.0,
                        "element thread is behind; dropping packets (counted)"
                    );
                }
            }
        }
        true
    }
}

/// A recorder's or player's link to the loop its pipeline lives on. Dropping it removes the
/// element from that loop (its routes with it).
pub struct ElementPort {
    id: ElementId,
    handle: LoopHandle,
    placement: Placement,
    dropped: Arc<AtomicU64>,
}

impl ElementPort {
    pub(super) fn new(id: ElementId, handle: LoopHandle, placement: Placement) -> Self {
        Self {
            id,
            handle,
            placement,
            dropped: Arc::default(),
        }
    }

    /// The element id.
    pub fn id(&self) -> ElementId {
        self.id
    }

    /// Makes the element a sink: the packets routed to it arrive on the returned channel, which
    /// holds at most `capacity` of them.
    pub fn receive(&self, capacity: usize) -> Result<Receiver<SinkPacket>, WebRtcError> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let tap = SinkTap {
            tx,
            reports: None,
            dropped: self.dropped.clone(),
        };
        self.handle
            .send(Command::Tap(self.id, TapInput::AttachSink(tap)))?;
        Ok(rx)
    }

    /// Tells the router that this sink asks for keyframes itself ([`Self::request_keyframe`])
    /// when it needs them, so connecting it to a source asks for none: a recorder wants its
    /// keyframe at `record`, and an earlier request would hold that one back.
    pub fn asks_own_keyframes(&self) -> Result<(), WebRtcError> {
        self.handle
            .send(Command::Tap(self.id, TapInput::OwnKeyframes))
    }

    /// Makes a sink (after [`Self::receive`]) also receive its sources' RTCP sender reports, at
    /// most `capacity` of them waiting.
    pub fn sender_reports(
        &self,
        capacity: usize,
    ) -> Result<Receiver<SinkSenderReport>, WebRtcError> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        self.handle
            .send(Command::Tap(self.id, TapInput::AttachReports(tx)))?;
        Ok(rx)
    }

    /// Routes a packet this element produced to its sinks.
    pub fn send_rtp(
        &self,
        kind: MediaKind,
        codec: CodecId,
        packet: RtpPacket,
    ) -> Result<(), WebRtcError> {
        self.handle
            .send(Command::Tap(self.id, TapInput::Rtp(kind, codec, packet)))
    }

    /// Passes on the sender report of the `kind` stream this element produces under `ssrc`
    /// (`rtp_time` in the numbering of the packets it gives [`Self::send_rtp`]), so the sinks
    /// that record it can align audio and video.
    pub fn send_sender_report(
        &self,
        kind: MediaKind,
        ssrc: u32,
        ntp: u64,
        rtp_time: u32,
    ) -> Result<(), WebRtcError> {
        self.handle.send(Command::Tap(
            self.id,
            TapInput::SenderReport {
                kind,
                ssrc,
                ntp,
                rtp_time,
            },
        ))
    }

    /// Asks the source feeding this element's `kind` pad for a keyframe.
    pub fn request_keyframe(&self, kind: MediaKind) {
        let _ = self
            .handle
            .send(Command::Tap(self.id, TapInput::KeyframeRequest(kind)));
    }

    /// Makes `hook` hear the keyframe requests of this element's sinks (merged and
    /// rate-limited by the router), on the loop thread.
    pub fn on_keyframe_request(&self, hook: KeyframeHook) -> Result<(), WebRtcError> {
        self.handle
            .send(Command::Tap(self.id, TapInput::AttachKeyframeHook(hook)))
    }

    /// Packets dropped because this sink's thread was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for ElementPort {
    fn drop(&mut self) {
        self.placement.lock().remove(&self.id);
        let _ = self.handle.send(Command::Release(self.id));
    }
}
