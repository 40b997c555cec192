//! `cnnvis maximize`: activation maximization of classes or filters as one GPU batch, written
//! as a labelled grid, optionally an animated GIF of the optimization and the raw tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use image::{imageops, Rgb, RgbImage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cnnvis::render::font::draw_text;
use cnnvis::render::output::{save_rgb, GifWriter, Grid};
use cnnvis::vis::maximize::{deprocess, Maximize, Maximized, Optimizer, Parameterization};
use cnnvis::vis::optim::{Adam, Rmsprop};
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model};

use crate::progress::{create_parent, say};
use crate::{open_weights, CliResult, ModelOptions};

/// At most this many frames in `--gif`.
const MAX_GIF_FRAMES: usize = 50;
/// How long each GIF frame shows, in milliseconds.
const GIF_DELAY_MS: u32 = 100;
/// Tiles smaller than this (shorter side, pixels) are enlarged by an integer factor.
const MIN_TILE: usize = 96;
/// Longest `--filters` list accepted (a guard against `0..4000000000`).
const MAX_FILTERS: usize = 65536;

/// `cnnvis maximize` options.
#[derive(Args)]
pub struct MaximizeArgs {
    /// The weights file (safetensors).
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    #[command(flatten)]
    options: ModelOptions,
    /// Class(es) to maximize (their logits), one image each; repeat or give a comma list.
    #[arg(
        long = "class",
        value_name = "K",
        value_delimiter = ',',
        required_unless_present = "layer",
        conflicts_with = "layer"
    )]
    classes: Vec<usize>,
    /// Layer (module path) whose filters to maximize; without --filters, the whole layer's
    /// mean activation (one image).
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// Filters (channels) of --layer, one image each: a range `0..64` (end exclusive),
    /// `0..=63`, `..64`, or a comma list `3,7,9` (ranges and numbers may mix).
    #[arg(long, value_name = "RANGE", requires = "layer", value_parser = parse_filters)]
    filters: Option<Filters>,
    /// Starting settings: keras-vis's (RMSProp, pixels, TV and Lp penalties, 200 iterations)
    /// or Lucid's (Adam, Fourier, jitter/rotate/scale/pad, no penalties, 512 iterations).
    /// Every other option overrides the preset.
    #[arg(long, value_enum, default_value_t = Preset::Keras)]
    preset: Preset,
    /// Optimization steps [preset: keras 200, lucid 512].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    iterations: Option<u32>,
    /// The update rule [preset: keras rmsprop, lucid adam].
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// Learning rate of the update rule [default: rmsprop 1, adam 0.05].
    #[arg(long, value_name = "X")]
    lr: Option<f32>,
    /// Total-variation weight, keras-vis's convention [preset: keras 10, lucid 0].
    #[arg(long, value_name = "W")]
    tv: Option<f32>,
    /// Total-variation β [default: 2].
    #[arg(long, value_name = "B")]
    tv_beta: Option<f32>,
    /// Lp-norm weight, keras-vis's convention [preset: keras 10, lucid 0].
    #[arg(long, value_name = "W")]
    lp: Option<f32>,
    /// The p of the Lp norm [default: 6].
    #[arg(long, value_name = "P")]
    p: Option<f32>,
    /// Random shift of up to PX pixels each iteration [preset: keras 0, lucid 8].
    #[arg(long, value_name = "PX")]
    jitter: Option<usize>,
    /// Random rotation of up to ±DEG degrees each iteration [preset: keras 0, lucid 5].
    #[arg(long, value_name = "DEG")]
    rotate: Option<f32>,
    /// Random zoom in [LO, HI] each iteration [preset: keras 1,1, lucid 0.95,1.05].
    #[arg(long, value_name = "LO,HI", value_parser = parse_scale)]
    scale: Option<[f32; 2]>,
    /// Constant padding of PX pixels before the other transforms [preset: keras 0, lucid 12].
    #[arg(long, value_name = "PX")]
    pad: Option<usize>,
    /// Lucid's redirected ReLU gradient, so filters that are zero on the seed noise can still
    /// be maximized: true or false [preset: keras false, lucid true].
    #[arg(long, value_name = "BOOL")]
    redirect_relu: Option<bool>,
    /// What is optimized: the pixels, or Lucid's Fourier spectrum with decorrelated colour
    /// [preset: keras pixel, lucid fft].
    #[arg(long = "param", value_enum)]
    param: Option<ParamArg>,
    /// Image size, S or HxW (default: the model's input size).
    #[arg(long, value_name = "S|HxW", value_parser = crate::parse_size)]
    size: Option<[usize; 2]>,
    /// Seed of the initial noise and of the random transforms.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// The grid of all images (PNG, JPEG or GIF), deprocessed as keras-vis's
    /// deprocess_input and labelled.
    #[arg(long, value_name = "GRID.png")]
    out: PathBuf,
    /// Also write an animated GIF of the optimization (at most 50 frames of the grid).
    /// Missing folders of --out, --gif and --raw are created.
    #[arg(long, value_name = "PROGRESS.gif")]
    gif: Option<PathBuf>,
    /// Also write `images` [N,C,H,W] (model-input space), `losses` [iterations,N], `objective`
    /// [N] and `target` [N] (class or filter index, -1 for a layer mean) as safetensors.
    #[arg(long, value_name = "RAW.safetensors")]
    raw: Option<PathBuf>,
    /// Enlarge each tile of the grid and GIF by this integer factor (default: enough to make
    /// tiles at least 96 pixels).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    zoom: Option<u32>,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

