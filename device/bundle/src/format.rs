//! The model bundle: a directory with `manifest.json`, `model.onnx` and `tokenizer.json`.
//!
//! The format is defined here, once, by the device that reads it; the host writes bundles
//! through [`write_bundle`] and these types. Reading goes through stages, each its own
//! type, so a half-checked bundle cannot reach the engine:
//!
//! ```text
//! Bundle::read(dir) -> ReadBundle       manifest parsed, version and fields checked
//!     .verify()     -> VerifiedBundle   every listed file present, sha256 matches
//! ```
//!
//! A [`VerifiedBundle`] holds the verified bytes of the model and the tokenizer, so what
//! the engine loads is exactly what was hashed (no re-read between check and use).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::{write_synced, StagedDir, Step};
use crate::error::{BundleError, Result};
use crate::variant::Variant;

/// Newest bundle format this device reads. Format 2 adds model variants (`variants`,
/// `default_variant`, `reference`) whose ONNX files may share one external-data weights
/// file; the host writes 2 only when a bundle has variants, so a float bundle stays
/// format 1 and readable by older devices. Format 3 adds the model's third input,
/// hashed n-grams of the text ([`NgramSpec`]); only such bundles are written as 3, so an
/// older device refuses them by version instead of failing on the unknown input.
pub const BUNDLE_FORMAT_VERSION: u32 = 3;
/// The format of a bundle with variants and no n-gram input.
pub const VARIANTS_FORMAT_VERSION: u32 = 2;
/// Oldest bundle format this device still reads.
pub const MIN_BUNDLE_FORMAT_VERSION: u32 = 1;
/// Name of the implicit variant of a bundle without `variants`: `model.onnx` in f32.
pub const FLOAT_VARIANT: &str = Variant::Float.name();
/// The manifest; written last, so its presence marks a complete bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The f32 ONNX model (inputs `input_ids`, `attention_mask`; outputs `logits`, `attention`).
pub const MODEL_FILE: &str = "model.onnx";
/// The exact `tokenizer.json` used in training.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Smallest usable `max_len`: `[CLS]`, one token, `[SEP]`.
pub const MIN_MAX_LEN: usize = 3;
/// Largest accepted `max_len`; anything above is a corrupt or foreign manifest.
pub const MAX_MAX_LEN: usize = 65_536;

/// `manifest.json`: what the bundle is and the sha256 of every other file in it.
///
/// Fields that a later format may add or that are informational carry `#[serde(default)]`,
/// and unknown fields are ignored, so manifests stay readable as the format grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Must equal [`BUNDLE_FORMAT_VERSION`] to be read.
    pub format_version: u32,
    /// Human name of the model.
    pub name: String,
    /// Size preset the model was trained with (`tiny`, `small`, ...), informational.
    #[serde(default)]
    pub preset: String,
    /// Class labels, in the order of the model's `logits`.
    pub labels: Vec<String>,
    /// Maximum sequence length in tokens, `[CLS]` and `[SEP]` included.
    pub max_len: usize,
    /// File name -> lowercase sha256 hex, for every file of the bundle except the manifest.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Training and evaluation metrics, free form.
    #[serde(default)]
    pub metrics: serde_json::Value,
    /// Creation time, RFC 3339 UTC.
    #[serde(default)]
    pub created: String,
    /// Program and version that wrote the bundle.
    #[serde(default)]
    pub tool_version: String,
    /// Model variants (format 2). Empty: the bundle has one variant, [`FLOAT_VARIANT`],
    /// in [`MODEL_FILE`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantEntry>,
    /// The variant to use when nothing else decides (no `--variant`, no recorded tuning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_variant: Option<String>,
    /// A few texts with the outputs each variant must give (checked before a variant is
    /// chosen on the board).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference: Vec<ReferenceText>,
    /// Out-of-scope rejection rule (optional; without it the device never answers
    /// "unknown"). Older devices ignore it, so it needs no new format version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<crate::rejection::RejectionRule>,
    /// The bag-of-n-grams input `ngram_ids` (format 3): how the device hashes the text's
    /// word and character n-grams. None: the model reads token ids only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngrams: Option<NgramSpec>,
}

