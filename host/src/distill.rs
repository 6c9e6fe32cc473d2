//! Knowledge distillation (`tools distill`): a small student learns from a trained
//! teacher checkpoint's softened outputs mixed with the hard labels.
//!
//! The teacher runs once, before the student trains: in eval mode, in length-sorted
//! batches, on the raw texts tokenised with the teacher's own tokenizer. Its logits,
//! restricted to the student's labels and softened by the temperature, become one row of
//! soft targets per training example ([`crate::batching::EncodedExample::soft`]); the
//! ordinary training loop ([`crate::train::train`]) then uses [`crate::loss::kd_loss`] for those
//! batches. Student and teacher may tokenise differently (the student's own WordPiece
//! vocabulary, or the teacher's): the targets belong to the example, not to the tokens.
//!
//! Optional augmentation (`augment` copies per example, words dropped, masked, replaced
//! or swapped) gives the student more of the teacher's function to imitate: the teacher
//! labels each perturbed text itself, which is where distillation gains most on small
//! data sets (Tang et al. 2019, "Distilling task-specific knowledge from BERT into simple
//! neural networks"). A perturbed copy keeps its original hard label, as word dropout in
//! ordinary training does.
//!
//! The student may also start from a pretrained encoder (`init`, as `tools train --init`):
//! a student of the teacher's own size then learns from the teacher's outputs on the
//! perturbed copies ("born-again" self-distillation, Furlanello et al. 2018), which
//! regularises a fine-tuned encoder that has memorised its 100 examples per class.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, D};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::batching::{sorted_batches, Batch, EncodedExample};
use crate::checkpoint::{
    check_output, save_weights, write_atomic, Checkpoint, OutputKind, StagedDir, CONFIG_FILE,
    TOKENIZER_FILE,
};
use crate::data::Columns;
use crate::error::{HostError, Result};
use crate::model::{AttentionClassifier, Dropout};
use crate::pipeline::{write_json, TrainSummary};
use crate::preset::Preset;
use crate::train::{train, SpecialIds, TrainOptions};

/// Which tokenizer the student uses.
#[derive(Debug, Clone, PartialEq)]
pub enum StudentTokenizer {
    /// The student's own: a WordPiece vocabulary of the preset's size trained on the
    /// training texts, or the pretrained encoder's tokenizer when the student starts from
    /// one ([`DistillJob::init`]).
    Student,
    /// The teacher's `tokenizer.json` (its vocabulary sizes the student's embedding table).
    Teacher,
    /// The teacher's WordPiece tokenizer with its vocabulary cut to the tokens the training
    /// texts use (plus special tokens and single ASCII characters): the same tokens on
    /// those texts, a much smaller embedding table ([`prune_wordpiece`]).
    TeacherPruned,
    /// This `tokenizer.json`.
    File(PathBuf),
}

