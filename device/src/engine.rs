//! The ONNX model, planned once by tract and run many times.
//!
//! Loading parses the ONNX, checks it has the classifier's interface (`input_ids`,
//! `attention_mask` int64 `[batch, seq]`, optionally `ngram_ids` int64 `[batch, M]` with
//! a fixed `M` -> `logits` `[batch, C]`, `attention` `[batch, seq]`), types and
//! declutters it with `batch` and `seq` left symbolic, and keeps a pool of runnable
//! states that queries reuse (one per concurrent query; a new one only when all are busy).
//! No plan is rebuilt per query.
//!
//! Plans are optimised when needed, not at load (issue #7, memory): each costs about as
//! much memory as the model's weights (its own packed copy), and a plan that loses its
//! race is dropped. A long-running process calls [`Engine::prepare`] before its first
//! query (`device serve`, `device classify` on a stream): every bucket's route is decided
//! and its plans made and run once, so no query pays for a plan (the first query of a
//! bucket otherwise takes ~10-20 ms more on the tiny preset here, seconds on a Pi). The
//! routes `device tune` measured are stored with the bundle and replayed
//! ([`PlanOptions::routes`]), so a tuned board does not race at start-up. The decluttered
//! graph the plans are made from is kept until every plan exists. The host's checks of a model it just wrote
//! ([`Engine::from_onnx_bytes`], [`Engine::from_onnx_file`]) build every plan at once, so
//! a model tract cannot plan is refused there, before it becomes a bundle, and run single
//! texts on the fixed-length plans (every plan a board might pick gets checked).
//!
//! Single texts (batch 1) run on fixed-length plans instead: the same graph with `batch`
//! = 1 and `seq` = one of [`LENGTH_BUCKETS`], optimised with concrete shapes (tract fuses
//! more without symbols, but pays for its padding and its matmul kernel pick for an exact
//! length can be slower than the symbolic plan's, so each bucket's plan first races the
//! symbolic plan on this CPU, which decides from which length on it serves the bucket: see
//! [`Engine::route`]). A text of `n` tokens is right-padded to its bucket's length with
//! mask 0; the padding is
//! masked out of attention and pooling (its weights are exactly 0 after the softmax), so
//! labels and probabilities match the symbolic plan (checked to 1e-5 in the tests) and
//! `attention` is cut back to `n`. Batches and lengths above the largest bucket use the
//! symbolic plan.
//!
//! The graph goes through one stage, [`crate::optimise`]: the device's fused kernels
//! ([`crate::fused_ops`]) are put in place there, in the order its table lists (off with
//! [`FusionOptions::tract_ops`]), and plans are made from its output by
//! [`crate::optimise::plan`]. Every node's evaluation ends with `vzeroupper` on x86
//! (tract's assembly kernels leave the AVX state dirty, which slowed every SSE-encoded
//! instruction after them).
//!
//! Everything about how an engine is built is in its [`EngineOptions`]; the engine reads no
//! environment variable (the `device` binary maps its `DEVICE_*` variables onto options:
//! [`crate::options`]).
//!
//! tract indexes embedding tables without bounds checks, so the engine reads the
//! vocabulary size, position count and n-gram table rows from the graph and rejects ids
//! or lengths outside them instead of letting the process panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tract_onnx::data_resolver::ModelDataResolver;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::error::{DeviceError, Result};
use crate::tokenize::Batch;
use bundle::{BundleError, NgramSpec, VerifiedBundle};

pub use crate::options::{EngineOptions, FusionOptions, KernelOptions, PlanOptions};

/// Least timed runs of each plan when a bucket's fixed-length plan races the symbolic
/// plan (after one untimed run each; the fastest run of each counts).
const RACE_RUNS: usize = 5;

/// Least time each plan runs in a race, so that a model answering in a fraction of a
/// millisecond gets enough runs for its fastest to be typical: with only five runs of
/// ~200 µs right after both plans were built, the tiny preset's race picked the slower
/// plan in some processes. MiniLM (~2-7 ms a run) passes it within [`RACE_RUNS`].
const RACE_TIME: std::time::Duration = std::time::Duration::from_millis(20);

/// Most timed runs of each plan in a race (bounds a race of a model that is very fast).
const RACE_MAX_RUNS: usize = 400;

/// Default of [`PlanOptions::plan_memory_mb`]: megabytes (decimal) the fixed-length plans
/// may hold together beside the symbolic plan; see [`Engine::route`]. Every plan holds its
/// own packed copy of the encoder's weights (measured: MiniLM-L6 float and weights-int8
/// ~43 MB, int8-compute ~11 MB, the tiny preset ~2.4 MB), and what a fixed-length plan
/// buys differs as much: within noise of the symbolic plan for MiniLM float, 0-3 % for
/// weights-int8, 10-25 % for int8-compute (docs/benchmarks.md). 40 MB keeps three
/// int8-compute plans (or every tiny one) and no float MiniLM plan, which saves `device
/// serve` ~90 MB on MiniLM float.
pub const PLAN_MEMORY_MB: usize = 40;

/// Default of [`PlanOptions::length_buckets`]: sequence lengths with their own fixed-shape
/// plan for batch-1 queries (those above the model's position count are skipped).
pub const LENGTH_BUCKETS: [usize; 4] = [8, 16, 32, 64];

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

/// glibc allocator settings for a long-running board process (`device` calls this first
/// thing in `main`, before any thread exists): at most two malloc arenas (glibc would
/// otherwise give each thread its own, 64 MB reserved and its own fragmentation), blocks
/// of 1 MB and more mmapped (returned to the kernel on free: the load's temporary copies
/// of weights), and free memory above 1 MB at the top of the heap given back. Per-query
/// tensors stay well below 1 MB, so queries do not pay for fresh pages.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

