//! LayerNorm and bias addition as candle custom ops with a one-pass backward.
//!
//! Written from candle's basic ops (as `candle_nn::LayerNorm` has no backward), a
//! LayerNorm is nine passes forward and more backward, and every parameter that is
//! broadcast over `[batch, seq]` (LayerNorm's γ and β, each Linear's bias) gets its
//! gradient from candle's generic reduction over the leading dimensions, which walks
//! strided indices one element at a time: 19 % of a tiny-preset training step in
//! `perf record` (`Map1::map` under `reduce_op`, all from `backward`). Here the forward is
//! one pass per row and the backward computes the input's and the parameters' gradients
//! together, summing over rows with contiguous, vectorisable loops. Other dtypes and
//! devices fall back to the basic-op versions, which compute the same function.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use device::fused_ops::{lane_sum, layer_norm_row, row_moments};

/// `(x − mean) / sqrt(var + eps) · weight + bias` over the last dimension.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if fusable(&[x, weight, bias]) {
        x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            LayerNorm { eps: eps as f32 },
        )
    } else {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
        normed.broadcast_mul(weight)?.broadcast_add(bias)
    }
}

/// `y + bias`, the bias broadcast over every row of the last dimension.
pub fn add_bias(y: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if fusable(&[y, bias]) {
        y.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
    } else {
        y.broadcast_add(bias)
    }
}

/// Whether the custom ops take these tensors (CPU, f32); otherwise callers use basic ops.
pub(super) fn fusable(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.dtype() == DType::F32 && t.device().is_cpu())
}

/// The contiguous f32 slice of a CPU storage.
pub(super) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: f32 only")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input is not contiguous"),
    }
}

/// An error naming `op` unless the input and its gradient have one shape.
pub(super) fn same_shape(op: &str, x: &Layout, grad: &Layout) -> Result<()> {
    if x.shape() != grad.shape() {
        candle_core::bail!(
            "{op}: gradient {:?} for an input of {:?}",
            grad.shape(),
            x.shape()
        )
    }
    Ok(())
}

/// The row length `n` of `x` and a check that each parameter has `n` values.
fn row_len(op: &str, x: &Layout, params: &[&Layout]) -> Result<usize> {
    let n = x.shape().dims().last().copied().unwrap_or(1);
    for p in params {
        if p.shape().elem_count() != n {
            candle_core::bail!("{op}: parameter of shape {:?} for rows of {n}", p.shape())
        }
    }
    if n == 0 {
        candle_core::bail!("{op}: empty rows")
    }
    Ok(n)
}

/// `Σ a·b` over eight partial sums.
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// LayerNorm's gradients: `dx` (rows of `n`), and `dw`, `db` summed over rows.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn layer_norm_grad_rows(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    eps: f32,
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
) {
    let n = w.len();
    let inv_n = 1.0 / n as f32;
    let mut xhat = vec![0f32; n];
    let mut dxhat = vec![0f32; n];
    for ((dxr, xr), gr) in dx
        .chunks_exact_mut(n)
        .zip(x.chunks_exact(n))
        .zip(g.chunks_exact(n))
    {
        let (mean, rstd) = row_moments(xr, eps);
        for ((((h, dh), &x), &g), &w) in
            xhat.iter_mut().zip(dxhat.iter_mut()).zip(xr).zip(gr).zip(w)
        {
            *h = (x - mean) * rstd;
            *dh = g * w;
        }
        for (((dw, db), &g), &h) in dw.iter_mut().zip(db.iter_mut()).zip(gr).zip(&xhat) {
            *dw += g * h;
            *db += g;
        }
        let mean_dh = lane_sum(&dxhat, |v| v) * inv_n;
        let mean_dh_h = lane_dot(&dxhat, &xhat) * inv_n;
        for ((dx, &dh), &h) in dxr.iter_mut().zip(&dxhat).zip(&xhat) {
            *dx = rstd * (dh - mean_dh - h * mean_dh_h);
        }
    }
}

/// `out[r][i] += b[i]` for every row `r`.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn add_rows(out: &mut [f32], b: &[f32]) {
    for row in out.chunks_exact_mut(b.len()) {
        for (v, &b) in row.iter_mut().zip(b) {
            *v += b;
        }
    }
}

/// `sum[i] = Σ_r g[r][i]`.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn sum_rows(g: &[f32], sum: &mut [f32]) {
    for row in g.chunks_exact(sum.len()) {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += v;
        }
    }
}

