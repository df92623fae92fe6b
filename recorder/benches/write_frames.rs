//! CPU per recorded frame and per recorded stream, for 720p-sized video at
//! ~2.5 Mbit/s (30 fps, a keyframe every 3 s) plus 20 ms Opus packets.
//!
//! `raw_file_baseline` writes the same bytes with plain `write_all` calls:
//! the container writers are reported as ratios against it.
//! Run: `cargo bench -p rkms-recorder --bench write_frames`.

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rkms_recorder::codec::h264;
use rkms_recorder::rtp::Packetizer;
use rkms_recorder::writer::ContainerWriter;
use rkms_recorder::{Codec, CodecConfig, Container, Frame, MediaProfile, Recorder, TrackKind};

const SECONDS: usize = 10;
const FPS: usize = 30;

/// A 640x480 baseline SPS and a PPS (the sizes in the track header do not
/// change the cost).
const SPS: [u8; 23] = [
    0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x3d, 0xa1, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00,
    0x03, 0x00, 0x3c, 0x8f, 0x16, 0x2e, 0x48,
];
const PPS: [u8; 5] = [0x68, 0xcb, 0x83, 0xcb, 0x20];

/// (track, frame) in time order: video frames of ~10 KB (80 KB keyframes)
/// and 160-byte Opus packets.
fn stream(codec: Codec) -> Vec<(TrackKind, Frame)> {
    let mut out = Vec::new();
    for i in 0..SECONDS * FPS {
        let keyframe = i % (3 * FPS) == 0;
        let size = if keyframe { 80_000 } else { 10_000 };
        let data = match codec {
            Codec::H264 => {
                let mut d = Vec::with_capacity(size + 40);
                if keyframe {
                    h264::push_avcc(&mut d, &SPS);
                    h264::push_avcc(&mut d, &PPS);
                }
                let mut nal = vec![if keyframe { 0x65 } else { 0x41 }; size];
                nal[1..]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, b)| *b = (j * 7 + i) as u8 | 1);
                h264::push_avcc(&mut d, &nal);
                d
            }
            _ => {
                let mut d: Vec<u8> = (0..size).map(|j| (j * 7 + i) as u8).collect();
                d[0] = if keyframe { 0x10 } else { 0x11 };
                if keyframe {
                    d[3..10].copy_from_slice(&[0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02]);
                }
                d
            }
        };
        out.push((
            TrackKind::Video,
            Frame {
                pts_us: (i * 1_000_000 / FPS) as u64,
                keyframe,
                data,
            },
        ));
        for a in 0..(1000 / FPS / 20 + usize::from(i % 3 != 2)) {
            let pts = (i * 1_000_000 / FPS + a * 20_000) as u64;
            let mut opus = vec![0xfc; 160];
            opus[1..]
                .iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = j as u8);
            out.push((
                TrackKind::Audio,
                Frame {
                    pts_us: pts,
                    keyframe: true,
                    data: opus,
                },
            ));
        }
    }
    out.sort_by_key(|(_, f)| f.pts_us);
    out
}

fn configs(codec: Codec) -> Vec<CodecConfig> {
    let private = if codec == Codec::H264 {
        h264::avcc_record(&SPS, &PPS)
    } else {
        Vec::new()
    };
    vec![
        CodecConfig::video(codec, 1280, 720, private),
        CodecConfig::opus(),
    ]
}

fn bench_writers(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("rkms-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut group = c.benchmark_group("write_720p_10s");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements((SECONDS * FPS) as u64));
    let vp8 = stream(Codec::Vp8);
    let h264_frames = stream(Codec::H264);
    group.bench_function("raw_file_baseline", |b| {
        b.iter(|| {
            let mut f = File::create(dir.join("raw.bin")).expect("create");
            for (_, frame) in &vp8 {
                f.write_all(&frame.data).expect("write");
            }
        })
    });
    for (name, container, codec, frames) in [
        ("webm_writer", Container::Webm, Codec::Vp8, &vp8),
        ("mp4_writer", Container::Mp4, Codec::H264, &h264_frames),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let file = File::create(dir.join(name)).expect("create");
                let mut w =
                    ContainerWriter::create(file, container, &configs(codec)).expect("writer");
                for (kind, frame) in frames {
                    w.write_frame(usize::from(*kind == TrackKind::Audio), black_box(frame))
                        .expect("write");
                }
                w.finish().expect("finish");
            })
        });
    }
    // The whole recording path: RTP packets → depacketizer → timeline → writer.
    for (name, profile, codec, frames) in [
        ("webm_from_rtp", MediaProfile::Webm, Codec::Vp8, &vp8),
        ("mp4_from_rtp", MediaProfile::Mp4, Codec::H264, &h264_frames),
    ] {
        let cfgs = configs(codec);
        let mut packetizers: Vec<Packetizer> = cfgs
            .iter()
            .map(|c| Packetizer::new(c, 96, 1, 0, 0))
            .collect();
        let epoch = Instant::now();
        let packets: Vec<(TrackKind, Vec<u8>, Instant)> = frames
            .iter()
            .flat_map(|(kind, f)| {
                let arrival = epoch + Duration::from_micros(f.pts_us);
                let p = packetizers[usize::from(*kind == TrackKind::Audio)].packetize(f);
                p.into_iter().map(move |p| (*kind, p, arrival))
            })
            .collect();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut r = Recorder::new(&dir.join(name), profile, &[codec, Codec::Opus], epoch)
                    .expect("recorder");
                for (kind, p, at) in &packets {
                    r.push_rtp(*kind, black_box(p), *at).expect("push");
                }
                let stats = r.stop().expect("stop");
                assert_eq!(stats.video_frames as usize, SECONDS * FPS);
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_writers);
criterion_main!(benches);
