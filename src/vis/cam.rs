//! The class activation map family, computed at a named layer, with pytorch-grad-cam's
//! numerics: Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, Score-CAM, Eigen-CAM and
//! Guided Grad-CAM, optional `aug_smooth`, and the raw low-res map next to the upsampled,
//! normalised one.
//!
//! Every step runs on the GPU; only the logits (for the returned targets) and, for top-class
//! and probability targets, the target layer's values are read back.
//!
//! Pipeline (per image, as pytorch-grad-cam 1.5.7's `BaseCAM.forward` with one target layer):
//! 1. `cam = relu(Σ_k w_k A_k)` (HiResCAM, LayerCAM: elementwise weights; Eigen-CAM: the
//!    projection on the first principal component);
//! 2. `scale_cam_image`: `m = (cam - min) / (1e-7 + (max - min))`, then `cv2.resize` to the
//!    input size (bilinear, half-pixel centres, clamped borders);
//! 3. `aggregate_multi_layers`: `relu`, then the same min-max normalisation again.
//!
//! `aug_smooth` (ttach, as `BaseCAM.forward_augmentation_smoothing`): the six transforms
//! {no flip, horizontal flip} × intensity factors {1, 0.9, 1.1} (ttach's `Multiply`, which
//! scales pixel values, not the image size); each transform's upsampled map is flipped back
//! and the six are averaged (not renormalised). The returned low-res `cam` is the mean of the
//! six de-augmented low-res maps. Guided Grad-CAM multiplies the guided-backprop gradient of
//! the un-augmented input by that averaged map. Targets are resolved per transform (a top-class
//! target takes each transformed input's own top class, as pytorch-grad-cam with
//! `targets=None`); the returned `targets` and `logits` are the un-augmented input's.
//!
//! Eigen-CAM's sign: numpy's SVD leaves the sign of the principal direction `v` (over
//! channels) arbitrary; cnnvis fixes it so that `Σ_k v_k ≥ 0`, i.e. the map is high where the
//! channels fire together above their means. Its maps equal pytorch-grad-cam's or their
//! negation's ReLU.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::model::weights::ModelError;
use crate::model::{ForwardPlan, Model};
use crate::ops::relu::ReluRule;
use crate::ops::softmax::softmax_forward;
use crate::ops::to_u32;
use crate::vis::{GradientPass, Objective, Target};

const CAM_WEIGHTS: Kernel = Kernel::new(Shader::Cam, "cam_weights");
const CAM_COMBINE: Kernel = Kernel::new(Shader::Cam, "cam_combine");
const ROW_MINMAX: Kernel = Kernel::new(Shader::Cam, "row_minmax");
const UPSAMPLE_NORMALIZED: Kernel = Kernel::new(Shader::Cam, "upsample_normalized");
const NORMALIZE_ROWS: Kernel = Kernel::new(Shader::Cam, "normalize_rows");
const SCORE_CHANNEL_MINMAX: Kernel = Kernel::new(Shader::Cam, "score_channel_minmax");
const SCORE_MASKED_INPUT: Kernel = Kernel::new(Shader::Cam, "score_masked_input");
const SCORE_GATHER: Kernel = Kernel::new(Shader::Cam, "score_gather");
const EIGEN_GRAM: Kernel = Kernel::new(Shader::Cam, "eigen_gram");
const EIGEN_POWER: Kernel = Kernel::new(Shader::Cam, "eigen_power");
const GUIDED_PRODUCT: Kernel = Kernel::new(Shader::Cam, "guided_product");
const AUGMENT_INPUT: Kernel = Kernel::new(Shader::Cam, "augment_input");
const ACCUMULATE_MAP: Kernel = Kernel::new(Shader::Cam, "accumulate_map");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    CAM_WEIGHTS,
    CAM_COMBINE,
    ROW_MINMAX,
    UPSAMPLE_NORMALIZED,
    NORMALIZE_ROWS,
    SCORE_CHANNEL_MINMAX,
    SCORE_MASKED_INPUT,
    SCORE_GATHER,
    EIGEN_GRAM,
    EIGEN_POWER,
    GUIDED_PRODUCT,
    AUGMENT_INPUT,
    ACCUMULATE_MAP,
];

/// Mirror of `CamParams` in cam.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct CamParams {
    n: u32,
    k: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    mode: u32,
    offset: u32,
    total: u32,
    rows: u32,
    c: u32,
    flip: u32,
    factor: f32,
    j: u32,
    _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<CamParams>() == 64);

const OP: &str = "cam";

/// The activation memory a Score-CAM masked batch may take when the batch size is fitted
/// automatically (see [`Cam::batch_size`]).
pub const SCORE_CAM_MEMORY_BUDGET: u64 = 512 << 20;

/// Largest automatically fitted Score-CAM batch.
pub const SCORE_CAM_MAX_BATCH: usize = 256;

/// Default cap on Eigen-CAM's power iterations (it stops earlier once converged).
pub const EIGEN_ITERATIONS: u32 = 2000;

