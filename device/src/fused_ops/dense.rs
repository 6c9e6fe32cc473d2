//! f32 dense layers, `x·W + b` with `W` and `b` constants, on AVX-512 cores (issue #7)
//! and on aarch64 (issue #30).
//!
//! A query's weight matmuls have few rows (its 8-64 tokens) against constant matrices
//! that do not stay cached between queries (MiniLM-L6: 42 MB of f32). tract multiplies
//! them with a 64x3 tile walked weight panel first: each 96 KB panel comes from memory
//! for its first three tokens and from L2 for the others, 256 bytes of weights per 12
//! multiply-adds. That stream ran at ~11 GB/s on an Intel Xeon (AMX, 2 vCPUs), where
//! onnxruntime's MLAS, on the same ONNX file, read the same weights at ~17 GB/s: per-node
//! profiles, 212 against 137 µs for a 384 → 1536 layer at 14 tokens, 700 against 512 µs
//! at 64; MiniLM float ran 1.3-1.4x onnxruntime's time.
//!
//! Here each weight matrix is packed once, when the model is loaded, in blocks of [`KB`]
//! inputs × [`NR`] outputs (32 KB), and a tile multiplies one block by up to [`MR`]
//! tokens: 128 bytes of weights per 24 multiply-adds, the next tokens' tiles finding the
//! block in L1. The first tile of each block also prefetches the next block, so two
//! streams are in flight while it waits on memory, and the next block arrives while the
//! other tiles compute from L1. The bias is the accumulators' starting value. One packed
//! copy serves every plan of a model (tract's plans each pack their own). Same machine,
//! interleaved with onnxruntime: MiniLM float short 2.95 → 2.68 ms with the prefetch
//! (onnxruntime 2.97), 64 tokens 13.8 → 10.9 ms (onnxruntime 11.9); docs/performance-notes.md (2026-12-01).
//!
//! On aarch64 (Raspberry Pi 4's Cortex-A72, Pi 5's A76) tract's arm64simd kernels pad a
//! short query's tokens to their tile (10 tokens: 16 columns of the 12x8 tile) and each
//! plan packs its own weights and the activations per call; the estimate of issue #30 put
//! the float variants at 1.04-1.07x onnxruntime's time. Here the panels are [`NR`] = 16
//! outputs, so a block is one contiguous 16 KB run and the whole matrix one forward
//! stream (what the cores' hardware prefetchers follow; no `prfm`), and a tile is up to 5
//! tokens x 16 outputs: 20 accumulators, one q register holding 4 consecutive inputs of
//! each token, read in place from the activations, and `fmla` by element against 4
//! weight rows, 80 `fmla` per 21 loads. The rows are split evenly over the fewest tiles,
//! so no token is padded. Estimated (tools/benchmarks/arm_estimate.py, tiny float,
//! symbolic plan, tract's kernels → these tiles): A72 short 1,253 → 977 µs, long 7,235 →
//! 6,584; A76 short 498 → 385, long 2,705 → 2,494 (onnxruntime 1,166, 6,586, 515, 2,519);
//! MiniLM-L6 float short, A72 22.18 → 20.11 ms (onnxruntime 20.64), A76 8.32 → 7.43 ms
//! (8.47). The tiles run at llvm-mca's `fmla` throughput (1 per cycle on the A72, 2 on
//! the A76); what is left above onnxruntime on long queries is GELU and attention.
//!
//! [`fuse_dense`] replaces, in a decluttered f32 model, each `EinSum` of an activation
//! by a constant rank-2 matrix over the activation's last axis (ONNX `MatMul` with a
//! weight initializer), with the constant `Add` after it when that is its only use. The
//! engine fuses on AVX-512F cores and on aarch64 ([`available`]; [`crate::optimise`]
//! decides); elsewhere (armv7, older x86) tract's kernels stay. The portable loop
//! [`dense_portable`] is the reference the tests hold the AVX-512 and NEON tiles to.

use std::sync::Arc;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::Add;
use tract_onnx::tract_hir::internal::*;

/// Inputs (`k`) per packed block: a block of one panel is `KB x NR` floats (32 KB, 16 KB
/// on aarch64).
const KB: usize = 256;
/// Outputs per panel: two zmm registers.
#[cfg(not(target_arch = "aarch64"))]
const NR: usize = 32;
/// Outputs per panel: the NEON tile's four q registers, so the weights of a block are
/// read in one sequential stream.
#[cfg(target_arch = "aarch64")]
const NR: usize = 16;
/// Tokens per tile: 24 accumulators, two weight registers, one broadcast.
#[cfg(not(target_arch = "aarch64"))]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const MR: usize = 12;
/// Tokens per tile: 20 accumulators (5 x 4 q registers), one q register of 4 inputs per
/// token and 4 of weights, 29 of the 32.
#[cfg(target_arch = "aarch64")]
const MR: usize = 5;

