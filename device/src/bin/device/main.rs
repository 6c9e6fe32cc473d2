//! `device`: the board's command line, a thin front end over the `device` library.
//!
//! Errors go to stderr as one readable chain (no backtrace) with a non-zero exit code;
//! results go to stdout as one JSON object per line.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use device::lines::{BoundedLines, Line, MAX_LINE_BYTES};
use device::{Classifier, ClassifyOptions, EngineOptions, Prediction};

mod bench;
mod engine_args;
mod serve;
mod trust;
mod tune;

/// Offline text classifier for small boards: runs a model bundle written by the host.
#[derive(Debug, Parser)]
#[command(name = "device", version, after_help = ENVIRONMENT)]
struct Cli {
    #[command(flatten)]
    engine: engine_args::EngineArgs,

    #[command(subcommand)]
    command: Command,
}

/// The environment variables `main` reads into the engine options (the library reads
/// none); a flag given on the command line wins over its variable.
const ENVIRONMENT: &str = "\
Environment (engine options, read once at start; defaults are the fast ones; a flag wins over
its variable):
  DEVICE_F32_DENSE=0                 tract's matmuls for the f32 dense layers (x·W + b with constant
                                     W) instead of the packed tiles used on AVX-512 CPUs and aarch64
  DEVICE_I8_DENSE=0                  tract's matmuls for the int8 dense layers of int8-compute
                                     variants instead of the int8 tiles used on AVX-512 VNNI and
                                     aarch64 CPUs
  DEVICE_F32_KERNELS=auto|tract|shape
                                     f32 matmul kernels on AVX-512 CPUs: `auto` picks them by
                                     shape on cores with one 512-bit FMA port (tall zmm tiles
                                     for weight matrices, 256-bit ones for small products),
                                     `tract` keeps tract's choice, `shape` picks by shape on
                                     every AVX-512 core
  DEVICE_I8_KERNELS=auto|tract|zmm   int8 matmul tile on AVX-512 VNNI CPUs: `auto` runs the zmm
                                     16x16 tile on AMD cores where both sides fill it, `tract`
                                     keeps tract's choice (16x16 on dual-port cores only),
                                     `zmm` forces the 16x16 on every VNNI core
  DEVICE_FIXED_PLANS=1               every length bucket on its fixed-length plan (no race
                                     against the symbolic plan); --fixed-plans
  DEVICE_LENGTH_BUCKETS=8,16,32,64   the lengths with a fixed-length plan for single texts (each
                                     serves the lengths above the one before, from the length
                                     its race with the symbolic plan gives); --length-buckets
  DEVICE_PLAN_MEMORY_MB=40           megabytes the fixed-length plans may hold beside the
                                     symbolic plan (each plan keeps its own copy of the
                                     weights; a bucket whose plan would not fit stays on the
                                     symbolic plan; 0: the symbolic plan only); --plan-memory-mb
  DEVICE_SYMBOLIC_ONLY=1             only the symbolic plan (less memory, slower short queries);
                                     --symbolic-only
  DEVICE_TRACT_OPS=1                 tract's own ops instead of every fusion of the device
                                     (attention, LayerNorm, Softmax, GELU, (De)QuantizeLinear,
                                     dense layers, additions; the list: device::optimise)";

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify texts, printing one JSON line per input.
    ///
    /// Each line is {"text", "answer", "label", "label_index", "confidence", "top_k":
    /// [{"label", "p"}], "top_tokens": [{"token", "weight"}], "inference_us", "rejected"},
    /// plus "reason" when the answer is "unknown": "empty" for an empty or whitespace-only
    /// text (not classified; label "unknown"), "rule" when the bundle's rejection rule
    /// applies (label and confidence are then the best guess). Texts come from the TEXT
    /// arguments, or, when there are none, from stdin, one per line. An input that is not
    /// valid UTF-8, longer than 65536 bytes, or fails to classify prints {"line": N,
    /// "error": "..."} and processing continues.
    ///
    /// Exit status: 0 when at least one input was classified (or there was none); 1 on an
    /// error that stops the command (bundle, variant, reading stdin); 2 on bad usage; 3
    /// when there were inputs and every one failed (each has its error line).
    Classify(ClassifyArgs),
    /// Answer the serial protocol (docs/protocol.md, docs/link.md) on a serial port, and
    /// push a Result frame for each line of local input. Runs until killed.
    Serve(serve::ServeArgs),
    /// Time every model variant of a bundle on this board, keep the fastest whose outputs
    /// match the manifest's reference outputs, and record the choice next to the bundle
    /// (variant-choice.json; a read-only bundle directory is reported, not an error).
    Tune(tune::TuneArgs),
    /// Per-query latency of bundles and variants as JSON lines (benchmark suite).
    #[command(hide = true)]
    BenchLatency(bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
struct ClassifyArgs {
    #[command(flatten)]
    source: trust::SourceArgs,

    #[command(flatten)]
    trust: trust::TrustArgs,

    /// Number of best labels to report in "top_k", with their probabilities.
    #[arg(long, value_name = "N", default_value_t = 3)]
    top_k: usize,

    /// Number of input tokens with the highest attention weight to report in "top_tokens".
    #[arg(long, value_name = "N", default_value_t = 3)]
    top_tokens: usize,

    /// Model variant to run: `float`, `weights-int8`, `int8-compute` (or `NAME+f16`,
    /// `weights-int8+int8-act`: its dense layers in int8, the activations quantised per token).
    /// Default: the choice recorded by `device tune`, else measured now on first load
    /// (when the bundle has more than one variant) and recorded.
    #[arg(long, value_name = "NAME")]
    variant: Option<String>,

    /// Texts to classify; when absent, read stdin line by line.
    #[arg(value_name = "TEXT")]
    texts: Vec<String>,
}

/// The `answer` of a rejected text.
const UNKNOWN: &str = device::UNKNOWN_LABEL;

/// Exit status of `device classify` when there were inputs and none could be classified.
const EXIT_ALL_FAILED: u8 = 3;

/// One output line for a classified text.
#[derive(Serialize)]
struct Classified<'a> {
    text: &'a str,
    /// The decision: the label, or `unknown` when the bundle's rejection rule applies
    /// (`label` and `confidence` are then the best guess).
    answer: &'a str,
    #[serde(flatten)]
    prediction: &'a Prediction,
}

