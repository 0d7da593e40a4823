//! Compiles the CPPN compute shader (gpu/cppn.wgsl) to SPIR-V with naga, so building needs no
//! shader compiler binary. The runtime loads the words from OUT_DIR/cppn.spv.

use naga::back::spv;
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn main() {
    let source_path = "gpu/cppn.wgsl";
    println!("cargo:rerun-if-changed={source_path}");
    let source = std::fs::read_to_string(source_path).expect("read gpu/cppn.wgsl");
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
        panic!("{}", e.emit_to_string_with_path(&source, source_path));
    });
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(&source, source_path)));
    // Register and buffer indices come from the host and are checked there; clamping as well
    // means a host bug reads a wrong value instead of writing outside the register file.
    let options = spv::Options {
        lang_version: (1, 0),
        bounds_check_policies: BoundsCheckPolicies {
            index: BoundsCheckPolicy::Restrict,
            buffer: BoundsCheckPolicy::Restrict,
            image_load: BoundsCheckPolicy::Restrict,
            binding_array: BoundsCheckPolicy::Restrict,
        },
        ..spv::Options::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "main".into(),
    };
    let words = spv::write_vec(&module, &info, &options, Some(&pipeline)).expect("write SPIR-V");
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("cppn.spv");
    std::fs::write(out, bytes).expect("write cppn.spv");
}
