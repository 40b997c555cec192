//! Where does the digits model look? keras-vis's `attention.ipynb` on MNIST: vanilla,
//! guided-backprop and SmoothGrad saliency and Grad-CAM for a few test digits, each drawn over
//! the digit with the jet colormap.
//!
//! `cargo run --release --example mnist_attention [-- --out DIR]`
//!
//! Writes `attention.png` into DIR (default `out/examples/mnist_attention/`): one row per
//! digit, columns input, vanilla, guided, SmoothGrad, Grad-CAM.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use cnnvis::gpu::DType;
use cnnvis::model::preprocess::load_image;
use cnnvis::render::output::{download_rgba, save_rgb, Grid};
use cnnvis::render::{images_to_unit_chw, render_overlay, Colormap};
use cnnvis::vis::cam::{upsample_normalize, Cam};
use cnnvis::vis::saliency::Saliency;
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model, Tensor};
use image::{imageops, DynamicImage, RgbImage};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Test images (`tests/data/digits/`) and their labels.
const DIGITS: [(&str, usize); 4] = [("00.png", 0), ("02.png", 2), ("07.png", 7), ("09.png", 9)];
const ZOOM: u32 = 4;

/// Min-max normalizes `[N, H, W]` maps per image on the GPU, as the CAM family does.
fn normalized(ctx: &GpuContext, maps: &Tensor) -> cnnvis::Result<Tensor> {
    let n = maps.shape()[0];
    let out = Tensor::empty(ctx, maps.shape(), DType::F32)?;
    let (s1, s2) = (
        Tensor::empty(ctx, &[n, 2], DType::F32)?,
        Tensor::empty(ctx, &[n, 2], DType::F32)?,
    );
    let launches = upsample_normalize(ctx, &out, maps, &s1, &s2)?;
    ctx.run(&launches.iter().collect::<Vec<_>>())?;
    Ok(out)
}

fn zoom(img: &RgbImage) -> RgbImage {
    imageops::resize(
        img,
        img.width() * ZOOM,
        img.height() * ZOOM,
        imageops::FilterType::Nearest,
    )
}

/// Saliency maps and Grad-CAM for a few digits.
#[derive(Parser)]
struct Args {
    /// Output folder.
    #[arg(long, default_value = "out/examples/mnist_attention")]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Args::parse().out;
    std::fs::create_dir_all(&out)?;
    let ctx = GpuContext::new()?;
    let model = Model::open(&ctx, Path::new(ROOT).join("models/digits.safetensors"))?;
    let data = Path::new(ROOT).join("tests/data/digits");
    let images = DIGITS
        .iter()
        .map(|(f, _)| load_image(data.join(f)))
        .collect::<Result<Vec<DynamicImage>, _>>()?;
    let input = model.preprocess().upload(&ctx, &images)?; // [4, 1, 28, 28], one GPU batch
    let targets: Vec<Target> = DIGITS.iter().map(|&(_, k)| Target::Class(k)).collect();

    // Each method's maps, normalized to [0, 1]; everything stays on the GPU.
    let t = Instant::now();
    let mut columns = Vec::new();
    for (name, method) in [
        ("vanilla", Saliency::vanilla()),
        ("guided", Saliency::guided()),
        ("SmoothGrad", Saliency::smoothgrad().samples(25)),
    ] {
        let maps = method.compute(&ctx, &model, &input, &targets)?;
        columns.push((name, normalized(&ctx, &maps.saliency)?));
    }
    let cam = Cam::grad_cam();
    println!("Grad-CAM at {}", cam.layer_for(&model)?);
    let maps = cam.compute(&ctx, &model, &input, &targets)?;
    columns.push(("Grad-CAM", maps.cam_upsampled));
    for ((file, k), row) in DIGITS.iter().zip(maps.logits.chunks(10)) {
        let top = cnnvis::vis::target::argmax(row);
        println!("  {file}: label {k}, model's top class {top}");
    }
    println!(
        "4 methods on 4 digits in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Jet overlays on the digits (pytorch-grad-cam's show_cam_on_image, image weight 0.5).
    let shown = images_to_unit_chw(&ctx, &images, [28, 28])?;
    let mut overlays = Vec::new();
    for (_, map) in &columns {
        let rgba = render_overlay(&ctx, map, &shown, Colormap::Jet, 0.5)?;
        overlays.push(download_rgba(&ctx, &rgba)?);
    }
    let (mut tiles, mut labels) = (Vec::new(), Vec::new());
    for (i, img) in images.iter().enumerate() {
        tiles.push(zoom(&img.to_rgb8()));
        labels.push(format!("digit {}", DIGITS[i].1));
        for (j, (name, _)) in columns.iter().enumerate() {
            tiles.push(zoom(
                &DynamicImage::ImageRgba8(overlays[j][i].clone()).to_rgb8(),
            ));
            labels.push(name.to_string());
        }
    }
    let grid = Grid {
        cols: 1 + columns.len(),
        ..Grid::default()
    };
    save_rgb(
        out.join("attention.png"),
        &grid.stitch_labeled(&tiles, &labels)?,
    )?;
    println!("overlays -> {}", out.join("attention.png").display());
    Ok(())
}
