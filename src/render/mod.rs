//! Rendering maps for people: colormaps, overlays on the input image, grids, image files.
//!
//! - On the GPU, per pixel ([`colormap`]): [`Colormap`] lookups (OpenCV's jet, matplotlib's
//!   viridis, grayscale) into packed RGBA8 ([`colormap_rgba`]) or f32 RGB ([`colormap_rgb`]),
//!   and the overlay of a colormapped map on an image exactly as pytorch-grad-cam's
//!   `show_cam_on_image(img, mask, use_rgb=True, image_weight=w)` computes it ([`overlay`]).
//! - For graphics hosts ([`texture`]): a rendered map copied into an `Rgba8Unorm`
//!   `wgpu::Texture` on the same device, with no CPU round trip.
//! - On the CPU ([`output`]): downloaded maps as `image` buffers, keras-vis's `stitch_images`
//!   grid with optional labels in a built-in 5×7 bitmap font, PNG/JPEG files chosen by
//!   extension, and animated GIFs of an optimization (keras-vis's `GifGenerator`).
//!
//! Packed RGBA8 pixels are `u32` with R in the low byte, so their bytes in memory are R, G, B, A:
//! the row layout of an `Rgba8Unorm` texture and of [`image::RgbaImage`].
//!
//! ```no_run
//! use cnnvis::render::{self, Colormap};
//! use cnnvis::{GpuContext, Tensor};
//! let ctx = GpuContext::new()?;
//! let map = Tensor::from_slice(&ctx, &[1, 2, 2], &[0.0, 0.25, 0.5, 1.0])?;
//! let rgba = render::render_colormap(&ctx, &map, Colormap::Jet)?;
//! let images = render::download_rgba(&ctx, &rgba)?;
//! render::save_rgba("map.png", &images[0])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod colormap;
pub mod font;
pub mod output;
mod tables;
pub mod texture;

use std::path::PathBuf;

pub use colormap::{
    colormap_rgb, colormap_rgba, images_to_unit_chw, overlay, render_colormap, render_overlay,
    unit_chw, Colormap, DEFAULT_IMAGE_WEIGHT,
};
pub use output::{
    download_rgb, download_rgba, rgb_images, rgba_images, save_gif, save_image, save_rgb,
    save_rgba, stitch_images, GifWriter, Grid,
};
pub use texture::{copy_to_texture, create_texture, TEXTURE_FORMAT};

use crate::gpu::Kernel;

/// Kernels of this module.
pub const KERNELS: &[Kernel] = colormap::KERNELS;

/// The kernel lists of rendering, for the registry's validation.
pub(crate) const KERNEL_LISTS: &[&[Kernel]] = &[KERNELS];

/// Errors from writing rendered images to files.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The file could not be created or written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file name's extension names no format we write.
    #[error(
        "cannot choose an image format for {}: extension {} is not one of {expected}",
        path.display(),
        ext.as_deref().map_or("(none)".to_string(), |e| format!("{e:?}"))
    )]
    UnknownExtension {
        /// The file.
        path: PathBuf,
        /// Its extension, if any.
        ext: Option<String>,
        /// The extensions this writer accepts.
        expected: &'static str,
    },
    /// The encoder refused the image.
    #[error("cannot encode {}: {detail}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// What the encoder reported.
        detail: String,
    },
    /// The image or frame has no pixels, or does not match the others.
    #[error("cannot write {}: {detail}", path.display())]
    BadImage {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}