/// This process's resident memory (`VmRSS` of `/proc/self/status`), where Linux tells it.
fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Gives the freed pages of the allocator back to the kernel (after a load or a plan
/// build, which free far more than a query allocates).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
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

/// Graph input names every model has, in the order the engine feeds them.
pub const INPUT_NAMES: [&str; 2] = ["input_ids", "attention_mask"];
/// The optional third input, after [`INPUT_NAMES`]: the text's hashed n-gram ids
/// (`crate::ngrams`), int64 `[batch, M]` with `M` fixed in the graph.
pub const NGRAM_INPUT: &str = "ngram_ids";
/// Graph output names, in the order the engine reads them.
pub const OUTPUT_NAMES: [&str; 2] = ["logits", "attention"];

/// A loaded model: optimised tract plans (each made on first use) plus their reusable
/// run states.
#[derive(Debug)]
pub struct Engine {
    /// The decluttered graph (`batch`, `seq` symbolic) the plans are optimised from;
    /// dropped once every plan exists. The lock also serialises plan building.
    source: Mutex<Option<TypedModel>>,
    /// The symbols `batch` and `seq` of the inputs (fixed in the bucket plans).
    symbols: Option<(Symbol, Symbol)>,
    plan: OnceLock<Arc<TypedSimplePlan>>,
    /// Fixed-length batch-1 plans, shortest first.
    bucket_plans: Vec<Bucket>,
    /// Time each bucket's fixed-length plan against the symbolic plan before using it.
    race: bool,
    /// Routes decided before ([`PlanOptions::routes`]): not raced again.
    stored_routes: Vec<(usize, usize)>,
    /// Bytes the raced fixed-length plans may hold together
    /// ([`PlanOptions::plan_memory_mb`]).
    plan_budget: usize,
    /// What one plan of this model costs: the process's growth while its symbolic plan was
    /// built (unknown where the resident size cannot be read).
    plan_bytes: OnceLock<usize>,
    /// The fusions the plans get ([`crate::optimise::plan`]): none for
    /// [`FusionOptions::tract_ops`] or f16.
    fusion: FusionOptions,
    /// The matmul kernels tract picks when it optimises a plan.
    kernels: KernelOptions,
    /// Idle run states (one set per plan each): a query takes one, runs, puts it back, so
    /// threads sharing the engine (`device serve --workers N`) run in parallel, each on
    /// its own state, and a state is only created when all are busy.
    pool: Mutex<Vec<States>>,
    num_labels: usize,
    vocab_size: Option<usize>,
    max_positions: Option<usize>,
    /// Width `M` of the `ngram_ids` input, when the model has one.
    ngram_width: Option<usize>,
    /// Rows of the n-gram table (always known when `ngram_width` is: see [`Engine::build`]).
    ngram_buckets: Option<usize>,
    /// What the model was loaded from, for errors found after loading.
    origin: String,
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
            .map_err(|problem| BundleError::InvalidManifest {
                dir: bundle.dir().to_path_buf(),
                field: "variants",
                problem,
            })?;
        let origin = bundle.origin(&variant.file);
        let missing = |f: &str| BundleError::MissingFile {
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
        Self::build(
            bytes,
            manifest.labels.len(),
            origin,
            external,
            options,
            false,
        )?
        .with_ngram_spec(manifest.ngrams)
    }

    /// Checks that the model's `ngram_ids` input agrees with `spec` (the manifest's
    /// `ngrams`, or the host's): both absent, or the input's width is `spec.max` and its
    /// table has `spec.buckets` rows. A disagreement would feed the model ids hashed for
    /// another table, or none at all, so the engine is refused.
    pub fn with_ngram_spec(self, spec: Option<NgramSpec>) -> Result<Engine> {
        let problem = match (spec, self.ngram_width) {
            (None, None) => None,
            (None, Some(w)) => Some(format!(
                "the model takes {NGRAM_INPUT} [batch, {w}] but the manifest has no ngrams"
            )),
            (Some(s), None) => Some(format!(
                "the manifest has ngrams (max {}) but the model has no {NGRAM_INPUT} input",
                s.max
            )),
            (Some(s), Some(w)) => s
                .check()
                .err()
                .map(|p| format!("manifest ngrams: {p}"))
                .or_else(|| {
                    (w != s.max).then(|| {
                        format!(
                            "the model's {NGRAM_INPUT} is [batch, {w}], the manifest's ngrams \
                             max is {}",
                            s.max
                        )
                    })
                })
                .or_else(|| {
                    let rows = self.ngram_buckets.filter(|&r| r != s.buckets as usize)?;
                    Some(format!(
                        "the model's n-gram table has {rows} rows, the manifest's ngrams \
                         buckets is {}",
                        s.buckets
                    ))
                }),
        };
        match problem {
            Some(problem) => Err(DeviceError::Model {
                origin: self.origin.clone(),
                problem,
            }),
            None => Ok(self),
        }
    }

    /// Loads ONNX bytes directly (the host's check of a freshly written model).
    pub fn from_onnx_bytes(bytes: &[u8], num_labels: usize) -> Result<Engine> {
        Self::build(
            bytes,
            num_labels,
            "ONNX bytes".into(),
            ExternalData::None,
            EngineOptions::default(),
            true,
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
        let bytes = std::fs::read(dir.join(file)).map_err(|e| BundleError::Io {
            dir: dir.to_path_buf(),
            file: file.to_string(),
            cause: e,
        })?;
        let origin = format!("{}: {file}", dir.display());
        Self::build(
            &bytes,
            num_labels,
            origin,
            ExternalData::Dir(dir.to_path_buf()),
            options,
            true,
        )
    }

    /// Parses and declutters the graph; `eager` also optimises every plan now (and fails
    /// if tract cannot), else each is optimised on first use.
    fn build(
        bytes: &[u8],
        num_labels: usize,
        origin: String,
        external: ExternalData,
        options: EngineOptions,
        eager: bool,
    ) -> Result<Engine> {
        let err = |problem: String| DeviceError::Model {
            origin: origin.clone(),
            problem,
        };
        if options.f16 && !native_fp16() {
            return Err(err(
                "f16 compute needs native fp16 arithmetic, which this CPU lacks (every \
                 output would be NaN)"
                    .into(),
            ));
        }
        if options.fusion.int8_activations
            && (options.f16 || !options.fusion.int8_activations_here())
        {
            return Err(err(
                "int8 activations need the device's int8 tiles (aarch64, or x86-64 with \
                 AVX-512 VNNI), its fusions on and no f16"
                    .into(),
            ));
        }
        // The fused kernels are f32; tract's f16 transform keeps its own ops.
        let fusion = if options.f16 {
            FusionOptions::none()
        } else {
            options.fusion
        };
        // The protobuf and the external data's bytes are dropped as soon as tract has
        // parsed them (they would otherwise sit beside the weights tract copied).
        let (mut typed, vocab_size, max_positions, ngram_width, ngram_buckets) = {
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
            let ngram_width = check_interface(graph).map_err(err)?;
            // The rewrites of the protobuf (crate::optimise) leave the embedding lookups
            // as they are.
            let by_input = |name: &'static str| {
                move |indices: &str, producer: Option<&pb::NodeProto>| {
                    producer.is_none() && indices == name
                }
            };
            let vocab_size = table_rows(graph, by_input(INPUT_NAMES[0]));
            let max_positions = table_rows(graph, |_, producer| {
                producer.is_some_and(|n| n.op_type == "Range")
            });
            let ngram_buckets = table_rows(graph, by_input(NGRAM_INPUT));
            if ngram_width.is_some() && ngram_buckets.is_none() {
                // Its ids could not be bounds-checked, and tract's Gather does not check.
                return Err(err(format!(
                    "no n-gram table found: {NGRAM_INPUT} must index a constant table \
                     (Gather, axis 0)"
                )));
            }
            let typed = crate::optimise::optimise(onnx, proto, model_dir.as_deref(), &fusion)
                .map_err(|e| err(format!("{e:#}")))?;
            (typed, vocab_size, max_positions, ngram_width, ngram_buckets)
        };
        if options.f16 {
            let transform = tract_onnx::tract_core::transform::get_transform("f32_to_f16")
                .map_err(|e| err(format!("{e:#}")))?
                .ok_or_else(|| err("tract has no f32_to_f16 transform".into()))?;
            transform
                .transform(&mut typed)
                .map_err(|e| err(format!("f32_to_f16: {e:#}")))?;
        }
        let logits_fact = typed
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
        let plans = &options.plans;
        let (symbols, lengths) = if plans.symbolic_only {
            (None, Vec::new())
        } else {
            bucket_lengths(&typed, max_positions, &plans.length_buckets)
                .map_err(|e| err(format!("{e:#}")))?
        };
        // The host's checks (eager) run every fixed-length plan the board might pick.
        let race = !(eager || plans.fixed_plans);
        let engine = Engine {
            source: Mutex::new(Some(typed)),
            symbols,
            plan: OnceLock::new(),
            bucket_plans: lengths
                .into_iter()
                .map(|len| Bucket {
                    len,
                    plan: OnceLock::new(),
                    fixed_from: OnceLock::new(),
                })
                .collect(),
            race,
            stored_routes: plans.routes.clone(),
            plan_budget: plans.plan_memory_mb.saturating_mul(1_000_000),
            plan_bytes: OnceLock::new(),
            fusion,
            kernels: options.kernels,
            pool: Mutex::new(Vec::new()),
            num_labels,
            vocab_size,
            max_positions,
            ngram_width,
            ngram_buckets,
            origin: origin.clone(),
        };
        release_free_memory();
        if eager {
            let mut states = States::default();
            engine
                .symbolic_state(&mut states)
                .map_err(|e| err(format!("tract cannot plan it: {e:#}")))?;
            for ix in 0..engine.bucket_plans.len() {
                engine
                    .route(ix)
                    .and_then(|from| match from <= engine.bucket_plans[ix].len {
                        true => engine.bucket_state(&mut states, ix).map(|_| ()),
                        false => Ok(()),
                    })
                    .map_err(|e| err(format!("tract cannot plan it: {e:#}")))?;
            }
            engine.put_states(states);
        }
        Ok(engine)
    }

    /// Makes now, instead of at first use, every plan a single text can run on: each
    /// length bucket's route is decided (raced, or taken from [`PlanOptions::routes`]),
    /// the plans it keeps are optimised, and each gets a run state that has run once, so
    /// the first query of every length costs what the others do. `device serve` calls it
    /// at start-up (a board then pays for its plans before it answers, not at the first
    /// query of each length). Returns the routes, as [`Engine::routes`].
    pub fn prepare(&self) -> Result<Vec<(usize, usize)>> {
        let fail = |e: TractError| DeviceError::Inference(format!("preparing plans: {e:#}"));
        let mut states = self.take_states();
        let mut routes = Vec::with_capacity(self.bucket_plans.len());
        for ix in 0..self.bucket_plans.len() {
            let len = self.bucket_plans[ix].len;
            let from = self.route(ix).map_err(fail)?;
            if from <= len {
                let state = self.bucket_state(&mut states, ix).map_err(fail)?;
                run_state(state, warm_up_inputs(len, self.ngram_width).map_err(fail)?)
                    .map_err(fail)?;
            }
            let lo = self.bucket_start(ix);
            if from > lo {
                let state = self.symbolic_state(&mut states).map_err(fail)?;
                run_state(state, warm_up_inputs(lo, self.ngram_width).map_err(fail)?)
                    .map_err(fail)?;
            }
            routes.push((len, from));
        }
        if self.bucket_plans.is_empty() {
            let state = self.symbolic_state(&mut states).map_err(fail)?;
            run_state(state, warm_up_inputs(2, self.ngram_width).map_err(fail)?).map_err(fail)?;
        }
        self.put_states(states);
        Ok(routes)
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

    /// Width `M` of the model's `ngram_ids` input `[batch, M]`; None: it has no such input.
    pub fn ngram_width(&self) -> Option<usize> {
        self.ngram_width
    }

    /// Rows of the model's n-gram table (ids must be below), when it has one.
    pub fn ngram_buckets(&self) -> Option<usize> {
        self.ngram_buckets
    }

    /// Runs the model on a batch ([`crate::TextEncoder::batch`]). Returns `logits`
    /// (`batch * C`) and `attention` (`batch * seq`, 0 on padding), row-major.
    pub fn run_batch(&self, batch: &Batch) -> Result<(Vec<f32>, Vec<f32>)> {
        if batch.ngram_width != self.ngram_width.unwrap_or(0) {
            return Err(DeviceError::Input(match self.ngram_width {
                Some(w) => format!(
                    "the model takes {NGRAM_INPUT} [batch, {w}], the batch has {} per row \
                     (an encoder without the bundle's ngrams?)",
                    batch.ngram_width
                ),
                None => format!(
                    "the batch has {NGRAM_INPUT} but the model takes none (an encoder with \
                     another bundle's ngrams?)"
                ),
            }));
        }
        self.run_inputs(
            &batch.ids,
            &batch.mask,
            &batch.ngram_ids,
            batch.batch,
            batch.seq,
        )
    }

    /// Runs a model without `ngram_ids` on a row-major `[batch, seq]` token batch (ids
    /// and mask built by hand); as [`run_batch`](Self::run_batch) otherwise.
    pub fn run(
        &self,
        ids: &[i64],
        mask: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        if let Some(w) = self.ngram_width {
            return Err(DeviceError::Input(format!(
                "the model also takes {NGRAM_INPUT} [batch, {w}]: run it on a batch \
                 (run_batch)"
            )));
        }
        self.run_inputs(ids, mask, &[], batch, seq)
    }

    /// Runs the model on `[batch, seq]` tokens and, for a model that takes them,
    /// `[batch, ngram_width]` n-gram ids.
    fn run_inputs(
        &self,
        ids: &[i64],
        mask: &[i64],
        ngrams: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_inputs(ids, mask, ngrams, batch, seq)?;
        // A panic mid-run drops the taken states instead of returning them to the pool.
        let mut states = self.take_states();
        let bucket = match self.fixed_bucket(batch, seq) {
            Ok(b) => b,
            Err(e) => {
                self.put_states(states);
                return Err(DeviceError::Inference(format!("plan: {e:#}")));
            }
        };
        // The plan's own length: `seq`, or the bucket's (right-padded, mask 0, id 0).
        let padded = bucket.map_or(seq, |ix| self.bucket_plans[ix].len);
        let to_tensor = |data: &[i64]| -> Result<Tensor> {
            let mut t = Tensor::zero::<i64>(&[batch, padded])
                .map_err(|e| DeviceError::Input(format!("{e:#}")))?;
            let mut view = t
                .to_plain_array_view_mut::<i64>()
                .map_err(|e| DeviceError::Input(format!("{e:#}")))?;
            let dst = view
                .as_slice_mut()
                .ok_or_else(|| DeviceError::Input("input tensor is not contiguous".into()))?;
            for (d, s) in dst.chunks_mut(padded).zip(data.chunks(seq)) {
                d[..seq].copy_from_slice(s);
            }
            drop(view);
            Ok(t)
        };
        let mut inputs = tvec![
            to_tensor(ids)?.into_tvalue(),
            to_tensor(mask)?.into_tvalue()
        ];
        if let Some(w) = self.ngram_width {
            // Its width is the graph's own: no padding, whichever plan runs.
            let t = Tensor::from_shape(&[batch, w], ngrams)
                .map_err(|e| DeviceError::Input(format!("{NGRAM_INPUT}: {e:#}")))?;
            inputs.push(t.into_tvalue());
        }
        let state = match bucket {
            Some(ix) => self.bucket_state(&mut states, ix),
            None => self.symbolic_state(&mut states),
        };
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                self.put_states(states);
                return Err(DeviceError::Inference(format!("plan: {e:#}")));
            }
        };

        let outputs = {
            match run_state(state, inputs) {
                Ok(o) => o,
                Err(e) => {
                    // A failed run skips tract's end-of-turn reset; do it so the next
                    // query resolves `batch`/`seq` afresh.
                    let _ = state.reset_turn();
                    self.put_states(states);
                    return Err(DeviceError::Inference(format!("{e:#}")));
                }
            }
        };
        self.put_states(states);
        // `keep` leading columns of each row (the padding of a bucket is cut off).
        let read = |ix: usize, cols: usize, keep: usize| -> Result<Vec<f32>> {
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
            let flat = view.as_slice().ok_or_else(|| {
                DeviceError::Inference(format!("output {name} is not contiguous"))
            })?;
            Ok(flat
                .chunks(cols)
                .flat_map(|row| &row[..keep])
                .copied()
                .collect())
        };
        let c = self.num_labels;
        Ok((read(0, c, c)?, read(1, padded, seq)?))
    }

    fn check_inputs(
        &self,
        ids: &[i64],
        mask: &[i64],
        ngrams: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<()> {
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
        let width = self.ngram_width.unwrap_or(0);
        if ngrams.len() != batch * width {
            return bad(format!(
                "{} {NGRAM_INPUT} values for a {batch} x {width} batch",
                ngrams.len()
            ));
        }
        if let Some(rows) = self.ngram_buckets.filter(|_| width > 0) {
            if let Some(id) = ngrams.iter().find(|&&id| id < 0 || id as usize >= rows) {
                return bad(format!("n-gram id {id} outside the n-gram table 0..{rows}"));
            }
        }
        Ok(())
    }

    /// Per-node wall time (µs summed over `runs`) of a batch-1 query (every token real),
    /// on the plan [`run_batch`](Self::run_batch) would pick: `(node name and op, µs)`,
    /// slowest first.
    #[doc(hidden)]
    pub fn profile(&self, query: &Batch, runs: usize) -> Result<Vec<(String, f64)>> {
        let (ids, seq) = (&query.ids, query.seq);
        if query.batch != 1 {
            return Err(DeviceError::Input(format!(
                "profiling takes one text, not {}",
                query.batch
            )));
        }
        self.check_inputs(ids, &vec![1; seq], &query.ngram_ids, 1, seq)?;
        let bucket = self
            .fixed_bucket(1, seq)
            .map_err(|e| DeviceError::Inference(format!("plan: {e:#}")))?;
        let mut states = self.take_states();
        let padded = bucket.map_or(seq, |ix| self.bucket_plans[ix].len);
        let mut id = vec![0i64; padded];
        id[..seq].copy_from_slice(ids);
        let mut mask = vec![0i64; padded];
        mask[..seq].fill(1);
        // One row each: `[1, padded]` tokens, `[1, M]` n-gram ids.
        let t = |d: &[i64]| {
            Tensor::from_shape(&[1, d.len()], d)
                .map(|t| t.into_tvalue())
                .map_err(|e| DeviceError::Input(format!("{e:#}")))
        };
        let mut inputs: TVec<TValue> = tvec![t(&id)?, t(&mask)?];
        if self.ngram_width.is_some() {
            inputs.push(t(&query.ngram_ids)?);
        }
        let state = match bucket {
            Some(ix) => self.bucket_state(&mut states, ix),
            None => self.symbolic_state(&mut states),
        }
        .map_err(|e| DeviceError::Inference(format!("plan: {e:#}")))?;
        let mut times: BTreeMap<usize, (String, f64)> = BTreeMap::new();
        for _ in 0..runs.max(1) {
            state
                .run_plan_with_eval(inputs.clone(), |ctx, st, node, input| {
                    let started = std::time::Instant::now();
                    let r = tract_onnx::tract_core::plan::eval(ctx, st, node, input);
                    crate::fused_ops::clear_upper_vector_state();
                    let e = times
                        .entry(node.id)
                        .or_insert_with(|| (profile_label(node), 0.0));
                    e.1 += started.elapsed().as_secs_f64() * 1e6;
                    r
                })
                .map_err(|e| DeviceError::Inference(format!("{e:#}")))?;
        }
        self.put_states(states);
        let mut v: Vec<(String, f64)> = times.into_values().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    }

    /// An idle set of run states from the pool, or a new (empty) one when all are in use.
    fn take_states(&self) -> States {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    fn put_states(&self, states: States) {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(states);
    }

    /// Index of the shortest bucket plan that holds `seq` tokens.
    fn bucket_for(&self, seq: usize) -> Option<usize> {
        self.bucket_plans.iter().position(|b| b.len >= seq)
    }

    /// The bucket whose fixed-length plan runs a `[batch, seq]` input, or None for the
    /// symbolic plan (batches, lengths above the buckets, and buckets whose fixed plan
    /// lost its race).
    fn fixed_bucket(&self, batch: usize, seq: usize) -> TractResult<Option<usize>> {
        if batch != 1 {
            return Ok(None);
        }
        match self.bucket_for(seq) {
            Some(ix) => Ok((seq >= self.route(ix)?).then_some(ix)),
            None => Ok(None),
        }
    }

    /// From which length on bucket `ix` runs on its fixed-length plan (shorter texts of
    /// the bucket run on the symbolic plan), decided on its first use.
    ///
    /// Concrete shapes let tract fuse more, but the fixed plan pads every text to the
    /// bucket's length, and tract picks its matmul kernels for that length from cost models
    /// calibrated on other CPUs, where the symbolic plan switches between a pair at run
    /// time. Which is faster depends on the CPU, the model and the text's length (MiniLM
    /// float on this AMD machine, before the symbolic plan's additions were fused: the
    /// 16-token plan took 5.4 ms, the symbolic plan 6.0 ms at 16 tokens and less than 5.4
    /// below 15; int8-compute is 10-25 % faster fixed at every length). So the first query
    /// of a bucket times the fixed plan at the bucket's length and the symbolic plan at both
    /// ends of the bucket's range (alternating runs after a warm-up, for at least
    /// [`RACE_TIME`] each; fastest run), and the fixed plan serves the lengths where it
    /// beats the symbolic plan's time interpolated between the two ends ([`crossover`]). A
    /// plan that serves no length of any bucket is dropped. Both give the same labels and
    /// probabilities (to 1e-5), so only speed depends on the outcome.
    ///
    /// Each plan holds its own packed weights, so a fixed-length plan is only built and
    /// raced while it fits the memory budget ([`PlanOptions::plan_memory_mb`]) beside the
    /// fixed plans
    /// already kept, each priced at what building the symbolic plan added to the process;
    /// past the budget the bucket stays on the symbolic plan.
    fn route(&self, ix: usize) -> TractResult<usize> {
        let bucket = &self.bucket_plans[ix];
        if let Some(&from) = bucket.fixed_from.get() {
            return Ok(from);
        }
        let lo = self.bucket_start(ix);
        if !self.race {
            self.planned(&bucket.plan, Some(bucket.len))?;
            let _ = bucket.fixed_from.set(lo);
            return Ok(lo);
        }
        let stored = self
            .stored_routes
            .iter()
            .find(|(len, _)| *len == bucket.len);
        if let Some(&(_, from)) = stored {
            let from = from.clamp(lo, bucket.len + 1);
            if from <= bucket.len {
                self.planned(&bucket.plan, Some(bucket.len))?;
            }
            if from > lo {
                self.planned(&self.plan, None)?;
            }
            let _ = bucket.fixed_from.set(from);
            let mut source = self.source.lock().unwrap_or_else(PoisonError::into_inner);
            if self.every_plan_made() {
                *source = None;
            }
            return Ok(from);
        }
        let mut source = self.source.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&from) = bucket.fixed_from.get() {
            return Ok(from);
        }
        let model = source
            .as_ref()
            .ok_or_else(|| TractError::msg("the source graph is gone"))?;
        // The symbolic plan first: it serves every length, and its size prices a second
        // plan against the memory budget.
        let symbolic = match self.plan.get() {
            Some(p) => p.clone(),
            None => self.optimise_symbolic(model)?,
        };
        if !self.room_for_fixed_plan() {
            let _ = self.plan.set(symbolic);
            let from = bucket.len + 1;
            let _ = bucket.fixed_from.set(from);
            if self.every_plan_made() {
                *source = None;
            }
            return Ok(from);
        }
        let fixed_plan = match bucket.plan.get() {
            Some(p) => p.clone(),
            None => self.optimise(model, Some(bucket.len))?,
        };
        let from = race(&fixed_plan, &symbolic, lo, bucket.len, self.ngram_width)?;
        // A plan serving nothing is dropped before the allocator is trimmed below; the
        // symbolic plan stays when it serves part of this bucket.
        if from <= bucket.len {
            let _ = bucket.plan.set(fixed_plan);
        } else {
            drop(fixed_plan);
        }
        if from > lo && self.plan.get().is_none() {
            let _ = self.plan.set(symbolic);
        } else {
            drop(symbolic);
        }
        let _ = bucket.fixed_from.set(from);
        if self.every_plan_made() {
            *source = None;
        }
        release_free_memory();
        Ok(from)
    }

    /// The symbolic plan of `model`, recording what building it added to the process
    /// (freed pages returned first) as the price of a plan.
    fn optimise_symbolic(&self, model: &TypedModel) -> TractResult<Arc<TypedSimplePlan>> {
        // Freed pages returned before the first reading too: else those the loading left
        // in the allocator, returned after the plan is built, hide the plan's own.
        release_free_memory();
        let before = resident_bytes();
        let plan = self.optimise(model, None)?;
        release_free_memory();
        if let (Some(before), Some(after)) = (before, resident_bytes()) {
            let _ = self.plan_bytes.set(after.saturating_sub(before));
        }
        Ok(plan)
    }

    /// True when one more fixed-length plan fits the budget beside those kept (the symbolic
    /// plan is counted as the first plan, whether or not a bucket ends up using it). A
    /// budget of 0 has room for none; a plan of unknown size always fits a budget above 0.
    fn room_for_fixed_plan(&self) -> bool {
        if self.plan_budget == 0 {
            return false;
        }
        let Some(&plan) = self.plan_bytes.get() else {
            return true;
        };
        let kept = self.bucket_plans.iter().filter(|b| b.plan.get().is_some());
        (kept.count() + 1).saturating_mul(plan) <= self.plan_budget
    }

    /// What one plan of this model adds to the process, once measured (see
    /// [`PlanOptions::plan_memory_mb`]).
    pub fn plan_bytes(&self) -> Option<usize> {
        self.plan_bytes.get().copied()
    }

    /// Each length bucket with, once its race has run, the shortest length its fixed plan
    /// serves (`len + 1`: none), for reports.
    pub fn routes(&self) -> Vec<(usize, Option<usize>)> {
        let route = |b: &Bucket| (b.len, b.fixed_from.get().copied());
        self.bucket_plans.iter().map(route).collect()
    }

    /// The shortest length bucket `ix` holds: one more than the bucket below (at least 2,
    /// `[CLS]` and `[SEP]`).
    fn bucket_start(&self, ix: usize) -> usize {
        match ix {
            0 => 2.min(self.bucket_plans[0].len),
            _ => self.bucket_plans[ix - 1].len + 1,
        }
    }

    /// Every plan a query could need exists (so the source graph can go).
    fn every_plan_made(&self) -> bool {
        self.plan.get().is_some()
            && self.bucket_plans.iter().all(|b| {
                b.fixed_from
                    .get()
                    .is_some_and(|&from| from > b.len || b.plan.get().is_some())
            })
    }

    /// The symbolic plan's state in `states`, made (with the plan) on first use.
    fn symbolic_state<'s>(&self, states: &'s mut States) -> TractResult<&'s mut TypedSimpleState> {
        if states.symbolic.is_none() {
            states.symbolic = Some(self.planned(&self.plan, None)?.spawn()?);
        }
        Ok(states.symbolic.as_mut().expect("just made"))
    }

    /// The state of bucket `ix` in `states`, made (with the plan) on first use.
    fn bucket_state<'s>(
        &self,
        states: &'s mut States,
        ix: usize,
    ) -> TractResult<&'s mut TypedSimpleState> {
        if states.buckets.len() < self.bucket_plans.len() {
            states.buckets.resize_with(self.bucket_plans.len(), || None);
        }
        if states.buckets[ix].is_none() {
            let bucket = &self.bucket_plans[ix];
            states.buckets[ix] = Some(self.planned(&bucket.plan, Some(bucket.len))?.spawn()?);
        }
        Ok(states.buckets[ix].as_mut().expect("just made"))
    }

    /// The plan in `cell`, optimised from the source graph on first use: symbolic
    /// (`len` None) or batch 1 with `seq` = `len`.
    fn planned<'a>(
        &'a self,
        cell: &'a OnceLock<Arc<TypedSimplePlan>>,
        len: Option<usize>,
    ) -> TractResult<&'a Arc<TypedSimplePlan>> {
        if let Some(plan) = cell.get() {
            return Ok(plan);
        }
        let mut source = self.source.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(plan) = cell.get() {
            return Ok(plan);
        }
        let model = source
            .as_ref()
            .ok_or_else(|| TractError::msg("the source graph is gone"))?;
        let plan = match len {
            None => self.optimise_symbolic(model)?,
            Some(_) => self.optimise(model, len)?,
        };
        let _ = cell.set(plan);
        if self.every_plan_made() {
            *source = None;
        }
        release_free_memory();
        Ok(cell.get().expect("just set"))
    }

    /// The runnable plan of `model`: symbolic (`len` None) or batch 1 with `seq` = `len`,
    /// with this engine's fusions and kernels ([`crate::optimise::plan`]).
    fn optimise(
        &self,
        model: &TypedModel,
        len: Option<usize>,
    ) -> TractResult<Arc<TypedSimplePlan>> {
        let fixed = match (len, self.symbols.as_ref()) {
            (None, _) => None,
            (Some(len), Some(symbols)) => Some((symbols, len)),
            (Some(_), None) => return Err(TractError::msg("no symbols to fix")),
        };
        crate::optimise::plan(model, fixed, &self.fusion, &self.kernels)
    }

    /// The optimised symbolic plan (for inspection, profiling), made on first use.
    pub fn plan(&self) -> Result<&Arc<TypedSimplePlan>> {
        self.planned(&self.plan, None)
            .map_err(|e| DeviceError::Inference(format!("plan: {e:#}")))
    }
}

