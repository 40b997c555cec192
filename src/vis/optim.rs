//! Activation maximization's GPU building blocks: keras-vis's regularizers, the update rules,
//! keep-best, the loss log, a GPU step counter with per-step random numbers, and random input
//! transforms with their transposes. Kernels in `shaders/optim.wgsl`.
//!
//! Every function builds one launch (or a short list) over tensors allocated once; a loop
//! records the same list every iteration. Nothing here depends on the iteration number at
//! build time: the iteration comes from a `[1]` u32 **step tensor** (the number of completed
//! iterations, 0 at the start) and the transforms' randomness from a `[N, k]` **rand tensor**
//! that [`step_uniform`] refills from `(seed, step)` every iteration.
//!
//! # One iteration, as keras-vis's `Optimizer.minimize` does it
//! 1. `step_uniform(rand, step, seed)` (only with random transforms).
//! 2. Transforms forward: e.g. `pad_forward`, `jitter_forward(Crop)`, `warp_forward` from the
//!    optimized input `x` to the model input.
//! 3. Model forward and backward; the objective's loss (keras-vis: `-mean activation` times
//!    its weight) written into `loss [N]` and its input gradient into `g [N, C, H, W]`
//!    (through the transforms' backward: `warp_backward`, `jitter_backward`, `pad_backward`).
//! 4. Regularizers on `x`: `tv_loss` + `tv_backward`, `lp_loss` + `lp_backward`, with
//!    `accumulate = true` so they add to `loss` and `g`.
//! 5. `log_loss(losses, loss, step)`: row `step` of the `[iterations, N]` log.
//! 6. keras-vis rule: `grad_rms(gscale, g)` then `rmsprop_update(x, cache, g, Some(gscale))`;
//!    or `adam_update(x, m, v, g, gscale?, step)`.
//! 7. Optionally `clip_channels(x, lo, hi)`.
//! 8. `keep_best(best, best_loss, x, loss)`: keras-vis compares the loss computed **before**
//!    the update (step 3-4) with the input **after** it (and after its `post` modifiers):
//!    `if overall_loss < best_loss: best_input = seed_input.copy()` runs after
//!    `seed_input += step`. So `best` holds the input one update after the best-loss input,
//!    exactly as keras-vis returns it. `best_loss` must start at `+inf`.
//! 9. `step_advance(step)`.
//!
//! # keras-vis 0.4.1 formulas (read from its source)
//! - `TotalVariation(beta=2)`: `Σ_{n,c,i<H-1,j<W-1} ((x[i+1,j]-x[i,j])² +
//!   (x[i,j+1]-x[i,j])²)^(β/2)`, on the overlapping slices `[1:, :-1]` / `[:-1, 1:]` minus
//!   `[:-1, :-1]`, divided by `prod(image shape without batch)` = `C*H*W` (`normalize`).
//!   Default weight in `visualize_activation`: 10.
//! - `LPNorm(p=6)`: `(Σ|x|^p)^(1/p) / (C*H*W)`; for `p = inf` keras-vis uses `K.max(x)`, the
//!   signed maximum (not `max|x|`), divided likewise. Default weight 10. `p < 1` is refused.
//! - `Optimizer(norm_grads=True)`: `g / (sqrt(mean(g²)) + K.epsilon())`, the RMS over the
//!   whole (batch-1) gradient tensor, K.epsilon() = 1e-7; this is *not* `K.l2_normalize`.
//! - `_rmsprop`: `cache = 0.95 cache + 0.05 g²; step = -g / sqrt(cache + 1e-7)`; `x += step`
//!   (no learning rate, i.e. 1). The cache starts at zero.
//! - The loss is `Σ weight · loss`, where `ActivationMaximization` is `-mean(activation)` per
//!   filter. `Jitter` rolls the optimized input itself (scipy `shift(mode='wrap')`) in `pre`:
//!   [`JitterMode::Roll`].
//!
//! # Adam
//! [`Adam::default`] is `torch.optim.Adam`'s and Lucid's `tf.train.AdamOptimizer`'s β1 0.9,
//! β2 0.999, ε 1e-8 (Keras's Adam uses ε 1e-7), with Lucid's learning rate 0.05. The update is
//! torch.optim.Adam's single-tensor arithmetic, so a PyTorch re-implementation agrees closely.
//!
//! # Transforms
//! All keep the batch and channels and are linear in `x`; each has a transpose (`*_backward`,
//! a gather: one thread per input element). Lucid pads with a constant 0.5 in [0, 1] image
//! space: in model-input space that is `(0.5 * range - mean[c]) / std[c]` per channel, which
//! the caller passes to [`PadMode::Constant`]. Lucid's random scale and rotation resize the
//! image; here the affine warp keeps its output size fixed (zoom about the centre, zeros
//! outside), so dispatches can be built once. Lucid draws angles and scales from discrete
//! lists; the warp draws them uniformly from ranges.

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::random::philox4x32_10;
use crate::ops::{expect_dtype, expect_shape, to_u32};

