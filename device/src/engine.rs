//! The ONNX model, planned once by tract and run many times.
//!
//! Loading parses the ONNX, checks it has the classifier's interface (`input_ids`,
//! `attention_mask` int64 `[batch, seq]` -> `logits` `[batch, C]`, `attention`
//! `[batch, seq]`), optimises it with `batch` and `seq` left symbolic, and spawns one
//! runnable state that every query reuses. No plan is rebuilt per query.
//!
//! tract indexes embedding tables without bounds checks, so the engine reads the
//! vocabulary size and position count from the graph and rejects ids or lengths outside
//! them instead of letting the process panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tract_onnx::data_resolver::ModelDataResolver;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::bundle::VerifiedBundle;
use crate::error::{DeviceError, Result};

/// How a plan is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Apply tract's `f32_to_f16` transform (pays only where the CPU computes in fp16
    /// natively: see [`native_fp16`]).
    pub f16: bool,
}

/// True when this CPU has native fp16 arithmetic (ARMv8.2 FP16, e.g. a Pi 5's
/// Cortex-A76); false elsewhere, including every x86 and a Pi 4.
pub fn native_fp16() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// Where an ONNX file's external data (shared int8 weights) comes from.
enum ExternalData {
    /// None expected: an external reference is an error.
    None,
    /// Verified bytes of a bundle, by file name (what was hashed is what is used).
    Verified {
        dir: PathBuf,
        files: BTreeMap<String, Arc<Vec<u8>>>,
    },
    /// Files in a directory, read by tract.
    Dir(PathBuf),
}

/// Serves external-data reads from the verified bytes of a bundle.
struct VerifiedResolver(BTreeMap<String, Arc<Vec<u8>>>);

impl ModelDataResolver for VerifiedResolver {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        p: &Path,
        offset: usize,
        length: Option<usize>,
    ) -> TractResult<()> {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let bytes = self.0.get(name).ok_or_else(|| {
            TractError::msg(format!(
                "external data {name:?} is not a verified file of this variant"
            ))
        })?;
        let end = match length {
            Some(l) => offset.checked_add(l),
            None => Some(bytes.len()),
        }
        .filter(|&e| e <= bytes.len() && offset <= e)
        .ok_or_else(|| {
            TractError::msg(format!(
                "external data {name}: offset {offset} length {length:?} outside its {} bytes",
                bytes.len()
            ))
        })?;
        buf.extend_from_slice(&bytes[offset..end]);
        Ok(())
    }
}

/// Graph input names, in the order the engine feeds them.
pub const INPUT_NAMES: [&str; 2] = ["input_ids", "attention_mask"];
/// Graph output names, in the order the engine reads them.
pub const OUTPUT_NAMES: [&str; 2] = ["logits", "attention"];

/// A loaded model: optimised tract plan plus its reusable run state.
#[derive(Debug)]
pub struct Engine {
    plan: Arc<TypedSimplePlan>,
    state: Mutex<TypedSimpleState>,
    num_labels: usize,
    vocab_size: Option<usize>,
    max_positions: Option<usize>,
}

impl Engine {
    /// Loads the bundle's default variant (`model.onnx` for a float bundle); `C` is the
    /// manifest's label count.
    pub fn load(bundle: &VerifiedBundle) -> Result<Engine> {
        let name = bundle.manifest().default_variant_name();
        Self::load_variant(bundle, &name, EngineOptions::default())
    }

    /// Loads the variant `name` of a verified bundle, its external data served from the
    /// verified bytes.
    pub fn load_variant(
        bundle: &VerifiedBundle,
        name: &str,
        options: EngineOptions,
    ) -> Result<Engine> {
        let manifest = bundle.manifest();
        let variant = manifest
            .variant(name)
            .map_err(|problem| DeviceError::InvalidManifest {
                dir: bundle.dir().to_path_buf(),
                field: "variants",
                problem,
            })?;
        let origin = bundle.origin(&variant.file);
        let missing = |f: &str| DeviceError::MissingFile {
            dir: bundle.dir().to_path_buf(),
            file: f.to_string(),
        };
        let bytes = bundle
            .file_bytes(&variant.file)
            .ok_or_else(|| missing(&variant.file))?;
        let mut files = BTreeMap::new();
        for f in &variant.external_data {
            let b = bundle.file_bytes(f).ok_or_else(|| missing(f))?;
            files.insert(f.clone(), Arc::new(b.to_vec()));
        }
        let external = ExternalData::Verified {
            dir: bundle.dir().to_path_buf(),
            files,
        };
        Self::build(bytes, manifest.labels.len(), origin, external, options)
    }

    /// Loads ONNX bytes directly (the host's check of a freshly written model).
    pub fn from_onnx_bytes(bytes: &[u8], num_labels: usize) -> Result<Engine> {
        Self::build(
            bytes,
            num_labels,
            "ONNX bytes".into(),
            ExternalData::None,
            EngineOptions::default(),
        )
    }

