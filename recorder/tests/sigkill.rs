//! A recording process killed with SIGKILL leaves a file ffprobe reads, up to
//! about the last second written.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rkms_recorder::player::open;
use rkms_recorder::rtp::{Pacer, Packetizer};
use rkms_recorder::{MediaProfile, Recorder};

const CHILD_ENV: &str = "RKMS_RECORDER_SIGKILL_CHILD";

/// Not a test on its own: the body of the child process the test below kills.
/// Records INPUT into OUTPUT in real time through RTP.
#[test]
#[ignore = "runs only as the child process of sigkill_mid_recording_leaves_a_playable_file"]
fn recording_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [input, output, profile]: [&str; 3] = spec
        .split('|')
        .collect::<Vec<_>>()
        .try_into()
        .expect("spec");
    let profile = MediaProfile::from_kurento(profile).expect("profile");
    let mut source = open(input).expect("open");
    let configs = source.tracks().to_vec();
    let codecs: Vec<_> = configs.iter().map(|c| c.codec).collect();
    let mut recorder =
        Recorder::new(output.as_ref(), profile, &codecs, Instant::now()).expect("recorder");
    let mut packetizers: Vec<_> = configs
        .iter()
        .map(|c| Packetizer::new(c, 96, 1, 0, 0))
        .collect();
    let mut pacer = Pacer::new();
    while let Some(f) = source.next_frame().expect("frame") {
        let due = pacer.due(f.frame.pts_us, Instant::now());
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        for p in packetizers[f.track].packetize(&f.frame) {
            recorder
                .push_rtp(configs[f.track].codec.kind(), &p, Instant::now())
                .expect("push");
        }
    }
    recorder.stop().expect("stop");
}

#[test]
fn sigkill_mid_recording_leaves_a_playable_file() {
    let cases = [
        (
            vp8_opus_webm(None),
            MediaProfile::Webm,
            "killed.webm",
            ["vp8", "opus"],
        ),
        (
            h264_opus_mp4(),
            MediaProfile::Mp4,
            "killed.mp4",
            ["h264", "opus"],
        ),
        (
            h264_opus_mp4(),
            MediaProfile::Mkv,
            "killed.mkv",
            ["h264", "opus"],
        ),
    ];
    let exe = std::env::current_exe().expect("test binary");
    let mut children = Vec::new();
    for (input, profile, name, _) in &cases {
        let out = scratch().join(name);
        let spec = format!(
            "{}|{}|{}",
            input.display(),
            out.display(),
            profile.kurento_name()
        );
        let child = Command::new(&exe)
            .args(["--exact", "recording_child", "--ignored", "--nocapture"])
            .env(CHILD_ENV, spec)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn child");
        children.push((child, out));
    }
    // Time the kill from the moment every recording has its headers (the
    // child is up and media flows), so a slow machine does not skew it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !children
        .iter()
        .all(|(_, out)| std::fs::metadata(out).is_ok_and(|m| m.len() > 0))
    {
        assert!(Instant::now() < deadline, "the recordings never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    for (child, _) in &mut children {
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    }
    let killed_after = started.elapsed().as_secs_f64();
    for ((mut child, out), (_, profile, _, codecs)) in children.into_iter().zip(cases) {
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "{profile:?}: the child finished before it was killed"
        );
        let p = probe(&out);
        let names: Vec<&str> = p.streams.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, codecs, "{profile:?}");
        // Everything but the last (unflushed) second is there.
        assert!(
            p.duration >= killed_after - 1.6 && p.duration <= killed_after + 0.1,
            "{profile:?}: duration {} after a kill at {killed_after:.2} s",
            p.duration
        );
        assert!(
            p.streams.iter().all(|s| s.1 > 0),
            "{profile:?}: {:?}",
            p.streams
        );
        assert_eq!(decode_errors(&out), "", "{profile:?}");
    }
}
