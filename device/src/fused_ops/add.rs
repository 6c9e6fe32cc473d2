//! f32 additions that tract leaves to its generic broadcasting evaluator.
//!
//! With concrete shapes tract turns an `Add` into a vectorised kernel (`OptBinUnicast`,
//! `OptBinByScalar`) or folds it into the matmul before it. In the symbolic plan it can
//! do neither: whether `batch · seq · 384` elements are worth the fast kernel is a
//! question about symbols it cannot answer, so the residual additions and the attention
//! mask stay generic `Add` nodes, evaluated through ndarray's broadcasting at ~3.5 ns per
//! element. On MiniLM at 16 tokens those twenty nodes took 433 µs of 6.05 ms, the whole
//! gap between the symbolic plan and the fixed-length one (5.58 ms), which the symbolic
//! plan otherwise matches matmul for matmul. Here each is one pass over contiguous rows.
//!
//! [`fuse_adds`] runs on an optimised plan and replaces only the f32 `Add` nodes tract
//! left generic whose second operand broadcasts to the first along whole rows: the same
//! shape, or ones on some axes and the first operand's last axis (the attention mask,
//! `[batch, 1, 1, seq]` against `[batch, heads, seq, seq]`).

use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::math::Add;
use tract_onnx::tract_hir::internal::*;

/// `a + b`, f32, `b` broadcast to `a` along whole rows of `a`'s last axis.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FusedAdd;

impl Op for FusedAdd {
    fn name(&self) -> StaticName {
        "FusedAdd".into()
    }
    op_as_typed_op!();
}

impl EvalOp for FusedAdd {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        ensure!(
            rows_broadcast(a.shape(), b.shape()),
            "FusedAdd: {:?} does not broadcast to {:?} by rows",
            b.shape(),
            a.shape()
        );
        let a_shape: TVec<usize> = a.shape().into();
        let mut a = a.into_tensor();
        {
            let mut a_plain = a.try_as_plain_ram_mut()?;
            let b_plain = b.try_as_plain_ram()?;
            add_broadcast(
                a_plain.as_slice_mut::<f32>()?,
                &a_shape,
                b_plain.as_slice::<f32>()?,
                b.shape(),
            );
        }
        Ok(tvec!(a.into_tvalue()))
    }
}

impl TypedOp for FusedAdd {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type == DatumType::F32 && inputs[1].datum_type == DatumType::F32,
            "FusedAdd takes f32"
        );
        ensure!(
            dims_broadcast(&inputs[0].shape, &inputs[1].shape),
            "FusedAdd: {:?} does not broadcast to {:?} by rows",
            inputs[1].shape,
            inputs[0].shape
        );
        Ok(tvec!(DatumType::F32.fact(inputs[0].shape.clone())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let count: TDim = inputs[0].shape.iter().product();
        Ok(tvec!((Cost::FMA(DatumType::F32), count)))
    }

    as_op!();
}

/// Whether `b` (shape) broadcasts to `a` by whole rows: same rank, each of `b`'s axes
/// 1 or `a`'s, and the last axes equal.
fn rows_broadcast(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.last() == b.last()
        && a.iter().zip(b).all(|(x, y)| *y == 1 || x == y)
}

/// [`rows_broadcast`] on symbolic shapes (dims proven equal, or `b`'s is 1).
fn dims_broadcast(a: &ShapeFact, b: &ShapeFact) -> bool {
    a.rank() == b.rank()
        && a.rank() > 0
        && a.iter().last() == b.iter().last()
        && a.iter().zip(b.iter()).all(|(x, y)| y.is_one() || x == y)
}

