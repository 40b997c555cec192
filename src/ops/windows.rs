//! What the uniform-window kernels for CPU drivers share (`conv2d_windows`,
//! `conv1x1_windows`, `linear_windows`): the window size, the adapter check, window bindings.
//!
//! lavapipe runs a storage-buffer load as a loop over the lanes (about 4 ns per lane and
//! value on our 2-core VM) but a uniform-buffer load as one vectorized gather (15x cheaper per
//! value). A uniform binding holds 64 KiB, so these kernels pack their operands into 64 KiB
//! windows and bind several per launch.

use crate::gpu::{Binding, GpuContext, Tensor};

/// f32 values per window: 64 KiB, the uniform binding limit of lavapipe (and of WebGPU).
pub(crate) const WINDOW_FLOATS: usize = 16384;
/// Bytes a window binding spans (the WGSL `Window` struct).
pub(crate) const WINDOW_BYTES: u64 = (WINDOW_FLOATS * 4) as u64;
/// Largest packed operand: it is written through one storage binding, 128 MiB on lavapipe
/// and in WebGPU's defaults.
pub(crate) const MAX_PACK_BYTES: u64 = 128 << 20;
/// Lanes per subgroup the kernels are written for.
pub(crate) const LANES: usize = 8;

/// Whether `ctx` runs window kernels that bind `uniform_bindings` uniform buffers at offsets
/// that are multiples of `offset_step` bytes: fixed 8-lane subgroups with subgroup operations
/// enabled, enough 64 KiB uniform bindings, offsets aligned.
pub(crate) fn supported(ctx: &GpuContext, uniform_bindings: u32, offset_step: u64) -> bool {
    let l = ctx.limits();
    ctx.fixed_subgroup_size() == Some(LANES as u32)
        && l.max_uniform_buffers_per_shader_stage >= uniform_bindings
        && l.max_uniform_buffer_binding_size >= WINDOW_BYTES
        && offset_step.is_multiple_of(u64::from(l.min_uniform_buffer_offset_alignment.max(1)))
}

/// Window `index` of a tensor packed in 64 KiB windows.
pub(crate) fn window(t: &Tensor, index: usize) -> Binding<'_> {
    Binding::Uniform {
        tensor: t,
        offset: index as u64 * WINDOW_BYTES,
        size: WINDOW_BYTES,
    }
}