const TV_LOSS: Kernel = Kernel::new(Shader::Optim, "tv_loss");
const TV_BACKWARD: Kernel = Kernel::new(Shader::Optim, "tv_backward");
const LP_LOSS: Kernel = Kernel::new(Shader::Optim, "lp_loss");
const LP_BACKWARD: Kernel = Kernel::new(Shader::Optim, "lp_backward");
const GRAD_RMS: Kernel = Kernel::new(Shader::Optim, "grad_rms");
const RMSPROP_UPDATE: Kernel = Kernel::new(Shader::Optim, "rmsprop_update");
const ADAM_UPDATE: Kernel = Kernel::new(Shader::Optim, "adam_update");
const CLIP_CHANNELS: Kernel = Kernel::new(Shader::Optim, "clip_channels");
const KEEP_BEST_COPY: Kernel = Kernel::new(Shader::Optim, "keep_best_copy");
const KEEP_BEST_LOSS: Kernel = Kernel::new(Shader::Optim, "keep_best_loss");
const LOG_LOSS: Kernel = Kernel::new(Shader::Optim, "log_loss");
const STEP_ADVANCE: Kernel = Kernel::new(Shader::Optim, "step_advance");
const STEP_UNIFORM: Kernel = Kernel::new(Shader::Optim, "step_uniform");
const JITTER_FORWARD: Kernel = Kernel::new(Shader::Optim, "jitter_forward");
const JITTER_BACKWARD: Kernel = Kernel::new(Shader::Optim, "jitter_backward");
const PAD_FORWARD: Kernel = Kernel::new(Shader::Optim, "pad_forward");
const PAD_BACKWARD: Kernel = Kernel::new(Shader::Optim, "pad_backward");
const WARP_FORWARD: Kernel = Kernel::new(Shader::Optim, "warp_forward");
const WARP_BACKWARD: Kernel = Kernel::new(Shader::Optim, "warp_backward");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    TV_LOSS,
    TV_BACKWARD,
    LP_LOSS,
    LP_BACKWARD,
    GRAD_RMS,
    RMSPROP_UPDATE,
    ADAM_UPDATE,
    CLIP_CHANNELS,
    KEEP_BEST_COPY,
    KEEP_BEST_LOSS,
    LOG_LOSS,
    STEP_ADVANCE,
    STEP_UNIFORM,
    JITTER_FORWARD,
    JITTER_BACKWARD,
    PAD_FORWARD,
    PAD_BACKWARD,
    WARP_FORWARD,
    WARP_BACKWARD,
];

/// Keras's `K.epsilon()`: keras-vis's gradient-normalization and RMSProp epsilon.
pub const KERAS_EPSILON: f32 = 1e-7;
/// keras-vis's default TV β.
pub const KERAS_VIS_TV_BETA: f32 = 2.0;
/// keras-vis's default Lp p.
pub const KERAS_VIS_LP_P: f32 = 6.0;
/// keras-vis's default weight of both regularizers in `visualize_activation`.
pub const KERAS_VIS_REG_WEIGHT: f32 = 10.0;
/// Rand columns [`jitter_forward`] reads: (row offset, column offset).
pub const JITTER_COLUMNS: usize = 2;
/// Rand columns [`warp_forward`] reads: (angle, scale, row shift, column shift).
pub const WARP_COLUMNS: usize = 4;
/// Counter word 2 of [`step_uniform`]: independent of ops::random's uniform (0) and Gaussian
/// (1) streams.
pub const STEP_STREAM: u32 = 2;

/// Mirror of `OptParams` in optim.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct OptParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    count: u32,
    accumulate: u32,
    mode: u32,
    k: u32,
    col: u32,
    pad: u32,
    iterations: u32,
    key0: u32,
    key1: u32,
    _pad0: u32,
    weight: f32,
    power: f32,
    inv_count: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    norm_eps: f32,
    angle_lo: f32,
    angle_hi: f32,
    scale_lo: f32,
    scale_hi: f32,
    translate: f32,
    ln_beta1: f32,
    ln_beta2: f32,
    _pad1: f32,
}
const _: () = assert!(std::mem::size_of::<OptParams>() == 128);

// ---------------------------------------------------------------------------------------------
// Shape helpers
// ---------------------------------------------------------------------------------------------

/// `[N, C, H, W]` of an f32 image batch.
fn dims4(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; 4]> {
    expect_dtype(op, name, t, DType::F32)?;
    match *t.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => Err(Error::shape(
            op,
            format!("{name} has shape {s:?}, expected [N, C, H, W]"),
        )),
    }
}

fn f32_shape(op: &'static str, name: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    expect_dtype(op, name, t, DType::F32)?;
    expect_shape(op, name, t, shape)
}

fn finite(op: &'static str, name: &str, v: f32) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::shape(op, format!("{name} = {v} is not finite")));
    }
    Ok(())
}

fn step_tensor(op: &'static str, step: &Tensor) -> Result<()> {
    expect_dtype(op, "step", step, DType::U32)?;
    expect_shape(op, "step", step, &[1])
}

