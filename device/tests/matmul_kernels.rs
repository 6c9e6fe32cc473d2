//! The matmul kernel knobs (`device::matmul_kernels`) on real tract plans: each changes
//! which kernel tract runs, and not what the matmul computes.
//!
//! One test function per knob: knobs are process-wide and test functions run in parallel,
//! so each test only turns its own knob, on a plan that only has its own kind of matmul.

use device::matmul_kernels::{KernelKnob, Policy, F32, I8};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::prelude::*;

/// Rows of the activations: a short query's length bucket.
const ROWS: usize = 16;
const K: usize = 128;
const N: usize = 512;

fn fixed_value_info(name: &str, elem_type: DataType, dims: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem_type as i32,
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

fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn model(graph: pb::GraphProto) -> Vec<u8> {
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

/// `y = x · W + b` with x of [1, ROWS, K]: the shape of a projection in the tiny preset.
fn f32_projection_onnx() -> Vec<u8> {
    let tensor = |name: &str, dims: &[usize], data: Vec<f32>| pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        float_data: data,
        ..Default::default()
    };
    model(pb::GraphProto {
        name: "projection".into(),
        node: vec![
            node("MatMul", &["x", "w"], "xw"),
            node("Add", &["xw", "b"], "y"),
        ],
        initializer: vec![
            tensor("w", &[K, N], values(K * N, 1)),
            tensor("b", &[N], values(N, 2)),
        ],
        input: vec![fixed_value_info("x", DataType::Float, &[1, ROWS, K])],
        output: vec![fixed_value_info("y", DataType::Float, &[1, ROWS, N])],
        ..Default::default()
    })
}

/// `y = MatMulInteger(x_u8, W_i8, zp_x)`: the int8-compute bundles' projection.
fn int8_projection_onnx() -> Vec<u8> {
    let bytes = |v: Vec<f32>, f: fn(f32) -> u8| v.into_iter().map(f).collect::<Vec<u8>>();
    let tensor = |name: &str, data_type: DataType, dims: &[usize], raw: Vec<u8>| pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    };
    let weights = bytes(values(K * N, 1), |v| ((v * 127.0) as i8) as u8);
    model(pb::GraphProto {
        name: "int8_projection".into(),
        node: vec![node("MatMulInteger", &["x", "w", "zp"], "y")],
        initializer: vec![
            tensor("w", DataType::Int8, &[K, N], weights),
            tensor("zp", DataType::Uint8, &[], vec![128]),
        ],
        input: vec![fixed_value_info("x", DataType::Uint8, &[1, ROWS, K])],
        output: vec![fixed_value_info("y", DataType::Int32, &[1, ROWS, N])],
        ..Default::default()
    })
}

/// Optimises `onnx` with `knob` under `policy`; returns the kernel line of each matmul
/// (those naming `kind`, e.g. `mmm_f32`) and the output.
fn run_under<T: Datum + Copy>(
    knob: &KernelKnob,
    policy: Policy,
    onnx: &[u8],
    input: Tensor,
    kind: &str,
) -> (Vec<String>, Vec<T>) {
    knob.set(policy);
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
        .filter(|line| line.contains(kind))
        .collect();
    let runnable = plan.into_runnable().unwrap();
    let out = runnable.run(tvec!(input.into_tvalue())).unwrap();
    let y = out[0]
        .to_plain_array_view::<T>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    (kernels, y)
}

/// The kernel tract's dispatch ladder answers for this projection with `knob` under
/// `policy` (tract's matmul puts the weights on the m side: m = N, n = ROWS).
fn ladder_pick(knob: &KernelKnob, policy: Policy, accumulator: DatumType) -> String {
    knob.set(policy);
    tract_linalg::mmm::MmmDispatch::native()
        .preferred_kernel(accumulator, Some(N), Some(K), Some(ROWS))
        .map(|kernel| kernel.name().to_string())
        .unwrap_or_default()
}

/// Every kernel line names the ladder's pick.
fn all_run(kernels: &[String], pick: &str) -> bool {
    kernels.iter().all(|k| k.contains(&format!("[{pick}]")))
}

/// The kernel the ladder answers for an f32 matmul of m weight rows over n columns.
fn f32_pick(m: usize, n: usize) -> String {
    tract_linalg::mmm::MmmDispatch::native()
        .preferred_kernel(DatumType::F32, Some(m), Some(K), Some(n))
        .map(|kernel| kernel.name().to_string())
        .unwrap_or_default()
}

