//! Sanity evaluation of attention maps: the checks the literature uses to expose misleading
//! saliency methods.
//!
//! - **Pointing game** (Zhang et al. 2016, "Top-down neural attention by excitation
//!   backprop", ECCV): a hit when the map's maximum, at input resolution, lies inside the
//!   object's bounding box ([`pointing_hit`], [`pointing_game`]). Every pixel that attains
//!   the maximum is a candidate: the image is a hit when any of them lies within `tolerance`
//!   pixels (Euclidean distance from the pixel centre to the box) of the box. The paper uses
//!   a 15 px tolerance; since 15 px is a quarter of a 64 px demo image, `cnnvis eval` scales
//!   it with the input, 15 px per 224 px ([`paper_tolerance`]: 4.3 px at 64 px, about half a
//!   cell of an 8×8 Grad-CAM), and reports the strict figure (0 px) beside it. A constant map
//!   (no maximum to point with) counts as a miss.
//! - **Deletion and insertion** (Petsiuk et al. 2018, "RISE: Randomized input sampling for
//!   explanation of black-box models", BMVC): pixels ordered by the map (descending, ties by
//!   position) are removed from the image, or inserted into a baseline, in `S` equal steps;
//!   the target's softmax probability is recorded at the `S + 1` points and integrated with
//!   the trapezoid rule over the fraction of pixels in [0, 1] ([`trapezoid_auc`]). As in
//!   RISE, deletion replaces pixels by 0 in model-input space (the normalization mean) and
//!   insertion starts from a blurred copy of the image (separable Gaussian, σ = 5 px, 11 taps,
//!   edge-clamped; see [`CausalBaseline`]). All `2(S + 1)` inputs of one image run as one GPU
//!   batch ([`deletion_insertion`]). Lower deletion AUC and higher insertion AUC are better.
//! - **Model-randomization sanity check** (Adebayo et al. 2018, "Sanity checks for saliency
//!   maps", NeurIPS): cascading randomization from the logits layer down to the first conv
//!   ([`cascade_layers`], [`randomize_weights`], [`randomization_check`]). At each step one
//!   more layer's weight is redrawn from N(0, 2 / fan_in) (He/Kaiming normal) and its bias
//!   from U(−1/√fan_in, 1/√fan_in) (PyTorch's default), with a fixed seed; a BatchNorm that
//!   follows a randomized conv is reset to its fresh state (γ = 1, β = 0, running mean 0,
//!   variance 1), so the folded layer is a freshly initialized conv. The figure is the
//!   Spearman rank correlation ([`spearman`], average ranks for ties) between the absolute
//!   values of the trained and the randomized model's maps, averaged over the images whose
//!   two maps are both non-constant. A method that passes the check decorrelates (≈ 0) once
//!   the model is random; guided backprop famously does not (its maps stay edge detectors).

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Tensor};
use crate::model::spec::{GraphSpec, LayerOp};
use crate::model::weights::Weights;
use crate::model::{LoadOptions, Model};
use crate::ops::random::{gaussian_cpu, uniform_cpu};
use crate::vis::cam::{Cam, CamMethod};
use crate::vis::saliency::{Saliency, SaliencyMethod};
use crate::vis::Target;

const OP: &str = "eval";

// ---------------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------------

/// A map method under evaluation: a CAM method or a saliency method, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMethod {
    /// A class activation map (the upsampled, normalised map; Guided Grad-CAM: the maximum
    /// over channels of its absolute value).
    Cam(CamMethod),
    /// A saliency map (the method's default modifier and channel reduction).
    Saliency(SaliencyMethod),
}

/// Saliency methods with their CLI names.
const SALIENCY_NAMES: [(SaliencyMethod, &str); 9] = [
    (SaliencyMethod::Vanilla, "vanilla"),
    (SaliencyMethod::Guided, "guided"),
    (SaliencyMethod::Deconvnet, "deconvnet"),
    (SaliencyMethod::SmoothGrad, "smoothgrad"),
    (SaliencyMethod::SmoothGradSquared, "smoothgrad-sq"),
    (SaliencyMethod::VarGrad, "vargrad"),
    (SaliencyMethod::InputXGradient, "input-x-gradient"),
    (SaliencyMethod::IntegratedGradients, "integrated-gradients"),
    (SaliencyMethod::Occlusion, "occlusion"),
];

