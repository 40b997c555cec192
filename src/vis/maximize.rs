//! Activation maximization: the input that most excites a class, a filter or a neuron, one
//! objective per batch image, optimized entirely on the GPU. keras-vis's behaviour (pixel
//! space, `-activation` + Lp + total-variation losses, RMS-normalized gradients, its RMSProp,
//! keep-best) is the default; Lucid's Fourier parameterization with decorrelated colour,
//! Adam, the redirected ReLU gradient and random jitter/rotation/scale/pad transforms are
//! options ([`Maximize::lucid`]).
//!
//! Every iteration — transforms, forward, backward, regularizers, update, keep-best, loss
//! log — is one list of launches built once and submitted once per iteration; nothing is
//! read back until the end unless a progress callback or frame recording asks for it.
//!
//! # Pixel units
//! keras-vis's rule takes steps of about one unit per pixel (`-g/√cache` with a normalized
//! `g`), and its regularizer weights were tuned for Caffe-style VGG16 inputs: 0–255 pixel
//! levels minus the mean pixel. So in pixel space the optimized variable is
//! `u = 255 · std[c] · x` for the model input `x` — pixel levels centred on the model's mean
//! pixel, whatever the model's normalization — clipped to `[-255 mean, 255 (1 - mean)]`, and
//! total variation and Lp are computed on `u`. The seed is keras-vis's: mid-grey plus noise
//! of standard deviation 5 % of the range. Adam's learning rate is in units of the `[0, 1]`
//! image (Lucid's convention), so `lr` 0.05 moves 5 % of the range per step.
//!
//! On small models the total-variation term (β = 2, weight 10) in pixel units outweighs the
//! logits and flattens every image: for a 28×28 digit classifier use
//! `.total_variation(0.0, 2.0)` (keras-vis's own MNIST example likewise drops it). A unit that
//! is zero over the whole seed image has a zero gradient and never moves under keras-vis's
//! rule; [`Maximize::redirect_relu`] fixes that as Lucid does.
//!
//! PyTorch agreement: `tools/make_fixtures.py --only maximize` re-implements the loop and
//! `tests/vis_maximize.rs` matches its first five iterations (RMSProp and Adam) within 1e-4.

use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, Tensor};
use crate::model::Model;
use crate::ops::elementwise::{batchnorm_affine_backward_input, batchnorm_affine_forward, scale};
use crate::ops::random::uniform_fill;
use crate::ops::relu::ReluRule;
use crate::vis::optim::{
    adam_update, clip_channels, grad_rms, jitter_backward, jitter_forward, keep_best, log_loss,
    lp_backward, lp_loss, pad_backward, pad_forward, rmsprop_update, step_advance, step_uniform,
    tv_backward, tv_loss, warp_backward, warp_forward, Adam, JitterMode, PadMode, Rmsprop,
    WarpRange,
};
use crate::vis::saliency::row_scores;
use crate::vis::spectral::SpectralParam;
use crate::vis::{GradientPass, Objective, Target};

/// First column of the per-image random numbers the warp reads (jitter reads 0 and 1).
const WARP_COL: usize = crate::vis::optim::JITTER_COLUMNS;

/// The span of the pixel-space variable: keras-vis's default `input_range = (0, 255)`. Its
/// update rule takes steps of about one unit per pixel, so the unit must be a pixel level.
pub const PIXEL_RANGE: f64 = 255.0;

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// keras-vis: gradients divided by their RMS, then its RMSProp (decay 0.95, step
    /// `-g/√cache`).
    KerasRmsprop(Rmsprop),
    /// Adam (Lucid, tf-keras-vis) on the raw gradient; in pixel space its learning rate is in
    /// units of the [0, 1] image.
    Adam(Adam),
}

/// What is optimized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parameterization {
    /// The pixels of the model input (keras-vis).
    Pixel,
    /// Lucid's scaled Fourier spectrum with decorrelated colour and a sigmoid to the valid
    /// range.
    Fourier {
        /// Frequency decay of the spectrum's scale (Lucid: 1).
        decay_power: f32,
    },
}

