//! A live fragmented-MP4 writer.
//!
//! `ftyp` and a `moov` with `mvex` go out at creation; then every second (and
//! at every video keyframe) one `moof`+`mdat` fragment is appended and the
//! movie duration in `mvhd`/`mehd` is rewritten in place. Players read a file
//! cut off at any point up to its last complete fragment.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::boxes::{bx, full_box, u16be, u32be, u64be, unity_matrix, zeros};
use crate::codec::opus;
use crate::error::{Error, Result};
use crate::media::{Codec, CodecConfig, Frame, TrackKind};

const FRAGMENT_MAX_US: u64 = 1_000_000;
const MOVIE_TIMESCALE: u32 = 1000;
const SAMPLE_SYNC: u32 = 0x0200_0000;
const SAMPLE_NON_SYNC: u32 = 0x0101_0000;

struct Sample {
    decode_time: u64,
    duration: u32,
    flags: u32,
    data: Vec<u8>,
}

struct Track {
    config: CodecConfig,
    timescale: u32,
    /// The newest sample, waiting for the next one to know its duration.
    pending: Option<(u64, bool, Vec<u8>)>,
    samples: Vec<Sample>,
    last_duration: u32,
}

pub struct Mp4Writer {
    file: File,
    len: u64,
    tracks: Vec<Track>,
    sequence: u32,
    fragment_start_us: Option<u64>,
    mvhd_duration_pos: u64,
    mehd_duration_pos: u64,
    end_us: u64,
    finished: bool,
}

impl Mp4Writer {
    pub fn create(file: File, tracks: &[CodecConfig]) -> Result<Self> {
        if tracks.is_empty() {
            return Err(Error::unsupported("MP4", "a file without tracks"));
        }
        for t in tracks {
            if !matches!(t.codec, Codec::H264 | Codec::Opus) {
                return Err(Error::unsupported("MP4", format!("{:?} track", t.codec)));
            }
        }
        let tracks: Vec<Track> = tracks
            .iter()
            .map(|c| Track {
                config: c.clone(),
                timescale: if c.codec.kind() == TrackKind::Video {
                    90_000
                } else {
                    48_000
                },
                pending: None,
                samples: Vec::new(),
                last_duration: 0,
            })
            .collect();
        let mut out = Vec::with_capacity(1024);
        bx(&mut out, b"ftyp", |o| {
            o.extend_from_slice(b"iso6");
            u32be(o, 0);
            for brand in [b"iso6", b"isom", b"iso2", b"avc1", b"mp41"] {
                o.extend_from_slice(brand);
            }
        });
        let mut mvhd_duration_pos = 0;
        let mut mehd_duration_pos = 0;
        bx(&mut out, b"moov", |o| {
            full_box(o, b"mvhd", 0, 0, |o| {
                zeros(o, 8); // creation/modification time
                u32be(o, MOVIE_TIMESCALE);
                mvhd_duration_pos = o.len() as u64;
                u32be(o, 0);
                u32be(o, 0x0001_0000); // rate
                u16be(o, 0x0100); // volume
                zeros(o, 10);
                unity_matrix(o);
                zeros(o, 24);
                u32be(o, tracks.len() as u32 + 1);
            });
            for (i, t) in tracks.iter().enumerate() {
                write_trak(o, i as u32 + 1, t);
            }
            bx(o, b"mvex", |o| {
                full_box(o, b"mehd", 0, 0, |o| {
                    mehd_duration_pos = o.len() as u64;
                    u32be(o, 0);
                });
                for i in 0..tracks.len() {
                    full_box(o, b"trex", 0, 0, |o| {
                        u32be(o, i as u32 + 1);
                        u32be(o, 1);
                        zeros(o, 12);
                    });
                }
            });
        });
        let mut w = Self {
            file,
            len: 0,
            tracks,
            sequence: 0,
            fragment_start_us: None,
            mvhd_duration_pos,
            mehd_duration_pos,
            end_us: 0,
            finished: false,
        };
        w.append(&out)?;
        Ok(w)
    }

