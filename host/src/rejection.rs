//! Out-of-scope rejection on the host: calibrating the rule a bundle carries
//! ([`bundle::rejection::RejectionRule`]) on validation data, measuring it, and the
//! trade-off curve (threshold → in-scope accuracy vs out-of-scope recall).
//!
//! The rule rejects ("unknown") when the argmax is the out-of-scope class or the best
//! in-scope probability is below `threshold`. Metrics follow CLINC150 (Larson et al.
//! 2019): **in-scope accuracy** = share of in-scope queries answered with their correct
//! intent (a rejected in-scope query is wrong); **oos recall** = share of out-of-scope
//! queries predicted out-of-scope or rejected. Threshold 0 is "class only" (argmax).
//!
//! Scoring a model on data and saving the calibrated rule into a checkpoint (with the
//! curve's picture) is [`crate::calibrate`]'s; this module is the rule's arithmetic and its
//! files, below evaluation ([`crate::evaluate`]) and the pictures ([`crate::plot`]).
//!
//! Calibration ([`calibrate`], `docs/rejection.md`):
//! * data with out-of-scope examples, [`Criterion::WithinDrop`] (default): the threshold
//!   with the highest oos recall whose in-scope accuracy is at most `max_drop` points
//!   below the class-only accuracy (ties: the lowest threshold);
//!   [`Criterion::MaxSum`]: the threshold maximising in-scope accuracy + oos recall;
//! * data without out-of-scope examples: the highest threshold that rejects at most
//!   ⌈`false_rejection` × n⌉ of the n in-scope queries beyond those the class alone
//!   rejects.

use std::path::{Path, PathBuf};

use bundle::rejection::RejectionRule;
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::data::Dataset;
use crate::error::{HostError, Result};

/// The checkpoint file holding the calibrated rule, its validation figures and curve.
pub const REJECTION_FILE: &str = "rejection.json";
/// The trade-off picture written beside it.
pub const CURVE_FILE: &str = "rejection_curve.svg";
/// The out-of-scope label when nothing else is said (CLINC150's).
pub const DEFAULT_OOS_LABEL: &str = "oos";

/// How the threshold is chosen on data with out-of-scope examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Criterion {
    /// Highest oos recall losing at most `max_drop` points (percent) of in-scope accuracy
    /// against the class alone.
    WithinDrop { max_drop: f64 },
    /// Highest in-scope accuracy + oos recall.
    MaxSum,
}

/// Calibration settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationOptions {
    /// Gold label of out-of-scope examples (and the model's out-of-scope class, if it has one).
    pub oos_label: String,
    pub criterion: Criterion,
    /// Without out-of-scope examples: the share of in-scope queries the threshold may
    /// reject on top of what the class alone rejects.
    pub false_rejection: f64,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions {
            oos_label: DEFAULT_OOS_LABEL.into(),
            criterion: Criterion::WithinDrop { max_drop: 1.0 },
            false_rejection: 0.01,
        }
    }
}

/// In-scope accuracy / oos recall / in-scope rejection share of one rule on one data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RejectionMetrics {
    pub threshold: f32,
    pub in_scope_accuracy: f64,
    /// None when the data has no out-of-scope examples.
    pub oos_recall: Option<f64>,
    /// Share of in-scope examples rejected.
    pub in_scope_rejected: f64,
    /// Share of all examples answered right under the rule: in-scope ones accepted with
    /// their label, out-of-scope ones rejected (what `tools bench` counts).
    #[serde(default)]
    pub accuracy: f64,
}

/// Model outputs on labelled data, reduced to what the rule looks at.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Per example: rejection score (best in-scope probability; −1 when the argmax is the
    /// out-of-scope class, so every threshold ≥ 0 rejects it), whether the argmax is the
    /// gold label, whether the gold label is out-of-scope.
    rows: Vec<(f32, bool, bool)>,
    /// The model's out-of-scope class name, when it has one.
    pub oos_class: Option<String>,
    pub n_in: usize,
    pub n_oos: usize,
}

