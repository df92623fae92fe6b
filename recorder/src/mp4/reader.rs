//! An MP4 demuxer for the player: plain files (sample tables in `moov`) and
//! fragmented ones (`moof`+`trun`). The sample index is built at open; frames
//! are read on demand in decode-time order across tracks.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use crate::codec::{h264, opus};
use crate::error::{Error, Result};
use crate::media::{Codec, CodecConfig, Frame};
use crate::player::{Source, SourceFrame};

const FORMAT: &str = "MP4";
/// Largest `moov`/`moof` loaded into memory.
const MAX_HEADER_BOX: u64 = 256 << 20;
/// Bounds the sample index a damaged table could ask for (~37 h at 30 fps).
const MAX_SAMPLES: usize = 4 << 20;

#[derive(Debug, Clone, Copy)]
struct SampleRef {
    offset: u64,
    size: u32,
    dts: u64,
    cts_offset: i64,
    sync: bool,
}

struct Track {
    id: u32,
    timescale: u32,
    config: Option<CodecConfig>,
    /// NAL length size of H264 samples, rewritten to 4 when it differs.
    nal_length: usize,
    samples: Vec<SampleRef>,
    next: usize,
    /// trex defaults: duration, size, flags.
    defaults: (u32, u32, u32),
}

impl Track {
    fn pts_us(&self, s: &SampleRef) -> u64 {
        let pts = (s.dts as i64).saturating_add(s.cts_offset).max(0) as u64;
        (u128::from(pts) * 1_000_000 / u128::from(self.timescale.max(1))) as u64
    }

    fn dts_us(&self, s: &SampleRef) -> u64 {
        (u128::from(s.dts) * 1_000_000 / u128::from(self.timescale.max(1))) as u64
    }
}

pub struct Mp4Reader {
    file: File,
    /// Only tracks with a supported codec, in file order.
    tracks: Vec<Track>,
    configs: Vec<CodecConfig>,
    duration_us: Option<u64>,
}

