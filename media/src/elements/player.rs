//! PlayerEndpoint's media side: a thread that opens the input, paces its frames in real time
//! ([`rkms_recorder::rtp::Pacer`]), packetizes them ([`rkms_recorder::rtp::Packetizer`]) and
//! hands the packets to its pipeline's socket loop, where they are routed like a peer's.
//!
//! Nothing is decoded: a sink that did not negotiate the input's codec cannot take it (the
//! loop drops those packets for that sink). The first video track and the first Opus track of
//! the input are played; AAC (MP4 files) cannot travel over WebRTC and is left out (logged).
//! The RTP timestamps keep running across pause, seek and replay, so receivers see one
//! continuous stream.
//!
//! `rtsp://` cameras are played by [`super::rtsp`] behind the same [`PlayerElement`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use rkms_recorder::player::{Source, SourceFrame};
use rkms_recorder::rtp::{Pacer, Packetizer};
use tokio::sync::oneshot;

use super::rtsp::RtspTarget;
use super::{ElementEvent, ElementEvents, Flows, forwarded_codec, media_kind};
use crate::graph::MediaKind;
use crate::routing::RtpPacket;
use crate::webrtc::codecs::CodecId;
use crate::webrtc::{ElementPort, WebRtcError};

/// Opens a player's input from its URI.
pub type Opener = Arc<dyn Fn(&str) -> rkms_recorder::Result<Box<dyn Source>> + Send + Sync>;

/// `getVideoInfo`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    /// Whether `setPosition` works.
    pub seekable: bool,
    /// Duration in milliseconds (0 when unknown, e.g. a live camera).
    pub duration_ms: u64,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// A command to a player's thread.
pub(super) enum Control {
    Play,
    Pause,
    Stop,
    Seek(u64, Reply<()>),
    Info(Reply<VideoInfo>),
}

/// A player element. Dropping it stops the thread and takes the element off its loop.
pub struct PlayerElement {
    control: ControlSender,
    /// Media time (ms) of the last frame sent.
    position_ms: Arc<Mutex<u64>>,
}

impl PlayerElement {
    /// Starts the thread of a player of `uri` (opened with `open` at the first `play` or
    /// `getVideoInfo`), sending into `port` and reporting through `events`.
    pub fn start(
        port: ElementPort,
        uri: String,
        open: Opener,
        events: ElementEvents,
    ) -> Result<Self, WebRtcError> {
        let (control, control_rx) = crossbeam_channel::unbounded();
        let position_ms = Arc::new(Mutex::new(0));
        let thread = PlayerThread {
            port,
            uri,
            open,
            events,
            position_ms: position_ms.clone(),
            input: None,
            playing: false,
            flows: Flows::default(),
            next_out_us: 0,
            paused_at: None,
        };
        std::thread::Builder::new()
            .name("rkms-player".into())
            .spawn(move || thread.run(control_rx))?;
        Ok(Self {
            control: ControlSender::File(control),
            position_ms,
        })
    }

    /// Starts the thread of a player of a live camera (connected at the first `play`).
    pub fn start_live(
        port: ElementPort,
        target: RtspTarget,
        events: ElementEvents,
    ) -> Result<Self, WebRtcError> {
        let position_ms = Arc::new(Mutex::new(0));
        let control = super::rtsp::live::spawn(port, target, events, position_ms.clone())?;
        Ok(Self {
            control: ControlSender::Live(control),
            position_ms,
        })
    }

    /// Starts or resumes playing.
    pub fn play(&self) {
        self.control.send(Control::Play);
    }

    /// Pauses; `play` resumes where it stopped.
    pub fn pause(&self) {
        self.control.send(Control::Pause);
    }

    /// Stops; `play` starts again from the beginning.
    pub fn stop(&self) {
        self.control.send(Control::Stop);
    }

    /// Media time of the last frame sent, in milliseconds.
    pub fn position_ms(&self) -> u64 {
        *self.position_ms.lock()
    }

    /// Moves to the last keyframe at or before `ms`.
    pub async fn set_position(&self, ms: u64) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.control.send(Control::Seek(ms, tx));
        rx.await.map_err(|_| "the player has stopped".to_owned())?
    }

    /// Whether the input is seekable and how long it is (opens it if needed).
    pub async fn video_info(&self) -> Result<VideoInfo, String> {
        let (tx, rx) = oneshot::channel();
        self.control.send(Control::Info(tx));
        rx.await.map_err(|_| "the player has stopped".to_owned())?
    }
}

/// The command channel of a file player's thread or a live player's runtime.
enum ControlSender {
    File(Sender<Control>),
    Live(tokio::sync::mpsc::UnboundedSender<Control>),
}

