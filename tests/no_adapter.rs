//! With no usable adapter, opening a context is a typed error whose message names the fix.
//! (Its own test binary: it changes process-wide environment variables.)

use cnnvis::{wgpu, Error, GpuContext, GpuError};

#[test]
fn missing_adapter_is_an_error_that_names_the_fix() {
    // A backend that does not exist on this platform (Metal on Linux/Windows, DX12 elsewhere)
    // leaves no adapter at all.
    let absent = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    std::env::set_var("WGPU_BACKEND", absent);
    let e = GpuContext::new().err().expect("no adapter should be found");
    assert!(matches!(e, Error::Gpu(GpuError::NoAdapter { .. })), "{e}");
    assert!(
        e.to_string()
            .contains("apt-get install -y mesa-vulkan-drivers"),
        "{e}"
    );
    std::env::remove_var("WGPU_BACKEND");

    // Hiding every Vulkan driver from the loader must not fall back to OpenGL (which Mesa
    // provides through EGL on the same machines): that is no adapter, with the fix named.
    std::env::set_var("VK_ICD_FILENAMES", "/nonexistent/icd.json");
    std::env::set_var("VK_DRIVER_FILES", "/nonexistent/icd.json");
    let got = GpuContext::new();
    std::env::remove_var("VK_ICD_FILENAMES");
    std::env::remove_var("VK_DRIVER_FILES");
    match got {
        Err(e) => {
            assert!(matches!(e, Error::Gpu(GpuError::NoAdapter { .. })), "{e}");
            assert!(e.to_string().contains("mesa-vulkan-drivers"), "{e}");
        }
        Ok(c) => assert!(
            matches!(
                c.adapter().backend,
                wgpu::Backend::Metal | wgpu::Backend::Dx12
            ),
            "without a Vulkan driver the context opened {:?}",
            c.adapter()
        ),
    }

    // A name that matches nothing lists what does exist instead of panicking as
    // wgpu::util::initialize_adapter_from_env would.
    std::env::set_var("WGPU_ADAPTER_NAME", "no such adapter 1234");
    let e = GpuContext::new().err().expect("no adapter matches");
    std::env::remove_var("WGPU_ADAPTER_NAME");
    match e {
        Error::Gpu(GpuError::AdapterNotFound { wanted, .. }) => {
            assert_eq!(wanted, "no such adapter 1234")
        }
        Error::Gpu(GpuError::NoAdapter { .. }) => {
            panic!("no adapter at all on this machine: {e} (install mesa-vulkan-drivers)")
        }
        other => panic!("unexpected error {other}"),
    }
}
