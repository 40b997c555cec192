//! The saliency family: gradients with respect to the (normalized) input image and the methods
//! built on them, all computed as batched GPU passes.
//!
//! | method | what `saliency` holds | default modifier | default reduction |
//! |---|---|---|---|
//! | [`Saliency::vanilla`] | `∂score/∂x` (Simonyan et al. 2014) | absolute | max |
//! | [`Saliency::guided`] | guided backprop (Springenberg et al. 2015) | absolute | max |
//! | [`Saliency::deconvnet`] | deconvnet (Zeiler & Fergus 2014) | absolute | max |
//! | [`Saliency::smoothgrad`] | `E[∂score/∂(x + ε)]` (Smilkov et al. 2017) | absolute | max |
//! | [`Saliency::smoothgrad_squared`] | `E[(∂score/∂(x + ε))²]` | absolute | max |
//! | [`Saliency::vargrad`] | `Var[∂score/∂(x + ε)]` (Adebayo et al. 2018) | absolute | max |
//! | [`Saliency::input_x_gradient`] | `x · ∂score/∂x` | none | sum |
//! | [`Saliency::integrated_gradients`] | `(x − b) · ∫ ∂score/∂x(b + α(x − b)) dα` | none | sum |
//! | [`Saliency::occlusion`] | mean score drop of the windows covering a pixel | none | sum |
//!
//! The grad modifier acts after the aggregation (mean, variance, path integral) and before the
//! channel reduction; `keepdims` skips the reduction. Regression targets with
//! [`RegressionGoal::Maintain`] use keras-vis's `small_values` modifier unless a modifier is set
//! explicitly.
//!
//! Noise samples, path steps and occlusion windows are replicas of the input batch built on the
//! GPU by the kernels of `shaders/saliency.wgsl`; as many replicas as fit a memory budget
//! (see [`Saliency::batch_size`]) run as one batch, every chunk recorded into one submission,
//! and the sums are reduced on the GPU. Nothing is read back inside the loop.
//!
//! The noise methods and Captum's `NoiseTunnel` agree exactly when the same noise is fed
//! ([`Saliency::noise`]): sample `s` of image `n` is `x[n] + noise[s, n]`; SmoothGrad is the
//! mean of the `S` gradients, SmoothGrad² the mean of their squares, VarGrad the mean of the
//! squares minus the square of the mean (Captum's population variance).

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::model::Model;
use crate::ops::elementwise::scale;
use crate::ops::relu::ReluRule;
use crate::ops::{expect_dtype, expect_shape, to_u32};
use crate::vis::{GradientPass, Objective, RegressionGoal, Target};

const IMAGE_RANGE: Kernel = Kernel::new(Shader::Saliency, "image_range");
const NOISE_GENERATED: Kernel = Kernel::new(Shader::Saliency, "noise_batch_generated");
const NOISE_FED: Kernel = Kernel::new(Shader::Saliency, "noise_batch_fed");
const NOISE_ACCUMULATE: Kernel = Kernel::new(Shader::Saliency, "noise_accumulate");
const NOISE_FINALIZE: Kernel = Kernel::new(Shader::Saliency, "noise_finalize");
const PATH_BATCH: Kernel = Kernel::new(Shader::Saliency, "path_batch");
const PATH_ACCUMULATE: Kernel = Kernel::new(Shader::Saliency, "path_accumulate");
const TIMES_INPUT_DELTA: Kernel = Kernel::new(Shader::Saliency, "times_input_delta");
const MODIFY_REDUCE: Kernel = Kernel::new(Shader::Saliency, "modify_reduce");
const OCCLUDE_BATCH: Kernel = Kernel::new(Shader::Saliency, "occlude_batch");
const ROW_SCORES: Kernel = Kernel::new(Shader::Saliency, "row_scores");
const OCCLUSION_FINALIZE: Kernel = Kernel::new(Shader::Saliency, "occlusion_finalize");
const PROBABILITY_SEED: Kernel = Kernel::new(Shader::Saliency, "probability_seed");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    IMAGE_RANGE,
    NOISE_GENERATED,
    NOISE_FED,
    NOISE_ACCUMULATE,
    NOISE_FINALIZE,
    PATH_BATCH,
    PATH_ACCUMULATE,
    TIMES_INPUT_DELTA,
    MODIFY_REDUCE,
    OCCLUDE_BATCH,
    ROW_SCORES,
    OCCLUSION_FINALIZE,
    PROBABILITY_SEED,
];

/// Images per GPU pass when [`Saliency::batch_size`] is not set: also bounded by the device's
/// largest storage binding.
const MEMORY_BUDGET: u64 = 1 << 30;

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// Which saliency method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaliencyMethod {
    /// The plain gradient.
    Vanilla,
    /// Guided backprop.
    Guided,
    /// Deconvnet.
    Deconvnet,
    /// SmoothGrad: the mean gradient over noisy copies.
    SmoothGrad,
    /// SmoothGrad²: the mean squared gradient over noisy copies.
    SmoothGradSquared,
    /// VarGrad: the variance of the gradient over noisy copies.
    VarGrad,
    /// Input × gradient.
    InputXGradient,
    /// Integrated gradients.
    IntegratedGradients,
    /// Occlusion: score drops of sliding windows (forward passes only).
    Occlusion,
}

impl SaliencyMethod {
    fn is_noise(self) -> bool {
        matches!(
            self,
            SaliencyMethod::SmoothGrad
                | SaliencyMethod::SmoothGradSquared
                | SaliencyMethod::VarGrad
        )
    }

    fn is_attribution(self) -> bool {
        matches!(
            self,
            SaliencyMethod::InputXGradient
                | SaliencyMethod::IntegratedGradients
                | SaliencyMethod::Occlusion
        )
    }
}

/// keras-vis's grad modifiers, applied elementwise to the (aggregated) map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradModifier {
    /// Identity.
    None,
    /// `|g|` (keras-vis's default for saliency).
    Absolute,
    /// `max(g, 0)`.
    Relu,
    /// `-g`.
    Negate,
    /// `1 / (g + 1e-7)` (keras-vis's `invert`, epsilon = `K.epsilon()`).
    Invert,
    /// `|1 / (g + 1e-7)|`: where small changes keep the score (keras-vis's `small_values`).
    SmallValues,
}

impl GradModifier {
    fn code(self) -> u32 {
        match self {
            GradModifier::None => 0,
            GradModifier::Absolute => 1,
            GradModifier::Relu => 2,
            GradModifier::Negate => 3,
            GradModifier::Invert => 4,
            GradModifier::SmallValues => 5,
        }
    }

    /// The modifier applied to one value, as the kernel does it (CPU twin).
    pub fn apply(self, g: f32) -> f32 {
        match self {
            GradModifier::None => g,
            GradModifier::Absolute => g.abs(),
            GradModifier::Relu => g.max(0.0),
            GradModifier::Negate => -g,
            GradModifier::Invert => 1.0 / (g + 1e-7),
            GradModifier::SmallValues => (1.0 / (g + 1e-7)).abs(),
        }
    }
}

/// How a `[C, H, W]` map becomes `[H, W]` when `keepdims` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelReduce {
    /// Maximum over channels (keras-vis's saliency).
    Max,
    /// Sum over channels (Captum's visualisations of attributions).
    Sum,
}

