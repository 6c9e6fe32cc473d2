//! The one stage that turns an ONNX protobuf into the graphs the engine runs, and the only
//! place that decides which of the device's fusions ([`crate::fused_ops`]) run.
//!
//! [`optimise`] goes from the protobuf to the decluttered typed model (`batch` and `seq`
//! symbolic) the engine keeps; [`plan`] goes from that model to a runnable plan (the
//! symbolic one, or one with `batch` = 1 and `seq` fixed). The engine calls nothing else
//! of tract's model pipeline and no fusion directly. In order:
//!
//! | # | stage | fusion | what it replaces | off with |
//! |---|---|---|---|---|
//! | 1 | protobuf | [`fuse_attention`] | the attention core: head split and merge, `Q·Kᵀ`, scale, mask, `Softmax`, `·V` → one `DeviceFusedAttention` node ([`FusedAttention`]) | `tract_ops` |
//! | 1' | protobuf | [`fuse_attention_pool`] | the attention pooling's tail: `Squeeze` of the scores, mask `Add`, `Softmax` (the `attention` output), `Unsqueeze`, `Mul` by the token vectors, `ReduceSum` over the tokens → one `DeviceAttentionPool` node with both outputs ([`FusedAttentionPool`]) | `tract_ops` |
//! | 1'' | protobuf | [`fuse_additive_mask`] | the padding mask `(1 - Cast<f32>(attention_mask)) · c`: `Cast`, `Sub`, `Mul` → one `DeviceAdditiveMask` node ([`FusedAdditiveMask`]) | `tract_ops` |
//! | 2 | protobuf | [`fuse_embedding_bag`] | the n-gram bag of a model with `ngram_ids`: `Greater`/`Cast` of the ids, their count, the row `Gather`s (int8 table: and its `Cast` and the scale `Gather` and `Mul`), `Unsqueeze`, `MatMul`, `Squeeze` → one `DeviceEmbeddingBag` node ([`FusedEmbeddingBag`]), which skips padding ids | `tract_ops` |
//! | 2' | protobuf | [`fuse_embeddings`] | the input embeddings: word rows by `input_ids` and position rows by `Range(0, seq)` (f32 `Gather`s, or int8 `Gather`, `Cast` and the row scales' `Gather`, `Unsqueeze`, `Mul`), their `Add` and `LayerNormalization` → one `DeviceEmbeddings` node ([`FusedEmbeddings`]) | `tract_ops` |
//! | 3 | protobuf | [`quantize_to_i8`] | a u8 `QuantizeLinear` feeding only `MatMulInteger` → an i8 one (tract's u8 → i8 offset node per matmul disappears) | `tract_ops` |
//! | 4 | protobuf | [`fuse_cast_scale`], [`fuse_dequantize_bias`] | an unbiased layer's `Cast` of the `MatMulInteger` result + its per-channel scale `Mul` → `DequantizeLinear` (so 8 takes the pooling query too); per-channel `DequantizeLinear` + its bias `Add` → one `DeviceDequantizeLinearBias` node | `tract_ops` |
//! | 5 | parser | [`fused_ops::register`] | tract's parsers of `LayerNormalization`, `Softmax` (opset ≥ 13), `QuantizeLinear`, `DequantizeLinear` (and the nodes of 1, 1', 1'', 2, 2' and 4) → [`FusedLayerNorm`], [`FusedSoftmax`], [`FusedQuantizeLinear`], [`FusedDequantizeLinear`], [`FusedAttention`], [`FusedAttentionPool`], [`FusedAdditiveMask`], [`FusedEmbeddingBag`], [`FusedEmbeddings`] | `tract_ops` |
//! | 6 | decluttered model | [`fuse_gelu`] | tract's f32 `GeluExact` → [`FusedGelu`] | `tract_ops` |
//! | 7 | decluttered model | [`fuse_dense`] | f32 `EinSum` by a constant `[k, n]` matrix (+ its constant bias `Add`) → [`FusedDense`]; AVX-512F cores and aarch64 | `dense` (or `tract_ops`) |
//! | 7' | decluttered model | [`fuse_dense_dynamic_i8`] | in place of 7 when asked ([`FusionOptions::int8_activations`], the `+int8-act` choice of a weights-int8 variant): the same layers → [`FusedDenseDynamicI8`], int8 weights and per-token int8 activations on the tiles of 8 | `tract_ops` |
//! | 8 | decluttered model | [`fuse_dense_i8`] | int8 `EinSum` + [`FusedDequantizeLinear`] → [`FusedDenseI8`], which also takes in the [`FusedQuantizeLinear`] before it when the layer is its only reader and the element-wise op after it (GELU, `Tanh`) when that is the output's only reader; AVX-512 VNNI and aarch64 cores (`sdot` with the dot product, else `smull`) | `dense_i8` (or `tract_ops`) |
//! | 9 | optimised plan | [`fuse_adds`] | f32 `Add` nodes tract left to its generic evaluator, broadcasting by rows → [`FusedAdd`] | `tract_ops` |
//!
//! The options are [`FusionOptions`]; an f16 engine (tract's `f32_to_f16` transform, applied
//! by the engine after this stage) runs none of them ([`FusionOptions::none`]), the fused
//! kernels being f32. Which matmul kernels tract picks when a plan is optimised is the
//! other knob of [`plan`] ([`KernelOptions`]).
//!
//! 1-4 stay rewrites of the protobuf: tract's parser and declutter turn the attention
//! pattern into axis moves and `EinSum`s whose form depends on its own rewrite order (and
//! the bag into gathers, casts and a packed matmul), while the exported ONNX form is
//! fixed, and 3-5 must happen before parsing because the parser
//! picks an op by the node's type. 6-8 are passes over the decluttered model, each one walk
//! matching one op (they match disjoint ops, so their order only fixes node names), and 9
//! one walk over the optimised plan, which is where tract has decided which additions it
//! leaves generic.
//!
//! [`fused_ops::register`]: crate::fused_ops::register
//! [`FusedLayerNorm`]: crate::fused_ops::FusedLayerNorm
//! [`FusedSoftmax`]: crate::fused_ops::FusedSoftmax
//! [`FusedAttention`]: crate::fused_ops::FusedAttention
//! [`FusedAttentionPool`]: crate::fused_ops::FusedAttentionPool
//! [`FusedAdditiveMask`]: crate::fused_ops::FusedAdditiveMask
//! [`FusedEmbeddingBag`]: crate::fused_ops::FusedEmbeddingBag
//! [`FusedEmbeddings`]: crate::fused_ops::FusedEmbeddings
//! [`FusedQuantizeLinear`]: crate::fused_ops::FusedQuantizeLinear
//! [`FusedDequantizeLinear`]: crate::fused_ops::FusedDequantizeLinear
//! [`FusedGelu`]: crate::fused_ops::FusedGelu
//! [`FusedDense`]: crate::fused_ops::FusedDense
//! [`FusedDenseI8`]: crate::fused_ops::FusedDenseI8
//! [`FusedDenseDynamicI8`]: crate::fused_ops::FusedDenseDynamicI8
//! [`FusedAdd`]: crate::fused_ops::FusedAdd