impl Scored {
    /// `probs[i]` are the class probabilities (order of `labels`) of example `i`, whose
    /// gold label is `gold[i]` (`None`: out-of-scope). The model's out-of-scope class is
    /// `oos_label` when it is one of `labels`.
    pub fn new(
        labels: &[String],
        probs: &[Vec<f32>],
        gold: &[Option<usize>],
        oos_label: &str,
    ) -> Scored {
        let oos = labels.iter().position(|l| l == oos_label);
        let rule = RejectionRule::new(0.0, oos.map(|_| oos_label.to_string()));
        let rows: Vec<(f32, bool, bool)> = probs
            .iter()
            .zip(gold)
            .map(|(p, g)| {
                let argmax = argmax(p);
                let score = if rule.rejects(p, oos) {
                    -1.0
                } else {
                    // Not rejected at 0: the argmax is an in-scope class, the best one.
                    p[argmax]
                };
                let correct = g.is_some_and(|g| g == argmax);
                (score, correct, g.is_none())
            })
            .collect();
        let n_oos = rows.iter().filter(|r| r.2).count();
        Scored {
            n_in: rows.len() - n_oos,
            n_oos,
            rows,
            oos_class: oos.map(|_| oos_label.to_string()),
        }
    }

    /// The metrics of threshold `t` (0 = class only).
    pub fn metrics(&self, t: f32) -> RejectionMetrics {
        let (mut in_ok, mut in_rej, mut oos_rej) = (0usize, 0usize, 0usize);
        for &(score, correct, is_oos) in &self.rows {
            let rejected = score.is_nan() || score < t;
            match (is_oos, rejected) {
                (true, true) => oos_rej += 1,
                (true, false) => {}
                (false, true) => in_rej += 1,
                (false, false) => in_ok += usize::from(correct),
            }
        }
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        RejectionMetrics {
            threshold: t,
            in_scope_accuracy: ratio(in_ok, self.n_in),
            oos_recall: (self.n_oos > 0).then(|| ratio(oos_rej, self.n_oos)),
            in_scope_rejected: ratio(in_rej, self.n_in),
            accuracy: ratio(in_ok + oos_rej, self.n_in + self.n_oos),
        }
    }

    /// Thresholds worth trying: 0, the midpoints between consecutive distinct scores (each
    /// changes the decision for at least one example) and one above them all.
    fn candidates(&self) -> Vec<f32> {
        let mut s: Vec<f32> = self
            .rows
            .iter()
            .map(|r| r.0)
            .filter(|x| *x >= 0.0)
            .collect();
        s.sort_by(f32::total_cmp);
        s.dedup();
        let mut c = vec![0.0f32];
        c.extend(s.windows(2).map(|w| (w[0] + w[1]) / 2.0));
        // And one above every score: reject everything.
        c.extend(s.last().map(|&x| x + 1e-4));
        c
    }

    /// The curve for the picture: thresholds 0, 0.01, …, 1 (plus `extra`), sorted.
    pub fn curve(&self, extra: Option<f32>) -> Vec<RejectionMetrics> {
        let mut t: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
        t.extend(extra);
        t.sort_by(f32::total_cmp);
        t.dedup();
        t.into_iter().map(|t| self.metrics(t)).collect()
    }
}

/// Index of the highest probability (first on ties; NaN never wins).
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in p.iter().enumerate() {
        if !x.is_nan() && (p[best].is_nan() || x > p[best]) {
            best = i;
        }
    }
    best
}

/// A calibrated rule with what it was measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calibration {
    pub rule: RejectionRule,
    /// Threshold 0 (argmax, the out-of-scope class alone).
    pub class_only: RejectionMetrics,
    pub with_rule: RejectionMetrics,
    pub examples: usize,
    pub curve: Vec<RejectionMetrics>,
}