struct LayerNorm {
    eps: f32,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm-fused"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        row_len(self.name(), xl, &[wl, bl])?;
        let x = f32_slice(xs, xl, self.name())?;
        let w = f32_slice(ws, wl, self.name())?;
        let b = f32_slice(bs, bl, self.name())?;
        // The device's row kernel: training normalises as the board does.
        let mut y = x.to_vec();
        for row in y.chunks_exact_mut(w.len()) {
            layer_norm_row(row, w, Some(b), self.eps);
        }
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = weight.elem_count();
        let rows = x.elem_count() / n;
        // One op computes all three gradients, packed as [dx | dweight | dbias].
        let packed = x.apply_op3_no_bwd(
            weight,
            &grad.contiguous()?,
            &LayerNormGrad { eps: self.eps },
        )?;
        let dx = packed.narrow(0, 0, rows * n)?.reshape(x.shape())?;
        let dw = packed.narrow(0, rows * n, n)?.reshape(weight.shape())?;
        let db = packed.narrow(0, rows * n + n, n)?.reshape(weight.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Inputs `(x, weight, grad)`; output `[dx (x's size) | dweight (n) | dbias (n)]`.
struct LayerNormGrad {
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "layer-norm-fused-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(self.name(), xl, &[wl])?;
        same_shape(self.name(), xl, gl)?;
        let x = f32_slice(xs, xl, self.name())?;
        let w = f32_slice(ws, wl, self.name())?;
        let g = f32_slice(gs, gl, self.name())?;
        let mut out = vec![0f32; x.len() + 2 * n];
        let (dx, params) = out.split_at_mut(x.len());
        let (dw, db) = params.split_at_mut(n);
        layer_norm_grad_rows(x, w, g, self.eps, dx, dw, db);
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * n)))
    }
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias-fused"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        row_len(self.name(), yl, &[bl])?;
        let y = f32_slice(ys, yl, self.name())?;
        let b = f32_slice(bs, bl, self.name())?;
        let mut out = y.to_vec();
        add_rows(&mut out, b);
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = grad
            .contiguous()?
            .apply_op1_no_bwd(&ColumnSum {
                n: bias.elem_count(),
            })?
            .reshape(bias.shape())?;
        Ok((Some(grad.clone()), Some(db)))
    }
}

/// Sum over every row of rows of `n`: `[.., n]` → `[n]`.
struct ColumnSum {
    n: usize,
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s, l, self.name())?;
        if self.n == 0 || g.len() % self.n != 0 {
            candle_core::bail!("{}: {} values in rows of {}", self.name(), g.len(), self.n)
        }
        let mut sum = vec![0f32; self.n];
        sum_rows(g, &mut sum);
        Ok((CpuStorage::F32(sum), Shape::from(self.n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn values(n: usize, seed: usize, spread: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 2003.0 - 0.5) * spread)
            .collect()
    }

    /// Values and every gradient (input and parameters) agree with the basic-op version,
    /// under a non-trivial upstream gradient, on a [B, S, d] input.
    #[test]
    fn layer_norm_matches_the_basic_op_version_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let (b, s, d) = (3, 5, 24);
        let up = Tensor::from_vec(values(b * s * d, 4, 2.0), (b, s, d), &dev)?;
        let run = |fused: bool| -> Result<Vec<Vec<f32>>> {
            let x = Var::from_tensor(&Tensor::from_vec(
                values(b * s * d, 1, 6.0),
                (b, s, d),
                &dev,
            )?)?;
            let w = Var::from_tensor(&Tensor::from_vec(values(d, 2, 2.0), d, &dev)?)?;
            let bias = Var::from_tensor(&Tensor::from_vec(values(d, 3, 1.0), d, &dev)?)?;
            let y = if fused {
                layer_norm(x.as_tensor(), w.as_tensor(), bias.as_tensor(), 1e-5)?
            } else {
                let x = x.as_tensor();
                let mean = x.mean_keepdim(D::Minus1)?;
                let centered = x.broadcast_sub(&mean)?;
                let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
                let normed = centered.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
                normed
                    .broadcast_mul(w.as_tensor())?
                    .broadcast_add(bias.as_tensor())?
            };
            let grads = (&y * &up)?.sum_all()?.backward()?;
            let mut out = vec![y.flatten_all()?.to_vec1()?];
            for v in [&x, &w, &bias] {
                out.push(
                    grads
                        .get(v.as_tensor())
                        .expect("gradient")
                        .flatten_all()?
                        .to_vec1()?,
                );
            }
            Ok(out)
        };
        let (fused, basic) = (run(true)?, run(false)?);
        for (which, (a, b)) in fused.iter().zip(&basic).enumerate() {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 2e-5 * (1.0 + y.abs()),
                    "output {which}: {x} vs {y}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn add_bias_matches_broadcast_add_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let up = Tensor::from_vec(values(4 * 6 * 10, 7, 2.0), (4, 6, 10), &dev)?;
        let run = |fused: bool| -> Result<Vec<Vec<f32>>> {
            let y = Var::from_tensor(&Tensor::from_vec(values(240, 5, 3.0), (4, 6, 10), &dev)?)?;
            let b = Var::from_tensor(&Tensor::from_vec(values(10, 6, 1.0), 10, &dev)?)?;
            let out = if fused {
                add_bias(y.as_tensor(), b.as_tensor())?
            } else {
                y.as_tensor().broadcast_add(b.as_tensor())?
            };
            let grads = (&out * &up)?.sum_all()?.backward()?;
            Ok(vec![
                out.flatten_all()?.to_vec1()?,
                grads
                    .get(y.as_tensor())
                    .expect("dy")
                    .flatten_all()?
                    .to_vec1()?,
                grads.get(b.as_tensor()).expect("db").to_vec1()?,
            ])
        };
        let (fused, basic) = (run(true)?, run(false)?);
        for (a, b) in fused.iter().zip(&basic) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
        Ok(())
    }

    #[test]
    fn a_parameter_of_the_wrong_size_is_an_error_not_a_panic() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 8), DType::F32, &dev).unwrap();
        let w = Tensor::ones(7, DType::F32, &dev).unwrap();
        assert!(layer_norm(&x, &w, &w, 1e-5).is_err());
        assert!(add_bias(&x, &w).is_err());
    }
}
