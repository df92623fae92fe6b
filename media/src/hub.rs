//! Hubs: elements whose ports exchange media by the hub's own rules rather
//! than by `connect`. A port's input feeds the hub; what a port outputs is
//! chosen by the hub:
//!
//! - a *Dispatcher* links ports pairwise (`connect(source, sink)`; a sink
//!   port takes one source, a new link replaces the old);
//! - a *DispatcherOneToMany* sends its one source port's input out of every
//!   other port.

use std::collections::BTreeMap;

use crate::graph::ElementId;

/// How one hub routes between its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubRouting {
    /// Sink port → the source port whose input it outputs.
    Dispatcher(BTreeMap<ElementId, ElementId>),
    /// The port whose input every other port outputs.
    OneToMany(Option<ElementId>),
}

impl HubRouting {
    /// The port whose input `port` outputs, if any.
    pub fn source_for(&self, port: ElementId) -> Option<ElementId> {
        match self {
            HubRouting::Dispatcher(links) => links.get(&port).copied(),
            HubRouting::OneToMany(source) => source.filter(|s| *s != port),
        }
    }

    /// Forgets a port that left the hub.
    pub fn remove_port(&mut self, port: ElementId) {
        match self {
            HubRouting::Dispatcher(links) => {
                links.retain(|sink, source| *sink != port && *source != port)
            }
            HubRouting::OneToMany(source) => {
                if *source == Some(port) {
                    *source = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: ElementId = ElementId(1);
    const P2: ElementId = ElementId(2);
    const P3: ElementId = ElementId(3);

    #[test]
    fn one_to_many_feeds_every_other_port() {
        let mut h = HubRouting::OneToMany(Some(P1));
        assert_eq!(h.source_for(P2), Some(P1));
        assert_eq!(h.source_for(P1), None, "the source does not hear itself");
        h.remove_port(P1);
        assert_eq!(h.source_for(P2), None);
    }

    #[test]
    fn dispatcher_links_pairs_and_forgets_removed_ports() {
        let mut h = HubRouting::Dispatcher(BTreeMap::from([(P2, P1), (P3, P1)]));
        assert_eq!(h.source_for(P3), Some(P1));
        h.remove_port(P1);
        assert_eq!(h.source_for(P2), None);
        assert_eq!(h.source_for(P3), None);
    }
}
