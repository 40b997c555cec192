//! GPU runtime: context, tensors and their pool, the kernel registry, dispatches.

pub mod autotune_cache;
pub mod context;
pub mod dispatch;
pub mod kernels;
pub mod pipeline_cache;
pub mod tensor;

pub use context::{instance_descriptor, AdapterSummary, GpuContext, ReadbackTimes, StartupTimes};
pub use dispatch::{grid_for, Binding, Dispatch, Launch, WG};
pub use kernels::{all_kernels, validate_shader, Kernel, Shader};
pub use tensor::{BufferPool, DType, Tensor};
