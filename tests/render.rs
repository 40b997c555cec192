//! Rendering: colormap kernels against OpenCV's and matplotlib's tables (fixture made by
//! tools/make_colormap_fixture.py) and a CPU twin, the overlay against pytorch-grad-cam's
//! `show_cam_on_image` outputs and a CPU re-implementation, textures read back, grid layout,
//! the bitmap font, and PNG/JPEG/GIF files written and read back.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use cnnvis::gpu::DType;
use cnnvis::render::{self, font, Colormap, Grid, RenderError};
use cnnvis::Tensor;
use common::{ctx, run, upload, Rng};
use image::{AnimationDecoder, DynamicImage, GenericImageView, Rgb, RgbImage, RgbaImage};

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/render/colormaps.json"
    );
    let text = std::fs::read_to_string(path).expect("read colormap fixture");
    serde_json::from_str(&text).expect("parse colormap fixture")
}

fn bytes3(v: &serde_json::Value) -> Vec<[u8; 3]> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let a = e.as_array().expect("triple");
            [0, 1, 2].map(|i| a[i].as_u64().expect("byte") as u8)
        })
        .collect()
}

fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn u8s(v: &serde_json::Value) -> Vec<u8> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("byte") as u8)
        .collect()
}

/// A unique path in the temp directory.
fn temp_path(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("cnnvis-render-{}-{k}-{name}", std::process::id()))
}

fn unpack(p: u32) -> [u8; 4] {
    p.to_le_bytes()
}

#[test]
fn embedded_tables_are_opencv_jet_and_matplotlib_viridis() {
    let f = fixture();
    let jet = bytes3(&f["jet"]);
    let viridis = bytes3(&f["viridis"]);
    assert_eq!(jet.len(), 256);
    for i in 0..=255u8 {
        assert_eq!(Colormap::Jet.rgb(i), jet[i as usize], "jet entry {i}");
        assert_eq!(
            Colormap::Viridis.rgb(i),
            viridis[i as usize],
            "viridis entry {i}"
        );
        assert_eq!(Colormap::Gray.rgb(i), [i; 3]);
    }
    // The CPU twin of the quantization against the libraries' outputs on sample values.
    let s = &f["samples"];
    let mask = f32s(&s["mask"]);
    let want_jet = bytes3(&s["jet"]);
    let want_vir = bytes3(&s["viridis"]);
    let want_gray = u8s(&s["gray"]);
    for (k, &x) in mask.iter().enumerate() {
        assert_eq!(Colormap::Jet.apply(x), want_jet[k], "jet({x})");
        assert_eq!(Colormap::Viridis.apply(x), want_vir[k], "viridis({x})");
        assert_eq!(Colormap::Gray.apply(x), [want_gray[k]; 3], "gray({x})");
    }
}

#[test]
fn colormap_names_parse() {
    for c in Colormap::ALL {
        assert_eq!(c.name().parse::<Colormap>().unwrap(), c);
    }
    assert_eq!("GREY".parse::<Colormap>().unwrap(), Colormap::Gray);
    let e = "hot".parse::<Colormap>().unwrap_err();
    assert!(e.contains("jet, viridis or gray"), "{e}");
}

#[test]
fn gpu_colormap_rgba_matches_opencv_and_matplotlib_samples() {
    let f = fixture();
    let s = &f["samples"];
    let mask = f32s(&s["mask"]);
    let map = upload(&[1, 1, mask.len()], &mask);
    let expect: [(Colormap, Vec<[u8; 3]>); 3] = [
        (Colormap::Jet, bytes3(&s["jet"])),
        (Colormap::Viridis, bytes3(&s["viridis"])),
        (
            Colormap::Gray,
            u8s(&s["gray"]).into_iter().map(|g| [g; 3]).collect(),
        ),
    ];
    for (cmap, want) in expect {
        let out = render::render_colormap(ctx(), &map, cmap).unwrap();
        assert_eq!(out.dtype(), DType::U32);
        let got = out.download_u32(ctx()).unwrap();
        for (k, (&p, w)) in got.iter().zip(&want).enumerate() {
            let [r, g, b, a] = unpack(p);
            assert_eq!([r, g, b], *w, "{cmap} at sample {k} (x = {})", mask[k]);
            assert_eq!(a, 255);
        }
    }
}

