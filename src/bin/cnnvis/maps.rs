//! `cnnvis saliency` and `cnnvis cam`: attention maps for images and folders of images, run in
//! GPU batches, written as heatmaps or overlays (one file per image) and optionally as raw
//! tensors (all batches in one file). Files that cannot be used are reported and skipped; the
//! run then ends with an error. Also the batch loader `predict` and `eval` share.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use image::{DynamicImage, RgbImage};

use indicatif::ProgressBar;

use cnnvis::model::preprocess::{load_image, Preprocess};
use cnnvis::render::colormap::{images_to_unit_chw, render_colormap, render_overlay, Colormap};
use cnnvis::render::output::{download_rgba, save_image};
use cnnvis::vis::cam::{upsample_normalize, Cam, CamMethod};
use cnnvis::vis::saliency::{Baseline, GradModifier, IntegrationRule, Saliency};
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model, Tensor};

use crate::progress::{create_parent, say};
use crate::{open_weights, CliResult, ModelOptions};

/// Options every map command shares.
#[derive(Args)]
pub struct MapArgs {
    /// The weights file (safetensors).
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    #[command(flatten)]
    options: ModelOptions,
    /// An input image, or a folder (its image files, sorted by name); repeat for several.
    /// They run in GPU batches of --batch-size; a file that cannot be read or used is
    /// reported on stderr and skipped, and the exit code is then 1.
    #[arg(long = "image", value_name = "IMG|DIR", required = true)]
    images: Vec<PathBuf>,
    /// Target class: one for all images or one per image (default: each image's top class).
    #[arg(long = "class", value_name = "K")]
    classes: Vec<usize>,
    /// Explain the softmax probability instead of the pre-softmax logit.
    #[arg(long)]
    probability: bool,
    /// Output image (PNG or JPEG); several images write OUT_<i>.png, i the input's position
    /// (from 0, folders expanded). A folder (existing, ending in `/`, or a name without an
    /// extension) gets one <input stem>.png per image. Missing folders are created.
    #[arg(long, value_name = "OUT.png|DIR")]
    out: PathBuf,
    /// Also write the raw maps, logits and targets as safetensors: one file for all images,
    /// the batches concatenated; its metadata `images` lists the rows' files.
    #[arg(long, value_name = "RAW.safetensors")]
    raw: Option<PathBuf>,
    /// Colormap of the heatmap.
    #[arg(long, value_enum, default_value_t = ColormapArg::Jet)]
    colormap: ColormapArg,
    /// Images per GPU batch.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

/// Colormaps on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum ColormapArg {
    /// OpenCV's COLORMAP_JET (keras-vis, pytorch-grad-cam).
    Jet,
    /// matplotlib's viridis.
    Viridis,
    /// Black to white.
    Gray,
}

impl From<ColormapArg> for Colormap {
    fn from(c: ColormapArg) -> Colormap {
        match c {
            ColormapArg::Jet => Colormap::Jet,
            ColormapArg::Viridis => Colormap::Viridis,
            ColormapArg::Gray => Colormap::Gray,
        }
    }
}

/// `cnnvis saliency` options.
#[derive(Args)]
pub struct SaliencyArgs {
    #[command(flatten)]
    common: MapArgs,
    /// The method.
    #[arg(long, value_enum, default_value_t = SaliencyMethodArg::Vanilla)]
    method: SaliencyMethodArg,
    /// Gradient modifier (default: absolute for gradient maps, none for attributions).
    #[arg(long, value_enum)]
    grad_modifier: Option<ModifierArg>,
    /// Keep the channel axis ([N, C, H, W]) instead of the maximum over channels.
    #[arg(long)]
    keepdims: bool,
    /// Noise samples (SmoothGrad family).
    #[arg(long, value_name = "N", default_value_t = 50)]
    samples: usize,
    /// Noise σ as a fraction of each image's value range (SmoothGrad family).
    #[arg(long, value_name = "SIGMA", default_value_t = 0.15)]
    noise: f32,
    /// Path steps (integrated gradients).
    #[arg(long, value_name = "N", default_value_t = 50)]
    steps: usize,
    /// Integration rule (integrated gradients).
    #[arg(long, value_enum, default_value_t = RuleArg::GaussLegendre)]
    rule: RuleArg,
    /// Baseline (integrated gradients): zeros in model-input space, or a black image.
    #[arg(long, value_enum, default_value_t = BaselineArg::Zeros)]
    baseline: BaselineArg,
    /// Occlusion window, HxW.
    #[arg(long, value_name = "HxW", value_parser = crate::parse_size, default_value = "8x8")]
    window: [usize; 2],
    /// Occlusion stride, HxW (default: half the window).
    #[arg(long, value_name = "HxW", value_parser = crate::parse_size)]
    stride: Option<[usize; 2]>,
    /// Occlusion fill value (model-input space).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    fill: f32,
    /// Seed of the noise. The noise follows each image's position in its batch, so the
    /// SmoothGrad family's maps depend slightly on --batch-size.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Blend the heatmap over the image with this image weight (0 = heatmap only).
    #[arg(long, value_name = "A", default_value_t = 0.0)]
    alpha: f32,
}