/// Iterates the boxes of an in-memory body: (type, body).
fn boxes(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as u64;
        let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
        let (header, size) = match size {
            0 => (8, data.len() as u64),
            1 => (16, u64::from_be_bytes(data.get(8..16)?.try_into().ok()?)),
            s => (8, s),
        };
        let body = data.get(header..usize::try_from(size).ok()?)?;
        data = &data[usize::try_from(size).ok()?..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn be64(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn bad(reason: &str) -> Error {
    Error::malformed(FORMAT, reason)
}

/// Rewrites an `avcC` record to announce 4-byte NAL lengths (samples are
/// converted to match) and checks it parses.
pub(crate) fn normalize_avcc(record: &[u8]) -> Option<Vec<u8>> {
    h264::parse_avcc_record(record)?;
    let mut r = record.to_vec();
    r[4] |= 0x03;
    Some(r)
}

impl Mp4Reader {
    pub fn open(mut file: File) -> Result<Self> {
        let file_len = file.metadata()?.len();
        let mut pos = 0;
        let mut moov = None;
        let mut moofs = Vec::new();
        while pos + 8 <= file_len {
            file.seek(SeekFrom::Start(pos))?;
            let mut head = [0u8; 16];
            file.read_exact(&mut head[..8])?;
            let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
            let (hlen, size) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
                0 => (8, file_len - pos),
                1 => {
                    file.read_exact(&mut head[8..16])?;
                    (
                        16,
                        u64::from_be_bytes([
                            head[8], head[9], head[10], head[11], head[12], head[13], head[14],
                            head[15],
                        ]),
                    )
                }
                s => (8, u64::from(s)),
            };
            if size < hlen {
                return Err(bad("box smaller than its header"));
            }
            if (&kind == b"moov" || &kind == b"moof") && size <= MAX_HEADER_BOX {
                if pos + size > file_len {
                    if &kind == b"moov" {
                        return Err(bad("truncated moov"));
                    }
                    break; // a cut-off fragment ends the file
                }
                let mut body = vec![0; (size - hlen) as usize];
                file.read_exact(&mut body)?;
                if &kind == b"moov" {
                    moov = Some(body);
                } else {
                    moofs.push((pos, body));
                }
            }
            pos += size;
        }
        let moov = moov.ok_or_else(|| bad("no moov box"))?;
        let mut tracks = parse_moov(&moov)?;
        for (moof_pos, body) in &moofs {
            parse_moof(&mut tracks, *moof_pos, body);
        }
        for t in &mut tracks {
            t.samples
                .retain(|s| s.offset + u64::from(s.size) <= file_len);
        }
        tracks.retain(|t| t.config.is_some() && !t.samples.is_empty());
        if tracks.is_empty() {
            return Err(bad(
                "no playable track (H264, Opus, AAC, VP8, VP9, AV1) with samples",
            ));
        }
        let configs: Vec<CodecConfig> = tracks.iter().filter_map(|t| t.config.clone()).collect();
        let duration_us = tracks
            .iter()
            .filter_map(|t| {
                let last = t.samples.iter().max_by_key(|s| s.dts)?;
                let step = t
                    .samples
                    .len()
                    .checked_sub(2)
                    .map_or(0, |i| t.samples[i + 1].dts.saturating_sub(t.samples[i].dts));
                Some(t.dts_us(&SampleRef {
                    dts: last.dts + step,
                    ..*last
                }))
            })
            .max();
        Ok(Self {
            file,
            tracks,
            configs,
            duration_us,
        })
    }
}

fn parse_moov(moov: &[u8]) -> Result<Vec<Track>> {
    let mut tracks = Vec::new();
    for (_, trak) in boxes(moov).filter(|(k, _)| k == b"trak") {
        let tkhd = child(trak, b"tkhd").ok_or_else(|| bad("trak without tkhd"))?;
        let id = if tkhd.first() == Some(&1) {
            be32(tkhd, 20)
        } else {
            be32(tkhd, 12)
        }
        .ok_or_else(|| bad("short tkhd"))?;
        let mdia = child(trak, b"mdia").ok_or_else(|| bad("trak without mdia"))?;
        let mdhd = child(mdia, b"mdhd").ok_or_else(|| bad("mdia without mdhd"))?;
        let timescale = if mdhd.first() == Some(&1) {
            be32(mdhd, 20)
        } else {
            be32(mdhd, 12)
        }
        .filter(|t| *t > 0)
        .ok_or_else(|| bad("invalid mdhd timescale"))?;
        let stbl = child(mdia, b"minf")
            .and_then(|m| child(m, b"stbl"))
            .ok_or_else(|| bad("no stbl"))?;
        let (config, nal_length) = child(stbl, b"stsd")
            .and_then(parse_stsd)
            .map_or((None, 4), |(c, n)| (Some(c), n));
        let samples = sample_table(stbl).ok_or_else(|| bad("inconsistent sample tables"))?;
        tracks.push(Track {
            id,
            timescale,
            config,
            nal_length,
            samples,
            next: 0,
            defaults: (0, 0, 0),
        });
    }
    if let Some(mvex) = child(moov, b"mvex") {
        for (_, trex) in boxes(mvex).filter(|(k, _)| k == b"trex") {
            let (Some(id), Some(d), Some(s), Some(f)) = (
                be32(trex, 4),
                be32(trex, 12),
                be32(trex, 16),
                be32(trex, 20),
            ) else {
                continue;
            };
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.defaults = (d, s, f);
            }
        }
    }
    Ok(tracks)
}

/// The codec configuration of the first sample entry, and the H264 NAL length size.
fn parse_stsd(stsd: &[u8]) -> Option<(CodecConfig, usize)> {
    let (kind, entry) = boxes(stsd.get(8..)?).next()?;
    let visual = |codec: Codec, record: &[u8; 4]| -> Option<CodecConfig> {
        let private = child(entry.get(78..)?, record)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        Some(CodecConfig::video(
            codec,
            be16(entry, 24)?,
            be16(entry, 26)?,
            private,
        ))
    };
    let mut nal_length = 4;
    let config = match &kind {
        b"avc1" | b"avc3" => {
            let mut c = visual(Codec::H264, b"avcC")?;
            nal_length = h264::parse_avcc_record(&c.private)?.length_size;
            c.private = normalize_avcc(&c.private)?;
            c
        }
        b"vp08" => visual(Codec::Vp8, b"vpcC")?,
        b"vp09" => visual(Codec::Vp9, b"vpcC")?,
        b"av01" => visual(Codec::Av1, b"av1C")?,
        b"Opus" | b"mp4a" => {
            let channels = u8::try_from(be16(entry, 16)?).ok()?;
            let rate = u32::from(be16(entry, 24)?);
            let children = entry.get(28..)?;
            let (codec, private) = if &kind == b"Opus" {
                let dops = child(children, b"dOps")?;
                (Codec::Opus, opus::opus_head(*dops.get(1)?, be16(dops, 2)?))
            } else {
                (
                    Codec::Aac,
                    child(children, b"esds")
                        .and_then(esds_config)
                        .unwrap_or_default(),
                )
            };
            CodecConfig {
                codec,
                width: 0,
                height: 0,
                sample_rate: rate,
                channels,
                private,
            }
        }
        _ => return None,
    };
    Some((config, nal_length))
}

/// The DecoderSpecificInfo (AudioSpecificConfig) inside an `esds`.
fn esds_config(esds: &[u8]) -> Option<Vec<u8>> {
    let mut d = esds.get(4..)?;
    // Walk descriptors: tag, size (1-4 bytes of 7 bits), body.
    loop {
        let tag = *d.first()?;
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let b = *d.get(i)?;
            len = (len << 7) | usize::from(b & 0x7f);
            i += 1;
            if b & 0x80 == 0 || i > 4 {
                break;
            }
        }
        let body = d.get(i..i + len)?;
        match tag {
            0x03 => {
                let flags = *body.get(2)?;
                let mut skip = 3;
                if flags & 0x80 != 0 {
                    skip += 2;
                }
                if flags & 0x40 != 0 {
                    skip += 1 + usize::from(*body.get(skip)?);
                }
                if flags & 0x20 != 0 {
                    skip += 2;
                }
                d = body.get(skip..)?;
            }
            0x04 => d = body.get(13..)?,
            0x05 => return Some(body.to_vec()),
            _ => d = d.get(i + len..)?,
        }
    }
}

