//! `tools calibrate` as a library call: scores a model (checkpoint or bundle, through
//! [`Evaluated`]) on labelled validation data, chooses the out-of-scope rejection threshold
//! ([`rejection::calibrate`]) and saves it into a checkpoint as `rejection.json` with the
//! trade-off picture `rejection_curve.svg` (a bundle's manifest takes the rule through
//! [`rejection::write_bundle_rule`]). `tools train`, `distill` and `soup` calibrate their
//! checkpoints through it too.

use std::path::Path;

use crate::checkpoint::write_atomic;
use crate::data::{Columns, Dataset};
use crate::error::{HostError, Result};
use crate::evaluate::Evaluated;
use crate::plot::rejection_curve;
use crate::rejection::{
    self, gold_indices, Calibration, CalibrationOptions, Scored, CURVE_FILE, REJECTION_FILE,
};

/// Class probabilities of `model` on the labelled file `data`, scored for rejection.
/// Gold labels must be the model's labels or `oos_label`.
pub fn score_file(
    model: &Evaluated,
    data: &Path,
    columns: &Columns,
    oos_label: &str,
) -> Result<Scored> {
    let data_set = Dataset::load(data, columns)?;
    score_dataset(model, &data_set, oos_label)
}

/// As [`score_file`], for a loaded data set.
pub fn score_dataset(model: &Evaluated, data: &Dataset, oos_label: &str) -> Result<Scored> {
    let labels = model.labels();
    let gold = gold_indices(&labels, data, oos_label)?;
    let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
    let (_, probs) = model.predict_probs(&texts)?;
    Ok(Scored::new(&labels, &probs, &gold, oos_label))
}

/// Writes `rejection.json` (rule, validation figures, curve) and `rejection_curve.svg`
/// into checkpoint `dir`.
pub fn write_checkpoint(dir: &Path, cal: &Calibration) -> Result<()> {
    let text = serde_json::to_string_pretty(cal).map_err(|e| HostError::Invalid(e.to_string()))?;
    write_atomic(&dir.join(REJECTION_FILE), text.as_bytes())?;
    rejection_curve(
        &dir.join(CURVE_FILE),
        &cal.curve,
        Some(cal.rule.threshold),
        &cal.rule.calibrated_on,
    )
}

/// Calibrates a trained checkpoint on its validation split and saves the result in it
/// (called at the end of `tools train`).
pub fn calibrate_checkpoint(
    dir: &Path,
    val: &Dataset,
    opts: &CalibrationOptions,
    calibrated_on: &str,
) -> Result<Calibration> {
    let model = Evaluated::open(dir)?;
    let scored = score_dataset(&model, val, &opts.oos_label)?;
    let cal = rejection::calibrate(&scored, opts, calibrated_on);
    write_checkpoint(dir, &cal)?;
    Ok(cal)
}