    pub fn write_frame(&mut self, track: usize, frame: &Frame) -> Result<()> {
        if self.finished {
            return Err(Error::Stopped);
        }
        let t = self
            .tracks
            .get_mut(track)
            .ok_or_else(|| Error::unsupported("MP4", format!("track index {track}")))?;
        let video_key = t.config.codec.kind() == TrackKind::Video && frame.keyframe;
        let mut time = to_timescale(frame.pts_us, t.timescale);
        if let Some((prev_time, key, data)) = t.pending.take() {
            // Equal or decreasing times still get a 1-tick duration so decode times increase.
            let duration = u32::try_from(time.saturating_sub(prev_time).max(1)).unwrap_or(u32::MAX);
            t.last_duration = duration;
            time = time.max(prev_time + u64::from(duration));
            t.samples.push(Sample {
                decode_time: prev_time,
                duration,
                flags: flags(key),
                data,
            });
        }
        t.pending = Some((
            time,
            frame.keyframe || t.config.codec.kind() == TrackKind::Audio,
            frame.data.clone(),
        ));
        self.end_us = self.end_us.max(frame.pts_us);

        let start = *self.fragment_start_us.get_or_insert(frame.pts_us);
        if video_key || frame.pts_us >= start + FRAGMENT_MAX_US {
            self.flush_fragment()?;
            self.fragment_start_us = Some(frame.pts_us);
        }
        Ok(())
    }