/// Quadrature rule of integrated gradients, as Captum defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationRule {
    /// Riemann left: `α = linspace(0, 1 − 1/n, n)`, weights `1/n`.
    Left,
    /// Riemann right: `α = linspace(1/n, 1, n)`, weights `1/n`.
    Right,
    /// Riemann middle: `α = linspace(1/(2n), 1 − 1/(2n), n)`, weights `1/n`.
    Middle,
    /// Captum's Riemann trapezoid: `α = linspace(0, 1, n)`, weights `1/n` with the two ends
    /// halved (so they sum to `(n − 1)/n`, as Captum's do); needs `n ≥ 2`.
    Trapezoid,
    /// Gauss–Legendre on [0, 1]: `α = (1 + xᵢ)/2`, weights `wᵢ/2` (Captum's default).
    GaussLegendre,
}

/// The reference input of integrated gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline {
    /// Zeros in model-input space (Captum's default).
    Zeros,
    /// A black image: pixel 0 through the model's normalization, `(0 − mean_c) / std_c`.
    Black,
    /// A constant in model-input space.
    Value(f32),
}

/// A configured saliency method: build with a constructor, adjust with the builder options,
/// run with [`Saliency::compute`].
#[derive(Debug, Clone)]
pub struct Saliency {
    method: SaliencyMethod,
    modifier: Option<GradModifier>,
    keepdims: bool,
    reduce: Option<ChannelReduce>,
    backprop: Option<ReluRule>,
    samples: usize,
    noise_level: f32,
    seed: u64,
    noise: Option<Tensor>,
    steps: usize,
    rule: IntegrationRule,
    baseline: Baseline,
    window: [usize; 2],
    stride: Option<[usize; 2]>,
    fill: f32,
    batch_size: Option<usize>,
}

/// What a saliency method returns; the maps stay on the GPU until downloaded.
#[derive(Debug, Clone)]
pub struct SaliencyMaps {
    /// `∂score/∂input` `[N, C, H, W]` at the unperturbed input, before any modifier (guided
    /// and deconvnet: their modified backward signal). For the noise, path and occlusion
    /// methods this is the plain gradient at the input as well.
    pub gradient: Tensor,
    /// The map: `[N, H, W]`, or `[N, C, H, W]` with `keepdims`; after the modifier and the
    /// channel reduction, before any normalisation. For input × gradient, integrated gradients
    /// and occlusion, the attribution itself.
    pub saliency: Tensor,
    /// The class (or output unit / channel) each image's target names, -1 where none.
    pub targets: Vec<i64>,
    /// The model output at the unperturbed input, `[N, classes]` row-major.
    pub logits: Vec<f32>,
}

impl Saliency {
    fn new(method: SaliencyMethod) -> Saliency {
        Saliency {
            method,
            modifier: None,
            keepdims: false,
            reduce: None,
            backprop: None,
            samples: 50,
            noise_level: 0.15,
            seed: 0,
            noise: None,
            steps: 50,
            rule: IntegrationRule::GaussLegendre,
            baseline: Baseline::Zeros,
            window: [8, 8],
            stride: None,
            fill: 0.0,
            batch_size: None,
        }
    }

    /// The plain input gradient (vanilla saliency).
    pub fn vanilla() -> Saliency {
        Saliency::new(SaliencyMethod::Vanilla)
    }

    /// Guided backprop.
    pub fn guided() -> Saliency {
        Saliency::new(SaliencyMethod::Guided)
    }

    /// Deconvnet (rectified backprop).
    pub fn deconvnet() -> Saliency {
        Saliency::new(SaliencyMethod::Deconvnet)
    }

    /// SmoothGrad: 50 samples, σ = 0.15 × (max − min) by default.
    pub fn smoothgrad() -> Saliency {
        Saliency::new(SaliencyMethod::SmoothGrad)
    }

    /// SmoothGrad² (mean of squared gradients).
    pub fn smoothgrad_squared() -> Saliency {
        Saliency::new(SaliencyMethod::SmoothGradSquared)
    }

    /// VarGrad (variance of the gradients).
    pub fn vargrad() -> Saliency {
        Saliency::new(SaliencyMethod::VarGrad)
    }

    /// Input × gradient.
    pub fn input_x_gradient() -> Saliency {
        Saliency::new(SaliencyMethod::InputXGradient)
    }

    /// Integrated gradients: 50 Gauss–Legendre steps from a zero baseline by default.
    pub fn integrated_gradients() -> Saliency {
        Saliency::new(SaliencyMethod::IntegratedGradients)
    }

    /// Occlusion: 8×8 windows, stride 4 (half the window), fill 0 by default.
    pub fn occlusion() -> Saliency {
        Saliency::new(SaliencyMethod::Occlusion)
    }

    /// A method by kind, with its defaults.
    pub fn of(method: SaliencyMethod) -> Saliency {
        Saliency::new(method)
    }

    /// The method.
    pub fn method(&self) -> SaliencyMethod {
        self.method
    }

    /// Sets the grad modifier (default: absolute for the gradient maps, none for the
    /// attributions).
    pub fn modifier(mut self, m: GradModifier) -> Self {
        self.modifier = Some(m);
        self
    }

    /// Keeps the channels (`[N, C, H, W]`) instead of reducing them (`[N, H, W]`).
    pub fn keepdims(mut self, keep: bool) -> Self {
        self.keepdims = keep;
        self
    }

    /// The channel reduction when `keepdims` is off (default: max for gradient maps, sum for
    /// attributions).
    pub fn reduce(mut self, r: ChannelReduce) -> Self {
        self.reduce = Some(r);
        self
    }

    /// The ReLU rule of the backward passes (default: the method's own; standard for the noise
    /// and path methods, so `smoothgrad().backprop(ReluRule::Guided)` smooths guided backprop).
    pub fn backprop(mut self, rule: ReluRule) -> Self {
        self.backprop = Some(rule);
        self
    }

    /// Noise samples (default 50).
    pub fn samples(mut self, n: usize) -> Self {
        self.samples = n;
        self
    }

    /// Noise σ as a fraction of each image's value range `max − min` (default 0.15).
    pub fn noise_level(mut self, f: f32) -> Self {
        self.noise_level = f;
        self
    }

    /// Seed of the noise generator (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Feeds fixed additive noise `[S, N, C, H, W]` (used as is, not scaled) instead of
    /// generating it; `S` replaces the sample count.
    pub fn noise(mut self, noise: Tensor) -> Self {
        self.noise = Some(noise);
        self
    }

    /// Integration steps (default 50).
    pub fn steps(mut self, n: usize) -> Self {
        self.steps = n;
        self
    }

    /// Integration rule (default Gauss–Legendre).
    pub fn rule(mut self, rule: IntegrationRule) -> Self {
        self.rule = rule;
        self
    }

    /// Integration baseline (default zeros).
    pub fn baseline(mut self, b: Baseline) -> Self {
        self.baseline = b;
        self
    }

    /// Occlusion window `[h, w]` (all channels at once; default 8×8).
    pub fn window(mut self, hw: [usize; 2]) -> Self {
        self.window = hw;
        self
    }

