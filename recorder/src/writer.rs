//! One interface over the container writers, chosen by profile.

use std::fs::File;

use crate::error::Result;
use crate::media::{CodecConfig, Frame};
use crate::mkv::{DocType, MkvWriter};
use crate::mp4::Mp4Writer;
use crate::profile::Container;

pub enum ContainerWriter {
    Mkv(MkvWriter),
    Mp4(Mp4Writer),
}

impl ContainerWriter {
    /// Writes the file headers at once; `tracks` order gives the track indices.
    pub fn create(file: File, container: Container, tracks: &[CodecConfig]) -> Result<Self> {
        Ok(match container {
            Container::Webm => Self::Mkv(MkvWriter::create(file, DocType::Webm, tracks)?),
            Container::Mkv => Self::Mkv(MkvWriter::create(file, DocType::Matroska, tracks)?),
            Container::Mp4 => Self::Mp4(Mp4Writer::create(file, tracks)?),
        })
    }

    pub fn write_frame(&mut self, track: usize, frame: &Frame) -> Result<()> {
        match self {
            Self::Mkv(w) => w.write_frame(track, frame),
            Self::Mp4(w) => w.write_frame(track, frame),
        }
    }

    pub fn finish(&mut self) -> Result<()> {
        match self {
            Self::Mkv(w) => w.finish(),
            Self::Mp4(w) => w.finish(),
        }
    }
}