impl EvalMethod {
    /// The methods `cnnvis eval` runs by default: every CAM method and the main saliency ones.
    pub const DEFAULT: [EvalMethod; 13] = [
        EvalMethod::Cam(CamMethod::GradCam),
        EvalMethod::Cam(CamMethod::GradCamPlusPlus),
        EvalMethod::Cam(CamMethod::HiResCam),
        EvalMethod::Cam(CamMethod::XGradCam),
        EvalMethod::Cam(CamMethod::LayerCam),
        EvalMethod::Cam(CamMethod::ScoreCam),
        EvalMethod::Cam(CamMethod::EigenCam),
        EvalMethod::Cam(CamMethod::GuidedGradCam),
        EvalMethod::Saliency(SaliencyMethod::Vanilla),
        EvalMethod::Saliency(SaliencyMethod::Guided),
        EvalMethod::Saliency(SaliencyMethod::SmoothGrad),
        EvalMethod::Saliency(SaliencyMethod::InputXGradient),
        EvalMethod::Saliency(SaliencyMethod::IntegratedGradients),
    ];

    /// The CLI name (`gradcam`, `vanilla`, `integrated-gradients`, ...).
    pub fn name(self) -> &'static str {
        match self {
            EvalMethod::Cam(m) => m.name(),
            EvalMethod::Saliency(m) => SALIENCY_NAMES
                .iter()
                .find(|(s, _)| *s == m)
                .map(|(_, n)| *n)
                .unwrap_or("saliency"),
        }
    }

    /// Every accepted name, comma-separated (for error messages and help).
    pub fn all_names() -> String {
        let cams = CamMethod::ALL.map(CamMethod::name);
        let sals = SALIENCY_NAMES.map(|(_, n)| n);
        cams.iter()
            .chain(sals.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for EvalMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EvalMethod {
    type Err = Error;

    /// Parses a CAM name (as [`CamMethod`] does) or a saliency name (dashes and underscores
    /// optional, case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let key = |t: &str| -> String {
            t.to_ascii_lowercase()
                .chars()
                .filter(|c| !matches!(c, '-' | '_' | ' '))
                .collect()
        };
        let k = key(s);
        if let Some((m, _)) = SALIENCY_NAMES.iter().find(|(_, n)| key(n) == k) {
            return Ok(EvalMethod::Saliency(*m));
        }
        if let Ok(m) = CamMethod::from_str(s) {
            return Ok(EvalMethod::Cam(m));
        }
        Err(Error::shape(
            OP,
            format!(
                "unknown method `{s}`; expected one of {}",
                EvalMethod::all_names()
            ),
        ))
    }
}

/// Options of the maps under evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapConfig {
    /// Noise samples of the SmoothGrad family (default 50).
    pub samples: usize,
    /// Integration steps of integrated gradients (default 50).
    pub steps: usize,
    /// Noise seed (default 0).
    pub seed: u64,
}

impl Default for MapConfig {
    fn default() -> Self {
        MapConfig {
            samples: 50,
            steps: 50,
            seed: 0,
        }
    }
}

/// The `[N, H, W]` maps (row-major, at input resolution) of `method` for `input`
/// `[N, C, H, W]` (model-input space, on the GPU) and `targets` (one or one per image).
pub fn attention_maps(
    ctx: &GpuContext,
    model: &Model,
    method: EvalMethod,
    config: &MapConfig,
    input: &Tensor,
    targets: &[Target],
) -> Result<Vec<f32>> {
    match method {
        EvalMethod::Cam(m) => {
            let maps = Cam::new(m).compute(ctx, model, input, targets)?;
            match &maps.guided {
                Some(g) => {
                    let s = g.shape().to_vec();
                    Ok(channel_abs_max(&g.download(ctx)?, &s))
                }
                None => maps.cam_upsampled.download(ctx),
            }
        }
        EvalMethod::Saliency(m) => {
            let sal = Saliency::of(m)
                .samples(config.samples)
                .steps(config.steps)
                .seed(config.seed);
            let maps = sal.compute(ctx, model, input, targets)?;
            maps.saliency.download(ctx)
        }
    }
}

