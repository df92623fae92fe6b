//! The thread of an `rtsp://` player: a current-thread tokio runtime (retina is async) that
//! waits on the player's commands, the camera's frames and its own timers at once.
//!
//! Live media is sent as it arrives, never paced; [`LiveClock`] stamps it. When the camera
//! goes away (connection closed, an RTSP error, or no frame for [`STALL_AFTER`]) the thread
//! reconnects with backoff until `stop` or release; video resumes at the camera's next
//! keyframe. See [`Reconnect`] for when that raises `Error` events.

use std::future::pending;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use retina::codec::{AudioFrame, CodecItem, VideoFrame};
use rkms_recorder::rtp::Packetizer;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::clock::{LiveClock, ticks_to_us};
use super::session::{Playing, RtspError, connect};
use super::target::RtspTarget;
use crate::elements::player::{Control, VideoInfo, to_rtp_packet};
use crate::elements::{ElementEvent, ElementEvents, Flows};
use crate::graph::MediaKind;
use crate::routing::RtpPacket;
use crate::webrtc::codecs::CodecId;
use crate::webrtc::{ElementPort, WebRtcError};

/// How long DESCRIBE, SETUP and PLAY may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A playing camera that sends nothing this long is reconnected.
const STALL_AFTER: Duration = Duration::from_secs(5);
/// The first retry comes this soon after a failure; each further one waits twice as long, up
/// to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// An outage of a camera that was playing is reported (one `Error` event) once it lasts this
/// long; a camera that restarts quickly just resumes.
const REPORT_OUTAGE_AFTER: Duration = Duration::from_secs(10);

/// Starts the thread of a live player; commands go to the returned sender, and the thread
/// ends when it is dropped.
pub(in crate::elements) fn spawn(
    port: ElementPort,
    target: RtspTarget,
    events: ElementEvents,
    position_ms: Arc<Mutex<u64>>,
) -> Result<UnboundedSender<Control>, WebRtcError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let player = LivePlayer {
        port,
        target,
        events,
        position_ms,
        playing: false,
        flows: Flows::default(),
        clock: LiveClock::new(Instant::now()),
        outputs: [None, None],
        streams: Vec::new(),
        waiting_keyframe: true,
        last_media: Instant::now(),
        reconnect: Reconnect::default(),
    };
    std::thread::Builder::new()
        .name("rkms-rtsp".into())
        .spawn(move || runtime.block_on(player.run(rx)))?;
    Ok(tx)
}

type Connecting = Pin<Box<dyn Future<Output = Result<Playing, RtspError>>>>;

/// The player's link with its camera.
enum Link {
    Idle,
    Waiting(tokio::time::Instant),
    Connecting(Connecting),
    Streaming(Box<retina::client::Demuxed>),
}

enum LinkEvent {
    RetryDue,
    Connected(Result<Playing, RtspError>),
    Item(Option<Result<CodecItem, retina::Error>>),
}

impl Link {
    /// The next thing that happens on the link (never, when idle).
    async fn next(&mut self) -> LinkEvent {
        match self {
            Link::Idle => pending().await,
            Link::Waiting(at) => {
                tokio::time::sleep_until(*at).await;
                LinkEvent::RetryDue
            }
            Link::Connecting(connecting) => LinkEvent::Connected(connecting.await),
            Link::Streaming(demuxed) => LinkEvent::Item(demuxed.next().await),
        }
    }
}

struct LivePlayer {
    port: ElementPort,
    target: RtspTarget,
    events: ElementEvents,
    position_ms: Arc<Mutex<u64>>,
    playing: bool,
    flows: Flows,
    clock: LiveClock,
    /// Per kind (audio, video): how it is sent; kept across sessions, so the stream sinks
    /// see keeps one SSRC and running sequence numbers.
    outputs: [Option<Output>; 2],
    /// Per stream of the current session: the kind and codec it is forwarded as.
    streams: Vec<Option<(MediaKind, CodecId)>>,
    /// Video is held back until a keyframe (a new session, a resume, a loss).
    waiting_keyframe: bool,
    last_media: Instant,
    reconnect: Reconnect,
}