use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::fused_ops::{
    self, fuse_additive_mask, fuse_adds, fuse_attention, fuse_attention_pool, fuse_cast_scale,
    fuse_dense, fuse_dense_dynamic_i8, fuse_dense_i8, fuse_dequantize_bias, fuse_embedding_bag,
    fuse_embeddings, fuse_gelu, quantize_to_i8,
};
use crate::matmul_kernels::KernelOptions;

/// Which of the device's fusions run (see the table of the module doc). The default is
/// every fusion this CPU has the kernels for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusionOptions {
    /// tract's own ops everywhere: none of the fusions (for comparison and checks).
    pub tract_ops: bool,
    /// The f32 dense layers as `FusedDense` on AVX-512F cores and aarch64 (fusion 7).
    pub dense: bool,
    /// The int8-compute dense layers as `FusedDenseI8` on AVX-512 VNNI and aarch64 cores
    /// (fusion 8).
    pub dense_i8: bool,
    /// The f32 dense layers as `FusedDenseDynamicI8` (fusion 7' in place of 7): int8
    /// products with the activations quantised per token. Not the variant's definition
    /// (answers move by the activations' rounding): off unless a choice asks for it.
    pub int8_activations: bool,
}

impl Default for FusionOptions {
    fn default() -> Self {
        FusionOptions {
            tract_ops: false,
            dense: true,
            dense_i8: true,
            int8_activations: false,
        }
    }
}

impl FusionOptions {
    /// No fusion at all: tract's own ops.
    pub fn none() -> FusionOptions {
        FusionOptions {
            tract_ops: true,
            ..FusionOptions::default()
        }
    }

    /// Whether any fusion runs (the device's kernels are in use).
    pub fn fused(&self) -> bool {
        !self.tract_ops
    }

    /// Fusion 7 runs: asked for, and this CPU has the tiles.
    fn dense_here(&self) -> bool {
        self.fused() && self.dense && fused_ops::dense::available()
    }

    /// Fusion 7' runs: asked for, and this CPU has the int8 tiles.
    pub fn int8_activations_here(&self) -> bool {
        self.fused() && self.int8_activations && fused_ops::dense_dynamic_i8::available()
    }

    /// Fusion 8 runs: asked for, and this CPU has the tiles.
    fn dense_i8_here(&self) -> bool {
        self.fused() && self.dense_i8 && fused_ops::dense_i8::available()
    }
}

