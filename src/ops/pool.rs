//! Pooling: max (with argmax), average, adaptive average and global average, each forward
//! beside its backward, with PyTorch's semantics (output sizes, ceil mode, padding, divisors,
//! tie-breaking). Backward passes are gathers (no atomics) and honour `accumulate`.

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::relu::{fused_rule_code, ReluRule};
use crate::ops::{expect_dtype, expect_rank, expect_shape, to_u32};

const MAX_FORWARD: Kernel = Kernel::new(Shader::Pool, "maxpool2d_forward");
const MAX_BACKWARD: Kernel = Kernel::new(Shader::Pool, "maxpool2d_backward");
const MAX_FORWARD_2X2: Kernel = Kernel::new(Shader::Pool, "maxpool2d_forward_2x2");
const MAX_BACKWARD_2X2: Kernel = Kernel::new(Shader::Pool, "maxpool2d_backward_2x2");
const MAX_BACKWARD_3X3S2: Kernel = Kernel::new(Shader::Pool, "maxpool2d_backward_3x3s2");
const AVG_FORWARD: Kernel = Kernel::new(Shader::Pool, "avgpool2d_forward");
const AVG_BACKWARD: Kernel = Kernel::new(Shader::Pool, "avgpool2d_backward");
const ADAPTIVE_FORWARD: Kernel = Kernel::new(Shader::Pool, "adaptive_avgpool2d_forward");
const ADAPTIVE_BACKWARD: Kernel = Kernel::new(Shader::Pool, "adaptive_avgpool2d_backward");
const GLOBAL_FORWARD_SERIAL: Kernel = Kernel::new(Shader::Pool, "global_avgpool_forward_serial");
const GLOBAL_FORWARD_WORKGROUP: Kernel =
    Kernel::new(Shader::Pool, "global_avgpool_forward_workgroup");
const GLOBAL_BACKWARD: Kernel = Kernel::new(Shader::Pool, "global_avgpool_backward");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    MAX_FORWARD,
    MAX_BACKWARD,
    MAX_FORWARD_2X2,
    MAX_BACKWARD_2X2,
    MAX_BACKWARD_3X3S2,
    AVG_FORWARD,
    AVG_BACKWARD,
    ADAPTIVE_FORWARD,
    ADAPTIVE_BACKWARD,
    GLOBAL_FORWARD_SERIAL,
    GLOBAL_FORWARD_WORKGROUP,
    GLOBAL_BACKWARD,
];

/// Planes up to this many elements are summed by one thread each in the global average pool;
/// larger ones get a workgroup each (a tree reduction's barriers only pay off on long planes).
const GLOBAL_SERIAL_MAX_PLANE: usize = 512;

/// Geometry of `torch.nn.MaxPool2d`; `[h, w]` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2dConfig {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows (PyTorch's default: the kernel size).
    pub stride: [usize; 2],
    /// Implicit -inf padding on each side; at most half the kernel, as PyTorch requires.
    pub padding: [usize; 2],
    /// Spacing between window taps (1 = dense window).
    pub dilation: [usize; 2],
    /// Round the output size up, as PyTorch's `ceil_mode`.
    pub ceil_mode: bool,
}

impl MaxPool2dConfig {
    /// A `kernel` window with stride = kernel, no padding, no dilation, floor mode.
    pub fn new(kernel: [usize; 2]) -> Self {
        MaxPool2dConfig {
            kernel,
            stride: kernel,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
        }
    }

    /// Sets the stride.
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding.
    pub fn with_padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the dilation.
    pub fn with_dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }

    /// Sets ceil mode.
    pub fn with_ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
}

/// Geometry of `torch.nn.AvgPool2d` (no `divisor_override`); `[h, w]` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgPool2dConfig {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows (PyTorch's default: the kernel size).
    pub stride: [usize; 2],
    /// Implicit zero padding on each side; at most half the kernel, as PyTorch requires.
    pub padding: [usize; 2],
    /// Round the output size up, as PyTorch's `ceil_mode`.
    pub ceil_mode: bool,
    /// Count padded cells in the divisor (PyTorch's default: true).
    pub count_include_pad: bool,
}

