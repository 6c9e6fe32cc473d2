//! ONNX ops run as one fused kernel each instead of tract's decomposition (issue #7).
//!
//! tract expands `LayerNormalization` into six nodes (sum, scale, subtract, square-mean,
//! rsqrt, affine) and runs a last-axis `Softmax` as three library kernel calls per row.
//! On the shapes a single query has (the tiny preset: 16 tokens x 128, 4 heads of 16 x 16
//! scores) each of those calls costs more in fixed overhead than in arithmetic: per-node
//! profiles gave ~7.7 µs per LayerNorm and ~8 µs per attention softmax, a sixth of a
//! short query. Here each is one pass over contiguous rows, written so the compiler
//! vectorises it (eight independent accumulators, a branch-free polynomial `exp`).
//! `QuantizeLinear` and per-channel `DequantizeLinear`, the two ends of every int8-compute
//! matmul, get the same treatment in [`quant`], and tract's exact GELU in [`gelu`] (which,
//! unlike the others, replaces a node of the decluttered model rather than a parser), and
//! the additions tract leaves generic in a symbolic plan in [`add`] (nodes of the
//! optimised plan). Multi-head attention's core (scores, mask, softmax, weighted sum of V,
//! and the head splits and merges around them) is one node in [`attention`], put in place
//! of the pattern in the protobuf before tract parses it, and so are the attention
//! pooling's mask, softmax and weighted sum in [`attention_pool`], the padding mask in
//! [`mask`], a model's n-gram bag
//! in [`embedding_bag`] and its input embeddings (word and position rows, their sum and
//! LayerNorm) in [`embeddings`]; in the same pass, [`signed`]
//! has each int8-compute matmul's activations quantised to i8 directly (tract's u8 → i8
//! offset node per matmul disappears, the integers are the same) and
//! [`quant::fuse_dequantize_bias`] merges each dequantisation with the bias `Add` after it
//! ([`quant::fuse_cast_scale`] first gives the unbiased layer's `Cast` and `Mul` that form).
//! On AVX-512 cores and on aarch64 the f32 dense layers (`MatMul` by a weight initializer,
//! and its bias) become [`dense`]'s packed tiles (12 tokens with AVX-512, 5 with NEON), and
//! on AVX-512 VNNI and aarch64 cores the int8-compute ones (the integer product and its
//! dequantisation) [`dense_i8`]'s (`sdot` where the CPU has the dot product, else
//! `smull`), in the decluttered model like the GELU; asked for, a weights-int8 variant's
//! f32 dense layers run on the same tiles with their activations quantised per token
//! ([`dense_dynamic_i8`]).
//!
//! They replace tract's parsers for these op types, so the ONNX file stays standard
//! (onnxruntime runs the same file). A Softmax over another axis or of another datum
//! type, opset < 13 Softmax and a LayerNormalization asking for its optional mean /
//! inverse-deviation outputs go to tract's own ops as before; a LayerNormalization of
//! another float type is computed in f32 between two casts; [`quant`] lists its forms.
//! [`crate::optimise`] is the one place that decides which of them run, and in which
//! order (its table); [`crate::optimise::FusionOptions::tract_ops`] turns them all off,
//! for comparison.

pub mod add;
pub mod attention;
pub mod attention_pool;
#[macro_use]
pub mod dense;
pub mod dense_dynamic_i8;
pub mod dense_i8;
pub mod embedding_bag;
pub mod embeddings;
pub mod gelu;
mod graph_index;
pub mod mask;
pub mod quant;
pub mod signed;
#[cfg(test)]
pub(crate) mod test_graph;

pub use add::{fuse_adds, FusedAdd};
pub use attention::{fuse_attention, FusedAttention};
pub use attention_pool::{fuse_attention_pool, FusedAttentionPool};
pub use dense::{fuse_dense, FusedDense};
pub use dense_dynamic_i8::{fuse_dense_dynamic_i8, FusedDenseDynamicI8};
pub use dense_i8::{fuse_dense_i8, FusedDenseI8};
pub use embedding_bag::{fuse_embedding_bag, FusedEmbeddingBag};
pub use embeddings::{fuse_embeddings, FusedEmbeddings};
pub use gelu::{fuse_gelu, FusedGelu};
pub use mask::{fuse_additive_mask, FusedAdditiveMask};
pub use quant::{
    fuse_cast_scale, fuse_dequantize_bias, FusedDequantizeLinear, FusedQuantizeLinear,
};
pub use signed::quantize_to_i8;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};
use tract_onnx::tract_hir::internal::*;