/// Expands stts/ctts/stss/stsz/stsc/stco into one entry per sample.
fn sample_table(stbl: &[u8]) -> Option<Vec<SampleRef>> {
    let stsz = child(stbl, b"stsz")?;
    let fixed = be32(stsz, 4)?;
    let count = be32(stsz, 8)? as usize;
    if count == 0 || count > MAX_SAMPLES {
        return (count == 0).then(Vec::new);
    }
    let sizes: Vec<u32> = if fixed != 0 {
        vec![fixed; count]
    } else {
        (0..count)
            .map(|i| be32(stsz, 12 + 4 * i))
            .collect::<Option<_>>()?
    };
    let chunk_offsets: Vec<u64> = if let Some(stco) = child(stbl, b"stco") {
        (0..be32(stco, 4)? as usize)
            .map(|i| be32(stco, 8 + 4 * i).map(u64::from))
            .collect::<Option<_>>()?
    } else {
        let co64 = child(stbl, b"co64")?;
        (0..be32(co64, 4)? as usize)
            .map(|i| be64(co64, 8 + 8 * i))
            .collect::<Option<_>>()?
    };
    let stsc = child(stbl, b"stsc")?;
    let stsc_entries: Vec<(u32, u32)> = (0..be32(stsc, 4)? as usize)
        .map(|i| Some((be32(stsc, 8 + 12 * i)?, be32(stsc, 12 + 12 * i)?)))
        .collect::<Option<_>>()?;
    let mut samples = Vec::with_capacity(count);
    let mut n = 0;
    for (ci, &chunk_offset) in chunk_offsets.iter().enumerate() {
        let chunk = ci as u32 + 1;
        let per_chunk = stsc_entries
            .iter()
            .rev()
            .find(|(first, _)| *first <= chunk)?
            .1;
        let mut offset = chunk_offset;
        for _ in 0..per_chunk {
            let size = *sizes.get(n)?;
            samples.push(SampleRef {
                offset,
                size,
                dts: 0,
                cts_offset: 0,
                sync: true,
            });
            offset += u64::from(size);
            n += 1;
            if n == count {
                break;
            }
        }
        if n == count {
            break;
        }
    }
    let stts = child(stbl, b"stts")?;
    let mut dts = 0u64;
    let mut i = 0;
    for e in 0..be32(stts, 4)? as usize {
        let (run, delta) = (be32(stts, 8 + 8 * e)?, be32(stts, 12 + 8 * e)?);
        for s in samples.iter_mut().skip(i).take(run as usize) {
            s.dts = dts;
            dts += u64::from(delta);
        }
        i = i.saturating_add(run as usize);
    }
    if let Some(ctts) = child(stbl, b"ctts") {
        let version = *ctts.first()?;
        let mut i = 0;
        for e in 0..be32(ctts, 4)? as usize {
            let run = be32(ctts, 8 + 8 * e)?;
            let raw = be32(ctts, 12 + 8 * e)?;
            let off = if version == 1 {
                i64::from(raw as i32)
            } else {
                i64::from(raw)
            };
            for s in samples.iter_mut().skip(i).take(run as usize) {
                s.cts_offset = off;
            }
            i = i.saturating_add(run as usize);
        }
    }
    if let Some(stss) = child(stbl, b"stss") {
        samples.iter_mut().for_each(|s| s.sync = false);
        for e in 0..be32(stss, 4)? as usize {
            let idx = be32(stss, 8 + 4 * e)? as usize;
            if let Some(s) = idx.checked_sub(1).and_then(|i| samples.get_mut(i)) {
                s.sync = true;
            }
        }
    }
    Some(samples)
}

