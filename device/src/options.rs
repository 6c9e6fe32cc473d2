//! How an engine is built: every knob of the engine, its fusions, its plans and its matmul
//! kernels, as one value ([`EngineOptions`]) whose [`Default`] is the device's normal
//! behaviour.
//!
//! The library never reads the environment. A program decides the options once (the
//! `device` binary: from its flags, and from the `DEVICE_*` environment variables below,
//! which its `main` reads and hands to [`EngineOptions::from_env_vars`]) and passes them
//! down to every engine it loads.
//!
//! | variable | option | effect |
//! |---|---|---|
//! | `DEVICE_TRACT_OPS` (set) | [`FusionOptions::tract_ops`] | tract's own ops, none of the fusions |
//! | `DEVICE_F32_DENSE=0` | [`FusionOptions::dense`] = false | tract's matmuls for the f32 dense layers |
//! | `DEVICE_I8_DENSE=0` | [`FusionOptions::dense_i8`] = false | tract's matmuls for the int8 dense layers |
//! | `DEVICE_SYMBOLIC_ONLY` (set) | [`PlanOptions::symbolic_only`] | only the symbolic plan |
//! | `DEVICE_FIXED_PLANS` (set) | [`PlanOptions::fixed_plans`] | fixed-length plans without the race |
//! | `DEVICE_PLAN_MEMORY_MB=N` | [`PlanOptions::plan_memory_mb`] | the fixed-length plans' memory budget |
//! | `DEVICE_LENGTH_BUCKETS=8,16,…` | [`PlanOptions::length_buckets`] | the fixed-length plans' lengths |
//! | `DEVICE_F32_KERNELS=auto\|tract\|shape` | [`KernelOptions::f32`] | f32 matmul kernels on AVX-512 |
//! | `DEVICE_I8_KERNELS=auto\|tract\|zmm` | [`KernelOptions::i8`] | int8 matmul tile on AVX-512 VNNI |

use crate::engine::{LENGTH_BUCKETS, PLAN_MEMORY_MB};
use crate::matmul_kernels::{KernelKnob, F32, I8};
pub use crate::matmul_kernels::{KernelOptions, Policy};
pub use crate::optimise::FusionOptions;

/// How an engine is built (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Apply tract's `f32_to_f16` transform (pays only where the CPU computes in fp16
    /// natively: see [`crate::engine::native_fp16`]). The fused kernels are f32, so an f16
    /// engine runs none of them whatever [`Self::fusion`] says.
    pub f16: bool,
    /// Which of the device's fusions run ([`crate::optimise`]).
    pub fusion: FusionOptions,
    /// Which plans the engine builds and how it picks between them.
    pub plans: PlanOptions,
    /// Which matmul kernels tract runs ([`crate::matmul_kernels`]).
    pub kernels: KernelOptions,
}

/// Which plans an engine builds (see [`crate::engine`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Only the symbolic plan: no fixed-length plans for single texts (less memory and
    /// load time, slower single-text queries; for comparison and benchmarks).
    pub symbolic_only: bool,
    /// Serve every bucket's texts from its fixed-length plan without first timing it
    /// against the symbolic plan (for comparison and benchmarks).
    pub fixed_plans: bool,
    /// Megabytes (decimal) the fixed-length plans may hold together beside the symbolic
    /// plan (default [`PLAN_MEMORY_MB`]; 0: none); see `Engine::route`.
    pub plan_memory_mb: usize,
    /// Sequence lengths with their own fixed-shape plan for batch-1 queries (default
    /// [`LENGTH_BUCKETS`]; those above the model's position count, and 0, are skipped).
    pub length_buckets: Vec<usize>,
    /// Routes decided earlier on this CPU (`device tune` stores them with the installed
    /// model): `(bucket length, shortest length its fixed plan serves)`, `len + 1` for
    /// none. A bucket listed here is not raced again, so loading is deterministic and
    /// faster; buckets not listed race on first use (or in [`crate::Engine::prepare`]).
    pub routes: Vec<(usize, usize)>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            symbolic_only: false,
            fixed_plans: false,
            plan_memory_mb: PLAN_MEMORY_MB,
            length_buckets: LENGTH_BUCKETS.to_vec(),
            routes: Vec::new(),
        }
    }
}

