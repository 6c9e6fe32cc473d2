//! The engine's flags, shared by every subcommand (`device --plan-memory-mb 0 serve …` or
//! `device serve … --plan-memory-mb 0`), and the one place the binary turns its flags and
//! its `DEVICE_*` environment variables into [`EngineOptions`].

use device::EngineOptions;

/// Flags of the plans every engine of this process builds (each also has a `DEVICE_*`
/// variable; see the environment list of `--help`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Engine options")]
pub struct EngineArgs {
    /// Only the symbolic plan, no fixed-length plans for single texts: less memory and
    /// load time, slower short queries [env: DEVICE_SYMBOLIC_ONLY=1].
    #[arg(long, global = true)]
    pub symbolic_only: bool,

    /// Every length bucket on its fixed-length plan, without racing it against the
    /// symbolic plan first [env: DEVICE_FIXED_PLANS=1].
    #[arg(long, global = true)]
    pub fixed_plans: bool,

    /// Megabytes the fixed-length plans may hold beside the symbolic plan (each keeps its
    /// own copy of the weights; 0: the symbolic plan only) [default: 40] [env:
    /// DEVICE_PLAN_MEMORY_MB].
    #[arg(long, global = true, value_name = "MB")]
    pub plan_memory_mb: Option<usize>,

    /// The lengths with a fixed-length plan for single texts, comma-separated [default:
    /// 8,16,32,64] [env: DEVICE_LENGTH_BUCKETS].
    #[arg(long, global = true, value_name = "N,N,...", value_delimiter = ',')]
    pub length_buckets: Option<Vec<usize>>,
}

impl EngineArgs {
    /// The engine options: the `DEVICE_*` variables as `var` answers them (the process
    /// environment, read by `main`), then these flags on top.
    pub fn options(&self, var: impl Fn(&str) -> Option<String>) -> Result<EngineOptions, String> {
        let mut options = EngineOptions::from_env_vars(var)?;
        let plans = &mut options.plans;
        plans.symbolic_only |= self.symbolic_only;
        plans.fixed_plans |= self.fixed_plans;
        if let Some(mb) = self.plan_memory_mb {
            plans.plan_memory_mb = mb;
        }
        if let Some(lengths) = &self.length_buckets {
            plans.length_buckets = lengths.clone();
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn options(args: &[&str], vars: &[(&str, &str)]) -> EngineOptions {
        let cli =
            Cli::try_parse_from(std::iter::once("device").chain(args.iter().copied())).unwrap();
        let var = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        cli.engine.options(var).unwrap()
    }

    #[test]
    fn flags_win_over_variables_and_switches_add_up() {
        assert_eq!(options(&[], &[]), EngineOptions::default());
        let o = options(
            &["--plan-memory-mb", "3", "--length-buckets", "16,64"],
            &[
                ("DEVICE_PLAN_MEMORY_MB", "9"),
                ("DEVICE_LENGTH_BUCKETS", "8"),
            ],
        );
        assert_eq!(o.plans.plan_memory_mb, 3);
        assert_eq!(o.plans.length_buckets, [16, 64]);
        let o = options(&[], &[("DEVICE_PLAN_MEMORY_MB", "9")]);
        assert_eq!(o.plans.plan_memory_mb, 9);
        let o = options(&["--symbolic-only"], &[("DEVICE_FIXED_PLANS", "1")]);
        assert!(o.plans.symbolic_only && o.plans.fixed_plans);
    }
}
