//! Flags shared by every `device` command that loads a bundle: where it comes from
//! (`--bundle DIR` or `--state DIR`) and which signatures are trusted (`--trust`,
//! `--allow-unsigned`). Kept beside `main.rs` so other commands can flatten them.
//!
//! Trust policy (docs/deploy.md):
//! - `--trust FILE.pub` (repeatable): the bundle must carry a `manifest.sig` by one of
//!   these keys, or it is refused.
//! - `--allow-unsigned`: signatures are not checked; a WARNING line on stderr at every start.
//! - neither, with `--bundle`: the bundle loads (sha256 sums still checked) with a WARNING
//!   that it is unverified, so the quick start keeps working.
//! - neither, with `--state`: refused. A state directory is what a deployed board runs
//!   from, so the choice must be explicit there.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use bundle::signature::{open_verified, TrustPolicy, TrustedKeys, ALLOW_UNSIGNED_WARNING};
use device::install::{CurrentInfo, StateDir};
use device::VerifiedBundle;

/// Which bundle signatures are accepted.
#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// Public key file (NAME.pub from `tools keygen`) whose bundle signatures are
    /// accepted; repeatable. When given, the bundle must have a manifest.sig made with one
    /// of these keys, or it is refused.
    #[arg(long = "trust", value_name = "FILE.pub")]
    pub trust: Vec<PathBuf>,

    /// Development mode: do not check bundle signatures (sha256 sums are still checked).
    /// Prints a WARNING line on stderr at every start. Required instead of --trust to use
    /// an unsigned bundle from --state.
    #[arg(long, conflicts_with = "trust")]
    pub allow_unsigned: bool,
}

impl TrustArgs {
    /// The policy the flags ask for (None: neither flag), printing the development-mode
    /// warning for `--allow-unsigned`.
    pub fn policy(&self) -> Result<Option<TrustPolicy>> {
        if self.allow_unsigned {
            eprintln!("device: {ALLOW_UNSIGNED_WARNING}");
        }
        self.policy_quiet()
    }

    /// As [`policy`](Self::policy), without printing the warning (for a second use).
    pub fn policy_quiet(&self) -> Result<Option<TrustPolicy>> {
        if self.allow_unsigned {
            return Ok(Some(TrustPolicy::AllowUnsigned));
        }
        if self.trust.is_empty() {
            return Ok(None);
        }
        let keys = TrustedKeys::load(&self.trust).context("loading --trust keys")?;
        Ok(Some(TrustPolicy::Require(keys)))
    }
}

/// Where the bundle comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Bundle directory (manifest.json, model.onnx, tokenizer.json); its sha256 sums are
    /// checked before use, and its signature when --trust is given.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "state",
        conflicts_with = "state"
    )]
    pub bundle: Option<PathBuf>,

    /// State directory written by `tools deploy --to DIR` (or an install on the board):
    /// use its `current` bundle, falling back to `previous` (with a WARNING) if current
    /// does not verify or load. Needs --trust or --allow-unsigned.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

/// Opens the bundle the flags name, checked under the trust policy, and loads it with
/// `load`; prints one line on stderr saying which bundle is in use and how it was checked.
pub fn open<T>(
    source: &SourceArgs,
    trust: &TrustArgs,
    mut load: impl FnMut(&VerifiedBundle) -> Result<T>,
) -> Result<T> {
    let policy = trust.policy()?;
    if let Some(state) = &source.state {
        let Some(policy) = policy else {
            bail!(
                "--state {} needs --trust FILE.pub (or --allow-unsigned for development): \
                 a deployed board only runs bundles whose signature it checked",
                state.display()
            );
        };
        let dir = StateDir::open(state)?;
        let (t, info) =
            dir.open_current_with(&policy, |v| load(v).map_err(|e| format!("{e:#}")))?;
        report_state(state, &info);
        return Ok(t);
    }
    let bundle = source
        .bundle
        .as_deref()
        .context("--bundle or --state is required")?;
    let ctx = || format!("cannot load bundle {}", bundle.display());
    match policy {
        Some(policy) => {
            let (v, trust) = open_verified(bundle, &policy).with_context(ctx)?;
            eprintln!("device: bundle {} ({trust})", bundle.display());
            load(&v).with_context(ctx)
        }
        None => {
            eprintln!(
                "device: WARNING: bundle {}: signature not checked (no --trust FILE.pub given)",
                bundle.display()
            );
            let v = open_unchecked(bundle).with_context(ctx)?;
            load(&v).with_context(ctx)
        }
    }
}

fn open_unchecked(bundle: &Path) -> Result<VerifiedBundle> {
    Ok(open_verified(bundle, &TrustPolicy::AllowUnsigned)?.0)
}

fn report_state(state: &Path, info: &CurrentInfo) {
    eprintln!(
        "device: state {}: bundle {} name {:?} ({}; {})",
        state.display(),
        info.id,
        info.name,
        info.slot,
        info.trust
    );
}