/// Registers the fused parsers for `LayerNormalization`, `Softmax` (opset ≥ 13),
/// `QuantizeLinear` and `DequantizeLinear`, and for the attention and n-gram bag nodes
/// [`fuse_attention`] and [`fuse_embedding_bag`] put in a protobuf.
pub fn register(ops: &mut OnnxOpRegister) {
    ops.insert(attention::OP_TYPE, attention::parse_fused_attention);
    ops.insert(
        attention_pool::OP_TYPE,
        attention_pool::parse_attention_pool,
    );
    ops.insert(embedding_bag::OP_TYPE, embedding_bag::parse_embedding_bag);
    ops.insert(embeddings::OP_TYPE, embeddings::parse_embeddings);
    ops.insert(mask::OP_TYPE, mask::parse_additive_mask);
    ops.insert("LayerNormalization", parse_layer_norm);
    ops.insert("Softmax", parse_softmax);
    ops.insert("QuantizeLinear", quant::parse_quantize_linear);
    ops.insert("DequantizeLinear", quant::parse_dequantize_linear);
    ops.insert(quant::DEQUANTIZE_BIAS_OP, quant::parse_dequantize_linear);
}

/// tract's own parser for `op_type`, for the forms the fused ops do not take.
fn tract_parser(
    op_type: &str,
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let onnx = tract_onnx::onnx();
    let parse = onnx
        .op_register
        .0
        .get(op_type)
        .with_context(|| format!("tract has no parser for {op_type}"))?;
    parse(ctx, node)
}

fn parse_layer_norm(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let axis: isize = node.get_attr_opt("axis")?.unwrap_or(-1);
    let epsilon: f32 = node.get_attr_opt("epsilon")?.unwrap_or(1e-5);
    let extra_outputs = node.output.iter().skip(1).any(|o| !o.is_empty());
    // An optional input may be present with an empty name, meaning absent.
    let given = node.input.iter().filter(|i| !i.is_empty()).count();
    let bias = node.input.get(2).is_some_and(|i| !i.is_empty());
    // The optional mean / inverse-deviation outputs are tract's business.
    if extra_outputs || node.input.len() > 3 || given != 2 + bias as usize {
        return tract_parser("LayerNormalization", ctx, node);
    }
    Ok((
        expand(LayerNormExpansion {
            axis,
            epsilon,
            bias,
        }),
        vec![],
    ))
}

fn parse_softmax(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if ctx.onnx_operator_set_version < 13 {
        return tract_parser("Softmax", ctx, node);
    }
    let axis: isize = node.get_attr_opt("axis")?.unwrap_or(-1);
    Ok((expand(SoftmaxExpansion { axis }), vec![]))
}

/// A possibly negative ONNX axis resolved against a rank.
fn resolve_axis(axis: isize, rank: usize) -> TractResult<usize> {
    let resolved = if axis < 0 { axis + rank as isize } else { axis };
    ensure!(
        (0..rank as isize).contains(&resolved),
        "axis {axis} out of range for rank {rank}"
    );
    Ok(resolved as usize)
}

#[derive(Debug, Clone)]
struct LayerNormExpansion {
    axis: isize,
    epsilon: f32,
    bias: bool,
}

impl Expansion for LayerNormExpansion {
    fn name(&self) -> StaticName {
        "LayerNormalization".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2 + self.bias as usize)?;
        check_output_arity(outputs, 1)?;
        for input in &inputs[1..] {
            s.equals(&inputs[0].datum_type, &input.datum_type)?;
        }
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = model.outlet_fact(inputs[0])?.clone();
        let axis = resolve_axis(self.axis, x.rank())?;
        let op = FusedLayerNorm {
            axis,
            epsilon: tensor0(self.epsilon).into_arc_tensor(),
        };
        // Other float types are normalised in f32 (more precise than tract's default).
        wire_in_f32(model, prefix, op, inputs)
    }
}