/// A class activation map method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CamMethod {
    /// Grad-CAM: channel weights are the spatial means of the gradients.
    GradCam,
    /// Grad-CAM++: weights `Σ relu(g) α`, `α = g² / (2g² + ΣA · g³ + 1e-6)` (0 where g = 0).
    GradCamPlusPlus,
    /// HiResCAM: `Σ_k g ⊙ A` elementwise.
    HiResCam,
    /// XGrad-CAM: weights `Σ g A / (ΣA + 1e-7)`.
    XGradCam,
    /// LayerCAM: `Σ_k relu(g) ⊙ A` elementwise.
    LayerCam,
    /// Score-CAM: weights are the softmax over channels of the target's score for the input
    /// masked by each normalised, upsampled channel; batched forward passes only.
    ScoreCam,
    /// Eigen-CAM: projection of the centred activations on their first principal
    /// component (power iteration on the GPU); no gradients, no target.
    EigenCam,
    /// Guided Grad-CAM: the upsampled Grad-CAM times the guided-backprop input gradient.
    GuidedGradCam,
}

impl CamMethod {
    /// Every method.
    pub const ALL: [CamMethod; 8] = [
        CamMethod::GradCam,
        CamMethod::GradCamPlusPlus,
        CamMethod::HiResCam,
        CamMethod::XGradCam,
        CamMethod::LayerCam,
        CamMethod::ScoreCam,
        CamMethod::EigenCam,
        CamMethod::GuidedGradCam,
    ];

    /// The CLI name: `gradcam`, `gradcam++`, `hirescam`, `xgradcam`, `layercam`, `scorecam`,
    /// `eigencam`, `guided-gradcam`.
    pub fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "gradcam",
            CamMethod::GradCamPlusPlus => "gradcam++",
            CamMethod::HiResCam => "hirescam",
            CamMethod::XGradCam => "xgradcam",
            CamMethod::LayerCam => "layercam",
            CamMethod::ScoreCam => "scorecam",
            CamMethod::EigenCam => "eigencam",
            CamMethod::GuidedGradCam => "guided-gradcam",
        }
    }

    /// Whether the method needs the gradient at the CAM layer.
    pub fn uses_gradients(self) -> bool {
        !matches!(self, CamMethod::ScoreCam | CamMethod::EigenCam)
    }
}

impl std::fmt::Display for CamMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CamMethod {
    type Err = Error;

    /// Parses a CLI name (case-insensitive; `gradcampp`, `grad-cam` and similar spellings
    /// with dashes or underscores are accepted too).
    fn from_str(s: &str) -> Result<Self> {
        let key: String = s
            .to_ascii_lowercase()
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect();
        Ok(match key.as_str() {
            "gradcam" => CamMethod::GradCam,
            "gradcam++" | "gradcampp" | "gradcamplusplus" => CamMethod::GradCamPlusPlus,
            "hirescam" => CamMethod::HiResCam,
            "xgradcam" => CamMethod::XGradCam,
            "layercam" => CamMethod::LayerCam,
            "scorecam" => CamMethod::ScoreCam,
            "eigencam" => CamMethod::EigenCam,
            "guidedgradcam" => CamMethod::GuidedGradCam,
            _ => {
                return Err(Error::shape(
                    OP,
                    format!(
                        "unknown CAM method `{s}`; expected one of {}",
                        CamMethod::ALL.map(CamMethod::name).join(", ")
                    ),
                ))
            }
        })
    }
}

/// A CAM method with its options. Build with [`Cam::new`] (or [`Cam::grad_cam`] and
/// friends), then [`Cam::compute`].
#[derive(Debug, Clone)]
pub struct Cam {
    method: CamMethod,
    layer: Option<String>,
    aug_smooth: bool,
    batch_size: Option<usize>,
    eigen_iterations: u32,
}

/// The maps of one batch. All tensors stay on the GPU.
#[derive(Debug, Clone)]
pub struct CamMaps {
    /// `[N, h, w]`: the low-res map at the CAM layer, after the ReLU and before any
    /// normalisation (the raw file's `cam`).
    pub cam: Tensor,
    /// `[N, H, W]`: upsampled to the input size and normalised to [0, 1] as
    /// pytorch-grad-cam returns it (the raw file's `cam_upsampled`).
    pub cam_upsampled: Tensor,
    /// `[N, C, H, W]`: Guided Grad-CAM (`cam_upsampled` times the guided-backprop input
    /// gradient), only for [`CamMethod::GuidedGradCam`].
    pub guided: Option<Tensor>,
    /// Each image's target class index (the top class resolved), -1 where the target names
    /// none.
    pub targets: Vec<i64>,
    /// The logits `[N, classes]`, row-major, of the un-augmented input.
    pub logits: Vec<f32>,
}

impl Cam {
    /// A method with the defaults: the model's default CAM layer, no aug_smooth, Score-CAM
    /// batch size fitted to the device.
    pub fn new(method: CamMethod) -> Cam {
        Cam {
            method,
            layer: None,
            aug_smooth: false,
            batch_size: None,
            eigen_iterations: EIGEN_ITERATIONS,
        }
    }

    /// Grad-CAM.
    pub fn grad_cam() -> Cam {
        Cam::new(CamMethod::GradCam)
    }

    /// Grad-CAM++.
    pub fn grad_cam_plus_plus() -> Cam {
        Cam::new(CamMethod::GradCamPlusPlus)
    }

    /// HiResCAM.
    pub fn hires_cam() -> Cam {
        Cam::new(CamMethod::HiResCam)
    }

    /// XGrad-CAM.
    pub fn xgrad_cam() -> Cam {
        Cam::new(CamMethod::XGradCam)
    }

    /// LayerCAM.
    pub fn layer_cam() -> Cam {
        Cam::new(CamMethod::LayerCam)
    }

    /// Score-CAM.
    pub fn score_cam() -> Cam {
        Cam::new(CamMethod::ScoreCam)
    }