/// A length with its own batch-1 plan.
#[derive(Debug)]
struct Bucket {
    len: usize,
    plan: OnceLock<Arc<TypedSimplePlan>>,
    /// Set on first use: the shortest length of the bucket the fixed-length plan serves
    /// (shorter ones run on the symbolic plan; `len + 1` when none do), from the race of
    /// [`Engine::route`].
    fixed_from: OnceLock<usize>,
}

/// A profiled node's name and op, plus the matmul kernel tract chose for it (the `Mult:`
/// line of the op's info), so a slow matmul in a profile shows which kernel ran it.
fn profile_label(node: &tract_onnx::prelude::TypedNode) -> String {
    let mut label = format!("{} ({})", node.name, node.op.name());
    if let Some(mult) = node
        .op
        .info()
        .ok()
        .and_then(|info| info.into_iter().find(|l| l.starts_with("Mult:")))
    {
        label.push_str(" — ");
        label.push_str(&mult);
    }
    label
}

/// Runs a plan's state, clearing the upper vector state after every node.
fn run_state(state: &mut TypedSimpleState, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
    state.run_plan_with_eval(inputs, |ctx, st, node, input| {
        let out = tract_onnx::tract_core::plan::eval(ctx, st, node, input);
        crate::fused_ops::clear_upper_vector_state();
        out
    })
}