/// Saliency methods on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum SaliencyMethodArg {
    /// Plain gradient.
    Vanilla,
    /// Guided backpropagation.
    Guided,
    /// Deconvnet (rectified) backpropagation.
    Deconvnet,
    /// SmoothGrad: mean gradient over noisy copies.
    Smoothgrad,
    /// SmoothGrad²: mean squared gradient.
    SmoothgradSq,
    /// VarGrad: gradient variance.
    Vargrad,
    /// Input × gradient.
    InputXGradient,
    /// Integrated gradients.
    IntegratedGradients,
    /// Occlusion (forward passes only).
    Occlusion,
}

/// Gradient modifiers on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum ModifierArg {
    /// Identity.
    None,
    /// |g|.
    Absolute,
    /// max(g, 0).
    Relu,
    /// -g.
    Negate,
    /// 1 / (g + eps).
    Invert,
    /// |1 / (g + eps)|.
    SmallValues,
}

/// Integration rules on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum RuleArg {
    /// Left Riemann sum.
    Left,
    /// Right Riemann sum.
    Right,
    /// Midpoint rule.
    Middle,
    /// Trapezoid rule.
    Trapezoid,
    /// Gauss–Legendre quadrature.
    GaussLegendre,
}

/// Baselines on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum BaselineArg {
    /// Zeros in model-input space.
    Zeros,
    /// A black image, normalized like the input.
    Black,
}

/// `cnnvis cam` options.
#[derive(Args)]
pub struct CamArgs {
    #[command(flatten)]
    common: MapArgs,
    /// The method.
    #[arg(long, value_enum, default_value_t = CamMethodArg::Gradcam)]
    method: CamMethodArg,
    /// The layer (module path); default: the last spatial conv/pool layer before the head.
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// Average over flips and scales 0.9/1.0/1.1, as pytorch-grad-cam's aug_smooth.
    #[arg(long)]
    aug_smooth: bool,
    /// Weight of the image in the overlay (0 = heatmap only, 1 = image only).
    #[arg(long, value_name = "A", default_value_t = 0.5)]
    alpha: f32,
}

/// CAM methods on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum CamMethodArg {
    /// Grad-CAM.
    Gradcam,
    /// Grad-CAM++.
    #[value(name = "gradcam++")]
    GradcamPlusPlus,
    /// HiResCAM.
    Hirescam,
    /// XGrad-CAM.
    Xgradcam,
    /// LayerCAM.
    Layercam,
    /// Score-CAM.
    Scorecam,
    /// Eigen-CAM.
    Eigencam,
    /// Guided Grad-CAM.
    GuidedGradcam,
}

/// Image files of `paths`, folders expanded (sorted, by extension).
pub(crate) fn expand_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    const EXT: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "pnm", "ppm", "pgm", "tga",
    ];
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot list {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXT.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(format!("folder {} holds no images", p.display()));
            }
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(format!("{} does not exist", p.display()));
        }
    }
    Ok(out)
}

/// Whether `out` names a folder: an existing one, a path ending in a separator, or a name
/// without an extension.
fn is_folder(out: &Path) -> bool {
    out.is_dir()
        || out
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR)
        || out.as_os_str().to_string_lossy().ends_with('/')
        || out.extension().is_none()
}

