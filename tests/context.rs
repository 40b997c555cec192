//! The GPU runtime: device acquisition, injected devices, error capture, pooled tensors,
//! upload/download and limits.

mod common;
use common::*;

use cnnvis::gpu::{grid_for, Binding, DType, Dispatch, GpuContext, Kernel, Shader};
use cnnvis::ops::relu::relu_forward;
use cnnvis::{wgpu, Error, GpuError, Tensor};

#[test]
fn context_reports_its_adapter() {
    let a = ctx().adapter();
    assert!(!a.name.is_empty());
    let limits = ctx().limits();
    // the adapter's own limits are requested, not WebGPU's 128 MiB defaults for buffer size
    assert!(limits.max_buffer_size > 256 << 20, "{limits:?}");
}

#[test]
fn upload_download_round_trip_f32_and_u32() {
    let c = ctx();
    let mut rng = Rng::new(7);
    let data = rng.vec(1000 * 3 + 1, -5.0, 5.0);
    let t = upload(&[3001], &data);
    assert_eq!(download(&t), data);
    let ints: Vec<u32> = (0..77u32).map(|i| i.wrapping_mul(2654435761)).collect();
    let u = Tensor::from_u32(c, &[7, 11], &ints).unwrap();
    assert_eq!(u.download_u32(c).unwrap(), ints);
    assert!(
        u.download(c).is_err(),
        "f32 download of a u32 tensor must be refused"
    );
    let z = Tensor::zeros(c, &[5, 5]).unwrap();
    assert_eq!(download(&z), vec![0.0; 25]);
}

/// A download records its phases (copy and wait, map, copy out) for profiles; a context of its
/// own, so that no other test's download lands in between.
#[test]
fn a_download_records_where_its_time_went() {
    let c = GpuContext::new().expect("a Vulkan adapter (install mesa-vulkan-drivers)");
    assert_eq!(c.last_readback(), None);
    let data: Vec<f32> = (0..15).map(|i| i as f32 * 0.5).collect();
    let t = Tensor::from_slice(&c, &[3, 5], &data).unwrap();
    assert_eq!(t.download(&c).unwrap(), data);
    let r = c.last_readback().expect("recorded");
    assert_eq!(r.bytes, 60);
    for phase in [r.copy_and_wait, r.map, r.copy_out] {
        assert!(phase.is_finite() && phase >= 0.0, "{r:?}");
    }
}

#[test]
fn wrong_length_upload_and_bad_reshape_are_errors() {
    let c = ctx();
    let t = Tensor::empty(c, &[2, 3], DType::F32).unwrap();
    let e = t.write(c, &[1.0; 5]).unwrap_err();
    assert!(e.to_string().contains("5 values"), "{e}");
    assert!(t.reshape(&[6]).is_ok());
    let e = t.reshape(&[4]).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn dropped_tensors_return_their_buffers_to_the_pool() {
    let c = ctx();
    // a size class no other test in this binary uses
    let shape = [1, 1, 123, 457];
    let t = Tensor::empty(c, &shape, DType::F32).unwrap();
    let id = format!("{:?}", t.buffer());
    drop(t);
    let t2 = Tensor::empty(c, &shape, DType::F32).unwrap();
    assert_eq!(
        format!("{:?}", t2.buffer()),
        id,
        "same-size allocation must reuse the pooled buffer"
    );
    // while t2 holds it, the next allocation must get another buffer
    let t3 = Tensor::empty(c, &shape, DType::F32).unwrap();
    assert_ne!(
        format!("{:?}", t3.buffer()),
        id,
        "a live tensor's buffer was handed out twice"
    );
}

#[test]
fn oversized_tensor_is_a_typed_error_not_a_panic() {
    let c = ctx();
    let too_big = (c.limits().max_buffer_size / 4 + 1) as usize;
    let e = Tensor::empty(c, &[too_big], DType::F32).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Gpu(GpuError::TooLarge {
                limit_name: "max_buffer_size",
                ..
            })
        ),
        "{e}"
    );
}

#[test]
fn binding_larger_than_the_storage_limit_is_a_typed_error() {
    let c = ctx();
    let limit = c.limits().max_storage_buffer_binding_size;
    let n = (limit / 4 + 64) as usize;
    if (n as u64) * 4 > c.limits().max_buffer_size {
        // every buffer fits a binding on this device: nothing to check
        return;
    }
    let x = Tensor::empty(c, &[n], DType::F32).unwrap();
    let y = Tensor::empty(c, &[n], DType::F32).unwrap();
    let e = relu_forward(c, &y, &x).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Gpu(GpuError::TooLarge {
                limit_name: "max_storage_buffer_binding_size",
                ..
            })
        ),
        "{e}"
    );
}

