//! The ONNX writer: checkpoint weights -> a standard ONNX model the board runs with tract.
//!
//! Writes exactly the math of `docs/model.md` with the protobuf types tract itself uses
//! (`tract_onnx::pb`), encoded by prost; no other ONNX crate. Opset 17 (default domain,
//! for `LayerNormalization`), IR version 8. Interface, shared with the device engine:
//!
//! | tensor | type | shape |
//! |---|---|---|
//! | `input_ids` (input) | int64 | `[batch, seq]` |
//! | `attention_mask` (input) | int64 | `[batch, seq]`, 1 = token, 0 = padding |
//! | `logits` (output) | f32 | `[batch, C]` |
//! | `attention` (output) | f32 | `[batch, seq]`, pooling weights α, 0 on padding |
//!
//! `batch` and `seq` are symbolic. Organised like tract's ops folder: [`GraphBuilder`]
//! hands out unique names and collects nodes and initializers, and one small function
//! per block of the network ([`embeddings`], [`attention`], [`ffn`], [`layer_norm`],
//! [`pooling`], [`classifier`]) emits that block's nodes.
//!
//! Linear weights are stored `[out, in]` in the checkpoint; [`GraphBuilder::matmul_weight`]
//! is the single place that turns one into a MatMul operand (`[in, out]` initializer),
//! and [`GraphBuilder::matmul`] the single place that multiplies by one. A quantised
//! model ([`build_onnx_quantized`]) changes only those two and the embedding tables:
//!
//! | variant | linear layer | embedding table |
//! |---|---|---|
//! | `weights-int8` | `DequantizeLinear(int8 W[in,out], scale[out], axis=1) -> MatMul -> Add b` | `Gather(int8 T, ids) -> Cast -> Mul(Gather(scale[rows], ids))` (only the used rows are scaled) |
//! | `int8-compute` | `QuantizeLinear(x, s_x, zp_x) -> MatMulInteger(x_u8, int8 W, zp_x) -> DequantizeLinear(s_x*scale[out], axis=-1) -> Add b` (no bias: `Cast -> Mul`, see [`GraphBuilder::matmul`]) | same as weights-int8 |
//!
//! Both variants reference the same int8 tensors, which can live in one external-data
//! file ([`pack_int8`]) that the two graphs share.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Tensor};
use device::engine::OUTPUT_NAMES;
use prost::Message;
use tract_onnx::pb;

use crate::config::ModelConfig;
use crate::quantize::{is_embedding_table, QuantizedModel, Variant, NGRAM_TABLE};

/// ONNX opset of the default domain.
pub const OPSET_VERSION: i64 = 17;
/// ONNX IR version.
pub const IR_VERSION: i64 = 8;
/// `producer_name` of written models.
pub const PRODUCER_NAME: &str = "edge-classifier";
/// Name of the symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";
/// Name of the symbolic sequence dimension.
pub const SEQ_DIM: &str = "seq";

const INPUT_IDS: &str = device::engine::INPUT_NAMES[0];
const ATTENTION_MASK: &str = device::engine::INPUT_NAMES[1];
const NGRAM_IDS: &str = device::engine::NGRAM_INPUT;
const LOGITS: &str = OUTPUT_NAMES[0];
const ATTENTION: &str = OUTPUT_NAMES[1];
/// Additive mask value for padding, as in the candle model (see there why -3e4).
const MASK_NEG: f32 = crate::model::layers::MASK_NEG as f32;

/// Why a checkpoint could not be written as ONNX.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("missing weight {name}")]
    MissingWeight { name: String },
    #[error("weight {name}: wrong shape: expected {expected:?}, got {got:?}")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("weight {name}: cannot read values: {cause}")]
    Tensor {
        name: String,
        cause: candle_core::Error,
    },
    #[error("config: {0}")]
    Config(String),
    #[error("quantised model: {0}")]
    Quantized(String),
}

type Result<T> = std::result::Result<T, OnnxError>;

/// Writes the model described by `config` with the checkpoint `weights` (names and
/// shapes of `docs/model.md`) as ONNX bytes.
pub fn build_onnx(config: &ModelConfig, weights: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    check_config(config)?;
    let b = GraphBuilder::new(weights);
    build_graph(config, b)
}

/// Where the int8 tensors of a quantised graph live: one external-data file (`location`,
/// a file name beside the ONNX) with each tensor's (offset, length), or inline.
#[derive(Debug, Clone, Default)]
pub struct ExternalLayout {
    pub location: String,
    pub offsets: HashMap<String, (usize, usize)>,
}

/// The int8 operand written for quantised tensor `name`: linear weights transposed to
/// the MatMul operand `[in, out]`, embedding tables as stored `[rows, d]`.
fn int8_operand(q: &QuantizedModel, name: &str) -> Option<(Vec<usize>, Vec<i8>)> {
    let t = q.tables.get(name)?;
    if is_embedding_table(name) {
        return Some((vec![t.rows, t.cols], t.values.clone()));
    }
    let mut v = vec![0i8; t.values.len()];
    for o in 0..t.rows {
        for i in 0..t.cols {
            v[i * t.rows + o] = t.values[o * t.cols + i];
        }
    }
    Some((vec![t.cols, t.rows], v))
}