/// `max_c |x[n, c, y, x]|` of `[N, C, H, W]` values.
fn channel_abs_max(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let (n, c, plane) = (shape[0], shape[1], shape[2] * shape[3]);
    let mut out = vec![0f32; n * plane];
    for i in 0..n {
        for ch in 0..c {
            let src = &data[(i * c + ch) * plane..(i * c + ch + 1) * plane];
            for (o, v) in out[i * plane..(i + 1) * plane].iter_mut().zip(src) {
                *o = o.max(v.abs());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pointing game
// ---------------------------------------------------------------------------------------------

/// An object's box in pixels of the map: pixel `(x, y)` (centre `(x + ½, y + ½)`) lies inside
/// when `x0 ≤ x + ½ < x1` and `y0 ≤ y + ½ < y1` (integer boxes: `x0, y0` inclusive, `x1, y1`
/// exclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge (exclusive).
    pub x1: f32,
    /// Bottom edge (exclusive).
    pub y1: f32,
}

impl BoundingBox {
    /// A box `[x0, y0, x1, y1]`.
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        BoundingBox { x0, y0, x1, y1 }
    }

    /// The box in an image resized by `sx` horizontally and `sy` vertically.
    pub fn scaled(self, sx: f32, sy: f32) -> Self {
        BoundingBox::new(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy)
    }

    /// Euclidean distance from the centre of pixel `(x, y)` to the box (0 inside).
    pub fn distance(&self, x: usize, y: usize) -> f32 {
        let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
        let dx = if cx < self.x0 {
            self.x0 - cx
        } else if cx >= self.x1 {
            cx - self.x1
        } else {
            0.0
        };
        let dy = if cy < self.y0 {
            self.y0 - cy
        } else if cy >= self.y1 {
            cy - self.y1
        } else {
            0.0
        };
        let d = (dx * dx + dy * dy).sqrt();
        // A centre exactly on the exclusive edge is outside, at distance > 0.
        if d == 0.0 && (cx >= self.x1 || cy >= self.y1) {
            f32::MIN_POSITIVE
        } else {
            d
        }
    }
}

/// The paper's 15 px tolerance (at 224 px inputs) scaled to an `[H, W]` input:
/// `15 · min(H, W) / 224` (4.3 px at 64 px).
pub fn paper_tolerance(size: [usize; 2]) -> f32 {
    15.0 * size[0].min(size[1]) as f32 / 224.0
}

/// Whether the maximum of `map` `[H, W]` points at the box: any pixel attaining the maximum
/// lies within `tolerance` pixels of `bbox`. NaNs are ignored; a constant map is a miss.
pub fn pointing_hit(
    map: &[f32],
    size: [usize; 2],
    bbox: &BoundingBox,
    tolerance: f32,
) -> Result<bool> {
    let [h, w] = size;
    if map.len() != h * w || map.is_empty() {
        return Err(Error::shape(
            OP,
            format!("map has {} values, expected {h}x{w}", map.len()),
        ));
    }
    let finite = map.iter().copied().filter(|v| !v.is_nan());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if lo >= hi {
        return Ok(false);
    }
    Ok(map
        .iter()
        .enumerate()
        .any(|(i, &v)| v == hi && bbox.distance(i % w, i / w) <= tolerance))
}

/// Pointing-game tally over a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct PointingGame {
    /// Per image: whether the map's maximum hit the box.
    pub hits: Vec<bool>,
}

impl PointingGame {
    /// Fraction of hits (0 for no images).
    pub fn accuracy(&self) -> f64 {
        if self.hits.is_empty() {
            0.0
        } else {
            self.hits.iter().filter(|h| **h).count() as f64 / self.hits.len() as f64
        }
    }
}

/// The pointing game over `[N, H, W]` maps and one box per image.
pub fn pointing_game(
    maps: &[f32],
    shape: [usize; 3],
    boxes: &[BoundingBox],
    tolerance: f32,
) -> Result<PointingGame> {
    let [n, h, w] = shape;
    if maps.len() != n * h * w || boxes.len() != n {
        return Err(Error::shape(
            OP,
            format!(
                "{} map values and {} boxes for maps of shape [{n}, {h}, {w}]",
                maps.len(),
                boxes.len()
            ),
        ));
    }
    let hits = (0..n)
        .map(|i| {
            pointing_hit(
                &maps[i * h * w..(i + 1) * h * w],
                [h, w],
                &boxes[i],
                tolerance,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PointingGame { hits })
}

// ---------------------------------------------------------------------------------------------
// Rank correlation, AUC
// ---------------------------------------------------------------------------------------------

/// Ranks 1..n of `v`, ties sharing their average rank (NaN sorts last).
pub fn average_ranks(v: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0f64; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && v[idx[j]] == v[idx[i]] {
            j += 1;
        }
        // Positions i..j (0-based) hold ranks i+1..=j; their mean is (i + 1 + j) / 2.
        let r = (i + 1 + j) as f64 / 2.0;
        for &k in &idx[i..j] {
            ranks[k] = r;
        }
        i = j;
    }
    ranks
}

/// Spearman's rank correlation of `a` and `b` (Pearson's correlation of their average ranks);
/// `None` when either is constant (no ranking to compare).
pub fn spearman(a: &[f32], b: &[f32]) -> Result<Option<f64>> {
    if a.len() != b.len() {
        return Err(Error::shape(
            OP,
            format!("spearman of {} and {} values", a.len(), b.len()),
        ));
    }
    let (ra, rb) = (average_ranks(a), average_ranks(b));
    let n = ra.len() as f64;
    if n < 2.0 {
        return Ok(None);
    }
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0f64, 0f64, 0f64);
    for (x, y) in ra.iter().zip(&rb) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return Ok(None);
    }
    Ok(Some(sab / (saa * sbb).sqrt()))
}