/// Starting settings.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// keras-vis's `visualize_activation`.
    Keras,
    /// Lucid's render_vis.
    Lucid,
}

/// Update rules on the command line.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// keras-vis's RMSProp on RMS-normalized gradients.
    Rmsprop,
    /// Adam.
    Adam,
}

/// Parameterizations on the command line.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParamArg {
    /// Pixel space.
    Pixel,
    /// Lucid's Fourier parameterization.
    Fft,
}

/// The channels `--filters` names, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filters(pub Vec<usize>);

/// Parses `--filters`: comma-separated items, each `N`, `A..B` (end exclusive), `A..=B` or
/// `..B`/`..=B` (from 0). Ranges must be non-empty; the whole list at most [`MAX_FILTERS`].
pub fn parse_filters(s: &str) -> Result<Filters, String> {
    let num = |t: &str, item: &str| {
        t.trim().parse::<usize>().map_err(|_| {
            format!("`{item}` is not a filter index or a range like 0..64 (end exclusive)")
        })
    };
    let mut out = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "`{s}` has an empty item; write e.g. 0..64 or 3,7,9"
            ));
        }
        let (lo, hi) = match item.split_once("..") {
            None => {
                let v = num(item, item)?;
                (v, v + 1)
            }
            Some((a, b)) => {
                let lo = if a.trim().is_empty() {
                    0
                } else {
                    num(a, item)?
                };
                let (b, inclusive) = match b.strip_prefix('=') {
                    Some(b) => (b, true),
                    None => (b, false),
                };
                if b.trim().is_empty() {
                    return Err(format!(
                        "range `{item}` has no end; write e.g. 0..64 (end exclusive)"
                    ));
                }
                let end = num(b, item)?;
                let hi = if inclusive {
                    end.checked_add(1)
                        .ok_or_else(|| format!("range `{item}` is too long"))?
                } else {
                    end
                };
                if hi <= lo {
                    return Err(format!(
                        "range `{item}` is empty (the end is exclusive: 0..4 is 0, 1, 2, 3)"
                    ));
                }
                (lo, hi)
            }
        };
        if hi - lo > MAX_FILTERS - out.len() {
            return Err(format!("`{s}` names more than {MAX_FILTERS} filters"));
        }
        out.extend(lo..hi);
    }
    Ok(Filters(out))
}

/// Parses `--scale LO,HI` (or one value for both): positive, LO ≤ HI.
fn parse_scale(s: &str) -> Result<[f32; 2], String> {
    let bad = || format!("`{s}` is not a zoom range like 0.95,1.05 (0 < LO <= HI)");
    let num = |t: &str| t.trim().parse::<f32>().map_err(|_| bad());
    let [lo, hi] = match s.split_once(',') {
        Some((a, b)) => [num(a)?, num(b)?],
        None => {
            let v = num(s)?;
            [v, v]
        }
    };
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
        return Err(bad());
    }
    Ok([lo, hi])
}

/// The preset's regularizer settings `(tv weight, tv β, lp weight, p)`, as the library's
/// `Maximize::new()` and `Maximize::lucid()` set them (needed when only one of a pair is
/// given on the command line).
fn preset_regularizers(preset: Preset) -> (f32, f32, f32, f32) {
    match preset {
        Preset::Keras => (10.0, 2.0, 10.0, 6.0),
        Preset::Lucid => (0.0, 2.0, 0.0, 6.0),
    }
}

