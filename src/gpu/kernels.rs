//! The kernel registry: WGSL sources embedded at build time, shader modules and compute
//! pipelines created once and cached by key, and a naga validation pass that needs no adapter.
//! Every pipeline is built through the context's on-disk pipeline cache when it has one (see
//! [`crate::gpu::pipeline_cache`]), so a later run skips the driver's shader compilation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{GpuError, Result};
use crate::gpu::context::GpuContext;

/// Structs and helpers shared by every kernel file; prepended to each source.
const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// One WGSL file under `shaders/`: a kernel family, forward entry points beside backward ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shader {
    /// `conv2d.wgsl`: convolution forward, backward to input, weight and bias.
    Conv2d,
    /// `conv2d_windows.wgsl`: 3x3 convolution through uniform windows, for CPU drivers with
    /// 8-lane subgroups (needs the `SUBGROUP` and `SHADER_INT64` features).
    Conv2dWindows,
    /// `conv1x1_windows.wgsl`: 1x1 convolution through uniform windows (as above).
    Conv1x1Windows,
    /// `conv2d_gemm.wgsl`: convolution as an implicit GEMM with shared-memory tiles (GPUs).
    Conv2dGemm,
    /// `winograd.wgsl`: the transforms of Winograd F(2x2, 3x3) convolution (GPUs).
    Winograd,
    /// `im2col.wgsl`: a convolution's column matrix and its adjoint (k x k convs as 1x1
    /// products through the uniform windows).
    Im2col,
    /// `relu.wgsl`: ReLU forward and its standard, guided and deconvnet backward rules.
    Relu,
    /// `pool.wgsl`: max, average, adaptive average and global average pooling.
    Pool,
    /// `linear.wgsl`: dense layers.
    Linear,
    /// `linear_windows.wgsl`: dense layers through uniform windows, for CPU drivers with
    /// 8-lane subgroups (needs the `SUBGROUP` and `SHADER_INT64` features).
    LinearWindows,
    /// `elementwise.wgsl`: residual add, scale/add/clamp, batch-norm affine.
    Elementwise,
    /// `softmax.wgsl`: softmax and log-softmax over the last axis.
    Softmax,
    /// `reduce.wgsl`: per-channel spatial sum, mean and max.
    Reduce,
    /// `random.wgsl`: counter-based uniform and Gaussian noise.
    Random,
    /// `fma_peak.wgsl`: a throughput probe used by benchmarks.
    FmaPeak,
    /// `saliency.wgsl`: gradient modifiers, channel reductions, noise and path statistics.
    Saliency,
    /// `cam.wgsl`: class activation map weights, weighted sums, upsampling, normalization.
    Cam,
    /// `render.wgsl`: colormaps and overlays.
    Render,
    /// `optim.wgsl`: activation maximization's regularizers, transforms and update rules.
    Optim,
    /// `spectral.wgsl`: Lucid's Fourier image parameterization with decorrelated colour.
    Spectral,
}

impl Shader {
    /// Every shader file.
    pub const ALL: [Shader; 20] = [
        Shader::Conv2d,
        Shader::Conv2dWindows,
        Shader::Conv1x1Windows,
        Shader::Conv2dGemm,
        Shader::Winograd,
        Shader::Im2col,
        Shader::Relu,
        Shader::Pool,
        Shader::Linear,
        Shader::LinearWindows,
        Shader::Elementwise,
        Shader::Softmax,
        Shader::Reduce,
        Shader::Random,
        Shader::FmaPeak,
        Shader::Saliency,
        Shader::Cam,
        Shader::Render,
        Shader::Optim,
        Shader::Spectral,
    ];

    /// File name under `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            Shader::Conv2d => "conv2d.wgsl",
            Shader::Conv2dWindows => "conv2d_windows.wgsl",
            Shader::Conv1x1Windows => "conv1x1_windows.wgsl",
            Shader::Conv2dGemm => "conv2d_gemm.wgsl",
            Shader::Im2col => "im2col.wgsl",
            Shader::Relu => "relu.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Linear => "linear.wgsl",
            Shader::LinearWindows => "linear_windows.wgsl",
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Softmax => "softmax.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Random => "random.wgsl",
            Shader::FmaPeak => "fma_peak.wgsl",
            Shader::Saliency => "saliency.wgsl",
            Shader::Cam => "cam.wgsl",
            Shader::Render => "render.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Spectral => "spectral.wgsl",
            Shader::Winograd => "winograd.wgsl",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Shader::Conv2d => include_str!("../../shaders/conv2d.wgsl"),
            Shader::Conv2dWindows => include_str!("../../shaders/conv2d_windows.wgsl"),
            Shader::Conv1x1Windows => include_str!("../../shaders/conv1x1_windows.wgsl"),
            Shader::Conv2dGemm => include_str!("../../shaders/conv2d_gemm.wgsl"),
            Shader::Im2col => include_str!("../../shaders/im2col.wgsl"),
            Shader::Relu => include_str!("../../shaders/relu.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Linear => include_str!("../../shaders/linear.wgsl"),
            Shader::LinearWindows => include_str!("../../shaders/linear_windows.wgsl"),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Random => include_str!("../../shaders/random.wgsl"),
            Shader::FmaPeak => include_str!("../../shaders/fma_peak.wgsl"),
            Shader::Saliency => include_str!("../../shaders/saliency.wgsl"),
            Shader::Cam => include_str!("../../shaders/cam.wgsl"),
            Shader::Render => include_str!("../../shaders/render.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::Spectral => include_str!("../../shaders/spectral.wgsl"),
            Shader::Winograd => include_str!("../../shaders/winograd.wgsl"),
        }
    }