/// Params with the image dims filled, `count` = `numel` threads.
fn image_params(op: &'static str, [n, c, h, w]: [usize; 4], count: usize) -> Result<OptParams> {
    to_u32(op, "numel", n * c * h * w)?;
    Ok(OptParams {
        n: to_u32(op, "N", n)?,
        c: to_u32(op, "C", c)?,
        h: to_u32(op, "H", h)?,
        w: to_u32(op, "W", w)?,
        ho: to_u32(op, "H", h)?,
        wo: to_u32(op, "W", w)?,
        count: to_u32(op, "threads", count)?,
        inv_count: (1.0 / (c * h * w) as f64) as f32,
        ..Default::default()
    })
}

/// One workgroup per image.
fn per_image_grid(ctx: &GpuContext, n: usize) -> Result<[u32; 3]> {
    grid_for(n, 1, ctx.limits().max_compute_workgroups_per_dimension)
}

// ---------------------------------------------------------------------------------------------
// Regularizers
// ---------------------------------------------------------------------------------------------

fn check_beta(op: &'static str, beta: f32) -> Result<()> {
    if !(beta.is_finite() && beta > 0.0) {
        return Err(Error::shape(
            op,
            format!("TV beta = {beta}, expected finite > 0"),
        ));
    }
    Ok(())
}

/// `loss[n] (+)= weight * TV_β(x[n]) / (C*H*W)`, keras-vis's `TotalVariation` (see the module
/// docs). `loss` is `[N]`. One workgroup per image.
pub fn tv_loss(
    ctx: &GpuContext,
    loss: &Tensor,
    x: &Tensor,
    beta: f32,
    weight: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "tv_loss";
    let d = dims4(OP, "x", x)?;
    f32_shape(OP, "loss", loss, &[d[0]])?;
    check_beta(OP, beta)?;
    finite(OP, "weight", weight)?;
    let params = OptParams {
        power: beta,
        weight,
        accumulate: accumulate as u32,
        ..image_params(OP, d, x.numel())?
    };
    ctx.dispatch(
        TV_LOSS,
        &params,
        &[(1, x), (5, loss)],
        per_image_grid(ctx, d[0])?,
    )
}

/// `dx (+)= weight * ∂(TV_β(x) / (C*H*W))/∂x` ([`tv_loss`]'s gradient); `dx` is a distinct
/// tensor of `x`'s shape. At a pixel whose differences are all zero the gradient is 0.
pub fn tv_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    x: &Tensor,
    beta: f32,
    weight: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "tv_backward";
    let d = dims4(OP, "x", x)?;
    f32_shape(OP, "dx", dx, x.shape())?;
    check_beta(OP, beta)?;
    finite(OP, "weight", weight)?;
    let params = OptParams {
        power: beta,
        weight,
        accumulate: accumulate as u32,
        ..image_params(OP, d, x.numel())?
    };
    ctx.dispatch(
        TV_BACKWARD,
        &params,
        &[(1, x), (4, dx)],
        ctx.grid_1d(x.numel())?,
    )
}

fn lp_mode(op: &'static str, p: f32) -> Result<(u32, f32)> {
    if p == f32::INFINITY {
        return Ok((1, 0.0));
    }
    if !(p.is_finite() && p >= 1.0) {
        return Err(Error::shape(
            op,
            format!("Lp p = {p}, expected p >= 1 or infinity (keras-vis refuses p < 1)"),
        ));
    }
    Ok((0, p))
}

/// The launch parameters [`lp_loss`] and [`lp_backward`] share.
fn lp_params(
    op: &'static str,
    d: [usize; 4],
    x: &Tensor,
    p: f32,
    weight: f32,
    accumulate: bool,
) -> Result<OptParams> {
    let (mode, power) = lp_mode(op, p)?;
    finite(op, "weight", weight)?;
    Ok(OptParams {
        power,
        mode,
        weight,
        accumulate: accumulate as u32,
        ..image_params(op, d, x.numel())?
    })
}

/// `loss[n] (+)= weight * ‖x[n]‖_p / (C*H*W)`, keras-vis's `LPNorm`; `p = f32::INFINITY`
/// gives keras-vis's `K.max(x)` (the signed maximum). Writes `stats[n] = (norm, ties)` for
/// [`lp_backward`] (`stats` is `[N, 2]`). One workgroup per image.
pub fn lp_loss(
    ctx: &GpuContext,
    loss: &Tensor,
    stats: &Tensor,
    x: &Tensor,
    p: f32,
    weight: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "lp_loss";
    let d = dims4(OP, "x", x)?;
    f32_shape(OP, "loss", loss, &[d[0]])?;
    f32_shape(OP, "stats", stats, &[d[0], 2])?;
    let params = lp_params(OP, d, x, p, weight, accumulate)?;
    ctx.dispatch(
        LP_LOSS,
        &params,
        &[(1, x), (5, loss), (6, stats)],
        per_image_grid(ctx, d[0])?,
    )
}

