//! Activations quantised straight to i8 instead of u8.
//!
//! The exporter writes each int8-compute matmul as `QuantizeLinear` (f32 → u8 with a static
//! scale and zero point) and `MatMulInteger` (u8 activations × i8 weights, that zero point
//! as `a_zero_point`): standard ONNX that onnxruntime runs as written. tract's int8
//! kernels take i8 × i8, so it adds an `OffsetU8asI8` node before every such matmul: one
//! more pass over the activations and one more node per linear layer (11 of the tiny
//! model's 118 nodes, 36 of MiniLM-L6's). Here, before tract parses the protobuf, a
//! quantiser whose only consumers are `MatMulInteger` nodes taking the same zero point is
//! given the zero point `zp - 128` as an i8: `q - 128` exactly, the same integers tract's
//! offset would produce, so every product and every result is unchanged.

use tract_onnx::pb::{self, tensor_proto::DataType};

use super::graph_index::GraphIndex;

/// Rewrites every eligible u8 `QuantizeLinear` and its `MatMulInteger` consumers to i8
/// (see the module doc); returns how many quantisers it rewrote.
pub fn quantize_to_i8(graph: &mut pb::GraphProto) -> usize {
    // (quantiser, its consumers, the u8 zero point)
    let found: Vec<(usize, Vec<usize>, u8)> = {
        let g = GraphIndex::new(graph);
        // Names already taken anywhere in the graph (a new initializer must not shadow one).
        let taken = |name: &str| {
            g.constants.contains_key(name)
                || g.producer.contains_key(name)
                || graph.input.iter().any(|i| i.name == name)
        };
        graph
            .node
            .iter()
            .enumerate()
            .filter_map(|(ix, n)| {
                if n.op_type != "QuantizeLinear" || n.input.len() != 3 || n.output.len() != 1 {
                    return None;
                }
                let zp = g.u8_scalar(&n.input[2])?;
                let out = n.output[0].as_str();
                let users = g.consumers.get(out)?;
                // Every consumer must be a MatMulInteger that takes q as A with the same zero
                // point (and not also as B), and q must not leave the graph.
                let all_matmuls = users.iter().all(|&u| {
                    let m = &graph.node[u];
                    m.op_type == "MatMulInteger"
                        && m.input.len() >= 3
                        && m.input[0] == out
                        && m.input[1] != out
                        && g.u8_scalar(&m.input[2]) == Some(zp)
                });
                (all_matmuls && !g.outputs.contains(out) && !taken(&zero_point_name(n)))
                    .then(|| (ix, users.clone(), zp))
            })
            .collect()
    };
    for (ix, users, zp) in &found {
        let name = zero_point_name(&graph.node[*ix]);
        graph.initializer.push(pb::TensorProto {
            name: name.clone(),
            data_type: DataType::Int8 as i32,
            raw_data: vec![zp.wrapping_sub(128)],
            ..Default::default()
        });
        graph.node[*ix].input[2] = name.clone();
        for &u in users {
            graph.node[u].input[2] = name.clone();
        }
    }
    found.len()
}

fn zero_point_name(quantizer: &pb::NodeProto) -> String {
    format!("{}.zero_point_i8", quantizer.output[0])
}

#[cfg(test)]
mod tests {
    use super::super::test_graph::*;
    use super::*;
    use tract_onnx::prelude::*;

    fn zp(name: &str, dt: DataType, v: u8) -> pb::TensorProto {
        raw_initializer(name, &[], dt, vec![v])
    }

    /// x → QuantizeLinear(u8) → two MatMulIntegers (as the Q/K/V projections share an
    /// input) → outputs, plus a quantiser that also feeds a DequantizeLinear.
    fn graph() -> pb::GraphProto {
        let weights = |name: &str, seed: u64| {
            let bytes = values(120, seed, 127.0).into_iter().map(|v| v as i8 as u8);
            raw_initializer(name, &[24, 5], DataType::Int8, bytes.collect())
        };
        pb::GraphProto {
            node: vec![
                node("QuantizeLinear", &["x", "s", "zp"], "q", &[]),
                node("MatMulInteger", &["q", "w1", "zp"], "y1", &[]),
                node("MatMulInteger", &["q", "w2", "zp"], "y2", &[]),
                node("QuantizeLinear", &["x", "s", "zp2"], "r", &[]),
                node("MatMulInteger", &["r", "w1", "zp2"], "y3", &[]),
                node("DequantizeLinear", &["r", "s", "zp2"], "y4", &[]),
            ],
            initializer: vec![
                f32_scalar("s", 0.03),
                zp("zp", DataType::Uint8, 137),
                zp("zp2", DataType::Uint8, 1),
                weights("w1", 3),
                weights("w2", 4),
            ],
            input: vec![input_info("x", DataType::Float, &[2, 7, 24])],
            output: outputs(&["y1", "y2", "y3", "y4"]),
            ..Default::default()
        }
    }

    /// The plan's op names and every output as integers, with tract's own ops: the
    /// rewrite is a protobuf change tract parses like any other graph.
    fn run(graph: pb::GraphProto) -> (Vec<String>, Vec<Vec<i64>>) {
        let plan = plan(&model(graph), false);
        let x = tract_ndarray::Array3::from_shape_vec((2, 7, 24), values(336, 9, 5.0))
            .unwrap()
            .into_tensor();
        let y = run_all(&plan, &[x]).iter().map(flat::<i64>).collect();
        (op_names(&plan), y)
    }

    #[test]
    fn i8_quantisers_give_the_same_integers_without_offset_nodes() {
        let mut rewritten = graph();
        // `r` also feeds a DequantizeLinear: left as it is.
        assert_eq!(quantize_to_i8(&mut rewritten), 1);
        assert_eq!(rewritten.node[0].input[2], "q.zero_point_i8");
        assert_eq!(rewritten.node[1].input[2], "q.zero_point_i8");
        assert_eq!(rewritten.node[4].input[2], "zp2");
        let (names, got) = run(rewritten);
        let (plain_names, want) = run(graph());
        // The dequantised output is f32 cast to i64 here: compare the i32 products exactly
        // and the dequantised values as integers of the same cast.
        assert_eq!(got, want);
        let offsets = |n: &[String]| n.iter().filter(|n| *n == "OffsetU8asI8").count();
        assert!(
            offsets(&names) < offsets(&plain_names),
            "{names:?} / {plain_names:?}"
        );
    }

    #[test]
    fn other_zero_points_and_graph_outputs_are_left_alone() {
        // A consumer with another zero point.
        let mut g = graph();
        g.initializer.push(zp("zp3", DataType::Uint8, 137 - 1));
        g.node[2].input[2] = "zp3".into();
        assert_eq!(quantize_to_i8(&mut g), 0);
        // q itself a graph output.
        let mut g = graph();
        g.output.extend(outputs(&["q"]));
        assert_eq!(quantize_to_i8(&mut g), 0);
        // An i8 zero point already: nothing to do.
        let mut g = graph();
        g.initializer[1] = zp("zp", DataType::Int8, 9);
        assert_eq!(quantize_to_i8(&mut g), 0);
        // The new zero point's name already in use (it would shadow that tensor).
        let mut g = graph();
        g.initializer
            .push(zp("q.zero_point_i8", DataType::Uint8, 3));
        assert_eq!(quantize_to_i8(&mut g), 0);
    }
}
