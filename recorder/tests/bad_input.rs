//! Broken inputs give typed errors, never panics.

mod common;

use std::time::Instant;

use common::*;
use rkms_recorder::player::open;
use rkms_recorder::{Codec, Error, MediaProfile, Recorder};

fn write(name: &str, bytes: &[u8]) -> String {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("write");
    format!("file://{}", path.display())
}

/// A small deterministic generator for the mutation tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn unreadable_files_are_typed_errors() {
    let missing = open("file:///nonexistent/rkms/x.webm")
        .err()
        .expect("missing file");
    assert!(matches!(missing, Error::Open { .. }), "{missing}");
    assert_eq!(missing.kurento_type(), "RESOURCE_ERROR_OPEN");
    assert!(matches!(
        open(&write("empty.webm", b"")),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        open(&write("text.mp4", b"hello, this is not media")),
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        open("http://example.invalid/x.webm"),
        Err(Error::UnsupportedUri(_))
    ));

    let webm = std::fs::read(vp8_opus_webm(None)).expect("read");
    for cut in [4, 40, 200] {
        let err = open(&write(&format!("cut{cut}.webm"), &webm[..cut]))
            .err()
            .expect("header cut off");
        assert!(
            matches!(err, Error::Malformed { .. } | Error::Io(_)),
            "cut at {cut}: {err}"
        );
    }
    // ffmpeg writes moov last: a half file has no index.
    let mp4 = std::fs::read(h264_aac_mp4()).expect("read");
    let err = open(&write("half.mp4", &mp4[..mp4.len() / 2]))
        .err()
        .expect("no moov");
    assert!(err.to_string().contains("moov"), "{err}");
}

#[test]
fn a_file_cut_in_its_media_plays_up_to_the_cut() {
    let webm = std::fs::read(vp8_opus_webm(None)).expect("read");
    let mut source = open(&write("cut-media.webm", &webm[..webm.len() * 6 / 10])).expect("open");
    let frames = read_all(source.as_mut());
    let video = frames.iter().filter(|f| f.track == 0).count();
    assert!(video > 50 && video < 150, "{video} frames before the cut");
}

#[test]
fn mutated_files_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let inputs = [
        ("webm", std::fs::read(vp8_opus_webm(None)).expect("read")),
        ("mp4", std::fs::read(h264_aac_mp4()).expect("read")),
    ];
    for (ext, original) in &inputs {
        // Headers hold the interesting structure: mutate mostly there.
        for round in 0..150 {
            let mut bytes = original.clone();
            let span = if round % 2 == 0 {
                4096.min(bytes.len())
            } else {
                bytes.len()
            };
            for _ in 0..1 + rng.next() % 8 {
                let at = (rng.next() as usize) % span;
                bytes[at] = rng.next() as u8;
            }
            if round % 5 == 0 {
                bytes.truncate((rng.next() as usize) % bytes.len());
            }
            let uri = write(&format!("mutated.{ext}"), &bytes);
            if let Ok(mut source) = open(&uri) {
                let _ = source.seek(rng.next() % 6_000_000);
                for _ in 0..2000 {
                    match source.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
    }
}

#[test]
fn garbage_rtp_never_panics_and_leaves_no_empty_file() {
    let mut rng = XorShift(12345);
    for (codec, profile) in [
        (Codec::Vp8, MediaProfile::WebmVideoOnly),
        (Codec::Vp9, MediaProfile::WebmVideoOnly),
        (Codec::Av1, MediaProfile::MkvVideoOnly),
        (Codec::H264, MediaProfile::Mp4VideoOnly),
        (Codec::Opus, MediaProfile::WebmAudioOnly),
    ] {
        let out = scratch().join(format!("garbage-{codec:?}"));
        let mut recorder =
            Recorder::new(&out, profile, &[codec], Instant::now()).expect("recorder");
        for i in 0..3000u32 {
            let len = 12 + (rng.next() % 300) as usize;
            let mut packet: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if i % 2 == 0 {
                packet[0] = 0x80; // a valid header, random payload
                packet[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            }
            // Errors (bad RTP headers) are expected; panics are not.
            let _ = recorder.push_rtp(codec.kind(), &packet, Instant::now());
        }
        let stats = recorder.stop().expect("stop");
        if stats.video_frames + stats.audio_frames == 0 {
            assert!(!out.exists(), "{codec:?}: an empty recording left a file");
        } else {
            assert!(std::fs::metadata(&out).expect("file").len() > 0);
        }
    }
}

#[test]
fn an_unwritable_path_is_an_open_error() {
    let err = Recorder::new(
        "/proc/rkms-cannot-write/x.webm".as_ref(),
        MediaProfile::Webm,
        &[Codec::Vp8],
        Instant::now(),
    )
    .err()
    .expect("refused");
    assert_eq!(err.kurento_type(), "RESOURCE_ERROR_OPEN", "{err}");
}
