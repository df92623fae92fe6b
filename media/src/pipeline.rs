//! A media pipeline: the elements it holds and the graph between them.
//!
//! This is control-plane state, changed by signaling requests (create,
//! connect, release); a short lock per request is fine here. The per-packet
//! path never takes this lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::graph::{ConnectOutcome, Connection, ElementId, Graph, MediaKind, PadFilter};

/// Errors of pipeline operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PipelineError {
    #[error("element {0:?} is not in this pipeline")]
    UnknownElement(ElementId),
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
}

/// One pipeline's elements and connections.
#[derive(Debug, Default)]
pub struct Pipeline {
    state: Mutex<State>,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
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
        state.graph.remove_element(id)
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