/// Whether this is an x86-64 CPU with AVX-512F (and VNNI if `vnni`); the detection macro
/// exists only on x86, so this file also builds for the ARM targets.
fn has_avx512(vnni: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && (!vnni || std::is_x86_feature_detected!("avx512vnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = vnni;
        false
    }
}

#[test]
fn the_f32_kernel_policy_changes_the_kernel_and_not_the_result() {
    if !has_avx512(false) {
        eprintln!("skipped: this CPU has no AVX-512, where the policy has nothing to choose");
        return;
    }
    let onnx = f32_projection_onnx();
    let x = || {
        let x = tract_ndarray::Array3::from_shape_vec((1, ROWS, K), values(ROWS * K, 3));
        Tensor::from(x.unwrap())
    };
    let (tract_kernels, tract_y) = run_under::<f32>(&F32, Policy::Tract, &onnx, x(), "mmm_f32");
    let (shape_kernels, shape_y) = run_under::<f32>(&F32, Policy::Always, &onnx, x(), "mmm_f32");
    let tract_pick = ladder_pick(&F32, Policy::Tract, DatumType::F32);
    let shape_pick = ladder_pick(&F32, Policy::Always, DatumType::F32);
    // Weight matrices get the tall tile padding n least; the per-head products (few
    // rows) and matrix-vector products are left to tract's 256-bit cost model.
    let by_columns: Vec<String> = [8, 16, 32, 64].map(|n| f32_pick(N, n)).into();
    let small = f32_pick(32, ROWS);
    let gemv = f32_pick(N, 1);
    F32.set(Policy::Auto);

    assert!(
        !tract_kernels.is_empty(),
        "no f32 matmul kernel reported by the plan"
    );
    assert_eq!(
        by_columns,
        [
            "avx512_mmm_f32_64x3",
            "avx512_mmm_f32_32x6",
            "avx512_mmm_f32_64x3",
            "avx512_mmm_f32_32x5"
        ]
    );
    assert!(small.starts_with("fma_mmm_f32"), "{small}");
    assert!(!gemv.starts_with("avx512_mmm_f32_64x3"), "{gemv}");
    // The plans run what the dispatch ladder (tract's tiers and ours) answers.
    assert_eq!(shape_pick, "avx512_mmm_f32_32x6");
    assert!(all_run(&tract_kernels, &tract_pick), "{tract_kernels:?}");
    assert!(all_run(&shape_kernels, &shape_pick), "{shape_kernels:?}");
    assert_eq!(tract_y.len(), ROWS * N);
    for (i, (a, b)) in tract_y.iter().zip(&shape_y).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
            "output {i}: {a} vs {b}"
        );
    }
}

#[test]
fn the_int8_kernel_policy_changes_the_tile_and_not_the_result() {
    if !has_avx512(true) {
        eprintln!("skipped: this CPU has no AVX-512 VNNI, where the policy has nothing to choose");
        return;
    }
    let onnx = int8_projection_onnx();
    let x = || {
        let data = values(ROWS * K, 3).into_iter();
        let data = data.map(|v| (v * 127.0 + 128.0) as u8).collect();
        Tensor::from(tract_ndarray::Array3::from_shape_vec((1, ROWS, K), data).unwrap())
    };
    let (tract_kernels, tract_y) = run_under::<i32>(&I8, Policy::Tract, &onnx, x(), "mmm_i32");
    let (zmm_kernels, zmm_y) = run_under::<i32>(&I8, Policy::Always, &onnx, x(), "mmm_i32");
    let tract_pick = ladder_pick(&I8, Policy::Tract, DatumType::I32);
    let zmm_pick = ladder_pick(&I8, Policy::Always, DatumType::I32);
    // Below the tile's width the ladder keeps tract's choice, whatever the policy.
    let narrow = |policy| {
        I8.set(policy);
        let pick = tract_linalg::mmm::MmmDispatch::native()
            .preferred_kernel(DatumType::I32, Some(N), Some(K), Some(8))
            .map(|kernel| kernel.name().to_string());
        pick.unwrap_or_default()
    };
    let (narrow_tract, narrow_zmm) = (narrow(Policy::Tract), narrow(Policy::Always));
    I8.set(Policy::Auto);
    eprintln!("tract: {tract_kernels:?}\nzmm: {zmm_kernels:?}\nnarrow: {narrow_tract}");

    assert!(
        !tract_kernels.is_empty(),
        "no int8 matmul kernel reported by the plan"
    );
    assert_eq!(zmm_pick, "avx512vnni_mmm_i32_16x16");
    assert!(all_run(&zmm_kernels, &zmm_pick), "{zmm_kernels:?}");
    assert!(all_run(&tract_kernels, &tract_pick), "{tract_kernels:?}");
    assert_eq!(narrow_zmm, narrow_tract);
    // Integer arithmetic: the two tiles give the same sums exactly.
    assert_eq!(tract_y.len(), ROWS * N);
    assert_eq!(tract_y, zmm_y);
    let first: i32 = (0..K)
        .map(|k| {
            let x = (values(ROWS * K, 3)[k] * 127.0 + 128.0) as u8 as i32 - 128;
            let w = (values(K * N, 1)[k * N] * 127.0) as i8 as i32;
            x * w
        })
        .sum();
    assert_eq!(tract_y[0], first, "y[0, 0] against a scalar dot product");
}
