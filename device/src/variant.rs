//! Choosing a model variant on the board itself.
//!
//! A bundle may carry several forms of the same model (`float`, `weights-int8`,
//! `int8-compute`, see [`bundle::Variant`] and [`bundle::VariantEntry`]); which one is fastest is a property of
//! the CPU (int8 compute pays only with SDOT, fp16 only with native FP16), so the device
//! measures instead of guessing:
//!
//! ```text
//! candidates   every variant of the manifest, plus `NAME+f16` (tract's f32_to_f16
//!              transform) for float-compute variants where the CPU has native fp16,
//!              and `weights-int8+int8-act` (its dense layers in int8, the activations
//!              quantised per token) where the device has int8 tiles
//! check        each candidate must give finite logits and the manifest's reference label
//!              for every reference text (the logit difference is reported); without
//!              reference texts (a float bundle), on [`PROBE_TEXTS`], the plain variants
//!              only finite logits and a `+f16` / `+int8-act` form its plain variant's
//!              labels as measured here (a transform is never taken unchecked)
//! time         warm-up, then the median of timed single-text runs over the same texts; a
//!              failed answer disqualifies the candidate
//! choose       the fastest candidate that agrees; a `+f16` / `+int8-act` form only when it
//!              beats the fastest plain variant by more than [`TRANSFORM_MARGIN`]
//! routes       each candidate's plans are made and raced once (`Engine::prepare`); the
//!              routes are recorded, so a later load of the choice does not race again
//! record       `variant-choice.json` next to the manifest (atomic write); a read-only
//!              bundle directory is reported and the choice is simply remade next time
//! ```
//!
//! The recorded choice carries a fingerprint of the bundle's files, so a replaced bundle
//! is re-tuned.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::classify::Classifier;
use crate::engine::{native_fp16, Engine, EngineOptions};
use crate::error::{DeviceError, Result};
use crate::tokenize::TextEncoder;
use bundle::atomic::write_file_atomic;
use bundle::{sha256_hex, BundleError, Variant, VerifiedBundle};

/// The tuning record written next to the manifest.
pub const CHOICE_FILE: &str = "variant-choice.json";
/// Suffix of a candidate run through tract's `f32_to_f16` transform.
pub const F16_SUFFIX: &str = "+f16";
/// Suffix of a weights-int8 candidate whose dense layers quantise their activations per
/// token and multiply in int8 ([`crate::fused_ops::dense_dynamic_i8`]).
pub const INT8_ACTIVATIONS_SUFFIX: &str = "+int8-act";
/// Whether the variant called `name` computes in f32 (so the f16 transform applies to it).
fn computes_in_f32(name: &str) -> bool {
    Variant::parse(name).is_ok_and(Variant::computes_in_f32)
}

/// A variant name plus how it is computed: as the manifest says, through tract's f16
/// transform (`weights-int8+f16`), or with int8 activations (`weights-int8+int8-act`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub variant: String,
    pub f16: bool,
    #[serde(default)]
    pub int8_activations: bool,
}

impl Choice {
    /// The variant as its manifest defines it.
    pub fn plain(variant: impl Into<String>) -> Choice {
        Choice {
            variant: variant.into(),
            f16: false,
            int8_activations: false,
        }
    }

    /// Parses `NAME`, `NAME+f16` or `NAME+int8-act`.
    pub fn parse(s: &str) -> Choice {
        if let Some(v) = s.strip_suffix(F16_SUFFIX) {
            return Choice {
                f16: true,
                ..Choice::plain(v)
            };
        }
        if let Some(v) = s.strip_suffix(INT8_ACTIVATIONS_SUFFIX) {
            return Choice {
                int8_activations: true,
                ..Choice::plain(v)
            };
        }
        Choice::plain(s)
    }

    pub fn label(&self) -> String {
        if self.f16 {
            format!("{}{F16_SUFFIX}", self.variant)
        } else if self.int8_activations {
            format!("{}{INT8_ACTIVATIONS_SUFFIX}", self.variant)
        } else {
            self.variant.clone()
        }
    }

