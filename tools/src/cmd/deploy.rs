//! `tools deploy --to DIR`: install a bundle into a state directory on a mounted SD card
//! or NFS path, all or nothing, or roll back. The same code the board runs
//! (`device::install`): the copy is verified, loaded and self-tested before `current`
//! is switched.
//!
//! `tools deploy --serial PORT`: the same over the serial link to `device serve --state`
//! (docs/protocol.md section 8): the bundle is packed, sent in acknowledged chunks
//! (resuming what the board already holds), then installed and swapped in by the board.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bundle::signature::{TrustPolicy, TrustedKeys, ALLOW_UNSIGNED_WARNING};
use device::install::StateDir;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// State directory to install into (created if missing), e.g. the board's
    /// /var/lib/edge-classifier seen through the mounted SD card:
    /// /media/$USER/rootfs/var/lib/edge-classifier.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "serial",
        conflicts_with = "serial"
    )]
    to: Option<PathBuf>,
    /// Deploy over the serial link instead: the port of a board running
    /// `device serve --state DIR --trust KEY.pub` (which checks the signature itself;
    /// --trust is not needed here). Interrupted transfers resume where they stopped.
    #[arg(long, value_name = "PORT")]
    serial: Option<String>,
    /// Baud rate of --serial (must match `device serve --baud`).
    #[arg(long, value_name = "N", default_value_t = 115_200, requires = "serial")]
    baud: u32,
    /// With --serial: how long to wait for each chunk's acknowledgement, in milliseconds
    /// (a chunk is re-sent up to 5 times).
    #[arg(long, value_name = "MS", default_value_t = 2000, requires = "serial",
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Bundle directory to install: verified (signature, sha256), copied, verified again,
    /// loaded and self-tested with the device engine, then made current; the bundle that
    /// was current becomes previous.
    #[arg(long, value_name = "BUNDLE", required_unless_present_any = ["rollback", "status"])]
    bundle: Option<PathBuf>,
    /// Make the previous bundle current again (after checking it still verifies).
    #[arg(long, conflicts_with_all = ["bundle", "status"])]
    rollback: bool,
    /// Print the current and previous bundles (id and name) and exit.
    #[arg(long, conflicts_with_all = ["bundle", "serial"])]
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
    if let Some(port) = a.serial.clone() {
        return serial(a, &port);
    }
    let to = a.to.clone().context("--to or --serial is required")?;
    if a.status {
        let state = StateDir::open(&to)?;
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
            serde_json::json!({"state": to, "current": show(cur), "previous": show(prev)})
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
        let state = StateDir::open(&to)?;
        let (now, before) = state.rollback(&policy)?;
        println!(
            "{}: rolled back: current {now} (was {before})",
            to.display()
        );
        return Ok(());
    }
    let bundle = a.bundle.context("--bundle is required")?;
    let state = StateDir::create(&to)?;
    let start = Instant::now();
    let done = state
        .install(&bundle, &policy)
        .with_context(|| format!("deploy of {} to {}", bundle.display(), to.display()))?;
    let ms = start.elapsed().as_millis();
    if done.already_current {
        println!(
            "{}: bundle {} ({}) is already current; self-test: {} ({ms} ms)",
            to.display(),
            done.id,
            done.name,
            done.self_test
        );
    } else {
        println!(
            "{}: installed bundle {} ({}), {}; self-test: {}; previous: {} ({ms} ms)",
            to.display(),
            done.id,
            done.name,
            done.trust,
            done.self_test,
            done.replaced.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

/// `--serial PORT`: deploy or roll back over the link. Prints progress on stderr and one
/// JSON line on stdout.
fn serial(a: Args, port: &str) -> Result<()> {
    use host::link::deploy;
    use indicatif::{ProgressBar, ProgressStyle};

    let opts = host::link::LinkOptions {
        baud: a.baud,
        timeout: Duration::from_millis(a.timeout_ms),
        retries: 3,
    };
    let link = host::link::Link::open(port, opts)?;
    let before = link
        .handshake()
        .with_context(|| format!("handshake with the device on {port} failed"))?;
    eprintln!(
        "tools deploy: device on {port} serves {} (model sha256 {})",
        before.model_name,
        &before.model_sha256[..16]
    );
    if a.rollback {
        let (name, sha) = deploy::rollback(&link).context("rollback over the link")?;
        eprintln!(
            "tools deploy: rolled back: now serving {name} (model sha256 {})",
            &sha[..16]
        );
        println!(
            "{}",
            serde_json::json!({"rolled_back": true, "model_name": name, "model_sha256": sha,
                               "was": before.model_name})
        );
        return Ok(());
    }
    let bundle = a.bundle.context("--bundle is required")?;
    let archive = bundle::transfer::pack(&bundle)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("packing {}", bundle.display()))?;
    eprintln!(
        "tools deploy: sending {} ({} files, {} bytes) to {port} at {} baud",
        archive.name,
        archive.file_count,
        archive.bytes.len(),
        a.baud
    );
    let bar = ProgressBar::new(archive.bytes.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    let mut first = true;
    let outcome = deploy::deploy(&link, &archive, |offset| {
        if first {
            if offset > 0 {
                bar.suspend(|| {
                    eprintln!(
                        "tools deploy: the device holds {offset} bytes of this transfer; resuming"
                    )
                });
            }
            bar.set_position(offset);
            bar.reset_eta();
            first = false;
        } else {
            bar.set_position(offset);
        }
    });
    bar.finish_and_clear();
    let o = outcome.with_context(|| format!("deploy of {} over {port}", bundle.display()))?;
    let bytes_per_s = o.bytes_sent as f64 / o.transfer_s.max(1e-9);
    let raw = f64::from(a.baud) / 10.0;
    eprintln!(
        "tools deploy: device now serves {} (model sha256 {}); sent {} of {} bytes (resumed at {}) \
         in {:.2} s = {:.0} B/s = {:.1}% of the raw link rate ({:.0} B/s at {} baud); commit {:.2} s",
        o.model_name,
        &o.model_sha256[..16],
        o.bytes_sent,
        o.total_bytes,
        o.resumed_from,
        o.transfer_s,
        bytes_per_s,
        100.0 * bytes_per_s / raw,
        raw,
        a.baud,
        o.commit_s
    );
    let mut json = serde_json::to_value(&o)?;
    json["bytes_per_s"] = serde_json::json!(bytes_per_s);
    json["link_share"] = serde_json::json!(bytes_per_s / raw);
    json["was"] = serde_json::json!(before.model_name);
    println!("{json}");
    Ok(())
}