    /// Loads `dir/file`, whose external data (if any) is read from files in `dir` (the
    /// host's check of a staged bundle before it is written).
    pub fn from_onnx_file(
        dir: &Path,
        file: &str,
        num_labels: usize,
        options: EngineOptions,
    ) -> Result<Engine> {
        let bytes = std::fs::read(dir.join(file)).map_err(|e| DeviceError::Io {
            dir: dir.to_path_buf(),
            file: file.to_string(),
            source: e,
        })?;
        let origin = format!("{}: {file}", dir.display());
        Self::build(
            &bytes,
            num_labels,
            origin,
            ExternalData::Dir(dir.to_path_buf()),
            options,
        )
    }

    fn build(
        bytes: &[u8],
        num_labels: usize,
        origin: String,
        external: ExternalData,
        options: EngineOptions,
    ) -> Result<Engine> {
        let err = |problem: String| DeviceError::Model {
            origin: origin.clone(),
            problem,
        };
        let mut onnx = tract_onnx::onnx();
        let model_dir = match external {
            ExternalData::None => None,
            ExternalData::Dir(dir) => Some(dir),
            ExternalData::Verified { dir, files } => {
                onnx.provider = Arc::new(VerifiedResolver(files));
                Some(dir)
            }
        };
        let model_dir = model_dir.map(|d| d.to_string_lossy().into_owned());
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| err(format!("not a readable ONNX protobuf: {e:#}")))?;
        let graph = proto.graph.as_ref().ok_or_else(|| err("no graph".into()))?;
        check_interface(graph).map_err(err)?;
        let vocab_size = table_rows(graph, |producer| producer.is_none());
        let max_positions = table_rows(graph, |producer| {
            producer.is_some_and(|n| n.op_type == "Range")
        });

        let parsed = onnx
            .parse(&proto, model_dir.as_deref())
            .map_err(|e| err(format!("tract cannot parse it: {e:#}")))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(err(format!(
                "unresolved inputs {:?}",
                parsed.unresolved_inputs
            )));
        }
        let model = if options.f16 {
            let transform = tract_onnx::tract_core::transform::get_transform("f32_to_f16")
                .map_err(|e| err(format!("{e:#}")))?
                .ok_or_else(|| err("tract has no f32_to_f16 transform".into()))?;
            let mut typed = parsed
                .model
                .into_typed()
                .and_then(|m| m.into_decluttered())
                .map_err(|e| err(format!("tract cannot type it: {e:#}")))?;
            transform
                .transform(&mut typed)
                .map_err(|e| err(format!("f32_to_f16: {e:#}")))?;
            typed.into_optimized()
        } else {
            parsed.model.into_optimized()
        }
        .map_err(|e| err(format!("tract cannot optimise it: {e:#}")))?;
        let logits_fact = model
            .output_fact(0)
            .map_err(|e| err(format!("{e:#}")))?
            .clone();
        if let Some(c) = logits_fact
            .shape
            .get(1)
            .and_then(|d| d.as_i64())
            .map(|c| c as usize)
        {
            if c != num_labels {
                return Err(err(format!(
                    "logits has {c} classes, the bundle lists {num_labels} labels"
                )));
            }
        }
        let plan = model
            .into_runnable()
            .map_err(|e| err(format!("tract cannot plan it: {e:#}")))?;
        let state = plan
            .spawn()
            .map_err(|e| err(format!("tract cannot create a run state: {e:#}")))?;
        Ok(Engine {
            plan,
            state: Mutex::new(state),
            num_labels,
            vocab_size,
            max_positions,
        })
    }

    /// Number of classes `C`.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// Rows of the word embedding table, if the graph shows it.
    pub fn vocab_size(&self) -> Option<usize> {
        self.vocab_size
    }

    /// Rows of the position embedding table (longest usable `seq`), if the graph shows it.
    pub fn max_positions(&self) -> Option<usize> {
        self.max_positions
    }

    /// Runs the model on a row-major `[batch, seq]` batch. Returns `logits` (`batch * C`)
    /// and `attention` (`batch * seq`, 0 on padding), row-major.
    pub fn run(
        &self,
        ids: &[i64],
        mask: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_inputs(ids, mask, batch, seq)?;
        let to_tensor = |data: &[i64]| {
            Tensor::from_shape(&[batch, seq], data)
                .map_err(|e| DeviceError::Input(format!("{e:#}")))
        };
        let inputs = tvec![
            to_tensor(ids)?.into_tvalue(),
            to_tensor(mask)?.into_tvalue()
        ];

        let outputs = {
            // A panic elsewhere cannot leave the state half-run: `run` resets it.
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match state.run(inputs) {
                Ok(o) => o,
                Err(e) => {
                    // A failed run skips tract's end-of-turn reset; do it so the next
                    // query resolves `batch`/`seq` afresh.
                    let _ = state.reset_turn();
                    return Err(DeviceError::Inference(format!("{e:#}")));
                }
            }
        };
        let read = |ix: usize, cols: usize| -> Result<Vec<f32>> {
            let name = OUTPUT_NAMES[ix];
            let t = outputs
                .get(ix)
                .ok_or_else(|| DeviceError::Inference(format!("output {name} missing")))?;
            if t.shape() != [batch, cols] {
                return Err(DeviceError::Inference(format!(
                    "output {name} has shape {:?}, expected [{batch}, {cols}]",
                    t.shape()
                )));
            }
            let t = t
                .cast_to::<f32>()
                .map_err(|e| DeviceError::Inference(format!("output {name}: {e:#}")))?;
            let view = t
                .to_plain_array_view::<f32>()
                .map_err(|e| DeviceError::Inference(format!("output {name}: {e:#}")))?;
            Ok(view.iter().copied().collect())
        };
        Ok((read(0, self.num_labels)?, read(1, seq)?))
    }

    fn check_inputs(&self, ids: &[i64], mask: &[i64], batch: usize, seq: usize) -> Result<()> {
        let bad = |m: String| Err(DeviceError::Input(m));
        if batch == 0 || seq == 0 {
            return bad(format!("empty batch ({batch} x {seq})"));
        }
        if ids.len() != batch * seq || mask.len() != batch * seq {
            return bad(format!(
                "{} ids and {} mask values for a {batch} x {seq} batch",
                ids.len(),
                mask.len()
            ));
        }
        if let Some(max) = self.max_positions {
            if seq > max {
                return bad(format!("seq {seq} exceeds the model's {max} positions"));
            }
        }
        if let Some(v) = self.vocab_size {
            if let Some(id) = ids.iter().find(|&&id| id < 0 || id as usize >= v) {
                return bad(format!("token id {id} outside the vocabulary 0..{v}"));
            }
        }
        if let Some(m) = mask.iter().find(|&&m| m != 0 && m != 1) {
            return bad(format!("attention_mask value {m} (must be 0 or 1)"));
        }
        if let Some(row) = mask.chunks(seq).position(|r| !r.contains(&1)) {
            return bad(format!("row {row} has no real token (mask all 0)"));
        }
        Ok(())
    }

    /// The optimised plan (for inspection, profiling).
    pub fn plan(&self) -> &Arc<TypedSimplePlan> {
        &self.plan
    }
}

