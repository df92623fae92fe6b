//! ISO-BMFF (MP4): box building, a fragmented live writer and a demuxer for
//! both plain and fragmented files.

mod boxes;
pub mod reader;
pub mod writer;

pub use reader::Mp4Reader;
pub use writer::Mp4Writer;
