//! Which matmul kernels tract runs on x86-64 cores with AVX-512 (issue #7).
//!
//! tract picks a kernel per matmul when it optimises a plan, from a ladder of per-ISA
//! "tiers" ([`tract_linalg::mmm_tiers`]). Two of its choices are slow for this project's
//! matmuls (8 to 64 token columns, 128-1536 wide) on some AVX-512 cores:
//!
//! - **f32.** tract's AMD and Intel cost models were calibrated on cores with two 512-bit
//!   FMA ports (a Zen 5 desktop part for AMD); for a short query's matmuls (8-32 token
//!   columns) they pick `avx512_mmm_f32_16x8`, and for the attention's small per-head
//!   products zmm tiles that are mostly padding. On a core with *one* 512-bit FMA port
//!   (Zen 4 executes AVX-512 on 256-bit units; Intel client cores fuse ports 0 and 1),
//!   whole-model timings (every f32 matmul of a plan forced to one kernel, MiniLM-L6 and
//!   the tiny preset at 8-64 tokens) ranked the kernels differently: for the weight
//!   matrices (128 or more rows) the tall zmm tiles (32x6, 32x5, 64x3) win, the one that
//!   pads the token count least the most (MiniLM at 16 tokens: 7.9 ms with tract's 256-bit
//!   pick, 6.4 with 16x8, 5.4 with 32x6); for the per-head products (16-64 rows) tract's
//!   256-bit `fma` kernels do (tiny preset, 3 µs instead of 6-7). The [`F32`] knob: on
//!   single-port cores, weight matrices get the tall tile that pads `n` least, small
//!   products what tract's `fma` tier (its 256-bit cost model) would pick.
//! - **int8.** tract runs its zmm 16x16 VNNI tile only on cores its probe finds dual-ported
//!   (measured on an Intel client core, where the 16x16 lost 4-11 % to the ymm 8x8). On AMD
//!   Zen 4, single-ported by that probe, the 16x16 is the faster one: MiniLM-L6
//!   int8-compute at 64 tokens ~9.0 → ~8.0 ms (fewer loads per multiply-add, which the
//!   double-pumped core needs more than the narrower tile). The [`I8`] knob: on AMD cores
//!   with AVX-512 VNNI, int8 matmuls whose two sides each fill a 16-wide tile get the 16x16,
//!   as tract itself does on dual-port cores.
//!
//! Both go through tract's own extension point: one more [`MmmTier`], registered with
//! `inventory` above tract's x86-64 tiers. Where a knob does not apply the tier has no
//! opinion and tract's ladder decides as before. tract consults tiers for matmuls of known
//! shape (the fixed-length plans); the symbolic plan keeps tract's tie-break. The choice is
//! made when a plan is optimised: the engine optimises each plan under its own
//! [`KernelOptions`] ([`with_options`]), so engines with different options can share a
//! process. The library reads no environment variable: the `device` binary maps
//! `DEVICE_F32_KERNELS` and `DEVICE_I8_KERNELS` (and its flags) onto [`KernelOptions`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

/// What a knob does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// The device's kernels on the cores they were measured faster on, tract's elsewhere.
    #[default]
    Auto,
    /// tract's own choice everywhere.
    Tract,
    /// The device's kernels on every core that has them.
    Always,
}

/// The kernel policies a plan is optimised under (part of
/// [`crate::engine::EngineOptions`]); the default is [`Policy::Auto`] for both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// f32 matmuls ([`F32`]): `auto`, `tract` or `shape`.
    pub f32: Policy,
    /// int8 matmuls ([`I8`]): `auto`, `tract` or `zmm`.
    pub i8: Policy,
}

/// One kernel choice the device makes instead of tract.
pub struct KernelKnob {
    /// The knob's name in messages (`f32`, `i8`).
    pub name: &'static str,
    /// The word that selects [`Policy::Always`].
    pub always: &'static str,
    policy: AtomicU8,
}

/// f32 matmuls: tiles chosen by shape on cores with one 512-bit FMA port.
pub static F32: KernelKnob = KernelKnob::new("f32", "shape");

