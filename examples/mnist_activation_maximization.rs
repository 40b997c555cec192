//! Activation maximization on the digits demo model, as keras-vis's
//! `activation_maximization.ipynb` does on MNIST: the input image that each of the ten class
//! logits likes best, the filters of one conv layer, and an animated GIF of the optimization.
//!
//! `cargo run --release --example mnist_activation_maximization [-- --out DIR]`
//!
//! Writes `classes.png` (one tile per digit), `classes.gif` (the optimization, frame by frame)
//! and `filters.png` (the first 8 filters of `features.4`) into DIR (default
//! `out/examples/mnist_activation_maximization/`).

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use cnnvis::render::font::draw_text;
use cnnvis::render::output::{save_rgb, GifWriter, Grid};
use cnnvis::vis::maximize::{deprocess, Maximize, Optimizer};
use cnnvis::vis::optim::Adam;
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model};
use image::{imageops, Rgb, RgbImage};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/digits.safetensors");
/// Each 28×28 tile is shown 4× larger.
const ZOOM: u32 = 4;

/// Model-input images `[N, 1, H, W]` as a labelled grid of `cols` columns, deprocessed as
/// keras-vis does.
fn grid(
    data: &[f32],
    shape: [usize; 4],
    labels: &[String],
    cols: usize,
) -> cnnvis::Result<RgbImage> {
    let [n, _, h, w] = shape;
    let shown = deprocess(data, shape);
    let tiles: Vec<RgbImage> = (0..n)
        .map(|i| {
            let plane = &shown[i * h * w..(i + 1) * h * w];
            let tile = RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let v = (plane[y as usize * w + x as usize] * 255.0).round() as u8;
                Rgb([v, v, v])
            });
            imageops::resize(
                &tile,
                w as u32 * ZOOM,
                h as u32 * ZOOM,
                imageops::FilterType::Nearest,
            )
        })
        .collect();
    Grid {
        cols,
        ..Grid::default()
    }
    .stitch_labeled(&tiles, labels)
}

/// Activation maximization of the digits demo model's classes and filters.
#[derive(Parser)]
struct Args {
    /// Output folder.
    #[arg(long, default_value = "out/examples/mnist_activation_maximization")]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Args::parse().out;
    std::fs::create_dir_all(&out)?;
    let ctx = GpuContext::new()?;
    let model = Model::open(&ctx, MODEL)?;
    println!("adapter: {}", ctx.adapter());

    // 1. One image per class logit: keras-vis's pixel-space objective and Lp penalty, without
    //    total variation (it flattens 28×28 images; keras-vis's own MNIST example drops it),
    //    with Adam (tf-keras-vis's and Lucid's optimizer), which needs 50 iterations here
    //    where keras-vis's RMSProp needs about 200.
    let t = Instant::now();
    let classes: Vec<Target> = (0..10).map(Target::Class).collect();
    let labels: Vec<String> = (0..10).map(|k| format!("digit {k}")).collect();
    let method = Maximize::new()
        .total_variation(0.0, 2.0)
        .optimizer(Optimizer::Adam(Adam::default()))
        .iterations(50)
        .record_every(2);
    let m = method.compute(&ctx, &model, &classes)?;
    let images = m.images.download(&ctx)?;
    save_rgb(
        out.join("classes.png"),
        &grid(&images, m.shape, &labels, 5)?,
    )?;
    println!(
        "10 class images, {} iterations in {:.1} s -> classes.png",
        m.iterations,
        t.elapsed().as_secs_f64()
    );
    // Does the model see the digit it was asked for?
    for (k, logits) in model.predict(&ctx, &images, m.shape)?.iter().enumerate() {
        let p = cnnvis::vis::target::softmax(logits);
        println!("  class image {k}: p({k}) = {:.3}", p[k]);
    }

    // 2. The optimization as a GIF: iteration 1, every 2nd, then the kept best images.
    let t = Instant::now();
    let mut gif = GifWriter::create(out.join("classes.gif"), 100)?;
    for frame in &m.frames {
        let mut g = grid(&frame.images, m.shape, &labels, 5)?;
        let caption = format!("step {}", frame.iteration);
        draw_text(&mut g, &caption, 2, 2, 1, Rgb([255, 255, 0]));
        gif.add_frame(&g)?;
    }
    gif.add_frame(&grid(&images, m.shape, &labels, 5)?)?;
    let frames = gif.finish()?;
    println!(
        "{frames} GIF frames in {:.1} s -> classes.gif",
        t.elapsed().as_secs_f64()
    );

    // 3. Filters of the second conv layer. Lucid's redirected ReLU gradient lets filters that
    //    are silent on the seed noise move too.
    let t = Instant::now();
    let layer = "features.4";
    let filters: Vec<Target> = (0..8)
        .map(|channel| Target::Filter {
            layer: layer.into(),
            channel,
        })
        .collect();
    let labels: Vec<String> = (0..8).map(|c| format!("{layer}:{c}")).collect();
    let method = Maximize::new()
        .total_variation(0.0, 2.0)
        .optimizer(Optimizer::Adam(Adam::default()))
        .iterations(50)
        .redirect_relu(true);
    let f = method.compute(&ctx, &model, &filters)?;
    save_rgb(
        out.join("filters.png"),
        &grid(&f.images.download(&ctx)?, f.shape, &labels, 8)?,
    )?;
    println!(
        "8 filters of {layer} in {:.1} s -> filters.png",
        t.elapsed().as_secs_f64()
    );
    println!("written to {}", out.display());
    Ok(())
}