#[test]
fn gpu_colormaps_match_cpu_twin_on_random_batches() {
    let mut rng = Rng::new(11);
    let shape = [3, 17, 23];
    let n: usize = shape.iter().product();
    // Values slightly outside [0, 1] too: the kernels clamp.
    let data = rng.vec(n, -0.05, 1.05);
    let map = upload(&shape, &data);
    for cmap in Colormap::ALL {
        let rgba = Tensor::empty(ctx(), &shape, DType::U32).unwrap();
        let rgb = Tensor::empty(ctx(), &[3, 3, 17, 23], DType::F32).unwrap();
        let d1 = render::colormap_rgba(ctx(), &rgba, &map, cmap).unwrap();
        let d2 = render::colormap_rgb(ctx(), &rgb, &map, cmap).unwrap();
        run(&[&d1, &d2]);
        let packed = rgba.download_u32(ctx()).unwrap();
        let planes = rgb.download(ctx()).unwrap();
        let hw = 17 * 23;
        for (i, &x) in data.iter().enumerate() {
            let want = cmap.apply(x);
            let [r, g, b, a] = unpack(packed[i]);
            assert_eq!(
                [r, g, b, a],
                [want[0], want[1], want[2], 255],
                "{cmap} at {i}"
            );
            let (img, px) = (i / hw, i % hw);
            for c in 0..3 {
                let v = planes[(img * 3 + c) * hw + px];
                assert_eq!(v, want[c] as f32 / 255.0, "{cmap} rgb at {i} channel {c}");
            }
        }
        // Downloads as images: the packed and the f32 paths agree.
        let a = render::download_rgba(ctx(), &rgba).unwrap();
        let b = render::download_rgb(ctx(), &rgb).unwrap();
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(DynamicImage::ImageRgba8(x.clone()).to_rgb8(), *y);
        }
    }
}

#[test]
fn colormap_rejects_bad_shapes() {
    let map = upload(&[2, 4], &[0.5; 8]);
    let out = Tensor::empty(ctx(), &[2, 4], DType::U32).unwrap();
    let e = render::colormap_rgba(ctx(), &out, &map, Colormap::Jet).unwrap_err();
    assert!(e.to_string().contains("[N, H, W]"), "{e}");
    let map = upload(&[1, 2, 4], &[0.5; 8]);
    let wrong = Tensor::empty(ctx(), &[1, 2, 4], DType::F32).unwrap();
    let e = render::colormap_rgba(ctx(), &wrong, &map, Colormap::Jet).unwrap_err();
    assert!(e.to_string().contains("U32"), "{e}");
}

/// pytorch-grad-cam's show_cam_on_image(img, mask, use_rgb=True, image_weight) in f32, step by
/// step as NumPy evaluates it. `img` is [3, H, W] planes, `mask` [H, W]; returns [H, W, 3].
fn show_cam_on_image(img: &[f32], mask: &[f32], cmap: Colormap, image_weight: f32) -> Vec<u8> {
    let hw = mask.len();
    let heat_weight = (1.0 - image_weight as f64) as f32;
    let mut cam = vec![0f32; 3 * hw];
    for p in 0..hw {
        let rgb = cmap.apply(mask[p]);
        for c in 0..3 {
            let heat = rgb[c] as f32 / 255.0;
            cam[p * 3 + c] = heat_weight * heat + image_weight * img[c * hw + p];
        }
    }
    let max = cam.iter().copied().fold(f32::MIN, f32::max);
    cam.iter().map(|&v| (255.0 * (v / max)) as u8).collect()
}

/// Compares packed RGBA output with [H, W, 3] bytes: returns (pixels differing, max difference).
fn compare_rgb(got: &[u32], want: &[u8]) -> (usize, u8) {
    let mut differ = 0;
    let mut worst = 0u8;
    for (p, &px) in got.iter().enumerate() {
        let b = unpack(px);
        assert_eq!(b[3], 255);
        for c in 0..3 {
            let d = b[c].abs_diff(want[p * 3 + c]);
            if d > 0 {
                differ += 1;
                worst = worst.max(d);
            }
        }
    }
    (differ, worst)
}

