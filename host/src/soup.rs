//! Model soups: one checkpoint whose weights are the average of several fine-tuned
//! checkpoints (Wortsman et al. 2022, "Model soups: averaging weights of multiple
//! fine-tuned models improves accuracy without increasing inference time").
//!
//! Runs fine-tuned from the same pretrained encoder *and* the same head initialisation
//! (same `--seed`) but with different recipes (word dropout, learning rate, epochs) land
//! in one basin of the loss, so their average is a model as large and as fast as each of
//! them that is usually more accurate than any. Runs that do not share an initialisation
//! average into noise, which is why every soup is measured on validation data before it is
//! kept, ingredient by ingredient:
//!
//! * [`Recipe::Uniform`]: the mean of every ingredient;
//! * [`Recipe::Greedy`] (the paper's recommendation): ingredients sorted by validation
//!   accuracy, each added only if the soup's validation accuracy does not fall.
//!
//! Ingredients must be float checkpoints with the same `config.json` (architecture,
//! labels) and the same `tokenizer.json`; the soup is written as an ordinary checkpoint
//! (weights, config, tokenizer, `training.json` with a `soup` record, and the rejection
//! rule calibrated on the validation data), ready for `tools quantize` / `tools export`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Serialize;

use crate::batching::encode;
use crate::checkpoint::{write_atomic, Checkpoint, CONFIG_FILE, TOKENIZER_FILE, TRAINING_FILE};
use crate::data::{Columns, Dataset};
use crate::error::{HostError, Result};
use crate::metrics::Report;
use crate::model::AttentionClassifier;
use crate::pipeline::write_json;
use crate::rejection;

/// Named weight tensors of one checkpoint (`model.safetensors`).
pub type Weights = HashMap<String, Tensor>;

/// Which ingredients go into the soup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// Every ingredient, equally weighted.
    Uniform,
    /// Best-first, each kept only if validation accuracy does not fall.
    Greedy,
}

/// Everything `tools soup` needs.
#[derive(Debug, Clone)]
pub struct SoupJob {
    /// Float checkpoints fine-tuned from the same initialisation (at least two).
    pub ingredients: Vec<PathBuf>,
    pub out: PathBuf,
    pub recipe: Recipe,
    /// Validation data; default: the one the first ingredient was trained with (every
    /// ingredient must then have been trained on the same data and split).
    pub val: Option<PathBuf>,
    pub columns: Columns,
    pub progress: bool,
    /// Replace `out` if it already holds a checkpoint (never anything else:
    /// [`crate::checkpoint::check_output`]).
    pub force: bool,
}

/// One ingredient's validation figures.
#[derive(Debug, Clone, Serialize)]
pub struct IngredientReport {
    pub checkpoint: String,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    /// Whether the soup contains it.
    pub in_soup: bool,
}

/// What `tools soup` reports (also saved as `soup` inside the soup's `training.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SoupReport {
    pub recipe: Recipe,
    pub val_file: String,
    pub val_examples: usize,
    pub ingredients: Vec<IngredientReport>,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    /// Training time of every ingredient, summed (what the soup cost to make).
    pub ingredient_training_seconds: f64,
}

fn invalid(msg: String) -> HostError {
    HostError::Invalid(msg)
}

/// The element-wise mean of `parts` (same names, shapes and dtypes; checked by
/// [`check_same_tensors`]).
pub fn average(parts: &[&Weights]) -> Result<Weights> {
    let first = parts
        .first()
        .ok_or_else(|| invalid("a soup needs at least one ingredient".into()))?;
    let scale = 1.0 / parts.len() as f64;
    let mut out = HashMap::with_capacity(first.len());
    for (name, t0) in first.iter() {
        let mut sum = t0.clone();
        for p in &parts[1..] {
            let t = p
                .get(name)
                .ok_or_else(|| invalid(format!("tensor {name} missing from an ingredient")))?;
            sum = (sum + t)?;
        }
        out.insert(name.clone(), sum.affine(scale, 0.0)?);
    }
    Ok(out)
}

