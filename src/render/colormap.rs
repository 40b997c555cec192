//! Colormaps and overlays, computed per pixel on the GPU (shaders/render.wgsl).
//!
//! A map value `x` (a `[N, H, W]` f32 tensor, normalized to [0, 1]) picks one of 256 table
//! entries by truncation, as the reference libraries do:
//! - [`Colormap::Jet`]: OpenCV's `COLORMAP_JET` on `np.uint8(255 * x)`, i.e. entry
//!   `floor(255 x)`. OpenCV's jet is itself a 256-entry 8-bit LUT (built by linear interpolation
//!   of jet's key points and rounded); we carry that exact table, generated from OpenCV by
//!   `tools/make_colormap_fixture.py` and checked against it in `tests/render.rs`.
//! - [`Colormap::Viridis`]: matplotlib's `colormaps['viridis'](x, bytes=True)`: entry
//!   `min(floor(256 x), 255)` of matplotlib's table (its floats × 255, truncated).
//! - [`Colormap::Gray`]: `np.uint8(255 * x)` in all three channels.
//!
//! Values outside [0, 1] are clamped; NaN gives some valid entry (unspecified).
//!
//! [`overlay`] reproduces pytorch-grad-cam's `show_cam_on_image(img, mask, use_rgb=True,
//! image_weight=w)` in f32, operation by operation:
//! `heat = lut / 255; cam = f32(1 - w) * heat + w * img; cam = cam / max(cam); uint8(255 * cam)`,
//! with the maximum taken per image over all pixels and channels by a GPU reduction, so the
//! result never leaves the GPU (it can go straight to a texture).

use std::str::FromStr;

use image::DynamicImage;

use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::model::preprocess::{ChannelMode, InputError, Preprocess};
use crate::ops::{expect_dtype, expect_shape, to_u32};
use crate::render::tables;

const COLORMAP_RGBA: Kernel = Kernel::new(Shader::Render, "colormap_rgba");
const COLORMAP_RGB: Kernel = Kernel::new(Shader::Render, "colormap_rgb");
const OVERLAY_BLEND: Kernel = Kernel::new(Shader::Render, "overlay_blend");
const OVERLAY_MAX: Kernel = Kernel::new(Shader::Render, "overlay_max");
const OVERLAY_FINISH: Kernel = Kernel::new(Shader::Render, "overlay_finish");
pub(crate) const PAD_ROWS: Kernel = Kernel::new(Shader::Render, "pad_rows");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    COLORMAP_RGBA,
    COLORMAP_RGB,
    OVERLAY_BLEND,
    OVERLAY_MAX,
    OVERLAY_FINISH,
    PAD_ROWS,
];

/// pytorch-grad-cam's default `image_weight` (the image's share of the overlay).
pub const DEFAULT_IMAGE_WEIGHT: f32 = 0.5;

/// Mirror of `RenderParams` in render.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RenderParams {
    pub(crate) n: u32,
    pub(crate) hw: u32,
    pub(crate) levels: f32,
    pub(crate) image_batch: u32,
    pub(crate) heat_weight: f32,
    pub(crate) image_weight: f32,
    pub(crate) width: u32,
    pub(crate) stride: u32,
    pub(crate) offset: u32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<RenderParams>() == 48);

/// A table from map values in [0, 1] to colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Colormap {
    /// OpenCV's `COLORMAP_JET` (keras-vis, pytorch-grad-cam): dark blue, cyan, yellow, dark red.
    #[default]
    Jet,
    /// matplotlib's viridis: perceptually uniform, dark purple to yellow.
    Viridis,
    /// Black to white.
    Gray,
}

impl Colormap {
    /// Every colormap.
    pub const ALL: [Colormap; 3] = [Colormap::Jet, Colormap::Viridis, Colormap::Gray];

    /// The name [`FromStr`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Colormap::Jet => "jet",
            Colormap::Viridis => "viridis",
            Colormap::Gray => "gray",
        }
    }

    /// Table entry `i` as RGB bytes.
    pub fn rgb(self, i: u8) -> [u8; 3] {
        match self {
            Colormap::Jet => tables::JET[i as usize],
            Colormap::Viridis => tables::VIRIDIS[i as usize],
            Colormap::Gray => [i; 3],
        }
    }

    /// The multiplier of the truncating quantization: 255 for OpenCV's `np.uint8(255 * x)`,
    /// 256 for matplotlib's `floor(256 x)`.
    fn levels(self) -> f32 {
        match self {
            Colormap::Viridis => 256.0,
            Colormap::Jet | Colormap::Gray => 255.0,
        }
    }

    /// The table entry of map value `x` (CPU twin of the kernels' `lut_index`).
    pub fn index(self, x: f32) -> u8 {
        ((x.clamp(0.0, 1.0) * self.levels()) as u32).min(255) as u8
    }

    /// The colour of map value `x`, as the GPU kernels compute it.
    pub fn apply(self, x: f32) -> [u8; 3] {
        self.rgb(self.index(x))
    }

    /// The 256 entries as packed RGBA8 (R in the low byte, alpha 255).
    pub fn packed_table(self) -> Vec<u32> {
        (0..=255u8)
            .map(|i| {
                let [r, g, b] = self.rgb(i);
                u32::from_le_bytes([r, g, b, 255])
            })
            .collect()
    }

    /// The 256 entries as f32 RGB `byte / 255` (NumPy's `np.float32(heatmap) / 255`), 768
    /// values.
    pub fn unit_table(self) -> Vec<f32> {
        (0..=255u8)
            .flat_map(|i| self.rgb(i).map(|c| c as f32 / 255.0))
            .collect()
    }
}