impl AvgPool2dConfig {
    /// A `kernel` window with stride = kernel, no padding, floor mode, count_include_pad.
    pub fn new(kernel: [usize; 2]) -> Self {
        AvgPool2dConfig {
            kernel,
            stride: kernel,
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Sets the stride.
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding.
    pub fn with_padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }

    /// Sets ceil mode.
    pub fn with_ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// Sets whether padded cells count in the divisor.
    pub fn with_count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }
}

/// Mirror of `PoolParams` in pool.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct PoolParams {
    n: u32,
    planes: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    s_h: u32,
    s_w: u32,
    p_h: u32,
    p_w: u32,
    d_h: u32,
    d_w: u32,
    count_include_pad: u32,
    accumulate: u32,
    relu: u32,
    _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<PoolParams>() == 80);

/// Kernel arithmetic on window coordinates is signed 32-bit.
const I32_LIMIT: usize = i32::MAX as usize;

/// One spatial axis of a windowed pool, already validated.
#[derive(Debug, Clone, Copy)]
struct Axis {
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
}

/// PyTorch's `pooling_output_shape` plus the checks of `pool2d_shape_check`.
fn pool_out_size(
    op: &'static str,
    axis_name: &str,
    input: usize,
    a: Axis,
    ceil_mode: bool,
) -> Result<usize> {
    if a.kernel == 0 || a.stride == 0 || a.dilation == 0 {
        return Err(Error::shape(
            op,
            format!(
                "{axis_name}: kernel {}, stride {} and dilation {} must all be positive",
                a.kernel, a.stride, a.dilation
            ),
        ));
    }
    if a.padding > a.kernel / 2 {
        return Err(Error::shape(
            op,
            format!(
                "{axis_name}: padding {} exceeds half the kernel size {} (PyTorch requires pad <= kernel/2)",
                a.padding, a.kernel
            ),
        ));
    }
    // Window coordinates must stay within the kernels' i32 arithmetic.
    let span = a
        .kernel
        .checked_sub(1)
        .and_then(|k| k.checked_mul(a.dilation))
        .and_then(|e| e.checked_add(input))
        .and_then(|e| e.checked_add(2 * a.padding))
        .and_then(|e| e.checked_add(a.stride));
    if span.is_none_or(|s| s > I32_LIMIT) {
        return Err(Error::shape(
            op,
            format!("{axis_name}: input {input} with kernel {a:?} exceeds the kernels' i32 range"),
        ));
    }
    let (input, k, s, p, d) = (
        input as i64,
        a.kernel as i64,
        a.stride as i64,
        a.padding as i64,
        a.dilation as i64,
    );
    let numerator = input + 2 * p - d * (k - 1) - 1 + if ceil_mode { s - 1 } else { 0 };
    let mut out = numerator.div_euclid(s) + 1;
    // PyTorch: in ceil mode the last window must start inside the input or the left padding.
    if ceil_mode && (out - 1) * s >= input + p {
        out -= 1;
    }
    if out < 1 {
        return Err(Error::shape(
            op,
            format!(
                "{axis_name}: input size {input} with kernel {k}, stride {s}, padding {p}, dilation {d} gives output size {out}; it must be at least 1"
            ),
        ));
    }
    Ok(out as usize)
}

fn input_shape4(op: &'static str, name: &str, x: &[usize]) -> Result<[usize; 4]> {
    let numel = x.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match x {
        &[n, c, h, w] if numel.is_some_and(|v| v > 0) => Ok([n, c, h, w]),
        _ => Err(Error::shape(
            op,
            format!("{name} has shape {x:?}, expected a non-empty [N, C, H, W]"),
        )),
    }
}

