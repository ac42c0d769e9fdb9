//! `POST /v1/architectures/batch`: many ONNX files in one request (multipart or tar), parsed on
//! every core and stored in one transaction, with an outcome per file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::architectures::{check_source, read_form};
use super::error::{Error, Problem, Result};
use crate::db::architectures::NewArchitecture;
use crate::graph::BuildOptions;
use crate::ingest::{self, Stored};

/// A tar batch's files go to the parser when this many bytes have arrived (or
/// [`ingest::CHUNK`] files), so that the memory a batch holds stays a few chunks whatever its
/// size. Chunks are parsed one after the other, so a chunk of a few big models leaves cores
/// idle: with 8 MiB, the 14 MB torchvision bench set fell from 2.9× the Python peer to 2.3×.
const CHUNK_BYTES: usize = 32 << 20;

/// Largest batch body; the server-wide `--max-upload-bytes` (64 MiB by default) caps it further.
const MAX_BATCH_BYTES: usize = 1 << 30;

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(super::body_limit(
        MAX_BATCH_BYTES,
        routes!(create_architectures),
    ))
}

/// Fields shared by every file of a batch. Each file's name (its multipart filename or tar
/// path, without `.onnx`) is its `name`, recorded as an alias in `source` as for one upload.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct BatchQuery {
    /// Model family of every file (e.g. `resnet`, `nb201`).
    family: Option<String>,
    /// Where the files come from; the alias namespace of their names (default `upload`).
    #[param(schema_with = super::architectures::source_schema)]
    source: Option<String>,
}

/// The multipart form of a batch.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the multipart body for OpenAPI only
#[serde(deny_unknown_fields)] // `read_form` refuses other fields
struct BatchForm {
    /// The ONNX files, one `file` part each; the part's filename names the file.
    #[schema(schema_with = file_parts)]
    file: Vec<Vec<u8>>,
    // A form field is text when present: optional, never null.
    #[schema(nullable = false)]
    family: Option<String>,
    #[schema(schema_with = super::architectures::source_schema)]
    source: Option<String>,
}

/// Repeated binary parts.
fn file_parts() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/octet-stream"),
        )
        .min_items(Some(1))
        .description(Some(
            "The ONNX files, one `file` part each; the part's filename names the file.",
        ))
        .build()
}

/// What became of one file.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Outcome {
    /// Stored as a new architecture.
    Created { id: i64 },
    /// The same computation graph is stored already (or came earlier in this batch).
    Existing { id: i64 },
    /// Not stored: why, as for a single upload of this file.
    Problem { problem: Problem },
}

/// One file's outcome.
#[derive(Debug, Serialize, ToSchema)]
struct BatchItem {
    /// The multipart filename or tar path (`file-<n>` for a part without a filename).
    file: String,
    #[serde(flatten)]
    outcome: Outcome,
}

/// Outcomes per file, in request order.
#[derive(Debug, Serialize, ToSchema)]
struct BatchReport {
    created: usize,
    existing: usize,
    /// Files with a problem; nothing was stored for them.
    failed: usize,
    /// Tar entries that are not `.onnx` files (folders, READMEs), not counted as files.
    skipped: usize,
    items: Vec<BatchItem>,
}

/// Uploads many ONNX models at once.
///
/// The body is `multipart/form-data` with repeated `file` parts (and optional `family`,
/// `source` fields), or an `application/x-tar` archive whose `.onnx` entries are the files. Every file is parsed on all cores; the valid ones are stored in one
/// transaction, deduplicated by canonical graph hash (also within the batch). Answers 200 with
/// an outcome per file in request order: `created`, `existing` (with the id), or a `problem`
/// (RFC 7807, as a single upload of that file would answer) — one bad file does not fail the
/// batch. A tar archive is parsed as it arrives. Too many files, or too many bytes, refuse the
/// whole batch (413), as a malformed archive does (400): nothing of it is stored.
#[utoipa::path(post, path = "/v1/architectures/batch", tag = "architectures",
    params(BatchQuery),
    request_body(content(
        (BatchForm = "multipart/form-data"),
        (Vec<u8> = "application/x-tar"))),
    responses(
        (status = 200, description = "outcome per file", body = BatchReport),
        (status = 400, description = "no files, a malformed form or tar archive, or an unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "more files or bytes than a batch may hold", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a `source` reserved for importers", body = Problem, content_type = "application/problem+json")))]