    /// Eigen-CAM.
    pub fn eigen_cam() -> Cam {
        Cam::new(CamMethod::EigenCam)
    }

    /// Guided Grad-CAM.
    pub fn guided_grad_cam() -> Cam {
        Cam::new(CamMethod::GuidedGradCam)
    }

    /// The layer whose output the map explains (default: [`Model::default_cam_layer`]).
    pub fn layer(mut self, name: impl Into<String>) -> Cam {
        self.layer = Some(name.into());
        self
    }

    /// Test-time augmentation smoothing as pytorch-grad-cam's `aug_smooth=True`.
    pub fn aug_smooth(mut self, on: bool) -> Cam {
        self.aug_smooth = on;
        self
    }

    /// Score-CAM's masked inputs per forward pass. `None` (the default) fits it to the
    /// device: the largest batch whose activations stay under [`SCORE_CAM_MEMORY_BUDGET`] and
    /// whose largest activation fits `max_storage_buffer_binding_size`, at most
    /// [`SCORE_CAM_MAX_BATCH`]. The maps do not depend on it.
    pub fn batch_size(mut self, batch: Option<usize>) -> Cam {
        self.batch_size = batch;
        self
    }

    /// Cap on Eigen-CAM's power iterations (default [`EIGEN_ITERATIONS`]).
    pub fn eigen_iterations(mut self, n: u32) -> Cam {
        self.eigen_iterations = n.max(1);
        self
    }

    /// The method.
    pub fn method(&self) -> CamMethod {
        self.method
    }

    /// The layer this CAM uses on `model`: the chosen one, else the model's default.
    pub fn layer_for<'a>(&'a self, model: &'a Model) -> Result<&'a str> {
        match &self.layer {
            Some(l) => Ok(l),
            None => model.default_cam_layer().ok_or_else(|| {
                Error::shape(
                    OP,
                    format!(
                        "model {} has no spatial conv or pooling layer to default to; name one \
                         with .layer(...)",
                        model.arch()
                    ),
                )
            }),
        }
    }

    /// Computes the maps of `input` `[N, C, H, W]` (preprocessed, on the GPU) for `targets`
    /// (one for all images or one per image). Errors name an unknown or non-spatial layer, a
    /// class out of range, or a CAM layer that does not feed the target.
    pub fn compute(
        &self,
        ctx: &GpuContext,
        model: &Model,
        input: &Tensor,
        targets: &[Target],
    ) -> Result<CamMaps> {
        let layer = self.layer_for(model)?.to_string();
        if !model.has_layer(&layer) {
            return Err(ModelError::UnknownLayer {
                model: model.arch().to_string(),
                name: layer,
                known: spatial_layers(model),
            }
            .into());
        }
        if input.dtype() != DType::F32 || input.shape().len() != 4 {
            return Err(Error::shape(
                OP,
                format!(
                    "input is {:?} {:?}, expected f32 [N, C, H, W]",
                    input.dtype(),
                    input.shape()
                ),
            ));
        }
        let s = input.shape();
        let shape = [s[0], s[1], s[2], s[3]];
        let objective = Objective::new(model, targets, shape[0])?;
        let engine = Engine::new(ctx, model, self, &layer, shape, objective)?;
        let maps = engine.run(ctx, model, self, input);
        engine.finish(model);
        maps
    }

    /// The Score-CAM batch size [`Cam::compute`] would use for inputs of `shape` on `model`.
    pub fn score_cam_batch_size(
        &self,
        ctx: &GpuContext,
        model: &Model,
        shape: [usize; 4],
    ) -> Result<usize> {
        if let Some(b) = self.batch_size {
            return Ok(b.max(1));
        }
        let layer = self.layer_for(model)?;
        let plan = model.forward_plan(ctx, [1, shape[1], shape[2], shape[3]])?;
        let act = plan.activation(layer)?.shape().to_vec();
        Ok(fitted_batch(ctx, model, layer, &act, shape, usize::MAX))
    }
}

/// The error for a CAM layer whose output is not a spatial map.
fn not_spatial(model: &Model, layer: &str, shape: &[usize]) -> Error {
    Error::shape(
        OP,
        format!(
            "layer `{layer}` has output shape {shape:?} for this input, which is not spatial (a \
             1×1 map or a dense layer cannot be localised); pick a conv or pooling layer before \
             the head, e.g. `{}` (the default)",
            model.default_cam_layer().unwrap_or("?")
        ),
    )
}

/// Names of the layers with a spatial output (for error messages).
fn spatial_layers(model: &Model) -> String {
    let v: Vec<&str> = model
        .layers()
        .iter()
        .filter(|l| l.output_shape.len() == 4 && l.output_shape[2] * l.output_shape[3] > 1)
        .map(|l| l.name.as_str())
        .collect();
    let tail = &v[v.len().saturating_sub(10)..];
    format!("{} (layers with a spatial output)", tail.join(", "))
}

