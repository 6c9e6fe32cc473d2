//! int8 dense layers (int8-compute variants) as one op on AVX-512 VNNI and aarch64 NEON
//! cores (issues #7 and #30).
//!
//! An int8-compute layer is, after parsing: quantise the activations to i8, an integer
//! `EinSum` of them (minus their zero point) by the constant i8 weights, then
//! [`super::FusedDequantizeLinear`] (per-output scale and the bias). tract runs the
//! product as two nodes, a packing of the activations and its matmul (on the AMX tile
//! where there is one), and each costs more in set-up than in arithmetic at a short
//! query's size: the tiny preset's 128 x 128 products at 12 tokens took ~3 µs each (the
//! arithmetic is ~0.2 µs), its 13 matmuls about half of a 120 µs query.
//!
//! Here the product and the dequantisation are one node: weights packed at load four
//! inputs per 32-bit lane (`vpdpbusd`'s layout) with their column sums, a 12-token x
//! 32-output tile accumulating exact i32 sums, and the dequantisation's two roundings
//! (`acc as f32 · scale`, then `+ bias`) in the tile's store, so the output is bit for
//! bit that of the three nodes it replaces. `vpdpbusd` multiplies unsigned by signed
//! bytes: the activations are offset by 128 into u8 and the weights' column sums times
//! `128 + zero point` subtracted at the end (exact integers).
//!
//! On aarch64 the same packing feeds two NEON forms, chosen per call by the core. With
//! the dot product (Cortex-A76, Pi 5) `sdot` takes a 16-byte load of a panel as it is, 4
//! columns x 4 inputs, against one row's 4 inputs, in 6-token x 16-output tiles. Without
//! it (Cortex-A72, Pi 4), where tract's `smlal` kernel does 4 multiply-adds per
//! instruction, the gemmlowp form does 8: `smull`/`smull2` of a row's 4 inputs (repeated
//! across the register) by two columns' into i16 products, `sadalp` of their pairs into
//! i32, in 4-token x 8-output tiles; where no weight is -128 (as the exporter writes them)
//! `smlal`/`smlal2` first add the next 4 inputs' products into the same i16 lanes, which
//! cannot overflow then. Both multiply signed bytes as they are, so only `zero point · Σ w`
//! is subtracted.
//!
//! [`fuse_dense_i8`] replaces each such `EinSum` + dequantisation of a decluttered model
//! (the quantisation stays: it often feeds three products, Q, K and V). On other cores
//! (x86-64 without AVX-512 VNNI, armv7) tract's kernels stay ([`available`];
//! [`crate::optimise`] decides).

use std::sync::Arc;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_hir::internal::*;

use super::dense::{dense_cost, dense_facts, eval_dense, flatten, replace_with, Line};
use super::quant::{quantize, FusedDequantizeLinear, FusedQuantizeLinear};
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;

/// Outputs per panel: two zmm registers of i32.
const NR: usize = 32;
/// Tokens per tile: 24 accumulators.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const MR: usize = 12;

/// What the tiles add to each activation before multiplying: `vpdpbusd` takes them as u8
/// (+128); the NEON tiles multiply signed bytes as they are.
const X_OFFSET: i32 = if cfg!(target_arch = "x86_64") { 128 } else { 0 };

/// An i8 weight matrix `[k, n]` with what its dequantisation needs, packed: for each
/// panel of [`NR`] outputs, for each group of four inputs, the panel's 32 columns of four
/// bytes (inputs past `k` and columns past `n` zero).
pub struct PackedDenseI8 {
    k: usize,
    n: usize,
    lines: Vec<Line<i8, 64>>,
    /// `(X_OFFSET + zero point) · Σᵢ w[i][j]`, per column, padded to whole panels (the
    /// tiles' activation offset and zero point, subtracted once).
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    correction: Vec<i32>,
    /// No weight is -128, so no product is (-128)·(-128) = 2¹⁴ and two products always fit
    /// one i16 (the NEON `smull` tiles then add a second input into the same lanes).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pairs_fit_i16: bool,
    /// Per-column scale and bias (zeros without one), padded to whole panels.
    scale: Vec<f32>,
    bias: Vec<f32>,
    has_bias: bool,
    zero_point: i32,
}

impl PackedDenseI8 {
    /// Packs `w` (row-major `[k, n]`, i8) for activations quantised with `zero_point`,
    /// dequantised with `scale` (one per column or one for all) and `bias` (`n`).
    pub fn new(
        w: &[i8],
        k: usize,
        n: usize,
        zero_point: i32,
        scale: &[f32],
        bias: Option<&[f32]>,
    ) -> TractResult<PackedDenseI8> {
        ensure!(k > 0 && n > 0, "FusedDenseI8: empty weight matrix {k}x{n}");
        ensure!(
            w.len() == k * n,
            "FusedDenseI8: {} weights for {k}x{n}",
            w.len()
        );
        ensure!(
            (-128..=255).contains(&zero_point),
            "FusedDenseI8: activation zero point {zero_point}"
        );
        ensure!(
            scale.len() == n || scale.len() == 1,
            "FusedDenseI8: {} scales for {n} outputs",
            scale.len()
        );
        let panels = n.div_ceil(NR);
        let quads = k.div_ceil(4);
        // Each (panel, quad) is 32 columns x 4 bytes: two lines.
        let mut lines = vec![Line([0; 64]); panels * quads * 2];
        let mut sums = vec![0i32; panels * NR];
        for i in 0..k {
            for j in 0..n {
                let (p, c) = (j / NR, j % NR);
                let at = ((p * quads + i / 4) * NR + c) * 4 + i % 4;
                lines[at / 64].0[at % 64] = w[i * n + j];
                sums[j] += w[i * n + j] as i32;
            }
        }
        let correction = sums.iter().map(|s| s * (X_OFFSET + zero_point)).collect();
        let mut scales = vec![0f32; panels * NR];
        for (j, s) in scales.iter_mut().take(n).enumerate() {
            *s = scale[if scale.len() == 1 { 0 } else { j }];
        }
        let mut biases = vec![0f32; panels * NR];
        if let Some(b) = bias {
            ensure!(
                b.len() == n,
                "FusedDenseI8: {} bias values for {n} outputs",
                b.len()
            );
            biases[..n].copy_from_slice(b);
        }
        Ok(PackedDenseI8 {
            k,
            n,
            lines,
            correction,
            scale: scales,
            bias: biases,
            has_bias: bias.is_some(),
            zero_point,
            pairs_fit_i16: !w.contains(&-128),
        })
    }

    /// Inputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Outputs per row.
    pub fn n(&self) -> usize {
        self.n
    }

    fn quads(&self) -> usize {
        self.k.div_ceil(4)
    }

    /// The packed weights as bytes.
    fn bytes(&self) -> &[i8] {
        flatten(&self.lines)
    }