    /// Occlusion stride `[h, w]` (default: half the window, at least 1).
    pub fn stride(mut self, hw: [usize; 2]) -> Self {
        self.stride = Some(hw);
        self
    }

    /// Occlusion fill value in model-input space (default 0, Captum's baseline).
    pub fn fill(mut self, v: f32) -> Self {
        self.fill = v;
        self
    }

    /// Most images in one GPU pass (replicas × N). Default: what fits 1 GiB of activations
    /// and the device's largest storage binding, estimated from the model's layer shapes. A
    /// pass holds at least one replica of the whole input batch.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = Some(n);
        self
    }

    fn rule_relu(&self) -> ReluRule {
        self.backprop.unwrap_or(match self.method {
            SaliencyMethod::Guided => ReluRule::Guided,
            SaliencyMethod::Deconvnet => ReluRule::Deconvnet,
            _ => ReluRule::Standard,
        })
    }

    fn default_modifier(&self) -> GradModifier {
        if self.method.is_attribution() {
            GradModifier::None
        } else {
            GradModifier::Absolute
        }
    }

    fn channel_reduce(&self) -> ChannelReduce {
        self.reduce.unwrap_or(if self.method.is_attribution() {
            ChannelReduce::Sum
        } else {
            ChannelReduce::Max
        })
    }

    fn occlusion_stride(&self) -> [usize; 2] {
        self.stride
            .unwrap_or([(self.window[0] / 2).max(1), (self.window[1] / 2).max(1)])
    }

    /// Runs the method on `input` `[N, C, H, W]` (model-input space) for `targets` (one for
    /// all images or one per image).
    pub fn compute(
        &self,
        ctx: &GpuContext,
        model: &Model,
        input: &Tensor,
        targets: &[Target],
    ) -> Result<SaliencyMaps> {
        const OP: &str = "saliency";
        expect_dtype(OP, "input", input, DType::F32)?;
        let shape: [usize; 4] = match input.shape() {
            [n, c, h, w] => [*n, *c, *h, *w],
            s => {
                return Err(Error::shape(
                    OP,
                    format!("input has shape {s:?}, expected [N, C, H, W]"),
                ))
            }
        };
        self.validate(shape)?;
        let [n, c, h, w] = shape;
        let objective = Objective::new(model, targets, n)?;
        let rule = self.rule_relu();

        // Each image's gradient modifier: from its target's kind, which resolving a top-class
        // target to its class does not change.
        let codes: Vec<u32> = (0..n)
            .map(|i| {
                let m = match (self.modifier, objective.target(i).regression_goal()) {
                    (Some(m), _) => m,
                    (None, Some(RegressionGoal::Maintain)) => GradModifier::SmallValues,
                    (None, _) => self.default_modifier(),
                };
                m.code()
            })
            .collect();
        let codes = Tensor::from_u32(ctx, &[n], &codes)?;
        let plain = [n, c, h, w];
        let out_shape: Vec<usize> = if self.keepdims {
            plain.to_vec()
        } else {
            vec![n, h, w]
        };
        let reduce = (!self.keepdims).then(|| self.channel_reduce());
        let saliency = Tensor::empty(ctx, &out_shape, DType::F32)?;

        // The unperturbed pass: gradient, logits and resolved targets. The pass is the model's
        // kept one when the last call had these shapes, so the gradient is copied out of it.
        let clean = GradientPass::reuse_or_new(ctx, model, shape, objective.clone(), None, rule)?;
        let pass_grad = clean
            .backward
            .input_grad()
            .ok_or_else(|| Error::shape(OP, "the backward pass did not reach the input"))?;
        let gradient = Tensor::empty(ctx, pass_grad.shape(), DType::F32)?;
        let before = [scale(ctx, clean.forward.input(), input, 1.0)?];
        let mut after = vec![scale(ctx, &gradient, pass_grad, 1.0)?];
        // The one-pass methods finish on the GPU right after it: with a fixed seed, input copy,
        // pass, gradient copy and map go in one submission, with no wait in between.
        let one_pass = match self.method {
            SaliencyMethod::Vanilla | SaliencyMethod::Guided | SaliencyMethod::Deconvnet => {
                Some(gradient.clone())
            }
            SaliencyMethod::InputXGradient => {
                let out = Tensor::empty(ctx, &plain, DType::F32)?;
                let zero = Tensor::zeros(ctx, &[c])?;
                after.push(times_input_delta(ctx, &out, &gradient, input, &zero)?);
                Some(out)
            }
            _ => None,
        };
        if let Some(aggregate) = &one_pass {
            after.push(modify_reduce(ctx, &saliency, aggregate, &codes, reduce)?);
        }
        if clean.objective().needs_output() {
            ctx.run(&before.iter().collect::<Vec<_>>())?;
            clean.run(ctx)?;
            ctx.run(&after.iter().collect::<Vec<_>>())?;
        } else {
            let mut all: Vec<&Dispatch> = before.iter().collect();
            all.extend(clean.forward.dispatches());
            all.extend(clean.backward.dispatches());
            all.extend(after.iter());
            ctx.run(&all)?;
        }
        let class_idx = clean.target_indices(ctx)?;
        let logits = clean.forward.output().download(ctx)?;
        let row_shape = clean.forward.activation(&objective.layer)?.shape()[1..].to_vec();
        clean.keep(model, None, rule);

        if one_pass.is_none() {
            // Per-image targets with the top class resolved.
            let resolved: Vec<Target> = (0..n)
                .map(|i| match objective.target(i) {
                    Target::TopClass => Target::Class(class_idx[i].max(0) as usize),
                    t => t.clone(),
                })
                .collect();
            let aggregate = match self.method {
                SaliencyMethod::SmoothGrad
                | SaliencyMethod::SmoothGradSquared
                | SaliencyMethod::VarGrad => {
                    let plan = Replicated::new(ctx, model, self, shape, &resolved, &row_shape)?;
                    self.run_noise(ctx, &plan, input)?
                }
                SaliencyMethod::IntegratedGradients => {
                    let plan = Replicated::new(ctx, model, self, shape, &resolved, &row_shape)?;
                    self.run_path(ctx, model, &plan, input)?
                }
                // Occlusion (the one-pass methods were mapped above).
                _ => self.run_occlusion(ctx, model, shape, input, &resolved, &row_shape)?,
            };
            let d = modify_reduce(ctx, &saliency, &aggregate, &codes, reduce)?;
            ctx.run(&[&d])?;
        }
        Ok(SaliencyMaps {
            gradient,
            saliency,
            targets: class_idx,
            logits,
        })
    }

    fn validate(&self, [n, c, h, w]: [usize; 4]) -> Result<()> {
        const OP: &str = "saliency";
        if n == 0 || c == 0 || h == 0 || w == 0 {
            return Err(Error::shape(
                OP,
                format!("empty input [{n}, {c}, {h}, {w}]"),
            ));
        }
        if self.batch_size == Some(0) {
            return Err(Error::shape(OP, "batch_size must be at least 1"));
        }
        if self.method.is_noise() {
            match &self.noise {
                Some(t) => {
                    expect_dtype(OP, "noise", t, DType::F32)?;
                    let s = t.shape();
                    if s.len() != 5 || s[1..] != [n, c, h, w] || s[0] == 0 {
                        return Err(Error::shape(
                            OP,
                            format!(
                                "noise has shape {s:?}, expected [S, {n}, {c}, {h}, {w}] with S >= 1"
                            ),
                        ));
                    }
                }
                None => {
                    if self.samples == 0 {
                        return Err(Error::shape(OP, "SmoothGrad needs at least one sample"));
                    }
                    if !self.noise_level.is_finite() || self.noise_level < 0.0 {
                        return Err(Error::shape(
                            OP,
                            format!(
                                "noise level {} must be finite and non-negative",
                                self.noise_level
                            ),
                        ));
                    }
                }
            }
        }
        if self.method == SaliencyMethod::IntegratedGradients {
            integration_points(self.rule, self.steps)?;
        }
        if self.method == SaliencyMethod::Occlusion {
            let [wh, ww] = self.window;
            let [sh, sw] = self.occlusion_stride();
            if wh == 0 || ww == 0 || sh == 0 || sw == 0 {
                return Err(Error::shape(
                    OP,
                    format!(
                        "occlusion window {:?} and stride {:?} must be positive",
                        self.window,
                        [sh, sw]
                    ),
                ));
            }
            if wh > h || ww > w {
                return Err(Error::shape(
                    OP,
                    format!("occlusion window {wh}x{ww} is larger than the {h}x{w} image"),
                ));
            }
            if !self.fill.is_finite() {
                return Err(Error::shape(
                    OP,
                    format!("fill value {} is not finite", self.fill),
                ));
            }
        }
        Ok(())
    }

    /// Replicas per pass for `total` replicas of `n` images.
    fn replicas_per_pass(
        &self,
        model: &Model,
        shape: [usize; 4],
        total: usize,
        max_binding: u64,
    ) -> usize {
        let [n, _, h, w] = shape;
        let images = match self.batch_size {
            Some(b) => b,
            None => {
                let [h0, w0] = model.preprocess().size;
                let ratio = (h * w) as f64 / (h0.max(1) * w0.max(1)) as f64;
                let mut sum = 0f64;
                let mut largest = (shape[1] * h * w) as f64;
                for l in model.layers() {
                    let numel: usize = l.output_shape.iter().product();
                    // Spatial layers scale with the input area; dense ones do not.
                    let e = if l.output_shape.len() >= 3 {
                        numel as f64 * ratio
                    } else {
                        numel as f64
                    };
                    sum += e;
                    largest = largest.max(e);
                }
                // Activations, their gradients, and slack for saved masks and temporaries.
                let per_image = (sum * 4.0 * 3.0).max(1.0);
                let by_budget = (MEMORY_BUDGET as f64 / per_image).floor();
                let by_binding = (max_binding as f64 / (largest * 4.0 * 1.25)).floor();
                by_budget.min(by_binding).max(1.0) as usize
            }
        };
        (images / n).clamp(1, total.max(1))
    }

    fn run_noise(&self, ctx: &GpuContext, plan: &Replicated, input: &Tensor) -> Result<Tensor> {
        let [n, c, h, w] = plan.shape;
        let total = plan.total;
        let sum = Tensor::empty(ctx, &[n, c, h, w], DType::F32)?;
        let sumsq = Tensor::empty(ctx, &[n, c, h, w], DType::F32)?;
        let range = Tensor::empty(ctx, &[n], DType::F32)?;
        let mut pre = Vec::new();
        if self.noise.is_none() {
            pre.push(image_range(ctx, &range, input)?);
        }
        let mut builders = Vec::new();
        let mut reducers = Vec::new();
        for (chunk, r0) in (0..total).step_by(plan.reps).enumerate() {
            let source = match &self.noise {
                Some(t) => NoiseSource::Fed(t),
                None => NoiseSource::Generated {
                    range: &range,
                    level: self.noise_level,
                    seed: self.seed,
                },
            };
            builders.push(noise_batch(
                ctx,
                plan.pass.forward.input(),
                input,
                source,
                r0,
                total,
            )?);
            reducers.push(noise_accumulate(
                ctx,
                &sum,
                &sumsq,
                plan.input_grad()?,
                r0,
                total,
                chunk > 0,
            )?);
        }
        let mode = match self.method {
            SaliencyMethod::SmoothGrad => NoiseAggregate::Mean,
            SaliencyMethod::SmoothGradSquared => NoiseAggregate::MeanOfSquares,
            _ => NoiseAggregate::Variance,
        };
        let out = Tensor::empty(ctx, &[n, c, h, w], DType::F32)?;
        let fin = noise_finalize(ctx, &out, &sum, &sumsq, total, mode)?;
        plan.run_chunks(ctx, &pre, &builders, &reducers, &[&fin])?;
        Ok(out)
    }

    fn run_path(
        &self,
        ctx: &GpuContext,
        model: &Model,
        plan: &Replicated,
        input: &Tensor,
    ) -> Result<Tensor> {
        let [n, c, h, w] = plan.shape;
        let (alphas, step_weights) = integration_points(self.rule, self.steps)?;
        let coef: Vec<f32> = alphas
            .iter()
            .chain(&step_weights)
            .map(|&v| v as f32)
            .collect();
        let coef = Tensor::from_slice(ctx, &[coef.len()], &coef)?;
        let base = baseline_values(model, self.baseline, c)?;
        let base = Tensor::from_slice(ctx, &[c], &base)?;
        let total = plan.total;
        let acc = Tensor::empty(ctx, &[n, c, h, w], DType::F32)?;
        let mut builders = Vec::new();
        let mut reducers = Vec::new();
        for (chunk, r0) in (0..total).step_by(plan.reps).enumerate() {
            builders.push(path_batch(
                ctx,
                plan.pass.forward.input(),
                input,
                &base,
                &coef,
                r0,
                total,
            )?);
            reducers.push(path_accumulate(
                ctx,
                &acc,
                plan.input_grad()?,
                &coef,
                r0,
                total,
                chunk > 0,
            )?);
        }
        let out = Tensor::empty(ctx, &[n, c, h, w], DType::F32)?;
        let fin = times_input_delta(ctx, &out, &acc, input, &base)?;
        plan.run_chunks(ctx, &[], &builders, &reducers, &[&fin])?;
        Ok(out)
    }

    fn run_occlusion(
        &self,
        ctx: &GpuContext,
        model: &Model,
        shape: [usize; 4],
        input: &Tensor,
        resolved: &[Target],
        row_shape: &[usize],
    ) -> Result<Tensor> {
        let [n, c, h, w] = shape;
        let grid = OcclusionGrid::new([h, w], self.window, self.occlusion_stride())?;
        let total = grid.windows();
        let (weights, cls, layer) = linear_weights(ctx, model, resolved, row_shape)?;
        let reps = self.replicas_per_pass(
            model,
            shape,
            total,
            ctx.limits().max_storage_buffer_binding_size,
        );
        let fwd = model.forward_plan(ctx, [reps * n, c, h, w])?;
        let act = fwd.activation(&layer)?.clone();
        let rows = act.shape()[0];
        let act = act.reshape(&[rows, act.numel() / rows.max(1)])?;
        let scores = Tensor::empty(ctx, &[total * n], DType::F32)?;
        let clean = Tensor::empty(ctx, &[n], DType::F32)?;

        // The unoccluded score, from a one-replica forward pass.
        let fwd1 = model.forward_plan(ctx, shape)?;
        let act1 = fwd1.activation(&layer)?.clone();
        let act1 = act1.reshape(&[n, act1.numel() / n])?;
        let copy = scale(ctx, fwd1.input(), input, 1.0)?;
        let s1 = row_scores(ctx, &clean, &act1, &weights, &cls, 0, 1)?;
        let mut first: Vec<&Dispatch> = vec![&copy];
        first.extend(fwd1.dispatches());
        first.push(&s1);
        ctx.run(&first)?;

        let mut builders = Vec::new();
        let mut scorers = Vec::new();
        for r0 in (0..total).step_by(reps) {
            builders.push(occlude_batch(
                ctx,
                fwd.input(),
                input,
                &grid,
                self.fill,
                r0,
            )?);
            scorers.push(row_scores(ctx, &scores, &act, &weights, &cls, r0, total)?);
        }
        let out = Tensor::empty(ctx, &[n, c, h, w], DType::F32)?;
        let fin = occlusion_finalize(ctx, &out, &scores, &clean, &grid)?;
        let fwd_d = fwd.dispatches();
        let mut all: Vec<&Dispatch> = Vec::new();
        for (b, s) in builders.iter().zip(&scorers) {
            all.push(b);
            all.extend(fwd_d.iter().copied());
            all.push(s);
        }
        all.push(&fin);
        ctx.run(&all)?;
        Ok(out)
    }
}

