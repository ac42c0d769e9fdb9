//! The predictor artifact: ONE safetensors blob (storable as a PostgreSQL `bytea` or a file).
//! Tensors are named `member.{m}.{parameter}` (f32, PyTorch `nn.Linear` layout `[out, in]`) plus
//! `member.{m}.fcm.centroids` (f64, `[clusters, embedding]`); the header's `__metadata__` holds
//! `format = "archdb-predictor"` and `config` = the [`ModelConfig`] JSON (sizes, feature scales
//! and names, vocabulary, target transform, per-member cluster counts and OOD scales). Any
//! trainer that writes the same names and JSON (e.g. a PyTorch one on a GPU machine) produces a
//! model archdb serves. See `docs/predictor.md` for the full tensor list.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ndarray::Array2;

use super::PredictError;
use super::backend::Backend;
use super::batch::Vocabulary;
use super::encoder::Encoder;
use super::fcm::Fcm;
use super::model::{Head, Member, ModelConfig, Predictor};
use super::nn::{Params, Source};
use super::train::FORMAT_VERSION;

type Result<T> = std::result::Result<T, PredictError>;

const FORMAT: &str = "archdb-predictor";

impl Predictor {
    /// The artifact bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (m, member) in self.members.iter().enumerate() {
            for (name, var) in &member.vars {
                tensors.push((
                    format!("member.{m}.{name}"),
                    var.as_tensor().to_device(&Device::Cpu)?,
                ));
            }
            let c = &member.fcm.centroids;
            tensors.push((
                format!("member.{m}.fcm.centroids"),
                Tensor::from_iter(c.iter().copied(), &Device::Cpu)?.reshape(c.dim())?,
            ));
        }
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("config".to_string(), serde_json::to_string(&self.config)?),
        ]);
        Ok(safetensors::serialize(
            tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(metadata),
        )?)
    }

    /// A predictor from artifact bytes, its tensors on `backend`'s device.
    pub fn from_bytes(bytes: &[u8], backend: Backend) -> Result<Self> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)?;
        let metadata = header
            .metadata()
            .as_ref()
            .ok_or_else(|| PredictError::Artifact("no __metadata__ in the header".into()))?;
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(PredictError::Artifact(format!("not an {FORMAT} artifact")));
        }
        let config: ModelConfig = serde_json::from_str(
            metadata
                .get("config")
                .ok_or_else(|| PredictError::Artifact("no config in the metadata".into()))?,
        )?;
        if config.format_version != FORMAT_VERSION {
            return Err(PredictError::Artifact(format!(
                "artifact format {} (this archdb reads {FORMAT_VERSION})",
                config.format_version
            )));
        }
        let device = backend.device()?;
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let vocabulary = Vocabulary::new(config.vocabulary.clone());
        let members = config
            .members
            .iter()
            .enumerate()
            .map(|(m, member)| {
                let prefix = format!("member.{m}.");
                let own: HashMap<String, Tensor> = tensors
                    .iter()
                    .filter_map(|(name, t)| {
                        name.strip_prefix(&prefix)
                            .map(|n| (n.to_string(), t.clone()))
                    })
                    .collect();
                let mut params = Params::new(Source::Load(&own), &device);
                let encoder = Encoder::new(&mut params, &config.encoder, vocabulary.rows())?;
                let heads = Head::many(
                    &mut params,
                    member.clusters,
                    config.encoder.embedding,
                    config.head_hidden,
                )?;
                let centroids = own.get("fcm.centroids").ok_or_else(|| {
                    PredictError::Artifact(format!("missing tensor '{prefix}fcm.centroids'"))
                })?;
                let (rows, cols) = centroids.dims2()?;
                if rows != member.clusters || cols != config.encoder.embedding {
                    return Err(PredictError::Artifact(format!(
                        "{prefix}fcm.centroids has shape [{rows}, {cols}]"
                    )));
                }
                let values: Vec<f64> = centroids.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
                Ok(Member {
                    encoder,
                    heads,
                    fcm: Fcm {
                        centroids: Array2::from_shape_vec((rows, cols), values)
                            .expect("shape checked"),
                        fuzzifier: config.fuzzifier,
                    },
                    ood_scale: member.ood_scale,
                    vars: params.vars,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            vocabulary,
            members,
            device,
        })
    }

    /// Writes the artifact to a file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        Ok(std::fs::write(path, self.to_bytes()?)?)
    }

    /// Reads an artifact file.
    pub fn load(path: impl AsRef<Path>, backend: Backend) -> Result<Self> {
        Self::from_bytes(&std::fs::read(path)?, backend)
    }
}
