//! The ingest pipeline shared by the HTTP API and the CLI: bytes → validated model → CG → hash
//! ([`analyse`], for models that are not kept), plus the stored forms of the graph and the
//! weight-stripped ONNX ([`ingest`], for models that are).

use prost::Message;

use crate::db::architectures::{self, NewArchitecture};
use crate::graph::{self, BuildOptions, CompGraph, StoredGraph};
use crate::onnx::{self, OnnxError, proto::ModelProto};

/// A model ready to be stored. The stored forms are made here, on the CPU pool that parses
/// batches, so that the database transaction only moves bytes.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub graph: CompGraph,
    pub graph_hash: String,
    /// The graph as the database keeps it ([`StoredGraph::encode`]).
    pub stored_graph: Vec<u8>,
    /// The model with weight payloads removed (dims kept; the upload itself when it had none),
    /// lz4-compressed ([`compress_onnx`]).
    pub stored_onnx: Vec<u8>,
    /// Size of the upload in bytes.
    pub original_size: usize,
}

/// The stored form of a (stripped) ONNX model: lz4 block compression with the size in front.
pub fn compress_onnx(onnx: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(onnx)
}

/// Reads back [`compress_onnx`]'s output.
pub fn decompress_onnx(stored: &[u8]) -> Result<Vec<u8>, lz4_flex::block::DecompressError> {
    lz4_flex::decompress_size_prepended(stored)
}

/// A model's computation graph and canonical hash, without the stored forms: what predictions
/// and inspection need from an upload they do not keep.
#[derive(Debug, Clone)]
pub struct Analysed {
    pub graph: CompGraph,
    pub graph_hash: String,
}

/// Parses, builds and hashes one ONNX model. CPU-bound: call from a blocking task.
pub fn analyse(bytes: bytes::Bytes, options: BuildOptions) -> Result<Analysed, OnnxError> {
    let mut model = decode(&bytes, options)?;
    build_and_hash(&mut model, options)
}

/// [`analyse`] of a model already in memory (the benchmark generators).
pub fn analyse_model(mut model: ModelProto, options: BuildOptions) -> Result<Analysed, OnnxError> {
    onnx::check_model(&model)?;
    build_and_hash(&mut model, options)
}

/// [`analyse`] plus the stored forms: one ONNX model ready to be stored. CPU-bound: call from a
/// blocking task.
pub fn ingest(bytes: bytes::Bytes, options: BuildOptions) -> Result<Ingested, OnnxError> {
    let model = decode(&bytes, options)?;
    with_stored_forms(model, Some(bytes), options)
}

/// [`ingest`] of a model already in memory (the benchmark generators), without the round trip
/// through bytes: the same checks, graph, hash and stripped ONNX as `ingest` of its encoding.
pub fn ingest_model(model: ModelProto, options: BuildOptions) -> Result<Ingested, OnnxError> {
    onnx::check_model(&model)?;
    with_stored_forms(model, None, options)
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

/// Files per chunk of [`ingest_stream`]: small enough that storing one chunk overlaps parsing
/// the next, large enough that each chunk's few statements are cheap against its rows.
pub const CHUNK: usize = 128;

/// The files of a batch as they arrive: chunks of files with their fields, or why the source
/// stopped.
pub type Chunks<E> = tokio::sync::mpsc::Receiver<Result<Vec<(bytes::Bytes, NewArchitecture)>, E>>;

/// [`ingest_stream`] of files already in memory, in chunks of [`CHUNK`].
pub async fn ingest_batch(
    pool: &sqlx::PgPool,
    files: Vec<bytes::Bytes>,
    metas: Vec<NewArchitecture>,
    options: BuildOptions,
) -> sqlx::Result<Vec<Stored>> {
    let (sender, chunks) = tokio::sync::mpsc::channel(files.len().div_ceil(CHUNK).max(1));
    let mut items = files.into_iter().zip(metas).peekable();
    while items.peek().is_some() {
        let chunk = items.by_ref().take(CHUNK).collect();
        sender
            .try_send(Ok(chunk))
            .expect("the channel has room for every chunk");
    }
    drop(sender);
    ingest_stream(pool, chunks, options).await
}

/// Parses each chunk of files on the CPU pool as it arrives, while the previous chunk is being
/// stored, and stores them all in one transaction (begun with the first chunk) as
/// [`store_batch_in`] does. Returns what became of each file, in order. An error from `chunks`
/// or from the database stores nothing; dropping the future (a client that went away) stops
/// the parsing and rolls back.
pub async fn ingest_stream<E>(
    pool: &sqlx::PgPool,
    mut chunks: Chunks<E>,
    options: BuildOptions,
) -> Result<Vec<Stored>, E>
where
    E: From<sqlx::Error> + Send + 'static,
{
    let (sender, mut parsed) = tokio::sync::mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        while let Some(chunk) = chunks.blocking_recv() {
            let failed = chunk.is_err();
            let built = chunk.map(|chunk| {
                let (files, metas): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
                ingest_all(files, options).into_iter().zip(metas).collect()
            });
            if sender.blocking_send(built).is_err() || failed {
                return;
            }
        }
    });
    let mut tx = None;
    let mut stored = Vec::new();
    while let Some(built) = parsed.recv().await {
        let built: Vec<_> = built?;
        let tx = match &mut tx {
            Some(tx) => tx,
            None => tx.insert(pool.begin().await?),
        };
        stored.extend(store_batch_in(tx, built).await?);
    }
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    Ok(stored)
}

/// [`store_batch_in`] in a transaction of its own.
pub async fn store_batch(
    pool: &sqlx::PgPool,
    built: Vec<(Result<Ingested, OnnxError>, NewArchitecture)>,
) -> sqlx::Result<Vec<Stored>> {
    let mut tx = pool.begin().await?;
    let stored = store_batch_in(&mut tx, built).await?;
    tx.commit().await?;
    Ok(stored)
}