/// `dx (+)= weight * ∂(‖x‖_p / (C*H*W))/∂x = weight / (C*H*W) * sign(x) (|x| / ‖x‖_p)^(p-1)`,
/// reading the `stats` that [`lp_loss`] wrote for the same `x` (so record `lp_loss` first).
/// `p = inf`: the maximum's gradient is shared equally by the elements equal to it (TF's
/// `reduce_max` rule). An all-zero image has gradient 0.
pub fn lp_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    x: &Tensor,
    stats: &Tensor,
    p: f32,
    weight: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "lp_backward";
    let d = dims4(OP, "x", x)?;
    f32_shape(OP, "dx", dx, x.shape())?;
    f32_shape(OP, "stats", stats, &[d[0], 2])?;
    let params = lp_params(OP, d, x, p, weight, accumulate)?;
    ctx.dispatch(
        LP_BACKWARD,
        &params,
        &[(1, x), (6, stats), (4, dx)],
        ctx.grid_1d(x.numel())?,
    )
}

// ---------------------------------------------------------------------------------------------
// Update rules
// ---------------------------------------------------------------------------------------------

/// `gscale[n] = 1 / (sqrt(mean(g[n]²)) + eps)`: keras-vis's `norm_grads` factor
/// (`eps` = [`KERAS_EPSILON`]) per image. `gscale` is `[N]`; the update rules apply it when
/// given it. One workgroup per image.
pub fn grad_rms(ctx: &GpuContext, gscale: &Tensor, g: &Tensor, eps: f32) -> Result<Dispatch> {
    const OP: &str = "grad_rms";
    let d = dims4(OP, "g", g)?;
    f32_shape(OP, "gscale", gscale, &[d[0]])?;
    finite(OP, "eps", eps)?;
    let params = OptParams {
        norm_eps: eps,
        ..image_params(OP, d, g.numel())?
    };
    ctx.dispatch(
        GRAD_RMS,
        &params,
        &[(12, g), (13, gscale)],
        per_image_grid(ctx, d[0])?,
    )
}

/// keras-vis's RMSProp (`Optimizer._rmsprop`) with a learning-rate factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rmsprop {
    /// Step multiplier (keras-vis: 1).
    pub lr: f32,
    /// Cache decay (keras-vis: 0.95).
    pub decay: f32,
    /// Added under the square root (keras-vis: K.epsilon() = 1e-7).
    pub eps: f32,
}

impl Default for Rmsprop {
    /// keras-vis's: lr 1, decay 0.95, eps 1e-7.
    fn default() -> Self {
        Rmsprop {
            lr: 1.0,
            decay: 0.95,
            eps: KERAS_EPSILON,
        }
    }
}

/// Adam's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// Learning rate (Lucid: 0.05).
    pub lr: f32,
    /// First-moment decay (0.9).
    pub beta1: f32,
    /// Second-moment decay (0.999).
    pub beta2: f32,
    /// Denominator epsilon (1e-8, torch and TF1's AdamOptimizer).
    pub eps: f32,
}

