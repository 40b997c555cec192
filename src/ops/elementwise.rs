//! Elementwise ops and their backward rules: residual add, scale / add-scalar / axpy, clamp,
//! and inference-mode batch norm folded to a per-channel affine.
//!
//! Backward of `y = alpha * x` is `dx = alpha * dy`: call [`scale`] on the gradients, or
//! [`axpy`] (`dx += alpha * dy`) to accumulate. The backward of [`add_scalar`] is the identity:
//! [`add_backward`].

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor, WG};
use crate::ops::windows;
use crate::ops::{expect_dtype, expect_shape, to_u32};

const ADD_FORWARD: Kernel = Kernel::new(Shader::Elementwise, "add_forward");
const ADD_BACKWARD: Kernel = Kernel::new(Shader::Elementwise, "add_backward");
const ADD_FORWARD_WINDOWS: Kernel = Kernel::new(Shader::Elementwise, "add_forward_windows");
const ADD_BACKWARD_WINDOWS: Kernel = Kernel::new(Shader::Elementwise, "add_backward_windows");
const ADD_BACKWARD_ACC_WINDOWS: Kernel =
    Kernel::new(Shader::Elementwise, "add_backward_acc_windows");
const AFFINE: Kernel = Kernel::new(Shader::Elementwise, "affine_forward");
const AXPY: Kernel = Kernel::new(Shader::Elementwise, "axpy");
const CLAMP_FORWARD: Kernel = Kernel::new(Shader::Elementwise, "clamp_forward");
const CLAMP_BACKWARD: Kernel = Kernel::new(Shader::Elementwise, "clamp_backward");
const BN_FORWARD: Kernel = Kernel::new(Shader::Elementwise, "batchnorm_affine_forward");
const BN_BACKWARD_INPUT: Kernel =
    Kernel::new(Shader::Elementwise, "batchnorm_affine_backward_input");
const BN_BACKWARD_PARAMS: Kernel =
    Kernel::new(Shader::Elementwise, "batchnorm_affine_backward_params");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    ADD_FORWARD,
    ADD_BACKWARD,
    ADD_FORWARD_WINDOWS,
    ADD_BACKWARD_WINDOWS,
    ADD_BACKWARD_ACC_WINDOWS,
    AFFINE,
    AXPY,
    CLAMP_FORWARD,
    CLAMP_BACKWARD,
    BN_FORWARD,
    BN_BACKWARD_INPUT,
    BN_BACKWARD_PARAMS,
];

/// Mirror of `EwParams` in elementwise.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct EwParams {
    n: u32,
    accumulate: u32,
    channels: u32,
    inner: u32,
    alpha: f32,
    beta: f32,
    lo: f32,
    hi: f32,
    batch: u32,
    base: u32,
    windows: u32,
    _pad: u32,
}
const _: () = assert!(std::mem::size_of::<EwParams>() == 48);

/// Params for a flat kernel over `t`'s elements.
fn flat(op: &'static str, t: &Tensor) -> Result<EwParams> {
    Ok(EwParams {
        n: to_u32(op, "numel", t.numel())?,
        ..Default::default()
    })
}

/// Checks that every tensor is f32 with `shape`.
fn same_f32(op: &'static str, shape: &[usize], tensors: &[(&str, &Tensor)]) -> Result<()> {
    for (name, t) in tensors {
        expect_dtype(op, name, t, DType::F32)?;
        expect_shape(op, name, t, shape)?;
    }
    Ok(())
}

/// `y = a + b` (a residual connection), all of one shape.
pub fn add_forward(ctx: &GpuContext, y: &Tensor, a: &Tensor, b: &Tensor) -> Result<Dispatch> {
    const OP: &str = "add_forward";
    same_f32(OP, a.shape(), &[("a", a), ("b", b), ("y", y)])?;
    let params = flat(OP, a)?;
    if windows::elementwise_supported(ctx, a.numel()) {
        return add_windowed(
            ctx,
            ADD_FORWARD_WINDOWS,
            ADD_FORWARD,
            params,
            &[(11, 1, a), (18, 2, b)],
            (25, 3, y),
        );
    }
    ctx.dispatch(
        ADD_FORWARD,
        &params,
        &[(1, a), (2, b), (3, y)],
        ctx.grid_1d(a.numel())?,
    )
}

/// An add `_windows` kernel over the operands' whole windows, then the scalar `tail` kernel
/// over the rest (see [`windows::elementwise_dispatch`]). `inputs`: (first window binding,
/// storage binding, tensor); `out`: (vec4 binding, storage binding, tensor).
fn add_windowed(
    ctx: &GpuContext,
    kernel: Kernel,
    tail: Kernel,
    params: EwParams,
    inputs: &[(u32, u32, &Tensor)],
    out: (u32, u32, &Tensor),
) -> Result<Dispatch> {
    let at = |base: usize, windows: usize| EwParams {
        base: base as u32,
        windows: windows as u32,
        ..params
    };
    windows::elementwise_dispatch(ctx, kernel, tail, at, inputs, out, 1)
}