#[test]
fn overlay_matches_pytorch_grad_cam_show_cam_on_image() {
    let f = fixture();
    for case in f["overlays"].as_array().unwrap() {
        let h = case["height"].as_u64().unwrap() as usize;
        let w = case["width"].as_u64().unwrap() as usize;
        let weight = case["image_weight"].as_f64().unwrap() as f32;
        let hwc = u8s(&case["image_u8"]);
        let mask = f32s(&case["mask"]);
        let want = u8s(&case["expected"]);
        let hw = h * w;
        // HWC bytes to CHW floats, exactly np.float32(img) / 255.
        let mut chw = vec![0f32; 3 * hw];
        for p in 0..hw {
            for c in 0..3 {
                chw[c * hw + p] = hwc[p * 3 + c] as f32 / 255.0;
            }
        }
        let image = upload(&[1, 3, h, w], &chw);
        let map = upload(&[1, h, w], &mask);
        let out = render::render_overlay(ctx(), &map, &image, Colormap::Jet, weight).unwrap();
        let got = out.download_u32(ctx()).unwrap();
        let (differ, worst) = compare_rgb(&got, &want);
        println!(
            "overlay {h}x{w} weight {weight}: {differ} of {} bytes differ, max {worst}",
            3 * hw
        );
        assert!(
            worst <= 1,
            "overlay differs from pytorch-grad-cam by {worst}/255"
        );
        // The CPU twin is bit-exact against the library.
        assert_eq!(show_cam_on_image(&chw, &mask, Colormap::Jet, weight), want);
    }
}

#[test]
fn overlay_matches_cpu_reimplementation_on_random_batches() {
    let mut rng = Rng::new(5);
    let (n, h, w) = (4, 19, 29);
    let hw = h * w;
    let mask = rng.vec(n * hw, 0.0, 1.0);
    let images: Vec<f32> = (0..n * 3 * hw)
        .map(|_| rng.int(0, 255) as f32 / 255.0)
        .collect();
    let map = upload(&[n, h, w], &mask);
    let mut total_differ = 0;
    for cmap in Colormap::ALL {
        for (weight, shared) in [(0.5, false), (0.3, true), (1.0, false), (0.0, true)] {
            let image = if shared {
                upload(&[1, 3, h, w], &images[..3 * hw])
            } else {
                upload(&[n, 3, h, w], &images)
            };
            let out = render::render_overlay(ctx(), &map, &image, cmap, weight).unwrap();
            let got = out.download_u32(ctx()).unwrap();
            for i in 0..n {
                let img = if shared {
                    &images[..3 * hw]
                } else {
                    &images[i * 3 * hw..(i + 1) * 3 * hw]
                };
                let want = show_cam_on_image(img, &mask[i * hw..(i + 1) * hw], cmap, weight);
                let (differ, worst) = compare_rgb(&got[i * hw..(i + 1) * hw], &want);
                assert!(
                    worst <= 1,
                    "{cmap} weight {weight} image {i}: differs by {worst}/255"
                );
                total_differ += differ;
            }
        }
    }
    println!(
        "overlay vs CPU twin: {total_differ} of {} bytes differ by 1/255",
        3 * 4 * 3 * n * hw
    );
}

#[test]
fn overlay_rejects_bad_inputs() {
    let map = upload(&[2, 4, 5], &[0.5; 40]);
    let out = Tensor::empty(ctx(), &[2, 4, 5], DType::U32).unwrap();
    let img = upload(&[2, 3, 5, 4], &[0.5; 120]);
    let e = render::overlay(ctx(), &out, &map, &img, Colormap::Jet, 0.5).unwrap_err();
    assert!(
        e.to_string().contains("image has shape [2, 3, 5, 4]"),
        "{e}"
    );
    let img = upload(&[2, 3, 4, 5], &[0.5; 120]);
    let e = render::overlay(ctx(), &out, &map, &img, Colormap::Jet, 1.5).unwrap_err();
    assert!(e.to_string().contains("image_weight"), "{e}");
    assert!(render::overlay(ctx(), &out, &map, &img, Colormap::Jet, 0.5).is_ok());
}