impl Default for Adam {
    /// Lucid's `tf.train.AdamOptimizer(0.05)`: β1 0.9, β2 0.999, ε 1e-8.
    fn default() -> Self {
        Adam {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Shared checks of the update rules: `x`, its state tensors and `g` of one image shape,
/// `gscale` (if any) `[N]`. Returns the params with the gradient-scale mode set.
fn update_params(
    op: &'static str,
    x: &Tensor,
    state: &[(&str, &Tensor)],
    g: &Tensor,
    gscale: Option<&Tensor>,
) -> Result<OptParams> {
    let d = dims4(op, "x", x)?;
    for (name, t) in state {
        f32_shape(op, name, t, x.shape())?;
    }
    f32_shape(op, "g", g, x.shape())?;
    if let Some(s) = gscale {
        f32_shape(op, "gscale", s, &[d[0]])?;
    }
    Ok(OptParams {
        mode: gscale.is_some() as u32,
        ..image_params(op, d, x.numel())?
    })
}

/// keras-vis's update, in place: with `gs = g * gscale[n]` (or `g` when `gscale` is `None`),
/// `cache = decay*cache + (1-decay)*gs²; x += -lr*gs / sqrt(cache + eps)`. `cache` starts at
/// zero (keras-vis's `np.zeros_like`). Run [`grad_rms`] first for keras-vis's `norm_grads`.
pub fn rmsprop_update(
    ctx: &GpuContext,
    x: &Tensor,
    cache: &Tensor,
    g: &Tensor,
    gscale: Option<&Tensor>,
    opt: Rmsprop,
) -> Result<Dispatch> {
    const OP: &str = "rmsprop_update";
    let base = update_params(OP, x, &[("cache", cache)], g, gscale)?;
    for (name, v) in [("lr", opt.lr), ("decay", opt.decay), ("eps", opt.eps)] {
        finite(OP, name, v)?;
    }
    let params = OptParams {
        lr: opt.lr,
        beta2: opt.decay,
        eps: opt.eps,
        ..base
    };
    let placeholder;
    let scale = match gscale {
        Some(s) => s,
        None => {
            placeholder = ctx.placeholder()?;
            &placeholder
        }
    };
    ctx.dispatch(
        RMSPROP_UPDATE,
        &params,
        &[(11, x), (9, cache), (12, g), (13, scale)],
        ctx.grid_1d(x.numel())?,
    )
}

/// Adam in place, at step `t = step[0] + 1` read from the `[1]` u32 `step` tensor (so record
/// [`step_advance`] after it): `m = m + (1-β1)(gs - m); v = β2 v + (1-β2) gs²;
/// x -= (lr / (1-β1^t)) * m / (sqrt(v) / sqrt(1-β2^t) + eps)` (torch.optim.Adam), `gs` as in
/// [`rmsprop_update`]. `m` and `v` start at zero.
#[allow(clippy::too_many_arguments)]
pub fn adam_update(
    ctx: &GpuContext,
    x: &Tensor,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    gscale: Option<&Tensor>,
    step: &Tensor,
    opt: Adam,
) -> Result<Dispatch> {
    const OP: &str = "adam_update";
    let base = update_params(OP, x, &[("m", m), ("v", v)], g, gscale)?;
    step_tensor(OP, step)?;
    for (name, val) in [
        ("lr", opt.lr),
        ("beta1", opt.beta1),
        ("beta2", opt.beta2),
        ("eps", opt.eps),
    ] {
        finite(OP, name, val)?;
    }
    if !(opt.beta1 > 0.0 && opt.beta1 < 1.0 && opt.beta2 > 0.0 && opt.beta2 < 1.0) {
        return Err(Error::shape(
            OP,
            format!("betas ({}, {}) must lie in (0, 1)", opt.beta1, opt.beta2),
        ));
    }
    let params = OptParams {
        lr: opt.lr,
        beta1: opt.beta1,
        beta2: opt.beta2,
        eps: opt.eps,
        ln_beta1: (opt.beta1 as f64).ln() as f32,
        ln_beta2: (opt.beta2 as f64).ln() as f32,
        ..base
    };
    let placeholder;
    let scale = match gscale {
        Some(s) => s,
        None => {
            placeholder = ctx.placeholder()?;
            &placeholder
        }
    };
    ctx.dispatch(
        ADAM_UPDATE,
        &params,
        &[(11, x), (9, m), (10, v), (12, g), (13, scale), (8, step)],
        ctx.grid_1d(x.numel())?,
    )
}

/// `x[n, c] = clamp(x[n, c], lo[c], hi[c])` in place (model-input space: e.g.
/// `(0 - mean[c]) / std[c]` to `(1 - mean[c]) / std[c]`). `lo` and `hi` have `C` values each.
pub fn clip_channels(ctx: &GpuContext, x: &Tensor, lo: &[f32], hi: &[f32]) -> Result<Dispatch> {
    const OP: &str = "clip_channels";
    let d = dims4(OP, "x", x)?;
    if lo.len() != d[1] || hi.len() != d[1] {
        return Err(Error::shape(
            OP,
            format!(
                "lo and hi have {} and {} values, expected one per channel ({})",
                lo.len(),
                hi.len(),
                d[1]
            ),
        ));
    }
    let mut bounds = Vec::with_capacity(2 * d[1]);
    for (c, (&l, &h)) in lo.iter().zip(hi).enumerate() {
        if l.is_nan() || h.is_nan() || l > h {
            return Err(Error::shape(
                OP,
                format!("channel {c}: bounds [{l}, {h}] are not an interval"),
            ));
        }
        bounds.extend([l, h]);
    }
    let bounds = Tensor::from_slice(ctx, &[d[1], 2], &bounds)?;
    let params = image_params(OP, d, x.numel())?;
    ctx.dispatch(
        CLIP_CHANNELS,
        &params,
        &[(11, x), (17, &bounds)],
        ctx.grid_1d(x.numel())?,
    )
}

/// Keep-best: where `loss[n] < best_loss[n]`, copies image `n` of `x` into `best` and sets
/// `best_loss[n] = loss[n]` (two launches, copy then loss). A NaN loss never wins. Start
/// `best_loss` at `+inf`. See the module docs for which `x` keras-vis pairs with which loss.
pub fn keep_best(
    ctx: &GpuContext,
    best: &Tensor,
    best_loss: &Tensor,
    x: &Tensor,
    loss: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "keep_best";
    let d = dims4(OP, "x", x)?;
    f32_shape(OP, "best", best, x.shape())?;
    f32_shape(OP, "loss", loss, &[d[0]])?;
    f32_shape(OP, "best_loss", best_loss, &[d[0]])?;
    let params = image_params(OP, d, x.numel())?;
    Ok(vec![
        ctx.dispatch(
            KEEP_BEST_COPY,
            &params,
            &[(1, x), (5, loss), (15, best_loss), (14, best)],
            ctx.grid_1d(x.numel())?,
        )?,
        ctx.dispatch(
            KEEP_BEST_LOSS,
            &params,
            &[(5, loss), (15, best_loss)],
            ctx.grid_1d(d[0])?,
        )?,
    ])
}

/// `losses[step[0], n] = loss[n]`; `losses` is `[iterations, N]`, and steps at or beyond
/// `iterations` write nothing.
pub fn log_loss(
    ctx: &GpuContext,
    losses: &Tensor,
    loss: &Tensor,
    step: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "log_loss";
    expect_dtype(OP, "losses", losses, DType::F32)?;
    let [iterations, n] = *losses.shape() else {
        return Err(Error::shape(
            OP,
            format!(
                "losses has shape {:?}, expected [iterations, N]",
                losses.shape()
            ),
        ));
    };
    f32_shape(OP, "loss", loss, &[n])?;
    step_tensor(OP, step)?;
    let params = OptParams {
        n: to_u32(OP, "N", n)?,
        iterations: to_u32(OP, "iterations", iterations)?,
        ..Default::default()
    };
    to_u32(OP, "iterations * N", losses.numel())?;
    ctx.dispatch(
        LOG_LOSS,
        &params,
        &[(5, loss), (8, step), (16, losses)],
        ctx.grid_1d(n)?,
    )
}

/// `step[0] += 1` on the `[1]` u32 step tensor.
pub fn step_advance(ctx: &GpuContext, step: &Tensor) -> Result<Dispatch> {
    const OP: &str = "step_advance";
    step_tensor(OP, step)?;
    let params = OptParams {
        count: 1,
        ..Default::default()
    };
    ctx.dispatch(STEP_ADVANCE, &params, &[(8, step)], [1, 1, 1])
}

/// Fills `rand` (any f32 shape, typically `[N, k]`) with U[0, 1) numbers that depend on
/// `(seed, step[0], index)` only: element `e` is the top 24 bits of word `e % 4` of
/// Philox4x32-10 with counter `(e / 4, step[0], STEP_STREAM, 0)` and key `seed`, over 2^24.
/// Replaying the launch after [`step_advance`] gives the next iteration's numbers;
/// [`step_uniform_cpu`] is its CPU twin.
pub fn step_uniform(ctx: &GpuContext, rand: &Tensor, step: &Tensor, seed: u64) -> Result<Dispatch> {
    const OP: &str = "step_uniform";
    expect_dtype(OP, "rand", rand, DType::F32)?;
    step_tensor(OP, step)?;
    let params = OptParams {
        count: to_u32(OP, "numel", rand.numel())?,
        key0: seed as u32,
        key1: (seed >> 32) as u32,
        ..Default::default()
    };
    ctx.dispatch(
        STEP_UNIFORM,
        &params,
        &[(7, rand), (8, step)],
        ctx.grid_1d(rand.numel().div_ceil(4))?,
    )
}

/// Element `index` of [`step_uniform`] at `step` under `seed`, bit for bit.
pub fn step_uniform_cpu(seed: u64, step: u32, index: u32) -> f32 {
    let w = philox4x32_10(
        [index / 4, step, STEP_STREAM, 0],
        [seed as u32, (seed >> 32) as u32],
    )[(index % 4) as usize];
    (w >> 8) as f32 * (1.0 / 16_777_216.0)
}

// ---------------------------------------------------------------------------------------------
// Transforms
// ---------------------------------------------------------------------------------------------

/// Checks a `[N, k]` rand tensor with `cols` columns from `col` on.
fn rand_params(
    op: &'static str,
    rand: &Tensor,
    n: usize,
    col: usize,
    cols: usize,
) -> Result<(u32, u32)> {
    expect_dtype(op, "rand", rand, DType::F32)?;
    let k = match *rand.shape() {
        [rn, k] if rn == n => k,
        ref s => {
            return Err(Error::shape(
                op,
                format!("rand has shape {s:?}, expected [{n}, k]"),
            ))
        }
    };
    if col + cols > k {
        return Err(Error::shape(
            op,
            format!("reads rand columns {col}..{} of {k}", col + cols),
        ));
    }
    Ok((to_u32(op, "k", k)?, to_u32(op, "col", col)?))
}

/// Checks `x` `[N, C, H, W]` and `y` `[N, C, HO, WO]`; returns both dims.
fn pair_dims(
    op: &'static str,
    x: (&str, &Tensor),
    y: (&str, &Tensor),
) -> Result<([usize; 4], [usize; 4])> {
    let dx = dims4(op, x.0, x.1)?;
    let dy = dims4(op, y.0, y.1)?;
    if dx[..2] != dy[..2] {
        return Err(Error::shape(
            op,
            format!(
                "{} {:?} and {} {:?} differ in batch or channels",
                x.0,
                x.1.shape(),
                y.0,
                y.1.shape()
            ),
        ));
    }
    Ok((dx, dy))
}

/// How [`jitter_forward`] shifts each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterMode {
    /// Lucid's `jitter(d)`: a random `HO × WO` crop of the `H × W` input, offsets uniform in
    /// `[0, H-HO] × [0, W-WO]` (Lucid: `HO = H - d`).
    Crop,
    /// keras-vis's `Jitter`: roll by offsets uniform in `[-d, d]²` with wrap-around, output
    /// the input's size: `y[i, j] = x[(i - oy) mod H, (j - ox) mod W]`.
    Roll {
        /// The largest shift `d`, pixels.
        max_shift: usize,
    },
}

fn jitter_params(
    op: &'static str,
    xd: [usize; 4],
    yd: [usize; 4],
    rand: &Tensor,
    col: usize,
    mode: JitterMode,
    count: usize,
) -> Result<OptParams> {
    let (k, col) = rand_params(op, rand, xd[0], col, JITTER_COLUMNS)?;
    let (mode, pad) = match mode {
        JitterMode::Crop => {
            if yd[2] > xd[2] || yd[3] > xd[3] {
                return Err(Error::shape(
                    op,
                    format!(
                        "crop {}x{} is larger than the input {}x{}",
                        yd[2], yd[3], xd[2], xd[3]
                    ),
                ));
            }
            (0, 0)
        }
        JitterMode::Roll { max_shift } => {
            if yd != xd {
                return Err(Error::shape(
                    op,
                    format!("roll keeps the shape: input {xd:?}, output {yd:?}"),
                ));
            }
            (1, to_u32(op, "max_shift", max_shift)?)
        }
    };
    Ok(OptParams {
        ho: to_u32(op, "HO", yd[2])?,
        wo: to_u32(op, "WO", yd[3])?,
        count: to_u32(op, "threads", count)?,
        k,
        col,
        mode,
        pad,
        ..image_params(op, xd, count)?
    })
}

/// Random integer shift: `y [N, C, HO, WO]` from `x [N, C, H, W]` (see [`JitterMode`]), image
/// `n`'s offsets from `rand[n, col..col+2]` (row, column), `floor(u * span)`.
pub fn jitter_forward(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    rand: &Tensor,
    col: usize,
    mode: JitterMode,
) -> Result<Dispatch> {
    const OP: &str = "jitter_forward";
    let (xd, yd) = pair_dims(OP, ("x", x), ("y", y))?;
    let params = jitter_params(OP, xd, yd, rand, col, mode, y.numel())?;
    ctx.dispatch(
        JITTER_FORWARD,
        &params,
        &[(1, x), (7, rand), (2, y)],
        ctx.grid_1d(y.numel())?,
    )
}

/// The transpose of [`jitter_forward`] with the same `rand`: `dx (+)= Jᵀ dy` (zero where a
/// crop did not read).
pub fn jitter_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    rand: &Tensor,
    col: usize,
    mode: JitterMode,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "jitter_backward";
    let (xd, yd) = pair_dims(OP, ("dx", dx), ("dy", dy))?;
    let params = OptParams {
        accumulate: accumulate as u32,
        ..jitter_params(OP, xd, yd, rand, col, mode, dx.numel())?
    };
    ctx.dispatch(
        JITTER_BACKWARD,
        &params,
        &[(3, dy), (7, rand), (4, dx)],
        ctx.grid_1d(dx.numel())?,
    )
}

/// How [`pad_forward`] fills the border.
#[derive(Debug, Clone, PartialEq)]
pub enum PadMode {
    /// A constant per channel (one value for all, or `C` values). Lucid pads with 0.5 in
    /// [0, 1] space: pass its model-input value per channel.
    Constant(Vec<f32>),
    /// Mirror without repeating the edge (torch's `reflect`); needs `pad < H` and `pad < W`.
    Reflect,
}

fn pad_params(
    op: &'static str,
    xd: [usize; 4],
    yd: [usize; 4],
    pad: usize,
    reflect: bool,
    count: usize,
) -> Result<OptParams> {
    if yd[2] != xd[2] + 2 * pad || yd[3] != xd[3] + 2 * pad {
        return Err(Error::shape(
            op,
            format!("padded shape {yd:?} is not the input {xd:?} grown by {pad} on each side"),
        ));
    }
    if reflect && (pad >= xd[2] || pad >= xd[3]) {
        return Err(Error::shape(
            op,
            format!(
                "reflect pad {pad} needs pad < H and W ({}x{})",
                xd[2], xd[3]
            ),
        ));
    }
    Ok(OptParams {
        ho: to_u32(op, "HO", yd[2])?,
        wo: to_u32(op, "WO", yd[3])?,
        count: to_u32(op, "threads", count)?,
        pad: to_u32(op, "pad", pad)?,
        mode: reflect as u32,
        ..image_params(op, xd, count)?
    })
}

/// `y [N, C, H+2pad, W+2pad] = pad(x)`.
pub fn pad_forward(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    pad: usize,
    mode: &PadMode,
) -> Result<Dispatch> {
    const OP: &str = "pad_forward";
    let (xd, yd) = pair_dims(OP, ("x", x), ("y", y))?;
    let params = pad_params(OP, xd, yd, pad, *mode == PadMode::Reflect, y.numel())?;
    let fill = match mode {
        PadMode::Reflect => vec![0.0; xd[1]],
        PadMode::Constant(v) if v.len() == 1 => vec![v[0]; xd[1]],
        PadMode::Constant(v) if v.len() == xd[1] => v.clone(),
        PadMode::Constant(v) => {
            return Err(Error::shape(
                OP,
                format!("{} fill values for {} channels", v.len(), xd[1]),
            ))
        }
    };
    let fill = Tensor::from_slice(ctx, &[xd[1]], &fill)?;
    ctx.dispatch(
        PAD_FORWARD,
        &params,
        &[(1, x), (17, &fill), (2, y)],
        ctx.grid_1d(y.numel())?,
    )
}

/// The transpose of [`pad_forward`]: `dx (+)= Pᵀ dy` (the interior, plus under reflect the
/// mirrored border positions that read each pixel).
pub fn pad_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    pad: usize,
    mode: &PadMode,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "pad_backward";
    let (xd, yd) = pair_dims(OP, ("dx", dx), ("dy", dy))?;
    let params = OptParams {
        accumulate: accumulate as u32,
        ..pad_params(OP, xd, yd, pad, *mode == PadMode::Reflect, dx.numel())?
    };
    ctx.dispatch(
        PAD_BACKWARD,
        &params,
        &[(3, dy), (4, dx)],
        ctx.grid_1d(dx.numel())?,
    )
}

