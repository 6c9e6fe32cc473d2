//! The one error type of the device crate.
//!
//! Every variant names what failed and with which input (bundle directory, file, field),
//! because on a board the message on stderr is often all there is to debug with. Bundle
//! format errors are the `bundle` crate's, wrapped unchanged.
//! Errors from tract and tokenizers are kept as rendered text: neither implements
//! `std::error::Error` in a form that can be stored as a `source`.

/// Result alias used throughout the crate.
pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

/// Everything that can go wrong between reading a bundle and returning a prediction.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Reading, checking or writing the bundle directory failed (messages as
    /// [`bundle::BundleError`] words them).
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),

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
