//! The n-gram bag (the mean of an n-gram table's rows over the ids that are not padding)
//! as one node.
//!
//! The exporter (`host::export::onnx::ngram_bag`) writes the bag in standard ONNX ops:
//! `real = Cast<f32>(Greater(ids, 0))`, `weight = real / Max(ReduceSum(real, [1]), 1)`,
//! the rows `Gather(table, ids)` (for an int8 table `Cast<f32>(Gather(table_q, ids))`, the
//! weight then multiplied by `Gather(scale, ids)`), and
//! `Squeeze(MatMul(Unsqueeze(weight, [1]), rows), [1])`. tract gathers all `M` rows
//! (padding included) into a `[B, M, d]` tensor, casts it, and packs it for the matmul on
//! every query: ~30 µs of a ~130 µs short query on x86. Here each batch row is one pass
//! over its ids, skipping padding, adding `scale[id]·T[id, :] / max(count, 1)` straight
//! from the (int8 or f32) table.
//!
//! The pattern is replaced in the ONNX protobuf before tract parses it
//! ([`fuse_embedding_bag`]), like the attention core. Only the exact form is taken: the
//! ids a graph input of int64, the table (and scale) initializers, the constants `0`, `1`,
//! axes `[1]`, and no other consumer of any intermediate; anything else stays as it was.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto};
use tract_onnx::tract_hir::internal::*;

use super::graph_index::{fuse_matches, GraphIndex, Match};

/// The op type of the fused node in the rewritten protobuf (never written to a file).
pub const OP_TYPE: &str = "DeviceEmbeddingBag";

/// Replaces every n-gram bag of the graph (see the module doc) by one [`OP_TYPE`] node;
/// returns how many it replaced.
pub fn fuse_embedding_bag(graph: &mut pb::GraphProto) -> usize {
    fuse_matches(graph, match_at)
}

pub(super) fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// `node` has inputs `[_, axes]` with `axes` the constant `[1]` (or `[-1]` on rank 2 for
/// `ReduceSum`, which the caller decides).
pub(super) fn axes_are(g: &GraphIndex, node: &NodeProto, allowed: &[i64]) -> bool {
    node.input.len() == 2
        && g.i64s(&node.input[1])
            .is_some_and(|a| a.len() == 1 && allowed.contains(&a[0]))
}

pub(super) fn casts_to_f32(node: &NodeProto) -> bool {
    node.attribute.len() == 1
        && int_attr(node, "to") == Some(pb::tensor_proto::DataType::Float as i64)
}

/// A `Gather(data, ids)` on axis 0 with `data` an initializer: `(node index, data)`.
pub(super) fn gather_of<'g>(
    g: &GraphIndex<'g>,
    tensor: &str,
    ids: &str,
) -> Option<(usize, &'g pb::TensorProto)> {
    let (ix, n) = g.sole_producer(tensor, "Gather")?;
    let axis_ok =
        n.attribute.iter().all(|a| a.name == "axis") && int_attr(n, "axis").unwrap_or(0) == 0;
    (axis_ok && n.input.len() == 2 && n.input[1] == ids)
        .then(|| g.constants.get(n.input[0].as_str()).map(|t| (ix, *t)))
        .flatten()
}

/// The graph input `name` is int64.
pub(super) fn int64_graph_input(g: &GraphIndex, name: &str) -> bool {
    !g.constants.contains_key(name)
        && g.graph.input.iter().any(|i| {
            i.name == name
                && matches!(
                    i.r#type.as_ref().and_then(|t| t.value.as_ref()),
                    Some(pb::type_proto::Value::TensorType(t))
                        if t.elem_type == pb::tensor_proto::DataType::Int64 as i32
                )
        })
}

