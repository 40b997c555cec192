//! The GPU context: adapter choice, device, queue, error capture, submission and readback.
//!
//! [`GpuContext::new`] also keeps compiled pipelines across runs when the adapter has wgpu's
//! `PIPELINE_CACHE` feature (Vulkan): the cache lives in `CNNVIS_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/cnnvis`, else `$HOME/.cache/cnnvis`, is written back when the context is
//! dropped, and `CNNVIS_PIPELINE_CACHE=0` turns it off. See [`crate::gpu::pipeline_cache`].
//! Autotuning decisions are kept beside it ([`crate::gpu::autotune_cache`]).
//! `CNNVIS_TIMINGS=1` prints where start-up went ([`GpuContext::startup_times`]) when a
//! context is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::error::{GpuError, Result};
use crate::gpu::autotune_cache;
use crate::gpu::dispatch::Dispatch;
use crate::gpu::kernels::KernelRegistry;
use crate::gpu::pipeline_cache::{self, DiskPipelineCache};
use crate::gpu::tensor::BufferPool;

/// Facts about the adapter a context runs on.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Backend: Vulkan, Metal, Dx12, Gl.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, CPU...
    pub device_type: wgpu::DeviceType,
    /// Driver name and version, as the backend reports them.
    pub driver: String,
    /// Smallest and largest subgroup size the adapter may use (equal on lavapipe: 8).
    pub subgroup_sizes: [u32; 2],
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?}, {})",
            self.name, self.backend, self.device_type, self.driver
        )
    }
}

impl From<wgpu::AdapterInfo> for AdapterSummary {
    fn from(info: wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name,
            backend: info.backend,
            device_type: info.device_type,
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            subgroup_sizes: [info.subgroup_min_size, info.subgroup_max_size],
        }
    }
}

/// Where the last readback's time went, in seconds (for profiling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadbackTimes {
    /// Bytes read.
    pub bytes: u64,
    /// Recording and submitting the copy to the staging buffer, and waiting for all work
    /// before it to finish.
    pub copy_and_wait: f64,
    /// Mapping the staging buffer (the callback's round trip).
    pub map: f64,
    /// Copying out of the mapped range into the returned vector.
    pub copy_out: f64,
}

/// Owns (or borrows a host app's) wgpu device and queue, the kernel registry, the buffer pool
/// and the readback staging buffer.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    pub(crate) kernels: KernelRegistry,
    pub(crate) pool: Arc<BufferPool>,
    staging: Mutex<Option<wgpu::Buffer>>,
    /// Phases of the last readback, for profiling (see [`GpuContext::last_readback`]).
    last_readback: Mutex<Option<ReadbackTimes>>,
    /// Bound where a kernel's optional input (a bias) is absent; made once, on first use.
    placeholder: Mutex<Option<crate::gpu::tensor::Tensor>>,
    /// Scratch tensors shared by every launch that names them (see [`GpuContext::workspace`]).
    workspaces: Mutex<std::collections::HashMap<&'static str, crate::gpu::tensor::Tensor>>,
    /// Errors that escaped every error scope (only for devices we created).
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// The on-disk pipeline cache, when the device has `PIPELINE_CACHE` and it is enabled.
    pipeline_cache: Option<DiskPipelineCache>,
    /// The file of autotuning decisions kept across runs, when enabled.
    autotune_file: Option<PathBuf>,
    /// When the context was asked for, when its device was ready, and when work that was not
    /// autotuning was first submitted (`CNNVIS_TIMINGS=1` prints them when it is dropped).
    requested: Instant,
    ready: Instant,
    first_run: OnceLock<Instant>,
    /// Pipelines compiled outside autotuning and the time they took; conv shapes autotuned
    /// and the time that took (its own compilations included).
    startup: Mutex<StartupTimes>,
}

