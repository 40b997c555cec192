//! What does VGG16 want to see? keras-vis's `activation_maximization.ipynb` on ImageNet: the
//! input that maximizes a few class logits (keras-vis's settings plus its Jitter(16)), and the
//! filters of the last conv layer rendered the Lucid way (Fourier parameterization, Adam,
//! random transforms, redirected ReLU gradient).
//!
//! It needs torchvision's VGG16, exported once as safetensors (see `tools/README.md`):
//!
//! ```sh
//! python tools/export_torchvision.py --arch vgg16 --pretrained --out vgg16.safetensors
//! cargo run --release --example vgg_activation_maximization -- vgg16.safetensors [--out DIR]
//! ```
//!
//! Writes `classes.png` and `filters.png` into DIR (default
//! `out/examples/vgg_activation_maximization/`). On a CPU Vulkan driver (lavapipe) VGG16 is
//! slow, and Lucid's Fourier parameterization at 224×224 takes seconds per iteration: lower
//! `--iterations` for a first look. Without arguments it prints these instructions and exits.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use cnnvis::render::output::{save_rgb, Grid};
use cnnvis::vis::maximize::{deprocess, Maximize, Maximized};
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model};
use image::{Rgb, RgbImage};

/// Activation maximization of a torchvision VGG16's classes and filters.
#[derive(Parser)]
struct Args {
    /// torchvision VGG16 weights (safetensors, from tools/export_torchvision.py).
    model: Option<PathBuf>,
    /// ImageNet classes to maximize: water ouzel, flamingo, tiger, giant panda.
    #[arg(long, value_delimiter = ',', default_value = "20,130,292,388")]
    class: Vec<usize>,
    /// Conv layer whose first --filters filters are rendered (block5_conv3).
    #[arg(long, default_value = "features.28")]
    layer: String,
    /// How many filters of --layer.
    #[arg(long, default_value_t = 4)]
    filters: usize,
    /// Optimization steps of each run.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Output folder.
    #[arg(long, default_value = "out/examples/vgg_activation_maximization")]
    out: PathBuf,
}

/// The best images of a run as a labelled grid, deprocessed as keras-vis does.
fn grid(ctx: &GpuContext, m: &Maximized, labels: &[String]) -> cnnvis::Result<RgbImage> {
    let [n, c, h, w] = m.shape;
    let shown = deprocess(&m.images.download(ctx)?, m.shape);
    let tiles: Vec<RgbImage> = (0..n)
        .map(|i| {
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let px = |ch: usize| {
                    let v = shown[((i * c + ch.min(c - 1)) * h + y as usize) * w + x as usize];
                    (v * 255.0).round() as u8
                };
                Rgb([px(0), px(1), px(2)])
            })
        })
        .collect();
    Grid {
        cols: n,
        label_scale: 2,
        ..Grid::default()
    }
    .stitch_labeled(&tiles, labels)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let Some(model_path) = &args.model else {
        println!("skipping: needs user weights (torchvision's VGG16). Export them once with");
        println!("  python tools/export_torchvision.py --arch vgg16 --pretrained --out vgg16.safetensors");
        println!("(see tools/README.md), then run");
        println!(
            "  cargo run --release --example vgg_activation_maximization -- vgg16.safetensors"
        );
        return Ok(());
    };
    std::fs::create_dir_all(&args.out)?;
    let ctx = GpuContext::new()?;
    let model = Model::open(&ctx, model_path)?;

    // Class logits, keras-vis's visualize_activation with Jitter(16), one batch.
    let t = Instant::now();
    let targets: Vec<Target> = args.class.iter().map(|&k| Target::Class(k)).collect();
    let labels: Vec<String> = args.class.iter().map(|k| format!("class {k}")).collect();
    let m = Maximize::new()
        .jitter(16)
        .iterations(args.iterations)
        .compute(&ctx, &model, &targets)?;
    save_rgb(args.out.join("classes.png"), &grid(&ctx, &m, &labels)?)?;
    println!(
        "{} classes in {:.1} s -> classes.png",
        targets.len(),
        t.elapsed().as_secs_f64()
    );

    // Filters, Lucid's way.
    let t = Instant::now();
    let targets: Vec<Target> = (0..args.filters)
        .map(|channel| Target::Filter {
            layer: args.layer.clone(),
            channel,
        })
        .collect();
    let labels: Vec<String> = (0..args.filters)
        .map(|c| format!("{}:{c}", args.layer))
        .collect();
    let m = Maximize::lucid()
        .iterations(args.iterations)
        .compute(&ctx, &model, &targets)?;
    save_rgb(args.out.join("filters.png"), &grid(&ctx, &m, &labels)?)?;
    println!(
        "{} filters of {} in {:.1} s -> filters.png",
        args.filters,
        args.layer,
        t.elapsed().as_secs_f64()
    );
    println!("written to {}", args.out.display());
    Ok(())
}