/// An activation-maximization run's settings; defaults are keras-vis's
/// `visualize_activation`.
#[derive(Debug, Clone)]
pub struct Maximize {
    iterations: usize,
    optimizer: Optimizer,
    param: Parameterization,
    act_weight: f32,
    tv_weight: f32,
    tv_beta: f32,
    lp_weight: f32,
    lp_p: f32,
    jitter: usize,
    rotate: f32,
    scale: [f32; 2],
    pad: usize,
    seed: u64,
    size: Option<[usize; 2]>,
    seed_input: Option<Tensor>,
    record_every: usize,
    redirect_relu: bool,
}

impl Default for Maximize {
    fn default() -> Self {
        Maximize::new()
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct Maximized {
    /// The best image of each objective (the lowest total loss, as keras-vis keeps it),
    /// `[N, C, H, W]` in model-input space.
    pub images: Tensor,
    /// The images after the last iteration.
    pub last: Tensor,
    /// The images the run started from (the seed noise or input, or the initial spectrum's).
    pub seed_images: Tensor,
    /// Each iteration's total loss per image, `[iterations, N]` row-major.
    pub losses: Vec<f32>,
    /// Iterations run.
    pub iterations: usize,
    /// Snapshots of the images during the run (see [`Maximize::record_every`]).
    pub frames: Vec<Frame>,
    /// `[N, C, H, W]` of `images`, `last` and every frame.
    pub shape: [usize; 4],
}

/// The images after one iteration, in model-input space (`[N, C, H, W]` row-major).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Iterations completed when it was taken (1-based).
    pub iteration: usize,
    /// The current images (not the best so far).
    pub images: Vec<f32>,
}

impl Maximize {
    /// keras-vis's defaults: 200 iterations, its RMSProp, pixel space (see the module docs on
    /// units), activation weight 1, Lp (p = 6) weight 10, total variation (β = 2) weight 10,
    /// no transforms, plain ReLU gradients.
    pub fn new() -> Maximize {
        Maximize {
            iterations: 200,
            optimizer: Optimizer::KerasRmsprop(Rmsprop::default()),
            param: Parameterization::Pixel,
            act_weight: 1.0,
            tv_weight: 10.0,
            tv_beta: 2.0,
            lp_weight: 10.0,
            lp_p: 6.0,
            jitter: 0,
            rotate: 0.0,
            scale: [1.0, 1.0],
            pad: 0,
            seed: 0,
            size: None,
            seed_input: None,
            record_every: 0,
            redirect_relu: false,
        }
    }

    /// Lucid-style defaults: Fourier parameterization, Adam (lr 0.05), jitter 8, rotation
    /// ±5°, scale 0.95–1.05, pad 12, no Lp or TV penalty, redirected ReLU gradient, 512
    /// iterations.
    pub fn lucid() -> Maximize {
        Maximize {
            iterations: 512,
            optimizer: Optimizer::Adam(Adam::default()),
            param: Parameterization::Fourier { decay_power: 1.0 },
            tv_weight: 0.0,
            lp_weight: 0.0,
            jitter: 8,
            rotate: 5.0,
            scale: [0.95, 1.05],
            pad: 12,
            redirect_relu: true,
            ..Maximize::new()
        }
    }

    /// Number of iterations.
    pub fn iterations(mut self, n: usize) -> Self {
        self.iterations = n;
        self
    }

    /// The update rule.
    pub fn optimizer(mut self, o: Optimizer) -> Self {
        self.optimizer = o;
        self
    }

    /// The parameterization.
    pub fn parameterization(mut self, p: Parameterization) -> Self {
        self.param = p;
        self
    }

    /// Weight of the activation term.
    pub fn activation_weight(mut self, w: f32) -> Self {
        self.act_weight = w;
        self
    }