/// A gradient pass over `reps` replicas of the batch, with the seed kernel for probability
/// targets.
struct Replicated {
    pass: GradientPass,
    seed: Option<Dispatch>,
    shape: [usize; 4],
    reps: usize,
    total: usize,
    _keep: Vec<Tensor>,
}

impl Replicated {
    fn new(
        ctx: &GpuContext,
        model: &Model,
        s: &Saliency,
        shape: [usize; 4],
        resolved: &[Target],
        row_shape: &[usize],
    ) -> Result<Replicated> {
        let [n, c, h, w] = shape;
        let total = if s.method.is_noise() {
            s.noise.as_ref().map_or(s.samples, |t| t.shape()[0])
        } else {
            s.steps
        };
        let reps = s.replicas_per_pass(
            model,
            shape,
            total,
            ctx.limits().max_storage_buffer_binding_size,
        );
        // The Gaussian counter is a u32 over the whole [S, N, C, H, W] noise tensor.
        to_u32("saliency", "samples x N x C x H x W", total * n * c * h * w)?;
        let reps_targets: Vec<Target> = (0..reps).flat_map(|_| resolved.iter().cloned()).collect();
        let objective = Objective::new(model, &reps_targets, reps * n)?;
        let needs_seed = objective.needs_output();
        let layer = objective.layer.clone();
        let pass = GradientPass::new(
            ctx,
            model,
            [reps * n, c, h, w],
            objective,
            None,
            s.rule_relu(),
        )?;
        let mut keep = Vec::new();
        let seed = if needs_seed {
            let (weights, cls, _) = linear_weights(ctx, model, resolved, row_shape)?;
            let act = pass.forward.activation(&layer)?;
            let rows = reps * n;
            let act = act.reshape(&[rows, act.numel() / rows])?;
            let seed_t = pass.backward.seed().reshape(&[rows, act.shape()[1]])?;
            let d = probability_seed(ctx, &seed_t, &act, &weights, &cls)?;
            keep.push(weights);
            keep.push(cls);
            Some(d)
        } else {
            None
        };
        Ok(Replicated {
            pass,
            seed,
            shape,
            reps,
            total,
            _keep: keep,
        })
    }

