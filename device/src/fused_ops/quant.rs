//! `QuantizeLinear` and per-channel `DequantizeLinear` as one vectorised pass each.
//!
//! An int8-compute model quantises the input of every matmul (`QuantizeLinear`, u8 with
//! a static scale and zero point) and scales the i32 accumulators back per output
//! channel (`DequantizeLinear`, axis -1). tract 0.23 runs the first one element at a time
//! through a non-inlined rounding call (~130 µs for the 16 x 1536 FFN input of MiniLM,
//! as much as the int8 matmul after it) and the second as three nodes (cast, subtract,
//! multiply). Here each is a single loop the compiler vectorises: the rounding is the
//! FPU's own round-half-to-even (adding 1.5·2²³), the conversions are integer and bit
//! operations.
//!
//! Forms taken (the rest go to tract's parsers): `QuantizeLinear` whose scale and zero
//! point are single-element initializers, to u8 or i8; `DequantizeLinear` with a 1-D
//! scale initializer, `axis = -1` and no zero point.

use super::tract_parser;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, NodeProto};
use tract_onnx::tract_hir::internal::*;

/// The initializer `name` of the top-level graph, if it is one.
fn initializer<'a>(ctx: &'a ParsingContext, name: &str) -> Option<&'a pb::TensorProto> {
    ctx.model
        .graph
        .as_ref()?
        .initializer
        .iter()
        .find(|t| t.name == name)
}

fn elements(t: &pb::TensorProto) -> i64 {
    t.dims.iter().product()
}

