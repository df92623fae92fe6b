//! Copies the tracks of a WebM/MKV/MP4 file into a recording profile:
//! `remux INPUT OUTPUT PROFILE [--rtp] [--realtime]`.
//!
//! `--rtp` sends every frame through the RTP packetizer and the [`Recorder`]
//! (depacketizer, timeline, interleaving), as a live recording would;
//! `--realtime` paces frames at their timestamps (used to kill a recording
//! mid-way in tests).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rkms_recorder::player::{Source, open};
use rkms_recorder::rtp::{Pacer, Packetizer};
use rkms_recorder::writer::ContainerWriter;
use rkms_recorder::{MediaProfile, Recorder};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (flags, positional): (Vec<&String>, Vec<&String>) =
        args.iter().skip(1).partition(|a| a.starts_with("--"));
    let [input, output, profile] = positional.as_slice() else {
        eprintln!("usage: remux INPUT OUTPUT PROFILE [--rtp] [--realtime]");
        return ExitCode::FAILURE;
    };
    let rtp = flags.iter().any(|f| *f == "--rtp");
    let realtime = flags.iter().any(|f| *f == "--realtime");
    match run(input, output, profile, rtp, realtime) {
        Ok(frames) => {
            println!("{frames} frames");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("remux: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn run(input: &str, output: &str, profile: &str, rtp: bool, realtime: bool) -> AnyResult<u64> {
    let profile = MediaProfile::from_kurento(profile).ok_or("unknown profile")?;
    let mut source = open(input)?;
    let usable: Vec<bool> = source
        .tracks()
        .iter()
        .map(|c| profile.check_codec(c.codec).is_ok())
        .collect();
    if rtp {
        via_rtp(source.as_mut(), output, profile, &usable, realtime)
    } else {
        direct(source.as_mut(), output, profile, &usable)
    }
}

fn direct(
    source: &mut dyn Source,
    output: &str,
    profile: MediaProfile,
    usable: &[bool],
) -> AnyResult<u64> {
    let mut index = Vec::new();
    let mut configs = Vec::new();
    for (cfg, ok) in source.tracks().iter().zip(usable) {
        index.push(ok.then(|| configs.len()));
        if *ok {
            configs.push(cfg.clone());
        }
    }
    let mut writer = ContainerWriter::create(
        std::fs::File::create(output)?,
        profile.container(),
        &configs,
    )?;
    let mut frames = 0;
    while let Some(f) = source.next_frame()? {
        if let Some(Some(track)) = index.get(f.track) {
            writer.write_frame(*track, &f.frame)?;
            frames += 1;
        }
    }
    writer.finish()?;
    Ok(frames)
}

fn via_rtp(
    source: &mut dyn Source,
    output: &str,
    profile: MediaProfile,
    usable: &[bool],
    realtime: bool,
) -> AnyResult<u64> {
    let configs = source.tracks().to_vec();
    let codecs: Vec<_> = configs
        .iter()
        .zip(usable)
        .filter(|(_, ok)| **ok)
        .map(|(c, _)| c.codec)
        .collect();
    let epoch = Instant::now();
    let mut recorder = Recorder::new(output.as_ref(), profile, &codecs, epoch)?;
    let mut packetizers: Vec<Packetizer> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Packetizer::new(
                c,
                96 + i as u8,
                0x1000 + i as u32,
                65_000,
                u32::MAX - 100_000,
            )
        })
        .collect();
    let mut pacer = Pacer::new();
    while let Some(f) = source.next_frame()? {
        if !usable.get(f.track).copied().unwrap_or(false) {
            continue;
        }
        let kind = configs[f.track].codec.kind();
        let arrival = if realtime {
            let due = pacer.due(f.frame.pts_us, Instant::now());
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            Instant::now()
        } else {
            epoch + Duration::from_micros(f.frame.pts_us)
        };
        for packet in packetizers[f.track].packetize(&f.frame) {
            recorder.push_rtp(kind, &packet, arrival)?;
        }
    }
    let stats = recorder.stop()?;
    Ok(stats.video_frames + stats.audio_frames)
}