    fn input_grad(&self) -> Result<&Tensor> {
        self.pass
            .backward
            .input_grad()
            .ok_or_else(|| Error::shape("saliency", "the backward pass did not reach the input"))
    }

    /// One submission: `pre`, then per chunk its builder, forward, seed, backward and reducer,
    /// then `post`.
    fn run_chunks(
        &self,
        ctx: &GpuContext,
        pre: &[Dispatch],
        builders: &[Dispatch],
        reducers: &[Dispatch],
        post: &[&Dispatch],
    ) -> Result<()> {
        let fwd = self.pass.forward.dispatches();
        let bwd = self.pass.backward.dispatches();
        let mut all: Vec<&Dispatch> = pre.iter().collect();
        for (b, r) in builders.iter().zip(reducers) {
            all.push(b);
            all.extend(fwd.iter().copied());
            if let Some(s) = &self.seed {
                all.push(s);
            }
            all.extend(bwd.iter().copied());
            all.push(r);
        }
        all.extend(post.iter().copied());
        ctx.run(&all)
    }
}

/// Linear seed weights `[N, row]` of resolved targets (probability targets get their class's
/// one-hot row, unused), the per-image probability class `[N]` (-1: linear), and the layer.
fn linear_weights(
    ctx: &GpuContext,
    model: &Model,
    resolved: &[Target],
    row_shape: &[usize],
) -> Result<(Tensor, Tensor, String)> {
    let n = resolved.len();
    let linear: Vec<Target> = resolved
        .iter()
        .map(|t| match t {
            Target::Probability(c) => Target::Class(*c),
            t => t.clone(),
        })
        .collect();
    let cls: Vec<f32> = resolved
        .iter()
        .map(|t| match t {
            Target::Probability(c) => *c as f32,
            _ => -1.0,
        })
        .collect();
    let objective = Objective::new(model, &linear, n)?;
    let w = objective.seed(n, row_shape, None)?;
    let row = w.len() / n.max(1);
    Ok((
        Tensor::from_slice(ctx, &[n, row], &w)?,
        Tensor::from_slice(ctx, &[n], &cls)?,
        objective.layer.clone(),
    ))
}

/// The per-channel baseline values of `b` for a model with `c` input channels.
pub fn baseline_values(model: &Model, b: Baseline, c: usize) -> Result<Vec<f32>> {
    match b {
        Baseline::Zeros => Ok(vec![0.0; c]),
        Baseline::Value(v) => {
            if !v.is_finite() {
                return Err(Error::shape(
                    "saliency",
                    format!("baseline {v} is not finite"),
                ));
            }
            Ok(vec![v; c])
        }
        Baseline::Black => {
            let p = model.preprocess();
            if p.mean.len() != c || p.std.len() != c {
                return Err(Error::shape(
                    "saliency",
                    format!(
                        "the model's normalization has {} means and {} stds for {c} channels",
                        p.mean.len(),
                        p.std.len()
                    ),
                ));
            }
            Ok(p.mean
                .iter()
                .zip(&p.std)
                .map(|(m, s)| ((0.0 - *m as f64) / *s as f64) as f32)
                .collect())
        }
    }
}

