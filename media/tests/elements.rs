//! A player and a recorder on one socket loop: an ffmpeg-made WebM file is played in real time
//! through the router into a recorder, and the recorded file holds the same media.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rkms_media::elements::player::Opener;
use rkms_media::elements::{ElementEvent, ElementEvents, PlayerElement, RecorderElement};
use rkms_media::webrtc::{NetworkSettings, WebRtcHost};
use rkms_media::{ElementId, MediaKind};
use rkms_recorder::{MediaProfile, TrackKind};

fn make_webm(path: &Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=160x120:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-g", "25"])
        .args(["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"])
        .arg(path)
        .status()
        .expect("this test needs ffmpeg (with libvpx and libopus) on the PATH");
    assert!(status.success(), "ffmpeg could not make the test file");
}

fn collector() -> (ElementEvents, Arc<Mutex<Vec<ElementEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let events: ElementEvents = Arc::new(move |e| sink.lock().expect("lock").push(e));
    (events, seen)
}

fn wait_for(seen: &Mutex<Vec<ElementEvent>>, event: &ElementEvent, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !seen.lock().expect("lock").contains(event) {
        assert!(Instant::now() < deadline, "no {event:?} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_played_file_is_recorded_through_the_loop() {
    let dir = std::env::temp_dir().join(format!("rkms-elements-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("in.webm");
    let output = dir.join("out.mkv");
    make_webm(&input, 3);

    let host = WebRtcHost::start(NetworkSettings::default()).expect("host");
    let (player_id, recorder_id) = (ElementId(1), ElementId(2));
    let player_port = host.add_element(player_id, Some(7));
    let recorder_port = host.add_element(recorder_id, Some(7));
    let (recorder_events, recorded) = collector();
    let recorder = RecorderElement::start(
        recorder_port,
        output.clone(),
        MediaProfile::Mkv,
        recorder_events,
    )
    .expect("recorder");
    for kind in [MediaKind::Audio, MediaKind::Video] {
        host.connect(player_id, recorder_id, kind).expect("connect");
    }
    recorder.record();

    let open: Opener = Arc::new(rkms_recorder::player::open);
    let (player_events, played) = collector();
    let player = PlayerElement::start(
        player_port,
        input.display().to_string(),
        open,
        player_events,
    )
    .expect("player");
    let started = Instant::now();
    player.play();
    wait_for(&played, &ElementEvent::EndOfStream, Duration::from_secs(10));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2500),
        "played faster than real time: {elapsed:?}"
    );
    wait_for(&recorded, &ElementEvent::Recording, Duration::from_secs(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(recorder.stop_and_wait());

    let mut source =
        rkms_recorder::player::open(&output.display().to_string()).expect("recorded file");
    let kinds: Vec<TrackKind> = source.tracks().iter().map(|t| t.codec.kind()).collect();
    let (mut video, mut audio) = (0, 0);
    while let Some(f) = source.next_frame().expect("frame") {
        match kinds[f.track] {
            TrackKind::Video => video += 1,
            TrackKind::Audio => audio += 1,
        }
    }
    // 3 s at 25 fps and 50 opus packets/s; the recorder starts at the first keyframe.
    assert!(video >= 70, "{video} video frames recorded");
    assert!(audio >= 140, "{audio} audio frames recorded");
    let _ = std::fs::remove_dir_all(&dir);
}
