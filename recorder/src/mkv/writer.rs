//! A live Matroska/WebM writer.
//!
//! Layout: EBML header, Segment of unknown size, a Void reserved for the
//! SeekHead, Info, Tracks, then Clusters. Each Cluster is buffered in memory
//! and appended whole (with its real size) when it closes, about every second
//! and at every video keyframe, after which the Info Duration is rewritten in
//! place. A file cut off at any point (SIGKILL, full disk) therefore holds
//! every closed cluster and a Duration that matches them. A clean
//! [`MkvWriter::finish`] adds Cues and fills in the SeekHead and Segment size.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use super::ebml::{
    UNKNOWN_SIZE, put_float, put_id, put_master, put_size, put_size_len, put_str, put_uint,
};
use super::ids;
use crate::codec::opus;
use crate::error::{Error, Result};
use crate::media::{Codec, CodecConfig, Frame, TrackKind};

/// Longest a cluster stays open: bounds what a crash can lose.
const CLUSTER_MAX_MS: u64 = 1000;
/// Space reserved for the SeekHead written at a clean close.
const SEEK_HEAD_RESERVED: usize = 96;
/// Opus decoders need 80 ms of pre-roll after a seek (RFC 7845 §4.6).
const OPUS_SEEK_PRE_ROLL_NS: u64 = 80_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocType {
    Webm,
    Matroska,
}

struct Cluster {
    timecode_ms: u64,
    body: Vec<u8>,
}

pub struct MkvWriter {
    file: File,
    /// Bytes written so far: the append position.
    len: u64,
    segment_size_pos: u64,
    segment_data_start: u64,
    seek_head_pos: u64,
    info_pos: u64,
    tracks_pos: u64,
    duration_value_pos: u64,
    kinds: Vec<TrackKind>,
    cluster: Option<Cluster>,
    /// (time ms, cluster position relative to the segment data, track number).
    cues: Vec<(u64, u64, u64)>,
    end_ms: u64,
    finished: bool,
}

impl MkvWriter {
    /// Writes the headers for `tracks` (track numbers follow their order, from 1).
    pub fn create(file: File, doc_type: DocType, tracks: &[CodecConfig]) -> Result<Self> {
        if tracks.is_empty() {
            return Err(Error::unsupported("Matroska", "a file without tracks"));
        }
        let mut out = Vec::with_capacity(512);
        let mut ebml = Vec::new();
        put_uint(&mut ebml, ids::EBML_VERSION, 1);
        put_uint(&mut ebml, ids::EBML_READ_VERSION, 1);
        put_uint(&mut ebml, ids::EBML_MAX_ID_LENGTH, 4);
        put_uint(&mut ebml, ids::EBML_MAX_SIZE_LENGTH, 8);
        put_str(
            &mut ebml,
            ids::DOC_TYPE,
            if doc_type == DocType::Webm {
                "webm"
            } else {
                "matroska"
            },
        );
        put_uint(&mut ebml, ids::DOC_TYPE_VERSION, 4);
        put_uint(&mut ebml, ids::DOC_TYPE_READ_VERSION, 2);
        put_master(&mut out, ids::EBML, &ebml);

        put_id(&mut out, ids::SEGMENT);
        let segment_size_pos = out.len() as u64;
        put_size_len(&mut out, UNKNOWN_SIZE, 8);
        let segment_data_start = out.len() as u64;

        let seek_head_pos = out.len() as u64;
        put_void(&mut out, SEEK_HEAD_RESERVED);

        let info_pos = out.len() as u64;
        let mut info = Vec::new();
        put_uint(&mut info, ids::TIMESTAMP_SCALE, 1_000_000);
        put_str(&mut info, ids::MUXING_APP, "rkms");
        put_str(&mut info, ids::WRITING_APP, "rkms");
        let duration_offset_in_info = info.len() as u64 + 3; // ID (2) + size (1)
        put_float(&mut info, ids::DURATION, 0.0);
        put_id(&mut out, ids::INFO);
        put_size(&mut out, info.len() as u64);
        let duration_value_pos = out.len() as u64 + duration_offset_in_info;
        out.extend_from_slice(&info);

        let tracks_pos = out.len() as u64;
        let mut entries = Vec::new();
        for (i, cfg) in tracks.iter().enumerate() {
            put_master(
                &mut entries,
                ids::TRACK_ENTRY,
                &track_entry(i as u64 + 1, cfg, doc_type)?,
            );
        }
        put_master(&mut out, ids::TRACKS, &entries);

        let mut w = Self {
            file,
            len: 0,
            segment_size_pos,
            segment_data_start,
            seek_head_pos,
            info_pos,
            tracks_pos,
            duration_value_pos,
            kinds: tracks.iter().map(|t| t.codec.kind()).collect(),
            cluster: None,
            cues: Vec::new(),
            end_ms: 0,
            finished: false,
        };
        w.append(&out)?;
        Ok(w)
    }