/// Set (to anything) to run tract's own ops instead of the fused ones
/// ([`FusionOptions::tract_ops`]).
pub const TRACT_OPS_ENV: &str = "DEVICE_TRACT_OPS";
/// `0` keeps tract's matmuls for the f32 dense layers ([`FusionOptions::dense`]).
pub const DENSE_ENV: &str = "DEVICE_F32_DENSE";
/// `0` keeps tract's matmuls for the int8 dense layers ([`FusionOptions::dense_i8`]).
pub const DENSE_I8_ENV: &str = "DEVICE_I8_DENSE";
/// Set (to anything) to build only the symbolic plan ([`PlanOptions::symbolic_only`]).
pub const SYMBOLIC_ONLY_ENV: &str = "DEVICE_SYMBOLIC_ONLY";
/// Set (to anything) to skip the race of each fixed-length plan against the symbolic plan
/// ([`PlanOptions::fixed_plans`]).
pub const FIXED_PLANS_ENV: &str = "DEVICE_FIXED_PLANS";
/// Whole megabytes of the fixed-length plans' budget ([`PlanOptions::plan_memory_mb`]).
pub const PLAN_MEMORY_ENV: &str = "DEVICE_PLAN_MEMORY_MB";
/// Comma-separated sequence lengths ([`PlanOptions::length_buckets`]).
pub const LENGTH_BUCKETS_ENV: &str = "DEVICE_LENGTH_BUCKETS";
/// `auto`, `tract` or `shape` ([`KernelOptions::f32`]).
pub const F32_KERNELS_ENV: &str = "DEVICE_F32_KERNELS";
/// `auto`, `tract` or `zmm` ([`KernelOptions::i8`]).
pub const I8_KERNELS_ENV: &str = "DEVICE_I8_KERNELS";

/// Every variable [`EngineOptions::from_env_vars`] looks up.
pub const ENV_VARS: [&str; 9] = [
    TRACT_OPS_ENV,
    DENSE_ENV,
    DENSE_I8_ENV,
    SYMBOLIC_ONLY_ENV,
    FIXED_PLANS_ENV,
    PLAN_MEMORY_ENV,
    LENGTH_BUCKETS_ENV,
    F32_KERNELS_ENV,
    I8_KERNELS_ENV,
];

impl EngineOptions {
    /// The defaults with the `DEVICE_*` variables of the module doc applied, as `var`
    /// answers them (`var(name)`: the variable's value, None when unset). A program's
    /// `main` passes a closure looking names up in its own environment. A value that
    /// does not parse (a budget that is not a whole number, an unknown kernel policy) is
    /// an error naming the variable, so a typo in a benchmark script does not silently
    /// time the default; a length that does not parse is skipped.
    pub fn from_env_vars(var: impl Fn(&str) -> Option<String>) -> Result<EngineOptions, String> {
        let mut options = EngineOptions::default();
        let set = |name: &str| var(name).is_some();
        let not_zero = |name: &str| var(name).is_none_or(|v| v.trim() != "0");
        options.fusion.tract_ops = set(TRACT_OPS_ENV);
        options.fusion.dense = not_zero(DENSE_ENV);
        options.fusion.dense_i8 = not_zero(DENSE_I8_ENV);
        options.plans.symbolic_only = set(SYMBOLIC_ONLY_ENV);
        options.plans.fixed_plans = set(FIXED_PLANS_ENV);
        if let Some(value) = var(PLAN_MEMORY_ENV) {
            options.plans.plan_memory_mb = value.trim().parse().map_err(|_| {
                format!("{PLAN_MEMORY_ENV}={value:?}: expected a whole number of megabytes")
            })?;
        }
        if let Some(value) = var(LENGTH_BUCKETS_ENV) {
            options.plans.length_buckets = parse_lengths(&value);
        }
        let policy = |name: &str, knob: &KernelKnob| match var(name) {
            None => Ok(Policy::Auto),
            Some(value) => knob.parse(&value).ok_or_else(|| {
                format!(
                    "{name}={value:?}: expected `auto`, `tract` or `{}`",
                    knob.always
                )
            }),
        };
        options.kernels.f32 = policy(F32_KERNELS_ENV, &F32)?;
        options.kernels.i8 = policy(I8_KERNELS_ENV, &I8)?;
        Ok(options)
    }
}

