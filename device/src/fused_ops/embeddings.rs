//! The encoder's input embeddings (a word row per token plus a position row per place,
//! then LayerNorm) as one node.
//!
//! The exporter (`host::export::onnx::embeddings`) writes them in standard ONNX ops: the
//! word rows `Gather(table, input_ids)` (for an int8 table `Cast<f32>(Gather(table_q, ids))`
//! times `Unsqueeze(Gather(scale, ids), [2])`), the position ids
//! `Range(0, Gather(Shape(input_ids), 1), 1)` and their rows the same way (`Unsqueeze` on
//! `[1]`), `Add`, and `LayerNormalization`. tract runs that as 6 nodes for a float model
//! and 13 for an int8 one, each with its own output tensor: about a seventh of a short
//! int8 query of the tiny preset in nodes that move a few kilobytes. Here each token's row
//! is built and normalised in one pass, with the same arithmetic in the same order (the
//! int8 value times its row scale, word plus position, then the device's LayerNorm row), so
//! every result stays the same.
//!
//! The pattern is replaced in the ONNX protobuf before tract parses it
//! ([`fuse_embeddings`]), like the n-gram bag. Only the exact form is taken: the ids an
//! int64 graph input, the tables, scales, LayerNorm weights and constants initializers,
//! both tables float or both int8, and no other consumer of any intermediate; anything
//! else stays as it was.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto};
use tract_onnx::tract_hir::internal::*;

use super::embedding_bag::{casts_to_f32, gather_of, int64_graph_input};
use super::graph_index::{fuse_matches, GraphIndex, Match};

/// The op type of the fused node in the rewritten protobuf (never written to a file).
pub const OP_TYPE: &str = "DeviceEmbeddings";

/// Replaces the embeddings of the graph (see the module doc) by one [`OP_TYPE`] node;
/// returns how many it replaced.
pub fn fuse_embeddings(graph: &mut pb::GraphProto) -> usize {
    fuse_matches(graph, match_at)
}

/// One table's rows gathered by `ids`: the table (and for int8 its row scales), and the
/// nodes that compute them.
struct Rows {
    ids: String,
    inputs: Vec<String>,
    nodes: Vec<usize>,
}

/// `tensor` as the exporter's `gather_rows` of a `[N, d]` table by ids of rank `rank`.
fn rows_of(g: &GraphIndex, tensor: &str, rank: i64) -> Option<Rows> {
    use pb::tensor_proto::DataType;
    let ix = *g.producer.get(tensor)?;
    let node = &g.graph.node[ix];
    if node.op_type == "Gather" {
        let ids = node.input.get(1)?.clone();
        let (ix, table) = gather_of(g, tensor, &ids)?;
        let float = table.data_type == DataType::Float as i32 && table.dims.len() == 2;
        return float.then(|| Rows {
            ids,
            inputs: vec![table.name.clone()],
            nodes: vec![ix],
        });
    }
    // Mul(Cast<f32>(Gather(q, ids)), Unsqueeze(Gather(scale, ids), [rank])), either order.
    let (mul_ix, mul) = g.sole_producer(tensor, "Mul")?;
    let [a, b] = &mul.input[..] else {
        return None;
    };
    [(a, b), (b, a)].into_iter().find_map(|(rows, scales)| {
        let (cast_ix, cast) = g.sole_producer(rows, "Cast")?;
        if !casts_to_f32(cast) || cast.input.len() != 1 {
            return None;
        }
        let q_node = &g.graph.node[*g.producer.get(cast.input[0].as_str())?];
        let ids = q_node.input.get(1)?.clone();
        let (q_ix, q) = gather_of(g, &cast.input[0], &ids)?;
        let (unsq_ix, unsq) = g.sole_producer(scales, "Unsqueeze")?;
        let axes_ok = unsq.input.len() == 2 && g.i64s(&unsq.input[1]).as_deref() == Some(&[rank]);
        if !axes_ok {
            return None;
        }
        let (s_ix, s) = gather_of(g, &unsq.input[0], &ids)?;
        let n = *q.dims.first()?;
        let int8 = q.data_type == DataType::Int8 as i32
            && q.dims.len() == 2
            && s.data_type == DataType::Float as i32
            && s.dims == [n];
        int8.then(|| Rows {
            ids,
            inputs: vec![q.name.clone(), s.name.clone()],
            nodes: vec![mul_ix, cast_ix, q_ix, unsq_ix, s_ix],
        })
    })
}