/// One 64-byte line of packed weights (`N` values of `T`): a `Vec` of them is 64-byte
/// aligned, as the tiles' aligned loads need.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line<T, const N: usize>(pub [T; N]);

/// The lines' values back to back.
pub(super) fn flatten<T, const N: usize>(lines: &[Line<T, N>]) -> &[T] {
    // SAFETY: `Line` is `repr(C)` around one `[T; N]` of 64 bytes (its alignment only
    // raises the start's), so the lines are that many arrays back to back.
    let arrays: &[[T; N]] =
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<[T; N]>(), lines.len()) };
    arrays.as_flattened()
}

/// The tiles' column masks (low and high zmm) for a panel with `cols` (1 to 32) columns.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) fn column_masks(cols: usize) -> (u16, u16) {
    let mask = if cols >= 32 {
        u32::MAX
    } else {
        (1u32 << cols) - 1
    };
    (mask as u16, (mask >> 16) as u16)
}

/// Has `op`, wired to `input`, take the place of node `last`'s first output (the nodes
/// it replaces are left unused, for `compact` to drop).
pub(super) fn replace_with(
    model: &mut TypedModel,
    input: OutletId,
    last: usize,
    name: String,
    op: impl Into<Box<dyn TypedOp>>,
) -> TractResult<()> {
    let mut patch = TypedModelPatch::default();
    let x = patch.tap_model(model, input)?;
    let out = patch.wire_node(name, op, &[x])?;
    patch.shunt_outside(model, OutletId::new(last, 0), out[0])?;
    patch.apply(model)
}

/// A weight matrix `[k, n]` and its bias, packed: for each block of [`KB`] inputs, for
/// each panel of [`NR`] outputs (zero-padded past `n`), the block's rows of the panel.
pub struct PackedDense {
    k: usize,
    n: usize,
    lines: Vec<Line<f32, 16>>,
    /// The bias, zero-padded to whole panels (zeros where the layer has none).
    bias: Vec<f32>,
    has_bias: bool,
}

impl PackedDense {
    /// Packs `w` (row-major `[k, n]`) and `bias` (`n` values).
    pub fn new(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> TractResult<PackedDense> {
        ensure!(k > 0 && n > 0, "FusedDense: empty weight matrix {k}x{n}");
        ensure!(
            w.len() == k * n,
            "FusedDense: {} weights for {k}x{n}",
            w.len()
        );
        let panels = n.div_ceil(NR);
        let mut lines = vec![Line([0.0; 16]); k * panels * NR / 16];
        for block in 0..k.div_ceil(KB) {
            let (k0, kb) = (block * KB, KB.min(k - block * KB));
            for p in 0..panels {
                let first = panel_offset(k0, kb, panels, p);
                for i in 0..kb {
                    let row = &w[(k0 + i) * n..][..n];
                    for j in 0..NR.min(n - p * NR) {
                        let at = first + i * NR + j;
                        lines[at / 16].0[at % 16] = row[p * NR + j];
                    }
                }
            }
        }
        let mut padded = vec![0f32; panels * NR];
        if let Some(b) = bias {
            ensure!(
                b.len() == n,
                "FusedDense: {} bias values for {n} outputs",
                b.len()
            );
            padded[..n].copy_from_slice(b);
        }
        Ok(PackedDense {
            k,
            n,
            lines,
            bias: padded,
            has_bias: bias.is_some(),
        })
    }

    /// The packed weights as one slice of floats.
    fn weights(&self) -> &[f32] {
        flatten(&self.lines)
    }
}

/// Where panel `p` of the block starting at input `k0` (`kb` inputs) begins, in floats.
fn panel_offset(k0: usize, kb: usize, panels: usize, p: usize) -> usize {
    k0 * panels * NR + p * kb * NR
}

impl std::fmt::Debug for PackedDense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{} (bias: {})", self.k, self.n, self.has_bias)
    }
}

/// `x·W + b` over the last axis of `x`, f32, `W` `[k, n]` packed at load.
#[derive(Debug, Clone)]
pub struct FusedDense {
    pub packed: Arc<PackedDense>,
}

impl PartialEq for FusedDense {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed)
    }
}

impl Eq for FusedDense {}