/// Output shape `[N, C, OH, OW]` of a max pool over an input of shape `x`, or Err where
/// PyTorch would refuse (padding over half the kernel, output smaller than 1).
pub fn maxpool2d_output_shape(x: &[usize], cfg: &MaxPool2dConfig) -> Result<[usize; 4]> {
    let [n, c, h, w] = input_shape4("maxpool2d", "x", x)?;
    let axis = |i: usize| Axis {
        kernel: cfg.kernel[i],
        stride: cfg.stride[i],
        padding: cfg.padding[i],
        dilation: cfg.dilation[i],
    };
    let oh = pool_out_size("maxpool2d", "height", h, axis(0), cfg.ceil_mode)?;
    let ow = pool_out_size("maxpool2d", "width", w, axis(1), cfg.ceil_mode)?;
    Ok([n, c, oh, ow])
}

/// Output shape `[N, C, OH, OW]` of an average pool over an input of shape `x`, or Err where
/// PyTorch would refuse.
pub fn avgpool2d_output_shape(x: &[usize], cfg: &AvgPool2dConfig) -> Result<[usize; 4]> {
    let [n, c, h, w] = input_shape4("avgpool2d", "x", x)?;
    let axis = |i: usize| Axis {
        kernel: cfg.kernel[i],
        stride: cfg.stride[i],
        padding: cfg.padding[i],
        dilation: 1,
    };
    let oh = pool_out_size("avgpool2d", "height", h, axis(0), cfg.ceil_mode)?;
    let ow = pool_out_size("avgpool2d", "width", w, axis(1), cfg.ceil_mode)?;
    Ok([n, c, oh, ow])
}

/// Shape-derived uniform fields common to every pool kernel.
fn base_params(
    op: &'static str,
    input: [usize; 4],
    output: [usize; 4],
    threads: usize,
) -> Result<PoolParams> {
    let [n, c, h, w] = input;
    let [_, _, oh, ow] = output;
    // Flat in-plane indices (argmax, h*W + w) are i32 in the kernels.
    if h.checked_mul(w).is_none_or(|v| v > I32_LIMIT)
        || oh.checked_mul(ow).is_none_or(|v| v > I32_LIMIT)
    {
        return Err(Error::shape(
            op,
            format!("plane {h}x{w} or {oh}x{ow} exceeds the kernels' i32 range"),
        ));
    }
    let numel_in = input.iter().product::<usize>();
    let numel_out = output.iter().product::<usize>();
    to_u32(op, "input numel", numel_in)?;
    to_u32(op, "output numel", numel_out)?;
    Ok(PoolParams {
        n: to_u32(op, "threads", threads)?,
        planes: to_u32(op, "N*C", n * c)?,
        in_h: to_u32(op, "input height", h)?,
        in_w: to_u32(op, "input width", w)?,
        out_h: to_u32(op, "output height", oh)?,
        out_w: to_u32(op, "output width", ow)?,
        ..PoolParams::default()
    })
}

/// Window geometry as the kernels see it: kernel, stride, padding, dilation (`[h, w]` each).
type Window = [[usize; 2]; 4];

fn window_params(
    op: &'static str,
    input: [usize; 4],
    output: [usize; 4],
    threads: usize,
    window: Window,
) -> Result<PoolParams> {
    let [kernel, stride, padding, dilation] = window;
    Ok(PoolParams {
        k_h: to_u32(op, "kernel height", kernel[0])?,
        k_w: to_u32(op, "kernel width", kernel[1])?,
        s_h: to_u32(op, "stride height", stride[0])?,
        s_w: to_u32(op, "stride width", stride[1])?,
        p_h: to_u32(op, "padding height", padding[0])?,
        p_w: to_u32(op, "padding width", padding[1])?,
        d_h: to_u32(op, "dilation height", dilation[0])?,
        d_w: to_u32(op, "dilation width", dilation[1])?,
        ..base_params(op, input, output, threads)?
    })
}

