//! A Matroska/WebM demuxer for the player: headers at open, then blocks on
//! demand, seeking through Cues when the file has them or by scanning
//! cluster timestamps when it does not.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};

use super::ebml::{Header, children, parse_float, parse_uint, read_header, slice_vint};
use super::ids;
use crate::codec::opus;
use crate::error::{Error, Result};
use crate::media::{Codec, CodecConfig, Frame};
use crate::player::{Source, SourceFrame};

const FORMAT: &str = "Matroska";
/// Largest element body read into memory (a frame or a header element).
const MAX_ELEMENT: u64 = 64 << 20;

/// A buffered reader that knows its position.
struct Cursor {
    inner: BufReader<File>,
    pos: u64,
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Cursor {
    fn seek_to(&mut self, pos: u64) -> Result<()> {
        self.inner.seek_relative(pos as i64 - self.pos as i64)?;
        self.pos = pos;
        Ok(())
    }

    fn body(&mut self, h: &Header) -> Result<Vec<u8>> {
        let size = h
            .size
            .ok_or_else(|| Error::malformed(FORMAT, "unknown size on a leaf element"))?;
        if size > MAX_ELEMENT {
            return Err(Error::malformed(FORMAT, format!("element of {size} bytes")));
        }
        let mut body = vec![0; size as usize];
        self.read_exact(&mut body)
            .map_err(|_| Error::malformed(FORMAT, "truncated element"))?;
        Ok(body)
    }
}

pub struct MkvReader {
    cursor: Cursor,
    file_len: u64,
    segment_data_start: u64,
    segment_end: u64,
    first_cluster: u64,
    timescale_ns: u64,
    duration_us: Option<u64>,
    configs: Vec<CodecConfig>,
    /// Matroska track number for each entry of `configs`.
    numbers: Vec<u64>,
    /// (time in timestamp units, cluster position relative to segment data).
    cues: Vec<(u64, u64)>,
    /// End of the cluster being read (`None`: unknown size).
    cluster_end: Option<u64>,
    in_cluster: bool,
    cluster_time: u64,
    /// Frames of a laced block not handed out yet.
    pending: VecDeque<SourceFrame>,
}

fn is_top_level(id: u32) -> bool {
    matches!(
        id,
        ids::CLUSTER
            | ids::CUES
            | ids::INFO
            | ids::TRACKS
            | ids::SEEK_HEAD
            | 0x1254_C367
            | 0x1043_A770
            | 0x1941_A469
    )
}

impl MkvReader {
    pub fn open(file: File) -> Result<Self> {
        let file_len = file.metadata()?.len();
        let mut c = Cursor {
            inner: BufReader::with_capacity(64 * 1024, file),
            pos: 0,
        };
        let ebml = read_header(&mut c)?.ok_or_else(|| Error::malformed(FORMAT, "empty file"))?;
        if ebml.id != ids::EBML {
            return Err(Error::malformed(FORMAT, "no EBML header"));
        }
        let body = c.body(&ebml)?;
        let doc_type = children(&body)
            .find(|(id, _)| *id == ids::DOC_TYPE)
            .map(|(_, v)| v);
        if !matches!(doc_type, Some(b"webm") | Some(b"matroska")) {
            return Err(Error::unsupported(
                FORMAT,
                "DocType other than webm/matroska",
            ));
        }
        let seg = read_header(&mut c)?.ok_or_else(|| Error::malformed(FORMAT, "no Segment"))?;
        if seg.id != ids::SEGMENT {
            return Err(Error::malformed(FORMAT, "no Segment after the EBML header"));
        }
        let segment_data_start = c.pos;
        let segment_end = seg
            .size
            .map_or(file_len, |s| (segment_data_start + s).min(file_len));
        let mut r = Self {
            cursor: c,
            file_len,
            segment_data_start,
            segment_end,
            first_cluster: 0,
            timescale_ns: 1_000_000,
            duration_us: None,
            configs: Vec::new(),
            numbers: Vec::new(),
            cues: Vec::new(),
            cluster_end: None,
            in_cluster: false,
            cluster_time: 0,
            pending: VecDeque::new(),
        };
        let mut raw_duration = None;
        let mut cues_pos = None;
        loop {
            let at = r.cursor.pos;
            let Some(h) = read_header(&mut r.cursor)? else {
                break;
            };
            match h.id {
                ids::CLUSTER => {
                    r.first_cluster = at;
                    break;
                }
                ids::INFO => {
                    for (id, v) in children(&r.cursor.body(&h)?) {
                        match id {
                            ids::TIMESTAMP_SCALE => r.timescale_ns = parse_uint(v).max(1),
                            ids::DURATION => raw_duration = parse_float(v),
                            _ => {}
                        }
                    }
                }
                ids::TRACKS => {
                    let body = r.cursor.body(&h)?;
                    r.parse_tracks(&body)?;
                }
                ids::SEEK_HEAD => {
                    for (_, seek) in
                        children(&r.cursor.body(&h)?).filter(|(id, _)| *id == ids::SEEK)
                    {
                        let entry: Vec<_> = children(seek).collect();
                        let id = entry
                            .iter()
                            .find(|(i, _)| *i == ids::SEEK_ID)
                            .map(|(_, v)| parse_uint(v));
                        let pos = entry
                            .iter()
                            .find(|(i, _)| *i == ids::SEEK_POSITION)
                            .map(|(_, v)| parse_uint(v));
                        if let (Some(0x1C53_BB6B), Some(pos)) = (id, pos) {
                            cues_pos = Some(pos);
                        }
                    }
                }
                _ => {
                    let size = h.size.ok_or_else(|| {
                        Error::malformed(FORMAT, "unknown-size element in Segment")
                    })?;
                    r.cursor.seek_to(r.cursor.pos + size)?;
                }
            }
        }
        if r.configs.is_empty() {
            return Err(Error::malformed(
                FORMAT,
                "no playable track (VP8, VP9, AV1, H264, Opus)",
            ));
        }
        if r.first_cluster == 0 {
            return Err(Error::malformed(
                FORMAT,
                "no Cluster: the file holds no media",
            ));
        }
        r.duration_us = raw_duration
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(|d| (d * r.timescale_ns as f64 / 1000.0) as u64);
        if let Some(pos) = cues_pos {
            // Damaged or missing Cues only cost seeking precision.
            let _ = r.read_cues(r.segment_data_start + pos);
        }
        r.cursor.seek_to(r.first_cluster)?;
        Ok(r)
    }

