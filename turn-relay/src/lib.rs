//! The embedded STUN/TURN relay. Built by its own issue; until then the
//! `rkms turn` command says so instead of pretending to relay.

pub mod cli;

/// Errors of the relay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the TURN relay is not built yet")]
    NotImplemented,
}
