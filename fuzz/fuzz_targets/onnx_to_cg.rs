//! Fuzzes the whole ONNX → computation graph path (decode, inline functions, validate, infer
//! shapes, build, hash, strip and re-encode): any input must give `Ok` or a typed error, never a
//! panic, hang or runaway allocation.
#![no_main]

use archdb::graph::BuildOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = archdb::ingest::ingest(bytes::Bytes::copy_from_slice(data), BuildOptions { max_nodes: 5_000 });
});
