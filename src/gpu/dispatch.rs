//! A recorded kernel launch: pipeline, bind group (built once for its tensors), uniform
//! parameters and grid. Ops build these once; every later pass just records them.

use std::num::NonZeroU64;
use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::error::{Error, GpuError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::tensor::Tensor;

/// Threads per workgroup for the 1-D elementwise-style kernels (matches `WG` in the prelude).
pub const WG: u32 = 256;

/// One ready-to-record kernel launch, or a fixed sequence of launches that together make one
/// operation (see [`Dispatch::chain`]).
pub struct Dispatch {
    kernel: Kernel,
    steps: Vec<Step>,
    // Held so that the pool cannot hand these buffers to another tensor while this launch
    // may still be recorded.
    _tensors: Vec<Tensor>,
    _params: Vec<wgpu::Buffer>,
}

/// One launch of a dispatch.
struct Step {
    kernel: Kernel,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

/// A tensor bound to a launch: whole, as a storage buffer, or a 64 KiB-or-smaller slice of it
/// as a uniform buffer (a "window").
#[derive(Clone, Copy)]
pub enum Binding<'a> {
    /// The whole tensor as a storage buffer.
    Storage(&'a Tensor),
    /// `size` bytes of the tensor's buffer from byte `offset`, as a uniform buffer.
    Uniform {
        /// The tensor.
        tensor: &'a Tensor,
        /// First byte (a multiple of `min_uniform_buffer_offset_alignment`).
        offset: u64,
        /// Bytes bound (at most `max_uniform_buffer_binding_size`).
        size: u64,
    },
}

/// One launch of [`GpuContext::dispatch_many`]: its kernel, parameters (binding 0), tensors
/// and grid.
pub struct Launch<'a, P> {
    /// The kernel.
    pub kernel: Kernel,
    /// Its uniform parameters.
    pub params: P,
    /// Binding numbers and what each binds.
    pub bindings: Vec<(u32, Binding<'a>)>,
    /// Workgroup counts.
    pub workgroups: [u32; 3],
}

impl Binding<'_> {
    fn tensor(&self) -> &Tensor {
        match self {
            Binding::Storage(t) | Binding::Uniform { tensor: t, .. } => t,
        }
    }
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dispatch({}::{}, {:?}, {} launches)",
            self.kernel.shader.file(),
            self.kernel.entry,
            self.workgroups(),
            self.steps.len()
        )
    }
}

impl Dispatch {
    /// The kernel this launches.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Workgroup counts (of the first launch of the main kernel, for a chain).
    pub fn workgroups(&self) -> [u32; 3] {
        self.steps
            .iter()
            .find(|s| s.kernel == self.kernel)
            .or(self.steps.first())
            .map_or([0; 3], |s| s.workgroups)
    }

    /// Number of launches this dispatch records.
    pub fn launches(&self) -> usize {
        self.steps.len()
    }

    /// Records the launches, in order, into an open compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for s in &self.steps {
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            let [x, y, z] = s.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// Joins `parts` into one dispatch that records them in order, named after `main` (the
    /// kernel that does the operation's work; packing and other preparation may surround it).
    pub fn chain(main: Kernel, parts: Vec<Dispatch>) -> Dispatch {
        let mut d = Dispatch {
            kernel: main,
            steps: Vec::new(),
            _tensors: Vec::new(),
            _params: Vec::new(),
        };
        for p in parts {
            d.steps.extend(p.steps);
            d._tensors.extend(p._tensors);
            d._params.extend(p._params);
        }
        d
    }
}

impl GpuContext {
    /// Builds a launch of `kernel` with `params` at binding 0 (a uniform) and each tensor at its
    /// binding number. Checks binding sizes and grid against the device limits.
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: Kernel,
        params: &P,
        bindings: &[(u32, &Tensor)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let bound: Vec<(u32, Binding)> = bindings
            .iter()
            .map(|&(b, t)| (b, Binding::Storage(t)))
            .collect();
        self.dispatch_bound(kernel, params, &bound, workgroups)
    }