/// The preset's update rule and parameterization.
fn preset_choices(preset: Preset) -> (OptimizerArg, ParamArg) {
    match preset {
        Preset::Keras => (OptimizerArg::Rmsprop, ParamArg::Pixel),
        Preset::Lucid => (OptimizerArg::Adam, ParamArg::Fft),
    }
}

/// Checks a number option: finite and, where `non_negative`, not negative.
fn check_number(name: &str, v: Option<f32>, non_negative: bool) -> Result<(), String> {
    match v {
        Some(x) if !x.is_finite() || (non_negative && x < 0.0) => Err(format!(
            "--{name} {x}: expected a finite{} number",
            if non_negative { " non-negative" } else { "" }
        )),
        _ => Ok(()),
    }
}

/// The run's settings from the options.
fn settings(args: &MaximizeArgs) -> Result<Maximize, String> {
    check_number("lr", args.lr, true)?;
    check_number("tv", args.tv, false)?;
    check_number("tv-beta", args.tv_beta, true)?;
    check_number("lp", args.lp, false)?;
    check_number("p", args.p, true)?;
    check_number("rotate", args.rotate, true)?;
    if let Some(lr) = args.lr {
        if lr == 0.0 {
            return Err("--lr 0 would not move the image".into());
        }
    }
    let mut m = match args.preset {
        Preset::Keras => Maximize::new(),
        Preset::Lucid => Maximize::lucid(),
    }
    .seed(args.seed);
    let (preset_opt, preset_param) = preset_choices(args.preset);
    if let Some(n) = args.iterations {
        m = m.iterations(n as usize);
    }
    let opt = args.optimizer.unwrap_or(preset_opt);
    if opt != preset_opt || args.lr.is_some() {
        m = m.optimizer(match opt {
            OptimizerArg::Rmsprop => Optimizer::KerasRmsprop(Rmsprop {
                lr: args.lr.unwrap_or(Rmsprop::default().lr),
                ..Rmsprop::default()
            }),
            OptimizerArg::Adam => Optimizer::Adam(Adam {
                lr: args.lr.unwrap_or(Adam::default().lr),
                ..Adam::default()
            }),
        });
    }
    if let Some(p) = args.param {
        if p != preset_param {
            m = m.parameterization(match p {
                ParamArg::Pixel => Parameterization::Pixel,
                ParamArg::Fft => Parameterization::Fourier { decay_power: 1.0 },
            });
        }
    }
    let (tv_w, tv_beta, lp_w, lp_p) = preset_regularizers(args.preset);
    if args.tv.is_some() || args.tv_beta.is_some() {
        m = m.total_variation(args.tv.unwrap_or(tv_w), args.tv_beta.unwrap_or(tv_beta));
    }
    if args.lp.is_some() || args.p.is_some() {
        m = m.lp_norm(args.lp.unwrap_or(lp_w), args.p.unwrap_or(lp_p));
    }
    if let Some(j) = args.jitter {
        m = m.jitter(j);
    }
    if let Some(r) = args.rotate {
        m = m.rotate(r);
    }
    if let Some([lo, hi]) = args.scale {
        m = m.scale(lo, hi);
    }
    if let Some(r) = args.redirect_relu {
        m = m.redirect_relu(r);
    }
    if let Some(p) = args.pad {
        m = m.pad(p);
    }
    if let Some([h, w]) = args.size {
        m = m.size(h, w);
    }
    Ok(m)
}

/// Fails early (before the GPU work) on an output whose extension we cannot write.
fn check_output(path: &Path, allowed: &[&str], what: &str) -> Result<(), String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !ext.as_deref().is_some_and(|e| allowed.contains(&e)) {
        return Err(format!(
            "{what} {}: expected a .{} file",
            path.display(),
            allowed.join(" / .")
        ));
    }
    Ok(())
}

