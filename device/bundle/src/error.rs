//! The error of reading, checking and writing a bundle directory.
//!
//! Every variant names the bundle directory and the file or field, because on a board
//! the message on stderr is often all there is to debug with. The device's own error
//! (`device::DeviceError`) wraps this one unchanged, so the messages are the same
//! whichever crate reports them.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = BundleError> = std::result::Result<T, E>;

/// Everything that can go wrong between a bundle directory and its verified bytes.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
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
}
