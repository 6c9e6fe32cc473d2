//! One module per subcommand: its flags and a `run` that calls the host library.

pub mod bench;
pub mod calibrate;
pub mod classify;
pub mod deploy;
pub mod distill;
pub mod eval;
pub mod export;
pub mod keygen;
pub mod monitor;
pub mod quantize;
pub mod serial;
pub mod sign;
pub mod soup;
pub mod train;

use host::data::Columns;
use host::preset::Preset;
use host::train::TrainOptions;

/// Column flags shared by every command that reads labelled data.
#[derive(clap::Args, Debug, Clone)]
pub struct ColumnArgs {
    /// Column (CSV/TSV header) or key (JSONL) holding the text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_col: String,
    /// Column (CSV/TSV header) or key (JSONL) holding the label.
    #[arg(long, default_value = "label", value_name = "NAME")]
    pub label_col: String,
}

impl ColumnArgs {
    pub fn columns(&self) -> Columns {
        Columns {
            text: self.text_col.clone(),
            label: self.label_col.clone(),
        }
    }
}

/// Model-size and training-recipe flags shared by `tools train` and `tools distill` (for
/// distill they size and train the student). Each overrides the preset's value.
#[derive(clap::Args, Debug, Clone)]
pub struct RecipeArgs {
    /// Vocabulary size of the trained tokenizer (preset default).
    #[arg(long, value_name = "N")]
    pub vocab_size: Option<usize>,
    /// Hidden size d (preset default).
    #[arg(long, value_name = "N")]
    pub hidden: Option<usize>,
    /// Encoder layers (preset default).
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,
    /// Attention heads per layer (preset default).
    #[arg(long, value_name = "N")]
    pub heads: Option<usize>,
    /// Feed-forward inner size (preset default).
    #[arg(long, value_name = "N")]
    pub ffn: Option<usize>,
    /// Attention-pooling inner size (preset default).
    #[arg(long, value_name = "N")]
    pub pool_dim: Option<usize>,
    /// Maximum tokens per text, [CLS] and [SEP] included; longer texts are truncated
    /// (a distillation teacher keeps its own).
    #[arg(long, value_name = "N")]
    pub max_len: Option<usize>,
    /// Dropout probability (preset default).
    #[arg(long, value_name = "P")]
    pub dropout: Option<f32>,
    /// Maximum epochs (preset default); early stopping may end sooner.
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Examples per batch (preset default).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Peak learning rate after warm-up (preset default).
    #[arg(long, value_name = "F")]
    pub lr: Option<f64>,
    /// AdamW weight decay (not applied to biases and LayerNorm).
    #[arg(long, value_name = "F")]
    pub weight_decay: Option<f64>,
    /// Label smoothing of the (hard-label) cross-entropy loss.
    #[arg(long, value_name = "F")]
    pub label_smoothing: Option<f64>,
    /// Share of tokens replaced by [MASK] during training (word dropout; preset default).
    #[arg(long, value_name = "P")]
    pub token_dropout: Option<f64>,
    /// Decay of the weight average that is validated and saved (0 = off; preset default).
    #[arg(long, value_name = "F")]
    pub ema_decay: Option<f64>,
    /// Rows of the bag-of-n-grams table: hashed words, word pairs and character 2-5-grams
    /// of the text, averaged and added to the pooled vector (the model's third input,
    /// `ngram_ids`; bundle format 3; 0 = off; preset default).
    #[arg(long, value_name = "N")]
    pub ngram_buckets: Option<usize>,
    /// Most n-gram ids read per text (preset default).
    #[arg(long, value_name = "N")]
    pub ngram_max: Option<usize>,
    /// Share of a text's n-gram ids dropped at random in each training step (preset default).
    #[arg(long, value_name = "P")]
    pub ngram_dropout: Option<f64>,
    /// Weight of the branch losses of a model with a bag: the classifier also scores the
    /// pooled tokens alone and the bag alone (preset default).
    #[arg(long, value_name = "F")]
    pub branch_loss: Option<f64>,
    /// Learning-rate multiple of the bag's table, whose rows get sparse updates (preset
    /// default).
    #[arg(long, value_name = "F")]
    pub ngram_lr_scale: Option<f64>,
    /// Epochs without a better validation macro-F1 before stopping.
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
    /// Which epoch's (averaged) weights the checkpoint keeps: `best`, the best validation
    /// macro-F1; `last`, the last epoch run (for a validation split too small or too easy
    /// to tell epochs apart; the split still calibrates the rejection rule).
    #[arg(long, value_enum, default_value_t = Keep::Best)]
    pub keep: Keep,
    /// Maximum global gradient norm.
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub clip_norm: f64,
    /// Seed for initialisation, shuffling, dropout, augmentation and the validation split.
    #[arg(long, default_value_t = 42, value_name = "N")]
    pub seed: u64,
}

impl RecipeArgs {
    /// Whether a flag changes the encoder's shape (a pretrained encoder's is fixed).
    pub fn changes_shape(&self) -> bool {
        self.hidden.is_some() || self.layers.is_some() || self.heads.is_some() || self.ffn.is_some()
    }

    /// Threads when `--threads` is not given: 1 when the model (preset `preset`, or
    /// --hidden) is at most 128 wide (its matmuls are too small to split across cores
    /// profitably), otherwise all cores (`None`).
    pub fn default_threads(&self, preset: &str) -> Option<usize> {
        let hidden = self
            .hidden
            .or_else(|| Preset::get(preset).ok().map(|p| p.hidden))?;
        (hidden <= 128).then_some(1)
    }