    /// Adds one frame of track `track` (index into the `tracks` given at
    /// creation). Timestamps should not decrease by more than a few tens of
    /// milliseconds across tracks.
    pub fn write_frame(&mut self, track: usize, frame: &Frame) -> Result<()> {
        if self.finished {
            return Err(Error::Stopped);
        }
        let kind = *self
            .kinds
            .get(track)
            .ok_or_else(|| Error::unsupported("Matroska", format!("track index {track}")))?;
        let ms = frame.pts_us / 1000;
        let video_key = kind == TrackKind::Video && frame.keyframe;
        let audio_only = !self.kinds.contains(&TrackKind::Video);
        let start_new = match &self.cluster {
            None => true,
            Some(c) => {
                let rel = i64::try_from(ms).unwrap_or(i64::MAX) - c.timecode_ms as i64;
                video_key || ms >= c.timecode_ms + CLUSTER_MAX_MS || rel < i64::from(i16::MIN)
            }
        };
        if start_new {
            self.close_cluster()?;
            let mut body = Vec::with_capacity(64 * 1024);
            put_uint(&mut body, ids::TIMESTAMP, ms);
            if video_key || audio_only {
                self.cues
                    .push((ms, self.len - self.segment_data_start, track as u64 + 1));
            }
            self.cluster = Some(Cluster {
                timecode_ms: ms,
                body,
            });
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return Ok(());
        };
        let rel = i16::try_from(i64::try_from(ms).unwrap_or(i64::MAX) - cluster.timecode_ms as i64)
            .unwrap_or(i16::MAX);
        put_id(&mut cluster.body, ids::SIMPLE_BLOCK);
        put_size(&mut cluster.body, frame.data.len() as u64 + 4);
        cluster.body.push(0x80 | (track as u8 + 1)); // track number as a 1-byte VINT
        cluster.body.extend_from_slice(&rel.to_be_bytes());
        cluster
            .body
            .push(if frame.keyframe || kind == TrackKind::Audio {
                0x80
            } else {
                0
            });
        cluster.body.extend_from_slice(&frame.data);
        self.end_ms = self
            .end_ms
            .max(ms + if kind == TrackKind::Audio { 20 } else { 0 });
        Ok(())
    }

    /// Closes the open cluster, writes Cues, the SeekHead and the real
    /// Segment size. The file stays valid if this is never called.
    pub fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.close_cluster()?;
        self.finished = true;
        let cues_pos = self.len - self.segment_data_start;
        let mut points = Vec::new();
        for &(time, pos, track) in &self.cues {
            let mut positions = Vec::new();
            put_uint(&mut positions, ids::CUE_TRACK, track);
            put_uint(&mut positions, ids::CUE_CLUSTER_POSITION, pos);
            let mut point = Vec::new();
            put_uint(&mut point, ids::CUE_TIME, time);
            put_master(&mut point, ids::CUE_TRACK_POSITIONS, &positions);
            put_master(&mut points, ids::CUE_POINT, &point);
        }
        let mut cues = Vec::new();
        if !points.is_empty() {
            put_master(&mut cues, ids::CUES, &points);
            self.append(&cues)?;
        }