    /// Total-variation weight and β.
    pub fn total_variation(mut self, weight: f32, beta: f32) -> Self {
        self.tv_weight = weight;
        self.tv_beta = beta;
        self
    }

    /// Lp-norm weight and p.
    pub fn lp_norm(mut self, weight: f32, p: f32) -> Self {
        self.lp_weight = weight;
        self.lp_p = p;
        self
    }

    /// Random shift of up to `pixels` each iteration (wrapping, as keras-vis's Jitter).
    pub fn jitter(mut self, pixels: usize) -> Self {
        self.jitter = pixels;
        self
    }

    /// Random rotation of up to ±`degrees` each iteration.
    pub fn rotate(mut self, degrees: f32) -> Self {
        self.rotate = degrees;
        self
    }

    /// Random zoom in `[lo, hi]` each iteration.
    pub fn scale(mut self, lo: f32, hi: f32) -> Self {
        self.scale = [lo, hi];
        self
    }

    /// Constant padding (mid-grey) of `pixels` on every side before the other transforms.
    pub fn pad(mut self, pixels: usize) -> Self {
        self.pad = pixels;
        self
    }

    /// Seed of the initial noise and of the transforms.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Image size `[h, w]` (default: the model's input size).
    pub fn size(mut self, h: usize, w: usize) -> Self {
        self.size = Some([h, w]);
        self
    }

    /// Starts from this `[N, C, H, W]` model-input tensor instead of noise (pixel space).
    pub fn seed_input(mut self, x: Tensor) -> Self {
        self.seed_input = Some(x);
        self
    }

    /// Lucid's redirected ReLU gradient ([`ReluRule::Redirected`]): a unit that is inactive
    /// over the whole image still passes the gradient that would switch it on, so filters
    /// that are dead on the seed can be optimized. keras-vis has no such rule (default off in
    /// [`Maximize::new`], on in [`Maximize::lucid`]).
    pub fn redirect_relu(mut self, on: bool) -> Self {
        self.redirect_relu = on;
        self
    }

    /// Reads the current images back after the first iteration and every `k` iterations
    /// (0: never), into [`Maximized::frames`], for keras-vis's GIF of the optimization. Each
    /// snapshot costs a GPU round trip.
    pub fn record_every(mut self, k: usize) -> Self {
        self.record_every = k;
        self
    }

    /// Runs the optimization for `targets` (one per image; their count is the batch).
    pub fn compute(
        &self,
        ctx: &GpuContext,
        model: &Model,
        targets: &[Target],
    ) -> Result<Maximized> {
        self.compute_with_progress(ctx, model, targets, 0, |_, _| {})
    }

