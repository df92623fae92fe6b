//! The input side of PlayerEndpoint: a [`Source`] yields timestamped access
//! units of its tracks in decode order; the media core paces them with
//! [`crate::rtp::Pacer`] and packetizes them with [`crate::rtp::Packetizer`].
//!
//! Files are demuxed here. Network sources (HTTP files, RTSP cameras through
//! `retina`) implement the same trait later: a live source reports
//! `seekable() == false` and no duration, and its `next_frame` may block up to
//! the caller's pacing deadline.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use crate::error::{Error, Result};
use crate::media::{CodecConfig, Frame};
use crate::mkv::MkvReader;
use crate::mp4::Mp4Reader;
use crate::path_policy::file_uri_to_path;

/// A frame of track `track` (index into [`Source::tracks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFrame {
    pub track: usize,
    pub frame: Frame,
}

pub trait Source: Send {
    /// The tracks frames refer to; fixed once opened.
    fn tracks(&self) -> &[CodecConfig];
    /// Total duration, when the input knows it.
    fn duration_us(&self) -> Option<u64>;
    fn seekable(&self) -> bool;
    /// The next access unit, `Ok(None)` at the end of the input. A file cut
    /// off inside its media data ends there; damage before the first frame is
    /// an error from `open`.
    fn next_frame(&mut self) -> Result<Option<SourceFrame>>;
    /// Moves to the last keyframe at or before `pos_us`; returns its time.
    fn seek(&mut self, pos_us: u64) -> Result<u64>;
}

/// Opens a `file://` URI (or plain absolute path) holding WebM/Matroska or MP4,
/// recognised by content, not by extension.
pub fn open(uri: &str) -> Result<Box<dyn Source>> {
    let path = if uri.starts_with('/') {
        uri.into()
    } else {
        file_uri_to_path(uri)?
    };
    let file = File::open(&path).map_err(|source| Error::Open {
        path: path.clone(),
        source,
    })?;
    open_file(file)
}

/// Opens WebM/Matroska or MP4 from an open file (a download, say), recognised by content.
pub fn open_file(mut file: File) -> Result<Box<dyn Source>> {
    let mut magic = [0u8; 8];
    let n = read_up_to(&mut file, &mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    match &magic[..n] {
        [0x1a, 0x45, 0xdf, 0xa3, ..] => Ok(Box::new(MkvReader::open(file)?)),
        [_, _, _, _, b'f', b't', b'y', b'p'] | [_, _, _, _, b'm', b'o', b'o', b'v'] => {
            Ok(Box::new(Mp4Reader::open(file)?))
        }
        [] => Err(Error::malformed("media file", "the file is empty")),
        _ => Err(Error::unsupported(
            "media file",
            "container not recognised (WebM, MKV, MP4 are)",
        )),
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
