//! Small ONNX graphs and deterministic values for the fused ops' tests.

use tract_onnx::pb;
use tract_onnx::prelude::*;

/// An optimised, runnable plan of `proto`: with the device's fused ops registered
/// (`fused`), or tract's own ops alone — the two sides every test compares.
pub fn plan(proto: &pb::ModelProto, fused: bool) -> Arc<TypedSimplePlan> {
    let mut onnx = tract_onnx::onnx();
    if fused {
        super::register(&mut onnx.op_register);
    }
    onnx.model_for_proto_model(proto)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
}

/// `proto` parsed by tract's own parsers, typed and decluttered (where the passes on
/// the decluttered model run).
pub fn decluttered(proto: &pb::ModelProto) -> TypedModel {
    tract_onnx::onnx()
        .model_for_proto_model(proto)
        .unwrap()
        .into_typed()
        .unwrap()
        .into_decluttered()
        .unwrap()
}

/// The op names of a plan's nodes.
pub fn op_names(plan: &Arc<TypedSimplePlan>) -> Vec<String> {
    plan.model()
        .nodes()
        .iter()
        .map(|n| n.op.name().to_string())
        .collect()
}

/// How many of a plan's nodes run the op named `name`.
pub fn op_count(plan: &Arc<TypedSimplePlan>, name: &str) -> usize {
    op_names(plan).iter().filter(|n| *n == name).count()
}

/// Every output of one run of `plan` on `inputs`.
pub fn run_all(plan: &Arc<TypedSimplePlan>, inputs: &[Tensor]) -> Vec<Tensor> {
    let inputs = inputs.iter().map(|t| t.clone().into_tvalue()).collect();
    plan.run(inputs)
        .unwrap()
        .into_iter()
        .map(|v| v.into_tensor())
        .collect()
}

/// A tensor's values, cast to `T` first (so integers of any width compare as one type).
pub fn flat<T: Datum + Copy>(t: &Tensor) -> Vec<T> {
    let t = t.cast_to::<T>().unwrap();
    t.to_plain_array_view::<T>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// The op names of a plan's nodes, and its first output (f32) for `inputs`.
pub fn op_names_and_output(
    plan: &Arc<TypedSimplePlan>,
    inputs: &[Tensor],
) -> (Vec<String>, Vec<f32>) {
    (op_names(plan), flat(&run_all(plan, inputs)[0]))
}

/// Deterministic values in [-spread, spread).
pub fn values(n: usize, seed: u64, spread: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * spread
        })
        .collect()
}

pub fn f32_initializer(name: &str, dims: &[i64], seed: u64) -> pb::TensorProto {
    let n = dims.iter().product::<i64>() as usize;
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: values(n, seed, 1.0),
        ..Default::default()
    }
}

/// A 0-d f32 constant.
pub fn f32_scalar(name: &str, v: f32) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: vec![v],
        ..Default::default()
    }
}

/// A constant of any element type from its little-endian bytes (`dims` empty: a scalar).
pub fn raw_initializer(
    name: &str,
    dims: &[i64],
    elem: pb::tensor_proto::DataType,
    bytes: Vec<u8>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem as i32,
        raw_data: bytes,
        ..Default::default()
    }
}

/// Graph outputs by name; their types are left to tract's inference.
pub fn outputs(names: &[&str]) -> Vec<pb::ValueInfoProto> {
    names
        .iter()
        .map(|name| pb::ValueInfoProto {
            name: (*name).into(),
            ..Default::default()
        })
        .collect()
}

pub fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, i64)]) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs
            .iter()
            .map(|(name, i)| pb::AttributeProto {
                name: (*name).into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: *i,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn input_info(
    name: &str,
    elem: pb::tensor_proto::DataType,
    dims: &[i64],
) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
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

pub fn model(graph: pb::GraphProto) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    }
}
