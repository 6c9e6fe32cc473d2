//! Labelled text: CSV/TSV with a header row, or JSON lines.
//!
//! Everything read here is untrusted: each problem is reported with the file, the line
//! and what is wrong, and nothing panics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{HostError, Result};

/// One labelled utterance, with the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text: String,
    pub label: String,
    pub line: u64,
}

/// A data file's examples.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub path: PathBuf,
    pub examples: Vec<Example>,
}

/// Which columns hold the text and the label (CSV/TSV header names, JSONL keys).
#[derive(Debug, Clone)]
pub struct Columns {
    pub text: String,
    pub label: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            text: "text".into(),
            label: "label".into(),
        }
    }
}

/// The UTF-8 byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A data file's bytes, without the UTF-8 byte order mark spreadsheet programs put first.
pub(crate) fn read_data_file(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(path).map_err(|e| HostError::io(path, e))?;
    if bytes.starts_with(UTF8_BOM) {
        bytes.drain(..UTF8_BOM.len());
    }
    Ok(bytes)
}

/// File formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    JsonLines,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(Self::Csv),
            "tsv" | "tab" => Ok(Self::Tsv),
            "jsonl" | "ndjson" => Ok(Self::JsonLines),
            _ => Err(HostError::data(
                path,
                None,
                "unknown format: use a .csv, .tsv or .jsonl file",
            )),
        }
    }
}

impl Dataset {
    /// Reads a data file; the format follows the extension. A UTF-8 byte order mark at
    /// the start (as spreadsheet programs write) is skipped.
    pub fn load(path: &Path, columns: &Columns) -> Result<Self> {
        let bytes = read_data_file(path)?;
        let examples = match Format::from_path(path)? {
            Format::Csv => read_delimited(path, &bytes, b',', columns)?,
            Format::Tsv => read_delimited(path, &bytes, b'\t', columns)?,
            Format::JsonLines => read_jsonl(path, &bytes, columns)?,
        };
        if examples.is_empty() {
            return Err(HostError::data(path, None, "no examples"));
        }
        Ok(Self {
            path: path.to_path_buf(),
            examples,
        })
    }