/// How a text becomes the model's `ngram_ids` input (`device::ngrams` computes it): up to
/// `max` distinct ids in `1..buckets` (0 pads), one per hashed word, word pair or
/// character n-gram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NgramSpec {
    /// Rows of the n-gram table, the padding row 0 included.
    pub buckets: u32,
    /// Width of the `ngram_ids` input: ids per text, the rest padded with 0.
    pub max: usize,
}

impl NgramSpec {
    /// Largest accepted table (rows); anything above is a corrupt or foreign manifest.
    pub const MAX_BUCKETS: u32 = 1 << 24;
    /// Largest accepted input width.
    pub const MAX_WIDTH: usize = 4096;

    /// Why the spec cannot be used, if it cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(2..=Self::MAX_BUCKETS).contains(&self.buckets) {
            return Err(format!(
                "buckets {} is outside 2..={}",
                self.buckets,
                Self::MAX_BUCKETS
            ));
        }
        if !(1..=Self::MAX_WIDTH).contains(&self.max) {
            return Err(format!(
                "max {} is outside 1..={}",
                self.max,
                Self::MAX_WIDTH
            ));
        }
        Ok(())
    }
}

/// One runnable form of the model in a bundle: an entry of the manifest's `variants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantEntry {
    /// A [`Variant`] name (`float`, `weights-int8`, `int8-compute`); kept as text so a
    /// manifest naming a variant of a later format still reads.
    pub name: String,
    /// Its ONNX file in the bundle.
    pub file: String,
    /// sha256 of `file` (also in `files`), filled in by [`write_bundle`].
    #[serde(default)]
    pub sha256: String,
    /// Other bundle files the ONNX reads as external data (shared weights).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_data: Vec<String>,
    /// Validation accuracy measured on the host for this variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_accuracy: Option<f64>,
    /// Free text: what the variant computes in which precision.
    #[serde(default)]
    pub description: String,
}

/// A reference text and what each variant must answer for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceText {
    pub text: String,
    /// Variant name -> expected output.
    pub outputs: BTreeMap<String, ReferenceOutput>,
}

/// The expected output of one variant on one reference text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceOutput {
    pub label_index: usize,
    pub logits: Vec<f32>,
}

impl Manifest {
    /// A manifest for the current format, created now, with an empty file list (filled
    /// in by [`write_bundle`]) and no metrics.
    pub fn new(
        name: impl Into<String>,
        preset: impl Into<String>,
        labels: Vec<String>,
        max_len: usize,
    ) -> Manifest {
        Manifest {
            format_version: BUNDLE_FORMAT_VERSION,
            name: name.into(),
            preset: preset.into(),
            labels,
            max_len,
            files: BTreeMap::new(),
            metrics: serde_json::Value::Null,
            created: now_rfc3339(),
            tool_version: concat!("edge-classifier device ", env!("CARGO_PKG_VERSION")).into(),
            variants: Vec::new(),
            default_variant: None,
            reference: Vec::new(),
            rejection: None,
            ngrams: None,
        }
    }

    /// The variants of this bundle; a bundle without `variants` has the one implicit
    /// [`FLOAT_VARIANT`] in [`MODEL_FILE`].
    pub fn variant_list(&self) -> Vec<VariantEntry> {
        if !self.variants.is_empty() {
            return self.variants.clone();
        }
        vec![VariantEntry {
            name: FLOAT_VARIANT.into(),
            file: MODEL_FILE.into(),
            sha256: self.files.get(MODEL_FILE).cloned().unwrap_or_default(),
            external_data: Vec::new(),
            expected_accuracy: None,
            description: "f32 weights and compute".into(),
        }]
    }