/// `Range(0, Gather(Shape(ids), 1), 1)`: the nodes, with `ids` the shaped tensor.
fn positions_of(g: &GraphIndex, position_ids: &str, ids: &str) -> Option<Vec<usize>> {
    let range_ix = *g.producer.get(position_ids)?;
    let range = &g.graph.node[range_ix];
    let [start, limit, delta] = &range.input[..] else {
        return None;
    };
    if range.op_type != "Range"
        || g.i64s(start).as_deref() != Some(&[0])
        || g.i64s(delta).as_deref() != Some(&[1])
    {
        return None;
    }
    let (seq_ix, seq) = g.sole_producer(limit, "Gather")?;
    let axis0 = seq.attribute.iter().all(|a| a.name == "axis" && a.i == 0);
    if !axis0 || seq.input.len() != 2 || g.i64s(&seq.input[1]).as_deref() != Some(&[1]) {
        return None;
    }
    let (shape_ix, shape) = g.sole_producer(&seq.input[0], "Shape")?;
    (shape.attribute.is_empty() && shape.input.len() == 1 && shape.input[0] == ids)
        .then_some(vec![range_ix, seq_ix, shape_ix])
}

fn match_at(g: &GraphIndex, at: usize, ln: &NodeProto) -> Option<Match> {
    if ln.op_type != "LayerNormalization" || ln.output.len() != 1 || ln.input.len() != 3 {
        return None;
    }
    let axis_last = ln
        .attribute
        .iter()
        .all(|a| (a.name == "axis" && a.i == -1) || a.name == "epsilon");
    let d = g.f32_vector_len(&ln.input[1])?;
    if !axis_last || g.f32_vector_len(&ln.input[2]) != Some(d) {
        return None;
    }
    let (add_ix, add) = g.sole_producer(&ln.input[0], "Add")?;
    let [a, b] = &add.input[..] else {
        return None;
    };
    let (words, positions) = [(a, b), (b, a)].into_iter().find_map(|(w, p)| {
        let words = rows_of(g, w, 2)?;
        let positions = rows_of(g, p, 1)?;
        (words.inputs.len() == positions.inputs.len()).then_some((words, positions))
    })?;
    if !int64_graph_input(g, &words.ids) {
        return None;
    }
    let range = positions_of(g, &positions.ids, &words.ids)?;
    // The position ids feed only their gathers.
    let mut users = g.consumers.get(positions.ids.as_str())?.clone();
    users.sort_unstable();
    let mut gathers: Vec<usize> = positions
        .nodes
        .iter()
        .copied()
        .filter(|&ix| g.graph.node[ix].op_type == "Gather")
        .collect();
    gathers.sort_unstable();
    if users != gathers || g.outputs.contains(positions.ids.as_str()) {
        return None;
    }
    let mut removed = vec![at, add_ix];
    removed.extend(words.nodes);
    removed.extend(positions.nodes);
    removed.extend(range);
    let mut input = vec![words.ids];
    input.extend(words.inputs);
    input.extend(positions.inputs);
    input.extend([ln.input[1].clone(), ln.input[2].clone()]);
    let node = NodeProto {
        op_type: OP_TYPE.into(),
        name: ln.name.clone(),
        input,
        output: ln.output.clone(),
        attribute: ln
            .attribute
            .iter()
            .filter(|a| a.name == "epsilon")
            .cloned()
            .collect(),
        ..Default::default()
    };
    Some(Match { at, node, removed })
}

/// The parser of [`OP_TYPE`] nodes.
pub fn parse_embeddings(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    ensure!(
        matches!(node.input.len(), 5 | 7),
        "{OP_TYPE}: {} inputs",
        node.input.len()
    );
    let epsilon: f32 = node.get_attr_opt("epsilon")?.unwrap_or(1e-5);
    Ok((expand(EmbeddingsExpansion { epsilon }), vec![]))
}

#[derive(Debug, Clone)]
struct EmbeddingsExpansion {
    epsilon: f32,
}

impl Expansion for EmbeddingsExpansion {
    fn name(&self) -> StaticName {
        "FusedEmbeddings".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if inputs.len() != 7 {
            check_input_arity(inputs, 5)?;
        }
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, DatumType::I64)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[1].rank, 2)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 3)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[0].shape[1])?;
        s.equals(&outputs[0].shape[2], &inputs[1].shape[1])?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let op = FusedEmbeddings {
            epsilon: self.epsilon.to_bits(),
        };
        model.wire_node(prefix, op, inputs)
    }
}

