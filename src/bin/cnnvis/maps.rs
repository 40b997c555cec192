//! `cnnvis saliency` and `cnnvis cam`: attention maps for a batch of images, written as
//! heatmaps or overlays (one file per image) and optionally as raw tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use image::{DynamicImage, RgbImage};

use cnnvis::model::preprocess::load_image;
use cnnvis::render::colormap::{images_to_unit_chw, render_colormap, render_overlay, Colormap};
use cnnvis::render::output::{download_rgba, save_rgb, save_rgba};
use cnnvis::vis::cam::{upsample_normalize, Cam, CamMethod};
use cnnvis::vis::saliency::{Baseline, GradModifier, IntegrationRule, Saliency};
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model, Tensor};

use crate::{open_weights, CliResult, ModelOptions};

/// Options every map command shares.
#[derive(Args)]
pub struct MapArgs {
    /// The weights file (safetensors).
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    #[command(flatten)]
    options: ModelOptions,
    /// An input image, or a folder of images; repeat for several. All run as one GPU batch.
    #[arg(long = "image", value_name = "IMG", required = true)]
    images: Vec<PathBuf>,
    /// Target class: one for all images or one per image (default: each image's top class).
    #[arg(long = "class", value_name = "K")]
    classes: Vec<usize>,
    /// Explain the softmax probability instead of the pre-softmax logit.
    #[arg(long)]
    probability: bool,
    /// Output image (PNG or JPEG); several images write OUT_<i>.png.
    #[arg(long, value_name = "OUT.png")]
    out: PathBuf,
    /// Also write the raw maps, logits and targets as safetensors.
    #[arg(long, value_name = "RAW.safetensors")]
    raw: Option<PathBuf>,
    /// Colormap of the heatmap.
    #[arg(long, value_enum, default_value_t = ColormapArg::Jet)]
    colormap: ColormapArg,
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
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Noise σ as a fraction of each image's value range (SmoothGrad family).
    #[arg(long, default_value_t = 0.15)]
    noise: f32,
    /// Path steps (integrated gradients).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Integration rule (integrated gradients).
    #[arg(long, value_enum, default_value_t = RuleArg::GaussLegendre)]
    rule: RuleArg,
    /// Baseline (integrated gradients): zeros in model-input space, or a black image.
    #[arg(long, value_enum, default_value_t = BaselineArg::Zeros)]
    baseline: BaselineArg,
    /// Occlusion window, HxW.
    #[arg(long, value_parser = crate::parse_size, default_value = "8x8")]
    window: [usize; 2],
    /// Occlusion stride, HxW (default: half the window).
    #[arg(long, value_parser = crate::parse_size)]
    stride: Option<[usize; 2]>,
    /// Occlusion fill value (model-input space).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    fill: f32,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Blend the heatmap over the image with this image weight (0 = heatmap only).
    #[arg(long, default_value_t = 0.0)]
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
    #[arg(long, default_value_t = 0.5)]
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

/// `out.png` for one image, `out_<i>.png` for several.
fn output_path(out: &Path, i: usize, n: usize) -> PathBuf {
    if n == 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let name = match out.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}_{i}.{ext}"),
        None => format!("{stem}_{i}"),
    };
    out.with_file_name(name)
}

/// What the map commands share: images decoded, model loaded, batch uploaded, targets built.
struct Prepared {
    ctx: GpuContext,
    model: Model,
    paths: Vec<PathBuf>,
    images: Vec<DynamicImage>,
    input: Tensor,
    targets: Vec<Target>,
}

fn prepare(args: &MapArgs) -> Result<Prepared, Box<dyn std::error::Error>> {
    let paths = expand_images(&args.images)?;
    let images = paths
        .iter()
        .map(load_image)
        .collect::<Result<Vec<_>, _>>()?;
    if !args.classes.is_empty() && args.classes.len() != 1 && args.classes.len() != images.len() {
        return Err(format!(
            "{} --class values for {} images: give one for all or one per image",
            args.classes.len(),
            images.len()
        )
        .into());
    }
    let (weights, opts) = open_weights(&args.model, &args.options)?;
    let ctx = GpuContext::new()?;
    let model = Model::from_weights(&ctx, &weights, &opts)?;
    let (x, shape) = model.preprocess().batch(&images)?;
    let input = Tensor::from_slice(&ctx, &shape, &x)?;
    let classes: Vec<usize> = if args.classes.is_empty() && args.probability {
        // The probability of each image's own top class.
        model
            .predict(&ctx, &x, shape)?
            .iter()
            .map(|row| cnnvis::vis::target::argmax(row))
            .collect()
    } else {
        args.classes.clone()
    };
    let targets = if classes.is_empty() {
        vec![Target::TopClass]
    } else if args.probability {
        classes.iter().map(|&c| Target::Probability(c)).collect()
    } else {
        classes.iter().map(|&c| Target::Class(c)).collect()
    };
    Ok(Prepared {
        ctx,
        model,
        paths,
        images,
        input,
        targets,
    })
}

