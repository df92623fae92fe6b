//! Typed errors of the recorder crate. Each maps onto one Kurento error type
//! (see [`Error::kurento_type`]) so the media core can raise the right event.

use std::path::PathBuf;

use crate::media::Codec;
use crate::profile::{Container, MediaProfile};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("URI `{0}` is not a file:// URI with an absolute path")]
    UnsupportedUri(String),
    #[error("path `{}` contains a `..` component", .0.display())]
    ParentComponent(PathBuf),
    #[error("path `{}` is outside the configured recording roots", .0.display())]
    OutsideRoots(PathBuf),
    #[error("cannot open `{}`: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{codec:?} cannot be stored in {container:?} (profile {profile:?})")]
    CodecNotSupported {
        codec: Codec,
        container: Container,
        profile: MediaProfile,
    },
    #[error("profile {profile:?} has no {kind} track")]
    TrackNotInProfile {
        profile: MediaProfile,
        kind: &'static str,
    },
    #[error("invalid {format} data: {reason}")]
    Malformed {
        format: &'static str,
        reason: String,
    },
    #[error("unsupported {format} feature: {what}")]
    Unsupported { format: &'static str, what: String },
    #[error("the recorder is already stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn malformed(format: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            format,
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(format: &'static str, what: impl Into<String>) -> Self {
        Error::Unsupported {
            format,
            what: what.into(),
        }
    }

    /// The Kurento `Error.type` string the media core reports for this error.
    pub fn kurento_type(&self) -> &'static str {
        match self {
            Error::UnsupportedUri(_) | Error::ParentComponent(_) | Error::OutsideRoots(_) => {
                "URI_ERROR"
            }
            Error::Open { .. } => "RESOURCE_ERROR_OPEN",
            Error::Io(_) => "RESOURCE_ERROR_WRITE",
            Error::CodecNotSupported { .. } | Error::TrackNotInProfile { .. } => {
                "STREAM_ERROR_FORMAT"
            }
            Error::Malformed { .. } | Error::Unsupported { .. } => "STREAM_ERROR_DEMUX",
            Error::Stopped => "STREAM_ERROR_FAILED",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