/// Errors unless `b` has exactly `a`'s tensor names, shapes and float32 type.
pub fn check_same_tensors(a: &Weights, b: &Weights, b_name: &Path) -> Result<()> {
    let bad = |problem: String| HostError::Checkpoint {
        path: b_name.to_path_buf(),
        problem,
    };
    for (name, ta) in a {
        let tb = b.get(name).ok_or_else(|| {
            bad(format!(
                "has no tensor {name}, which the first ingredient has"
            ))
        })?;
        if ta.dims() != tb.dims() {
            return Err(bad(format!(
                "tensor {name} is {:?}, the first ingredient's is {:?}",
                tb.dims(),
                ta.dims()
            )));
        }
        if tb.dtype() != DType::F32 {
            return Err(bad(format!("tensor {name} is {:?}, not f32", tb.dtype())));
        }
    }
    if let Some(extra) = b.keys().find(|k| !a.contains_key(*k)) {
        return Err(bad(format!(
            "has tensor {extra}, which the first ingredient has not"
        )));
    }
    Ok(())
}

/// Opens an ingredient: a float checkpoint matching `first`'s config and tokenizer.
fn open_ingredient(dir: &Path, first: Option<&Checkpoint>) -> Result<(Checkpoint, Weights)> {
    let ckpt = Checkpoint::open(dir)?;
    let bad = |problem: String| HostError::Checkpoint {
        path: dir.to_path_buf(),
        problem,
    };
    if ckpt.quantized {
        return Err(bad(
            "is a quantised checkpoint; soups average float weights (quantise the soup instead)"
                .into(),
        ));
    }
    if let Some(f) = first {
        if ckpt.config != f.config {
            return Err(bad(format!(
                "{CONFIG_FILE} differs from {}'s (architecture, labels or length): only \
                 checkpoints of one model can be averaged",
                f.dir.display()
            )));
        }
        if ckpt.tokenizer_json != f.tokenizer_json {
            return Err(bad(format!(
                "{TOKENIZER_FILE} differs from {}'s: the averaged embeddings would mean \
                 different tokens",
                f.dir.display()
            )));
        }
    }
    let weights = candle_core::safetensors::load(ckpt.weights_path(), &Device::Cpu)
        .map_err(|e| bad(format!("{}: {e}", crate::checkpoint::WEIGHTS_FILE)))?;
    Ok((ckpt, weights))
}

/// The validation data: `val`, or the first ingredient's (which every ingredient must
/// share: the same training file, validation file and split seed).
fn validation_data(job: &SoupJob, ckpts: &[Checkpoint]) -> Result<(Dataset, String)> {
    if let Some(p) = &job.val {
        let d = Dataset::load(p, &job.columns)?;
        return Ok((d, p.display().to_string()));
    }
    let key = |c: &Checkpoint| {
        c.training_summary().map(|s| {
            (
                s.get("train_file").cloned(),
                s.get("val_file").cloned(),
                s.pointer("/options/seed").cloned(),
            )
        })
    };
    let first = key(&ckpts[0]).ok_or_else(|| {
        invalid(format!(
            "{}: no {TRAINING_FILE} to find its validation data; pass --val FILE",
            ckpts[0].dir.display()
        ))
    })?;
    for c in &ckpts[1..] {
        if key(c).as_ref() != Some(&first) {
            return Err(invalid(format!(
                "{} was not trained on the same data, validation file and seed as {}; pass \
                 --val FILE",
                c.dir.display(),
                ckpts[0].dir.display()
            )));
        }
    }
    let (_, val, name) = crate::quantize::training_data(&ckpts[0], &job.columns)?;
    Ok((val, name))
}

/// A model's figures on the validation data.
#[derive(Debug, Clone)]
struct Score {
    accuracy: f64,
    macro_f1: f64,
    /// Class probabilities per example (the soup's calibrate its rejection rule).
    probs: Vec<Vec<f32>>,
}

/// Validation figures of a model with weights `w`.
fn score(w: &Weights, ckpt: &Checkpoint, val: &[crate::batching::EncodedExample]) -> Result<Score> {
    let device = Device::Cpu;
    let vb = VarBuilder::from_tensors(w.clone(), DType::F32, &device);
    let model = AttentionClassifier::new(vb, &ckpt.config)?;
    let pred = crate::predict::predict(&model, val, &device)?;
    let gold: Vec<usize> = val.iter().map(|e| e.label as usize).collect();
    let r = Report::new(&ckpt.config.labels, &gold, &pred.predicted, None);
    Ok(Score {
        accuracy: r.accuracy,
        macro_f1: r.macro_f1,
        probs: pred.probs,
    })
}

