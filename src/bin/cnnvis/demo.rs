//! `cnnvis demo`: what cnnvis does, in pictures, from the two demo models and six sample images
//! embedded in the binary — no download, works from any directory, under a minute on a CPU
//! Vulkan driver.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use image::{imageops, DynamicImage, RgbImage};

use cnnvis::model::preprocess::decode_image;
use cnnvis::model::weights::Weights;
use cnnvis::model::LoadOptions;
use cnnvis::render::colormap::{images_to_unit_chw, render_overlay, Colormap};
use cnnvis::render::output::{download_rgba, save_rgb, GifWriter, Grid};
use cnnvis::vis::cam::{Cam, CamMethod};
use cnnvis::vis::maximize::Maximize;
use cnnvis::vis::saliency::Saliency;
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model, Tensor};

use crate::maps::{channel_max, normalized};
use crate::maximize::{caption, grid_image};
use crate::CliResult;

const DIGITS: &[u8] = include_bytes!("../../../models/digits.safetensors");
const SHAPES: &[u8] = include_bytes!("../../../models/shapes.safetensors");
/// One test image of each shapes class (circle, square, triangle, star, cross, ring).
const SHAPE_IMAGES: [&[u8]; 6] = [
    include_bytes!("../../../tests/data/shapes/00.png"),
    include_bytes!("../../../tests/data/shapes/01.png"),
    include_bytes!("../../../tests/data/shapes/02.png"),
    include_bytes!("../../../tests/data/shapes/03.png"),
    include_bytes!("../../../tests/data/shapes/04.png"),
    include_bytes!("../../../tests/data/shapes/05.png"),
];

/// Iterations of the class and filter images.
const CLASS_ITERATIONS: usize = 200;
const FILTER_ITERATIONS: usize = 60;
/// The digits layer whose filters are shown, and how many.
const FILTER_LAYER: &str = "features.10";
const FILTERS: usize = 16;

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the pictures and index.html (created if needed).
    #[arg(long, value_name = "DIR", default_value = "out")]
    out: PathBuf,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

/// One picture of the demo: file name and caption.
struct Picture {
    file: String,
    title: String,
    caption: String,
}

/// A progress spinner per stage on a terminal; plain lines otherwise.
struct Stages {
    quiet: bool,
    start: Instant,
}

impl Stages {
    fn run<T>(&self, name: &str, f: impl FnOnce() -> T) -> T {
        let bar = crate::progress::spinner(name);
        let t = Instant::now();
        let out = f();
        bar.finish_and_clear();
        if !self.quiet {
            println!("{name:<44} {:>6.1} s", t.elapsed().as_secs_f64());
        }
        out
    }
}

/// `cnnvis demo`.
pub fn demo(args: &DemoArgs) -> CliResult {
    crate::progress::set_quiet(args.quiet);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let stages = Stages {
        quiet: args.quiet,
        start: Instant::now(),
    };
    let ctx = GpuContext::new()?;
    if !args.quiet {
        println!("adapter: {}", ctx.adapter());
    }
    let digits = Model::from_weights(
        &ctx,
        &Weights::from_static(DIGITS)?,
        &LoadOptions::default(),
    )?;
    let shapes = Model::from_weights(
        &ctx,
        &Weights::from_static(SHAPES)?,
        &LoadOptions::default(),
    )?;
    let mut pictures = Vec::new();
    let out = args.out.as_path();

    stages.run("class images of the digits model (10 × 200 steps)", || {
        digit_classes(&ctx, &digits, out, &mut pictures)
    })?;
    stages.run("16 filters of the digits model's last conv", || {
        digit_filters(&ctx, &digits, out, &mut pictures)
    })?;
    stages.run("saliency and Grad-CAM on the shapes model", || {
        shape_attention(&ctx, &shapes, out, &mut pictures)
    })?;
    let index = out.join("index.html");
    std::fs::write(&index, index_html(&pictures))
        .map_err(|e| format!("cannot write {}: {e}", index.display()))?;
    if !args.quiet {
        println!("wrote:");
        for p in &pictures {
            println!("  {}", out.join(&p.file).display());
        }
        println!("  {}", index.display());
        println!(
            "done in {:.1} s; open {} in a browser",
            stages.start.elapsed().as_secs_f64(),
            index.display()
        );
    }
    Ok(())
}

