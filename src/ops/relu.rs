//! ReLU forward and its backward rules: standard, guided backprop, deconvnet, and Lucid's
//! redirected gradient for activation maximization.

use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::windows;
use crate::ops::{expect_dtype, expect_shape, to_u32};

const FORWARD: Kernel = Kernel::new(Shader::Relu, "relu_forward");
const BACKWARD: Kernel = Kernel::new(Shader::Relu, "relu_backward");
const BACKWARD_GUIDED: Kernel = Kernel::new(Shader::Relu, "relu_backward_guided");
const BACKWARD_DECONV: Kernel = Kernel::new(Shader::Relu, "relu_backward_deconv");
const REDIRECT_RESET: Kernel = Kernel::new(Shader::Relu, "relu_redirect_reset");
const REDIRECT_MARK: Kernel = Kernel::new(Shader::Relu, "relu_redirect_mark");
const BACKWARD_REDIRECTED: Kernel = Kernel::new(Shader::Relu, "relu_backward_redirected");
const FORWARD_VEC4: Kernel = Kernel::new(Shader::Relu, "relu_forward_vec4");
const BACKWARD_VEC4: Kernel = Kernel::new(Shader::Relu, "relu_backward_vec4");
const BACKWARD_GUIDED_VEC4: Kernel = Kernel::new(Shader::Relu, "relu_backward_guided_vec4");
const BACKWARD_DECONV_VEC4: Kernel = Kernel::new(Shader::Relu, "relu_backward_deconv_vec4");
const FORWARD_WINDOWS: Kernel = Kernel::new(Shader::Relu, "relu_forward_windows");
const BACKWARD_WINDOWS: Kernel = Kernel::new(Shader::Relu, "relu_backward_windows");
const BACKWARD_GUIDED_WINDOWS: Kernel = Kernel::new(Shader::Relu, "relu_backward_guided_windows");
const BACKWARD_DECONV_WINDOWS: Kernel = Kernel::new(Shader::Relu, "relu_backward_deconv_windows");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    FORWARD,
    BACKWARD,
    BACKWARD_GUIDED,
    BACKWARD_DECONV,
    REDIRECT_RESET,
    REDIRECT_MARK,
    BACKWARD_REDIRECTED,
    FORWARD_VEC4,
    BACKWARD_VEC4,
    BACKWARD_GUIDED_VEC4,
    BACKWARD_DECONV_VEC4,
    FORWARD_WINDOWS,
    BACKWARD_WINDOWS,
    BACKWARD_GUIDED_WINDOWS,
    BACKWARD_DECONV_WINDOWS,
];

/// First binding of the x windows and of the dy windows.
const X_WINDOWS: u32 = 10;
const DY_WINDOWS: u32 = 17;

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
    /// Lucid's redirected gradient for activation maximization: the true gradient, except
    /// that an image whose true gradient at this ReLU is zero everywhere gets the upstream
    /// gradient where it would not push a negative input lower ([`relu_backward_redirected`]).
    Redirected,
}

/// A ReLU another kernel applies as it stores its output (prelude.wgsl's `fused_relu_grad`
/// backward), saving the ReLU's launch and a pass over the tensor.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReluEpilogue<'a> {
    /// The kernel's own output only.
    None,
    /// Forward: also writes `max(out, 0)` into the tensor given (the ReLU's output).
    Forward(&'a Tensor),
    /// Backward through the ReLU whose input is the tensor given: stores the rule applied to
    /// the kernel's gradient.
    Backward(&'a Tensor, ReluRule),
}

impl ReluEpilogue<'_> {
    /// The kernels' code (0 none, 1 forward, 2..4 [`fused_rule_code`]) and the tensor they
    /// bind for it.
    pub(crate) fn code(&self, op: &'static str) -> Result<(i32, Option<&Tensor>)> {
        Ok(match *self {
            ReluEpilogue::None => (0, None),
            ReluEpilogue::Forward(t) => (1, Some(t)),
            ReluEpilogue::Backward(t, rule) => (fused_rule_code(op, rule)?, Some(t)),
        })
    }
}

/// The code of `rule` for kernels that apply a ReLU's backward rule as they store
/// (prelude.wgsl's `fused_relu_grad`): 2 standard, 3 guided, 4 deconvnet; an error for the
/// redirected rule, whose per-image flags need launches of their own.
pub(crate) fn fused_rule_code(op: &'static str, rule: ReluRule) -> Result<i32> {
    match rule {
        ReluRule::Standard => Ok(2),
        ReluRule::Guided => Ok(3),
        ReluRule::Deconvnet => Ok(4),
        ReluRule::Redirected => Err(Error::shape(
            op,
            "the redirected ReLU rule needs per-image flags and is not fused",
        )),
    }
}

/// Mirror of `ReluParams` in relu.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ReluParams {
    n: u32,
    accumulate: u32,
    inner: u32,
    batch: u32,
    base: u32,
    windows: u32,
    _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<ReluParams>() == 32);

/// Whether a pass over `numel` elements runs the _windows kernels (see
/// [`windows::elementwise_supported`]); never when accumulating, which would cost every store
/// a load on lavapipe.
fn use_windows(ctx: &GpuContext, numel: usize, accumulate: bool) -> bool {
    !accumulate && windows::elementwise_supported(ctx, numel)
}

/// The _windows `kernel` over the operands' whole windows, then the _vec4 `tail` kernel over
/// the rest (see [`windows::elementwise_dispatch`]). `inputs`: (first window binding, vec4
/// binding, tensor); `out`: the vec4 binding both kernels write.
fn windowed(
    ctx: &GpuContext,
    kernel: Kernel,
    tail: Kernel,
    params: ReluParams,
    inputs: &[(u32, u32, &Tensor)],
    out: (u32, &Tensor),
) -> Result<Dispatch> {
    let at = |base: usize, windows: usize| ReluParams {
        base: base as u32,
        windows: windows as u32,
        ..params
    };
    windows::elementwise_dispatch(ctx, kernel, tail, at, inputs, (out.0, out.0, out.1), 4)
}

