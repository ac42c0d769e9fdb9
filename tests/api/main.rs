//! Integration tests through HTTP on a real PostgreSQL with real ONNX files.

mod architectures;
mod common;
mod invalid_input;
mod openapi;
mod zoo;