/// Where a context's start-up went: what the pipeline and autotuning caches save a later run
/// (see [`GpuContext::startup_times`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StartupTimes {
    /// Seconds from the context request until its device was ready.
    pub device_ready_s: f64,
    /// Seconds from the context request until its first submission that was not autotuning's.
    pub first_run_s: Option<f64>,
    /// Pipelines compiled outside autotuning.
    pub pipelines: usize,
    /// Seconds their compilation took (shader modules included).
    pub compile_s: f64,
    /// Conv passes autotuned (timed) rather than looked up.
    pub tunings: usize,
    /// Seconds autotuning took, the candidates' compilation included.
    pub tune_s: f64,
}

thread_local! {
    /// Set while autotuning submits its timing runs, which are not the caller's work.
    static UNTRACKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (autotuning) with its submissions left out of [`GpuContext::first_run_at`] and its
/// compilations out of [`StartupTimes::compile_s`]; adds its time to [`StartupTimes::tune_s`].
pub(crate) fn untracked_runs<T>(ctx: &GpuContext, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = crate::ops::with_thread_value(&UNTRACKED, true, f);
    let mut t = ctx.startup.lock().unwrap_or_else(|p| p.into_inner());
    t.tunings += 1;
    t.tune_s += start.elapsed().as_secs_f64();
    out
}

impl GpuContext {
    /// Opens the best adapter: `WGPU_BACKEND` picks backends, `WGPU_ADAPTER_NAME` picks by name
    /// (substring, case-insensitive), otherwise high performance is preferred.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Async form of [`GpuContext::new`].
    pub async fn new_async() -> Result<Self> {
        let requested = Instant::now();
        let instance = wgpu::Instance::new(instance_descriptor());
        let adapter = select_adapter(&instance).await?;
        let full_info = adapter.get_info();
        let info: AdapterSummary = full_info.clone().into();
        // Persist compiled pipelines across runs where the driver can (Vulkan).
        let mut required_features = if pipeline_cache::enabled_by_env()
            && adapter.features().contains(wgpu::Features::PIPELINE_CACHE)
        {
            wgpu::Features::PIPELINE_CACHE
        } else {
            wgpu::Features::empty()
        };
        // Subgroup operations, where the adapter has them: the conv kernels for CPU drivers
        // share loaded values across lanes with subgroupBroadcast, and read their uniform
        // windows as 64-bit integers.
        required_features |=
            adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_INT64);
        // The adapter's own limits, not WebGPU's defaults: large tensors need the real
        // max_storage_buffer_binding_size and max_buffer_size.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("cnnvis"),
                required_features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::RequestDevice {
                adapter: info.name.clone(),
                detail: e.to_string(),
            })?;
        let mut ctx = Self::build(device, queue, info);
        ctx.requested = requested;
        if let Some(dir) = pipeline_cache::cache_dir() {
            ctx.pipeline_cache = DiskPipelineCache::open(&ctx.device, &full_info, &dir);
            ctx.enable_autotune_cache(&dir);
        }
        // Our own device: never let wgpu's default handler panic on an error that escaped a
        // scope; remember it and report it from the next checked call instead.
        let sink = ctx.uncaptured.clone();
        ctx.device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut v) = sink.lock() {
                    v.push(e.to_string());
                }
            }));
        Ok(ctx)
    }

    /// The subgroup size every subgroup of this device has, when the device has subgroup
    /// operations enabled and the adapter's subgroup size is fixed (8 on lavapipe).
    pub fn fixed_subgroup_size(&self) -> Option<u32> {
        let [lo, hi] = self.adapter.subgroup_sizes;
        (self.device.features().contains(wgpu::Features::SUBGROUP) && lo == hi).then_some(lo)
    }

    /// Wraps a device and queue that a host application already owns. cnnvis captures its own
    /// errors with error scopes and leaves the host's uncaptured-error handler alone.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info().into();
        Self::build(device, queue, info)
    }

    fn build(device: wgpu::Device, queue: wgpu::Queue, adapter: AdapterSummary) -> Self {
        let limits = device.limits();
        GpuContext {
            device,
            queue,
            adapter,
            limits,
            kernels: KernelRegistry::default(),
            pool: Arc::new(BufferPool::default()),
            staging: Mutex::new(None),
            last_readback: Mutex::new(None),
            placeholder: Mutex::new(None),
            workspaces: Mutex::new(std::collections::HashMap::new()),
            uncaptured: Arc::new(Mutex::new(Vec::new())),
            pipeline_cache: None,
            autotune_file: None,
            requested: Instant::now(),
            ready: Instant::now(),
            first_run: OnceLock::new(),
            startup: Mutex::new(StartupTimes::default()),
        }
    }

    /// Notes a compilation (a pipeline, or a shader module) that took `seconds`.
    pub(crate) fn note_compile(&self, seconds: f64, pipeline: bool) {
        if UNTRACKED.with(|u| u.get()) {
            return;
        }
        let mut t = self.startup.lock().unwrap_or_else(|p| p.into_inner());
        t.pipelines += pipeline as usize;
        t.compile_s += seconds;
    }

    /// Where start-up time went so far: device, pipeline compilation, autotuning, and when the
    /// first dispatch went out.
    pub fn startup_times(&self) -> StartupTimes {
        let since = |t: Instant| (t - self.requested).as_secs_f64();
        StartupTimes {
            device_ready_s: since(self.ready),
            first_run_s: self.first_run_at().map(since),
            ..*self.startup.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    /// Keeps autotuning decisions in `dir` across runs (see [`crate::gpu::autotune_cache`]), as
    /// [`GpuContext::new`] does, unless `CNNVIS_AUTOTUNE_CACHE` turns it off. Returns whether
    /// it is on.
    pub fn enable_autotune_cache(&mut self, dir: &Path) -> bool {
        self.autotune_file = autotune_cache::enabled_by_env()
            .then(|| autotune_cache::file_for(dir, &self.adapter.to_string()));
        self.autotune_file.is_some()
    }

    /// The file autotuning decisions are kept in across runs, when that is on.
    pub fn autotune_cache_path(&self) -> Option<&Path> {
        self.autotune_file.as_deref()
    }

    /// When this context was asked for ([`GpuContext::new`]) or made ([`GpuContext::from_device`]).
    pub fn requested_at(&self) -> Instant {
        self.requested
    }

    /// When the first submission that was not autotuning's went out: what a run spends before
    /// it is start-up (device, model upload, pipeline compilation, autotuning).
    pub fn first_run_at(&self) -> Option<Instant> {
        self.first_run.get().copied()
    }

    /// For host devices: keeps compiled pipelines in `dir` across runs, as
    /// [`GpuContext::new`] does, when the device was created with `PIPELINE_CACHE` and
    /// `CNNVIS_PIPELINE_CACHE` does not turn it off. Call it before the first kernel runs.
    /// Returns whether the cache is on.
    pub fn enable_pipeline_cache(&mut self, dir: &Path) -> bool {
        if pipeline_cache::enabled_by_env() {
            let info = self.device.adapter_info();
            self.pipeline_cache = DiskPipelineCache::open(&self.device, &info, dir);
        }
        self.pipeline_cache.is_some()
    }

    /// Whether compiled pipelines are kept on disk across runs.
    pub fn pipeline_cache_enabled(&self) -> bool {
        self.pipeline_cache.is_some()
    }

    /// The file the pipeline cache loads from and saves to, when it is on.
    pub fn pipeline_cache_path(&self) -> Option<&Path> {
        self.pipeline_cache.as_ref().map(|c| c.path())
    }

    /// Writes the pipeline cache now, if pipelines were built and the data changed since the
    /// last save (dropping the context does the same); returns whether the file was written.
    /// Failures are ignored: the cache only saves time.
    pub fn save_pipeline_cache(&self) -> bool {
        self.pipeline_cache
            .as_ref()
            .is_some_and(|c| c.save().unwrap_or(false))
    }

    /// The wgpu cache every compute pipeline is built with, noting that one was built.
    pub(crate) fn pipeline_cache_for_build(&self) -> Option<&wgpu::PipelineCache> {
        self.pipeline_cache.as_ref().map(|c| {
            c.mark_dirty();
            c.cache()
        })
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Adapter name, backend and type.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The pool that dropped tensors return their buffers to.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// A small zero-filled tensor to bind where a kernel's optional input is absent; shared by
    /// every such launch (kernels only read it).
    pub fn placeholder(&self) -> Result<crate::gpu::tensor::Tensor> {
        let mut slot = self.placeholder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let t = crate::gpu::tensor::Tensor::zeros(self, &[4])?;
        *slot = Some(t.clone());
        Ok(t)
    }

    /// A scratch tensor of `shape` named `name`, shared by every launch that asks for that name:
    /// the first `numel` elements of one buffer, replaced by a larger one when a request
    /// outgrows it (launches built earlier keep the old one alive). Sharing is safe because the
    /// queue runs launches in order and each user writes its scratch before reading it within
    /// one chain of launches; it keeps, for instance, a model's Winograd transforms from
    /// holding one buffer per layer.
    pub(crate) fn workspace(
        &self,
        name: &'static str,
        shape: &[usize],
    ) -> Result<crate::gpu::tensor::Tensor> {
        use crate::gpu::tensor::{DType, Tensor};
        let numel: usize = shape.iter().product();
        let mut slots = self.workspaces.lock().unwrap_or_else(|p| p.into_inner());
        let held = slots.get(name).filter(|t| t.numel() >= numel).cloned();
        let whole = match held {
            Some(t) => t,
            None => {
                let t = Tensor::empty(self, &[numel.max(1)], DType::F32)?;
                slots.insert(name, t.clone());
                t
            }
        };
        whole.prefix(shape)
    }

    /// The device limits in force.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Runs `f` inside validation, out-of-memory and internal error scopes and turns whatever
    /// they caught into a [`GpuError`] naming `context`.
    pub fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        let i = pollster::block_on(internal.pop());
        if let Some(e) = v.or(o).or(i) {
            return Err(convert_error(context, e).into());
        }
        self.check_uncaptured(context)?;
        Ok(value)
    }

    fn check_uncaptured(&self, context: &str) -> Result<()> {
        let mut errors = match self.uncaptured.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.join("; ");
        errors.clear();
        Err(GpuError::Validation {
            context: context.to_string(),
            message,
        }
        .into())
    }

    /// Records `dispatches` into `encoder` as one compute pass, for hosts that build their own
    /// command buffers.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("cnnvis"),
            timestamp_writes: None,
        });
        for d in dispatches {
            d.record(&mut pass);
        }
    }

    /// Records `dispatches` into one compute pass and submits them in one submission. Does not
    /// wait: a later download or [`GpuContext::wait`] synchronizes.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        self.scoped("submitting compute work", || {
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            self.encode(&mut encoder, dispatches);
            self.queue.submit(Some(encoder.finish()));
            if !UNTRACKED.with(|u| u.get()) {
                self.first_run.get_or_init(Instant::now);
            }
        })
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Poll(e.to_string()))?;
        Ok(())
    }

    /// Copies `bytes` bytes of `buffer` (from offset 0) to the CPU through the persistent
    /// staging buffer, which grows to the largest readback seen, as values of type `T`.
    /// One copy out of the mapped range: reads from mapped memory can be slow (uncached on
    /// some drivers), and a second pass over a batch's gradients cost milliseconds.
    pub(crate) fn read_buffer<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<T>> {
        let mut staging_slot = match self.staging.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let size = bytes.max(4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        if staging_slot.as_ref().is_none_or(|s| s.size() < size) {
            *staging_slot = Some(self.scoped("allocating the readback buffer", || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("cnnvis staging"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })?);
        }
        let Some(staging) = staging_slot.as_ref() else {
            unreachable!("staging buffer was just created")
        };
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let start = std::time::Instant::now();
        self.scoped("copying a buffer for readback", || {
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            encoder.copy_buffer_to_buffer(buffer, 0, staging, 0, size);
            self.queue.submit(Some(encoder.finish()));
        })?;
        // Two waits rather than one, so that a profile can tell the copy from the mapping.
        self.wait()?;
        let copied = std::time::Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let slice = staging.slice(..size);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Map(e.to_string()).into()),
            Err(e) => return Err(GpuError::Map(e.to_string()).into()),
        }
        let mapped = std::time::Instant::now();
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| GpuError::Map(e.to_string()))?;
            let raw = &view[..bytes as usize];
            // Mapped ranges are aligned (wgpu::MAP_ALIGNMENT); the fallback copies bytewise.
            match bytemuck::try_cast_slice::<u8, T>(raw) {
                Ok(values) => values.to_vec(),
                Err(_) => bytemuck::pod_collect_to_vec(raw),
            }
        };
        staging.unmap();
        let times = ReadbackTimes {
            bytes,
            copy_and_wait: (copied - start).as_secs_f64(),
            map: (mapped - copied).as_secs_f64(),
            copy_out: mapped.elapsed().as_secs_f64(),
        };
        *self.last_readback.lock().unwrap_or_else(|p| p.into_inner()) = Some(times);
        Ok(out)
    }

    /// Where the last readback (any download) spent its time; `None` before the first.
    pub fn last_readback(&self) -> Option<ReadbackTimes> {
        *self.last_readback.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        self.save_pipeline_cache();
        if pipeline_cache::flag_on("CNNVIS_TIMINGS") && std::env::var_os("CNNVIS_TIMINGS").is_some()
        {
            let t = self.startup_times();
            let ms = |s: f64| format!("{:.1} ms", s * 1e3);
            eprintln!(
                "cnnvis timings (from the context request): device ready after {}, first \
                 dispatch after {}, dropped after {}; {} pipelines compiled in {}, {} conv \
                 passes autotuned in {}",
                ms(t.device_ready_s),
                t.first_run_s.map_or("none".into(), ms),
                ms((Instant::now() - self.requested).as_secs_f64()),
                t.pipelines,
                ms(t.compile_s),
                t.tunings,
                ms(t.tune_s),
            );
        }
    }
}