fn match_at(g: &GraphIndex, at: usize, squeeze: &NodeProto) -> Option<Match> {
    use pb::tensor_proto::DataType;
    if squeeze.op_type != "Squeeze" || squeeze.output.len() != 1 || !axes_are(g, squeeze, &[1]) {
        return None;
    }
    let (matmul_ix, matmul) = g.sole_producer(&squeeze.input[0], "MatMul")?;
    let [w3, rows] = &matmul.input[..] else {
        return None;
    };
    let (unsq_ix, unsq) = g.sole_producer(w3, "Unsqueeze")?;
    if !axes_are(g, unsq, &[1]) {
        return None;
    }
    let mut removed = vec![at, matmul_ix, unsq_ix];
    // The rows, and the ids they gather; the weight before any row scale.
    let rows_node = &g.graph.node[*g.producer.get(rows.as_str())?];
    let (ids, inputs, weight) = match rows_node.op_type.as_str() {
        "Gather" => {
            let ids = rows_node.input.get(1)?.as_str();
            let (gather_ix, table) = gather_of(g, rows, ids)?;
            let n = *table.dims.first()?;
            if table.data_type != DataType::Float as i32 || table.dims.len() != 2 || n <= 0 {
                return None;
            }
            removed.push(gather_ix);
            (
                ids,
                vec![ids.to_string(), table.name.clone()],
                unsq.input[0].as_str(),
            )
        }
        "Cast" => {
            let (cast_ix, cast) = g.sole_producer(rows, "Cast")?;
            if !casts_to_f32(cast) || cast.input.len() != 1 {
                return None;
            }
            let gathered = &g.graph.node[*g.producer.get(cast.input[0].as_str())?];
            let ids = gathered.input.get(1)?.as_str();
            let (gather_ix, table) = gather_of(g, &cast.input[0], ids)?;
            let n = *table.dims.first()?;
            if table.data_type != DataType::Int8 as i32 || table.dims.len() != 2 || n <= 0 {
                return None;
            }
            // weight = Mul(Div(..), Gather(scale, ids)), in either order.
            let (mul_ix, mul) = g.sole_producer(&unsq.input[0], "Mul")?;
            let [a, b] = &mul.input[..] else {
                return None;
            };
            let (scale_ix, scale, weight) = [(b, a), (a, b)].into_iter().find_map(|(s, w)| {
                let (ix, scale) = gather_of(g, s, ids)?;
                Some((ix, scale, w.as_str()))
            })?;
            if scale.data_type != DataType::Float as i32 || scale.dims != [n] {
                return None;
            }
            removed.extend([cast_ix, gather_ix, mul_ix, scale_ix]);
            let inputs = vec![ids.to_string(), table.name.clone(), scale.name.clone()];
            (ids, inputs, weight)
        }
        _ => return None,
    };
    if !int64_graph_input(g, ids) {
        return None;
    }
    // weight = real / Max(ReduceSum(real, [1], keepdims 1), 1).
    let (div_ix, div) = g.sole_producer(weight, "Div")?;
    let [real, count] = &div.input[..] else {
        return None;
    };
    let (max_ix, max) = g.sole_producer(count, "Max")?;
    let [m0, m1] = &max.input[..] else {
        return None;
    };
    let (sum, one) = if g.f32_scalar(m1) == Some(1.0) {
        (m0, m1)
    } else {
        (m1, m0)
    };
    if g.f32_scalar(one) != Some(1.0) {
        return None;
    }
    let (sum_ix, reduce) = g.sole_producer(sum, "ReduceSum")?;
    let keepdims_only = reduce.attribute.iter().all(|a| a.name == "keepdims");
    if !keepdims_only
        || int_attr(reduce, "keepdims").unwrap_or(1) != 1
        || !axes_are(g, reduce, &[1, -1])
        || &reduce.input[0] != real
    {
        return None;
    }
    // real = Cast<f32>(Greater(ids, 0)), used by the sum and the division alone.
    let cast_ix = *g.producer.get(real.as_str())?;
    let cast = &g.graph.node[cast_ix];
    let mut users = g.consumers.get(real.as_str())?.clone();
    users.sort_unstable();
    let mut want = vec![sum_ix, div_ix];
    want.sort_unstable();
    if cast.op_type != "Cast"
        || !casts_to_f32(cast)
        || cast.input.len() != 1
        || cast.output.len() != 1
        || g.outputs.contains(real.as_str())
        || users != want
    {
        return None;
    }
    let (greater_ix, greater) = g.sole_producer(&cast.input[0], "Greater")?;
    if greater.input.len() != 2
        || greater.input[0] != ids
        || g.i64s(&greater.input[1]).as_deref() != Some(&[0][..])
    {
        return None;
    }
    removed.extend([div_ix, max_ix, sum_ix, cast_ix, greater_ix]);
    let node = NodeProto {
        op_type: OP_TYPE.into(),
        name: squeeze.name.clone(),
        input: inputs,
        output: squeeze.output.clone(),
        ..Default::default()
    };
    Some(Match { at, node, removed })
}

/// The parser of [`OP_TYPE`] nodes.
pub fn parse_embedding_bag(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    ensure!(
        matches!(node.input.len(), 2 | 3),
        "{OP_TYPE}: {} inputs",
        node.input.len()
    );
    Ok((expand(BagExpansion), vec![]))
}

