//! Exact (erf) GELU as one vectorised pass.
//!
//! tract recognises the ONNX expansion `0.5·x·(1 + erf(x/√2))` and runs it as its
//! `GeluExact` op: a scaling pass into a scratch buffer allocated per call, its `erf`
//! kernel, and a combining pass. On the FFN activations of a short query (12 tokens x
//! 512 for the tiny preset) that was 6.0 µs per layer, ~1 ns per element. Here it is one
//! pass with a branch-free rational `erf` (the odd/even minimax pair Eigen and XLA use
//! for f32, |error| ≤ 4e-7 on the whole line), so the compiler vectorises it.
//!
//! It replaces `GeluExact` nodes of f32 models after tract's declutter
//! ([`fuse_gelu`]), keeping tract's pattern matcher as the one that decides what a GELU
//! is; f16 models and every other node are left as they were.

use tract_onnx::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_onnx::tract_core::ops::nn::GeluExact;
use tract_onnx::tract_hir::internal::*;

/// GELU with the exact (erf) form, f32 only.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedGelu;

impl ElementWiseMiniOp for FusedGelu {
    fn name(&self) -> String {
        "FusedGelu".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, _out_dt: Option<DatumType>) -> TractResult<()> {
        ensure!(t.datum_type() == f32::datum_type(), "FusedGelu is f32 only");
        let mut plain = t.try_as_plain_ram_mut()?;
        gelu_in_place(plain.as_slice_mut::<f32>()?);
        Ok(())
    }

    fn eval_out_of_place(&self, t: &Tensor, _out_dt: Option<DatumType>) -> TractResult<Tensor> {
        let mut out = t.clone();
        self.eval_in_place(&mut out, None)?;
        Ok(out)
    }

    fn cost_per_element(&self, dt: DatumType) -> TVec<(Cost, usize)> {
        tvec!((Cost::FMA(dt), 14), (Cost::Div(dt), 1))
    }
}

/// Replaces every f32 `GeluExact` node of a decluttered model by [`FusedGelu`];
/// returns how many it replaced.
pub fn fuse_gelu(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let is_f32_gelu = {
            let node = &model.nodes()[id];
            node.op_as::<ElementWiseOp>()
                .is_some_and(|op| op.0.is::<GeluExact>() && op.1.is_none())
                && model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type()
        };
        if is_f32_gelu {
            model.nodes_mut()[id].op = Box::new(ElementWiseOp(Box::new(FusedGelu), None));
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// `0.5·x·(1 + erf(x/√2))`, in place.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
pub fn gelu_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "aarch64")]
    {
        neon::gelu_in_place(x);
        return;
    }
    #[allow(unreachable_code)]
    // Fused multiply-adds where the CPU has them (x86-64 with FMA, every AArch64): ~30 %
    // fewer instructions. Without them `mul_add` would be a libm call per element.
    if multiversion::target::target_cfg_f!(target_feature = "fma") || cfg!(target_arch = "aarch64")
    {
        gelu_loop::<true>(x)
    } else {
        gelu_loop::<false>(x)
    }
}

#[inline(always)]
fn gelu_loop<const FMA: bool>(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = gelu_one::<FMA>(*v);
    }
}

#[inline(always)]
fn gelu_one<const FMA: bool>(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_with::<FMA>(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `out[i] = gelu(x[i])`: the same function, out of place (the host's training forward,
/// so that training and the board compute one GELU).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
pub fn gelu_into(x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "aarch64")]
    {
        let n = x.len().min(out.len());
        out[..n].copy_from_slice(&x[..n]);
        neon::gelu_in_place(&mut out[..n]);
        return;
    }
    #[allow(unreachable_code)]
    if multiversion::target::target_cfg_f!(target_feature = "fma") || cfg!(target_arch = "aarch64")
    {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = gelu_one::<true>(v);
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = gelu_one::<false>(v);
        }
    }
}

/// `out[i] = grad[i] · gelu'(x[i])`, with `gelu'(x) = ½(1 + erf(x/√2)) + x·φ(x)` and
/// `φ` the standard normal density: the training backward in one pass.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
pub fn gelu_grad_into(x: &[f32], grad: &[f32], out: &mut [f32]) {
    if multiversion::target::target_cfg_f!(target_feature = "fma") || cfg!(target_arch = "aarch64")
    {
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
            *o = g * gelu_derivative::<true>(v);
        }
    } else {
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
            *o = g * gelu_derivative::<false>(v);
        }
    }
}

