//! Generates the ONNX protobuf types from the vendored `proto/onnx.proto` with protox (a pure-Rust
//! protoc), so building archdb needs no system `protoc`. Byte fields become `bytes::Bytes`, so
//! decoding a large model slices its weight payloads instead of copying them.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    // `sqlx::migrate!` embeds migrations/ at compile time: a new migration must rebuild.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
