//! `tools`: the host-side command line. A thin clap front end over the `host` library.

mod cmd;
mod runtime;

use clap::{Parser, Subcommand};

/// Train, evaluate and export text classifiers for edge boards.
#[derive(Parser, Debug)]
#[command(name = "tools", version, about, long_about = None)]
struct Cli {
    /// Worker threads for candle and rayon. Both pools get the same number so they do not
    /// oversubscribe the CPU. Default: all cores, except `train` of a model with hidden
    /// size ≤ 128, which runs fastest on 1 thread (its matmuls are too small to split;
    /// docs/benchmarks.md).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a tokenizer and an attention classifier; writes a checkpoint directory.
    Train(Box<cmd::train::Args>),
    /// Distil a teacher checkpoint into a small student trained on its softened outputs.
    Distill(Box<cmd::distill::Args>),
    /// Print a classification report for a checkpoint or a bundle on labelled data.
    Eval(cmd::eval::Args),
    /// Choose the out-of-scope rejection threshold of a checkpoint or bundle on validation data.
    Calibrate(cmd::calibrate::Args),
    /// Average fine-tuned checkpoints of one model into a single, usually more accurate, one.
    Soup(cmd::soup::Args),
    /// Export a checkpoint to a device bundle (ONNX + tokenizer + manifest), self-checked.
    Export(cmd::export::Args),
    /// Quantise a float checkpoint to int8 (calibrated), report the loss, gate on accuracy.
    Quantize(cmd::quantize::Args),
    /// Make an ed25519 key pair (NAME.key, NAME.pub) for signing bundles.
    Keygen(cmd::keygen::Args),
    /// Sign an existing bundle with a secret key (writes manifest.sig).
    Sign(cmd::sign::Args),
    /// Install a bundle into a state directory (SD card, NFS) all or nothing, or roll back.
    Deploy(cmd::deploy::Args),
    /// Classify one text on a board running `device serve`, over its serial port.
    Classify(cmd::classify::Args),
    /// Print what a board pushes over its serial port (local results, errors), with label names.
    Monitor(cmd::monitor::Args),
    /// Latency / throughput / accuracy over the serial link (--serial) or in-process (--bundle).
    Bench(cmd::bench::Args),
}

fn main() {
    restore_sigpipe();
    let cli = Cli::parse();
    let threads = cli.threads.or(match &cli.command {
        Command::Train(a) => a.default_threads(),
        Command::Distill(a) => a.default_threads(),
        _ => None,
    });
    runtime::configure(threads);
    let result = match cli.command {
        Command::Train(a) => cmd::train::run(*a),
        Command::Distill(a) => cmd::distill::run(*a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Calibrate(a) => cmd::calibrate::run(a),
        Command::Soup(a) => cmd::soup::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Sign(a) => cmd::sign::run(a),
        Command::Deploy(a) => cmd::deploy::run(a),
        Command::Classify(a) => cmd::classify::run(a),
        Command::Monitor(a) => cmd::monitor::run(a),
        Command::Bench(a) => cmd::bench::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Lets a closed stdout end `tools` quietly, as it ends other Unix tools (`tools eval …
/// | head -1`): Rust ignores SIGPIPE, so every `println!` after the reader left would
/// panic with "failed printing to stdout: Broken pipe" (exit 101). With the default
/// disposition the process ends on the first write to the closed pipe, with the status
/// a shell reports as 141. `tools` writes to no other pipe or socket (the board link is
/// a serial device), so nothing else is affected.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resets one signal's disposition to its default, first thing in main,
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
