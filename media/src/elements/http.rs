//! PlayerEndpoint's `http://` and `https://` inputs: the file is downloaded (rustls, no C TLS
//! library) into an unnamed temporary file, then demuxed like a local one. Playing starts
//! when the download is complete; a live HTTP stream is not supported.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use rkms_recorder::player::{Source, open_file};

/// The largest download a player takes.
pub const MAX_DOWNLOAD: u64 = 4 << 30;

/// Downloads `uri` (giving up after `timeout`) and opens it as a media file.
pub fn open(uri: &str, timeout: Duration) -> rkms_recorder::Result<Box<dyn Source>> {
    let failed = |e: io::Error| rkms_recorder::Error::Open {
        path: PathBuf::from(uri),
        source: e,
    };
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let response = agent
        .get(uri)
        .call()
        .map_err(|e| failed(io::Error::other(e.to_string())))?;
    let mut file = unnamed_temp_file().map_err(failed)?;
    let mut body = response
        .into_body()
        .into_with_config()
        .limit(MAX_DOWNLOAD)
        .reader();
    io::copy(&mut body, &mut file).map_err(failed)?;
    file.seek(SeekFrom::Start(0)).map_err(failed)?;
    open_file(file)
}

/// A read-write file in the temporary directory whose name is already gone, so nothing is
/// left behind whatever happens to the process.
fn unnamed_temp_file() -> io::Result<File> {
    let name = format!(
        "rkms-download-{}-{:08x}",
        std::process::id(),
        crate::webrtc::random_u32()
    );
    let path = std::env::temp_dir().join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}