impl FromStr for Colormap {
    type Err = String;

    /// `jet`, `viridis`, `gray` (or `grey`, `grayscale`), case-insensitive.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "jet" => Ok(Colormap::Jet),
            "viridis" => Ok(Colormap::Viridis),
            "gray" | "grey" | "grayscale" | "greyscale" => Ok(Colormap::Gray),
            other => Err(format!(
                "unknown colormap {other:?}; expected jet, viridis or gray"
            )),
        }
    }
}

impl std::fmt::Display for Colormap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[N, H, W]` of an f32 map tensor.
fn map_dims(op: &'static str, map: &Tensor) -> Result<[usize; 3]> {
    expect_dtype(op, "map", map, DType::F32)?;
    match *map.shape() {
        [n, h, w] if n * h * w > 0 => Ok([n, h, w]),
        _ => Err(Error::shape(
            op,
            format!(
                "map has shape {:?}, expected a non-empty [N, H, W]",
                map.shape()
            ),
        )),
    }
}

fn params(op: &'static str, [n, h, w]: [usize; 3], cmap: Colormap) -> Result<RenderParams> {
    Ok(RenderParams {
        n: to_u32(op, "pixels", n * h * w)?,
        hw: to_u32(op, "H*W", h * w)?,
        levels: cmap.levels(),
        ..Default::default()
    })
}

/// `out[n, y, x]` = `cmap(map[n, y, x])` as packed RGBA8 (alpha 255). `out` is a u32 tensor of
/// the map's shape `[N, H, W]`.
pub fn colormap_rgba(
    ctx: &GpuContext,
    out: &Tensor,
    map: &Tensor,
    cmap: Colormap,
) -> Result<Dispatch> {
    const OP: &str = "colormap_rgba";
    let dims = map_dims(OP, map)?;
    expect_dtype(OP, "out", out, DType::U32)?;
    expect_shape(OP, "out", out, &dims)?;
    let lut = Tensor::from_u32(ctx, &[256], &cmap.packed_table())?;
    ctx.dispatch(
        COLORMAP_RGBA,
        &params(OP, dims, cmap)?,
        &[(1, map), (2, &lut), (4, out)],
        ctx.grid_1d(map.numel())?,
    )
}

/// `out[n, c, y, x]` = `cmap(map[n, y, x])[c] / 255` in f32 (exactly NumPy's
/// `np.float32(heatmap) / 255`). `out` is f32 `[N, 3, H, W]`.
pub fn colormap_rgb(
    ctx: &GpuContext,
    out: &Tensor,
    map: &Tensor,
    cmap: Colormap,
) -> Result<Dispatch> {
    const OP: &str = "colormap_rgb";
    let [n, h, w] = map_dims(OP, map)?;
    expect_dtype(OP, "out", out, DType::F32)?;
    expect_shape(OP, "out", out, &[n, 3, h, w])?;
    let lut = Tensor::from_slice(ctx, &[256 * 3], &cmap.unit_table())?;
    ctx.dispatch(
        COLORMAP_RGB,
        &params(OP, [n, h, w], cmap)?,
        &[(1, map), (3, &lut), (5, out)],
        ctx.grid_1d(map.numel())?,
    )
}

/// The overlay of `cmap(map)` on `image` as packed RGBA8 in `out` (u32 `[N, H, W]`), as
/// pytorch-grad-cam's `show_cam_on_image(image, map, use_rgb=True, image_weight)`.
///
/// `image` is f32 `[N, 3, H, W]` or `[1, 3, H, W]` (one image under every map) with values in
/// [0, 1] (see [`unit_chw`]); `image_weight` in [0, 1] is the image's share
/// ([`DEFAULT_IMAGE_WEIGHT`] = 0.5). Returns three launches to record in order (blend, per-image
/// maximum, normalize and pack); their scratch buffers live as long as the launches.
pub fn overlay(
    ctx: &GpuContext,
    out: &Tensor,
    map: &Tensor,
    image: &Tensor,
    cmap: Colormap,
    image_weight: f32,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "overlay";
    let [n, h, w] = map_dims(OP, map)?;
    expect_dtype(OP, "out", out, DType::U32)?;
    expect_shape(OP, "out", out, &[n, h, w])?;
    expect_dtype(OP, "image", image, DType::F32)?;
    let image_batch = match *image.shape() {
        [b, 3, ih, iw] if (b == n || b == 1) && (ih, iw) == (h, w) => b,
        _ => {
            return Err(Error::shape(
                OP,
                format!(
                    "image has shape {:?}, expected [{n}, 3, {h}, {w}] or [1, 3, {h}, {w}] to \
                     match the map {:?}",
                    image.shape(),
                    map.shape()
                ),
            ))
        }
    };
    if !(0.0..=1.0).contains(&image_weight) {
        return Err(Error::shape(
            OP,
            format!("image_weight {image_weight} must be in [0, 1]"),
        ));
    }
    let p = RenderParams {
        image_batch: image_batch as u32,
        // NumPy computes `1 - image_weight` in f64 and rounds it to f32 against a f32 array.
        heat_weight: (1.0 - image_weight as f64) as f32,
        image_weight,
        ..params(OP, [n, h, w], cmap)?
    };
    let lut = Tensor::from_slice(ctx, &[256 * 3], &cmap.unit_table())?;
    let cam = Tensor::empty(ctx, &[n, 3, h, w], DType::F32)?;
    let maxes = Tensor::empty(ctx, &[n], DType::F32)?;
    let grid = ctx.grid_1d(map.numel())?;
    let blend = ctx.dispatch(
        OVERLAY_BLEND,
        &p,
        &[(1, map), (3, &lut), (6, image), (7, &cam)],
        grid,
    )?;
    let max_wg = ctx.limits().max_compute_workgroups_per_dimension as usize;
    if n > max_wg {
        return Err(Error::shape(
            OP,
            format!("{n} maps exceed the {max_wg} workgroups of one dimension"),
        ));
    }
    let max = ctx.dispatch(OVERLAY_MAX, &p, &[(7, &cam), (8, &maxes)], [n as u32, 1, 1])?;
    let finish = ctx.dispatch(
        OVERLAY_FINISH,
        &p,
        &[(7, &cam), (8, &maxes), (4, out)],
        grid,
    )?;
    Ok(vec![blend, max, finish])
}

/// Allocates a u32 `[N, H, W]` tensor and submits [`colormap_rgba`] into it (not waited on: a
/// download or texture copy orders after it).
pub fn render_colormap(ctx: &GpuContext, map: &Tensor, cmap: Colormap) -> Result<Tensor> {
    let out = Tensor::empty(ctx, map.shape(), DType::U32)?;
    let d = colormap_rgba(ctx, &out, map, cmap)?;
    ctx.run(&[&d])?;
    Ok(out)
}

/// Allocates a u32 `[N, H, W]` tensor and submits [`overlay`] into it.
pub fn render_overlay(
    ctx: &GpuContext,
    map: &Tensor,
    image: &Tensor,
    cmap: Colormap,
    image_weight: f32,
) -> Result<Tensor> {
    let out = Tensor::empty(ctx, map.shape(), DType::U32)?;
    let ds = overlay(ctx, &out, map, image, cmap, image_weight)?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    Ok(out)
}

/// An image as f32 CHW RGB in [0, 1] at `[h, w]`, the `image` input of [`overlay`]: at its own
/// size each value is exactly `np.float32(byte) / 255`; otherwise the 8-bit values are scaled
/// by 1/255 and resized bilinearly with half-pixel centres (the preprocessing resize of
/// [`crate::model::preprocess`]).
pub fn unit_chw(
    img: &DynamicImage,
    [h, w]: [usize; 2],
) -> std::result::Result<Vec<f32>, InputError> {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    if iw == 0 || ih == 0 {
        return Err(InputError::ZeroSize {
            width: img.width(),
            height: img.height(),
        });
    }
    if (ih, iw) == (h, w) {
        let rgb = img.to_rgb8();
        let plane = h * w;
        let mut out = vec![0f32; 3 * plane];
        for (p, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + p] = px.0[c] as f32 / 255.0;
            }
        }
        return Ok(out);
    }
    Preprocess {
        size: [h, w],
        channels: ChannelMode::Rgb,
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
        scale: 1.0 / 255.0,
    }
    .to_chw(img)
}

/// Several images as an f32 `[N, 3, h, w]` tensor in [0, 1] (see [`unit_chw`]).
pub fn images_to_unit_chw(
    ctx: &GpuContext,
    imgs: &[DynamicImage],
    size: [usize; 2],
) -> Result<Tensor> {
    if imgs.is_empty() {
        return Err(InputError::EmptyBatch.into());
    }
    let mut data = Vec::with_capacity(imgs.len() * 3 * size[0] * size[1]);
    for img in imgs {
        data.extend(unit_chw(img, size)?);
    }
    Tensor::from_slice(ctx, &[imgs.len(), 3, size[0], size[1]], &data)
}