/// `a += b` with `b` broadcast by rows ([`rows_broadcast`]).
fn add_broadcast(a: &mut [f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) {
    if a.len() == b.len() {
        add_row(a, b);
        return;
    }
    let rank = a_shape.len();
    let row = a_shape[rank - 1];
    if row == 0 {
        return;
    }
    // b's stride per axis of a, 0 where b repeats (on the stack: this runs per query).
    let mut b_strides: TVec<usize> = tvec![0; rank];
    let mut stride = 1;
    for axis in (0..rank).rev() {
        if b_shape[axis] != 1 {
            b_strides[axis] = stride;
        }
        stride *= b_shape[axis];
    }
    let mut index: TVec<usize> = tvec![0; rank - 1];
    for a_row in a.chunks_exact_mut(row) {
        let at: usize = index.iter().zip(&b_strides).map(|(i, s)| i * s).sum();
        add_row(a_row, &b[at..at + row]);
        for axis in (0..rank - 1).rev() {
            index[axis] += 1;
            if index[axis] < a_shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn add_row(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

/// Replaces the f32 `Add` nodes of an optimised model that tract left to its generic
/// evaluator, where one operand broadcasts to the other by rows, by [`FusedAdd`] (the
/// full-size operand first); returns how many it replaced.
pub fn fuse_adds(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let node = &model.nodes()[id];
        let is_f32_add = node
            .op_as::<TypedBinOp>()
            .is_some_and(|op| op.0.is::<Add>() && op.1.is_none());
        if !is_f32_add || node.inputs.len() != 2 {
            continue;
        }
        let (a, b) = (node.inputs[0], node.inputs[1]);
        let (fa, fb) = (model.outlet_fact(a)?, model.outlet_fact(b)?);
        let out = &node.outputs[0].fact;
        let f32s = [fa, fb, out].iter().all(|f| f.datum_type == DatumType::F32);
        if !f32s {
            continue;
        }
        let order = if dims_broadcast(&fa.shape, &fb.shape) && fa.shape == out.shape {
            [a, b]
        } else if dims_broadcast(&fb.shape, &fa.shape) && fb.shape == out.shape {
            [b, a]
        } else {
            continue;
        };
        let node = &mut model.nodes_mut()[id];
        node.op = Box::new(FusedAdd);
        node.inputs = order.to_vec();
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused_ops::test_graph::{f32_initializer, model, node, outputs, values};
    use tract_onnx::pb;
    use tract_onnx::prelude::{tract_ndarray, InferenceModelExt};

    /// An f32 input of shape `[batch, seq, 8]`, both symbolic.
    fn symbolic_input(name: &str) -> pb::ValueInfoProto {
        use pb::tensor_shape_proto::{dimension::Value, Dimension};
        let dim = |value| Dimension {
            value: Some(value),
            ..Default::default()
        };
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: pb::tensor_proto::DataType::Float as i32,
                    shape: Some(pb::TensorShapeProto {
                        dim: vec![
                            dim(Value::DimParam("batch".into())),
                            dim(Value::DimParam("seq".into())),
                            dim(Value::DimValue(8)),
                        ],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// In a plan with symbolic shapes, the residual-style (same shape) and bias-style
    /// (rows) additions tract leaves generic become [`FusedAdd`], with the same output.
    #[test]
    fn symbolic_plan_additions_are_fused_and_unchanged() {
        let graph = pb::GraphProto {
            node: vec![
                node("Mul", &["x", "s"], "xs", &[]),
                node("Add", &["xs", "x"], "residual", &[]),
                node("Add", &["residual", "b"], "y", &[]),
            ],
            initializer: vec![f32_initializer("s", &[8], 1), f32_initializer("b", &[8], 2)],
            input: vec![symbolic_input("x")],
            output: outputs(&["y"]),
            ..Default::default()
        };
        let proto = model(graph);
        let x = tract_ndarray::Array3::from_shape_vec((2, 3, 8), values(48, 7, 2.0))
            .unwrap()
            .into_tensor();
        let run = |fused: bool| -> (usize, Vec<f32>) {
            let onnx = tract_onnx::onnx();
            let typed = onnx.model_for_proto_model(&proto).unwrap();
            let mut plan = typed.into_optimized().unwrap();
            let replaced = if fused {
                fuse_adds(&mut plan).unwrap()
            } else {
                0
            };
            let plan = plan.into_runnable().unwrap();
            let y = plan.run(tvec!(x.clone().into_tvalue())).unwrap();
            let y = y[0].to_plain_array_view::<f32>().unwrap();
            (replaced, y.iter().copied().collect())
        };
        let ((replaced, fused), (_, tract)) = (run(true), run(false));
        assert!(replaced >= 1, "no generic Add was left to fuse");
        assert_eq!(fused, tract);
        assert_eq!(fused.len(), 48);
    }

    #[test]
    fn broadcast_rows_add_like_the_arithmetic_says() {
        // [2, 3, 2, 4] + [2, 1, 1, 4]: the attention mask's shape.
        let a_shape = [2, 3, 2, 4];
        let b_shape = [2, 1, 1, 4];
        let a: Vec<f32> = (0..48).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..8).map(|i| 100.0 * i as f32).collect();
        let mut sum = a.clone();
        add_broadcast(&mut sum, &a_shape, &b, &b_shape);
        for (i, s) in sum.iter().enumerate() {
            let (n, j) = (i / 24, i % 4);
            assert_eq!(*s, a[i] + b[n * 4 + j], "element {i}");
        }
        // Same shape.
        let mut same = a.clone();
        add_broadcast(&mut same, &a_shape, &a, &a_shape);
        assert!(same.iter().zip(&a).all(|(s, x)| *s == 2.0 * x));
        assert!(rows_broadcast(&a_shape, &b_shape));
        assert!(!rows_broadcast(&a_shape, &[2, 1, 1, 1]));
        assert!(!rows_broadcast(&a_shape, &[3, 2, 4]));
    }
}
