//! The dense layers of a weights-int8 variant computed in int8, the activations quantised
//! per token at run time (issue #30).
//!
//! A weights-int8 bundle stores each linear layer as `DequantizeLinear(int8 W, scale[out])
//! -> MatMul`: tract folds the dequantisation at load and the layer runs in f32
//! ([`super::FusedDense`]). onnxruntime runs the same file with int8 products (its
//! `MatMulNBits` and dynamic quantisation quantise the activations), which on a core with
//! the dot product (Cortex-A76, Pi 5) is 4x the multiply-adds per instruction: the estimate
//! of issue #30 put MiniLM-L6 weights-int8 on the A76 at 1.28x onnxruntime's time in f32.
//!
//! Here each row (token) of the activations is quantised symmetrically on its own,
//! `q = round(x / s)`, `s = max|x| / 127` (so `q ∈ [-127, 127]`), multiplied by the int8
//! weights with [`super::dense_i8`]'s tiles (`sdot`, `smull`, VNNI) into exact i32 sums,
//! and dequantised as `(Σ q·w) · scale[j] · s + b[j]`. The weights are the bundle's own
//! int8 values: the exporter quantises each output column symmetrically to `[-127, 127]`
//! with `scale = max|W[:, j]| / 127`, so [`quantize_columns`] of the folded f32 matrix
//! gives back exactly those integers and scales (tested).
//!
//! The answers differ from the f32 computation by the activations' rounding (at most
//! `s/2` per input): it is not the variant's definition, so it is never the default. It
//! is the `NAME+int8-act` candidate of `device tune` ([`crate::variant`]), chosen only
//! where it is faster and gives every reference text its reference label.

use std::sync::Arc;
use tract_onnx::tract_hir::internal::*;

use super::dense::{dense_cost, dense_facts, eval_dense, fuse_dense_with};
use super::dense_i8::{dense_i8, PackedDenseI8};

/// The int8 weights of one layer (per-column scales folded into the tiles' store), and
/// its bias, applied after the per-row scale.
pub struct PackedDenseDynamicI8 {
    weights: PackedDenseI8,
    bias: Vec<f32>,
}

impl PackedDenseDynamicI8 {
    /// Quantises `w` (row-major `[k, n]` f32) per column and packs it with `bias` (`n`).
    pub fn new(
        w: &[f32],
        k: usize,
        n: usize,
        bias: Option<&[f32]>,
    ) -> TractResult<PackedDenseDynamicI8> {
        ensure!(
            w.len() == k * n,
            "FusedDenseDynamicI8: {} weights for {k}x{n}",
            w.len()
        );
        let (q, scales) = quantize_columns(w, k, n)?;
        let weights = PackedDenseI8::new(&q, k, n, 0, &scales, None)?;
        let bias = match bias {
            Some(b) => {
                ensure!(
                    b.len() == n,
                    "FusedDenseDynamicI8: {} bias values for {n} outputs",
                    b.len()
                );
                b.to_vec()
            }
            None => vec![0.0; n],
        };
        Ok(PackedDenseDynamicI8 { weights, bias })
    }
}

impl std::fmt::Debug for PackedDenseDynamicI8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}, activations quantised per row", self.weights)
    }
}