    /// Why this CPU cannot run the choice, or `None` when it can. tract's f16 transform
    /// needs native fp16 arithmetic (without it every answer is NaN), and applies only to
    /// variants that compute in f32; int8 activations need the device's int8 tiles and
    /// int8 weights to multiply (the weights-int8 variant). Tuning skips such candidates
    /// for the same reasons.
    pub fn unsupported(&self) -> Option<String> {
        if self.int8_activations {
            if self.f16 {
                return Some(format!(
                    "{F16_SUFFIX} and {INT8_ACTIVATIONS_SUFFIX} do not combine"
                ));
            }
            if Variant::parse(&self.variant) != Ok(Variant::WeightsInt8) {
                return Some(format!(
                    "{INT8_ACTIVATIONS_SUFFIX} applies only to {}",
                    Variant::WeightsInt8.name()
                ));
            }
            if !crate::fused_ops::dense_dynamic_i8::available() {
                return Some(
                    "this CPU has no int8 tiles of the device's (aarch64, or x86-64 with \
                     AVX-512 VNNI)"
                        .into(),
                );
            }
            return None;
        }
        if !self.f16 {
            return None;
        }
        if !computes_in_f32(&self.variant) {
            let float_compute: Vec<&str> = Variant::ALL
                .into_iter()
                .filter(|v| v.computes_in_f32())
                .map(Variant::name)
                .collect();
            return Some(format!(
                "{F16_SUFFIX} applies only to the f32-compute variants ({})",
                float_compute.join(", ")
            ));
        }
        if !native_fp16() {
            return Some("this CPU has no native fp16".into());
        }
        None
    }

    /// `base` (the program's engine options) with this choice's f16 transform or int8
    /// activations.
    fn options(&self, base: &EngineOptions) -> EngineOptions {
        let mut options = base.clone();
        options.f16 = self.f16;
        options.fusion.int8_activations = self.int8_activations;
        options
    }
}

/// How much faster than the fastest plain variant a `+f16` or `+int8-act` form must be to be
/// chosen: its answers are not those the variant was validated with at export (they move by
/// its roundings), so it is taken for a clear gain only, not for a difference within the
/// timing's noise.
pub const TRANSFORM_MARGIN: f64 = 0.10;

/// The choice among timed candidates (`timings[i]` of `cands[i]`): the fastest plain
/// variant that agrees, unless a transformed one that agrees is faster by more than
/// [`TRANSFORM_MARGIN`] (then the fastest of those); `None` when none agrees.
pub fn choose(cands: &[Choice], timings: &[Timing]) -> Option<Choice> {
    let fastest = |transformed: bool| {
        cands
            .iter()
            .zip(timings)
            .filter(|(c, t)| {
                (c.f16 || c.int8_activations) == transformed && t.agrees && t.median_us.is_finite()
            })
            .min_by(|a, b| a.1.median_us.total_cmp(&b.1.median_us))
    };
    match (fastest(false), fastest(true)) {
        (Some(p), Some(t)) if t.1.median_us < p.1.median_us * (1.0 - TRANSFORM_MARGIN) => {
            Some(t.0.clone())
        }
        (Some(p), _) => Some(p.0.clone()),
        (None, t) => t.map(|t| t.0.clone()),
    }
}

/// What a bundle without reference texts is checked and timed on: short requests of the
/// kinds the product serves, in English and Chinese.
pub const PROBE_TEXTS: [&str; 4] = [
    "turn on the lights in the kitchen please",
    "what will the weather be like tomorrow morning",
    "set a timer for ten minutes",
    "把客厅的灯关掉",
];

/// Tuning effort.
#[derive(Debug, Clone, Copy)]
pub struct TuneOptions {
    /// Untimed runs per candidate before timing.
    pub warmup: usize,
    /// Timed passes over the reference texts per candidate.
    pub runs: usize,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions { warmup: 3, runs: 5 }
    }
}

