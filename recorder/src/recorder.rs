//! RecorderEndpoint's core: RTP of one audio and/or one video track in, a
//! WebM/MKV/MP4 file out, driven synchronously from one pipeline thread.
//!
//! The file is created by [`Recorder::new`] (so open errors surface at
//! `record`); its headers are written as soon as every track's codec
//! configuration is known (the first video keyframe), or after
//! [`CONFIG_WAIT_US`] of media without it, leaving out the tracks still
//! unknown. From then on frames are interleaved by time and written as they
//! come: the writers flush about every second.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::media::{Codec, CodecConfig, Frame, TrackKind};
use crate::profile::MediaProfile;
use crate::rtp::{AccessUnit, Depacketizer, RtpPacket};
use crate::timing::Timeline;
use crate::writer::ContainerWriter;

/// Media buffered while waiting for a track's configuration.
pub const CONFIG_WAIT_US: u64 = 5_000_000;
/// How long a frame waits for the other track before being written anyway.
const INTERLEAVE_WAIT_US: u64 = 500_000;

struct Track {
    kind: TrackKind,
    depacketizer: Depacketizer,
    queue: VecDeque<Frame>,
    /// Index in the writer, once the file headers are out.
    writer_index: Option<usize>,
    frames_written: u64,
}

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordingStats {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub duration_us: u64,
    /// Video frames dropped for loss or while waiting for a keyframe.
    pub dropped_video_frames: u64,
}

pub struct Recorder {
    path: PathBuf,
    profile: MediaProfile,
    file: Option<File>,
    writer: Option<ContainerWriter>,
    tracks: Vec<Track>,
    timeline: Timeline,
    newest_us: u64,
    oldest_queued_us: Option<u64>,
    scratch: Vec<AccessUnit>,
    end_us: u64,
}