/// The instance [`GpuContext::new`] opens: Vulkan, Metal or DX12 unless `WGPU_BACKEND` names
/// others. Without a Vulkan driver wgpu would fall back to OpenGL (Mesa's llvmpipe through
/// EGL), whose context lock times out when several threads use one device (in the test suite:
/// a panic, then an abort); a missing driver must read as [`GpuError::NoAdapter`], which names
/// the fix.
pub fn instance_descriptor() -> wgpu::InstanceDescriptor {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if wgpu::Backends::from_env().is_none() {
        desc.backends = wgpu::Backends::PRIMARY;
    }
    desc
}

async fn select_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let wanted_lc = wanted.to_lowercase();
        // The instance holds only the backends instance_descriptor chose.
        let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
        let mut names = Vec::new();
        for adapter in adapters {
            let name = adapter.get_info().name;
            if name.to_lowercase().contains(&wanted_lc) {
                return Ok(adapter);
            }
            names.push(name);
        }
        if names.is_empty() {
            return Err(GpuError::NoAdapter {
                detail: format!("none at all, while WGPU_ADAPTER_NAME={wanted:?} was set"),
            }
            .into());
        }
        return Err(GpuError::AdapterNotFound {
            wanted,
            available: names.join(", "),
        }
        .into());
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            ..Default::default()
        })
        .await
        .map_err(|e| {
            GpuError::NoAdapter {
                detail: e.to_string(),
            }
            .into()
        })
}

fn convert_error(context: &str, e: wgpu::Error) -> GpuError {
    let context = context.to_string();
    match e {
        wgpu::Error::OutOfMemory { source } => GpuError::OutOfMemory {
            context,
            message: source.to_string(),
        },
        wgpu::Error::Validation { description, .. } => GpuError::Validation {
            context,
            message: description,
        },
        wgpu::Error::Internal { description, .. } => GpuError::Internal {
            context,
            message: description,
        },
    }
}