    /// The variant called `name`, or an error listing the ones there are.
    pub fn variant(&self, name: &str) -> std::result::Result<VariantEntry, String> {
        let all = self.variant_list();
        all.iter().find(|v| v.name == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
            format!(
                "no variant {name:?} in this bundle (it has: {})",
                names.join(", ")
            )
        })
    }

    /// The manifest's default variant name (the first variant when none is marked).
    pub fn default_variant_name(&self) -> String {
        self.default_variant
            .clone()
            .unwrap_or_else(|| self.variant_list()[0].name.clone())
    }

    /// Field checks shared by reading and writing: (field, problem) of the first failure.
    fn check_fields(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.labels.is_empty() {
            return Err((
                "labels",
                "empty: a classifier needs at least one label".into(),
            ));
        }
        for (i, label) in self.labels.iter().enumerate() {
            if label.is_empty() {
                return Err(("labels", format!("label {i} is empty")));
            }
            if label.len() > protocol::MAX_LABEL_LEN {
                return Err((
                    "labels",
                    format!(
                        "label {label:?} is {} bytes; the serial link carries names of at \
                         most {} (UTF-8 bytes): shorten it in the data",
                        label.len(),
                        protocol::MAX_LABEL_LEN
                    ),
                ));
            }
            if self.labels[..i].contains(label) {
                return Err(("labels", format!("label {label:?} appears twice")));
            }
        }
        if !(MIN_MAX_LEN..=MAX_MAX_LEN).contains(&self.max_len) {
            return Err((
                "max_len",
                format!("{} is outside {MIN_MAX_LEN}..={MAX_MAX_LEN}", self.max_len),
            ));
        }
        if let Some(spec) = &self.ngrams {
            spec.check().map_err(|p| ("ngrams", p))?;
        }
        for (i, v) in self.variants.iter().enumerate() {
            if v.name.is_empty() || self.variants[..i].iter().any(|w| w.name == v.name) {
                return Err((
                    "variants",
                    format!("variant name {:?} empty or repeated", v.name),
                ));
            }
            for f in std::iter::once(&v.file).chain(&v.external_data) {
                if !self.files.contains_key(f) {
                    return Err((
                        "variants",
                        format!("variant {}: file {f} is not listed in files", v.name),
                    ));
                }
            }
        }
        if let Some(d) = &self.default_variant {
            if !self.variant_list().iter().any(|v| &v.name == d) {
                return Err(("default_variant", format!("{d:?} is not a variant")));
            }
        }
        if let Some(r) = &self.rejection {
            r.check(&self.labels).map_err(|p| ("rejection", p))?;
        }
        for (name, hash) in &self.files {
            check_file_name(name).map_err(|p| ("files", p))?;
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err((
                    "files",
                    format!("{name}: {hash:?} is not a sha256 hex digest"),
                ));
            }
        }
        Ok(())
    }
}

/// A bundle file name must be a plain name inside the bundle directory.
fn check_file_name(name: &str) -> std::result::Result<(), String> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.contains("..");
    if bad {
        return Err(format!(
            "{name:?} is not a plain file name (no '/', '\\', '..')"
        ));
    }
    if name == MANIFEST_FILE {
        return Err(format!("{MANIFEST_FILE} cannot list itself"));
    }
    Ok(())
}

/// Entry point of the reading stages.
pub struct Bundle;

impl Bundle {
    /// Reads and checks `dir/manifest.json`: JSON, `format_version` (checked before the
    /// rest of the shape, so a newer format gets a version error, not a parse error),
    /// labels, `max_len`, file names.
    pub fn read(dir: impl AsRef<Path>) -> Result<ReadBundle> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(BundleError::BundleDir {
                problem: if dir.exists() {
                    "not a directory".into()
                } else {
                    "directory does not exist".into()
                },
                dir,
            });
        }
        let bytes = read_bundle_file(&dir, MANIFEST_FILE)?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| BundleError::ManifestParse {
                dir: dir.clone(),
                problem: format!("invalid JSON: {e}"),
            })?;
        let version = value
            .get("format_version")
            .ok_or_else(|| BundleError::InvalidManifest {
                dir: dir.clone(),
                field: "format_version",
                problem: "missing".into(),
            })?;
        let found = version
            .as_u64()
            .ok_or_else(|| BundleError::InvalidManifest {
                dir: dir.clone(),
                field: "format_version",
                problem: format!("{version} is not an unsigned integer"),
            })?;
        if !(u64::from(MIN_BUNDLE_FORMAT_VERSION)..=u64::from(BUNDLE_FORMAT_VERSION))
            .contains(&found)
        {
            return Err(BundleError::UnsupportedVersion {
                dir,
                found,
                supported: BUNDLE_FORMAT_VERSION,
            });
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| BundleError::ManifestParse {
                dir: dir.clone(),
                problem: e.to_string(),
            })?;
        manifest
            .check_fields()
            .map_err(|(field, problem)| BundleError::InvalidManifest {
                dir: dir.clone(),
                field,
                problem,
            })?;
        Ok(ReadBundle { dir, manifest })
    }
}