/// The automatic Score-CAM batch (see [`Cam::batch_size`]); `act` is the CAM layer's actual
/// shape, which scales the native-size layer shapes to this input size.
fn fitted_batch(
    ctx: &GpuContext,
    model: &Model,
    layer: &str,
    act: &[usize],
    shape: [usize; 4],
    pairs: usize,
) -> usize {
    let native = model
        .layers()
        .iter()
        .find(|l| l.name == layer || l.aliases.iter().any(|a| a == layer))
        .map(|l| l.output_shape.clone())
        .unwrap_or_default();
    let ratio = if native.len() == 4 && act.len() == 4 && native[2] * native[3] > 0 {
        (act[2] * act[3]) as f64 / (native[2] * native[3]) as f64
    } else {
        1.0
    };
    let input = (shape[1] * shape[2] * shape[3]) as f64;
    let (mut total, mut largest) = (input, input);
    for l in model.layers() {
        let per: f64 = l.output_shape.iter().skip(1).product::<usize>() as f64;
        let per = if l.output_shape.len() == 4 {
            per * ratio
        } else {
            per
        };
        total += per;
        largest = largest.max(per);
    }
    let bind = ctx.limits().max_storage_buffer_binding_size as f64 / (4.0 * largest);
    let budget = SCORE_CAM_MEMORY_BUDGET.min(ctx.limits().max_buffer_size) as f64 / (4.0 * total);
    let b = bind.min(budget).floor().max(1.0) as usize;
    b.min(SCORE_CAM_MAX_BATCH).min(pairs.max(1))
}

/// Launch params with the common sizes filled in.
fn params(n: usize, k: usize, hw: (usize, usize), out: (usize, usize)) -> Result<CamParams> {
    Ok(CamParams {
        n: to_u32(OP, "N", n)?,
        k: to_u32(OP, "K", k)?,
        h: to_u32(OP, "h", hw.0)?,
        w: to_u32(OP, "w", hw.1)?,
        oh: to_u32(OP, "H", out.0)?,
        ow: to_u32(OP, "W", out.1)?,
        factor: 1.0,
        ..Default::default()
    })
}

/// Workgroup-per-row grid.
fn rows_grid(ctx: &GpuContext, rows: usize) -> Result<[u32; 3]> {
    grid_for(rows, 1, ctx.limits().max_compute_workgroups_per_dimension)
}

/// Per-image min-max normalisation of `maps` `[N, h, w]` and bilinear upsampling to
/// `[N, H, W]` (`up`), then pytorch-grad-cam's ReLU and second normalisation: the
/// dispatches, in order. `stats` and `stats2` are `[N, 2]` scratch.
pub fn upsample_normalize(
    ctx: &GpuContext,
    up: &Tensor,
    maps: &Tensor,
    stats: &Tensor,
    stats2: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (n, h, w) = dims3("maps", maps)?;
    let (n2, oh, ow) = dims3("up", up)?;
    if n2 != n {
        return Err(Error::shape(
            OP,
            format!(
                "maps {:?} and up {:?} differ in N",
                maps.shape(),
                up.shape()
            ),
        ));
    }
    check_shape("stats", stats, &[n, 2])?;
    check_shape("stats2", stats2, &[n, 2])?;
    let low = params(n, 0, (h, w), (oh, ow))?;
    let full = params(n, 0, (oh, ow), (oh, ow))?;
    Ok(vec![
        ctx.dispatch(
            ROW_MINMAX,
            &low,
            &[(6, maps), (7, stats)],
            rows_grid(ctx, n)?,
        )?,
        ctx.dispatch(
            UPSAMPLE_NORMALIZED,
            &low,
            &[(6, maps), (8, stats), (9, up)],
            ctx.grid_1d(up.numel())?,
        )?,
        ctx.dispatch(
            ROW_MINMAX,
            &full,
            &[(6, up), (7, stats2)],
            rows_grid(ctx, n)?,
        )?,
        ctx.dispatch(
            NORMALIZE_ROWS,
            &full,
            &[(8, stats2), (9, up)],
            ctx.grid_1d(up.numel())?,
        )?,
    ])
}

fn dims3(name: &str, t: &Tensor) -> Result<(usize, usize, usize)> {
    match t.shape() {
        [n, h, w] if t.dtype() == DType::F32 => Ok((*n, *h, *w)),
        s => Err(Error::shape(
            OP,
            format!("{name} has shape {s:?}, expected f32 [N, h, w]"),
        )),
    }
}

fn dims4(name: &str, t: &Tensor) -> Result<[usize; 4]> {
    match t.shape() {
        [n, c, h, w] if t.dtype() == DType::F32 => Ok([*n, *c, *h, *w]),
        s => Err(Error::shape(
            OP,
            format!("{name} has shape {s:?}, expected f32 [N, C, H, W]"),
        )),
    }
}

