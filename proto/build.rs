//! Generates the zoopipe.v1 messages and services. The .proto is parsed by protox (a protobuf
//! compiler written in Rust), so building needs no `protoc` installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=zoopipe/v1/zoopipe.proto");
    let descriptors = protox::compile(["zoopipe/v1/zoopipe.proto"], ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