/// One candidate's measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub candidate: String,
    /// Median wall time of one single-text classification, microseconds.
    pub median_us: f64,
    /// Time to load the variant and make its plans, milliseconds.
    pub load_ms: f64,
    /// Every reference text got the manifest's label.
    pub agrees: bool,
    /// Reference texts checked.
    pub checked: usize,
    /// Largest |logit - reference logit| over the reference texts.
    pub max_logit_diff: f32,
    /// Why a candidate was skipped or failed, if it was.
    #[serde(default)]
    pub note: String,
    /// Each length bucket's route on this CPU, decided while tuning (`(bucket length,
    /// shortest length its fixed plan serves)`): loading the chosen variant later takes
    /// them as they are instead of racing the plans again ([`crate::options::PlanOptions::routes`]).
    #[serde(default)]
    pub routes: Vec<(usize, usize)>,
}

/// What tuning found (also the content of [`CHOICE_FILE`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneReport {
    /// sha256 over the bundle's file hashes: a different bundle means a new tuning.
    pub fingerprint: String,
    pub chosen: Choice,
    pub timings: Vec<Timing>,
    /// Candidates not tried, with the reason.
    pub skipped: Vec<String>,
    pub native_fp16: bool,
    pub arch: String,
    pub created: String,
}

impl TuneReport {
    /// The plan routes measured for `choice`, if it was timed.
    pub fn routes_of(&self, choice: &Choice) -> Option<Vec<(usize, usize)>> {
        let t = self
            .timings
            .iter()
            .find(|t| t.candidate == choice.label())?;
        (!t.routes.is_empty()).then(|| t.routes.clone())
    }
}

/// How the variant in use was decided.
#[derive(Debug, Clone, Serialize)]
pub struct Selection {
    pub choice: Choice,
    /// `override`, `recorded`, `tuned` or `only-variant`.
    pub source: String,
    /// The tuning, when one was run or read.
    pub report: Option<TuneReport>,
    /// Where the choice was recorded, or why it could not be.
    pub record: String,
}

/// Fingerprint of a bundle: sha256 over its manifest's file hashes.
pub fn fingerprint(bundle: &VerifiedBundle) -> String {
    let joined: String = bundle
        .manifest()
        .files
        .iter()
        .map(|(k, v)| format!("{k}={v};"))
        .collect();
    sha256_hex(joined.as_bytes())
}

/// Every candidate of this bundle on this CPU, and the ones skipped with the reason.
pub fn candidates(bundle: &VerifiedBundle) -> (Vec<Choice>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for v in bundle.manifest().variant_list() {
        out.push(Choice::plain(v.name.clone()));
        let mut transformed = Vec::new();
        if computes_in_f32(&v.name) {
            transformed.push(Choice {
                f16: true,
                ..Choice::plain(v.name.clone())
            });
        }
        if Variant::parse(&v.name) == Ok(Variant::WeightsInt8) {
            transformed.push(Choice {
                int8_activations: true,
                ..Choice::plain(v.name.clone())
            });
        }
        for c in transformed {
            match c.unsupported() {
                None => out.push(c),
                Some(why) => skipped.push(format!("{}: {why}", c.label())),
            }
        }
    }
    (out, skipped)
}

/// Loads the classifier for `choice` from a verified bundle; a choice this CPU cannot run
/// ([`Choice::unsupported`]) is refused.
pub fn load(bundle: &VerifiedBundle, choice: &Choice) -> Result<Classifier> {
    load_with(bundle, choice, &EngineOptions::default())
}

/// As [`load`], the engine built with `engine` (its `f16` is the choice's). When `device
/// tune` recorded this choice for these files, the plan routes it measured are used
/// (unless `engine` brings its own), so loading does not race the plans again.
pub fn load_with(
    bundle: &VerifiedBundle,
    choice: &Choice,
    engine: &EngineOptions,
) -> Result<Classifier> {
    let mut engine = engine.clone();
    if engine.plans.routes.is_empty() {
        engine.plans.routes = recorded(bundle)
            .and_then(|r| r.routes_of(choice))
            .unwrap_or_default();
    }
    load_measuring(bundle, choice, &engine)
}