/// Wires `op` (an f32-only op) on `inputs`: directly when they are f32, otherwise between
/// casts to f32 and back to the first input's type (f16 models keep their interface).
fn wire_in_f32(
    model: &mut TypedModel,
    prefix: &str,
    op: impl Into<Box<dyn TypedOp>>,
    inputs: &[OutletId],
) -> TractResult<TVec<OutletId>> {
    let dt = model.outlet_fact(inputs[0])?.datum_type;
    if dt == DatumType::F32 {
        return model.wire_node(prefix, op, inputs);
    }
    let mut cast = tvec![];
    for (ix, &input) in inputs.iter().enumerate() {
        let to_f32 = to(DatumType::F32);
        cast.push(model.wire_node(format!("{prefix}.cast_in.{ix}"), to_f32, &[input])?[0]);
    }
    let y = model.wire_node(format!("{prefix}.f32"), op, &cast)?;
    model.wire_node(prefix, to(dt), &y)
}

fn to(dt: DatumType) -> tract_onnx::tract_core::ops::cast::Cast {
    tract_onnx::tract_core::ops::cast::cast(dt)
}

#[derive(Debug, Clone)]
struct SoftmaxExpansion {
    axis: isize,
}

impl Expansion for SoftmaxExpansion {
    fn name(&self) -> StaticName {
        "Softmax".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = model.outlet_fact(inputs[0])?.clone();
        let axis = resolve_axis(self.axis, x.rank())?;
        if x.datum_type == DatumType::F32 && axis + 1 == x.rank() {
            return model.wire_node(name, FusedSoftmax, inputs);
        }
        // As tract's ONNX parser wires it.
        let quant_output_dt =
            x.datum_type
                .is_quantized()
                .then_some(DatumType::QU8(QParams::ZpScale {
                    zero_point: 0,
                    scale: 0.0078125,
                }));
        model.wire_node(
            name,
            Softmax {
                axes: tvec![axis],
                quant_output_dt,
                kind: SoftmaxKind::Softmax,
            },
            inputs,
        )
    }
}

/// LayerNorm over the axes from `axis` to the last, f32, with scale and optional bias
/// as inputs (constants in an exported model, folded into nothing else).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedLayerNorm {
    /// First normalised axis; every axis after it is normalised too.
    pub axis: usize,
    /// ε added to the variance (an f32 scalar).
    pub epsilon: Arc<Tensor>,
}

impl Op for FusedLayerNorm {
    fn name(&self) -> StaticName {
        "FusedLayerNorm".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "axis: {}, epsilon: {:?}",
            self.axis, self.epsilon
        )])
    }
    op_as_typed_op!();
}

impl EvalOp for FusedLayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut inputs = inputs;
        ensure!(
            inputs.len() >= 2,
            "LayerNormalization: {} inputs",
            inputs.len()
        );
        // Taken out first, so `into_tensor` normalises in place instead of copying.
        let mut x = inputs.remove(0).into_tensor();
        let row: usize = x.shape()[self.axis..].iter().product();
        let epsilon = *self
            .epsilon
            .try_as_plain_ram()?
            .as_slice::<f32>()?
            .first()
            .context("epsilon")?;
        // Scale and bias are read where they are: no copy per query.
        let scale_view = inputs[0].try_as_plain_ram()?;
        let scale = scale_view.as_slice::<f32>()?;
        let bias_view = inputs.get(1).map(|b| b.try_as_plain_ram()).transpose()?;
        let bias = bias_view
            .as_ref()
            .map(|v| v.as_slice::<f32>())
            .transpose()?;
        ensure!(
            scale.len() == row && bias.is_none_or(|b| b.len() == row),
            "LayerNormalization: scale/bias of {} values for rows of {row}",
            scale.len()
        );
        if row > 0 {
            let mut plain = x.try_as_plain_ram_mut()?;
            let data = plain.as_slice_mut::<f32>()?;
            for r in data.chunks_exact_mut(row) {
                layer_norm_row(r, scale, bias, epsilon);
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for FusedLayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type == DatumType::F32,
            "FusedLayerNorm takes f32"
        );
        ensure!(
            self.axis < inputs[0].rank(),
            "axis {} for rank {}",
            self.axis,
            inputs[0].rank()
        );
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let count: TDim = inputs[0].shape.iter().product();
        Ok(tvec!((Cost::FMA(DatumType::F32), count * 4)))
    }

    as_op!();
}