/// Chooses the threshold on `scored` (see the module documentation).
pub fn calibrate(scored: &Scored, opts: &CalibrationOptions, calibrated_on: &str) -> Calibration {
    let base = scored.metrics(0.0);
    let cands = scored.candidates();
    let (threshold, criterion) = if scored.n_oos > 0 {
        match opts.criterion {
            Criterion::WithinDrop { max_drop } => {
                let floor = base.in_scope_accuracy - max_drop / 100.0 - 1e-12;
                let mut best = (0.0f32, base.oos_recall.unwrap_or(0.0));
                for &t in &cands {
                    let m = scored.metrics(t);
                    let r = m.oos_recall.unwrap_or(0.0);
                    if m.in_scope_accuracy >= floor && r > best.1 {
                        best = (t, r);
                    }
                }
                (
                    best.0,
                    format!("max oos recall, in-scope accuracy at most {max_drop} points below the class alone"),
                )
            }
            Criterion::MaxSum => {
                let sum = |m: &RejectionMetrics| m.in_scope_accuracy + m.oos_recall.unwrap_or(0.0);
                let mut best = (0.0f32, sum(&base));
                for &t in &cands {
                    let s = sum(&scored.metrics(t));
                    if s > best.1 + 1e-12 {
                        best = (t, s);
                    }
                }
                (best.0, "max in-scope accuracy + oos recall".to_string())
            }
        }
    } else {
        // ⌈rate × n⌉ examples, so a small validation set still allows one.
        let n = scored.n_in.max(1) as f64;
        let allowed = base.in_scope_rejected + (opts.false_rejection * n - 1e-9).ceil() / n + 1e-12;
        let mut best = 0.0f32;
        for &t in &cands {
            if scored.metrics(t).in_scope_rejected <= allowed {
                best = best.max(t);
            }
        }
        (
            best,
            format!(
                "no out-of-scope examples: rejects at most {} of in-scope queries beyond the class alone",
                opts.false_rejection
            ),
        )
    };
    let with_rule = scored.metrics(threshold);
    let mut rule = RejectionRule::new(threshold, scored.oos_class.clone());
    rule.criterion = criterion;
    rule.calibrated_on = calibrated_on.to_string();
    rule.val_in_scope_accuracy = Some(round4(with_rule.in_scope_accuracy));
    rule.val_oos_recall = with_rule.oos_recall.map(round4);
    rule.val_in_scope_rejected = Some(round4(with_rule.in_scope_rejected));
    Calibration {
        rule,
        class_only: base,
        with_rule,
        examples: scored.rows.len(),
        curve: scored.curve(Some(threshold)),
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The gold label of each example of `data` as an index into `labels`, `None` for
/// `oos_label`; any other label is an error naming the example.
pub fn gold_indices(
    labels: &[String],
    data: &Dataset,
    oos_label: &str,
) -> Result<Vec<Option<usize>>> {
    let mut gold = Vec::with_capacity(data.examples.len());
    for (i, e) in data.examples.iter().enumerate() {
        if e.label == oos_label {
            gold.push(None);
        } else {
            match labels.iter().position(|l| *l == e.label) {
                Some(g) => gold.push(Some(g)),
                None => {
                    return Err(HostError::Invalid(format!(
                        "{}: example {} has label {:?}, which the model does not know (and it \
                         is not the out-of-scope label {oos_label:?})",
                        data.path.display(),
                        i + 1,
                        e.label
                    )))
                }
            }
        }
    }
    Ok(gold)
}

/// The rule saved in checkpoint `dir`, if any.
pub fn read_checkpoint_rule(dir: &Path) -> Result<Option<RejectionRule>> {
    let path = dir.join(REJECTION_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(HostError::io(&path, e)),
    };
    // Only the rule matters here; the figures beside it may come from another version.
    let bad = |e: String| HostError::Invalid(format!("{}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let rule = value.get("rule").ok_or_else(|| bad("no \"rule\"".into()))?;
    let rule: RejectionRule =
        serde_json::from_value(rule.clone()).map_err(|e| bad(format!("rule: {e}")))?;
    Ok(Some(rule))
}

/// Writes `rule` into the manifest of the bundle in `dir` (the manifest is not covered
/// by its own sha256 list; a signed bundle is refused, its signature would no longer
/// match).
pub fn write_bundle_rule(dir: &Path, rule: &RejectionRule) -> Result<PathBuf> {
    if dir.join("manifest.sig").exists() {
        return Err(HostError::Invalid(format!(
            "{} is signed: changing its manifest would break the signature; calibrate the \
             checkpoint and export again (tools calibrate --model CKPT, tools export --sign)",
            dir.display()
        )));
    }
    let path = dir.join(bundle::MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| HostError::io(&path, e))?;
    let mut manifest: bundle::Manifest = serde_json::from_str(&text)
        .map_err(|e| HostError::Invalid(format!("{}: {e}", path.display())))?;
    rule.check(&manifest.labels)
        .map_err(|p| HostError::Invalid(format!("rejection rule: {p}")))?;
    manifest.rejection = Some(rule.clone());
    let bytes = serde_json::to_vec(&manifest).map_err(|e| HostError::Invalid(e.to_string()))?;
    write_atomic(&path, &bytes)?;
    // Read it back through the device's own checks.
    bundle::Bundle::read(dir)?.verify()?;
    Ok(path)
}

/// One line: threshold and validation figures.
pub fn summary_line(cal: &Calibration) -> String {
    let m = &cal.with_rule;
    let mut s = format!(
        "rejection threshold {:.4}: in-scope accuracy {:.4} (class alone {:.4})",
        cal.rule.threshold, m.in_scope_accuracy, cal.class_only.in_scope_accuracy
    );
    if let (Some(r), Some(r0)) = (m.oos_recall, cal.class_only.oos_recall) {
        s += &format!(", oos recall {r:.4} (class alone {r0:.4})");
    }
    s += &format!(", in-scope rejected {:.4}", m.in_scope_rejected);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Two in-scope classes a, b and an out-of-scope class: in-scope examples are
    /// confident (best ≥ 0.7, one wrong), out-of-scope ones are not (best ≤ 0.55), one
    /// out-of-scope example is predicted oos outright.
    fn synthetic() -> Scored {
        let l = labels(&["a", "b", "oos"]);
        let probs = vec![
            vec![0.9, 0.05, 0.05],  // a, right
            vec![0.8, 0.1, 0.1],    // a, right
            vec![0.1, 0.7, 0.2],    // b, right
            vec![0.75, 0.2, 0.05],  // gold b, wrong
            vec![0.5, 0.3, 0.2],    // oos, low confidence
            vec![0.2, 0.55, 0.25],  // oos, low confidence
            vec![0.1, 0.1, 0.8],    // oos, predicted oos
            vec![0.95, 0.03, 0.02], // oos, confidently wrong
        ];
        let gold = vec![Some(0), Some(0), Some(1), Some(1), None, None, None, None];
        Scored::new(&l, &probs, &gold, "oos")
    }

    #[test]
    fn metrics_follow_the_clinc_definitions() {
        let s = synthetic();
        assert_eq!((s.n_in, s.n_oos), (4, 4));
        let m0 = s.metrics(0.0);
        assert!((m0.in_scope_accuracy - 0.75).abs() < 1e-12);
        assert!((m0.oos_recall.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(m0.in_scope_rejected, 0.0);
        assert!((m0.accuracy - 4.0 / 8.0).abs() < 1e-12);
        let m = s.metrics(0.6);
        assert!((m.in_scope_accuracy - 0.75).abs() < 1e-12);
        assert!((m.oos_recall.unwrap() - 0.75).abs() < 1e-12);
        assert!((m.accuracy - 6.0 / 8.0).abs() < 1e-12);
        let all = s.metrics(1.01);
        assert_eq!(all.in_scope_accuracy, 0.0);
        assert_eq!(all.oos_recall, Some(1.0));
        assert_eq!(all.in_scope_rejected, 1.0);
    }

    #[test]
    fn within_drop_finds_the_known_threshold() {
        let s = synthetic();
        // Between 0.55 (highest oos score below the in-scope ones) and 0.7 (lowest
        // in-scope score): oos recall 0.75 at no in-scope cost. The midpoint is 0.625.
        let cal = calibrate(&s, &CalibrationOptions::default(), "synthetic");
        assert!((cal.rule.threshold - 0.625).abs() < 1e-6, "{:?}", cal.rule);
        assert_eq!(cal.rule.oos_label.as_deref(), Some("oos"));
        assert_eq!(cal.with_rule.oos_recall, Some(0.75));
        assert_eq!(cal.rule.val_in_scope_accuracy, Some(0.75));
        // Allowing a 25-point drop buys rejecting the b example at 0.7 too, which
        // rejects no more oos (the 0.95 one stays): the lowest best threshold stays.
        let loose = CalibrationOptions {
            criterion: Criterion::WithinDrop { max_drop: 25.0 },
            ..Default::default()
        };
        assert!((calibrate(&s, &loose, "").rule.threshold - 0.625).abs() < 1e-6);
        // Allowing 100 points: rejecting everything gives recall 1.0.
        let all = CalibrationOptions {
            criterion: Criterion::WithinDrop { max_drop: 100.0 },
            ..Default::default()
        };
        let c = calibrate(&s, &all, "");
        assert_eq!(c.with_rule.oos_recall, Some(1.0));
        assert!(c.rule.threshold > 0.95 && c.rule.threshold < 0.951);
        let sum = CalibrationOptions {
            criterion: Criterion::MaxSum,
            ..Default::default()
        };
        assert!((calibrate(&s, &sum, "").rule.threshold - 0.625).abs() < 1e-6);
    }

    #[test]
    fn zero_drop_keeps_in_scope_accuracy() {
        // In-scope scores interleave with oos scores: with no drop allowed, the threshold
        // must stay below the lowest correct in-scope score (0.6).
        let l = labels(&["a", "b", "oos"]);
        let probs = vec![
            vec![0.6, 0.3, 0.1],
            vec![0.9, 0.05, 0.05],
            vec![0.5, 0.3, 0.2],
            vec![0.65, 0.3, 0.05],
        ];
        let gold = vec![Some(0), Some(0), None, None];
        let s = Scored::new(&l, &probs, &gold, "oos");
        let zero = CalibrationOptions {
            criterion: Criterion::WithinDrop { max_drop: 0.0 },
            ..Default::default()
        };
        let c = calibrate(&s, &zero, "");
        assert!((c.rule.threshold - 0.55).abs() < 1e-6, "{:?}", c.rule);
        assert_eq!(c.with_rule.in_scope_accuracy, 1.0);
        assert_eq!(c.with_rule.oos_recall, Some(0.5));
    }

    #[test]
    fn without_oos_examples_the_false_rejection_rate_decides() {
        // 100 in-scope examples with best probabilities 0.01..=1.00, all right: a 5%
        // false-rejection budget puts the threshold between the 5th and 6th lowest.
        let l = labels(&["a", "b"]);
        let probs: Vec<Vec<f32>> = (1..=100)
            .map(|i| {
                let p = 0.5 + i as f32 / 200.0;
                vec![p, 1.0 - p]
            })
            .collect();
        let gold = vec![Some(0); 100];
        let s = Scored::new(&l, &probs, &gold, "oos");
        let opts = CalibrationOptions {
            false_rejection: 0.05,
            ..Default::default()
        };
        let c = calibrate(&s, &opts, "");
        assert_eq!(c.rule.oos_label, None);
        assert!((c.with_rule.in_scope_rejected - 0.05).abs() < 1e-12);
        let expect = 0.5 + 5.5 / 200.0;
        assert!(
            (c.rule.threshold - expect).abs() < 1e-5,
            "{}",
            c.rule.threshold
        );
        assert_eq!(c.with_rule.oos_recall, None);
        // A rate below one example still allows one (⌈0.001 × 100⌉ = 1).
        let tiny = CalibrationOptions {
            false_rejection: 0.001,
            ..Default::default()
        };
        let c = calibrate(&s, &tiny, "");
        assert!((c.with_rule.in_scope_rejected - 0.01).abs() < 1e-12);
    }

    #[test]
    fn scored_rule_agrees_with_the_device_rule() {
        let s = synthetic();
        let l = labels(&["a", "b", "oos"]);
        let rule = RejectionRule::new(0.6, Some("oos".into()));
        let o = rule.oos_index(&l);
        let probs = [[0.5f32, 0.3, 0.2], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8]];
        for p in probs {
            let scored = Scored::new(&l, &[p.to_vec()], &[None], "oos");
            assert_eq!(
                scored.metrics(0.6).oos_recall == Some(1.0),
                rule.rejects(&p, o)
            );
        }
        assert_eq!(s.curve(Some(0.625)).len(), 102);
    }
}