impl std::str::FromStr for StudentTokenizer {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "student" => Self::Student,
            "teacher" => Self::Teacher,
            "teacher-pruned" => Self::TeacherPruned,
            path => Self::File(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for StudentTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Student => f.write_str("student"),
            Self::Teacher => f.write_str("teacher"),
            Self::TeacherPruned => f.write_str("teacher-pruned"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Everything `tools distill` needs.
#[derive(Debug, Clone)]
pub struct DistillJob {
    /// Teacher checkpoint directory (float or quantised).
    pub teacher: PathBuf,
    pub train: PathBuf,
    /// Validation file; without it a stratified share of `train` is held out.
    pub val: Option<PathBuf>,
    pub val_fraction: f64,
    pub columns: Columns,
    pub out: PathBuf,
    /// The student's architecture and training defaults (flags already applied).
    pub preset: Preset,
    pub tokenizer: StudentTokenizer,
    /// Training options; `options.distill` holds temperature and alpha.
    pub options: TrainOptions,
    /// Perturbed copies per training example, labelled by the teacher (0 = none).
    pub augment: usize,
    /// Per-word probability of each perturbation (drop, mask; half of it for replace, swap).
    pub augment_prob: f64,
    /// Batch size of the teacher's forward passes.
    pub teacher_batch_size: usize,
    /// Start the student's word embeddings from the teacher's (projected to the student's
    /// width; [`crate::embedding_transfer`]) for every token both vocabularies have.
    pub teacher_embeddings: bool,
    /// Start the student from this pretrained BERT-family encoder (a Hugging Face folder,
    /// as `tools train --init`): its sizes and tokenizer replace the preset's.
    pub init: Option<PathBuf>,
    /// Replace `out` if it already holds a checkpoint (never anything else:
    /// [`crate::checkpoint::check_output`]).
    pub force: bool,
}

/// The `distillation` section of a distilled checkpoint's `training.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DistillInfo {
    pub teacher: String,
    /// sha256 of the teacher's weights file.
    pub teacher_sha256: String,
    pub teacher_preset: String,
    pub teacher_vocab_size: usize,
    pub teacher_labels: usize,
    pub temperature: f64,
    pub alpha: f64,
    /// `student`, `teacher`, or the tokenizer file used.
    pub tokenizer: String,
    pub augment: usize,
    pub augment_prob: f64,
    /// Rows the student trained on (originals plus perturbed copies).
    pub training_rows: usize,
    /// The teacher's accuracy on the original training examples and on validation.
    pub teacher_train_accuracy: f64,
    pub teacher_val_accuracy: f64,
    /// Seconds spent running the teacher.
    pub teacher_seconds: f64,
    /// The word-embedding transfer, when asked for.
    pub teacher_embeddings: Option<crate::embedding_transfer::TransferReport>,
}

/// `training.json` of a distilled checkpoint: the fields `tools train` writes (so
/// quantize/export find the data) plus the distillation settings.
#[derive(Debug, Clone, Serialize)]
pub struct DistillSummary {
    #[serde(flatten)]
    pub train: TrainSummary,
    pub distillation: DistillInfo,
}

/// Maps each student label to the teacher's output index; an error names every label the
/// teacher does not have.
pub fn label_map(student: &[String], teacher: &[String], teacher_dir: &Path) -> Result<Vec<u32>> {
    let missing: Vec<&str> = student
        .iter()
        .filter(|l| !teacher.contains(l))
        .map(|s| s.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(HostError::Invalid(format!(
            "the training data has {} label(s) the teacher {} does not know: {} (teacher labels: {})",
            missing.len(),
            teacher_dir.display(),
            missing.join(", "),
            teacher.join(", ")
        )));
    }
    Ok(student
        .iter()
        .map(|l| teacher.iter().position(|t| t == l).expect("checked") as u32)
        .collect())
}

/// The teacher's view of `texts`: soft targets `softmax(t/T)` over the student's labels
/// (teacher logits restricted to `map`, which renormalises away labels the student lacks)
/// and the teacher's predicted student label per text.
pub fn teacher_targets(
    teacher: &AttentionClassifier,
    encoder: &device::tokenize::TextEncoder,
    texts: &[&str],
    map: &[u32],
    temperature: f64,
    batch_size: usize,
    progress: bool,
) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
    let device = Device::Cpu;
    let encoded = texts
        .iter()
        .map(|t| Ok(EncodedExample::new(&encoder.encode(t)?, 0)))
        .collect::<Result<Vec<_>>>()?;
    let columns = Tensor::from_vec(map.to_vec(), map.len(), &device)?;
    let mut soft = vec![Vec::new(); texts.len()];
    let mut predicted = vec![0usize; texts.len()];
    let batches = sorted_batches(&encoded, batch_size.max(1));
    let bar = if progress {
        ProgressBar::new(texts.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("teacher {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]")
            .expect("valid template"),
    );
    let off = Dropout::off();
    for indices in batches {
        let batch = Batch::new(&encoded, &indices, &device)?;
        let logits = teacher
            .forward(&batch.ids, &batch.mask, Some(&batch.ngrams), &off)?
            .logits
            .index_select(&columns, 1)?;
        let p = candle_nn::ops::softmax(&(logits / temperature)?, D::Minus1)?.to_vec2::<f32>()?;
        for (row, &i) in indices.iter().enumerate() {
            predicted[i] = (0..map.len())
                .max_by(|&a, &b| p[row][a].total_cmp(&p[row][b]))
                .unwrap_or(0);
            soft[i] = p[row].clone();
        }
        bar.inc(indices.len() as u64);
    }
    bar.finish_and_clear();
    Ok((soft, predicted))
}

fn tok_err(e: impl std::fmt::Display) -> HostError {
    HostError::Invalid(format!("tokenizer: {e}"))
}

/// Token ids of `texts` under `tokenizer` (special tokens added, no truncation).
fn token_ids(json: &[u8], texts: &[&str]) -> Result<Vec<Vec<u32>>> {
    let mut t = tokenizers::Tokenizer::from_bytes(json).map_err(tok_err)?;
    t.with_truncation(None).map_err(tok_err)?;
    t.with_padding(None);
    texts
        .iter()
        .map(|s| Ok(t.encode(*s, true).map_err(tok_err)?.get_ids().to_vec()))
        .collect()
}

/// Rewrites the token ids found in a post-processor (`TemplateProcessing`'s special
/// tokens, `BertProcessing`/`RobertaProcessing`'s `cls`/`sep`, a `Sequence` of those).
fn remap_post_processor(
    v: &mut serde_json::Value,
    map: &std::collections::HashMap<u64, u64>,
) -> Result<()> {
    let remap = |id: &mut serde_json::Value| -> Result<()> {
        let old = id
            .as_u64()
            .ok_or_else(|| tok_err("post-processor id is not a number"))?;
        let new = map
            .get(&old)
            .ok_or_else(|| tok_err(format!("post-processor id {old} is not in the vocabulary")))?;
        *id = (*new).into();
        Ok(())
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("TemplateProcessing") => {
            if let Some(tokens) = v.get_mut("special_tokens").and_then(|s| s.as_object_mut()) {
                for tok in tokens.values_mut() {
                    if let Some(ids) = tok.get_mut("ids").and_then(|i| i.as_array_mut()) {
                        for id in ids {
                            remap(id)?;
                        }
                    }
                }
            }
        }
        Some("BertProcessing") | Some("RobertaProcessing") => {
            for k in ["cls", "sep"] {
                if let Some(id) = v.get_mut(k).and_then(|p| p.get_mut(1)) {
                    remap(id)?;
                }
            }
        }
        Some("Sequence") => {
            if let Some(list) = v.get_mut("processors").and_then(|p| p.as_array_mut()) {
                for p in list {
                    remap_post_processor(p, map)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Cuts a WordPiece `tokenizer.json` down to the tokens `texts` use, the added (special)
/// tokens and the single-ASCII-character tokens (`a`, `##a`, so unseen English words
/// still split into pieces rather than `[UNK]`). Ids are renumbered in their original
/// order. Greedy longest-match WordPiece gives exactly the same tokens on `texts` (every
/// piece it chose is kept, and any longer match would have been chosen before): checked
/// here. Returns the new JSON and the vocabulary size.
pub fn prune_wordpiece(json: &[u8], texts: &[&str]) -> Result<(Vec<u8>, usize)> {
    use std::collections::{BTreeSet, HashMap};
    let before = token_ids(json, texts)?;
    let mut v: serde_json::Value = serde_json::from_slice(json).map_err(tok_err)?;
    if v.pointer("/model/type").and_then(|t| t.as_str()) != Some("WordPiece") {
        return Err(tok_err(
            "vocabulary pruning needs a WordPiece tokenizer (use --tokenizer teacher)",
        ));
    }
    let vocab = v
        .pointer("/model/vocab")
        .and_then(|x| x.as_object())
        .ok_or_else(|| tok_err("no model.vocab"))?
        .clone();
    let mut keep: BTreeSet<u64> = before.iter().flatten().map(|&i| i as u64).collect();
    if let Some(added) = v.get("added_tokens").and_then(|a| a.as_array()) {
        keep.extend(
            added
                .iter()
                .filter_map(|t| t.get("id").and_then(|i| i.as_u64())),
        );
    }
    for (token, id) in &vocab {
        let bare = token.strip_prefix("##").unwrap_or(token);
        let mut chars = bare.chars();
        if matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii()) {
            keep.extend(id.as_u64());
        }
    }
    if let Some(unk) = v.pointer("/model/unk_token").and_then(|u| u.as_str()) {
        keep.extend(vocab.get(unk).and_then(|i| i.as_u64()));
    }
    let map: HashMap<u64, u64> = keep
        .iter()
        .enumerate()
        .map(|(new, &old)| (old, new as u64))
        .collect();
    let pruned: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .filter_map(|(t, id)| {
            let new = map.get(&id.as_u64()?)?;
            Some((t.clone(), (*new).into()))
        })
        .collect();
    let kept = pruned.len();
    v["model"]["vocab"] = serde_json::Value::Object(pruned);
    if let Some(added) = v.get_mut("added_tokens").and_then(|a| a.as_array_mut()) {
        for t in added {
            if let Some(id) = t.get("id").and_then(|i| i.as_u64()) {
                t["id"] = map[&id].into();
            }
        }
    }
    if let Some(pp) = v.get_mut("post_processor") {
        remap_post_processor(pp, &map)?;
    }
    if let Some(pad) = v.get_mut("padding").and_then(|p| p.get_mut("pad_id")) {
        if let Some(new) = pad.as_u64().and_then(|old| map.get(&old)) {
            *pad = (*new).into();
        }
    }
    let out = serde_json::to_vec(&v).map_err(tok_err)?;
    let after = token_ids(&out, texts)?;
    for ((b, a), text) in before.iter().zip(&after).zip(texts) {
        let mapped: Vec<u32> = b.iter().map(|&i| map[&(i as u64)] as u32).collect();
        if &mapped != a {
            return Err(tok_err(format!(
                "the pruned vocabulary tokenises '{text}' differently"
            )));
        }
    }
    Ok((out, kept))
}

/// Is `c` a character written without spaces between words (CJK, kana, Hangul)?
fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// One perturbed copy of `text`: each word (each character in unspaced CJK text) is
/// dropped with probability `p`, replaced by `mask` (when given) with probability `p`,
/// replaced by a random word from `words` with probability `p/2`; then each adjacent pair
/// is swapped with probability `p/2`. Never returns an empty text.
pub fn perturb(
    text: &str,
    p: f64,
    mask: Option<&str>,
    words: &[String],
    rng: &mut StdRng,
) -> String {
    let spaced: Vec<&str> = text.split_whitespace().collect();
    let char_level = spaced.len() < 2 && text.chars().any(is_cjk);
    let units: Vec<String> = if char_level {
        text.chars()
            .filter(|c| !c.is_whitespace())
            .map(String::from)
            .collect()
    } else {
        spaced.iter().map(|s| s.to_string()).collect()
    };
    let mut out: Vec<String> = Vec::with_capacity(units.len());
    for u in &units {
        let r: f64 = rng.random();
        if r < p {
            continue;
        } else if r < 2.0 * p {
            match mask {
                Some(m) => out.push(m.to_string()),
                None => continue,
            }
        } else if r < 2.5 * p && !char_level && !words.is_empty() {
            out.push(words[rng.random_range(0..words.len())].clone());
        } else {
            out.push(u.clone());
        }
    }
    for i in 1..out.len() {
        if rng.random::<f64>() < p / 2.0 {
            out.swap(i - 1, i);
        }
    }
    if out.is_empty() {
        if units.is_empty() {
            return text.to_string();
        }
        out.push(units[rng.random_range(0..units.len())].clone());
    }
    out.join(if char_level { "" } else { " " })
}

fn accuracy(predicted: &[usize], gold: &[u32]) -> f64 {
    let right = predicted
        .iter()
        .zip(gold)
        .filter(|(p, g)| **p == **g as usize)
        .count();
    right as f64 / gold.len().max(1) as f64
}

/// Runs a whole distillation job and leaves an ordinary checkpoint in `job.out`.
pub fn run(job: &DistillJob) -> Result<DistillSummary> {
    job.preset.validate()?;
    {
        let mut inputs = vec![
            ("the teacher", job.teacher.as_path()),
            ("the training data", job.train.as_path()),
        ];
        if let Some(v) = &job.val {
            inputs.push(("the validation data", v));
        }
        if let Some(i) = &job.init {
            inputs.push(("the pretrained encoder", i));
        }
        if let StudentTokenizer::File(t) = &job.tokenizer {
            inputs.push(("the tokenizer", t));
        }
        check_output(&job.out, OutputKind::Checkpoint, job.force, &inputs)?;
    }
    let kd = job.options.distill.unwrap_or_default();
    kd.validate()?;
    if !(0.0..=0.4).contains(&job.augment_prob) {
        return Err(HostError::Invalid(format!(
            "augment probability {} must be in [0, 0.4]",
            job.augment_prob
        )));
    }
    let progress = job.options.progress;
    let teacher_ckpt = Checkpoint::open(&job.teacher)?;
    if job.teacher_embeddings && teacher_ckpt.quantized {
        return Err(HostError::Invalid(format!(
            "{}: --teacher-embeddings needs the float teacher checkpoint (this one is quantised)",
            job.teacher.display()
        )));
    }
    let pretrained = match &job.init {
        Some(dir) => {
            if job.tokenizer != StudentTokenizer::Student {
                return Err(HostError::Invalid(format!(
                    "tokenizer `{}` and a pretrained student ({}) together: the pretrained encoder brings its own tokenizer",
                    job.tokenizer,
                    dir.display()
                )));
            }
            if job.teacher_embeddings {
                return Err(HostError::Invalid(format!(
                    "--teacher-embeddings and a pretrained student ({}) together: the student's word vectors come from the pretrained encoder",
                    dir.display()
                )));
            }
            Some(crate::pretrained::PretrainedEncoder::open(dir)?)
        }
        None => None,
    };
    let device = Device::Cpu;

    // Data and labels, as `tools train` does (same split, so quantize/export find it).
    let (labels, train_set, val_set) = crate::pipeline::load_splits(
        &job.train,
        job.val.as_deref(),
        job.val_fraction,
        job.options.seed,
        &job.columns,
    )?;
    let map = label_map(&labels, &teacher_ckpt.config.labels, &job.teacher)?;
    if progress && teacher_ckpt.config.labels.len() > labels.len() {
        eprintln!(
            "note: the teacher has {} labels, the data {}: the teacher's distribution is renormalised over the data's labels",
            teacher_ckpt.config.labels.len(),
            labels.len()
        );
    }

    // The student's tokenizer.
    // (A pretrained student's own is the encoder's: any other choice was refused above.)
    let tokenizer_json = match (&job.tokenizer, &pretrained) {
        (_, Some(enc)) => enc.tokenizer_json.clone(),
        (StudentTokenizer::Student, None) => {
            let texts: Vec<&str> = train_set.examples.iter().map(|e| e.text.as_str()).collect();
            crate::tokenizer::train_wordpiece(&texts, job.preset.vocab_size)?
        }
        (StudentTokenizer::Teacher, None) => teacher_ckpt.tokenizer_json.clone(),
        (StudentTokenizer::TeacherPruned, None) => {
            let texts: Vec<&str> = train_set.examples.iter().map(|e| e.text.as_str()).collect();
            let (json, kept) = prune_wordpiece(&teacher_ckpt.tokenizer_json, &texts)?;
            if progress {
                eprintln!(
                    "teacher vocabulary pruned to the training texts' tokens: {kept} of {}",
                    teacher_ckpt.config.vocab_size
                );
            }
            json
        }
        (StudentTokenizer::File(p), None) => std::fs::read(p).map_err(|e| HostError::io(p, e))?,
    };
    let encoder = device::tokenize::TextEncoder::from_bytes(&tokenizer_json, job.preset.max_len)?
        .with_ngrams(job.preset.ngram_spec());
    let teacher_encoder = teacher_ckpt.encoder()?;

    // Training rows: the originals, then `augment` perturbed copies of each.
    let mut rng = StdRng::seed_from_u64(job.options.seed.wrapping_add(7));
    let label_index = |l: &str| labels.iter().position(|x| x == l).expect("checked") as u32;
    let mut texts: Vec<String> = train_set.examples.iter().map(|e| e.text.clone()).collect();
    let mut gold: Vec<u32> = train_set
        .examples
        .iter()
        .map(|e| label_index(&e.label))
        .collect();
    let originals = texts.len();
    if job.augment > 0 {
        let mask_token = "[MASK]";
        let has_mask = |t: &tokenizers::Tokenizer| t.token_to_id(mask_token).is_some();
        let mask = (has_mask(encoder.tokenizer()) && has_mask(teacher_encoder.tokenizer()))
            .then_some(mask_token);
        let mut words: Vec<String> = texts
            .iter()
            .flat_map(|t| t.split_whitespace().map(str::to_string))
            .filter(|w| !w.chars().any(is_cjk))
            .collect();
        words.sort();
        words.dedup();
        for _ in 0..job.augment {
            for i in 0..originals {
                let t = perturb(&texts[i], job.augment_prob, mask, &words, &mut rng);
                texts.push(t);
                gold.push(gold[i]);
            }
        }
    }

    // The teacher, once.
    let teacher_model = crate::quantize::load_model(&teacher_ckpt, &device)?;
    if progress {
        eprintln!(
            "teacher {} ({}, hidden {}, {} layers, vocab {}): labelling {} training rows ({} originals + {} perturbed) at T = {}",
            job.teacher.display(),
            teacher_ckpt.config.preset,
            teacher_ckpt.config.hidden,
            teacher_ckpt.config.layers,
            teacher_ckpt.config.vocab_size,
            texts.len(),
            originals,
            texts.len() - originals,
            kd.temperature
        );
    }
    let teacher_started = Instant::now();
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (soft, teacher_pred) = teacher_targets(
        &teacher_model,
        &teacher_encoder,
        &text_refs,
        &map,
        kd.temperature,
        job.teacher_batch_size,
        progress,
    )?;
    let val_texts: Vec<&str> = val_set.examples.iter().map(|e| e.text.as_str()).collect();
    let val_gold: Vec<u32> = val_set
        .examples
        .iter()
        .map(|e| label_index(&e.label))
        .collect();
    let (_, teacher_val_pred) = teacher_targets(
        &teacher_model,
        &teacher_encoder,
        &val_texts,
        &map,
        kd.temperature,
        job.teacher_batch_size,
        progress,
    )?;
    // The teacher's word vectors, kept for --teacher-embeddings (a shared handle, no copy).
    let teacher_table = job
        .teacher_embeddings
        .then(|| teacher_model.embeddings.word.clone());
    drop(teacher_model);
    let teacher_seconds = teacher_started.elapsed().as_secs_f64();
    let teacher_train_accuracy = accuracy(&teacher_pred[..originals], &gold[..originals]);
    let teacher_val_accuracy = accuracy(&teacher_val_pred, &val_gold);
    if progress {
        eprintln!(
            "teacher: train accuracy {teacher_train_accuracy:.4}, validation accuracy {teacher_val_accuracy:.4} ({teacher_seconds:.1} s)"
        );
    }

    // Student rows: the student's tokens, the teacher's soft targets.
    let mut train_enc = Vec::with_capacity(texts.len());
    for ((text, &label), soft) in texts.iter().zip(&gold).zip(soft) {
        let mut e = EncodedExample::new(&encoder.encode(text)?, label);
        e.soft = Some(soft);
        train_enc.push(e);
    }
    let val_enc = crate::batching::encode(&encoder, &val_set, &labels)?;

    let p = &job.preset;
    let config =
        crate::pipeline::model_config(pretrained.as_ref(), p, encoder.vocab_size(), &labels)?;
    let stage = StagedDir::new(&job.out)?;
    let out = stage.path().to_path_buf();
    write_atomic(&out.join(TOKENIZER_FILE), &tokenizer_json)?;
    write_json(&out.join(CONFIG_FILE), &config)?;

    let (model, varmap) = AttentionClassifier::fresh(&config, job.options.seed, &device)?;
    let init = crate::pipeline::load_pretrained(pretrained.as_ref(), &varmap, &config, progress)?;
    drop(pretrained);
    let parameters: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    let transferred = if let Some(table) = &teacher_table {
        let r = teacher_embeddings(table, &teacher_encoder, &encoder, &varmap, job.options.seed)?;
        if progress {
            eprintln!(
                "word embeddings: {} of {} student tokens start from the teacher's vectors ({} -> {} dims, {:.1}% of their variance kept)",
                r.rows,
                r.vocab,
                r.from_dim,
                r.to_dim,
                r.variance_kept * 100.0
            );
        }
        Some(r)
    } else {
        None
    };
    if progress {
        let embedding = config.vocab_size * config.hidden;
        eprintln!(
            "student {} ({} parameters, of which {} in the {}x{} embedding table; vocab from {}) on {} rows, validating on {}, {} labels, T = {}, alpha = {}",
            config.preset,
            parameters,
            embedding,
            config.vocab_size,
            config.hidden,
            job.tokenizer,
            train_enc.len(),
            val_enc.len(),
            labels.len(),
            kd.temperature,
            kd.alpha
        );
    }
    let mut options = job.options.clone();
    options.distill = Some(kd);
    let special = SpecialIds::from_encoder(&encoder);
    let outcome = train(
        &model,
        &varmap,
        &train_enc,
        &val_enc,
        &options,
        &special,
        |_| save_weights(&varmap, &out),
    )?;

    let teacher_weights = if teacher_ckpt.quantized {
        teacher_ckpt.dir.join(crate::checkpoint::QUANT_WEIGHTS_FILE)
    } else {
        teacher_ckpt.weights_path()
    };
    let teacher_bytes =
        std::fs::read(&teacher_weights).map_err(|e| HostError::io(&teacher_weights, e))?;
    let summary = DistillSummary {
        train: TrainSummary {
            train_file: job.train.display().to_string(),
            val_file: job.val.as_ref().map(|p| p.display().to_string()),
            train_examples: originals,
            val_examples: val_enc.len(),
            labels: labels.len(),
            vocab_size: config.vocab_size,
            parameters,
            preset: job.preset.clone(),
            options,
            init,
            outcome,
        },
        distillation: DistillInfo {
            teacher: job.teacher.display().to_string(),
            teacher_sha256: bundle::sha256_hex(&teacher_bytes),
            teacher_preset: teacher_ckpt.config.preset.clone(),
            teacher_vocab_size: teacher_ckpt.config.vocab_size,
            teacher_labels: teacher_ckpt.config.labels.len(),
            temperature: kd.temperature,
            alpha: kd.alpha,
            tokenizer: job.tokenizer.to_string(),
            augment: job.augment,
            augment_prob: job.augment_prob,
            training_rows: train_enc.len(),
            teacher_train_accuracy,
            teacher_val_accuracy,
            teacher_seconds,
            teacher_embeddings: transferred,
        },
    };
    crate::pipeline::write_records(
        &out,
        &summary,
        &summary.train.outcome.log,
        &val_set,
        summary.train.val_file.as_deref(),
        progress,
    )?;
    stage.commit()?;
    Ok(summary)
}

/// Copies the teacher's word vectors (`table`) into the fresh student table `varmap`
/// holds, for every token both tokenizers know (by token string).
fn teacher_embeddings(
    table: &Tensor,
    teacher_encoder: &device::tokenize::TextEncoder,
    student_encoder: &device::tokenize::TextEncoder,
    varmap: &candle_nn::VarMap,
    seed: u64,
) -> Result<crate::embedding_transfer::TransferReport> {
    const TABLE: &str = "embeddings.word_embeddings.weight";
    let (_, from_dim) = table.dims2()?;
    let teacher_values = table.flatten_all()?.to_vec1::<f32>()?;
    let vars = varmap.data().lock().map_err(|_| {
        HostError::Invalid("the student's weights are poisoned by an earlier panic".into())
    })?;
    let var = vars
        .get(TABLE)
        .ok_or_else(|| HostError::Invalid(format!("student has no {TABLE}")))?;
    let (rows, to_dim) = var.as_tensor().dims2()?;
    let mut student = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    let vocab = student_encoder.tokenizer().get_vocab(true);
    let teacher_tok = teacher_encoder.tokenizer();
    let report = crate::embedding_transfer::transfer(
        &mut student,
        to_dim,
        &vocab,
        &teacher_values,
        from_dim,
        |t| teacher_tok.token_to_id(t),
        seed,
    );
    var.set(&Tensor::from_vec(student, (rows, to_dim), &Device::Cpu)?)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_carry_soft_targets_only_when_every_example_has_them() {
        let dev = Device::Cpu;
        let mut a = EncodedExample {
            ids: vec![2, 7, 3],
            ngrams: Vec::new(),
            label: 0,
            soft: Some(vec![0.9, 0.1]),
        };
        let b = EncodedExample {
            ids: vec![2, 8, 9, 3],
            ngrams: Vec::new(),
            label: 1,
            soft: Some(vec![0.3, 0.7]),
        };
        let batch = Batch::new(&[a.clone(), b.clone()], &[1, 0], &dev).unwrap();
        let soft = batch.soft.expect("soft targets").to_vec2::<f32>().unwrap();
        assert_eq!(soft, vec![vec![0.3, 0.7], vec![0.9, 0.1]]);
        a.soft = None;
        assert!(Batch::new(&[a, b], &[0, 1], &dev).unwrap().soft.is_none());
    }

    #[test]
    fn labels_the_teacher_lacks_are_named() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let map = label_map(&s(&["b", "c"]), &s(&["a", "b", "c"]), Path::new("t")).unwrap();
        assert_eq!(map, vec![1, 2]);
        let e = label_map(&s(&["a", "x", "y"]), &s(&["a", "b"]), Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x, y") && e.contains("teacher"), "{e}");
    }

    #[test]
    fn pruned_vocabulary_tokenises_the_texts_identically() {
        let corpus = [
            "turn on the kitchen lights",
            "set an alarm for seven thirty",
            "what is the weather like tomorrow in paris",
            "play some relaxing jazz music",
            "打开客厅的灯",
        ];
        let full = crate::tokenizer::train_wordpiece(&corpus, 300).unwrap();
        let texts = ["turn on the lights", "play jazz", "打开灯"];
        let tokens = |json: &[u8], t: &str| {
            let tok = tokenizers::Tokenizer::from_bytes(json).unwrap();
            tok.encode(t, true).unwrap().get_tokens().to_vec()
        };
        // Both post-processor kinds: the trained one (BertProcessing) and HF's template.
        let mut template: serde_json::Value = serde_json::from_slice(&full).unwrap();
        let (cls, sep) = (
            template["post_processor"]["cls"][1].clone(),
            template["post_processor"]["sep"][1].clone(),
        );
        template["post_processor"] = serde_json::json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}
            }
        });
        let template = serde_json::to_vec(&template).unwrap();
        for json in [full.clone(), template] {
            let size = crate::tokenizer::vocab_size(&json).unwrap();
            let (pruned, kept) = prune_wordpiece(&json, &texts).unwrap();
            assert!(kept < size, "{kept} of {size}");
            assert_eq!(crate::tokenizer::vocab_size(&pruned).unwrap(), kept);
            for t in texts {
                assert_eq!(tokens(&json, t), tokens(&pruned, t), "{t}");
            }
            let enc = device::tokenize::TextEncoder::from_bytes(&pruned, 16).unwrap();
            let ids = enc.encode("turn on the lights").unwrap().ids;
            let tok = enc.tokenizer();
            assert_eq!(ids[0] as u32, tok.token_to_id("[CLS]").unwrap());
            assert_eq!(
                *ids.last().unwrap() as u32,
                tok.token_to_id("[SEP]").unwrap()
            );
            assert!(ids.iter().all(|&i| (i as usize) < kept));
            assert_eq!(tok.token_to_id("[PAD]"), Some(0));
        }
    }

    #[test]
    fn perturbation_is_seeded_and_never_empty() {
        let words = vec!["alarm".to_string(), "lights".to_string()];
        let text = "turn on the kitchen lights please";
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| perturb(text, 0.2, Some("[MASK]"), &words, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert!(a.iter().any(|t| t != text), "{a:?}");
        assert!(a.iter().any(|t| t.contains("[MASK]")), "{a:?}");
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            assert!(!perturb("hi", 0.4, None, &words, &mut rng).is_empty());
            let zh = perturb("打开客厅的灯", 0.3, Some("[MASK]"), &[], &mut rng);
            assert!(!zh.is_empty() && !zh.contains(' '), "{zh}");
        }
    }
}