    /// The exact i32 sum `Σᵢ (x[i] - zero point) · w[i][j]` from the packed bytes.
    fn dot(&self, x: &[i8], j: usize) -> i32 {
        let (p, c, quads) = (j / NR, j % NR, self.quads());
        let bytes = self.bytes();
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let w = bytes[((p * quads + i / 4) * NR + c) * 4 + i % 4];
                (v as i32 - self.zero_point) * w as i32
            })
            .sum()
    }
}

impl std::fmt::Debug for PackedDenseI8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{} i8 (zero point {}, bias: {})",
            self.k, self.n, self.zero_point, self.has_bias
        )
    }
}

/// `dequantise(Σ (x - zero point) · W) + b` over the last axis of an i8 `x`: f32 out.
///
/// With `input`, `x` is f32 and the op first quantises it as that `QuantizeLinear` node
/// would (the same function, into a scratch buffer); with `activation`, it ends with that
/// element-wise node's op (a GELU, the pooling's `Tanh`), run on its output in place as
/// tract would run it. A layer is then one node where it was up to three: each node of a
/// plan costs an output tensor, its `Arc` and a step of tract's loop, ~1 µs of a 200 µs
/// query on a Pi 5 core.
#[derive(Debug, Clone)]
pub struct FusedDenseI8 {
    pub packed: Arc<PackedDenseI8>,
    pub input: Option<FusedQuantizeLinear>,
    pub activation: Option<ElementWiseOp>,
}

impl PartialEq for FusedDenseI8 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed)
            && self.input == other.input
            && self.activation == other.activation
    }
}

thread_local! {
    /// The quantised input of a [`FusedDenseI8`] with `input`, reused across calls.
    static QUANTISED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Eq for FusedDenseI8 {}

impl Op for FusedDenseI8 {
    fn name(&self) -> StaticName {
        "FusedDenseI8".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = vec![format!("{:?}", self.packed)];
        if let Some(q) = &self.input {
            info.push(format!(
                "f32 input quantised: scale {}, zero point {}",
                q.scale, q.zero_point
            ));
        }
        if let Some(a) = &self.activation {
            info.push(format!("then {}", a.0.name()));
        }
        Ok(info)
    }
    op_as_typed_op!();
}

impl EvalOp for FusedDenseI8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let w = &self.packed;
        let out = match &self.input {
            None => eval_dense("FusedDenseI8", args_1!(inputs), w.k, w.n, |x, rows, out| {
                dense_i8(x, rows, w, out)
            })?,
            Some(q) => {
                eval_dense::<f32>("FusedDenseI8", args_1!(inputs), w.k, w.n, |x, rows, out| {
                    QUANTISED.with_borrow_mut(|buf| {
                        if buf.len() < x.len() {
                            buf.resize(x.len(), 0);
                        }
                        let bytes = &mut buf[..x.len()];
                        quantize(x, bytes, q.scale, q.zero_point, -128, 127);
                        dense_i8(as_i8(bytes), rows, w, out)
                    })
                })?
            }
        };
        let Some(activation) = &self.activation else {
            return Ok(out);
        };
        let mut out = args_1!(out).into_tensor();
        activation.0.eval_in_place(&mut out, activation.1)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

/// The bytes of a quantised i8 tensor as `i8`.
fn as_i8(bytes: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size, alignment and valid values.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
}

impl TypedOp for FusedDenseI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (k, n) = (self.packed.k, self.packed.n);
        let dt = if self.input.is_some() {
            DatumType::F32
        } else {
            DatumType::I8
        };
        dense_facts("FusedDenseI8", inputs[0], dt, k, n)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        Ok(dense_cost(
            inputs[0],
            DatumType::I32,
            self.packed.k,
            self.packed.n,
        ))
    }

    as_op!();
}

/// Whether this CPU runs [`FusedDenseI8`] with its tiles: VNNI on x86-64, NEON (part of
/// every aarch64 core) on aarch64.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `out[r] = dequantise(x[r]·W)` for `rows` rows of `w.k` i8 inputs.
pub fn dense_i8(x: &[i8], rows: usize, w: &PackedDenseI8, out: &mut [f32]) {
    assert!(x.len() >= rows * w.k && out.len() >= rows * w.n);
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512F and VNNI are present; the slices hold `rows` rows.
        unsafe { vnni::dense_i8(x, rows, w, out) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        // SAFETY: the dot product instructions are present.
        unsafe { neon::dense_i8_sdot(x, rows, w, out) };
    } else {
        neon::dense_i8_smull(x, rows, w, out);
    }
    #[cfg(not(target_arch = "aarch64"))]
    dense_i8_portable(x, rows, w, out);
}