#[inline(always)]
fn gelu_derivative<const FMA: bool>(x: f32) -> f32 {
    // 1/√(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf_with::<FMA>(x * std::f32::consts::FRAC_1_SQRT_2));
    cdf + x * INV_SQRT_2PI * super::exp_nonpositive(-0.5 * x * x)
}

/// `erf(x)` as a rational function `x·p(x²)/q(x²)` on x clamped to [-4, 4] (beyond it
/// erf is ±1 in f32); branch-free. NaN stays NaN.
pub fn erf(x: f32) -> f32 {
    erf_with::<false>(x)
}

/// The numerator's coefficients, highest degree first (Horner).
#[allow(clippy::excessive_precision)]
const ALPHA: [f32; 7] = [
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
];
/// The denominator's coefficients: all negative, so `q(x²) ≤ -0.0143`, never zero.
#[allow(clippy::excessive_precision)]
const BETA: [f32; 5] = [
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
];

#[inline(always)]
fn erf_with<const FMA: bool>(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    let p = ALPHA[1..].iter().fold(ALPHA[0], |acc, &c| madd(acc, x2, c));
    let q = BETA[1..].iter().fold(BETA[0], |acc, &c| madd(acc, x2, c));
    x * p / q
}

/// GELU four lanes at a time on AArch64, with the division of the rational `erf` as a
/// reciprocal estimate refined by two Newton steps (`frecpe`, `frecps`): a vector `fdiv`
/// issues once per ~10 cycles on a Cortex-A72 and the division was most of the op's cost
/// (a fifth of a 64-token query of the tiny preset in the ARM estimate). The reciprocal
/// is within a few ulp of the division (the erf test's 4e-7 holds for those lanes), and
/// the GELU's `1/√2` and `½` are folded into the coefficients (22 vector operations per 4
/// values; the GELU test's bound holds); training on an AArch64 host goes through the same
/// lanes ([`gelu_into`]), so it and the board still agree.
#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{ALPHA, BETA};
    use std::arch::aarch64::*;

    pub(super) fn gelu_in_place(x: &mut [f32]) {
        // Four independent vectors per step: one vector's polynomial and Newton steps are a
        // chain of ~15 dependent operations, which alone would leave the core waiting.
        let mut wide = x.chunks_exact_mut(16);
        for c in &mut wide {
            let p = c.as_mut_ptr();
            // SAFETY: `c` holds exactly sixteen f32 (NEON is part of every AArch64 target).
            unsafe {
                let (a, b) = (vld1q_f32(p), vld1q_f32(p.add(4)));
                let (c2, d) = (vld1q_f32(p.add(8)), vld1q_f32(p.add(12)));
                let (a, b, c2, d) = (gelu4(a), gelu4(b), gelu4(c2), gelu4(d));
                vst1q_f32(p, a);
                vst1q_f32(p.add(4), b);
                vst1q_f32(p.add(8), c2);
                vst1q_f32(p.add(12), d);
            }
        }
        let mut chunks = wide.into_remainder().chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: `c` holds exactly four f32.
            unsafe { vst1q_f32(c.as_mut_ptr(), gelu4(vld1q_f32(c.as_ptr()))) };
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            // The last values through the same lanes, so every element rounds alike.
            let mut lanes = [0f32; 4];
            lanes[..tail.len()].copy_from_slice(tail);
            // SAFETY: `lanes` holds four f32.
            unsafe { vst1q_f32(lanes.as_mut_ptr(), gelu4(vld1q_f32(lanes.as_ptr()))) };
            let n = tail.len();
            tail.copy_from_slice(&lanes[..n]);
        }
    }

    /// [`ALPHA`] and [`BETA`] for `erf(u/√2)` as polynomials in `u²` (coefficient `i` of
    /// degree `m` times `2^-m`, exact), the numerator's also times `1/(2√2)` so that
    /// `0.5·x·erf(u/√2) = x·u·p(u²)/q(u²)`.
    const GELU_P: [f32; 7] = {
        let mut c = [0f32; 7];
        let mut i = 0;
        while i < 7 {
            let degree = (6 - i) as i32;
            c[i] = ALPHA[i] * pow2(-degree) * (0.5 * std::f32::consts::FRAC_1_SQRT_2);
            i += 1;
        }
        c
    };
    const GELU_Q: [f32; 5] = {
        let mut c = [0f32; 5];
        let mut i = 0;
        while i < 5 {
            c[i] = BETA[i] * pow2(-((4 - i) as i32));
            i += 1;
        }
        c
    };

    /// `2^e` for small `e`, in a constant.
    const fn pow2(e: i32) -> f32 {
        f32::from_bits(((127 + e) as u32) << 23)
    }

    /// `0.5·x + 0.5·x·erf(x/√2)` with the constants of [`erf4`] folded in ([`GELU_P`],
    /// [`GELU_Q`]): 22 vector operations per 4 values instead of 24 (`erf4` of `x/√2`,
    /// then `0.5·x·(1 + erf)`), within a few ulp of that form.
    #[inline(always)]
    fn gelu4(x: float32x4_t) -> float32x4_t {
        // SAFETY: NEON register arithmetic only, no memory access.
        unsafe {
            // erf(u/√2) is ±1 in f32 beyond |u| = 4√2, the clamp of `erf4`.
            let bound = 4.0 * std::f32::consts::SQRT_2;
            let u = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-bound)), vdupq_n_f32(bound));
            let u2 = vmulq_f32(u, u);
            let (p, r) = (horner(&GELU_P, u2), reciprocal(horner(&GELU_Q, u2)));
            let half = vmulq_n_f32(x, 0.5);
            let xup = vmulq_f32(vmulq_f32(x, u), p);
            vfmaq_f32(half, xup, r)
        }
    }

    /// `erf` of four lanes: [`super::erf_with`]'s rational function with [`gelu4`]'s
    /// reciprocal steps, NaN staying NaN (the tests' check of those lanes' accuracy).
    #[cfg(test)]
    #[inline(always)]
    fn erf4(x: float32x4_t) -> float32x4_t {
        // SAFETY: NEON register arithmetic only, no memory access.
        unsafe {
            let t = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-4.0)), vdupq_n_f32(4.0));
            let t2 = vmulq_f32(t, t);
            let (p, r) = (horner(&ALPHA, t2), reciprocal(horner(&BETA, t2)));
            vmulq_f32(vmulq_f32(t, p), r)
        }
    }

    /// The polynomial with coefficients `c` (highest degree first) at `x`, by Horner.
    #[inline(always)]
    fn horner(c: &[f32], x: float32x4_t) -> float32x4_t {
        // SAFETY: NEON register arithmetic only.
        unsafe {
            let mut p = vdupq_n_f32(c[0]);
            for &c in &c[1..] {
                p = vfmaq_f32(vdupq_n_f32(c), p, x);
            }
            p
        }
    }

    /// `1/q`: the estimate refined by two Newton steps (within a few ulp of a division).
    #[inline(always)]
    fn reciprocal(q: float32x4_t) -> float32x4_t {
        // SAFETY: NEON register arithmetic only.
        unsafe {
            let mut r = vrecpeq_f32(q);
            r = vmulq_f32(r, vrecpsq_f32(q, r));
            vmulq_f32(r, vrecpsq_f32(q, r))
        }
    }

    /// `erf` through the same lanes, for the tests.
    #[cfg(test)]
    pub(super) fn erf(x: f32) -> f32 {
        // SAFETY: NEON register arithmetic only.
        unsafe { vgetq_lane_f32::<0>(erf4(vdupq_n_f32(x))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        decluttered, f32_scalar, input_info, model, node, op_names_and_output, outputs, values,
    };
    use tract_onnx::pb;

    /// erf by its Taylor series (|x| < 3) and its asymptotic complement, in f64.
    fn erf_reference(x: f64) -> f64 {
        if x.abs() >= 3.0 {
            // 1 - erfc(x), erfc by its continued fraction: plenty for 4e-7.
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            return (1.0 - erfc).copysign(x);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_within_4e_7_of_the_reference_everywhere() {
        // 0: plain, 1: fused multiply-adds, 2: the AArch64 lanes (reciprocal, no division).
        let forms: &[u8] = if cfg!(target_arch = "aarch64") {
            &[0, 1, 2]
        } else {
            &[0, 1]
        };
        for &form in forms {
            let fused = form != 0;
            let mut worst = 0f64;
            for i in -80_000..=80_000 {
                let x = i as f32 * 1e-4;
                let got = match form {
                    0 => erf(x),
                    1 => erf_with::<true>(x),
                    #[cfg(target_arch = "aarch64")]
                    _ => neon::erf(x),
                    #[cfg(not(target_arch = "aarch64"))]
                    _ => unreachable!(),
                };
                worst = worst.max((got as f64 - erf_reference(x as f64)).abs());
            }
            assert!(
                worst <= 4.5e-7,
                "max |erf error| {worst} (form {form}, fma: {fused})"
            );
        }
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_matches_the_definition() {
        let mut xs: Vec<f32> = (-1200..=1200).map(|i| i as f32 * 0.01).collect();
        let want: Vec<f64> = xs
            .iter()
            .map(|&x| 0.5 * x as f64 * (1.0 + erf_reference(x as f64 / 2f64.sqrt())))
            .collect();
        gelu_in_place(&mut xs);
        for (got, want) in xs.iter().zip(&want) {
            assert!(
                (*got as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn the_out_of_place_gelu_and_its_gradient_match_the_definition() {
        let x: Vec<f32> = (-1200..=1200).map(|i| i as f32 * 0.01).collect();
        let g: Vec<f32> = values(x.len(), 4, 2.0);
        let mut y = vec![0f32; x.len()];
        gelu_into(&x, &mut y);
        let mut in_place = x.clone();
        gelu_in_place(&mut in_place);
        assert_eq!(y, in_place);
        let mut dx = vec![0f32; x.len()];
        gelu_grad_into(&x, &g, &mut dx);
        for ((&x, &g), &dx) in x.iter().zip(&g).zip(&dx) {
            let x = x as f64;
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = g as f64 * (0.5 * (1.0 + erf_reference(x / 2f64.sqrt())) + x * pdf);
            assert!(
                (dx as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()),
                "{dx} vs {want} at {x}"
            );
        }
    }

    /// The exporter's GELU (`host::export::onnx::gelu_erf`) becomes one FusedGelu node and
    /// gives tract's GeluExact values, in an optimised plan.
    #[test]
    fn the_exported_gelu_chain_runs_fused_with_tract_values() {
        let graph = pb::GraphProto {
            node: vec![
                node("Div", &["x", "sqrt2"], "scaled", &[]),
                node("Erf", &["scaled"], "erf", &[]),
                node("Add", &["erf", "one"], "plus_one", &[]),
                node("Mul", &["x", "plus_one"], "times_x", &[]),
                node("Mul", &["times_x", "half"], "y", &[]),
            ],
            initializer: vec![
                f32_scalar("sqrt2", std::f32::consts::SQRT_2),
                f32_scalar("one", 1.0),
                f32_scalar("half", 0.5),
            ],
            input: vec![input_info(
                "x",
                pb::tensor_proto::DataType::Float,
                &[3, 7, 40],
            )],
            output: outputs(&["y"]),
            ..Default::default()
        };
        let proto = model(graph);
        let x = tract_ndarray::Array3::from_shape_vec((3, 7, 40), values(840, 9, 6.0))
            .unwrap()
            .into_tensor();
        let run = |fused: bool| -> Vec<f32> {
            let mut typed = decluttered(&proto);
            if fused {
                assert_eq!(
                    fuse_gelu(&mut typed).unwrap(),
                    1,
                    "one GeluExact to replace"
                );
            }
            let plan = typed.into_optimized().unwrap().into_runnable().unwrap();
            let (names, y) = op_names_and_output(&plan, std::slice::from_ref(&x));
            assert_eq!(
                names.iter().filter(|n| n.contains("FusedGelu")).count(),
                usize::from(fused),
                "{names:?}"
            );
            y
        };
        let (fused, tract) = (run(true), run(false));
        for (a, b) in fused.iter().zip(&tract) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