/// Makes the soup of `job.ingredients` and writes it to `job.out` as a checkpoint.
pub fn run(job: &SoupJob) -> Result<SoupReport> {
    if job.ingredients.len() < 2 {
        return Err(invalid(format!(
            "a soup needs at least two checkpoints, got {}",
            job.ingredients.len()
        )));
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(i) = job.ingredients.iter().find(|i| same(i, &job.out)) {
        return Err(invalid(format!(
            "--out {} is one of the ingredients ({}); write the soup elsewhere",
            job.out.display(),
            i.display()
        )));
    }
    {
        let mut inputs: Vec<(&str, &Path)> = job
            .ingredients
            .iter()
            .map(|i| ("an ingredient", i.as_path()))
            .collect();
        if let Some(v) = &job.val {
            inputs.push(("the validation data", v));
        }
        crate::checkpoint::check_output(
            &job.out,
            crate::checkpoint::OutputKind::Checkpoint,
            job.force,
            &inputs,
        )?;
    }
    let mut ckpts: Vec<Checkpoint> = Vec::new();
    let mut weights: Vec<Weights> = Vec::new();
    for dir in &job.ingredients {
        let (c, w) = open_ingredient(dir, ckpts.first())?;
        if let Some(w0) = weights.first() {
            check_same_tensors(w0, &w, dir)?;
        }
        ckpts.push(c);
        weights.push(w);
    }
    let first = &ckpts[0];
    let (val_set, val_name) = validation_data(job, &ckpts)?;
    let val = encode(&first.encoder()?, &val_set, &first.config.labels)?;

    let mut scores = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let s = score(w, first, &val)?;
        if job.progress {
            eprintln!(
                "ingredient {}/{} {}: validation accuracy {:.4}, macro-F1 {:.4}",
                i + 1,
                weights.len(),
                job.ingredients[i].display(),
                s.accuracy,
                s.macro_f1
            );
        }
        scores.push(s);
    }

    let (members, soup, soup_score) = match job.recipe {
        Recipe::Uniform => {
            let all: Vec<&Weights> = weights.iter().collect();
            let soup = average(&all)?;
            let s = score(&soup, first, &val)?;
            ((0..weights.len()).collect::<Vec<_>>(), soup, s)
        }
        Recipe::Greedy => {
            // Best first (ties: command-line order).
            let mut order: Vec<usize> = (0..weights.len()).collect();
            order.sort_by(|&a, &b| scores[b].accuracy.total_cmp(&scores[a].accuracy));
            let mut members = vec![order[0]];
            let mut soup = weights[order[0]].clone();
            let mut best = scores[order[0]].clone();
            for &i in &order[1..] {
                let mut trial = members.clone();
                trial.push(i);
                let candidate = average(&trial.iter().map(|&j| &weights[j]).collect::<Vec<_>>())?;
                let s = score(&candidate, first, &val)?;
                let keep = s.accuracy >= best.accuracy;
                if job.progress {
                    eprintln!(
                        "with {}: validation accuracy {:.4} ({})",
                        job.ingredients[i].display(),
                        s.accuracy,
                        if keep { "kept" } else { "left out" }
                    );
                }
                if keep {
                    members = trial;
                    soup = candidate;
                    best = s;
                }
            }
            members.sort_unstable();
            (members, soup, best)
        }
    };

    let seconds: f64 = ckpts
        .iter()
        .filter_map(|c| c.training_summary())
        .filter_map(|s| s.pointer("/outcome/seconds").and_then(|v| v.as_f64()))
        .sum();
    let report = SoupReport {
        recipe: job.recipe,
        val_file: val_name.clone(),
        val_examples: val.len(),
        ingredients: job
            .ingredients
            .iter()
            .zip(&scores)
            .enumerate()
            .map(|(i, (p, s))| IngredientReport {
                checkpoint: p.display().to_string(),
                val_accuracy: s.accuracy,
                val_macro_f1: s.macro_f1,
                in_soup: members.contains(&i),
            })
            .collect(),
        val_accuracy: soup_score.accuracy,
        val_macro_f1: soup_score.macro_f1,
        ingredient_training_seconds: seconds,
    };
    if job.progress
        && report
            .ingredients
            .iter()
            .any(|i| i.val_accuracy > report.val_accuracy)
    {
        eprintln!(
            "WARNING: the soup ({:.4}) is less accurate on validation data than an ingredient; \
             were they fine-tuned from the same initialisation and seed?",
            report.val_accuracy
        );
    }
    let calibration = (&val_set, val_name.as_str(), soup_score.probs.as_slice());
    write_soup(job, &ckpts[members[0]], &soup, &report, calibration)?;
    Ok(report)
}