/// Runs `$tile` (a macro taking the row count as a literal) for a row count of 1 to
/// [`MR`] known only at run time: the tiles are monomorphised per height, so their
/// accumulators stay in registers.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_macros))]
macro_rules! for_tile_rows {
    ($r:expr, $tile:ident) => {
        match $r {
            1 => $tile!(1),
            2 => $tile!(2),
            3 => $tile!(3),
            4 => $tile!(4),
            5 => $tile!(5),
            6 => $tile!(6),
            7 => $tile!(7),
            8 => $tile!(8),
            9 => $tile!(9),
            10 => $tile!(10),
            11 => $tile!(11),
            _ => $tile!(12),
        }
    };
}

/// A dense layer op's evaluation: checks that `x`'s last axis has `k` values, makes the
/// `[.., n]` f32 output and has `run(x, rows, out)` fill all of it.
pub(super) fn eval_dense<T: Datum>(
    op: &str,
    x: TValue,
    k: usize,
    n: usize,
    run: impl FnOnce(&[T], usize, &mut [f32]),
) -> TractResult<TVec<TValue>> {
    let shape = x.shape();
    ensure!(
        shape.last() == Some(&k),
        "{op}: input {shape:?} for {k} inputs"
    );
    let rows = shape.iter().rev().skip(1).product::<usize>();
    let mut out_shape: TVec<usize> = shape.into();
    *out_shape.last_mut().expect("rank checked") = n;
    // SAFETY: `run` writes every element (each row, each of the n columns).
    let mut out = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
    {
        let xv = x.try_as_plain_ram()?;
        let mut ov = out.try_as_plain_ram_mut()?;
        run(xv.as_slice::<T>()?, rows, ov.as_slice_mut::<f32>()?);
    }
    Ok(tvec!(out.into_tvalue()))
}

/// A dense layer op's output fact: `x` of datum type `dt` with `k` values on its last
/// axis (or a symbol) gives f32 with `n`.
pub(super) fn dense_facts(
    op: &str,
    x: &TypedFact,
    dt: DatumType,
    k: usize,
    n: usize,
) -> TractResult<TVec<TypedFact>> {
    ensure!(x.datum_type == dt, "{op} takes {dt:?}");
    ensure!(x.rank() >= 1, "{op}: a scalar input");
    let last = &x.shape[x.rank() - 1];
    ensure!(
        last.as_i64().is_none_or(|d| d as usize == k),
        "{op}: input {:?} for {k} inputs",
        x.shape
    );
    let mut shape: TVec<TDim> = x.shape.iter().cloned().collect();
    *shape.last_mut().expect("rank checked") = n.into();
    Ok(tvec!(f32::fact(shape)))
}

/// `rows x k x n` multiply-adds of `dt`.
pub(super) fn dense_cost(x: &TypedFact, dt: DatumType, k: usize, n: usize) -> TVec<(Cost, TDim)> {
    let rows: TDim = x.shape.iter().rev().skip(1).product();
    tvec!((Cost::FMA(dt), rows * (k * n)))
}

impl Op for FusedDense {
    fn name(&self) -> StaticName {
        "FusedDense".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "k: {}, n: {}, bias: {}",
            self.packed.k, self.packed.n, self.packed.has_bias
        )])
    }
    op_as_typed_op!();
}

impl EvalOp for FusedDense {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let w = &self.packed;
        eval_dense("FusedDense", args_1!(inputs), w.k, w.n, |x, rows, out| {
            dense(x, rows, w, out)
        })
    }
}

impl TypedOp for FusedDense {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (k, n) = (self.packed.k, self.packed.n);
        dense_facts("FusedDense", inputs[0], DatumType::F32, k, n)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        Ok(dense_cost(
            inputs[0],
            DatumType::F32,
            self.packed.k,
            self.packed.n,
        ))
    }

    as_op!();
}

/// Whether this CPU runs [`FusedDense`] with its own tiles (and the engine fuses):
/// AVX-512F on x86-64, always on aarch64 (NEON is part of the architecture).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
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

/// `out[r] = x[r]·W + b` for `rows` rows of `w.k` inputs.
pub fn dense(x: &[f32], rows: usize, w: &PackedDense, out: &mut [f32]) {
    assert!(x.len() >= rows * w.k && out.len() >= rows * w.n);
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512F is present; the slices hold `rows` rows (asserted above).
        unsafe { avx512::dense(x, rows, w, out) };
        return;
    }
    // SAFETY: the slices hold `rows` rows (asserted above); aarch64 always has NEON.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        neon::dense(x, rows, w, out)
    };
    #[cfg(not(target_arch = "aarch64"))]
    dense_portable(x, rows, w, out);
}