/// `out[b, t, :] = LayerNorm(W[ids[b, t], :] + P[t, :])`: inputs the ids (i64 `[B, S]`),
/// the word table and the position table (each f32 `[N, d]`, or i8 `[N, d]` followed by its
/// f32 row scales `[N]`, a row being `scale[r] · T[r, :]`), and LayerNorm's scale and bias
/// (`[d]`); out f32 `[B, S, d]`. An id outside the word table, or more places than the
/// position table has rows, is an error.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedEmbeddings {
    /// LayerNorm's ε, as f32 bits (so the op is `Eq` and `Hash`).
    pub epsilon: u32,
}

impl Op for FusedEmbeddings {
    fn name(&self) -> StaticName {
        "FusedEmbeddings".into()
    }
    op_as_typed_op!();
}

impl EvalOp for FusedEmbeddings {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(self.embed(&inputs)?.into_tvalue()))
    }
}

/// A table's rows: f32, or int8 with a scale per row.
enum Table<'a> {
    F32(&'a [f32]),
    I8(&'a [i8], &'a [f32]),
}

impl Table<'_> {
    /// `out[i] = row r of the table`, as the exported graph computes it.
    #[inline]
    fn row_into(&self, r: usize, out: &mut [f32]) {
        let d = out.len();
        match self {
            Table::F32(t) => out.copy_from_slice(&t[r * d..][..d]),
            Table::I8(t, s) => {
                let s = s[r];
                for (o, &v) in out.iter_mut().zip(&t[r * d..][..d]) {
                    *o = f32::from(v) * s;
                }
            }
        }
    }

    /// `out[i] += row r of the table`.
    #[inline]
    fn add_row(&self, r: usize, out: &mut [f32]) {
        let d = out.len();
        match self {
            Table::F32(t) => {
                for (o, &v) in out.iter_mut().zip(&t[r * d..][..d]) {
                    *o += v;
                }
            }
            Table::I8(t, s) => {
                let s = s[r];
                for (o, &v) in out.iter_mut().zip(&t[r * d..][..d]) {
                    *o += f32::from(v) * s;
                }
            }
        }
    }
}

impl FusedEmbeddings {
    fn embed(&self, inputs: &[TValue]) -> TractResult<Tensor> {
        let int8 = match inputs.len() {
            5 => false,
            7 => true,
            n => bail!("FusedEmbeddings: {n} inputs"),
        };
        let ids = &inputs[0];
        let (words, positions) = if int8 {
            (&inputs[1..3], &inputs[3..5])
        } else {
            (&inputs[1..2], &inputs[2..3])
        };
        let (scale, bias) = (&inputs[inputs.len() - 2], &inputs[inputs.len() - 1]);
        let (is, ws, ps) = (ids.shape(), words[0].shape(), positions[0].shape());
        ensure!(
            is.len() == 2 && ws.len() == 2 && ps.len() == 2 && ws[1] == ps[1],
            "FusedEmbeddings: ids {is:?}, word table {ws:?}, position table {ps:?}"
        );
        let (batch, seq, n, d) = (is[0], is[1], ws[0], ws[1]);
        ensure!(
            seq <= ps[0],
            "FusedEmbeddings: {seq} tokens but {} positions",
            ps[0]
        );
        let idv = ids.try_as_plain_ram()?;
        let ids = idv.as_slice::<i64>()?;
        if let Some(&bad) = ids.iter().find(|&&id| id < 0 || id >= n as i64) {
            bail!("FusedEmbeddings: id {bad} outside the word table 0..{n}");
        }
        let views: Vec<_> = inputs[1..inputs.len() - 2]
            .iter()
            .map(|t| t.try_as_plain_ram())
            .collect::<TractResult<_>>()?;
        let table = |i: usize, rows: usize| -> TractResult<Table> {
            if !int8 {
                return Ok(Table::F32(views[i].as_slice::<f32>()?));
            }
            let (t, s) = (
                views[2 * i].as_slice::<i8>()?,
                views[2 * i + 1].as_slice::<f32>()?,
            );
            ensure!(
                s.len() == rows,
                "FusedEmbeddings: {} row scales for {rows} rows",
                s.len()
            );
            Ok(Table::I8(t, s))
        };
        let (words, positions) = (table(0, n)?, table(1, ps[0])?);
        let (sv, bv) = (scale.try_as_plain_ram()?, bias.try_as_plain_ram()?);
        let (scale, bias) = (sv.as_slice::<f32>()?, bv.as_slice::<f32>()?);
        ensure!(
            scale.len() == d && bias.len() == d,
            "FusedEmbeddings: LayerNorm of {} and {} values for rows of {d}",
            scale.len(),
            bias.len()
        );
        let epsilon = f32::from_bits(self.epsilon);
        // SAFETY: every element is written below (each row by `row_into`) before it is read.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&[batch, seq, d])? };
        if d > 0 {
            let mut plain = out.try_as_plain_ram_mut()?;
            let rows = plain.as_slice_mut::<f32>()?.chunks_exact_mut(d);
            for (i, (row, &id)) in rows.zip(ids).enumerate() {
                words.row_into(id as usize, row);
                positions.add_row(i % seq, row);
                super::layer_norm_row(row, scale, Some(bias), epsilon);
            }
        }
        Ok(out)
    }
}

