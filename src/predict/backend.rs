//! The one switch between CPU and CUDA: everything else takes the `Device` this returns, so both
//! run the same code. CUDA needs the `cuda` cargo feature (a CUDA toolkit at build time); without
//! it `Backend::Cuda` is a configuration error rather than a missing variant, so callers and
//! stored settings do not depend on how archdb was built.

use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::PredictError;

/// Where tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl Backend {
    pub fn device(self) -> Result<Device, PredictError> {
        match self {
            Backend::Cpu => Ok(Device::Cpu),
            Backend::Cuda(ordinal) => cuda(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device, PredictError> {
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: usize) -> Result<Device, PredictError> {
    Err(PredictError::Config(
        "archdb was built without the `cuda` feature".into(),
    ))
}

impl FromStr for Backend {
    type Err = PredictError;

    /// `cpu`, `cuda` (device 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "cuda" => Ok(Backend::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Backend::Cuda)
                .ok_or_else(|| PredictError::Config(format!("unknown backend '{s}'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_picks_devices() {
        assert_eq!("cpu".parse::<Backend>().unwrap(), Backend::Cpu);
        assert_eq!("cuda:1".parse::<Backend>().unwrap(), Backend::Cuda(1));
        assert!("tpu".parse::<Backend>().is_err());
        assert!(Backend::Cpu.device().unwrap().is_cpu());
        #[cfg(not(feature = "cuda"))]
        assert!(Backend::Cuda(0).device().is_err());
    }
}
