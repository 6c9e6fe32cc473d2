//! The additive attention pooling's last steps (mask, softmax over the tokens, the
//! weighted sum of the token vectors) as one node.
//!
//! The exporter (`host::export::onnx::pooling`) writes them in standard ONNX ops:
//! `alpha = Softmax(Squeeze(scores, [-1]) + mask)` (a graph output: the weights the device
//! reports as the tokens that mattered), then `ReduceSum(x · Unsqueeze(alpha, [-1]), [1])`.
//! tract runs that as seven nodes, its `Reduce<Sum>` over a strided axis alone about as
//! slow as a dense layer on a short query. Here each batch row is one pass: the masked
//! scores, the device's softmax row, and the weighted rows summed in token order, with the
//! same roundings (a product, then a sum), so both outputs stay the same.
//!
//! The pattern is replaced in the ONNX protobuf before tract parses it
//! ([`fuse_attention_pool`]), like the n-gram bag; only the exact form is taken.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto};
use tract_onnx::tract_hir::internal::*;

use super::embedding_bag::{axes_are, int_attr};
use super::graph_index::{fuse_matches, GraphIndex, Match};

/// The op type of the fused node in the rewritten protobuf (never written to a file).
pub const OP_TYPE: &str = "DeviceAttentionPool";

/// Replaces the attention pooling's tail (see the module doc) by one [`OP_TYPE`] node with
/// two outputs (the weights, the pooled vector); returns how many it replaced.
pub fn fuse_attention_pool(graph: &mut pb::GraphProto) -> usize {
    fuse_matches(graph, match_at)
}

/// `node` has inputs `[_, axes]` with `axes` the constant `[axis]`, one output, and no
/// attributes but those in `attrs`.
fn on_axis(g: &GraphIndex, node: &NodeProto, axis: i64, attrs: &[&str]) -> bool {
    axes_are(g, node, &[axis])
        && node.output.len() == 1
        && node
            .attribute
            .iter()
            .all(|a| attrs.contains(&a.name.as_str()))
}

fn match_at(g: &GraphIndex, at: usize, sum: &NodeProto) -> Option<Match> {
    // pooled = ReduceSum(Mul(x, Unsqueeze(alpha, [-1])), [1], keepdims 0)
    if sum.op_type != "ReduceSum"
        || !on_axis(g, sum, 1, &["keepdims"])
        || int_attr(sum, "keepdims") != Some(0)
    {
        return None;
    }
    let (mul_ix, mul) = g.sole_producer(&sum.input[0], "Mul")?;
    let [a, b] = &mul.input[..] else {
        return None;
    };
    let (x, unsq_ix, unsq) = [(a, b), (b, a)].into_iter().find_map(|(x, w)| {
        let (ix, n) = g.sole_producer(w, "Unsqueeze")?;
        on_axis(g, n, -1, &[]).then_some((x, ix, n))
    })?;
    // alpha = Softmax(Add(Squeeze(scores, [-1]), mask), axis -1): used by the Unsqueeze
    // and as a graph output, nothing else.
    let alpha = unsq.input[0].as_str();
    let soft_ix = *g.producer.get(alpha)?;
    let soft = &g.graph.node[soft_ix];
    let users = g.consumers.get(alpha)?;
    if soft.op_type != "Softmax"
        || soft.input.len() != 1
        || soft.output.len() != 1
        || soft.attribute.iter().any(|a| a.name != "axis" || a.i != -1)
        || users.as_slice() != [unsq_ix]
    {
        return None;
    }
    let (add_ix, add) = g.sole_producer(&soft.input[0], "Add")?;
    let [p, q] = &add.input[..] else {
        return None;
    };
    let (mask, sq_ix, sq) = [(p, q), (q, p)].into_iter().find_map(|(m, s)| {
        let (ix, n) = g.sole_producer(s, "Squeeze")?;
        on_axis(g, n, -1, &[]).then_some((m, ix, n))
    })?;
    let scores = &sq.input[0];
    if [x, mask, scores]
        .iter()
        .any(|t| g.constants.contains_key(t.as_str()))
    {
        return None;
    }
    let node = NodeProto {
        op_type: OP_TYPE.into(),
        name: sum.name.clone(),
        input: vec![scores.clone(), mask.clone(), x.clone()],
        output: vec![alpha.to_string(), sum.output[0].clone()],
        ..Default::default()
    };
    Some(Match {
        at,
        node,
        removed: vec![at, mul_ix, unsq_ix, soft_ix, add_ix, sq_ix],
    })
}