#[test]
fn unit_chw_is_exact_at_native_size_and_resizes_otherwise() {
    let mut img = RgbImage::new(3, 2);
    for (k, px) in img.pixels_mut().enumerate() {
        *px = Rgb([k as u8 * 40, 255 - k as u8, 7]);
    }
    let dynimg = DynamicImage::ImageRgb8(img.clone());
    let chw = render::unit_chw(&dynimg, [2, 3]).unwrap();
    for (p, px) in img.pixels().enumerate() {
        for c in 0..3 {
            assert_eq!(chw[c * 6 + p], px.0[c] as f32 / 255.0);
        }
    }
    let big = render::unit_chw(&dynimg, [4, 6]).unwrap();
    assert_eq!(big.len(), 3 * 24);
    assert!(big.iter().all(|v| (0.0..=1.0).contains(v)));
    let t = render::images_to_unit_chw(ctx(), &[dynimg.clone(), dynimg], [5, 7]).unwrap();
    assert_eq!(t.shape(), &[2, 3, 5, 7]);
}

/// Reads a 2-D RGBA8 texture (one layer) back: texture -> buffer with 256-byte rows -> CPU.
fn read_texture(texture: &wgpu::Texture, layer: u32) -> Vec<u8> {
    let c = ctx();
    let (w, h) = (texture.width(), texture.height());
    let stride = (4 * w).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let buffer = c.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("texture readback"),
        size: (stride * h) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = c
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    enc.copy_texture_to_buffer(
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
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(stride),
                rows_per_image: Some(h),
            },
        },
        wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
    );
    c.queue().submit(Some(enc.finish()));
    let slice = buffer.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.expect("map texture readback"));
    c.wait().unwrap();
    let data = slice.get_mapped_range().expect("mapped range");
    let mut out = Vec::with_capacity((4 * w * h) as usize);
    for row in 0..h {
        let start = (row * stride) as usize;
        out.extend_from_slice(&data[start..start + 4 * w as usize]);
    }
    out
}

#[test]
fn textures_hold_the_rendered_pixels_aligned_and_padded_rows() {
    let mut rng = Rng::new(3);
    // 64 wide: 256-byte rows, copied directly. 37 wide: rows padded on the GPU first.
    for (n, h, w) in [(2, 5, 64), (3, 6, 37), (1, 1, 1)] {
        let map = upload(&[n, h, w], &rng.vec(n * h * w, 0.0, 1.0));
        let rgba = render::render_colormap(ctx(), &map, Colormap::Viridis).unwrap();
        let packed = rgba.download_u32(ctx()).unwrap();
        let plane = h * w;
        for index in 0..n {
            let tex = render::create_texture(
                ctx(),
                &rgba,
                index,
                wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::TEXTURE_BINDING,
            )
            .unwrap();
            assert_eq!(tex.format(), render::TEXTURE_FORMAT);
            let want: Vec<u8> = packed[index * plane..(index + 1) * plane]
                .iter()
                .flat_map(|p| p.to_le_bytes())
                .collect();
            assert_eq!(read_texture(&tex, 0), want, "{n}x{h}x{w} image {index}");
        }
        // Into layer 1 of a caller's array texture with STORAGE_BINDING usage.
        let tex = ctx().device().create_texture(&wgpu::TextureDescriptor {
            label: Some("host texture"),
            size: wgpu::Extent3d {
                width: w as u32,
                height: h as u32,
                depth_or_array_layers: 2,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::COPY_DST
                | wgpu::TextureUsages::COPY_SRC
                | wgpu::TextureUsages::STORAGE_BINDING,
            view_formats: &[],
        });
        render::copy_to_texture(ctx(), &rgba, n - 1, &tex, 1).unwrap();
        let want: Vec<u8> = packed[(n - 1) * plane..]
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        assert_eq!(read_texture(&tex, 1), want);
        let e = render::copy_to_texture(ctx(), &rgba, n, &tex, 0).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = render::copy_to_texture(ctx(), &rgba, 0, &tex, 2).unwrap_err();
        assert!(e.to_string().contains("layer 2"), "{e}");
    }
    // Size and format mismatches are refused.
    let map = upload(&[1, 4, 4], &[0.5; 16]);
    let rgba = render::render_colormap(ctx(), &map, Colormap::Jet).unwrap();
    let tex = ctx().device().create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: 5,
            height: 4,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let e = render::copy_to_texture(ctx(), &rgba, 0, &tex, 0).unwrap_err();
    assert!(e.to_string().contains("texture is 5x4"), "{e}");
    let e = render::create_texture(ctx(), &map, 0, wgpu::TextureUsages::empty()).unwrap_err();
    assert!(e.to_string().contains("u32"), "{e}");
}

fn tile(w: u32, h: u32, v: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([v, x as u8, y as u8]))
}