fn check_shape(name: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if t.shape() != shape || t.dtype() != DType::F32 {
        return Err(Error::shape(
            OP,
            format!(
                "{name} is {:?} {:?}, expected f32 {shape:?}",
                t.dtype(),
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// Which weighting [`cam_from_gradients`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradWeighting {
    /// Grad-CAM: mean gradient per channel.
    GradCam,
    /// Grad-CAM++'s α-weighted positive gradients.
    GradCamPlusPlus,
    /// XGrad-CAM: activation-weighted gradients.
    XGradCam,
    /// HiResCAM: elementwise gradient × activation.
    HiResCam,
    /// LayerCAM: elementwise relu(gradient) × activation.
    LayerCam,
}

/// `cam = relu(Σ_k ...)` `[N, h, w]` from the activations and gradients `[N, K, h, w]` at the
/// CAM layer; `weights` is `[N, K]` scratch for the channel-weighted methods.
pub fn cam_from_gradients(
    ctx: &GpuContext,
    cam: &Tensor,
    weights: &Tensor,
    act: &Tensor,
    grad: &Tensor,
    how: GradWeighting,
) -> Result<Vec<Dispatch>> {
    let [n, k, h, w] = dims4("act", act)?;
    check_shape("grad", grad, act.shape())?;
    check_shape("cam", cam, &[n, h, w])?;
    check_shape("weights", weights, &[n, k])?;
    let mut p = params(n, k, (h, w), (h, w))?;
    let mut out = Vec::new();
    let weight_mode = match how {
        GradWeighting::GradCam => Some(0),
        GradWeighting::GradCamPlusPlus => Some(1),
        GradWeighting::XGradCam => Some(2),
        _ => None,
    };
    if let Some(m) = weight_mode {
        p.mode = m;
        out.push(ctx.dispatch(
            CAM_WEIGHTS,
            &p,
            &[(1, act), (2, grad), (3, weights)],
            ctx.grid_1d(n * k)?,
        )?);
        p.mode = 0;
    } else {
        p.mode = if how == GradWeighting::HiResCam { 1 } else { 2 };
    }
    out.push(ctx.dispatch(
        CAM_COMBINE,
        &p,
        &[(1, act), (2, grad), (4, weights), (5, cam)],
        ctx.grid_1d(cam.numel())?,
    )?);
    Ok(out)
}

/// `cam = relu(Σ_k weights[n, k] · act[n, k])`.
pub fn cam_weighted_sum(
    ctx: &GpuContext,
    cam: &Tensor,
    act: &Tensor,
    weights: &Tensor,
) -> Result<Dispatch> {
    let [n, k, h, w] = dims4("act", act)?;
    check_shape("cam", cam, &[n, h, w])?;
    check_shape("weights", weights, &[n, k])?;
    let p = params(n, k, (h, w), (h, w))?;
    let dummy = ctx.placeholder()?;
    ctx.dispatch(
        CAM_COMBINE,
        &p,
        &[(1, act), (2, &dummy), (4, weights), (5, cam)],
        ctx.grid_1d(cam.numel())?,
    )
}

/// Eigen-CAM's `cam = relu(projection on the first principal component)` `[N, h, w]` of the
/// activations `[N, K, h, w]` (centred per channel over space, as get_2d_projection), by
/// at most `iterations` power iterations on the `[hw, hw]` Gram matrix. Sign convention: the
/// principal direction `v` over channels has `Σ_k v_k ≥ 0`. Scratch: `means` `[N, K]`,
/// `gram` `[N, hw, hw]`, `vecs` `[N, 2, hw]`.
#[allow(clippy::too_many_arguments)]
pub fn eigen_cam(
    ctx: &GpuContext,
    cam: &Tensor,
    act: &Tensor,
    means: &Tensor,
    gram: &Tensor,
    vecs: &Tensor,
    iterations: u32,
) -> Result<Vec<Dispatch>> {
    let [n, k, h, w] = dims4("act", act)?;
    let hw = h * w;
    check_shape("cam", cam, &[n, h, w])?;
    check_shape("means", means, &[n, k])?;
    check_shape("gram", gram, &[n, hw, hw])?;
    check_shape("vecs", vecs, &[n, 2, hw])?;
    let mut p = params(n, k, (h, w), (h, w))?;
    p.mode = 3;
    p.total = iterations.max(1);
    let dummy = ctx.placeholder()?;
    Ok(vec![
        ctx.dispatch(
            CAM_WEIGHTS,
            &p,
            &[(1, act), (2, &dummy), (3, means)],
            ctx.grid_1d(n * k)?,
        )?,
        ctx.dispatch(
            EIGEN_GRAM,
            &p,
            &[(1, act), (4, means), (18, gram)],
            ctx.grid_1d(gram.numel())?,
        )?,
        ctx.dispatch(
            EIGEN_POWER,
            &p,
            &[(1, act), (4, means), (19, gram), (20, vecs), (5, cam)],
            rows_grid(ctx, n)?,
        )?,
    ])
}

/// aug_smooth's input transform: `out = factor · flip?(x)` for `[N, C, H, W]` tensors.
pub fn augment_input(
    ctx: &GpuContext,
    out: &Tensor,
    x: &Tensor,
    flip: bool,
    factor: f32,
) -> Result<Dispatch> {
    let [n, c, h, w] = dims4("x", x)?;
    check_shape("out", out, x.shape())?;
    let mut p = params(n, 0, (h, w), (h, w))?;
    p.c = to_u32(OP, "C", c)?;
    p.flip = flip as u32;
    p.factor = factor;
    ctx.dispatch(
        AUGMENT_INPUT,
        &p,
        &[(10, x), (11, out)],
        ctx.grid_1d(x.numel())?,
    )
}

/// `acc (+)= weight · flip?(map)` for `[N, H, W]` maps (`add`: accumulate, else overwrite).
pub fn accumulate_map(
    ctx: &GpuContext,
    acc: &Tensor,
    map: &Tensor,
    flip: bool,
    weight: f32,
    add: bool,
) -> Result<Dispatch> {
    let (n, h, w) = dims3("map", map)?;
    check_shape("acc", acc, map.shape())?;
    let mut p = params(n, 0, (h, w), (h, w))?;
    p.flip = flip as u32;
    p.factor = weight;
    p.mode = add as u32;
    ctx.dispatch(
        ACCUMULATE_MAP,
        &p,
        &[(22, map), (23, acc)],
        ctx.grid_1d(map.numel())?,
    )
}

/// Guided Grad-CAM: `out[n, c] = guided[n, c] · up[n]`.
pub fn guided_product(
    ctx: &GpuContext,
    out: &Tensor,
    guided: &Tensor,
    up: &Tensor,
) -> Result<Dispatch> {
    let [n, c, h, w] = dims4("guided", guided)?;
    check_shape("up", up, &[n, h, w])?;
    check_shape("out", out, guided.shape())?;
    let mut p = params(n, 0, (h, w), (h, w))?;
    p.c = to_u32(OP, "C", c)?;
    ctx.dispatch(
        GUIDED_PRODUCT,
        &p,
        &[(10, guided), (22, up), (11, out)],
        ctx.grid_1d(guided.numel())?,
    )
}

/// Score-CAM's per-channel min and max `[N*K, 2]` of the activations `[N, K, h, w]`
/// upsampled to `(H, W)` with align_corners = True (torch.nn.UpsamplingBilinear2d).
pub fn score_channel_minmax(
    ctx: &GpuContext,
    cstats: &Tensor,
    act: &Tensor,
    out: (usize, usize),
) -> Result<Dispatch> {
    let [n, k, h, w] = dims4("act", act)?;
    check_shape("cstats", cstats, &[n * k, 2])?;
    let p = params(n, k, (h, w), out)?;
    ctx.dispatch(
        SCORE_CHANNEL_MINMAX,
        &p,
        &[(1, act), (12, cstats)],
        rows_grid(ctx, n * k)?,
    )
}

/// Score-CAM's masked batch: row `b` of `out` `[B, C, H, W]` is image `j / K` masked by its
/// channel `j % K` (normalised, upsampled), `j = offset + b`; rows past `N*K` are zero.
pub fn score_masked_input(
    ctx: &GpuContext,
    out: &Tensor,
    x: &Tensor,
    act: &Tensor,
    cstats: &Tensor,
    offset: usize,
) -> Result<Dispatch> {
    let [n, c, hh, ww] = dims4("x", x)?;
    let [n2, k, h, w] = dims4("act", act)?;
    let [b, c2, h3, w3] = dims4("out", out)?;
    if n2 != n || c2 != c || h3 != hh || w3 != ww {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?}, act {:?} and out {:?} do not fit",
                x.shape(),
                act.shape(),
                out.shape()
            ),
        ));
    }
    check_shape("cstats", cstats, &[n * k, 2])?;
    let mut p = params(n, k, (h, w), (hh, ww))?;
    p.c = to_u32(OP, "C", c)?;
    p.rows = to_u32(OP, "B", b)?;
    p.offset = to_u32(OP, "offset", offset)?;
    p.total = to_u32(OP, "N*K", n * k)?;
    ctx.dispatch(
        SCORE_MASKED_INPUT,
        &p,
        &[(1, act), (10, x), (13, cstats), (11, out)],
        ctx.grid_1d(out.numel())?,
    )
}