    fn parse_tracks(&mut self, body: &[u8]) -> Result<()> {
        for (_, entry) in children(body).filter(|(id, _)| *id == ids::TRACK_ENTRY) {
            let (mut number, mut codec_id, mut private) = (0, &b""[..], Vec::new());
            let (mut width, mut height, mut rate, mut channels) = (0, 0, 48_000.0, 2);
            for (id, v) in children(entry) {
                match id {
                    ids::TRACK_NUMBER => number = parse_uint(v),
                    ids::CODEC_ID => codec_id = v,
                    ids::CODEC_PRIVATE => private = v.to_vec(),
                    ids::VIDEO => {
                        for (id, v) in children(v) {
                            match id {
                                ids::PIXEL_WIDTH => width = parse_uint(v),
                                ids::PIXEL_HEIGHT => height = parse_uint(v),
                                _ => {}
                            }
                        }
                    }
                    ids::AUDIO => {
                        for (id, v) in children(v) {
                            match id {
                                ids::SAMPLING_FREQUENCY => rate = parse_float(v).unwrap_or(rate),
                                ids::CHANNELS => channels = parse_uint(v),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            let codec = match codec_id {
                b"V_VP8" => Codec::Vp8,
                b"V_VP9" => Codec::Vp9,
                b"V_AV1" => Codec::Av1,
                b"V_MPEG4/ISO/AVC" => Codec::H264,
                b"A_OPUS" => Codec::Opus,
                b"A_AAC" => Codec::Aac,
                _ => continue,
            };
            let mut cfg = CodecConfig::video(codec, clamp16(width), clamp16(height), private);
            if codec == Codec::H264 {
                cfg.private = crate::mp4::reader::normalize_avcc(&cfg.private)
                    .ok_or_else(|| Error::malformed(FORMAT, "invalid avcC in CodecPrivate"))?;
            }
            if codec == Codec::Opus && opus::parse_opus_head(&cfg.private).is_none() {
                cfg.private = opus::opus_head(u8::try_from(channels).unwrap_or(2), 0);
            }
            cfg.sample_rate = rate as u32;
            cfg.channels = u8::try_from(channels).unwrap_or(2);
            self.configs.push(cfg);
            self.numbers.push(number);
        }
        Ok(())
    }

    fn read_cues(&mut self, pos: u64) -> Result<()> {
        self.cursor.seek_to(pos)?;
        let h =
            read_header(&mut self.cursor)?.ok_or_else(|| Error::malformed(FORMAT, "no Cues"))?;
        if h.id != ids::CUES {
            return Err(Error::malformed(FORMAT, "SeekHead does not point at Cues"));
        }
        for (_, point) in children(&self.cursor.body(&h)?).filter(|(id, _)| *id == ids::CUE_POINT) {
            let mut time = None;
            let mut cluster = None;
            for (id, v) in children(point) {
                match id {
                    ids::CUE_TIME => time = Some(parse_uint(v)),
                    ids::CUE_TRACK_POSITIONS => {
                        cluster = children(v)
                            .find(|(id, _)| *id == ids::CUE_CLUSTER_POSITION)
                            .map(|(_, v)| parse_uint(v));
                    }
                    _ => {}
                }
            }
            if let (Some(t), Some(c)) = (time, cluster) {
                self.cues.push((t, c));
            }
        }
        self.cues.sort_unstable();
        Ok(())
    }

    fn to_us(&self, units: i64) -> u64 {
        u64::try_from(units)
            .unwrap_or(0)
            .saturating_mul(self.timescale_ns)
            / 1000
    }

    /// Queues the frames of one block (several when laced); blocks of
    /// tracks not played are skipped.
    fn block(&mut self, data: &[u8], simple: bool, has_reference: bool) -> Result<()> {
        let bad = |r: &str| Error::malformed(FORMAT, r);
        let (number, n) = slice_vint(data).ok_or_else(|| bad("bad block header"))?;
        let Some(track) = self.numbers.iter().position(|&t| t == number) else {
            return Ok(());
        };
        let head = data.get(n..n + 3).ok_or_else(|| bad("short block"))?;
        let rel = i16::from_be_bytes([head[0], head[1]]);
        let flags = head[2];
        let keyframe = if simple {
            flags & 0x80 != 0
        } else {
            !has_reference
        };
        let mut pts = self.to_us(self.cluster_time as i64 + i64::from(rel));
        let opus = self.configs[track].codec == Codec::Opus;
        for frame in split_lace(flags, &data[n + 3..]).ok_or_else(|| bad("bad lacing"))? {
            self.pending.push_back(SourceFrame {
                track,
                frame: Frame {
                    pts_us: pts,
                    keyframe,
                    data: frame.to_vec(),
                },
            });
            // Laced Opus frames follow each other; their times come from their TOC.
            if opus {
                pts += u64::from(opus::packet_samples(frame).unwrap_or(960)) * 1_000_000 / 48_000;
            }
        }
        Ok(())
    }

    fn read_next(&mut self) -> Result<Option<SourceFrame>> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(Some(f));
            }
            if self.cursor.pos >= self.segment_end {
                return Ok(None);
            }
            if self.in_cluster && self.cluster_end.is_some_and(|end| self.cursor.pos >= end) {
                self.in_cluster = false;
            }
            let Some(h) = read_header(&mut self.cursor)? else {
                return Ok(None);
            };
            let body_end = h.size.map(|s| self.cursor.pos + s);
            if body_end.is_some_and(|end| end > self.file_len) && h.id != ids::CLUSTER {
                return Ok(None); // cut off mid-element: the file ends here
            }
            if h.id == ids::CLUSTER {
                self.in_cluster = true;
                self.cluster_end = body_end;
                continue;
            }
            if is_top_level(h.id) || !self.in_cluster {
                self.in_cluster = false;
                let size = h
                    .size
                    .ok_or_else(|| Error::malformed(FORMAT, "unknown-size element"))?;
                self.cursor.seek_to(self.cursor.pos + size)?;
                continue;
            }
            match h.id {
                ids::TIMESTAMP => self.cluster_time = parse_uint(&self.cursor.body(&h)?),
                ids::SIMPLE_BLOCK => {
                    let body = self.cursor.body(&h)?;
                    self.block(&body, true, false)?;
                }
                ids::BLOCK_GROUP => {
                    let body = self.cursor.body(&h)?;
                    let has_ref = children(&body).any(|(id, _)| id == ids::REFERENCE_BLOCK);
                    if let Some((_, block)) = children(&body).find(|(id, _)| *id == ids::BLOCK) {
                        self.block(block, false, has_ref)?;
                    }
                }
                _ => {
                    let size = h
                        .size
                        .ok_or_else(|| Error::malformed(FORMAT, "unknown-size element"))?;
                    self.cursor.seek_to(self.cursor.pos + size)?;
                }
            }
        }
    }

    /// Scans cluster headers from the first one for the last cluster starting
    /// at or before `units`. Returns (time, position).
    fn scan_clusters(&mut self, units: u64) -> Result<(u64, u64)> {
        let mut best = (0, self.first_cluster);
        let mut pos = self.first_cluster;
        while pos < self.segment_end {
            self.cursor.seek_to(pos)?;
            let Some(h) = read_header(&mut self.cursor)? else {
                break;
            };
            let Some(size) = h.size else { break };
            if h.id == ids::CLUSTER {
                let Some(t) = read_header(&mut self.cursor)? else {
                    break;
                };
                if t.id != ids::TIMESTAMP {
                    break;
                }
                let time = parse_uint(&self.cursor.body(&t)?);
                if time > units {
                    break;
                }
                best = (time, pos);
            }
            pos += h.len + size;
        }
        Ok(best)
    }
}

/// The frames of a block body per its lacing (flags bits 1-2): none, Xiph,
/// fixed-size or EBML (RFC 9559 §10.3).
fn split_lace(flags: u8, data: &[u8]) -> Option<Vec<&[u8]>> {
    let lacing = (flags >> 1) & 3;
    if lacing == 0 {
        return Some(vec![data]);
    }
    let count = usize::from(*data.first()?) + 1;
    let mut at = 1;
    let mut sizes = Vec::with_capacity(count);
    match lacing {
        1 => {
            for _ in 1..count {
                let mut size = 0usize;
                loop {
                    let b = *data.get(at)?;
                    at += 1;
                    size += usize::from(b);
                    if b != 255 {
                        break;
                    }
                }
                sizes.push(size);
            }
        }
        3 => {
            let (first, used) = slice_vint(data.get(at..)?)?;
            at += used;
            let mut size = i64::try_from(first).ok()?;
            sizes.push(usize::try_from(size).ok()?);
            for _ in 2..count {
                let (raw, used) = slice_vint(data.get(at..)?)?;
                at += used;
                let bias = (1i64 << (7 * used - 1)) - 1;
                size += i64::try_from(raw).ok()? - bias;
                sizes.push(usize::try_from(size).ok()?);
            }
        }
        _ => {
            let each = (data.len() - 1) / count;
            if each * count != data.len() - 1 {
                return None;
            }
            sizes.resize(count - 1, each);
        }
    }
    let mut frames = Vec::with_capacity(count);
    for size in sizes {
        frames.push(data.get(at..at.checked_add(size)?)?);
        at += size;
    }
    frames.push(data.get(at..)?);
    Some(frames)
}

fn clamp16(v: u64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

impl Source for MkvReader {
    fn tracks(&self) -> &[CodecConfig] {
        &self.configs
    }

    fn duration_us(&self) -> Option<u64> {
        self.duration_us
    }

    fn seekable(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Option<SourceFrame>> {
        match self.read_next() {
            // A cut-off tail (a recording still being written) ends the input.
            Err(Error::Malformed { reason, .. }) if reason.starts_with("truncated") => Ok(None),
            other => other,
        }
    }

    fn seek(&mut self, pos_us: u64) -> Result<u64> {
        let units = pos_us.saturating_mul(1000) / self.timescale_ns;
        let (time, pos) = match self.cues.iter().rev().find(|(t, _)| *t <= units) {
            Some(&(t, rel)) => (t, self.segment_data_start + rel),
            None if self.cues.is_empty() => self.scan_clusters(units)?,
            None => (self.cues[0].0, self.segment_data_start + self.cues[0].1),
        };
        self.cursor.seek_to(pos)?;
        self.in_cluster = false;
        self.pending.clear();
        Ok(self.to_us(time as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::split_lace;

    fn sizes(flags: u8, data: &[u8]) -> Option<Vec<usize>> {
        split_lace(flags, data).map(|f| f.iter().map(|f| f.len()).collect())
    }

    #[test]
    fn lacing() {
        let body = |head: &[u8]| -> Vec<u8> {
            head.iter()
                .copied()
                .chain(std::iter::repeat_n(7, 307))
                .collect()
        };
        // Xiph: 300 = 255 + 45, then 2, the last frame takes the rest (5).
        assert_eq!(sizes(0x02, &body(&[2, 255, 45, 2])), Some(vec![300, 2, 5]));
        // EBML: 300 as a 2-byte VINT, then a signed difference of -298.
        assert_eq!(
            sizes(0x06, &body(&[2, 0x41, 0x2c, 0x5e, 0xd5])),
            Some(vec![300, 2, 5])
        );
        // Fixed: the rest split evenly.
        assert_eq!(sizes(0x04, &[1, 1, 2, 3, 4, 5, 6]), Some(vec![3, 3]));
        assert_eq!(sizes(0x04, &[1, 1, 2, 3]), None);
        assert_eq!(sizes(0x02, &[2, 255, 255]), None);
        assert_eq!(sizes(0x00, &[9, 9]), Some(vec![2]));
    }
}