/// Area under `ys` sampled at `x = k / (len − 1)`, `k = 0..len`, by the trapezoid rule (the
/// RISE paper's `auc`); needs at least two points.
pub fn trapezoid_auc(ys: &[f64]) -> Result<f64> {
    if ys.len() < 2 {
        return Err(Error::shape(
            OP,
            format!("an AUC needs at least 2 points, got {}", ys.len()),
        ));
    }
    let inner: f64 = ys.iter().sum::<f64>() - (ys[0] + ys[ys.len() - 1]) / 2.0;
    Ok(inner / (ys.len() - 1) as f64)
}

// ---------------------------------------------------------------------------------------------
// Deletion / insertion
// ---------------------------------------------------------------------------------------------

/// What removed pixels become (deletion) or where insertion starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CausalBaseline {
    /// A constant in model-input space (0: the normalization mean; RISE's deletion).
    Value(f32),
    /// The image blurred by a separable Gaussian of `sigma` px and `taps` taps (odd),
    /// edge-clamped (RISE's insertion: σ = 5, 11 taps).
    Blur {
        /// Standard deviation in pixels.
        sigma: f32,
        /// Kernel length.
        taps: usize,
    },
}

/// Options of [`deletion_insertion`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CausalConfig {
    /// Steps `S`: the curves have `S + 1` points (default 16).
    pub steps: usize,
    /// Deletion's replacement (default `Value(0.0)`).
    pub deletion: CausalBaseline,
    /// Insertion's start (default `Blur { sigma: 5.0, taps: 11 }`).
    pub insertion: CausalBaseline,
}

impl Default for CausalConfig {
    fn default() -> Self {
        CausalConfig {
            steps: 16,
            deletion: CausalBaseline::Value(0.0),
            insertion: CausalBaseline::Blur {
                sigma: 5.0,
                taps: 11,
            },
        }
    }
}

/// One image's deletion and insertion curves.
#[derive(Debug, Clone, PartialEq)]
pub struct CausalCurves {
    /// Target probability after deleting fraction `k / S` of the pixels, `k = 0..=S`.
    pub deletion: Vec<f64>,
    /// Target probability after inserting fraction `k / S` of the pixels into the baseline.
    pub insertion: Vec<f64>,
    /// Trapezoid AUC of `deletion` (lower is better).
    pub deletion_auc: f64,
    /// Trapezoid AUC of `insertion` (higher is better).
    pub insertion_auc: f64,
}