/// One output line for an input that could not be classified.
#[derive(Serialize)]
struct Failed {
    line: usize,
    error: String,
}

fn main() -> ExitCode {
    device::engine::configure_allocator();
    let cli = Cli::parse();
    // The one place the engine's environment variables are read: every engine this
    // process loads gets these options.
    let engine = match cli
        .engine
        .options(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    {
        Ok(options) => options,
        Err(e) => {
            eprintln!("device: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Classify(args) => match classify(args, &engine) {
            Ok(Tally {
                answered: 0,
                failed,
            }) if failed > 0 => {
                eprintln!("device: error: none of the {failed} inputs could be classified");
                return ExitCode::from(EXIT_ALL_FAILED);
            }
            other => other.map(|_| ()),
        },
        Command::Serve(args) => serve::run(args, engine),
        Command::Tune(args) => tune::run(args, &engine),
        Command::BenchLatency(args) => bench::run(args, &engine),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How many inputs got an answer and how many an error line.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    answered: usize,
    failed: usize,
}

fn classify(args: ClassifyArgs, engine: &EngineOptions) -> Result<Tally> {
    let classifier = trust::open(&args.source, &args.trust, |v| {
        tune::load_selected(v, args.variant.as_deref(), engine)
    })?
    .with_options(ClassifyOptions {
        top_k: args.top_k,
        top_tokens: args.top_tokens,
    });
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut tally = Tally::default();

    if !args.texts.is_empty() {
        for (i, text) in args.texts.iter().enumerate() {
            if text.len() > MAX_LINE_BYTES {
                fail(&mut out, &mut tally, i + 1, too_long(text.len() as u64))?;
            } else {
                emit(&mut out, &mut tally, &classifier, i + 1, text)?;
            }
        }
        out.flush()?;
        return Ok(tally);
    }

    // A stream of texts (like `device serve`): every plan is made before the first one
    // is read, so no text pays for one. Texts on the command line make only what they use.
    let started = std::time::Instant::now();
    let routes = classifier.engine().prepare()?;
    eprintln!(
        "device: plans ready in {:.0} ms ({})",
        started.elapsed().as_secs_f64() * 1e3,
        device::serve::describe_routes(&routes)
    );
    let mut lines = BoundedLines::new(io::stdin().lock(), MAX_LINE_BYTES);
    let mut line = 0;
    while let Some(next) = lines.next_line().context("reading stdin")? {
        line += 1;
        match next {
            Line::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => emit(&mut out, &mut tally, &classifier, line, text)?,
                Err(e) => fail(&mut out, &mut tally, line, format!("not valid UTF-8: {e}"))?,
            },
            Line::TooLong { bytes } => fail(&mut out, &mut tally, line, too_long(bytes))?,
        }
        // Flush per line so a pipe reader sees each answer as it is made.
        out.flush()?;
    }
    out.flush()?;
    Ok(tally)
}

fn too_long(bytes: u64) -> String {
    format!("line is {bytes} bytes, longer than {MAX_LINE_BYTES} bytes: skipped")
}

/// Writes an error line for input `line`.
fn fail(out: &mut impl Write, tally: &mut Tally, line: usize, error: String) -> Result<()> {
    tally.failed += 1;
    write_json(out, &Failed { line, error })
}

/// Classifies one text and writes its JSON line (or an error line).
fn emit(
    out: &mut impl Write,
    tally: &mut Tally,
    classifier: &Classifier,
    line: usize,
    text: &str,
) -> Result<()> {
    match classifier.classify(text) {
        Ok(prediction) => {
            tally.answered += 1;
            write_json(
                out,
                &Classified {
                    text,
                    answer: if prediction.rejected {
                        UNKNOWN
                    } else {
                        &prediction.label
                    },
                    prediction: &prediction,
                },
            )
        }
        Err(e) => fail(out, tally, line, e.to_string()),
    }
}

fn write_json(out: &mut impl Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value).context("writing JSON")?;
    out.write_all(b"\n")?;
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == io::ErrorKind::BrokenPipe)
    })
}