/// Gradient of `y = a + b` to one addend: `dx = dy` (or `dx += dy` with `accumulate`). Call it
/// once per input.
pub fn add_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "add_backward";
    same_f32(OP, dy.shape(), &[("dy", dy), ("dx", dx)])?;
    let params = EwParams {
        accumulate: accumulate as u32,
        ..flat(OP, dy)?
    };
    if windows::elementwise_supported(ctx, dy.numel()) {
        let kernel = if accumulate {
            ADD_BACKWARD_ACC_WINDOWS
        } else {
            ADD_BACKWARD_WINDOWS
        };
        return add_windowed(
            ctx,
            kernel,
            ADD_BACKWARD,
            params,
            &[(11, 5, dy)],
            (26, 6, dx),
        );
    }
    ctx.dispatch(
        ADD_BACKWARD,
        &params,
        &[(5, dy), (6, dx)],
        ctx.grid_1d(dy.numel())?,
    )
}

fn affine(
    op: &'static str,
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    alpha: f32,
    beta: f32,
) -> Result<Dispatch> {
    same_f32(op, x.shape(), &[("x", x), ("y", y)])?;
    let params = EwParams {
        alpha,
        beta,
        ..flat(op, x)?
    };
    ctx.dispatch(AFFINE, &params, &[(4, x), (3, y)], ctx.grid_1d(x.numel())?)
}

/// `y = alpha * x`. Also its own backward: `dx = alpha * dy` is `scale(ctx, dx, dy, alpha)`.
pub fn scale(ctx: &GpuContext, y: &Tensor, x: &Tensor, alpha: f32) -> Result<Dispatch> {
    affine("scale", ctx, y, x, alpha, 0.0)
}

/// `y = x + c`; its backward is [`add_backward`].
pub fn add_scalar(ctx: &GpuContext, y: &Tensor, x: &Tensor, c: f32) -> Result<Dispatch> {
    affine("add_scalar", ctx, y, x, 1.0, c)
}

/// `y += alpha * x` (BLAS axpy); `y` and `x` must be distinct tensors of one shape.
pub fn axpy(ctx: &GpuContext, y: &Tensor, x: &Tensor, alpha: f32) -> Result<Dispatch> {
    const OP: &str = "axpy";
    same_f32(OP, x.shape(), &[("x", x), ("y", y)])?;
    let params = EwParams {
        alpha,
        ..flat(OP, x)?
    };
    ctx.dispatch(AXPY, &params, &[(4, x), (3, y)], ctx.grid_1d(x.numel())?)
}

fn check_bounds(op: &'static str, lo: f32, hi: f32) -> Result<()> {
    if lo.is_nan() || hi.is_nan() {
        return Err(Error::shape(
            op,
            format!("clamp bounds must not be NaN (lo {lo}, hi {hi})"),
        ));
    }
    Ok(())
}

/// `y = min(max(x, lo), hi)` as torch.clamp (all `hi` when `lo > hi`); infinite bounds give a
/// one-sided clamp.
pub fn clamp_forward(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    lo: f32,
    hi: f32,
) -> Result<Dispatch> {
    const OP: &str = "clamp_forward";
    check_bounds(OP, lo, hi)?;
    same_f32(OP, x.shape(), &[("x", x), ("y", y)])?;
    let params = EwParams {
        lo,
        hi,
        ..flat(OP, x)?
    };
    ctx.dispatch(
        CLAMP_FORWARD,
        &params,
        &[(4, x), (3, y)],
        ctx.grid_1d(x.numel())?,
    )
}

/// Gradient of [`clamp_forward`]: `dy` where `lo <= x <= hi`, else 0 (torch.clamp's mask);
/// `x` is the forward input.
pub fn clamp_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    lo: f32,
    hi: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "clamp_backward";
    check_bounds(OP, lo, hi)?;
    same_f32(OP, x.shape(), &[("x", x), ("dy", dy), ("dx", dx)])?;
    let params = EwParams {
        lo,
        hi,
        accumulate: accumulate as u32,
        ..flat(OP, x)?
    };
    ctx.dispatch(
        CLAMP_BACKWARD,
        &params,
        &[(4, x), (5, dy), (6, dx)],
        ctx.grid_1d(x.numel())?,
    )
}

