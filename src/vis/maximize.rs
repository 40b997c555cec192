//! Activation maximization: the input that most excites a class, a filter or a neuron, one
//! objective per batch image, optimized entirely on the GPU. keras-vis's behaviour (pixel
//! space, `-activation` + Lp + total-variation losses, RMS-normalized gradients, its RMSProp,
//! keep-best) is the default; Lucid's Fourier parameterization with decorrelated colour,
//! Adam and random jitter/rotation/scale/pad transforms are options.
//!
//! Every iteration — transforms, forward, backward, regularizers, update, keep-best, loss
//! log — is one list of launches built once and submitted once per iteration; nothing is
//! read back until the end unless a progress callback asks for the losses.

use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, Tensor};
use crate::model::Model;
use crate::ops::elementwise::scale;
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

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// keras-vis: gradients divided by their RMS, then its RMSProp (decay 0.95, step
    /// `-g/√cache`).
    KerasRmsprop(Rmsprop),
    /// Adam (Lucid, tf-keras-vis) on the raw gradient.
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
    /// Each iteration's total loss per image, `[iterations, N]` row-major.
    pub losses: Vec<f32>,
    /// Iterations run.
    pub iterations: usize,
}

impl Maximize {
    /// keras-vis's defaults: 200 iterations, its RMSProp, pixel space, activation weight 1,
    /// Lp (p = 6) weight 10, total variation (β = 2) weight 10, no transforms.
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
        }
    }

    /// Lucid-style defaults: Fourier parameterization, Adam (lr 0.05), jitter 8, rotation
    /// ±5°, scale 0.95–1.05, pad 12, no Lp or TV penalty, 512 iterations.
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
        // The valid range of model inputs: pixels 0..255 through the normalization.
        let lo: Vec<f32> = (0..c).map(|i| (0.0 - pre.mean[i]) / pre.std[i]).collect();
        let hi: Vec<f32> = (0..c).map(|i| (1.0 - pre.mean[i]) / pre.std[i]).collect();
        let grey: Vec<f32> = (0..c).map(|i| (0.5 - pre.mean[i]) / pre.std[i]).collect();

        // The model sees the image after padding (the other transforms keep the size).
        let (mh, mw) = (h + 2 * self.pad, w + 2 * self.pad);
        let objective = Objective::new(model, targets, n)?;
        let pass = GradientPass::new(
            ctx,
            model,
            [n, c, mh, mw],
            objective,
            None,
            ReluRule::Standard,
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

        // The optimized image x (pixel space) or the spectrum producing it.
        let x = Tensor::empty(ctx, &shape, DType::F32)?;
        let spectral = match self.param {
            Parameterization::Pixel => {
                match &self.seed_input {
                    Some(s) => {
                        if s.shape() != shape {
                            return Err(Error::shape(
                                OP,
                                format!("seed input {:?}, expected {shape:?}", s.shape()),
                            ));
                        }
                        let copy = scale(ctx, &x, s, 1.0)?;
                        ctx.run(&[&copy])?;
                    }
                    None => {
                        // keras-vis's seed: noise of ±5 % of the range around its middle.
                        let u = Tensor::empty(ctx, &shape, DType::F32)?;
                        ctx.run(&[&uniform_fill(ctx, &u, self.seed, -0.05, 0.05)?])?;
                        let noise = u.download(ctx)?;
                        let plane = h * w;
                        let init: Vec<f32> = noise
                            .iter()
                            .enumerate()
                            .map(|(i, v)| {
                                let ch = (i / plane) % c;
                                (0.5 + v - pre.mean[ch]) / pre.std[ch]
                            })
                            .collect();
                        x.write(ctx, &init)?;
                    }
                }
                None
            }
            Parameterization::Fourier { decay_power } => Some(SpectralParam::new(
                ctx,
                shape,
                decay_power,
                self.seed,
                &pre.mean,
                &pre.std,
            )?),
        };

        // Buffers, allocated once.
        let step = Tensor::from_u32(ctx, &[1], &[0])?;
        let rand = Tensor::zeros(ctx, &[n, 8])?;
        let loss = Tensor::zeros(ctx, &[n])?;
        let scores = Tensor::zeros(ctx, &[n])?;
        let stats = Tensor::zeros(ctx, &[n, 2])?;
        let g = Tensor::zeros(ctx, &shape)?;
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

        // Launches before the model's (transforms) and after it (losses, update).
        let mut iteration: Vec<Dispatch> = Vec::new();
        if let Some(sp) = &spectral {
            iteration.extend(sp.forward(ctx, &x)?);
        }
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
        // Regularizers on x.
        if self.tv_weight != 0.0 {
            iteration.push(tv_loss(ctx, &loss, &x, self.tv_beta, self.tv_weight, true)?);
            iteration.push(tv_backward(
                ctx,
                &g,
                &x,
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
                &x,
                self.lp_p,
                self.lp_weight,
                true,
            )?);
            iteration.push(lp_backward(
                ctx,
                &g,
                &x,
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
                iteration.push(grad_rms(ctx, &gscale, &g, r.eps)?);
                iteration.push(rmsprop_update(ctx, &x, &state_a, &g, Some(&gscale), r)?);
            }
            (None, Optimizer::Adam(a)) => {
                state_a = Tensor::zeros(ctx, &shape)?;
                state_b = Tensor::zeros(ctx, &shape)?;
                iteration.push(adam_update(
                    ctx, &x, &state_a, &state_b, &g, None, &step, a,
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
        if spectral.is_none() {
            iteration.push(clip_channels(ctx, &x, &lo, &hi)?);
        }
        iteration.extend(keep_best(ctx, &best, &best_loss, &x, &loss)?);
        iteration.push(step_advance(ctx, &step)?);

        let (pre, post) = iteration.split_at(before_model);
        let refs: Vec<&Dispatch> = pre
            .iter()
            .chain(pass.forward.dispatches())
            .chain(pass.backward.dispatches())
            .chain(post.iter())
            .collect();
        for i in 0..self.iterations {
            ctx.run(&refs)?;
            if every > 0 && ((i + 1) % every == 0 || i + 1 == self.iterations) {
                let l = loss.download(ctx)?;
                progress(i + 1, &l);
            }
        }
        Ok(Maximized {
            images: best,
            last: x,
            losses: losses.download(ctx)?,
            iterations: self.iterations,
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