/// [`load_with`] without a recorded tuning's routes (tuning measures them afresh).
fn load_measuring(
    bundle: &VerifiedBundle,
    choice: &Choice,
    engine: &EngineOptions,
) -> Result<Classifier> {
    check_supported(bundle, choice)?;
    let encoder = TextEncoder::from_bundle(bundle)?;
    let engine = Engine::load_variant(bundle, &choice.variant, choice.options(engine))?;
    Ok(
        Classifier::new(encoder, engine, bundle.manifest().labels.clone())?
            .with_rejection(bundle.manifest().rejection.clone()),
    )
}

fn check_supported(bundle: &VerifiedBundle, choice: &Choice) -> Result<()> {
    match choice.unsupported() {
        None => Ok(()),
        Some(why) => Err(DeviceError::Model {
            origin: format!("bundle {}", bundle.dir().display()),
            problem: format!(
                "variant {} cannot run here: {why} (its answers would be NaN); use {}",
                choice.label(),
                choice.variant
            ),
        }),
    }
}

/// Measures every candidate and returns the report (choice = fastest that agrees).
pub fn tune(bundle: &VerifiedBundle, options: TuneOptions) -> Result<TuneReport> {
    tune_with(bundle, options, &EngineOptions::default())
}

/// As [`tune`], each candidate's engine built with `engine` (its `f16` the candidate's).
pub fn tune_with(
    bundle: &VerifiedBundle,
    options: TuneOptions,
    engine: &EngineOptions,
) -> Result<TuneReport> {
    let (cands, skipped) = candidates(bundle);
    let reference = &bundle.manifest().reference;
    // The texts every candidate is checked and timed on: the manifest's reference texts,
    // or, in a bundle without them, a few of the device's own.
    let texts: Vec<&str> = if reference.is_empty() {
        PROBE_TEXTS.to_vec()
    } else {
        reference.iter().map(|r| r.text.as_str()).collect()
    };
    // Each plain variant's logits on `texts`, measured here: what its `+f16` and
    // `+int8-act` forms are held to where the manifest has no reference for them.
    let mut plain_logits: std::collections::HashMap<String, Vec<Vec<f32>>> = Default::default();
    let mut timings = Vec::new();
    for c in &cands {
        let started = Instant::now();
        let loaded =
            load_measuring(bundle, c, engine).and_then(|cl| Ok((cl.engine().prepare()?, cl)));
        let (routes, classifier) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                timings.push(Timing {
                    candidate: c.label(),
                    median_us: f64::INFINITY,
                    load_ms: 0.0,
                    agrees: false,
                    checked: 0,
                    max_logit_diff: f32::INFINITY,
                    note: format!("cannot load: {e}"),
                    routes: Vec::new(),
                });
                continue;
            }
        };
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let transformed = c.f16 || c.int8_activations;
        let (mut agrees, mut checked, mut max_diff) = (true, 0usize, 0f32);
        let mut note = String::new();
        let mut logits_seen = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let expected: Option<(usize, &[f32])> = match reference.get(i) {
                Some(r) => r
                    .outputs
                    .get(&c.variant)
                    .map(|o| (o.label_index, o.logits.as_slice())),
                None => None,
            }
            .or_else(|| {
                let plain = plain_logits.get(&c.variant)?.get(i)?;
                transformed.then(|| (argmax(plain), plain.as_slice()))
            });
            let logits = match logits_of(&classifier, text) {
                Ok(l) => l,
                Err(e) => {
                    agrees = false;
                    note = format!("{text:?}: {e}");
                    continue;
                }
            };
            if logits.iter().any(|v| !v.is_finite()) {
                agrees = false;
                max_diff = f32::NAN;
                note = format!("{text:?}: non-finite logits");
            } else if let Some((label, want)) = expected {
                checked += 1;
                let diff = crate::classify::max_abs_diff(&logits, want);
                max_diff = if diff.is_nan() || max_diff.is_nan() {
                    f32::NAN
                } else {
                    max_diff.max(diff)
                };
                let best = argmax(&logits);
                if best != label {
                    agrees = false;
                    note = format!("{text:?}: label {best}, reference {label}");
                }
            }
            logits_seen.push(logits);
        }
        if !transformed && logits_seen.len() == texts.len() {
            plain_logits.insert(c.variant.clone(), logits_seen);
        }
        if checked == 0 && note.is_empty() {
            if transformed {
                // Nothing to hold it to: a transform is only taken when it is checked.
                agrees = false;
                note = format!("no reference outputs of {} to check it against", c.variant);
            } else {
                note =
                    "no reference outputs in the manifest: only checked for finite logits".into();
            }
        }
        for t in texts
            .iter()
            .cycle()
            .take(options.warmup.max(1) * texts.len())
        {
            let _ = classifier.classify(t);
        }
        let mut samples = Vec::new();
        for _ in 0..options.runs.max(1) {
            for t in &texts {
                let s = Instant::now();
                let answer = classifier.classify(t);
                samples.push(s.elapsed().as_secs_f64() * 1e6);
                if let Err(e) = answer {
                    agrees = false;
                    note = format!("{t:?}: {e}");
                }
            }
        }
        samples.sort_by(f64::total_cmp);
        timings.push(Timing {
            candidate: c.label(),
            median_us: samples[samples.len() / 2],
            load_ms,
            agrees,
            checked,
            max_logit_diff: max_diff,
            note,
            routes,
        });
    }
    let chosen = choose(&cands, &timings).ok_or_else(|| DeviceError::Model {
        origin: format!("bundle {}", bundle.dir().display()),
        problem: format!(
            "no variant agrees with the manifest's reference outputs: {}",
            timings
                .iter()
                .map(|t| format!("{} ({})", t.candidate, t.note))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    })?;
    Ok(TuneReport {
        fingerprint: fingerprint(bundle),
        chosen,
        timings,
        skipped,
        native_fp16: native_fp16(),
        arch: std::env::consts::ARCH.into(),
        created: bundle::now_rfc3339(),
    })
}

