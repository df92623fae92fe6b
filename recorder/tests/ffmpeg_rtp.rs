//! ffmpeg sends real RTP (`-f rtp`) into UDP sockets bound on port 0; the
//! packets, with their real arrival times, are recorded into every profile.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rkms_recorder::{Codec, MediaProfile, Recorder, TrackKind};

/// Receives what one ffmpeg run sends to a video and an audio socket.
fn capture(video_args: &[&str]) -> Vec<(TrackKind, Vec<u8>, Instant)> {
    require("ffmpeg");
    let video = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let audio = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let url = |s: &UdpSocket| format!("rtp://127.0.0.1:{}", s.local_addr().expect("addr").port());
    let mut child = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-re",
            "-t",
            "3",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x480:rate=30",
        ])
        .args([
            "-re",
            "-t",
            "3",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args(["-map", "0:v"])
        .args(video_args)
        .args(["-payload_type", "96", "-f", "rtp", &url(&video)])
        .args([
            "-map",
            "1:a",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-payload_type",
            "111",
            "-f",
            "rtp",
            &url(&audio),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn ffmpeg");
    for s in [&video, &audio] {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut exited_at = None;
    while Instant::now() < deadline {
        let mut idle = true;
        for (kind, s) in [(TrackKind::Video, &video), (TrackKind::Audio, &audio)] {
            if let Ok(n) = s.recv(&mut buf) {
                got.push((kind, buf[..n].to_vec(), Instant::now()));
                idle = false;
            }
        }
        if idle {
            if exited_at.is_none() && child.try_wait().expect("wait").is_some() {
                exited_at = Some(Instant::now());
            }
            if exited_at.is_some_and(|t| t.elapsed() > Duration::from_millis(200)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = child.kill();
    let status = child.wait().expect("wait ffmpeg");
    assert!(status.success(), "ffmpeg failed");
    got
}

fn record(
    packets: &[(TrackKind, Vec<u8>, Instant)],
    video: Codec,
    profile: MediaProfile,
    name: &str,
) {
    let epoch = packets.first().map(|p| p.2).expect("packets arrived");
    let codecs: Vec<Codec> = [video, Codec::Opus]
        .into_iter()
        .filter(|c| profile.has(c.kind()))
        .collect();
    let out = scratch().join(name);
    let mut recorder = Recorder::new(&out, profile, &codecs, epoch).expect("recorder");
    for (kind, packet, at) in packets {
        recorder.push_rtp(*kind, packet, *at).expect("push");
    }
    let stats = recorder.stop().expect("stop");
    let p = probe(&out);
    let names: Vec<&str> = p.streams.iter().map(|s| s.0.as_str()).collect();
    let expected: Vec<&str> = codecs
        .iter()
        .map(|c| match c {
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
            _ => "opus",
        })
        .collect();
    assert_eq!(names, expected, "{profile:?}");
    assert_close(p.duration, 3.0, &format!("{profile:?} duration"));
    for (codec, frames) in &p.streams {
        // 3 s: 90 video frames, 150 Opus packets; the first GOP is whole.
        let want = if codec == "opus" { 150.0 } else { 90.0 };
        assert_close(*frames as f64, want, &format!("{profile:?} {codec} frames"));
    }
    assert_eq!(decode_errors(&out), "", "{profile:?}");
    assert!(stats.duration_us > 2_500_000, "{stats:?}");
}

#[test]
fn ffmpeg_vp8_and_opus_rtp_into_webm_and_mkv_profiles() {
    let packets = capture(&[
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "1M",
    ]);
    for profile in [
        MediaProfile::Webm,
        MediaProfile::WebmAudioOnly,
        MediaProfile::WebmVideoOnly,
        MediaProfile::Mkv,
        MediaProfile::MkvAudioOnly,
        MediaProfile::MkvVideoOnly,
    ] {
        record(
            &packets,
            Codec::Vp8,
            profile,
            &format!("rtp-vp8-{}.out", profile.kurento_name()),
        );
    }
}

#[test]
fn ffmpeg_h264_and_opus_rtp_into_mp4_and_mkv_profiles() {
    let packets = capture(&[
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-profile:v",
        "baseline",
        "-pix_fmt",
        "yuv420p",
    ]);
    for profile in [
        MediaProfile::Mp4,
        MediaProfile::Mp4AudioOnly,
        MediaProfile::Mp4VideoOnly,
        MediaProfile::Mkv,
    ] {
        record(
            &packets,
            Codec::H264,
            profile,
            &format!("rtp-h264-{}.out", profile.kurento_name()),
        );
    }
}