/// Input `ix` of `node`, unless absent or given with an empty name (ONNX's "absent").
fn input(node: &NodeProto, ix: usize) -> Option<&str> {
    node.input
        .get(ix)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

pub(super) fn parse_quantize_linear(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    use pb::tensor_proto::DataType;
    let scalar = |ix: usize, types: &[DataType]| {
        input(node, ix)
            .and_then(|name| initializer(ctx, name))
            .is_some_and(|t| elements(t) == 1 && types.iter().any(|&d| t.data_type == d as i32))
    };
    let zero_point = input(node, 2).is_some();
    let taken = node.input.len() <= 3
        && scalar(1, &[DataType::Float])
        && (!zero_point || scalar(2, &[DataType::Uint8, DataType::Int8]));
    if !taken {
        return tract_parser("QuantizeLinear", ctx, node);
    }
    Ok((expand(QuantizeExpansion { zero_point }), vec![]))
}

pub(super) fn parse_dequantize_linear(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let axis: i64 = node.get_attr_opt("axis")?.unwrap_or(1);
    let per_channel = input(node, 1)
        .and_then(|name| initializer(ctx, name))
        .is_some_and(|t| {
            t.dims.len() == 1 && t.data_type == pb::tensor_proto::DataType::Float as i32
        });
    let block_size: i64 = node.get_attr_opt("block_size")?.unwrap_or(0);
    if node.op_type == DEQUANTIZE_BIAS_OP {
        // Only `fuse_dequantize_bias` writes this op, in the forms below; a file that
        // names it itself gets the same checks and a clear refusal otherwise.
        ensure!(
            per_channel && axis == -1 && node.input.len() == 3 && block_size == 0,
            "{DEQUANTIZE_BIAS_OP} {}: takes an i32 input, a 1-D f32 scale and a bias on axis -1",
            node.name
        );
        return Ok((expand(DequantizeExpansion { bias: true }), vec![]));
    }
    if !per_channel || axis != -1 || input(node, 2).is_some() || block_size != 0 {
        return tract_parser("DequantizeLinear", ctx, node);
    }
    Ok((expand(DequantizeExpansion { bias: false }), vec![]))
}

/// The op type of a per-channel `DequantizeLinear` and the bias `Add` after it as one node
/// (written by [`fuse_dequantize_bias`] into the protobuf, never to a file).
pub const DEQUANTIZE_BIAS_OP: &str = "DeviceDequantizeLinearBias";

/// Every int8-compute linear layer ends in `DequantizeLinear(acc, scale)` (per channel,
/// axis -1) and `Add(·, bias)`: two nodes and two passes over the output, which tract
/// cannot merge (it folds an Add into a float matmul, not into this op). Where the
/// dequantised value has that Add as its only consumer and the bias is a 1-D f32
/// initializer of one value per channel, both become one [`DEQUANTIZE_BIAS_OP`] node;
/// the arithmetic (`acc · scale`, then `+ bias`) and so every result stay the same.
/// Returns how many pairs it merged.
pub fn fuse_dequantize_bias(graph: &mut pb::GraphProto) -> usize {
    // (DequantizeLinear, its Add, the bias, the Add's output)
    let pairs: Vec<(usize, usize, String, String)> = {
        let g = super::graph_index::GraphIndex::new(graph);
        graph
            .node
            .iter()
            .enumerate()
            .filter_map(|(ix, d)| {
                let taken = d.op_type == "DequantizeLinear"
                    && d.input.len() == 2
                    && d.output.len() == 1
                    && d.attribute.iter().all(|a| a.name == "axis" && a.i == -1)
                    && !d.attribute.is_empty();
                let channels = taken.then(|| g.f32_vector_len(&d.input[1])).flatten()?;
                let y = d.output[0].as_str();
                let (add, a) = g.sole_consumer(y, "Add")?;
                let bias = match &a.input[..] {
                    [l, b] if l == y && b != y => b,
                    [b, r] if r == y && b != y => b,
                    _ => return None,
                };
                (g.f32_vector_len(bias) == Some(channels))
                    .then(|| (ix, add, bias.clone(), a.output[0].clone()))
            })
            .collect()
    };
    let mut drop = vec![false; graph.node.len()];
    for (d, add, bias, out) in &pairs {
        let node = &mut graph.node[*d];
        node.op_type = DEQUANTIZE_BIAS_OP.into();
        node.input.push(bias.clone());
        node.output[0] = out.clone();
        drop[*add] = true;
    }
    let mut dropped = drop.into_iter();
    graph.node.retain(|_| !dropped.next().unwrap_or(false));
    pairs.len()
}

/// An unbiased int8-compute linear layer (the attention pooling's query, `n` = 1) ends in
/// `Cast(acc → f32)` and `Mul(·, scale)` instead of `DequantizeLinear`: the same
/// arithmetic (`acc as f32 · scale[channel]`, one rounding each), but tract runs it as
/// three generic nodes after its own integer matmul, which [`super::fuse_dense_i8`] does
/// not take. Where a `MatMulInteger` output's only use is that `Cast` to float, the
/// `Cast`'s only use that `Mul`, and the other factor a 1-D f32 initializer with one value
/// per column of the 2-D weight initializer, the pair becomes one per-channel
/// `DequantizeLinear` (axis -1) with the `Mul`'s output; every result stays the same.
/// Returns how many it rewrote.
pub fn fuse_cast_scale(graph: &mut pb::GraphProto) -> usize {
    // (Cast, its Mul, the scale, the Mul's output and name)
    let found: Vec<(usize, usize, String, String, String)> = {
        let g = super::graph_index::GraphIndex::new(graph);
        graph
            .node
            .iter()
            .enumerate()
            .filter_map(|(ix, c)| {
                let to_float = c.op_type == "Cast"
                    && c.input.len() == 1
                    && c.output.len() == 1
                    && c.attribute
                        .iter()
                        .any(|a| a.name == "to" && a.i == pb::tensor_proto::DataType::Float as i64);
                if !to_float {
                    return None;
                }
                let (_, mm) = g.sole_producer(&c.input[0], "MatMulInteger")?;
                let w = g.constants.get(mm.input.get(1)?.as_str())?;
                let columns = match w.dims[..] {
                    [_, n] => n,
                    _ => return None,
                };
                let y = c.output[0].as_str();
                let (mul, m) = g.sole_consumer(y, "Mul")?;
                let scale = match &m.input[..] {
                    [l, s] if l == y && s != y => s,
                    [s, r] if r == y && s != y => s,
                    _ => return None,
                };
                (g.f32_vector_len(scale) == Some(columns)).then(|| {
                    let out = m.output[0].clone();
                    (ix, mul, scale.clone(), out, m.name.clone())
                })
            })
            .collect()
    };
    let mut drop = vec![false; graph.node.len()];
    for (c, mul, scale, out, name) in &found {
        let node = &mut graph.node[*c];
        node.op_type = "DequantizeLinear".into();
        node.name = name.clone();
        node.input.push(scale.clone());
        node.output[0] = out.clone();
        node.attribute = vec![pb::AttributeProto {
            name: "axis".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: -1,
            ..Default::default()
        }];
        drop[*mul] = true;
    }
    let mut dropped = drop.into_iter();
    graph.node.retain(|_| !dropped.next().unwrap_or(false));
    found.len()
}

#[derive(Debug, Clone)]
struct QuantizeExpansion {
    zero_point: bool,
}

impl Expansion for QuantizeExpansion {
    fn name(&self) -> StaticName {
        "QuantizeLinear".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2 + self.zero_point as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[1].datum_type, f32::datum_type())?;
        if self.zero_point {
            s.equals(&outputs[0].datum_type, &inputs[2].datum_type)?;
        } else {
            s.equals(&outputs[0].datum_type, u8::datum_type())?;
        }
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let konst = |ix: usize| -> TractResult<Arc<Tensor>> {
            model
                .outlet_fact(inputs[ix])?
                .konst
                .clone()
                .with_context(|| format!("QuantizeLinear {prefix}: input {ix} must be a constant"))
        };
        let scale = *konst(1)?
            .try_as_plain_ram()?
            .as_slice::<f32>()?
            .first()
            .context("empty scale")?;
        let (zero_point, signed) = if self.zero_point {
            let zp = konst(2)?;
            match zp.datum_type() {
                DatumType::U8 => (zp.cast_to_scalar::<i32>()?, false),
                DatumType::I8 => (zp.cast_to_scalar::<i32>()?, true),
                dt => bail!("QuantizeLinear {prefix}: zero point of type {dt:?}"),
            }
        } else {
            (0, false)
        };
        ensure!(
            scale.is_finite() && scale > 0.0,
            "QuantizeLinear {prefix}: scale {scale}"
        );
        let op = FusedQuantizeLinear {
            scale,
            zero_point,
            signed,
        };
        let mut x = inputs[0];
        if model.outlet_fact(x)?.datum_type != DatumType::F32 {
            x = model.wire_node(format!("{prefix}.to_f32"), super::to(DatumType::F32), &[x])?[0];
        }
        model.wire_node(prefix, op, &[x])
    }
}

