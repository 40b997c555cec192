//! (to be written)

use crate::gpu::Kernel;

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[];