/// The parser of [`OP_TYPE`] nodes.
pub fn parse_attention_pool(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    ensure!(
        node.input.len() == 3 && node.output.len() == 2,
        "{OP_TYPE}: {} inputs, {} outputs",
        node.input.len(),
        node.output.len()
    );
    Ok((expand(PoolExpansion), vec![]))
}

#[derive(Debug, Clone)]
struct PoolExpansion;

impl Expansion for PoolExpansion {
    fn name(&self) -> StaticName {
        "FusedAttentionPool".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3)?;
        check_output_arity(outputs, 2)?;
        for t in inputs.iter().chain(outputs) {
            s.equals(&t.datum_type, DatumType::F32)?;
        }
        s.equals(&inputs[0].rank, 3)?;
        s.equals(&inputs[1].rank, 2)?;
        s.equals(&inputs[2].rank, 3)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[1].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[0].shape[1])?;
        s.equals(&outputs[1].shape[0], &inputs[2].shape[0])?;
        s.equals(&outputs[1].shape[1], &inputs[2].shape[2])?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, FusedAttentionPool, inputs)
    }
}

/// `alpha[b, :] = softmax(scores[b, :, 0] + mask[b, :])`,
/// `pooled[b, :] = Σ_t x[b, t, :] · alpha[b, t]`: inputs the scores (f32 `[B, S, 1]`), the
/// additive mask (`[B, S]`) and the token vectors (`[B, S, d]`); outputs alpha `[B, S]` and
/// pooled `[B, d]`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedAttentionPool;

impl Op for FusedAttentionPool {
    fn name(&self) -> StaticName {
        "FusedAttentionPool".into()
    }
    op_as_typed_op!();
}

impl EvalOp for FusedAttentionPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (alpha, pooled) = pool(&inputs)?;
        Ok(tvec!(alpha.into_tvalue(), pooled.into_tvalue()))
    }
}

fn pool(inputs: &[TValue]) -> TractResult<(Tensor, Tensor)> {
    let [scores, mask, x] = inputs else {
        bail!("FusedAttentionPool: {} inputs", inputs.len());
    };
    let (ss, ms, xs) = (scores.shape(), mask.shape(), x.shape());
    ensure!(
        ss.len() == 3 && ss[2] == 1 && ms == &ss[..2] && xs.len() == 3 && xs[..2] == ss[..2],
        "FusedAttentionPool: scores {ss:?}, mask {ms:?}, tokens {xs:?}"
    );
    let (batch, seq, d) = (xs[0], xs[1], xs[2]);
    let (sv, mv, xv) = (
        scores.try_as_plain_ram()?,
        mask.try_as_plain_ram()?,
        x.try_as_plain_ram()?,
    );
    let (scores, mask, x) = (
        sv.as_slice::<f32>()?,
        mv.as_slice::<f32>()?,
        xv.as_slice::<f32>()?,
    );
    let mut alpha = Tensor::zero::<f32>(&[batch, seq])?;
    let mut pooled = Tensor::zero::<f32>(&[batch, d])?;
    if seq > 0 {
        let mut ap = alpha.try_as_plain_ram_mut()?;
        let mut pp = pooled.try_as_plain_ram_mut()?;
        let rows = ap.as_slice_mut::<f32>()?.chunks_exact_mut(seq);
        let sums = pp.as_slice_mut::<f32>()?.chunks_mut(d.max(1));
        for (b, (a, acc)) in rows.zip(sums).enumerate() {
            let at = b * seq;
            for ((v, &s), &m) in a.iter_mut().zip(&scores[at..at + seq]).zip(&mask[at..]) {
                *v = s + m;
            }
            super::softmax_row(a);
            if d > 0 {
                for (t, &w) in a.iter().enumerate() {
                    weighted_add(acc, &x[(at + t) * d..][..d], w);
                }
            }
        }
    }
    Ok((alpha, pooled))
}

/// `acc += row · w`: a product, then a sum, as `Mul` and `ReduceSum` round.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn weighted_add(acc: &mut [f32], row: &[f32], w: f32) {
    for (a, &v) in acc.iter_mut().zip(row) {
        *a += v * w;
    }
}