/// Stage 1: a bundle whose manifest is parsed and sane; its files are not checked yet.
#[derive(Debug, Clone)]
pub struct ReadBundle {
    dir: PathBuf,
    manifest: Manifest,
}

impl ReadBundle {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks that the model and tokenizer are listed and that every listed file exists
    /// and matches its sha256.
    pub fn verify(self) -> Result<VerifiedBundle> {
        let ReadBundle { dir, manifest } = self;
        for required in [MODEL_FILE, TOKENIZER_FILE] {
            if !manifest.files.contains_key(required) {
                return Err(BundleError::InvalidManifest {
                    dir,
                    field: "files",
                    problem: format!("{required} is not listed"),
                });
            }
        }
        let mut files = BTreeMap::new();
        for (name, expected) in &manifest.files {
            let bytes = read_bundle_file(&dir, name)?;
            let actual = sha256_hex(&bytes);
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(BundleError::HashMismatch {
                    dir,
                    file: name.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
            files.insert(name.clone(), bytes);
        }
        Ok(VerifiedBundle {
            dir,
            manifest,
            files,
        })
    }
}

/// Stage 2: every file checked; holds the verified bytes of every listed file.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    dir: PathBuf,
    manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
}

impl VerifiedBundle {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The verified bytes of [`MODEL_FILE`].
    pub fn model_bytes(&self) -> &[u8] {
        self.file_bytes(MODEL_FILE).unwrap_or_default()
    }

    /// The verified bytes of [`TOKENIZER_FILE`].
    pub fn tokenizer_bytes(&self) -> &[u8] {
        self.file_bytes(TOKENIZER_FILE).unwrap_or_default()
    }

    /// The verified bytes of any file listed in the manifest.
    pub fn file_bytes(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// "bundle DIR: FILE", the origin used in load errors.
    pub fn origin(&self, file: &str) -> String {
        format!("bundle {}: {file}", self.dir.display())
    }
}

/// Largest `manifest.json` (or `manifest.sig`) read: a 150-label manifest with reference
/// logits is about 100 KB, so anything this big is not one of ours.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Largest other bundle file read (MiniLM-L6's float ONNX is ~90 MB).
pub const MAX_BUNDLE_FILE_BYTES: u64 = 2 << 30;

/// The size cap of bundle file `name`: [`MAX_MANIFEST_BYTES`] for the manifest and its
/// signature, [`MAX_BUNDLE_FILE_BYTES`] for the rest.
pub fn max_file_bytes(name: &str) -> u64 {
    if name == MANIFEST_FILE || name == crate::signature::SIGNATURE_FILE {
        MAX_MANIFEST_BYTES
    } else {
        MAX_BUNDLE_FILE_BYTES
    }
}

/// Reads `path`, which must be a regular file (after symlinks) of at most `limit` bytes:
/// a FIFO would block the reader forever and `/dev/zero` would fill memory, so both are
/// refused before a byte is read (the file is opened non-blocking and checked with
/// `fstat`, so it cannot be swapped between the check and the read).
pub fn read_regular_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", file_type_name(&meta.file_type())),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes, the most read from a bundle file"),
        )
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

fn file_type_name(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

/// Reads bundle file `name` from `dir` within its size cap ([`max_file_bytes`]).
pub(crate) fn read_bundle_file(dir: &Path, name: &str) -> Result<Vec<u8>> {
    read_regular_file(&dir.join(name), max_file_bytes(name)).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            BundleError::MissingFile {
                dir: dir.to_path_buf(),
                file: name.to_string(),
            }
        } else {
            BundleError::Io {
                dir: dir.to_path_buf(),
                file: name.to_string(),
                cause: e,
            }
        }
    })
}

