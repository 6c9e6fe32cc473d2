//! The additive padding mask, `(1 - float(attention_mask)) · c`, as one node.
//!
//! The exporter (`host::export::onnx::Masks`) writes it as `Cast`, `Sub` from the constant
//! 1 and `Mul` by the constant `c` (`MASK_NEG`): three nodes that tract runs as generic
//! broadcasting ops, each with its own output, on every query. Here it is one pass with
//! the same two roundings, so the mask stays the same.
//!
//! The pattern is replaced in the ONNX protobuf before tract parses it
//! ([`fuse_additive_mask`]); only the exact form is taken: an int64 graph input, scalar f32
//! constants, and the cast and the difference used by nothing else.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto};
use tract_onnx::tract_hir::internal::*;

use super::embedding_bag::{casts_to_f32, int64_graph_input};
use super::graph_index::{fuse_matches, GraphIndex, Match};

/// The op type of the fused node in the rewritten protobuf (never written to a file).
pub const OP_TYPE: &str = "DeviceAdditiveMask";

/// Replaces every additive mask of the graph (see the module doc) by one [`OP_TYPE`] node;
/// returns how many it replaced.
pub fn fuse_additive_mask(graph: &mut pb::GraphProto) -> usize {
    fuse_matches(graph, match_at)
}

fn match_at(g: &GraphIndex, at: usize, mul: &NodeProto) -> Option<Match> {
    if mul.op_type != "Mul" || mul.output.len() != 1 {
        return None;
    }
    let [a, b] = &mul.input[..] else {
        return None;
    };
    let (sub_ix, sub, c) = [(a, b), (b, a)].into_iter().find_map(|(d, c)| {
        let c = g.f32_scalar(c)?;
        let (ix, n) = g.sole_producer(d, "Sub")?;
        Some((ix, n, c))
    })?;
    let [one, cast_out] = &sub.input[..] else {
        return None;
    };
    if g.f32_scalar(one) != Some(1.0) || !c.is_finite() {
        return None;
    }
    let (cast_ix, cast) = g.sole_producer(cast_out, "Cast")?;
    if !casts_to_f32(cast) || cast.input.len() != 1 || !int64_graph_input(g, &cast.input[0]) {
        return None;
    }
    let node = NodeProto {
        op_type: OP_TYPE.into(),
        name: mul.name.clone(),
        input: vec![cast.input[0].clone()],
        output: mul.output.clone(),
        attribute: vec![pb::AttributeProto {
            name: "c".into(),
            r#type: pb::attribute_proto::AttributeType::Float as i32,
            f: c,
            ..Default::default()
        }],
        ..Default::default()
    };
    Some(Match {
        at,
        node,
        removed: vec![at, sub_ix, cast_ix],
    })
}

/// The parser of [`OP_TYPE`] nodes.
pub fn parse_additive_mask(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    ensure!(
        node.input.len() == 1,
        "{OP_TYPE}: {} inputs",
        node.input.len()
    );
    let c: f32 = node.get_attr("c")?;
    Ok((expand(MaskExpansion { c }), vec![]))
}

#[derive(Debug, Clone)]
struct MaskExpansion {
    c: f32,
}

impl Expansion for MaskExpansion {
    fn name(&self) -> StaticName {
        "FusedAdditiveMask".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, DatumType::I64)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let op = FusedAdditiveMask {
            c: self.c.to_bits(),
        };
        model.wire_node(prefix, op, inputs)
    }
}

/// `out = (1 - (mask as f32)) · c`, element by element: input i64, output f32 of the
/// same shape.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedAdditiveMask {
    /// The factor `c`, as f32 bits (so the op is `Eq` and `Hash`).
    pub c: u32,
}

impl Op for FusedAdditiveMask {
    fn name(&self) -> StaticName {
        "FusedAdditiveMask".into()
    }
    op_as_typed_op!();
}

impl EvalOp for FusedAdditiveMask {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [mask] = &inputs[..] else {
            bail!("FusedAdditiveMask: {} inputs", inputs.len());
        };
        let c = f32::from_bits(self.c);
        let mv = mask.try_as_plain_ram()?;
        let mut out = Tensor::zero::<f32>(mask.shape())?;
        {
            let mut plain = out.try_as_plain_ram_mut()?;
            for (o, &m) in plain
                .as_slice_mut::<f32>()?
                .iter_mut()
                .zip(mv.as_slice::<i64>()?)
            {
                *o = (1.0 - m as f32) * c;
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FusedAdditiveMask {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 1 && inputs[0].datum_type == DatumType::I64,
            "FusedAdditiveMask takes one i64 mask"
        );
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        f32_scalar, input_info, model, node, op_names, outputs, plan, run_all,
    };
    use pb::tensor_proto::DataType;

    fn graph() -> pb::GraphProto {
        pb::GraphProto {
            node: vec![
                node(
                    "Cast",
                    &["mask"],
                    "maskf",
                    &[("to", DataType::Float as i64)],
                ),
                node("Sub", &["one", "maskf"], "inverted", &[]),
                node("Mul", &["inverted", "neg"], "additive", &[]),
            ],
            initializer: vec![f32_scalar("one", 1.0), f32_scalar("neg", -3e4)],
            input: vec![input_info("mask", DataType::Int64, &[2, 5])],
            output: outputs(&["additive"]),
            ..Default::default()
        }
    }

    /// One node with tract's values (0 and 1, and any other integer alike); a mask whose
    /// difference is used elsewhere, or subtracted from 2, stays as written.
    #[test]
    fn the_mask_runs_fused_with_tract_values() {
        let mut g = graph();
        assert_eq!(fuse_additive_mask(&mut g), 1);
        assert_eq!(g.node.len(), 1);
        let fused = plan(&model(g), true);
        assert!(op_names(&fused).contains(&"FusedAdditiveMask".to_string()));
        let m =
            tract_ndarray::Array2::from_shape_vec((2, 5), vec![1i64, 1, 1, 0, 0, 1, 0, 3, -2, 1])
                .unwrap()
                .into_tensor();
        let got = run_all(&fused, std::slice::from_ref(&m));
        let want = run_all(&plan(&model(graph()), true), std::slice::from_ref(&m));
        assert_eq!(got, want, "bit for bit");
        let y = got[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!((y[[0, 0]], y[[0, 3]]), (0.0, -3e4));

        let mut shared = graph();
        shared.output.extend(outputs(&["inverted"]));
        let mut two = graph();
        two.initializer[0] = f32_scalar("one", 2.0);
        for mut other in [shared, two] {
            let before = other.clone();
            assert_eq!(fuse_additive_mask(&mut other), 0);
            assert_eq!(other, before);
        }
    }
}
