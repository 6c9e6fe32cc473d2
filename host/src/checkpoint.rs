//! A training checkpoint: a directory with `model.safetensors`, `config.json` and the
//! exact `tokenizer.json` the model was trained with (plus logs and plots).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::config::ModelConfig;
use crate::error::{HostError, Result};
use crate::model::AttentionClassifier;

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = bundle::TOKENIZER_FILE;
/// Training summary (data, options, outcome), carried into the bundle manifest.
pub const TRAINING_FILE: &str = "training.json";
/// The int8 weights of a quantised checkpoint (instead of [`WEIGHTS_FILE`]; written by
/// [`crate::quantize`]).
pub const QUANT_WEIGHTS_FILE: &str = "model.int8.safetensors";
/// Activation ranges, calibration settings and the quantisation report of a quantised
/// checkpoint.
pub const QUANT_SPEC_FILE: &str = "quantization.json";

/// Writes `bytes` to `path` all-or-nothing ([`bundle::atomic::write_file_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    bundle::atomic::write_file_atomic(path, bytes).map_err(|e| HostError::io(path, e))
}

/// Puts a file at `path` all-or-nothing: `fill` writes a temporary file in the same
/// directory, which is fsynced and renamed over the target (the directory fsynced too);
/// if anything fails the temporary file is removed and `path` is untouched.
pub fn replace_atomically(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staged = bundle::atomic::StagedFile::new(path);
    fill(staged.path())?;
    staged.commit().map_err(|e| HostError::io(path, e))
}

/// What an output directory of ours holds: a command may only replace a directory that
/// already holds one of its own kind (and only with `--force`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A training checkpoint (`config.json` and `model.safetensors` or
    /// `model.int8.safetensors`): `tools train`, `distill`, `soup`, `quantize`.
    Checkpoint,
    /// A device bundle (`manifest.json`): `tools export`.
    Bundle,
}

impl OutputKind {
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Checkpoint => "checkpoint",
            OutputKind::Bundle => "bundle",
        }
    }

    /// Whether `dir` is an artefact of this kind (recognised by its files).
    pub fn recognises(self, dir: &Path) -> bool {
        match self {
            OutputKind::Checkpoint => {
                Checkpoint::is_checkpoint(dir) && dir.join(CONFIG_FILE).is_file()
            }
            OutputKind::Bundle => dir.join(bundle::MANIFEST_FILE).is_file(),
        }
    }
}

/// `p` made absolute with symlinks resolved as far as it exists (its parent, when `p`
/// itself does not exist yet), so two spellings of one place compare equal.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    if let (Some(parent), Some(name)) = (p.parent(), p.file_name()) {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(c) = parent.canonicalize() {
            return c.join(name);
        }
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Checks, before any work, that a command may write a `kind` to `out`:
///
/// * `out` must not be, nor contain, one of `inputs` (`(what, path)`, e.g. `("the
///   model", ckpt)`): replacing it would destroy what is being read;
/// * a missing `out` or an empty directory is fine;
/// * anything else must be a directory holding a `kind` of ours, and `force` given.
///
/// Nothing is deleted or written here; the output is then built beside `out` and renamed
/// into place ([`StagedDir`]).
pub fn check_output(
    out: &Path,
    kind: OutputKind,
    force: bool,
    inputs: &[(&str, &Path)],
) -> Result<()> {
    let refuse = |problem: String| HostError::Output {
        path: out.to_path_buf(),
        problem,
    };
    let target = resolved(out);
    for (what, input) in inputs {
        let input_at = resolved(input);
        if input_at == target {
            return Err(refuse(format!(
                "is {what} ({}); write the {} somewhere else",
                input.display(),
                kind.name()
            )));
        }
        if input_at.starts_with(&target) {
            return Err(refuse(format!(
                "contains {what} ({}); replacing it would delete it",
                input.display()
            )));
        }
    }
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(HostError::io(out, e)),
    };
    if !meta.is_dir() {
        return Err(refuse(format!(
            "exists and is not a directory; not replacing it with a {}",
            kind.name()
        )));
    }
    let mut entries: Vec<String> = std::fs::read_dir(out)
        .map_err(|e| HostError::io(out, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    if !kind.recognises(out) {
        entries.sort();
        let shown = entries
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if entries.len() > 5 { ", ..." } else { "" };
        return Err(refuse(format!(
            "is a non-empty directory that is not a {} (it holds {shown}{more}); not \
             writing into it: choose a new or empty directory",
            kind.name()
        )));
    }
    if !force {
        return Err(refuse(format!(
            "already holds a {}; pass --force to replace it",
            kind.name()
        )));
    }
    Ok(())
}

/// A new output directory built beside its destination and renamed into place whole;
/// its errors convert to [`HostError`].
pub use bundle::atomic::{replace_dir_atomically, StagedDir};

/// Every floating-point tensor's values are finite; otherwise an error naming the
/// first tensor that is not (a diverged training must not leave NaN weights behind).
pub fn check_finite<'a>(
    tensors: impl IntoIterator<Item = (&'a String, &'a Tensor)>,
    what: &Path,
) -> Result<()> {
    for (name, t) in tensors {
        if !t.dtype().is_float() {
            continue;
        }
        let values = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(HostError::Checkpoint {
                path: what.to_path_buf(),
                problem: format!("weights are not finite (tensor {name} holds {bad})"),
            });
        }
    }
    Ok(())
}

