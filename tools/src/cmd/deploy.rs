//! `tools deploy --to DIR`: install a bundle into a state directory on a mounted SD card
//! or NFS path, all or nothing, or roll back. The same code the board runs
//! (`device::install`): the copy is verified, loaded and self-tested before `current`
//! is switched.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use device::install::StateDir;
use device::signature::{TrustPolicy, TrustedKeys, ALLOW_UNSIGNED_WARNING};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// State directory to install into (created if missing), e.g. the board's
    /// /var/lib/edge-classifier seen through the mounted SD card:
    /// /media/$USER/rootfs/var/lib/edge-classifier.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Bundle directory to install: verified (signature, sha256), copied, verified again,
    /// loaded and self-tested with the device engine, then made current; the bundle that
    /// was current becomes previous.
    #[arg(long, value_name = "BUNDLE", required_unless_present_any = ["rollback", "status"])]
    bundle: Option<PathBuf>,
    /// Make the previous bundle current again (after checking it still verifies).
    #[arg(long, conflicts_with_all = ["bundle", "status"])]
    rollback: bool,
    /// Print the current and previous bundles (id and name) and exit.
    #[arg(long, conflicts_with = "bundle")]
    status: bool,
    /// Public key (NAME.pub) whose signatures are accepted; repeatable. Use the same key
    /// the board trusts (the service's --trust).
    #[arg(long = "trust", value_name = "FILE.pub")]
    trust: Vec<PathBuf>,
    /// Development mode: install without checking signatures (prints a WARNING). One of
    /// --trust or --allow-unsigned is required to install or roll back.
    #[arg(long, conflicts_with = "trust")]
    allow_unsigned: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.status {
        let state = StateDir::open(&a.to)?;
        let (cur, prev) = state.status();
        let show = |s: Option<device::install::LinkStatus>| match s {
            None => serde_json::Value::Null,
            Some(s) => serde_json::json!({
                "id": s.id,
                "name": s.name.as_ref().ok(),
                "error": s.name.as_ref().err(),
            }),
        };
        println!(
            "{}",
            serde_json::json!({"state": a.to, "current": show(cur), "previous": show(prev)})
        );
        return Ok(());
    }
    let policy = if a.allow_unsigned {
        eprintln!("tools deploy: {ALLOW_UNSIGNED_WARNING}");
        TrustPolicy::AllowUnsigned
    } else if a.trust.is_empty() {
        bail!("deploy needs --trust FILE.pub (the key the board trusts) or, for development, --allow-unsigned");
    } else {
        TrustPolicy::Require(TrustedKeys::load(&a.trust).context("loading --trust keys")?)
    };
    if a.rollback {
        let state = StateDir::open(&a.to)?;
        let (now, before) = state.rollback(&policy)?;
        println!(
            "{}: rolled back: current {now} (was {before})",
            a.to.display()
        );
        return Ok(());
    }
    let bundle = a.bundle.context("--bundle is required")?;
    let state = StateDir::create(&a.to)?;
    let start = Instant::now();
    let done = state
        .install(&bundle, &policy)
        .with_context(|| format!("deploy of {} to {}", bundle.display(), a.to.display()))?;
    let ms = start.elapsed().as_millis();
    if done.already_current {
        println!(
            "{}: bundle {} ({}) is already current; self-test: {} ({ms} ms)",
            a.to.display(),
            done.id,
            done.name,
            done.self_test
        );
    } else {
        println!(
            "{}: installed bundle {} ({}), {}; self-test: {}; previous: {} ({ms} ms)",
            a.to.display(),
            done.id,
            done.name,
            done.trust,
            done.self_test,
            done.replaced.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}