/// The same values in plain loops (exact i32 sums, the same two roundings).
pub fn dense_i8_portable(x: &[i8], rows: usize, w: &PackedDenseI8, out: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    for r in 0..rows {
        let xr = &x[r * k..][..k];
        for j in 0..n {
            let scaled = w.dot(xr, j) as f32 * w.scale[j];
            out[r * n + j] = scaled + w.bias[j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{PackedDenseI8, MR, NR};
    use crate::fused_ops::dense::column_masks;
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    thread_local! {
        /// The activations of one call as u8 (+128), four inputs per 32-bit word, per tile.
        static PACKED_ROWS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// # Safety
    /// AVX-512F and VNNI must be present; `x` holds `rows · w.k` values, `out` `rows · w.n`.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn dense_i8(x: &[i8], rows: usize, w: &PackedDenseI8, out: &mut [f32]) {
        let (k, n, quads) = (w.k, w.n, w.quads());
        let panels = n.div_ceil(NR);
        PACKED_ROWS.with_borrow_mut(|a| {
            // Tile t0..t0+r: [quad][row][4 bytes]; inputs past k stay 0 (their weights are 0).
            a.clear();
            a.resize(rows * quads * 4, 0);
            for t0 in (0..rows).step_by(MR) {
                let r = MR.min(rows - t0);
                let dst = &mut a[t0 * quads * 4..][..r * quads * 4];
                for t in 0..r {
                    let row = &x[(t0 + t) * k..][..k];
                    for (q, quad) in row.chunks(4).enumerate() {
                        let at = (q * r + t) * 4;
                        for (d, &v) in dst[at..at + quad.len()].iter_mut().zip(quad) {
                            *d = (v as u8) ^ 0x80;
                        }
                    }
                }
            }
            let weights = w.bytes().as_ptr();
            let panel_bytes = quads * NR * 4;
            for p in 0..panels {
                // SAFETY (all pointers below): panel p of the packed weights (the next
                // one only prefetched, never read past the end), column p·NR of the
                // per-column vectors, the rows' buffers.
                let b = unsafe { weights.add(p * panel_bytes) };
                let next = b.wrapping_add(panel_bytes);
                let m = column_masks(NR.min(n - p * NR));
                let epilogue = unsafe {
                    (
                        w.correction.as_ptr().add(p * NR),
                        w.scale.as_ptr().add(p * NR),
                        w.bias.as_ptr().add(p * NR),
                    )
                };
                for t0 in (0..rows).step_by(MR) {
                    let r = MR.min(rows - t0);
                    let at = unsafe { a.as_ptr().add(t0 * quads * 4) };
                    let c = unsafe { out.as_mut_ptr().add(t0 * n + p * NR) };
                    let pf = if t0 == 0 && p + 1 < panels {
                        next
                    } else {
                        std::ptr::null()
                    };
                    unsafe { tile_rows(r, at, b, quads, c, n, m, epilogue, pf) };
                }
            }
        });
    }

    type Epilogue = (*const i32, *const f32, *const f32);

    /// [`tile`] for `r` (1 to [`MR`]) rows.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn tile_rows(
        r: usize,
        a: *const u8,
        b: *const i8,
        quads: usize,
        c: *mut f32,
        ldc: usize,
        m: (u16, u16),
        e: Epilogue,
        pf: *const i8,
    ) {
        macro_rules! tile {
            ($rows:literal) => {
                unsafe { tile::<$rows>(a, b, quads, c, ldc, m, e, pf) }
            };
        }
        for_tile_rows!(r, tile)
    }

    /// `R` rows of `c` (stride `ldc`, the columns of mask `m`) = `(a·b - correction) as
    /// f32 · scale + bias`; `a` is `[quads][R][4]` u8, `b` a packed `[quads][NR][4]` i8.
    /// A non-null `pf` is prefetched (the next panel, two lines per step).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn tile<const R: usize>(
        a: *const u8,
        b: *const i8,
        quads: usize,
        c: *mut f32,
        ldc: usize,
        m: (u16, u16),
        e: Epilogue,
        pf: *const i8,
    ) {
        let mut lo = [_mm512_setzero_si512(); R];
        let mut hi = [_mm512_setzero_si512(); R];
        unsafe {
            let (mut a, mut b, mut pf) = (a, b, pf);
            for _ in 0..quads {
                if !pf.is_null() {
                    _mm_prefetch::<_MM_HINT_T1>(pf.cast());
                    _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(64).cast());
                    pf = pf.wrapping_add(NR * 4);
                }
                let x = _mm512_load_si512(b.cast());
                let y = _mm512_load_si512(b.add(64).cast());
                for t in 0..R {
                    let s = _mm512_set1_epi32(a.add(t * 4).cast::<i32>().read_unaligned());
                    lo[t] = _mm512_dpbusd_epi32(lo[t], s, x);
                    hi[t] = _mm512_dpbusd_epi32(hi[t], s, y);
                }
                a = a.add(R * 4);
                b = b.add(NR * 4);
            }
            let (corr, scale, bias) = e;
            let (cl, ch) = (
                _mm512_loadu_si512(corr.cast()),
                _mm512_loadu_si512(corr.add(16).cast()),
            );
            let (sl, sh) = (_mm512_loadu_ps(scale), _mm512_loadu_ps(scale.add(16)));
            let (bl, bh) = (_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16)));
            for t in 0..R {
                let l = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo[t], cl));
                let h = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi[t], ch));
                let l = _mm512_add_ps(_mm512_mul_ps(l, sl), bl);
                let h = _mm512_add_ps(_mm512_mul_ps(h, sh), bh);
                _mm512_mask_storeu_ps(c.add(t * ldc), m.0, l);
                _mm512_mask_storeu_ps(c.add(t * ldc + 16), m.1, h);
            }
        }
    }
}