/// int8 (i32-accumulating) matmuls: the zmm 16x16 VNNI tile on AMD cores.
pub static I8: KernelKnob = KernelKnob::new("i8", "zmm");

impl KernelKnob {
    const fn new(name: &'static str, always: &'static str) -> KernelKnob {
        KernelKnob {
            name,
            always,
            policy: AtomicU8::new(0),
        }
    }

    /// Parses `auto`, `tract` or this knob's [`Self::always`] word.
    pub fn parse(&self, s: &str) -> Option<Policy> {
        match s.trim() {
            "auto" => Some(Policy::Auto),
            "tract" => Some(Policy::Tract),
            word if word == self.always => Some(Policy::Always),
            _ => None,
        }
    }

    /// Sets the policy for plans optimised from now on (process-wide; the engine sets it
    /// from its [`KernelOptions`] around each plan it optimises).
    pub fn set(&self, policy: Policy) {
        let code = match policy {
            Policy::Auto => 0,
            Policy::Tract => 1,
            Policy::Always => 2,
        };
        self.policy.store(code, Ordering::Relaxed);
    }

    /// The policy in force.
    pub fn get(&self) -> Policy {
        match self.policy.load(Ordering::Relaxed) {
            1 => Policy::Tract,
            2 => Policy::Always,
            _ => Policy::Auto,
        }
    }
}

/// Serialises [`with_options`]: the knobs are process-wide, so two plans optimised at once
/// under different options must not see each other's policies.
static OPTIMISING: Mutex<()> = Mutex::new(());

/// Restores the knobs' previous policies when dropped (also on a panic in the closure).
struct Restore([Policy; 2]);

impl Drop for Restore {
    fn drop(&mut self) {
        F32.set(self.0[0]);
        I8.set(self.0[1]);
    }
}