#[derive(Debug, Clone)]
struct DequantizeExpansion {
    /// A third input: the per-channel bias added after scaling.
    bias: bool,
}

impl Expansion for DequantizeExpansion {
    fn name(&self) -> StaticName {
        "DequantizeLinear".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2 + self.bias as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[1].datum_type, f32::datum_type())?;
        if self.bias {
            s.equals(&inputs[2].datum_type, f32::datum_type())?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let scale = model
            .outlet_fact(inputs[1])?
            .konst
            .clone()
            .with_context(|| format!("DequantizeLinear {prefix}: the scale must be a constant"))?;
        let x = model.outlet_fact(inputs[0])?;
        ensure!(
            x.rank() >= 1,
            "DequantizeLinear {prefix}: per-axis scale for a scalar"
        );
        if let Ok(last) = x.shape[x.rank() - 1].to_usize() {
            ensure!(
                last == scale.len(),
                "DequantizeLinear {prefix}: {} scales for a last axis of {last}",
                scale.len()
            );
        }
        let bias = match self.bias {
            false => None,
            true => {
                let bias = model
                    .outlet_fact(inputs[2])?
                    .konst
                    .clone()
                    .with_context(|| {
                        format!("DequantizeLinear {prefix}: the bias must be a constant")
                    })?;
                ensure!(
                    bias.rank() == 1 && bias.len() == scale.len(),
                    "DequantizeLinear {prefix}: a bias of shape {:?} for {} channels",
                    bias.shape(),
                    scale.len()
                );
                Some(bias)
            }
        };
        model.wire_node(prefix, FusedDequantizeLinear { scale, bias }, &[inputs[0]])
    }
}

/// `saturate(round_half_to_even(x / scale) + zero_point)`, f32 to u8 or i8 (ONNX
/// `QuantizeLinear` with a per-tensor scale).
#[derive(Debug, Clone)]
pub struct FusedQuantizeLinear {
    pub scale: f32,
    pub zero_point: i32,
    /// i8 output (else u8).
    pub signed: bool,
}

impl PartialEq for FusedQuantizeLinear {
    fn eq(&self, other: &Self) -> bool {
        self.scale.to_bits() == other.scale.to_bits()
            && self.zero_point == other.zero_point
            && self.signed == other.signed
    }
}
impl Eq for FusedQuantizeLinear {}
impl std::hash::Hash for FusedQuantizeLinear {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.scale.to_bits(), self.zero_point, self.signed).hash(state)
    }
}

impl FusedQuantizeLinear {
    fn output_type(&self) -> DatumType {
        if self.signed {
            DatumType::I8
        } else {
            DatumType::U8
        }
    }
}

impl Op for FusedQuantizeLinear {
    fn name(&self) -> StaticName {
        "FusedQuantizeLinear".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "scale: {}, zero point: {}, to {:?}",
            self.scale,
            self.zero_point,
            self.output_type()
        )])
    }
    op_as_typed_op!();
}