/// `x` `[C, H, W]` blurred per channel by a separable, edge-clamped Gaussian.
pub fn gaussian_blur(x: &[f32], shape: [usize; 3], sigma: f32, taps: usize) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    if x.len() != c * h * w {
        return Err(Error::shape(
            OP,
            format!("blur of {} values as [{c}, {h}, {w}]", x.len()),
        ));
    }
    if taps.is_multiple_of(2) || sigma.is_nan() || sigma <= 0.0 || !sigma.is_finite() {
        return Err(Error::shape(
            OP,
            format!("blur needs an odd tap count and sigma > 0, got {taps} taps, sigma {sigma}"),
        ));
    }
    let r = (taps / 2) as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
    let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0f32; x.len()];
    let mut out = vec![0f32; x.len()];
    for ch in 0..c {
        let p = ch * h * w;
        for y in 0..h {
            for xx in 0..w {
                tmp[p + y * w + xx] = k
                    .iter()
                    .enumerate()
                    .map(|(t, kv)| kv * x[p + y * w + clamp(xx as isize + t as isize - r, w)])
                    .sum();
            }
        }
        for y in 0..h {
            for xx in 0..w {
                out[p + y * w + xx] = k
                    .iter()
                    .enumerate()
                    .map(|(t, kv)| kv * tmp[p + clamp(y as isize + t as isize - r, h) * w + xx])
                    .sum();
            }
        }
    }
    Ok(out)
}

fn baseline_image(image: &[f32], shape: [usize; 3], b: CausalBaseline) -> Result<Vec<f32>> {
    match b {
        CausalBaseline::Value(v) => Ok(vec![v; image.len()]),
        CausalBaseline::Blur { sigma, taps } => gaussian_blur(image, shape, sigma, taps),
    }
}

/// Pixel indices of an `[H, W]` map, highest value first (ties by position, NaN last).
pub fn pixel_order(map: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..map.len()).collect();
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    idx.sort_by(|&a, &b| key(map[b]).total_cmp(&key(map[a])).then(a.cmp(&b)));
    idx
}

/// Softmax probability of `class` in `logits`, in f64.
fn probability(logits: &[f32], class: usize) -> f64 {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    logits
        .get(class)
        .map_or(0.0, |&v| (v as f64 - max).exp() / sum)
}