/// Saves the VarMap's tensors as `model.safetensors` in `dir`, atomically, after
/// checking they are finite.
pub fn save_weights(varmap: &VarMap, dir: &Path) -> Result<()> {
    {
        let vars = varmap.data().lock().map_err(|_| {
            HostError::Invalid("the weights are poisoned by an earlier panic".into())
        })?;
        let tensors: Vec<(String, Tensor)> = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        check_finite(tensors.iter().map(|(k, t)| (k, t)), dir)?;
    }
    replace_atomically(&dir.join(WEIGHTS_FILE), |tmp| Ok(varmap.save(tmp)?))
}

/// Saves named tensors as `model.safetensors` in `dir`, atomically, after checking they
/// are finite.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, dir: &Path) -> Result<()> {
    check_finite(tensors, dir)?;
    replace_atomically(&dir.join(WEIGHTS_FILE), |tmp| {
        Ok(candle_core::safetensors::save(tensors, tmp)?)
    })
}

/// An opened checkpoint directory (config and tokenizer read and checked): a float one
/// (`model.safetensors`) or a quantised one (`model.int8.safetensors` +
/// `quantization.json`, see [`crate::quantize`]).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub tokenizer_json: Vec<u8>,
    /// A quantised checkpoint (no float weights).
    pub quantized: bool,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let bad = |problem: String| HostError::Checkpoint {
            path: dir.to_path_buf(),
            problem,
        };
        if !dir.is_dir() {
            return Err(bad("not a directory".into()));
        }
        let quantized = !dir.join(WEIGHTS_FILE).is_file() && dir.join(QUANT_WEIGHTS_FILE).is_file();
        let weights = if quantized {
            QUANT_WEIGHTS_FILE
        } else {
            WEIGHTS_FILE
        };
        let mut needed = vec![weights, CONFIG_FILE, TOKENIZER_FILE];
        if quantized {
            needed.push(QUANT_SPEC_FILE);
        }
        for f in needed {
            if !dir.join(f).is_file() {
                return Err(bad(format!("missing {f}")));
            }
        }
        let text = std::fs::read_to_string(dir.join(CONFIG_FILE))
            .map_err(|e| HostError::io(dir.join(CONFIG_FILE), e))?;
        let config: ModelConfig =
            serde_json::from_str(&text).map_err(|e| bad(format!("{CONFIG_FILE}: {e}")))?;
        config
            .check()
            .map_err(|p| bad(format!("{CONFIG_FILE}: {p}")))?;
        let tokenizer_json = std::fs::read(dir.join(TOKENIZER_FILE))
            .map_err(|e| HostError::io(dir.join(TOKENIZER_FILE), e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer_json,
            quantized,
        })
    }

    /// True when `dir` looks like a checkpoint (has `model.safetensors` or
    /// `model.int8.safetensors`).
    pub fn is_checkpoint(dir: &Path) -> bool {
        dir.join(WEIGHTS_FILE).is_file() || dir.join(QUANT_WEIGHTS_FILE).is_file()
    }

    pub fn weights_path(&self) -> PathBuf {
        self.dir.join(WEIGHTS_FILE)
    }

    /// The model of a float checkpoint. A quantised one has no float weights: load any
    /// checkpoint with [`crate::quantize::load_model`] / [`crate::quantize::load_variant`].
    pub fn load_float(&self, device: &Device) -> Result<AttentionClassifier> {
        if self.quantized {
            return Err(HostError::Checkpoint {
                path: self.dir.clone(),
                problem: format!("a quantised checkpoint has no {WEIGHTS_FILE}"),
            });
        }
        AttentionClassifier::load(&self.config, &self.weights_path(), device).map_err(|e| {
            HostError::Checkpoint {
                path: self.dir.clone(),
                problem: format!("{WEIGHTS_FILE}: {e}"),
            }
        })
    }

    /// The training summary written by `tools train`, if present.
    pub fn training_summary(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join(TRAINING_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The text encoder for this checkpoint (same code the device runs).
    pub fn encoder(&self) -> Result<device::tokenize::TextEncoder> {
        Ok(
            device::tokenize::TextEncoder::from_bytes(&self.tokenizer_json, self.config.max_len)?
                .with_ngrams(self.config.ngrams),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt_like(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(WEIGHTS_FILE), b"w").unwrap();
        std::fs::write(dir.join(CONFIG_FILE), b"{}").unwrap();
    }

    #[test]
    fn outputs_are_only_replaced_when_ours_and_forced() {
        let t = tempfile::tempdir().unwrap();
        let new = t.path().join("new");
        check_output(&new, OutputKind::Checkpoint, false, &[]).unwrap();
        std::fs::create_dir(&new).unwrap();
        check_output(&new, OutputKind::Checkpoint, false, &[]).unwrap();

        let mine = t.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(mine.join("notes.txt"), b"x").unwrap();
        for kind in [OutputKind::Checkpoint, OutputKind::Bundle] {
            let e = check_output(&mine, kind, true, &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("not a {}", kind.name())), "{e}");
        }
        let file = t.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_output(&file, OutputKind::Bundle, true, &[]).is_err());

        let ck = t.path().join("ck");
        ckpt_like(&ck);
        let e = check_output(&ck, OutputKind::Checkpoint, false, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--force"), "{e}");
        check_output(&ck, OutputKind::Checkpoint, true, &[]).unwrap();
        // A checkpoint is not a bundle.
        assert!(check_output(&ck, OutputKind::Bundle, true, &[]).is_err());
        // Never the input, nor a directory holding it (under another spelling too).
        let other = t.path().join("other");
        ckpt_like(&other);
        let dotted = t.path().join(".").join("other");
        let e = check_output(
            &dotted,
            OutputKind::Checkpoint,
            true,
            &[("the model", &other)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is the model"), "{e}");
        let e = check_output(t.path(), OutputKind::Bundle, true, &[("the model", &other)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("contains the model"), "{e}");
    }

    #[test]
    fn a_staged_directory_replaces_all_or_nothing() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        ckpt_like(&out);
        // A failure leaves the old directory and no staging directory.
        let r: Result<()> = replace_dir_atomically(&out, |tmp| {
            std::fs::write(tmp.join("half"), b"x").unwrap();
            Err(HostError::Invalid("failed".into()))
        });
        assert!(r.is_err());
        assert!(out.join(WEIGHTS_FILE).is_file());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
        // Success replaces it whole.
        replace_dir_atomically(&out, |tmp| {
            std::fs::write(tmp.join("new"), b"y").map_err(|e| HostError::io(tmp, e))
        })
        .unwrap();
        assert!(out.join("new").is_file() && !out.join(WEIGHTS_FILE).exists());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn non_finite_weights_are_not_saved() {
        let t = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let mut w = HashMap::new();
        w.insert(
            "a".to_string(),
            Tensor::new(&[1f32, f32::NAN], &dev).unwrap(),
        );
        let e = save_tensors(&w, t.path()).unwrap_err().to_string();
        assert!(e.contains("not finite") && e.contains("tensor a"), "{e}");
        assert!(!t.path().join(WEIGHTS_FILE).exists());
        w.insert("a".to_string(), Tensor::new(&[1f32, 2.0], &dev).unwrap());
        save_tensors(&w, t.path()).unwrap();
    }
}