/// Parses `proto` with `onnx` (whose data provider serves the external data; `model_dir`
/// is where the protobuf's external references are resolved), types and declutters it, with
/// fusions 1-8 of the module doc as `options` say. The protobuf is dropped as soon as tract
/// has parsed it. Errors say which step failed (`tract cannot parse it`, `unresolved
/// inputs`, `tract cannot type it`, or the failing fusion).
pub fn optimise(
    mut onnx: tract_onnx::Onnx,
    mut proto: pb::ModelProto,
    model_dir: Option<&str>,
    options: &FusionOptions,
) -> TractResult<TypedModel> {
    let parsed = {
        if options.fused() {
            // 5: the fused parsers.
            fused_ops::register(&mut onnx.op_register);
            if let Some(graph) = proto.graph.as_mut() {
                // 1-4.
                fuse_attention(graph);
                fuse_attention_pool(graph);
                fuse_additive_mask(graph);
                fuse_embedding_bag(graph);
                fuse_embeddings(graph);
                quantize_to_i8(graph);
                fuse_cast_scale(graph);
                fuse_dequantize_bias(graph);
            }
        }
        onnx.parse(&proto, model_dir)
            .map_err(|e| e.context("tract cannot parse it"))?
    };
    drop(proto);
    drop(onnx);
    if !parsed.unresolved_inputs.is_empty() {
        return Err(TractError::msg(format!(
            "unresolved inputs {:?}",
            parsed.unresolved_inputs
        )));
    }
    let mut typed = parsed
        .model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| e.context("tract cannot type it"))?;
    if options.fused() {
        // 6-8.
        fuse_gelu(&mut typed)?;
        if options.int8_activations_here() {
            fuse_dense_dynamic_i8(&mut typed)?;
        } else if options.dense_here() {
            fuse_dense(&mut typed)?;
        }
        if options.dense_i8_here() {
            fuse_dense_i8(&mut typed)?;
        }
    }
    Ok(typed)
}

/// The runnable plan of `model` (the output of [`optimise`]): symbolic (`fixed` None) or
/// with the symbols `(batch, seq)` set to 1 and `len`, optimised by tract under `kernels`,
/// then fusion 9 as `options` say.
pub fn plan(
    model: &TypedModel,
    fixed: Option<(&(Symbol, Symbol), usize)>,
    options: &FusionOptions,
    kernels: &KernelOptions,
) -> TractResult<Arc<TypedSimplePlan>> {
    let mut optimised = crate::matmul_kernels::with_options(kernels, || match fixed {
        None => model.clone().into_optimized(),
        Some(((batch, seq), len)) => {
            let subs = std::collections::HashMap::from([
                (batch.clone(), TDim::Val(1)),
                (seq.clone(), TDim::Val(len as i64)),
            ]);
            model
                .set_symbols(&subs)
                .and_then(|m| m.into_optimized())
                .map_err(|e| e.context(format!("fixed-length plan for seq {len}")))
        }
    })?;
    if options.fused() {
        // 9.
        fuse_adds(&mut optimised)?;
    }
    optimised.into_runnable()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        f32_initializer, input_info, model, node, op_names, outputs,
    };

    /// LayerNorm, Softmax and an addition: fusions 4 and 8.
    fn proto() -> pb::ModelProto {
        let graph = pb::GraphProto {
            node: vec![
                node(
                    "LayerNormalization",
                    &["x", "g", "b"],
                    "ln",
                    &[("axis", -1)],
                ),
                node("Softmax", &["ln"], "sm", &[("axis", -1)]),
                node("Add", &["sm", "x"], "y", &[]),
            ],
            initializer: vec![
                f32_initializer("g", &[24], 1),
                f32_initializer("b", &[24], 2),
            ],
            input: vec![input_info(
                "x",
                pb::tensor_proto::DataType::Float,
                &[2, 5, 24],
            )],
            output: outputs(&["y"]),
            ..Default::default()
        };
        model(graph)
    }

    fn fused_op_names(options: &FusionOptions) -> Vec<String> {
        let typed = optimise(tract_onnx::onnx(), proto(), None, options).unwrap();
        let plan = plan(&typed, None, options, &KernelOptions::default()).unwrap();
        let mut names: Vec<String> = op_names(&plan)
            .into_iter()
            .filter(|n| n.starts_with("Fused"))
            .collect();
        names.sort();
        names
    }

    /// The stage decides from its options alone: the variables the `device` binary maps
    /// onto options change nothing here.
    #[test]
    fn the_options_decide_and_the_environment_does_not() {
        // Safe in edition 2021; nothing in the library reads them.
        std::env::set_var("DEVICE_TRACT_OPS", "1");
        let fused = fused_op_names(&FusionOptions::default());
        std::env::remove_var("DEVICE_TRACT_OPS");
        assert!(fused.contains(&"FusedLayerNorm".to_string()), "{fused:?}");
        assert!(fused.contains(&"FusedSoftmax".to_string()), "{fused:?}");
        assert!(fused_op_names(&FusionOptions::none()).is_empty());
    }
}