/// Packs the tensors both variants share into one blob (each 64-byte aligned) for
/// external data: every int8 tensor (key: its name), its f32 per-row scales (key:
/// `NAME.scale`) and every tensor that stays f32 (LayerNorm, biases; key: its name).
/// Only the int8-compute graph's own small constants (input scales and zero points,
/// combined output scales) stay inline.
pub fn pack_int8(q: &QuantizedModel, location: &str) -> (Vec<u8>, ExternalLayout) {
    let mut blob = Vec::new();
    let mut layout = ExternalLayout {
        location: location.into(),
        offsets: HashMap::new(),
    };
    let mut push = |key: String, bytes: Vec<u8>| {
        while blob.len() % 64 != 0 {
            blob.push(0);
        }
        layout.offsets.insert(key, (blob.len(), bytes.len()));
        blob.extend(bytes);
    };
    for (name, t) in &q.tables {
        let (_, v) = int8_operand(q, name).expect("listed table");
        push(name.clone(), v.iter().map(|&x| x as u8).collect());
        push(
            format!("{name}.scale"),
            t.scales.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
    }
    for (name, (_, v)) in &q.float {
        push(
            name.clone(),
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
    }
    (blob, layout)
}

/// Writes the quantised model `q` as the ONNX graph of `variant` (`weights-int8` or
/// `int8-compute`); int8 tensors go to `external` when given, else inline.
pub fn build_onnx_quantized(
    q: &QuantizedModel,
    variant: Variant,
    external: Option<&ExternalLayout>,
) -> Result<Vec<u8>> {
    check_config(&q.config)?;
    if variant == Variant::Float {
        return Err(OnnxError::Quantized(
            "a quantised checkpoint has no float weights; variants are weights-int8 and int8-compute".into(),
        ));
    }
    let floats = q
        .float_tensors(&candle_core::Device::Cpu)
        .map_err(|e| OnnxError::Quantized(e.to_string()))?;
    let mut b = GraphBuilder::new(&floats);
    b.quant = Some(QuantCtx {
        q,
        compute: variant == Variant::Int8Compute,
        external: external.cloned(),
    });
    build_graph(&q.config, b)
}

fn build_graph(config: &ModelConfig, mut b: GraphBuilder) -> Result<Vec<u8>> {
    let mask = Masks::new(&mut b);
    let mut x = embeddings(&mut b, config)?;
    for l in 0..config.layers {
        let prefix = format!("encoder.layer.{l}");
        x = attention(&mut b, config, &prefix, &x, &mask.key_4d)?;
        x = ffn(&mut b, config, &prefix, &x)?;
    }
    let mut pooled = pooling(&mut b, config, &x, &mask.additive_2d)?;
    if let Some(spec) = config.ngrams {
        let bag = ngram_bag(&mut b, config, &spec)?;
        pooled = b.add_node("Add", &[&pooled, &bag], "ngram_bag.added", vec![]);
    }
    classifier(&mut b, config, &pooled)?;
    Ok(b.into_model(config).encode_to_vec())
}

fn check_config(c: &ModelConfig) -> Result<()> {
    let sizes = [
        ("vocab_size", c.vocab_size),
        ("hidden", c.hidden),
        ("layers", c.layers),
        ("heads", c.heads),
        ("ffn", c.ffn),
        ("pool_dim", c.pool_dim),
        ("max_len", c.max_len),
        ("labels", c.labels.len()),
    ];
    if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
        return Err(OnnxError::Config(format!("{name} is 0")));
    }
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version 1.85
    if c.hidden % c.heads != 0 {
        return Err(OnnxError::Config(format!(
            "hidden {} is not divisible by heads {}",
            c.hidden, c.heads
        )));
    }
    if let Some(spec) = &c.ngrams {
        spec.check()
            .map_err(|p| OnnxError::Config(format!("ngrams: {p}")))?;
    }
    if !(c.layer_norm_eps.is_finite() && c.layer_norm_eps > 0.0) {
        return Err(OnnxError::Config(format!(
            "layer_norm_eps {} must be positive",
            c.layer_norm_eps
        )));
    }
    Ok(())
}

/// Collects nodes and initializers under unique names.
pub struct GraphBuilder<'w> {
    weights: &'w HashMap<String, Tensor>,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    /// Every tensor name in use (inputs, initializers, node outputs).
    names: HashSet<String>,
    /// Checkpoint weight name -> initializer name, so each weight is written once.
    emitted: HashMap<String, String>,
    /// Constant int64 tensors by (dims, values), so equal constants are shared.
    i64_consts: HashMap<(Vec<usize>, Vec<i64>), String>,
    /// Set for a quantised model.
    quant: Option<QuantCtx<'w>>,
}

