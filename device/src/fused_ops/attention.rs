//! Multi-head self-attention as one node.
//!
//! The exporter writes attention in standard ONNX ops: the Q, K and V projections reshaped
//! to heads and transposed, `MatMul(Q, Kᵀ)`, `Div` by √d, `Add` of the key mask, `Softmax`,
//! `MatMul(·, V)`, and a transpose and reshape merging the heads. tract runs the two
//! products as batched f32 matmuls and re-packs all four operands on every query: per-node
//! profiles of MiniLM-L6 int8-compute (AVX2 core, 14 tokens) gave 15-21 µs per pack, four
//! per layer, for a few thousand multiply-adds each; with the axis moves and the softmax the
//! attention core took ~0.7 ms of a 4.5 ms query. Here, per head, Kᵀ is written once into
//! a scratch block and every query row runs scores, scale, mask, softmax and the weighted
//! sum of V on contiguous rows.
//!
//! The pattern is replaced in the ONNX protobuf before tract parses it ([`fuse_attention`]),
//! so the file stays standard (onnxruntime runs it as written) and tract never sees the
//! pieces. Only the exact form is taken: heads split by `Reshape [0, 0, h, d]` and
//! transposed `[0, 2, 1, 3]` (K: `[0, 2, 3, 1]`), a scalar f32 divisor, a last-axis
//! Softmax, the merge `Transpose [0, 2, 1, 3]` + `Reshape [0, 0, h·d]`, and no other
//! consumer of any intermediate; anything else stays as it was.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto};
use tract_onnx::tract_hir::internal::*;

use super::graph_index::{fuse_matches, GraphIndex, Match};
use super::softmax_in_place;

/// The op type of the fused node in the rewritten protobuf (never written to a file).
pub const OP_TYPE: &str = "DeviceFusedAttention";

/// Replaces every attention core of the graph (see the module doc) by one [`OP_TYPE`]
/// node; returns how many it replaced.
pub fn fuse_attention(graph: &mut pb::GraphProto) -> usize {
    fuse_matches(graph, |g, ix, n| g.match_at(ix, n))
}

impl<'g> GraphIndex<'g> {
    /// `Transpose(Reshape(x, [0, 0, h, d]), perm)` with a sole consumer chain: `(x, h, d)` and
    /// the two nodes, removable.
    fn heads(&self, tensor: &str, perm: &[i64]) -> Option<(&'g str, i64, i64, [usize; 2])> {
        let (t_ix, t) = self.sole_producer(tensor, "Transpose")?;
        if ints_attr(t, "perm")? != perm {
            return None;
        }
        let (r_ix, r) = self.sole_producer(t.input.first()?, "Reshape")?;
        if !zero_copies_dim(r) {
            return None;
        }
        let (x, shape) = (r.input.first()?, r.input.get(1)?);
        match self.i64s(shape)?[..] {
            [0, 0, h, d] if h > 0 && d > 0 && r.input.len() == 2 => {
                Some((x.as_str(), h, d, [t_ix, r_ix]))
            }
            _ => None,
        }
    }