/// The NEON tiles: `sdot` where the core has the dot product (Cortex-A76, Pi 5), else the
/// `smull` + `sadalp` form (Cortex-A72, Pi 4), both on the packing above (a 16-byte load
/// of a panel is 4 columns x 4 inputs) and exact i32 sums of signed bytes.
#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{PackedDenseI8, NR};
    use std::arch::aarch64::*;
    use std::arch::asm;
    use std::cell::RefCell;

    /// Rows per `sdot` tile: 6 rows x 16 outputs is 24 accumulators, with 4 weight and 2
    /// activation registers 30 of the 32.
    const SDOT_MR: usize = 6;
    /// Outputs per `sdot` tile: half a panel, four registers of four i32.
    const SDOT_NR: usize = 16;
    /// Rows per `smull` tile: 4 rows x 8 outputs with two accumulators each (a pair of
    /// lanes per output) is 16, with 4 weight registers (two quads), the activations and
    /// the i16 products in flight.
    const SMULL_MR: usize = 4;
    /// Outputs per `smull` tile: a quarter of a panel.
    const SMULL_NR: usize = 8;
    /// Bytes past the packed rows that a tile's 16-byte loads may read (into unused lanes).
    const SLACK: usize = 32;

    thread_local! {
        /// The activations of one call, per tile of rows (see [`pack_rows`]).
        static PACKED_ROWS: RefCell<Vec<i8>> = const { RefCell::new(Vec::new()) };
    }

    /// Packs `rows` rows of `x` by tiles of `mr` rows, `[quad][row][4 · COPIES]` bytes per
    /// tile: each row's four inputs `COPIES` times over (inputs past k zero), so that one
    /// load gives `sdot` four rows and `smull` one row against four columns.
    fn pack_rows<const COPIES: usize>(a: &mut Vec<i8>, x: &[i8], rows: usize, k: usize, mr: usize) {
        let (quads, width) = (k.div_ceil(4), 4 * COPIES);
        a.clear();
        a.resize(rows * quads * width + SLACK, 0);
        for t0 in (0..rows).step_by(mr) {
            let r = mr.min(rows - t0);
            let dst = &mut a[t0 * quads * width..][..r * quads * width];
            for t in 0..r {
                let (full, tail) = x[(t0 + t) * k..][..k].as_chunks::<4>();
                let mut last = [0i8; 4];
                last[..tail.len()].copy_from_slice(tail);
                let d = dst[t * width..].as_mut_ptr();
                let put = |q: usize, quad: &[i8; 4]| {
                    let v = u32::from_ne_bytes(quad.map(|b| b as u8));
                    for c in 0..COPIES {
                        // SAFETY: (q · r + t) · width + 4 · c + 4 ≤ r · quads · width, the
                        // tile's length, for q < quads, t < r and c < COPIES.
                        unsafe {
                            d.add(q * r * width + 4 * c)
                                .cast::<u32>()
                                .write_unaligned(v)
                        };
                    }
                };
                for (q, quad) in full.iter().enumerate() {
                    put(q, quad);
                }
                if !tail.is_empty() {
                    put(full.len(), &last);
                }
            }
        }
    }

    /// The per-column correction, scale and bias from a tile's first column on.
    struct Epilogue {
        correction: *const i32,
        scale: *const f32,
        bias: *const f32,
    }

    impl Epilogue {
        /// From column `j` (a multiple of 4; the vectors are padded to whole panels).
        fn at(w: &PackedDenseI8, j: usize) -> Epilogue {
            Epilogue {
                correction: w.correction[j..].as_ptr(),
                scale: w.scale[j..].as_ptr(),
                bias: w.bias[j..].as_ptr(),
            }
        }

        /// Correction, scale and bias of the 4 columns of group `g`.
        ///
        /// # Safety
        /// Group `g` is within the padded vectors.
        #[inline(always)]
        unsafe fn group(&self, g: usize) -> Group {
            // SAFETY: the caller's.
            unsafe {
                Group(
                    vld1q_s32(self.correction.add(4 * g)),
                    vld1q_f32(self.scale.add(4 * g)),
                    vld1q_f32(self.bias.add(4 * g)),
                )
            }
        }
    }

    /// A group's correction, scale and bias.
    #[derive(Clone, Copy)]
    struct Group(int32x4_t, float32x4_t, float32x4_t);

    impl Group {
        /// Stores the first `cols` (> 0) of the group's 4 outputs at `c`:
        /// `(acc - correction) as f32 · scale + bias`, two roundings as the definition.
        ///
        /// # Safety
        /// `c` has room for `cols.min(4)` values.
        #[inline(always)]
        unsafe fn store(self, acc: int32x4_t, c: *mut f32, cols: usize) {
            let v = vmulq_f32(vcvtq_f32_s32(vsubq_s32(acc, self.0)), self.1);
            let v = vaddq_f32(v, self.2);
            // SAFETY: the caller's.
            unsafe {
                if cols >= 4 {
                    vst1q_f32(c, v);
                } else {
                    vst1q_lane_f32::<0>(c, v);
                    if cols > 1 {
                        vst1q_lane_f32::<1>(c.add(1), v);
                    }
                    if cols > 2 {
                        vst1q_lane_f32::<2>(c.add(2), v);
                    }
                }
            }
        }
    }

    /// Runs `$tile!(R)` for a runtime `r` of the listed row counts.
    macro_rules! for_rows {
        ($r:expr, [$($rows:literal),*], $tile:ident) => {
            match $r {
                $($rows => $tile!($rows),)*
                _ => unreachable!("a tile of {} rows", $r),
            }
        };
    }

    /// `out[r] = dequantise(x[r]·W)` with `sdot` tiles of [`SDOT_MR`] x [`SDOT_NR`].
    ///
    /// # Safety
    /// The core has FEAT_DotProd; `x` holds `rows · w.k` values, `out` `rows · w.n`.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn dense_i8_sdot(x: &[i8], rows: usize, w: &PackedDenseI8, out: &mut [f32]) {
        let (k, n, quads) = (w.k, w.n, w.quads());
        PACKED_ROWS.with_borrow_mut(|a| {
            pack_rows::<1>(a, x, rows, k, SDOT_MR);
            for j0 in (0..n).step_by(SDOT_NR) {
                let e = Epilogue::at(w, j0);
                let cols = SDOT_NR.min(n - j0);
                // SAFETY (all pointers below): columns j0.. of panel j0 / NR, each quad's
                // NR · 4 bytes apart; the tile's rows of the packed activations and of `out`.
                let b = unsafe {
                    w.bytes()
                        .as_ptr()
                        .add((j0 / NR) * quads * NR * 4 + (j0 % NR) * 4)
                };
                for t0 in (0..rows).step_by(SDOT_MR) {
                    let r = SDOT_MR.min(rows - t0);
                    let at = unsafe { a.as_ptr().add(t0 * quads * 4) };
                    let c = unsafe { out.as_mut_ptr().add(t0 * n + j0) };
                    macro_rules! tile {
                        ($rows:literal) => {
                            unsafe { sdot_tile::<$rows>(at, b, quads, c, n, cols, &e) }
                        };
                    }
                    for_rows!(r, [1, 2, 3, 4, 5, 6], tile);
                }
            }
        });
    }

    /// `acc += w · x.4b[lane]`: each of the 4 i32 lanes adds the dot product of its 4 bytes
    /// of `w` with the 4 bytes `lane` of `x` (`vdotq_laneq_s32`, unstable as an intrinsic).
    /// Registers only; to be used in an `unsafe` block of a function that enables dotprod.
    macro_rules! sdot {
        ($acc:expr, $w:expr, $x:expr, $lane:literal) => {{
            let mut acc = $acc;
            asm!(
                "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{lane}]",
                acc = inout(vreg) acc,
                w = in(vreg) $w,
                x = in(vreg) $x,
                lane = const $lane,
                options(pure, nomem, nostack, preserves_flags)
            );
            acc
        }};
    }

    /// `R` rows of `c` (stride `ldc`, its first `cols` columns) = `(a·b - correction) as
    /// f32 · scale + bias`; `a` is `[quads][R][4]` i8, `b` 16 columns of a packed panel.
    ///
    /// # Safety
    /// FEAT_DotProd; `a` is readable for 32 bytes past its `quads · R · 4`, `b` for `quads`
    /// panel quads, `c` writable for `R` rows of `cols`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn sdot_tile<const R: usize>(
        a: *const i8,
        b: *const i8,
        quads: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        e: &Epilogue,
    ) {
        let mut acc = [[vdupq_n_s32(0); 4]; R];
        // SAFETY: the reads are within the caller's bounds (rows 4.. of a quad are the
        // second load's first lanes; the lanes past R are never used); `sdot` only touches
        // registers and this function enables dotprod.
        unsafe {
            let (mut a, mut b) = (a, b);
            for _ in 0..quads {
                let wv = [
                    vld1q_s8(b),
                    vld1q_s8(b.add(16)),
                    vld1q_s8(b.add(32)),
                    vld1q_s8(b.add(48)),
                ];
                let x0 = vld1q_s8(a);
                let x1 = if R > 4 { vld1q_s8(a.add(16)) } else { x0 };
                // Spelled out row by row: a loop over 24 lane-selected products is not
                // unrolled, and its accumulators then live on the stack.
                macro_rules! row {
                    ($t:literal, $x:ident, $lane:literal) => {
                        if $t < R {
                            for (acc, &wg) in acc[$t].iter_mut().zip(&wv) {
                                *acc = sdot!(*acc, wg, $x, $lane);
                            }
                        }
                    };
                }
                row!(0, x0, 0);
                row!(1, x0, 1);
                row!(2, x0, 2);
                row!(3, x0, 3);
                row!(4, x1, 0);
                row!(5, x1, 1);
                a = a.add(R * 4);
                b = b.add(NR * 4);
            }
            for g in 0..4.min(cols.div_ceil(4)) {
                let group = e.group(g);
                for (t, acc) in acc.iter().enumerate() {
                    group.store(acc[g], c.add(t * ldc + 4 * g), cols - 4 * g);
                }
            }
        }
    }

    /// `out[r] = dequantise(x[r]·W)` with `smull` tiles of [`SMULL_MR`] x [`SMULL_NR`],
    /// two inputs per i16 lane where no product can be 2¹⁴ (see [`smull_tile`]).
    pub(super) fn dense_i8_smull(x: &[i8], rows: usize, w: &PackedDenseI8, out: &mut [f32]) {
        if w.pairs_fit_i16 {
            dense_i8_smull_with::<true>(x, rows, w, out)
        } else {
            dense_i8_smull_with::<false>(x, rows, w, out)
        }
    }

    /// [`dense_i8_smull`] with (`PAIRS`) or without a second input in each i16 lane.
    pub(super) fn dense_i8_smull_with<const PAIRS: bool>(
        x: &[i8],
        rows: usize,
        w: &PackedDenseI8,
        out: &mut [f32],
    ) {
        assert!(x.len() >= rows * w.k && out.len() >= rows * w.n);
        assert!(
            w.pairs_fit_i16 || !PAIRS,
            "a -128 weight: i16 pairs may overflow"
        );
        let (k, n, quads) = (w.k, w.n, w.quads());
        PACKED_ROWS.with_borrow_mut(|a| {
            pack_rows::<4>(a, x, rows, k, SMULL_MR);
            for j0 in (0..n).step_by(SMULL_NR) {
                let e = Epilogue::at(w, j0);
                let cols = SMULL_NR.min(n - j0);
                // SAFETY (all pointers below): as in `dense_i8_sdot`, with 16 bytes per
                // row and quad.
                let b = unsafe {
                    w.bytes()
                        .as_ptr()
                        .add((j0 / NR) * quads * NR * 4 + (j0 % NR) * 4)
                };
                for t0 in (0..rows).step_by(SMULL_MR) {
                    let r = SMULL_MR.min(rows - t0);
                    let at = unsafe { a.as_ptr().add(t0 * quads * 16) };
                    let c = unsafe { out.as_mut_ptr().add(t0 * n + j0) };
                    macro_rules! tile {
                        ($rows:literal) => {
                            unsafe { smull_tile::<$rows, PAIRS>(at, b, quads, c, n, cols, &e) }
                        };
                    }
                    for_rows!(r, [1, 2, 3, 4], tile);
                }
            }
        });
    }

    /// `R` rows of `c` (stride `ldc`, its first `cols` columns) = `(a·b - correction) as
    /// f32 · scale + bias`; `a` is `[quads][R][16]` i8 (each row's quad four times), `b` 8
    /// columns of a packed panel.
    ///
    /// Per quad, `smull` (`smull2`) multiplies a row's four inputs by columns 0-1 (2-3) of a
    /// group of four into eight i16 products, and `sadalp` adds their pairs into i32 lanes:
    /// two lanes per column, added at the end. With `PAIRS`, `smlal` (`smlal2`) first adds
    /// the next quad's products into the same i16 lanes (8 multiply-adds per instruction
    /// and half the `sadalp`s): exact while no weight is -128, as `x·w + x'·w'` then lies
    /// within ±2·128·127.
    ///
    /// # Safety
    /// `a` is readable for its `quads · R · 16` bytes, `b` for `quads` panel quads, `c`
    /// writable for `R` rows of `cols`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "neon")]
    unsafe fn smull_tile<const R: usize, const PAIRS: bool>(
        a: *const i8,
        b: *const i8,
        quads: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        e: &Epilogue,
    ) {
        // [row][group of 4 columns][columns 0-1, columns 2-3], two lanes per column.
        let mut acc = [[[vdupq_n_s32(0); 2]; 2]; R];
        // SAFETY: the reads are within the caller's bounds.
        unsafe {
            let (mut a, mut b) = (a, b);
            let mut left = quads;
            if PAIRS {
                while left >= 2 {
                    let w0 = [vld1q_s8(b), vld1q_s8(b.add(16))];
                    let w1 = [vld1q_s8(b.add(NR * 4)), vld1q_s8(b.add(NR * 4 + 16))];
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let x0 = vld1q_s8(a.add(t * 16));
                        let x1 = vld1q_s8(a.add((R + t) * 16));
                        for ((acc, &w0), &w1) in acc.iter_mut().zip(&w0).zip(&w1) {
                            let lo = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
                            let lo = vmlal_s8(lo, vget_low_s8(w1), vget_low_s8(x1));
                            let hi = vmlal_high_s8(vmull_high_s8(w0, x0), w1, x1);
                            acc[0] = vpadalq_s16(acc[0], lo);
                            acc[1] = vpadalq_s16(acc[1], hi);
                        }
                    }
                    a = a.add(2 * R * 16);
                    b = b.add(2 * NR * 4);
                    left -= 2;
                }
            }
            for _ in 0..left {
                let w0 = [vld1q_s8(b), vld1q_s8(b.add(16))];
                for (t, acc) in acc.iter_mut().enumerate() {
                    let x0 = vld1q_s8(a.add(t * 16));
                    for (acc, &w0) in acc.iter_mut().zip(&w0) {
                        acc[0] = vpadalq_s16(acc[0], vmull_s8(vget_low_s8(w0), vget_low_s8(x0)));
                        acc[1] = vpadalq_s16(acc[1], vmull_high_s8(w0, x0));
                    }
                }
                a = a.add(R * 16);
                b = b.add(NR * 4);
            }
            for g in 0..2.min(cols.div_ceil(4)) {
                let group = e.group(g);
                for (t, acc) in acc.iter().enumerate() {
                    let sums = vpaddq_s32(acc[g][0], acc[g][1]);
                    group.store(sums, c.add(t * ldc + 4 * g), cols - 4 * g);
                }
            }
        }
    }
}

