//! The build graph: steps (nodes) each carrying an op, with edges from the
//! steps whose results they read. Identical steps (same op, same inputs)
//! are one node, so they run once.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

use crate::cache_key::{CacheKey, KeyEncoder};

/// What the scheduler needs from an op: a stable encoding of everything
/// that determines its result, apart from its inputs.
pub trait KeyedOp {
    /// A short name of the op's kind, part of its key (e.g. `"exec"`).
    fn kind(&self) -> &'static str;
    /// Adds every field that affects the result to the key.
    fn encode(&self, enc: &mut KeyEncoder);
    /// One line for progress output and reports, e.g. `RUN make`.
    fn describe(&self) -> String;
}

/// The id of a step in one [`BuildGraph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepId(u32);

impl StepId {
    fn node(self) -> NodeIndex {
        NodeIndex::new(self.0 as usize)
    }

    fn of(node: NodeIndex) -> StepId {
        StepId(node.index() as u32)
    }

    /// The index of the step, dense from 0 in the order steps were added.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

pub(crate) struct Step<O> {
    pub(crate) op: O,
    /// Inputs in the op's order (a step may read the same input twice).
    pub(crate) inputs: Vec<StepId>,
}

/// A DAG of steps. Add inputs before the steps that read them.
pub struct BuildGraph<O> {
    graph: DiGraph<Step<O>, ()>,
    /// Definition key (op + input definitions) → step, for deduplication.
    by_definition: HashMap<CacheKey, StepId>,
    definitions: Vec<CacheKey>,
}

impl<O> Default for BuildGraph<O> {
    fn default() -> Self {
        BuildGraph {
            graph: DiGraph::new(),
            by_definition: HashMap::new(),
            definitions: Vec::new(),
        }
    }
}

impl<O: KeyedOp> BuildGraph<O> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step running `op` on the results of `inputs`, or returns the
    /// existing step that is identical to it.
    ///
    /// # Panics
    /// When an input is not a step of this graph (a programming error).
    pub fn add(&mut self, op: O, inputs: &[StepId]) -> StepId {
        let mut enc = KeyEncoder::new(op.kind());
        op.encode(&mut enc);
        for input in inputs {
            enc.digest("input", &self.definitions[input.index()].digest());
        }
        let definition = enc.finish();
        if let Some(&existing) = self.by_definition.get(&definition) {
            return existing;
        }
        let node = self.graph.add_node(Step {
            op,
            inputs: inputs.to_vec(),
        });
        for input in inputs {
            self.graph.update_edge(input.node(), node, ());
        }
        let id = StepId::of(node);
        self.by_definition.insert(definition, id);
        self.definitions.push(definition);
        id
    }

    /// The step at a dense index (see [`StepId::index`]).
    pub fn step_at(&self, index: usize) -> StepId {
        assert!(index < self.len(), "step index {index} out of range");
        StepId(index as u32)
    }

    /// The number of distinct steps.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn op(&self, id: StepId) -> &O {
        &self.graph[id.node()].op
    }

    pub fn inputs(&self, id: StepId) -> &[StepId] {
        &self.graph[id.node()].inputs
    }

    /// Steps that read `id`'s result.
    pub fn dependents(&self, id: StepId) -> impl Iterator<Item = StepId> + '_ {
        self.graph
            .neighbors_directed(id.node(), Direction::Outgoing)
            .map(StepId::of)
    }

    /// Every step the `targets` need (themselves included), as a mask
    /// indexed by [`StepId::index`]. Steps outside it never run.
    pub fn needed_by(&self, targets: &[StepId]) -> Vec<bool> {
        let mut needed = vec![false; self.len()];
        let reversed = Reversed(&self.graph);
        for target in targets {
            let mut dfs = Dfs::new(reversed, target.node());
            while let Some(node) = dfs.next(reversed) {
                needed[node.index()] = true;
            }
        }
        needed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test op: a name and a payload that changes its key.
    #[derive(Debug, Clone)]
    pub(crate) struct FakeOp {
        pub name: &'static str,
        pub payload: u64,
    }

    pub(crate) fn op(name: &'static str) -> FakeOp {
        FakeOp { name, payload: 0 }
    }

    impl KeyedOp for FakeOp {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn encode(&self, enc: &mut KeyEncoder) {
            enc.str("name", self.name).u64("payload", self.payload);
        }
        fn describe(&self) -> String {
            self.name.to_string()
        }
    }

    #[test]
    fn identical_steps_are_one_node() {
        let mut g = BuildGraph::new();
        let base = g.add(op("base"), &[]);
        let a = g.add(op("make"), &[base]);
        let b = g.add(op("make"), &[base]);
        assert_eq!(a, b);
        let other_base = g.add(
            FakeOp {
                name: "base",
                payload: 1,
            },
            &[],
        );
        let c = g.add(op("make"), &[other_base]);
        assert_ne!(a, c, "same op on a different input is a different step");
        assert_eq!(g.len(), 4);
    }

    #[test]
    fn needed_by_excludes_unreachable_steps() {
        let mut g = BuildGraph::new();
        let base = g.add(op("base"), &[]);
        let unused = g.add(op("unused"), &[base]);
        let target = g.add(op("target"), &[base]);
        let needed = g.needed_by(&[target]);
        assert!(needed[base.index()] && needed[target.index()]);
        assert!(!needed[unused.index()]);
    }
}
