//! On-board runtime: loads a model bundle with tract, tokenises exactly as training did,
//! classifies text.
//!
//! A bundle goes through named stages, each its own type, so a half-prepared one cannot
//! be used (the same idea as tract's inference model → typed → optimised → runnable):
//!
//! ```text
//! Bundle::read(dir)      -> ReadBundle      manifest.json parsed; format_version, labels,
//!                                           max_len and file names checked
//!   .verify()            -> VerifiedBundle  every listed file present, sha256 matches;
//!                                           holds the verified model and tokenizer bytes
//! Engine::load(&v)       -> Engine          tract plan optimised once (symbolic batch, seq)
//! TextEncoder::from_bundle(&v)              the bundle's exact tokenizer.json, max_len
//! Classifier::load(&v)   -> Classifier      ready: classify(text) -> Prediction
//! ```
//!
//! ```no_run
//! # fn main() -> Result<(), device::DeviceError> {
//! let bundle = device::Bundle::read("/opt/model")?.verify()?;
//! let classifier = device::Classifier::load(&bundle)?;
//! let p = classifier.classify("the cat sat on the mat")?;
//! println!("{} {:.2}", p.label, p.confidence);
//! # Ok(()) }
//! ```
//!
//! The bundle format (manifest, reading and verifying, writing, signatures, the serial
//! archive) is the `bundle` crate (`device/bundle/`), which the host writes through; its
//! reading stages are re-exported here. The host also encodes its training data through
//! [`tokenize::TextEncoder`], so the tokenisation is defined once, here.

pub mod classify;
pub mod engine;
pub mod error;
pub mod fused_ops;
#[cfg(unix)]
pub mod install;
pub mod lines;
pub mod matmul_kernels;
pub mod ngrams;
pub mod optimise;
pub mod options;
pub mod serve;
pub mod tokenize;
pub mod variant;

pub use bundle::RejectionRule;
pub use bundle::{
    sha256_hex, write_bundle, Bundle, BundleError, Manifest, ReadBundle, VerifiedBundle,
    BUNDLE_FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE,
};
pub use classify::{
    max_abs_diff, softmax, Classifier, ClassifyOptions, LabelScore, Prediction, RejectReason,
    TokenWeight, UNKNOWN_LABEL,
};
pub use engine::Engine;
pub use error::{DeviceError, Result};
pub use options::EngineOptions;
pub use tokenize::{Batch, Encoded, TextEncoder};