/// The output file of every input: `out` itself for one image, `out_<i>.ext` for several;
/// for a folder `out`, `out/<stem>.png` (`<stem>_<i>.png` where inputs share a stem).
pub(crate) fn output_paths(out: &Path, paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let n = paths.len();
    if is_folder(out) {
        let stem = |p: &PathBuf| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into())
        };
        let mut count: HashMap<String, usize> = HashMap::new();
        for p in paths {
            *count.entry(stem(p)).or_default() += 1;
        }
        return Ok(paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let s = stem(p);
                if count[&s] > 1 {
                    out.join(format!("{s}_{i}.png"))
                } else {
                    out.join(format!("{s}.png"))
                }
            })
            .collect());
    }
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !["png", "jpg", "jpeg", "gif"].contains(&ext.as_str()) {
        return Err(format!(
            "--out {}: expected a .png, .jpg or .gif file, or a folder",
            out.display()
        ));
    }
    if n == 1 {
        return Ok(vec![out.to_path_buf()]);
    }
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("png");
    Ok((0..n)
        .map(|i| out.with_file_name(format!("{stem}_{i}.{ext}")))
        .collect())
}

/// A batch of inputs that decoded and preprocessed.
pub(crate) struct Batch {
    /// Their positions in the full input list.
    pub indices: Vec<usize>,
    /// The decoded images.
    pub images: Vec<DynamicImage>,
    /// The model input, `[N, C, H, W]`.
    pub data: Vec<f32>,
    /// Its shape.
    pub shape: [usize; 4],
}

/// Decodes and preprocesses `paths[range]`. A file that fails is named on stderr (through
/// `bar`) and its index added to `failed`; `None` when none succeeds.
pub(crate) fn load_batch(
    pre: &Preprocess,
    paths: &[PathBuf],
    range: std::ops::Range<usize>,
    bar: &ProgressBar,
    failed: &mut Vec<usize>,
) -> Option<Batch> {
    let mut b = Batch {
        indices: Vec::new(),
        images: Vec::new(),
        data: Vec::new(),
        shape: [0; 4],
    };
    for i in range {
        let path = &paths[i];
        let result = load_image(path).map_err(|e| e.to_string()).and_then(|img| {
            pre.batch(std::slice::from_ref(&img))
                .map(|(x, shape)| (img, x, shape))
                .map_err(|e| format!("{}: {e}", path.display()))
        });
        match result {
            Ok((img, x, shape)) => {
                b.indices.push(i);
                b.images.push(img);
                b.data.extend(x);
                b.shape = [b.indices.len(), shape[1], shape[2], shape[3]];
            }
            Err(e) => {
                bar.suspend(|| eprintln!("error: {e} (skipped)"));
                failed.push(i);
            }
        }
    }
    (!b.indices.is_empty()).then_some(b)
}

/// The error that ends a run where some inputs failed.
pub(crate) fn failures(paths: &[PathBuf], failed: &[usize]) -> Result<(), String> {
    if failed.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = failed
        .iter()
        .take(5)
        .map(|&i| paths[i].display().to_string())
        .collect();
    let more = if failed.len() > names.len() {
        ", …"
    } else {
        ""
    };
    Err(format!(
        "{} of {} images could not be processed ({}{more})",
        failed.len(),
        paths.len(),
        names.join(", ")
    ))
}

/// A map command's run: the inputs and outputs checked, the model on the GPU.
struct Session {
    ctx: GpuContext,
    model: Model,
    paths: Vec<PathBuf>,
    outs: Vec<PathBuf>,
}

fn open_session(args: &MapArgs) -> Result<Session, Box<dyn std::error::Error>> {
    crate::progress::set_quiet(args.quiet);
    let paths = expand_images(&args.images)?;
    if !args.classes.is_empty() && args.classes.len() != 1 && args.classes.len() != paths.len() {
        return Err(format!(
            "{} --class values for {} images: give one for all or one per image",
            args.classes.len(),
            paths.len()
        )
        .into());
    }
    let outs = output_paths(&args.out, &paths)?;
    let (weights, opts) = open_weights(&args.model, &args.options)?;
    let ctx = GpuContext::new()?;
    let model = Model::from_weights(&ctx, &weights, &opts)?;
    Ok(Session {
        ctx,
        model,
        paths,
        outs,
    })
}

/// The targets of one batch.
fn batch_targets(
    args: &MapArgs,
    s: &Session,
    b: &Batch,
) -> Result<Vec<Target>, Box<dyn std::error::Error>> {
    let classes: Vec<usize> = if args.classes.is_empty() {
        if !args.probability {
            return Ok(vec![Target::TopClass]);
        }
        // The probability of each image's own top class.
        s.model
            .predict(&s.ctx, &b.data, b.shape)?
            .iter()
            .map(|row| cnnvis::vis::target::argmax(row))
            .collect()
    } else if args.classes.len() == 1 {
        args.classes.clone()
    } else {
        b.indices.iter().map(|&i| args.classes[i]).collect()
    };
    Ok(if args.probability {
        classes.iter().map(|&c| Target::Probability(c)).collect()
    } else {
        classes.iter().map(|&c| Target::Class(c)).collect()
    })
}