/// What a quantised export needs besides the f32 tensors.
struct QuantCtx<'q> {
    q: &'q QuantizedModel,
    /// int8-compute (quantised matmul inputs) rather than weights-int8.
    compute: bool,
    external: Option<ExternalLayout>,
}

impl<'w> GraphBuilder<'w> {
    fn new(weights: &'w HashMap<String, Tensor>) -> Self {
        // Graph inputs and outputs keep their exact names: no node may take them.
        let names = [INPUT_IDS, ATTENTION_MASK, NGRAM_IDS, LOGITS, ATTENTION]
            .map(String::from)
            .into();
        GraphBuilder {
            weights,
            nodes: Vec::new(),
            initializers: Vec::new(),
            names,
            emitted: HashMap::new(),
            i64_consts: HashMap::new(),
            quant: None,
        }
    }

    /// The int8 initializer of quantised tensor `name` (external or inline) and its
    /// per-row scale initializer `[rows of the stored tensor]`.
    fn int8_initializers(&mut self, name: &str) -> Result<Option<(String, String)>> {
        let Some(q) = self.quant.as_ref().map(|c| c.q) else {
            return Ok(None);
        };
        let Some(init_name) = self.int8_tensor(name)? else {
            return Ok(None);
        };
        let scales = q.tables[name].scales.clone();
        let key = format!("{name}.scale");
        let scale = match self.external_f32(&key, &key, &[scales.len()]) {
            Some(s) => s,
            None => self.add_initializer(&key, &[scales.len()], &scales),
        };
        Ok(Some((init_name, scale)))
    }

    /// The int8 initializer of quantised tensor `name` alone (an int8-compute matmul
    /// folds the per-row scales into its output scale instead).
    fn int8_tensor(&mut self, name: &str) -> Result<Option<String>> {
        let Some(ctx) = &self.quant else {
            return Ok(None);
        };
        let q = ctx.q;
        let Some((dims, values)) = int8_operand(q, name) else {
            return Ok(None);
        };
        let ext = ctx
            .external
            .as_ref()
            .map(|e| (e.location.clone(), e.offsets.get(name).copied()));
        let init_name = self.fresh(&format!("{name}.int8"));
        let mut t = pb::TensorProto {
            name: init_name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Int8 as i32,
            ..Default::default()
        };
        match ext {
            Some((location, Some((offset, length)))) => {
                if length != values.len() {
                    return Err(OnnxError::Quantized(format!(
                        "{name}: external layout has {length} bytes, tensor {}",
                        values.len()
                    )));
                }
                t = external_tensor(
                    &init_name,
                    &dims,
                    pb::tensor_proto::DataType::Int8,
                    &location,
                    offset,
                    length,
                );
            }
            Some((_, None)) => {
                return Err(OnnxError::Quantized(format!(
                    "{name} is missing from the external-data layout"
                )))
            }
            None => t.raw_data = values.iter().map(|&v| v as u8).collect(),
        }
        self.initializers.push(t);
        Ok(Some(init_name))
    }

    /// An f32 initializer whose bytes are in the external-data file under `key`, if the
    /// quantised export has one and it holds `key`.
    fn external_f32(&mut self, key: &str, name_hint: &str, dims: &[usize]) -> Option<String> {
        let ext = self.quant.as_ref()?.external.as_ref()?;
        let &(offset, length) = ext.offsets.get(key)?;
        if length != dims.iter().product::<usize>() * 4 {
            return None;
        }
        let location = ext.location.clone();
        let name = self.fresh(name_hint);
        self.initializers.push(external_tensor(
            &name,
            dims,
            pb::tensor_proto::DataType::Float,
            &location,
            offset,
            length,
        ));
        Some(name)
    }

