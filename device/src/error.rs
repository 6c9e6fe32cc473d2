//! The one error type of the device crate.
//!
//! Every variant names what failed and with which input (bundle directory, file, field),
//! because on a board the message on stderr is often all there is to debug with.
//! Errors from tract and tokenizers are kept as rendered text: neither implements
//! `std::error::Error` in a form that can be stored as a `source`.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

/// Everything that can go wrong between reading a bundle and returning a prediction.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A file of the bundle could not be read or written.
    /// (The cause is in the message and not a `source`, so an error chain printed with
    /// anyhow's `{:#}` shows it once.)
    #[error("bundle {}: file {file}: {cause}", .dir.display())]
    Io {
        dir: PathBuf,
        file: String,
        cause: std::io::Error,
    },

    /// The bundle directory itself is missing or unreadable.
    #[error("bundle {}: {problem}", .dir.display())]
    BundleDir { dir: PathBuf, problem: String },

    /// A file that must be present (the manifest or a file it lists) is absent.
    #[error("bundle {}: missing file {file}", .dir.display())]
    MissingFile { dir: PathBuf, file: String },

    /// `manifest.json` is not valid JSON or does not have the manifest's shape.
    #[error("bundle {}: manifest.json: {problem}", .dir.display())]
    ManifestParse { dir: PathBuf, problem: String },

    /// The manifest was written for a bundle format this device does not read.
    #[error(
        "bundle {}: manifest.json: unsupported format_version {found} (this device reads 1..={supported})",
        .dir.display()
    )]
    UnsupportedVersion {
        dir: PathBuf,
        found: u64,
        supported: u32,
    },

    /// A manifest field has a value the device cannot use.
    #[error("bundle {}: manifest.json: field {field}: {problem}", .dir.display())]
    InvalidManifest {
        dir: PathBuf,
        field: &'static str,
        problem: String,
    },

    /// A file's content does not match the sha256 recorded in the manifest.
    #[error(
        "bundle {}: file {file}: sha256 mismatch (manifest {expected}, file {actual})",
        .dir.display()
    )]
    HashMismatch {
        dir: PathBuf,
        file: String,
        expected: String,
        actual: String,
    },

    /// The tokenizer json could not be loaded or configured.
    #[error("{origin}: tokenizer: {problem}")]
    Tokenizer { origin: String, problem: String },

    /// Encoding one text failed.
    #[error("tokenizing text: {0}")]
    Encode(String),

    /// The ONNX model could not be parsed, optimised or planned by tract, or does not
    /// have the classifier's interface.
    #[error("{origin}: model: {problem}")]
    Model { origin: String, problem: String },

    /// Inputs given to the engine are inconsistent (lengths, mask values, ids out of range).
    #[error("engine input: {0}")]
    Input(String),

    /// tract failed while running the model, or returned outputs of the wrong shape.
    #[error("inference: {0}")]
    Inference(String),
}