fn parse_moof(tracks: &mut [Track], moof_pos: u64, moof: &[u8]) {
    for (_, traf) in boxes(moof).filter(|(k, _)| k == b"traf") {
        let Some(tfhd) = child(traf, b"tfhd") else {
            continue;
        };
        let (Some(flags), Some(id)) = (be32(tfhd, 0), be32(tfhd, 4)) else {
            continue;
        };
        let Some(track) = tracks.iter_mut().find(|t| t.id == id) else {
            continue;
        };
        let (mut dur, mut size, mut sflags) = track.defaults;
        let mut at = 8;
        let mut base = moof_pos;
        if flags & 0x01 != 0 {
            base = be64(tfhd, at).unwrap_or(base);
            at += 8;
        }
        if flags & 0x02 != 0 {
            at += 4;
        }
        for (bit, field) in [(0x08, &mut dur), (0x10, &mut size), (0x20, &mut sflags)] {
            if flags & bit != 0 {
                *field = be32(tfhd, at).unwrap_or(*field);
                at += 4;
            }
        }
        let mut dts = child(traf, b"tfdt")
            .and_then(|t| {
                if t.first() == Some(&1) {
                    be64(t, 4)
                } else {
                    be32(t, 4).map(u64::from)
                }
            })
            .or_else(|| track.samples.last().map(|s| s.dts + u64::from(dur)))
            .unwrap_or(0);
        for (_, trun) in boxes(traf).filter(|(k, _)| k == b"trun") {
            let (Some(tflags), Some(count)) = (be32(trun, 0), be32(trun, 4)) else {
                continue;
            };
            let version = trun[0];
            let mut at = 8;
            let mut offset = base;
            if tflags & 0x01 != 0 {
                offset = base.wrapping_add_signed(i64::from(be32(trun, at).unwrap_or(0) as i32));
                at += 4;
            }
            let mut first_flags = None;
            if tflags & 0x04 != 0 {
                first_flags = be32(trun, at);
                at += 4;
            }
            for i in 0..count {
                if track.samples.len() >= MAX_SAMPLES {
                    break;
                }
                let mut field = |bit: u32, default: u32| -> Option<u32> {
                    if tflags & bit == 0 {
                        return Some(default);
                    }
                    let v = be32(trun, at)?;
                    at += 4;
                    Some(v)
                };
                let (Some(d), Some(s), Some(f), Some(c)) = (
                    field(0x100, dur),
                    field(0x200, size),
                    field(0x400, sflags),
                    field(0x800, 0),
                ) else {
                    break;
                };
                let f = if i == 0 { first_flags.unwrap_or(f) } else { f };
                let cts = if version == 1 {
                    i64::from(c as i32)
                } else {
                    i64::from(c)
                };
                track.samples.push(SampleRef {
                    offset,
                    size: s,
                    dts,
                    cts_offset: cts,
                    sync: f & 0x0001_0000 == 0,
                });
                offset += u64::from(s);
                dts += u64::from(d);
            }
            base = offset;
        }
    }
}

impl Source for Mp4Reader {
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
        let Some(index) = self
            .tracks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.samples.get(t.next).map(|s| (i, t.dts_us(s))))
            .min_by_key(|(_, time)| *time)
            .map(|(i, _)| i)
        else {
            return Ok(None);
        };
        let t = &mut self.tracks[index];
        let s = t.samples[t.next];
        t.next += 1;
        let mut data = vec![0; s.size as usize];
        self.file.seek(SeekFrom::Start(s.offset))?;
        self.file.read_exact(&mut data)?;
        let t = &self.tracks[index];
        if t.config.as_ref().is_some_and(|c| c.codec == Codec::H264) && t.nal_length != 4 {
            let mut out = Vec::with_capacity(data.len() + 8);
            for nal in h264::avcc_nals(&data, t.nal_length) {
                h264::push_avcc(&mut out, nal);
            }
            data = out;
        }
        Ok(Some(SourceFrame {
            track: index,
            frame: Frame {
                pts_us: t.pts_us(&s),
                keyframe: s.sync,
                data,
            },
        }))
    }

    fn seek(&mut self, pos_us: u64) -> Result<u64> {
        // Video decides the point (a sync sample); the other tracks follow it.
        let video = self.tracks.iter().position(|t| {
            t.config
                .as_ref()
                .is_some_and(|c| c.codec.kind() == crate::TrackKind::Video)
        });
        let target = match video {
            Some(v) => {
                let t = &mut self.tracks[v];
                let i = (0..t.samples.len())
                    .rev()
                    .find(|&i| t.samples[i].sync && t.pts_us(&t.samples[i]) <= pos_us)
                    .unwrap_or(0);
                t.next = i;
                t.pts_us(&t.samples[i])
            }
            None => pos_us,
        };
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if Some(i) != video {
                t.next = t
                    .samples
                    .partition_point(|s| t_dts_us(t.timescale, s.dts) < target);
            }
        }
        Ok(target)
    }
}

fn t_dts_us(timescale: u32, dts: u64) -> u64 {
    (u128::from(dts) * 1_000_000 / u128::from(timescale.max(1))) as u64
}