fn logits_of(classifier: &Classifier, text: &str) -> Result<Vec<f32>> {
    let encoder = classifier.encoder();
    let enc = encoder.encode(text)?;
    let batch = encoder.batch(std::slice::from_ref(&enc));
    Ok(classifier.engine().run_batch(&batch)?.0)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

/// Path of the tuning record of the bundle in `dir`.
pub fn choice_path(dir: &Path) -> PathBuf {
    dir.join(CHOICE_FILE)
}

/// The recorded tuning of this bundle, if there is one and it belongs to these files.
pub fn recorded(bundle: &VerifiedBundle) -> Option<TuneReport> {
    let text = std::fs::read(choice_path(bundle.dir())).ok()?;
    let report: TuneReport = serde_json::from_slice(&text).ok()?;
    // A record made on another CPU may name a variant this one cannot run: re-tune.
    (report.fingerprint == fingerprint(bundle) && report.chosen.unsupported().is_none())
        .then_some(report)
}

/// Writes the report next to the manifest, atomically. Returns where, or why not (a
/// read-only bundle directory is not an error: the choice is remade on the next load).
pub fn record(bundle: &VerifiedBundle, report: &TuneReport) -> String {
    let path = choice_path(bundle.dir());
    let result = serde_json::to_vec_pretty(report)
        .map_err(std::io::Error::other)
        .and_then(|json| write_file_atomic(&path, &json));
    match result {
        Ok(()) => format!("recorded in {}", path.display()),
        Err(e) => {
            format!(
                "not recorded ({}: {e}); the bundle directory is not writable, so the \
                 variant will be measured again on the next load",
                path.display()
            )
        }
    }
}

/// The variant to run without measuring anything: `override_name` if given (checked
/// against the bundle), else a recorded tuning of these exact files (`device tune`),
/// else the manifest's default. For a long-running service, whose start should not
/// load every variant just to time them.
pub fn preferred(bundle: &VerifiedBundle, override_name: Option<&str>) -> Result<Choice> {
    if override_name.is_some() {
        return select(bundle, override_name, TuneOptions::default()).map(|s| s.choice);
    }
    if let Some(report) = recorded(bundle) {
        return Ok(report.chosen);
    }
    Ok(Choice::parse(&bundle.manifest().default_variant_name()))
}

/// Decides the variant to run: `override_name` if given (checked against the bundle),
/// else a recorded tuning of these exact files, else the only candidate, else a fresh
/// tuning (recorded next to the bundle when possible).
pub fn select(
    bundle: &VerifiedBundle,
    override_name: Option<&str>,
    options: TuneOptions,
) -> Result<Selection> {
    select_with(bundle, override_name, options, &EngineOptions::default())
}

/// As [`select`], a fresh tuning timing engines built with `engine` ([`tune_with`]).
pub fn select_with(
    bundle: &VerifiedBundle,
    override_name: Option<&str>,
    options: TuneOptions,
    engine: &EngineOptions,
) -> Result<Selection> {
    if let Some(name) = override_name {
        let choice = Choice::parse(name);
        bundle
            .manifest()
            .variant(&choice.variant)
            .map_err(|problem| BundleError::InvalidManifest {
                dir: bundle.dir().to_path_buf(),
                field: "variants",
                problem,
            })?;
        check_supported(bundle, &choice)?;
        return Ok(Selection {
            choice,
            source: "override".into(),
            report: None,
            record: String::new(),
        });
    }
    if let Some(report) = recorded(bundle) {
        return Ok(Selection {
            choice: report.chosen.clone(),
            source: "recorded".into(),
            record: format!("read from {}", choice_path(bundle.dir()).display()),
            report: Some(report),
        });
    }
    let (cands, _) = candidates(bundle);
    if cands.len() == 1 {
        return Ok(Selection {
            choice: cands[0].clone(),
            source: "only-variant".into(),
            report: None,
            record: String::new(),
        });
    }
    let report = tune_with(bundle, options, engine)?;
    let record = record(bundle, &report);
    Ok(Selection {
        choice: report.chosen.clone(),
        source: "tuned".into(),
        report: Some(report),
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(candidate: &str, median_us: f64, agrees: bool) -> Timing {
        Timing {
            candidate: candidate.into(),
            median_us,
            load_ms: 0.0,
            agrees,
            checked: 1,
            max_logit_diff: 0.0,
            note: String::new(),
            routes: Vec::new(),
        }
    }

    fn pick(t: &[(&str, f64, bool)]) -> Option<String> {
        let cands: Vec<Choice> = t.iter().map(|(c, _, _)| Choice::parse(c)).collect();
        let timings: Vec<Timing> = t.iter().map(|&(c, us, ok)| timing(c, us, ok)).collect();
        choose(&cands, &timings).map(|c| c.label())
    }

    /// The fastest plain variant that agrees; a transform only for a clear gain, or when no
    /// plain variant agrees; nothing when none does.
    #[test]
    fn transforms_are_chosen_for_a_clear_gain_only() {
        let base = [("weights-int8", 300.0, true), ("int8-compute", 100.0, true)];
        let with = |t: (&'static str, f64, bool)| {
            let mut v = base.to_vec();
            v.push(t);
            pick(&v)
        };
        assert_eq!(pick(&base).as_deref(), Some("int8-compute"));
        // 5 % faster: within the margin, the validated variant stays.
        assert_eq!(
            with(("weights-int8+int8-act", 95.0, true)).as_deref(),
            Some("int8-compute")
        );
        // 20 % faster: taken, unless it disagrees.
        assert_eq!(
            with(("weights-int8+int8-act", 80.0, true)).as_deref(),
            Some("weights-int8+int8-act")
        );
        assert_eq!(
            with(("weights-int8+int8-act", 80.0, false)).as_deref(),
            Some("int8-compute")
        );
        assert_eq!(
            pick(&[("float", 100.0, false), ("float+f16", 150.0, true)]).as_deref(),
            Some("float+f16")
        );
        assert_eq!(pick(&[("float", f64::INFINITY, true)]), None);
        assert_eq!(pick(&[("float", 100.0, false)]), None);
    }
}