    /// [`GpuContext::dispatch`] with each tensor bound whole as storage or as a uniform window.
    pub fn dispatch_bound<P: bytemuck::Pod>(
        &self,
        kernel: Kernel,
        params: &P,
        bindings: &[(u32, Binding)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        self.dispatch_many(
            kernel,
            &[Launch {
                kernel,
                params: *params,
                bindings: bindings.to_vec(),
                workgroups,
            }],
        )
    }

    /// Builds `launches` as one dispatch named after `main` (see [`Dispatch::chain`]), with
    /// all their parameters in one uniform buffer, each launch binding its slice at binding 0.
    /// An operation of thousands of launches (the window kernels) thus allocates one buffer,
    /// not one per launch: each allocation walks the driver allocator's free list, which made
    /// building a VGG16 backward plan cost 0.3 s on lavapipe.
    pub fn dispatch_many<P: bytemuck::Pod>(
        &self,
        main: Kernel,
        launches: &[Launch<'_, P>],
    ) -> Result<Dispatch> {
        for l in launches {
            self.check_launch(l.kernel, &l.bindings, l.workgroups)?;
        }
        let align = u64::from(self.limits().min_uniform_buffer_offset_alignment.max(1));
        let size = std::mem::size_of::<P>() as u64;
        let stride = size.div_ceil(align) * align;
        let mut contents = vec![0u8; (stride * launches.len().max(1) as u64) as usize];
        for (i, l) in launches.iter().enumerate() {
            let at = i * stride as usize;
            contents[at..at + size as usize].copy_from_slice(bytemuck::bytes_of(&l.params));
        }
        let mut pipelines = Vec::with_capacity(launches.len());
        for l in launches {
            pipelines.push(self.kernels.pipeline(self, l.kernel)?);
        }
        let context = format!("binding {}::{}", main.shader.file(), main.entry);
        let (params_buffer, steps) = self.scoped(&context, || {
            let params_buffer =
                self.device()
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("cnnvis params"),
                        contents: &contents,
                        usage: wgpu::BufferUsages::UNIFORM,
                    });
            let steps: Vec<Step> = launches
                .iter()
                .zip(pipelines)
                .enumerate()
                .map(|(i, (l, pipeline))| {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params_buffer,
                            offset: i as u64 * stride,
                            size: NonZeroU64::new(size),
                        }),
                    }];
                    for (binding, b) in &l.bindings {
                        let (offset, size) = match *b {
                            Binding::Storage(t) => (0, t.byte_size()),
                            Binding::Uniform { offset, size, .. } => (offset, size),
                        };
                        entries.push(wgpu::BindGroupEntry {
                            binding: *binding,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: b.tensor().buffer(),
                                offset,
                                size: NonZeroU64::new(size),
                            }),
                        });
                    }
                    let bind_group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(l.kernel.entry),
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    });
                    Step {
                        kernel: l.kernel,
                        pipeline,
                        bind_group,
                        workgroups: l.workgroups,
                    }
                })
                .collect();
            (params_buffer, steps)
        })?;
        let mut tensors: Vec<Tensor> = Vec::new();
        for l in launches {
            for (_, b) in &l.bindings {
                let t = b.tensor();
                // Consecutive launches mostly bind the same tensors; keep each once.
                if !tensors.iter().any(|k| k.same_buffer(t)) {
                    tensors.push(t.clone());
                }
            }
        }
        Ok(Dispatch {
            kernel: main,
            steps,
            _tensors: tensors,
            _params: vec![params_buffer],
        })
    }

    /// Checks one launch's bindings and grid against the device limits.
    fn check_launch(
        &self,
        kernel: Kernel,
        bindings: &[(u32, Binding)],
        workgroups: [u32; 3],
    ) -> Result<()> {
        let limits = self.limits();
        let max_wg = limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max_wg) {
            return Err(GpuError::TooLarge {
                what: format!("grid {workgroups:?} of {}", kernel.entry),
                bytes: workgroups.iter().copied().max().unwrap_or(0) as u64,
                limit: max_wg as u64,
                limit_name: "max_compute_workgroups_per_dimension",
            }
            .into());
        }
        let max_bind = limits.max_storage_buffer_binding_size;
        for (_, b) in bindings {
            let t = b.tensor();
            if let Binding::Uniform { offset, size, .. } = *b {
                let max = limits.max_uniform_buffer_binding_size;
                let align = u64::from(limits.min_uniform_buffer_offset_alignment);
                if size == 0 || size > max || offset % align != 0 || offset + size > t.byte_size() {
                    return Err(Error::shape(
                        "dispatch",
                        format!(
                            "uniform window of {size} bytes at {offset} in a {}-byte tensor \
                             bound to {} (limit {max} bytes, offsets aligned to {align})",
                            t.byte_size(),
                            kernel.entry
                        ),
                    ));
                }
                continue;
            }
            if t.byte_size() > max_bind {
                return Err(GpuError::TooLarge {
                    what: format!("a {:?} tensor bound to {}", t.shape(), kernel.entry),
                    bytes: t.byte_size(),
                    limit: max_bind,
                    limit_name: "max_storage_buffer_binding_size",
                }
                .into());
            }
            if t.numel() == 0 {
                return Err(Error::shape(
                    "dispatch",
                    format!("empty tensor {:?} bound to {}", t.shape(), kernel.entry),
                ));
            }
        }
        Ok(())
    }

    /// A grid of `WG`-thread workgroups covering `threads` threads, folded into two dimensions
    /// when one would exceed the per-dimension limit. Kernels recover the flat index with
    /// `flat_index` from the prelude.
    pub fn grid_1d(&self, threads: usize) -> Result<[u32; 3]> {
        grid_for(
            threads,
            WG,
            self.limits().max_compute_workgroups_per_dimension,
        )
    }
}

/// Splits `threads` into a 2-D grid of `wg`-thread workgroups with at most `max` per dimension.
pub fn grid_for(threads: usize, wg: u32, max: u32) -> Result<[u32; 3]> {
    let groups = threads.div_ceil(wg as usize).max(1);
    let max = max as usize;
    if groups <= max {
        return Ok([groups as u32, 1, 1]);
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(GpuError::TooLarge {
            what: format!("a grid of {threads} threads"),
            bytes: groups as u64,
            limit: (max * max) as u64,
            limit_name: "max_compute_workgroups_per_dimension squared",
        }
        .into());
    }
    let x = groups.div_ceil(y);
    Ok([x as u32, y as u32, 1])
}