/// A scalar constant of the model, as `T`.
fn scalar<T: Datum + Copy>(model: &TypedModel, outlet: OutletId) -> Option<T> {
    let k = model.outlet_fact(outlet).ok()?.konst.clone()?;
    (k.len() == 1)
        .then(|| k.cast_to_scalar::<T>().ok())
        .flatten()
}

/// Replaces each integer `EinSum` of an i8 activation by a constant i8 `[k, n]` matrix
/// over the activation's last axis (zero weight zero point, unit scales, no bias: the
/// form int8-compute exports parse to) whose only use is a [`FusedDequantizeLinear`],
/// by one [`FusedDenseI8`]; returns how many.
pub fn fuse_dense_i8(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    for id in model.eval_order()? {
        let node = &model.nodes()[id];
        let Some(op) = node.op_as::<EinSum>() else {
            continue;
        };
        if node.inputs.len() != 9 || op.q_params.is_none() {
            continue;
        }
        let x_fact = model.outlet_fact(node.inputs[0])?;
        let Some(w) = model.outlet_fact(node.inputs[1])?.konst.clone() else {
            continue;
        };
        if x_fact.datum_type != DatumType::I8 || w.datum_type() != DatumType::I8 {
            continue;
        }
        if node.outputs[0].fact.datum_type != DatumType::I32 {
            continue;
        }
        // Inputs 2-8: bias, a0, a_scale, b0, b_scale, c0, c_scale.
        let i = |ix: usize| node.inputs[ix];
        let zero = |ix| scalar::<i32>(model, i(ix)) == Some(0);
        let one = |ix| scalar::<f32>(model, i(ix)) == Some(1.0);
        let Some(zero_point) = scalar::<i32>(model, i(3)) else {
            continue;
        };
        if !(zero(2) && one(4) && zero(5) && one(6) && zero(7) && one(8)) {
            continue;
        }
        let rank = x_fact.rank();
        let Some((k, n)) = super::dense::dense_shape(op, rank, w.shape()) else {
            continue;
        };
        let [succ] = node.outputs[0].successors.as_slice() else {
            continue;
        };
        let dequant = &model.nodes()[succ.node];
        let Some(dq) = dequant.op_as::<FusedDequantizeLinear>() else {
            continue;
        };
        let scale = dq.scale.try_as_plain_ram()?;
        let bias = dq.bias.as_ref().map(|b| b.try_as_plain_ram()).transpose()?;
        let bias = bias.as_ref().map(|b| b.as_slice::<f32>()).transpose()?;
        let w_plain = w.try_as_plain_ram()?;
        let packed = PackedDenseI8::new(
            w_plain.as_slice::<i8>()?,
            k,
            n,
            zero_point,
            scale.as_slice::<f32>()?,
            bias,
        )?;
        // The input's QuantizeLinear goes into the op when this layer is its only reader
        // (the attention's Q, K and V share theirs, which stays a node).
        let from = &model.nodes()[node.inputs[0].node];
        let (input, x) = match from.op_as::<FusedQuantizeLinear>() {
            Some(q) if q.signed && from.outputs[0].successors.len() == 1 => {
                (Some(q.clone()), from.inputs[0])
            }
            _ => (None, node.inputs[0]),
        };
        // The output's element-wise f32 op (GELU, Tanh) goes into the op when it is the
        // output's only reader.
        let activation = match dequant.outputs[0].successors.as_slice() {
            [next] if !model.outputs.contains(&OutletId::new(dequant.id, 0)) => {
                let next = &model.nodes()[next.node];
                next.op_as::<ElementWiseOp>()
                    .filter(|op| {
                        op.1.is_none() && next.outputs[0].fact.datum_type == DatumType::F32
                    })
                    .map(|op| (next.id, op.clone()))
            }
            _ => None,
        };
        let last = activation.as_ref().map_or(dequant.id, |(id, _)| *id);
        let op = FusedDenseI8 {
            packed: Arc::new(packed),
            input,
            activation: activation.map(|(_, op)| op),
        };
        replace_with(model, x, last, dequant.name.clone(), op)?;
        fused += 1;
    }
    if fused > 0 {
        model.compact()?;
    }
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        f32_initializer, f32_scalar, flat, input_info, model, node, op_names_and_output, outputs,
        raw_initializer, run_all, values,
    };
    use tract_onnx::pb::{self, tensor_proto::DataType};

    fn bytes(n: usize, seed: u64) -> Vec<i8> {
        values(n, seed, 127.9)
            .into_iter()
            .map(|v| v as i8)
            .collect()
    }

    /// The three nodes' definition: exact i32 sums, `as f32 · scale`, then `+ bias`.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[i8],
        w: &[i8],
        zp: i32,
        s: &[f32],
        b: &[f32],
        rows: usize,
        k: usize,
        n: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let acc: i32 = (0..k)
                    .map(|i| (x[r * k + i] as i32 - zp) * w[i * n + j] as i32)
                    .sum();
                out[r * n + j] = acc as f32 * s[j] + b[j];
            }
        }
        out
    }

    /// `g` as the engine prepares an int8 model: its protobuf rewrites 3 and 4 (i8
    /// quantisers, dequantisation + bias as one node), parsed with the device's ops
    /// registered, decluttered.
    fn parsed(mut g: pb::GraphProto) -> TypedModel {
        crate::fused_ops::quantize_to_i8(&mut g);
        crate::fused_ops::fuse_dequantize_bias(&mut g);
        let mut onnx = tract_onnx::onnx();
        crate::fused_ops::register(&mut onnx.op_register);
        onnx.model_for_proto_model(&model(g))
            .unwrap()
            .into_typed()
            .unwrap()
            .into_decluttered()
            .unwrap()
    }

    /// A `[2, 5, k]` input of values in [-4, 4).
    fn input(k: usize) -> Tensor {
        tract_ndarray::Array3::from_shape_vec((2, 5, k), values(10 * k, 7, 4.0))
            .unwrap()
            .into_tensor()
    }

    /// The op names of `typed`'s optimised plan and all its outputs on `x`, flattened.
    fn ops_and_outputs(typed: TypedModel, x: &Tensor) -> (Vec<String>, Vec<f32>) {
        let plan = typed.into_optimized().unwrap().into_runnable().unwrap();
        let (names, _) = op_names_and_output(&plan, std::slice::from_ref(x));
        let y = run_all(&plan, std::slice::from_ref(x))
            .iter()
            .flat_map(flat::<f32>)
            .collect();
        (names, y)
    }

    type Kernel = fn(&[i8], usize, &PackedDenseI8, &mut [f32]);

    /// Every kernel this CPU can run on `w`, by name: the dispatch of [`dense_i8`], the
    /// portable loop and, on aarch64, each NEON form directly (`smull` with and, where the
    /// weights allow it, without a second input per i16 lane; `sdot` where the core has
    /// it), whichever one [`dense_i8`] picks here.
    #[cfg_attr(not(target_arch = "aarch64"), allow(unused_mut, unused_variables))]
    fn kernels(w: &PackedDenseI8) -> Vec<(&'static str, Kernel)> {
        let mut all: Vec<(&'static str, Kernel)> =
            vec![("dense_i8", dense_i8), ("portable", dense_i8_portable)];
        #[cfg(target_arch = "aarch64")]
        {
            all.push(("smull", neon::dense_i8_smull_with::<false>));
            if w.pairs_fit_i16 {
                all.push(("smull pairs", neon::dense_i8_smull_with::<true>));
            }
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                // SAFETY: the dot product instructions are present.
                all.push(("sdot", |x, rows, w, out| unsafe {
                    neon::dense_i8_sdot(x, rows, w, out)
                }));
            }
        }
        all
    }

    /// Every tile height (1 to 20 rows and more), k not a multiple of 4, 8 or 16, partial
    /// panels and tiles, extreme zero points and saturated values, weights with -128 (the
    /// `smull` tiles' exact form; a column of -128 against rows of -128 overflows an i16
    /// pair) and without: every kernel gives the definition's values bit for bit.
    #[test]
    fn dense_i8_matches_the_definition_bit_for_bit() {
        let shapes = [
            (1, 1),
            (5, 7),
            (16, 32),
            (130, 33),
            (512, 64),
            (37, 100),
            (9, 8),
            (23, 17),
            (71, 48),
        ];
        let mut kernels_run = std::collections::BTreeSet::new();
        for &(k, n) in &shapes {
            let random = bytes(k * n, (k * 13 + n) as u64);
            let mut with_min = random.clone();
            with_min[0] = -128;
            // Column n - 1 all -128 (with its neighbours at -127 in the other form).
            for i in 0..k {
                with_min[i * n + n - 1] = -128;
            }
            let without_min: Vec<i8> = with_min.iter().map(|&v| v.max(-127)).collect();
            let s: Vec<f32> = values(n, 3, 1e-3).iter().map(|v| v.abs() + 1e-5).collect();
            let b = values(n, 4, 1.0);
            for w in [&with_min, &without_min] {
                for zp in [-128, -1, 0, 7, 127] {
                    for bias in [None, Some(&b[..])] {
                        let packed = PackedDenseI8::new(w, k, n, zp, &s, bias).unwrap();
                        assert_eq!(packed.pairs_fit_i16, !w.contains(&-128));
                        let zeros = vec![0f32; n];
                        for rows in (1..=20).chain([25, 31]) {
                            let mut x = bytes(rows * k, (rows + k) as u64);
                            x[0] = 127;
                            x[rows * k - 1] = -128;
                            // The last row all -128: the largest products.
                            x[(rows - 1) * k..].fill(-128);
                            let want = reference(&x, w, zp, &s, bias.unwrap_or(&zeros), rows, k, n);
                            for (name, kernel) in kernels(&packed) {
                                let mut got = vec![f32::NAN; rows * n];
                                kernel(&x, rows, &packed, &mut got);
                                assert_eq!(got, want, "{name}: k {k}, n {n}, zp {zp}, rows {rows}");
                                kernels_run.insert(name);
                            }
                        }
                    }
                }
            }
        }
        eprintln!("kernels checked: {kernels_run:?}");
        #[cfg(target_arch = "aarch64")]
        {
            assert!(kernels_run.contains("smull") && kernels_run.contains("smull pairs"));
            let sdot = std::arch::is_aarch64_feature_detected!("dotprod");
            assert_eq!(kernels_run.contains("sdot"), sdot);
        }
    }

    /// The overflow the `smull` tiles' exact form exists for: with -128 weights against
    /// -128 activations two products fill an i16 pair past 32767, so the pair form would
    /// be wrong where the exact form is right.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn smull_pairs_need_weights_without_minus_128() {
        let (k, n) = (8, 4);
        let w = vec![-128i8; k * n];
        let packed = PackedDenseI8::new(&w, k, n, 0, &[1.0], None).unwrap();
        assert!(!packed.pairs_fit_i16);
        let x = vec![-128i8; k];
        let mut exact = vec![0f32; n];
        neon::dense_i8_smull(&x, 1, &packed, &mut exact);
        assert_eq!(exact, vec![(8 * 128 * 128) as f32; n]);
        let pairs = std::panic::catch_unwind(|| {
            let mut out = vec![0f32; n];
            neon::dense_i8_smull_with::<true>(&x, 1, &packed, &mut out);
        });
        assert!(pairs.is_err(), "the pair form refuses -128 weights");
    }

    #[test]
    fn packing_refuses_inconsistent_sizes() {
        let ok = PackedDenseI8::new(&[1; 6], 2, 3, 0, &[1.0; 3], None);
        assert!(ok.is_ok());
        assert!(PackedDenseI8::new(&[1; 5], 2, 3, 0, &[1.0; 3], None).is_err());
        assert!(PackedDenseI8::new(&[1; 6], 2, 3, 0, &[1.0; 2], None).is_err());
        assert!(PackedDenseI8::new(&[1; 6], 2, 3, 0, &[1.0; 3], Some(&[0.0; 4])).is_err());
        assert!(PackedDenseI8::new(&[1; 6], 2, 3, 300, &[1.0; 3], None).is_err());
    }

    /// The unbiased form (the attention pooling's query: `n` = 1, `Cast` to f32 and a
    /// per-channel `Mul`, scale first or second) runs as a FusedDenseI8 too, with tract's
    /// values bit for bit; a `Cast` whose value has a second use keeps tract's nodes.
    #[test]
    fn an_unbiased_int8_layer_runs_fused_with_tract_values() {
        let (k, n) = (40usize, 1usize);
        let w: Vec<u8> = bytes(k * n, 9).into_iter().map(|v| v as u8).collect();
        let float = pb::tensor_proto::DataType::Float as i64;
        let graph = pb::GraphProto {
            node: vec![
                node("QuantizeLinear", &["x", "s", "zp"], "q", &[]),
                node("MatMulInteger", &["q", "w", "zp"], "acc", &[]),
                node("Cast", &["acc"], "accf", &[("to", float)]),
                node("Mul", &["sn", "accf"], "y", &[]),
                node("MatMulInteger", &["q", "w", "zp"], "acc2", &[]),
                node("Cast", &["acc2"], "accf2", &[("to", float)]),
                node("Mul", &["accf2", "sn"], "y2", &[]),
            ],
            initializer: vec![
                f32_scalar("s", 0.03),
                raw_initializer("zp", &[], DataType::Uint8, vec![131]),
                raw_initializer("w", &[k as i64, n as i64], DataType::Int8, w),
                f32_initializer("sn", &[n as i64], 5),
            ],
            input: vec![input_info("x", DataType::Float, &[2, 5, k as i64])],
            output: outputs(&["y", "y2", "accf2"]),
            ..Default::default()
        };
        let x = input(k);
        let run = |fuse: bool| -> (Vec<String>, Vec<f32>) {
            let mut g = graph.clone();
            if fuse {
                assert_eq!(crate::fused_ops::fuse_cast_scale(&mut g), 1);
                assert_eq!(g.node.len(), graph.node.len() - 1);
            }
            let mut typed = parsed(g);
            if fuse {
                assert_eq!(fuse_dense_i8(&mut typed).unwrap(), 1, "one int8 layer");
            }
            ops_and_outputs(typed, &x)
        };
        let ((names, fused), (_, tract)) = (run(true), run(false));
        assert_eq!(
            names.iter().filter(|n| *n == "FusedDenseI8").count(),
            1,
            "{names:?}"
        );
        assert_eq!(fused.len(), 3 * 2 * 5 * n);
        assert!(fused.iter().any(|&v| v.abs() > 1e-3), "not vacuous");
        assert_eq!(fused, tract, "bit for bit");
    }

    /// A layer whose QuantizeLinear feeds it alone and whose output feeds only an
    /// element-wise op (a GELU, as the encoder's FFN, or the pooling's Tanh) runs as one
    /// FusedDenseI8 node with tract's values bit for bit; a quantised input read by two
    /// layers (the attention's Q, K, V) stays a node of its own.
    #[test]
    fn a_layer_takes_in_its_quantisation_and_activation() {
        let (k, n) = (40usize, 48usize);
        let w: Vec<u8> = bytes(k * n, 8).into_iter().map(|v| v as u8).collect();
        let w2: Vec<u8> = bytes(n * k, 9).into_iter().map(|v| v as u8).collect();
        let sqrt2 = std::f32::consts::SQRT_2;
        let graph = pb::GraphProto {
            node: vec![
                // Layer 1: its own quantisation, then a GELU (the exporter's erf form).
                node("QuantizeLinear", &["x", "s", "zp"], "q", &[]),
                node("MatMulInteger", &["q", "w", "zp"], "acc", &[]),
                node("DequantizeLinear", &["acc", "sn"], "d", &[("axis", -1)]),
                node("Add", &["d", "b"], "h", &[]),
                node("Div", &["h", "sqrt2"], "h1", &[]),
                node("Erf", &["h1"], "h2", &[]),
                node("Add", &["h2", "one"], "h3", &[]),
                node("Mul", &["h", "h3"], "h4", &[]),
                node("Mul", &["h4", "half"], "g", &[]),
                // Layers 2 and 3 read one quantisation of g; 2 ends in a Tanh.
                node("QuantizeLinear", &["g", "s2", "zp"], "q2", &[]),
                node("MatMulInteger", &["q2", "w2", "zp"], "acc2", &[]),
                node("DequantizeLinear", &["acc2", "sk"], "d2", &[("axis", -1)]),
                node("Tanh", &["d2"], "y", &[]),
                node("MatMulInteger", &["q2", "w2", "zp"], "acc3", &[]),
                node("DequantizeLinear", &["acc3", "sk"], "y3", &[("axis", -1)]),
            ],
            initializer: vec![
                f32_scalar("s", 0.03),
                f32_scalar("s2", 0.02),
                raw_initializer("zp", &[], DataType::Uint8, vec![128]),
                raw_initializer("w", &[k as i64, n as i64], DataType::Int8, w),
                raw_initializer("w2", &[n as i64, k as i64], DataType::Int8, w2),
                f32_initializer("sn", &[n as i64], 5),
                f32_initializer("sk", &[k as i64], 11),
                f32_initializer("b", &[n as i64], 6),
                f32_scalar("sqrt2", sqrt2),
                f32_scalar("one", 1.0),
                f32_scalar("half", 0.5),
            ],
            input: vec![input_info("x", DataType::Float, &[2, 5, k as i64])],
            output: outputs(&["y", "y3"]),
            ..Default::default()
        };
        let x = input(k);
        let run = |fuse: bool| -> (Vec<String>, Vec<f32>) {
            let mut typed = parsed(graph.clone());
            assert_eq!(crate::fused_ops::fuse_gelu(&mut typed).unwrap(), 1);
            if fuse {
                assert_eq!(fuse_dense_i8(&mut typed).unwrap(), 3, "three int8 layers");
            }
            ops_and_outputs(typed, &x)
        };
        let ((names, fused), (_, tract)) = (run(true), run(false));
        let count = |op: &str| names.iter().filter(|n| *n == op).count();
        assert_eq!(count("FusedDenseI8"), 3, "{names:?}");
        assert_eq!(count("FusedQuantizeLinear"), 1, "the shared one: {names:?}");
        assert_eq!(count("FusedGelu") + count("Tanh"), 0, "{names:?}");
        assert_eq!(fused.len(), 2 * 2 * 5 * k);
        assert!(fused.iter().any(|&v| v.abs() > 1e-2), "not vacuous");
        assert_eq!(fused, tract, "bit for bit");
    }

    /// An int8-compute layer as the exporter writes it (QuantizeLinear, MatMulInteger,
    /// DequantizeLinear, bias Add), prepared as the engine prepares it: the product and
    /// dequantisation become one FusedDenseI8 with the values of tract's nodes, bit for
    /// bit; a MatMulInteger whose result is also a graph output stays tract's.
    #[test]
    fn an_int8_layer_runs_fused_with_tract_values() {
        let (k, n) = (40usize, 48usize);
        let w: Vec<u8> = bytes(k * n, 8).into_iter().map(|v| v as u8).collect();
        let graph = pb::GraphProto {
            node: vec![
                node("QuantizeLinear", &["x", "s", "zp"], "q", &[]),
                node("MatMulInteger", &["q", "w", "zp"], "acc", &[]),
                node("DequantizeLinear", &["acc", "sn"], "d", &[("axis", -1)]),
                node("Add", &["d", "b"], "y", &[]),
                node("MatMulInteger", &["q", "w", "zp"], "acc2", &[]),
            ],
            initializer: vec![
                f32_scalar("s", 0.03),
                raw_initializer("zp", &[], DataType::Uint8, vec![131]),
                raw_initializer("w", &[k as i64, n as i64], DataType::Int8, w),
                f32_initializer("sn", &[n as i64], 5),
                f32_initializer("b", &[n as i64], 6),
            ],
            input: vec![input_info("x", DataType::Float, &[2, 5, k as i64])],
            output: outputs(&["y", "acc2"]),
            ..Default::default()
        };
        let x = input(k);
        let run = |fuse: bool| -> (Vec<String>, Vec<f32>) {
            let mut typed = parsed(graph.clone());
            if fuse {
                assert_eq!(fuse_dense_i8(&mut typed).unwrap(), 1, "one int8 layer");
            }
            let plan = typed.into_optimized().unwrap().into_runnable().unwrap();
            op_names_and_output(&plan, std::slice::from_ref(&x))
        };
        let ((names, fused), (_, tract)) = (run(true), run(false));
        assert_eq!(
            names.iter().filter(|n| *n == "FusedDenseI8").count(),
            1,
            "{names:?}"
        );
        assert_eq!(fused.len(), 2 * 5 * n);
        assert_eq!(fused, tract, "bit for bit");
    }
}
