//! Generates the zoopipe.v1 messages and services (needs `protoc`: apt-get install protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=zoopipe/v1/zoopipe.proto");
    tonic_prost_build::configure().compile_protos(&["zoopipe/v1/zoopipe.proto"], &["."])?;
    Ok(())
}