    /// As [`Maximize::compute`], calling `progress(iteration, losses)` with the last
    /// iteration's per-image losses every `every` iterations (0: never). Each call reads the
    /// losses back, so it costs a GPU round trip.
    pub fn compute_with_progress(
        &self,
        ctx: &GpuContext,
        model: &Model,
        targets: &[Target],
        every: usize,
        mut progress: impl FnMut(usize, &[f32]),
    ) -> Result<Maximized> {
        const OP: &str = "maximize";
        let n = targets.len();
        if n == 0 {
            return Err(Error::shape(OP, "no objectives"));
        }
        if self.iterations == 0 {
            return Err(Error::shape(OP, "iterations must be at least 1"));
        }
        if targets
            .iter()
            .any(|t| matches!(t, Target::TopClass | Target::Probability(_)))
        {
            return Err(Error::shape(
                OP,
                "maximize a class logit, a filter, a neuron or a layer; top-class and \
                 probability targets are not supported",
            ));
        }
        let pre = model.preprocess();
        let c = pre.channels.count();
        let [h, w] = self.size.unwrap_or(pre.size);
        let shape = [n, c, h, w];
        let range = PIXEL_RANGE as f32;
        // Pixel units: `u = 255 · std · x`, the image in 0–255 steps centred on the model's mean
        // pixel, as Caffe-style inputs (keras-vis's VGG16) are; the model sees `x = u / (255 std)`.
        let to_model_scale: Vec<f32> = pre.std.iter().map(|s| 1.0 / (range * s)).collect();
        let to_pixel_scale: Vec<f32> = pre.std.iter().map(|s| range * s).collect();
        let u_lo: Vec<f32> = pre.mean.iter().map(|m| -range * m).collect();
        let u_hi: Vec<f32> = pre.mean.iter().map(|m| range * (1.0 - m)).collect();
        let grey: Vec<f32> = (0..c).map(|i| (0.5 - pre.mean[i]) / pre.std[i]).collect();
        let a_model = Tensor::from_slice(ctx, &[c], &to_model_scale)?;
        let a_pixel = Tensor::from_slice(ctx, &[c], &to_pixel_scale)?;
        let zero_shift = Tensor::zeros(ctx, &[c])?;

        // The model sees the image after padding (the other transforms keep the size).
        let (mh, mw) = (h + 2 * self.pad, w + 2 * self.pad);
        let objective = Objective::new(model, targets, n)?;
        let pass = GradientPass::new(
            ctx,
            model,
            [n, c, mh, mw],
            objective,
            None,
            if self.redirect_relu {
                ReluRule::Redirected
            } else {
                ReluRule::Standard
            },
        )?;
        // Minimize `-act_weight · score`: the backward seed is the score's, scaled.
        let layer = pass.objective().layer.clone();
        let act = pass.forward.activation(&layer)?.clone();
        let row: usize = act.shape()[1..].iter().product();
        let act_rows = act.reshape(&[n, row])?;
        let unit_seed = pass.backward.seed().download(ctx)?;
        let weights = Tensor::from_slice(ctx, &[n, row], &unit_seed)?;
        let scaled: Vec<f32> = unit_seed.iter().map(|v| -self.act_weight * v).collect();
        pass.backward.seed().write(ctx, &scaled)?;
        let cls = Tensor::from_slice(ctx, &[n], &vec![-1.0; n])?;

        // `x`: the image in model-input space. The optimized variable is `u` (pixel units) in
        // pixel space, the spectrum producing `x` in Fourier space.
        let x = Tensor::empty(ctx, &shape, DType::F32)?;
        let g = Tensor::zeros(ctx, &shape)?;
        let mut iteration: Vec<Dispatch> = Vec::new();
        let (u, spectral) = match self.param {
            Parameterization::Pixel => {
                let u = Tensor::empty(ctx, &shape, DType::F32)?;
                match &self.seed_input {
                    Some(s) => {
                        if s.shape() != shape {
                            return Err(Error::shape(
                                OP,
                                format!("seed input {:?}, expected {shape:?}", s.shape()),
                            ));
                        }
                        ctx.run(&[&batchnorm_affine_forward(
                            ctx,
                            &u,
                            s,
                            &a_pixel,
                            &zero_shift,
                        )?])?;
                    }
                    None => {
                        // keras-vis's `random_array`: noise of standard deviation 5 % of the
                        // range around its middle (uniform, so ±√3 · 5 %).
                        let half = 3f32.sqrt() * 0.05 * range;
                        let noise = Tensor::empty(ctx, &shape, DType::F32)?;
                        let one = Tensor::from_slice(ctx, &[c], &vec![1.0; c])?;
                        let mid: Vec<f32> = pre.mean.iter().map(|m| range * (0.5 - m)).collect();
                        let mid = Tensor::from_slice(ctx, &[c], &mid)?;
                        ctx.run(&[
                            &uniform_fill(ctx, &noise, self.seed, -half, half)?,
                            &batchnorm_affine_forward(ctx, &u, &noise, &one, &mid)?,
                        ])?;
                    }
                }
                iteration.push(batchnorm_affine_forward(
                    ctx,
                    &x,
                    &u,
                    &a_model,
                    &zero_shift,
                )?);
                (Some(u), None)
            }
            Parameterization::Fourier { decay_power } => {
                let sp =
                    SpectralParam::new(ctx, shape, decay_power, self.seed, &pre.mean, &pre.std)?;
                // The image of the initial spectrum; every iteration then ends with the image
                // of the updated spectrum, which the next iteration's transforms read.
                let first = sp.forward(ctx, &x)?;
                ctx.run(&first.iter().collect::<Vec<_>>())?;
                (None, Some(sp))
            }
        };
        // What the regularizers, clipping and keep-best act on, and its gradient.
        let (reg_img, reg_grad) = match &u {
            Some(u) => (u.clone(), Tensor::zeros(ctx, &shape)?),
            None => (x.clone(), g.clone()),
        };

        // Buffers, allocated once.
        let step = Tensor::from_u32(ctx, &[1], &[0])?;
        let rand = Tensor::zeros(ctx, &[n, 8])?;
        let loss = Tensor::zeros(ctx, &[n])?;
        let scores = Tensor::zeros(ctx, &[n])?;
        let stats = Tensor::zeros(ctx, &[n, 2])?;
        let gscale = Tensor::zeros(ctx, &[n])?;
        let losses = Tensor::zeros(ctx, &[self.iterations, n])?;
        let best = Tensor::zeros(ctx, &shape)?;
        let best_loss = Tensor::from_slice(ctx, &[n], &vec![f32::INFINITY; n])?;
        let padded = Tensor::zeros(ctx, &[n, c, mh, mw])?;
        let jittered = Tensor::zeros(ctx, &[n, c, mh, mw])?;
        let d_padded = Tensor::zeros(ctx, &[n, c, mh, mw])?;
        let d_jittered = Tensor::zeros(ctx, &[n, c, mh, mw])?;
        let model_in = pass.forward.input().clone();
        let d_model_in = pass
            .backward
            .input_grad()
            .ok_or_else(|| Error::shape(OP, "the backward pass does not reach the input"))?
            .clone();
        let warp = self.rotate != 0.0 || self.scale != [1.0, 1.0];
        let random = self.jitter > 0 || warp;

        if random {
            iteration.push(step_uniform(ctx, &rand, &step, self.seed)?);
        }
        // Transforms forward: x → pad → jitter → warp → model input.
        let mut cur = x.clone();
        let mut wrote_input = false;
        if self.pad > 0 {
            let target = if self.jitter == 0 && !warp {
                &model_in
            } else {
                &padded
            };
            iteration.push(pad_forward(
                ctx,
                target,
                &cur,
                self.pad,
                &PadMode::Constant(grey.clone()),
            )?);
            cur = target.clone();
            wrote_input = self.jitter == 0 && !warp;
        }
        if self.jitter > 0 {
            let target = if !warp { &model_in } else { &jittered };
            iteration.push(jitter_forward(
                ctx,
                target,
                &cur,
                &rand,
                0,
                JitterMode::Roll {
                    max_shift: self.jitter,
                },
            )?);
            cur = target.clone();
            wrote_input = !warp;
        }
        let warp_range = WarpRange {
            angle_deg: (-self.rotate, self.rotate),
            scale: (self.scale[0], self.scale[1]),
            translate: 0.0,
        };
        if warp {
            iteration.push(warp_forward(
                ctx,
                &model_in,
                &cur,
                &rand,
                WARP_COL,
                &warp_range,
            )?);
            wrote_input = true;
        }
        if !wrote_input {
            iteration.push(scale(ctx, &model_in, &cur, 1.0)?);
        }
        let before_model = iteration.len();
        // After the model's forward and backward: the objective's loss.
        iteration.push(row_scores(ctx, &scores, &act_rows, &weights, &cls, 0, 1)?);
        iteration.push(scale(ctx, &loss, &scores, -self.act_weight)?);
        // Transforms backward into g.
        let mut d_cur = d_model_in.clone();
        let mut wrote_g = false;
        if warp {
            let into = if self.jitter > 0 {
                &d_jittered
            } else if self.pad > 0 {
                &d_padded
            } else {
                &g
            };
            iteration.push(warp_backward(
                ctx,
                into,
                &d_cur,
                &rand,
                WARP_COL,
                &warp_range,
                false,
            )?);
            d_cur = into.clone();
            wrote_g = self.jitter == 0 && self.pad == 0;
        }
        if self.jitter > 0 {
            let into = if self.pad > 0 { &d_padded } else { &g };
            iteration.push(jitter_backward(
                ctx,
                into,
                &d_cur,
                &rand,
                0,
                JitterMode::Roll {
                    max_shift: self.jitter,
                },
                false,
            )?);
            d_cur = into.clone();
            wrote_g = self.pad == 0;
        }
        if self.pad > 0 {
            iteration.push(pad_backward(
                ctx,
                &g,
                &d_cur,
                self.pad,
                &PadMode::Constant(grey.clone()),
                false,
            )?);
            wrote_g = true;
        }
        if !wrote_g {
            iteration.push(scale(ctx, &g, &d_cur, 1.0)?);
        }
        if u.is_some() {
            iteration.push(batchnorm_affine_backward_input(
                ctx, &reg_grad, &g, &a_model, false,
            )?);
        }
        // Regularizers, in pixel units in pixel space.
        if self.tv_weight != 0.0 {
            iteration.push(tv_loss(
                ctx,
                &loss,
                &reg_img,
                self.tv_beta,
                self.tv_weight,
                true,
            )?);
            iteration.push(tv_backward(
                ctx,
                &reg_grad,
                &reg_img,
                self.tv_beta,
                self.tv_weight,
                true,
            )?);
        }
        if self.lp_weight != 0.0 {
            iteration.push(lp_loss(
                ctx,
                &loss,
                &stats,
                &reg_img,
                self.lp_p,
                self.lp_weight,
                true,
            )?);
            iteration.push(lp_backward(
                ctx,
                &reg_grad,
                &reg_img,
                &stats,
                self.lp_p,
                self.lp_weight,
                true,
            )?);
        }
        iteration.push(log_loss(ctx, &losses, &loss, &step)?);
        // Keep-best compares this iteration's loss with the input after the update (keras-vis).
        let state_a;
        let state_b;
        match (&spectral, self.optimizer) {
            (None, Optimizer::KerasRmsprop(r)) => {
                state_a = Tensor::zeros(ctx, &shape)?;
                iteration.push(grad_rms(ctx, &gscale, &reg_grad, r.eps)?);
                iteration.push(rmsprop_update(
                    ctx,
                    &reg_img,
                    &state_a,
                    &reg_grad,
                    Some(&gscale),
                    r,
                )?);
            }
            (None, Optimizer::Adam(a)) => {
                state_a = Tensor::zeros(ctx, &shape)?;
                state_b = Tensor::zeros(ctx, &shape)?;
                // The learning rate is in units of the [0, 1] image (Lucid's convention).
                let a = Adam {
                    lr: a.lr * range,
                    ..a
                };
                iteration.push(adam_update(
                    ctx, &reg_img, &state_a, &state_b, &reg_grad, None, &step, a,
                )?);
            }
            (Some(sp), opt) => {
                let s = sp.spectrum().shape().to_vec();
                let flat = [s[0], s[1] * s[2], s[3], s[4]];
                let d_spec = Tensor::zeros(ctx, &s)?;
                iteration.extend(sp.backward(ctx, &g, &d_spec, false)?);
                let p = sp.spectrum().reshape(&flat)?;
                let dp = d_spec.reshape(&flat)?;
                state_a = Tensor::zeros(ctx, &flat)?;
                match opt {
                    Optimizer::Adam(a) => {
                        state_b = Tensor::zeros(ctx, &flat)?;
                        iteration.push(adam_update(
                            ctx, &p, &state_a, &state_b, &dp, None, &step, a,
                        )?);
                    }
                    Optimizer::KerasRmsprop(r) => {
                        let gs = Tensor::zeros(ctx, &[n])?;
                        iteration.push(grad_rms(ctx, &gs, &dp, r.eps)?);
                        iteration.push(rmsprop_update(ctx, &p, &state_a, &dp, Some(&gs), r)?);
                    }
                }
                // The image of the updated spectrum, for keep-best and the result.
                iteration.extend(sp.forward(ctx, &x)?);
            }
        }
        if u.is_some() {
            iteration.push(clip_channels(ctx, &reg_img, &u_lo, &u_hi)?);
        }
        iteration.extend(keep_best(ctx, &best, &best_loss, &reg_img, &loss)?);
        iteration.push(step_advance(ctx, &step)?);

        let (pre_model, post_model) = iteration.split_at(before_model);
        let refs: Vec<&Dispatch> = pre_model
            .iter()
            .chain(pass.forward.dispatches())
            .chain(pass.backward.dispatches())
            .chain(post_model.iter())
            .collect();
        // Model-space views of the pixel-space variable, for frames and the results.
        let frame_img = Tensor::zeros(ctx, &shape)?;
        let to_model = |dst: &Tensor, src: &Tensor| -> Result<Option<Dispatch>> {
            match u {
                Some(_) => Ok(Some(batchnorm_affine_forward(
                    ctx,
                    dst,
                    src,
                    &a_model,
                    &zero_shift,
                )?)),
                None => Ok(None),
            }
        };
        let frame_launch = to_model(&frame_img, &reg_img)?;
        let seed_images = Tensor::zeros(ctx, &shape)?;
        // The starting images: the pixel variable seen in model space, or the initial
        // spectrum's image.
        match to_model(&seed_images, &reg_img)? {
            Some(d) => ctx.run(&[&d])?,
            None => ctx.run(&[&scale(ctx, &seed_images, &x, 1.0)?])?,
        }
        let mut frames = Vec::new();
        for i in 0..self.iterations {
            ctx.run(&refs)?;
            let done = i + 1;
            if every > 0 && (done % every == 0 || done == self.iterations) {
                let l = loss.download(ctx)?;
                progress(done, &l);
            }
            if self.record_every > 0 && (done % self.record_every == 0 || done == 1) {
                let images = match &frame_launch {
                    Some(d) => {
                        ctx.run(&[d])?;
                        frame_img.download(ctx)?
                    }
                    None => x.download(ctx)?,
                };
                frames.push(Frame {
                    iteration: done,
                    images,
                });
            }
        }
        let (images, last) = match &u {
            Some(u) => {
                let images = Tensor::zeros(ctx, &shape)?;
                let last = Tensor::zeros(ctx, &shape)?;
                let a = to_model(&images, &best)?;
                let b = to_model(&last, u)?;
                let launches: Vec<&Dispatch> = a.iter().chain(b.iter()).collect();
                ctx.run(&launches)?;
                (images, last)
            }
            None => (best, x),
        };
        Ok(Maximized {
            images,
            last,
            seed_images,
            losses: losses.download(ctx)?,
            iterations: self.iterations,
            frames,
            shape,
        })
    }
}

/// keras-vis's `deprocess_input`: standardize each image, scale by 0.1, shift to 0.5, clip
/// to [0, 1] — the usual way to display an optimized input. `data` is `[N, C, H, W]`.
pub fn deprocess(data: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let per = shape[1] * shape[2] * shape[3];
    let mut out = Vec::with_capacity(data.len());
    for img in data.chunks(per.max(1)) {
        let mean = img.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
        let var = img.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
        let std = var.sqrt() + 1e-7;
        out.extend(
            img.iter()
                .map(|&v| (((v as f64 - mean) / std * 0.1 + 0.5).clamp(0.0, 1.0)) as f32),
        );
    }
    out
}