    /// The attention core whose Softmax is node `ix`, if it is one.
    fn match_at(&self, ix: usize, softmax: &'g NodeProto) -> Option<Match> {
        if softmax.op_type != "Softmax" || softmax.input.len() != 1 || softmax.output.len() != 1 {
            return None;
        }
        if !matches!(softmax.get_attr_opt::<i64>("axis").ok()?, Some(-1 | 3)) {
            return None;
        }
        let (add_ix, add) = self.sole_producer(&softmax.input[0], "Add")?;
        let (div_at, mask) = match &add.input[..] {
            [a, b] if self.sole_producer(a, "Div").is_some() => (a, b),
            [a, b] if self.sole_producer(b, "Div").is_some() => (b, a),
            _ => return None,
        };
        let (div_ix, div) = self.sole_producer(div_at, "Div")?;
        let [scores, divisor] = &div.input[..] else {
            return None;
        };
        let divisor = self.f32_scalar(divisor)?;
        let (qk_ix, qk) = self.sole_producer(scores, "MatMul")?;
        let [q_t, k_t] = &qk.input[..] else {
            return None;
        };
        let (q, h, d, q_nodes) = self.heads(q_t, &[0, 2, 1, 3])?;
        let (k, hk, dk, k_nodes) = self.heads(k_t, &[0, 2, 3, 1])?;
        let (pv_ix, pv) = self.sole_consumer(&softmax.output[0], "MatMul")?;
        let [probs, v_t] = &pv.input[..] else {
            return None;
        };
        if probs != &softmax.output[0] {
            return None;
        }
        let (v, hv, dv, v_nodes) = self.heads(v_t, &[0, 2, 1, 3])?;
        let (t_ix, t) = self.sole_consumer(&pv.output[0], "Transpose")?;
        if ints_attr(t, "perm")? != [0, 2, 1, 3] {
            return None;
        }
        let (merge_ix, merge) = self.sole_consumer(&t.output[0], "Reshape")?;
        if merge.input.len() != 2
            || !zero_copies_dim(merge)
            || self.i64s(&merge.input[1])? != [0, 0, h * d]
        {
            return None;
        }
        if (hk, dk) != (h, d) || (hv, dv) != (h, d) {
            return None;
        }
        let attr_int = |name: &str, i: i64| pb::AttributeProto {
            name: name.into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i,
            ..Default::default()
        };
        let node = NodeProto {
            op_type: OP_TYPE.into(),
            name: pv.name.clone(),
            input: vec![q.into(), k.into(), v.into(), mask.clone()],
            output: merge.output.clone(),
            attribute: vec![
                attr_int("heads", h),
                attr_int("head_dim", d),
                pb::AttributeProto {
                    name: "divisor".into(),
                    r#type: pb::attribute_proto::AttributeType::Float as i32,
                    f: divisor,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut removed = vec![ix, add_ix, div_ix, qk_ix, pv_ix, t_ix];
        removed.extend(q_nodes.into_iter().chain(k_nodes).chain(v_nodes));
        Some(Match {
            at: merge_ix,
            node,
            removed,
        })
    }
}

/// Whether a `Reshape`'s 0 means "keep this dimension" (`allowzero` absent or 0), as the
/// pattern needs; with `allowzero = 1` it is a literal 0.
fn zero_copies_dim(reshape: &NodeProto) -> bool {
    reshape
        .attribute
        .iter()
        .find(|a| a.name == "allowzero")
        .is_none_or(|a| a.i == 0)
}

fn ints_attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| &a.ints[..])
}

/// The parser of [`OP_TYPE`] nodes.
pub fn parse_fused_attention(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let heads: i64 = node.get_attr("heads")?;
    let head_dim: i64 = node.get_attr("head_dim")?;
    let divisor: f32 = node.get_attr("divisor")?;
    ensure!(
        heads > 0 && head_dim > 0,
        "heads {heads}, head_dim {head_dim}"
    );
    Ok((
        expand(AttentionExpansion {
            heads: heads as usize,
            head_dim: head_dim as usize,
            divisor,
        }),
        vec![],
    ))
}

#[derive(Debug, Clone)]
struct AttentionExpansion {
    heads: usize,
    head_dim: usize,
    divisor: f32,
}

impl Expansion for AttentionExpansion {
    fn name(&self) -> StaticName {
        "FusedAttention".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 4)?;
        check_output_arity(outputs, 1)?;
        for input in &inputs[1..] {
            s.equals(&inputs[0].datum_type, &input.datum_type)?;
        }
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        s.equals(&inputs[0].rank, 3)?;
        s.equals(&inputs[3].rank, 4)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let op = FusedAttention {
            heads: self.heads,
            head_dim: self.head_dim,
            divisor_bits: self.divisor.to_bits(),
        };
        // Other float types run in f32 between casts.
        super::wire_in_f32(model, prefix, op, inputs)
    }
}

/// `merge(softmax(Q Kᵀ / divisor + mask) V)` per head; inputs Q, K, V `[b, s, heads·d]`
/// and the additive mask (rank 4, broadcast to `[b, heads, s, s]`), f32.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedAttention {
    pub heads: usize,
    pub head_dim: usize,
    /// The f32 divisor of the scores, as bits (so the op is `Hash` + `Eq`).
    pub divisor_bits: u32,
}

impl Op for FusedAttention {
    fn name(&self) -> StaticName {
        "FusedAttention".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "heads: {}, head_dim: {}, divisor: {}",
            self.heads,
            self.head_dim,
            f32::from_bits(self.divisor_bits)
        )])
    }
    op_as_typed_op!();
}