/// A raw tensor: name, shape, values.
type RawTensor = (&'static str, Vec<usize>, Vec<f32>);

/// What one batch of a map command gives.
struct BatchMaps {
    /// Raw tensors (only when `--raw`), concatenated over batches along the first axis.
    raw: Vec<RawTensor>,
    /// The resolved target of each image.
    targets: Vec<i64>,
    /// One picture per image.
    pictures: Vec<DynamicImage>,
}

/// Runs `compute` over the inputs in batches, saves the pictures, writes `--raw`, reports
/// failed files; fails at the end when any did.
fn run_batches(
    args: &MapArgs,
    s: &Session,
    what: &str,
    mut meta: HashMap<String, String>,
    mut compute: impl FnMut(&Batch, &Tensor, &[Target]) -> Result<BatchMaps, Box<dyn std::error::Error>>,
) -> CliResult {
    let n = s.paths.len();
    let bs = args.batch_size as usize;
    let bar = crate::progress::bar(n as u64, what);
    let names = s.model.classes();
    let mut failed = Vec::new();
    let mut done: Vec<usize> = Vec::new();
    let mut raw: Vec<RawTensor> = Vec::new();
    let mut all_targets: Vec<i64> = Vec::new();
    for start in (0..n).step_by(bs) {
        let range = start..(start + bs).min(n);
        let len = range.len() as u64;
        if let Some(b) = load_batch(s.model.preprocess(), &s.paths, range, &bar, &mut failed) {
            let input = Tensor::from_slice(&s.ctx, &b.shape, &b.data)?;
            let targets = batch_targets(args, s, &b)?;
            let out = compute(&b, &input, &targets)?;
            for (k, &i) in b.indices.iter().enumerate() {
                let path = &s.outs[i];
                create_parent(path)?;
                let picture = out
                    .pictures
                    .get(k)
                    .ok_or_else(|| format!("no picture for {}", s.paths[i].display()))?;
                save_image(path, picture)?;
                let t = out.targets.get(k).copied().unwrap_or(-1);
                let name = names
                    .and_then(|n| usize::try_from(t).ok().and_then(|c| n.get(c)))
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                bar.suspend(|| {
                    say!(
                        "{} -> {}  target {t}{name}",
                        s.paths[i].display(),
                        path.display()
                    )
                });
            }
            if raw.is_empty() {
                raw = out.raw;
            } else {
                for (acc, (name, shape, data)) in raw.iter_mut().zip(out.raw) {
                    if acc.0 != name || acc.1[1..] != shape[1..] {
                        return Err(
                            format!("raw tensor {name} changed shape between batches").into()
                        );
                    }
                    acc.1[0] += shape[0];
                    acc.2.extend(data);
                }
            }
            done.extend(&b.indices);
            all_targets.extend(out.targets);
        }
        bar.inc(len);
    }
    bar.finish_and_clear();
    if let (Some(path), false) = (&args.raw, done.is_empty()) {
        let files: Vec<String> = done
            .iter()
            .map(|&i| s.paths[i].display().to_string())
            .collect();
        meta.insert(
            "images".to_string(),
            serde_json::Value::from(files).to_string(),
        );
        meta.insert("arch".to_string(), s.model.arch().to_string());
        create_parent(path)?;
        write_raw(path, &raw, &all_targets, meta)?;
        say!(
            "raw maps of {} image{} written to {}",
            done.len(),
            if done.len() == 1 { "" } else { "s" },
            path.display()
        );
    }
    failures(&s.paths, &failed)?;
    Ok(())
}

/// Writes `tensors` (f32 unless named `target`, which is i64) to a safetensors file.
fn write_raw(
    path: &Path,
    tensors: &[RawTensor],
    targets: &[i64],
    meta: HashMap<String, String>,
) -> CliResult {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let target_bytes: Vec<u8> = targets.iter().flat_map(|t| t.to_le_bytes()).collect();
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for (name, shape, data) in tensors {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))?,
        ));
    }
    views.push((
        "target".into(),
        TensorView::new(Dtype::I64, vec![targets.len()], &target_bytes)?,
    ));
    safetensors::serialize_to_file(views, Some(meta), path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Min-max normalizes `[N, H, W]` maps on the GPU (the CAM module's normalization at the same
/// size).
pub(crate) fn normalized(ctx: &GpuContext, maps: &Tensor) -> cnnvis::Result<Tensor> {
    let n = maps.shape()[0];
    let out = Tensor::empty(ctx, maps.shape(), cnnvis::gpu::DType::F32)?;
    let s1 = Tensor::empty(ctx, &[n, 2], cnnvis::gpu::DType::F32)?;
    let s2 = Tensor::empty(ctx, &[n, 2], cnnvis::gpu::DType::F32)?;
    let ds = upsample_normalize(ctx, &out, maps, &s1, &s2)?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    Ok(out)
}

/// Renders normalized `[N, H, W]` maps as one RGBA picture per image: a heatmap, or an
/// overlay on `images` (resized to the model input `shape`) when `alpha > 0`.
fn render(
    ctx: &GpuContext,
    images: &[DynamicImage],
    shape: [usize; 4],
    maps: &Tensor,
    cmap: Colormap,
    alpha: f32,
) -> Result<Vec<DynamicImage>, Box<dyn std::error::Error>> {
    let rgba = if alpha > 0.0 {
        let img = images_to_unit_chw(ctx, images, [shape[2], shape[3]])?;
        render_overlay(ctx, maps, &img, cmap, alpha)?
    } else {
        render_colormap(ctx, maps, cmap)?
    };
    Ok(download_rgba(ctx, &rgba)?
        .into_iter()
        .map(DynamicImage::ImageRgba8)
        .collect())
}

/// The maximum over channels of `[N, C, H, W]` values, for display.
pub(crate) fn channel_max(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let (n, c, plane) = (shape[0], shape[1], shape[2] * shape[3]);
    let mut out = vec![f32::NEG_INFINITY; n * plane];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..plane {
                let v = data[(i * c + ch) * plane + p];
                let o = &mut out[i * plane + p];
                *o = o.max(v);
            }
        }
    }
    out
}