fn shape4(t: &Tensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

/// Max pool: `y = max over each window of x`, and `argmax` (a U32 tensor shaped like `y`)
/// holds the flat index `h * W + w` of the chosen cell within its input plane, as PyTorch's
/// indices. Ties go to the first maximum in row-major window order; NaN propagates.
pub fn maxpool2d_forward(
    ctx: &GpuContext,
    y: &Tensor,
    argmax: &Tensor,
    x: &Tensor,
    cfg: &MaxPool2dConfig,
) -> Result<Dispatch> {
    const OP: &str = "maxpool2d_forward";
    expect_dtype(OP, "x", x, DType::F32)?;
    expect_dtype(OP, "y", y, DType::F32)?;
    expect_dtype(OP, "argmax", argmax, DType::U32)?;
    expect_rank(OP, "x", x, 4)?;
    let out = maxpool2d_output_shape(x.shape(), cfg)?;
    expect_shape(OP, "y", y, &out)?;
    expect_shape(OP, "argmax", argmax, &out)?;
    let params = window_params(
        OP,
        shape4(x),
        out,
        y.numel(),
        [cfg.kernel, cfg.stride, cfg.padding, cfg.dilation],
    )?;
    let kernel = if tiles_2x2(shape4(x), out, cfg) {
        MAX_FORWARD_2X2
    } else {
        MAX_FORWARD
    };
    ctx.dispatch(
        kernel,
        &params,
        &[(1, x), (2, y), (3, argmax)],
        ctx.grid_1d(y.numel())?,
    )
}

/// Whether `cfg` is VGG's pool (2x2, stride 2, no padding or dilation) over an input its
/// windows tile exactly: the `_2x2` kernels, one thread per output, apply.
fn tiles_2x2(input: [usize; 4], out: [usize; 4], cfg: &MaxPool2dConfig) -> bool {
    cfg.kernel == [2, 2]
        && cfg.stride == [2, 2]
        && cfg.padding == [0, 0]
        && cfg.dilation == [1, 1]
        && input[2] == 2 * out[2]
        && input[3] == 2 * out[3]
}

/// Whether `cfg` is ResNet's pool (3x3, stride 2, padding 1, no dilation) with every input
/// cell in the 2x2 block of an output: the `_3x3s2` backward, one thread per output, applies.
fn blocks_3x3s2(input: [usize; 4], out: [usize; 4], cfg: &MaxPool2dConfig) -> bool {
    cfg.kernel == [3, 3]
        && cfg.stride == [2, 2]
        && cfg.padding == [1, 1]
        && cfg.dilation == [1, 1]
        && input[2] <= 2 * out[2]
        && input[3] <= 2 * out[3]
}

/// Gradient of a max pool to its input: each `dy` goes to the cell its window's `argmax`
/// names (summed where windows share a cell). `dx` has the forward input's shape; with
/// `accumulate` the result is added to `dx`.
pub fn maxpool2d_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    argmax: &Tensor,
    cfg: &MaxPool2dConfig,
    accumulate: bool,
) -> Result<Dispatch> {
    max_backward(ctx, dx, dy, argmax, cfg, None, accumulate)
}

/// [`maxpool2d_backward`] through the ReLU that produced the pool's input: `dx` is the
/// gradient at that ReLU's input `relu_x`, `rule` applied to the pool's gradient as it is
/// stored (any rule but [`ReluRule::Redirected`]), which saves the ReLU's own launch.
#[allow(clippy::too_many_arguments)]
pub fn maxpool2d_backward_relu(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    argmax: &Tensor,
    cfg: &MaxPool2dConfig,
    relu_x: &Tensor,
    rule: ReluRule,
    accumulate: bool,
) -> Result<Dispatch> {
    max_backward(ctx, dx, dy, argmax, cfg, Some((relu_x, rule)), accumulate)
}