/// Softmax over the last axis, f32.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedSoftmax;

impl Op for FusedSoftmax {
    fn name(&self) -> StaticName {
        "FusedSoftmax".into()
    }
    op_as_typed_op!();
}

impl EvalOp for FusedSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs.into_iter().next().context("input")?;
        let row = *input.shape().last().context("softmax of a scalar")?;
        let mut x = input.into_tensor();
        if row > 0 {
            let mut plain = x.try_as_plain_ram_mut()?;
            for r in plain.as_slice_mut::<f32>()?.chunks_exact_mut(row) {
                softmax_row(r);
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for FusedSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type == DatumType::F32,
            "FusedSoftmax takes f32"
        );
        ensure!(inputs[0].rank() > 0, "softmax of a scalar");
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        _outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        // Every axis but the last is independent rows: tract may move or fold them.
        let rank = inputs[0].rank();
        let mut letters = 'a'..;
        let axes = (0..rank)
            .map(|ix| {
                Axis::new(letters.next().unwrap_or('z'), 1, 1)
                    .input(0, ix)
                    .output(0, ix)
            })
            .collect::<Vec<_>>();
        AxesMapping::new(1, 1, axes)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let count: TDim = inputs[0].shape.iter().product();
        Ok(tvec!((Cost::FMA(DatumType::F32), count * 8)))
    }

    as_op!();
}

/// Clears the upper halves of the x86 vector registers (`vzeroupper`); nothing elsewhere.
///
/// tract's x86-64 assembly kernels (matmul, erf, ...) return with the upper halves of the
/// AVX registers dirty, and every SSE-encoded instruction after them (tract's own Rust
/// ops, the fused kernels' SSE fallback, the tokenizer and ranking code: all compiled for
/// the x86-64 baseline) then runs with a false dependency on those halves: a softmax
/// measured 105 µs after the matmuls and 31 µs alone. The engine calls this after every
/// node, and the kernels here are compiled for AVX2 where the CPU has it.
#[inline]
pub fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (detected just above), the one requirement of
        // `vzeroupper`, which changes no state Rust code relies on.
        unsafe { zero_upper() }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn zero_upper() {
    std::arch::x86_64::_mm256_zeroupper()
}

/// Lanes of the accumulators: eight independent sums let the compiler use SIMD
/// registers (a single running f32 sum cannot be reordered, so it stays scalar).
const LANES: usize = 8;

#[inline(always)]
pub fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|&v| f(v)).sum::<f32>()
}

/// Mean and `1 / sqrt(var + ε)` of one row; two passes (mean, then the variance of the
/// centred values), as ONNX and tract define LayerNorm. Also the host's LayerNorm gradient.
#[inline(always)]
pub fn row_moments(x: &[f32], epsilon: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + epsilon).sqrt())
}

/// `(x - mean) / sqrt(var + ε) * scale + bias`, in place ([`row_moments`]). Also the
/// host's LayerNorm in training, so training and the board normalise alike.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
pub fn layer_norm_row(x: &mut [f32], scale: &[f32], bias: Option<&[f32]>, epsilon: f32) {
    let (mean, inv) = row_moments(x, epsilon);
    match bias {
        Some(b) => {
            for ((v, s), b) in x.iter_mut().zip(scale).zip(b) {
                *v = (*v - mean) * inv * s + b;
            }
        }
        None => {
            for (v, s) in x.iter_mut().zip(scale) {
                *v = (*v - mean) * inv * s;
            }
        }
    }
}

/// Numerically stable softmax of one row, in place.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
pub fn softmax_row(x: &mut [f32]) {
    softmax_in_place(x)
}

