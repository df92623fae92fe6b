//! The player side: demuxing ffmpeg's and our own files, seeking, and
//! packetizing back to RTP without changing a byte of any frame.

mod common;

use common::*;
use rkms_recorder::codec::h264;
use rkms_recorder::player::{Source, open};
use rkms_recorder::rtp::{AccessUnit, Depacketizer, Packetizer, RtpPacket};
use rkms_recorder::{Codec, MediaProfile};

fn open_path(path: &std::path::Path) -> Box<dyn Source> {
    open(&format!("file://{}", path.display())).expect("open")
}

fn counts(source: &mut dyn Source) -> Vec<usize> {
    let frames = read_all(source);
    (0..source.tracks().len())
        .map(|t| frames.iter().filter(|f| f.track == t).count())
        .collect()
}

#[test]
fn reads_ffmpeg_webm_and_mp4() {
    let mut webm = open_path(&vp8_opus_webm(None));
    let codecs: Vec<Codec> = webm.tracks().iter().map(|c| c.codec).collect();
    assert_eq!(codecs, [Codec::Vp8, Codec::Opus]);
    assert_eq!(
        (webm.tracks()[0].width, webm.tracks()[0].height),
        (640, 480)
    );
    assert!(webm.seekable());
    assert_close(
        webm.duration_us().expect("duration") as f64 / 1e6,
        5.0,
        "webm duration",
    );
    assert_eq!(counts(webm.as_mut()), [150, 251]);

    let mut mp4 = open_path(&h264_aac_mp4());
    let codecs: Vec<Codec> = mp4.tracks().iter().map(|c| c.codec).collect();
    assert_eq!(codecs, [Codec::H264, Codec::Aac]);
    assert_close(
        mp4.duration_us().expect("duration") as f64 / 1e6,
        5.0,
        "mp4 duration",
    );
    let frames = read_all(mp4.as_mut());
    assert_eq!(frames.iter().filter(|f| f.track == 0).count(), 150);
    assert!(frames[0].frame.keyframe);
    // Decode order across tracks follows time.
    let video: Vec<u64> = frames
        .iter()
        .filter(|f| f.track == 0)
        .map(|f| f.frame.pts_us)
        .collect();
    assert!(
        video.windows(2).all(|w| w[0] < w[1]),
        "baseline H264 has no reordering"
    );
}

#[test]
fn seeks_to_the_keyframe_before_the_position() {
    let check = |source: &mut dyn Source, what: &str| {
        let at = source.seek(2_500_000).expect("seek");
        assert!(
            (1_000_000..=2_500_000).contains(&at),
            "{what}: landed at {at}"
        );
        let first_video = std::iter::from_fn(|| source.next_frame().expect("frame"))
            .find(|f| source_kind_is_video(f.track))
            .expect("video after seek");
        assert!(
            first_video.frame.keyframe,
            "{what}: first video frame after seek is a keyframe"
        );
        assert!(
            first_video.frame.pts_us.abs_diff(at) < 40_000,
            "{what}: {} vs {at}",
            first_video.frame.pts_us
        );
    };
    // Keyframe every second; track 0 is video in all these files.
    let webm = vp8_opus_webm(Some(30));
    check(open_path(&webm).as_mut(), "ffmpeg webm (Cues)");
    let ours = scratch().join("seek-ours.webm");
    record_via_rtp(&webm, &ours, MediaProfile::Webm, |_| {});
    check(open_path(&ours).as_mut(), "rkms webm (Cues)");
    // Without Cues (a recording cut short) clusters are scanned.
    let bytes = std::fs::read(&ours).expect("read");
    let cut = scratch().join("seek-cut.webm");
    std::fs::write(&cut, &bytes[..bytes.len() * 9 / 10]).expect("write");
    let mut cut_source = open_path(&cut);
    check(cut_source.as_mut(), "cut webm (scan)");
    let mp4 = ffmpeg_file(
        "h264-g30.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "5",
            "-c:v",
            "libx264",
            "-g",
            "30",
            "-preset",
            "veryfast",
        ],
    );
    check(open_path(&mp4).as_mut(), "ffmpeg mp4");
    let frag = scratch().join("seek-frag.mp4");
    record_via_rtp(&mp4, &frag, MediaProfile::Mp4VideoOnly, |_| {});
    check(open_path(&frag).as_mut(), "rkms fragmented mp4");
}