/// The same sums in plain loops, block by block like the tiles.
pub fn dense_portable(x: &[f32], rows: usize, w: &PackedDense, out: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    let panels = n.div_ceil(NR);
    let weights = w.weights();
    for r in 0..rows {
        let o = &mut out[r * n..][..n];
        o.copy_from_slice(&w.bias[..n]);
        let xr = &x[r * k..][..k];
        for block in 0..k.div_ceil(KB) {
            let (k0, kb) = (block * KB, KB.min(k - block * KB));
            for p in 0..panels {
                let panel = &weights[panel_offset(k0, kb, panels, p)..][..kb * NR];
                let cols = NR.min(n - p * NR);
                let o = &mut o[p * NR..][..cols];
                for (i, &xi) in xr[k0..k0 + kb].iter().enumerate() {
                    for (oj, &wj) in o.iter_mut().zip(&panel[i * NR..][..cols]) {
                        *oj += xi * wj;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{column_masks, panel_offset, PackedDense, KB, MR, NR};
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    thread_local! {
        /// The activations of one call, repacked per tile: kept between queries.
        static PACKED_ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// # Safety
    /// AVX-512F must be present; `x` holds `rows · w.k` values, `out` `rows · w.n`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dense(x: &[f32], rows: usize, w: &PackedDense, out: &mut [f32]) {
        let (k, n) = (w.k, w.n);
        let panels = n.div_ceil(NR);
        PACKED_ROWS.with_borrow_mut(|a| {
            // Each tile's rows, interleaved: [k][rows of the tile]. Every element is
            // written, so the buffer is only resized (no clearing pass per call).
            a.resize(rows * k, 0.0);
            for t0 in (0..rows).step_by(MR) {
                let r = MR.min(rows - t0);
                let dst = &mut a[t0 * k..][..r * k];
                for t in 0..r {
                    let src = &x[(t0 + t) * k..][..k];
                    for (i, &v) in src.iter().enumerate() {
                        dst[i * r + t] = v;
                    }
                }
            }
            let weights = w.weights().as_ptr();
            for block in 0..k.div_ceil(KB) {
                let (k0, kb) = (block * KB, KB.min(k - block * KB));
                for p in 0..panels {
                    // SAFETY (all pointers below): offsets inside the packed weights
                    // (block k0, panel p), the bias (panel p) and the rows' buffers.
                    let b = unsafe { weights.add(panel_offset(k0, kb, panels, p)) };
                    let next = if p + 1 < panels {
                        unsafe { weights.add(panel_offset(k0, kb, panels, p + 1)) }
                    } else if k0 + kb < k {
                        unsafe {
                            weights.add(panel_offset(k0 + kb, KB.min(k - k0 - kb), panels, 0))
                        }
                    } else {
                        std::ptr::null()
                    };

                    let m = column_masks(NR.min(n - p * NR));
                    let bias = if block == 0 {
                        unsafe { w.bias.as_ptr().add(p * NR) }
                    } else {
                        std::ptr::null()
                    };
                    for t0 in (0..rows).step_by(MR) {
                        let r = MR.min(rows - t0);
                        let at = unsafe { a.as_ptr().add(t0 * k + k0 * r) };
                        let c = unsafe { out.as_mut_ptr().add(t0 * n + p * NR) };
                        // The first tile reads the panel from memory, and asks for the
                        // next one meanwhile: twice the reads in flight, and the later
                        // tiles (from L1) leave the next panel time to arrive.
                        let pf = if t0 == 0 { next } else { std::ptr::null() };
                        unsafe { tile_rows(r, at, b, kb, c, n, m, bias, pf) };
                    }
                }
            }
        });
    }

    /// [`tile`] for `r` (1 to [`MR`]) rows.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_rows(
        r: usize,
        a: *const f32,
        b: *const f32,
        kb: usize,
        c: *mut f32,
        ldc: usize,
        m: (u16, u16),
        bias: *const f32,
        pf: *const f32,
    ) {
        macro_rules! with_prefetch {
            ($rows:literal) => {
                unsafe { tile::<$rows, true>(a, b, kb, c, ldc, m, bias, pf) }
            };
        }
        macro_rules! without {
            ($rows:literal) => {
                unsafe { tile::<$rows, false>(a, b, kb, c, ldc, m, bias, pf) }
            };
        }
        if pf.is_null() {
            for_tile_rows!(r, without)
        } else {
            for_tile_rows!(r, with_prefetch)
        }
    }

    /// `R` rows of `c` (stride `ldc`, the columns of mask `m`) = (`bias` if not null,
    /// else `c`) + `a`·`b` over `kb` inputs; `a` is `[kb][R]`, `b` a packed `[kb][NR]`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const PF: bool>(
        a: *const f32,
        b: *const f32,
        kb: usize,
        c: *mut f32,
        ldc: usize,
        m: (u16, u16),
        bias: *const f32,
        pf: *const f32,
    ) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        unsafe {
            if bias.is_null() {
                for t in 0..R {
                    lo[t] = _mm512_maskz_loadu_ps(m.0, c.add(t * ldc));
                    hi[t] = _mm512_maskz_loadu_ps(m.1, c.add(t * ldc + 16));
                }
            } else {
                let (bl, bh) = (_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16)));
                lo = [bl; R];
                hi = [bh; R];
            }
            let (mut a, mut b, mut pf) = (a, b, pf);
            for _ in 0..kb {
                if PF {
                    _mm_prefetch::<_MM_HINT_T1>(pf.cast());
                    _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(16).cast());
                    pf = pf.wrapping_add(NR);
                }
                let x = _mm512_load_ps(b);
                let y = _mm512_load_ps(b.add(16));
                for t in 0..R {
                    let s = _mm512_set1_ps(*a.add(t));
                    lo[t] = _mm512_fmadd_ps(x, s, lo[t]);
                    hi[t] = _mm512_fmadd_ps(y, s, hi[t]);
                }
                a = a.add(R);
                b = b.add(NR);
            }
            for t in 0..R {
                _mm512_mask_storeu_ps(c.add(t * ldc), m.0, lo[t]);
                _mm512_mask_storeu_ps(c.add(t * ldc + 16), m.1, hi[t]);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{panel_offset, PackedDense, KB, MR, NR};
    use std::arch::aarch64::*;

    /// # Safety
    /// `x` holds `rows · w.k` values, `out` `rows · w.n`.
    pub(super) unsafe fn dense(x: &[f32], rows: usize, w: &PackedDense, out: &mut [f32]) {
        let (k, n) = (w.k, w.n);
        if rows == 0 {
            return;
        }
        let panels = n.div_ceil(NR);
        // The rows split evenly over the fewest tiles (11 rows: 3 + 4 + 4, not 5 + 5 + 1),
        // so no tile is left with too few accumulators to hide the fmla latency.
        let tiles = rows.div_ceil(MR);
        let weights = w.weights().as_ptr();
        for block in 0..k.div_ceil(KB) {
            let (k0, kb) = (block * KB, KB.min(k - block * KB));
            for p in 0..panels {
                let cols = NR.min(n - p * NR);
                // SAFETY (all pointers below): offsets inside the packed weights (block
                // k0, panel p), the bias (panel p), `x` (rows t0.., input k0) and `out`
                // (rows t0.., column p·NR).
                let b = unsafe { weights.add(panel_offset(k0, kb, panels, p)) };
                let bias = if block == 0 {
                    unsafe { w.bias.as_ptr().add(p * NR) }
                } else {
                    std::ptr::null()
                };
                for tile in 0..tiles {
                    let (t0, t1) = (tile * rows / tiles, (tile + 1) * rows / tiles);
                    let a = unsafe { x.as_ptr().add(t0 * k + k0) };
                    let c = unsafe { out.as_mut_ptr().add(t0 * n + p * NR) };
                    if cols == NR {
                        unsafe { tile_rows(t1 - t0, a, k, b, kb, c, n, bias) };
                    } else {
                        // A partial panel: the tile runs on a full-width copy (the
                        // padding columns' weights and bias are zeros).
                        let mut full = [0f32; MR * NR];
                        for t in 0..t1 - t0 {
                            let row = unsafe { std::slice::from_raw_parts(c.add(t * n), cols) };
                            full[t * NR..][..cols].copy_from_slice(row);
                        }
                        let f = full.as_mut_ptr();
                        unsafe { tile_rows(t1 - t0, a, k, b, kb, f, NR, bias) };
                        for t in 0..t1 - t0 {
                            let row = unsafe { std::slice::from_raw_parts_mut(c.add(t * n), cols) };
                            row.copy_from_slice(&full[t * NR..][..cols]);
                        }
                    }
                }
            }
        }
    }

    /// [`tile`] for `r` (1 to [`MR`]) rows.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_rows(
        r: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        kb: usize,
        c: *mut f32,
        ldc: usize,
        bias: *const f32,
    ) {
        // SAFETY: as the caller's.
        unsafe {
            match r {
                1 => tile::<1>(a, lda, b, kb, c, ldc, bias),
                2 => tile::<2>(a, lda, b, kb, c, ldc, bias),
                3 => tile::<3>(a, lda, b, kb, c, ldc, bias),
                4 => tile::<4>(a, lda, b, kb, c, ldc, bias),
                _ => tile::<5>(a, lda, b, kb, c, ldc, bias),
            }
        }
    }

    /// `R` rows of `c` (stride `ldc`, [`NR`] columns) = (`bias` if not null, else `c`) +
    /// `a`·`b` over `kb` inputs; `a` is `R` rows of stride `lda`, `b` a packed `[kb][NR]`.
    /// Four inputs of a row per q register, each multiplied by a weight row with `fmla`
    /// by element, so the activations are read in place (no broadcast, no repacking).
    #[inline(always)]
    unsafe fn tile<const R: usize>(
        a: *const f32,
        lda: usize,
        b: *const f32,
        kb: usize,
        c: *mut f32,
        ldc: usize,
        bias: *const f32,
    ) {
        // SAFETY: `a`, `b` and `c` hold what the doc says; `bias`, when not null, NR values.
        unsafe {
            let mut acc = [[vdupq_n_f32(0.0); 4]; R];
            if bias.is_null() {
                for (t, acc) in acc.iter_mut().enumerate() {
                    for (j, v) in acc.iter_mut().enumerate() {
                        *v = vld1q_f32(c.add(t * ldc + 4 * j));
                    }
                }
            } else {
                let row = [0, 1, 2, 3].map(|j| vld1q_f32(bias.add(4 * j)));
                acc = [row; R];
            }
            let mut b = b;
            let mut i = 0;
            while i + 4 <= kb {
                let xs: [float32x4_t; R] = std::array::from_fn(|t| vld1q_f32(a.add(t * lda + i)));
                macro_rules! lane {
                    ($l:literal) => {
                        let w = [0, 1, 2, 3].map(|j| vld1q_f32(b.add($l * NR + 4 * j)));
                        for (acc, x) in acc.iter_mut().zip(&xs) {
                            for (v, w) in acc.iter_mut().zip(&w) {
                                *v = vfmaq_laneq_f32::<$l>(*v, *w, *x);
                            }
                        }
                    };
                }
                lane!(0);
                lane!(1);
                lane!(2);
                lane!(3);
                b = b.add(4 * NR);
                i += 4;
            }
            while i < kb {
                let w = [0, 1, 2, 3].map(|j| vld1q_f32(b.add(4 * j)));
                for (t, acc) in acc.iter_mut().enumerate() {
                    let s = *a.add(t * lda + i);
                    for (v, w) in acc.iter_mut().zip(&w) {
                        *v = vfmaq_n_f32(*v, *w, s);
                    }
                }
                b = b.add(NR);
                i += 1;
            }
            for (t, acc) in acc.iter().enumerate() {
                for (j, v) in acc.iter().enumerate() {
                    vst1q_f32(c.add(t * ldc + 4 * j), *v);
                }
            }
        }
    }
}

/// Replaces each f32 `EinSum` of a decluttered model that multiplies an activation's
/// last axis by a constant `[k, n]` matrix (and the constant bias `Add` right after it,
/// when it is the product's only use) by one [`FusedDense`]; returns how many.
pub fn fuse_dense(model: &mut TypedModel) -> TractResult<usize> {
    fuse_dense_with(model, |w, k, n, bias| {
        Ok(Box::new(FusedDense {
            packed: Arc::new(PackedDense::new(w, k, n, bias)?),
        }))
    })
}

/// What [`fuse_dense`] does, each layer's op made by `make(w, k, n, bias)` from its
/// row-major `[k, n]` weights and its bias (also the matcher of
/// [`super::dense_dynamic_i8::fuse_dense_dynamic_i8`]).
pub(super) fn fuse_dense_with(
    model: &mut TypedModel,
    make: impl Fn(&[f32], usize, usize, Option<&[f32]>) -> TractResult<Box<dyn TypedOp>>,
) -> TractResult<usize> {
    let mut fused = 0;
    for id in model.eval_order()? {
        let node = &model.nodes()[id];
        let Some(op) = node.op_as::<EinSum>() else {
            continue;
        };
        if node.inputs.len() != 2 || op.q_params.is_some() || op.operating_dt != DatumType::F32 {
            continue;
        }
        let x_fact = model.outlet_fact(node.inputs[0])?;
        let w_fact = model.outlet_fact(node.inputs[1])?;
        let Some(w) = w_fact.konst.clone() else {
            continue;
        };
        if x_fact.datum_type != DatumType::F32 || w.datum_type() != DatumType::F32 {
            continue;
        }
        let rank = x_fact.rank();
        let Some((k, n)) = dense_shape(op, rank, w.shape()) else {
            continue;
        };
        // The bias: a constant Add of `n` values (any leading ones) as the only use.
        let succ = (node.outputs[0].successors.len() == 1)
            .then(|| node.outputs[0].successors[0].node)
            .map(|s| &model.nodes()[s]);
        let bias = succ.and_then(|add| {
            let is_add = add
                .op_as::<TypedBinOp>()
                .is_some_and(|op| op.0.is::<Add>() && op.1.is_none());
            if !is_add || add.inputs.len() != 2 {
                return None;
            }
            let other = add.inputs.iter().find(|i| i.node != id)?;
            let b = model.outlet_fact(*other).ok()?.konst.clone()?;
            let shape_ok = b.datum_type() == DatumType::F32
                && b.shape().last() == Some(&n)
                && b.shape().len() <= rank
                && b.shape().iter().rev().skip(1).all(|&d| d == 1);
            shape_ok.then_some((add.id, b))
        });
        let w_plain = w.try_as_plain_ram()?;
        let bias_plain = match &bias {
            Some((_, b)) => Some(b.try_as_plain_ram()?),
            None => None,
        };
        let bias_values = match &bias_plain {
            Some(b) => Some(b.as_slice::<f32>()?),
            None => None,
        };
        let op = make(w_plain.as_slice::<f32>()?, k, n, bias_values)?;
        let (last, name) = match &bias {
            Some((add, _)) => (*add, model.nodes()[*add].name.clone()),
            None => (id, node.name.clone()),
        };
        replace_with(model, node.inputs[0], last, name, op)?;
        fused += 1;
    }
    if fused > 0 {
        model.compact()?;
    }
    Ok(fused)
}

/// `(k, n)` if `op` (inputs of rank `rank` and `w.len()`, then any scalars) is
/// `x[.., k]·W[k, n] -> [.., n]`: every leading axis of `x` kept in place, `x`'s last axis
/// summed against `W`'s first, `W`'s second last in the output. A one-column layer (the
/// attention pooling's query) comes out of tract's declutter with `W` as a vector `[k]`
/// and the output's last axis of size 1 from neither input: that is `n` = 1, the same
/// values in the same order.
pub(super) fn dense_shape(op: &EinSum, rank: usize, w: &[usize]) -> Option<(usize, usize)> {
    if rank < 2 || !matches!(w.len(), 1 | 2) {
        return None;
    }
    let mut axes = 0;
    for axis in op.axes.iter_all_axes() {
        axes += 1;
        let scalars_only = axis.inputs.iter().skip(2).all(|i| i.is_empty());
        if axis.inputs.len() < 2 || !scalars_only || axis.outputs.len() != 1 {
            return None;
        }
        let ok = match (
            axis.inputs[0].as_slice(),
            axis.inputs[1].as_slice(),
            axis.outputs[0].as_slice(),
        ) {
            ([i], [], [o]) => i == o && *i < rank - 1,
            ([i], [0], []) => *i == rank - 1,
            ([], [1], [o]) => *o == rank - 1 && w.len() == 2,
            ([], [], [o]) => *o == rank - 1 && w.len() == 1,
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    (axes == rank + 1).then(|| (w[0], w.get(1).copied().unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{
        decluttered, f32_initializer, input_info, model, node, op_names_and_output, outputs, values,
    };
    use tract_onnx::pb;

    /// `x·W + b` in f64, row by row.
    fn reference(
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        rows: usize,
        k: usize,
        n: usize,
    ) -> Vec<f64> {
        let mut out = vec![0f64; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[i * n + j] as f64)
                    .sum();
                out[r * n + j] = dot + b.map_or(0.0, |b| b[j] as f64);
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f64], k: usize, what: &str) {
        // f32 sums of k products of values below 1: a few ulps per term at most.
        let tolerance = 4e-7 * k as f64 + 1e-6;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= tolerance,
                "{what}: [{i}] {g} vs {w}"
            );
        }
    }

    /// Every tile height (1-12 rows, the NEON tiles' 1-5, and more than one tile),
    /// partial panels (n not a multiple of 32 or 16, n below 16) and partial blocks (k not
    /// a multiple of 256, nor of the NEON tiles' 4 inputs), with and without a bias: the
    /// dispatching `dense` (AVX-512 or NEON where present) and the portable loop against
    /// an f64 reference.
    #[test]
    fn dense_matches_the_reference_on_every_edge() {
        for &(k, n) in &[
            (1, 1),
            (7, 5),
            (6, 70),
            (16, 32),
            (200, 33),
            (256, 64),
            (258, 20),
            (300, 40),
            (513, 17),
        ] {
            let w = values(k * n, (k * 31 + n) as u64, 1.0);
            let b = values(n, n as u64, 1.0);
            for bias in [None, Some(&b[..])] {
                let packed = PackedDense::new(&w, k, n, bias).unwrap();
                for rows in [1, 2, 3, 4, 5, 6, 11, 12, 13, 25, 64] {
                    let x = values(rows * k, (rows * 7 + k) as u64, 1.0);
                    let want = reference(&x, &w, bias, rows, k, n);
                    let what = format!("k {k}, n {n}, rows {rows}, bias {}", bias.is_some());
                    let mut out = vec![f32::NAN; rows * n];
                    dense(&x, rows, &packed, &mut out);
                    assert_close(&out, &want, k, &what);
                    let mut portable = vec![f32::NAN; rows * n];
                    dense_portable(&x, rows, &packed, &mut portable);
                    assert_close(&portable, &want, k, &format!("{what} (portable)"));
                }
            }
        }
    }

    #[test]
    fn packing_refuses_inconsistent_sizes() {
        assert!(PackedDense::new(&[1.0; 6], 2, 3, None).is_ok());
        assert!(PackedDense::new(&[1.0; 5], 2, 3, None).is_err());
        assert!(PackedDense::new(&[1.0; 6], 2, 3, Some(&[0.0; 2])).is_err());
        assert!(PackedDense::new(&[], 0, 3, None).is_err());
    }

    /// `MatMul` by an initializer then `Add` of one (a linear layer as exporters write
    /// it), on a `[batch, seq, k]` activation, next to a `MatMul` of two activations
    /// (not a dense layer) whose result is added to it.
    fn layer_graph(k: i64, n: i64, bias: bool) -> pb::GraphProto {
        let mut nodes = vec![node("MatMul", &["x", "w"], "xw", &[])];
        let mut initializer = vec![f32_initializer("w", &[k, n], 3)];
        let dense_out = if bias {
            nodes.push(node("Add", &["xw", "b"], "dense", &[]));
            initializer.push(f32_initializer("b", &[n], 4));
            "dense"
        } else {
            "xw"
        };
        nodes.push(node("MatMul", &["x", "y"], "xy", &[]));
        nodes.push(node("Add", &[dense_out, "xy"], "out", &[]));
        pb::GraphProto {
            node: nodes,
            initializer,
            input: vec![
                input_info("x", pb::tensor_proto::DataType::Float, &[2, 5, k]),
                input_info("y", pb::tensor_proto::DataType::Float, &[k, n]),
            ],
            output: outputs(&["out"]),
            ..Default::default()
        }
    }

    /// The layer becomes one FusedDense node (bias included) and the plan gives tract's
    /// values; the product of two activations stays tract's. 42 inputs and 50 outputs:
    /// an input tail past the NEON tiles' groups of 4 and partial panels on both paths;
    /// and one output (the attention pooling's query, whose weight tract turns into a
    /// vector).
    #[test]
    fn a_linear_layer_runs_fused_with_tract_values() {
        let k = 42usize;
        for (n, bias) in [(50usize, true), (50, false), (1, false), (1, true)] {
            let proto = model(layer_graph(k as i64, n as i64, bias));
            let inputs = [
                tract_ndarray::Array3::from_shape_vec((2, 5, k), values(10 * k, 5, 1.0))
                    .unwrap()
                    .into_tensor(),
                tract_ndarray::Array2::from_shape_vec((k, n), values(k * n, 6, 1.0))
                    .unwrap()
                    .into_tensor(),
            ];
            let run = |fused: bool| -> (Vec<String>, Vec<f32>) {
                let mut typed = decluttered(&proto);
                if fused {
                    assert_eq!(fuse_dense(&mut typed).unwrap(), 1, "one dense layer");
                }
                let plan = typed.into_optimized().unwrap().into_runnable().unwrap();
                op_names_and_output(&plan, &inputs)
            };
            let ((names, fused), (_, tract)) = (run(true), run(false));
            assert_eq!(
                names.iter().filter(|n| *n == "FusedDense").count(),
                1,
                "{names:?}"
            );
            assert!(
                !bias || names.iter().filter(|n| n.contains("Add")).count() <= 1,
                "the bias Add is folded into FusedDense: {names:?}"
            );
            assert_eq!(fused.len(), 2 * 5 * n);
            for (a, b) in fused.iter().zip(&tract) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn other_contractions_are_left_to_tract() {
        // W·x (the constant on the left) and a batched product of two activations.
        let (k, n) = (8i64, 6i64);
        let graph = pb::GraphProto {
            node: vec![node("MatMul", &["w", "x"], "out", &[])],
            initializer: vec![f32_initializer("w", &[n, k], 3)],
            input: vec![input_info(
                "x",
                pb::tensor_proto::DataType::Float,
                &[2, k, 3],
            )],
            output: outputs(&["out"]),
            ..Default::default()
        };
        let mut typed = decluttered(&model(graph));
        assert_eq!(fuse_dense(&mut typed).unwrap(), 0);
    }
}