/// The ranges an affine warp draws from, per image and iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarpRange {
    /// Rotation range in degrees, `angle = lo + u (hi - lo)`; positive turns the content
    /// clockwise as displayed (rows down).
    pub angle_deg: (f32, f32),
    /// Scale range (zoom about the centre; > 1 enlarges), `s = lo + u (hi - lo)`.
    pub scale: (f32, f32),
    /// Largest translation in pixels, each axis uniform in `[-t, t]` (sub-pixel, bilinear).
    pub translate: f32,
}

impl Default for WarpRange {
    /// The identity.
    fn default() -> Self {
        WarpRange {
            angle_deg: (0.0, 0.0),
            scale: (1.0, 1.0),
            translate: 0.0,
        }
    }
}

fn warp_params(
    op: &'static str,
    xd: [usize; 4],
    yd: [usize; 4],
    rand: &Tensor,
    col: usize,
    range: &WarpRange,
    count: usize,
) -> Result<OptParams> {
    let (k, col) = rand_params(op, rand, xd[0], col, WARP_COLUMNS)?;
    for (name, v) in [
        ("angle lo", range.angle_deg.0),
        ("angle hi", range.angle_deg.1),
        ("scale lo", range.scale.0),
        ("scale hi", range.scale.1),
        ("translate", range.translate),
    ] {
        finite(op, name, v)?;
    }
    if range.scale.0 <= 0.0 || range.scale.1 <= 0.0 || range.translate < 0.0 {
        return Err(Error::shape(
            op,
            format!(
                "scales {:?} must be > 0 and translate {} >= 0",
                range.scale, range.translate
            ),
        ));
    }
    Ok(OptParams {
        ho: to_u32(op, "HO", yd[2])?,
        wo: to_u32(op, "WO", yd[3])?,
        count: to_u32(op, "threads", count)?,
        k,
        col,
        angle_lo: range.angle_deg.0.to_radians(),
        angle_hi: range.angle_deg.1.to_radians(),
        scale_lo: range.scale.0,
        scale_hi: range.scale.1,
        translate: range.translate,
        ..image_params(op, xd, count)?
    })
}

