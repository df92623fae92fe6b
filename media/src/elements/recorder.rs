//! RecorderEndpoint's media side: a sink on its pipeline's socket loop whose packets a worker
//! thread writes with [`rkms_recorder::Recorder`].
//!
//! The file's tracks are those of the profile that actually receive media: at `record` the
//! worker collects packets until every track of the profile has seen its codec, or for
//! [`CODEC_WAIT`] after the first one, then creates the recorder (so a codec the container
//! cannot hold, or a file that cannot be created, is reported right then) and writes what it
//! collected. Video is collected from its first keyframe on: what comes before cannot be
//! decoded, so a video-only file (and its `Recording` event) starts at that picture. Keyframe
//! requests go to the source through the loop's router, like a WebRTC sink's PLI.
//!
//! Each track is first anchored on the arrival of its first packet; the sources' RTCP sender
//! reports (their RTP time already in this sink's numbering) then put audio and video of one
//! sender on the sender's own clock, so lip sync does not depend on network jitter.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use rkms_recorder::rtp::RtpPacket;
use rkms_recorder::{Codec, MediaProfile, Recorder};
use tokio::sync::oneshot;

use super::{ElementEvent, ElementEvents, Flows, container_codec, media_kind, track_kind};
use crate::graph::MediaKind;
use crate::routing::starts_keyframe;
use crate::webrtc::{ElementPort, SinkPacket, SinkSenderReport, WebRtcError};

/// How long the worker waits for the profile's other track once one has media.
const CODEC_WAIT: Duration = Duration::from_secs(1);
/// Packets kept while waiting for the codecs (about 3 s of a 720p call).
const MAX_PENDING: usize = 2048;
/// Packets queued between the loop and the worker (about 2 s of a 720p call).
const QUEUE: usize = 1024;
/// Sender reports waiting for the worker: about one per second per stream.
const REPORT_QUEUE: usize = 16;
/// How often the worker looks at its timers when no packet comes.
const TICK: Duration = Duration::from_millis(200);

enum Control {
    Record,
    Pause,
    /// Stop; the sender (if any) is told once the file is closed.
    Stop(Option<oneshot::Sender<()>>),
}

/// A recorder element. Dropping it closes the recording (in the background) and takes the
/// element off its loop.
pub struct RecorderElement {
    control: Sender<Control>,
}

impl RecorderElement {
    /// Starts the worker of a recorder writing `profile` to `path`; it takes the media routed
    /// to `port` and reports through `events`.
    pub fn start(
        port: ElementPort,
        path: PathBuf,
        profile: MediaProfile,
        events: ElementEvents,
    ) -> Result<Self, WebRtcError> {
        let media = port.receive(QUEUE)?;
        port.asks_own_keyframes()?;
        let reports = port.sender_reports(REPORT_QUEUE)?;
        let (control, control_rx) = crossbeam_channel::unbounded();
        let worker = Worker {
            port,
            path,
            profile,
            events,
            state: State::Idle,
            paused: false,
            codecs: [None, None],
            flows: Flows::default(),
            refused: [false, false],
            reports: [None, None],
        };
        std::thread::Builder::new()
            .name("rkms-recorder".into())
            .spawn(move || worker.run(control_rx, media, reports))?;
        Ok(Self { control })
    }

    /// Starts (or resumes) recording.
    pub fn record(&self) {
        let _ = self.control.send(Control::Record);
    }

    /// Pauses; the paused time does not appear in the file.
    pub fn pause(&self) {
        let _ = self.control.send(Control::Pause);
    }

    /// Stops and closes the file in the background.
    pub fn stop(&self) {
        let _ = self.control.send(Control::Stop(None));
    }

    /// Stops; resolves once the file is closed.
    pub async fn stop_and_wait(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Stop(Some(tx))).is_ok() {
            let _ = rx.await;
        }
    }
}

enum State {
    Idle,
    /// `record` was called; packets are kept until the codecs are known.
    Starting {
        /// Arrival of the first packet kept.
        first: Option<Instant>,
        pending: Vec<SinkPacket>,
        /// Whether video's first keyframe came (video before it is not kept).
        keyframe: bool,
        /// When a keyframe was last asked for.
        asked: Instant,
    },
    Recording(Box<Recorder>),
}