impl LivePlayer {
    async fn run(mut self, mut control: UnboundedReceiver<Control>) {
        let mut link = Link::Idle;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                command = control.recv() => match command {
                    Some(command) => self.on_control(command, &mut link),
                    None => break,
                },
                event = link.next() => self.on_link(event, &mut link),
                _ = tick.tick() => self.on_tick(&mut link),
            }
        }
        self.stop_flows();
    }

    fn emit(&self, event: ElementEvent) {
        (self.events)(event);
    }

    fn on_control(&mut self, command: Control, link: &mut Link) {
        match command {
            Control::Play => {
                if self.playing {
                    return;
                }
                self.playing = true;
                self.waiting_keyframe = true;
                if matches!(link, Link::Idle) {
                    self.reconnect = Reconnect::default();
                    *link = self.connecting();
                }
            }
            Control::Pause => {
                // The session stays up, so `play` resumes at the camera's next keyframe.
                self.playing = false;
                self.stop_flows();
            }
            Control::Stop => {
                self.playing = false;
                *link = Link::Idle;
                self.stop_flows();
            }
            Control::Seek(_, reply) => {
                let _ = reply.send(Err("a live RTSP stream is not seekable".into()));
            }
            Control::Info(reply) => {
                let _ = reply.send(Ok(VideoInfo {
                    seekable: false,
                    duration_ms: 0,
                }));
            }
        }
    }

    fn connecting(&self) -> Link {
        let target = self.target.clone();
        Link::Connecting(Box::pin(async move {
            tokio::time::timeout(CONNECT_TIMEOUT, connect(&target))
                .await
                .unwrap_or(Err(RtspError::Timeout(CONNECT_TIMEOUT)))
        }))
    }

    fn on_link(&mut self, event: LinkEvent, link: &mut Link) {
        let now = Instant::now();
        match event {
            LinkEvent::RetryDue => *link = self.connecting(),
            LinkEvent::Connected(Ok(playing)) => {
                tracing::info!(camera = %self.target.display(), transport = ?self.target.transport(), "camera connected");
                self.streams = playing.streams;
                self.clock.new_session();
                self.waiting_keyframe = true;
                self.last_media = now;
                *link = Link::Streaming(Box::new(playing.demuxed));
            }
            LinkEvent::Connected(Err(e)) => self.failed(e, link),
            LinkEvent::Item(Some(Ok(CodecItem::VideoFrame(frame)))) => self.on_video(frame, now),
            LinkEvent::Item(Some(Ok(CodecItem::AudioFrame(frame)))) => self.on_audio(&frame, now),
            LinkEvent::Item(Some(Ok(_))) => {}
            LinkEvent::Item(Some(Err(e))) => self.failed(e.into(), link),
            LinkEvent::Item(None) => self.failed(RtspError::Ended, link),
        }
    }

    fn on_tick(&mut self, link: &mut Link) {
        let now = Instant::now();
        for kind in self.flows.stopped(now, false) {
            self.emit(ElementEvent::FlowOut(kind, false));
        }
        if matches!(link, Link::Streaming(_)) && now - self.last_media > STALL_AFTER {
            self.failed(RtspError::Stalled(STALL_AFTER), link);
        }
    }

    /// The session could not start or broke: schedules the next attempt (unless a retry
    /// cannot help, or the player is paused) and reports it if it is worth an event.
    fn failed(&mut self, e: RtspError, link: &mut Link) {
        let (delay, report) = self.reconnect.failed(Instant::now());
        let camera = self.target.display();
        if report || !e.transient() {
            tracing::warn!(%camera, error = %e, "camera unavailable; retrying");
            self.emit(ElementEvent::Error {
                kind: e.kurento_type(),
                description: format!("playing {camera}: {e}"),
            });
        } else {
            tracing::info!(%camera, error = %e, retry_in = ?delay, "camera unavailable; retrying");
        }
        *link = if self.playing && e.transient() {
            Link::Waiting(tokio::time::Instant::now() + delay)
        } else {
            Link::Idle
        };
    }

    fn on_video(&mut self, frame: VideoFrame, now: Instant) {
        self.last_media = now;
        if frame.loss() > 0 {
            // A frame after a gap may reference what was lost; the next keyframe is clean.
            self.waiting_keyframe = true;
        }
        if !self.playing {
            return;
        }
        if self.waiting_keyframe {
            if !frame.is_random_access_point() {
                return;
            }
            self.waiting_keyframe = false;
        }
        let Some((kind, codec)) = self.stream(frame.stream_id()) else {
            return;
        };
        let pts_us = self.output_us(&frame.timestamp(), now);
        let frame = rkms_recorder::Frame {
            pts_us,
            keyframe: frame.is_random_access_point(),
            data: frame.into_data(),
        };
        let output = self.output(kind, codec);
        let packets = match &mut output.sender {
            Sender::Video(packetizer) => packetizer.packetize(&frame),
            Sender::Audio(_) => return,
        };
        for bytes in packets {
            if let Some(packet) = to_rtp_packet(&bytes) {
                self.send(kind, codec, packet);
            }
        }
        self.reconnect.media_arrived();
    }

    fn on_audio(&mut self, frame: &AudioFrame, now: Instant) {
        self.last_media = now;
        if !self.playing {
            return;
        }
        let Some((kind, codec)) = self.stream(frame.stream_id()) else {
            return;
        };
        let pts_us = self.output_us(&frame.timestamp(), now);
        let packet = match &mut self.output(kind, codec).sender {
            Sender::Audio(packetizer) => packetizer.packet(pts_us, frame.data()),
            Sender::Video(_) => return,
        };
        self.send(kind, codec, packet);
        self.reconnect.media_arrived();
    }

    fn stream(&self, id: usize) -> Option<(MediaKind, CodecId)> {
        self.streams.get(id).copied().flatten()
    }

    fn output_us(&mut self, ts: &retina::Timestamp, now: Instant) -> u64 {
        let out = self
            .clock
            .output_us(ticks_to_us(ts.elapsed(), ts.clock_rate().get()), now);
        *self.position_ms.lock() = out / 1000;
        out
    }

    /// The output of `kind`, made anew if the camera's codec changed.
    fn output(&mut self, kind: MediaKind, codec: CodecId) -> &mut Output {
        let slot = &mut self.outputs[usize::from(kind == MediaKind::Video)];
        if slot.as_ref().is_none_or(|o| o.codec != codec) {
            *slot = Some(Output::new(codec));
        }
        slot.as_mut().expect("just set")
    }

    fn send(&mut self, kind: MediaKind, codec: CodecId, packet: RtpPacket) {
        if self.port.send_rtp(kind, codec, packet).is_err() {
            return;
        }
        if self.flows.saw(kind, Instant::now()) {
            self.emit(ElementEvent::FlowOut(kind, true));
        }
    }

    fn stop_flows(&mut self) {
        for kind in self.flows.stopped(Instant::now(), true) {
            self.emit(ElementEvent::FlowOut(kind, false));
        }
    }
}

