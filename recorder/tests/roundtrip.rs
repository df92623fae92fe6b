//! ffmpeg-made files → demuxer → RTP packetizer → Recorder (depacketizer,
//! timeline, writer) → checked by ffprobe and a full ffmpeg decode.

mod common;

use common::*;
use rkms_recorder::MediaProfile;

/// Records `input` into `profile` and checks codecs, frame counts (exact:
/// nothing is lost on this path), duration and a clean decode.
fn check_profile(
    input: &std::path::Path,
    profile: MediaProfile,
    expect: &[(&str, u64)],
    tag: &str,
) {
    let out = scratch().join(format!("{tag}-{}.{}", profile.kurento_name(), ext(profile)));
    let stats = record_via_rtp(input, &out, profile, |_| {});
    let p = probe(&out);
    let got: Vec<(&str, u64)> = p.streams.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    assert_eq!(got, expect, "{tag} {profile:?}: streams");
    assert_close(p.duration, 5.0, &format!("{tag} {profile:?} duration"));
    assert_eq!(decode_errors(&out), "", "{tag} {profile:?}: decode errors");
    assert_eq!(
        stats.video_frames + stats.audio_frames,
        expect.iter().map(|e| e.1).sum::<u64>()
    );
}

fn ext(profile: MediaProfile) -> &'static str {
    match profile.container() {
        rkms_recorder::Container::Webm => "webm",
        rkms_recorder::Container::Mkv => "mkv",
        rkms_recorder::Container::Mp4 => "mp4",
    }
}

#[test]
fn vp8_opus_into_every_profile_that_holds_them() {
    let input = vp8_opus_webm(None);
    let both = [("vp8", 150), ("opus", 251)];
    check_profile(&input, MediaProfile::Webm, &both, "vp8");
    check_profile(&input, MediaProfile::Mkv, &both, "vp8");
    check_profile(&input, MediaProfile::WebmVideoOnly, &both[..1], "vp8");
    check_profile(&input, MediaProfile::MkvVideoOnly, &both[..1], "vp8");
    for p in [
        MediaProfile::WebmAudioOnly,
        MediaProfile::MkvAudioOnly,
        MediaProfile::Mp4AudioOnly,
    ] {
        check_profile(&input, p, &both[1..], "vp8");
    }
}

#[test]
fn h264_opus_into_mp4_and_mkv() {
    let input = h264_opus_mp4();
    let both = [("h264", 150), ("opus", 251)];
    check_profile(&input, MediaProfile::Mp4, &both, "h264");
    check_profile(&input, MediaProfile::Mkv, &both, "h264");
    check_profile(&input, MediaProfile::Mp4VideoOnly, &both[..1], "h264");
    check_profile(&input, MediaProfile::MkvVideoOnly, &both[..1], "h264");
}

#[test]
fn h264_from_an_aac_mp4_keeps_the_video() {
    // AAC cannot be recorded (WebRTC never carries it): only the video is.
    let input = h264_aac_mp4();
    check_profile(
        &input,
        MediaProfile::Mp4VideoOnly,
        &[("h264", 150)],
        "h264aac",
    );
}

#[test]
fn vp9_and_av1_into_webm() {
    let vp9 = ffmpeg_file(
        "vp9.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "5",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "500k",
        ],
    );
    check_profile(&vp9, MediaProfile::WebmVideoOnly, &[("vp9", 150)], "vp9");
    let av1 = ffmpeg_file(
        "av1.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "5",
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "300k",
        ],
    );
    check_profile(&av1, MediaProfile::WebmVideoOnly, &[("av1", 150)], "av1");
    check_profile(&av1, MediaProfile::MkvVideoOnly, &[("av1", 150)], "av1");
}

#[test]
fn loss_and_reordering_drop_frames_until_a_keyframe_and_decode_cleanly() {
    let input = vp8_opus_webm(Some(30));
    let out = scratch().join("lossy.webm");
    let mut dropped = 0;
    let stats = record_via_rtp(&input, &out, MediaProfile::Webm, |sent| {
        let video: Vec<usize> = (0..sent.len())
            .filter(|&i| sent[i].0 == rkms_recorder::TrackKind::Video)
            .collect();
        // Swap neighbours regularly (reordering the window absorbs)...
        for pair in video.chunks(2).step_by(3) {
            if let [a, b] = pair {
                sent.swap(*a, *b);
            }
        }
        // ...and lose one video packet in 150 (two in the first GOP).
        for &i in video.iter().skip(40).step_by(150).rev() {
            sent.remove(i);
            dropped += 1;
        }
    });
    assert!(dropped >= 3, "the test dropped {dropped} packets");
    let p = probe(&out);
    assert_eq!(
        decode_errors(&out),
        "",
        "a frame with a missing packet was written"
    );
    let video = p
        .streams
        .iter()
        .find(|s| s.0 == "vp8")
        .expect("video stream")
        .1;
    assert!((60..150).contains(&video), "{video} video frames written");
    assert_eq!(stats.video_frames, video);
    assert!(stats.dropped_video_frames > 0);
    assert_eq!(
        p.streams.iter().find(|s| s.0 == "opus").expect("audio").1,
        251
    );
}

#[test]
fn codecs_a_container_cannot_hold_are_refused_at_record() {
    let out = scratch().join("refused.mp4");
    let err = rkms_recorder::Recorder::new(
        &out,
        MediaProfile::Mp4,
        &[rkms_recorder::Codec::Vp8],
        std::time::Instant::now(),
    )
    .err()
    .expect("VP8 in MP4 is refused");
    assert!(
        matches!(err, rkms_recorder::Error::CodecNotSupported { .. }),
        "{err}"
    );
    assert_eq!(err.kurento_type(), "STREAM_ERROR_FORMAT");
    let err = rkms_recorder::Recorder::new(
        &out,
        MediaProfile::Webm,
        &[rkms_recorder::Codec::H264],
        std::time::Instant::now(),
    )
    .err()
    .expect("H264 in WebM is refused");
    assert!(err.to_string().contains("H264"), "{err}");
}
