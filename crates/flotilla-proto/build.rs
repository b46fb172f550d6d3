//! Generates the agent protocol from `proto/agent.proto` with a vendored protoc, so no system
//! package is needed; `PROTOC` in the environment overrides it.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => path.into(),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    println!("cargo:rerun-if-changed=../../proto");
    // Small per-stream buffers: see src/codec.rs.
    tonic_prost_build::configure().codec_path("crate::codec::LeanCodec").compile_with_config(
        config,
        &["../../proto/agent.proto"],
        &["../../proto"],
    )?;
    Ok(())
}