/// Deletion and insertion curves of each image of `images` `[N, C, H, W]` (model-input
/// space, row-major) under its map (`maps` `[N, H, W]`) for the softmax probability of
/// `classes[n]`. One forward plan of `2(S + 1)` rows is built once; each image's deletion
/// and insertion inputs run through it as one batch.
pub fn deletion_insertion(
    ctx: &GpuContext,
    model: &Model,
    images: &[f32],
    shape: [usize; 4],
    maps: &[f32],
    classes: &[usize],
    config: &CausalConfig,
) -> Result<Vec<CausalCurves>> {
    let [n, c, h, w] = shape;
    let (plane, per) = (h * w, c * h * w);
    if images.len() != n * per || maps.len() != n * plane || classes.len() != n {
        return Err(Error::shape(
            OP,
            format!(
                "deletion/insertion of {} input values, {} map values and {} classes for \
                 shape {shape:?}",
                images.len(),
                maps.len(),
                classes.len()
            ),
        ));
    }
    let s = config.steps;
    if s == 0 {
        return Err(Error::shape(OP, "deletion/insertion needs at least 1 step"));
    }
    let rows = 2 * (s + 1);
    let plan = model.forward_plan(ctx, [rows, c, h, w])?;
    let mut out = Vec::with_capacity(n);
    let mut batch = vec![0f32; rows * per];
    for i in 0..n {
        let image = &images[i * per..(i + 1) * per];
        let order = pixel_order(&maps[i * plane..(i + 1) * plane]);
        let del_base = baseline_image(image, [c, h, w], config.deletion)?;
        let ins_base = baseline_image(image, [c, h, w], config.insertion)?;
        for k in 0..=s {
            let count = (k * plane + s / 2) / s;
            let del = &mut batch[k * per..(k + 1) * per];
            del.copy_from_slice(image);
            for &p in &order[..count] {
                for ch in 0..c {
                    del[ch * plane + p] = del_base[ch * plane + p];
                }
            }
            let ins = &mut batch[(s + 1 + k) * per..(s + 2 + k) * per];
            ins.copy_from_slice(&ins_base);
            for &p in &order[..count] {
                for ch in 0..c {
                    ins[ch * plane + p] = image[ch * plane + p];
                }
            }
        }
        plan.input().write(ctx, &batch)?;
        plan.run(ctx)?;
        let logits = plan.output().download(ctx)?;
        let units = logits.len() / rows;
        if classes[i] >= units {
            return Err(Error::shape(
                OP,
                format!("class {} is out of range for {units} outputs", classes[i]),
            ));
        }
        let probs: Vec<f64> = logits
            .chunks(units)
            .map(|row| probability(row, classes[i]))
            .collect();
        let deletion = probs[..=s].to_vec();
        let insertion = probs[s + 1..].to_vec();
        out.push(CausalCurves {
            deletion_auc: trapezoid_auc(&deletion)?,
            insertion_auc: trapezoid_auc(&insertion)?,
            deletion,
            insertion,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Model randomization
// ---------------------------------------------------------------------------------------------

/// The layers with parameters (conv and dense) of `spec`, the output side first: the order of
/// the cascading randomization.
pub fn cascade_layers(spec: &GraphSpec) -> Vec<String> {
    spec.layers
        .iter()
        .rev()
        .filter(|l| matches!(l.op, LayerOp::Conv2d { .. } | LayerOp::Linear { .. }))
        .map(|l| l.name.clone())
        .collect()
}

/// A copy of the tensors `spec` uses, as f32, with `layers` re-initialized (see the module
/// doc: He-normal weights, PyTorch-default biases, following BatchNorms reset) from `seed`.
pub fn randomize_weights(
    weights: &Weights,
    spec: &GraphSpec,
    layers: &[String],
    seed: u64,
) -> Result<Weights> {
    use std::collections::HashMap;
    let mut replaced: HashMap<String, Vec<f32>> = HashMap::new();
    for name in layers {
        let (pos, layer) = spec
            .layers
            .iter()
            .enumerate()
            .find(|(_, l)| &l.name == name)
            .ok_or_else(|| Error::shape(OP, format!("cannot randomize `{name}`: no such layer")))?;
        let (weight, bias) = match &layer.op {
            LayerOp::Conv2d { weight, bias, .. } | LayerOp::Linear { weight, bias } => {
                (weight, bias)
            }
            _ => {
                return Err(Error::shape(
                    OP,
                    format!("cannot randomize `{name}`: it has no weights"),
                ))
            }
        };
        let shape = weights.info(weight).map(|i| i.shape).unwrap_or_default();
        let numel: usize = shape.iter().product();
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let layer_seed = seed ^ (pos as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let std = (2.0 / fan_in as f64).sqrt() as f32;
        let idx = |i: usize| -> Result<u32> {
            u32::try_from(i)
                .map_err(|_| Error::shape(OP, format!("`{weight}` has too many values")))
        };
        let w = (0..numel)
            .map(|i| Ok(gaussian_cpu(layer_seed, idx(i)?) * std))
            .collect::<Result<Vec<f32>>>()?;
        replaced.insert(weight.clone(), w);
        if let Some(b) = bias {
            let m = weights
                .info(b)
                .map(|i| i.shape.iter().product())
                .unwrap_or(0);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let bias_seed = layer_seed ^ 0xB1A5;
            let v = (0..m)
                .map(|i| Ok((uniform_cpu(bias_seed, idx(i)?) * 2.0 - 1.0) * bound))
                .collect::<Result<Vec<f32>>>()?;
            replaced.insert(b.clone(), v);
        }
        // A BatchNorm reading this conv goes back to its fresh state.
        for l in &spec.layers {
            if let (LayerOp::BatchNorm2d(bn), [input]) = (&l.op, l.inputs.as_slice()) {
                if input == name {
                    let c = weights
                        .info(&bn.weight)
                        .map(|i| i.shape.iter().product())
                        .unwrap_or(0);
                    replaced.insert(bn.weight.clone(), vec![1.0; c]);
                    replaced.insert(bn.bias.clone(), vec![0.0; c]);
                    replaced.insert(bn.running_mean.clone(), vec![0.0; c]);
                    replaced.insert(bn.running_var.clone(), vec![1.0; c]);
                }
            }
        }
    }
    let mut names = spec.tensor_names();
    names.sort_unstable();
    names.dedup();
    let mut data: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::with_capacity(names.len());
    for name in names {
        let shape = weights.info(name).map(|i| i.shape).unwrap_or_default();
        let values = match replaced.remove(name) {
            Some(v) => v,
            None => weights.read_f32(name)?,
        };
        data.push((name.to_string(), shape, values));
    }
    let views = data
        .iter()
        .map(|(name, shape, values)| {
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(values),
            )
            .map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::shape(OP, format!("cannot assemble randomized weights: {e}")))?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::shape(OP, format!("cannot assemble randomized weights: {e}")))?;
    Ok(Weights::from_bytes(bytes)?)
}

/// One step of the cascade for one method.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeStep {
    /// The layer randomized at this step (every layer before it in the cascade is too).
    pub layer: String,
    /// Per image: Spearman correlation of |trained map| and |randomized map| (`None` when
    /// either map is constant).
    pub correlations: Vec<Option<f64>>,
}

impl CascadeStep {
    /// Mean of the defined correlations (NaN when none is).
    pub fn mean(&self) -> f64 {
        let v: Vec<f64> = self.correlations.iter().flatten().copied().collect();
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }
}

/// The cascade of one method.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomizationResult {
    /// The method.
    pub method: EvalMethod,
    /// One entry per cascade step, the output layer first.
    pub steps: Vec<CascadeStep>,
}

impl RandomizationResult {
    /// The mean correlation once every layer is randomized (NaN when the cascade is empty).
    pub fn final_correlation(&self) -> f64 {
        self.steps.last().map_or(f64::NAN, CascadeStep::mean)
    }
}

/// Which steps of the cascade [`randomization_check`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cascade {
    /// Every step, the output layer first.
    All,
    /// Only the last step: every layer randomized.
    Final,
}

/// Adebayo et al.'s cascading randomization: for each step of [`cascade_layers`] (or only
/// the last, with [`Cascade::Final`]), rebuilds the model from `weights` with the layers so
/// far re-initialized (`seed`), computes every method's maps of `input` `[N, C, H, W]` for
/// `targets`, and correlates them with the trained model's maps.
#[allow(clippy::too_many_arguments)]
pub fn randomization_check(
    ctx: &GpuContext,
    weights: &Weights,
    options: &LoadOptions,
    methods: &[EvalMethod],
    config: &MapConfig,
    input: &Tensor,
    targets: &[Target],
    seed: u64,
    cascade: Cascade,
) -> Result<Vec<RandomizationResult>> {
    let mut spec = Model::spec_for(weights, options)?;
    if let Some(p) = &options.preprocess {
        spec.preprocess = p.clone();
    }
    let trained = Model::build(ctx, weights, &spec)?;
    let n = input.shape().first().copied().unwrap_or(0);
    let reference = methods
        .iter()
        .map(|&m| attention_maps(ctx, &trained, m, config, input, targets))
        .collect::<Result<Vec<_>>>()?;
    drop(trained);
    let layers = cascade_layers(&spec);
    let mut results: Vec<RandomizationResult> = methods
        .iter()
        .map(|&method| RandomizationResult {
            method,
            steps: Vec::new(),
        })
        .collect();
    let first = match cascade {
        Cascade::All => 1,
        Cascade::Final => layers.len(),
    };
    for k in first..=layers.len() {
        let random = randomize_weights(weights, &spec, &layers[..k], seed)?;
        let model = Model::build(ctx, &random, &spec)?;
        for (mi, &method) in methods.iter().enumerate() {
            let maps = attention_maps(ctx, &model, method, config, input, targets)?;
            let per = maps.len() / n.max(1);
            let correlations = (0..n)
                .map(|i| {
                    let a: Vec<f32> = reference[mi][i * per..(i + 1) * per]
                        .iter()
                        .map(|v| v.abs())
                        .collect();
                    let b: Vec<f32> = maps[i * per..(i + 1) * per]
                        .iter()
                        .map(|v| v.abs())
                        .collect();
                    spearman(&a, &b)
                })
                .collect::<Result<Vec<_>>>()?;
            results[mi].steps.push(CascadeStep {
                layer: layers[k - 1].clone(),
                correlations,
            });
        }
    }
    Ok(results)
}
