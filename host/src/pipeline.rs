//! `tools train` as a library call: data → tokenizer → model → training → checkpoint.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::batching::encode;
use crate::checkpoint::{
    check_output, save_weights, write_atomic, OutputKind, StagedDir, CONFIG_FILE, TOKENIZER_FILE,
    TRAINING_FILE,
};
use crate::config::ModelConfig;
use crate::data::{Columns, Dataset};
use crate::error::{HostError, Result};
use crate::model::AttentionClassifier;
use crate::preset::Preset;
use crate::train::{train, EpochLog, TrainOptions, TrainOutcome};

/// Everything `tools train` needs.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub train: PathBuf,
    /// Validation file; without it a stratified share of `train` is held out.
    pub val: Option<PathBuf>,
    pub val_fraction: f64,
    pub columns: Columns,
    pub out: PathBuf,
    /// Architecture and defaults (flags already applied).
    pub preset: Preset,
    /// An existing `tokenizer.json` to use instead of training one.
    pub tokenizer: Option<PathBuf>,
    /// A pretrained BERT-family encoder folder to start from ([`crate::pretrained`]): its
    /// architecture, tokenizer and encoder weights replace the preset's sizes, the trained
    /// tokenizer and the random initialisation.
    pub init: Option<PathBuf>,
    pub options: TrainOptions,
    /// Replace `out` if it already holds a checkpoint (it is never replaced otherwise,
    /// and nothing but a checkpoint ever is: [`check_output`]).
    pub force: bool,
}

impl TrainJob {
    /// The files and folders the job reads, which its output must not replace.
    fn inputs(&self) -> Vec<(&'static str, &Path)> {
        let mut inputs = vec![("the training data", self.train.as_path())];
        if let Some(v) = &self.val {
            inputs.push(("the validation data", v));
        }
        if let Some(t) = &self.tokenizer {
            inputs.push(("the tokenizer", t));
        }
        if let Some(i) = &self.init {
            inputs.push(("the pretrained encoder", i));
        }
        inputs
    }
}

/// What `tools train` reports at the end (also saved as `training.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub train_file: String,
    pub val_file: Option<String>,
    pub train_examples: usize,
    pub val_examples: usize,
    pub labels: usize,
    pub vocab_size: usize,
    pub parameters: usize,
    pub preset: Preset,
    pub options: TrainOptions,
    /// What came from a pretrained encoder (`--init`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<crate::pretrained::LoadReport>,
    pub outcome: TrainOutcome,
}

/// `value` as pretty JSON at `path`, written atomically.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| HostError::Invalid(e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// What every training run leaves beside its weights: `training.json` (`summary`),
/// `training_log.csv`, `training_curves.svg`, and the out-of-scope rejection rule
/// calibrated on the validation split with the saved (best) weights (rejection.json +
/// rejection_curve.svg, docs/rejection.md). Shared by `tools train` and `tools distill`.
pub fn write_records(
    out: &Path,
    summary: &impl Serialize,
    log: &[EpochLog],
    val_set: &Dataset,
    val_file: Option<&str>,
    progress: bool,
) -> Result<()> {
    write_json(&out.join(TRAINING_FILE), summary)?;
    write_atomic(&out.join("training_log.csv"), log_csv(log).as_bytes())?;
    crate::plot::training_curves(&out.join("training_curves.svg"), log)?;
    let cal = crate::calibrate::calibrate_checkpoint(
        out,
        val_set,
        &crate::rejection::CalibrationOptions::default(),
        &format!(
            "{} ({} examples)",
            val_file.unwrap_or("validation split"),
            val_set.examples.len()
        ),
    )?;
    if progress {
        eprintln!("{}", crate::rejection::summary_line(&cal));
    }
    Ok(())
}

/// The per-epoch log as CSV.
pub fn log_csv(log: &[EpochLog]) -> String {
    let mut s =
        String::from("epoch,train_loss,train_accuracy,val_loss,val_accuracy,val_macro_f1,lr,examples_per_s,seconds\n");
    for l in log {
        s += &format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.1},{:.2}\n",
            l.epoch,
            l.train_loss,
            l.train_accuracy,
            l.val_loss,
            l.val_accuracy,
            l.val_macro_f1,
            l.lr,
            l.examples_per_s,
            l.seconds
        );
    }
    s
}

/// Reads the training data and its validation split: `val` when given (its labels checked
/// against training's), else a stratified, seeded share of `train`. Returns the label list
/// (training order), the training set and the validation set.
pub fn load_splits(
    train: &Path,
    val: Option<&Path>,
    val_fraction: f64,
    seed: u64,
    columns: &Columns,
) -> Result<(Vec<String>, Dataset, Dataset)> {
    let full = Dataset::load(train, columns)?;
    let labels = full.training_labels()?;
    let (train_set, val_set) = match val {
        Some(p) => {
            let val = Dataset::load(p, columns)?;
            val.check_labels(&labels)?;
            (full, val)
        }
        None => full.stratified_split(val_fraction, seed),
    };
    if val_set.examples.is_empty() {
        return Err(HostError::data(
            train,
            None,
            "too few examples to hold out a validation split",
        ));
    }
    Ok((labels, train_set, val_set))
}

