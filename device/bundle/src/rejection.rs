//! Out-of-scope rejection: the rule a bundle's manifest may carry (`rejection`), under
//! which the device answers "unknown" (keeping its best guess and that guess's
//! confidence) instead of a label.
//!
//! The rule is the max-probability threshold of Larson et al. (2019, CLINC150), combined
//! with the out-of-scope class when the model has one: a prediction is **rejected** when
//!
//! * the argmax is the out-of-scope class (`oos_label`), or
//! * the highest probability among the in-scope classes is below `threshold`.
//!
//! When the argmax is not the out-of-scope class, the highest in-scope probability is the
//! argmax's own probability, so the rule reads `argmax == oos || confidence < threshold`.
//! The threshold is calibrated on validation data by the host (`host::rejection`,
//! `docs/rejection.md`); the device only applies it.

use serde::{Deserialize, Serialize};

/// The rejection rule of a bundle (`manifest.json` field `rejection`, optional: a bundle
/// without it never rejects, and devices that do not know the field ignore it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionRule {
    /// Reject when the best in-scope probability is below this (0 never rejects on
    /// probability; above 1 rejects everything).
    pub threshold: f32,
    /// The out-of-scope class, when the model has one: predicting it is a rejection too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oos_label: Option<String>,
    /// How the threshold was chosen (criterion and its parameter), informational.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub criterion: String,
    /// The data it was calibrated on, informational.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub calibrated_on: String,
    /// In-scope accuracy on the calibration data with the rule (a rejected in-scope
    /// example counts as wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_in_scope_accuracy: Option<f64>,
    /// Share of the calibration data's out-of-scope examples the rule rejects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_oos_recall: Option<f64>,
    /// Share of the calibration data's in-scope examples the rule rejects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_in_scope_rejected: Option<f64>,
}

impl RejectionRule {
    /// A bare rule (no calibration record).
    pub fn new(threshold: f32, oos_label: Option<String>) -> RejectionRule {
        RejectionRule {
            threshold,
            oos_label,
            criterion: String::new(),
            calibrated_on: String::new(),
            val_in_scope_accuracy: None,
            val_oos_recall: None,
            val_in_scope_rejected: None,
        }
    }

    /// Index of `oos_label` in `labels` (None when the rule has none or it is not there).
    pub fn oos_index(&self, labels: &[String]) -> Option<usize> {
        let l = self.oos_label.as_deref()?;
        labels.iter().position(|x| x == l)
    }

    /// Whether the rule rejects a prediction whose class probabilities are `probs`
    /// (`oos` = [`Self::oos_index`]).
    pub fn rejects(&self, probs: &[f32], oos: Option<usize>) -> bool {
        let (best, p) = best_in_scope(probs, None);
        if let Some(o) = oos {
            if best == Some(o) {
                return true;
            }
        }
        let p = match oos {
            Some(o) => best_in_scope(probs, Some(o)).1,
            None => p,
        };
        // NaN probabilities (a broken model) are rejected too.
        p.is_nan() || p < self.threshold
    }

    /// Problems that make the rule unusable for a model with `labels`.
    pub fn check(&self, labels: &[String]) -> std::result::Result<(), String> {
        if !self.threshold.is_finite() || self.threshold < 0.0 {
            return Err(format!(
                "threshold {} must be a finite number ≥ 0",
                self.threshold
            ));
        }
        if let Some(l) = &self.oos_label {
            if !labels.contains(l) {
                return Err(format!("oos_label {l:?} is not one of the labels"));
            }
        }
        Ok(())
    }
}

/// Index and value of the highest probability, skipping index `skip` (first index wins
/// ties; NaN never wins).
fn best_in_scope(probs: &[f32], skip: Option<usize>) -> (Option<usize>, f32) {
    let mut best: (Option<usize>, f32) = (None, f32::NAN);
    for (i, &p) in probs.iter().enumerate() {
        if Some(i) == skip || p.is_nan() {
            continue;
        }
        if best.0.is_none() || p > best.1 {
            best = (Some(i), p);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_oos_class() {
        let labels: Vec<String> = ["a", "b", "oos"].map(String::from).to_vec();
        let r = RejectionRule::new(0.5, Some("oos".into()));
        let o = r.oos_index(&labels);
        assert_eq!(o, Some(2));
        assert!(!r.rejects(&[0.6, 0.3, 0.1], o));
        assert!(r.rejects(&[0.4, 0.3, 0.3], o)); // best in-scope below 0.5
        assert!(r.rejects(&[0.2, 0.1, 0.7], o)); // argmax is oos
        assert!(r.rejects(&[0.45, 0.05, 0.5], o)); // argmax oos, in-scope below too
        let zero = RejectionRule::new(0.0, Some("oos".into()));
        assert!(!zero.rejects(&[0.4, 0.3, 0.3], o));
        assert!(zero.rejects(&[0.1, 0.1, 0.8], o)); // the class still rejects
        let all = RejectionRule::new(1.01, None);
        assert!(all.rejects(&[1.0, 0.0, 0.0], None));
        assert!(r.rejects(&[f32::NAN, f32::NAN, f32::NAN], o));
    }

    #[test]
    fn check_catches_bad_rules() {
        let labels: Vec<String> = ["a", "b"].map(String::from).to_vec();
        assert!(RejectionRule::new(0.3, None).check(&labels).is_ok());
        assert!(RejectionRule::new(f32::NAN, None).check(&labels).is_err());
        assert!(RejectionRule::new(-0.1, None).check(&labels).is_err());
        assert!(RejectionRule::new(0.3, Some("oos".into()))
            .check(&labels)
            .is_err());
    }

    #[test]
    fn json_is_compact_and_old_fields_default() {
        let r = RejectionRule::new(0.25, None);
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"threshold":0.25}"#);
        let back: RejectionRule = serde_json::from_str(r#"{"threshold":0.25}"#).unwrap();
        assert_eq!(back, r);
    }
}
