//! Producers, consumers and constants of an ONNX graph by tensor name: what the protobuf
//! rewrites of [`super`] (attention, the n-gram bag, i8 quantisers, dequantise + bias) look
//! patterns up in, and the splice that puts their fused nodes in place ([`fuse_matches`]).

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{self, NodeProto};

/// Producers, consumer counts and constants of a graph, by tensor name.
pub(super) struct GraphIndex<'g> {
    pub(super) graph: &'g pb::GraphProto,
    pub(super) producer: HashMap<&'g str, usize>,
    pub(super) consumers: HashMap<&'g str, Vec<usize>>,
    pub(super) outputs: HashSet<&'g str>,
    pub(super) constants: HashMap<&'g str, &'g pb::TensorProto>,
}

impl<'g> GraphIndex<'g> {
    pub(super) fn new(graph: &'g pb::GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (ix, n) in graph.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), ix);
            }
            for i in &n.input {
                consumers.entry(i.as_str()).or_default().push(ix);
            }
        }
        GraphIndex {
            graph,
            producer,
            consumers,
            outputs: graph.output.iter().map(|o| o.name.as_str()).collect(),
            constants: graph
                .initializer
                .iter()
                .map(|t| (t.name.as_str(), t))
                .collect(),
        }
    }

    /// The node producing `tensor` if it is `op_type`, has one output and that output is
    /// used by exactly one node and is not a graph output.
    pub(super) fn sole_producer(
        &self,
        tensor: &str,
        op_type: &str,
    ) -> Option<(usize, &'g NodeProto)> {
        let ix = *self.producer.get(tensor)?;
        let n = &self.graph.node[ix];
        (n.op_type == op_type && n.output.len() == 1 && self.single_use(tensor)).then_some((ix, n))
    }

    pub(super) fn single_use(&self, tensor: &str) -> bool {
        !self.outputs.contains(tensor) && self.consumers.get(tensor).is_some_and(|c| c.len() == 1)
    }

    /// The one node using `tensor`, if it is `op_type`.
    pub(super) fn sole_consumer(
        &self,
        tensor: &str,
        op_type: &str,
    ) -> Option<(usize, &'g NodeProto)> {
        if !self.single_use(tensor) {
            return None;
        }
        let ix = self.consumers.get(tensor)?[0];
        let n = &self.graph.node[ix];
        (n.op_type == op_type && n.output.len() == 1).then_some((ix, n))
    }

    pub(super) fn i64s(&self, tensor: &str) -> Option<Vec<i64>> {
        let t = self.constants.get(tensor)?;
        if t.data_type != pb::tensor_proto::DataType::Int64 as i32 || t.data_location == Some(1) {
            return None;
        }
        if !t.int64_data.is_empty() {
            return Some(t.int64_data.clone());
        }
        (t.raw_data.len() % 8 == 0).then(|| {
            t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
                .collect()
        })
    }

    /// A single-element initializer of type `elem` held in the file (`None` for external
    /// data, which only tract reads).
    fn inline_scalar(
        &self,
        tensor: &str,
        elem: pb::tensor_proto::DataType,
    ) -> Option<&'g pb::TensorProto> {
        let t = self.constants.get(tensor)?;
        (t.data_type == elem as i32
            && t.data_location != Some(1)
            && t.dims.iter().product::<i64>() == 1)
            .then_some(*t)
    }

    pub(super) fn f32_scalar(&self, tensor: &str) -> Option<f32> {
        let t = self.inline_scalar(tensor, pb::tensor_proto::DataType::Float)?;
        match (&t.float_data[..], &t.raw_data[..]) {
            ([v], _) => Some(*v),
            ([], raw) if raw.len() == 4 => Some(f32::from_le_bytes(raw.try_into().ok()?)),
            _ => None,
        }
    }

    /// The value of a single-element u8 initializer held in the file (raw, or in
    /// `int32_data` as ONNX allows); `None` for external data.
    pub(super) fn u8_scalar(&self, tensor: &str) -> Option<u8> {
        let t = self.inline_scalar(tensor, pb::tensor_proto::DataType::Uint8)?;
        match (&t.raw_data[..], &t.int32_data[..]) {
            ([v], []) => Some(*v),
            ([], [v]) => u8::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The length of a 1-D f32 initializer (shape and type only: its values may be external
    /// data, which tract reads when it parses the graph).
    pub(super) fn f32_vector_len(&self, tensor: &str) -> Option<i64> {
        let t = self.constants.get(tensor)?;
        (t.data_type == pb::tensor_proto::DataType::Float as i32 && t.dims.len() == 1)
            .then_some(t.dims[0])
    }
}

/// One fused node found in a graph: the node, the index it takes (the last replaced node's,
/// so the order stays topological) and every node it replaces.
pub(super) struct Match {
    pub(super) at: usize,
    pub(super) node: NodeProto,
    pub(super) removed: Vec<usize>,
}

/// Looks for a match at every node of `graph` and splices the fused nodes in, dropping the
/// nodes they replace; returns how many it fused.
pub(super) fn fuse_matches(
    graph: &mut pb::GraphProto,
    match_at: impl Fn(&GraphIndex, usize, &NodeProto) -> Option<Match>,
) -> usize {
    let found = {
        let g = GraphIndex::new(graph);
        graph
            .node
            .iter()
            .enumerate()
            .filter_map(|(ix, n)| match_at(&g, ix, n))
            .collect::<Vec<_>>()
    };
    if found.is_empty() {
        return 0;
    }
    let removed: HashSet<usize> = found.iter().flat_map(|m| m.removed.clone()).collect();
    let mut replacement: HashMap<usize, NodeProto> =
        found.iter().map(|m| (m.at, m.node.clone())).collect();
    let nodes = std::mem::take(&mut graph.node);
    graph.node = nodes
        .into_iter()
        .enumerate()
        .filter_map(|(ix, n)| match replacement.remove(&ix) {
            Some(fused) => Some(fused),
            None if removed.contains(&ix) => None,
            None => Some(n),
        })
        .collect();
    found.len()
}
