//! The saliency family: gradients with respect to the input image and their variants.

use crate::gpu::Kernel;

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[];