/// Gauss–Legendre nodes and weights on [−1, 1], ascending (as numpy's `leggauss`), by Newton
/// iteration on the Legendre polynomial in f64.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut wts = vec![0.0; n];
    // P_n(z) and P_{n-1}(z) by the three-term recurrence.
    let legendre = |z: f64| {
        let (mut p0, mut p1) = (1.0f64, z);
        for k in 2..=n {
            let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
            p0 = p1;
            p1 = p2;
        }
        (p1, p0)
    };
    for i in 0..n.div_ceil(2) {
        // Tricomi's initial guess of the i-th largest root, then Newton.
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        for _ in 0..100 {
            let (pn, pm) = legendre(z);
            let dp = n as f64 * (z * pn - pm) / (z * z - 1.0);
            let dz = pn / dp;
            z -= dz;
            if dz.abs() < 1e-16 {
                break;
            }
        }
        let (pn, pm) = legendre(z);
        let dp = n as f64 * (z * pn - pm) / (z * z - 1.0);
        let wt = 2.0 / ((1.0 - z * z) * dp * dp);
        x[n - 1 - i] = z;
        x[i] = -z;
        wts[n - 1 - i] = wt;
        wts[i] = wt;
    }
    if n % 2 == 1 {
        x[n / 2] = 0.0;
    }
    (x, wts)
}

/// Captum's `linspace(a, b, n)` in f32, as `torch.linspace` computes it (step from the start
/// for the first half, from the end for the second).
fn linspace_f32(a: f32, b: f32, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a as f64];
    }
    let step = (b - a) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                (a + step * i as f32) as f64
            } else {
                (b - step * (n - 1 - i) as f32) as f64
            }
        })
        .collect()
}