impl EvalOp for FusedQuantizeLinear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = inputs.into_iter().next().context("input")?;
        let view = x.try_as_plain_ram()?;
        let (lo, hi) = if self.signed {
            (i8::MIN as i32, i8::MAX as i32)
        } else {
            (u8::MIN as i32, u8::MAX as i32)
        };
        // SAFETY: `quantize` writes every element (the input has as many) before it is read;
        // a byte type has no invalid values. (Zeroing it first was ~1% of a short query.)
        let mut y = unsafe { Tensor::uninitialized_dt(self.output_type(), x.shape())? };
        quantize(
            view.as_slice::<f32>()?,
            y.as_bytes_mut(),
            self.scale,
            self.zero_point,
            lo,
            hi,
        );
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for FusedQuantizeLinear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type == DatumType::F32,
            "FusedQuantizeLinear takes f32"
        );
        Ok(tvec!(self.output_type().fact(inputs[0].shape.clone())))
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        _outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        // Element-wise: tract may move reshapes and transposes across it.
        AxesMapping::natural_for_rank(1, 1, inputs[0].rank())
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let count: TDim = inputs[0].shape.iter().product();
        Ok(tvec!((Cost::FMA(DatumType::F32), count)))
    }

    as_op!();
}

/// `x · scale[c]` over the last axis `c`, integer to f32 (ONNX `DequantizeLinear` with a
/// per-channel scale on axis -1 and no zero point), then `+ bias[c]` if there is one.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedDequantizeLinear {
    /// 1-D f32, one scale per element of the last axis.
    pub scale: Arc<Tensor>,
    /// 1-D f32 of the same length: the layer's bias ([`fuse_dequantize_bias`]).
    pub bias: Option<Arc<Tensor>>,
}

impl Op for FusedDequantizeLinear {
    fn name(&self) -> StaticName {
        "FusedDequantizeLinear".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} channel scales{}",
            self.scale.len(),
            if self.bias.is_some() { ", bias" } else { "" }
        )])
    }
    op_as_typed_op!();
}

impl EvalOp for FusedDequantizeLinear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = inputs.into_iter().next().context("input")?;
        let scale_view = self.scale.try_as_plain_ram()?;
        let scale = scale_view.as_slice::<f32>()?;
        let channels = *x.shape().last().context("per-axis scale for a scalar")?;
        ensure!(
            channels == scale.len(),
            "DequantizeLinear: {} scales for a last axis of {channels}",
            scale.len()
        );
        let bias_view = self
            .bias
            .as_ref()
            .map(|b| b.try_as_plain_ram())
            .transpose()?;
        let bias = bias_view
            .as_ref()
            .map(|b| b.as_slice::<f32>())
            .transpose()?;
        ensure!(
            bias.is_none_or(|b| b.len() == channels),
            "DequantizeLinear: a bias of {} for {channels} channels",
            bias.map_or(0, <[f32]>::len)
        );
        if x.datum_type() != DatumType::I32 {
            // i8 / u8 / anything tract casts (exact in f32 for 8 and 16 bits).
            let mut y = x.cast_to::<f32>()?.into_owned();
            if channels > 0 {
                let mut y = y.try_as_plain_ram_mut()?;
                let y = y.as_slice_mut::<f32>()?;
                scale_in_place(y, scale);
                if let Some(bias) = bias {
                    add_in_place(y, bias);
                }
            }
            return Ok(tvec!(y.into_tvalue()));
        }
        // The i32 accumulators become f32 in their own buffer: a fresh output of this
        // size (up to 64 x 1536 x 4 bytes) would be new pages on every query (the kernel
        // faulting them in cost more than the arithmetic).
        let mut y = x.into_tensor();
        if channels > 0 {
            let mut acc = y.try_as_plain_ram_mut()?;
            let acc = acc.as_slice_mut::<i32>()?;
            match bias {
                None => dequantize_i32_in_place(acc, scale),
                Some(bias) => dequantize_i32_bias_in_place(acc, scale, bias),
            }
        }
        // SAFETY: i32 and f32 have the same size and alignment, and every element now
        // holds the bits of an f32 (written just above; there are none if channels = 0).
        unsafe { y.set_datum_type(DatumType::F32) };
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for FusedDequantizeLinear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].rank() >= 1, "per-axis scale for a scalar");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let count: TDim = inputs[0].shape.iter().product();
        Ok(tvec!((Cost::FMA(DatumType::F32), count)))
    }

    as_op!();
}

