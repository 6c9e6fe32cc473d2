//! The model bundle format, defined once, by the device that reads it: the host writes
//! bundles through this crate and the board reads them through it, so neither side can
//! drift from the other. It has no inference or CLI dependencies, so linking it to write
//! a bundle does not pull in the runtime.
//!
//! ```text
//! Bundle::read(dir)      -> ReadBundle       manifest.json parsed; format_version, labels,
//!                                            max_len and file names checked
//!   signature::check_bundle(&read, policy)   manifest.sig against the trusted keys
//!   .verify()            -> VerifiedBundle   every listed file present, sha256 matches;
//!                                            holds the verified bytes
//! write_bundle(dir, manifest, files)         all-or-nothing, through `atomic`
//! ```
//!
//! | module | job |
//! |---|---|
//! | [`format`] | `manifest.json`, the reading stages, [`write_bundle`] |
//! | [`signature`] | ed25519 keys, `manifest.sig`, the trust policy |
//! | [`transfer`] | the archive a bundle travels in over the serial link |
//! | [`rejection`] | the out-of-scope rule a manifest may carry |
//! | [`variant`] | the names of the model's runnable forms |
//! | [`atomic`] | temp file, fsync, rename, directory fsync: the one way files are replaced |

#![forbid(unsafe_code)]

pub mod atomic;
pub mod error;
pub mod format;
pub mod rejection;
pub mod signature;
pub mod transfer;
pub mod variant;

pub use error::{BundleError, Result};
pub use format::{
    max_file_bytes, now_rfc3339, read_regular_file, sha256_hex, write_bundle, Bundle, Manifest,
    NgramSpec, ReadBundle, ReferenceOutput, ReferenceText, VariantEntry, VerifiedBundle,
    BUNDLE_FORMAT_VERSION, FLOAT_VARIANT, MANIFEST_FILE, MAX_BUNDLE_FILE_BYTES, MAX_MANIFEST_BYTES,
    MAX_MAX_LEN, MIN_BUNDLE_FORMAT_VERSION, MIN_MAX_LEN, MODEL_FILE, TOKENIZER_FILE,
    VARIANTS_FORMAT_VERSION,
};
pub use rejection::RejectionRule;
pub use signature::SIGNATURE_FILE;
pub use variant::{UnknownVariant, Variant};
