//! Many `Classify` requests, over the link or in-process, summarised as latency
//! percentiles, throughput and (when the data has labels) accuracy.
//!
//! Query `i` (0-based) uses data row `i % rows`, so `n` larger than the data set cycles
//! through it. Texts longer than the wire limit (256 bytes) are cut at a character
//! boundary in both modes, so the two classify the same strings.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{percentile, wire_time_us, Link, LinkError, Result};
use crate::data::{read_data_file, Columns, Dataset, Format};
use crate::error::HostError;

/// The gold label of out-of-scope queries (CLINC150's): a rejected ("unknown") answer to
/// such a query counts as correct.
pub const OOS_LABEL: &str = "oos";

/// Texts to send, with gold labels when the file has a label column.
#[derive(Debug, Clone)]
pub struct BenchData {
    pub texts: Vec<String>,
    pub labels: Option<Vec<String>>,
}

impl BenchData {
    /// Reads CSV/TSV/JSONL like [`Dataset::load`]; the label column is optional.
    pub fn load(path: &Path, columns: &Columns) -> Result<BenchData> {
        if has_label_column(path, columns)? {
            let d = Dataset::load(path, columns)?;
            return Ok(BenchData {
                texts: d.examples.iter().map(|e| e.text.clone()).collect(),
                labels: Some(d.examples.into_iter().map(|e| e.label).collect()),
            });
        }
        let texts = read_texts(path, columns)?;
        if texts.is_empty() {
            return Err(HostError::data(path, None, "no texts").into());
        }
        Ok(BenchData {
            texts,
            labels: None,
        })
    }
}

/// Whether the file names a label column: the JSON keys of its first line, or its header
/// row, read as [`Dataset::load`] reads them (byte order mark skipped, quoted names).
fn has_label_column(path: &Path, columns: &Columns) -> Result<bool> {
    let bytes = read_data_file(path)?;
    Ok(match Format::from_path(path)? {
        Format::JsonLines => {
            let Some(first) = bytes
                .split(|&b| b == b'\n')
                .find(|l| !l.iter().all(u8::is_ascii_whitespace))
            else {
                return Err(HostError::data(path, None, "no texts").into());
            };
            serde_json::from_slice::<serde_json::Value>(first)
                .map(|v| v.get(&columns.label).is_some())
                .unwrap_or(true)
        }
        f => csv::ReaderBuilder::new()
            .delimiter(if f == Format::Tsv { b'\t' } else { b',' })
            .from_reader(&bytes[..])
            .headers()
            .map_err(|e| HostError::data(path, Some(1), e.to_string()))?
            .iter()
            .any(|h| h.trim() == columns.label),
    })
}

fn read_texts(path: &Path, columns: &Columns) -> Result<Vec<String>> {
    let bytes = read_data_file(path)?;
    let bad = |line: u64, p: String| LinkError::from(HostError::data(path, Some(line), p));
    let mut out = Vec::new();
    match Format::from_path(path)? {
        Format::JsonLines => {
            for (i, l) in bytes.split(|&b| b == b'\n').enumerate() {
                let line = i as u64 + 1;
                let l = std::str::from_utf8(l).map_err(|e| bad(line, format!("not UTF-8: {e}")))?;
                if l.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value =
                    serde_json::from_str(l).map_err(|e| bad(line, e.to_string()))?;
                match v.get(&columns.text).and_then(|t| t.as_str()) {
                    Some(t) => out.push(t.to_string()),
                    None => return Err(bad(line, format!("no string \"{}\"", columns.text))),
                }
            }
        }
        f => {
            let mut r = csv::ReaderBuilder::new()
                .delimiter(if f == Format::Tsv { b'\t' } else { b',' })
                .from_reader(&bytes[..]);
            let headers = r.headers().map_err(|e| bad(1, e.to_string()))?.clone();
            let col = headers
                .iter()
                .position(|h| h.trim() == columns.text)
                .ok_or_else(|| bad(1, format!("no column \"{}\"", columns.text)))?;
            for (i, rec) in r.records().enumerate() {
                let rec = rec.map_err(|e| bad(i as u64 + 2, e.to_string()))?;
                out.push(rec.get(col).unwrap_or("").to_string());
            }
        }
    }
    Ok(out)
}

