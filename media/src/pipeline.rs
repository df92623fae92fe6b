//! A media pipeline: the elements it holds and the graph between them.
//!
//! This is control-plane state, changed by signaling requests (create,
//! connect, release); a short lock per request is fine here. The per-packet
//! path never takes this lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::graph::{ConnectOutcome, Connection, ElementId, Graph, MediaKind, PadFilter};
use crate::hub::HubRouting;

/// Errors of pipeline operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PipelineError {
    #[error("element {0:?} is not in this pipeline")]
    UnknownElement(ElementId),
    #[error("element {0:?} is not a port of this hub")]
    NotAPort(ElementId),
}

#[derive(Debug)]
struct ElementInfo {
    /// The element's type name, e.g. `PassThrough`.
    type_name: String,
    /// How the outside world names the element (the signaling object id).
    label: String,
}

/// Element ids are unique across pipelines: the routing core and the
/// WebRTC host serve every pipeline with one table.
static NEXT_ELEMENT_ID: AtomicU32 = AtomicU32::new(1);

#[derive(Debug, Default)]
struct State {
    elements: BTreeMap<ElementId, ElementInfo>,
    graph: Graph,
    /// The routes last handed to the media path (see [`Pipeline::sync_routes`]).
    routes: BTreeSet<Route>,
    hubs: BTreeMap<ElementId, HubRouting>,
    /// Each hub port's hub.
    port_hub: BTreeMap<ElementId, ElementId>,
}

/// Media of `kind` from the element that produces it to one that consumes
/// it, with the transparent elements between them resolved away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub source: ElementId,
    pub sink: ElementId,
    pub kind: MediaKind,
}

/// How the routes changed since the last [`Pipeline::sync_routes`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    pub added: Vec<Route>,
    pub removed: Vec<Route>,
}

/// Elements that hand on what they receive untouched: the media path skips
/// them and links their source to their sinks directly.
fn is_transparent(type_name: &str) -> bool {
    matches!(type_name, "PassThrough" | "HubPort")
}

static NEXT_PIPELINE_ID: AtomicU64 = AtomicU64::new(1);