async fn create_architectures(
    State(ctx): State<ApiContext>,
    query: Result<Query<BatchQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Json<BatchReport>> {
    let Query(q) = query?;
    let mut meta = NewArchitecture {
        name: None,
        family: q.family,
        source: q.source,
    };
    let max_files = ctx.config.max_batch_files;
    let options = BuildOptions {
        max_nodes: ctx.config.max_nodes,
    };
    let started = std::time::Instant::now();
    let (names, stored, skipped) = if super::has_content_type(&request, "multipart/form-data") {
        let mut files: Vec<(String, Bytes)> = Vec::new();
        let form = Multipart::from_request(request, &ctx).await?;
        read_form(form, &mut meta, |name, bytes| {
            if files.len() == max_files {
                return Err(too_many(max_files));
            }
            let name = name.unwrap_or_else(|| format!("file-{}", files.len() + 1));
            files.push((name, bytes));
            Ok(())
        })
        .await?;
        if meta.name.is_some() {
            return Err(Error::BadRequest(
                "a batch takes no `name`: each file is named by its filename".into(),
            ));
        }
        if files.is_empty() {
            return Err(no_files());
        }
        check_source(&meta)?;
        let (names, bytes): (Vec<String>, Vec<Bytes>) = files.into_iter().unzip();
        let metas = names.iter().map(|file| file_meta(&meta, file)).collect();
        let stored = ingest::ingest_batch(&ctx.pool, bytes, metas, options).await?;
        (names, stored, 0)
    } else if super::has_content_type(&request, "application/x-tar") {
        check_source(&meta)?;
        ingest_tar(&ctx, meta, request, options).await?
    } else {
        return Err(Error::UnsupportedMediaType(
            "a batch is `multipart/form-data` with `file` parts, or an `application/x-tar` \
             archive of .onnx files"
                .into(),
        ));
    };
    tracing::debug!(
        files = names.len(),
        ms = started.elapsed().as_millis() as u64,
        "batch ingested"
    );

    let mut report = BatchReport {
        created: 0,
        existing: 0,
        failed: 0,
        skipped,
        items: Vec::with_capacity(names.len()),
    };
    for (file, stored) in names.into_iter().zip(stored) {
        let outcome = match stored {
            Stored::Created(id) => {
                report.created += 1;
                Outcome::Created { id }
            }
            Stored::Existing(id) => {
                report.existing += 1;
                Outcome::Existing { id }
            }
            Stored::Rejected(e) => {
                report.failed += 1;
                Outcome::Problem {
                    problem: Error::Onnx(e).problem(),
                }
            }
        };
        report.items.push(BatchItem { file, outcome });
    }
    Ok(Json(report))
}

/// A file's name without its folders and `.onnx`.
fn stem(file: &str) -> &str {
    let base = file.rsplit('/').next().unwrap_or(file);
    base.strip_suffix(".onnx").unwrap_or(base)
}

/// The batch's fields for one file, named by its file name.
fn file_meta(meta: &NewArchitecture, file: &str) -> NewArchitecture {
    NewArchitecture {
        name: Some(stem(file).to_string()),
        ..meta.clone()
    }
}

fn too_many(max_files: usize) -> Error {
    Error::PayloadTooLarge(format!(
        "a batch holds at most {max_files} files; send the rest in another batch"
    ))
}

fn no_files() -> Error {
    Error::BadRequest("the batch has no files (multipart `file` parts or .onnx tar entries)".into())
}

/// Ingests a tar body as it arrives: a blocking thread reads the archive from the body stream
/// and hands its `.onnx` files on in chunks (of [`ingest::CHUNK`] files or [`CHUNK_BYTES`]),
/// which are parsed while the rest is still being received. The body is never held whole, so a
/// batch costs a few chunks of memory whatever its size. Returns the files' names, their
/// outcomes and the skipped entries.
async fn ingest_tar(
    ctx: &ApiContext,
    meta: NewArchitecture,
    request: Request,
    options: BuildOptions,
) -> Result<(Vec<String>, Vec<Stored>, usize)> {
    use futures_util::TryStreamExt;

    let limit = super::body_limit_of(&request, MAX_BATCH_BYTES);
    let too_large = move || {
        Error::PayloadTooLarge(format!(
            "the batch is larger than {limit} bytes; send it in several batches"
        ))
    };
    if super::content_length(&request).is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    // Counts the body's bytes: past `limit`, the stream fails and `over_limit` says why.
    let over_limit = Arc::new(AtomicBool::new(false));
    let mut received = 0usize;
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let flag = over_limit.clone();
    let body = body.and_then(move |chunk| {
        received += chunk.len();
        let over = received > limit;
        flag.fetch_or(over, Ordering::Relaxed);
        std::future::ready(if over {
            Err(std::io::Error::other("body limit"))
        } else {
            Ok(chunk)
        })
    });
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));

    let (sender, chunks) = tokio::sync::mpsc::channel(1);
    let max_files = ctx.config.max_batch_files;
    let reading = tokio::task::spawn_blocking(move || {
        let mut names = Vec::new();
        let mut chunk = Vec::with_capacity(ingest::CHUNK);
        let mut chunk_bytes = 0;
        let read = read_tar(reader, limit, |name, bytes| {
            if names.len() == max_files {
                return Err(TarError::TooMany);
            }
            chunk_bytes += bytes.len();
            chunk.push((bytes, file_meta(&meta, &name)));
            names.push(name);
            if chunk.len() == ingest::CHUNK || chunk_bytes >= CHUNK_BYTES {
                chunk_bytes = 0;
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(ingest::CHUNK));
                // The receiver is gone only when the request failed or was dropped.
                sender
                    .blocking_send(Ok(full))
                    .map_err(|_| TarError::Stopped)?;
            }
            Ok(())
        });
        let last = match read {
            Ok(_) if names.is_empty() => Err(no_files()),
            Ok(skipped) => Ok(skipped),
            Err(TarError::TooMany) => Err(too_many(max_files)),
            Err(TarError::Stopped) => return (names, 0),
            Err(TarError::Malformed(_)) if over_limit.load(Ordering::Relaxed) => Err(too_large()),
            Err(TarError::Malformed(e)) => Err(Error::BadRequest(format!(
                "the body is not a readable tar archive: {e}"
            ))),
        };
        let skipped = match last {
            Ok(skipped) => {
                if !chunk.is_empty() {
                    let _ = sender.blocking_send(Ok(chunk));
                }
                skipped
            }
            Err(e) => {
                let _ = sender.blocking_send(Err(e));
                0
            }
        };
        (names, skipped)
    });
    let stored = ingest::ingest_stream(&ctx.pool, chunks, options).await?;
    let (names, skipped) = reading.await.map_err(|e| Error::Internal(e.into()))?;
    Ok((names, stored, skipped))
}