/// [`softmax_row`]'s body, inlined into callers that are compiled per CPU themselves.
#[inline(always)]
pub fn softmax_in_place(x: &mut [f32]) {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(c[i]);
        }
    }
    let max = tail
        .iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    #[cfg(target_arch = "aarch64")]
    neon_exp::exp_shifted_in_place(x, max);
    #[cfg(not(target_arch = "aarch64"))]
    for v in x.iter_mut() {
        *v = exp_nonpositive(*v - max);
    }
    let inv = 1.0 / lane_sum(x, |v| v);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `exp(x)` for `x ≤ 0` (the softmax's shifted scores), branch-free so it vectorises:
/// Cody-Waite reduction `x = n ln2 + r`, a degree-5 polynomial for `e^r` on
/// `|r| ≤ ln2/2` (Cephes `expf`, relative error ~2e-7), `2^n` built in the exponent
/// bits. Below -80 the result is exactly 0, so masked positions (scores of -1e4) get no
/// weight at all. NaN stays NaN.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    // e^-80 ≈ 1.8e-35: far below what adds to a sum holding e^0 = 1, and still a normal
    // number (denormals, which e^-87 would produce, run ~100x slower on x86).
    const CUTOFF: f32 = -80.0;
    let xc = x.max(CUTOFF);
    let k = xc * LOG2E + ROUND;
    let n = k - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let er = p * r * r + r + 1.0;
    // k's low mantissa bits hold n in two's complement (n ≥ -126 here): 2^n from
    // integer ops alone (an f32 → i32 `as` cast saturates and does not vectorise).
    let pow2n = f32::from_bits(
        k.to_bits()
            .wrapping_sub(ROUND.to_bits())
            .wrapping_add(127)
            .wrapping_shl(23),
    );
    let y = er * pow2n;
    if x < CUTOFF {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// [`exp_nonpositive`] on AArch64, four independent vectors per step and its polynomial in
/// fused multiply-adds: the scalar form's one vector per step is a chain of ~25 dependent
/// operations, so the core mostly waited (the softmax was most of the attention's time
/// in the ARM estimate). Same reduction and polynomial; the results differ from the
/// scalar form only by the fused roundings (the relative error stays under 5e-7).
#[cfg(target_arch = "aarch64")]
mod neon_exp {
    use std::arch::aarch64::*;

    /// `x[i] = exp(x[i] - max)`, each `x[i] ≤ max`.
    pub(super) fn exp_shifted_in_place(x: &mut [f32], max: f32) {
        let mut wide = x.chunks_exact_mut(16);
        for c in &mut wide {
            let p = c.as_mut_ptr();
            // SAFETY: `c` holds exactly sixteen f32 (NEON is part of every AArch64 target).
            unsafe {
                let m = vdupq_n_f32(max);
                let (a, b) = (vld1q_f32(p), vld1q_f32(p.add(4)));
                let (c2, d) = (vld1q_f32(p.add(8)), vld1q_f32(p.add(12)));
                let (a, b) = (exp4(vsubq_f32(a, m)), exp4(vsubq_f32(b, m)));
                let (c2, d) = (exp4(vsubq_f32(c2, m)), exp4(vsubq_f32(d, m)));
                vst1q_f32(p, a);
                vst1q_f32(p.add(4), b);
                vst1q_f32(p.add(8), c2);
                vst1q_f32(p.add(12), d);
            }
        }
        let mut chunks = wide.into_remainder().chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: `c` holds exactly four f32.
            unsafe {
                let v = vsubq_f32(vld1q_f32(c.as_ptr()), vdupq_n_f32(max));
                vst1q_f32(c.as_mut_ptr(), exp4(v));
            }
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mut lanes = [0f32; 4];
            for (l, &v) in lanes.iter_mut().zip(tail.iter()) {
                *l = v - max;
            }
            // SAFETY: `lanes` holds four f32.
            unsafe { vst1q_f32(lanes.as_mut_ptr(), exp4(vld1q_f32(lanes.as_ptr()))) };
            let n = tail.len();
            tail.copy_from_slice(&lanes[..n]);
        }
    }

    /// `exp` of four lanes `≤ 0`: 0 below -80, NaN stays NaN.
    #[inline(always)]
    pub(super) fn exp4(x: float32x4_t) -> float32x4_t {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        const ROUND: f32 = 12_582_912.0;
        const CUTOFF: f32 = -80.0;
        // SAFETY: NEON register arithmetic only, no memory access.
        unsafe {
            let xc = vmaxnmq_f32(x, vdupq_n_f32(CUTOFF));
            let k = vfmaq_n_f32(vdupq_n_f32(ROUND), xc, LOG2E);
            let n = vsubq_f32(k, vdupq_n_f32(ROUND));
            let r = vfmsq_n_f32(vfmsq_n_f32(xc, n, LN2_HI), n, LN2_LO);
            let mut p = vdupq_n_f32(1.987_569_1e-4);
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                5e-1,
            ] {
                p = vfmaq_f32(vdupq_n_f32(c), p, r);
            }
            let er = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0)), p, vmulq_f32(r, r));
            let bits = vsubq_u32(vreinterpretq_u32_f32(k), vdupq_n_u32(ROUND.to_bits()));
            let pow2n = vreinterpretq_f32_u32(vshlq_n_u32::<23>(vaddq_u32(bits, vdupq_n_u32(127))));
            let y = vmulq_f32(er, pow2n);
            // Below the cut-off exactly 0; NaN (not equal to itself) passes through.
            let below = vcltq_f32(x, vdupq_n_f32(CUTOFF));
            let y = vbslq_f32(below, vdupq_n_f32(0.0), y);
            vbslq_f32(vceqq_f32(x, x), y, x)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_graph::*;
    use super::*;
    use tract_onnx::pb;

    #[test]
    fn exp_matches_libm_to_float_precision() {
        let mut worst = 0f64;
        for i in 0..=800_000 {
            let x = -80.0 + i as f32 * 1e-4;
            let (got, want) = (exp_nonpositive(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-80.5), 0.0);
        assert_eq!(exp_nonpositive(-1e4), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    /// The AArch64 lanes: the same accuracy and the same special values.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_exp_matches_libm_to_float_precision() {
        let xs: Vec<f32> = (0..=800_000).map(|i| -80.0 + i as f32 * 1e-4).collect();
        let mut got = xs.clone();
        neon_exp::exp_shifted_in_place(&mut got, 0.0);
        let mut worst = 0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = (x as f64).exp();
            worst = worst.max(((g as f64 - want) / want).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
        let mut special = [0.0, -80.5, -1e4, f32::NEG_INFINITY, f32::NAN, -1.0];
        neon_exp::exp_shifted_in_place(&mut special, 0.0);
        assert_eq!(special[..4], [1.0, 0.0, 0.0, 0.0]);
        assert!(special[4].is_nan());
        assert!((special[5] - (-1f32).exp()).abs() < 1e-7);
    }

    #[test]
    fn softmax_rows_match_a_f64_reference() {
        for len in [1usize, 3, 8, 12, 16, 17, 64, 130] {
            let mut x = values(len, len as u64, 12.0);
            if len > 2 {
                x[1] = -1e4; // a masked position
            }
            let max = x.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
            let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
            let want: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp() / sum).collect();
            softmax_row(&mut x);
            for (g, w) in x.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-6, "len {len}: {g} vs {w}");
            }
            if len > 2 {
                assert_eq!(x[1], 0.0, "a masked position gets exactly no weight");
            }
        }
        let mut nan = vec![0.0, f32::NAN, 1.0];
        softmax_row(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()), "NaN in, NaN out: {nan:?}");
    }

    #[test]
    fn layer_norm_rows_match_a_f64_reference() {
        for len in [1usize, 7, 8, 128, 384, 385] {
            let x = values(len, 7 + len as u64, 3.0)
                .iter()
                .map(|v| v + 40.0)
                .collect::<Vec<_>>();
            let scale = values(len, 11, 1.5);
            let bias = values(len, 13, 0.5);
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            for with_bias in [true, false] {
                let mut y = x.clone();
                layer_norm_row(&mut y, &scale, with_bias.then_some(&bias[..]), 1e-5);
                for i in 0..len {
                    let b = if with_bias { bias[i] as f64 } else { 0.0 };
                    let want = (x[i] as f64 - mean) / (var + 1e-5).sqrt() * scale[i] as f64 + b;
                    assert!(
                        (y[i] as f64 - want).abs() < 2e-4,
                        "len {len}: {} vs {want}",
                        y[i]
                    );
                }
            }
        }
    }

    /// A LayerNormalization over f64 runs the fused kernel in f32 between casts and gives
    /// f64 out, matching the definition to f32 precision.
    #[test]
    fn f64_layer_norm_goes_through_f32() {
        let double = pb::tensor_proto::DataType::Double;
        let x = values(3 * 16, 21, 2.0);
        let (scale, bias) = (values(16, 22, 1.0), values(16, 23, 1.0));
        let init = |name: &str, v: &[f32]| pb::TensorProto {
            name: name.into(),
            dims: vec![16],
            data_type: double as i32,
            double_data: v.iter().map(|&f| f as f64).collect(),
            ..Default::default()
        };
        let graph = pb::GraphProto {
            node: vec![node(
                "LayerNormalization",
                &["x", "g", "b"],
                "y",
                &[("axis", -1)],
            )],
            initializer: vec![init("g", &scale), init("b", &bias)],
            input: vec![input_info("x", double, &[3, 16])],
            output: outputs(&["y"]),
            ..Default::default()
        };
        let plan = plan(&model(graph), true);
        assert_eq!(op_count(&plan, "FusedLayerNorm"), 1);
        let input =
            tract_ndarray::Array2::from_shape_vec((3, 16), x.iter().map(|&f| f as f64).collect())
                .unwrap()
                .into_tensor();
        let y = plan.run(tvec!(input.into_tvalue())).unwrap();
        let y: Vec<f64> = y[0]
            .to_plain_array_view::<f64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        for (r, row) in x.chunks(16).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / 16.0;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 16.0;
            for i in 0..16 {
                let want =
                    (row[i] as f64 - mean) / (var + 1e-5).sqrt() * scale[i] as f64 + bias[i] as f64;
                assert!(
                    (y[r * 16 + i] - want).abs() < 1e-5,
                    "{} vs {want}",
                    y[r * 16 + i]
                );
            }
        }
    }

    /// Every form the parsers meet — LayerNormalization with and without bias, over the
    /// last axis and over the last two, Softmax over the last axis and another — gives
    /// what tract's own ops give, in an optimised tract plan.
    #[test]
    fn fused_graph_matches_tract_ops() {
        let input = input_info("x", pb::tensor_proto::DataType::Float, &[2, 5, 24]);
        let graph = pb::GraphProto {
            node: vec![
                node(
                    "LayerNormalization",
                    &["x", "g", "b"],
                    "ln1",
                    &[("axis", -1)],
                ),
                node("LayerNormalization", &["ln1", "g2"], "ln2", &[("axis", 1)]),
                node("Softmax", &["ln2"], "sm1", &[("axis", -1)]),
                node("Softmax", &["sm1"], "y", &[("axis", 1)]),
            ],
            initializer: vec![
                f32_initializer("g", &[24], 1),
                f32_initializer("b", &[24], 2),
                f32_initializer("g2", &[5, 24], 3),
            ],
            input: vec![input],
            output: outputs(&["y"]),
            ..Default::default()
        };
        let proto = model(graph);
        let x = tract_ndarray::Array3::from_shape_vec((2, 5, 24), values(240, 5, 4.0))
            .unwrap()
            .into_tensor();
        let run = |fused: bool| -> Vec<f32> {
            let (names, y) = op_names_and_output(&plan(&proto, fused), std::slice::from_ref(&x));
            assert_eq!(
                names.iter().filter(|n| n.starts_with("Fused")).count(),
                if fused { 3 } else { 0 },
                "{names:?}"
            );
            y
        };
        let (fused, tract) = (run(true), run(false));
        assert_eq!(fused.len(), 240);
        let worst = fused
            .iter()
            .zip(&tract)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "largest difference {worst}");
    }
}