/// Random affine warp (rotation, scale, translation about the centre), bilinear with zeros
/// outside: `y [N, C, HO, WO]` from `x [N, C, H, W]`, image `n`'s parameters from
/// `rand[n, col..col+4]` = (angle, scale, row shift, column shift). Output pixel centre `q`
/// samples `src = R(-θ)(q - c_out)/s + c_in - t` (continuous coordinates, `c = size/2`).
pub fn warp_forward(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    rand: &Tensor,
    col: usize,
    range: &WarpRange,
) -> Result<Dispatch> {
    const OP: &str = "warp_forward";
    let (xd, yd) = pair_dims(OP, ("x", x), ("y", y))?;
    let params = warp_params(OP, xd, yd, rand, col, range, y.numel())?;
    ctx.dispatch(
        WARP_FORWARD,
        &params,
        &[(1, x), (7, rand), (2, y)],
        ctx.grid_1d(y.numel())?,
    )
}

/// The transpose of [`warp_forward`] with the same `rand`: `dx (+)= Wᵀ dy`, as a gather (each
/// input pixel sums the outputs whose bilinear footprint covers it; no atomics).
pub fn warp_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    rand: &Tensor,
    col: usize,
    range: &WarpRange,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "warp_backward";
    let (xd, yd) = pair_dims(OP, ("dx", dx), ("dy", dy))?;
    let params = OptParams {
        accumulate: accumulate as u32,
        ..warp_params(OP, xd, yd, rand, col, range, dx.numel())?
    };
    ctx.dispatch(
        WARP_BACKWARD,
        &params,
        &[(3, dy), (7, rand), (4, dx)],
        ctx.grid_1d(dx.numel())?,
    )
}
