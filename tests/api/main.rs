//! Integration tests through HTTP on a real PostgreSQL with real ONNX files.

mod architectures;
mod auth;
mod backpressure;
mod benchmarks;
mod calibration;
mod cli;
mod common;
mod embedded;
mod graph;
mod hostile_input;
mod importers;
mod invalid_input;
mod lifecycle;
mod migrations;
mod models;
mod onnx_bench;
mod openapi;
mod predictions;
mod queue;
mod recipe;
mod results;
mod search_spaces;
mod starvation;
mod text;
mod zoo;
