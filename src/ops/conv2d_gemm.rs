//! The `gemm` conv2d variant: the convolution as an implicit GEMM with 64 x 64 shared-memory
//! tiles, 4 x 4 outputs per thread and split-K for small outputs (see
//! `shaders/conv2d_gemm.wgsl`). Any configuration (stride, padding, dilation, groups), both
//! passes; meant for GPUs, where autotuning times it against the other variants. On lavapipe
//! a workgroup-memory load costs a per-lane loop, so there it runs only when asked for.

use crate::error::Result;
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::to_i32;

const FORWARD: Kernel = Kernel::new(Shader::Conv2dGemm, "conv2d_gemm_forward");
const BACKWARD_INPUT: Kernel = Kernel::new(Shader::Conv2dGemm, "conv2d_gemm_backward_input");
const REDUCE: Kernel = Kernel::new(Shader::Conv2dGemm, "conv2d_gemm_reduce");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[FORWARD, BACKWARD_INPUT, REDUCE];

/// Whether `kernel` is one of the two product entry points.
pub(crate) fn is_conv_kernel(kernel: Kernel) -> bool {
    kernel == FORWARD || kernel == BACKWARD_INPUT
}

/// Tile rows and columns (`BM`, `BN`), k per step (`BK`) and threads per workgroup.
const TILE: usize = 64;
const BK: usize = 16;
const THREADS: usize = 256;
/// Outputs one thread owns.
pub(crate) const OUTPUTS_PER_THREAD: usize = 16;
/// Split-K raises the workgroup count towards this (a few per SM on a large GPU: an H100 has
/// 132), while each split keeps at least `MIN_SPLIT_STEPS` steps of BK.
const TARGET_WORKGROUPS: usize = 512;
const MIN_SPLIT_STEPS: usize = 4;
const MAX_SPLITS: usize = 32;
/// Workgroups per grid dimension that every adapter allows.
const MAX_GRID: usize = 65535;

/// Mirror of `GemmParams` in conv2d_gemm.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    batch: i32,
    cin: i32,
    h: i32,
    w: i32,
    cout: i32,
    ho: i32,
    wo: i32,
    kh: i32,
    kw: i32,
    stride_h: i32,
    stride_w: i32,
    pad_h: i32,
    pad_w: i32,
    dil_h: i32,
    dil_w: i32,
    cin_g: i32,
    cout_g: i32,
    has_bias: i32,
    accumulate: i32,
    rows: i32,
    cols: i32,
    kdim: i32,
    splits: i32,
    kchunk: i32,
    out_numel: i32,
    _pad: [i32; 3],
}
const _: () = assert!(std::mem::size_of::<GemmParams>() == 112);

/// One convolution's sizes, as conv2d.rs validated them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GemmShape {
    /// Input [N, Cin, H, W].
    pub x: [usize; 4],
    /// Output [N, Cout, Ho, Wo].
    pub y: [usize; 4],
    /// Kernel height and width.
    pub k: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

/// How one pass is cut: product sizes, tiles and k ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GemmPlan {
    rows: usize,
    cols: usize,
    kdim: usize,
    splits: usize,
    kchunk: usize,
    grid: [usize; 3],
}

impl GemmPlan {
    /// The plan for the forward pass (`backward` false) or the backward pass to the input;
    /// `None` where the grid would exceed the per-dimension limit.
    pub(crate) fn new(s: &GemmShape, backward: bool) -> Option<GemmPlan> {
        let [n, cin, h, w] = s.x;
        let [_, cout, ho, wo] = s.y;
        let taps = s.k[0] * s.k[1];
        let (rows, cols, kdim) = if backward {
            (cin / s.groups, n * h * w, cout / s.groups * taps)
        } else {
            (cout / s.groups, n * ho * wo, cin / s.groups * taps)
        };
        let tiles = s.groups * rows.div_ceil(TILE) * cols.div_ceil(TILE);
        let steps = kdim.div_ceil(BK);
        let max_splits = (steps / MIN_SPLIT_STEPS).clamp(1, MAX_SPLITS);
        let wanted = TARGET_WORKGROUPS.div_ceil(tiles).clamp(1, max_splits);
        let kchunk = steps.div_ceil(wanted) * BK;
        let splits = kdim.div_ceil(kchunk);
        let grid = [cols.div_ceil(TILE), rows.div_ceil(TILE), s.groups * splits];
        grid.iter().all(|&g| g <= MAX_GRID).then_some(GemmPlan {
            rows,
            cols,
            kdim,
            splits,
            kchunk,
            grid,
        })
    }