/// A batch-1 input of `n` tokens for timing and warming plans: token id 0 everywhere,
/// every position real, and `ngram_width` n-gram ids 0 (padding) when the model takes
/// them (the plans do the same arithmetic whatever the ids are).
fn warm_up_inputs(n: usize, ngram_width: Option<usize>) -> TractResult<TVec<TValue>> {
    let ids = Tensor::zero::<i64>(&[1, n])?.into_tvalue();
    let mask = tract_ndarray::Array2::<i64>::ones((1, n)).into_tensor();
    let mut inputs = tvec![ids, mask.into_tvalue()];
    if let Some(w) = ngram_width {
        inputs.push(Tensor::zero::<i64>(&[1, w])?.into_tvalue());
    }
    Ok(inputs)
}

/// The shortest length of `lo..=len` that `fixed` (planned for `len` tokens) should
/// serve: `fixed` timed at `len` (the same for every length, which it pads to `len`),
/// `symbolic` at `lo` and at `len` (batch 1, fastest of alternating runs after a warm-up, at
/// least [`RACE_RUNS`] each and until each has run for [`RACE_TIME`], at most
/// [`RACE_MAX_RUNS`]); see [`crossover`].
fn race(
    fixed: &Arc<TypedSimplePlan>,
    symbolic: &Arc<TypedSimplePlan>,
    lo: usize,
    len: usize,
    ngram_width: Option<usize>,
) -> TractResult<usize> {
    let inputs = |n| warm_up_inputs(n, ngram_width);
    let (at_len, at_lo) = (inputs(len)?, inputs(lo)?);
    let runs = [&at_len, &at_len, &at_lo];
    // One state for both lengths of the symbolic plan: in use it meets a new length at
    // almost every query, and resolving its shapes again is part of its cost.
    let mut states = [fixed.spawn()?, symbolic.spawn()?];
    let mut best = [std::time::Duration::MAX; 3];
    let mut spent = [std::time::Duration::ZERO; 3];
    let mut round = 0;
    while round <= RACE_RUNS || (round <= RACE_MAX_RUNS && spent.iter().any(|&t| t < RACE_TIME)) {
        for i in 0..3 {
            let state = &mut states[i.min(1)];
            let started = std::time::Instant::now();
            run_state(state, runs[i].clone())?;
            let took = started.elapsed();
            if round > 0 {
                best[i] = best[i].min(took);
                spent[i] += took;
            }
        }
        round += 1;
    }
    let [fixed, symbolic_len, symbolic_lo] = best.map(|t| t.as_secs_f64());
    Ok(crossover(lo, len, fixed, symbolic_lo, symbolic_len))
}

