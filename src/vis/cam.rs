//! The class activation map family, computed at a named layer.

use crate::gpu::Kernel;

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[];