/// Score-CAM's scores of one masked batch: `scores[j]` for `j = offset + b`, from the target
/// layer's values `vals` `[B, J]`, per-image weights `sw` `[N, J]` and `smeta` `[N]` (-1:
/// the linear score `sw · vals`; else the class whose softmax probability is the score).
#[allow(clippy::too_many_arguments)]
pub fn score_gather(
    ctx: &GpuContext,
    scores: &Tensor,
    vals: &Tensor,
    sw: &Tensor,
    smeta: &Tensor,
    n: usize,
    k: usize,
    offset: usize,
) -> Result<Dispatch> {
    let b = vals.shape().first().copied().unwrap_or(0);
    let j = vals.numel() / b.max(1);
    check_shape("scores", scores, &[n, k])?;
    check_shape("sw", sw, &[n, j])?;
    check_shape("smeta", smeta, &[n])?;
    let mut p = params(n, k, (1, 1), (1, 1))?;
    p.rows = to_u32(OP, "B", b)?;
    p.offset = to_u32(OP, "offset", offset)?;
    p.total = to_u32(OP, "N*K", n * k)?;
    p.j = to_u32(OP, "J", j)?;
    ctx.dispatch(
        SCORE_GATHER,
        &p,
        &[(14, vals), (15, sw), (16, smeta), (17, scores)],
        ctx.grid_1d(b)?,
    )
}

/// What one compute call holds: the passes, planned once and reused by every augmentation.
struct Engine {
    method: CamMethod,
    layer: String,
    shape: [usize; 4],
    act_shape: [usize; 4],
    objective: Objective,
    grad: Option<GradientPass>,
    fwd: Option<ForwardPlan>,
    masked: Option<ForwardPlan>,
}

/// One transform's result.
struct Once {
    cam: Tensor,
    up: Tensor,
    logits: Option<Vec<f32>>,
    targets: Vec<i64>,
}

