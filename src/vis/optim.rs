//! Activation maximization: regularizers, input transforms and update rules.

use crate::gpu::Kernel;

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[];