impl ControlSender {
    /// Sends `control`; a player whose thread has ended ignores it.
    fn send(&self, control: Control) {
        let _ = match self {
            ControlSender::File(tx) => tx.send(control).map_err(drop),
            ControlSender::Live(tx) => tx.send(control).map_err(drop),
        };
    }
}

/// One played track.
struct Track {
    kind: MediaKind,
    codec: CodecId,
    packetizer: Packetizer,
}

/// An opened input and its playing state.
struct Input {
    source: Box<dyn Source>,
    /// Per track of the source: the played track, if played.
    tracks: Vec<Option<Track>>,
    pacer: Pacer,
    /// The next frame, read ahead until it is due (its time already mapped to output).
    next: Option<SourceFrame>,
    /// Output time = input time + offset (keeps RTP time running across seeks and replays).
    offset_us: i64,
}

struct PlayerThread {
    port: ElementPort,
    uri: String,
    open: Opener,
    events: ElementEvents,
    position_ms: Arc<Mutex<u64>>,
    input: Option<Input>,
    playing: bool,
    flows: Flows,
    /// The output time the next frame should have at the earliest.
    next_out_us: u64,
    paused_at: Option<Instant>,
}

impl PlayerThread {
    fn run(mut self, control: Receiver<Control>) {
        loop {
            let wait = self.send_due(Instant::now());
            match control.recv_timeout(wait) {
                Ok(c) => self.on_control(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.stop_flows();
    }

    fn emit(&self, event: ElementEvent) {
        (self.events)(event);
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Play => {
                if self.playing || !self.ensure_open() {
                    return;
                }
                self.playing = true;
                if let Some(input) = &mut self.input {
                    input.pacer.reset();
                    // Time paused shows as time passed, so the stream's clock stays real.
                    if let Some(at) = self.paused_at.take() {
                        let paused = at.elapsed().as_micros() as i64;
                        input.offset_us += paused;
                        if let Some(next) = &mut input.next {
                            next.frame.pts_us = next.frame.pts_us.saturating_add(paused as u64);
                        }
                    }
                }
            }
            Control::Pause => {
                if std::mem::take(&mut self.playing) {
                    self.paused_at = Some(Instant::now());
                    self.stop_flows();
                }
            }
            Control::Stop => {
                self.playing = false;
                self.paused_at = None;
                self.input = None;
                *self.position_ms.lock() = 0;
                self.stop_flows();
            }
            Control::Seek(ms, reply) => {
                let _ = reply.send(self.seek(ms));
            }
            Control::Info(reply) => {
                let info = if self.ensure_open() {
                    self.input.as_ref().map(|i| VideoInfo {
                        seekable: i.source.seekable(),
                        duration_ms: i.source.duration_us().unwrap_or(0) / 1000,
                    })
                } else {
                    None
                };
                let _ = reply.send(info.ok_or_else(|| format!("cannot open {}", self.uri)));
            }
        }
    }

    fn seek(&mut self, ms: u64) -> Result<(), String> {
        if !self.ensure_open() {
            return Err(format!("cannot open {}", self.uri));
        }
        let Some(input) = &mut self.input else {
            return Err(format!("cannot open {}", self.uri));
        };
        if !input.source.seekable() {
            return Err("this input is not seekable".into());
        }
        let at = input
            .source
            .seek(ms.saturating_mul(1000))
            .map_err(|e| e.to_string())?;
        input.next = None;
        input.pacer.reset();
        input.offset_us = self.next_out_us as i64 - at as i64;
        *self.position_ms.lock() = at / 1000;
        Ok(())
    }

    /// Opens the input if it is not open; reports a failure as an `Error` event.
    fn ensure_open(&mut self) -> bool {
        if self.input.is_some() {
            return true;
        }
        let source = match (self.open)(&self.uri) {
            Ok(source) => source,
            Err(e) => {
                tracing::warn!(uri = %self.uri, error = %e, "cannot play");
                self.emit(ElementEvent::Error {
                    kind: e.kurento_type(),
                    description: format!("cannot play {}: {e}", self.uri),
                });
                return false;
            }
        };
        let mut tracks = Vec::new();
        let mut taken = [false, false];
        for config in source.tracks() {
            let kind = media_kind(config.codec.kind());
            let slot = usize::from(kind == MediaKind::Video);
            let codec = forwarded_codec(config.codec);
            tracks.push(match codec {
                Some(codec) if !taken[slot] => {
                    taken[slot] = true;
                    let pt = if kind == MediaKind::Video { 96 } else { 111 };
                    let random = crate::webrtc::random_u32();
                    Some(Track {
                        kind,
                        codec,
                        packetizer: Packetizer::new(
                            config,
                            pt,
                            random,
                            random as u16,
                            random.rotate_left(7),
                        ),
                    })
                }
                _ => {
                    // Not an Error event: the rest plays, and applications commonly release
                    // an element on its first Error.
                    if codec.is_none() {
                        tracing::warn!(
                            uri = %self.uri,
                            codec = ?config.codec,
                            "track cannot be sent over WebRTC (no transcoding); playing without it"
                        );
                    }
                    None
                }
            });
        }
        self.input = Some(Input {
            source,
            tracks,
            pacer: Pacer::new(),
            next: None,
            offset_us: self.next_out_us as i64,
        });
        true
    }

    /// Sends every frame that is due; returns how long to wait for the next one.
    fn send_due(&mut self, now: Instant) -> Duration {
        const IDLE: Duration = Duration::from_millis(500);
        if !self.playing {
            return IDLE;
        }
        loop {
            let Some(input) = &mut self.input else {
                return IDLE;
            };
            if input.next.is_none() {
                match input.source.next_frame() {
                    Ok(Some(mut f)) => {
                        let position = f.frame.pts_us;
                        f.frame.pts_us = (position as i64 + input.offset_us).max(0) as u64;
                        *self.position_ms.lock() = position / 1000;
                        input.next = Some(f);
                    }
                    Ok(None) => {
                        self.end_of_stream(None);
                        return IDLE;
                    }
                    Err(e) => {
                        self.end_of_stream(Some(e));
                        return IDLE;
                    }
                }
            }
            let Some(next) = &input.next else {
                return IDLE;
            };
            let due = input.pacer.due(next.frame.pts_us, now);
            if due > now {
                return due - now;
            }
            if let Some(f) = input.next.take() {
                self.next_out_us = self.next_out_us.max(f.frame.pts_us + 1);
                self.send_frame(&f);
            }
        }
    }

    fn send_frame(&mut self, f: &SourceFrame) {
        let Some(Some(track)) = self.input.as_mut().and_then(|i| i.tracks.get_mut(f.track)) else {
            return;
        };
        let (kind, codec) = (track.kind, track.codec);
        for bytes in track.packetizer.packetize(&f.frame) {
            if let Some(packet) = to_rtp_packet(&bytes)
                && self.port.send_rtp(kind, codec, packet).is_err()
            {
                return;
            }
        }
        if self.flows.saw(kind, Instant::now()) {
            self.emit(ElementEvent::FlowOut(kind, true));
        }
    }

    /// The input ended (or broke): reported, and the next `play` starts over.
    fn end_of_stream(&mut self, error: Option<rkms_recorder::Error>) {
        self.playing = false;
        self.input = None;
        self.stop_flows();
        if let Some(e) = error {
            tracing::warn!(uri = %self.uri, error = %e, "input failed while playing");
            self.emit(ElementEvent::Error {
                kind: e.kurento_type(),
                description: format!("playing {}: {e}", self.uri),
            });
        }
        self.emit(ElementEvent::EndOfStream);
    }

    fn stop_flows(&mut self) {
        for kind in self.flows.stopped(Instant::now(), true) {
            self.emit(ElementEvent::FlowOut(kind, false));
        }
    }
}

/// A packetizer's serialised packet as the routing core takes it.
pub(super) fn to_rtp_packet(bytes: &[u8]) -> Option<RtpPacket> {
    let p = rkms_recorder::rtp::RtpPacket::parse(bytes).ok()?;
    let mut packet = RtpPacket::default();
    packet.header.version = 2;
    packet.header.marker = p.marker;
    packet.header.payload_type = p.payload_type;
    packet.header.sequence_number = p.sequence;
    packet.header.timestamp = p.timestamp;
    packet.header.ssrc = p.ssrc;
    packet.payload = Bytes::copy_from_slice(p.payload);
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packetizer_output_becomes_a_routable_packet() {
        let config = rkms_recorder::CodecConfig::opus();
        let mut packetizer = Packetizer::new(&config, 111, 7, 100, 0);
        let frame = rkms_recorder::Frame {
            pts_us: 20_000,
            keyframe: true,
            data: vec![0xfc, 1, 2, 3],
        };
        let bytes = packetizer.packetize(&frame);
        let packet = to_rtp_packet(&bytes[0]).expect("parses");
        assert_eq!(packet.header.sequence_number, 100);
        assert_eq!(packet.header.timestamp, 960);
        assert_eq!(packet.header.ssrc, 7);
        assert_eq!(&packet.payload[..], &[0xfc, 1, 2, 3]);
    }
}
