//! Recorder timing through real files: pause/resume cuts the paused time out,
//! RTCP sender reports align audio with video.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rkms_recorder::player::open;
use rkms_recorder::rtp::Packetizer;
use rkms_recorder::{MediaProfile, Recorder, TrackKind};

/// An RTP packet with its frame's capture time (µs) and RTP timestamp.
type Timed = (TrackKind, Vec<u8>, u64, u32);

/// The packets of `input`.
fn packets(input: &std::path::Path) -> (Vec<rkms_recorder::Codec>, Vec<Timed>) {
    let mut source = open(input.to_str().expect("path")).expect("open");
    let configs = source.tracks().to_vec();
    let mut packetizers: Vec<_> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| Packetizer::new(c, 96, i as u32, 100, 1_000_000 * (i as u32 + 1)))
        .collect();
    let mut out = Vec::new();
    while let Some(f) = source.next_frame().expect("frame") {
        let ts = packetizers[f.track].rtp_timestamp(f.frame.pts_us);
        for p in packetizers[f.track].packetize(&f.frame) {
            out.push((configs[f.track].codec.kind(), p, f.frame.pts_us, ts));
        }
    }
    (configs.iter().map(|c| c.codec).collect(), out)
}

#[test]
fn pause_and_resume_cut_out_the_paused_time() {
    let input = vp8_opus_webm(Some(30));
    let (codecs, packets) = packets(&input);
    let out = scratch().join("paused.webm");
    let epoch = Instant::now();
    let at = |us: u64| epoch + Duration::from_micros(us);
    let mut recorder = Recorder::new(&out, MediaProfile::Webm, &codecs, epoch).expect("recorder");
    let (mut paused, mut resumed) = (false, false);
    for (kind, p, pts, _) in &packets {
        if !paused && *pts >= 1_500_000 {
            recorder.pause(at(1_500_000));
            paused = true;
        }
        if !resumed && *pts >= 3_000_000 {
            recorder.resume(at(3_000_000));
            assert!(
                recorder.take_keyframe_request(),
                "resume asks for a keyframe"
            );
            resumed = true;
        }
        recorder.push_rtp(*kind, p, at(*pts)).expect("push");
    }
    let stats = recorder.stop().expect("stop");
    let p = probe(&out);
    assert_close(p.duration, 3.5, "duration without the 1.5 s pause");
    assert_eq!(decode_errors(&out), "");
    // 45 frames before the pause, 60 from the keyframe at 3.0 s.
    assert_eq!(stats.video_frames, 105, "{stats:?}");
    let frames = read_all(open(out.to_str().expect("path")).expect("open").as_mut());
    let video: Vec<u64> = frames
        .iter()
        .filter(|f| f.track == 0)
        .map(|f| f.frame.pts_us)
        .collect();
    let widest = video.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(widest < 100_000, "a {widest} µs hole where the pause was");
}

/// Audio arrives 300 ms later than the video captured with it; sender
/// reports (pushed before the media, as the media core does for a stream
/// already flowing) put it back in place.
#[test]
fn sender_reports_align_late_audio_with_video() {
    let input = vp8_opus_webm(None);
    let (codecs, packets) = packets(&input);
    let first_pts = |with_reports: bool| -> (u64, u64) {
        let out = scratch().join(format!("sync-{with_reports}.webm"));
        let epoch = Instant::now();
        let mut recorder =
            Recorder::new(&out, MediaProfile::Webm, &codecs, epoch).expect("recorder");
        if with_reports {
            let ntp = 0xe000_0000u64 << 32; // any wall clock; both tracks share it
            for kind in [TrackKind::Video, TrackKind::Audio] {
                let (_, _, _, ts) = packets.iter().find(|p| p.0 == kind).expect("track");
                recorder.push_sender_report(kind, ntp, *ts, epoch);
            }
        }
        let mut arrivals: Vec<_> = packets
            .iter()
            .map(|(kind, p, pts, _)| {
                (
                    pts + if *kind == TrackKind::Audio {
                        300_000
                    } else {
                        0
                    },
                    *kind,
                    p,
                )
            })
            .collect();
        arrivals.sort_by_key(|a| a.0);
        for (arrival, kind, p) in arrivals {
            recorder
                .push_rtp(kind, p, epoch + Duration::from_micros(arrival))
                .expect("push");
        }
        recorder.stop().expect("stop");
        assert_eq!(decode_errors(&out), "");
        let frames = read_all(open(out.to_str().expect("path")).expect("open").as_mut());
        let first = |t: usize| {
            frames
                .iter()
                .find(|f| f.track == t)
                .map(|f| f.frame.pts_us)
                .expect("frames")
        };
        (first(0), first(1))
    };
    let (video, audio) = first_pts(false);
    assert!(
        audio.abs_diff(video) >= 250_000,
        "without reports the audio is late: {video} {audio}"
    );
    let (video, audio) = first_pts(true);
    assert!(
        audio.abs_diff(video) <= 30_000,
        "with reports audio and video start together: {video} {audio}"
    );
}

/// A negotiated video track that never sends must not hold the audio back:
/// after five seconds the file starts without it.
#[test]
fn audio_is_recorded_when_video_never_comes() {
    let input = vp8_opus_webm(None);
    let (codecs, packets) = packets(&input);
    let out = scratch().join("no-video.webm");
    let epoch = Instant::now();
    let mut recorder = Recorder::new(&out, MediaProfile::Webm, &codecs, epoch).expect("recorder");
    for (kind, p, pts, _) in packets.iter().filter(|p| p.0 == TrackKind::Audio) {
        recorder
            .push_rtp(*kind, p, epoch + Duration::from_micros(*pts))
            .expect("push");
    }
    let stats = recorder.stop().expect("stop");
    assert_eq!((stats.video_frames, stats.audio_frames), (0, 251));
    let p = probe(&out);
    assert_eq!(p.streams, vec![("opus".to_owned(), 251)]);
    assert_close(p.duration, 5.0, "audio-only duration");
}