/// 1.5·2²³: adding it to an f32 of magnitude < 2²² rounds it to an integer (half to
/// even, the FPU's mode) held in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// One quantised value per input, written to `y` as the low byte of an i32 in
/// `[lo, hi]` (two's complement for i8). The division is exact IEEE like the ONNX
/// definition's, the clamp happens before rounding (the same result, since `lo - zp`
/// and `hi - zp` are integers) and NaN saturates to the low end.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
pub fn quantize(x: &[f32], y: &mut [u8], scale: f32, zero_point: i32, lo: i32, hi: i32) {
    #[cfg(target_arch = "aarch64")]
    {
        neon::quantize(x, y, scale, zero_point, lo, hi);
        return;
    }
    #[allow(unreachable_code)]
    quantize_exact(x, y, scale, zero_point, lo, hi)
}

/// [`quantize`] with a division per value: the definition itself.
#[inline(always)]
fn quantize_exact(x: &[f32], y: &mut [u8], scale: f32, zero_point: i32, lo: i32, hi: i32) {
    let (flo, fhi) = ((lo - zero_point) as f32, (hi - zero_point) as f32);
    let bias = ROUND.to_bits() as i32;
    for (y, &v) in y.iter_mut().zip(x) {
        let r = (v / scale).max(flo).min(fhi) + ROUND;
        *y = (r.to_bits() as i32 - bias + zero_point) as u8;
    }
}

/// [`quantize`] on AArch64 without a division per value: a vector `fdiv` issues about
/// once per ten cycles on a Cortex-A72, which made the int8-compute variant's quantisations
/// a tenth of a 64-token query of the tiny preset in the ARM estimate. `x · (1/scale)` is
/// within a few parts in 2²³ of the exact quotient, so each value is rounded twice, from
/// `x · (1/scale)·(1 ∓ 2⁻²⁰)`, two products that bracket the quotient: where both give the
/// same integer, so does the quotient (rounding is monotonic). A group of 16 with a value
/// whose two roundings differ (a tie or a near-tie) goes through the division, so the
/// result is the definition's, bit for bit. (Two products and an integer compare per
/// vector instead of measuring the distance to the half-integer: 10 vector operations per 4
/// values instead of 12; 8 where the clamp is to a whole byte type and the saturating
/// narrowings do it.)
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// The clamp to the whole i8 range: saturating narrowings.
    const FULL_I8: u8 = 0;
    /// The clamp to the whole u8 range: saturating narrowings to unsigned.
    const FULL_U8: u8 = 1;
    /// Any other range: an explicit clamp.
    const CLAMPED: u8 = 2;

    pub(super) fn quantize(x: &[f32], y: &mut [u8], scale: f32, zero_point: i32, lo: i32, hi: i32) {
        // Every quantisation of an exported model clamps to a whole byte type: there the
        // saturating narrowings to bytes are the clamp (a saturating add of the zero point,
        // then two narrowings), two vector operations per 4 values fewer than max, min, add.
        match (lo, hi) {
            (-128, 127) => quantize_with::<FULL_I8>(x, y, scale, zero_point, lo, hi),
            (0, 255) => quantize_with::<FULL_U8>(x, y, scale, zero_point, lo, hi),
            _ => quantize_with::<CLAMPED>(x, y, scale, zero_point, lo, hi),
        }
    }

    #[inline(always)]
    fn quantize_with<const RANGE: u8>(
        x: &[f32],
        y: &mut [u8],
        scale: f32,
        zero_point: i32,
        lo: i32,
        hi: i32,
    ) {
        let n = x.len().min(y.len());
        let inv = 1.0 / scale;
        let (inv_lo, inv_hi) = (
            inv * (1.0 - 1.0 / 1_048_576.0),
            inv * (1.0 + 1.0 / 1_048_576.0),
        );
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: `x` and `y` hold 16 values from `i` (NEON is part of every AArch64
            // target).
            let done = unsafe {
                let p = x.as_ptr().add(i);
                let (ilo, ihi) = (vdupq_n_s32(lo - zero_point), vdupq_n_s32(hi - zero_point));
                let zp = vdupq_n_s32(zero_point);
                let mut sure = vdupq_n_u32(u32::MAX);
                let mut out = [vdupq_n_s32(0); 4];
                for (j, out) in out.iter_mut().enumerate() {
                    // NaN → -inf (maxnm), so the low end, as the definition's form.
                    let v = vmaxnmq_f32(vld1q_f32(p.add(4 * j)), vdupq_n_f32(f32::NEG_INFINITY));
                    let a = vcvtnq_s32_f32(vmulq_n_f32(v, inv_lo));
                    let b = vcvtnq_s32_f32(vmulq_n_f32(v, inv_hi));
                    sure = vandq_u32(sure, vceqq_s32(a, b));
                    *out = if RANGE == CLAMPED {
                        vaddq_s32(vminq_s32(vmaxq_s32(a, ilo), ihi), zp)
                    } else {
                        vqaddq_s32(a, zp)
                    };
                }
                if vminvq_u32(sure) == u32::MAX {
                    let bytes = match RANGE {
                        FULL_I8 => {
                            let lo16 = vcombine_s16(vqmovn_s32(out[0]), vqmovn_s32(out[1]));
                            let hi16 = vcombine_s16(vqmovn_s32(out[2]), vqmovn_s32(out[3]));
                            vreinterpretq_u8_s8(vcombine_s8(vqmovn_s16(lo16), vqmovn_s16(hi16)))
                        }
                        FULL_U8 => {
                            let lo16 = vcombine_u16(vqmovun_s32(out[0]), vqmovun_s32(out[1]));
                            let hi16 = vcombine_u16(vqmovun_s32(out[2]), vqmovun_s32(out[3]));
                            vcombine_u8(vqmovn_u16(lo16), vqmovn_u16(hi16))
                        }
                        _ => {
                            // In range already: the low byte of each.
                            let lo16 = vcombine_s16(vmovn_s32(out[0]), vmovn_s32(out[1]));
                            let hi16 = vcombine_s16(vmovn_s32(out[2]), vmovn_s32(out[3]));
                            vreinterpretq_u8_s8(vcombine_s8(vmovn_s16(lo16), vmovn_s16(hi16)))
                        }
                    };
                    vst1q_u8(y.as_mut_ptr().add(i), bytes);
                    true
                } else {
                    false
                }
            };
            if !done {
                super::quantize_exact(&x[i..i + 16], &mut y[i..i + 16], scale, zero_point, lo, hi);
            }
            i += 16;
        }
        super::quantize_exact(&x[i..n], &mut y[i..n], scale, zero_point, lo, hi);
    }
}

