//! Copies the tracks of a WebM/MKV/MP4 file into a recording profile with the
//! rkms-recorder writers: `remux INPUT OUTPUT PROFILE`.

use std::process::ExitCode;

use rkms_recorder::player::open;
use rkms_recorder::writer::ContainerWriter;
use rkms_recorder::MediaProfile;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output, profile] = args.as_slice() else {
        eprintln!("usage: remux INPUT OUTPUT PROFILE");
        return ExitCode::FAILURE;
    };
    match run(input, output, profile) {
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

fn run(input: &str, output: &str, profile: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let profile = MediaProfile::from_kurento(profile).ok_or("unknown profile")?;
    let mut source = open(input)?;
    let mut map = Vec::new();
    let mut configs = Vec::new();
    for cfg in source.tracks() {
        if profile.check_codec(cfg.codec).is_ok() {
            map.push(Some(configs.len()));
            configs.push(cfg.clone());
        } else {
            map.push(None);
        }
    }
    let file = std::fs::File::create(output)?;
    let mut writer = ContainerWriter::create(file, profile.container(), &configs)?;
    let mut frames = 0;
    while let Some(f) = source.next_frame()? {
        if let Some(Some(track)) = map.get(f.track) {
            writer.write_frame(*track, &f.frame)?;
            frames += 1;
        }
    }
    writer.finish()?;
    Ok(frames)
}