/// The shortest length of `lo..=len` at which a plan taking `fixed` at every length beats
/// one taking `at_lo` at `lo` and `at_len` at `len`, linear in between (`len + 1`: none).
fn crossover(lo: usize, len: usize, fixed: f64, at_lo: f64, at_len: f64) -> usize {
    if fixed <= at_lo {
        return lo;
    }
    if fixed > at_len || at_len <= at_lo {
        return len + 1;
    }
    let at = lo as f64 + (fixed - at_lo) / (at_len - at_lo) * (len - lo) as f64;
    (at.ceil() as usize).clamp(lo, len)
}

/// One run state per plan of an engine (used by one query at a time), each made when
/// that plan is first used through this set.
#[derive(Debug, Default)]
struct States {
    symbolic: Option<TypedSimpleState>,
    /// One per bucket plan, shortest first.
    buckets: Vec<Option<TypedSimpleState>>,
}

/// The input symbols `(batch, seq)` and the lengths of `buckets`
/// ([`PlanOptions::length_buckets`]) the model's positions allow, shortest first. No
/// lengths when the inputs are not `[batch, seq]` with two distinct symbols (nothing to fix).
type BucketLengths = (Option<(Symbol, Symbol)>, Vec<usize>);

fn bucket_lengths(
    typed: &TypedModel,
    max_positions: Option<usize>,
    buckets: &[usize],
) -> TractResult<BucketLengths> {
    let shape = &typed.input_fact(0)?.shape;
    let sym = |ix: usize| match shape.get(ix) {
        Some(TDim::Sym(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(batch), Some(seq)) = (sym(0), sym(1)) else {
        return Ok((None, Vec::new()));
    };
    if batch == seq {
        return Ok((None, Vec::new()));
    }
    let Some(max) = max_positions else {
        return Ok((None, Vec::new()));
    };
    let mut lengths = buckets.to_vec();
    lengths.retain(|&l| l > 0 && l <= max);
    lengths.sort_unstable();
    lengths.dedup();
    Ok((Some((batch, seq)), lengths))
}

/// The graph must take and give exactly the classifier's named tensors, in order; returns
/// the width of its `ngram_ids` input, if it has one.
fn check_interface(graph: &pb::GraphProto) -> std::result::Result<Option<usize>, String> {
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(&i.name.as_str()))
        .collect();
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    let has_ngrams = names.len() == 3 && names[2] == NGRAM_INPUT;
    if names[..names.len().min(2)] != INPUT_NAMES || !(names.len() == 2 || has_ngrams) {
        return Err(format!(
            "inputs are {names:?}, expected {INPUT_NAMES:?}, optionally followed by \
             {NGRAM_INPUT:?}"
        ));
    }
    let mut ngram_width = None;
    for input in inputs {
        let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(t)) => t,
            None => return Err(format!("input {} has no tensor type", input.name)),
        };
        if tensor.elem_type != pb::tensor_proto::DataType::Int64 as i32 {
            return Err(format!("input {} is not int64", input.name));
        }
        if input.name != NGRAM_INPUT {
            if tensor.shape.as_ref().is_some_and(|s| s.dim.len() != 2) {
                return Err(format!("input {} is not rank 2 [batch, seq]", input.name));
            }
            continue;
        }
        // The width must be a number: the engine feeds exactly that many ids per text.
        use pb::tensor_shape_proto::dimension::Value;
        let dims = tensor.shape.as_ref().map(|s| s.dim.as_slice());
        let width = match dims {
            Some([_, d]) => match d.value {
                Some(Value::DimValue(w)) => usize::try_from(w).ok(),
                _ => None,
            },
            _ => None,
        };
        match width {
            Some(w) if (1..=NgramSpec::MAX_WIDTH).contains(&w) => ngram_width = Some(w),
            _ => {
                return Err(format!(
                    "input {NGRAM_INPUT} is not rank 2 [batch, M] with a fixed M in \
                     1..={}",
                    NgramSpec::MAX_WIDTH
                ))
            }
        }
    }
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    if outputs != OUTPUT_NAMES {
        return Err(format!(
            "outputs are {outputs:?}, expected {OUTPUT_NAMES:?}"
        ));
    }
    Ok(ngram_width)
}

