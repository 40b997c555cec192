//! # cnnvis
//!
//! CNN visualizations — saliency maps, class activation maps, activation maximization, and
//! the sanity checks that tell a faithful map from a pretty one — computed on the GPU by
//! hand-written WGSL compute kernels, orchestrated from Rust with wgpu.
//!
//! ## Modules
//! - [`gpu`]: the runtime: [`GpuContext`] (adapter choice, or a host app's own
//!   `wgpu::Device`), [`Tensor`] (shaped GPU buffers, pooled), the kernel registry (pipelines
//!   built once) and [`gpu::Dispatch`] (a launch built once, recorded as often as needed).
//! - [`ops`]: layer kernels — conv2d, ReLU (standard, guided, deconvnet, redirected), pooling,
//!   dense, elementwise, softmax, reductions, random — each forward beside its backward passes;
//!   on CPU drivers with 8-lane subgroups (lavapipe), conv and dense layers read their operands
//!   through 64 KiB uniform-buffer windows ([`ops::conv2d_windows`], [`ops::conv1x1_windows`],
//!   [`ops::linear_windows`]), several times faster there.
//! - [`model`]: [`Model`]: weights from safetensors (memory-mapped; f32, f16, bf16),
//!   torchvision architectures or a `cnnvis.graph` JSON, batch-norm folding, forward and
//!   backward schedules on the GPU, image preprocessing.
//! - [`vis`]: what to explain ([`vis::Target`]) and the methods: [`vis::saliency`] (vanilla,
//!   guided, SmoothGrad, integrated gradients, occlusion, …), [`vis::cam`] (Grad-CAM and
//!   variants), [`vis::maximize`] (keras-vis's and Lucid's activation maximization, with
//!   [`vis::optim`] and [`vis::spectral`]), [`vis::eval`] (pointing game, deletion/insertion,
//!   model randomization).
//! - [`render`]: colormaps and overlays on the GPU, textures for host apps, grids, PNG/JPEG/GIF.
//!
//! ```no_run
//! use cnnvis::vis::{cam::Cam, Target};
//! use cnnvis::{model::preprocess::load_image, GpuContext, Model, Tensor};
//!
//! let ctx = GpuContext::new()?;
//! let model = Model::open(&ctx, "resnet50.safetensors")?;
//! let (x, shape) = model.preprocess().batch(&[load_image("ouzel.jpg")?])?;
//! let input = Tensor::from_slice(&ctx, &shape, &x)?;
//! let maps = Cam::grad_cam().compute(&ctx, &model, &input, &[Target::Class(20)])?;
//! let heatmap = maps.cam_upsampled.download(&ctx)?; // [1, 224, 224], in [0, 1]
//! # Ok::<(), Box<dyn std::error::Error>>(())
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