    /// The preset with these flags applied (named `NAME-custom` when its shape changed).
    pub fn apply(&self, mut p: Preset) -> Preset {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { p.$f = v; } )* };
        }
        set!(
            vocab_size,
            hidden,
            layers,
            heads,
            ffn,
            pool_dim,
            max_len,
            dropout,
            epochs,
            batch_size,
            lr,
            weight_decay,
            label_smoothing,
            token_dropout,
            ema_decay,
            patience,
            ngram_buckets,
            ngram_max,
            ngram_dropout,
            branch_loss,
            ngram_lr_scale
        );
        if self.changes_shape() {
            p.name = format!("{}-custom", p.name);
        }
        p
    }

    /// Training options of preset `p` (flags applied) with these flags' clip norm and seed.
    pub fn options(&self, p: &Preset, progress: bool) -> TrainOptions {
        TrainOptions {
            epochs: p.epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            weight_decay: p.weight_decay,
            warmup_ratio: p.warmup_ratio,
            clip_norm: self.clip_norm,
            patience: p.patience,
            label_smoothing: p.label_smoothing,
            token_dropout: p.token_dropout,
            ngram_dropout: p.ngram_dropout,
            branch_loss: p.branch_loss,
            ngram_lr_scale: p.ngram_lr_scale,
            ema_decay: p.ema_decay,
            keep_last: self.keep == Keep::Last,
            seed: self.seed,
            progress,
            ..Default::default()
        }
    }
}

/// Which epoch's weights a training run saves (`--keep`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The epoch with the best validation macro-F1.
    Best,
    /// The last epoch run.
    Last,
}

/// Flags for starting from a pretrained encoder, shared by `tools train` (the model) and
/// `tools distill` (the student).
#[derive(clap::Args, Debug, Clone)]
pub struct PretrainedArgs {
    /// Start from a pretrained BERT-family encoder: a Hugging Face folder with
    /// config.json, model.safetensors and tokenizer.json or vocab.txt (e.g. all-MiniLM-L6-v2
    /// from tools/scripts/fetch_minilm.sh). Its sizes and tokenizer replace the preset's;
    /// the pooling head and classifier start fresh.
    #[arg(long, value_name = "DIR")]
    pub init: Option<std::path::PathBuf>,
    /// Layer-wise learning-rate decay when fine-tuning: encoder layer l of L trains at
    /// lr·F^(L−l), the embeddings at lr·F^(L+1), the head at lr (1 = off).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub layer_lr_decay: f64,
    /// Keep the word-embedding table fixed while fine-tuning (faster steps; the rows of
    /// words absent from the training data stay as pretrained).
    #[arg(long)]
    pub freeze_embeddings: bool,
}

impl PretrainedArgs {
    /// The preset: the one named, else `minilm` (fine-tuning defaults) with --init, else
    /// `tiny`.
    pub fn preset_name(&self, named: Option<&str>) -> String {
        match (named, &self.init) {
            (Some(p), _) => p.to_string(),
            (None, Some(_)) => "minilm".into(),
            (None, None) => "tiny".into(),
        }
    }

    /// Threads when `--threads` is not given: all cores for a pretrained encoder (`None`),
    /// else as [`RecipeArgs::default_threads`] says for the preset.
    pub fn default_threads(&self, recipe: &RecipeArgs, named: Option<&str>) -> Option<usize> {
        if self.init.is_some() {
            return None;
        }
        recipe.default_threads(&self.preset_name(named))
    }

    /// Refuses flags that cannot apply to a pretrained encoder, and a decay out of range.
    pub fn check(&self, recipe: &RecipeArgs) -> anyhow::Result<()> {
        if self.init.is_some() && recipe.changes_shape() {
            anyhow::bail!(
                "--hidden/--layers/--heads/--ffn cannot change a pretrained encoder (--init)"
            );
        }
        if !(self.layer_lr_decay > 0.0 && self.layer_lr_decay <= 1.0) {
            anyhow::bail!("--layer-lr-decay {} must be in (0, 1]", self.layer_lr_decay);
        }
        Ok(())
    }

    /// `options` with the fine-tuning flags set.
    pub fn options(&self, options: TrainOptions) -> TrainOptions {
        TrainOptions {
            layer_lr_decay: self.layer_lr_decay,
            freeze_embeddings: self.freeze_embeddings,
            ..options
        }
    }
}

/// `--val-fraction` must leave something on both sides.
/// `MODEL` + `suffix` beside the model directory (`runs/b/` → `runs/b.confusion.csv`), never
/// inside it.
pub fn beside(model: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    // `.` or `..` name no directory of their own: their full path does.
    let full;
    let model = if model.file_name().is_some() {
        model
    } else {
        full = std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf());
        &full
    };
    let name = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    model.with_file_name(format!("{name}{suffix}"))
}

pub fn check_val_fraction(f: f64) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&f) || f == 0.0 {
        anyhow::bail!("--val-fraction {f} must be in (0, 1)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn outputs_go_beside_the_model_directory() {
        let at = |m: &str| super::beside(Path::new(m), ".confusion.csv");
        assert_eq!(at("runs/b"), Path::new("runs/b.confusion.csv"));
        assert_eq!(at("runs/b/"), Path::new("runs/b.confusion.csv"));
        assert_eq!(at("b/"), Path::new("b.confusion.csv"));
        let here = std::fs::canonicalize(".").unwrap();
        let name = here.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            at("."),
            here.with_file_name(format!("{name}.confusion.csv"))
        );
    }
}
