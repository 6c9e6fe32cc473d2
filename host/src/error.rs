//! The host library's error type: every message names what failed and where.

use std::path::PathBuf;

/// Errors from the host library.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Bad labelled data: `file:line: problem` (line omitted when not tied to one).
    #[error("{}{}: {problem}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data {
        path: PathBuf,
        line: Option<u64>,
        problem: String,
    },
    // The cause is part of the message, not a `source`: anyhow's `{:#}` would print it
    // a second time (the same for every variant below that shows its cause).
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Candle(candle_core::Error),
    #[error("checkpoint {path}: {problem}")]
    Checkpoint { path: PathBuf, problem: String },
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error("export: {0}")]
    Export(String),
    /// An output the command may not write (see `checkpoint::check_output`).
    #[error("output {}: {problem}", path.display())]
    Output { path: PathBuf, problem: String },
    #[error("{0}")]
    Invalid(String),
}

impl From<candle_core::Error> for HostError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(e)
    }
}

impl From<bundle::atomic::StageError> for HostError {
    fn from(e: bundle::atomic::StageError) -> Self {
        match e.step {
            bundle::atomic::Step::NoFileName => Self::Output {
                path: e.path,
                problem: "has no final path component".into(),
            },
            _ => Self::io(e.path, e.cause),
        }
    }
}

impl From<bundle::UnknownVariant> for HostError {
    fn from(e: bundle::UnknownVariant) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl HostError {
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
    pub fn data(path: impl Into<PathBuf>, line: Option<u64>, problem: impl Into<String>) -> Self {
        Self::Data {
            path: path.into(),
            line,
            problem: problem.into(),
        }
    }
}

pub type Result<T, E = HostError> = std::result::Result<T, E>;
