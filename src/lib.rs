//! # cnnvis
//!
//! CNN visualizations (saliency maps, grad-CAM, activation maximization) computed on the GPU
//! by hand-written WGSL compute kernels, orchestrated from Rust with wgpu.
//!
//! - [`gpu`]: the runtime: [`GpuContext`] (adapter choice or a host app's device), [`Tensor`]
//!   (shaped GPU buffers, pooled), the kernel registry and [`gpu::Dispatch`].
//! - [`ops`]: layer kernels, each forward beside its backward passes.
//! - [`model`]: weights from safetensors files (memory-mapped; f32, f16, bf16 to f32),
//!   batch-norm folding, image preprocessing (bilinear resize, normalization).
//!
//! ```no_run
//! use cnnvis::{GpuContext, Tensor, ops::relu};
//! let ctx = GpuContext::new()?;
//! let x = Tensor::from_slice(&ctx, &[1, 4], &[-1.0, 2.0, -3.0, 4.0])?;
//! let y = Tensor::empty(&ctx, &[1, 4], cnnvis::gpu::DType::F32)?;
//! ctx.run(&[&relu::relu_forward(&ctx, &y, &x)?])?;
//! assert_eq!(y.download(&ctx)?, vec![0.0, 2.0, 0.0, 4.0]);
//! # Ok::<(), cnnvis::Error>(())
//! ```

#![warn(missing_docs)]

pub mod error;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod render;
pub mod vis;

pub use error::{Error, GpuError, Result};
pub use gpu::{GpuContext, Tensor};
pub use model::{LoadOptions, Model};
/// The wgpu this crate is built against, for hosts that share a device with cnnvis.
pub use wgpu;