#[test]
fn grid_layout_follows_keras_vis_stitch_images() {
    // 7 tiles of 4x3, margin 5, 5 columns: 2 rows; keras-vis's sizes and positions.
    let tiles: Vec<RgbImage> = (0..7).map(|i| tile(4, 3, 10 + i as u8)).collect();
    let g = render::stitch_images(&tiles, 5, 5).unwrap();
    assert_eq!(g.dimensions(), (5 * 4 + 4 * 5, 2 * 3 + 5));
    let layout = Grid::default().layout(7, (4, 3), false).unwrap();
    assert_eq!((layout.rows, layout.cols), (2, 5));
    for (i, &(x, y)) in layout.origins.iter().enumerate() {
        assert_eq!((x, y), ((4 + 5) * (i as u32 % 5), (3 + 5) * (i as u32 / 5)));
        for dy in 0..3 {
            for dx in 0..4 {
                assert_eq!(g.get_pixel(x + dx, y + dy), tiles[i].get_pixel(dx, dy));
            }
        }
    }
    // Margins and the empty cells stay background (black).
    assert_eq!(*g.get_pixel(4, 0), Rgb([0, 0, 0]));
    assert_eq!(*g.get_pixel(2 * 9 + 1, 8 + 1), Rgb([0, 0, 0]));
    // Fewer tiles than columns: one row only as wide as the tiles.
    let g = render::stitch_images(&tiles[..3], 2, 5).unwrap();
    assert_eq!(g.dimensions(), (3 * 4 + 2 * 2, 3));
    // One column.
    let g = render::stitch_images(&tiles[..3], 1, 1).unwrap();
    assert_eq!(g.dimensions(), (4, 3 * 3 + 2));
}

