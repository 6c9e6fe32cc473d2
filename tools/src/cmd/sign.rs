//! `tools sign`: sign an existing bundle (e.g. one changed after export).

use std::path::PathBuf;

use anyhow::{Context, Result};
use bundle::signature::{sign_bundle, SecretKey};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle directory to sign. Its sha256 sums are checked first; then manifest.sig is
    /// written (atomically, replacing any previous signature) for the exact bytes of its
    /// manifest.json.
    #[arg(long, value_name = "BUNDLE")]
    bundle: PathBuf,
    /// Secret key file (NAME.key from `tools keygen`).
    #[arg(long, value_name = "NAME.key")]
    key: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let key = SecretKey::load(&a.key)?;
    let sig = sign_bundle(&a.bundle, &key)
        .with_context(|| format!("signing bundle {}", a.bundle.display()))?;
    println!(
        "bundle {}: signed by key {} ({})",
        a.bundle.display(),
        sig.key_id,
        bundle::signature::SIGNATURE_FILE
    );
    Ok(())
}
