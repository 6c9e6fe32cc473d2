//! `tools distill`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use host::distill::{run as run_job, DistillJob, StudentTokenizer};
use host::loss::KdParams;
use host::preset::Preset;
use host::train::TrainOptions;

use super::{check_val_fraction, ColumnArgs, PretrainedArgs, RecipeArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Teacher checkpoint directory (any checkpoint of ours: trained, fine-tuned or quantised).
    #[arg(long, value_name = "DIR")]
    teacher: PathBuf,
    /// Student size preset: `tiny`, `small`, `minilm`, or a path to a preset .json (see
    /// models/presets/). Default: `tiny`, or `minilm` (fine-tuning defaults) with --init.
    #[arg(long, value_name = "NAME|FILE")]
    student_preset: Option<String>,
    /// Training data: .csv/.tsv with a header row, or .jsonl with {"text":..,"label":..}.
    /// Every label must be one the teacher knows.
    #[arg(long, value_name = "FILE")]
    train: PathBuf,
    /// Validation data (same format). Without it, a stratified share of --train is held out.
    #[arg(long, value_name = "FILE")]
    val: Option<PathBuf>,
    /// Share of each class held out for validation when --val is not given.
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    val_fraction: f64,
    /// Student checkpoint directory to write (same layout and rules as `tools train`).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace --out if it already holds a checkpoint. A directory that is not a
    /// checkpoint (or holds an input of this command) is never replaced or written into.
    #[arg(long)]
    force: bool,
    /// Softmax temperature of the soft targets (and of the student in the soft term).
    #[arg(long, default_value_t = KdParams::default().temperature, value_name = "T")]
    temperature: f64,
    /// Weight of the teacher term; 1 - alpha weighs the hard-label cross-entropy.
    #[arg(long, default_value_t = KdParams::default().alpha, value_name = "A")]
    alpha: f64,
    /// Student tokenizer: `student` trains a WordPiece vocabulary of --vocab-size on the
    /// training texts (with --init: the pretrained encoder's tokenizer); `teacher` reuses
    /// the teacher's tokenizer.json (its vocabulary then sizes the student's embedding
    /// table: 30522 x d for MiniLM); `teacher-pruned` keeps only the teacher's tokens the
    /// training texts use (same tokens on them, a small table); or a tokenizer.json path.
    #[arg(
        long,
        default_value = "student",
        value_name = "student|teacher|teacher-pruned|FILE"
    )]
    tokenizer: StudentTokenizer,
    /// Perturbed copies of each training example (words dropped, masked, replaced,
    /// swapped), labelled by the teacher. 0 = none.
    #[arg(long, default_value_t = 0, value_name = "N")]
    augment: usize,
    /// Per-word probability of dropping and of masking in --augment copies (half of it
    /// for replacing with a random word and for swapping neighbours).
    #[arg(long, default_value_t = 0.1, value_name = "P")]
    augment_prob: f64,
    /// Batch size of the teacher's forward passes.
    #[arg(long, default_value_t = 64, value_name = "N")]
    teacher_batch_size: usize,
    /// Start the student's word embeddings from the teacher's: every token both
    /// vocabularies have takes the teacher's vector, projected onto its top principal
    /// axes when the student is narrower and rescaled to the student's initial spread
    /// (best with --tokenizer teacher-pruned, where every token is shared). Needs a
    /// float teacher checkpoint.
    #[arg(long)]
    teacher_embeddings: bool,
    /// The student's pretrained start (--init DIR: a student of the encoder's size,
    /// fine-tuned on the teacher's outputs; e.g. a MiniLM taught by a MiniLM).
    #[command(flatten)]
    pretrained: PretrainedArgs,
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
    /// Threads when `--threads` is not given: as `tools train` for the student (1 for
    /// hidden sizes ≤ 128), otherwise all cores.
    pub fn default_threads(&self) -> Option<usize> {
        self.pretrained
            .default_threads(&self.recipe, self.student_preset.as_deref())
    }

    fn preset_name(&self) -> String {
        self.pretrained.preset_name(self.student_preset.as_deref())
    }
}

pub fn run(a: Args) -> Result<()> {
    check_val_fraction(a.val_fraction)?;
    a.pretrained.check(&a.recipe)?;
    let p = a.recipe.apply(Preset::get(&a.preset_name())?);
    let kd = KdParams {
        temperature: a.temperature,
        alpha: a.alpha,
    };
    kd.validate()?;
    let options = TrainOptions {
        distill: Some(kd),
        ..a.pretrained.options(a.recipe.options(&p, !a.quiet))
    };
    let job = DistillJob {
        teacher: a.teacher,
        train: a.train,
        val: a.val,
        val_fraction: a.val_fraction,
        columns: a.columns.columns(),
        out: a.out.clone(),
        preset: p,
        tokenizer: a.tokenizer,
        options,
        augment: a.augment,
        augment_prob: a.augment_prob,
        teacher_batch_size: a.teacher_batch_size,
        teacher_embeddings: a.teacher_embeddings,
        init: a.pretrained.init,
        force: a.force,
    };
    let summary = run_job(&job).context("distillation failed")?;
    let o = &summary.train.outcome;
    let d = &summary.distillation;
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} epoch {} of {}: validation accuracy {:.4} (teacher {:.4}), macro-F1 {:.4}; {:.1} s (teacher {:.1} s); checkpoint {}",
            if job.options.keep_last { "kept last" } else { "best" },
            o.best_epoch,
            o.epochs_run,
            o.best_val_accuracy,
            d.teacher_val_accuracy,
            o.best_val_macro_f1,
            o.seconds,
            d.teacher_seconds,
            a.out.display()
        );
    }
    Ok(())
}