    /// A u8 scalar initializer.
    fn const_u8(&mut self, name_hint: &str, value: u8) -> String {
        let name = self.fresh(name_hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![],
            data_type: pb::tensor_proto::DataType::Uint8 as i32,
            raw_data: vec![value],
            ..Default::default()
        });
        name
    }

    /// `x W^T` for the checkpoint linear `{prefix}.weight` (`[out, in]`): a float or
    /// weights-int8 `MatMul`, or the int8-compute chain
    /// `QuantizeLinear -> MatMulInteger -> DequantizeLinear` (per output channel).
    ///
    /// `biased`: the caller adds a bias right after. Otherwise the i32 accumulators are
    /// scaled with `Cast -> Mul` instead of `DequantizeLinear`: onnxruntime 1.32's QDQ
    /// propagation (`QDQPropagationTransformer`) moves an int32 `DequantizeLinear` forward
    /// across the `Squeeze` of the pooling scores and got them wrong (logits off by 4 on
    /// a test model; right with that transformer disabled, or with `Cast -> Mul`).
    pub fn matmul(
        &mut self,
        x: &str,
        prefix: &str,
        out_dim: usize,
        in_dim: usize,
        biased: bool,
    ) -> Result<String> {
        let name = format!("{prefix}.weight");
        let compute = self.quant.as_ref().is_some_and(|c| c.compute);
        if !compute {
            let w = self.matmul_weight(&name, out_dim, in_dim)?;
            return Ok(self.add_node("MatMul", &[x, &w], &format!("{prefix}.matmul"), vec![]));
        }
        let ctx = self.quant.as_ref().expect("compute implies quant");
        let range = *ctx.q.spec.ranges.get(prefix).ok_or_else(|| {
            OnnxError::Quantized(format!("no calibrated input range for {prefix}"))
        })?;
        let w_scales = ctx
            .q
            .tables
            .get(&name)
            .ok_or_else(|| OnnxError::MissingWeight { name: name.clone() })?
            .scales
            .clone();
        if w_scales.len() != out_dim {
            return Err(OnnxError::WrongShape {
                name,
                expected: vec![out_dim, in_dim],
                got: vec![w_scales.len()],
            });
        }
        let w = self
            .int8_tensor(&name)?
            .ok_or_else(|| OnnxError::MissingWeight { name: name.clone() })?;
        let (xq, zx) = self.quantize_u8(x, prefix, range.scale, range.zero_point);
        let acc = self.add_node(
            "MatMulInteger",
            &[&xq, &w, &zx],
            &format!("{prefix}.matmul_i32"),
            vec![],
        );
        // i32 accumulators -> f32, one scale per output channel (input scale x weight scale).
        let combined: Vec<f32> = w_scales.iter().map(|s| s * range.scale).collect();
        let scale = self.add_initializer(&format!("{prefix}.output_scale"), &[out_dim], &combined);
        if !biased {
            let float = attr_int("to", pb::tensor_proto::DataType::Float as i64);
            let accf = self.add_node(
                "Cast",
                &[&acc],
                &format!("{prefix}.matmul_f32"),
                vec![float],
            );
            return Ok(self.add_node("Mul", &[&accf, &scale], &format!("{prefix}.matmul"), vec![]));
        }
        Ok(self.add_node(
            "DequantizeLinear",
            &[&acc, &scale],
            &format!("{prefix}.matmul"),
            vec![attr_int("axis", -1)],
        ))
    }

    /// `hint` if unused, else `hint.N` for the first free N.
    fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut n = 1;
        while self.names.contains(&name) {
            n += 1;
            name = format!("{hint}.{n}");
        }
        self.names.insert(name.clone());
        name
    }

    /// Adds a node with one output named after `out_hint`; returns the output's name.
    pub fn add_node(
        &mut self,
        op: &str,
        inputs: &[&str],
        out_hint: &str,
        attributes: Vec<pb::AttributeProto>,
    ) -> String {
        let output = self.fresh(out_hint);
        self.push_node(op, inputs, output, attributes)
    }

    /// Adds a node whose output is the graph output `name` (reserved at construction).
    fn add_output_node(
        &mut self,
        op: &str,
        inputs: &[&str],
        name: &str,
        attributes: Vec<pb::AttributeProto>,
    ) -> String {
        debug_assert!(OUTPUT_NAMES.contains(&name));
        self.push_node(op, inputs, name.to_string(), attributes)
    }

    fn push_node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: String,
        attributes: Vec<pb::AttributeProto>,
    ) -> String {
        self.nodes.push(pb::NodeProto {
            name: output.clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    /// Adds an f32 initializer (row-major `data`); returns its name.
    pub fn add_initializer(&mut self, name_hint: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let name = self.fresh(name_hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// A shared int64 constant (`dims` empty for a scalar).
    fn const_i64(&mut self, name_hint: &str, dims: &[usize], values: &[i64]) -> String {
        let key = (dims.to_vec(), values.to_vec());
        if let Some(name) = self.i64_consts.get(&key) {
            return name.clone();
        }
        let name = self.fresh(name_hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        self.i64_consts.insert(key, name.clone());
        name
    }

    /// An f32 scalar constant.
    fn const_f32(&mut self, name_hint: &str, value: f32) -> String {
        self.add_initializer(name_hint, &[], &[value])
    }

    /// The checkpoint tensor `name` as f32 values, checked against `shape`.
    fn weight_values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .weights
            .get(name)
            .ok_or_else(|| OnnxError::MissingWeight { name: name.into() })?;
        if t.dims() != shape {
            return Err(OnnxError::WrongShape {
                name: name.into(),
                expected: shape.to_vec(),
                got: t.dims().to_vec(),
            });
        }
        let tensor_err = |cause| OnnxError::Tensor {
            name: name.into(),
            cause,
        };
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(tensor_err)
    }

    /// The f32 checkpoint tensor `name` as an initializer of the same shape and name
    /// (vectors, float embedding tables; int8 tables go through [`Self::gather_rows`]).
    /// Written once however often it is asked for.
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> Result<String> {
        if let Some(done) = self.emitted.get(name) {
            return Ok(done.clone());
        }
        let values = self.weight_values(name, shape)?;
        let init = match self.external_f32(name, name, shape) {
            Some(init) => init,
            None => self.add_initializer(name, shape, &values),
        };
        self.emitted.insert(name.into(), init.clone());
        Ok(init)
    }

    /// Rows `ids` (int64, rank `ids_rank`) of the embedding table `name` (`shape`
    /// `[rows, d]`), as f32 `[..ids, d]`. A quantised table is gathered while still int8
    /// and only the gathered rows are scaled: `Cast(Gather(T_int8, ids)) *
    /// Unsqueeze(Gather(scale, ids))`. Dequantising the whole table before the Gather
    /// costs a pass over every row per query (30,522 x 384 for MiniLM), since runtimes
    /// need not fold a `DequantizeLinear` of a constant.
    pub fn gather_rows(
        &mut self,
        name: &str,
        shape: &[usize],
        ids: &str,
        ids_rank: usize,
        out_hint: &str,
    ) -> Result<String> {
        let axis0 = vec![attr_int("axis", 0)];
        let Some((q, scale)) = self.int8_initializers(name)? else {
            let table = self.weight(name, shape)?;
            return Ok(self.add_node("Gather", &[&table, ids], out_hint, axis0));
        };
        let rows = self.add_node(
            "Gather",
            &[&q, ids],
            &format!("{out_hint}.int8"),
            axis0.clone(),
        );
        let float = attr_int("to", pb::tensor_proto::DataType::Float as i64);
        let rows = self.add_node("Cast", &[&rows], &format!("{out_hint}.f32"), vec![float]);
        let scales = self.add_node(
            "Gather",
            &[&scale, ids],
            &format!("{out_hint}.scale"),
            axis0,
        );
        let last = self.const_i64("const.axes", &[1], &[ids_rank as i64]);
        let scales = self.add_node(
            "Unsqueeze",
            &[&scales, &last],
            &format!("{out_hint}.scale_col"),
            vec![],
        );
        Ok(self.add_node("Mul", &[&rows, &scales], out_hint, vec![]))
    }

    /// `x` quantised to u8 with `scale` and `zero_point` (`QuantizeLinear`), and the
    /// zero point's initializer (the `MatMulInteger` after it subtracts the same one). The
    /// device runs it as one vectorised pass (device `fused_ops::quant`; tract 0.23's own
    /// kernel rounds one element at a time).
    fn quantize_u8(
        &mut self,
        x: &str,
        prefix: &str,
        scale: f32,
        zero_point: u8,
    ) -> (String, String) {
        let scale = self.const_f32(&format!("{prefix}.input_scale"), scale);
        let zero_point = self.const_u8(&format!("{prefix}.input_zero_point"), zero_point);
        let xq = self.add_node(
            "QuantizeLinear",
            &[x, &scale, &zero_point],
            &format!("{prefix}.input_q"),
            vec![],
        );
        (xq, zero_point)
    }

    /// The linear weight `name`, stored `[out, in]`, as the right-hand MatMul operand
    /// `[in, out]`: an f32 initializer, or for a quantised model
    /// `DequantizeLinear(int8 [in, out], per-output-channel scale, axis=1)`.
    pub fn matmul_weight(&mut self, name: &str, out_dim: usize, in_dim: usize) -> Result<String> {
        if let Some(done) = self.emitted.get(name) {
            return Ok(done.clone());
        }
        if let Some((q, scale)) = self.int8_initializers(name)? {
            let deq = self.add_node(
                "DequantizeLinear",
                &[&q, &scale],
                &format!("{name}.dequantized"),
                vec![attr_int("axis", 1)],
            );
            self.emitted.insert(name.into(), deq.clone());
            return Ok(deq);
        }
        let w = self.weight_values(name, &[out_dim, in_dim])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..out_dim {
            for i in 0..in_dim {
                t[i * out_dim + o] = w[o * in_dim + i];
            }
        }
        let init = self.add_initializer(&format!("{name}.transposed"), &[in_dim, out_dim], &t);
        self.emitted.insert(name.into(), init.clone());
        Ok(init)
    }

    /// `x W^T + b` for the checkpoint linear `{prefix}.weight` / `{prefix}.bias`.
    fn linear(&mut self, x: &str, prefix: &str, out_dim: usize, in_dim: usize) -> Result<String> {
        let xw = self.matmul(x, prefix, out_dim, in_dim, true)?;
        let b = self.weight(&format!("{prefix}.bias"), &[out_dim])?;
        Ok(self.add_node("Add", &[&xw, &b], &format!("{prefix}.out"), vec![]))
    }

    fn into_model(self, config: &ModelConfig) -> pb::ModelProto {
        use pb::tensor_proto::DataType;
        let graph = pb::GraphProto {
            name: "attention_classifier".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: [
                value_info(INPUT_IDS, DataType::Int64, &[Dim::batch(), Dim::seq()]),
                value_info(ATTENTION_MASK, DataType::Int64, &[Dim::batch(), Dim::seq()]),
            ]
            .into_iter()
            .chain(config.ngrams.map(|spec| {
                value_info(
                    NGRAM_IDS,
                    DataType::Int64,
                    &[Dim::batch(), Dim::Fixed(spec.max)],
                )
            }))
            .collect(),
            output: vec![
                value_info(
                    LOGITS,
                    DataType::Float,
                    &[Dim::batch(), Dim::Fixed(config.num_labels())],
                ),
                value_info(ATTENTION, DataType::Float, &[Dim::batch(), Dim::seq()]),
            ],
            ..Default::default()
        };
        let metadata = [
            ("preset", config.preset.clone()),
            (
                "labels",
                serde_json::to_string(&config.labels).unwrap_or_default(),
            ),
            ("max_len", config.max_len.to_string()),
        ];
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET_VERSION,
            }],
            producer_name: PRODUCER_NAME.into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: "Transformer encoder + additive attention pooling text classifier \
                         (docs/model.md)"
                .into(),
            graph: Some(graph),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| pb::StringStringEntryProto {
                    key: key.into(),
                    value,
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// A tensor whose bytes are `length` bytes at `offset` of the external file `location`.
fn external_tensor(
    name: &str,
    dims: &[usize],
    data_type: pb::tensor_proto::DataType,
    location: &str,
    offset: usize,
    length: usize,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        data_location: Some(pb::tensor_proto::DataLocation::External as i32),
        external_data: [
            ("location", location.to_string()),
            ("offset", offset.to_string()),
            ("length", length.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| pb::StringStringEntryProto {
            key: k.into(),
            value: v,
        })
        .collect(),
        ..Default::default()
    }
}

enum Dim {
    Symbolic(&'static str),
    Fixed(usize),
}

impl Dim {
    fn batch() -> Dim {
        Dim::Symbolic(BATCH_DIM)
    }
    fn seq() -> Dim {
        Dim::Symbolic(SEQ_DIM)
    }
}

fn value_info(name: &str, elem: pb::tensor_proto::DataType, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Symbolic(s) => Value::DimParam(s.to_string()),
                Dim::Fixed(n) => Value::DimValue(*n as i64),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

/// The additive padding masks `(1 - mask) * MASK_NEG`, built once from `attention_mask`.
struct Masks {
    /// `[B, S]`, for the pooling scores.
    additive_2d: String,
    /// `[B, 1, 1, S]`, for the attention scores of every head and query.
    key_4d: String,
}

impl Masks {
    fn new(b: &mut GraphBuilder) -> Masks {
        let float = attr_int("to", pb::tensor_proto::DataType::Float as i64);
        let maskf = b.add_node("Cast", &[ATTENTION_MASK], "mask.float", vec![float]);
        let one = b.const_f32("const.one", 1.0);
        let inverted = b.add_node("Sub", &[&one, &maskf], "mask.inverted", vec![]);
        let neg = b.const_f32("const.mask_neg", MASK_NEG);
        let additive_2d = b.add_node("Mul", &[&inverted, &neg], "mask.additive", vec![]);
        let axes = b.const_i64("const.axes_1_2", &[2], &[1, 2]);
        let key_4d = b.add_node("Unsqueeze", &[&additive_2d, &axes], "mask.key", vec![]);
        Masks {
            additive_2d,
            key_4d,
        }
    }
}

/// `LayerNorm(word_embeddings[ids] + position_embeddings[0..S])`, position ids from
/// `Shape(input_ids)[1]` through `Range`.
pub fn embeddings(b: &mut GraphBuilder, c: &ModelConfig) -> Result<String> {
    let axis0 = vec![attr_int("axis", 0)];
    let words = b.gather_rows(
        "embeddings.word_embeddings.weight",
        &[c.vocab_size, c.hidden],
        INPUT_IDS,
        2,
        "embeddings.words",
    )?;
    let shape = b.add_node("Shape", &[INPUT_IDS], "embeddings.ids_shape", vec![]);
    let one = b.const_i64("const.scalar_1", &[], &[1]);
    let zero = b.const_i64("const.scalar_0", &[], &[0]);
    let seq = b.add_node("Gather", &[&shape, &one], "embeddings.seq_len", axis0);
    let position_ids = b.add_node(
        "Range",
        &[&zero, &seq, &one],
        "embeddings.position_ids",
        vec![],
    );
    let positions = b.gather_rows(
        "embeddings.position_embeddings.weight",
        &[c.max_len, c.hidden],
        &position_ids,
        1,
        "embeddings.positions",
    )?;
    let sum = b.add_node("Add", &[&words, &positions], "embeddings.sum", vec![]);
    layer_norm(b, c, &sum, "embeddings.LayerNorm")
}

/// `LayerNormalization` over the last axis with `{prefix}.weight` / `.bias`, eps from config.
pub fn layer_norm(b: &mut GraphBuilder, c: &ModelConfig, x: &str, prefix: &str) -> Result<String> {
    let scale = b.weight(&format!("{prefix}.weight"), &[c.hidden])?;
    let bias = b.weight(&format!("{prefix}.bias"), &[c.hidden])?;
    Ok(b.add_node(
        "LayerNormalization",
        &[x, &scale, &bias],
        &format!("{prefix}.out"),
        vec![
            attr_int("axis", -1),
            attr_float("epsilon", c.layer_norm_eps as f32),
        ],
    ))
}

/// Multi-head self-attention with the additive key mask, then residual + LayerNorm.
pub fn attention(
    b: &mut GraphBuilder,
    c: &ModelConfig,
    layer: &str,
    x: &str,
    key_mask: &str,
) -> Result<String> {
    let (d, h, dh) = (c.hidden, c.heads, c.head_dim());
    let p = format!("{layer}.attention");
    let split = b.const_i64("const.split_heads", &[4], &[0, 0, h as i64, dh as i64]);
    let merge = b.const_i64("const.merge_heads", &[3], &[0, 0, d as i64]);
    // [B,S,d] -> [B,S,h,dh] -> `perm`
    let heads = |b: &mut GraphBuilder, which: &str, perm: &[i64]| -> Result<String> {
        let prefix = format!("{p}.self.{which}");
        let y = b.linear(x, &prefix, d, d)?;
        let y = b.add_node("Reshape", &[&y, &split], &format!("{prefix}.heads"), vec![]);
        Ok(b.add_node(
            "Transpose",
            &[&y],
            &format!("{prefix}.transposed"),
            vec![attr_ints("perm", perm)],
        ))
    };
    let q = heads(b, "query", &[0, 2, 1, 3])?; // [B,h,S,dh]
    let k_t = heads(b, "key", &[0, 2, 3, 1])?; // [B,h,dh,S]
    let v = heads(b, "value", &[0, 2, 1, 3])?; // [B,h,S,dh]

    let scores = b.add_node("MatMul", &[&q, &k_t], &format!("{p}.scores"), vec![]);
    let sqrt_dh = b.const_f32("const.sqrt_head_dim", (dh as f32).sqrt());
    let scaled = b.add_node("Div", &[&scores, &sqrt_dh], &format!("{p}.scaled"), vec![]);
    let masked = b.add_node("Add", &[&scaled, key_mask], &format!("{p}.masked"), vec![]);
    let probs = b.add_node(
        "Softmax",
        &[&masked],
        &format!("{p}.probs"),
        vec![attr_int("axis", -1)],
    );
    let context = b.add_node("MatMul", &[&probs, &v], &format!("{p}.context"), vec![]);
    let context = b.add_node(
        "Transpose",
        &[&context],
        &format!("{p}.context_transposed"),
        vec![attr_ints("perm", &[0, 2, 1, 3])],
    );
    let merged = b.add_node(
        "Reshape",
        &[&context, &merge],
        &format!("{p}.merged"),
        vec![],
    );
    let out = b.linear(&merged, &format!("{p}.output.dense"), d, d)?;
    let residual = b.add_node("Add", &[x, &out], &format!("{p}.residual"), vec![]);
    layer_norm(b, c, &residual, &format!("{p}.output.LayerNorm"))
}

/// `gelu_erf(x Wi^T + bi) Wf^T + bf`, then residual + LayerNorm.
pub fn ffn(b: &mut GraphBuilder, c: &ModelConfig, layer: &str, x: &str) -> Result<String> {
    let inner = b.linear(x, &format!("{layer}.intermediate.dense"), c.ffn, c.hidden)?;
    let act = gelu_erf(b, &inner, &format!("{layer}.intermediate.gelu"));
    let out = b.linear(&act, &format!("{layer}.output.dense"), c.hidden, c.ffn)?;
    let residual = b.add_node(
        "Add",
        &[x, &out],
        &format!("{layer}.output.residual"),
        vec![],
    );
    layer_norm(b, c, &residual, &format!("{layer}.output.LayerNorm"))
}

/// `0.5 * x * (1 + erf(x / sqrt(2)))`.
fn gelu_erf(b: &mut GraphBuilder, x: &str, prefix: &str) -> String {
    let sqrt2 = b.const_f32("const.sqrt_2", std::f32::consts::SQRT_2);
    let one = b.const_f32("const.one", 1.0);
    let half = b.const_f32("const.half", 0.5);
    let scaled = b.add_node("Div", &[x, &sqrt2], &format!("{prefix}.scaled"), vec![]);
    let erf = b.add_node("Erf", &[&scaled], &format!("{prefix}.erf"), vec![]);
    let plus_one = b.add_node("Add", &[&erf, &one], &format!("{prefix}.plus_one"), vec![]);
    let times_x = b.add_node("Mul", &[x, &plus_one], &format!("{prefix}.times_x"), vec![]);
    b.add_node("Mul", &[&times_x, &half], &format!("{prefix}.out"), vec![])
}

/// Additive attention pooling: `α = softmax(tanh(x Wp^T + bp) u^T + mask)`, emitted as
/// the `attention` output; returns `Σ_i α_i x_i` `[B, d]`.
pub fn pooling(b: &mut GraphBuilder, c: &ModelConfig, x: &str, mask: &str) -> Result<String> {
    let dense = b.linear(x, "pooling.dense", c.pool_dim, c.hidden)?;
    let e = b.add_node("Tanh", &[&dense], "pooling.tanh", vec![]);
    let scores = b.matmul(&e, "pooling.query", 1, c.pool_dim, false)?; // [B,S,1]
    let last = b.const_i64("const.axes_last", &[1], &[-1]);
    let scores = b.add_node("Squeeze", &[&scores, &last], "pooling.scores_2d", vec![]);
    let masked = b.add_node("Add", &[&scores, mask], "pooling.masked", vec![]);
    let alpha = b.add_output_node("Softmax", &[&masked], ATTENTION, vec![attr_int("axis", -1)]);
    let alpha_3d = b.add_node("Unsqueeze", &[&alpha, &last], "pooling.alpha_3d", vec![]);
    let weighted = b.add_node("Mul", &[x, &alpha_3d], "pooling.weighted", vec![]);
    let seq_axis = b.const_i64("const.axes_1", &[1], &[1]);
    Ok(b.add_node(
        "ReduceSum",
        &[&weighted, &seq_axis],
        "pooling.pooled",
        vec![attr_int("keepdims", 0)],
    ))
}

/// Bag of n-grams: `Σ_m table[ngram_ids[b,m]] / max(#{m : ngram_ids[b,m] > 0}, 1)`,
/// `[B, d]` (row 0 of the table, the padding id's, is zero). The sum over `m` is one
/// `MatMul` of the per-id weights `[B,1,M]` (1/count on real ids, 0 on padding, times the
/// row's scale in an int8 table) with the gathered rows `[B,M,d]`: a `ReduceSum` over the
/// middle axis of `[B,M,d]` and the per-element scale multiply were most of the bag's time
/// in tract.
pub fn ngram_bag(
    b: &mut GraphBuilder,
    c: &ModelConfig,
    spec: &bundle::NgramSpec,
) -> Result<String> {
    let axis0 = vec![attr_int("axis", 0)];
    let float = attr_int("to", pb::tensor_proto::DataType::Float as i64);
    let axis1 = b.const_i64("const.axes_1", &[1], &[1]);
    let zero = b.const_i64("const.scalar_0", &[], &[0]);
    let real = b.add_node("Greater", &[NGRAM_IDS, &zero], "ngram_bag.real", vec![]);
    let real = b.add_node("Cast", &[&real], "ngram_bag.real_f32", vec![float.clone()]);
    let keep1 = vec![attr_int("keepdims", 1)];
    let count = b.add_node("ReduceSum", &[&real, &axis1], "ngram_bag.count", keep1);
    let one = b.const_f32("const.one", 1.0);
    let count = b.add_node("Max", &[&count, &one], "ngram_bag.count_at_least_1", vec![]);
    let mut weight = b.add_node("Div", &[&real, &count], "ngram_bag.weight", vec![]);
    let rows = match b.int8_initializers(NGRAM_TABLE)? {
        Some((q, scale)) => {
            let rows = b.add_node(
                "Gather",
                &[&q, NGRAM_IDS],
                "ngram_bag.rows.int8",
                axis0.clone(),
            );
            let scales = b.add_node("Gather", &[&scale, NGRAM_IDS], "ngram_bag.scales", axis0);
            weight = b.add_node(
                "Mul",
                &[&weight, &scales],
                "ngram_bag.weight_scaled",
                vec![],
            );
            b.add_node("Cast", &[&rows], "ngram_bag.rows", vec![float])
        }
        None => {
            let table = b.weight(NGRAM_TABLE, &[spec.buckets as usize, c.hidden])?;
            b.add_node("Gather", &[&table, NGRAM_IDS], "ngram_bag.rows", axis0)
        }
    };
    let weight = b.add_node(
        "Unsqueeze",
        &[&weight, &axis1],
        "ngram_bag.weight_row",
        vec![],
    );
    let sum = b.add_node("MatMul", &[&weight, &rows], "ngram_bag.sum", vec![]);
    Ok(b.add_node("Squeeze", &[&sum, &axis1], "ngram_bag.mean", vec![]))
}

/// `logits = pooled Wc^T + bc`, emitted as the `logits` output.
pub fn classifier(b: &mut GraphBuilder, c: &ModelConfig, pooled: &str) -> Result<String> {
    let xw = b.matmul(pooled, "classifier", c.num_labels(), c.hidden, true)?;
    let bias = b.weight("classifier.bias", &[c.num_labels()])?;
    Ok(b.add_output_node("Add", &[&xw, &bias], LOGITS, vec![]))
}