/// Lowercase hex sha256 of `bytes`, as recorded in [`Manifest::files`].
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes a complete bundle to `dir`, all or nothing, and returns the manifest written
/// (with `format_version` set — [`MIN_BUNDLE_FORMAT_VERSION`] without variants,
/// [`BUNDLE_FORMAT_VERSION`] with — and `files` and variant hashes filled in).
///
/// Everything goes to a fresh temporary directory next to `dir` first (files fsynced,
/// `manifest.json` last, directory fsynced); then it is renamed into place ([`StagedDir`]). If `dir`
/// already exists it is renamed aside, the new one renamed in, and the old one removed:
/// at no point is `dir` a mix of old and new files or a partial bundle (between the two
/// renames it is briefly absent). An existing `dir` is only replaced when it is a bundle
/// (has [`MANIFEST_FILE`]) or empty; anything else is refused. `files` must contain
/// [`MODEL_FILE`] and [`TOKENIZER_FILE`] and only plain file names.
pub fn write_bundle(
    dir: &Path,
    mut manifest: Manifest,
    files: &[(&str, &[u8])],
) -> Result<Manifest> {
    let invalid = |field: &'static str, problem: String| BundleError::InvalidManifest {
        dir: dir.to_path_buf(),
        field,
        problem,
    };
    manifest.format_version = if manifest.ngrams.is_some() {
        BUNDLE_FORMAT_VERSION
    } else if manifest.variants.is_empty() {
        MIN_BUNDLE_FORMAT_VERSION
    } else {
        VARIANTS_FORMAT_VERSION
    };
    manifest.files.clear();
    for (name, bytes) in files {
        check_file_name(name).map_err(|p| invalid("files", p))?;
        if manifest
            .files
            .insert(name.to_string(), sha256_hex(bytes))
            .is_some()
        {
            return Err(invalid("files", format!("{name} given twice")));
        }
    }
    for required in [MODEL_FILE, TOKENIZER_FILE] {
        if !manifest.files.contains_key(required) {
            return Err(invalid("files", format!("{required} is required")));
        }
    }
    let hashes = manifest.files.clone();
    for v in &mut manifest.variants {
        v.sha256 = hashes.get(&v.file).cloned().unwrap_or_default();
    }
    manifest.check_fields().map_err(|(f, p)| invalid(f, p))?;
    // Compact JSON: a 150-label manifest with reference logits is 2x smaller than
    // pretty-printed, which matters for int8 bundles of ~1 MB (`jq .` reads it fine).
    let mut manifest_json =
        serde_json::to_vec(&manifest).map_err(|e| BundleError::ManifestParse {
            dir: dir.to_path_buf(),
            problem: format!("cannot serialise: {e}"),
        })?;
    manifest_json.push(b'\n');

    let dir_err = |problem: String| BundleError::BundleDir {
        dir: dir.to_path_buf(),
        problem,
    };
    if dir.file_name().is_none() {
        return Err(dir_err("path has no final component".into()));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(dir_err(
            "exists and is not a directory; not replacing it".into(),
        ));
    }
    // Only a bundle is ever replaced: a directory of anything else (the user's files, a
    // checkpoint) is refused, not moved aside and deleted.
    if dir.is_dir() && !dir.join(MANIFEST_FILE).is_file() {
        let non_empty = fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true);
        if non_empty {
            return Err(dir_err(format!(
                "is a non-empty directory that is not a bundle (no {MANIFEST_FILE}); not replacing it"
            )));
        }
    }
    let staged_err = |e: crate::atomic::StageError| {
        let path = e.path.display();
        let cause = e.cause;
        dir_err(match e.step {
            Step::NoFileName => "path has no final component".into(),
            Step::CreateParent => format!("cannot create parent {path}: {cause}"),
            Step::CreateStaging => format!("cannot create {path}: {cause}"),
            Step::SyncStaged => format!("writing {path}: {cause}"),
            Step::MoveOldAside => format!("moving the old bundle aside: {cause}"),
            Step::MoveNewIn => format!("moving the new bundle in: {cause}"),
            Step::RemoveOld => format!("removing the old bundle {path}: {cause}"),
            Step::SyncParent => format!("fsync {path}: {cause}"),
        })
    };
    let stage = StagedDir::new(dir).map_err(staged_err)?;
    let tmp = stage.path();
    let staged = (|| -> io::Result<()> {
        for (name, bytes) in files {
            write_synced(&tmp.join(name), bytes)?;
        }
        let mut json = manifest_json;
        json.push(b'\n');
        write_synced(&tmp.join(MANIFEST_FILE), &json)
    })();
    if let Err(e) = staged {
        return Err(dir_err(format!("writing {}: {e}", tmp.display())));
    }
    stage.commit().map_err(staged_err)?;
    Ok(manifest)
}

