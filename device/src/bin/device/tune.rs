//! `device tune` and the variant choice of `device classify` (see `device::variant`).

use anyhow::{Context, Result};
use serde::Serialize;

use bundle::VerifiedBundle;
use device::variant::{self, Selection, TuneOptions};
use device::{Classifier, EngineOptions};

use crate::trust;

#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    #[command(flatten)]
    source: trust::SourceArgs,

    #[command(flatten)]
    trust: trust::TrustArgs,

    /// Untimed passes over the reference texts per variant before timing.
    #[arg(long, value_name = "N", default_value_t = 3)]
    warmup: usize,

    /// Timed passes over the reference texts per variant (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 5)]
    runs: usize,

    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct TuneOutput<'a> {
    #[serde(flatten)]
    report: &'a variant::TuneReport,
    record: String,
}

/// Times every variant of the bundle on this board, keeps the fastest that agrees with
/// the manifest's reference outputs, records the choice next to the bundle.
pub fn run(args: TuneArgs, engine: &EngineOptions) -> Result<()> {
    let options = TuneOptions {
        warmup: args.warmup,
        runs: args.runs,
    };
    let (report, record) = trust::open(&args.source, &args.trust, |v| {
        let report = variant::tune_with(v, options, engine)?;
        let record = variant::record(v, &report);
        Ok((report, record))
    })
    .context("tuning failed")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&TuneOutput {
                report: &report,
                record
            })?
        );
        return Ok(());
    }
    println!(
        "{:<20} {:>12} {:>10} {:>8} {:>14}  note",
        "variant", "median µs", "load ms", "agrees", "max logit diff"
    );
    for t in &report.timings {
        println!(
            "{:<20} {:>12.1} {:>10.1} {:>8} {:>14.2e}  {}",
            t.candidate,
            t.median_us,
            t.load_ms,
            if t.agrees { "yes" } else { "NO" },
            t.max_logit_diff,
            t.note
        );
    }
    for s in &report.skipped {
        println!("skipped {s}");
    }
    println!("chosen: {} ({record})", report.chosen.label());
    Ok(())
}

/// Loads the classifier `device classify` uses: `--variant` if given, else the
/// recorded or freshly measured choice (reported on stderr).
pub fn load_selected(
    bundle: &VerifiedBundle,
    variant_flag: Option<&str>,
    engine: &EngineOptions,
) -> Result<Classifier> {
    let Selection {
        choice,
        source,
        report,
        record,
    } = variant::select_with(bundle, variant_flag, TuneOptions::default(), engine)?;
    if source == "tuned" {
        if let Some(r) = &report {
            let times: Vec<String> = r
                .timings
                .iter()
                .map(|t| {
                    format!(
                        "{} {:.0} µs{}",
                        t.candidate,
                        t.median_us,
                        if t.agrees { "" } else { " (disagrees)" }
                    )
                })
                .collect();
            eprintln!(
                "device: first load: measured variants [{}]; using {}; {record}",
                times.join(", "),
                choice.label()
            );
        }
    }
    Ok(variant::load_with(bundle, &choice, engine)?)
}