    /// Device features the file's module needs.
    pub fn required_features(self) -> wgpu::Features {
        match self {
            Shader::Conv2dWindows | Shader::Conv1x1Windows | Shader::LinearWindows => {
                wgpu::Features::SUBGROUP | wgpu::Features::SHADER_INT64
            }
            _ => wgpu::Features::empty(),
        }
    }

    /// The full source handed to the compiler: prelude, then the file.
    pub fn source(self) -> String {
        format!("{PRELUDE}\n{}", self.body())
    }
}

/// A compute entry point in a shader file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// The file.
    pub shader: Shader,
    /// The `@compute` function's name.
    pub entry: &'static str,
}

impl Kernel {
    /// Names an entry point of a shader file.
    pub const fn new(shader: Shader, entry: &'static str) -> Self {
        Kernel { shader, entry }
    }
}

/// Every kernel the Rust side dispatches; the validation test checks that each exists and
/// that no file holds an entry point missing from this list.
pub fn all_kernels() -> Vec<Kernel> {
    crate::ops::KERNEL_LISTS
        .iter()
        .chain(crate::vis::KERNEL_LISTS)
        .chain(crate::render::KERNEL_LISTS)
        .flat_map(|list| list.iter().copied())
        .collect()
}

/// One cache slot: its own lock, so that threads asking for the same kernel wait for one
/// compilation (20-40 ms on lavapipe, seconds for the big conv kernels) instead of repeating
/// it, while different kernels still compile in parallel.
type Slot<T> = Arc<Mutex<Option<Arc<T>>>>;

/// Shader modules and pipelines, each created once per context.
#[derive(Default)]
pub(crate) struct KernelRegistry {
    modules: Mutex<HashMap<Shader, Slot<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<Kernel, Slot<wgpu::ComputePipeline>>>,
}

fn slot<K: std::hash::Hash + Eq, T>(map: &Mutex<HashMap<K, Slot<T>>>, key: K) -> Slot<T> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// The slot's value, creating it with `make` when empty; a failed `make` leaves it empty.
fn get_or_create<T>(slot: &Slot<T>, make: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = guard.as_ref() {
        return Ok(v.clone());
    }
    let v = Arc::new(make()?);
    *guard = Some(v.clone());
    Ok(v)
}

impl KernelRegistry {
    /// The cached pipeline for `kernel`, compiling it on first use.
    pub(crate) fn pipeline(
        &self,
        ctx: &GpuContext,
        kernel: Kernel,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        get_or_create(&slot(&self.pipelines, kernel), || {
            let module = self.module(ctx, kernel.shader)?;
            let context = format!(
                "building pipeline {}::{}",
                kernel.shader.file(),
                kernel.entry
            );
            let start = std::time::Instant::now();
            let pipeline = ctx.scoped(&context, || {
                ctx.device()
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(kernel.entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(kernel.entry),
                        compilation_options: Default::default(),
                        cache: ctx.pipeline_cache_for_build(),
                    })
            });
            ctx.note_compile(start.elapsed().as_secs_f64(), true);
            pipeline
        })
    }

    fn module(&self, ctx: &GpuContext, shader: Shader) -> Result<Arc<wgpu::ShaderModule>> {
        let missing = shader.required_features() - ctx.device().features();
        if !missing.is_empty() {
            return Err(GpuError::Shader {
                file: shader.file(),
                message: format!("the device lacks the features {missing:?} this file needs"),
            }
            .into());
        }
        get_or_create(&slot(&self.modules, shader), || {
            let source = shader.source();
            let start = std::time::Instant::now();
            let module = ctx.scoped(&format!("compiling {}", shader.file()), || {
                ctx.device()
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.file()),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
            });
            ctx.note_compile(start.elapsed().as_secs_f64(), false);
            module
        })
    }
}

/// Parses and validates one shader file with naga, with no adapter, and checks that its
/// compute entry points are exactly the kernels the Rust side registers for it.
pub fn validate_shader(shader: Shader) -> Result<()> {
    let file = shader.file();
    let source = shader.source();
    let path = format!("shaders/prelude.wgsl + shaders/{file}");
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| GpuError::Shader {
        file,
        message: e.emit_to_string_with_path(&source, &path),
    })?;
    let features = shader.required_features();
    let mut capabilities = naga::valid::Capabilities::empty();
    if features.contains(wgpu::Features::SUBGROUP) {
        capabilities |= naga::valid::Capabilities::SUBGROUP;
    }
    if features.contains(wgpu::Features::SHADER_INT64) {
        capabilities |= naga::valid::Capabilities::SHADER_INT64;
    }
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| GpuError::Shader {
            file,
            message: e.emit_to_string_with_path(&source, &path),
        })?;
    let registered: Vec<&str> = all_kernels()
        .into_iter()
        .filter(|k| k.shader == shader)
        .map(|k| k.entry)
        .collect();
    let found: Vec<&str> = module
        .entry_points
        .iter()
        .filter(|ep| ep.stage == naga::ShaderStage::Compute)
        .map(|ep| ep.name.as_str())
        .collect();
    for entry in &registered {
        if !found.contains(entry) {
            return Err(GpuError::Shader {
                file,
                message: format!(
                    "registered kernel `{entry}` has no @compute entry point; found {found:?}"
                ),
            }
            .into());
        }
    }
    for entry in &found {
        if !registered.contains(entry) {
            return Err(GpuError::Shader {
                file,
                message: format!("entry point `{entry}` is not registered in any ops KERNELS list"),
            }
            .into());
        }
    }
    Ok(())
}
