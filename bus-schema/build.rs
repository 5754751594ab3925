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
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
