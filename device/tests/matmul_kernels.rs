//! The f32 matmul kernel policy (`device::matmul_kernels`) on a real tract plan: it
//! changes which kernel tract runs, and not what the matmul computes.
//!
//! One test function: the policy is process-wide, and test functions run in parallel.

use device::matmul_kernels::{self, F32Kernels};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

const ROWS: usize = 12;
const K: usize = 128;
const N: usize = 512;

fn fixed_value_info(name: &str, dims: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Deterministic values in [-1, 1) without a random-number crate.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `y = x · W + b` with x of [1, ROWS, K]: the shape of a projection in the tiny preset.
fn projection_onnx() -> Vec<u8> {
    let tensor = |name: &str, dims: &[usize], data: Vec<f32>| pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: data,
        ..Default::default()
    };
    let node = |op: &str, inputs: &[&str], output: &str| pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "projection".into(),
        node: vec![
            node("MatMul", &["x", "w"], "xw"),
            node("Add", &["xw", "b"], "y"),
        ],
        initializer: vec![
            tensor("w", &[K, N], values(K * N, 1)),
            tensor("b", &[N], values(N, 2)),
        ],
        input: vec![fixed_value_info("x", &[1, ROWS, K])],
        output: vec![fixed_value_info("y", &[1, ROWS, N])],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Optimises the model under `policy`; returns the kernel line of each matmul and the output.
fn run_under(policy: F32Kernels, onnx: &[u8]) -> (Vec<String>, Vec<f32>) {
    matmul_kernels::set_policy(policy);
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .unwrap()
        .into_optimized()
        .unwrap();
    let kernels: Vec<String> = plan
        .nodes()
        .iter()
        .filter(|n| n.op.name() == "OptMatMul")
        .flat_map(|n| n.op.info().unwrap())
        .filter(|line| line.contains("mmm_f32"))
        .collect();
    let runnable = plan.into_runnable().unwrap();
    let x = tract_ndarray::Array3::from_shape_vec((1, ROWS, K), values(ROWS * K, 3)).unwrap();
    let out = runnable.run(tvec!(Tensor::from(x).into_tvalue())).unwrap();
    let y = out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    (kernels, y)
}

/// The kernel tract's dispatch ladder answers for this projection under `policy`.
fn ladder_pick(policy: F32Kernels) -> String {
    matmul_kernels::set_policy(policy);
    // tract's matmul puts the weights on the m side: m = N, n = ROWS.
    tract_linalg::mmm::MmmDispatch::native()
        .preferred_kernel(DatumType::F32, Some(N), Some(K), Some(ROWS))
        .map(|kernel| kernel.name().to_string())
        .unwrap_or_default()
}

#[test]
fn the_f32_kernel_policy_changes_the_kernel_and_not_the_result() {
    if !cfg!(target_arch = "x86_64") || !std::is_x86_feature_detected!("avx512f") {
        eprintln!("skipped: this CPU has no AVX-512, where the policy has nothing to choose");
        return;
    }
    let onnx = projection_onnx();
    let (tract_kernels, tract_y) = run_under(F32Kernels::Tract, &onnx);
    let (ymm_kernels, ymm_y) = run_under(F32Kernels::Ymm, &onnx);
    let tract_pick = ladder_pick(F32Kernels::Tract);
    let ymm_pick = ladder_pick(F32Kernels::Ymm);
    matmul_kernels::set_policy(F32Kernels::Auto);

    assert!(
        !tract_kernels.is_empty(),
        "no f32 matmul kernel reported by the plan"
    );
    assert!(
        ymm_kernels.iter().all(|k| k.contains("fma_mmm_f32")),
        "the ymm policy must run tract's 256-bit kernels, ran {ymm_kernels:?}"
    );
    // The plans run what the dispatch ladder (tract's tiers and ours) answers.
    assert!(tract_kernels
        .iter()
        .all(|k| k.contains(&format!("[{tract_pick}]"))));
    assert!(ymm_kernels
        .iter()
        .all(|k| k.contains(&format!("[{ymm_pick}]"))));
    assert_eq!(tract_y.len(), ROWS * N);
    for (i, (a, b)) in tract_y.iter().zip(&ymm_y).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
            "output {i}: {a} vs {b}"
        );
    }
}
