//! Lucid's Fourier image parameterization with decorrelated colour.

use crate::gpu::Kernel;

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[];