    /// Threads launched by the product kernel.
    pub(crate) fn threads(&self) -> usize {
        self.grid.iter().product::<usize>() * THREADS
    }

    /// k ranges each output is summed over in pieces (1: no partial sums).
    pub(crate) fn splits(&self) -> usize {
        self.splits
    }
}

/// The launches of one pass: `out (+)= conv(src, w) (+ bias)` forward, or
/// `out (+)= conv_transpose(src, w)` backward (`src` = dy, `out` = dx). Shapes are checked by
/// the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    ctx: &GpuContext,
    s: &GemmShape,
    plan: &GemmPlan,
    backward: bool,
    out: &Tensor,
    src: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_gemm";
    let [n, cin, h, wd] = s.x;
    let [_, cout, ho, wo] = s.y;
    let out_numel = out.numel();
    let part_numel = if plan.splits > 1 {
        plan.splits
            .checked_mul(out_numel)
            .ok_or_else(|| crate::error::Error::shape(OP, "split-K partial sums overflow"))?
    } else {
        0
    };
    let params = GemmParams {
        batch: to_i32(OP, "N", n)?,
        cin: to_i32(OP, "Cin", cin)?,
        h: to_i32(OP, "H", h)?,
        w: to_i32(OP, "W", wd)?,
        cout: to_i32(OP, "Cout", cout)?,
        ho: to_i32(OP, "Ho", ho)?,
        wo: to_i32(OP, "Wo", wo)?,
        kh: to_i32(OP, "Kh", s.k[0])?,
        kw: to_i32(OP, "Kw", s.k[1])?,
        stride_h: to_i32(OP, "stride", s.stride[0])?,
        stride_w: to_i32(OP, "stride", s.stride[1])?,
        pad_h: to_i32(OP, "padding", s.padding[0])?,
        pad_w: to_i32(OP, "padding", s.padding[1])?,
        dil_h: to_i32(OP, "dilation", s.dilation[0])?,
        dil_w: to_i32(OP, "dilation", s.dilation[1])?,
        cin_g: to_i32(OP, "Cin/groups", cin / s.groups)?,
        cout_g: to_i32(OP, "Cout/groups", cout / s.groups)?,
        has_bias: (bias.is_some() && !backward) as i32,
        accumulate: accumulate as i32,
        rows: to_i32(OP, "rows", plan.rows)?,
        cols: to_i32(OP, "columns", plan.cols)?,
        kdim: to_i32(OP, "reduction length", plan.kdim)?,
        splits: to_i32(OP, "splits", plan.splits)?,
        kchunk: to_i32(OP, "split length", plan.kchunk)?,
        out_numel: to_i32(OP, "output size", out_numel)?,
        _pad: [0; 3],
    };
    to_i32(OP, "split-K partial sums", part_numel)?;
    let placeholder = ctx.placeholder()?;
    let bias_t = bias.unwrap_or(&placeholder);
    // Its own buffer even when unused: the placeholder may be bound read-only as the bias.
    let part = Tensor::empty(ctx, &[part_numel.max(1)], DType::F32)?;
    let kernel = if backward { BACKWARD_INPUT } else { FORWARD };
    let grid = plan.grid.map(|g| g as u32);
    let product = ctx.dispatch(
        kernel,
        &params,
        &[(1, w), (2, src), (3, bias_t), (4, out), (5, &part)],
        grid,
    )?;
    if plan.splits == 1 {
        return Ok(product);
    }
    let reduce = ctx.dispatch(
        REDUCE,
        &params,
        &[(3, bias_t), (4, out), (5, &part)],
        ctx.grid_1d(out_numel)?,
    )?;
    Ok(Dispatch::chain(kernel, vec![product, reduce]))
}