/// Stores the models of a batch that were built (see [`ingest_all`]) in the caller's
/// transaction, deduplicated by graph hash (within the batch and against what the transaction
/// sees, earlier chunks included), each with its own fields (`name` becomes an alias in
/// `source`, as for single uploads). Returns what became of each, in order.
pub async fn store_batch_in(
    conn: &mut sqlx::PgConnection,
    built: Vec<(Result<Ingested, OnnxError>, NewArchitecture)>,
) -> sqlx::Result<Vec<Stored>> {
    let items: Vec<(&Ingested, &NewArchitecture)> = built
        .iter()
        .filter_map(|(model, meta)| model.as_ref().ok().map(|m| (m, meta)))
        .collect();
    let mut stored = if items.is_empty() {
        Vec::new()
    } else {
        architectures::insert_batch_in(conn, &items).await?
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

fn decode(bytes: &bytes::Bytes, options: BuildOptions) -> Result<ModelProto, OnnxError> {
    onnx::decode_model_within(bytes.clone(), &onnx::Limits::for_nodes(options.max_nodes))
}

fn build_and_hash(model: &mut ModelProto, options: BuildOptions) -> Result<Analysed, OnnxError> {
    let graph = graph::build(model, options)?;
    let graph_hash = graph::hash::graph_hash(&graph);
    Ok(Analysed { graph, graph_hash })
}

/// Builds, hashes and makes the stored forms of `model`, decoded from `original` if given.
fn with_stored_forms(
    mut model: ModelProto,
    original: Option<bytes::Bytes>,
    options: BuildOptions,
) -> Result<Ingested, OnnxError> {
    let original_size = original
        .as_ref()
        .map_or_else(|| model.encoded_len(), |b| b.len());
    let Analysed { graph, graph_hash } = build_and_hash(&mut model, options)?;
    let stripped = onnx::strip_weights(&mut model);
    let stored_onnx = match original {
        // Nothing to strip (exports without weights, generated cells): the upload is stored as
        // it came, instead of re-encoding the model.
        Some(bytes) if !stripped => compress_onnx(&bytes),
        _ => compress_onnx(&model.encode_to_vec()),
    };
    Ok(Ingested {
        stored_graph: StoredGraph::encode(&graph),
        stored_onnx,
        graph,
        graph_hash,
        original_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_model_and_analyse_equal_ingest_of_the_encoded_model() {
        let cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
        let models = [
            crate::generate::nb201_model(cell, 10).unwrap(),
            crate::generate::nb_macro_model("01201201").unwrap(),
        ];
        for model in models {
            let bytes = model.encode_to_vec();
            // Without the stored forms, the same graph and hash.
            let analysed = analyse(bytes.clone().into(), BuildOptions::default()).unwrap();
            let analysed_model = analyse_model(model.clone(), BuildOptions::default()).unwrap();
            let a = ingest(bytes.into(), BuildOptions::default()).unwrap();
            let b = ingest_model(model, BuildOptions::default()).unwrap();
            assert_eq!(analysed.graph_hash, a.graph_hash);
            assert_eq!(analysed_model.graph_hash, a.graph_hash);
            assert_eq!(analysed.graph.summary, a.graph.summary);
            assert_eq!(analysed.graph.edge_list(), a.graph.edge_list());
            assert_eq!(a.graph_hash, b.graph_hash);
            assert_eq!(a.stored_onnx, b.stored_onnx);
            assert_eq!(a.stored_graph, b.stored_graph);
            assert_eq!(a.original_size, b.original_size);
            assert_eq!(a.graph.summary, b.graph.summary);
            let nodes = |i: &Ingested| {
                serde_json::to_string(&i.graph.graph.node_weights().collect::<Vec<_>>()).unwrap()
            };
            assert_eq!(nodes(&a), nodes(&b));
            assert_eq!(a.graph.edge_list(), b.graph.edge_list());
        }
    }

    #[test]
    fn stored_forms_read_back_as_the_graph_and_the_stripped_model() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/onnx-samples/resnet18.legacy.onnx"
        );
        let bytes = std::fs::read(path).unwrap();
        let ingested = ingest(bytes.clone().into(), BuildOptions::default()).unwrap();
        let back = StoredGraph::decode(&ingested.stored_graph).unwrap();
        let direct = StoredGraph::from(&ingested.graph);
        assert_eq!(back.nodes, direct.nodes);
        assert_eq!(back.edges, direct.edges);
        let json = serde_json::to_vec(&direct).unwrap();
        assert!(
            ingested.stored_graph.len() * 5 < json.len(),
            "{} bytes stored against {} of JSON",
            ingested.stored_graph.len(),
            json.len()
        );

        let mut stripped = onnx::decode_model(bytes.into()).unwrap();
        onnx::strip_weights(&mut stripped);
        assert_eq!(
            decompress_onnx(&ingested.stored_onnx).unwrap(),
            stripped.encode_to_vec()
        );

        // A model without weight payloads is stored as uploaded.
        let cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
        let upload = crate::generate::nb201_model(cell, 10)
            .unwrap()
            .encode_to_vec();
        let ingested = ingest(upload.clone().into(), BuildOptions::default()).unwrap();
        assert_eq!(decompress_onnx(&ingested.stored_onnx).unwrap(), upload);

        assert!(matches!(
            StoredGraph::decode(&[9, 1, 2]),
            Err(crate::graph::StoredGraphError::UnknownFormat(9))
        ));
        assert!(StoredGraph::decode(&ingested.stored_graph[..40]).is_err());
    }
}