#[test]
fn grid_labels_draw_under_each_tile() {
    let tiles: Vec<RgbImage> = (0..4).map(|i| tile(30, 10, 50 * i as u8)).collect();
    let grid = Grid {
        cols: 2,
        margin: 3,
        background: Rgb([0, 0, 0]),
        label_color: Rgb([255, 255, 0]),
        label_scale: 1,
    };
    let labels = ["cat", "dog 7", "a very long label", ""];
    let g = grid.stitch_labeled(&tiles, &labels).unwrap();
    let lh = grid.label_height();
    assert_eq!(lh, 9);
    assert_eq!(g.dimensions(), (2 * 30 + 3, 2 * (10 + lh) + 3));
    let layout = grid.layout(4, (30, 10), true).unwrap();
    assert_eq!(layout.origins[2], (0, 10 + lh + 3));
    assert_eq!(layout.label_tops[2], 10 + lh + 3 + 10);
    for (i, &(x, y)) in layout.origins.iter().enumerate() {
        // The tile itself is untouched.
        assert_eq!(g.get_pixel(x + 29, y + 9), tiles[i].get_pixel(29, 9));
        // Label pixels only inside the strip, inside the tile's width.
        let top = layout.label_tops[i];
        let lit = (top..top + lh)
            .flat_map(|yy| (x..x + 30).map(move |xx| (xx, yy)))
            .filter(|&(xx, yy)| *g.get_pixel(xx, yy) == Rgb([255, 255, 0]))
            .count();
        if labels[i].is_empty() {
            assert_eq!(lit, 0);
        } else {
            assert!(lit > 5, "label {i} drew {lit} pixels");
        }
    }
    // The long label is cut to the 5 characters that fit in 30 pixels: same as drawing them.
    let mut strip = RgbImage::new(30, lh);
    let cut = "a ver";
    font::draw_text(
        &mut strip,
        cut,
        ((30 - font::text_width(cut, 1)) / 2) as i64,
        1,
        1,
        Rgb([255, 255, 0]),
    );
    let top = layout.label_tops[2];
    for yy in 0..lh {
        for xx in 0..30 {
            assert_eq!(g.get_pixel(xx, top + yy), strip.get_pixel(xx, yy));
        }
    }
    // Errors: label count, sizes, empty.
    let e = grid.stitch_labeled(&tiles, &["x"]).unwrap_err();
    assert!(e.to_string().contains("1 labels for 4 images"), "{e}");
    let mut odd = tiles.clone();
    odd[1] = tile(3, 3, 0);
    let e = grid.stitch(&odd).unwrap_err();
    assert!(e.to_string().contains("image 1 is 3x3"), "{e}");
    assert!(grid.stitch(&[]).is_err());
}

#[test]
fn font_draws_known_glyphs() {
    assert_eq!(font::text_width("", 1), 0);
    assert_eq!(font::text_width("12", 1), 11);
    assert_eq!(font::text_width("12", 3), 33);
    // '1' is 0x00,0x42,0x7F,0x40,0x00: the middle column fully lit.
    let mut img = RgbImage::new(5, 7);
    font::draw_text(&mut img, "1", 0, 0, 1, Rgb([255, 255, 255]));
    let art: Vec<String> = (0..7)
        .map(|y| {
            (0..5)
                .map(|x| {
                    if img.get_pixel(x, y).0[0] > 0 {
                        '#'
                    } else {
                        '.'
                    }
                })
                .collect()
        })
        .collect();
    assert_eq!(
        art,
        ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
        "{art:#?}"
    );
    // Non-ASCII draws as '?', and drawing past the edge clips without panicking.
    assert_eq!(font::glyph('é'), font::glyph('?'));
    font::draw_text(&mut img, "WIDE TEXT", -3, 4, 2, Rgb([1, 2, 3]));
}