impl EvalOp for FusedAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [q, k, v, mask] = &inputs[..] else {
            bail!("FusedAttention: {} inputs, expected 4", inputs.len());
        };
        let shape = q.shape();
        ensure!(
            shape.len() == 3 && k.shape() == shape && v.shape() == shape,
            "FusedAttention: Q {:?}, K {:?}, V {:?}",
            shape,
            k.shape(),
            v.shape()
        );
        let (batch, seq, width) = (shape[0], shape[1], shape[2]);
        ensure!(
            width == self.heads * self.head_dim,
            "FusedAttention: rows of {width} for {} heads of {}",
            self.heads,
            self.head_dim
        );
        let full = [batch, self.heads, seq, seq];
        let m = mask.shape();
        ensure!(
            m.len() == 4 && m.iter().zip(&full).all(|(&a, &b)| a == 1 || a == b),
            "FusedAttention: mask {m:?} does not broadcast to {full:?}"
        );
        // Row-major strides of the mask, 0 along the broadcast axes.
        let mut stride = [0usize; 4];
        let mut step = 1;
        for ax in (0..4).rev() {
            stride[ax] = if m[ax] == 1 { 0 } else { step };
            step *= m[ax];
        }
        let (qv, kv, vv, mv) = (
            q.try_as_plain_ram()?,
            k.try_as_plain_ram()?,
            v.try_as_plain_ram()?,
            mask.try_as_plain_ram()?,
        );
        let (q, k, v, mask) = (
            qv.as_slice::<f32>()?,
            kv.as_slice::<f32>()?,
            vv.as_slice::<f32>()?,
            mv.as_slice::<f32>()?,
        );
        let mut out = Tensor::zero::<f32>(shape)?;
        {
            let mut plain = out.try_as_plain_ram_mut()?;
            let out = plain.as_slice_mut::<f32>()?;
            let inv = 1.0 / f32::from_bits(self.divisor_bits);
            let d = self.head_dim;
            // Kᵀ rows padded to whole column blocks (zeros: their scores are dropped): of 8
            // for AVX; of 4 for NEON, whose sums take 4 columns as cheaply (10 keys: 12
            // columns instead of 16).
            let padded = seq.next_multiple_of(if cfg!(target_arch = "aarch64") { 4 } else { 8 });
            let mut k_t = vec![0f32; d * padded];
            let mut scratch = vec![0f32; 2 * padded + d];
            for b in 0..batch {
                let first = b * seq * width;
                for h in 0..self.heads {
                    // Kᵀ of this head: row `e` holds dimension e of every key.
                    for j in 0..seq {
                        let key = &k[first + j * width + h * d..][..d];
                        for (e, &x) in key.iter().enumerate() {
                            k_t[e * padded + j] = x;
                        }
                    }
                    let head = Head {
                        first: first + h * d,
                        width,
                        seq,
                        d,
                        padded,
                        inv,
                        mask_first: b * stride[0] + h * stride[1],
                        mask_row: stride[2],
                        mask_col: stride[3],
                    };
                    attend_head(head, q, &k_t, v, mask, out, &mut scratch);
                }
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FusedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 4,
            "FusedAttention takes Q, K, V and the mask"
        );
        ensure!(
            inputs.iter().all(|f| f.datum_type == DatumType::F32),
            "FusedAttention takes f32"
        );
        ensure!(
            inputs[0].rank() == 3 && inputs[3].rank() == 4,
            "FusedAttention: Q of rank {}, mask of rank {}",
            inputs[0].rank(),
            inputs[3].rank()
        );
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let s = &inputs[0].shape;
        let macs = s[0].clone() * s[1].clone() * s[1].clone() * s[2].clone() * 2;
        Ok(tvec!((Cost::FMA(DatumType::F32), macs)))
    }

    as_op!();
}

/// Where one head of one batch item sits in the `[b, s, heads·d]` inputs and the mask.
#[derive(Clone, Copy)]
struct Head {
    /// Offset of the head's first element (row 0, column h·d).
    first: usize,
    /// Row stride of Q, K, V and the output (heads·d).
    width: usize,
    seq: usize,
    d: usize,
    /// Columns of Kᵀ (seq rounded up to 8).
    padded: usize,
    /// 1 / divisor.
    inv: f32,
    mask_first: usize,
    mask_row: usize,
    mask_col: usize,
}

/// One head: every query row's scores against `k_t` (the head's Kᵀ), scaled and masked,
/// softmax, and the weighted sum of V's rows into `out`. Rows go two at a time so each
/// load of Kᵀ or V feeds two rows and the FMA units see eight independent sums.
/// `scratch` holds `2·padded + d` floats.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn attend_head(
    head: Head,
    q: &[f32],
    k_t: &[f32],
    v: &[f32],
    mask: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
) {
    // Fused multiply-adds where the CPU has them (x86-64 with FMA, every AArch64): Rust
    // never contracts `a += w * m` by itself, and the separate add's latency bounds these
    // sums. Without them `mul_add` would be a libm call per element.
    if multiversion::target::target_cfg_f!(target_feature = "fma") || cfg!(target_arch = "aarch64")
    {
        attend_head_with::<true>(head, q, k_t, v, mask, out, scratch)
    } else {
        attend_head_with::<false>(head, q, k_t, v, mask, out, scratch)
    }
}

#[inline(always)]
fn attend_head_with<const FMA: bool>(
    head: Head,
    q: &[f32],
    k_t: &[f32],
    v: &[f32],
    mask: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let Head {
        first,
        width,
        seq,
        d,
        padded,
        ..
    } = head;
    let (sa, rest) = scratch.split_at_mut(padded);
    let (sb, spare) = rest.split_at_mut(padded);
    let spare = &mut spare[..d];
    let mut i = 0;
    while i < seq {
        let at = first + i * width;
        let pair = i + 1 < seq;
        let qa = &q[at..at + d];
        // A lone last row is computed twice; its copy goes to `spare`.
        let qb = if pair {
            &q[at + width..at + width + d]
        } else {
            qa
        };
        weighted_rows_pair::<FMA>(qa, qb, k_t, 0, padded, sa, sb);
        finish_scores(&head, i, &mut sa[..seq], mask);
        if pair {
            finish_scores(&head, i + 1, &mut sb[..seq], mask);
        }
        let pb = if pair { &sb[..seq] } else { &sa[..seq] };
        let (out_a, out_b) = if pair {
            let (lo, hi) = out.split_at_mut(at + width);
            (&mut lo[at..at + d], &mut hi[..d])
        } else {
            (&mut out[at..at + d], &mut *spare)
        };
        weighted_rows_pair::<FMA>(&sa[..seq], pb, v, first, width, out_a, out_b);
        i += 2;
    }
}

