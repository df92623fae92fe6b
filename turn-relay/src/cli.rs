//! `rkms turn`: the relay run on its own, with coturn's flag names.

/// Command-line options of `rkms turn`.
#[derive(Debug, Clone, clap::Args)]
pub struct TurnArgs {}

/// Runs the relay until Ctrl-C.
pub async fn run(_args: TurnArgs) -> Result<(), crate::Error> {
    Err(crate::Error::NotImplemented)
}
