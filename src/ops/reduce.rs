//! Per-channel spatial reductions of NCHW tensors (sum, mean, max with argmax) over each
//! H*W plane, giving [N, C], and their backward passes. Global average pooling for grad-CAM
//! weights and channel-activation objectives use these.

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::{expect_dtype, expect_rank, expect_shape, to_u32};

const SUM_FORWARD: Kernel = Kernel::new(Shader::Reduce, "spatial_sum_forward");
const MAX_FORWARD: Kernel = Kernel::new(Shader::Reduce, "spatial_max_forward");
const SUM_BACKWARD: Kernel = Kernel::new(Shader::Reduce, "spatial_sum_backward");
const MAX_BACKWARD: Kernel = Kernel::new(Shader::Reduce, "spatial_max_backward");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[SUM_FORWARD, MAX_FORWARD, SUM_BACKWARD, MAX_BACKWARD];

/// Which reduction runs over each (n, c) plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpatialReduce {
    /// Sum over H*W.
    Sum,
    /// Mean over H*W (global average pooling).
    Mean,
    /// Maximum over H*W, with the flat offset h*W + w of its first occurrence; NaN propagates.
    Max,
}

/// Mirror of `ReduceParams` in reduce.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    planes: u32,
    plane_size: u32,
    numel: u32,
    accumulate: u32,
    divisor: f32,
    _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<ReduceParams>() == 32);

/// Checks `t` is `[n, c]` and returns its plane count.
fn planes_of(op: &'static str, name: &str, t: &Tensor, n: usize, c: usize) -> Result<usize> {
    expect_shape(op, name, t, &[n, c])?;
    Ok(n * c)
}

/// The argmax tensor a Max reduction needs: present, u32, `[n, c]`.
fn require_argmax<'a>(
    op: &'static str,
    argmax: Option<&'a Tensor>,
    n: usize,
    c: usize,
) -> Result<&'a Tensor> {
    let a = argmax.ok_or_else(|| {
        Error::shape(
            op,
            format!(
                "SpatialReduce::Max needs an argmax tensor of shape [{n}, {c}] (U32), got None"
            ),
        )
    })?;
    expect_dtype(op, "argmax", a, DType::U32)?;
    expect_shape(op, "argmax", a, &[n, c])?;
    Ok(a)
}

/// Builds the params shared by forward and backward, refusing empty planes.
fn params(
    op: &'static str,
    shape: &[usize],
    reduce: SpatialReduce,
    accumulate: bool,
) -> Result<ReduceParams> {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    if n * c == 0 || h * w == 0 {
        return Err(Error::shape(
            op,
            format!("cannot reduce an empty tensor of shape {shape:?}"),
        ));
    }
    let plane_size = to_u32(op, "H*W", h * w)?;
    Ok(ReduceParams {
        planes: to_u32(op, "N*C", n * c)?,
        plane_size,
        numel: to_u32(op, "N*C*H*W", n * c * h * w)?,
        accumulate: accumulate as u32,
        divisor: match reduce {
            SpatialReduce::Mean => plane_size as f32,
            SpatialReduce::Sum | SpatialReduce::Max => 1.0,
        },
        _pad: [0; 3],
    })
}

/// `y[n, c] = reduce(x[n, c, :, :])` for `x` of shape [N, C, H, W] and `y` of shape [N, C].
/// `Max` also writes the flat offset `h*W + w` of the first maximum (of the first NaN, if any)
/// into `argmax` (U32, [N, C]), which it requires; `Sum` and `Mean` ignore `argmax`.
pub fn spatial_reduce_forward(
    ctx: &GpuContext,
    y: &Tensor,
    argmax: Option<&Tensor>,
    x: &Tensor,
    op: SpatialReduce,
) -> Result<Dispatch> {
    const OP: &str = "spatial_reduce_forward";
    expect_dtype(OP, "x", x, DType::F32)?;
    let shape = expect_rank(OP, "x", x, 4)?;
    let (n, c) = (shape[0], shape[1]);
    expect_dtype(OP, "y", y, DType::F32)?;
    let planes = planes_of(OP, "y", y, n, c)?;
    let p = params(OP, shape, op, false)?;
    let grid = grid_for(planes, 1, ctx.limits().max_compute_workgroups_per_dimension)?;
    match op {
        SpatialReduce::Sum | SpatialReduce::Mean => {
            ctx.dispatch(SUM_FORWARD, &p, &[(1, x), (2, y)], grid)
        }
        SpatialReduce::Max => {
            let a = require_argmax(OP, argmax, n, c)?;
            ctx.dispatch(MAX_FORWARD, &p, &[(1, x), (2, y), (3, a)], grid)
        }
    }
}

/// Gradient to the input of a spatial reduction: `dx` ([N, C, H, W], which gives H and W)
/// from `dy` ([N, C]). Sum broadcasts `dy` over the plane, Mean broadcasts `dy / (H*W)`, Max
/// routes `dy` to the saved `argmax` (required) and 0 elsewhere. With `accumulate` the result
/// is added to `dx`.
pub fn spatial_reduce_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    argmax: Option<&Tensor>,
    op: SpatialReduce,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "spatial_reduce_backward";
    expect_dtype(OP, "dx", dx, DType::F32)?;
    let shape = expect_rank(OP, "dx", dx, 4)?;
    let (n, c) = (shape[0], shape[1]);
    expect_dtype(OP, "dy", dy, DType::F32)?;
    planes_of(OP, "dy", dy, n, c)?;
    let p = params(OP, shape, op, accumulate)?;
    let grid = ctx.grid_1d(dx.numel())?;
    match op {
        SpatialReduce::Sum | SpatialReduce::Mean => {
            ctx.dispatch(SUM_BACKWARD, &p, &[(4, dy), (5, dx)], grid)
        }
        SpatialReduce::Max => {
            let a = require_argmax(OP, argmax, n, c)?;
            ctx.dispatch(MAX_BACKWARD, &p, &[(3, a), (4, dy), (5, dx)], grid)
        }
    }
}