struct Worker {
    port: ElementPort,
    path: PathBuf,
    profile: MediaProfile,
    events: ElementEvents,
    state: State,
    paused: bool,
    /// The codec each kind (audio, video) arrives with.
    codecs: [Option<Codec>; 2],
    flows: Flows,
    /// Kinds whose codec was reported as unrecordable (once each).
    refused: [bool; 2],
    /// The latest sender report of each kind, kept while the file is not created yet.
    reports: [Option<SinkSenderReport>; 2],
}

fn kind_index(kind: MediaKind) -> usize {
    usize::from(kind == MediaKind::Video)
}

impl Worker {
    fn run(
        mut self,
        control: Receiver<Control>,
        mut media: Receiver<SinkPacket>,
        mut reports: Receiver<SinkSenderReport>,
    ) {
        loop {
            select! {
                recv(control) -> c => match c {
                    Ok(c) => self.on_control(c),
                    Err(_) => break,
                },
                recv(media) -> p => match p {
                    Ok(p) => self.on_packet(p),
                    // The loop let go of the element (released or shutting down).
                    Err(_) => media = crossbeam_channel::never(),
                },
                recv(reports) -> r => match r {
                    Ok(r) => self.on_sender_report(r),
                    Err(_) => reports = crossbeam_channel::never(),
                },
                default(TICK) => {}
            }
            self.on_tick(Instant::now());
        }
        self.stop();
        for kind in self.flows.stopped(Instant::now(), true) {
            (self.events)(ElementEvent::FlowIn(kind, false));
        }
    }

