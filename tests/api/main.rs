//! Integration tests through HTTP on a real PostgreSQL with real ONNX files.

mod architectures;
mod benchmarks;
mod calibration;
mod cli;
mod common;
mod embedded;
mod graph;
mod importers;
mod invalid_input;
mod lifecycle;
mod migrations;
mod models;
mod openapi;
mod predictions;
mod queue;
mod results;
mod zoo;