    /// The distinct labels, sorted.
    pub fn labels(&self) -> Vec<String> {
        self.examples
            .iter()
            .map(|e| e.label.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Checks that every label is one of `labels` (a label seen only here is an error).
    pub fn check_labels(&self, labels: &[String]) -> Result<()> {
        for e in &self.examples {
            if !labels.contains(&e.label) {
                return Err(HostError::data(
                    &self.path,
                    Some(e.line),
                    format!(
                        "label '{}' does not occur in the training data ({} labels)",
                        e.label,
                        labels.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The training labels: at least two classes are needed, and each name must fit the
    /// serial link's ([`protocol::MAX_LABEL_LEN`] bytes), as the bundle's manifest must.
    pub fn training_labels(&self) -> Result<Vec<String>> {
        if let Some(e) = self
            .examples
            .iter()
            .find(|e| e.label.len() > protocol::MAX_LABEL_LEN)
        {
            return Err(HostError::data(
                &self.path,
                Some(e.line),
                format!(
                    "label {:?} is {} bytes; a model's labels are at most {} (UTF-8 bytes, \
                     the serial link's limit): shorten it",
                    e.label,
                    e.label.len(),
                    protocol::MAX_LABEL_LEN
                ),
            ));
        }
        let labels = self.labels();
        if labels.len() < 2 {
            return Err(HostError::data(
                &self.path,
                None,
                format!(
                    "fewer than 2 classes ({}): a classifier needs at least 2",
                    labels.join(", ")
                ),
            ));
        }
        Ok(labels)
    }

    /// Holds out `fraction` of each class (at least one example of a class with ≥ 2),
    /// shuffled with `seed`. Returns `(train, validation)`.
    pub fn stratified_split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut by_label: BTreeMap<&str, Vec<&Example>> = BTreeMap::new();
        for e in &self.examples {
            by_label.entry(&e.label).or_default().push(e);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (_, mut group) in by_label {
            group.shuffle(&mut rng);
            let n = group.len();
            let k = if n >= 2 {
                ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
            } else {
                0
            };
            val.extend(group[..k].iter().map(|e| (*e).clone()));
            train.extend(group[k..].iter().map(|e| (*e).clone()));
        }
        train.sort_by_key(|e| e.line);
        val.sort_by_key(|e| e.line);
        (
            Dataset {
                path: self.path.clone(),
                examples: train,
            },
            Dataset {
                path: self.path.clone(),
                examples: val,
            },
        )
    }
}

fn check_text(path: &Path, line: u64, text: &str, label: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(HostError::data(path, Some(line), "empty text"));
    }
    if label.trim().is_empty() {
        return Err(HostError::data(path, Some(line), "empty label"));
    }
    Ok(())
}

fn read_delimited(
    path: &Path,
    bytes: &[u8],
    delimiter: u8,
    columns: &Columns,
) -> Result<Vec<Example>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| csv_error(path, e))?
        .clone();
    let header: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let find = |name: &str| {
        let at: Vec<usize> = (0..header.len()).filter(|&i| header[i] == name).collect();
        match at[..] {
            [i] => Ok(i),
            [] => Err(HostError::data(
                path,
                Some(1),
                format!(
                    "missing column '{name}' (header has: {})",
                    header.join(", ")
                ),
            )),
            _ => Err(HostError::data(
                path,
                Some(1),
                format!(
                    "column '{name}' appears twice or more (columns {}): which one holds the \
                     data is ambiguous; rename the others",
                    at.iter()
                        .map(|i| (i + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    };
    let (ti, li) = (find(&columns.text)?, find(&columns.label)?);
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let field = |i: usize, name: &str| -> Result<String> {
            let raw = record.get(i).ok_or_else(|| {
                HostError::data(path, Some(line), format!("missing field '{name}'"))
            })?;
            std::str::from_utf8(raw)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    HostError::data(
                        path,
                        Some(line),
                        format!("invalid UTF-8 in '{name}' at byte {}", e.valid_up_to()),
                    )
                })
        };
        let (text, label) = (field(ti, &columns.text)?, field(li, &columns.label)?);
        check_text(path, line, &text, &label)?;
        out.push(Example { text, label, line });
    }
    Ok(out)
}

fn csv_error(path: &Path, e: csv::Error) -> HostError {
    let line = e.position().map(|p| p.line());
    let problem = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        csv::ErrorKind::Io(err) => format!("read error: {err}"),
        _ => e.to_string(),
    };
    HostError::data(path, line, problem)
}

fn read_jsonl(path: &Path, bytes: &[u8], columns: &Columns) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(s) = std::str::from_utf8(raw) else {
            return Err(HostError::data(path, Some(line), "invalid UTF-8"));
        };
        if s.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(s)
            .map_err(|e| HostError::data(path, Some(line), format!("invalid JSON: {e}")))?;
        let get = |key: &str| -> Result<String> {
            match value.get(key) {
                Some(serde_json::Value::String(s)) => Ok(s.trim().to_string()),
                Some(other) if !other.is_null() && !other.is_object() && !other.is_array() => {
                    Ok(other.to_string())
                }
                Some(_) => Err(HostError::data(
                    path,
                    Some(line),
                    format!("field '{key}' is not a string"),
                )),
                None => Err(HostError::data(
                    path,
                    Some(line),
                    format!("missing field '{key}'"),
                )),
            }
        };
        let (text, label) = (get(&columns.text)?, get(&columns.label)?);
        check_text(path, line, &text, &label)?;
        out.push(Example { text, label, line });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, bytes: &[u8]) -> Result<Dataset> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        Dataset::load(&p, &Columns::default())
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let csv = load("a.csv", b"\xEF\xBB\xBFtext,label\nhello,greet\n").unwrap();
        assert_eq!(csv.examples[0].text, "hello");
        let jsonl = load(
            "a.jsonl",
            b"\xEF\xBB\xBF{\"text\":\"hi\",\"label\":\"greet\"}\n",
        )
        .unwrap();
        assert_eq!(jsonl.examples[0].label, "greet");
    }

    #[test]
    fn a_duplicated_column_is_refused() {
        let e = load("d.csv", b"text,label,text\nhello,greet,x\n")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("d.csv:1: column 'text' appears twice or more (columns 1, 3): which one holds the data is ambiguous; rename the others"), "{e}");
        // Duplicates of columns not read are harmless.
        load("e.csv", b"text,label,note,note\nhello,greet,a,b\n").unwrap();
    }

    #[test]
    fn labels_longer_than_the_link_carries_are_refused() {
        let long = "l".repeat(protocol::MAX_LABEL_LEN + 1);
        let ok = "k".repeat(protocol::MAX_LABEL_LEN);
        let csv = format!("text,label\nhello,{ok}\nbye,short\nhi,{long}\n");
        let d = load("l.csv", csv.as_bytes()).unwrap();
        let e = d.training_labels().unwrap_err().to_string();
        assert!(e.contains("l.csv:4: label \"lll"), "{e}");
        let size = format!("is {} bytes", long.len());
        assert!(e.contains(&size), "{e}");
        let csv = format!("text,label\nhello,{ok}\nbye,short\n");
        let d = load("k.csv", csv.as_bytes()).unwrap();
        assert_eq!(d.training_labels().unwrap().len(), 2);
    }
}