/// Writes `tensors` (f32 unless named `target`, which is i64) to a safetensors file.
fn write_raw(
    path: &Path,
    tensors: &[(&str, Vec<usize>, Vec<f32>)],
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

/// Saves one rendered RGBA image per input.
fn save_maps(ctx: &GpuContext, rgba: &Tensor, out: &Path, paths: &[PathBuf]) -> CliResult {
    let images = download_rgba(ctx, rgba)?;
    let n = images.len();
    for (i, img) in images.iter().enumerate() {
        let path = output_path(out, i, n);
        save_rgba(&path, img)?;
        println!("{} -> {}", paths[i].display(), path.display());
    }
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

/// Renders normalized `[N, H, W]` maps: a heatmap, or an overlay when `alpha > 0`.
fn render(
    p: &Prepared,
    maps: &Tensor,
    cmap: Colormap,
    alpha: f32,
) -> Result<Tensor, Box<dyn std::error::Error>> {
    let ctx = &p.ctx;
    if alpha > 0.0 {
        let [_, _, h, w] = <[usize; 4]>::try_from(p.input.shape()).map_err(|_| "input rank")?;
        let img = images_to_unit_chw(ctx, &p.images, [h, w])?;
        Ok(render_overlay(ctx, maps, &img, cmap, alpha)?)
    } else {
        Ok(render_colormap(ctx, maps, cmap)?)
    }
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
    let p = prepare(&args.common)?;
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
    let maps = method.compute(ctx, &p.model, &p.input, &p.targets)?;
    let sal_shape = maps.saliency.shape().to_vec();
    let sal = maps.saliency.download(ctx)?;
    if let Some(raw) = &args.common.raw {
        let n = p.images.len();
        let meta = HashMap::from([
            ("arch".to_string(), p.model.arch().to_string()),
            ("method".to_string(), format!("{:?}", method.method())),
        ]);
        write_raw(
            raw,
            &[
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
            ],
            &maps.targets,
            meta,
        )?;
        println!("raw maps written to {}", raw.display());
    }
    let display = if sal_shape.len() == 4 {
        let [n, _, h, w] = [sal_shape[0], sal_shape[1], sal_shape[2], sal_shape[3]];
        Tensor::from_slice(ctx, &[n, h, w], &channel_max(&sal, &sal_shape))?
    } else {
        maps.saliency.clone()
    };
    let norm = normalized(ctx, &display)?;
    let rgba = render(&p, &norm, args.common.colormap.into(), args.alpha)?;
    save_maps(ctx, &rgba, &args.common.out, &p.paths)?;
    report_targets(&p, &maps.targets);
    Ok(())
}

fn report_targets(p: &Prepared, targets: &[i64]) {
    let names = p.model.classes();
    for (path, t) in p.paths.iter().zip(targets) {
        let name = names
            .and_then(|n| usize::try_from(*t).ok().and_then(|i| n.get(i)))
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        println!("  {}: target {t}{name}", path.display());
    }
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
    let p = prepare(&args.common)?;
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
    let maps = cam.compute(ctx, &p.model, &p.input, &p.targets)?;
    if let Some(raw) = &args.common.raw {
        let n = p.images.len();
        let meta = HashMap::from([
            ("arch".to_string(), p.model.arch().to_string()),
            ("method".to_string(), method.name().to_string()),
            ("layer".to_string(), layer.clone()),
        ]);
        let mut tensors = vec![
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
            tensors.push(("guided_gradcam", g.shape().to_vec(), g.download(ctx)?));
        }
        write_raw(raw, &tensors, &maps.targets, meta)?;
        println!("raw maps written to {}", raw.display());
    }
    match &maps.guided {
        Some(g) => {
            let images = deprocess(&g.download(ctx)?, g.shape());
            let n = images.len();
            for (i, img) in images.iter().enumerate() {
                let path = output_path(&args.common.out, i, n);
                save_rgb(&path, img)?;
                println!("{} -> {}", p.paths[i].display(), path.display());
            }
        }
        None => {
            let rgba = render(
                &p,
                &maps.cam_upsampled,
                args.common.colormap.into(),
                args.alpha,
            )?;
            save_maps(ctx, &rgba, &args.common.out, &p.paths)?;
        }
    }
    println!("layer: {layer}");
    report_targets(&p, &maps.targets);
    Ok(())
}
