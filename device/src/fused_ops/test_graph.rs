//! Small ONNX graphs and deterministic values for the fused ops' tests.

use tract_onnx::pb;
use tract_onnx::prelude::*;

/// The op names of a plan's nodes, and its first output (f32) for `inputs`.
pub fn op_names_and_output(
    plan: &Arc<TypedSimplePlan>,
    inputs: &[Tensor],
) -> (Vec<String>, Vec<f32>) {
    let names = plan
        .model()
        .nodes()
        .iter()
        .map(|n| n.op.name().to_string())
        .collect();
    let inputs = inputs.iter().map(|t| t.clone().into_tvalue()).collect();
    let y = plan.run(inputs).unwrap();
    let values = y[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    (names, values)
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
