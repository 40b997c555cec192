//! cnnvis inside a graphics application that owns its wgpu device.
//!
//! The app creates its own instance, adapter, device and queue and lends them to cnnvis
//! (`GpuContext::from_device`). cnnvis computes a Grad-CAM overlay for a shapes demo image and
//! hands it over as a `wgpu::Texture` on the app's device; the app samples that texture in its
//! own render pass (a fullscreen triangle drawn into a viewport in the middle of a larger frame
//! cleared to a solid colour). The map never visits the CPU: the only readback is the finished
//! frame, saved as a PNG.
//!
//! `cargo run --release --example graphics_interop [-- --out DIR]`
//!
//! Writes `frame.png` (320×320: background, and the 64×64 overlay drawn 3× at (64, 64)) into
//! DIR (default `out/examples/graphics_interop/`).

use std::path::{Path, PathBuf};

use clap::Parser;
use cnnvis::model::preprocess::load_image;
use cnnvis::render::{create_texture, images_to_unit_chw, render_overlay, Colormap};
use cnnvis::vis::{cam::Cam, Target};
use cnnvis::{wgpu, GpuContext, Model};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The frame, the square the map is drawn into, and the clear colour.
const FRAME: u32 = 320;
const VIEW_AT: f32 = 64.0;
const VIEW_SIZE: f32 = 192.0;
const BACKGROUND: wgpu::Color = wgpu::Color {
    r: 0.2,
    g: 0.2,
    b: 0.2,
    a: 1.0,
};

/// The app's shader: one triangle covering the viewport, sampling the texture (nearest).
const SHADER: &str = "
@group(0) @binding(0) var map: texture_2d<f32>;
@group(0) @binding(1) var nearest: sampler;
struct V { @builtin(position) pos: vec4f, @location(0) uv: vec2f };
@vertex fn vs(@builtin(vertex_index) i: u32) -> V {
    let p = vec2f(f32((i << 1u) & 2u), f32(i & 2u)); // (0,0) (2,0) (0,2)
    return V(vec4f(p * 2.0 - 1.0, 0.0, 1.0), vec2f(p.x, 1.0 - p.y));
}
@fragment fn fs(v: V) -> @location(0) vec4f { return textureSample(map, nearest, v.uv); }
";

/// A host app that draws a cnnvis Grad-CAM texture in its own render pass.
#[derive(Parser)]
struct Args {
    /// Output folder.
    #[arg(long, default_value = "out/examples/graphics_interop")]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Args::parse().out;
    std::fs::create_dir_all(&out)?;

    // The host app's own device. cnnvis's kernels want the adapter's storage-buffer limits.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host app"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    println!("host device on {}", adapter.get_info().name);

    // cnnvis on that device: Grad-CAM of the image's top class, overlaid, as a texture.
    let ctx = GpuContext::from_device(device.clone(), queue.clone());
    let model = Model::open(&ctx, Path::new(ROOT).join("models/shapes.safetensors"))?;
    let image = load_image(Path::new(ROOT).join("tests/data/shapes/00.png"))?;
    let input = model
        .preprocess()
        .upload(&ctx, std::slice::from_ref(&image))?;
    let maps = Cam::grad_cam().compute(&ctx, &model, &input, &[Target::TopClass])?;
    let shown = images_to_unit_chw(&ctx, &[image], [64, 64])?;
    let rgba = render_overlay(&ctx, &maps.cam_upsampled, &shown, Colormap::Jet, 0.5)?;
    let texture = create_texture(&ctx, &rgba, 0, wgpu::TextureUsages::TEXTURE_BINDING)?;
    let class = maps.targets[0] as usize;
    println!(
        "Grad-CAM of class {class} ({}) as a 64x64 texture",
        model.classes().map_or("?", |c| &c[class])
    );

    // The app's render pass: clear, then draw the texture into the centre square.
    let frame = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("frame"),
        size: wgpu::Extent3d {
            width: FRAME,
            height: FRAME,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("blit"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("blit"),
        layout: None,
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        primitive: Default::default(),
        depth_stencil: None,
        multisample: Default::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs"),
            compilation_options: Default::default(),
            targets: &[Some(frame.format().into())],
        }),
        multiview_mask: None,
        cache: None,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(
                    &texture.create_view(&Default::default()),
                ),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::Sampler(
                    &device.create_sampler(&Default::default()),
                ),
            },
        ],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let view = frame.create_view(&Default::default());
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("frame"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(BACKGROUND),
                    store: wgpu::StoreOp::Store,
                },
            })],
            ..Default::default()
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.set_viewport(VIEW_AT, VIEW_AT, VIEW_SIZE, VIEW_SIZE, 0.0, 1.0);
        pass.draw(0..3, 0..1);
    }

    // The one readback: the finished frame (rows of 4 × 320 = 1280 bytes, a multiple of 256).
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("frame readback"),
        size: (4 * FRAME * FRAME) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_texture_to_buffer(
        frame.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4 * FRAME),
                rows_per_image: None,
            },
        },
        frame.size(),
    );
    queue.submit(Some(encoder.finish()));
    readback
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map the frame"));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let pixels = readback.slice(..).get_mapped_range()?.to_vec();
    let png = out.join("frame.png");
    image::RgbaImage::from_raw(FRAME, FRAME, pixels)
        .ok_or("frame size")?
        .save(&png)?;
    println!(
        "frame ({FRAME}x{FRAME}, map drawn at {VIEW_AT}+{VIEW_SIZE}) -> {}",
        png.display()
    );
    Ok(())
}