/// How to run the bench.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Queries (default: one per data row).
    pub n: Option<usize>,
    /// Requests in flight at once (threads).
    pub concurrency: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// One query's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub i: usize,
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// The model's rejection rule applied ("unknown"; `label` is the best guess).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rejected: bool,
    pub rtt_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_us: Option<u64>,
    /// Wire-time lower bound of request + answer frames at the baud rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub error_kind: Option<String>,
}

/// The summary `tools bench` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `serial` or `in-process`.
    pub mode: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baud: Option<u32>,
    pub n: usize,
    pub answered: usize,
    pub errors: usize,
    pub error_kinds: BTreeMap<String, usize>,
    /// Correct / labelled queries (a failed query counts as wrong); null without labels.
    /// A rejected ("unknown") answer is correct exactly when the gold label is
    /// [`OOS_LABEL`] or a label the model does not have.
    pub accuracy: Option<f64>,
    /// Correct / answered labelled queries.
    pub accuracy_answered: Option<f64>,
    pub correct: Option<usize>,
    /// Answers the model's rejection rule turned into "unknown".
    pub rejected: usize,
    pub concurrency: usize,
    pub seconds: f64,
    /// Answered queries per second.
    pub throughput_per_s: f64,
    pub rtt_p50_us: u64,
    pub rtt_p90_us: u64,
    pub rtt_p99_us: u64,
    pub rtt_max_us: u64,
    pub device_p50_us: u64,
    pub device_p90_us: u64,
    pub device_p99_us: u64,
    pub device_max_us: u64,
    /// Median wire-time lower bound ((request + answer bytes) × 10 / baud); serial only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire_p50_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire_max_us: Option<u64>,
    /// Mean frame bytes per query (request + answer); serial only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_bytes_mean: Option<f64>,
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// What one successful query returns to the driver.
struct Outcome {
    label_index: usize,
    confidence: f32,
    rejected: bool,
    rtt_us: u64,
    device_us: u64,
    wire_us: Option<u64>,
    frame_bytes: Option<usize>,
}

