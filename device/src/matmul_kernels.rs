//! Which f32 matmul kernels tract runs on x86-64 cores with AVX-512 (issue #7).
//!
//! tract picks an f32 matmul kernel per matmul when it optimises a plan, from a ladder of
//! per-ISA "tiers" ([`tract_linalg::mmm_tiers`]). On AVX-512 cores its AMD and Intel cost
//! models were calibrated on cores with two 512-bit FMA ports (a Zen 5 desktop part for
//! AMD) and pick the zmm kernels (`avx512_mmm_f32_16x8`, ...). On a core with *one*
//! 512-bit FMA port (Zen 4 executes AVX-512 on 256-bit units; Intel client cores fuse
//! ports 0 and 1) a zmm FMA does no more work per cycle than two ymm FMAs, and on this
//! project's matmuls (a few to 64 rows, 128-1536 wide) the 256-bit `fma_mmm_f32_*`
//! kernels were faster: per-node profiles of the tiny preset at 12 tokens gave 32.4 →
//! 27.2 µs for the FFN matmul, 8.7 → 7.0 µs for a 128x128 projection (docs/benchmarks.md).
//! tract applies the same reasoning to its int8 VNNI tile (the zmm 16x16 only on
//! dual-port cores); this module extends it to f32.
//!
//! It does so through tract's own extension point: one more [`MmmTier`], registered with
//! `inventory` above tract's x86-64 tiers. For f32 accumulators on a single-port core it
//! answers with what tract's `fma` tier (its 256-bit cost model) would pick; otherwise it
//! has no opinion and tract's ladder decides as before. int8 kernels are never touched.
//! The choice is made when a plan is optimised, so [`set_policy`] must be called before
//! models are loaded; [`F32_KERNELS_ENV`] overrides it for comparisons.

use std::sync::atomic::{AtomicU8, Ordering};

/// Which f32 matmul kernels plans built from now on use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Kernels {
    /// 256-bit kernels on cores with one 512-bit FMA port, tract's choice elsewhere.
    Auto,
    /// tract's own choice everywhere.
    Tract,
    /// The 256-bit kernels on every AVX-512 core.
    Ymm,
}

/// Environment variable overriding the policy: `auto`, `tract` or `ymm`.
pub const F32_KERNELS_ENV: &str = "DEVICE_F32_KERNELS";

static POLICY: AtomicU8 = AtomicU8::new(0);

impl F32Kernels {
    /// Parses `auto`, `tract` or `ymm`.
    pub fn parse(s: &str) -> Option<F32Kernels> {
        match s.trim() {
            "auto" => Some(F32Kernels::Auto),
            "tract" => Some(F32Kernels::Tract),
            "ymm" => Some(F32Kernels::Ymm),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            F32Kernels::Auto => 0,
            F32Kernels::Tract => 1,
            F32Kernels::Ymm => 2,
        }
    }

    fn from_code(code: u8) -> F32Kernels {
        match code {
            1 => F32Kernels::Tract,
            2 => F32Kernels::Ymm,
            _ => F32Kernels::Auto,
        }
    }
}

/// Sets the policy for plans optimised from now on (process-wide).
pub fn set_policy(policy: F32Kernels) {
    POLICY.store(policy.code(), Ordering::Relaxed);
}

/// The policy in force.
pub fn policy() -> F32Kernels {
    F32Kernels::from_code(POLICY.load(Ordering::Relaxed))
}

/// Sets the policy from [`F32_KERNELS_ENV`] when it is set; an unknown value is an error
/// naming the variable, so a typo in a benchmark script does not silently time the default.
pub fn set_policy_from_env() -> Result<(), String> {
    match std::env::var(F32_KERNELS_ENV) {
        Ok(value) => match F32Kernels::parse(&value) {
            Some(policy) => {
                set_policy(policy);
                Ok(())
            }
            None => Err(format!(
                "{F32_KERNELS_ENV}={value:?}: expected `auto`, `tract` or `ymm`"
            )),
        },
        Err(_) => Ok(()),
    }
}

/// Whether plans optimised now get the 256-bit f32 kernels instead of tract's choice
/// (always false off x86-64 or without AVX-512, where tract's ladder has no zmm kernels).
pub fn ymm_f32_in_force() -> bool {
    imp::ymm_f32_in_force()
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{policy, F32Kernels};
    use tract_linalg::isa::{Arch, Isa, IsaSet};
    use tract_linalg::mmm::{Query, Suitable};
    use tract_linalg::mmm_tiers::MmmTier;
    use tract_onnx::prelude::{tract_linalg, DatumType};

    /// The name of tract's 256-bit f32 tier, whose cost model answers for us.
    const FMA_TIER: &str = "fma";

    fn has_avx512(isa: &IsaSet) -> bool {
        isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64Fma) && isa.has(Isa::X86_64Avx512f)
    }

    /// One 512-bit FMA port: tract's own probe (memoised; `TRACT_AVX512_FMA_UNITS`
    /// overrides it). The probe times VNNI instructions, so it answers "one" on AVX-512
    /// cores without VNNI (Skylake-SP, some of which have two ports): there the 256-bit
    /// kernels run too, and `DEVICE_F32_KERNELS=tract` is the way back. The module exists
    /// when tract's build could assemble VNNI (binutils ≥ 2.30).
    fn single_fma_port() -> bool {
        tract_linalg::x86_64::fma_width::avx512_fma_units() < 2
    }

    pub(super) fn ymm_f32_in_force() -> bool {
        if !has_avx512(&tract_linalg::isa::native()) {
            return false;
        }
        match policy() {
            F32Kernels::Tract => false,
            F32Kernels::Ymm => true,
            F32Kernels::Auto => single_fma_port(),
        }
    }

    fn fma_tier() -> Option<&'static MmmTier> {
        tract_linalg::mmm_tiers::declared()
            .find(|tier| tier.arch == Some(Arch::X86_64) && tier.name == FMA_TIER)
    }

    fn preferred(
        isa: &IsaSet,
        accumulator: DatumType,
        query: &Query,
        suitable: &[Suitable],
    ) -> Option<&'static str> {
        if accumulator != DatumType::F32 || !ymm_f32_in_force() {
            return None;
        }
        (fma_tier()?.preferred)(isa, accumulator, query, suitable)
    }

    tract_onnx::tract_core::internal::inventory::submit! {
        MmmTier {
            arch: Some(Arch::X86_64),
            // Above every x86-64 tier of tract 0.23 (avx512f is 5, the AMX ones 7 and 8):
            // it only speaks for f32, and only when the policy says so.
            precedence: 9,
            name: "device-f32-ymm",
            applies: has_avx512,
            preferred,
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub(super) fn ymm_f32_in_force() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_unknown_names_are_refused() {
        assert_eq!(F32Kernels::parse("auto"), Some(F32Kernels::Auto));
        assert_eq!(F32Kernels::parse(" tract\n"), Some(F32Kernels::Tract));
        assert_eq!(F32Kernels::parse("ymm"), Some(F32Kernels::Ymm));
        assert_eq!(F32Kernels::parse("zmm"), None);
        for p in [F32Kernels::Auto, F32Kernels::Tract, F32Kernels::Ymm] {
            assert_eq!(F32Kernels::from_code(p.code()), p);
        }
    }
}