/// `cnnvis saliency`.
pub fn saliency(args: &SaliencyArgs) -> CliResult {
    let p = open_session(&args.common)?;
    let ctx = &p.ctx;
    let mut method = match args.method {
        SaliencyMethodArg::Vanilla => Saliency::vanilla(),
        SaliencyMethodArg::Guided => Saliency::guided(),
        SaliencyMethodArg::Deconvnet => Saliency::deconvnet(),
        SaliencyMethodArg::Smoothgrad => Saliency::smoothgrad(),
        SaliencyMethodArg::SmoothgradSq => Saliency::smoothgrad_squared(),
        SaliencyMethodArg::Vargrad => Saliency::vargrad(),
        SaliencyMethodArg::InputXGradient => Saliency::input_x_gradient(),
        SaliencyMethodArg::IntegratedGradients => Saliency::integrated_gradients(),
        SaliencyMethodArg::Occlusion => Saliency::occlusion(),
    }
    .keepdims(args.keepdims)
    .samples(args.samples)
    .noise_level(args.noise)
    .steps(args.steps)
    .rule(match args.rule {
        RuleArg::Left => IntegrationRule::Left,
        RuleArg::Right => IntegrationRule::Right,
        RuleArg::Middle => IntegrationRule::Middle,
        RuleArg::Trapezoid => IntegrationRule::Trapezoid,
        RuleArg::GaussLegendre => IntegrationRule::GaussLegendre,
    })
    .baseline(match args.baseline {
        BaselineArg::Zeros => Baseline::Zeros,
        BaselineArg::Black => Baseline::Black,
    })
    .window(args.window)
    .fill(args.fill)
    .seed(args.seed);
    if let Some(s) = args.stride {
        method = method.stride(s);
    }
    if let Some(m) = args.grad_modifier {
        method = method.modifier(match m {
            ModifierArg::None => GradModifier::None,
            ModifierArg::Absolute => GradModifier::Absolute,
            ModifierArg::Relu => GradModifier::Relu,
            ModifierArg::Negate => GradModifier::Negate,
            ModifierArg::Invert => GradModifier::Invert,
            ModifierArg::SmallValues => GradModifier::SmallValues,
        });
    }
    let meta = HashMap::from([("method".to_string(), format!("{:?}", method.method()))]);
    let want_raw = args.common.raw.is_some();
    let cmap: Colormap = args.common.colormap.into();
    run_batches(&args.common, &p, "saliency", meta, |b, input, targets| {
        let maps = method.compute(ctx, &p.model, input, targets)?;
        let sal_shape = maps.saliency.shape().to_vec();
        let sal = maps.saliency.download(ctx)?;
        let n = b.indices.len();
        let raw = if want_raw {
            vec![
                (
                    "logits",
                    vec![n, maps.logits.len() / n],
                    maps.logits.clone(),
                ),
                (
                    "gradient",
                    maps.gradient.shape().to_vec(),
                    maps.gradient.download(ctx)?,
                ),
                ("saliency", sal_shape.clone(), sal.clone()),
            ]
        } else {
            Vec::new()
        };
        let display = if sal_shape.len() == 4 {
            let [n, _, h, w] = [sal_shape[0], sal_shape[1], sal_shape[2], sal_shape[3]];
            Tensor::from_slice(ctx, &[n, h, w], &channel_max(&sal, &sal_shape))?
        } else {
            maps.saliency.clone()
        };
        let norm = normalized(ctx, &display)?;
        Ok(BatchMaps {
            raw,
            targets: maps.targets.clone(),
            pictures: render(ctx, &b.images, b.shape, &norm, cmap, args.alpha)?,
        })
    })
}