    fn emit(&self, event: ElementEvent) {
        (self.events)(event);
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Record => match &mut self.state {
                State::Idle => {
                    self.paused = false;
                    self.state = State::Starting {
                        first: None,
                        pending: Vec::new(),
                        keyframe: false,
                        asked: Instant::now(),
                    };
                    // Asked now rather than once the file exists: the keyframe arrives while
                    // the codecs are being learnt and is kept, so the file starts with a
                    // picture instead of a request's round trip later.
                    self.port.request_keyframe(MediaKind::Video);
                }
                State::Recording(recorder) if self.paused => {
                    self.paused = false;
                    recorder.resume(Instant::now());
                    self.port.request_keyframe(MediaKind::Video);
                    self.emit(ElementEvent::Recording);
                }
                _ => {}
            },
            Control::Pause => match &mut self.state {
                State::Recording(recorder) if !self.paused => {
                    self.paused = true;
                    recorder.pause(Instant::now());
                    self.emit(ElementEvent::Paused);
                }
                State::Starting { .. } => {
                    self.state = State::Idle;
                    self.emit(ElementEvent::Paused);
                }
                _ => {}
            },
            Control::Stop(done) => {
                self.stop();
                self.emit(ElementEvent::Stopped);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Closes the recording, if any.
    fn stop(&mut self) {
        if let State::Recording(recorder) = std::mem::replace(&mut self.state, State::Idle) {
            match recorder.stop() {
                Ok(stats) => tracing::info!(
                    path = %self.path.display(),
                    ?stats,
                    dropped_by_loop = self.port.dropped(),
                    "recording closed"
                ),
                Err(e) => self.fail(&e),
            }
        }
    }

    fn fail(&mut self, e: &rkms_recorder::Error) {
        tracing::warn!(path = %self.path.display(), error = %e, "recording failed");
        self.state = State::Idle;
        self.emit(ElementEvent::Error {
            kind: e.kurento_type(),
            description: format!("recording to {}: {e}", self.path.display()),
        });
    }

    fn on_packet(&mut self, p: SinkPacket) {
        if self.flows.saw(p.kind, p.arrival) {
            self.emit(ElementEvent::FlowIn(p.kind, true));
        }
        let Some(kind) = track_kind(p.kind) else {
            return;
        };
        if !self.profile.has(kind) {
            return;
        }
        let i = kind_index(p.kind);
        let Some(codec) = container_codec(p.codec) else {
            if !std::mem::replace(&mut self.refused[i], true) {
                self.emit(ElementEvent::Error {
                    kind: "STREAM_ERROR_FORMAT",
                    description: format!(
                        "{:?} {} cannot be recorded (no transcoding); recording without it",
                        p.codec,
                        p.kind.as_str()
                    ),
                });
            }
            return;
        };
        match &mut self.state {
            State::Idle => {}
            State::Starting {
                first,
                pending,
                keyframe,
                ..
            } => {
                self.codecs[i].get_or_insert(codec);
                if p.kind == MediaKind::Video && !*keyframe {
                    if !starts_keyframe(p.codec, &p.payload) {
                        return;
                    }
                    *keyframe = true;
                }
                first.get_or_insert(p.arrival);
                if pending.len() < MAX_PENDING {
                    pending.push(p);
                }
            }
            State::Recording(_) if self.paused => {}
            State::Recording(_) => self.write(p, codec),
        }
    }

    fn on_sender_report(&mut self, report: SinkSenderReport) {
        tracing::trace!(
            kind = report.kind.as_str(),
            ntp = report.ntp,
            "sender report"
        );
        // A kind the profile leaves out has no track to align with.
        let Some(kind) = track_kind(report.kind).filter(|k| self.profile.has(*k)) else {
            return;
        };
        match &mut self.state {
            State::Recording(recorder) => {
                recorder.push_sender_report(kind, report.ntp, report.timestamp, report.arrival)
            }
            _ => self.reports[kind_index(report.kind)] = Some(report),
        }
    }

    fn on_tick(&mut self, now: Instant) {
        for kind in self.flows.stopped(now, false) {
            self.emit(ElementEvent::FlowIn(kind, false));
        }
        let State::Starting {
            first,
            keyframe,
            asked,
            ..
        } = &mut self.state
        else {
            return;
        };
        // The request made at `record`, or the keyframe it brought, was lost.
        if !*keyframe
            && self.profile.has(rkms_recorder::TrackKind::Video)
            && now.saturating_duration_since(*asked) >= CODEC_WAIT
        {
            *asked = now;
            self.port.request_keyframe(MediaKind::Video);
        }
        let Some(first) = *first else {
            return;
        };
        let wanted = [
            rkms_recorder::TrackKind::Audio,
            rkms_recorder::TrackKind::Video,
        ]
        .into_iter()
        .filter(|k| self.profile.has(*k));
        let all_known = wanted
            .clone()
            .all(|k| self.codecs[kind_index(media_kind(k))].is_some());
        if all_known || now.saturating_duration_since(first) >= CODEC_WAIT {
            self.begin(first);
        }
    }

    /// Creates the file with the codecs seen so far and writes the packets kept meanwhile.
    fn begin(&mut self, epoch: Instant) {
        let State::Starting { pending, .. } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        let codecs: Vec<Codec> = self.codecs.iter().flatten().copied().collect();
        match Recorder::new(&self.path, self.profile, &codecs, epoch) {
            Ok(recorder) => {
                tracing::info!(path = %self.path.display(), ?codecs, "recording");
                self.state = State::Recording(Box::new(recorder));
                self.emit(ElementEvent::Recording);
                for p in pending {
                    if let Some(codec) = container_codec(p.codec) {
                        self.write(p, codec);
                    }
                }
                // After the kept packets, so each track has its arrival anchor to align with.
                for report in std::mem::take(&mut self.reports).into_iter().flatten() {
                    self.on_sender_report(report);
                }
            }
            Err(e) => self.fail(&e),
        }
    }

    fn write(&mut self, p: SinkPacket, codec: Codec) {
        let State::Recording(recorder) = &mut self.state else {
            return;
        };
        // A source switched to another codec mid-recording: its packets cannot join the track.
        if self.codecs[kind_index(p.kind)] != Some(codec) {
            return;
        }
        let Some(kind) = track_kind(p.kind) else {
            return;
        };
        let packet = RtpPacket {
            payload_type: 0,
            marker: p.marker,
            sequence: p.seq,
            timestamp: p.timestamp,
            ssrc: 0,
            payload: &p.payload,
        };
        match recorder.push_packet(kind, &packet, p.arrival) {
            Ok(()) => {}
            // Concerns that packet only.
            Err(
                rkms_recorder::Error::Malformed { .. } | rkms_recorder::Error::Unsupported { .. },
            ) => {}
            Err(e) => {
                self.fail(&e);
                return;
            }
        }
        if recorder.take_keyframe_request() {
            self.port.request_keyframe(MediaKind::Video);
        }
    }
}