#[test]
fn wgpu_validation_errors_come_back_as_results() {
    let c = ctx();
    let x = upload(&[4], &[1.0, -1.0, 2.0, -2.0]);
    // relu_forward also needs binding 2 (y): the bind group is invalid
    let k = Kernel::new(Shader::Relu, "relu_forward");
    let e = c
        .dispatch(k, &[4u32, 0, 0, 0], &[(1, &x)], [1, 1, 1])
        .unwrap_err();
    assert!(matches!(e, Error::Gpu(GpuError::Validation { .. })), "{e}");
    // an entry point that does not exist
    let k = Kernel::new(Shader::Relu, "no_such_entry");
    let e = c
        .dispatch(k, &[4u32, 0, 0, 0], &[(1, &x)], [1, 1, 1])
        .unwrap_err();
    assert!(matches!(e, Error::Gpu(GpuError::Validation { .. })), "{e}");
    // the context still works afterwards
    let y = zeros(&[4]);
    run(&[&relu_forward(c, &y, &x).unwrap()]);
    assert_eq!(download(&y), vec![1.0, 0.0, 2.0, 0.0]);
}

/// A uniform window past the end of its tensor, or at an unaligned offset, is a shape error
/// before wgpu sees it; a valid one binds.
#[test]
fn uniform_windows_are_checked_against_the_tensor_and_the_limits() {
    let c = ctx();
    let k = Kernel::new(Shader::Relu, "relu_forward");
    let t = zeros(&[64]);
    let window = |offset, size| Binding::Uniform {
        tensor: &t,
        offset,
        size,
    };
    for (offset, size) in [(0, 512), (128, 256), (3, 16), (0, 0)] {
        let e = c
            .dispatch_bound(k, &[4u32, 0, 0, 0], &[(1, window(offset, size))], [1, 1, 1])
            .unwrap_err();
        assert!(
            matches!(e, Error::Shape { .. }),
            "offset {offset} size {size}: {e}"
        );
    }
}

/// A chain records its parts in order and reports its main kernel.
#[test]
fn chained_dispatches_run_in_order() {
    let c = ctx();
    let x = upload(&[4], &[1.0, -1.0, 2.0, -2.0]);
    let (y, z) = (zeros(&[4]), zeros(&[4]));
    let first = relu_forward(c, &y, &x).unwrap();
    let main = first.kernel();
    // z = relu(y) only sees y once the first launch has written it.
    let d = Dispatch::chain(main, vec![first, relu_forward(c, &z, &y).unwrap()]);
    assert_eq!(d.launches(), 2);
    assert_eq!(d.kernel(), main);
    run(&[&d]);
    assert_eq!(download(&z), vec![1.0, 0.0, 2.0, 0.0]);
}

#[test]
fn a_host_owned_device_can_be_wrapped() {
    // what a graphics app does: its own instance, adapter and device
    let instance = wgpu::Instance::new(cnnvis::gpu::instance_descriptor());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("adapter (install mesa-vulkan-drivers on a machine without a GPU)");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let host = GpuContext::from_device(device.clone(), queue);
    let x = Tensor::from_slice(&host, &[3], &[-1.0, 0.5, 3.0]).unwrap();
    let y = Tensor::empty(&host, &[3], DType::F32).unwrap();
    let d = relu_forward(&host, &y, &x).unwrap();
    // the host records our dispatch into its own encoder and submits it itself
    let mut enc = device.create_command_encoder(&Default::default());
    host.encode(&mut enc, &[&d]);
    host.queue().submit(Some(enc.finish()));
    assert_eq!(y.download(&host).unwrap(), vec![0.0, 0.5, 3.0]);
    assert!(!host.adapter().name.is_empty());
}

#[test]
fn large_grids_fold_into_two_dimensions() {
    assert_eq!(grid_for(10, 256, 65535).unwrap(), [1, 1, 1]);
    assert_eq!(grid_for(65535 * 256, 256, 65535).unwrap(), [65535, 1, 1]);
    let g = grid_for(65536 * 256, 256, 65535).unwrap();
    assert!(
        g[0] as usize * g[1] as usize >= 65536 && g[0] <= 65535,
        "{g:?}"
    );
    assert!(grid_for(usize::MAX / 2, 256, 65535).is_err());
}

#[test]
fn relu_runs_on_a_tensor_that_needs_a_folded_grid() {
    let c = ctx();
    // Odd, so one element per thread (a multiple of 4 would run the vec4 kernel).
    let n = 65535 * 256 + 1001;
    let mut rng = Rng::new(9);
    let xs = rng.vec(n, -1.0, 1.0);
    let x = upload(&[n], &xs);
    let y = poisoned(&[n]);
    let d = relu_forward(c, &y, &x).unwrap();
    assert!(d.workgroups()[1] > 1, "{:?}", d.workgroups());
    run(&[&d]);
    let got = download(&y);
    let want: Vec<f64> = xs.iter().map(|&v| (v as f64).max(0.0)).collect();
    assert_close("relu folded grid", &got, &want, 0.0, 0.0);
}
