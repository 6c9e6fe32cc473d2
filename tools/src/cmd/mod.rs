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
pub mod train;

use host::data::Columns;

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