/// Rows of an embedding table: dim 0 of an initializer (an f32 or int8 table, or its
/// per-row scales) gathered (axis 0) with indices that `accept` takes, given their name
/// and the node producing them (None for a graph input); the fewest rows when several
/// tables are gathered so (an int8 table and its scales), so ids below it are safe for
/// each. Bundles exported before the int8 rows were gathered first pass the int8 table
/// through `DequantizeLinear`.
fn table_rows(
    graph: &pb::GraphProto,
    accept: impl Fn(&str, Option<&pb::NodeProto>) -> bool,
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
                None => is_graph_input(indices) && accept(indices, None),
                Some(p) => accept(indices, Some(p)),
            }
        })
        .filter_map(|n| {
            let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
            let table = init(&n.input[0]).or_else(|| {
                let p = producer(&n.input[0])?;
                (p.op_type == "DequantizeLinear")
                    .then(|| init(p.input.first()?))
                    .flatten()
            })?;
            usize::try_from(*table.dims.first()?).ok()
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::crossover;

    #[test]
    fn the_fixed_plan_serves_the_lengths_where_it_beats_the_symbolic_plan() {
        // Faster than the symbolic plan even at the bucket's shortest length: all of it.
        assert_eq!(crossover(9, 16, 3.0, 3.5, 6.0), 9);
        // Slower than the symbolic plan at the bucket's own length: none of it.
        assert_eq!(crossover(9, 16, 6.5, 3.5, 6.0), 17);
        // In between: from where the symbolic plan's line reaches its time (5.4 ms is
        // reached at 9 + 1.9/2.5 * 7 = 14.32 tokens).
        assert_eq!(crossover(9, 16, 5.4, 3.5, 6.0), 15);
        // Equal at the bucket's length: the fixed plan keeps that length.
        assert_eq!(crossover(9, 16, 6.0, 3.5, 6.0), 16);
        // A symbolic plan timed no slower at the long end (noise): it keeps the bucket.
        assert_eq!(crossover(9, 16, 5.0, 4.0, 4.0), 17);
        // A one-length bucket.
        assert_eq!(crossover(8, 8, 2.0, 3.0, 3.0), 8);
        assert_eq!(crossover(8, 8, 4.0, 3.0, 3.0), 9);
    }
}