/// How one kind of media leaves the player.
struct Output {
    codec: CodecId,
    sender: Sender,
}

enum Sender {
    /// H264 access units → FU-A/single-NAL packets with the player's SSRC.
    Video(Packetizer),
    /// G.711: one camera packet is one frame, sent as it is.
    Audio(AudioPacketizer),
}

impl Output {
    fn new(codec: CodecId) -> Self {
        let random = crate::webrtc::random_u32();
        let sender = match codec {
            CodecId::Pcmu | CodecId::Pcma => Sender::Audio(AudioPacketizer {
                payload_type: if codec == CodecId::Pcmu { 0 } else { 8 },
                ssrc: random,
                sequence: random as u16,
                timestamp_offset: random.rotate_left(7),
            }),
            _ => {
                // SPS/PPS come in each keyframe (see the session's frame format), so the
                // configuration record can stay empty.
                let config =
                    rkms_recorder::CodecConfig::video(rkms_recorder::Codec::H264, 0, 0, Vec::new());
                Sender::Video(Packetizer::new(
                    &config,
                    96,
                    random,
                    random as u16,
                    random.rotate_left(7),
                ))
            }
        };
        Self { codec, sender }
    }
}

/// RTP for G.711 audio (8 kHz clock).
struct AudioPacketizer {
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp_offset: u32,
}