fn cut(text: &str) -> &str {
    let mut end = text.len().min(protocol::MAX_TEXT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Bench over the link; `labels` are the device's label names (from the handshake).
pub fn bench_link(
    link: &Link,
    labels: &[String],
    data: &BenchData,
    opts: &BenchOptions,
) -> BenchReport {
    let baud = link.options().baud;
    let mut r = drive(data, labels, opts, |text| {
        let c = link
            .classify(cut(text))
            .map_err(|e| (e.kind(), e.to_string()))?;
        let bytes = c.request_bytes + c.response_bytes;
        Ok(Outcome {
            label_index: usize::from(c.label_index),
            confidence: c.confidence,
            rejected: c.rejected,
            rtt_us: c.rtt_us,
            device_us: u64::from(c.inference_us),
            wire_us: Some(wire_time_us(bytes, baud)),
            frame_bytes: Some(bytes),
        })
    });
    r.mode = "serial".into();
    r.target = link.port().to_string();
    r.baud = Some(baud);
    r
}

/// The same measurement without a link: the classifier in this process.
pub fn bench_local(
    classifier: &device::Classifier,
    data: &BenchData,
    opts: &BenchOptions,
) -> BenchReport {
    let labels = classifier.labels().to_vec();
    let mut r = drive(data, &labels, opts, |text| {
        let t = Instant::now();
        let p = classifier
            .classify(cut(text))
            .map_err(|e| ("internal".to_string(), e.to_string()))?;
        Ok(Outcome {
            label_index: p.label_index,
            confidence: p.confidence,
            rejected: p.rejected,
            rtt_us: t.elapsed().as_micros() as u64,
            device_us: p.inference_us,
            wire_us: None,
            frame_bytes: None,
        })
    });
    r.mode = "in-process".into();
    r
}

type QueryResult = std::result::Result<Outcome, (String, String)>;

fn drive(
    data: &BenchData,
    labels: &[String],
    opts: &BenchOptions,
    query: impl Fn(&str) -> QueryResult + Sync,
) -> BenchReport {
    let rows = data.texts.len().max(1);
    let n = opts.n.unwrap_or(data.texts.len());
    let bar = if opts.progress {
        let b = ProgressBar::new(n as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} queries, {per_sec}, eta {eta} {msg}")
        {
            b.set_style(style);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let errors_so_far = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::with_capacity(n.min(1 << 16)));
    let frame_bytes = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..opts.concurrency.max(1).min(n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let row = i % rows;
                let t = Instant::now();
                let sample = match query(&data.texts[row]) {
                    Ok(o) => {
                        if let Some(b) = o.frame_bytes {
                            frame_bytes
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(b);
                        }
                        Sample {
                            i,
                            row,
                            label: labels.get(o.label_index).cloned(),
                            label_index: Some(o.label_index),
                            confidence: Some(o.confidence),
                            rejected: o.rejected,
                            rtt_us: o.rtt_us,
                            device_us: Some(o.device_us),
                            wire_us: o.wire_us,
                            error: None,
                            error_kind: None,
                        }
                    }
                    Err((kind, msg)) => {
                        let e = errors_so_far.fetch_add(1, Ordering::Relaxed) + 1;
                        bar.set_message(format!("{e} errors"));
                        Sample {
                            i,
                            row,
                            label: None,
                            label_index: None,
                            confidence: None,
                            rejected: false,
                            rtt_us: t.elapsed().as_micros() as u64,
                            device_us: None,
                            wire_us: None,
                            error: Some(msg),
                            error_kind: Some(kind),
                        }
                    }
                };
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(sample);
                bar.inc(1);
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut samples = samples.into_inner().unwrap_or_else(|p| p.into_inner());
    samples.sort_by_key(|s| s.i);
    let frame_bytes = frame_bytes.into_inner().unwrap_or_else(|p| p.into_inner());
    summarise(
        samples,
        labels,
        data,
        opts.concurrency.max(1),
        seconds,
        &frame_bytes,
    )
}

fn summarise(
    samples: Vec<Sample>,
    labels: &[String],
    data: &BenchData,
    concurrency: usize,
    seconds: f64,
    frame_bytes: &[usize],
) -> BenchReport {
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let sorted = |f: &dyn Fn(&Sample) -> Option<u64>| {
        let mut v: Vec<u64> = ok.iter().filter_map(|s| f(s)).collect();
        v.sort_unstable();
        v
    };
    let rtt = sorted(&|s| Some(s.rtt_us));
    let dev = sorted(&|s| s.device_us);
    let wire = sorted(&|s| s.wire_us);
    let mut error_kinds = BTreeMap::new();
    for s in &samples {
        if let Some(k) = &s.error_kind {
            *error_kinds.entry(k.clone()).or_insert(0) += 1;
        }
    }
    let (accuracy, accuracy_answered, correct) = match &data.labels {
        Some(gold) => {
            let correct = ok
                .iter()
                .filter(|s| {
                    let g = gold[s.row].as_str();
                    if s.rejected {
                        g == OOS_LABEL || !labels.iter().any(|l| l == g)
                    } else {
                        s.label.as_deref() == Some(g)
                    }
                })
                .count();
            (
                Some(correct as f64 / samples.len().max(1) as f64),
                Some(correct as f64 / ok.len().max(1) as f64),
                Some(correct),
            )
        }
        None => (None, None, None),
    };
    BenchReport {
        mode: String::new(),
        target: String::new(),
        baud: None,
        n: samples.len(),
        answered: ok.len(),
        errors: samples.len() - ok.len(),
        error_kinds,
        accuracy,
        accuracy_answered,
        correct,
        rejected: ok.iter().filter(|s| s.rejected).count(),
        concurrency,
        seconds,
        throughput_per_s: ok.len() as f64 / seconds.max(1e-9),
        rtt_p50_us: percentile(&rtt, 50.0),
        rtt_p90_us: percentile(&rtt, 90.0),
        rtt_p99_us: percentile(&rtt, 99.0),
        rtt_max_us: rtt.last().copied().unwrap_or(0),
        device_p50_us: percentile(&dev, 50.0),
        device_p90_us: percentile(&dev, 90.0),
        device_p99_us: percentile(&dev, 99.0),
        device_max_us: dev.last().copied().unwrap_or(0),
        wire_p50_us: (!wire.is_empty()).then(|| percentile(&wire, 50.0)),
        wire_max_us: wire.last().copied(),
        frame_bytes_mean: (!frame_bytes.is_empty())
            .then(|| frame_bytes.iter().sum::<usize>() as f64 / frame_bytes.len() as f64),
        samples,
    }
}

impl BenchReport {
    /// Round-trip and device times of the answered queries, µs.
    pub fn latencies(&self) -> (Vec<u64>, Vec<u64>) {
        let ok = self.samples.iter().filter(|s| s.error.is_none());
        (
            ok.clone().map(|s| s.rtt_us).collect(),
            ok.filter_map(|s| s.device_us).collect(),
        )
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let mut out = String::new();
        let link = match self.baud {
            Some(b) => format!("{} at {b} baud", self.target),
            None => self.target.clone(),
        };
        out += &format!(
            "{} bench on {link}: {} queries, concurrency {}, {:.2} s\n",
            self.mode, self.n, self.concurrency, self.seconds
        );
        out += &format!(
            "answered {}  errors {}{}\n",
            self.answered,
            self.errors,
            if self.error_kinds.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    self.error_kinds
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        out += "\n                      p50 ms    p90 ms    p99 ms    max ms\n";
        out += &format!(
            "{:<18}{:>10}{:>10}{:>10}{:>10}\n",
            if self.baud.is_some() {
                "round trip"
            } else {
                "call (no link)"
            },
            ms(self.rtt_p50_us),
            ms(self.rtt_p90_us),
            ms(self.rtt_p99_us),
            ms(self.rtt_max_us)
        );
        out += &format!(
            "device inference  {:>10}{:>10}{:>10}{:>10}\n",
            ms(self.device_p50_us),
            ms(self.device_p90_us),
            ms(self.device_p99_us),
            ms(self.device_max_us)
        );
        if let (Some(w50), Some(wmax)) = (self.wire_p50_us, self.wire_max_us) {
            out += &format!(
                "wire lower bound  {:>10}{:>10}{:>10}{:>10}   (frame bytes x 10 / baud, mean {:.0} B/query)\n",
                ms(w50),
                "",
                "",
                ms(wmax),
                self.frame_bytes_mean.unwrap_or(0.0)
            );
        }
        out += &format!("\nthroughput {:.1} queries/s\n", self.throughput_per_s);
        if let (Some(a), Some(c)) = (self.accuracy, self.correct) {
            out += &format!("accuracy {a:.4} ({c}/{} correct)\n", self.n);
            if self.rejected > 0 {
                out += &format!(
                    "rejected {} answers as unknown (correct when the gold label is {OOS_LABEL})\n",
                    self.rejected
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(labels: bool) -> BenchData {
        BenchData {
            texts: vec!["a".into(), "b".into(), "c".into()],
            labels: labels.then(|| vec!["x".into(), "y".into(), "x".into()]),
        }
    }

    #[test]
    fn rejected_answers_are_right_only_for_out_of_scope_gold() {
        let labels = vec!["x".to_string(), "y".to_string()];
        let data = BenchData {
            texts: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            labels: Some(vec!["x".into(), "oos".into(), "oos".into(), "y".into()]),
        };
        let opts = BenchOptions {
            n: None,
            concurrency: 1,
            progress: false,
        };
        // a: x, accepted (right); b: rejected, gold oos (right); c: accepted x, gold oos
        // (wrong); d: rejected, gold y (wrong, even though the best guess is y).
        let r = drive(&data, &labels, &opts, |t| {
            Ok(Outcome {
                label_index: usize::from(t == "d"),
                confidence: 0.5,
                rejected: t == "b" || t == "d",
                rtt_us: 1,
                device_us: 1,
                wire_us: None,
                frame_bytes: None,
            })
        });
        assert_eq!(r.correct, Some(2));
        assert_eq!(r.rejected, 2);
        assert!(r.to_text().contains("rejected 2 answers"));
    }

    #[test]
    fn cycles_rows_counts_errors_and_accuracy() {
        let labels = vec!["x".to_string(), "y".to_string()];
        let opts = BenchOptions {
            n: Some(7),
            concurrency: 3,
            progress: false,
        };
        let r = drive(&data(true), &labels, &opts, |t| match t {
            "a" => Ok(Outcome {
                label_index: 0,
                confidence: 0.9,
                rejected: false,
                rtt_us: 100,
                device_us: 40,
                wire_us: Some(10),
                frame_bytes: Some(60),
            }),
            "b" => Ok(Outcome {
                label_index: 0,
                confidence: 0.6,
                rejected: false,
                rtt_us: 200,
                device_us: 50,
                wire_us: Some(10),
                frame_bytes: Some(60),
            }),
            _ => Err(("timeout".into(), "lost".into())),
        });
        // rows: a b c a b c a -> a x3 correct, b x2 wrong, c x2 errors
        assert_eq!((r.n, r.answered, r.errors), (7, 5, 2));
        assert_eq!(r.error_kinds.get("timeout"), Some(&2));
        assert_eq!(r.correct, Some(3));
        assert!((r.accuracy.unwrap() - 3.0 / 7.0).abs() < 1e-12);
        assert!((r.accuracy_answered.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(
            (r.rtt_p50_us, r.rtt_max_us, r.device_p99_us),
            (100, 200, 50)
        );
        assert_eq!(
            r.samples.iter().map(|s| s.row).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2, 0]
        );
        assert!(r.to_text().contains("accuracy 0.4286"));
    }

    #[test]
    fn loads_text_only_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "text\nhello\n\"a, b\"\n").unwrap();
        let d = BenchData::load(&p, &Columns::default()).unwrap();
        assert_eq!(d.texts, ["hello", "a, b"]);
        assert!(d.labels.is_none());
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, "{\"text\":\"x\",\"label\":\"l\"}\n").unwrap();
        let d = BenchData::load(&p, &Columns::default()).unwrap();
        assert_eq!(d.labels.unwrap(), ["l"]);
        assert_eq!(cut(&"é".repeat(200)).len(), 256);
    }

    #[test]
    fn reads_headers_as_training_does() {
        // A spreadsheet's byte order mark before the first column's name, and quoted names:
        // the label column is found, and a text-first file reads too.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bom.csv");
        std::fs::write(&p, "\u{FEFF}label,text\nx,hello\ny,\"a, b\"\n").unwrap();
        let d = BenchData::load(&p, &Columns::default()).unwrap();
        assert_eq!(d.texts, ["hello", "a, b"]);
        assert_eq!(d.labels.unwrap(), ["x", "y"]);
        let p = dir.path().join("bom-text.tsv");
        std::fs::write(&p, "\u{FEFF}\"text\"\nhello\n").unwrap();
        let d = BenchData::load(&p, &Columns::default()).unwrap();
        assert_eq!(d.texts, ["hello"]);
        assert!(d.labels.is_none());
    }
}