/// The model's shape: the pretrained encoder's sizes (with the preset's head, length and
/// dropout) when there is one, else the preset's.
pub fn model_config(
    pretrained: Option<&crate::pretrained::PretrainedEncoder>,
    p: &Preset,
    vocab_size: usize,
    labels: &[String],
) -> Result<ModelConfig> {
    let mut config = match pretrained {
        Some(enc) => enc.model_config(
            labels.to_vec(),
            p.max_len,
            p.pool_dim,
            p.dropout,
            vocab_size,
        )?,
        None => p.model_config(vocab_size, labels.to_vec()),
    };
    config.ngrams = p.ngram_spec();
    Ok(config)
}

/// Copies a pretrained encoder's weights into a fresh `varmap` (built for `config`) and
/// says so; `None` without one.
pub fn load_pretrained(
    pretrained: Option<&crate::pretrained::PretrainedEncoder>,
    varmap: &candle_nn::VarMap,
    config: &ModelConfig,
    progress: bool,
) -> Result<Option<crate::pretrained::LoadReport>> {
    let Some(enc) = pretrained else {
        return Ok(None);
    };
    let report = enc.load_into(varmap, config)?;
    if progress {
        eprintln!(
            "initialised {} encoder tensors from {} ({} fresh: {}; unused: {})",
            report.loaded.len(),
            report.source,
            report.fresh.len(),
            report.fresh.join(" "),
            if report.unused.is_empty() {
                "none".to_string()
            } else {
                report.unused.join(" ")
            }
        );
    }
    Ok(Some(report))
}

/// Runs a whole training job and leaves a checkpoint in `job.out`. The checkpoint is
/// built in a directory beside `job.out` and renamed into place at the end, so a failed
/// run leaves `job.out` as it was.
pub fn run(job: &TrainJob) -> Result<TrainSummary> {
    job.preset.validate()?;
    check_output(&job.out, OutputKind::Checkpoint, job.force, &job.inputs())?;
    let (labels, train_set, val_set) = crate::pipeline::load_splits(
        &job.train,
        job.val.as_deref(),
        job.val_fraction,
        job.options.seed,
        &job.columns,
    )?;

    let pretrained = match &job.init {
        Some(dir) => Some(crate::pretrained::PretrainedEncoder::open(dir)?),
        None => None,
    };
    let tokenizer_json =
        match (&job.tokenizer, &pretrained) {
            (Some(_), Some(_)) => return Err(HostError::Invalid(
                "--tokenizer and --init together: a pretrained encoder brings its own tokenizer"
                    .into(),
            )),
            (None, Some(enc)) => enc.tokenizer_json.clone(),
            (Some(p), None) => std::fs::read(p).map_err(|e| HostError::io(p, e))?,
            (None, None) => {
                let texts: Vec<&str> = train_set.examples.iter().map(|e| e.text.as_str()).collect();
                crate::tokenizer::train_wordpiece(&texts, job.preset.vocab_size)?
            }
        };
    let encoder = device::tokenize::TextEncoder::from_bytes(&tokenizer_json, job.preset.max_len)?;
    let p = &job.preset;
    let config = model_config(pretrained.as_ref(), p, encoder.vocab_size(), &labels)?;
    let encoder = encoder.with_ngrams(config.ngrams);
    let train_enc = encode(&encoder, &train_set, &labels)?;
    let val_enc = encode(&encoder, &val_set, &labels)?;

    let stage = StagedDir::new(&job.out)?;
    let out = stage.path().to_path_buf();
    write_atomic(&out.join(TOKENIZER_FILE), &tokenizer_json)?;
    write_json(&out.join(CONFIG_FILE), &config)?;

    let device = Device::Cpu;
    let (model, varmap) = AttentionClassifier::fresh(&config, job.options.seed, &device)?;
    let init = load_pretrained(pretrained.as_ref(), &varmap, &config, job.options.progress)?;
    drop(pretrained);
    let parameters: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    if job.options.progress {
        eprintln!(
            "training {} ({} parameters, vocab {}) on {} examples, validating on {}, {} labels",
            config.preset,
            parameters,
            config.vocab_size,
            train_enc.len(),
            val_enc.len(),
            labels.len()
        );
    }
    let special = crate::train::SpecialIds::from_encoder(&encoder);
    let outcome = train(
        &model,
        &varmap,
        &train_enc,
        &val_enc,
        &job.options,
        &special,
        |_| save_weights(&varmap, &out),
    )?;

    let summary = TrainSummary {
        train_file: job.train.display().to_string(),
        val_file: job.val.as_ref().map(|p| p.display().to_string()),
        train_examples: train_enc.len(),
        val_examples: val_enc.len(),
        labels: labels.len(),
        vocab_size: config.vocab_size,
        parameters,
        preset: job.preset.clone(),
        options: job.options.clone(),
        init,
        outcome,
    };
    write_records(
        &out,
        &summary,
        &summary.outcome.log,
        &val_set,
        summary.val_file.as_deref(),
        job.options.progress,
    )?;
    stage.commit()?;
    Ok(summary)
}
