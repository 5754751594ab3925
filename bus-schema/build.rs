//! Compiles the `.proto` contract with a pure-Rust parser, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/agentcrm/v1/envelope.proto",
        "proto/agentcrm/v1/customer.proto",
        "proto/agentcrm/v1/intake.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        // Decoding copies the nested payload once into shared bytes instead of
        // twice into a vector (prost copies a `bytes` field through `Bytes`).
        .bytes([".agentcrm.v1.Envelope.payload"])
        .compile_fds(descriptors)?;
    Ok(())
}