/// Scales row `i`'s raw scores, adds its mask row, and turns them into probabilities.
#[inline(always)]
fn finish_scores(head: &Head, i: usize, row: &mut [f32], mask: &[f32]) {
    let m_at = head.mask_first + i * head.mask_row;
    match head.mask_col {
        // A key mask row (the exporter's `[b, 1, 1, s]`): contiguous, so it vectorises.
        1 => {
            let mask = &mask[m_at..m_at + row.len()];
            for (s, &m) in row.iter_mut().zip(mask) {
                *s = *s * head.inv + m;
            }
        }
        step => {
            for (j, s) in row.iter_mut().enumerate() {
                *s = *s * head.inv + mask[m_at + j * step];
            }
        }
    }
    softmax_in_place(row);
}

/// `out_x[c] = Σ_t x[t] · mat[first + t·stride + c]` for x = a and b: two rows of scores
/// (coefficients = queries, mat = Kᵀ) or of context (coefficients = probabilities, mat =
/// V). Columns in blocks of 32 and 8 summed in registers across all `t`, so each block is
/// stored once; every row of `mat` loaded serves both rows.
#[inline(always)]
fn weighted_rows_pair<const FMA: bool>(
    a: &[f32],
    b: &[f32],
    mat: &[f32],
    first: usize,
    stride: usize,
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: `FMA` is true only where the CPU has FMA, and so AVX (`attend_head`'s
        // AVX2 + FMA clone, chosen at run time, or a build whose target has FMA): all that
        // the intrinsics need.
        unsafe { x86::weighted_rows_pair_fma(a, b, mat, first, stride, out_a, out_b) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if FMA {
        neon::weighted_rows_pair(a, b, mat, first, stride, out_a, out_b);
        return;
    }
    let madd = |w: f32, m: f32, acc: f32| if FMA { w.mul_add(m, acc) } else { w * m + acc };
    let width = out_a.len();
    debug_assert!(a.len() == b.len() && out_b.len() == width);
    let mut c = 0;
    while c + 32 <= width {
        let (mut xa, mut xb) = ([0f32; 32], [0f32; 32]);
        for (t, (&wa, &wb)) in a.iter().zip(b).enumerate() {
            let m = &mat[first + t * stride + c..][..32];
            for l in 0..32 {
                xa[l] = madd(wa, m[l], xa[l]);
                xb[l] = madd(wb, m[l], xb[l]);
            }
        }
        out_a[c..c + 32].copy_from_slice(&xa);
        out_b[c..c + 32].copy_from_slice(&xb);
        c += 32;
    }
    while c + 8 <= width {
        // Two partial sums per row over even and odd t: four independent chains.
        let mut x = [[0f32; 8]; 4];
        let pairs = a.len() / 2;
        for p in 0..pairs {
            let m0 = &mat[first + 2 * p * stride + c..][..8];
            let m1 = &mat[first + (2 * p + 1) * stride + c..][..8];
            let (a0, a1, b0, b1) = (a[2 * p], a[2 * p + 1], b[2 * p], b[2 * p + 1]);
            for l in 0..8 {
                x[0][l] = madd(a0, m0[l], x[0][l]);
                x[1][l] = madd(a1, m1[l], x[1][l]);
                x[2][l] = madd(b0, m0[l], x[2][l]);
                x[3][l] = madd(b1, m1[l], x[3][l]);
            }
        }
        if a.len() % 2 == 1 {
            let t = a.len() - 1;
            let m = &mat[first + t * stride + c..][..8];
            for l in 0..8 {
                x[0][l] = madd(a[t], m[l], x[0][l]);
                x[2][l] = madd(b[t], m[l], x[2][l]);
            }
        }
        for l in 0..8 {
            out_a[c + l] = x[0][l] + x[1][l];
            out_b[c + l] = x[2][l] + x[3][l];
        }
        c += 8;
    }
    column_tail::<FMA>(a, b, mat, first, stride, c, out_a, out_b);
}

/// The columns from `c` on of [`weighted_rows_pair`], one at a time: the tail every form
/// (portable, AVX, NEON) leaves after its vector blocks.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn column_tail<const FMA: bool>(
    a: &[f32],
    b: &[f32],
    mat: &[f32],
    first: usize,
    stride: usize,
    c: usize,
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let madd = |w: f32, m: f32, acc: f32| if FMA { w.mul_add(m, acc) } else { w * m + acc };
    for l in c..out_a.len() {
        let (mut xa, mut xb) = (0f32, 0f32);
        for (t, (&wa, &wb)) in a.iter().zip(b).enumerate() {
            let m = mat[first + t * stride + l];
            xa = madd(wa, m, xa);
            xb = madd(wb, m, xb);
        }
        out_a[l] = xa;
        out_b[l] = xb;
    }
}

/// [`weighted_rows_pair`] in AVX/FMA intrinsics (256-bit float ops only, no AVX2). The
/// portable form is left to LLVM, which on x86-64 kept half of the 8-column block's sums in
/// memory and ran them as scalar multiply-adds (`perf annotate` of the tiny preset's
/// attention). Here every sum is a ymm register: 32-column blocks (context rows: 4 blocks x 2 rows), 16-column blocks (score
/// rows of up to 16 keys: 2 blocks x 2 rows x even/odd `t`), 8-column blocks, then scalar
/// columns. Tiny preset at 16 tokens: ~13 → ~10 µs per attention node.
/// The row sums with NEON registers: each loaded row of `mat` (four lanes at a time) serves
/// both rows by `fmla` by element, the accumulators stay in registers for all `t`. Written
/// out because the portable loop's 32-lane arrays were compiled to loads and stores of the
/// accumulators on every `t`.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    pub(super) fn weighted_rows_pair(
        a: &[f32],
        b: &[f32],
        mat: &[f32],
        first: usize,
        stride: usize,
        out_a: &mut [f32],
        out_b: &mut [f32],
    ) {
        let width = out_a.len();
        assert!(a.len() == b.len() && out_b.len() == width);
        let row = |t: usize, c: usize, n: usize| &mat[first + t * stride + c..][..n];
        let load = |m: &[f32], at: usize| {
            let m = &m[at..at + 4];
            // SAFETY: `m` holds the 4 floats read.
            unsafe { vld1q_f32(m.as_ptr()) }
        };
        let store = |out: &mut [f32], at: usize, v: float32x4_t| {
            let out = &mut out[at..at + 4];
            // SAFETY: `out` holds the 4 floats written.
            unsafe { vst1q_f32(out.as_mut_ptr(), v) }
        };
        // SAFETY (every block below): NEON register arithmetic, part of every AArch64 target.
        let zero = unsafe { vdupq_n_f32(0.0) };
        let mut c = 0;
        while c + 32 <= width {
            let (mut xa, mut xb) = ([zero; 8], [zero; 8]);
            for (t, (&wa, &wb)) in a.iter().zip(b).enumerate() {
                let m = row(t, c, 32);
                for j in 0..8 {
                    let v = load(m, 4 * j);
                    unsafe {
                        xa[j] = vfmaq_n_f32(xa[j], v, wa);
                        xb[j] = vfmaq_n_f32(xb[j], v, wb);
                    }
                }
            }
            for j in 0..8 {
                store(out_a, c + 4 * j, xa[j]);
                store(out_b, c + 4 * j, xb[j]);
            }
            c += 32;
        }
        if width - c == 12 {
            // The scores of 9-12 keys (padded to 12): one pass of three vectors rather than
            // the 8- and 4-column blocks, so each row of `mat` is read once (~40 % fewer
            // instructions per row pair).
            even_odd_block::<3>(a, b, mat, first, stride, c, out_a, out_b);
            c += 12;
        }
        while c + 8 <= width {
            even_odd_block::<2>(a, b, mat, first, stride, c, out_a, out_b);
            c += 8;
        }
        while c + 4 <= width {
            let (mut xa, mut xb) = (zero, zero);
            for (t, (&wa, &wb)) in a.iter().zip(b).enumerate() {
                let v = load(row(t, c, 4), 0);
                unsafe {
                    xa = vfmaq_n_f32(xa, v, wa);
                    xb = vfmaq_n_f32(xb, v, wb);
                }
            }
            store(out_a, c, xa);
            store(out_b, c, xb);
            c += 4;
        }
        super::column_tail::<true>(a, b, mat, first, stride, c, out_a, out_b);
    }

    /// Columns `c..c + 4·V` of [`weighted_rows_pair`] for rows a and b, the even and odd
    /// `t` summed apart: 4·V independent sums, each row of `mat` loaded once for both rows.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn even_odd_block<const V: usize>(
        a: &[f32],
        b: &[f32],
        mat: &[f32],
        first: usize,
        stride: usize,
        c: usize,
        out_a: &mut [f32],
        out_b: &mut [f32],
    ) {
        let row = |t: usize| &mat[first + t * stride + c..][..4 * V];
        let load = |m: &[f32], j: usize| {
            let m = &m[4 * j..4 * j + 4];
            // SAFETY: `m` holds the 4 floats read.
            unsafe { vld1q_f32(m.as_ptr()) }
        };
        // SAFETY (every block below): NEON register arithmetic, part of every AArch64 target.
        let zero = unsafe { vdupq_n_f32(0.0) };
        let (mut ae, mut ao, mut be, mut bo) = ([zero; V], [zero; V], [zero; V], [zero; V]);
        for p in 0..a.len() / 2 {
            let (t0, t1) = (2 * p, 2 * p + 1);
            let (m0, m1) = (row(t0), row(t1));
            for j in 0..V {
                let (v0, v1) = (load(m0, j), load(m1, j));
                unsafe {
                    ae[j] = vfmaq_n_f32(ae[j], v0, a[t0]);
                    be[j] = vfmaq_n_f32(be[j], v0, b[t0]);
                    ao[j] = vfmaq_n_f32(ao[j], v1, a[t1]);
                    bo[j] = vfmaq_n_f32(bo[j], v1, b[t1]);
                }
            }
        }
        if a.len() % 2 == 1 {
            let t = a.len() - 1;
            let m = row(t);
            for j in 0..V {
                let v = load(m, j);
                unsafe {
                    ae[j] = vfmaq_n_f32(ae[j], v, a[t]);
                    be[j] = vfmaq_n_f32(be[j], v, b[t]);
                }
            }
        }
        for j in 0..V {
            let (sa, sb) = unsafe { (vaddq_f32(ae[j], ao[j]), vaddq_f32(be[j], bo[j])) };
            let (oa, ob) = (&mut out_a[c + 4 * j..][..4], &mut out_b[c + 4 * j..][..4]);
            // SAFETY: `oa` and `ob` hold the 4 floats written.
            unsafe {
                vst1q_f32(oa.as_mut_ptr(), sa);
                vst1q_f32(ob.as_mut_ptr(), sb);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx,fma")]
    pub(super) unsafe fn weighted_rows_pair_fma(
        a: &[f32],
        b: &[f32],
        mat: &[f32],
        first: usize,
        stride: usize,
        out_a: &mut [f32],
        out_b: &mut [f32],
    ) {
        let width = out_a.len();
        let row = |t: usize, c: usize, n: usize| &mat[first + t * stride + c..][..n];
        let load = |m: &[f32], at: usize| {
            let m = &m[at..at + 8];
            // SAFETY: `m` holds the 8 floats read.
            unsafe { _mm256_loadu_ps(m.as_ptr()) }
        };
        let store = |out: &mut [f32], at: usize, v: __m256| {
            let out = &mut out[at..at + 8];
            // SAFETY: `out` holds the 8 floats written.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) }
        };
        let mut c = 0;
        while c + 32 <= width {
            let (mut xa, mut xb) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
            for (t, (&wa, &wb)) in a.iter().zip(b).enumerate() {
                let m = row(t, c, 32);
                let (va, vb) = (_mm256_set1_ps(wa), _mm256_set1_ps(wb));
                for j in 0..4 {
                    let v = load(m, 8 * j);
                    xa[j] = _mm256_fmadd_ps(va, v, xa[j]);
                    xb[j] = _mm256_fmadd_ps(vb, v, xb[j]);
                }
            }
            for j in 0..4 {
                store(out_a, c + 8 * j, xa[j]);
                store(out_b, c + 8 * j, xb[j]);
            }
            c += 32;
        }
        while c + 16 <= width {
            // Rows a and b, columns c..c+8 and c+8..c+16, even and odd t: eight sums.
            let z = _mm256_setzero_ps();
            let (mut ae0, mut ae1, mut ao0, mut ao1) = (z, z, z, z);
            let (mut be0, mut be1, mut bo0, mut bo1) = (z, z, z, z);
            for p in 0..a.len() / 2 {
                let (t0, t1) = (2 * p, 2 * p + 1);
                let (m0, m1) = (row(t0, c, 16), row(t1, c, 16));
                let (v00, v01, v10, v11) = (load(m0, 0), load(m0, 8), load(m1, 0), load(m1, 8));
                let (a0, b0) = (_mm256_set1_ps(a[t0]), _mm256_set1_ps(b[t0]));
                let (a1, b1) = (_mm256_set1_ps(a[t1]), _mm256_set1_ps(b[t1]));
                ae0 = _mm256_fmadd_ps(a0, v00, ae0);
                ae1 = _mm256_fmadd_ps(a0, v01, ae1);
                be0 = _mm256_fmadd_ps(b0, v00, be0);
                be1 = _mm256_fmadd_ps(b0, v01, be1);
                ao0 = _mm256_fmadd_ps(a1, v10, ao0);
                ao1 = _mm256_fmadd_ps(a1, v11, ao1);
                bo0 = _mm256_fmadd_ps(b1, v10, bo0);
                bo1 = _mm256_fmadd_ps(b1, v11, bo1);
            }
            if a.len() % 2 == 1 {
                let t = a.len() - 1;
                let m = row(t, c, 16);
                let (va, vb) = (_mm256_set1_ps(a[t]), _mm256_set1_ps(b[t]));
                ae0 = _mm256_fmadd_ps(va, load(m, 0), ae0);
                ae1 = _mm256_fmadd_ps(va, load(m, 8), ae1);
                be0 = _mm256_fmadd_ps(vb, load(m, 0), be0);
                be1 = _mm256_fmadd_ps(vb, load(m, 8), be1);
            }
            store(out_a, c, _mm256_add_ps(ae0, ao0));
            store(out_a, c + 8, _mm256_add_ps(ae1, ao1));
            store(out_b, c, _mm256_add_ps(be0, bo0));
            store(out_b, c + 8, _mm256_add_ps(be1, bo1));
            c += 16;
        }
        while c + 8 <= width {
            let (mut xa, mut xb) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (t, (&wa, &wb)) in a.iter().zip(b).enumerate() {
                let v = load(row(t, c, 8), 0);
                xa = _mm256_fmadd_ps(_mm256_set1_ps(wa), v, xa);
                xb = _mm256_fmadd_ps(_mm256_set1_ps(wb), v, xb);
            }
            store(out_a, c, xa);
            store(out_b, c, xb);
            c += 8;
        }
        super::column_tail::<true>(a, b, mat, first, stride, c, out_a, out_b);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_graph::*;
    use super::*;

    /// The exporter's attention core (`host/src/export/onnx.rs`) on inputs Q, K, V and a
    /// `[b, 1, 1, s]` mask; `perm_k` lets a test break the pattern.
    fn attention_graph(b: i64, s: i64, h: i64, d: i64, perm_k: &[i64]) -> pb::GraphProto {
        let float = pb::tensor_proto::DataType::Float;
        let ints = |name: &str, v: &[i64]| pb::AttributeProto {
            name: name.into(),
            r#type: pb::attribute_proto::AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        };
        let transpose = |x: &str, out: &str, perm: &[i64]| {
            let mut n = node("Transpose", &[x], out, &[]);
            n.attribute.push(ints("perm", perm));
            n
        };
        let i64_const = |name: &str, v: &[i64]| {
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            raw_initializer(
                name,
                &[v.len() as i64],
                pb::tensor_proto::DataType::Int64,
                bytes,
            )
        };
        pb::GraphProto {
            node: vec![
                node("Reshape", &["q", "split"], "q.heads", &[]),
                transpose("q.heads", "q.t", &[0, 2, 1, 3]),
                node("Reshape", &["k", "split"], "k.heads", &[]),
                transpose("k.heads", "k.t", perm_k),
                node("Reshape", &["v", "split"], "v.heads", &[]),
                transpose("v.heads", "v.t", &[0, 2, 1, 3]),
                node("MatMul", &["q.t", "k.t"], "scores", &[]),
                node("Div", &["scores", "sqrt_d"], "scaled", &[]),
                node("Add", &["scaled", "mask"], "masked", &[]),
                node("Softmax", &["masked"], "probs", &[("axis", -1)]),
                node("MatMul", &["probs", "v.t"], "context", &[]),
                transpose("context", "context.t", &[0, 2, 1, 3]),
                node("Reshape", &["context.t", "merge"], "y", &[]),
            ],
            initializer: vec![
                i64_const("split", &[0, 0, h, d]),
                i64_const("merge", &[0, 0, h * d]),
                f32_scalar("sqrt_d", (d as f32).sqrt()),
            ],
            input: vec![
                input_info("q", float, &[b, s, h * d]),
                input_info("k", float, &[b, s, h * d]),
                input_info("v", float, &[b, s, h * d]),
                input_info("mask", float, &[b, 1, 1, s]),
            ],
            output: outputs(&["y"]),
            ..Default::default()
        }
    }

    fn run(
        graph: pb::GraphProto,
        fused: bool,
        inputs: &[Tensor],
    ) -> (usize, Vec<String>, Vec<f32>) {
        let mut proto = model(graph);
        let replaced = match fused {
            true => fuse_attention(proto.graph.as_mut().unwrap()),
            false => 0,
        };
        let (names, y) = op_names_and_output(&plan(&proto, fused), inputs);
        (replaced, names, y)
    }

    fn inputs(b: usize, s: usize, h: usize, d: usize, padded: usize) -> Vec<Tensor> {
        let t = |seed| {
            tract_ndarray::Array3::from_shape_vec((b, s, h * d), values(b * s * h * d, seed, 2.0))
                .unwrap()
                .into_tensor()
        };
        // The last `padded` keys of every sequence but the first are masked as the
        // exporter does it (-1e9).
        let mask = (0..b * s)
            .map(|ix| match ix / s > 0 && ix % s >= s - padded {
                true => -1e9f32,
                false => 0.0,
            })
            .collect();
        let mask = tract_ndarray::Array4::from_shape_vec((b, 1, 1, s), mask)
            .unwrap()
            .into_tensor();
        vec![t(1), t(2), t(3), mask]
    }

    /// The fused node gives what tract's own ops give on the exporter's pattern, at head
    /// widths on and off the 8- and 32-column blocks, with masked keys and batch > 1.
    #[test]
    fn fused_attention_matches_tract_ops() {
        for (b, s, h, d, padded) in [
            (1, 14, 12, 32, 0),
            (2, 16, 4, 32, 5),
            (3, 9, 3, 20, 2),
            (1, 64, 2, 8, 0),
            (2, 1, 2, 4, 0),
            (1, 17, 2, 64, 3),
        ] {
            let graph = attention_graph(b as i64, s as i64, h as i64, d as i64, &[0, 2, 3, 1]);
            let x = inputs(b, s, h, d, padded);
            let (replaced, names, fused) = run(graph.clone(), true, &x);
            assert_eq!(replaced, 1);
            assert!(names.iter().any(|n| n == "FusedAttention"), "{names:?}");
            assert!(!names.iter().any(|n| n.contains("MatMul")), "{names:?}");
            let (_, _, tract) = run(graph, false, &x);
            assert_eq!(fused.len(), b * s * h * d);
            let worst = fused
                .iter()
                .zip(&tract)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-5,
                "b {b} s {s} h {h} d {d}: largest difference {worst}"
            );
        }
    }

    /// The AVX/FMA form of the weighted row sums against the portable one, for every
    /// column-block path (32, 16, 8, scalar tail) and odd and even lengths.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fma_row_sums_match_the_portable_form() {
        if !(is_x86_feature_detected!("avx") && is_x86_feature_detected!("fma")) {
            eprintln!("skipped: this CPU has no AVX/FMA");
            return;
        }
        let value = |i: usize| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5;
        for len in [1, 2, 7, 16, 33] {
            for width in [1, 5, 8, 13, 16, 24, 31, 32, 40, 64, 71] {
                let stride = width + 3;
                let first = 2;
                let mat: Vec<f32> = (0..first + len * stride).map(value).collect();
                let a: Vec<f32> = (0..len).map(|i| value(i + 101)).collect();
                let b: Vec<f32> = (0..len).map(|i| value(i + 211)).collect();
                let (mut fa, mut fb) = (vec![0f32; width], vec![0f32; width]);
                let (mut pa, mut pb) = (vec![0f32; width], vec![0f32; width]);
                // SAFETY: the CPU has AVX and FMA (checked above).
                unsafe {
                    x86::weighted_rows_pair_fma(&a, &b, &mat, first, stride, &mut fa, &mut fb)
                };
                weighted_rows_pair::<false>(&a, &b, &mat, first, stride, &mut pa, &mut pb);
                for (x, y) in fa.iter().chain(&fb).zip(pa.iter().chain(&pb)) {
                    assert!((x - y).abs() < 1e-5, "len {len} width {width}: {x} vs {y}");
                }
            }
        }
    }

    /// The NEON form of the weighted row sums against the portable one, for every
    /// column-block path (32, 8, 4, scalar tail) and odd and even lengths.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_row_sums_match_the_portable_form() {
        let value = |i: usize| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5;
        for len in [1, 2, 7, 16, 33] {
            for width in [1, 3, 4, 5, 8, 12, 13, 16, 24, 31, 32, 40, 44, 64, 71] {
                let stride = width + 3;
                let first = 2;
                let mat: Vec<f32> = (0..first + len * stride).map(value).collect();
                let a: Vec<f32> = (0..len).map(|i| value(i + 101)).collect();
                let b: Vec<f32> = (0..len).map(|i| value(i + 211)).collect();
                let (mut na, mut nb) = (vec![0f32; width], vec![0f32; width]);
                let (mut pa, mut pb) = (vec![0f32; width], vec![0f32; width]);
                neon::weighted_rows_pair(&a, &b, &mat, first, stride, &mut na, &mut nb);
                weighted_rows_pair::<false>(&a, &b, &mat, first, stride, &mut pa, &mut pb);
                for (x, y) in na.iter().chain(&nb).zip(pa.iter().chain(&pb)) {
                    assert!((x - y).abs() < 1e-5, "len {len} width {width}: {x} vs {y}");
                }
            }
        }
    }

    /// A pattern that differs anywhere (here K transposed as Q is, which makes Q·K a
    /// different product) is left to tract.
    #[test]
    fn other_forms_are_left_alone() {
        let graph = attention_graph(1, 8, 2, 8, &[0, 2, 1, 3]);
        let mut proto = model(graph.clone());
        assert_eq!(fuse_attention(proto.graph.as_mut().unwrap()), 0);
        assert_eq!(proto.graph.unwrap().node.len(), graph.node.len());
        // An intermediate that is also a graph output keeps the pattern whole.
        let mut graph = attention_graph(1, 8, 2, 8, &[0, 2, 3, 1]);
        graph.output.extend(outputs(&["probs"]));
        let mut proto = model(graph);
        assert_eq!(fuse_attention(proto.graph.as_mut().unwrap()), 0);
        // A head split whose 0s are literal (`allowzero = 1`) is another reshape.
        let mut graph = attention_graph(1, 8, 2, 8, &[0, 2, 3, 1]);
        graph.node[0].attribute.push(pb::AttributeProto {
            name: "allowzero".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        });
        let mut proto = model(graph);
        assert_eq!(fuse_attention(proto.graph.as_mut().unwrap()), 0);
    }
}