        let mut seeks = Vec::new();
        let mut targets = vec![(ids::INFO, self.info_pos), (ids::TRACKS, self.tracks_pos)];
        if !cues.is_empty() {
            targets.push((ids::CUES, cues_pos + self.segment_data_start));
        }
        for (id, abs) in targets {
            let mut seek = Vec::new();
            let mut id_bytes = Vec::new();
            put_id(&mut id_bytes, id);
            put_master(&mut seek, ids::SEEK_ID, &id_bytes);
            put_uint(&mut seek, ids::SEEK_POSITION, abs - self.segment_data_start);
            put_master(&mut seeks, ids::SEEK, &seek);
        }
        let mut head = Vec::new();
        put_master(&mut head, ids::SEEK_HEAD, &seeks);
        if head.len() + 2 <= SEEK_HEAD_RESERVED {
            let rest = SEEK_HEAD_RESERVED - head.len();
            put_void(&mut head, rest);
            self.file.write_all_at(&head, self.seek_head_pos)?;
        }
        let mut size = Vec::new();
        put_size_len(&mut size, self.len - self.segment_data_start, 8);
        self.file.write_all_at(&size, self.segment_size_pos)?;
        self.file.flush()?;
        Ok(())
    }

    fn close_cluster(&mut self) -> Result<()> {
        let Some(cluster) = self.cluster.take() else {
            return Ok(());
        };
        let mut head = Vec::with_capacity(12);
        put_id(&mut head, ids::CLUSTER);
        put_size(&mut head, cluster.body.len() as u64);
        self.append(&head)?;
        self.append(&cluster.body)?;
        self.file
            .write_all_at(&(self.end_ms as f64).to_be_bytes(), self.duration_value_pos)?;
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all_at(bytes, self.len)?;
        self.len += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for MkvWriter {
    /// A writer dropped without `finish` (error path) still completes its file.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// A Void element of exactly `total` bytes (at least 2).
fn put_void(out: &mut Vec<u8>, total: usize) {
    let body = total.saturating_sub(2);
    if body < 127 {
        put_id(out, ids::VOID);
        put_size(out, body as u64);
        out.resize(out.len() + body, 0);
    } else {
        put_id(out, ids::VOID);
        put_size_len(out, (total - 9) as u64, 8);
        out.resize(out.len() + total - 9, 0);
    }
}

fn track_entry(number: u64, cfg: &CodecConfig, doc_type: DocType) -> Result<Vec<u8>> {
    let codec_id = match (cfg.codec, doc_type) {
        (Codec::Vp8, _) => "V_VP8",
        (Codec::Vp9, _) => "V_VP9",
        (Codec::Av1, _) => "V_AV1",
        (Codec::H264, DocType::Matroska) => "V_MPEG4/ISO/AVC",
        (Codec::Opus, _) => "A_OPUS",
        (codec, _) => {
            return Err(Error::unsupported(
                if doc_type == DocType::Webm {
                    "WebM"
                } else {
                    "Matroska"
                },
                format!("{codec:?} track"),
            ));
        }
    };
    let mut e = Vec::new();
    put_uint(&mut e, ids::TRACK_NUMBER, number);
    put_uint(&mut e, ids::TRACK_UID, number);
    put_uint(&mut e, ids::FLAG_LACING, 0);
    put_str(&mut e, ids::CODEC_ID, codec_id);
    if !cfg.private.is_empty() {
        put_master(&mut e, ids::CODEC_PRIVATE, &cfg.private);
    }
    match cfg.codec.kind() {
        TrackKind::Video => {
            put_uint(&mut e, ids::TRACK_TYPE, 1);
            let mut v = Vec::new();
            put_uint(&mut v, ids::PIXEL_WIDTH, u64::from(cfg.width));
            put_uint(&mut v, ids::PIXEL_HEIGHT, u64::from(cfg.height));
            put_master(&mut e, ids::VIDEO, &v);
        }
        TrackKind::Audio => {
            put_uint(&mut e, ids::TRACK_TYPE, 2);
            if cfg.codec == Codec::Opus {
                let pre_skip = opus::parse_opus_head(&cfg.private).map_or(0, |(_, p)| p);
                put_uint(
                    &mut e,
                    ids::CODEC_DELAY,
                    u64::from(pre_skip) * 1_000_000_000 / 48_000,
                );
                put_uint(&mut e, ids::SEEK_PRE_ROLL, OPUS_SEEK_PRE_ROLL_NS);
            }
            let mut a = Vec::new();
            put_float(&mut a, ids::SAMPLING_FREQUENCY, f64::from(cfg.sample_rate));
            put_uint(&mut a, ids::CHANNELS, u64::from(cfg.channels));
            put_master(&mut e, ids::AUDIO, &a);
        }
    }
    Ok(e)
}