impl TypedOp for FusedAttentionPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 3 && inputs.iter().all(|f| f.datum_type == DatumType::F32),
            "FusedAttentionPool takes f32 scores, mask and token vectors"
        );
        let (scores, x) = (inputs[0], inputs[2]);
        ensure!(
            scores.rank() == 3 && x.rank() == 3,
            "FusedAttentionPool: scores {scores:?}, tokens {x:?}"
        );
        Ok(tvec!(
            f32::fact([scores.shape[0].clone(), scores.shape[1].clone()]),
            f32::fact([x.shape[0].clone(), x.shape[2].clone()])
        ))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let x = inputs[2];
        let macs = x.shape[0].clone() * x.shape[1].clone() * x.shape[2].clone();
        Ok(tvec!((Cost::FMA(DatumType::F32), macs)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        input_info, model, node, op_names, outputs, plan, raw_initializer, run_all, values,
    };
    use pb::tensor_proto::DataType;

    fn axes(name: &str, v: i64) -> pb::TensorProto {
        raw_initializer(name, &[1], DataType::Int64, v.to_le_bytes().to_vec())
    }

    /// The exporter's pooling tail on `[2, 6]` tokens of 20 values; the weights and the
    /// pooled vectors the graph outputs.
    fn graph() -> pb::GraphProto {
        pb::GraphProto {
            node: vec![
                node("Squeeze", &["scores", "last"], "scores_2d", &[]),
                node("Add", &["scores_2d", "mask"], "masked", &[]),
                node("Softmax", &["masked"], "attention", &[("axis", -1)]),
                node("Unsqueeze", &["attention", "last"], "alpha_3d", &[]),
                node("Mul", &["x", "alpha_3d"], "weighted", &[]),
                node(
                    "ReduceSum",
                    &["weighted", "seq"],
                    "pooled",
                    &[("keepdims", 0)],
                ),
            ],
            initializer: vec![axes("last", -1), axes("seq", 1)],
            input: vec![
                input_info("scores", DataType::Float, &[2, 6, 1]),
                input_info("mask", DataType::Float, &[2, 6]),
                input_info("x", DataType::Float, &[2, 6, 20]),
            ],
            output: outputs(&["attention", "pooled"]),
            ..Default::default()
        }
    }

    /// One node, both outputs as tract's ops give them, bit for bit, padding included
    /// (the mask's -3e4 weighs a token to 0).
    #[test]
    fn the_pooling_tail_runs_fused_with_tract_values() {
        let mut g = graph();
        assert_eq!(fuse_attention_pool(&mut g), 1);
        assert_eq!(g.node.len(), 1);
        assert_eq!(g.node[0].output, ["attention", "pooled"]);
        let tensor3 = |d: usize, seed| {
            tract_ndarray::Array3::from_shape_vec((2, 6, d), values(12 * d, seed, 3.0))
                .unwrap()
                .into_tensor()
        };
        let mut mask = vec![0f32; 12];
        mask[4..6].fill(-3e4);
        let mask = tract_ndarray::Array2::from_shape_vec((2, 6), mask)
            .unwrap()
            .into_tensor();
        let inputs = [tensor3(1, 1), mask, tensor3(20, 2)];
        let fused_plan = plan(&model(g), true);
        assert!(op_names(&fused_plan).contains(&"FusedAttentionPool".to_string()));
        let got = run_all(&fused_plan, &inputs);
        let want = run_all(&plan(&model(graph()), true), &inputs);
        assert_eq!(got, want, "bit for bit");
        let alpha = got[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!(alpha[[0, 4]], 0.0, "a padding token weighs nothing");
        assert!(alpha[[1, 4]] > 0.0);
    }

    /// The weights used by another node, a ReduceSum keeping its axis, a softmax over
    /// another axis: each stays as written.
    #[test]
    fn other_forms_are_left_alone() {
        let mut shared = graph();
        shared.node.push(node("Neg", &["masked"], "neg", &[]));
        shared.output.extend(outputs(&["neg"]));
        let mut kept = graph();
        kept.node[5].attribute[0].i = 1;
        let mut other_axis = graph();
        other_axis.node[2].attribute[0].i = 0;
        for mut other in [shared, kept, other_axis] {
            let before = other.clone();
            assert_eq!(fuse_attention_pool(&mut other), 0);
            assert_eq!(other, before);
        }
    }
}
