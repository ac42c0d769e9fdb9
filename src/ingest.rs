//! The ingest pipeline shared by the HTTP API and the CLI: bytes → validated model → CG → hash,
//! plus the stored (weight-stripped) ONNX.

use prost::Message;

use crate::db::architectures::{self, NewArchitecture};
use crate::graph::{self, BuildOptions, CompGraph};
use crate::onnx::{self, OnnxError, proto::ModelProto};

/// A model ready to be stored.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub graph: CompGraph,
    pub graph_hash: String,
    /// The model with weight payloads removed (dims kept), re-encoded.
    pub stripped_onnx: Vec<u8>,
    /// Size of the upload in bytes.
    pub original_size: usize,
}

/// Parses, builds and hashes one ONNX model. CPU-bound: call from a blocking task.
pub fn ingest(bytes: bytes::Bytes, options: BuildOptions) -> Result<Ingested, OnnxError> {
    let original_size = bytes.len();
    let model = onnx::decode_model_within(bytes, &onnx::Limits::for_nodes(options.max_nodes))?;
    build_and_hash(model, original_size, options)
}

/// [`ingest`] of a model already in memory (the benchmark generators), without the round trip
/// through bytes: the same checks, graph, hash and stripped ONNX as `ingest` of its encoding.
pub fn ingest_model(model: ModelProto, options: BuildOptions) -> Result<Ingested, OnnxError> {
    onnx::check_model(&model)?;
    let original_size = model.encoded_len();
    build_and_hash(model, original_size, options)
}

/// [`ingest`] of many models at once, on every core (rayon), in input order; a model that fails
/// does not stop the others. CPU-bound: call from a blocking task.
pub fn ingest_all(
    files: Vec<bytes::Bytes>,
    options: BuildOptions,
) -> Vec<Result<Ingested, OnnxError>> {
    use rayon::prelude::*;
    crate::cpu::on_pool(|| {
        files
            .into_par_iter()
            .map(|bytes| ingest(bytes, options))
            .collect()
    })
}

/// What became of one file of a batch.
#[derive(Debug)]
pub enum Stored {
    /// A new architecture with this id.
    Created(i64),
    /// The graph was stored already (or earlier in the same batch) under this id.
    Existing(i64),
    /// The file is not a model archdb can use; nothing was stored for it.
    Rejected(OnnxError),
}

/// Stores the models of a batch that were built (see [`ingest_all`]) in one transaction,
/// deduplicated by graph hash (within the batch too), each with its own fields (`name` becomes
/// an alias in `source`, as for single uploads). Returns what became of each, in order. A
/// failure stores nothing.
pub async fn store_batch(
    pool: &sqlx::PgPool,
    built: Vec<(Result<Ingested, OnnxError>, NewArchitecture)>,
) -> sqlx::Result<Vec<Stored>> {
    let items: Vec<(&Ingested, &NewArchitecture)> = built
        .iter()
        .filter_map(|(model, meta)| model.as_ref().ok().map(|m| (m, meta)))
        .collect();
    let mut stored = if items.is_empty() {
        Vec::new()
    } else {
        let mut tx = pool.begin().await?;
        let stored = architectures::insert_batch_in(&mut tx, &items).await?;
        tx.commit().await?;
        stored
    }
    .into_iter();
    built
        .into_iter()
        .map(|(model, _)| match model {
            Err(e) => Ok(Stored::Rejected(e)),
            Ok(_) => match stored.next() {
                Some((id, true)) => Ok(Stored::Created(id)),
                Some((id, false)) => Ok(Stored::Existing(id)),
                None => Err(sqlx::Error::Protocol(
                    "the batch insert answered fewer items than it was given".into(),
                )),
            },
        })
        .collect()
}

fn build_and_hash(
    mut model: ModelProto,
    original_size: usize,
    options: BuildOptions,
) -> Result<Ingested, OnnxError> {
    let graph = graph::build(&mut model, options)?;
    let graph_hash = graph::hash::graph_hash(&graph);
    onnx::strip_weights(&mut model);
    Ok(Ingested {
        graph,
        graph_hash,
        stripped_onnx: model.encode_to_vec(),
        original_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_model_equals_ingest_of_the_encoded_model() {
        let cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
        let models = [
            crate::generate::nb201_model(cell, 10).unwrap(),
            crate::generate::nb_macro_model("01201201").unwrap(),
        ];
        for model in models {
            let bytes = model.encode_to_vec();
            let a = ingest(bytes.into(), BuildOptions::default()).unwrap();
            let b = ingest_model(model, BuildOptions::default()).unwrap();
            assert_eq!(a.graph_hash, b.graph_hash);
            assert_eq!(a.stripped_onnx, b.stripped_onnx);
            assert_eq!(a.original_size, b.original_size);
            assert_eq!(a.graph.summary, b.graph.summary);
            let nodes = |i: &Ingested| {
                serde_json::to_string(&i.graph.graph.node_weights().collect::<Vec<_>>()).unwrap()
            };
            assert_eq!(nodes(&a), nodes(&b));
            assert_eq!(a.graph.edge_list(), b.graph.edge_list());
        }
    }
}