impl Engine {
    fn new(
        ctx: &GpuContext,
        model: &Model,
        cam: &Cam,
        layer: &str,
        shape: [usize; 4],
        objective: Objective,
    ) -> Result<Engine> {
        let method = cam.method;
        // A dense (rank-2) layer is refused before planning; a 4-D output's spatial size
        // depends on the input and is checked on the plan below.
        let info = model
            .layers()
            .iter()
            .find(|l| l.name == layer || l.aliases.iter().any(|a| a == layer));
        if let Some(l) = info.filter(|l| l.output_shape.len() != 4) {
            return Err(not_spatial(model, layer, &l.output_shape));
        }
        let (grad, fwd) = if method.uses_gradients() {
            // The model's kept pass when its last call had these shapes (handed back by
            // `finish`); every map returned is computed into tensors of this call.
            let pass = GradientPass::reuse_or_new(
                ctx,
                model,
                shape,
                objective.clone(),
                Some(layer),
                ReluRule::Standard,
            )?;
            (Some(pass), None)
        } else {
            (None, Some(model.forward_plan(ctx, shape)?))
        };
        let act = match (&grad, &fwd) {
            (Some(g), _) => g.forward.activation(layer)?,
            (_, Some(f)) => f.activation(layer)?,
            _ => unreachable!("one of the two plans exists"),
        };
        let act_shape = match act.shape() {
            [n, k, h, w] if h * w > 1 => [*n, *k, *h, *w],
            s => return Err(not_spatial(model, layer, s)),
        };
        let masked = if method == CamMethod::ScoreCam {
            let pairs = act_shape[0] * act_shape[1];
            let b = match cam.batch_size {
                Some(b) => b.max(1).min(pairs),
                None => fitted_batch(ctx, model, layer, &act_shape, shape, pairs),
            };
            Some(model.forward_plan(ctx, [b, shape[1], shape[2], shape[3]])?)
        } else {
            None
        };
        Ok(Engine {
            method,
            layer: layer.to_string(),
            shape,
            act_shape,
            objective,
            grad,
            fwd,
            masked,
        })
    }

    /// Hands the gradient pass back to the model for its next call.
    fn finish(self, model: &Model) {
        if let Some(pass) = self.grad {
            pass.keep(model, Some(&self.layer), ReluRule::Standard);
        }
    }

    fn forward(&self) -> &ForwardPlan {
        match (&self.grad, &self.fwd) {
            (Some(g), _) => &g.forward,
            (_, Some(f)) => f,
            _ => unreachable!("one of the two plans exists"),
        }
    }

    fn run(&self, ctx: &GpuContext, model: &Model, cam: &Cam, input: &Tensor) -> Result<CamMaps> {
        let [n, c, hh, ww] = self.shape;
        let [_, _, h, w] = self.act_shape;
        let transforms: Vec<(bool, f32)> = if cam.aug_smooth {
            [false, true]
                .into_iter()
                .flat_map(|f| [1.0f32, 0.9, 1.1].map(move |m| (f, m)))
                .collect()
        } else {
            vec![(false, 1.0)]
        };
        let mut result: Option<(Tensor, Tensor)> = None;
        let mut logits = Vec::new();
        let mut targets = Vec::new();
        let weight = 1.0 / transforms.len() as f32;
        let (acc_cam, acc_up) = if transforms.len() > 1 {
            (
                Some(Tensor::empty(ctx, &[n, h, w], DType::F32)?),
                Some(Tensor::empty(ctx, &[n, hh, ww], DType::F32)?),
            )
        } else {
            (None, None)
        };
        for (t, &(flip, factor)) in transforms.iter().enumerate() {
            let once = self.run_once(ctx, cam, input, flip, factor, t == 0)?;
            if t == 0 {
                logits = once.logits.clone().unwrap_or_default();
                targets = once.targets.clone();
            }
            match (&acc_cam, &acc_up) {
                (Some(ac), Some(au)) => {
                    let d1 = accumulate_map(ctx, ac, &once.cam, flip, weight, t > 0)?;
                    let d2 = accumulate_map(ctx, au, &once.up, flip, weight, t > 0)?;
                    ctx.run(&[&d1, &d2])?;
                }
                _ => result = Some((once.cam, once.up)),
            }
        }
        let (cam_t, up_t) = match (acc_cam, acc_up, result) {
            (Some(a), Some(b), _) => (a, b),
            (_, _, Some(r)) => r,
            _ => unreachable!("at least one transform ran"),
        };
        let guided = if self.method == CamMethod::GuidedGradCam {
            let pass = GradientPass::new(
                ctx,
                model,
                self.shape,
                self.objective.clone(),
                None,
                ReluRule::Guided,
            )?;
            let copy = augment_input(ctx, pass.forward.input(), input, false, 1.0)?;
            ctx.run(&[&copy])?;
            pass.run(ctx)?;
            let g = pass
                .backward
                .input_grad()
                .ok_or_else(|| Error::shape(OP, "the guided pass has no input gradient"))?;
            let out = Tensor::empty(ctx, &[n, c, hh, ww], DType::F32)?;
            let d = guided_product(ctx, &out, g, &up_t)?;
            ctx.run(&[&d])?;
            Some(out)
        } else {
            None
        };
        Ok(CamMaps {
            cam: cam_t,
            cam_upsampled: up_t,
            guided,
            targets,
            logits,
        })
    }

