//! ReLU forward and its backward rules: standard, guided backprop, deconvnet.

use crate::error::Result;
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::{expect_dtype, expect_shape, to_u32};

const FORWARD: Kernel = Kernel::new(Shader::Relu, "relu_forward");
const BACKWARD: Kernel = Kernel::new(Shader::Relu, "relu_backward");
const BACKWARD_GUIDED: Kernel = Kernel::new(Shader::Relu, "relu_backward_guided");
const BACKWARD_DECONV: Kernel = Kernel::new(Shader::Relu, "relu_backward_deconv");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[FORWARD, BACKWARD, BACKWARD_GUIDED, BACKWARD_DECONV];

/// Which rule carries a gradient back through a ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReluRule {
    /// The true gradient: pass where the input was positive.
    #[default]
    Standard,
    /// Guided backprop (Springenberg et al. 2015): input positive AND gradient positive.
    Guided,
    /// Deconvnet (Zeiler & Fergus 2014): gradient positive, input ignored.
    Deconvnet,
}

/// Mirror of `ReluParams` in relu.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReluParams {
    n: u32,
    accumulate: u32,
    _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<ReluParams>() == 16);

/// `y = max(x, 0)`.
pub fn relu_forward(ctx: &GpuContext, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
    expect_dtype("relu_forward", "x", x, DType::F32)?;
    expect_shape("relu_forward", "y", y, x.shape())?;
    let params = ReluParams {
        n: to_u32("relu_forward", "numel", x.numel())?,
        accumulate: 0,
        _pad: [0; 2],
    };
    ctx.dispatch(FORWARD, &params, &[(1, x), (2, y)], ctx.grid_1d(x.numel())?)
}

/// Gradient to the input of a ReLU under `rule`; `x` is the forward input. With `accumulate`
/// the result is added to `dx`.
pub fn relu_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    rule: ReluRule,
    accumulate: bool,
) -> Result<Dispatch> {
    expect_dtype("relu_backward", "dy", dy, DType::F32)?;
    expect_shape("relu_backward", "dy", dy, x.shape())?;
    expect_shape("relu_backward", "dx", dx, x.shape())?;
    let params = ReluParams {
        n: to_u32("relu_backward", "numel", x.numel())?,
        accumulate: accumulate as u32,
        _pad: [0; 2],
    };
    let grid = ctx.grid_1d(x.numel())?;
    match rule {
        ReluRule::Standard => ctx.dispatch(BACKWARD, &params, &[(1, x), (3, dy), (4, dx)], grid),
        ReluRule::Guided => {
            ctx.dispatch(BACKWARD_GUIDED, &params, &[(1, x), (3, dy), (4, dx)], grid)
        }
        ReluRule::Deconvnet => ctx.dispatch(BACKWARD_DECONV, &params, &[(3, dy), (4, dx)], grid),
    }
}