fn save(path: &Path, img: &RgbImage) -> CliResult {
    save_rgb(path, img).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// keras-vis's first picture for every class: the input that maximizes each digit's logit,
/// and the GIF of the optimization.
fn digit_classes(
    ctx: &GpuContext,
    model: &Model,
    out: &Path,
    pictures: &mut Vec<Picture>,
) -> CliResult {
    let targets: Vec<Target> = (0..10).map(Target::Class).collect();
    let labels: Vec<String> = (0..10).map(|k| k.to_string()).collect();
    let m = Maximize::new()
        .iterations(CLASS_ITERATIONS)
        .total_variation(0.0, 2.0)
        .record_every(5)
        .compute(ctx, model, &targets)?;
    let images = m.images.download(ctx)?;
    let grid = grid_image(&images, m.shape, &labels, 4)?;
    save(&out.join("digits_classes.png"), &grid)?;
    let probs = model.predict(ctx, &images, m.shape)?;
    let worst = probs
        .iter()
        .enumerate()
        .map(|(k, l)| cnnvis::vis::target::softmax(l)[k])
        .fold(1.0f64, f64::min);
    pictures.push(Picture {
        file: "digits_classes.png".into(),
        title: "Activation maximization: each digit class".into(),
        caption: format!(
            "The input that maximizes each class logit of the digits model: keras-vis's \
             RMSProp rule on pixels with its Lp penalty, {CLASS_ITERATIONS} steps, all ten \
             classes as one batch on the GPU. The model gives each image its own class with \
             probability ≥ {worst:.3}."
        ),
    });
    let gif_path = out.join("digits_classes.gif");
    let mut gif = GifWriter::create(&gif_path, 80)
        .map_err(|e| format!("cannot write {}: {e}", gif_path.display()))?;
    for f in &m.frames {
        let g = grid_image(&f.images, m.shape, &labels, 2)?;
        gif.add_frame(&caption(&g, &format!("step {}", f.iteration)))?;
    }
    gif.finish()?;
    pictures.push(Picture {
        file: "digits_classes.gif".into(),
        title: "The optimization, step by step".into(),
        caption: "keras-vis's GifGenerator picture: the ten class images every 5 steps.".into(),
    });
    Ok(())
}

/// The filters of one conv layer, optimized together, with Lucid's redirected ReLU gradient so
/// that filters silent on the noise move too.
fn digit_filters(
    ctx: &GpuContext,
    model: &Model,
    out: &Path,
    pictures: &mut Vec<Picture>,
) -> CliResult {
    let targets: Vec<Target> = (0..FILTERS)
        .map(|channel| Target::Filter {
            layer: FILTER_LAYER.into(),
            channel,
        })
        .collect();
    let labels: Vec<String> = (0..FILTERS).map(|k| format!("filter {k}")).collect();
    let m = Maximize::new()
        .iterations(FILTER_ITERATIONS)
        .total_variation(0.0, 2.0)
        .redirect_relu(true)
        .compute(ctx, model, &targets)?;
    let grid = grid_image(&m.images.download(ctx)?, m.shape, &labels, 4)?;
    save(&out.join("digits_filters.png"), &grid)?;
    pictures.push(Picture {
        file: "digits_filters.png".into(),
        title: format!("What excites the filters of `{FILTER_LAYER}`"),
        caption: format!(
            "Filters 0–{} of the digits model's last ReLU, {FILTER_ITERATIONS} steps, one batch.",
            FILTERS - 1
        ),
    });
    Ok(())
}

/// RGBA maps as RGB tiles, enlarged for display.
fn tiles(ctx: &GpuContext, rgba: &Tensor, zoom: u32) -> Result<Vec<RgbImage>, cnnvis::Error> {
    Ok(download_rgba(ctx, rgba)?
        .into_iter()
        .map(|img| {
            let rgb = DynamicImage::ImageRgba8(img).to_rgb8();
            let (w, h) = (rgb.width() * zoom, rgb.height() * zoom);
            imageops::resize(&rgb, w, h, imageops::FilterType::Nearest)
        })
        .collect())
}

/// Saliency and CAM overlays on one image of each shapes class.
fn shape_attention(
    ctx: &GpuContext,
    model: &Model,
    out: &Path,
    pictures: &mut Vec<Picture>,
) -> CliResult {
    let images = SHAPE_IMAGES
        .iter()
        .map(|b| decode_image(b))
        .collect::<Result<Vec<_>, _>>()?;
    let (x, shape) = model.preprocess().batch(&images)?;
    let input = Tensor::from_slice(ctx, &shape, &x)?;
    let targets: Vec<Target> = (0..images.len()).map(Target::Class).collect();
    let labels: Vec<String> = model
        .classes()
        .map(|c| c.to_vec())
        .unwrap_or_else(|| (0..images.len()).map(|k| k.to_string()).collect());
    let unit = images_to_unit_chw(ctx, &images, [shape[2], shape[3]])?;
    let grid = Grid {
        cols: images.len(),
        ..Grid::default()
    };
    let zoom = 2;
    let originals: Vec<RgbImage> = images
        .iter()
        .map(|i| {
            let rgb = i.to_rgb8();
            let (w, h) = (rgb.width() * zoom, rgb.height() * zoom);
            imageops::resize(&rgb, w, h, imageops::FilterType::Nearest)
        })
        .collect();
    save(
        &out.join("shapes_input.png"),
        &grid.stitch_labeled(&originals, &labels)?,
    )?;
    pictures.push(Picture {
        file: "shapes_input.png".into(),
        title: "The shapes model's sample images".into(),
        caption: "One test image per class; every map below explains the true class.".into(),
    });

    let saliency = [
        (
            "vanilla",
            Saliency::vanilla(),
            "Vanilla gradient (Simonyan et al. 2014), |∂logit/∂pixel|, max over colour channels.",
        ),
        (
            "guided",
            Saliency::guided(),
            "Guided backprop (Springenberg et al. 2015): only positive gradients through \
             positive ReLUs.",
        ),
        (
            "smoothgrad",
            Saliency::smoothgrad(),
            "SmoothGrad (Smilkov et al. 2017): the gradient averaged over 50 noisy copies.",
        ),
    ];
    for (name, method, text) in saliency {
        let maps = method.compute(ctx, model, &input, &targets)?;
        let s = maps.saliency.shape().to_vec();
        let display = if s.len() == 4 {
            let d = maps.saliency.download(ctx)?;
            Tensor::from_slice(ctx, &[s[0], s[2], s[3]], &channel_max(&d, &s))?
        } else {
            maps.saliency.clone()
        };
        let norm = normalized(ctx, &display)?;
        let rgba = render_overlay(ctx, &norm, &unit, Colormap::Jet, 0.5)?;
        let file = format!("shapes_{name}.png");
        save(
            &out.join(&file),
            &grid.stitch_labeled(&tiles(ctx, &rgba, zoom)?, &labels)?,
        )?;
        pictures.push(Picture {
            file,
            title: format!("Saliency: {name}"),
            caption: text.into(),
        });
    }
    let cams = [
        (
            "gradcam",
            CamMethod::GradCam,
            "Grad-CAM (Selvaraju et al. 2017) at the last conv layer, as pytorch-grad-cam's \
             show_cam_on_image overlays it.",
        ),
        (
            "gradcampp",
            CamMethod::GradCamPlusPlus,
            "Grad-CAM++ (Chattopadhyay et al. 2018).",
        ),
    ];
    for (name, method, text) in cams {
        let maps = Cam::new(method).compute(ctx, model, &input, &targets)?;
        let rgba = render_overlay(ctx, &maps.cam_upsampled, &unit, Colormap::Jet, 0.5)?;
        let file = format!("shapes_{name}.png");
        save(
            &out.join(&file),
            &grid.stitch_labeled(&tiles(ctx, &rgba, zoom)?, &labels)?,
        )?;
        pictures.push(Picture {
            file,
            title: format!("CAM: {}", method.name()),
            caption: text.into(),
        });
    }
    Ok(())
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "")
}

fn index_html(pictures: &[Picture]) -> String {
    let mut body = String::new();
    for p in pictures {
        body.push_str(&format!(
            "<figure>\n<h2>{}</h2>\n<img src=\"{}\" alt=\"{}\">\n<figcaption>{}</figcaption>\n</figure>\n",
            escape(&p.title),
            escape(&p.file),
            escape(&p.title),
            escape(&p.caption)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>cnnvis demo</title>\n<style>\nbody {{ font-family: sans-serif; max-width: 60em; \
         margin: 2em auto; background: #fafafa; }}\nimg {{ image-rendering: pixelated; \
         max-width: 100%; }}\nfigure {{ margin: 2em 0; }}\n</style>\n</head>\n<body>\n\
         <h1>cnnvis demo</h1>\n<p>Computed on the GPU by cnnvis's WGSL kernels from the \
         embedded demo models.</p>\n{body}</body>\n</html>\n"
    )
}