/// Current UTC time as RFC 3339 (`2024-05-01T12:34:56Z`), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_from_unix(secs)
}

fn rfc3339_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let mut m = Manifest::new("test", "tiny", vec!["a".into(), "b".into()], 16);
        m.metrics = serde_json::json!({"accuracy": 0.9});
        m
    }

    fn write_sample(dir: &Path) -> Manifest {
        write_bundle(
            dir,
            manifest(),
            &[
                (MODEL_FILE, b"onnx bytes"),
                (TOKENIZER_FILE, b"{\"tok\":1}"),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rejection_rule_round_trips_and_old_manifests_load() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundle");
        let mut m = manifest();
        let mut rule = crate::rejection::RejectionRule::new(0.42, None);
        rule.criterion = "in-scope false rejection <= 1%".into();
        rule.val_in_scope_accuracy = Some(0.97);
        m.rejection = Some(rule.clone());
        let files: &[(&str, &[u8])] = &[(MODEL_FILE, b"onnx"), (TOKENIZER_FILE, b"{}")];
        let written = write_bundle(&dir, m.clone(), files).unwrap();
        assert_eq!(written.rejection.as_ref(), Some(&rule));
        assert_eq!(Bundle::read(&dir).unwrap().manifest().rejection, Some(rule));
        // A manifest written before the field existed still loads, with no rule.
        let old = tmp.path().join("old");
        write_sample(&old);
        let text = fs::read_to_string(old.join(MANIFEST_FILE)).unwrap();
        assert!(!text.contains("rejection"));
        assert_eq!(Bundle::read(&old).unwrap().manifest().rejection, None);
        // A rule naming a label the model does not have is refused.
        m.rejection = Some(crate::rejection::RejectionRule::new(
            0.3,
            Some("oos".into()),
        ));
        let err = write_bundle(&tmp.path().join("bad"), m, files).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::InvalidManifest {
                    field: "rejection",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn labels_the_link_cannot_carry_are_refused() {
        // Written and read alike: a name over the wire's limit would reach the host cut.
        let tmp = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8])] = &[(MODEL_FILE, b"onnx"), (TOKENIZER_FILE, b"{}")];
        let mut m = manifest();
        m.labels[0] = "x".repeat(protocol::MAX_LABEL_LEN);
        write_bundle(&tmp.path().join("fits"), m.clone(), files).unwrap();
        m.labels[0] = "é".repeat(protocol::MAX_LABEL_LEN / 2 + 1);
        let err = write_bundle(&tmp.path().join("long"), m, files).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::InvalidManifest {
                    field: "labels",
                    ..
                }
            ),
            "{err}"
        );
        let fits = tmp.path().join("fits").join(MANIFEST_FILE);
        let text = fs::read_to_string(&fits).unwrap();
        let long = "x".repeat(protocol::MAX_LABEL_LEN + 1);
        fs::write(
            &fits,
            text.replace(&"x".repeat(protocol::MAX_LABEL_LEN), &long),
        )
        .unwrap();
        let err = Bundle::read(tmp.path().join("fits")).unwrap_err();
        assert!(err.to_string().contains("bytes; the serial link"), "{err}");
    }

    #[test]
    fn manifest_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundle");
        let written = write_sample(&dir);
        assert_eq!(written.files.len(), 2);
        assert_eq!(written.files[MODEL_FILE], sha256_hex(b"onnx bytes"));
        let read = Bundle::read(&dir).unwrap();
        assert_eq!(read.manifest(), &written);
        let verified = read.verify().unwrap();
        assert_eq!(verified.model_bytes(), b"onnx bytes");
        assert_eq!(verified.tokenizer_bytes(), b"{\"tok\":1}");
    }

    #[test]
    fn unknown_fields_and_missing_optional_fields_are_tolerated() {
        let tmp = tempfile::tempdir().unwrap();
        let json = serde_json::json!({
            "format_version": 1, "name": "n", "labels": ["x"], "max_len": 8,
            "signature": "from a later version", "int8": {"model": "model.int8.onnx"}
        });
        fs::write(tmp.path().join(MANIFEST_FILE), json.to_string()).unwrap();
        let read = Bundle::read(tmp.path()).unwrap();
        assert_eq!(read.manifest().preset, "");
        // No files listed: verification names what is missing.
        let err = read.verify().unwrap_err().to_string();
        assert!(err.contains("model.onnx is not listed"), "{err}");
    }

    #[test]
    fn tampered_file_is_a_sha256_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        write_sample(&dir);
        let path = dir.join(MODEL_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 0x01;
        fs::write(&path, bytes).unwrap();
        let err = Bundle::read(&dir).unwrap().verify().unwrap_err();
        assert!(matches!(err, BundleError::HashMismatch { ref file, .. } if file == MODEL_FILE));
        let msg = err.to_string();
        assert!(
            msg.contains("file model.onnx: sha256 mismatch (manifest "),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        write_sample(&dir);
        fs::remove_file(dir.join(TOKENIZER_FILE)).unwrap();
        let msg = Bundle::read(&dir)
            .unwrap()
            .verify()
            .unwrap_err()
            .to_string();
        assert!(msg.ends_with(": missing file tokenizer.json"), "{msg}");

        fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
        let msg = Bundle::read(&dir).unwrap_err().to_string();
        assert!(msg.ends_with(": missing file manifest.json"), "{msg}");
    }

    #[test]
    fn bad_format_version_is_rejected_before_shape_checks() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join(MANIFEST_FILE),
            r#"{"format_version": 7, "entirely": "different"}"#,
        )
        .unwrap();
        let err = Bundle::read(tmp.path()).unwrap_err();
        assert!(matches!(
            err,
            BundleError::UnsupportedVersion { found: 7, .. }
        ));
        let msg = err.to_string();
        assert!(
            msg.ends_with("manifest.json: unsupported format_version 7 (this device reads 1..=3)"),
            "{msg}"
        );
    }

    #[test]
    fn path_traversal_names_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        for evil in [
            "../model.onnx",
            "/etc/passwd",
            "sub/model.onnx",
            "..",
            "manifest.json",
        ] {
            let mut m = manifest();
            m.files.insert(MODEL_FILE.into(), sha256_hex(b""));
            m.files.insert(TOKENIZER_FILE.into(), sha256_hex(b""));
            m.files.insert(evil.into(), sha256_hex(b""));
            fs::write(
                tmp.path().join(MANIFEST_FILE),
                serde_json::to_string(&m).unwrap(),
            )
            .unwrap();
            let err = Bundle::read(tmp.path()).unwrap_err();
            assert!(
                matches!(err, BundleError::InvalidManifest { field: "files", .. }),
                "{evil}: {err}"
            );
            // The writer refuses them too.
            let w = write_bundle(
                &tmp.path().join("w"),
                manifest(),
                &[(MODEL_FILE, b""), (TOKENIZER_FILE, b""), (evil, b"")],
            );
            assert!(w.is_err(), "{evil}");
        }
    }

    #[test]
    fn insane_fields_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = manifest();
        m.labels.clear();
        let err = write_bundle(
            &tmp.path().join("x"),
            m,
            &[(MODEL_FILE, b""), (TOKENIZER_FILE, b"")],
        );
        assert!(err.unwrap_err().to_string().contains("field labels"));
        let mut m = manifest();
        m.max_len = 1;
        fs::write(
            tmp.path().join(MANIFEST_FILE),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        let msg = Bundle::read(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("field max_len: 1 is outside"), "{msg}");
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn write_over_existing_bundle_leaves_a_complete_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        write_sample(&dir);
        fs::write(dir.join("stale.txt"), b"left from before").unwrap();
        let mut m = manifest();
        m.name = "second".into();
        write_bundle(
            &dir,
            m,
            &[
                (MODEL_FILE, b"new model"),
                (TOKENIZER_FILE, b"new tok"),
                ("extra.bin", b"x"),
            ],
        )
        .unwrap();
        let v = Bundle::read(&dir).unwrap().verify().unwrap();
        assert_eq!(v.manifest().name, "second");
        assert_eq!(v.model_bytes(), b"new model");
        assert!(
            !dir.join("stale.txt").exists(),
            "old directory content must be gone"
        );
        // No temporary or old directories left next to it.
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["b".to_string()]);
    }

    #[test]
    fn failed_write_keeps_the_old_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        let first = write_sample(&dir);
        let r = write_bundle(&dir, manifest(), &[(MODEL_FILE, b"only the model")]);
        assert!(r.is_err());
        let read = Bundle::read(&dir).unwrap();
        assert_eq!(read.manifest(), &first);
        read.verify().unwrap();
    }

    #[test]
    fn variants_bump_the_format_and_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        // Without variants: format 1 and one implicit float variant in model.onnx.
        let dir = tmp.path().join("f");
        let m = write_sample(&dir);
        assert_eq!(m.format_version, 1);
        let list = m.variant_list();
        assert_eq!((list.len(), list[0].name.as_str()), (1, FLOAT_VARIANT));
        assert_eq!(m.default_variant_name(), FLOAT_VARIANT);
        // With variants: format 2, hashes filled in, references kept.
        let mut m = manifest();
        m.variants = vec![
            VariantEntry {
                name: "weights-int8".into(),
                file: MODEL_FILE.into(),
                sha256: String::new(),
                external_data: vec!["w.bin".into()],
                expected_accuracy: Some(0.9),
                description: String::new(),
            },
            VariantEntry {
                name: "int8-compute".into(),
                file: "c.onnx".into(),
                sha256: String::new(),
                external_data: vec!["w.bin".into()],
                expected_accuracy: None,
                description: String::new(),
            },
        ];
        m.default_variant = Some("weights-int8".into());
        m.reference = vec![ReferenceText {
            text: "hi".into(),
            outputs: [(
                "weights-int8".to_string(),
                ReferenceOutput {
                    label_index: 1,
                    logits: vec![0.0, 1.0],
                },
            )]
            .into(),
        }];
        let dir = tmp.path().join("q");
        let files: [(&str, &[u8]); 4] = [
            (MODEL_FILE, b"m"),
            ("c.onnx", b"c"),
            ("w.bin", b"w"),
            (TOKENIZER_FILE, b"t"),
        ];
        let written = write_bundle(&dir, m.clone(), &files).unwrap();
        assert_eq!(written.format_version, 2);
        assert_eq!(written.variants[1].sha256, sha256_hex(b"c"));
        let v = Bundle::read(&dir).unwrap().verify().unwrap();
        assert_eq!(v.manifest(), &written);
        assert_eq!(v.file_bytes("w.bin"), Some(&b"w"[..]));
        assert!(v
            .manifest()
            .variant("float")
            .unwrap_err()
            .contains("weights-int8, int8-compute"));
        // A variant whose file is not in the bundle is refused when writing.
        let mut bad = m.clone();
        bad.variants[1].file = "missing.onnx".into();
        let e = write_bundle(&tmp.path().join("x"), bad, &files).unwrap_err();
        assert!(e.to_string().contains("missing.onnx is not listed"), "{e}");
        let mut bad = m;
        bad.default_variant = Some("int4".into());
        let e = write_bundle(&tmp.path().join("x"), bad, &files).unwrap_err();
        assert!(e.to_string().contains("field default_variant"), "{e}");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