/// Guided Grad-CAM `[N, C, H, W]` as images, deprocessed as pytorch-grad-cam's
/// `deprocess_image`: standardize, ×0.1, +0.5, clip to [0, 1].
fn deprocess(data: &[f32], shape: &[usize]) -> Vec<RgbImage> {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let per = c * h * w;
    (0..n)
        .map(|i| {
            let v = &data[i * per..(i + 1) * per];
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / per as f64;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / per as f64;
            let std = var.sqrt() + 1e-5;
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let px = |ch: usize| {
                    let ch = ch.min(c - 1);
                    let val = v[ch * h * w + y as usize * w + x as usize] as f64;
                    (((val - mean) / std * 0.1 + 0.5).clamp(0.0, 1.0) * 255.0) as u8
                };
                image::Rgb([px(0), px(1), px(2)])
            })
        })
        .collect()
}

/// `cnnvis cam`.
pub fn cam(args: &CamArgs) -> CliResult {
    let p = open_session(&args.common)?;
    let ctx = &p.ctx;
    let method = match args.method {
        CamMethodArg::Gradcam => CamMethod::GradCam,
        CamMethodArg::GradcamPlusPlus => CamMethod::GradCamPlusPlus,
        CamMethodArg::Hirescam => CamMethod::HiResCam,
        CamMethodArg::Xgradcam => CamMethod::XGradCam,
        CamMethodArg::Layercam => CamMethod::LayerCam,
        CamMethodArg::Scorecam => CamMethod::ScoreCam,
        CamMethodArg::Eigencam => CamMethod::EigenCam,
        CamMethodArg::GuidedGradcam => CamMethod::GuidedGradCam,
    };
    let mut cam = Cam::new(method).aug_smooth(args.aug_smooth);
    if let Some(layer) = &args.layer {
        cam = cam.layer(layer.as_str());
    }
    let layer = cam.layer_for(&p.model)?.to_string();
    say!("layer: {layer}");
    let meta = HashMap::from([
        ("method".to_string(), method.name().to_string()),
        ("layer".to_string(), layer.clone()),
    ]);
    let want_raw = args.common.raw.is_some();
    let cmap: Colormap = args.common.colormap.into();
    run_batches(&args.common, &p, "cam", meta, |b, input, targets| {
        let maps = cam.compute(ctx, &p.model, input, targets)?;
        let n = b.indices.len();
        let mut raw = Vec::new();
        if want_raw {
            raw = vec![
                (
                    "logits",
                    vec![n, maps.logits.len() / n],
                    maps.logits.clone(),
                ),
                ("cam", maps.cam.shape().to_vec(), maps.cam.download(ctx)?),
                (
                    "cam_upsampled",
                    maps.cam_upsampled.shape().to_vec(),
                    maps.cam_upsampled.download(ctx)?,
                ),
            ];
            if let Some(g) = &maps.guided {
                raw.push(("guided_gradcam", g.shape().to_vec(), g.download(ctx)?));
            }
        }
        let pictures = match &maps.guided {
            Some(g) => deprocess(&g.download(ctx)?, g.shape())
                .into_iter()
                .map(DynamicImage::ImageRgb8)
                .collect(),
            None => render(
                ctx,
                &b.images,
                b.shape,
                &maps.cam_upsampled,
                cmap,
                args.alpha,
            )?,
        };
        Ok(BatchMaps {
            raw,
            targets: maps.targets.clone(),
            pictures,
        })
    })
}