/// Per-image targets and their labels.
fn targets(args: &MaximizeArgs, model: &Model) -> (Vec<Target>, Vec<String>) {
    if let Some(layer) = &args.layer {
        match &args.filters {
            Some(Filters(channels)) => channels
                .iter()
                .map(|&channel| {
                    (
                        Target::Filter {
                            layer: layer.clone(),
                            channel,
                        },
                        format!("{layer}:{channel}"),
                    )
                })
                .unzip(),
            None => (
                vec![Target::LayerMean {
                    layer: layer.clone(),
                }],
                vec![format!("{layer} mean")],
            ),
        }
    } else {
        let names = model.classes();
        args.classes
            .iter()
            .map(|&k| {
                let label = names
                    .and_then(|n| n.get(k))
                    .cloned()
                    .unwrap_or_else(|| format!("class {k}"));
                (Target::Class(k), label)
            })
            .unzip()
    }
}

/// `[N, C, H, W]` values in [0, 1] as RGB images (one channel: grey; more than three: the
/// first three), each enlarged `zoom` times (nearest neighbour).
fn to_rgb(data: &[f32], shape: [usize; 4], zoom: u32) -> Vec<RgbImage> {
    let [n, c, h, w] = shape;
    let plane = h * w;
    (0..n)
        .map(|i| {
            let img = &data[i * c * plane..(i + 1) * c * plane];
            let rgb = RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let p = y as usize * w + x as usize;
                let px = |ch: usize| {
                    (img[ch.min(c - 1) * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8
                };
                Rgb([px(0), px(1), px(2)])
            });
            if zoom > 1 {
                imageops::resize(
                    &rgb,
                    w as u32 * zoom,
                    h as u32 * zoom,
                    imageops::FilterType::Nearest,
                )
            } else {
                rgb
            }
        })
        .collect()
}

/// The labelled grid of model-input-space images `[N, C, H, W]`.
pub(crate) fn grid_image(
    data: &[f32],
    shape: [usize; 4],
    labels: &[String],
    zoom: u32,
) -> Result<RgbImage, Box<dyn std::error::Error>> {
    let tiles = to_rgb(&deprocess(data, shape), shape, zoom);
    let grid = Grid {
        cols: (shape[0] as f64).sqrt().ceil().max(1.0) as usize,
        ..Grid::default()
    };
    Ok(grid.stitch_labeled(&tiles, labels)?)
}

/// A GIF frame: the grid with a `step i` caption strip above it.
pub(crate) fn caption(grid: &RgbImage, text: &str) -> RgbImage {
    let scale = 1;
    let strip = cnnvis::render::font::text_height(scale) + 4;
    let mut out = RgbImage::from_pixel(grid.width(), grid.height() + strip, Rgb([0, 0, 0]));
    imageops::replace(&mut out, grid, 0, strip as i64);
    draw_text(&mut out, text, 2, 2, scale, Rgb([255, 255, 255]));
    out
}

/// The objective's value of each target on `images` (the mean activation or the logit), and
/// for classes the softmax probability.
fn evaluate(
    ctx: &GpuContext,
    model: &Model,
    targets: &[Target],
    images: &[f32],
    shape: [usize; 4],
) -> cnnvis::Result<(Vec<f32>, Vec<Option<f64>>)> {
    let plan = model.forward_plan(ctx, shape)?;
    plan.input().write(ctx, images)?;
    plan.run(ctx)?;
    let n = shape[0].max(1);
    let logits = plan.output().download(ctx)?;
    let units = logits.len() / n;
    // The targets' layer, `[N, C, ...]`.
    let (act, channels) = match targets.iter().find_map(Target::layer) {
        Some(l) => {
            let t = plan.activation(l)?;
            (
                t.download(ctx)?,
                t.shape().get(1).copied().unwrap_or(1).max(1),
            )
        }
        None => (Vec::new(), 1),
    };
    let per = act.len() / n;
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    let mut values = Vec::with_capacity(n);
    let mut probs = Vec::with_capacity(n);
    for (i, t) in targets.iter().enumerate() {
        let row = &logits[i * units..(i + 1) * units];
        let img = &act[i * per..(i + 1) * per];
        let (v, p) = match t {
            Target::Class(k) => (row[*k], Some(crate::softmax(row)[*k])),
            Target::Filter { channel, .. } => {
                let plane = per / channels;
                (
                    mean(&img[channel * plane..(channel + 1) * plane]) as f32,
                    None,
                )
            }
            Target::LayerMean { .. } => (mean(img) as f32, None),
            _ => (f32::NAN, None),
        };
        values.push(v);
        probs.push(p);
    }
    Ok((values, probs))
}