enum TarError {
    TooMany,
    /// The receiver of the files is gone (the request failed or was dropped).
    Stopped,
    Malformed(std::io::Error),
}

impl From<std::io::Error> for TarError {
    fn from(e: std::io::Error) -> Self {
        TarError::Malformed(e)
    }
}

/// Hands each `.onnx` regular file of a tar archive to `on_file` as it is read; returns how
/// many other entries were skipped. A header's size is the sender's word: no file is given
/// more than `max_bytes` of memory up front, and one that ends early is refused.
fn read_tar(
    body: impl std::io::Read,
    max_bytes: usize,
    mut on_file: impl FnMut(String, Bytes) -> std::result::Result<(), TarError>,
) -> std::result::Result<usize, TarError> {
    use std::io::Read;
    let mut skipped = 0;
    let mut archive = tar::Archive::new(body);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if entry.header().entry_type().is_dir() {
            continue;
        }
        if !entry.header().entry_type().is_file() || !path.ends_with(".onnx") {
            skipped += 1;
            continue;
        }
        let size = entry.size();
        let mut data = Vec::with_capacity(size.min(max_bytes as u64) as usize);
        entry.read_to_end(&mut data)?;
        if data.len() as u64 != size {
            return Err(TarError::Malformed(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the archive ends inside `{path}`"),
            )));
        }
        on_file(path, data.into())?;
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_stems() {
        assert_eq!(stem("models/resnet18.legacy.onnx"), "resnet18.legacy");
        assert_eq!(stem("a.onnx"), "a");
        assert_eq!(stem("file-3"), "file-3");
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// The `.onnx` files of `body` (name, length) and the skipped count, or the error.
    fn files_of(body: &[u8]) -> std::result::Result<(Vec<(String, usize)>, usize), TarError> {
        let mut files = Vec::new();
        let skipped = read_tar(body, 1 << 20, |name, bytes| {
            files.push((name, bytes.len()));
            Ok(())
        })?;
        Ok((files, skipped))
    }

    #[test]
    fn tar_entries_other_than_onnx_files_are_skipped() {
        let body = tar_of(&[("a/x.onnx", b"xx"), ("README.md", b"hi"), ("y.onnx", b"y")]);
        let (files, skipped) = files_of(&body).ok().unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(
            files,
            [("a/x.onnx".to_string(), 2), ("y.onnx".to_string(), 1)]
        );
        // `on_file` stops the reading.
        let mut seen = 0;
        let stopped = read_tar(&body[..], 1 << 20, |_, _| {
            seen += 1;
            Err(TarError::TooMany)
        });
        assert!(matches!(stopped, Err(TarError::TooMany)));
        assert_eq!(seen, 1);
        assert!(matches!(
            files_of(&[b'x'; 1024]),
            Err(TarError::Malformed(_))
        ));
        // A header that promises more data than the body holds.
        assert!(matches!(
            files_of(&body[..512 + 1]),
            Err(TarError::Malformed(_))
        ));
    }
}
