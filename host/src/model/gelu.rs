//! Exact (erf) GELU for training: one pass forward, one pass backward.
//!
//! candle's `gelu_erf` computes erf one element at a time through a scalar libm-style
//! function (4.4 % of a tiny-preset training step in `perf record`), and its backward is
//! a chain of nine tensor ops (square, negate, divide, exp, ..., each a pass and a fresh
//! buffer) over the largest activation of the model, `[batch, seq, ffn]`. This op runs
//! the device's GELU kernel (`device::fused_ops::gelu`, the one the board runs after
//! export) forward, and the derivative `½(1 + erf(x/√2)) + x·φ(x)` in one pass backward.
//! Other dtypes and devices fall back to candle's op.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use device::fused_ops::gelu::{gelu_grad_into, gelu_into};

use super::fused_ops::{f32_slice, fusable, same_shape};

/// `0.5·x·(1 + erf(x/√2))`, with a gradient.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if fusable(&[x]) {
        x.contiguous()?.apply_op1(Gelu)
    } else {
        x.gelu_erf()
    }
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf-fused"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let mut y = vec![0f32; x.len()];
        gelu_into(x, &mut y);
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(&grad, &GeluGrad)?))
    }
}

/// `grad · gelu'(x)` for inputs `(x, grad)`.
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "gelu-erf-fused-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(self.name(), x_layout, grad_layout)?;
        let x_data = f32_slice(x, x_layout, self.name())?;
        let g = f32_slice(grad, grad_layout, self.name())?;
        let mut dx = vec![0f32; x_data.len()];
        gelu_grad_into(x_data, g, &mut dx);
        Ok((CpuStorage::F32(dx), x_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward values and input gradients agree with candle's own `gelu_erf` (whose
    /// gradient is candle's chain of ops), on a non-trivial upstream gradient.
    #[test]
    fn matches_candle_gelu_erf_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let xs: Vec<f32> = (0..3 * 5 * 40)
            .map(|i| ((i * 7919) % 1201) as f32 * 0.01 - 6.0)
            .collect();
        let up: Vec<f32> = (0..xs.len())
            .map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let up = Tensor::from_vec(up, (3, 5, 40), &dev)?;
        let run = |fused: bool| -> Result<(Vec<f32>, Vec<f32>)> {
            let x = Var::from_tensor(&Tensor::from_vec(xs.clone(), (3, 5, 40), &dev)?)?;
            let y = if fused {
                gelu(x.as_tensor())?
            } else {
                x.as_tensor().gelu_erf()?
            };
            let loss = (&y * &up)?.sum_all()?;
            let grads = loss.backward()?;
            let dx = grads.get(x.as_tensor()).expect("a gradient for x");
            Ok((y.flatten_all()?.to_vec1()?, dx.flatten_all()?.to_vec1()?))
        };
        let (y, dx) = run(true)?;
        let (y_ref, dx_ref) = run(false)?;
        for (a, b) in y.iter().zip(&y_ref).chain(dx.iter().zip(&dx_ref)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        Ok(())
    }

    /// A transposed (strided) input is made contiguous, not misread.
    #[test]
    fn a_strided_input_gives_the_values_of_its_contiguous_copy() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 24., &dev)?
            .affine(0.5, -6.0)?
            .reshape((4, 6))?;
        let t = x.t()?;
        let a: Vec<Vec<f32>> = gelu(&t)?.to_vec2()?;
        let b: Vec<Vec<f32>> = t.contiguous()?.gelu_erf()?.to_vec2()?;
        for (ra, rb) in a.iter().zip(&b) {
            for (x, y) in ra.iter().zip(rb) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()));
            }
        }
        Ok(())
    }
}