    /// Writes the last samples and final durations.
    pub fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        for t in &mut self.tracks {
            if let Some((time, key, data)) = t.pending.take() {
                let duration = match t.config.codec {
                    Codec::Opus => opus::packet_samples(&data).unwrap_or(960),
                    _ if t.last_duration > 0 => t.last_duration,
                    _ => 3000,
                };
                t.samples.push(Sample {
                    decode_time: time,
                    duration,
                    flags: flags(key),
                    data,
                });
            }
        }
        self.flush_fragment()
    }

    fn flush_fragment(&mut self) -> Result<()> {
        if self.tracks.iter().all(|t| t.samples.is_empty()) {
            return Ok(());
        }
        self.sequence += 1;
        let mut moof = Vec::with_capacity(256);
        let mut data_offset_pos = Vec::new();
        bx(&mut moof, b"moof", |o| {
            full_box(o, b"mfhd", 0, 0, |o| u32be(o, self.sequence));
            for (i, t) in self.tracks.iter().enumerate() {
                if t.samples.is_empty() {
                    continue;
                }
                bx(o, b"traf", |o| {
                    // default-base-is-moof: data offsets count from the moof start.
                    full_box(o, b"tfhd", 0, 0x02_0000, |o| u32be(o, i as u32 + 1));
                    full_box(o, b"tfdt", 1, 0, |o| u64be(o, t.samples[0].decode_time));
                    full_box(o, b"trun", 0, 0x000701, |o| {
                        u32be(o, t.samples.len() as u32);
                        data_offset_pos.push(o.len());
                        u32be(o, 0);
                        for s in &t.samples {
                            u32be(o, s.duration);
                            u32be(o, s.data.len() as u32);
                            u32be(o, s.flags);
                        }
                    });
                });
            }
        });
        let payload: usize = self
            .tracks
            .iter()
            .flat_map(|t| &t.samples)
            .map(|s| s.data.len())
            .sum();
        let mut offset = moof.len() + 8;
        for (pos, t) in data_offset_pos
            .iter()
            .zip(self.tracks.iter().filter(|t| !t.samples.is_empty()))
        {
            moof[*pos..pos + 4].copy_from_slice(&(offset as u32).to_be_bytes());
            offset += t.samples.iter().map(|s| s.data.len()).sum::<usize>();
        }
        let mut buf = moof;
        buf.reserve(payload + 8);
        u32be(
            &mut buf,
            u32::try_from(payload + 8)
                .map_err(|_| Error::unsupported("MP4", "fragment over 4 GiB"))?,
        );
        buf.extend_from_slice(b"mdat");
        let mut end_us = self.end_us;
        for t in &mut self.tracks {
            if let Some(last) = t.samples.last() {
                let end = last.decode_time + u64::from(last.duration);
                end_us = end_us.max(end * 1_000_000 / u64::from(t.timescale));
            }
            for s in t.samples.drain(..) {
                buf.extend_from_slice(&s.data);
            }
        }
        self.append(&buf)?;
        let duration = u32::try_from(end_us / 1000).unwrap_or(u32::MAX);
        self.file
            .write_all_at(&duration.to_be_bytes(), self.mvhd_duration_pos)?;
        self.file
            .write_all_at(&duration.to_be_bytes(), self.mehd_duration_pos)?;
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all_at(bytes, self.len)?;
        self.len += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for Mp4Writer {
    /// A writer dropped without `finish` (error path) still completes its file.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn flags(key: bool) -> u32 {
    if key { SAMPLE_SYNC } else { SAMPLE_NON_SYNC }
}

fn to_timescale(us: u64, timescale: u32) -> u64 {
    (u128::from(us) * u128::from(timescale) / 1_000_000) as u64
}

fn write_trak(o: &mut Vec<u8>, id: u32, t: &Track) {
    let video = t.config.codec.kind() == TrackKind::Video;
    bx(o, b"trak", |o| {
        full_box(o, b"tkhd", 0, 3, |o| {
            zeros(o, 8);
            u32be(o, id);
            zeros(o, 4);
            u32be(o, 0); // duration: fragments carry it
            zeros(o, 8);
            zeros(o, 4); // layer, alternate group
            u16be(o, if video { 0 } else { 0x0100 });
            zeros(o, 2);
            unity_matrix(o);
            u32be(o, u32::from(t.config.width) << 16);
            u32be(o, u32::from(t.config.height) << 16);
        });
        bx(o, b"mdia", |o| {
            full_box(o, b"mdhd", 0, 0, |o| {
                zeros(o, 8);
                u32be(o, t.timescale);
                u32be(o, 0);
                u16be(o, 0x55c4); // "und"
                u16be(o, 0);
            });
            full_box(o, b"hdlr", 0, 0, |o| {
                u32be(o, 0);
                o.extend_from_slice(if video { b"vide" } else { b"soun" });
                zeros(o, 12);
                o.extend_from_slice(if video {
                    b"VideoHandler\0"
                } else {
                    b"SoundHandler\0"
                });
            });
            bx(o, b"minf", |o| {
                if video {
                    full_box(o, b"vmhd", 0, 1, |o| zeros(o, 8));
                } else {
                    full_box(o, b"smhd", 0, 0, |o| zeros(o, 4));
                }
                bx(o, b"dinf", |o| {
                    full_box(o, b"dref", 0, 0, |o| {
                        u32be(o, 1);
                        full_box(o, b"url ", 0, 1, |_| {});
                    });
                });
                bx(o, b"stbl", |o| {
                    full_box(o, b"stsd", 0, 0, |o| {
                        u32be(o, 1);
                        sample_entry(o, &t.config);
                    });
                    full_box(o, b"stts", 0, 0, |o| u32be(o, 0));
                    full_box(o, b"stsc", 0, 0, |o| u32be(o, 0));
                    full_box(o, b"stsz", 0, 0, |o| zeros(o, 8));
                    full_box(o, b"stco", 0, 0, |o| u32be(o, 0));
                });
            });
        });
    });
}

fn sample_entry(o: &mut Vec<u8>, c: &CodecConfig) {
    match c.codec {
        Codec::H264 => bx(o, b"avc1", |o| {
            zeros(o, 6);
            u16be(o, 1); // data_reference_index
            zeros(o, 16);
            u16be(o, c.width);
            u16be(o, c.height);
            u32be(o, 0x0048_0000);
            u32be(o, 0x0048_0000);
            zeros(o, 4);
            u16be(o, 1); // frame_count
            zeros(o, 32); // compressorname
            u16be(o, 0x0018);
            u16be(o, 0xffff);
            bx(o, b"avcC", |o| o.extend_from_slice(&c.private));
        }),
        _ => bx(o, b"Opus", |o| {
            zeros(o, 6);
            u16be(o, 1);
            zeros(o, 8);
            u16be(o, u16::from(c.channels));
            u16be(o, 16);
            zeros(o, 4);
            u32be(o, 48_000 << 16);
            let (channels, pre_skip) = opus::parse_opus_head(&c.private).unwrap_or((c.channels, 0));
            bx(o, b"dOps", |o| {
                o.push(0);
                o.push(channels);
                u16be(o, pre_skip);
                u32be(o, 48_000);
                u16be(o, 0);
                o.push(0);
            });
        }),
    }
}
