//! The `archdb` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::db::{Database, DbConfig};
use crate::graph::{BuildOptions, GraphSummary};
use crate::http::{self, ApiContext, ServeConfig};
use crate::import::ImportKind;

#[derive(Debug, Parser)]
#[command(
    name = "archdb",
    version,
    about = "Store, query and predict the performance of neural architectures"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST API (on the embedded PostgreSQL when DATABASE_URL is unset).
    Serve {
        #[command(flatten)]
        db: DbConfig,
        #[command(flatten)]
        http: ServeConfig,
        /// Do not load the bundled starter data into an empty database.
        #[arg(long)]
        no_seed: bool,
        /// Where the bundled starter data are (the repository's `data/`).
        #[arg(long, env = "ARCHDB_SEED_DIR", default_value = "data")]
        seed_dir: PathBuf,
    },
    /// Create the database if needed and run the migrations, then exit.
    Migrate {
        #[command(flatten)]
        db: DbConfig,
    },
    /// Import a benchmark dataset from DIR (laid out as under shared/data/) in one transaction;
    /// a re-run adds nothing. Prints a JSON summary.
    Import {
        kind: ImportKind,
        dir: PathBuf,
        #[command(flatten)]
        db: DbConfig,
    },
    /// Write one ONNX file per architecture of a search space into OUT (the real networks).
    Generate {
        space: SearchSpace,
        #[arg(long)]
        out: PathBuf,
        /// NB201 classifier width: 10 (CIFAR-10), 100 (CIFAR-100) or 120 (ImageNet16-120, 16×16 input).
        #[arg(long, default_value_t = 10)]
        classes: u32,
    },
    /// Print the OpenAPI 3.1 document.
    Openapi,
    /// Print the computation-graph summary of an ONNX file as JSON (no database needed).
    Inspect {
        file: PathBuf,
        /// Also print every node with its features and the edges.
        #[arg(long)]
        graph: bool,
        /// Most ONNX nodes accepted.
        #[arg(long, env = "ARCHDB_MAX_NODES", default_value_t = 200_000)]
        max_nodes: usize,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            db,
            http: config,
            no_seed,
            seed_dir,
        } => {
            let database = Database::connect(&db).await?;
            if !no_seed {
                // The API answers at once; the starter data arrive as each import commits.
                let pool = database.pool.clone();
                tokio::spawn(async move {
                    match crate::import::seed::seed_if_empty(
                        &pool,
                        &seed_dir,
                        crate::import::stderr_progress(),
                    )
                    .await
                    {
                        Ok(done) if !done.is_empty() => {
                            tracing::info!(imports = done.len(), "starter data loaded")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!("loading starter data failed: {e:#}"),
                    }
                });
            }
            let ctx = ApiContext {
                pool: database.pool.clone(),
                config: Arc::new(config),
            };
            let served = http::serve(ctx).await;
            database.close().await;
            served
        }
        Command::Migrate { db } => {
            Database::connect(&db).await?.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Import { kind, dir, db } => {
            let database = Database::connect(&db).await?;
            let progress = crate::import::stderr_progress();
            let summary = crate::import::run(&database.pool, kind, &dir, progress).await;
            database.close().await;
            println!("{}", serde_json::to_string_pretty(&summary?)?);
            Ok(())
        }
        Command::Openapi => {
            println!("{}", http::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Generate {
            space,
            out,
            classes,
        } => generate(space, &out, classes),
        Command::Inspect {
            file,
            graph,
            max_nodes,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let model = crate::ingest::ingest(bytes.into(), BuildOptions { max_nodes })?;
            #[derive(Serialize)]
            struct Inspection<'a> {
                graph_hash: &'a str,
                #[serde(flatten)]
                summary: &'a GraphSummary,
                #[serde(skip_serializing_if = "Option::is_none")]
                graph: Option<crate::db::architectures::StoredGraph>,
            }
            let stored = graph.then(|| crate::db::architectures::StoredGraph {
                nodes: model.graph.graph.node_weights().cloned().collect(),
                edges: model.graph.edge_list(),
            });
            let out = Inspection {
                graph_hash: &model.graph_hash,
                summary: &model.graph.summary,
                graph: stored,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

/// Search spaces `archdb generate` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SearchSpace {
    /// NAS-Bench-201: 15,625 files `nb201-<index>.onnx`, official index order.
    Nb201,
    /// NAS-Bench-Macro: 6,561 files `nb-macro-<code>.onnx`.
    NbMacro,
}

fn generate(space: SearchSpace, out: &std::path::Path, classes: u32) -> Result<()> {
    use crate::generate::{
        nb_macro_arch_strings, nb_macro_model, nb201_arch_strings, nb201_model, write_model,
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = 0usize;
    match space {
        SearchSpace::Nb201 => {
            for (index, arch) in nb201_arch_strings().enumerate() {
                write_model(
                    &nb201_model(&arch, classes)?,
                    out.join(format!("nb201-{index}.onnx")),
                )?;
                written += 1;
            }
        }
        SearchSpace::NbMacro => {
            for code in nb_macro_arch_strings() {
                write_model(
                    &nb_macro_model(&code)?,
                    out.join(format!("nb-macro-{code}.onnx")),
                )?;
                written += 1;
            }
        }
    }
    println!("{}", serde_json::json!({"written": written, "out": out}));
    Ok(())
}