/// The path points `α` and step weights of `rule` with `n` steps, as Captum's
/// `approximation_parameters` gives them.
pub fn integration_points(rule: IntegrationRule, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    const OP: &str = "integrated gradients";
    if n == 0 {
        return Err(Error::shape(OP, "needs at least one step"));
    }
    if rule == IntegrationRule::Trapezoid && n < 2 {
        return Err(Error::shape(
            OP,
            "the trapezoid rule needs at least two steps",
        ));
    }
    let nf = n as f32;
    Ok(match rule {
        IntegrationRule::GaussLegendre => {
            let (x, w) = gauss_legendre(n);
            (
                x.iter().map(|v| 0.5 * (1.0 + v)).collect(),
                w.iter().map(|v| 0.5 * v).collect(),
            )
        }
        _ => {
            let mut weights = vec![1.0 / n as f64; n];
            let alphas = match rule {
                IntegrationRule::Left => linspace_f32(0.0, 1.0 - 1.0 / nf, n),
                IntegrationRule::Right => linspace_f32(1.0 / nf, 1.0, n),
                IntegrationRule::Middle => {
                    linspace_f32(1.0 / (2.0 * nf), 1.0 - 1.0 / (2.0 * nf), n)
                }
                _ => {
                    weights[0] /= 2.0;
                    weights[n - 1] /= 2.0;
                    linspace_f32(0.0, 1.0, n)
                }
            };
            (alphas, weights)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------

/// Mirror of `SalParams` in saliency.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct SalParams {
    n: u32,
    inner: u32,
    channels: u32,
    plane: u32,
    reps: u32,
    r0: u32,
    total: u32,
    mode: u32,
    h: u32,
    w: u32,
    win_h: u32,
    win_w: u32,
    stride_h: u32,
    stride_w: u32,
    pos_w: u32,
    row: u32,
    key0: u32,
    key1: u32,
    accumulate: u32,
    _pad0: u32,
    level: f32,
    fill: f32,
    inv_total: f32,
    _pad1: f32,
}
const _: () = assert!(std::mem::size_of::<SalParams>() == 96);

/// `[N, C, H, W]` of an image batch.
fn nchw(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; 4]> {
    expect_dtype(op, name, t, DType::F32)?;
    match t.shape() {
        [n, c, h, w] if *n > 0 && *c > 0 && *h > 0 && *w > 0 => Ok([*n, *c, *h, *w]),
        s => Err(Error::shape(
            op,
            format!("{name} has shape {s:?}, expected non-empty [N, C, H, W]"),
        )),
    }
}

fn image_params(op: &'static str, [n, c, h, w]: [usize; 4]) -> Result<SalParams> {
    to_u32(op, "numel", n * c * h * w)?;
    Ok(SalParams {
        n: to_u32(op, "N", n)?,
        inner: to_u32(op, "C*H*W", c * h * w)?,
        channels: to_u32(op, "C", c)?,
        plane: to_u32(op, "H*W", h * w)?,
        h: to_u32(op, "H", h)?,
        w: to_u32(op, "W", w)?,
        ..Default::default()
    })
}

/// Replicas in a batch `y` of `n` images each; `y` must be `[reps * N, C, H, W]`.
fn replicas(op: &'static str, y: &Tensor, shape: [usize; 4]) -> Result<usize> {
    let ys = nchw(op, "y", y)?;
    if ys[1..] != shape[1..] || ys[0] % shape[0] != 0 {
        return Err(Error::shape(
            op,
            format!(
                "y has shape {ys:?}, expected [k * {}, {}, {}, {}]",
                shape[0], shape[1], shape[2], shape[3]
            ),
        ));
    }
    Ok(ys[0] / shape[0])
}

/// `range[n] = max − min` of image `n` of `x` `[N, C, H, W]`. One workgroup per image.
pub fn image_range(ctx: &GpuContext, range: &Tensor, x: &Tensor) -> Result<Dispatch> {
    const OP: &str = "image_range";
    let s = nchw(OP, "x", x)?;
    expect_shape(OP, "range", range, &[s[0]])?;
    let params = image_params(OP, s)?;
    let grid = grid_for(s[0], 1, ctx.limits().max_compute_workgroups_per_dimension)?;
    ctx.dispatch(IMAGE_RANGE, &params, &[(1, x), (4, range)], grid)
}

/// Where the noise of [`noise_batch`] comes from.
#[derive(Debug, Clone, Copy)]
pub enum NoiseSource<'a> {
    /// `level × range[n] × z`, `z` element `(r·N + n)·CHW + i` of the standard-normal sequence
    /// of `gaussian_fill(seed)` ([`crate::ops::random::gaussian_cpu`] is its CPU twin).
    Generated {
        /// Per-image `max − min` `[N]` (from [`image_range`]).
        range: &'a Tensor,
        /// σ as a fraction of the range.
        level: f32,
        /// Generator seed.
        seed: u64,
    },
    /// Fixed additive noise `[S, N, C, H, W]`.
    Fed(&'a Tensor),
}

/// Noisy copies: row `j·N + n` of `y` `[k·N, C, H, W]` is image `n` of `x` plus the noise of
/// sample `r0 + j`; rows of samples `≥ total` hold `x` unchanged.
pub fn noise_batch(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    source: NoiseSource<'_>,
    r0: usize,
    total: usize,
) -> Result<Dispatch> {
    const OP: &str = "noise_batch";
    let s = nchw(OP, "x", x)?;
    let reps = replicas(OP, y, s)?;
    let mut params = SalParams {
        reps: to_u32(OP, "replicas", reps)?,
        r0: to_u32(OP, "r0", r0)?,
        total: to_u32(OP, "total", total)?,
        ..image_params(OP, s)?
    };
    to_u32(OP, "total * numel", total.saturating_mul(x.numel()))?;
    match source {
        NoiseSource::Generated { range, level, seed } => {
            expect_shape(OP, "range", range, &[s[0]])?;
            params.level = level;
            params.key0 = seed as u32;
            params.key1 = (seed >> 32) as u32;
            ctx.dispatch(
                NOISE_GENERATED,
                &params,
                &[(1, x), (2, y), (4, range)],
                ctx.grid_1d(y.numel())?,
            )
        }
        NoiseSource::Fed(noise) => {
            expect_dtype(OP, "noise", noise, DType::F32)?;
            let ns = noise.shape();
            if ns.len() != 5 || ns[1..] != s || ns[0] < total {
                return Err(Error::shape(
                    OP,
                    format!("noise has shape {ns:?}, expected [{total}, {s:?}...]"),
                ));
            }
            ctx.dispatch(
                NOISE_FED,
                &params,
                &[(1, x), (2, y), (3, noise)],
                ctx.grid_1d(y.numel())?,
            )
        }
    }
}

/// Sums of a chunk's sample gradients `g` `[k·N, C, H, W]` (samples `r0..r0+k`, those
/// `< total` counted) into `sum` and `sumsq` `[N, C, H, W]`; `accumulate` adds to them.
pub fn noise_accumulate(
    ctx: &GpuContext,
    sum: &Tensor,
    sumsq: &Tensor,
    g: &Tensor,
    r0: usize,
    total: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "noise_accumulate";
    let s = nchw(OP, "sum", sum)?;
    expect_shape(OP, "sumsq", sumsq, &s)?;
    let reps = replicas(OP, g, s)?;
    let params = SalParams {
        reps: to_u32(OP, "replicas", reps)?,
        r0: to_u32(OP, "r0", r0)?,
        total: to_u32(OP, "total", total)?,
        accumulate: accumulate as u32,
        ..image_params(OP, s)?
    };
    ctx.dispatch(
        NOISE_ACCUMULATE,
        &params,
        &[(5, g), (6, sum), (7, sumsq)],
        ctx.grid_1d(sum.numel())?,
    )
}

/// NoiseTunnel's aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseAggregate {
    /// SmoothGrad: `E[g]`.
    Mean,
    /// SmoothGrad²: `E[g²]`.
    MeanOfSquares,
    /// VarGrad: `E[g²] − E[g]²`.
    Variance,
}

/// `out` from the sums over `samples` samples (see [`NoiseAggregate`]).
pub fn noise_finalize(
    ctx: &GpuContext,
    out: &Tensor,
    sum: &Tensor,
    sumsq: &Tensor,
    samples: usize,
    mode: NoiseAggregate,
) -> Result<Dispatch> {
    const OP: &str = "noise_finalize";
    let s = nchw(OP, "sum", sum)?;
    expect_shape(OP, "sumsq", sumsq, &s)?;
    expect_shape(OP, "out", out, &s)?;
    if samples == 0 {
        return Err(Error::shape(OP, "zero samples"));
    }
    let params = SalParams {
        mode: match mode {
            NoiseAggregate::Mean => 0,
            NoiseAggregate::MeanOfSquares => 1,
            NoiseAggregate::Variance => 2,
        },
        inv_total: 1.0 / samples as f32,
        ..image_params(OP, s)?
    };
    ctx.dispatch(
        NOISE_FINALIZE,
        &params,
        &[(6, sum), (7, sumsq), (8, out)],
        ctx.grid_1d(out.numel())?,
    )
}

fn check_coef(op: &'static str, coef: &Tensor, total: usize) -> Result<()> {
    expect_shape(op, "coef", coef, &[2 * total])
}

/// Integrated-gradients path points: row `j·N + n` of `y` is `b + α[r0+j]·(x[n] − b)` with the
/// per-channel baseline `base` `[C]`; `coef` `[2·total]` holds the alphas then the weights;
/// rows of steps `≥ total` hold `x`.
pub fn path_batch(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    base: &Tensor,
    coef: &Tensor,
    r0: usize,
    total: usize,
) -> Result<Dispatch> {
    const OP: &str = "path_batch";
    let s = nchw(OP, "x", x)?;
    let reps = replicas(OP, y, s)?;
    expect_shape(OP, "base", base, &[s[1]])?;
    check_coef(OP, coef, total)?;
    let params = SalParams {
        reps: to_u32(OP, "replicas", reps)?,
        r0: to_u32(OP, "r0", r0)?,
        total: to_u32(OP, "total", total)?,
        ..image_params(OP, s)?
    };
    ctx.dispatch(
        PATH_BATCH,
        &params,
        &[(1, x), (2, y), (9, coef), (10, base)],
        ctx.grid_1d(y.numel())?,
    )
}

/// `acc (+)= Σ_j w[r0+j] · g[j]` over the chunk's valid steps (`coef` as in [`path_batch`]).
pub fn path_accumulate(
    ctx: &GpuContext,
    acc: &Tensor,
    g: &Tensor,
    coef: &Tensor,
    r0: usize,
    total: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "path_accumulate";
    let s = nchw(OP, "acc", acc)?;
    let reps = replicas(OP, g, s)?;
    check_coef(OP, coef, total)?;
    let params = SalParams {
        reps: to_u32(OP, "replicas", reps)?,
        r0: to_u32(OP, "r0", r0)?,
        total: to_u32(OP, "total", total)?,
        accumulate: accumulate as u32,
        ..image_params(OP, s)?
    };
    ctx.dispatch(
        PATH_ACCUMULATE,
        &params,
        &[(5, g), (6, acc), (9, coef)],
        ctx.grid_1d(acc.numel())?,
    )
}

/// `out = a · (x − base_c)`: IG's final product, and input × gradient with `base = 0`.
pub fn times_input_delta(
    ctx: &GpuContext,
    out: &Tensor,
    a: &Tensor,
    x: &Tensor,
    base: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "times_input_delta";
    let s = nchw(OP, "x", x)?;
    expect_shape(OP, "a", a, &s)?;
    expect_shape(OP, "out", out, &s)?;
    expect_shape(OP, "base", base, &[s[1]])?;
    let params = image_params(OP, s)?;
    ctx.dispatch(
        TIMES_INPUT_DELTA,
        &params,
        &[(1, x), (6, a), (8, out), (10, base)],
        ctx.grid_1d(out.numel())?,
    )
}

/// The grad modifier of each image (`codes` u32 `[N]`, see [`GradModifier`]) on `g`
/// `[N, C, H, W]`, then the channel reduction (`None`: keep, `out` `[N, C, H, W]`; else `out`
/// `[N, H, W]`).
pub fn modify_reduce(
    ctx: &GpuContext,
    out: &Tensor,
    g: &Tensor,
    codes: &Tensor,
    reduce: Option<ChannelReduce>,
) -> Result<Dispatch> {
    const OP: &str = "modify_reduce";
    let s = nchw(OP, "g", g)?;
    expect_dtype(OP, "codes", codes, DType::U32)?;
    expect_shape(OP, "codes", codes, &[s[0]])?;
    let mode = match reduce {
        None => {
            expect_shape(OP, "out", out, &s)?;
            0
        }
        Some(r) => {
            expect_shape(OP, "out", out, &[s[0], s[2], s[3]])?;
            if r == ChannelReduce::Max {
                1
            } else {
                2
            }
        }
    };
    let params = SalParams {
        mode,
        ..image_params(OP, s)?
    };
    ctx.dispatch(
        MODIFY_REDUCE,
        &params,
        &[(5, g), (8, out), (11, codes)],
        ctx.grid_1d(out.numel())?,
    )
}

/// Occlusion windows over an `H×W` image: positions at multiples of the stride, Captum's count
/// `⌈(H − h)/s⌉ + 1` per axis (the last window may be cut by the border); window `r` is at row
/// `r / positions_x`, column `r % positions_x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcclusionGrid {
    /// Image `[H, W]`.
    pub image: [usize; 2],
    /// Window `[h, w]`.
    pub window: [usize; 2],
    /// Stride `[h, w]`.
    pub stride: [usize; 2],
    /// Window positions `[rows, columns]`.
    pub positions: [usize; 2],
}

impl OcclusionGrid {
    /// The grid; the window must fit the image and stride and window be positive.
    pub fn new(image: [usize; 2], window: [usize; 2], stride: [usize; 2]) -> Result<Self> {
        const OP: &str = "occlusion";
        if window.contains(&0) || stride.contains(&0) {
            return Err(Error::shape(
                OP,
                format!("window {window:?} and stride {stride:?} must be positive"),
            ));
        }
        if window[0] > image[0] || window[1] > image[1] {
            return Err(Error::shape(
                OP,
                format!("window {window:?} is larger than the image {image:?}"),
            ));
        }
        let pos = |i: usize| (image[i] - window[i]).div_ceil(stride[i]) + 1;
        Ok(OcclusionGrid {
            image,
            window,
            stride,
            positions: [pos(0), pos(1)],
        })
    }

    /// Number of windows.
    pub fn windows(&self) -> usize {
        self.positions[0] * self.positions[1]
    }

    fn params(&self, op: &'static str, mut p: SalParams) -> Result<SalParams> {
        p.win_h = to_u32(op, "window", self.window[0])?;
        p.win_w = to_u32(op, "window", self.window[1])?;
        p.stride_h = to_u32(op, "stride", self.stride[0])?;
        p.stride_w = to_u32(op, "stride", self.stride[1])?;
        p.pos_w = to_u32(op, "positions", self.positions[1])?;
        p.total = to_u32(op, "windows", self.windows())?;
        Ok(p)
    }
}

/// Occluded copies: row `j·N + n` of `y` is image `n` of `x` with window `r0 + j` of `grid`
/// set to `fill` in every channel; rows of windows past the last hold `x`.
pub fn occlude_batch(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    grid: &OcclusionGrid,
    fill: f32,
    r0: usize,
) -> Result<Dispatch> {
    const OP: &str = "occlude_batch";
    let s = nchw(OP, "x", x)?;
    if grid.image != [s[2], s[3]] {
        return Err(Error::shape(
            OP,
            format!("grid for {:?}, image {s:?}", grid.image),
        ));
    }
    let reps = replicas(OP, y, s)?;
    let params = grid.params(
        OP,
        SalParams {
            reps: to_u32(OP, "replicas", reps)?,
            r0: to_u32(OP, "r0", r0)?,
            fill,
            ..image_params(OP, s)?
        },
    )?;
    ctx.dispatch(
        OCCLUDE_BATCH,
        &params,
        &[(1, x), (2, y)],
        ctx.grid_1d(y.numel())?,
    )
}

fn check_rows(
    op: &'static str,
    act: &Tensor,
    weights: &Tensor,
    cls: &Tensor,
) -> Result<(usize, usize, usize)> {
    expect_dtype(op, "act", act, DType::F32)?;
    expect_dtype(op, "weights", weights, DType::F32)?;
    expect_dtype(op, "cls", cls, DType::F32)?;
    let (rows, row) = match act.shape() {
        [r, k] => (*r, *k),
        s => {
            return Err(Error::shape(
                op,
                format!("act has shape {s:?}, expected [rows, row]"),
            ))
        }
    };
    let n = cls.numel();
    if n == 0 || rows % n != 0 || row == 0 {
        return Err(Error::shape(
            op,
            format!("act {:?} is not k replicas of {n} images", act.shape()),
        ));
    }
    expect_shape(op, "weights", weights, &[n, row])?;
    Ok((n, rows / n, row))
}

/// Scores of a replicated batch's objective layer `act` `[k·N, row]`: row `j·N + n` scores
/// `softmax(act)[cls[n]]` where `cls[n] ≥ 0`, else `weights[n] · act`; written to
/// `scores[(r0 + j)·N + n]` for `r0 + j < total`.
pub fn row_scores(
    ctx: &GpuContext,
    scores: &Tensor,
    act: &Tensor,
    weights: &Tensor,
    cls: &Tensor,
    r0: usize,
    total: usize,
) -> Result<Dispatch> {
    const OP: &str = "row_scores";
    let (n, reps, row) = check_rows(OP, act, weights, cls)?;
    expect_shape(OP, "scores", scores, &[total * n])?;
    let params = SalParams {
        n: to_u32(OP, "N", n)?,
        reps: to_u32(OP, "replicas", reps)?,
        r0: to_u32(OP, "r0", r0)?,
        total: to_u32(OP, "total", total)?,
        row: to_u32(OP, "row", row)?,
        ..Default::default()
    };
    ctx.dispatch(
        ROW_SCORES,
        &params,
        &[(12, act), (13, weights), (14, cls), (16, scores)],
        ctx.grid_1d(reps * n)?,
    )
}

/// Occlusion attributions `out` `[N, C, H, W]`: per pixel, the mean over the windows of
/// `grid` that cover it of `clean[n] − scores[r·N + n]` (0 where none does).
pub fn occlusion_finalize(
    ctx: &GpuContext,
    out: &Tensor,
    scores: &Tensor,
    clean: &Tensor,
    grid: &OcclusionGrid,
) -> Result<Dispatch> {
    const OP: &str = "occlusion_finalize";
    let s = nchw(OP, "out", out)?;
    if grid.image != [s[2], s[3]] {
        return Err(Error::shape(
            OP,
            format!("grid for {:?}, image {s:?}", grid.image),
        ));
    }
    expect_shape(OP, "clean", clean, &[s[0]])?;
    expect_shape(OP, "scores", scores, &[grid.windows() * s[0]])?;
    let params = grid.params(OP, image_params(OP, s)?)?;
    ctx.dispatch(
        OCCLUSION_FINALIZE,
        &params,
        &[(8, out), (16, scores), (17, clean)],
        ctx.grid_1d(out.numel())?,
    )
}

/// Backward seeds `seed` `[k·N, row]` of a replicated batch from its objective layer `act`:
/// `p_c (δ_ck − p_k)` of the row's own softmax where `cls[n] ≥ 0`, else `weights[n]`.
pub fn probability_seed(
    ctx: &GpuContext,
    seed: &Tensor,
    act: &Tensor,
    weights: &Tensor,
    cls: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "probability_seed";
    let (n, reps, row) = check_rows(OP, act, weights, cls)?;
    expect_shape(OP, "seed", seed, act.shape())?;
    let params = SalParams {
        n: to_u32(OP, "N", n)?,
        reps: to_u32(OP, "replicas", reps)?,
        row: to_u32(OP, "row", row)?,
        ..Default::default()
    };
    ctx.dispatch(
        PROBABILITY_SEED,
        &params,
        &[(12, act), (13, weights), (14, cls), (15, seed)],
        ctx.grid_1d(reps * n)?,
    )
}