#[test]
fn png_jpeg_gif_files_round_trip() {
    let mut rng = Rng::new(9);
    let map = upload(&[2, 24, 32], &rng.vec(2 * 24 * 32, 0.0, 1.0));
    let rgba = render::render_colormap(ctx(), &map, Colormap::Jet).unwrap();
    let imgs = render::download_rgba(ctx(), &rgba).unwrap();
    let rgb: Vec<RgbImage> = imgs
        .iter()
        .map(|i| DynamicImage::ImageRgba8(i.clone()).to_rgb8())
        .collect();

    // PNG: exact, RGB and RGBA.
    let png = temp_path("map.png");
    render::save_rgb(&png, &rgb[0]).unwrap();
    assert_eq!(image::open(&png).unwrap().to_rgb8(), rgb[0]);
    let png_upper = temp_path("map.PNG");
    render::save_rgba(&png_upper, &imgs[1]).unwrap();
    assert_eq!(image::open(&png_upper).unwrap().to_rgba8(), imgs[1]);

    // JPEG: lossy; same size, close on average.
    for name in ["map.jpg", "map.jpeg"] {
        let jpg = temp_path(name);
        render::save_rgb(&jpg, &rgb[0]).unwrap();
        let back = image::open(&jpg).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), rgb[0].dimensions());
        let mean: f64 = back
            .as_raw()
            .iter()
            .zip(rgb[0].as_raw())
            .map(|(a, b)| a.abs_diff(*b) as f64)
            .sum::<f64>()
            / back.as_raw().len() as f64;
        assert!(mean < 12.0, "JPEG mean abs error {mean}");
        let _ = std::fs::remove_file(&jpg);
    }

    // Animated GIF: frames, size and delay come back.
    let gif = temp_path("progress.gif");
    let frames: Vec<RgbImage> = (0..3)
        .map(|k| {
            let mut f = rgb[k % 2].clone();
            font::draw_text(&mut f, &format!("Step {}", k + 1), 1, 1, 1, Rgb([0, 0, 0]));
            f
        })
        .collect();
    let mut writer = render::GifWriter::create(&gif, 100).unwrap();
    for f in &frames {
        writer.add_frame(f).unwrap();
    }
    let e = writer.add_frame(&tile(3, 3, 0)).unwrap_err();
    assert!(matches!(e, RenderError::BadImage { .. }), "{e}");
    assert_eq!(writer.finish().unwrap(), 3);
    let file = std::io::BufReader::new(std::fs::File::open(&gif).unwrap());
    let decoded = image::codecs::gif::GifDecoder::new(file)
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap();
    assert_eq!(decoded.len(), 3);
    for (d, f) in decoded.iter().zip(&frames) {
        assert_eq!(d.buffer().dimensions(), f.dimensions());
        assert_eq!(d.delay().numer_denom_ms(), (100, 1));
        // Palette quantization: colours close to the originals on average.
        let back = DynamicImage::ImageRgba8(d.buffer().clone()).to_rgb8();
        let mean: f64 = back
            .as_raw()
            .iter()
            .zip(f.as_raw())
            .map(|(a, b)| a.abs_diff(*b) as f64)
            .sum::<f64>()
            / back.as_raw().len() as f64;
        assert!(mean < 12.0, "GIF mean abs error {mean}");
    }
    // save_gif and a single-frame .gif through save_image.
    render::save_gif(&gif, &frames[..2], 50).unwrap();
    let single = temp_path("single.gif");
    render::save_rgb(&single, &rgb[0]).unwrap();
    assert_eq!(image::open(&single).unwrap().dimensions(), (32, 24));
    for p in [&png, &png_upper, &gif, &single] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn unknown_extensions_are_clear_errors_and_write_nothing() {
    let img = RgbaImage::new(2, 2);
    for name in ["out.bmp", "out.txt", "noextension"] {
        let path = temp_path(name);
        let e = render::save_rgba(&path, &img).unwrap_err();
        assert!(
            matches!(e, RenderError::UnknownExtension { .. }),
            "{name}: {e}"
        );
        let msg = e.to_string();
        assert!(msg.contains("png, jpg, jpeg, gif"), "{msg}");
        assert!(!path.exists(), "{name} was created");
    }
    let e = render::GifWriter::create(temp_path("anim.png"), 100).unwrap_err();
    assert!(e.to_string().contains("not one of gif"), "{e}");
    let e = render::save_gif(temp_path("empty.gif"), &[], 100).unwrap_err();
    assert!(e.to_string().contains("at least one frame"), "{e}");
    // A directory that does not exist: an I/O error naming the path.
    let path = temp_path("missing-dir").join("x.png");
    let e = render::save_rgba(&path, &img).unwrap_err();
    assert!(matches!(e, RenderError::Io { .. }), "{e}");
    assert!(e.to_string().contains("missing-dir"), "{e}");
}

#[test]
fn conversions_check_shapes() {
    let imgs = render::rgba_images(&[0xff0000ffu32; 6], &[2, 3]).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].get_pixel(2, 1).0, [255, 0, 0, 255]);
    assert!(render::rgba_images(&[0; 5], &[2, 3]).is_err());
    assert!(render::rgb_images(&[0.0; 12], &[1, 4, 3]).is_err());
    let rgb = render::rgb_images(&[0.0, 1.0, 0.5, 2.0, -1.0, 0.25], &[1, 3, 1, 2]).unwrap();
    assert_eq!(rgb[0].get_pixel(0, 0).0, [0, 128, 0]);
    assert_eq!(rgb[0].get_pixel(1, 0).0, [255, 255, 64]);
}
