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
        } => {
            let database = Database::connect(&db).await?;
            if !no_seed {
                tracing::info!("no bundled starter data in this build yet; starting empty");
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