impl TypedOp for FusedEmbeddings {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            matches!(inputs.len(), 5 | 7),
            "FusedEmbeddings takes the ids, two tables (int8: each with its scales), scale and bias"
        );
        let (ids, words) = (inputs[0], inputs[1]);
        ensure!(
            ids.datum_type == DatumType::I64 && ids.rank() == 2 && words.rank() == 2,
            "FusedEmbeddings: ids {ids:?}, word table {words:?}"
        );
        let table_type = if inputs.len() == 7 {
            DatumType::I8
        } else {
            DatumType::F32
        };
        ensure!(
            words.datum_type == table_type,
            "FusedEmbeddings: a {:?} word table with {} inputs",
            words.datum_type,
            inputs.len()
        );
        Ok(tvec!(f32::fact([
            ids.shape[0].clone(),
            ids.shape[1].clone(),
            words.shape[1].clone()
        ])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let n =
            inputs[0].shape[0].clone() * inputs[0].shape[1].clone() * inputs[1].shape[1].clone();
        Ok(tvec!((Cost::FMA(DatumType::F32), n)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        f32_initializer, input_info, model, node, op_names, outputs, plan, raw_initializer,
        run_all, values,
    };
    use pb::tensor_proto::DataType;

    const N: i64 = 11;
    const P: i64 = 9;
    const D: i64 = 24;

    fn i64s(name: &str, dims: &[i64], v: &[i64]) -> pb::TensorProto {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        raw_initializer(name, dims, DataType::Int64, bytes)
    }

    /// The exporter's embeddings of `input_ids` `[2, 7]` (int8 tables or float ones),
    /// normalised, the graph output.
    fn graph(int8: bool) -> pb::GraphProto {
        let float = [("to", DataType::Float as i64)];
        let axis0 = [("axis", 0)];
        let mut nodes = vec![];
        let mut inits = vec![
            i64s("zero", &[], &[0]),
            i64s("one", &[], &[1]),
            i64s("axes2", &[1], &[2]),
            i64s("axes1", &[1], &[1]),
            f32_initializer("gamma", &[D], 5),
            f32_initializer("beta", &[D], 6),
        ];
        nodes.push(node("Shape", &["input_ids"], "shape", &[]));
        nodes.push(node("Gather", &["shape", "one"], "seq", &axis0));
        nodes.push(node("Range", &["zero", "seq", "one"], "pos_ids", &[]));
        for (t, ids, rows, axes, seed) in [
            ("wt", "input_ids", N, "axes2", 1),
            ("pt", "pos_ids", P, "axes1", 2),
        ] {
            let out = format!("{t}_rows");
            if int8 {
                let q: Vec<u8> = values((rows * D) as usize, seed, 127.9)
                    .into_iter()
                    .map(|v| v as i8 as u8)
                    .collect();
                inits.push(raw_initializer(
                    &format!("{t}_q"),
                    &[rows, D],
                    DataType::Int8,
                    q,
                ));
                let mut s = f32_initializer(&format!("{t}_s"), &[rows], seed + 10);
                s.float_data
                    .iter_mut()
                    .for_each(|v| *v = v.abs() * 0.01 + 1e-3);
                inits.push(s);
                nodes.extend([
                    node(
                        "Gather",
                        &[&format!("{t}_q"), ids],
                        &format!("{t}_gq"),
                        &axis0,
                    ),
                    node("Cast", &[&format!("{t}_gq")], &format!("{t}_f"), &float),
                    node(
                        "Gather",
                        &[&format!("{t}_s"), ids],
                        &format!("{t}_gs"),
                        &axis0,
                    ),
                    node(
                        "Unsqueeze",
                        &[&format!("{t}_gs"), axes],
                        &format!("{t}_col"),
                        &[],
                    ),
                    node("Mul", &[&format!("{t}_f"), &format!("{t}_col")], &out, &[]),
                ]);
            } else {
                inits.push(f32_initializer(t, &[rows, D], seed));
                nodes.push(node("Gather", &[t, ids], &out, &axis0));
            }
        }
        nodes.push(node("Add", &["wt_rows", "pt_rows"], "sum", &[]));
        let mut ln = node(
            "LayerNormalization",
            &["sum", "gamma", "beta"],
            "y",
            &[("axis", -1)],
        );
        ln.attribute.push(pb::AttributeProto {
            name: "epsilon".into(),
            r#type: pb::attribute_proto::AttributeType::Float as i32,
            f: 1e-12,
            ..Default::default()
        });
        nodes.push(ln);
        pb::GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![input_info("input_ids", DataType::Int64, &[2, 7])],
            output: outputs(&["y"]),
            ..Default::default()
        }
    }

    fn ids(v: &[i64]) -> Tensor {
        tract_ndarray::Array2::from_shape_vec((2, 7), v.to_vec())
            .unwrap()
            .into_tensor()
    }

    /// Both forms become one node with tract's values, bit for bit; the fused op refuses
    /// an id outside the table.
    #[test]
    fn embeddings_run_fused_with_tract_values() {
        let x = ids(&[1, 5, 10, 0, 3, 3, 7, 2, 9, 4, 0, 0, 6, 8]);
        for int8 in [false, true] {
            let g = graph(int8);
            let mut fused = g.clone();
            assert_eq!(fuse_embeddings(&mut fused), 1, "int8: {int8}");
            assert_eq!(fused.node.len(), 1);
            assert_eq!(fused.node[0].op_type, OP_TYPE);
            let fused_plan = plan(&model(fused), true);
            assert_eq!(
                op_names(&fused_plan)
                    .iter()
                    .filter(|n| *n == "FusedEmbeddings")
                    .count(),
                1
            );
            let got = run_all(&fused_plan, std::slice::from_ref(&x));
            let want = run_all(&plan(&model(g), true), std::slice::from_ref(&x));
            assert_eq!(got, want, "int8: {int8}: bit for bit");
            let y = got[0].to_plain_array_view::<f32>().unwrap();
            assert!(y.iter().any(|v| v.abs() > 0.5), "not vacuous");

            let bad = ids(&[1, 5, 10, 0, 3, 3, N, 2, 9, 4, 0, 0, 6, 8]);
            let err = fused_plan.run(tvec!(bad.into_tvalue())).unwrap_err();
            assert!(
                format!("{err:?}").contains("id 11 outside the word table 0..11"),
                "{err:?}"
            );
        }
    }

    /// A second user of an intermediate, position ids from elsewhere, a float word table
    /// with int8 positions: each stays as written.
    #[test]
    fn other_forms_are_left_alone() {
        let mut shared = graph(false);
        shared.output.extend(outputs(&["sum"]));
        let mut offset = graph(false);
        offset.initializer.push(i64s("two", &[], &[2]));
        offset.node[2].input[0] = "two".into();
        let mut mixed = graph(true);
        let float_words = graph(false);
        mixed.node.retain(|n| !n.output[0].starts_with("wt_"));
        mixed.node.insert(
            3,
            float_words
                .node
                .iter()
                .find(|n| n.output[0] == "wt_rows")
                .unwrap()
                .clone(),
        );
        mixed.initializer.push(
            float_words
                .initializer
                .iter()
                .find(|t| t.name == "wt")
                .unwrap()
                .clone(),
        );
        for mut other in [shared, offset, mixed] {
            let before = other.clone();
            assert_eq!(fuse_embeddings(&mut other), 0);
            assert_eq!(other, before);
        }
    }
}
