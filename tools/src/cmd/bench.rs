//! `tools bench`: latency, throughput and accuracy of classification over the serial
//! link (`--serial`) or in-process (`--bundle`), so the link's cost is visible.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use host::link::bench::{bench_link, bench_local, BenchData, BenchOptions, BenchReport};
use host::link::{Link, LinkOptions};

use super::ColumnArgs;

/// Most queries one run sends: every answer is kept for the report and the histogram.
const MAX_QUERIES: u64 = 10_000_000;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["serial", "bundle"])))]
pub struct Args {
    /// Serial port of the board running `device serve`.
    #[arg(long, value_name = "PORT")]
    serial: Option<String>,
    /// Measure in this process instead, with this bundle and the device runtime (no link).
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Texts to send (.csv/.tsv/.jsonl); with a label column, accuracy is reported too.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Number of queries, at most 10,000,000 (default: one per row); the data set is cycled
    /// when N is larger.
    #[arg(short = 'n', long = "n", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=MAX_QUERIES))]
    n: Option<u64>,
    /// Requests in flight at once (one thread each).
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// Baud rate (serial only); must match `device serve --baud`.
    #[arg(long, value_name = "N", default_value_t = 115_200)]
    baud: u32,
    /// Wait this long for each answer (serial only). A lost answer (bad CRC) becomes a
    /// timeout and is counted as an error; a damaged answer is never accepted.
    #[arg(long, value_name = "MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Re-send a query (fresh id) after a timeout or a Busy answer, up to N times
    /// (serial only). Default 0: every lost answer is counted as an error.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
    /// Latency histogram picture (SVG): round trip, device inference, wire lower bound.
    #[arg(long, value_name = "FILE", default_value = "bench_latency.svg")]
    histogram: PathBuf,
    /// Also write every query's outcome here, one JSON object per line
    /// ({"i","row","label","label_index","confidence","rtt_us","device_us","wire_us"} or {"i","row","error"}).
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    columns: ColumnArgs,
}

pub fn run(a: Args) -> Result<()> {
    // Where the results go is checked before the run, not after it.
    for (flag, path) in [
        ("--histogram", Some(&a.histogram)),
        ("--predictions", a.predictions.as_ref()),
    ] {
        if let Some(path) = path {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                anyhow::bail!("{flag} {}: no directory {}", path.display(), dir.display());
            }
        }
    }
    let data = BenchData::load(&a.data, &a.columns.columns())
        .with_context(|| format!("cannot read {}", a.data.display()))?;
    let opts = BenchOptions {
        n: a.n.map(|n| n as usize),
        concurrency: a.concurrency as usize,
        progress: !a.quiet && !a.json,
    };
    let mut device_stats = None;
    let report = if let Some(port) = &a.serial {
        let mut link = Link::open(
            port,
            LinkOptions {
                baud: a.baud,
                timeout: Duration::from_millis(a.timeout_ms),
                retries: a.retries.max(3),
            },
        )?;
        let info = link
            .handshake()
            .with_context(|| format!("handshake with the device on {port} failed"))?;
        link.set_retries(a.retries);
        let report = bench_link(&link, &info.labels, &data, &opts);
        link.set_retries(a.retries.max(3));
        match link.stats() {
            Ok(s) => device_stats = Some(s),
            Err(e) => eprintln!("bench: could not read device stats: {e}"),
        }
        report
    } else {
        let dir = a.bundle.as_ref().expect("clap group: serial or bundle");
        let classifier = device::Classifier::open(dir)
            .with_context(|| format!("cannot load bundle {}", dir.display()))?;
        let mut r = bench_local(&classifier, &data, &opts);
        r.target = dir.display().to_string();
        r
    };
    write_outputs(&a, &report)?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["data"] = serde_json::json!(a.data.display().to_string());
        v["histogram"] = serde_json::json!(a.histogram.display().to_string());
        if let Some(s) = device_stats {
            v["device_stats"] = serde_json::to_value(s)?;
        }
        println!("{v}");
    } else {
        print!("{}", report.to_text());
        if let Some(s) = device_stats {
            println!(
                "device stats: {} frames in, {} out, {} CRC failures, {} decode errors, {} queue drops, {} inferences (p50 {} µs, p99 {} µs)",
                s.frames_in, s.frames_out, s.crc_failures, s.decode_errors, s.queue_drops,
                s.inferences, s.latency_p50_us, s.latency_p99_us
            );
        }
        println!("latency histogram: {}", a.histogram.display());
    }
    Ok(())
}

fn write_outputs(a: &Args, r: &BenchReport) -> Result<()> {
    let (rtt, dev) = r.latencies();
    let round_trip = if r.mode == "serial" {
        "round trip"
    } else {
        "call (in-process)"
    };
    if let Some(p) = &a.predictions {
        let mut out = String::new();
        for s in &r.samples {
            out += &serde_json::to_string(s)?;
            out.push('\n');
        }
        host::checkpoint::write_atomic(p, out.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let marker = r.wire_p50_us.map(|w| ("wire lower bound (p50)", w));
    host::link::histogram::latency_histogram(
        &a.histogram,
        &format!("{} latency, {} queries", r.mode, r.n),
        &[(round_trip, &rtt), ("device inference", &dev)],
        marker,
    )
    .with_context(|| format!("cannot write {}", a.histogram.display()))?;
    Ok(())
}