#[derive(Debug, Clone)]
struct BagExpansion;

impl Expansion for BagExpansion {
    fn name(&self) -> StaticName {
        "FusedEmbeddingBag".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if inputs.len() != 3 {
            check_input_arity(inputs, 2)?;
        }
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, DatumType::I64)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[1].rank, 2)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[1].shape[1])?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, FusedEmbeddingBag, inputs)
    }
}

/// `out[b, :] = Σ_{m: ids[b, m] > 0} s[id]·T[id, :] / max(#{m: ids[b, m] > 0}, 1)`:
/// inputs the ids (i64 `[B, M]`), the table (f32 `[N, d]`, or i8 `[N, d]` and its f32
/// row scales `[N]`); out f32 `[B, d]`. An id ≥ N is an error.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedEmbeddingBag;

impl Op for FusedEmbeddingBag {
    fn name(&self) -> StaticName {
        "FusedEmbeddingBag".into()
    }
    op_as_typed_op!();
}

impl EvalOp for FusedEmbeddingBag {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(embedding_bag(&inputs)?.into_tvalue()))
    }
}

/// [`FusedEmbeddingBag`]'s output for its inputs.
fn embedding_bag(inputs: &[TValue]) -> TractResult<Tensor> {
    let (ids, table, scale) = match inputs {
        [ids, table] => (ids, table, None),
        [ids, table, scale] => (ids, table, Some(scale)),
        _ => bail!("FusedEmbeddingBag: {} inputs", inputs.len()),
    };
    let (is, ts) = (ids.shape(), table.shape());
    ensure!(
        is.len() == 2 && ts.len() == 2,
        "FusedEmbeddingBag: ids {is:?}, table {ts:?}"
    );
    let (batch, width, n, d) = (is[0], is[1], ts[0], ts[1]);
    let idv = ids.try_as_plain_ram()?;
    let ids = idv.as_slice::<i64>()?;
    if let Some(&bad) = ids.iter().find(|&&id| id >= n as i64) {
        bail!("FusedEmbeddingBag: id {bad} outside the table 0..{n}");
    }
    let mut out = Tensor::zero::<f32>(&[batch, d])?;
    if d == 0 || width == 0 {
        return Ok(out);
    }
    let tv = table.try_as_plain_ram()?;
    let sv = scale.map(|s| s.try_as_plain_ram()).transpose()?;
    let scales = sv.as_ref().map(|s| s.as_slice::<f32>()).transpose()?;
    if let Some(s) = scales {
        ensure!(
            s.len() == n,
            "FusedEmbeddingBag: {} scales for {n} rows",
            s.len()
        );
    }
    {
        let mut plain = out.try_as_plain_ram_mut()?;
        let out = plain.as_slice_mut::<f32>()?;
        for (row, acc) in ids.chunks_exact(width).zip(out.chunks_exact_mut(d)) {
            let count = row.iter().filter(|&&id| id > 0).count();
            // As the exported graph: weight = 1 / max(count, 1) (times the row scale).
            let inv = 1.0 / (count as f32).max(1.0);
            let real = row.iter().filter(|&&id| id > 0).map(|&id| id as usize);
            match scales {
                Some(s) => {
                    let t = tv.as_slice::<i8>()?;
                    for id in real {
                        add_row_i8(acc, &t[id * d..][..d], inv * s[id]);
                    }
                }
                None => {
                    let t = tv.as_slice::<f32>()?;
                    for id in real {
                        add_row_f32(acc, &t[id * d..][..d], inv);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `acc += w · row`.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn add_row_i8(acc: &mut [f32], row: &[i8], w: f32) {
    for (a, &v) in acc.iter_mut().zip(row) {
        *a += w * f32::from(v);
    }
}

/// `acc += w · row`.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn add_row_f32(acc: &mut [f32], row: &[f32], w: f32) {
    for (a, &v) in acc.iter_mut().zip(row) {
        *a += w * v;
    }
}

impl TypedOp for FusedEmbeddingBag {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            matches!(inputs.len(), 2 | 3),
            "FusedEmbeddingBag takes the ids, the table and (int8) its scales"
        );
        let (ids, table) = (inputs[0], inputs[1]);
        ensure!(
            ids.datum_type == DatumType::I64 && ids.rank() == 2 && table.rank() == 2,
            "FusedEmbeddingBag: ids {ids:?}, table {table:?}"
        );
        match inputs.get(2) {
            None => ensure!(
                table.datum_type == DatumType::F32,
                "f32 table without scales"
            ),
            Some(scale) => ensure!(
                table.datum_type == DatumType::I8
                    && scale.datum_type == DatumType::F32
                    && scale.rank() == 1,
                "FusedEmbeddingBag: int8 table {table:?} with scales {scale:?}"
            ),
        }
        Ok(tvec!(f32::fact([
            ids.shape[0].clone(),
            table.shape[1].clone()
        ])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let macs =
            inputs[0].shape[0].clone() * inputs[0].shape[1].clone() * inputs[1].shape[1].clone();
        Ok(tvec!((Cost::FMA(DatumType::F32), macs)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        f32_initializer, f32_scalar, input_info, node, outputs, raw_initializer,
    };
    use pb::tensor_proto::DataType;

    const N: i64 = 10;
    const D: i64 = 6;

    /// The exporter's float bag on `ngram_ids` `[2, 5]`, its mean the graph output.
    fn graph() -> pb::GraphProto {
        let float = [("to", DataType::Float as i64)];
        pb::GraphProto {
            node: vec![
                node("Greater", &["ngram_ids", "zero"], "real_b", &[]),
                node("Cast", &["real_b"], "real", &float),
                node("ReduceSum", &["real", "axes"], "count", &[("keepdims", 1)]),
                node("Max", &["count", "one"], "count_1", &[]),
                node("Div", &["real", "count_1"], "weight", &[]),
                node("Gather", &["table", "ngram_ids"], "rows", &[("axis", 0)]),
                node("Unsqueeze", &["weight", "axes"], "w3", &[]),
                node("MatMul", &["w3", "rows"], "sum", &[]),
                node("Squeeze", &["sum", "axes"], "mean", &[]),
            ],
            initializer: vec![
                f32_initializer("table", &[N, D], 1),
                raw_initializer("zero", &[], DataType::Int64, 0i64.to_le_bytes().to_vec()),
                raw_initializer("axes", &[1], DataType::Int64, 1i64.to_le_bytes().to_vec()),
                f32_scalar("one", 1.0),
            ],
            input: vec![input_info("ngram_ids", DataType::Int64, &[2, 5])],
            output: outputs(&["mean"]),
            ..Default::default()
        }
    }

    #[test]
    fn the_exact_form_is_fused_and_any_other_left_alone() {
        let mut g = graph();
        assert_eq!(fuse_embedding_bag(&mut g), 1);
        assert_eq!(g.node.len(), 1);
        assert_eq!(g.node[0].op_type, OP_TYPE);
        assert_eq!(g.node[0].input, ["ngram_ids", "table"]);
        assert_eq!(g.node[0].output, ["mean"]);

        // Padding compared against 1, a second user of the weights, the ids an
        // initializer: each stays as written.
        let mut one = graph();
        one.node[0].input[1] = "axes".into();
        let mut shared = graph();
        shared.output.extend(outputs(&["weight"]));
        let mut constant = graph();
        constant.input.clear();
        constant.initializer.push(raw_initializer(
            "ngram_ids",
            &[2, 5],
            DataType::Int64,
            vec![0; 80],
        ));
        for mut other in [one, shared, constant] {
            let before = other.clone();
            assert_eq!(fuse_embedding_bag(&mut other), 0);
            assert_eq!(other, before);
        }
    }

    fn run(inputs: TVec<TValue>) -> TractResult<Vec<f32>> {
        let out = embedding_bag(&inputs)?;
        Ok(out.to_plain_array_view::<f32>()?.iter().copied().collect())
    }

    #[test]
    fn rows_are_means_of_the_real_ids_and_out_of_table_ids_are_errors() {
        let q = tensor2(&[[1i8, -2], [3, 4], [-5, 6]]);
        let s = tensor1(&[0.5f32, 0.25, 2.0]);
        let ids = tensor2(&[[1i64, 0, 2, 0], [0, 0, 0, 0]]);
        let y = run(tvec!(
            ids.into_tvalue(),
            q.clone().into_tvalue(),
            s.clone().into_tvalue()
        ))
        .unwrap();
        let want = [(0.75 - 10.0) / 2.0, (1.0 + 12.0) / 2.0, 0.0, 0.0];
        assert_eq!(y, want);
        let bad = tensor2(&[[1i64, 3, 0, 0]]);
        let err = run(tvec!(bad.into_tvalue(), q.into_tvalue(), s.into_tvalue())).unwrap_err();
        assert!(
            err.to_string().contains("id 3 outside the table 0..3"),
            "{err}"
        );
    }
}
