//! `tools train`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use host::pipeline::{run as run_job, TrainJob};
use host::preset::Preset;

use super::{check_val_fraction, ColumnArgs, PretrainedArgs, RecipeArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Training data: .csv/.tsv with a header row, or .jsonl with {"text":..,"label":..}.
    #[arg(long, value_name = "FILE")]
    train: PathBuf,
    /// Validation data (same format). Without it, a stratified share of --train is held out.
    #[arg(long, value_name = "FILE")]
    val: Option<PathBuf>,
    /// Share of each class held out for validation when --val is not given.
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    val_fraction: f64,
    /// Checkpoint directory to write (model.safetensors, config.json, tokenizer.json, logs,
    /// plots): a new or empty directory, or with --force an existing checkpoint. Built
    /// beside it and renamed into place when training ends.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace --out if it already holds a checkpoint. A directory that is not a
    /// checkpoint (or holds an input of this command) is never replaced or written into.
    #[arg(long)]
    force: bool,
    /// Size preset: `tiny`, `small`, `minilm`, or a path to a preset .json (see
    /// models/presets/). Default: `tiny`, or `minilm` (fine-tuning defaults) with --init.
    #[arg(long, value_name = "NAME|FILE")]
    preset: Option<String>,
    #[command(flatten)]
    pretrained: PretrainedArgs,
    /// Use this tokenizer.json instead of training a WordPiece vocabulary.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    columns: ColumnArgs,
}

impl Args {
    /// Threads when `--threads` is not given: 1 for small hidden sizes (their matmuls are
    /// too small to split across cores profitably), otherwise all cores.
    pub fn default_threads(&self) -> Option<usize> {
        self.pretrained
            .default_threads(&self.recipe, self.preset.as_deref())
    }

    fn preset_name(&self) -> String {
        self.pretrained.preset_name(self.preset.as_deref())
    }
}

pub fn run(a: Args) -> Result<()> {
    a.pretrained.check(&a.recipe)?;
    check_val_fraction(a.val_fraction)?;
    let p = a.recipe.apply(Preset::get(&a.preset_name())?);
    let options = a.pretrained.options(a.recipe.options(&p, !a.quiet));
    let job = TrainJob {
        train: a.train,
        val: a.val,
        val_fraction: a.val_fraction,
        columns: a.columns.columns(),
        out: a.out.clone(),
        preset: p,
        tokenizer: a.tokenizer,
        init: a.pretrained.init,
        options,
        force: a.force,
    };
    let summary = run_job(&job).context("training failed")?;
    let o = &summary.outcome;
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} epoch {} of {}: validation accuracy {:.4}, macro-F1 {:.4}; {:.1} s; checkpoint {}",
            if job.options.keep_last {
                "kept last"
            } else {
                "best"
            },
            o.best_epoch,
            o.epochs_run,
            o.best_val_accuracy,
            o.best_val_macro_f1,
            o.seconds,
            a.out.display()
        );
    }
    Ok(())
}