/// Writes the soup checkpoint: the ingredients' tokenizer and config, the averaged
/// weights, a `training.json` (the first member's, with the soup's validation figures,
/// the summed training time and the `soup` record) and the rejection rule calibrated on the
/// validation data (`val_set`, named `val_name`) from the soup's probabilities there, already
/// computed when the soup was scored.
fn write_soup(
    job: &SoupJob,
    base: &Checkpoint,
    soup: &Weights,
    report: &SoupReport,
    (val_set, val_name, probs): (&Dataset, &str, &[Vec<f32>]),
) -> Result<()> {
    let stage = crate::checkpoint::StagedDir::new(&job.out)?;
    let out = stage.path();
    write_atomic(&out.join(TOKENIZER_FILE), &base.tokenizer_json)?;
    write_json(&out.join(CONFIG_FILE), &base.config)?;
    crate::checkpoint::save_tensors(soup, out)?;
    let mut summary = base
        .training_summary()
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(o) = summary.as_object_mut() {
        if job.val.is_some() {
            o.insert("val_file".into(), serde_json::json!(val_name));
        }
        o.insert(
            "val_examples".into(),
            serde_json::json!(report.val_examples),
        );
        let outcome = o.entry("outcome").or_insert_with(|| serde_json::json!({}));
        if let Some(oc) = outcome.as_object_mut() {
            oc.insert("best_val_accuracy".into(), report.val_accuracy.into());
            oc.insert("best_val_macro_f1".into(), report.val_macro_f1.into());
            oc.insert("seconds".into(), report.ingredient_training_seconds.into());
            // The per-epoch log belongs to one ingredient, not to the soup.
            oc.remove("log");
        }
        o.insert(
            "soup".into(),
            serde_json::to_value(report).map_err(|e| invalid(e.to_string()))?,
        );
    }
    write_json(&out.join(TRAINING_FILE), &summary)?;
    let opts = rejection::CalibrationOptions::default();
    let gold = rejection::gold_indices(&base.config.labels, val_set, &opts.oos_label)?;
    let scored = rejection::Scored::new(&base.config.labels, probs, &gold, &opts.oos_label);
    let on = format!("{val_name} ({} examples)", val_set.examples.len());
    let cal = rejection::calibrate(&scored, &opts, &on);
    crate::calibrate::write_checkpoint(out, &cal)?;
    stage.commit()?;
    if job.progress {
        eprintln!("{}", rejection::summary_line(&cal));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, &[f32])]) -> Weights {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn average_is_the_element_wise_mean() {
        let a = weights(&[("x", &[1.0, 2.0]), ("y", &[0.0])]);
        let b = weights(&[("x", &[3.0, -2.0]), ("y", &[1.0])]);
        let c = weights(&[("x", &[2.0, 3.0]), ("y", &[2.0])]);
        let m = average(&[&a, &b, &c]).unwrap();
        assert_eq!(m["x"].to_vec1::<f32>().unwrap(), vec![2.0, 1.0]);
        assert_eq!(m["y"].to_vec1::<f32>().unwrap(), vec![1.0]);
        // One ingredient is itself.
        let one = average(&[&a]).unwrap();
        assert_eq!(one["x"].to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn mismatched_tensors_are_named() {
        let a = weights(&[("x", &[1.0, 2.0]), ("y", &[0.0])]);
        let p = Path::new("b");
        let shape = weights(&[("x", &[1.0, 2.0, 3.0]), ("y", &[0.0])]);
        let e = check_same_tensors(&a, &shape, p).unwrap_err().to_string();
        assert!(e.contains("tensor x is [3]"), "{e}");
        let missing = weights(&[("x", &[1.0, 2.0])]);
        let e = check_same_tensors(&a, &missing, p).unwrap_err().to_string();
        assert!(e.contains("has no tensor y"), "{e}");
        let extra = weights(&[("x", &[1.0, 2.0]), ("y", &[0.0]), ("z", &[0.0])]);
        let e = check_same_tensors(&a, &extra, p).unwrap_err().to_string();
        assert!(e.contains("has tensor z"), "{e}");
        assert!(check_same_tensors(&a, &a.clone(), p).is_ok());
        let mut f64s = a.clone();
        f64s.insert("y".into(), f64s["y"].to_dtype(DType::F64).unwrap());
        assert!(check_same_tensors(&a, &f64s, p).is_err());
    }
}
