//! Shared helpers for the integration tests: media made by ffmpeg, checks by
//! ffprobe and a full ffmpeg decode.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rkms_recorder::player::{Source, open};
use rkms_recorder::rtp::Packetizer;
use rkms_recorder::{MediaProfile, Recorder, RecordingStats, TrackKind};

pub fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{tool}` is required by this test (Debian package ffmpeg)"
    );
}

const SCRATCH_PREFIX: &str = "rkms-recorder-tests-";

/// A per-process scratch directory; those of earlier, finished test
/// processes are removed.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(SCRATCH_PREFIX)
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = tmp.join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

/// Runs ffmpeg with `args` (output last) unless `name` exists already.
pub fn ffmpeg_file(name: &str, args: &[&str]) -> PathBuf {
    require("ffmpeg");
    // Tests of one binary share files: make each once, and never expose a partial one.
    static MAKING: Mutex<()> = Mutex::new(());
    let _guard = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let path = scratch().join(name);
    if !path.exists() {
        let partial = scratch().join(format!("partial-{name}"));
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args)
            .arg(&partial)
            .output()
            .expect("run ffmpeg");
        assert!(
            out.status.success(),
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&partial, &path).expect("rename");
    }
    path
}

const TESTSRC: [&str; 4] = ["-f", "lavfi", "-i", "testsrc=size=640x480:rate=30"];
const SINE: [&str; 4] = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"];

/// The VP8/Opus WebM of test-peers.md (5 s, 150 frames); `gop` adds `-g`.
pub fn vp8_opus_webm(gop: Option<u32>) -> PathBuf {
    let g = gop.map(|g| g.to_string());
    let mut args: Vec<&str> = TESTSRC.iter().chain(SINE.iter()).copied().collect();
    args.extend([
        "-t",
        "5",
        "-c:v",
        "libvpx",
        "-b:v",
        "1M",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
    ]);
    if let Some(g) = g.as_deref() {
        args.extend(["-g", g]);
    }
    args.extend(["-c:a", "libopus", "-b:a", "64k"]);
    ffmpeg_file(&format!("vp8-opus-g{}.webm", gop.unwrap_or(0)), &args)
}

/// The H264/AAC MP4 of test-peers.md (5 s, 150 frames).
pub fn h264_aac_mp4() -> PathBuf {
    let mut args: Vec<&str> = TESTSRC.iter().chain(SINE.iter()).copied().collect();
    args.extend([
        "-t",
        "5",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "baseline",
    ]);
    args.extend(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"]);
    ffmpeg_file("h264-aac.mp4", &args)
}

/// H264 with Opus in MP4, what WebRTC gives the MP4 profiles.
pub fn h264_opus_mp4() -> PathBuf {
    let mut args: Vec<&str> = TESTSRC.iter().chain(SINE.iter()).copied().collect();
    args.extend([
        "-t",
        "5",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "baseline",
    ]);
    args.extend(["-pix_fmt", "yuv420p", "-c:a", "libopus", "-b:a", "64k"]);
    ffmpeg_file("h264-opus.mp4", &args)
}

#[derive(Debug)]
pub struct Probe {
    /// (codec name, decoded frame count)
    pub streams: Vec<(String, u64)>,
    pub duration: f64,
}

pub fn probe(path: &Path) -> Probe {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames:format=duration",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let streams = v["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| {
                    let frames = s["nb_read_frames"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    (s["codec_name"].as_str().unwrap_or("?").to_owned(), frames)
                })
                .collect()
        })
        .unwrap_or_default();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    Probe { streams, duration }
}

/// What `ffmpeg -v error -i FILE -f null -` prints: empty for a clean file.
pub fn decode_errors(path: &Path) -> String {
    require("ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str("(ffmpeg failed)");
    }
    text
}

pub fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= expected * 0.1,
        "{what}: {actual} is not within 10% of {expected}"
    );
}

/// One RTP packet as the recorder receives it.
pub type Sent = (TrackKind, Vec<u8>, Instant);

/// Reads `input`, sends every frame the profile can hold through the RTP
/// packetizer and a [`Recorder`], with arrival times equal to frame times.
/// `mangle` may reorder or drop packets first.
pub fn record_via_rtp(
    input: &Path,
    output: &Path,
    profile: MediaProfile,
    mangle: impl FnOnce(&mut Vec<Sent>),
) -> RecordingStats {
    let mut source = open(input.to_str().expect("utf-8 path")).expect("open input");
    let configs = source.tracks().to_vec();
    let usable: Vec<bool> = configs
        .iter()
        .map(|c| profile.check_codec(c.codec).is_ok())
        .collect();
    let codecs: Vec<_> = configs
        .iter()
        .zip(&usable)
        .filter(|(_, u)| **u)
        .map(|(c, _)| c.codec)
        .collect();
    let epoch = Instant::now();
    let mut packetizers: Vec<Packetizer> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Packetizer::new(
                c,
                96 + i as u8,
                0x1000 + i as u32,
                65_400,
                u32::MAX - 200_000,
            )
        })
        .collect();
    let mut sent = Vec::new();
    while let Some(f) = source.next_frame().expect("read frame") {
        if usable[f.track] {
            let arrival = epoch + Duration::from_micros(f.frame.pts_us);
            let kind = configs[f.track].codec.kind();
            sent.extend(
                packetizers[f.track]
                    .packetize(&f.frame)
                    .into_iter()
                    .map(|p| (kind, p, arrival)),
            );
        }
    }
    mangle(&mut sent);
    let mut recorder = Recorder::new(output, profile, &codecs, epoch).expect("recorder");
    for (kind, packet, arrival) in sent {
        recorder.push_rtp(kind, &packet, arrival).expect("push rtp");
    }
    recorder.stop().expect("stop")
}

pub fn read_all(source: &mut dyn Source) -> Vec<rkms_recorder::player::SourceFrame> {
    let mut frames = Vec::new();
    while let Some(f) = source.next_frame().expect("frame") {
        frames.push(f);
    }
    frames
}