/// Runs `f` (a plan's optimisation) with the knobs set to `options`, then puts back the
/// policies that were in force.
pub fn with_options<T>(options: &KernelOptions, f: impl FnOnce() -> T) -> T {
    let _serial = OPTIMISING.lock().unwrap_or_else(PoisonError::into_inner);
    let _restore = Restore([F32.get(), I8.get()]);
    F32.set(options.f32);
    I8.set(options.i8);
    f()
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{Policy, F32, I8};
    use tract_linalg::isa::{Arch, Isa, IsaSet};
    use tract_linalg::mmm::{Query, Suitable};
    use tract_linalg::mmm_tiers::MmmTier;
    use tract_onnx::prelude::{tract_linalg, DatumType};

    /// The name of tract's 256-bit f32 tier, whose cost model answers for us.
    const FMA_TIER: &str = "fma";

    /// From this many weight rows (`m`) a matmul gets a tall zmm tile; below it (the
    /// attention's per-head products, 16-64 rows) tract's 256-bit cost model answers.
    const TALL_M: usize = 128;

    /// tract's zmm f32 tiles with 32 or 64 rows, as (name, columns).
    const TALL_TILES: [(&str, usize); 3] = [
        ("avx512_mmm_f32_32x6", 6),
        ("avx512_mmm_f32_32x5", 5),
        ("avx512_mmm_f32_64x3", 3),
    ];

    /// The tall tile whose column count pads `n` (the tokens) the least; between equals
    /// the wider one (fewer passes over the weights).
    fn tall_tile_for(n: usize) -> &'static str {
        let padded = |cols: usize| n.div_ceil(cols) * cols;
        let best = TALL_TILES
            .iter()
            .min_by_key(|&&(_, cols)| (padded(cols), usize::MAX - cols));
        best.map_or(TALL_TILES[0].0, |&(name, _)| name)
    }

    /// tract's zmm int8 tile (its `avx512vnni` tier names it on dual-port cores).
    const ZMM_I8_TILE: &str = "avx512vnni_mmm_i32_16x16";

    fn has_avx512(isa: &IsaSet) -> bool {
        isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64Fma) && isa.has(Isa::X86_64Avx512f)
    }

    /// One 512-bit FMA port: tract's own probe (memoised; `TRACT_AVX512_FMA_UNITS`
    /// overrides it). The probe times VNNI instructions, so it answers "one" on AVX-512
    /// cores without VNNI (Skylake-SP, some of which have two ports): there the f32 knob
    /// applies too, and `DEVICE_F32_KERNELS=tract` is the way back. The module exists
    /// when tract's build could assemble VNNI (binutils ≥ 2.30).
    fn single_fma_port() -> bool {
        tract_linalg::x86_64::fma_width::avx512_fma_units() < 2
    }

    /// An AMD core, from CPUID's vendor string (tract keeps its own reading private).
    fn amd() -> bool {
        // `__cpuid` is safe on recent compilers and `unsafe` on older ones.
        #[allow(unused_unsafe)]
        let id = unsafe { std::arch::x86_64::__cpuid(0) };
        let mut vendor = [0u8; 12];
        vendor[0..4].copy_from_slice(&id.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&id.edx.to_le_bytes());
        vendor[8..12].copy_from_slice(&id.ecx.to_le_bytes());
        &vendor == b"AuthenticAMD"
    }

    /// Whether plans optimised now get the device's f32 kernel choice instead of tract's.
    fn single_port_f32_in_force() -> bool {
        if !has_avx512(&tract_linalg::isa::native()) {
            return false;
        }
        match F32.get() {
            Policy::Tract => false,
            Policy::Always => true,
            Policy::Auto => single_fma_port(),
        }
    }

    /// Whether plans optimised now get the zmm 16x16 int8 tile where both sides fill it.
    fn zmm_i8_in_force() -> bool {
        let isa = tract_linalg::isa::native();
        if !has_avx512(&isa) || !isa.has(Isa::X86_64Avx512Vnni) {
            return false;
        }
        match I8.get() {
            Policy::Tract => false,
            Policy::Always => true,
            Policy::Auto => amd(),
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
        match accumulator {
            DatumType::F32 if single_port_f32_in_force() => {
                let tall = query.m.is_some_and(|m| m >= TALL_M);
                match query.n {
                    Some(n) if tall && n > 1 => Some(tall_tile_for(n)),
                    _ => (fma_tier()?.preferred)(isa, accumulator, query, suitable),
                }
            }
            // tract's own rule for the tile on dual-port cores: each of m and n fills it
            // (unknown counts as filled); a matrix-vector product keeps its own kernels.
            DatumType::I32 if query.n != Some(1) && zmm_i8_in_force() => {
                let fills = |dim: Option<usize>| dim.is_none_or(|d| d >= 16);
                (fills(query.m) && fills(query.n)).then_some(ZMM_I8_TILE)
            }
            _ => None,
        }
    }

    tract_onnx::tract_core::internal::inventory::submit! {
        MmmTier {
            arch: Some(Arch::X86_64),
            // Above every x86-64 tier of tract 0.23 (avx512f is 5, avx512vnni 6, the AMX
            // ones 7 and 8): it only speaks where a knob says so. On AMX cores the int8
            // knob's `auto` never applies (they are Intel).
            precedence: 9,
            name: "device-kernels",
            applies: has_avx512,
            preferred,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_unknown_names_are_refused() {
        assert_eq!(F32.parse("auto"), Some(Policy::Auto));
        assert_eq!(F32.parse(" tract\n"), Some(Policy::Tract));
        assert_eq!(F32.parse("shape"), Some(Policy::Always));
        assert_eq!(F32.parse("zmm"), None);
        assert_eq!(I8.parse("zmm"), Some(Policy::Always));
        assert_eq!(I8.parse("shape"), None);
        let knob = KernelKnob::new("test", "wide");
        for p in [Policy::Auto, Policy::Tract, Policy::Always] {
            knob.set(p);
            assert_eq!(knob.get(), p);
        }
    }

    #[test]
    fn options_hold_only_while_a_plan_is_optimised() {
        let options = KernelOptions {
            f32: Policy::Always,
            i8: Policy::Tract,
        };
        let seen = with_options(&options, || (F32.get(), I8.get()));
        assert_eq!(seen, (Policy::Always, Policy::Tract));
        assert_eq!((F32.get(), I8.get()), (Policy::Auto, Policy::Auto));
        assert_eq!(KernelOptions::default().f32, Policy::Auto);
    }
}
