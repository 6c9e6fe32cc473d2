//! `tools`: the host-side command line. A thin clap front end over the `host` library.

mod cmd;
mod runtime;

use clap::{Parser, Subcommand};

/// Train, evaluate and export text classifiers for edge boards.
#[derive(Parser, Debug)]
#[command(name = "tools", version, about, long_about = None)]
struct Cli {
    /// Worker threads for candle and rayon (default: all cores). Both pools get the same
    /// number so they do not oversubscribe the CPU.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a tokenizer and an attention classifier; writes a checkpoint directory.
    Train(Box<cmd::train::Args>),
    /// Print a classification report for a checkpoint or a bundle on labelled data.
    Eval(cmd::eval::Args),
    /// Export a checkpoint to a device bundle (ONNX + tokenizer + manifest), self-checked.
    Export(cmd::export::Args),
}

fn main() {
    let cli = Cli::parse();
    runtime::configure(cli.threads);
    let result = match cli.command {
        Command::Train(a) => cmd::train::run(*a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Export(a) => cmd::export::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