/// One pipeline's elements and connections.
#[derive(Debug)]
pub struct Pipeline {
    /// Unique in the process; the media path keeps a pipeline's elements
    /// together (on one socket-loop thread) by it.
    id: u64,
    state: Mutex<State>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            id: NEXT_PIPELINE_ID.fetch_add(1, Ordering::Relaxed),
            state: Mutex::default(),
        }
    }
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Adds an element; `label` is how connections name it to the outside.
    pub fn add_element(&self, type_name: &str, label: &str) -> ElementId {
        let id = ElementId(NEXT_ELEMENT_ID.fetch_add(1, Ordering::Relaxed));
        self.state.lock().elements.insert(
            id,
            ElementInfo {
                type_name: type_name.to_owned(),
                label: label.to_owned(),
            },
        );
        id
    }

    /// Removes an element and every connection touching it.
    pub fn remove_element(&self, id: ElementId) -> Vec<Connection> {
        let mut state = self.state.lock();
        state.elements.remove(&id);
        state.hubs.remove(&id);
        state.port_hub.retain(|_, hub| *hub != id);
        if let Some(hub) = state.port_hub.remove(&id)
            && let Some(routing) = state.hubs.get_mut(&hub)
        {
            routing.remove_port(id);
        }
        state.graph.remove_element(id)
    }

    /// Makes an element a hub routing its ports by `routing`.
    pub fn add_hub(&self, hub: ElementId, routing: HubRouting) -> Result<(), PipelineError> {
        let mut state = self.state.lock();
        state.check(hub)?;
        state.hubs.insert(hub, routing);
        Ok(())
    }

    /// Makes `port` one of `hub`'s ports.
    pub fn attach_port(&self, hub: ElementId, port: ElementId) -> Result<(), PipelineError> {
        let mut state = self.state.lock();
        state.check(port)?;
        if !state.hubs.contains_key(&hub) {
            return Err(PipelineError::UnknownElement(hub));
        }
        state.port_hub.insert(port, hub);
        Ok(())
    }

    /// Changes a hub's routing with `change`; both ports it names must be
    /// the hub's.
    pub fn route_hub(
        &self,
        hub: ElementId,
        ports: &[ElementId],
        change: impl FnOnce(&mut HubRouting),
    ) -> Result<(), PipelineError> {
        let mut state = self.state.lock();
        if let Some(&bad) = ports.iter().find(|p| state.port_hub.get(p) != Some(&hub)) {
            return Err(PipelineError::NotAPort(bad));
        }
        let routing = state
            .hubs
            .get_mut(&hub)
            .ok_or(PipelineError::UnknownElement(hub))?;
        change(routing);
        Ok(())
    }

    /// The outside name of an element, if it is still in the pipeline.
    pub fn label(&self, id: ElementId) -> Option<String> {
        self.state.lock().elements.get(&id).map(|e| e.label.clone())
    }

    /// Number of elements in the pipeline.
    pub fn element_count(&self) -> usize {
        self.state.lock().elements.len()
    }

    pub fn connect(
        &self,
        source: ElementId,
        sink: ElementId,
        kinds: &[MediaKind],
        source_description: &str,
        sink_description: &str,
    ) -> Result<ConnectOutcome, PipelineError> {
        let mut state = self.state.lock();
        state.check(source)?;
        state.check(sink)?;
        Ok(state
            .graph
            .connect(source, sink, kinds, source_description, sink_description))
    }

    pub fn disconnect(
        &self,
        source: ElementId,
        sink: ElementId,
        kinds: &[MediaKind],
        source_description: &str,
        sink_description: &str,
    ) -> Result<Vec<Connection>, PipelineError> {
        let mut state = self.state.lock();
        state.check(source)?;
        state.check(sink)?;
        Ok(state
            .graph
            .disconnect(source, sink, kinds, source_description, sink_description))
    }

    pub fn sources_of(&self, element: ElementId, filter: PadFilter<'_>) -> Vec<Connection> {
        self.state.lock().graph.sources_of(element, filter)
    }

    pub fn sinks_of(&self, element: ElementId, filter: PadFilter<'_>) -> Vec<Connection> {
        self.state.lock().graph.sinks_of(element, filter)
    }

    /// Recomputes the routes the graph implies and returns how they differ
    /// from the previous call: what the media path must add and remove.
    pub fn sync_routes(&self) -> RouteChanges {
        let mut state = self.state.lock();
        let now = state.resolve_routes();
        let changes = RouteChanges {
            added: now.difference(&state.routes).copied().collect(),
            removed: state.routes.difference(&now).copied().collect(),
        };
        state.routes = now;
        changes
    }

    /// A Graphviz DOT picture of the pipeline's elements and connections.
    pub fn to_dot(&self, name: &str) -> String {
        let state = self.state.lock();
        let mut dot = String::new();
        let _ = writeln!(dot, "digraph \"{}\" {{", escape(name));
        let _ = writeln!(dot, "  rankdir=LR;\n  node [shape=box, style=rounded];");
        for (id, info) in &state.elements {
            let _ = writeln!(
                dot,
                "  e{} [label=\"{}\\n{}\"];",
                id.0,
                escape(&info.type_name),
                escape(&info.label)
            );
        }
        for c in state.graph.connections() {
            let _ = writeln!(
                dot,
                "  e{} -> e{} [label=\"{} ({} -> {})\"];",
                c.source.0,
                c.sink.0,
                c.kind,
                escape(&c.source_description),
                escape(&c.sink_description)
            );
        }
        dot.push_str("}\n");
        dot
    }
}

impl State {
    fn transparent(&self, id: ElementId) -> bool {
        self.elements
            .get(&id)
            .is_some_and(|e| is_transparent(&e.type_name))
    }

    /// Every route from a producing element to a consuming one. Walking up
    /// from a consumer: a PassThrough hands on what feeds it; a hub port
    /// outputs what the hub picks (another port's input). A sink pad has
    /// one source, so the walk is a chain; `seen` stops loops.
    fn resolve_routes(&self) -> BTreeSet<Route> {
        let mut routes = BTreeSet::new();
        for c in self.graph.connections() {
            if self.transparent(c.sink) {
                continue;
            }
            let mut source = Some(c.source);
            let mut seen = BTreeSet::new();
            while let Some(e) = source.filter(|e| self.transparent(*e)) {
                if !seen.insert(e) {
                    source = None;
                    break;
                }
                let input_of = match self.port_hub.get(&e) {
                    Some(hub) => self.hubs.get(hub).and_then(|r| r.source_for(e)),
                    None => Some(e),
                };
                source = input_of.and_then(|i| self.feeder(i, c.kind));
            }
            if let Some(source) = source {
                routes.insert(Route {
                    source,
                    sink: c.sink,
                    kind: c.kind,
                });
            }
        }
        routes
    }

    /// The element feeding `element`'s `kind` sink pad.
    fn feeder(&self, element: ElementId, kind: MediaKind) -> Option<ElementId> {
        let filter = PadFilter {
            kind: Some(kind),
            description: None,
        };
        self.graph
            .sources_of(element, filter)
            .first()
            .map(|c| c.source)
    }

