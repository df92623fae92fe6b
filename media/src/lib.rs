//! The rkms media core.
//!
//! - [`graph`]: the control plane of a pipeline: which element feeds which,
//!   per media type, with Kurento's connection rules.
//! - [`pipeline`]: a pipeline's elements and graph, shared by the signaling
//!   layer and the routing core.
//! - [`elements`]: recorders, players and RTP endpoints, non-WebRTC elements on a socket loop.

pub mod elements;
pub mod graph;
pub mod hub;
pub mod pipeline;
pub mod routing;
pub mod webrtc;

pub use graph::{Connection, ElementId, Graph, MediaKind};
pub use pipeline::{Pipeline, Route, RouteChanges};