fn source_kind_is_video(track: usize) -> bool {
    track == 0
}

/// Every frame survives packetizer → depacketizer byte for byte.
#[test]
fn packetizer_and_depacketizer_are_inverse() {
    let vp9 = ffmpeg_file(
        "vp9-big.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=1280x720:rate=30",
            "-t",
            "1",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "3M",
        ],
    );
    let av1 = ffmpeg_file(
        "av1-big.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=1280x720:rate=30",
            "-t",
            "1",
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "2M",
        ],
    );
    for input in [vp8_opus_webm(None), h264_opus_mp4(), vp9, av1] {
        let mut source = open_path(&input);
        let configs = source.tracks().to_vec();
        let mut packetizers: Vec<_> = configs
            .iter()
            .map(|c| Packetizer::new(c, 100, 7, 65_530, u32::MAX - 5000))
            .collect();
        let mut depacketizers: Vec<_> =
            configs.iter().map(|c| Depacketizer::new(c.codec)).collect();
        let mut multi_packet_frames = 0;
        for f in read_all(source.as_mut()) {
            let packets = packetizers[f.track].packetize(&f.frame);
            multi_packet_frames += usize::from(packets.len() > 1);
            let mut out: Vec<AccessUnit> = Vec::new();
            for p in &packets {
                assert!(p.len() <= 1200, "packet of {} bytes", p.len());
                depacketizers[f.track].push(&RtpPacket::parse(p).expect("parse"), &mut out);
            }
            let codec = configs[f.track].codec;
            let unit = out
                .pop()
                .unwrap_or_else(|| panic!("{codec:?}: no access unit for a whole frame"));
            if codec == Codec::Av1 {
                // Temporal delimiters are dropped; everything else is kept.
                let strip = |d: &[u8]| -> Vec<u8> {
                    rkms_recorder::codec::av1::obus(d)
                        .filter(|o| o.kind() != 2)
                        .flat_map(|o| {
                            let mut v = Vec::new();
                            rkms_recorder::codec::av1::push_sized_obu(&mut v, o.header, o.payload);
                            v
                        })
                        .collect()
                };
                assert!(
                    unit.data == strip(&f.frame.data),
                    "{codec:?} frame at {}",
                    f.frame.pts_us
                );
            } else if codec == Codec::H264 {
                // Keyframes gain the parameter sets of the avcC in band.
                let nals = |d: &[u8]| -> Vec<Vec<u8>> {
                    h264::avcc_nals(d, 4)
                        .filter(|n| !matches!(h264::nal_type(n), 7 | 8))
                        .map(<[u8]>::to_vec)
                        .collect()
                };
                assert!(
                    nals(&unit.data) == nals(&f.frame.data),
                    "H264 frame at {}",
                    f.frame.pts_us
                );
                if f.frame.keyframe {
                    assert!(
                        h264::avcc_nals(&unit.data, 4).any(|n| h264::nal_type(n) == 7),
                        "keyframe without SPS"
                    );
                }
            } else {
                assert!(
                    unit.data == f.frame.data,
                    "{codec:?} frame at {}",
                    f.frame.pts_us
                );
            }
            assert_eq!(
                unit.keyframe,
                f.frame.keyframe || codec == Codec::Opus,
                "{codec:?} keyframe flag"
            );
            assert_eq!(
                unit.rtp_timestamp,
                packetizers[f.track].rtp_timestamp(f.frame.pts_us)
            );
        }
        assert!(
            multi_packet_frames > 0,
            "{}: no frame needed fragmentation",
            input.display()
        );
        for d in &depacketizers {
            let cfg = d.config().expect("config learnt from the stream");
            if cfg.codec.kind() == rkms_recorder::TrackKind::Video {
                assert!(cfg.width > 0 && cfg.height > 0, "{:?} size", cfg.codec);
            }
        }
    }
}