/// Folds inference-mode batch norm into `y = x * scale + shift`: `scale = gamma / sqrt(var +
/// eps)`, `shift = beta - mean * scale`, computed in f64. All inputs have one value per
/// channel; `var + eps` must be positive.
pub fn batchnorm_to_affine(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Result<(Vec<f32>, Vec<f32>)> {
    const OP: &str = "batchnorm_to_affine";
    let c = gamma.len();
    if beta.len() != c || mean.len() != c || var.len() != c {
        return Err(Error::shape(
            OP,
            format!(
                "gamma, beta, mean, var have lengths {c}, {}, {}, {}; expected all equal",
                beta.len(),
                mean.len(),
                var.len()
            ),
        ));
    }
    let mut scale = Vec::with_capacity(c);
    let mut shift = Vec::with_capacity(c);
    for i in 0..c {
        let denom = var[i] as f64 + eps as f64;
        if denom.is_nan() || denom <= 0.0 {
            return Err(Error::shape(
                OP,
                format!("channel {i}: var + eps = {denom}, expected > 0"),
            ));
        }
        let s = gamma[i] as f64 / denom.sqrt();
        scale.push(s as f32);
        shift.push((beta[i] as f64 - mean[i] as f64 * s) as f32);
    }
    Ok((scale, shift))
}

/// `(N, C, H*W)` of an NCHW (or `[N, C]`, `[N, C, L]`) tensor.
fn channel_dims(op: &'static str, name: &str, t: &Tensor) -> Result<(usize, usize, usize)> {
    expect_dtype(op, name, t, DType::F32)?;
    let s = t.shape();
    if s.len() < 2 {
        return Err(Error::shape(
            op,
            format!("{name} has shape {s:?}, expected [N, C, ...] (rank >= 2)"),
        ));
    }
    Ok((s[0], s[1], s[2..].iter().product()))
}

fn channel_params(
    op: &'static str,
    t: &Tensor,
    (n, c, inner): (usize, usize, usize),
    accumulate: bool,
) -> Result<EwParams> {
    Ok(EwParams {
        accumulate: accumulate as u32,
        channels: to_u32(op, "C", c)?,
        inner: to_u32(op, "H*W", inner)?,
        batch: to_u32(op, "N", n)?,
        ..flat(op, t)?
    })
}

/// `y = x * scale[c] + shift[c]` on NCHW `x` (inference-mode batch norm, see
/// [`batchnorm_to_affine`]); scale and shift are `[C]`.
pub fn batchnorm_affine_forward(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "batchnorm_affine_forward";
    let dims = channel_dims(OP, "x", x)?;
    same_f32(OP, &[dims.1], &[("scale", scale), ("shift", shift)])?;
    same_f32(OP, x.shape(), &[("y", y)])?;
    let params = channel_params(OP, x, dims, false)?;
    ctx.dispatch(
        BN_FORWARD,
        &params,
        &[(4, x), (7, scale), (8, shift), (3, y)],
        ctx.grid_1d(x.numel())?,
    )
}

/// Gradient of [`batchnorm_affine_forward`] to its input: `dx = dy * scale[c]`.
pub fn batchnorm_affine_backward_input(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    scale: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "batchnorm_affine_backward_input";
    let dims = channel_dims(OP, "dy", dy)?;
    same_f32(OP, &[dims.1], &[("scale", scale)])?;
    same_f32(OP, dy.shape(), &[("dx", dx)])?;
    let params = channel_params(OP, dy, dims, accumulate)?;
    ctx.dispatch(
        BN_BACKWARD_INPUT,
        &params,
        &[(5, dy), (7, scale), (6, dx)],
        ctx.grid_1d(dy.numel())?,
    )
}

/// Gradients of [`batchnorm_affine_forward`] to its parameters: `dscale[c] = Σ dy * x`,
/// `dshift[c] = Σ dy` over N, H, W; `x` is the forward input. One workgroup per channel.
pub fn batchnorm_affine_backward_params(
    ctx: &GpuContext,
    dscale: &Tensor,
    dshift: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "batchnorm_affine_backward_params";
    let dims = channel_dims(OP, "x", x)?;
    same_f32(OP, x.shape(), &[("dy", dy)])?;
    same_f32(OP, &[dims.1], &[("dscale", dscale), ("dshift", dshift)])?;
    let params = channel_params(OP, x, dims, accumulate)?;
    // The kernel's per-channel loop counter runs in u32 up to N*H*W + WG.
    to_u32(OP, "numel + WG", x.numel().saturating_add(WG as usize))?;
    let grid = grid_for(dims.1, 1, ctx.limits().max_compute_workgroups_per_dimension)?;
    ctx.dispatch(
        BN_BACKWARD_PARAMS,
        &params,
        &[(4, x), (5, dy), (9, dscale), (10, dshift)],
        grid,
    )
}
