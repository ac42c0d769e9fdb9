//! The `archdb` command line.

mod ingest;
mod serve;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::db::{Database, DbConfig};
use crate::graph::{BuildOptions, GraphSummary};
use crate::http::{self, ServeConfig};
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
        /// Do not load the parts of the bundled starter data that the database lacks.
        #[arg(long)]
        no_seed: bool,
        /// Where the bundled starter data are (the repository's `data/`).
        #[arg(long, env = "ARCHDB_SEED_DIR", default_value = "data")]
        seed_dir: PathBuf,
    },
    /// Serve the MCP tools for agents over stdin/stdout (the same tools as /mcp of `serve`;
    /// docs/agents.md), on the same database settings as `serve`. Logs go to stderr.
    Mcp {
        #[command(flatten)]
        db: DbConfig,
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
    /// Store every .onnx file under DIR as an architecture (deduplicated by graph hash), in
    /// batches of one transaction each, with a progress bar. Prints a JSON summary listing the
    /// files that are not usable models.
    Ingest {
        dir: PathBuf,
        #[command(flatten)]
        options: ingest::IngestOptions,
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
        #[command(flatten)]
        cell: crate::generate::cli::CellArgs,
    },
    /// Run accuracy-predictor training and fine-tuning jobs from the queue (POST /v1/predictors),
    /// on the GPU when archdb is built with the `cuda` feature and one is present, or through
    /// PyTorch with `--trainer torch` (docs/gpu-trainer.md).
    Worker {
        #[command(flatten)]
        db: DbConfig,
        #[command(flatten)]
        options: crate::worker::WorkerOptions,
    },
    /// Train, evaluate and register an accuracy predictor in the foreground, with a progress bar.
    Train {
        #[command(flatten)]
        db: DbConfig,
        #[command(flatten)]
        split: TrainSplit,
        #[arg(long)]
        name: Option<String>,
        /// Activate the new predictor.
        #[arg(long)]
        activate: bool,
        /// Also write the artifact to this file (how `data/predictor/` is made).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        trainer: crate::training::TrainerOptions,
    },
    /// Fine-tune a registered predictor to a new target from a few of its measured architectures
    /// (as POST /v1/predictors/{id}/finetune), evaluate it on the others and register it.
    Finetune {
        #[command(flatten)]
        db: DbConfig,
        /// The predictor to start from.
        #[arg(long)]
        predictor: i64,
        /// benchmark/dataset/metric[/epoch[/split]] of the new family.
        #[arg(long)]
        target: String,
        #[arg(long, default_value_t = 50)]
        samples: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Fine-tuning setting overrides as JSON.
        #[arg(long, default_value = "{}")]
        config: String,
    },
    /// Score a registered predictor on every measured architecture of a target (zero-shot
    /// transfer when it was trained on another family). Prints JSON.
    Evaluate {
        #[command(flatten)]
        db: DbConfig,
        #[arg(long)]
        predictor: i64,
        #[arg(long)]
        target: String,
    },
    /// Write the graphs of a train request's split, per node, with its training settings as
    /// one safetensors file for another trainer (python/archdb_torch; docs/gpu-trainer.md).
    ExportTrainingSet {
        #[command(flatten)]
        db: DbConfig,
        /// As for `archdb train`; the settings are stored in the file for the trainer.
        #[command(flatten)]
        split: TrainSplit,
        /// The training graphs or the held-out ones.
        #[arg(long, value_enum, default_value = "train")]
        part: crate::training::SetPart,
        #[arg(long)]
        out: PathBuf,
    },
    /// Predict the graphs of a training-set file with an artifact file; writes predictions and,
    /// when every graph is labelled, Kendall τ-b / Spearman / MAE as JSON.
    PredictSet {
        #[command(flatten)]
        db: DbConfig,
        #[arg(long)]
        artifact: PathBuf,
        #[arg(long)]
        set: PathBuf,
        #[arg(long)]
        out: PathBuf,
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
        /// Print the graph as text for language models instead (docs/agents.md).
        #[arg(long)]
        text: bool,
        /// The text encoding: chain_slim (ONNX-Net's), chain_slim_base, chain_slim_input,
        /// chain_slim_param, chain_slim_outshape, or cg (the computation graph).
        #[arg(long, default_value = "chain_slim", requires = "text")]
        variant: crate::text::Variant,
        /// Also print scalar attributes (`group=32`), which ONNX-Net drops.
        #[arg(long, requires = "text")]
        scalars: bool,
    },
    /// Write stored architectures with their measured accuracy in another format: onnx-bench
    /// (one ONNX file per network, accuracy in metadata_props; docs/agents.md). Prints JSON.
    Export {
        format: crate::export::ExportFormat,
        /// The benchmark whose results are exported (e.g. nb201).
        #[arg(long)]
        benchmark: String,
        /// e.g. cifar10
        #[arg(long)]
        dataset: String,
        #[arg(long, default_value = "acc")]
        metric: String,
        /// The figure's epoch (default: the largest).
        #[arg(long)]
        epoch: Option<i32>,
        /// The figure's split (default: test, else xtest, ori-test, valid).
        #[arg(long)]
        split: Option<String>,
        /// At most this many architectures.
        #[arg(long)]
        limit: Option<i64>,
        /// The folder to write (replaced atomically when it holds a previous export).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        db: DbConfig,
    },
    /// Evaluate the recipe-conditioned predictor by grouped cross-validation over LEMUR
    /// families (with the baselines in the same folds), then train it on every row and write
    /// the artifact (how `data/predictor/lemur-recipe.json.gz` is made; docs/predictor.md).
    TrainRecipe {
        /// A LEMUR extract (`lemur_stat.jsonl.gz` and `onnx/lemur_onnx.tar.gz`).
        #[arg(long, default_value = "../shared/data/lemur")]
        lemur: PathBuf,
        /// Seeds of the grouped cross-validation (the first one calibrates the artifact).
        #[arg(long, value_delimiter = ',', default_value = "0")]
        seeds: Vec<u64>,
        /// perpetual's complexity budget.
        #[arg(long, default_value_t = 0.5)]
        budget: f32,
        /// Write the trained artifact here; without it only the evaluation runs.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// What a training run learns from: the target, its train/test split and the settings.
#[derive(clap::Args, Debug)]
pub struct TrainSplit {
    /// What to predict: benchmark/dataset/metric[/epoch[/split]] of the stored results.
    #[arg(long, default_value = "nb201/cifar10/acc/200/test")]
    target: String,
    /// Measured architectures to train on (default 10 %); the rest are the test set.
    #[arg(long)]
    train_size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training-setting overrides as JSON, e.g. '{"epochs": 50, "ensemble": 1}'.
    #[arg(long, default_value = "{}")]
    config: String,
}

impl TrainSplit {
    fn request(
        self,
        name: Option<String>,
        activate: bool,
    ) -> Result<crate::training::TrainRequest> {
        Ok(crate::training::TrainRequest {
            name,
            target: parse_target(&self.target)?,
            train_size: self.train_size,
            seed: self.seed,
            config: serde_json::from_str(&self.config).context("--config is not JSON")?,
            activate,
        })
    }
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
            config.check()?;
            serve::serve(db, config, (!no_seed).then_some(seed_dir)).await
        }
        Command::Mcp {
            db,
            no_seed,
            seed_dir,
        } => {
            let database = Database::connect(&db).await?;
            if !no_seed {
                let progress = crate::import::stderr_progress();
                tokio::spawn(serve::load_starter(
                    database.pool.clone(),
                    seed_dir,
                    progress,
                ));
            }
            let ctx = http::ApiContext::new(database.pool.clone(), ServeConfig::default()).await;
            let served = crate::mcp::serve_stdio(ctx).await;
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
        Command::Ingest { dir, options, db } => {
            let database = Database::connect(&db).await?;
            let summary = with_database(database, async |pool| {
                ingest::run(pool, &dir, &options).await
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Worker { db, options } => {
            let database = Database::connect(&db).await?;
            let outcome = tokio::select! {
                r = crate::worker::run(&database.pool, &options) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            };
            database.close().await;
            outcome
        }
        Command::Train {
            db,
            split,
            name,
            activate,
            out,
            trainer,
        } => {
            let request = split.request(name, activate)?;
            let settings = crate::training::validate_train(&request)?;
            let database = Database::connect(&db).await?;
            let epochs = settings.ensemble
                * (settings.contrastive.epochs + settings.epochs + settings.head_epochs);
            let bar = indicatif::ProgressBar::new(epochs as u64).with_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} epochs {msg}",
                )?
                .progress_chars("=> "),
            );
            let progress: crate::training::ProgressFn = {
                let bar = bar.clone();
                Box::new(move |r| {
                    bar.inc(1);
                    bar.set_message(format!(
                        "member {} {:?} loss {:.4} val τ {}",
                        r.member,
                        r.stage,
                        r.loss,
                        r.validation_kendall
                            .map_or("-".into(), |t| format!("{t:.3}"))
                    ));
                    true
                })
            };
            let info = with_database(database, async |pool| {
                let id = crate::training::train(pool, &request, None, &trainer, progress).await;
                bar.finish_and_clear();
                let id = id?;
                if let Some(path) = out {
                    let bytes = crate::db::predictors::artifact(pool, id)
                        .await?
                        .context("predictor vanished")?;
                    std::fs::write(&path, bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                Ok(crate::db::predictors::get(pool, id).await?)
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(())
        }
        Command::Finetune {
            db,
            predictor,
            target,
            samples,
            seed,
            config,
        } => {
            let request = crate::training::FinetuneRequest {
                predictor_id: predictor,
                name: None,
                target: parse_target(&target)?,
                samples,
                seed,
                config: serde_json::from_str(&config).context("--config is not JSON")?,
                activate: false,
            };
            crate::training::validate_finetune(&request)?;
            let database = Database::connect(&db).await?;
            let info = with_database(database, async |pool| {
                let id = crate::training::finetune(pool, &request, None).await?;
                Ok(crate::db::predictors::get(pool, id).await?)
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(())
        }
        Command::Evaluate {
            db,
            predictor,
            target,
        } => {
            let target = parse_target(&target)?;
            let database = Database::connect(&db).await?;
            let scores = with_database(database, async |pool| {
                crate::training::evaluate(pool, predictor, &target).await
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&scores)?);
            Ok(())
        }
        Command::ExportTrainingSet {
            db,
            split,
            part,
            out,
        } => {
            let request = split.request(None, false)?;
            crate::training::validate_train(&request)?;
            let database = Database::connect(&db).await?;
            let bytes = with_database(database, async |pool| {
                crate::training::export_set(pool, &request, part).await
            })
            .await?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}",
                serde_json::json!({"out": out, "bytes": bytes.len(), "part": part})
            );
            Ok(())
        }
        Command::PredictSet {
            db,
            artifact,
            set,
            out,
        } => {
            let predictor =
                crate::predict::Predictor::load(&artifact, crate::predict::Backend::Cpu)
                    .with_context(|| format!("loading {}", artifact.display()))?;
            let set = std::fs::read(&set).with_context(|| format!("reading {}", set.display()))?;
            let database = Database::connect(&db).await?;
            let result = with_database(database, async |pool| {
                crate::training::predict_set(pool, predictor, &set).await
            })
            .await?;
            std::fs::write(&out, serde_json::to_vec(&result)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}",
                serde_json::json!({"out": out, "scores": result["scores"]})
            );
            Ok(())
        }
        Command::Export {
            format: crate::export::ExportFormat::OnnxBench,
            benchmark,
            dataset,
            metric,
            epoch,
            split,
            limit,
            out,
            db,
        } => {
            let options = crate::export::onnx_bench::ExportOptions {
                benchmark,
                dataset,
                metric,
                epoch,
                split,
                limit,
                out,
            };
            let database = Database::connect(&db).await?;
            let summary = with_database(database, async |pool| {
                crate::export::onnx_bench::export(pool, &options).await
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
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
            cell,
        } => generate(space, &out, classes, &cell),
        Command::TrainRecipe {
            lemur,
            seeds,
            budget,
            out,
        } => {
            tokio::task::spawn_blocking(move || {
                train_recipe(&lemur, &seeds, budget, out.as_deref())
            })
            .await?
        }
        Command::Inspect {
            file,
            graph,
            max_nodes,
            text,
            variant,
            scalars,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            if text {
                let model = crate::onnx::decode_model(bytes.into())?;
                let text =
                    crate::text::render(&model, crate::text::TextOptions { variant, scalars })?;
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
                return Ok(());
            }
            let model = crate::ingest::analyse(bytes.into(), BuildOptions { max_nodes })?;
            #[derive(Serialize)]
            struct Inspection<'a> {
                graph_hash: &'a str,
                #[serde(flatten)]
                summary: &'a GraphSummary,
                #[serde(skip_serializing_if = "Option::is_none")]
                graph: Option<crate::db::architectures::StoredGraph>,
            }
            let stored = graph.then(|| crate::db::architectures::StoredGraph::from(&model.graph));
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

/// Runs `work` on the database, then closes it (stopping an embedded cluster) whatever the
/// outcome.
async fn with_database<T>(
    database: Database,
    work: impl AsyncFnOnce(&sqlx::PgPool) -> Result<T>,
) -> Result<T> {
    let outcome = work(&database.pool).await;
    database.close().await;
    outcome
}

/// `benchmark/dataset/metric[/epoch[/split]][:max]`; an empty epoch or split means any
/// (`lemur/cifar-10/acc::max` is LEMUR's best CIFAR-10 accuracy per model).
pub fn parse_target(s: &str) -> Result<crate::db::predictors::Target> {
    use crate::db::predictors::Aggregate;
    let (path, aggregate) = match s.rsplit_once(':') {
        Some((path, "max")) => (path, Some(Aggregate::Max)),
        Some((path, "mean")) => (path, Some(Aggregate::Mean)),
        _ => (s, None),
    };
    let path = path.trim_end_matches(':');
    let parts: Vec<&str> = path.split('/').collect();
    if !(3..=5).contains(&parts.len()) || parts[..3].iter().any(|p| p.is_empty()) {
        anyhow::bail!("target must be benchmark/dataset/metric[/epoch[/split]][:max], got {s}");
    }
    let optional = |i: usize| parts.get(i).filter(|p| !p.is_empty());
    Ok(crate::db::predictors::Target {
        benchmark: parts[0].into(),
        dataset: parts[1].into(),
        metric: parts[2].into(),
        epoch: optional(3)
            .map(|e| e.parse().context("epoch must be an integer"))
            .transpose()?,
        split: optional(4).map(|s| s.to_string()),
        aggregate,
    })
}

/// Search spaces `archdb generate` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SearchSpace {
    /// NAS-Bench-201: 15,625 files `nb201-<index>.onnx`, official index order.
    Nb201,
    /// NAS-Bench-Macro: 6,561 files `nb-macro-<code>.onnx`.
    NbMacro,
    /// One NAS-Bench-101 cell (`--spec`): `nb101.onnx`.
    Nb101,
    /// One NAS-Bench-301 / DARTS genotype (`--genotype`, `--variant`): `nb301-<variant>.onnx`.
    Nb301,
    /// One TransNAS-Bench-101 architecture (`--arch`, `--task`): `tnb101-<arch>-<task>.onnx`.
    Tnb101,
    /// Every NB101, NB301 and TransNAS sample of a NASLib samples file (`--samples`):
    /// `<space>-<task>-<line>.onnx`.
    NaslibZc,
}

fn generate(
    space: SearchSpace,
    out: &std::path::Path,
    classes: u32,
    cell: &crate::generate::cli::CellArgs,
) -> Result<()> {
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
        SearchSpace::Nb101 => written = cell.nb101(out)?,
        SearchSpace::Nb301 => written = cell.nb301(out)?,
        SearchSpace::Tnb101 => written = cell.tnb101(out)?,
        SearchSpace::NaslibZc => written = cell.naslib_samples(out)?,
    }
    println!("{}", serde_json::json!({"written": written, "out": out}));
    Ok(())
}

/// `archdb train-recipe`: grouped cross-validation per seed (a JSON line each), then the
/// artifact trained on everything.
fn train_recipe(
    lemur: &std::path::Path,
    seeds: &[u64],
    budget: f32,
    out: Option<&std::path::Path>,
) -> Result<()> {
    use crate::predict::recipe::{self, train::TrainOptions};
    let started = std::time::Instant::now();
    let set = recipe::lemur::load(lemur)?;
    eprintln!(
        "loaded {} graphs and {} rows in {:.1} s",
        set.graphs.len(),
        set.rows.len(),
        started.elapsed().as_secs_f64()
    );
    let options = |seed| TrainOptions {
        seed,
        budget,
        ..TrainOptions::default()
    };
    let rest = if out.is_some() {
        &seeds[1.min(seeds.len())..]
    } else {
        seeds
    };
    for &seed in rest {
        let report = recipe::train::cross_validate(&set, &options(seed))?;
        println!("{}", serde_json::to_string(&report)?);
    }
    if let Some(out) = out {
        let seed = seeds.first().copied().unwrap_or(0);
        let predictor = recipe::train::train(&set, &options(seed))?;
        println!("{}", serde_json::to_string(&predictor.evaluation)?);
        let bytes = predictor.to_bytes()?;
        std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        eprintln!(
            "wrote {} ({} bytes) after {:.1} s",
            out.display(),
            bytes.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_target;
    use crate::db::predictors::{Aggregate, Target};

    #[test]
    fn targets_parse_with_optional_epoch_split_and_aggregate() {
        assert_eq!(
            parse_target("nb201/cifar10/acc/200/test").unwrap(),
            Target::nb201_cifar10()
        );
        let t = parse_target("lemur/cifar-10/acc:max").unwrap();
        assert_eq!(
            (t.epoch, t.split.as_deref(), t.aggregate),
            (None, None, Some(Aggregate::Max))
        );
        let t = parse_target("nb-macro/cifar10/acc//test").unwrap();
        assert_eq!(
            (t.epoch, t.split.as_deref(), t.aggregate),
            (None, Some("test"), None)
        );
        for bad in ["nb201/cifar10", "nb201//acc", "a/b/c/x", "a/b/c/1/2/3"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
