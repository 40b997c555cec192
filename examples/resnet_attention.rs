//! Grad-CAM through a ResNet50's stages: the map at `layer2`, `layer3` and `layer4` (coarser
//! and more semantic as the network deepens) and Grad-CAM++ at `layer4`, drawn over each image
//! with the jet colormap.
//!
//! With torchvision's ResNet50, exported once as safetensors (see `tools/README.md`):
//!
//! ```sh
//! python tools/export_torchvision.py --arch resnet50 --pretrained --out resnet50.safetensors
//! cargo run --release --example resnet_attention -- resnet50.safetensors a.jpg b.jpg [--out DIR]
//! ```
//!
//! Without arguments the same code runs on the shapes demo model (its three last conv stages)
//! and four of its test images, so it needs no download. Writes `cams.png` (one row per image:
//! input, then one overlay per layer) into DIR (default `out/examples/resnet_attention/`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use cnnvis::model::preprocess::load_image;
use cnnvis::render::output::{download_rgba, save_rgb, Grid};
use cnnvis::render::{images_to_unit_chw, render_overlay, Colormap};
use cnnvis::vis::cam::Cam;
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model};
use image::{imageops::FilterType, DynamicImage};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Grad-CAM through a ResNet50's stages (or the shapes demo model's).
#[derive(Parser)]
struct Args {
    /// torchvision ResNet50 weights (safetensors, from tools/export_torchvision.py).
    #[arg(requires = "images")]
    model: Option<PathBuf>,
    /// Images to explain (one GPU batch).
    images: Vec<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "out/examples/resnet_attention")]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let ctx = GpuContext::new()?;
    let (model, paths, layers) = match &args.model {
        Some(m) => (
            Model::open(&ctx, m)?,
            args.images.clone(),
            ["layer2", "layer3", "layer4"],
        ),
        None => {
            println!("no ResNet50 weights given: running on the shapes demo model instead");
            println!("  (export ResNet50 with: python tools/export_torchvision.py --arch resnet50 --pretrained --out resnet50.safetensors)");
            let data = Path::new(ROOT).join("tests/data/shapes");
            let paths = ["00.png", "03.png", "04.png", "05.png"]
                .map(|f| data.join(f))
                .to_vec();
            let model = Model::open(&ctx, Path::new(ROOT).join("models/shapes.safetensors"))?;
            (model, paths, ["features.6", "features.10", "features.14"])
        }
    };
    std::fs::create_dir_all(&args.out)?;
    let images = paths
        .iter()
        .map(load_image)
        .collect::<Result<Vec<DynamicImage>, _>>()?;
    let input = model.preprocess().upload(&ctx, &images)?;
    let [n, _, h, w] = <[usize; 4]>::try_from(input.shape())?;
    let shown = images_to_unit_chw(&ctx, &images, [h, w])?;

    // Each image's top class; one Grad-CAM per layer, Grad-CAM++ at the last.
    let t = Instant::now();
    let mut columns = Vec::new();
    let last = layers[layers.len() - 1];
    let cams = layers
        .iter()
        .map(|&l| (l.to_string(), Cam::grad_cam().layer(l)));
    for (label, cam) in cams.chain([(
        "Grad-CAM++".to_string(),
        Cam::grad_cam_plus_plus().layer(last),
    )]) {
        let maps = cam.compute(&ctx, &model, &input, &[Target::TopClass])?;
        if columns.is_empty() {
            for (p, k) in paths.iter().zip(&maps.targets) {
                let name = model
                    .classes()
                    .and_then(|c| c.get(*k as usize))
                    .map_or(String::new(), |s| format!(" ({s})"));
                println!("  {}: top class {k}{name}", p.display());
            }
        }
        let rgba = render_overlay(&ctx, &maps.cam_upsampled, &shown, Colormap::Jet, 0.5)?;
        columns.push((label, download_rgba(&ctx, &rgba)?));
    }
    println!(
        "{} maps of {n} images in {:.1} s",
        columns.len(),
        t.elapsed().as_secs_f64()
    );

    let (mut tiles, mut labels) = (Vec::new(), Vec::new());
    for (i, img) in images.iter().enumerate() {
        tiles.push(
            img.resize_exact(w as u32, h as u32, FilterType::Triangle)
                .to_rgb8(),
        );
        labels.push("input".to_string());
        for (label, overlays) in &columns {
            tiles.push(DynamicImage::ImageRgba8(overlays[i].clone()).to_rgb8());
            labels.push(label.clone());
        }
    }
    let tiles: Vec<_> = tiles
        .iter()
        .map(|t| {
            image::imageops::resize(
                t,
                t.width().max(128),
                t.height().max(128),
                FilterType::Nearest,
            )
        })
        .collect();
    let grid = Grid {
        cols: 1 + columns.len(),
        ..Grid::default()
    };
    let path = args.out.join("cams.png");
    save_rgb(&path, &grid.stitch_labeled(&tiles, &labels)?)?;
    println!("overlays -> {}", path.display());
    Ok(())
}
