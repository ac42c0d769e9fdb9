//! archdb: store, query and predict the performance of neural architectures.
//!
//! Layout: [`onnx`] decodes models, [`graph`] turns them into computation graphs (features,
//! MACs, canonical hash), [`db`] stores them in PostgreSQL, [`http`] serves the REST API,
//! [`calibration`] computes calibration metrics, [`stats`] rank statistics, [`predict`] the
//! accuracy predictors (models and serving registry), [`training`] trains, evaluates and registers
//! them against the database, [`worker`] runs its queued jobs, [`cli`] is the `archdb` command
//! line, [`mcp`] the MCP server for agents, [`cpu`] the thread pool their CPU work shares.

pub mod calibration;
pub mod cli;
pub mod cpu;
pub mod db;
pub mod export;
pub mod generate;
pub mod graph;
pub mod http;
pub mod import;
pub mod ingest;
pub mod lemur;
pub mod mcp;
pub mod memory;
pub mod onnx;
pub mod predict;
pub mod stats;
pub mod testing;
pub mod text;
pub mod training;
pub mod worker;
