//! Generates the ONNX protobuf types from the vendored `proto/onnx.proto` with protox (a pure-Rust
//! protoc), so building archdb needs no system `protoc`. Byte fields become `bytes::Bytes`, so
//! decoding a large model slices its weight payloads instead of copying them.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    // `sqlx::migrate!` embeds migrations/ at compile time: a new migration must rebuild.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        // An AttributeProto holds a tensor, a graph, a sparse tensor and a type inline: 1,672
        // bytes each, most of a decoded model's memory (a model has several attributes per
        // node) and of the time spent decoding it. Boxed, the rare ones cost a pointer.
        .boxed(".onnx.AttributeProto.t")
        .boxed(".onnx.AttributeProto.g")
        .boxed(".onnx.AttributeProto.sparse_tensor")
        .boxed(".onnx.AttributeProto.tp")
        .compile_fds(fds)?;
    Ok(())
}
