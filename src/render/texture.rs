//! Rendered maps as wgpu textures on the caller's device, with no CPU round trip.
//!
//! A packed RGBA8 tensor (from [`super::colormap_rgba`] or [`super::overlay`]) already has the
//! bytes of an `Rgba8Unorm` texture row. Buffer-to-texture copies need rows of a multiple of 256
//! bytes: when `4 * W` is one, the tensor's buffer is copied directly; otherwise a GPU kernel
//! (`pad_rows`) first writes the image into a scratch buffer with padded rows.

use crate::error::{Error, GpuError, Result};
use crate::gpu::{DType, GpuContext, Tensor};
use crate::ops::to_u32;
use crate::render::colormap::{RenderParams, PAD_ROWS};

/// The format of textures made by [`create_texture`]. [`copy_to_texture`] also accepts
/// `Rgba8UnormSrgb`, for hosts that want the GPU to decode the (sRGB-encoded) colours.
pub const TEXTURE_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// `[N, H, W]` of a packed RGBA8 tensor and the checked image index.
fn rgba_dims(op: &'static str, rgba: &Tensor, index: usize) -> Result<[usize; 3]> {
    if rgba.dtype() != DType::U32 {
        return Err(Error::shape(op, "rgba must be a u32 (packed RGBA8) tensor"));
    }
    let [n, h, w] = match *rgba.shape() {
        [n, h, w] if n * h * w > 0 => [n, h, w],
        _ => {
            return Err(Error::shape(
                op,
                format!("rgba has shape {:?}, expected [N, H, W]", rgba.shape()),
            ))
        }
    };
    if index >= n {
        return Err(Error::shape(
            op,
            format!("image {index} out of range: the tensor holds {n} image(s)"),
        ));
    }
    Ok([n, h, w])
}

/// A new `W × H` [`TEXTURE_FORMAT`] texture on `ctx`'s device holding image `index` of `rgba`
/// (u32 `[N, H, W]`). `usage` is what the host needs (e.g. `TEXTURE_BINDING` to sample it,
/// `STORAGE_BINDING`); `COPY_DST` is always added.
pub fn create_texture(
    ctx: &GpuContext,
    rgba: &Tensor,
    index: usize,
    usage: wgpu::TextureUsages,
) -> Result<wgpu::Texture> {
    const OP: &str = "create_texture";
    let [_, h, w] = rgba_dims(OP, rgba, index)?;
    let size = wgpu::Extent3d {
        width: to_u32(OP, "width", w)?,
        height: to_u32(OP, "height", h)?,
        depth_or_array_layers: 1,
    };
    let texture = ctx.scoped("creating a texture for a rendered map", || {
        ctx.device().create_texture(&wgpu::TextureDescriptor {
            label: Some("cnnvis map"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: TEXTURE_FORMAT,
            usage: usage | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        })
    })?;
    copy_to_texture(ctx, rgba, index, &texture, 0)?;
    Ok(texture)
}

/// Copies image `index` of `rgba` (u32 `[N, H, W]`) into array layer `layer` of `texture`, a
/// 2-D `Rgba8Unorm` or `Rgba8UnormSrgb` texture of `W × H` (mip 0) with `COPY_DST` usage made
/// on `ctx`'s device. Submitted after all earlier work on the queue; not waited on.
pub fn copy_to_texture(
    ctx: &GpuContext,
    rgba: &Tensor,
    index: usize,
    texture: &wgpu::Texture,
    layer: u32,
) -> Result<()> {
    const OP: &str = "copy_to_texture";
    let [_, h, w] = rgba_dims(OP, rgba, index)?;
    let format = texture.format();
    if !matches!(
        format,
        wgpu::TextureFormat::Rgba8Unorm | wgpu::TextureFormat::Rgba8UnormSrgb
    ) {
        return Err(Error::shape(
            OP,
            format!("texture format is {format:?}, expected Rgba8Unorm or Rgba8UnormSrgb"),
        ));
    }
    if texture.dimension() != wgpu::TextureDimension::D2 {
        return Err(Error::shape(OP, "texture must be 2-D"));
    }
    let size = texture.size();
    if (size.width as usize, size.height as usize) != (w, h) {
        return Err(Error::shape(
            OP,
            format!(
                "texture is {}x{} but the map is {w}x{h} (W x H)",
                size.width, size.height
            ),
        ));
    }
    if layer >= size.depth_or_array_layers {
        return Err(Error::shape(
            OP,
            format!(
                "layer {layer} out of range: the texture has {} layer(s)",
                size.depth_or_array_layers
            ),
        ));
    }
    if !texture.usage().contains(wgpu::TextureUsages::COPY_DST) {
        return Err(Error::shape(OP, "texture lacks COPY_DST usage"));
    }
    let plane = h * w;
    let row_bytes = 4 * w;
    let align = wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize;
    let width = to_u32(OP, "width", w)?;
    let height = to_u32(OP, "height", h)?;
    // Rows already aligned: copy straight from the tensor. Otherwise pad them on the GPU.
    let padded = if row_bytes % align == 0 {
        None
    } else {
        let stride = row_bytes.next_multiple_of(align) / 4;
        let scratch = Tensor::empty(ctx, &[h, stride], DType::U32)?;
        let p = RenderParams {
            n: to_u32(OP, "pixels", plane)?,
            hw: to_u32(OP, "H*W", plane)?,
            width,
            stride: to_u32(OP, "stride", stride)?,
            offset: to_u32(OP, "offset", index * plane)?,
            ..Default::default()
        };
        let d = ctx.dispatch(
            PAD_ROWS,
            &p,
            &[(9, rgba), (4, &scratch)],
            ctx.grid_1d(plane)?,
        )?;
        Some((scratch, d, stride))
    };
    let (buffer, offset, bytes_per_row) = match &padded {
        Some((scratch, _, stride)) => (scratch.buffer(), 0u64, stride * 4),
        None => (rgba.buffer(), (index * plane * 4) as u64, row_bytes),
    };
    let bytes_per_row = u32::try_from(bytes_per_row).map_err(|_| GpuError::TooLarge {
        what: "a texture row".into(),
        bytes: bytes_per_row as u64,
        limit: u32::MAX as u64,
        limit_name: "u32 bytes per row",
    })?;
    ctx.scoped("copying a rendered map into a texture", || {
        let mut encoder = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        if let Some((_, d, _)) = &padded {
            ctx.encode(&mut encoder, &[d]);
        }
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset,
                    bytes_per_row: Some(bytes_per_row),
                    rows_per_image: Some(height),
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: 0,
                    y: 0,
                    z: layer,
                },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
        );
        ctx.queue().submit(Some(encoder.finish()));
    })
}
