//! Every WGSL file parses and validates with naga, with no adapter, and its entry points are
//! exactly the kernels the Rust side registers.

use cnnvis::gpu::{all_kernels, validate_shader, Shader};

#[test]
fn every_shader_validates_with_naga_without_an_adapter() {
    let mut failures = Vec::new();
    for shader in Shader::ALL {
        if let Err(e) = validate_shader(shader) {
            failures.push(format!("{e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "shader validation failed:\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn every_registered_kernel_belongs_to_a_listed_shader() {
    let kernels = all_kernels();
    assert!(!kernels.is_empty());
    for k in kernels {
        assert!(Shader::ALL.contains(&k.shader), "{k:?}");
    }
}