/// The graph must take and give exactly the classifier's named tensors, in order.
fn check_interface(graph: &pb::GraphProto) -> std::result::Result<(), String> {
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(&i.name.as_str()))
        .collect();
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    if names != INPUT_NAMES {
        return Err(format!("inputs are {names:?}, expected {INPUT_NAMES:?}"));
    }
    for input in inputs {
        let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(t)) => t,
            None => return Err(format!("input {} has no tensor type", input.name)),
        };
        if tensor.elem_type != pb::tensor_proto::DataType::Int64 as i32 {
            return Err(format!("input {} is not int64", input.name));
        }
        if tensor.shape.as_ref().is_some_and(|s| s.dim.len() != 2) {
            return Err(format!("input {} is not rank 2 [batch, seq]", input.name));
        }
    }
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    if outputs != OUTPUT_NAMES {
        return Err(format!(
            "outputs are {outputs:?}, expected {OUTPUT_NAMES:?}"
        ));
    }
    Ok(())
}

/// Rows of an embedding table: dim 0 of an initializer (or of an initializer passed
/// through `DequantizeLinear`, an int8 table) gathered (axis 0) with indices that are a
/// graph input (`producer` None) or come from the node `producer` accepts.
fn table_rows(
    graph: &pb::GraphProto,
    accept: impl Fn(Option<&pb::NodeProto>) -> bool,
) -> Option<usize> {
    let producer = |name: &str| {
        graph
            .node
            .iter()
            .find(|n| n.output.iter().any(|o| o == name))
    };
    let is_graph_input = |name: &str| graph.input.iter().any(|i| i.name == name);
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "Gather" && n.input.len() == 2)
        .filter(|n| n.attribute.iter().all(|a| a.name != "axis" || a.i == 0))
        .filter(|n| {
            let indices = n.input[1].as_str();
            match producer(indices) {
                None => is_graph_input(indices) && accept(None),
                Some(p) => accept(Some(p)),
            }
        })
        .find_map(|n| {
            let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
            let table = init(&n.input[0]).or_else(|| {
                let p = producer(&n.input[0])?;
                (p.op_type == "DequantizeLinear")
                    .then(|| init(p.input.first()?))
                    .flatten()
            })?;
            usize::try_from(*table.dims.first()?).ok()
        })
}
