//! Classification metrics: per-class precision/recall/F1, averages, confusion matrix,
//! and CLINC150's in-scope accuracy / out-of-scope recall.

use serde::Serialize;

/// Scores of one class.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// A whole classification report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub n: usize,
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub weighted_precision: f64,
    pub weighted_recall: f64,
    pub weighted_f1: f64,
    pub per_class: Vec<ClassScores>,
    /// Accuracy over examples whose gold label is not the out-of-scope label
    /// (predicting out-of-scope counts as wrong). Present when that label exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_scope_accuracy: Option<f64>,
    /// Share of out-of-scope examples predicted as out-of-scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oos_recall: Option<f64>,
    /// `confusion[gold][predicted]` counts.
    #[serde(skip)]
    pub confusion: Vec<Vec<usize>>,
    #[serde(skip)]
    pub labels: Vec<String>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Report {
    /// Builds the report from gold and predicted class indices into `labels`.
    /// `oos_label`, when it is one of `labels`, adds in-scope accuracy and out-of-scope recall.
    pub fn new(
        labels: &[String],
        gold: &[usize],
        predicted: &[usize],
        oos_label: Option<&str>,
    ) -> Self {
        let c = labels.len();
        let mut confusion = vec![vec![0usize; c]; c];
        for (&g, &p) in gold.iter().zip(predicted) {
            confusion[g][p] += 1;
        }
        let n = gold.len();
        let correct: usize = (0..c).map(|i| confusion[i][i]).sum();
        let mut per_class = Vec::with_capacity(c);
        for (i, label) in labels.iter().enumerate() {
            let tp = confusion[i][i];
            let support: usize = confusion[i].iter().sum();
            let predicted_i: usize = (0..c).map(|g| confusion[g][i]).sum();
            let precision = ratio(tp, predicted_i);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            per_class.push(ClassScores {
                label: label.clone(),
                precision,
                recall,
                f1,
                support,
            });
        }
        // Averages over classes present in the gold data (as scikit-learn does for labels=present).
        let present: Vec<&ClassScores> = per_class.iter().filter(|s| s.support > 0).collect();
        let k = present.len().max(1) as f64;
        let total = present.iter().map(|s| s.support).sum::<usize>().max(1) as f64;
        let mean = |f: &dyn Fn(&ClassScores) -> f64| present.iter().map(|s| f(s)).sum::<f64>() / k;
        let wmean = |f: &dyn Fn(&ClassScores) -> f64| {
            present.iter().map(|s| f(s) * s.support as f64).sum::<f64>() / total
        };
        let oos = oos_label.and_then(|l| labels.iter().position(|x| x == l));
        let (in_scope_accuracy, oos_recall) = match oos {
            Some(o) => {
                let in_n: usize = (0..c)
                    .filter(|&g| g != o)
                    .map(|g| confusion[g].iter().sum::<usize>())
                    .sum();
                let in_correct: usize = (0..c).filter(|&g| g != o).map(|g| confusion[g][g]).sum();
                let oos_n: usize = confusion[o].iter().sum();
                (
                    Some(ratio(in_correct, in_n)),
                    (oos_n > 0).then(|| ratio(confusion[o][o], oos_n)),
                )
            }
            None => (None, None),
        };
        Self {
            n,
            accuracy: ratio(correct, n),
            macro_precision: mean(&|s| s.precision),
            macro_recall: mean(&|s| s.recall),
            macro_f1: mean(&|s| s.f1),
            weighted_precision: wmean(&|s| s.precision),
            weighted_recall: wmean(&|s| s.recall),
            weighted_f1: wmean(&|s| s.f1),
            per_class,
            in_scope_accuracy,
            oos_recall,
            confusion,
            labels: labels.to_vec(),
        }
    }

    /// The report as text, laid out like scikit-learn's `classification_report`.
    pub fn to_text(&self) -> String {
        let w = self
            .labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(5)
            .max(12);
        let mut s = format!(
            "{:>w$}  {:>9}  {:>9}  {:>9}  {:>7}\n\n",
            "", "precision", "recall", "f1-score", "support"
        );
        for c in &self.per_class {
            s += &format!(
                "{:>w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>7}\n",
                c.label, c.precision, c.recall, c.f1, c.support
            );
        }
        s += &format!(
            "\n{:>w$}  {:>9}  {:>9}  {:>9.4}  {:>7}\n",
            "accuracy", "", "", self.accuracy, self.n
        );
        s += &format!(
            "{:>w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>7}\n",
            "macro avg", self.macro_precision, self.macro_recall, self.macro_f1, self.n
        );
        s += &format!(
            "{:>w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>7}\n",
            "weighted avg", self.weighted_precision, self.weighted_recall, self.weighted_f1, self.n
        );
        if let Some(a) = self.in_scope_accuracy {
            s += &format!("\n{:>w$}  {:.4}\n", "in-scope acc", a);
        }
        if let Some(r) = self.oos_recall {
            s += &format!("{:>w$}  {:.4}\n", "oos recall", r);
        }
        s
    }

    /// The confusion matrix as CSV: header `gold\predicted,label…`, one row per gold label.
    pub fn confusion_csv(&self) -> String {
        let quote = |l: &str| {
            if l.contains([',', '"', '\n']) {
                format!("\"{}\"", l.replace('"', "\"\""))
            } else {
                l.to_string()
            }
        };
        let mut s = String::from("gold\\predicted");
        for l in &self.labels {
            s += &format!(",{}", quote(l));
        }
        s.push('\n');
        for (i, row) in self.confusion.iter().enumerate() {
            s += &quote(&self.labels[i]);
            for v in row {
                s += &format!(",{v}");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matches_hand_computed_scores() {
        // gold:  a a a b b c ; pred: a a b b c c
        let l = labels(&["a", "b", "c"]);
        let r = Report::new(&l, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], None);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let a = &r.per_class[0];
        assert_eq!((a.precision, a.recall, a.support), (1.0, 2.0 / 3.0, 3));
        let b = &r.per_class[1];
        assert!((b.precision - 0.5).abs() < 1e-12 && (b.recall - 0.5).abs() < 1e-12);
        let c = &r.per_class[2];
        assert!((c.precision - 0.5).abs() < 1e-12 && (c.recall - 1.0).abs() < 1e-12);
        let f1 = [0.8, 0.5, 2.0 / 3.0];
        assert!((r.macro_f1 - f1.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        assert!((r.weighted_f1 - (0.8 * 3.0 + 0.5 * 2.0 + 2.0 / 3.0) / 6.0).abs() < 1e-12);
        assert_eq!(r.confusion[0], vec![2, 1, 0]);
        assert!(r.in_scope_accuracy.is_none());
    }

    #[test]
    fn clinc_in_scope_and_oos_recall() {
        let l = labels(&["a", "b", "oos"]);
        // in-scope: a→a, a→oos (wrong), b→b ; oos: oos→oos, oos→a
        let r = Report::new(&l, &[0, 0, 1, 2, 2], &[0, 2, 1, 2, 0], Some("oos"));
        assert!((r.in_scope_accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.oos_recall.unwrap() - 0.5).abs() < 1e-12);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("in_scope_accuracy").is_some() && json.get("per_class").is_some());
    }

    #[test]
    fn confusion_csv_quotes_labels() {
        let l = labels(&["a,b", "c"]);
        let r = Report::new(&l, &[0, 1], &[1, 1], None);
        assert_eq!(
            r.confusion_csv(),
            "gold\\predicted,\"a,b\",c\n\"a,b\",0,1\nc,0,1\n"
        );
    }
}
