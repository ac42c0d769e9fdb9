//! Parameters and the small layers the model is made of. Parameters are created from a seeded
//! `StdRng` (candle's CPU RNG cannot be seeded) or taken from a loaded artifact through the same
//! code path, and registered under stable names: the safetensors tensor names of the artifact.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand::rngs::StdRng;

use super::PredictError;

type Result<T> = std::result::Result<T, PredictError>;

/// Where parameter values come from.
pub enum Source<'a> {
    /// Fresh values from a seeded generator.
    Init(&'a mut StdRng),
    /// Values of a saved model, by name.
    Load(&'a HashMap<String, Tensor>),
}

/// Creates named parameters (like candle-nn's `VarBuilder`, but seedable).
pub struct Params<'a> {
    source: Source<'a>,
    device: Device,
    /// Every parameter created, by full name.
    pub vars: BTreeMap<String, Var>,
}

impl<'a> Params<'a> {
    pub fn new(source: Source<'a>, device: &Device) -> Self {
        Self {
            source,
            device: device.clone(),
            vars: BTreeMap::new(),
        }
    }

    /// The parameter `name` of `shape`, U(−bound, bound) when new.
    pub fn get(&mut self, name: &str, shape: &[usize], bound: f64) -> Result<Var> {
        let tensor = match &mut self.source {
            Source::Init(rng) => {
                let count: usize = shape.iter().product();
                let values: Vec<f32> = (0..count)
                    .map(|_| rng.random_range(-bound..bound) as f32)
                    .collect();
                Tensor::from_vec(values, shape, &self.device)?
            }
            Source::Load(tensors) => {
                let t = tensors
                    .get(name)
                    .ok_or_else(|| PredictError::Artifact(format!("missing tensor '{name}'")))?;
                if t.dims() != shape {
                    return Err(PredictError::Artifact(format!(
                        "tensor '{name}' has shape {:?}, expected {shape:?}",
                        t.dims()
                    )));
                }
                t.to_dtype(DType::F32)?.to_device(&self.device)?
            }
        };
        // `detach` first: `Var::from_tensor` of a tensor that already is a variable returns that
        // same variable, and copied heads must not share storage.
        let var = Var::from_tensor(&tensor.detach())?;
        self.vars.insert(name.to_string(), var.clone());
        Ok(var)
    }
}

/// A fully connected layer `y = x Wᵀ + b`, PyTorch's `nn.Linear` layout and initialisation.
#[derive(Clone)]
pub struct Dense {
    pub weight: Var,
    pub bias: Var,
}

impl Dense {
    pub fn new(params: &mut Params, name: &str, inputs: usize, outputs: usize) -> Result<Self> {
        let bound = 1.0 / (inputs as f64).sqrt();
        Ok(Self {
            weight: params.get(&format!("{name}.weight"), &[outputs, inputs], bound)?,
            bias: params.get(&format!("{name}.bias"), &[outputs], bound)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?)
    }
}

/// Copies every parameter value (for keeping the best epoch's weights).
pub fn snapshot(vars: &BTreeMap<String, Var>) -> Result<Vec<Tensor>> {
    vars.values().map(|v| Ok(v.as_tensor().copy()?)).collect()
}

/// Restores values taken by [`snapshot`] of the same variables.
pub fn restore(vars: &BTreeMap<String, Var>, values: &[Tensor]) -> Result<()> {
    for (var, value) in vars.values().zip(values) {
        var.set(value)?;
    }
    Ok(())
}
