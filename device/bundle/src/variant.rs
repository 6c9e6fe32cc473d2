//! The names of a model's runnable forms, shared by the host (which builds them) and the
//! device (which picks one), so a name is spelled in one place.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A form of the model: how its weights are stored and in what precision it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// f32 weights, f32 compute.
    Float,
    /// int8 weights dequantised to f32 (`DequantizeLinear -> MatMul`): float compute.
    WeightsInt8,
    /// int8 weights and statically quantised u8 inputs (`QuantizeLinear -> MatMulInteger`).
    Int8Compute,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Float, Variant::WeightsInt8, Variant::Int8Compute];

    /// The name in manifests, on command lines and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Variant::Float => "float",
            Variant::WeightsInt8 => "weights-int8",
            Variant::Int8Compute => "int8-compute",
        }
    }

    /// Whether it computes in f32 (so tract's f16 transform applies to it).
    pub const fn computes_in_f32(self) -> bool {
        matches!(self, Variant::Float | Variant::WeightsInt8)
    }

    /// Parses a variant name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Variant, UnknownVariant> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVariant(s.to_string()))
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Variant, UnknownVariant> {
        Variant::parse(s)
    }
}

/// A name that is not one of [`Variant::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variant {0:?} (expected one of: float, weights-int8, int8-compute)")]
pub struct UnknownVariant(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_named() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()).unwrap(), v);
            assert_eq!(v.to_string().parse::<Variant>().unwrap(), v);
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.name()));
            assert_eq!(serde_json::from_str::<Variant>(&json).unwrap(), v);
        }
        let e = Variant::parse("int4").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown variant \"int4\" (expected one of: float, weights-int8, int8-compute)"
        );
    }
}