fn max_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    argmax: &Tensor,
    cfg: &MaxPool2dConfig,
    relu: Option<(&Tensor, ReluRule)>,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "maxpool2d_backward";
    expect_dtype(OP, "dx", dx, DType::F32)?;
    expect_dtype(OP, "dy", dy, DType::F32)?;
    expect_dtype(OP, "argmax", argmax, DType::U32)?;
    expect_rank(OP, "dx", dx, 4)?;
    let out = maxpool2d_output_shape(dx.shape(), cfg)?;
    expect_shape(OP, "dy", dy, &out)?;
    expect_shape(OP, "argmax", argmax, &out)?;
    let mut params = window_params(
        OP,
        shape4(dx),
        out,
        dx.numel(),
        [cfg.kernel, cfg.stride, cfg.padding, cfg.dilation],
    )?;
    params.accumulate = accumulate as u32;
    let placeholder;
    let x = match relu {
        Some((x, rule)) => {
            expect_dtype(OP, "relu_x", x, DType::F32)?;
            expect_shape(OP, "relu_x", x, dx.shape())?;
            params.relu = fused_rule_code(OP, rule)? as u32;
            x
        }
        None => {
            placeholder = ctx.placeholder()?;
            &placeholder
        }
    };
    let bindings = [(1, x), (4, dy), (5, dx), (6, argmax)];
    // VGG's and ResNet's pools: one thread per output and its block of input cells.
    let per_output = if tiles_2x2(shape4(dx), out, cfg) {
        Some(MAX_BACKWARD_2X2)
    } else if blocks_3x3s2(shape4(dx), out, cfg) {
        Some(MAX_BACKWARD_3X3S2)
    } else {
        None
    };
    if let Some(kernel) = per_output {
        params.n = to_u32(OP, "outputs", dy.numel())?;
        return ctx.dispatch(kernel, &params, &bindings, ctx.grid_1d(dy.numel())?);
    }
    ctx.dispatch(MAX_BACKWARD, &params, &bindings, ctx.grid_1d(dx.numel())?)
}

fn avg_params(
    op: &'static str,
    input: [usize; 4],
    out: [usize; 4],
    threads: usize,
    cfg: &AvgPool2dConfig,
) -> Result<PoolParams> {
    let mut params = window_params(
        op,
        input,
        out,
        threads,
        [cfg.kernel, cfg.stride, cfg.padding, [1, 1]],
    )?;
    params.count_include_pad = cfg.count_include_pad as u32;
    Ok(params)
}

/// Average pool: `y` = mean of each window of `x`, with PyTorch's divisor rules for padding,
/// ceil mode and `count_include_pad`.
pub fn avgpool2d_forward(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    cfg: &AvgPool2dConfig,
) -> Result<Dispatch> {
    const OP: &str = "avgpool2d_forward";
    expect_dtype(OP, "x", x, DType::F32)?;
    expect_dtype(OP, "y", y, DType::F32)?;
    expect_rank(OP, "x", x, 4)?;
    let out = avgpool2d_output_shape(x.shape(), cfg)?;
    expect_shape(OP, "y", y, &out)?;
    let params = avg_params(OP, shape4(x), out, y.numel(), cfg)?;
    ctx.dispatch(
        AVG_FORWARD,
        &params,
        &[(1, x), (2, y)],
        ctx.grid_1d(y.numel())?,
    )
}

/// Gradient of an average pool to its input: each cell receives `dy / divisor` from every
/// window containing it. `dx` has the forward input's shape; with `accumulate` the result is
/// added to `dx`.
pub fn avgpool2d_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    cfg: &AvgPool2dConfig,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "avgpool2d_backward";
    expect_dtype(OP, "dx", dx, DType::F32)?;
    expect_dtype(OP, "dy", dy, DType::F32)?;
    expect_rank(OP, "dx", dx, 4)?;
    let out = avgpool2d_output_shape(dx.shape(), cfg)?;
    expect_shape(OP, "dy", dy, &out)?;
    let mut params = avg_params(OP, shape4(dx), out, dx.numel(), cfg)?;
    params.accumulate = accumulate as u32;
    ctx.dispatch(
        AVG_BACKWARD,
        &params,
        &[(4, dy), (5, dx)],
        ctx.grid_1d(dx.numel())?,
    )
}