    fn check(&self, id: ElementId) -> Result<(), PipelineError> {
        if self.elements.contains_key(&id) {
            Ok(())
        } else {
            Err(PipelineError::UnknownElement(id))
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::DEFAULT_DESCRIPTION as D;
    use crate::hub::HubRouting;

    #[test]
    fn dot_shows_elements_and_connections() {
        let p = Pipeline::new();
        let a = p.add_element("PassThrough", "p/a");
        let b = p.add_element("PassThrough", "p/b");
        p.connect(a, b, &[MediaKind::Video], D, D).unwrap();
        let dot = p.to_dot("p");
        assert!(dot.starts_with("digraph \"p\" {"));
        assert!(dot.contains("PassThrough\\np/a"));
        assert!(dot.contains(&format!("e{} -> e{} [label=\"VIDEO", a.0, b.0)));
    }

    #[test]
    fn routes_skip_pass_throughs_and_follow_changes() {
        let p = Pipeline::new();
        let a = p.add_element("WebRtcEndpoint", "a");
        let b = p.add_element("WebRtcEndpoint", "b");
        let t1 = p.add_element("PassThrough", "t1");
        let t2 = p.add_element("PassThrough", "t2");
        let video = [MediaKind::Video];
        p.connect(a, t1, &video, D, D).unwrap();
        p.connect(t1, t2, &video, D, D).unwrap();
        assert_eq!(p.sync_routes(), RouteChanges::default(), "no consumer yet");
        p.connect(t2, b, &video, D, D).unwrap();
        let route = Route {
            source: a,
            sink: b,
            kind: MediaKind::Video,
        };
        assert_eq!(p.sync_routes().added, [route]);
        // Replacing the chain's head re-routes b.
        p.connect(b, t1, &video, D, D).unwrap();
        let changes = p.sync_routes();
        assert_eq!(changes.removed, [route]);
        assert_eq!(
            changes.added,
            [Route {
                source: b,
                sink: b,
                kind: MediaKind::Video
            }]
        );
        p.remove_element(t2);
        assert_eq!(p.sync_routes().removed.len(), 1);
    }

    #[test]
    fn a_loop_of_pass_throughs_routes_nothing() {
        let p = Pipeline::new();
        let t1 = p.add_element("PassThrough", "t1");
        let t2 = p.add_element("PassThrough", "t2");
        let b = p.add_element("WebRtcEndpoint", "b");
        p.connect(t1, t2, &MediaKind::ALL, D, D).unwrap();
        p.connect(t2, t1, &MediaKind::ALL, D, D).unwrap();
        p.connect(t1, b, &MediaKind::ALL, D, D).unwrap();
        assert_eq!(p.sync_routes(), RouteChanges::default());
    }

    #[test]
    fn hubs_route_between_their_ports() {
        let p = Pipeline::new();
        let [a, b, viewer] = ["a", "b", "viewer"].map(|l| p.add_element("WebRtcEndpoint", l));
        let hub = p.add_element("DispatcherOneToMany", "hub");
        p.add_hub(hub, HubRouting::OneToMany(None)).unwrap();
        let [pa, pb, pv] = ["pa", "pb", "pv"].map(|l| {
            let port = p.add_element("HubPort", l);
            p.attach_port(hub, port).unwrap();
            port
        });
        let video = [MediaKind::Video];
        p.connect(a, pa, &video, D, D).unwrap();
        p.connect(b, pb, &video, D, D).unwrap();
        p.connect(pv, viewer, &video, D, D).unwrap();
        assert!(p.sync_routes().added.is_empty(), "no source yet");

        p.route_hub(hub, &[pa], |r| *r = HubRouting::OneToMany(Some(pa)))
            .unwrap();
        assert_eq!(
            p.sync_routes().added,
            [Route {
                source: a,
                sink: viewer,
                kind: MediaKind::Video
            }]
        );
        p.route_hub(hub, &[pb], |r| *r = HubRouting::OneToMany(Some(pb)))
            .unwrap();
        let switched = p.sync_routes();
        assert_eq!(
            switched.added,
            [Route {
                source: b,
                sink: viewer,
                kind: MediaKind::Video
            }]
        );
        assert_eq!(switched.removed.len(), 1);
        assert_eq!(
            p.route_hub(hub, &[viewer], |_| {}),
            Err(PipelineError::NotAPort(viewer))
        );
        p.remove_element(pb);
        assert_eq!(p.sync_routes().removed.len(), 1, "the source port left");
    }

    #[test]
    fn element_ids_are_unique_across_pipelines() {
        let (p, q) = (Pipeline::new(), Pipeline::new());
        assert_ne!(
            p.add_element("PassThrough", "a"),
            q.add_element("PassThrough", "b")
        );
    }

    #[test]
    fn removing_an_element_drops_its_connections() {
        let p = Pipeline::new();
        let a = p.add_element("PassThrough", "a");
        let b = p.add_element("PassThrough", "b");
        p.connect(a, b, &MediaKind::ALL, D, D).unwrap();
        assert_eq!(p.remove_element(b).len(), 3);
        assert_eq!(
            p.connect(a, b, &MediaKind::ALL, D, D),
            Err(PipelineError::UnknownElement(b))
        );
        assert_eq!(p.element_count(), 1);
    }
}
