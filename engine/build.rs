//! Compiles the CPPN compute shader (gpu/cppn.wgsl) to SPIR-V with naga, so building needs no
//! shader compiler binary. The runtime embeds OUT_DIR/cppn.spv and OUT_DIR/cppn_small.spv.

use naga::back::spv;
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// Register-file sizes compiled: a small one that real CPPNs fit (the fixtures need at most 16)
/// and the largest the host accepts. The array's size is a compile-time constant in WGSL, and a
/// large one costs even programs that use few registers (3x on lavapipe).
const VARIANTS: [(&str, u32); 2] = [("cppn_small.spv", 32), ("cppn.spv", 256)];

fn main() {
    let source_path = "gpu/cppn.wgsl";
    println!("cargo:rerun-if-changed={source_path}");
    let source = std::fs::read_to_string(source_path).expect("read gpu/cppn.wgsl");
    let declaration = "const REGS: u32 = 256u;";
    assert!(
        source.contains(declaration),
        "gpu/cppn.wgsl must declare `{declaration}`"
    );
    for (file, regs) in VARIANTS {
        let variant = source.replace(declaration, &format!("const REGS: u32 = {regs}u;"));
        let words = compile(&variant, source_path);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(file);
        std::fs::write(out, bytes).expect("write SPIR-V");
    }
}

fn compile(source: &str, source_path: &str) -> Vec<u32> {
    let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| {
        panic!("{}", e.emit_to_string_with_path(source, source_path));
    });
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(source, source_path)));
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
    spv::write_vec(&module, &info, &options, Some(&pipeline)).expect("write SPIR-V")
}
