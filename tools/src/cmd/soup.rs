//! `tools soup`: average fine-tuned checkpoints into one (a "model soup").

use std::path::PathBuf;

use anyhow::{Context, Result};
use host::soup::{run as run_soup, Recipe, SoupJob};

use super::ColumnArgs;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipeArg {
    Uniform,
    Greedy,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A float checkpoint to put in the soup; give at least two. They must share
    /// config.json and tokenizer.json and should be fine-tuned from the same pretrained
    /// encoder with the same --seed (the same head initialisation), e.g. with different
    /// --token-dropout or --lr: such runs average into a model usually more accurate
    /// than each, with the same size and speed.
    #[arg(long = "ckpt", value_name = "DIR", required = true)]
    ckpts: Vec<PathBuf>,
    /// Checkpoint directory to write (model.safetensors, config.json, tokenizer.json,
    /// training.json with the soup's record, the rejection rule calibrated on --val).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace --out if it already holds a checkpoint. A directory that is not a
    /// checkpoint (or holds an input of this command) is never replaced or written into.
    #[arg(long)]
    force: bool,
    /// `greedy`: ingredients best-first by validation accuracy, each kept only if the
    /// soup's validation accuracy does not fall (Wortsman et al. 2022); `uniform`: the
    /// mean of all.
    #[arg(long, value_enum, default_value = "greedy")]
    recipe: RecipeArg,
    /// Validation data (.csv/.tsv/.jsonl) to measure ingredients and soup on and to
    /// calibrate the rejection rule. Default: the first checkpoint's validation data
    /// (then every checkpoint must have been trained on the same files and seed).
    #[arg(long, value_name = "FILE")]
    val: Option<PathBuf>,
    /// No per-ingredient lines.
    #[arg(long)]
    quiet: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    columns: ColumnArgs,
}

pub fn run(a: Args) -> Result<()> {
    let job = SoupJob {
        ingredients: a.ckpts.clone(),
        out: a.out.clone(),
        recipe: match a.recipe {
            RecipeArg::Uniform => Recipe::Uniform,
            RecipeArg::Greedy => Recipe::Greedy,
        },
        val: a.val.clone(),
        columns: a.columns.columns(),
        progress: !a.quiet,
        force: a.force,
    };
    let report = run_soup(&job).with_context(|| format!("making the soup {}", a.out.display()))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let kept = report.ingredients.iter().filter(|i| i.in_soup).count();
        println!(
            "soup of {kept} of {} checkpoints written to {}: validation accuracy {:.4}, macro-F1 {:.4} (best ingredient {:.4})",
            report.ingredients.len(),
            a.out.display(),
            report.val_accuracy,
            report.val_macro_f1,
            report
                .ingredients
                .iter()
                .map(|i| i.val_accuracy)
                .fold(f64::NAN, f64::max)
        );
    }
    Ok(())
}
