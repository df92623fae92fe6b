//! Matroska / WebM: EBML primitives, a live writer and a demuxer.

mod ebml;
mod ids;
pub mod reader;
pub mod writer;

pub use reader::MkvReader;
pub use writer::{DocType, MkvWriter};