/// Symmetric per-column int8 quantisation of a row-major `[k, n]` matrix: `q[i][j] =
/// round(w[i][j] / scale[j])`, `scale[j] = max_i |w[i][j]| / 127` (1 for a zero column).
/// Refuses a non-finite weight.
pub fn quantize_columns(w: &[f32], k: usize, n: usize) -> TractResult<(Vec<i8>, Vec<f32>)> {
    ensure!(w.len() == k * n, "{} weights for {k}x{n}", w.len());
    ensure!(
        w.iter().all(|v| v.is_finite()),
        "a weight is not finite: the layer cannot be quantised"
    );
    let mut scales = vec![0f32; n];
    for row in w.chunks_exact(n) {
        for (s, v) in scales.iter_mut().zip(row) {
            *s = s.max(v.abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w
        .chunks_exact(n)
        .flat_map(|row| {
            row.iter()
                .zip(&scales)
                .map(|(v, s)| (v / s).round().clamp(-127.0, 127.0) as i8)
        })
        .collect();
    Ok((q, scales))
}

/// Quantises one row symmetrically into `q` and returns its scale `max|x| / 127`: 0 for
/// a row of zeros, NaN when a value is not finite (the row's outputs are then NaN, as the
/// f32 product's would be). On aarch64 16 values per step in NEON (`fcvtns` rounds to
/// nearest, ties to even, as the portable loop does): the scalar loop was 16 % of a
/// MiniLM query on the A76 model.
pub fn quantize_row(x: &[f32], q: &mut [i8]) -> f32 {
    assert!(q.len() >= x.len());
    #[cfg(target_arch = "aarch64")]
    {
        neon::quantize_row(x, q)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        quantize_row_portable(x, q)
    }
}

/// 1.5 · 2²³: an f32 of this size has no fraction bits, so `(y + ROUNDING) - ROUNDING`
/// is `y` rounded to nearest-even for |y| < 2²².
const ROUNDING: f32 = 12_582_912.0;

/// [`quantize_row`] in plain loops (the reference of the NEON form).
pub fn quantize_row_portable(x: &[f32], q: &mut [i8]) -> f32 {
    if x.iter().any(|v| !v.is_finite()) {
        q.fill(0);
        return f32::NAN;
    }
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (q, v) in q.iter_mut().zip(x) {
        // |v · inv| ≤ 127 up to one rounding. Adding and removing 1.5 · 2²³ rounds it to
        // the nearest integer, ties to even (what `round_ties_even` does, which x86-64
        // without SSE4.1 calls libm for, one value at a time); the cast saturates.
        *q = (((v * inv) + ROUNDING) - ROUNDING) as i8;
    }
    max / 127.0
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    pub fn quantize_row(x: &[f32], q: &mut [i8]) -> f32 {
        let n = x.len();
        let body = n / 16 * 16;
        // SAFETY: NEON is part of aarch64; every load reads x[i..i + 16] with i + 16 ≤ n
        // and every store writes q[i..i + 16] with i + 16 ≤ n ≤ q.len().
        unsafe {
            // fmax propagates NaN, and |inf| is inf: a non-finite value leaves max
            // non-finite.
            let mut m = [vdupq_n_f32(0.0); 4];
            let mut i = 0;
            while i < body {
                for (j, m) in m.iter_mut().enumerate() {
                    *m = vmaxq_f32(*m, vabsq_f32(vld1q_f32(x.as_ptr().add(i + 4 * j))));
                }
                i += 16;
            }
            let mut max = vmaxvq_f32(vmaxq_f32(vmaxq_f32(m[0], m[1]), vmaxq_f32(m[2], m[3])));
            // (f32::max below drops a NaN: test the vector part first.)
            let mut finite = max.is_finite();
            for v in &x[body..] {
                finite &= v.is_finite();
                max = max.max(v.abs());
            }
            if !finite || !max.is_finite() {
                q[..n].fill(0);
                return f32::NAN;
            }
            if max == 0.0 {
                q[..n].fill(0);
                return 0.0;
            }
            let inv = 127.0 / max;
            let vinv = vdupq_n_f32(inv);
            let mut i = 0;
            while i < body {
                let p = x.as_ptr().add(i);
                let c = |j: usize| vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p.add(4 * j)), vinv));
                let lo = vcombine_s16(vqmovn_s32(c(0)), vqmovn_s32(c(1)));
                let hi = vcombine_s16(vqmovn_s32(c(2)), vqmovn_s32(c(3)));
                vst1q_s8(
                    q.as_mut_ptr().add(i),
                    vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)),
                );
                i += 16;
            }
            for (q, v) in q[body..n].iter_mut().zip(&x[body..]) {
                *q = (v * inv).round_ties_even() as i8;
            }
            max / 127.0
        }
    }
}

/// `out[r] = (Σ q(x[r])·W) · scale · s[r] + b` for `rows` rows of `k` f32 inputs.
pub fn dense_dynamic_i8(x: &[f32], rows: usize, w: &PackedDenseDynamicI8, out: &mut [f32]) {
    let (k, n) = (w.weights.k(), w.weights.n());
    assert!(x.len() >= rows * k && out.len() >= rows * n);
    let mut q = vec![0i8; rows * k];
    let scales: Vec<f32> = (0..rows)
        .map(|r| quantize_row(&x[r * k..][..k], &mut q[r * k..][..k]))
        .collect();
    dense_i8(&q, rows, &w.weights, out);
    for (row, s) in out.chunks_exact_mut(n).zip(&scales) {
        for (o, b) in row.iter_mut().zip(&w.bias) {
            *o = *o * s + b;
        }
    }
}

/// `x·W + b` over the last axis of an f32 `x`, in int8 with per-row activation scales.
#[derive(Debug, Clone)]
pub struct FusedDenseDynamicI8 {
    pub packed: Arc<PackedDenseDynamicI8>,
}

impl PartialEq for FusedDenseDynamicI8 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed)
    }
}

impl Eq for FusedDenseDynamicI8 {}

impl Op for FusedDenseDynamicI8 {
    fn name(&self) -> StaticName {
        "FusedDenseDynamicI8".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.packed)])
    }
    op_as_typed_op!();
}