/// Each i32 of `x` (rows of `scale.len()` channels) replaced by the bits of
/// `x · scale[channel]` as f32.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn dequantize_i32_in_place(x: &mut [i32], scale: &[f32]) {
    for row in x.chunks_exact_mut(scale.len()) {
        for (v, &s) in row.iter_mut().zip(scale) {
            *v = (*v as f32 * s).to_bits() as i32;
        }
    }
}

/// [`dequantize_i32_in_place`] and then `+ bias[channel]`, in one pass: the same two
/// roundings as the separate `DequantizeLinear` and `Add` (no fused multiply-add).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn dequantize_i32_bias_in_place(x: &mut [i32], scale: &[f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(scale.len()) {
        for ((v, &s), &b) in row.iter_mut().zip(scale).zip(bias) {
            let scaled = *v as f32 * s;
            *v = (scaled + b).to_bits() as i32;
        }
    }
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn add_in_place(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn scale_in_place(x: &mut [f32], scale: &[f32]) {
    for row in x.chunks_exact_mut(scale.len()) {
        for (v, &s) in row.iter_mut().zip(scale) {
            *v *= s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_graph::*;
    use super::*;
    use tract_onnx::pb::tensor_proto::DataType;

    /// The ONNX definition, computed the slow obvious way.
    fn reference(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
        let r = (x / scale).round_ties_even();
        if r.is_nan() {
            return lo; // saturates like the kernel (ONNX leaves NaN unspecified)
        }
        (r as i64)
            .saturating_add(zero_point as i64)
            .clamp(lo as i64, hi as i64) as i32
    }

    #[test]
    fn quantize_matches_the_onnx_definition() {
        let scale = 0.05f32;
        let mut xs: Vec<f32> = (-12_000..12_000).map(|i| i as f32 * 0.00125).collect();
        // Exact ties (k + 0.5 steps) round to even; extremes saturate.
        xs.extend((-10..10).map(|k| (k as f32 + 0.5) * scale));
        xs.extend([
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            0.0,
            -0.0,
        ]);
        for (zp, lo, hi) in [
            (128, 0, 255),
            (0, 0, 255),
            (255, 0, 255),
            (0, -128, 127),
            (3, -128, 127),
            (127, -128, 127),
            (5, -100, 100),
            (-128, -128, 127),
        ] {
            let mut q = vec![0u8; xs.len()];
            quantize(&xs, &mut q, scale, zp, lo, hi);
            for (x, got) in xs.iter().zip(&q) {
                let got = if lo < 0 {
                    *got as i8 as i32
                } else {
                    *got as i32
                };
                assert_eq!(got, reference(*x, scale, zp, lo, hi), "x {x}, zp {zp}");
            }
        }
    }

    /// Many values at scales that are not powers of two, most of them within an ulp or
    /// two of a rounding tie (where multiplying by 1/scale and dividing can disagree), and
    /// long enough to go through the vector groups: always the definition's integer.
    #[test]
    fn quantize_matches_the_definition_next_to_ties() {
        for scale in [0.0173f32, 0.05, 0.3, 1.0 / 3.0, 7.9e-3] {
            let mut xs = Vec::new();
            for k in -300..300 {
                let tie = (k as f32 + 0.5) * scale;
                let mut v = tie;
                for _ in 0..3 {
                    v = v.next_down();
                }
                for _ in 0..7 {
                    xs.push(v);
                    v = v.next_up();
                }
                xs.push(k as f32 * scale + scale * 0.123);
            }
            for (zp, lo, hi) in [(128, 0, 255), (-3, -128, 127)] {
                let mut q = vec![0u8; xs.len()];
                quantize(&xs, &mut q, scale, zp, lo, hi);
                for (x, got) in xs.iter().zip(&q) {
                    let got = if lo < 0 {
                        *got as i8 as i32
                    } else {
                        *got as i32
                    };
                    assert_eq!(
                        got,
                        reference(*x, scale, zp, lo, hi),
                        "x {x}, scale {scale}"
                    );
                }
            }
        }
    }

    #[test]
    fn dequantize_scales_each_channel() {
        let x: Vec<i32> = (0..12).map(|i| i * 1000 - 5000).collect();
        let scale = [0.5f32, 2.0, -1e-3];
        let mut y = x.clone();
        dequantize_i32_in_place(&mut y, &scale);
        let mut yf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        scale_in_place(&mut yf, &scale);
        for (i, v) in x.iter().enumerate() {
            let want = *v as f32 * scale[i % 3];
            assert_eq!(f32::from_bits(y[i] as u32), want);
            assert_eq!(yf[i], want);
        }
    }

    /// Every form the two parsers meet gives exactly what tract's own ops give in an
    /// optimised plan: QuantizeLinear to u8, to i8 and without a zero point (fused) and
    /// per-axis (tract's); DequantizeLinear per channel of a MatMulInteger's i32 output
    /// and of u8 values (fused), and per-tensor with a zero point (tract's). The inputs
    /// sit a quarter step from the rounding boundaries, where the two rounding rules
    /// (tract: half away from zero, times 1/scale; ONNX: half to even, divided) agree.
    #[test]
    fn quant_graph_matches_tract_ops() {
        let (scale, dims) = (0.02f32, [2usize, 5, 24]);
        let n = dims.iter().product::<usize>();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 301) as f32 - 150.0 + 0.25) * scale)
            .collect();
        let weights: Vec<u8> = (0..24 * 7)
            .map(|i| ((i * 13 % 255) - 127) as i8 as u8)
            .collect();
        let channel_scales = |count: usize, seed: u64| pb::TensorProto {
            dims: vec![count as i64],
            ..f32_initializer("", &[count as i64], seed)
        };
        let named = |mut t: pb::TensorProto, name: &str| {
            t.name = name.into();
            t.float_data
                .iter_mut()
                .for_each(|v| *v = v.abs() * 1e-3 + 1e-4);
            t
        };
        let node_axis =
            |op: &str, inputs: &[&str], out: &str| node(op, inputs, out, &[("axis", -1)]);
        let names = ["q1", "q2", "y1", "y2", "y3", "y4"];
        let graph = pb::GraphProto {
            node: vec![
                node("QuantizeLinear", &["x", "s", "zp_u8"], "q1", &[]),
                node("QuantizeLinear", &["x", "s", "zp_i8"], "q2", &[]),
                node("QuantizeLinear", &["x", "s"], "q3", &[]),
                node_axis("QuantizeLinear", &["x", "s24", "zp24"], "q4"),
                node("MatMulInteger", &["q1", "w", "zp_u8"], "acc", &[]),
                node_axis("DequantizeLinear", &["acc", "s7"], "y1"),
                node_axis("DequantizeLinear", &["q3", "s24"], "y2"),
                node("DequantizeLinear", &["q2", "s", "zp_i8"], "y3", &[]),
                node_axis("DequantizeLinear", &["q4", "s24", "zp24"], "y4"),
            ],
            initializer: vec![
                f32_scalar("s", scale),
                raw_initializer("zp_u8", &[], DataType::Uint8, vec![128]),
                raw_initializer("zp_i8", &[], DataType::Int8, vec![(-3i8) as u8]),
                raw_initializer(
                    "zp24",
                    &[24],
                    DataType::Uint8,
                    (0..24).map(|i| 100 + i).collect(),
                ),
                raw_initializer("w", &[24, 7], DataType::Int8, weights),
                named(channel_scales(7, 31), "s7"),
                named(channel_scales(24, 32), "s24"),
            ],
            input: vec![input_info("x", DataType::Float, &[2, 5, 24])],
            output: outputs(&names),
            ..Default::default()
        };
        let proto = model(graph);
        let input = tract_ndarray::Array3::from_shape_vec(dims, x)
            .unwrap()
            .into_tensor();
        let run = |fused: bool| -> Vec<Tensor> {
            let plan = plan(&proto, fused);
            let expected = if fused { (3, 2) } else { (0, 0) };
            assert_eq!(
                (
                    op_count(&plan, "FusedQuantizeLinear"),
                    op_count(&plan, "FusedDequantizeLinear")
                ),
                expected
            );
            run_all(&plan, std::slice::from_ref(&input))
        };
        let (fused, tract) = (run(true), run(false));
        assert_eq!(fused.len(), names.len());
        for ((f, t), name) in fused.iter().zip(&tract).zip(names) {
            assert_eq!(f.datum_type(), t.datum_type(), "{name}");
            assert_eq!(f.shape(), t.shape(), "{name}");
            assert_eq!(f, t, "{name}: fused and tract's ops differ");
        }
        // Not vacuous: the u8 quantisation spans the grid and the matmul is non-zero.
        let q1 = fused[0].to_plain_array_view::<u8>().unwrap();
        assert!(q1.iter().any(|&v| v < 10) && q1.iter().any(|&v| v > 245));
        let y1 = fused[2].to_plain_array_view::<f32>().unwrap();
        assert!(y1.iter().any(|&v| v.abs() > 1e-3));
    }

    /// `DequantizeLinear` + bias `Add` (either operand order) become one node with the same
    /// results; a dequantised value with a second consumer, or a bias of another length,
    /// keeps its Add.
    #[test]
    fn dequantize_and_bias_merge_with_the_same_results() {
        let acc: Vec<i32> = (0..2 * 3 * 6).map(|i| i * 977 % 4001 - 2000).collect();
        let node_axis =
            |op: &str, inputs: &[&str], out: &str| node(op, inputs, out, &[("axis", -1)]);
        let graph = pb::GraphProto {
            node: vec![
                node_axis("DequantizeLinear", &["acc", "s6"], "d1"),
                node("Add", &["d1", "b6"], "y1", &[]),
                node_axis("DequantizeLinear", &["acc", "s6"], "d2"),
                node("Add", &["b6", "d2"], "y2", &[]),
                node_axis("DequantizeLinear", &["acc", "s6"], "d3"),
                node("Add", &["d3", "b6"], "y3", &[]),
                node("Mul", &["d3", "d3"], "y4", &[]),
                node_axis("DequantizeLinear", &["acc", "s6"], "d5"),
                node("Add", &["d5", "b1"], "y5", &[]),
            ],
            initializer: vec![
                f32_initializer("s6", &[6], 1),
                f32_initializer("b6", &[6], 2),
                f32_initializer("b1", &[1], 3),
            ],
            input: vec![input_info("acc", DataType::Int32, &[2, 3, 6])],
            output: outputs(&["y1", "y2", "y3", "y4", "y5"]),
            ..Default::default()
        };
        let run = |graph: pb::GraphProto| {
            let plan = plan(&model(graph), true);
            let x = tract_ndarray::Array3::from_shape_vec((2, 3, 6), acc.clone())
                .unwrap()
                .into_tensor();
            let adds = op_names(&plan).iter().filter(|n| n.contains("Add")).count();
            let y: Vec<Vec<f32>> = run_all(&plan, &[x]).iter().map(flat::<f32>).collect();
            (adds, y)
        };
        let mut merged = graph.clone();
        assert_eq!(fuse_dequantize_bias(&mut merged), 2);
        assert_eq!(merged.node.len(), graph.node.len() - 2);
        let (adds, got) = run(merged);
        let (plain_adds, want) = run(graph);
        assert_eq!(got, want, "bit for bit");
        assert_eq!(adds + 2, plain_adds);
    }
}