impl Recorder {
    /// Creates (or truncates) the file for a recording of `codecs` (at most
    /// one audio and one video). Codecs the profile's container cannot hold
    /// are refused here, before anything is recorded.
    pub fn new(
        path: &Path,
        profile: MediaProfile,
        codecs: &[Codec],
        epoch: Instant,
    ) -> Result<Self> {
        let mut tracks: Vec<Track> = Vec::new();
        for &codec in codecs {
            profile.check_codec(codec)?;
            if tracks.iter().any(|t| t.kind == codec.kind()) {
                return Err(Error::unsupported(
                    "recording",
                    format!("a second {} track", codec.kind().name()),
                ));
            }
            tracks.push(Track {
                kind: codec.kind(),
                depacketizer: Depacketizer::new(codec),
                queue: VecDeque::new(),
                writer_index: None,
                frames_written: 0,
            });
        }
        if tracks.is_empty() {
            return Err(Error::unsupported("recording", "no track to record"));
        }
        // Video first: players pick the first track as the main one.
        tracks.sort_by_key(|t| t.kind != TrackKind::Video);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Open {
                path: path.to_owned(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| Error::Open {
                path: path.to_owned(),
                source,
            })?;
        let clock = |kind: TrackKind| {
            tracks
                .iter()
                .find(|t| t.kind == kind)
                .map_or(90_000, |t| t.depacketizer.codec().rtp_clock_rate())
        };
        let timeline = Timeline::new(epoch, clock(TrackKind::Audio), clock(TrackKind::Video));
        Ok(Self {
            path: path.to_owned(),
            profile,
            file: Some(file),
            writer: None,
            tracks,
            timeline,
            newest_us: 0,
            oldest_queued_us: None,
            scratch: Vec::new(),
            end_us: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One RTP packet (decrypted) of the `kind` track.
    pub fn push_rtp(&mut self, kind: TrackKind, packet: &[u8], arrival: Instant) -> Result<()> {
        self.push_packet(kind, &RtpPacket::parse(packet)?, arrival)
    }

    /// One RTP packet of the `kind` track whose header was parsed elsewhere
    /// (the media core hands over header fields and payload without
    /// re-serialising them).
    pub fn push_packet(
        &mut self,
        kind: TrackKind,
        packet: &RtpPacket<'_>,
        arrival: Instant,
    ) -> Result<()> {
        let Some(i) = self.tracks.iter().position(|t| t.kind == kind) else {
            return Ok(());
        };
        let mut units = std::mem::take(&mut self.scratch);
        self.tracks[i].depacketizer.push(packet, &mut units);
        for unit in units.drain(..) {
            self.enqueue(i, unit, arrival);
        }
        self.scratch = units;
        self.drain(false)
    }

    /// An access unit assembled elsewhere (same formats as the depacketizer's output).
    pub fn push_frame(
        &mut self,
        kind: TrackKind,
        unit: AccessUnit,
        arrival: Instant,
    ) -> Result<()> {
        let Some(i) = self.tracks.iter().position(|t| t.kind == kind) else {
            return Ok(());
        };
        self.enqueue(i, unit, arrival);
        self.drain(false)
    }

    /// An RTCP sender report (NTP timestamp, RTP timestamp) for lip sync.
    pub fn push_sender_report(
        &mut self,
        kind: TrackKind,
        ntp: u64,
        rtp_timestamp: u32,
        arrival: Instant,
    ) {
        self.timeline
            .sender_report(kind, ntp, rtp_timestamp, arrival);
    }

    /// True when the sender should be asked for a keyframe (PLI/FIR): at the
    /// start, after a loss, after `resume`.
    pub fn take_keyframe_request(&mut self) -> bool {
        self.tracks
            .iter_mut()
            .fold(false, |any, t| t.depacketizer.take_keyframe_request() | any)
    }

    /// Stops writing; media arriving while paused is dropped and the time
    /// spent paused does not appear in the file.
    pub fn pause(&mut self, now: Instant) {
        self.timeline.pause(now);
    }

    /// Continues after `pause`; video restarts at its next keyframe.
    pub fn resume(&mut self, now: Instant) {
        self.timeline.resume(now);
        for t in &mut self.tracks {
            t.depacketizer.wait_for_keyframe(true);
        }
    }

    /// Writes everything still buffered and closes the file. A recording in
    /// which no frame could be written leaves no file behind.
    pub fn stop(mut self) -> Result<RecordingStats> {
        let mut units = std::mem::take(&mut self.scratch);
        let now = Instant::now();
        for i in 0..self.tracks.len() {
            self.tracks[i].depacketizer.flush(&mut units);
            for unit in units.drain(..) {
                self.enqueue(i, unit, now);
            }
        }
        self.drain(true)?;
        if let Some(w) = self.writer.as_mut() {
            w.finish()?;
        } else {
            self.file = None;
            std::fs::remove_file(&self.path)?;
        }
        let frames = |kind| {
            self.tracks
                .iter()
                .find(|t| t.kind == kind)
                .map_or(0, |t| t.frames_written)
        };
        Ok(RecordingStats {
            video_frames: frames(TrackKind::Video),
            audio_frames: frames(TrackKind::Audio),
            duration_us: self.end_us,
            dropped_video_frames: self
                .tracks
                .iter()
                .find(|t| t.kind == TrackKind::Video)
                .map_or(0, |t| t.depacketizer.dropped_frames()),
        })
    }

    fn enqueue(&mut self, i: usize, unit: AccessUnit, arrival: Instant) {
        if self.writer.is_some() && self.tracks[i].writer_index.is_none() {
            return; // a track left out of the file
        }
        let kind = self.tracks[i].kind;
        let Some(pts_us) = self.timeline.media_time(kind, unit.rtp_timestamp, arrival) else {
            // Frames after a discarded one would not decode: restart at a keyframe.
            self.tracks[i].depacketizer.wait_for_keyframe(false);
            return;
        };
        self.newest_us = self.newest_us.max(pts_us);
        self.oldest_queued_us.get_or_insert(pts_us);
        self.tracks[i].queue.push_back(Frame {
            pts_us,
            keyframe: unit.keyframe,
            data: unit.data,
        });
    }

    /// Opens the writer when ready, then writes frames in time order.
    fn drain(&mut self, end: bool) -> Result<()> {
        if self.writer.is_none() {
            let configs: Vec<Option<CodecConfig>> = self
                .tracks
                .iter()
                .map(|t| t.depacketizer.config())
                .collect();
            let waited = self
                .oldest_queued_us
                .is_some_and(|o| self.newest_us >= o + CONFIG_WAIT_US);
            let all_known = configs.iter().all(Option::is_some);
            if !(all_known || waited || end) || configs.iter().all(Option::is_none) {
                return Ok(());
            }
            let mut chosen = Vec::new();
            for (t, cfg) in self.tracks.iter_mut().zip(configs) {
                match cfg {
                    Some(cfg) => {
                        t.writer_index = Some(chosen.len());
                        chosen.push(cfg);
                    }
                    None => t.queue.clear(),
                }
            }
            let file = self.file.take().ok_or(Error::Stopped)?;
            self.writer = Some(ContainerWriter::create(
                file,
                self.profile.container(),
                &chosen,
            )?);
        }
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        loop {
            let active = self.tracks.iter().filter(|t| t.writer_index.is_some());
            let Some((i, pts)) = active
                .clone()
                .enumerate()
                .filter_map(|(i, t)| t.queue.front().map(|f| (i, f.pts_us)))
                .min_by_key(|(_, pts)| *pts)
            else {
                break;
            };
            let others_ready = active.clone().all(|t| !t.queue.is_empty());
            if !(end || others_ready || pts + INTERLEAVE_WAIT_US <= self.newest_us) {
                break;
            }
            let track = self
                .tracks
                .iter_mut()
                .filter(|t| t.writer_index.is_some())
                .nth(i);
            let Some(track) = track else { break };
            let Some(frame) = track.queue.pop_front() else {
                break;
            };
            writer.write_frame(track.writer_index.unwrap_or(0), &frame)?;
            track.frames_written += 1;
            self.end_us = self.end_us.max(frame.pts_us);
        }
        Ok(())
    }
}
