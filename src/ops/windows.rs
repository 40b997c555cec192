//! What the uniform-window kernels for CPU drivers share (`conv2d_windows`,
//! `conv1x1_windows`, `linear_windows`): the window size, the adapter check, window bindings,
//! and [`WeightPacks`], the cache of packed weights.
//!
//! lavapipe runs a storage-buffer load as a loop over the lanes (about 4 ns per lane and
//! value on our 2-core VM) but a uniform-buffer load as one vectorized gather (15x cheaper per
//! value). A uniform binding holds 64 KiB, so these kernels pack their operands into 64 KiB
//! windows and bind several per launch.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::Result;
use crate::gpu::{Binding, Dispatch, GpuContext, Kernel, Launch, Shader, Tensor, WG};

/// f32 values per window: 64 KiB, the uniform binding limit of lavapipe (and of WebGPU).
pub(crate) const WINDOW_FLOATS: usize = 16384;
/// Bytes a window binding spans (the WGSL `Window` struct).
pub(crate) const WINDOW_BYTES: u64 = (WINDOW_FLOATS * 4) as u64;
/// Largest packed operand: it is written through one storage binding, 128 MiB on lavapipe
/// and in WebGPU's defaults.
pub(crate) const MAX_PACK_BYTES: u64 = 128 << 20;
/// Lanes per subgroup the kernels are written for.
pub(crate) const LANES: usize = 8;

/// Whether `ctx` runs the window kernels of `shaders` that bind `uniform_bindings` uniform
/// buffers at offsets that are multiples of `offset_step` bytes: the features those files need
/// ([`Shader::required_features`]: 64-bit integers where windows are read as u64 pairs), fixed
/// 8-lane subgroups with subgroup operations enabled, enough 64 KiB uniform bindings, offsets
/// aligned.
pub(crate) fn supported(
    ctx: &GpuContext,
    shaders: &[Shader],
    uniform_bindings: u32,
    offset_step: u64,
) -> bool {
    let l = ctx.limits();
    let features = ctx.device().features();
    shaders
        .iter()
        .all(|s| features.contains(s.required_features()))
        && ctx.fixed_subgroup_size() == Some(LANES as u32)
        && l.max_uniform_buffers_per_shader_stage >= uniform_bindings
        && l.max_uniform_buffer_binding_size >= WINDOW_BYTES
        && offset_step.is_multiple_of(u64::from(l.min_uniform_buffer_offset_alignment.max(1)))
}

/// vec4 per window, and windows of each operand per launch of the elementwise `_windows`
/// kernels (ReLU, residual add): 7 per operand, 14 with two operands, plus the parameters.
pub(crate) const WINDOW_VEC4: usize = WINDOW_FLOATS / 4;
pub(crate) const ELEMENTWISE_WINDOWS: usize = 7;

/// Whether a pass over `numel` elements can run the elementwise `_windows` kernels: on
/// adapters that run the window kernels, for tensors of whole vec4 spanning at least one
/// window.
pub(crate) fn elementwise_supported(ctx: &GpuContext, numel: usize) -> bool {
    numel.is_multiple_of(4)
        && numel / 4 >= WINDOW_VEC4
        && supported(
            ctx,
            &[Shader::Relu, Shader::Elementwise],
            1 + 2 * ELEMENTWISE_WINDOWS as u32,
            WINDOW_BYTES,
        )
}