/// Comma-separated lengths, as `DEVICE_LENGTH_BUCKETS` gives them (what does not parse is
/// skipped).
pub fn parse_lengths(value: &str) -> Vec<usize> {
    value
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<EngineOptions, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EngineOptions::from_env_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn no_variables_are_the_defaults() {
        assert_eq!(from(&[]).unwrap(), EngineOptions::default());
        let d = EngineOptions::default();
        assert!(!d.f16 && !d.fusion.tract_ops && d.fusion.dense && d.fusion.dense_i8);
        assert!(!d.plans.symbolic_only && !d.plans.fixed_plans);
        assert_eq!(d.plans.plan_memory_mb, PLAN_MEMORY_MB);
        assert_eq!(d.plans.length_buckets, LENGTH_BUCKETS);
        assert_eq!(d.kernels, KernelOptions::default());
    }

    #[test]
    fn each_variable_sets_its_option() {
        let o = from(&[
            (TRACT_OPS_ENV, ""),
            (DENSE_ENV, " 0\n"),
            (DENSE_I8_ENV, "0"),
            (SYMBOLIC_ONLY_ENV, "0"),
            (FIXED_PLANS_ENV, "1"),
            (PLAN_MEMORY_ENV, " 7 "),
            (LENGTH_BUCKETS_ENV, "16, 64,x"),
            (F32_KERNELS_ENV, "shape"),
            (I8_KERNELS_ENV, "tract"),
        ])
        .unwrap();
        // Set to anything, even empty or 0, turns a switch on (as before).
        assert!(o.fusion.tract_ops && o.plans.symbolic_only && o.plans.fixed_plans);
        assert!(!o.fusion.dense && !o.fusion.dense_i8);
        assert_eq!(o.plans.plan_memory_mb, 7);
        assert_eq!(o.plans.length_buckets, [16, 64]);
        assert_eq!(o.kernels.f32, Policy::Always);
        assert_eq!(o.kernels.i8, Policy::Tract);
        assert!(from(&[(DENSE_ENV, "1")]).unwrap().fusion.dense);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = from(&[(PLAN_MEMORY_ENV, "lots")]).unwrap_err();
        assert!(e.contains(PLAN_MEMORY_ENV), "{e}");
        let e = from(&[(F32_KERNELS_ENV, "zmm")]).unwrap_err();
        assert!(e.contains(F32_KERNELS_ENV) && e.contains("shape"), "{e}");
        let e = from(&[(I8_KERNELS_ENV, "shape")]).unwrap_err();
        assert!(e.contains(I8_KERNELS_ENV) && e.contains("zmm"), "{e}");
    }

    /// The library reads no environment variable: the only readers are the binaries'
    /// `main`s, which hand their environment to [`EngineOptions::from_env_vars`].
    #[test]
    fn the_library_never_reads_the_environment() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut readers = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if path != src.join("bin") {
                        dirs.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // Split so this test's own source does not match.
                    for needle in [concat!("env::", "var"), concat!("env::", "vars")] {
                        if text.contains(needle) {
                            readers.push(format!("{}: {needle}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(readers.is_empty(), "{readers:#?}");
    }
}
