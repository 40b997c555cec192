//! Rendering maps for people: colormaps, overlays on the input image, grids, image files.

use crate::gpu::Kernel;

/// Kernels of this module.
pub const KERNELS: &[Kernel] = &[];

/// The kernel lists of rendering, for the registry's validation.
pub(crate) const KERNEL_LISTS: &[&[Kernel]] = &[KERNELS];