impl AudioPacketizer {
    const CLOCK_RATE: u64 = 8_000;

    fn packet(&mut self, pts_us: u64, data: &[u8]) -> RtpPacket {
        let mut packet = RtpPacket::default();
        packet.header.version = 2;
        packet.header.payload_type = self.payload_type;
        packet.header.sequence_number = self.sequence;
        packet.header.timestamp = self
            .timestamp_offset
            .wrapping_add((pts_us * Self::CLOCK_RATE / 1_000_000) as u32);
        packet.header.ssrc = self.ssrc;
        packet.payload = bytes::Bytes::copy_from_slice(data);
        self.sequence = self.sequence.wrapping_add(1);
        packet
    }
}

/// When to try the camera again, and which failures are worth an `Error` event: the first
/// failure after `play` (the camera is not there), and an outage of a camera that was playing
/// once it has lasted [`REPORT_OUTAGE_AFTER`]; one event per outage. Retries go on, backing
/// off to [`MAX_RETRY`], until `stop` or release.
#[derive(Default)]
struct Reconnect {
    attempts: u32,
    outage_since: Option<Instant>,
    reported: bool,
    /// Media arrived since `play`.
    played: bool,
}

impl Reconnect {
    fn media_arrived(&mut self) {
        *self = Self {
            played: true,
            ..Self::default()
        };
    }

    /// A failure at `now`: how long until the next attempt, and whether to report it.
    fn failed(&mut self, now: Instant) -> (Duration, bool) {
        let since = *self.outage_since.get_or_insert(now);
        let report =
            !self.reported && (!self.played || now.duration_since(since) >= REPORT_OUTAGE_AFTER);
        self.reported |= report;
        let delay = FIRST_RETRY
            .saturating_mul(1 << self.attempts.min(8))
            .min(MAX_RETRY);
        self.attempts += 1;
        (delay, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_camera_is_reported_once_and_retried_with_backoff() {
        let t0 = Instant::now();
        let mut r = Reconnect::default();
        assert_eq!(r.failed(t0), (FIRST_RETRY, true));
        assert_eq!(r.failed(t0), (FIRST_RETRY * 2, false));
        for _ in 0..10 {
            r.failed(t0);
        }
        assert_eq!(r.failed(t0 + Duration::from_secs(60)), (MAX_RETRY, false));
    }

    #[test]
    fn a_camera_that_played_is_reported_only_after_a_long_outage() {
        let t0 = Instant::now();
        let mut r = Reconnect::default();
        r.media_arrived();
        assert_eq!(r.failed(t0), (FIRST_RETRY, false));
        assert!(!r.failed(t0 + Duration::from_secs(3)).1);
        assert!(r.failed(t0 + REPORT_OUTAGE_AFTER).1);
        assert!(!r.failed(t0 + REPORT_OUTAGE_AFTER * 2).1);
        // Back, then gone again: a new outage.
        r.media_arrived();
        assert_eq!(r.failed(t0 + REPORT_OUTAGE_AFTER * 3), (FIRST_RETRY, false));
    }

    #[test]
    fn g711_packets_carry_8khz_time() {
        let mut p = AudioPacketizer {
            payload_type: 0,
            ssrc: 9,
            sequence: 65535,
            timestamp_offset: 100,
        };
        let a = p.packet(20_000, &[1, 2]);
        let b = p.packet(40_000, &[3]);
        assert_eq!((a.header.timestamp, b.header.timestamp), (260, 420));
        assert_eq!(
            (a.header.sequence_number, b.header.sequence_number),
            (65535, 0)
        );
        assert_eq!(&b.payload[..], &[3]);
    }
}