/// One dispatch of an elementwise `_windows` kernel over the whole windows of its operands,
/// then its storage-buffer `tail` kernel over the rest. Each window launch covers up to 7
/// windows from vec4 `first`, with `params(first, windows)`, binds window k of input i at
/// `inputs[i].0 + k` (windows past the last one in use repeat it; the kernels store only the
/// first `windows`) and the output at `out.0`, one thread per vec4 of a window. The tail
/// launch binds `inputs[i].1` and `out.1` as storage, one thread per `tail_floats` values
/// (1 or 4), with `params(first tail thread, 0)`.
pub(crate) fn elementwise_dispatch<P: bytemuck::Pod>(
    ctx: &GpuContext,
    kernel: Kernel,
    tail: Kernel,
    params: impl Fn(usize, usize) -> P,
    inputs: &[(u32, u32, &Tensor)],
    out: (u32, u32, &Tensor),
    tail_floats: usize,
) -> Result<Dispatch> {
    let numel = out.2.numel();
    let full = numel / WINDOW_FLOATS;
    let mut launches: Vec<Launch<P>> = (0..full)
        .step_by(ELEMENTWISE_WINDOWS)
        .map(|c0| {
            let count = (full - c0).min(ELEMENTWISE_WINDOWS);
            let mut bindings = vec![(out.0, Binding::Storage(out.2))];
            for &(first, _, t) in inputs {
                for k in 0..ELEMENTWISE_WINDOWS {
                    bindings.push((first + k as u32, window(t, c0 + k.min(count - 1))));
                }
            }
            Launch {
                kernel,
                params: params(c0 * WINDOW_VEC4, count),
                bindings,
                workgroups: [(WINDOW_VEC4 / WG as usize) as u32, 1, 1],
            }
        })
        .collect();
    let rest = numel - full * WINDOW_FLOATS;
    if rest > 0 {
        let mut bindings = vec![(out.1, Binding::Storage(out.2))];
        bindings.extend(inputs.iter().map(|&(_, b, t)| (b, Binding::Storage(t))));
        launches.push(Launch {
            kernel: tail,
            params: params(full * WINDOW_FLOATS / tail_floats, 0),
            bindings,
            workgroups: ctx.grid_1d(rest.div_ceil(tail_floats))?,
        });
    }
    ctx.dispatch_many(kernel, &launches)
}

/// Windows on `source` itself, for the packing kernels that read it through uniform bindings:
/// window j (binding 4 + j) covers the floats from `starts[j]` on, bound at the aligned offset
/// at or before it (or earlier, so that the window ends inside the tensor), and `shifts[j]`
/// says how many floats in that start lies. `source` must hold at least a window.
pub(crate) fn source_windows<'a>(
    op: &'static str,
    source: &'a Tensor,
    starts: impl IntoIterator<Item = usize>,
    align: u64,
    shifts: &mut [i32],
    bindings: &mut Vec<(u32, Binding<'a>)>,
) -> Result<()> {
    let last = source.byte_size().saturating_sub(WINDOW_BYTES) / align * align;
    for (j, start) in starts.into_iter().enumerate() {
        let start = start as u64 * 4;
        let offset = (start / align * align).min(last);
        shifts[j] = crate::ops::to_i32(op, "window shift", ((start - offset) / 4) as usize)?;
        bindings.push((
            4 + j as u32,
            Binding::Uniform {
                tensor: source,
                offset,
                size: WINDOW_BYTES,
            },
        ));
    }
    Ok(())
}

/// Window `index` of a tensor packed in 64 KiB windows.
pub(crate) fn window(t: &Tensor, index: usize) -> Binding<'_> {
    Binding::Uniform {
        tensor: t,
        offset: index as u64 * WINDOW_BYTES,
        size: WINDOW_BYTES,
    }
}

/// Packed copies of one layer's weights for the window kernels (lavapipe), made on first use
/// and kept, one per pass and window geometry: `Conv2dWeightCache` and `LinearWeightCache` in
/// [`crate::ops::conv2d`] and [`crate::ops::linear`]. A model keeps one per layer, as its
/// weights never change; the weights must not change while a cache built from them is in use.
/// Without a cache, each run of a dispatch packs the weights again.
#[derive(Debug, Default)]
pub struct WeightPacks {
    packs: Mutex<HashMap<String, Vec<Tensor>>>,
}

impl WeightPacks {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Packs held.
    pub fn len(&self) -> usize {
        self.packs.lock().map_or(0, |m| m.len())
    }

    /// Whether no pack is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pack under `key`, made by `pack` (its launches submitted at once) when absent.
    pub(crate) fn get_or_pack(
        &self,
        ctx: &GpuContext,
        key: String,
        pack: impl FnOnce() -> Result<(Vec<Tensor>, Vec<Dispatch>)>,
    ) -> Result<Vec<Tensor>> {
        let held = self
            .packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(t) = held {
            return Ok(t);
        }
        let (t, ds) = pack()?;
        ctx.run(&ds.iter().collect::<Vec<_>>())?;
        self.packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, t.clone());
        Ok(t)
    }

    /// [`WeightPacks::get_or_pack`] for a pack of one tensor made by one launch.
    pub(crate) fn get_or_pack_one(
        &self,
        ctx: &GpuContext,
        key: String,
        pack: impl FnOnce() -> Result<(Tensor, Dispatch)>,
    ) -> Result<Tensor> {
        let packs = self.get_or_pack(ctx, key, || {
            let (t, d) = pack()?;
            Ok((vec![t], vec![d]))
        })?;
        Ok(packs[0].clone())
    }
}