/// `y = max(x, 0)`.
pub fn relu_forward(ctx: &GpuContext, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
    expect_dtype("relu_forward", "x", x, DType::F32)?;
    expect_shape("relu_forward", "y", y, x.shape())?;
    let vec4 = x.numel().is_multiple_of(4);
    let n = if vec4 { x.numel() / 4 } else { x.numel() };
    let params = ReluParams {
        n: to_u32("relu_forward", "numel", n)?,
        ..Default::default()
    };
    if use_windows(ctx, x.numel(), false) {
        return windowed(
            ctx,
            FORWARD_WINDOWS,
            FORWARD_VEC4,
            params,
            &[(X_WINDOWS, 6, x)],
            (7, y),
        );
    }
    if vec4 {
        return ctx.dispatch(FORWARD_VEC4, &params, &[(6, x), (7, y)], ctx.grid_1d(n)?);
    }
    ctx.dispatch(FORWARD, &params, &[(1, x), (2, y)], ctx.grid_1d(n)?)
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
    // Tensors of 4k elements run 4 per thread (the _vec4 kernels, bindings 6..9).
    let vec4 = x.numel().is_multiple_of(4);
    let n = if vec4 { x.numel() / 4 } else { x.numel() };
    let params = ReluParams {
        n: to_u32("relu_backward", "numel", n)?,
        accumulate: accumulate as u32,
        ..Default::default()
    };
    if rule != ReluRule::Redirected && use_windows(ctx, x.numel(), accumulate) {
        let (kernel, tail) = match rule {
            ReluRule::Guided => (BACKWARD_GUIDED_WINDOWS, BACKWARD_GUIDED_VEC4),
            ReluRule::Deconvnet => (BACKWARD_DECONV_WINDOWS, BACKWARD_DECONV_VEC4),
            _ => (BACKWARD_WINDOWS, BACKWARD_VEC4),
        };
        let dy_only = [(DY_WINDOWS, 8, dy)];
        let both = [(X_WINDOWS, 6, x), (DY_WINDOWS, 8, dy)];
        let inputs: &[(u32, u32, &Tensor)] = if rule == ReluRule::Deconvnet {
            &dy_only
        } else {
            &both
        };
        return windowed(ctx, kernel, tail, params, inputs, (9, dx));
    }
    let grid = ctx.grid_1d(n)?;
    if vec4 {
        return match rule {
            ReluRule::Redirected => Err(Error::shape(
                "relu_backward",
                "the redirected rule needs per-image flags: use relu_backward_redirected",
            )),
            ReluRule::Standard => {
                ctx.dispatch(BACKWARD_VEC4, &params, &[(6, x), (8, dy), (9, dx)], grid)
            }
            ReluRule::Guided => ctx.dispatch(
                BACKWARD_GUIDED_VEC4,
                &params,
                &[(6, x), (8, dy), (9, dx)],
                grid,
            ),
            ReluRule::Deconvnet => {
                ctx.dispatch(BACKWARD_DECONV_VEC4, &params, &[(8, dy), (9, dx)], grid)
            }
        };
    }
    match rule {
        ReluRule::Redirected => Err(Error::shape(
            "relu_backward",
            "the redirected rule needs per-image flags: use relu_backward_redirected",
        )),
        ReluRule::Standard => ctx.dispatch(BACKWARD, &params, &[(1, x), (3, dy), (4, dx)], grid),
        ReluRule::Guided => {
            ctx.dispatch(BACKWARD_GUIDED, &params, &[(1, x), (3, dy), (4, dx)], grid)
        }
        ReluRule::Deconvnet => ctx.dispatch(BACKWARD_DECONV, &params, &[(3, dy), (4, dx)], grid),
    }
}

/// Lucid's redirected ReLU gradient (`redirected_relu_grad`): per image (the first dimension
/// of `x`), the standard gradient where it is nonzero somewhere in the image, else
/// `dy` except where `x < 0` and `dy > 0` (where descent on the loss would push the input
/// lower). `flags` is a `[N]` u32 scratch tensor (shared by every ReLU of a backward pass).
/// Three launches: reset flags, mark, select.
pub fn relu_backward_redirected(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    flags: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "relu_backward_redirected";
    expect_dtype(OP, "dy", dy, DType::F32)?;
    expect_shape(OP, "dy", dy, x.shape())?;
    expect_shape(OP, "dx", dx, x.shape())?;
    expect_dtype(OP, "flags", flags, DType::U32)?;
    let batch = x.shape().first().copied().unwrap_or(0);
    expect_shape(OP, "flags", flags, &[batch])?;
    if batch == 0 || x.numel() == 0 {
        return Err(Error::shape(OP, "x is empty"));
    }
    let params = ReluParams {
        n: to_u32(OP, "numel", x.numel())?,
        accumulate: accumulate as u32,
        inner: to_u32(OP, "elements per image", x.numel() / batch)?,
        batch: to_u32(OP, "N", batch)?,
        ..Default::default()
    };
    let grid = ctx.grid_1d(x.numel())?;
    Ok(vec![
        ctx.dispatch(REDIRECT_RESET, &params, &[(5, flags)], ctx.grid_1d(batch)?)?,
        ctx.dispatch(REDIRECT_MARK, &params, &[(1, x), (3, dy), (5, flags)], grid)?,
        ctx.dispatch(
            BACKWARD_REDIRECTED,
            &params,
            &[(1, x), (3, dy), (5, flags), (4, dx)],
            grid,
        )?,
    ])
}