    /// The whole method for one input transform.
    fn run_once(
        &self,
        ctx: &GpuContext,
        cam: &Cam,
        input: &Tensor,
        flip: bool,
        factor: f32,
        read_logits: bool,
    ) -> Result<Once> {
        let [n, _, hh, ww] = self.shape;
        let [_, k, h, w] = self.act_shape;
        let fwd = self.forward();
        let write = augment_input(ctx, fwd.input(), input, flip, factor)?;
        ctx.run(&[&write])?;
        match &self.grad {
            Some(pass) => pass.run(ctx)?,
            None => fwd.run(ctx)?,
        }
        let logits = fwd.output().download(ctx)?;
        let targets = self.objective.class_indices(n, Some(&logits));
        let act = fwd.activation(&self.layer)?;
        let cam_t = Tensor::empty(ctx, &[n, h, w], DType::F32)?;
        let weights = Tensor::empty(ctx, &[n, k], DType::F32)?;
        let mut keep: Vec<Tensor> = Vec::new();
        let dispatches: Vec<Dispatch> = match self.method {
            CamMethod::ScoreCam => {
                self.score_cam(ctx, act, &weights, &mut keep)?;
                vec![cam_weighted_sum(ctx, &cam_t, act, &weights)?]
            }
            CamMethod::EigenCam => {
                let means = Tensor::empty(ctx, &[n, k], DType::F32)?;
                let gram = Tensor::empty(ctx, &[n, h * w, h * w], DType::F32)?;
                let vecs = Tensor::empty(ctx, &[n, 2, h * w], DType::F32)?;
                eigen_cam(ctx, &cam_t, act, &means, &gram, &vecs, cam.eigen_iterations)?
            }
            m => {
                let grad = self
                    .grad
                    .as_ref()
                    .map(|g| g.backward.grad(&self.layer))
                    .transpose()?
                    .ok_or_else(|| Error::shape(OP, "no gradient pass"))?;
                let how = match m {
                    CamMethod::GradCam | CamMethod::GuidedGradCam => GradWeighting::GradCam,
                    CamMethod::GradCamPlusPlus => GradWeighting::GradCamPlusPlus,
                    CamMethod::XGradCam => GradWeighting::XGradCam,
                    CamMethod::HiResCam => GradWeighting::HiResCam,
                    _ => GradWeighting::LayerCam,
                };
                cam_from_gradients(ctx, &cam_t, &weights, act, grad, how)?
            }
        };
        let up = Tensor::empty(ctx, &[n, hh, ww], DType::F32)?;
        let stats = Tensor::empty(ctx, &[n, 2], DType::F32)?;
        let stats2 = Tensor::empty(ctx, &[n, 2], DType::F32)?;
        let norm = upsample_normalize(ctx, &up, &cam_t, &stats, &stats2)?;
        let all: Vec<&Dispatch> = dispatches.iter().chain(norm.iter()).collect();
        ctx.run(&all)?;
        Ok(Once {
            cam: cam_t,
            up,
            logits: read_logits.then_some(logits),
            targets,
        })
    }

    /// Score-CAM's channel weights `[N, K]` (softmax over channels of the masked scores),
    /// computed and left on the GPU. `keep` holds scratch alive until the work is submitted.
    fn score_cam(
        &self,
        ctx: &GpuContext,
        act: &Tensor,
        weights: &Tensor,
        keep: &mut Vec<Tensor>,
    ) -> Result<()> {
        let [n, _, hh, ww] = self.shape;
        let [_, k, _, _] = self.act_shape;
        let masked = self
            .masked
            .as_ref()
            .ok_or_else(|| Error::shape(OP, "no masked-batch plan"))?;
        let fwd = self.forward();
        // Score weights per image from the (transformed) input's own forward pass; the masks
        // multiply that same transformed input (its forward input buffer), as
        // pytorch-grad-cam masks the augmented tensor.
        let target_vals = fwd.activation(&self.objective.layer)?;
        let row_shape = target_vals.shape()[1..].to_vec();
        let j: usize = row_shape.iter().product();
        let values = if self.objective.needs_output() {
            Some(target_vals.download(ctx)?)
        } else {
            None
        };
        let mut meta = vec![-1.0f32; n];
        let mut sw = vec![0.0f32; n * j];
        let seed_targets: Vec<usize> = (0..n)
            .filter(|&i| !matches!(self.objective.target(i), Target::Probability(_)))
            .collect();
        if !seed_targets.is_empty() {
            let seeds = self.objective.seed(n, &row_shape, values.as_deref())?;
            for i in seed_targets {
                sw[i * j..(i + 1) * j].copy_from_slice(&seeds[i * j..(i + 1) * j]);
            }
        }
        for (i, m) in meta.iter_mut().enumerate() {
            if let Target::Probability(c) = self.objective.target(i) {
                *m = *c as f32;
            }
        }
        let sw_t = Tensor::from_slice(ctx, &[n, j], &sw)?;
        let meta_t = Tensor::from_slice(ctx, &[n], &meta)?;
        let cstats = Tensor::empty(ctx, &[n * k, 2], DType::F32)?;
        let scores = Tensor::empty(ctx, &[n, k], DType::F32)?;
        let mut owned = vec![score_channel_minmax(ctx, &cstats, act, (hh, ww))?];
        let b = masked.input().shape()[0];
        let vals = masked.activation(&self.objective.layer)?;
        let vals2 = vals.reshape(&[b, j])?;
        let pairs = n * k;
        // Batches are recorded in groups so that one submission stays a reasonable size.
        const GROUP: usize = 16;
        let starts: Vec<usize> = (0..pairs).step_by(b).collect();
        for (g, chunk) in starts.chunks(GROUP).enumerate() {
            let mut per: Vec<(Dispatch, Dispatch)> = Vec::with_capacity(chunk.len());
            for &off in chunk {
                per.push((
                    score_masked_input(ctx, masked.input(), fwd.input(), act, &cstats, off)?,
                    score_gather(ctx, &scores, &vals2, &sw_t, &meta_t, n, k, off)?,
                ));
            }
            let mut list: Vec<&Dispatch> = Vec::new();
            if g == 0 {
                list.extend(owned.iter());
            }
            for (mask, gather) in &per {
                list.push(mask);
                list.extend(masked.dispatches());
                list.push(gather);
            }
            ctx.run(&list)?;
        }
        owned.push(softmax_forward(ctx, weights, &scores)?);
        ctx.run(&[&owned[1]])?;
        keep.extend([sw_t, meta_t, cstats, scores]);
        Ok(())
    }
}