/// Checks an input/output pair of an adaptive or global pool: both non-empty rank 4 with the
/// same N and C, and sizes whose window arithmetic `(o + 1) * in + out` fits u32.
fn adaptive_shapes(
    op: &'static str,
    in_name: &str,
    input: &Tensor,
    out_name: &str,
    output: &Tensor,
) -> Result<([usize; 4], [usize; 4])> {
    expect_dtype(op, in_name, input, DType::F32)?;
    expect_dtype(op, out_name, output, DType::F32)?;
    let i = input_shape4(op, in_name, input.shape())?;
    let o = input_shape4(op, out_name, output.shape())?;
    if i[..2] != o[..2] {
        return Err(Error::shape(
            op,
            format!(
                "{out_name} has shape {o:?}, expected N and C of {in_name} {i:?}, i.e. [{}, {}, OH, OW]",
                i[0], i[1]
            ),
        ));
    }
    for axis in [2, 3] {
        let bound = i[axis]
            .checked_add(1)
            .and_then(|v| v.checked_mul(o[axis]))
            .and_then(|v| v.checked_add(i[axis]));
        if bound.is_none_or(|b| b > u32::MAX as usize) {
            return Err(Error::shape(
                op,
                format!("{in_name} {i:?} and {out_name} {o:?} exceed the kernels' u32 range"),
            ));
        }
    }
    Ok((i, o))
}

/// Adaptive average pool (`torch.nn.AdaptiveAvgPool2d`): the output size is `y`'s shape;
/// output `o` of `n` averages input `[floor(o*m/n), ceil((o+1)*m/n))` on each axis, so any
/// output size works, larger than the input included.
pub fn adaptive_avgpool2d_forward(ctx: &GpuContext, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
    const OP: &str = "adaptive_avgpool2d_forward";
    let (i, o) = adaptive_shapes(OP, "x", x, "y", y)?;
    let params = base_params(OP, i, o, y.numel())?;
    ctx.dispatch(
        ADAPTIVE_FORWARD,
        &params,
        &[(1, x), (2, y)],
        ctx.grid_1d(y.numel())?,
    )
}

/// Gradient of an adaptive average pool to its input: each cell receives `dy / window size`
/// from every window containing it. With `accumulate` the result is added to `dx`.
pub fn adaptive_avgpool2d_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "adaptive_avgpool2d_backward";
    let (i, o) = adaptive_shapes(OP, "dx", dx, "dy", dy)?;
    let mut params = base_params(OP, i, o, dx.numel())?;
    params.accumulate = accumulate as u32;
    ctx.dispatch(
        ADAPTIVE_BACKWARD,
        &params,
        &[(4, dy), (5, dx)],
        ctx.grid_1d(dx.numel())?,
    )
}

fn global_shapes(
    op: &'static str,
    in_name: &str,
    input: &Tensor,
    out_name: &str,
    output: &Tensor,
) -> Result<[usize; 4]> {
    let (i, _) = adaptive_shapes(op, in_name, input, out_name, output)?;
    expect_shape(op, out_name, output, &[i[0], i[1], 1, 1])?;
    Ok(i)
}

/// Global average pool: `[N, C, H, W] -> [N, C, 1, 1]`, the mean of each plane. Small planes
/// are summed by one thread each, large ones by a workgroup each.
pub fn global_avgpool_forward(ctx: &GpuContext, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
    const OP: &str = "global_avgpool_forward";
    let i = global_shapes(OP, "x", x, "y", y)?;
    let planes = i[0] * i[1];
    let params = base_params(OP, i, [i[0], i[1], 1, 1], planes)?;
    if i[2] * i[3] <= GLOBAL_SERIAL_MAX_PLANE {
        ctx.dispatch(
            GLOBAL_FORWARD_SERIAL,
            &params,
            &[(1, x), (2, y)],
            ctx.grid_1d(planes)?,
        )
    } else {
        let grid = grid_for(planes, 1, ctx.limits().max_compute_workgroups_per_dimension)?;
        ctx.dispatch(GLOBAL_FORWARD_WORKGROUP, &params, &[(1, x), (2, y)], grid)
    }
}

/// Gradient of a global average pool: `dx = dy / (H * W)` broadcast over each plane. With
/// `accumulate` the result is added to `dx`.
pub fn global_avgpool_backward(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "global_avgpool_backward";
    let i = global_shapes(OP, "dx", dx, "dy", dy)?;
    let mut params = base_params(OP, i, [i[0], i[1], 1, 1], dx.numel())?;
    params.accumulate = accumulate as u32;
    ctx.dispatch(
        GLOBAL_BACKWARD,
        &params,
        &[(4, dy), (5, dx)],
        ctx.grid_1d(dx.numel())?,
    )
}