impl EvalOp for FusedDenseDynamicI8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let w = &self.packed;
        let (k, n) = (w.weights.k(), w.weights.n());
        eval_dense(
            "FusedDenseDynamicI8",
            args_1!(inputs),
            k,
            n,
            |x, rows, out| dense_dynamic_i8(x, rows, w, out),
        )
    }
}

impl TypedOp for FusedDenseDynamicI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (k, n) = (self.packed.weights.k(), self.packed.weights.n());
        dense_facts("FusedDenseDynamicI8", inputs[0], DatumType::F32, k, n)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let (k, n) = (self.packed.weights.k(), self.packed.weights.n());
        Ok(dense_cost(inputs[0], DatumType::I32, k, n))
    }

    as_op!();
}

/// Whether this CPU has the int8 tiles ([`super::dense_i8::available`]).
pub fn available() -> bool {
    super::dense_i8::available()
}

/// Replaces every f32 dense layer [`super::fuse_dense`] would take (a constant `[k, n]`
/// matrix and its bias `Add`) by a [`FusedDenseDynamicI8`]; returns how many.
pub fn fuse_dense_dynamic_i8(model: &mut TypedModel) -> TractResult<usize> {
    fuse_dense_with(model, |w, k, n, bias| {
        Ok(Box::new(FusedDenseDynamicI8 {
            packed: Arc::new(PackedDenseDynamicI8::new(w, k, n, bias)?),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        decluttered, f32_initializer, input_info, model, node, op_names_and_output, outputs, values,
    };
    use tract_onnx::pb;

    /// A weight matrix as a weights-int8 bundle holds it: per column, integers in
    /// [-127, 127] reaching ±127, times the column's scale, folded to f32.
    fn int8_weights(k: usize, n: usize, seed: u64) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
        let mut q: Vec<i8> = values(k * n, seed, 127.4)
            .into_iter()
            .map(|v| v.round() as i8)
            .collect();
        for j in 0..n {
            q[(j % k) * n + j] = if j % 2 == 0 { 127 } else { -127 };
        }
        let scales: Vec<f32> = values(n, seed + 1, 0.01)
            .into_iter()
            .map(|s| s.abs() + 1e-4)
            .collect();
        let w = q
            .iter()
            .enumerate()
            .map(|(at, &v)| v as f32 * scales[at % n])
            .collect();
        (q, scales, w)
    }

    #[test]
    fn the_bundles_int8_weights_come_back_exactly() {
        for &(k, n) in &[(1, 1), (7, 5), (128, 128), (384, 1536)] {
            let (q, scales, w) = int8_weights(k, n, (k + n) as u64);
            let (q2, scales2) = quantize_columns(&w, k, n).unwrap();
            assert_eq!(q2, q, "k {k}, n {n}");
            for (a, b) in scales2.iter().zip(&scales) {
                assert!((a - b).abs() <= b * 1e-6, "scale {a} vs {b}");
            }
        }
        assert!(quantize_columns(&[1.0, f32::NAN], 1, 2).is_err());
        assert_eq!(quantize_columns(&[0.0, 0.0], 2, 1).unwrap().1, vec![1.0]);
    }

    #[test]
    fn rows_quantise_symmetrically_to_127() {
        let mut q = [0i8; 4];
        let s = quantize_row(&[0.5, -1.0, 0.25, 0.0], &mut q);
        assert_eq!(s, 1.0 / 127.0);
        assert_eq!(q, [64, -127, 32, 0]);
        assert_eq!(quantize_row(&[0.0; 4], &mut q), 0.0);
        assert_eq!(q, [0; 4]);
        assert!(quantize_row(&[1.0, f32::INFINITY, 0.0, 0.0], &mut q).is_nan());
    }

    /// The dispatching form (NEON on aarch64) gives the portable loop's integers and scale
    /// on every length (tails past 16), on values next to rounding ties, and on rows of
    /// zeros, infinities and NaNs.
    #[test]
    fn quantize_row_matches_the_portable_loop() {
        for n in [1, 7, 15, 16, 17, 33, 128, 384, 1536] {
            let mut rows = vec![values(n, n as u64, 3.0), vec![0.0; n]];
            // Every value a multiple of max/254: x·127/max lands on or next to k + 0.5.
            let mut ties: Vec<f32> = (0..n).map(|i| (i % 255) as f32 - 127.0).collect();
            ties[0] = 254.0;
            rows.push(ties.iter().map(|v| v / 2.0).collect());
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut r = values(n, 3, 1.0);
                r[n - 1] = bad;
                rows.push(r);
                let mut r = values(n, 4, 1.0);
                r[0] = bad;
                rows.push(r);
            }
            for x in rows {
                let (mut a, mut b) = (vec![1i8; n], vec![2i8; n]);
                let (sa, sb) = (quantize_row(&x, &mut a), quantize_row_portable(&x, &mut b));
                assert_eq!(a, b, "n {n}: {x:?}");
                assert!(
                    sa == sb || (sa.is_nan() && sb.is_nan()),
                    "n {n}: {sa} vs {sb}"
                );
            }
        }
    }

    /// The op's definition in plain loops: exact i32 sums of the quantised row and
    /// weights, `· scale[j]`, `· s`, `+ b[j]`, in that order.
    fn definition(x: &[f32], w: &[f32], b: &[f32], rows: usize, k: usize, n: usize) -> Vec<f32> {
        let (qw, ws) = quantize_columns(w, k, n).unwrap();
        let mut out = vec![0f32; rows * n];
        for r in 0..rows {
            let mut qx = vec![0i8; k];
            let s = quantize_row(&x[r * k..][..k], &mut qx);
            for j in 0..n {
                let acc: i32 = (0..k).map(|i| qx[i] as i32 * qw[i * n + j] as i32).sum();
                out[r * n + j] = acc as f32 * ws[j] * s + b[j];
            }
        }
        out
    }

    /// Bit for bit the definition on every tile height and partial panel, and within the
    /// activations' rounding (`s/2` per input) of the f64 product.
    #[test]
    fn dense_dynamic_i8_is_its_definition_and_near_the_f32_product() {
        for &(k, n) in &[(1, 1), (7, 5), (6, 70), (64, 33), (258, 20), (384, 48)] {
            let (_, _, w) = int8_weights(k, n, (k * 3 + n) as u64);
            let b = values(n, n as u64, 0.5);
            let packed = PackedDenseDynamicI8::new(&w, k, n, Some(&b)).unwrap();
            for rows in [1, 2, 4, 5, 6, 7, 12, 13, 25] {
                let x = values(rows * k, (rows * 5 + k) as u64, 2.0);
                let mut out = vec![f32::NAN; rows * n];
                dense_dynamic_i8(&x, rows, &packed, &mut out);
                let want = definition(&x, &w, &b, rows, k, n);
                assert_eq!(out, want, "k {k}, n {n}, rows {rows}");
                for r in 0..rows {
                    let xr = &x[r * k..][..k];
                    let s = xr.iter().fold(0f32, |m, v| m.max(v.abs())) as f64 / 127.0;
                    for j in 0..n {
                        let exact: f64 = (0..k)
                            .map(|i| xr[i] as f64 * w[i * n + j] as f64)
                            .sum::<f64>()
                            + b[j] as f64;
                        let weight_sum: f64 = (0..k).map(|i| (w[i * n + j] as f64).abs()).sum();
                        let bound = s / 2.0 * weight_sum * 1.001 + 1e-5 * (1.0 + exact.abs());
                        let got = out[r * n + j] as f64;
                        assert!(
                            (got - exact).abs() <= bound,
                            "k {k}, n {n}, row {r}, col {j}: {got} vs {exact} (bound {bound})"
                        );
                    }
                }
            }
        }
    }

    /// A linear layer (`MatMul` by an initializer, `Add` of one) becomes one
    /// FusedDenseDynamicI8 node whose plan gives the definition's values.
    #[test]
    fn a_linear_layer_runs_with_int8_activations() {
        let (k, n) = (42usize, 50usize);
        let graph = pb::GraphProto {
            node: vec![
                node("MatMul", &["x", "w"], "xw", &[]),
                node("Add", &["xw", "b"], "out", &[]),
            ],
            initializer: vec![
                f32_initializer("w", &[k as i64, n as i64], 3),
                f32_initializer("b", &[n as i64], 4),
            ],
            input: vec![input_info(
                "x",
                pb::tensor_proto::DataType::Float,
                &[2, 5, k as i64],
            )],
            output: outputs(&["out"]),
            ..Default::default()
        };
        let x = values(10 * k, 5, 1.0);
        let input = tract_ndarray::Array3::from_shape_vec((2, 5, k), x.clone())
            .unwrap()
            .into_tensor();
        let mut typed = decluttered(&model(graph));
        assert_eq!(fuse_dense_dynamic_i8(&mut typed).unwrap(), 1);
        let plan = typed.into_optimized().unwrap().into_runnable().unwrap();
        let (names, out) = op_names_and_output(&plan, &[input]);
        assert!(
            names.iter().any(|n| n == "FusedDenseDynamicI8")
                && !names.iter().any(|n| n.contains("Add")),
            "{names:?}"
        );
        let (w, b) = (values(k * n, 3, 1.0), values(n, 4, 1.0));
        assert_eq!(out, definition(&x, &w, &b, 10, k, n));
    }
}