/// Writes the raw tensors.
fn write_raw(
    path: &Path,
    m: &Maximized,
    images: &[f32],
    shape: [usize; 4],
    objective: &[f32],
    target: &[i64],
    meta: HashMap<String, String>,
) -> CliResult {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let n = shape[0];
    let target_bytes: Vec<u8> = target.iter().flat_map(|t| t.to_le_bytes()).collect();
    let views = vec![
        (
            "images",
            TensorView::new(Dtype::F32, shape.to_vec(), bytemuck::cast_slice(images))?,
        ),
        (
            "losses",
            TensorView::new(
                Dtype::F32,
                vec![m.iterations, n],
                bytemuck::cast_slice(&m.losses),
            )?,
        ),
        (
            "objective",
            TensorView::new(Dtype::F32, vec![n], bytemuck::cast_slice(objective))?,
        ),
        (
            "target",
            TensorView::new(Dtype::I64, vec![n], &target_bytes)?,
        ),
    ];
    safetensors::serialize_to_file(views, Some(meta), path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Iterations between GIF frames. The library records after iteration 1 and every `k`; with
/// the best images as the closing frame, that is at most [`MAX_GIF_FRAMES`] frames.
fn gif_every(iterations: usize) -> usize {
    iterations.div_ceil(MAX_GIF_FRAMES - 2).max(1)
}

/// Frames [`gif_every`] gives (the closing frame included).
#[cfg(test)]
fn gif_frames(iterations: usize) -> usize {
    let k = gif_every(iterations);
    let recorded = (1..=iterations).filter(|d| d % k == 0 || *d == 1).count();
    recorded + 1
}

/// `cnnvis maximize`.
pub fn maximize(args: &MaximizeArgs) -> CliResult {
    crate::progress::set_quiet(args.quiet);
    check_output(&args.out, &["png", "jpg", "jpeg", "gif"], "--out")?;
    if let Some(g) = &args.gif {
        check_output(g, &["gif"], "--gif")?;
    }
    if let Some(r) = &args.raw {
        check_output(r, &["safetensors"], "--raw")?;
    }
    let mut method = settings(args)?;
    let (weights, opts) = open_weights(&args.model, &args.options)?;
    let ctx = GpuContext::new()?;
    let model = Model::from_weights(&ctx, &weights, &opts)?;
    let (targets, labels) = targets(args, &model);
    // Resolve the targets now: an unknown layer or an index out of range fails before the
    // optimization, with the library's message.
    cnnvis::vis::Objective::new(&model, &targets, targets.len())?;

    // The preset's count, set explicitly so the progress bar and the GIF's spacing agree
    // with the run.
    let total = args.iterations.map_or(
        match args.preset {
            Preset::Keras => 200,
            Preset::Lucid => 512,
        },
        |n| n as usize,
    );
    method = method.iterations(total);
    if args.gif.is_some() {
        method = method.record_every(gif_every(total));
    }
    let bar = if crate::progress::interactive() {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} iterations  {msg}",
        ) {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };
    let every = if bar.is_some() {
        (total / 100).max(1)
    } else {
        0
    };
    let start = Instant::now();
    let result = method.compute_with_progress(&ctx, &model, &targets, every, |i, losses| {
        if let Some(bar) = &bar {
            let mean = losses.iter().map(|&v| v as f64).sum::<f64>() / losses.len().max(1) as f64;
            bar.set_position(i as u64);
            bar.set_message(format!("mean loss {mean:.4}"));
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let m = result?;
    let seconds = start.elapsed().as_secs_f64();
    let shape: [usize; 4] = m.shape;
    let n = shape[0];
    let images = m.images.download(&ctx)?;
    let zoom = args
        .zoom
        .unwrap_or_else(|| MIN_TILE.div_ceil(shape[2].min(shape[3]).max(1)).max(1) as u32);

    // Outputs.
    let grid = grid_image(&images, shape, &labels, zoom)?;
    create_parent(&args.out)?;
    save_rgb(&args.out, &grid)?;
    let (objective, probs) = evaluate(&ctx, &model, &targets, &images, shape)?;
    if let Some(raw) = &args.raw {
        let target: Vec<i64> = targets
            .iter()
            .map(|t| match t {
                Target::Class(k) => *k as i64,
                Target::Filter { channel, .. } => *channel as i64,
                _ => -1,
            })
            .collect();
        let layer = targets
            .iter()
            .find_map(Target::layer)
            .unwrap_or(model.output_layer())
            .to_string();
        let meta = HashMap::from([
            ("arch".to_string(), model.arch().to_string()),
            ("layer".to_string(), layer),
            (
                "labels".to_string(),
                serde_json::Value::from(labels.clone()).to_string(),
            ),
            ("iterations".to_string(), m.iterations.to_string()),
            ("seed".to_string(), args.seed.to_string()),
            ("settings".to_string(), format!("{method:?}")),
        ]);
        create_parent(raw)?;
        write_raw(raw, &m, &images, shape, &objective, &target, meta)?;
    }
    let mut gif_frames = 0;
    if let Some(path) = &args.gif {
        create_parent(path)?;
        let mut gif = GifWriter::create(path, GIF_DELAY_MS)?;
        for f in &m.frames {
            let g = grid_image(&f.images, shape, &labels, zoom)?;
            gif.add_frame(&caption(&g, &format!("step {}", f.iteration)))?;
        }
        // The kept best images close the animation.
        gif.add_frame(&caption(&grid, "best"))?;
        gif_frames = gif.finish()?;
    }

    // Summary.
    let [_, c, h, w] = shape;
    say!(
        "{n} image{} of {c}x{h}x{w}, {} iterations in {seconds:.2} s",
        if n == 1 { "" } else { "s" },
        m.iterations
    );
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for i in 0..n {
        let col: Vec<f32> = (0..m.iterations).map(|t| m.losses[t * n + i]).collect();
        let last = col.last().copied().unwrap_or(f32::NAN);
        let (best_at, best) = col.iter().enumerate().fold(
            (0, f32::INFINITY),
            |(bi, bv), (t, &v)| {
                if v < bv {
                    (t, v)
                } else {
                    (bi, bv)
                }
            },
        );
        let value = match &targets[i] {
            Target::Class(_) => format!(
                "logit {:>9.4}  p = {:.4}",
                objective[i],
                probs[i].unwrap_or(f64::NAN)
            ),
            _ => format!("mean activation {:>9.4}", objective[i]),
        };
        say!(
            "  {:<label_w$}  {value}  loss {last:.4} (best {best:.4} at iteration {})",
            labels[i],
            best_at + 1
        );
    }
    say!("grid -> {}", args.out.display());
    if let Some(g) = &args.gif {
        say!("animation ({gif_frames} frames) -> {}", g.display());
    }
    if let Some(r) = &args.raw {
        say!("raw images and losses -> {}", r.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_ranges_and_lists() {
        assert_eq!(parse_filters("0..4"), Ok(Filters(vec![0, 1, 2, 3])));
        assert_eq!(parse_filters("2..=4"), Ok(Filters(vec![2, 3, 4])));
        assert_eq!(parse_filters("..3"), Ok(Filters(vec![0, 1, 2])));
        assert_eq!(parse_filters("3,7,9"), Ok(Filters(vec![3, 7, 9])));
        assert_eq!(parse_filters(" 5 "), Ok(Filters(vec![5])));
        assert_eq!(parse_filters("0..2, 8"), Ok(Filters(vec![0, 1, 8])));
        assert_eq!(parse_filters("0..64").map(|f| f.0.len()), Ok(64));
    }

    #[test]
    fn bad_filter_ranges_are_explained() {
        for (s, why) in [
            ("5..2", "is empty"),
            ("3..3", "is empty"),
            ("0..", "has no end"),
            ("a..4", "not a filter index"),
            ("1,,2", "empty item"),
            ("-1", "not a filter index"),
            ("0..4000000000", "more than"),
            ("0...4", "not a filter index"),
        ] {
            let e = parse_filters(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn scales() {
        assert_eq!(parse_scale("0.9,1.1"), Ok([0.9, 1.1]));
        assert_eq!(parse_scale("1"), Ok([1.0, 1.0]));
        assert!(parse_scale("1.1,0.9").is_err());
        assert!(parse_scale("0,1").is_err());
        assert!(parse_scale("x").is_err());
    }

    #[test]
    fn gif_frames_are_capped() {
        assert_eq!(gif_every(20), 1);
        assert_eq!(gif_frames(20), 21);
        assert_eq!(gif_every(200), 5);
        for n in [1, 2, 47, 48, 49, 50, 97, 200, 512, 10000] {
            assert!(gif_frames(n) <= MAX_GIF_FRAMES, "{n}: {}", gif_frames(n));
        }
    }
}
