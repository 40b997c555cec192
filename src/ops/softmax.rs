//! Softmax and log-softmax over the last axis (`[N, K]`, or any shape with `K` its last
//! dimension), numerically stable; the backward rules read the saved forward OUTPUT.

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::{expect_dtype, expect_shape, to_u32};

const SOFTMAX_FORWARD: Kernel = Kernel::new(Shader::Softmax, "softmax_forward");
const LOG_SOFTMAX_FORWARD: Kernel = Kernel::new(Shader::Softmax, "log_softmax_forward");
const SOFTMAX_BACKWARD: Kernel = Kernel::new(Shader::Softmax, "softmax_backward");
const LOG_SOFTMAX_BACKWARD: Kernel = Kernel::new(Shader::Softmax, "log_softmax_backward");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    SOFTMAX_FORWARD,
    LOG_SOFTMAX_FORWARD,
    SOFTMAX_BACKWARD,
    LOG_SOFTMAX_BACKWARD,
];

/// Mirror of `SoftmaxParams` in softmax.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxParams {
    rows: u32,
    k: u32,
    accumulate: u32,
    _pad: u32,
}
const _: () = assert!(std::mem::size_of::<SoftmaxParams>() == 16);

/// Params and grid (one workgroup per row) for rows of `t`'s last axis.
fn rows_of(
    ctx: &GpuContext,
    op: &'static str,
    name: &str,
    t: &Tensor,
    accumulate: bool,
) -> Result<(SoftmaxParams, [u32; 3])> {
    expect_dtype(op, name, t, DType::F32)?;
    let Some(&k) = t.shape().last() else {
        return Err(Error::shape(
            op,
            format!("{name} has shape [], expected at least one axis"),
        ));
    };
    if k == 0 {
        return Err(Error::shape(
            op,
            format!("{name} has shape {:?}: empty last axis", t.shape()),
        ));
    }
    let rows = t.numel() / k;
    // Each thread's row walk reaches (rows - 1) * K + K + WG in u32.
    to_u32(op, "numel + 256", t.numel().saturating_add(256))?;
    let params = SoftmaxParams {
        rows: to_u32(op, "rows", rows)?,
        k: to_u32(op, "K", k)?,
        accumulate: accumulate as u32,
        _pad: 0,
    };
    let grid = grid_for(rows, 1, ctx.limits().max_compute_workgroups_per_dimension)?;
    Ok((params, grid))
}

fn forward(
    ctx: &GpuContext,
    op: &'static str,
    kernel: Kernel,
    y: &Tensor,
    x: &Tensor,
) -> Result<Dispatch> {
    let (params, grid) = rows_of(ctx, op, "x", x, false)?;
    expect_dtype(op, "y", y, DType::F32)?;
    expect_shape(op, "y", y, x.shape())?;
    ctx.dispatch(kernel, &params, &[(1, x), (2, y)], grid)
}

fn backward(
    ctx: &GpuContext,
    op: &'static str,
    kernel: Kernel,
    dx: &Tensor,
    dy: &Tensor,
    y: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    let (params, grid) = rows_of(ctx, op, "y", y, accumulate)?;
    for (name, t) in [("dy", dy), ("dx", dx)] {
        expect_dtype(op, name, t, DType::F32)?;
        expect_shape(op, name, t, y.shape())?;
    }
    ctx.dispatch(kernel, &params, &[(3, y), (4, dy), (5, dx)], grid)
}

/// `y = softmax(x)` over the last axis (the row max is subtracted first).
pub fn softmax_forward(ctx: &GpuContext, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
    forward(ctx, "softmax_forward", SOFTMAX_FORWARD, y, x)
}

/// `y = log_softmax(x) = x - max - log Σ exp(x - max)` over the last axis.
pub fn log_softmax_forward(ctx: &GpuContext, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
    forward(ctx, "log_softmax_forward", LOG_SOFTMAX_FORWARD, y, x)
}

/// Gradient of softmax from its saved output `y`: `dx = y ⊙ (dy − Σ dy ⊙ y)` per row.
pub fn softmax_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    y: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    backward(
        ctx,
        "softmax_backward",
        SOFTMAX_BACKWARD,
        dx,
        dy,
        y,
        accumulate,
    )
}

/// Gradient of log-softmax from its saved output `y`: `dx = dy − exp(y) Σ dy` per row.
pub fn log_softmax_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    y: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    backward(
        ctx,
        "log_softmax_backward",
        LOG_SOFTMAX_BACKWARD,
        dx,
        dy,
        y,
        accumulate,
    )
}
