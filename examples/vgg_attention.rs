//! Where does VGG16 look? keras-vis's `attention.ipynb` (the ouzel and the tiger): vanilla,
//! guided-backprop and SmoothGrad saliency, Grad-CAM and Grad-CAM++ at the last conv block,
//! each drawn over the image with the jet colormap.
//!
//! It needs torchvision's VGG16, exported once as safetensors (see `tools/README.md`):
//!
//! ```sh
//! python tools/export_torchvision.py --arch vgg16 --pretrained --out vgg16.safetensors
//! cargo run --release --example vgg_attention -- vgg16.safetensors ouzel.jpg [--class 20] [--out DIR]
//! ```
//!
//! Writes `attention.png` (input, then one overlay per method) into DIR (default
//! `out/examples/vgg_attention/`). Without arguments it prints these instructions and exits.

use std::path::PathBuf;
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
use image::{imageops::FilterType, DynamicImage};

/// Saliency maps and CAMs of a torchvision VGG16 for one image.
#[derive(Parser)]
struct Args {
    /// torchvision VGG16 weights (safetensors, from tools/export_torchvision.py).
    #[arg(requires = "image")]
    model: Option<PathBuf>,
    /// The image to explain.
    image: Option<PathBuf>,
    /// ImageNet class to explain (default: the image's top class; 20 is the water ouzel).
    #[arg(long)]
    class: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "out/examples/vgg_attention")]
    out: PathBuf,
}

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (Some(model_path), Some(image_path)) = (&args.model, &args.image) else {
        println!("skipping: needs user weights (torchvision's VGG16). Export them once with");
        println!("  python tools/export_torchvision.py --arch vgg16 --pretrained --out vgg16.safetensors");
        println!("(see tools/README.md), then run");
        println!("  cargo run --release --example vgg_attention -- vgg16.safetensors IMAGE");
        return Ok(());
    };
    std::fs::create_dir_all(&args.out)?;
    let ctx = GpuContext::new()?;
    let model = Model::open(&ctx, model_path)?;
    let image = load_image(image_path)?;
    let input = model
        .preprocess()
        .upload(&ctx, std::slice::from_ref(&image))?; // 224×224
    let target = [args.class.map_or(Target::TopClass, Target::Class)];

    let t = Instant::now();
    let mut columns = Vec::new();
    for (name, method) in [
        ("vanilla", Saliency::vanilla()),
        ("guided", Saliency::guided()),
        ("SmoothGrad", Saliency::smoothgrad().samples(20)),
    ] {
        let maps = method.compute(&ctx, &model, &input, &target)?;
        println!(
            "{name}: class {} in {:.1} s",
            maps.targets[0],
            t.elapsed().as_secs_f64()
        );
        columns.push((name, normalized(&ctx, &maps.saliency)?));
    }
    for (name, cam) in [
        ("Grad-CAM", Cam::grad_cam()),
        ("Grad-CAM++", Cam::grad_cam_plus_plus()),
    ] {
        let maps = cam.compute(&ctx, &model, &input, &target)?;
        println!(
            "{name} at {}: class {} in {:.1} s",
            cam.layer_for(&model)?,
            maps.targets[0],
            t.elapsed().as_secs_f64()
        );
        columns.push((name, maps.cam_upsampled));
    }

    // Jet overlays (pytorch-grad-cam's show_cam_on_image, image weight 0.5) at the input size.
    let [_, _, h, w] = <[usize; 4]>::try_from(input.shape())?;
    let shown = images_to_unit_chw(&ctx, std::slice::from_ref(&image), [h, w])?;
    let input_tile = image.resize_exact(w as u32, h as u32, FilterType::Triangle);
    let (mut tiles, mut labels) = (vec![input_tile.to_rgb8()], vec!["input".to_string()]);
    for (name, map) in &columns {
        let rgba = render_overlay(&ctx, map, &shown, Colormap::Jet, 0.5)?;
        tiles.push(DynamicImage::ImageRgba8(download_rgba(&ctx, &rgba)?.remove(0)).to_rgb8());
        labels.push(name.to_string());
    }
    let grid = Grid {
        cols: tiles.len(),
        label_scale: 2,
        ..Grid::default()
    };
    let path = args.out.join("attention.png");
    save_rgb(&path, &grid.stitch_labeled(&tiles, &labels)?)?;
    println!("overlays -> {}", path.display());
    Ok(())
}
