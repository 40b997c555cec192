//! 2-D convolution with `torch.nn.Conv2d` semantics (stride, zero padding, dilation, groups,
//! optional bias): forward, backward to the input, backward to the weight and bias.
//!
//! Each pass picks one of eight kernels (see `shaders/conv2d.wgsl`):
//! - the windows kernels (`shaders/conv2d_windows.wgsl`, [`crate::ops::conv2d_windows`]) for
//!   one group and unit dilation on adapters with fixed 8-lane subgroups (lavapipe): both
//!   operands packed into 64 KiB uniform-buffer windows, whose loads lavapipe vectorizes; 3x3
//!   with padding up to 2, 1x1 without padding ([`crate::ops::conv1x1_windows`]), and any
//!   other kernel as a column matrix and a 1x1 product ([`crate::ops::conv2d_cols`]: ResNet's
//!   7x7 stem); 3x faster than the row kernels there;
//! - row kernels when Kw == 3 with unit stride and dilation along W (forward and backward to
//!   the input also need them along H): VGG's and ResNet's 3x3 layers; each loaded row of
//!   values feeds all three taps, and 12 (8) channels x 3 rows x 16 columns per thread;
//! - an implicit GEMM with shared-memory tiles and split-K ([`crate::ops::conv2d_gemm`]), in
//!   two sizes (64 x 64 tiles of 4 x 4 per thread, 128 x 128 of 8 x 8), for GPUs, where
//!   autotuning times them;
//! - Winograd F(2x2, 3x3) and F(4x4, 3x3) for 3x3 stride-1 convs
//!   ([`crate::ops::conv2d_winograd`], `shaders/winograd.wgsl`): input and output transforms
//!   around a 16- or 36-group gemm product, 2.25x and 4x fewer FMAs, for GPUs;
//! - a generic register-tiled kernel (8 channels x 8 positions per thread);
//! - a direct kernel, one thread per output element.
//!
//! Forward and backward to the input choose per adapter ([`select_conv2d_variant`]): on CPU
//! adapters (lavapipe) windows where the context runs it and the shape fits, else rows where
//! they apply, else tiled with two or more channels per group, else direct; on GPUs Winograd
//! for 3x3 stride-1 passes of 64 or more channels (F4, or F2 where F4 would have too few
//! tiles), else a gemm kernel wherever the pass writes 16 or more channels per group (the wide
//! tiles for large products), else the variant with the most outputs per thread that still
//! launches enough threads to fill the chip (Winograd F4 instead of the direct kernel).
//! [`conv2d_forward_cached`] and [`conv2d_backward_input_cached`] keep what a kernel prepares
//! from the weights (the windows kernels' packed weights, the Winograd transforms) in a
//! [`Conv2dWeightCache`] (a model does, per layer).
//! `CNNVIS_CONV_VARIANT=windows|gemm|gemm-wide|winograd|winograd-f4|rows|tiled|direct` forces a
//! variant wherever it applies ([`with_conv2d_variant`] on one thread) and
//! `CNNVIS_CONV_MIN_THREADS=N` sets the GPU thread target (both read once per process);
//! [`conv2d_forward_variant`] and [`conv2d_backward_input_variant`] force one per call.
//! Backward-weight picks from the shapes alone.
//!
//! A ReLU beside a conv can run in the conv's dispatch: after it forward
//! ([`conv2d_forward_relu_cached`]), before it backward ([`conv2d_backward_input_relu_cached`]).
//! The Winograd and gemm variants apply it as they store (the output transform, the product or
//! its split-K reduce), which saves the ReLU's launch and a pass over the tensor; the other
//! variants chain the ReLU's own kernel ([`Conv2dVariant::fuses_relu`]).
//!
//! Autotuning: on GPU adapters, the first time a forward or backward-to-input dispatch is built
//! for a (pass, input shape, weight shape, config) on an adapter, every candidate variant (direct,
//! both Winograd and both gemm sizes, and tiled; never rows, whose accumulators spill a GPU
//! thread's registers) is timed on scratch
//! tensors of the same shapes (one warm-up, then a few timed submissions) and the fastest is
//! cached for the rest of the process, keyed by adapter, pass, shapes and config
//! ([`conv2d_autotune_choices`] lists the cache). `CNNVIS_CONV_AUTOTUNE=0` turns it off (the rule
//! of [`select_conv2d_variant`] then decides), `=1` turns it on for CPU adapters too (off there
//! by default: lavapipe keeps its rule); read once per process, overridden per thread by
//! [`with_conv2d_autotune`]. `CNNVIS_CONV_VARIANT` and the `*_variant` functions win over it.
//! Any error while tuning falls back to the rule (and is cached, so it is not retried). A
//! Winograd pass tunes its product (a grouped 1x1 conv) between the two gemm tiles the same way.
//!
//! Backward-weight cuts its N*Ho*Wo reduction into chunks when dW alone would give too few
//! threads, and sums the chunks' partial results in a second pass (deterministic order).

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::conv1x1_windows::{self as windows1, Px1Plan};
use crate::ops::conv2d_cols::ColsPlan;
use crate::ops::conv2d_gemm::{self as gemm, GemmPlan, GemmShape, GemmTile};
use crate::ops::conv2d_windows::{self as windows, WindowPlan};
use crate::ops::conv2d_winograd::{self as winograd, WinogradPlan, WinogradTile};
use crate::ops::relu::{relu_backward, relu_forward, ReluEpilogue, ReluRule};
/// The windows kernels' packed weights of one conv layer (see [`WeightPacks`]).
pub use crate::ops::windows::WeightPacks as Conv2dWeightCache;
pub use crate::ops::windows::WeightPacks;
use crate::ops::{expect_dtype, expect_shape, to_i32, with_thread_value};

const FORWARD: Kernel = Kernel::new(Shader::Conv2d, "conv2d_forward");
const FORWARD_TILED: Kernel = Kernel::new(Shader::Conv2d, "conv2d_forward_tiled");
const FORWARD_ROWS: Kernel = Kernel::new(Shader::Conv2d, "conv2d_forward_rows");
const BACKWARD_INPUT: Kernel = Kernel::new(Shader::Conv2d, "conv2d_backward_input");
const BACKWARD_INPUT_TILED: Kernel = Kernel::new(Shader::Conv2d, "conv2d_backward_input_tiled");
const BACKWARD_INPUT_ROWS: Kernel = Kernel::new(Shader::Conv2d, "conv2d_backward_input_rows");
const BACKWARD_WEIGHT: Kernel = Kernel::new(Shader::Conv2d, "conv2d_backward_weight");
const BACKWARD_WEIGHT_TILED: Kernel = Kernel::new(Shader::Conv2d, "conv2d_backward_weight_tiled");
const BACKWARD_WEIGHT_ROW3: Kernel = Kernel::new(Shader::Conv2d, "conv2d_backward_weight_row3");
const BACKWARD_WEIGHT_REDUCE: Kernel = Kernel::new(Shader::Conv2d, "conv2d_backward_weight_reduce");
const BACKWARD_BIAS: Kernel = Kernel::new(Shader::Conv2d, "conv2d_backward_bias");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    FORWARD,
    FORWARD_TILED,
    FORWARD_ROWS,
    BACKWARD_INPUT,
    BACKWARD_INPUT_TILED,
    BACKWARD_INPUT_ROWS,
    BACKWARD_WEIGHT,
    BACKWARD_WEIGHT_TILED,
    BACKWARD_WEIGHT_ROW3,
    BACKWARD_WEIGHT_REDUCE,
    BACKWARD_BIAS,
];

/// Channels per thread of the tiled kernels (`TB` in conv2d.wgsl).
const TILE_C: usize = 8;
/// Positions (or weight-row indices) per thread of the tiled kernels (`PB` in conv2d.wgsl).
const TILE_P: usize = 8;
/// Outputs per thread along a row in the row kernels (`RW` in conv2d.wgsl).
const ROW_P: usize = 16;
/// Channels per thread in the row-block kernels (`RC` in conv2d.wgsl).
const ROW_C: usize = 12;
/// Channels per thread in the row-block backward to the input (`RCB` in conv2d.wgsl): fewer
/// than forward, as its accumulate path makes larger tiles very slow to compile on lavapipe.
const ROW_C_BWI: usize = 8;
/// Rows per thread in the row-block kernels (`RY` in conv2d.wgsl).
const ROW_Y: usize = 3;
/// Workgroup size of the tiled kernels (`TWG` in conv2d.wgsl).
const TILED_WG: u32 = 64;
/// Workgroup size of the bias reduction (`BWG` in conv2d.wgsl).
const BIAS_WG: usize = 256;
/// With this many channels per group, a generic tile of `TILE_C` channels (clamped duplicates
/// loaded but not stored) already needs fewer loads per useful FMA than one thread per element.
/// The row kernels' reuse along W pays off even for one channel per group.
const TILED_MIN_CHANNELS: usize = 2;
/// Backward-weight splits its position reduction until about this many threads have work...
const WEIGHT_TARGET_THREADS: usize = 4096;
/// ...but never into chunks shorter than this many positions.
const WEIGHT_MIN_CHUNK: usize = 128;

/// Stride, zero padding, dilation (each [h, w]) and groups, as torch.nn.Conv2d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dConfig {
    /// Step between output positions, [h, w].
    pub stride: [usize; 2],
    /// Zeros added on each side of the input, [h, w].
    pub padding: [usize; 2],
    /// Spacing between kernel taps, [h, w].
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels split into this many independent convolutions.
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dConfig {
    /// Stride 1, padding 0, dilation 1, groups 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same stride in both dimensions.
    pub fn stride(self, s: usize) -> Self {
        Conv2dConfig {
            stride: [s, s],
            ..self
        }
    }

    /// The same padding in both dimensions.
    pub fn padding(self, p: usize) -> Self {
        Conv2dConfig {
            padding: [p, p],
            ..self
        }
    }

    /// The same dilation in both dimensions.
    pub fn dilation(self, d: usize) -> Self {
        Conv2dConfig {
            dilation: [d, d],
            ..self
        }
    }

    /// Channel groups (groups == Cin with Cout a multiple of it is a depthwise convolution).
    pub fn groups(self, g: usize) -> Self {
        Conv2dConfig { groups: g, ..self }
    }
}

/// Mirror of `ConvParams` in conv2d.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
    batch: i32,
    cin: i32,
    h: i32,
    w: i32,
    cout: i32,
    ho: i32,
    wo: i32,
    groups: i32,
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
    blocks_c: i32,
    blocks_p: i32,
    blocks_r: i32,
    splits: i32,
    chunk: i32,
    threads: i32,
    segs: i32,
    _pad: i32,
}
const _: () = assert!(std::mem::size_of::<ConvParams>() == 112);

/// The windows variant's plan: the 3x3 or the 1x1 kernels, or other k x k kernels as a
/// column matrix and a 1x1 product.
#[derive(Debug, Clone, Copy)]
enum WindowKind {
    K3(WindowPlan),
    K1(Px1Plan),
    Cols(ColsPlan),
}

impl WindowKind {
    fn threads(&self) -> usize {
        match self {
            WindowKind::K3(p) => p.threads(),
            WindowKind::K1(p) => p.threads(),
            WindowKind::Cols(p) => p.threads(),
        }
    }

    /// The chained launches: `target = w' * source (+ bias)`; `flip` for backward to input.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        ctx: &GpuContext,
        target: &Tensor,
        source: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        flip: bool,
        accumulate: bool,
        cache: Option<&Conv2dWeightCache>,
    ) -> Result<Dispatch> {
        match self {
            WindowKind::K3(p) => {
                windows::build(ctx, p, target, source, w, bias, flip, accumulate, cache)
            }
            WindowKind::K1(p) => {
                windows1::build(ctx, p, target, source, w, bias, flip, accumulate, cache)
            }
            WindowKind::Cols(p) => p.build(ctx, target, source, w, bias, accumulate, cache),
        }
    }
}

/// Validated sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    cfg: Conv2dConfig,
}

impl Geometry {
    fn y_shape(&self) -> [usize; 4] {
        [self.n, self.cout, self.ho, self.wo]
    }
    fn cin_g(&self) -> usize {
        self.cin / self.cfg.groups
    }
    fn cout_g(&self) -> usize {
        self.cout / self.cfg.groups
    }
    /// Whether the row kernels apply: Kw == 3 with unit stride and dilation along W.
    fn row3(&self) -> bool {
        self.kw == 3 && self.cfg.stride[1] == 1 && self.cfg.dilation[1] == 1
    }
    /// Whether the row-block kernels apply: Kw == 3, unit stride and dilation in both dimensions.
    fn rows(&self) -> bool {
        self.row3() && self.cfg.stride[0] == 1 && self.cfg.dilation[0] == 1
    }
    /// The windows variant's plan for `pass`, where its shape rules hold: one group, unit
    /// dilation, equal strides, and either 3x3 with padding at most 2 or 1x1 without padding;
    /// and the operands fit its windows.
    fn window_plan(&self, pass: Conv2dPass) -> Option<WindowKind> {
        let c = &self.cfg;
        if c.dilation != [1, 1] || c.groups != 1 {
            return None;
        }
        let s = c.stride[0];
        let three = self.kh == 3 && self.kw == 3 && c.stride[1] == s;
        let cols = || {
            let plan = ColsPlan::new(
                [self.n, self.cin, self.h, self.w],
                self.cout,
                [self.kh, self.kw],
                c.stride,
                c.padding,
                [self.ho, self.wo],
                pass == Conv2dPass::BackwardInput,
            )?;
            Some((WindowKind::Cols(plan), plan.target_shape()))
        };
        // Strided 3x3: the column matrix and a 1x1 product (about 2x faster on lavapipe than
        // the 3x3 kernel at stride 1 with s^2 the work, which stays the fallback).
        // Backward to fewer than 8 channels (an RGB model's first conv): the 3x3 kernel's
        // lanes own target channels and most would idle; the column route's 1x1 product packs
        // the 9 taps x channels instead (VGG16's 224² 3->64 backward: 27-40 ms -> 19-25 ms).
        let few_targets = pass == Conv2dPass::BackwardInput && self.cin < 8;
        let strided_cols = if three && (s > 1 || few_targets) && STRIDED_COLS.with(|c| c.get()) {
            cols()
        } else {
            None
        };
        let (plan, shape) = if let Some(p) = strided_cols {
            p
        } else if three {
            let plan = match pass {
                // At stride s: the stride-1 grid, every s-th row and column kept (s^2 times
                // the work, at the windows kernel's speed).
                Conv2dPass::Forward => {
                    WindowPlan::new([self.n, self.cin, self.h, self.w], self.cout, c.padding)?
                        .subsampled(s)
                }
                Conv2dPass::BackwardInput => {
                    // dy with s-1 zeros between its values, correlated with the flipped
                    // weights: s^2 times the work, at the windows kernel's speed.
                    let pad = [
                        2usize.checked_sub(c.padding[0])?,
                        2usize.checked_sub(c.padding[1])?,
                    ];
                    WindowPlan::upsampled(
                        [self.n, self.cout, self.ho, self.wo],
                        self.cin,
                        pad,
                        s,
                        [self.h, self.w],
                    )?
                }
            };
            (WindowKind::K3(plan), plan.target_shape())
        } else if self.kh == 1 && self.kw == 1 && c.padding == [0, 0] && c.stride[0] == c.stride[1]
        {
            let plan =
                match pass {
                    Conv2dPass::Forward => {
                        Px1Plan::new([self.n, self.cin, self.h, self.w], self.cout, c.stride[0])?
                    }
                    Conv2dPass::BackwardInput => {
                        Px1Plan::new([self.n, self.cout, self.ho, self.wo], self.cin, 1)?
                            .scattered(c.stride[0], self.h, self.w)?
                    }
                };
            (WindowKind::K1(plan), plan.target_shape())
        } else if self.kh * self.kw > 1 {
            cols()?
        } else {
            return None;
        };
        let expect = match pass {
            Conv2dPass::Forward => self.y_shape(),
            Conv2dPass::BackwardInput => [self.n, self.cin, self.h, self.w],
        };
        (shape == expect).then_some(plan)
    }
    /// The gemm variant's sizes.
    fn gemm_shape(&self) -> GemmShape {
        GemmShape {
            x: [self.n, self.cin, self.h, self.w],
            y: self.y_shape(),
            k: [self.kh, self.kw],
            stride: self.cfg.stride,
            padding: self.cfg.padding,
            dilation: self.cfg.dilation,
            groups: self.cfg.groups,
        }
    }
    /// The gemm variant's plan for `pass` (`None` where its grid would be too large).
    fn gemm_plan(&self, pass: Conv2dPass, tile: GemmTile) -> Option<GemmPlan> {
        GemmPlan::new(&self.gemm_shape(), tile, pass == Conv2dPass::BackwardInput)
    }
    /// The Winograd variant's plan for `pass`: 3x3, unit stride and dilation, one group,
    /// padding at most 2, transforms of one image fitting a workspace.
    fn winograd_plan(&self, pass: Conv2dPass, tile: WinogradTile) -> Option<WinogradPlan> {
        let c = &self.cfg;
        if [self.kh, self.kw] != [3, 3]
            || c.stride != [1, 1]
            || c.dilation != [1, 1]
            || c.groups != 1
        {
            return None;
        }
        let (plan, want) = match pass {
            Conv2dPass::Forward => (
                WinogradPlan::new(
                    tile,
                    [self.n, self.cin, self.h, self.w],
                    self.cout,
                    c.padding,
                )?,
                self.y_shape(),
            ),
            Conv2dPass::BackwardInput => {
                let pad = [
                    2usize.checked_sub(c.padding[0])?,
                    2usize.checked_sub(c.padding[1])?,
                ];
                let src = [self.n, self.cout, self.ho, self.wo];
                let plan = WinogradPlan::new(tile, src, self.cin, pad)?;
                (plan, [self.n, self.cin, self.h, self.w])
            }
        };
        (plan.out_shape() == want).then_some(plan)
    }

    /// Length of a weight row: Cin/groups * Kh * Kw.
    fn k(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }

    /// The uniform block; every size is checked to fit the kernels' i32 index arithmetic.
    fn params(&self, op: &'static str) -> Result<ConvParams> {
        let c = &self.cfg;
        // The largest flat index any kernel forms: the biggest tensor, and the partial sums.
        let biggest = [
            self.n * self.cin * self.h * self.w,
            self.n * self.cout * self.ho * self.wo,
            self.cout * self.k(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        to_i32(op, "tensor size", biggest)?;
        Ok(ConvParams {
            batch: to_i32(op, "N", self.n)?,
            cin: to_i32(op, "Cin", self.cin)?,
            h: to_i32(op, "H", self.h)?,
            w: to_i32(op, "W", self.w)?,
            cout: to_i32(op, "Cout", self.cout)?,
            ho: to_i32(op, "Ho", self.ho)?,
            wo: to_i32(op, "Wo", self.wo)?,
            groups: to_i32(op, "groups", c.groups)?,
            kh: to_i32(op, "Kh", self.kh)?,
            kw: to_i32(op, "Kw", self.kw)?,
            stride_h: to_i32(op, "stride", c.stride[0])?,
            stride_w: to_i32(op, "stride", c.stride[1])?,
            pad_h: to_i32(op, "padding", c.padding[0])?,
            pad_w: to_i32(op, "padding", c.padding[1])?,
            dil_h: to_i32(op, "dilation", c.dilation[0])?,
            dil_w: to_i32(op, "dilation", c.dilation[1])?,
            cin_g: to_i32(op, "Cin/groups", self.cin_g())?,
            cout_g: to_i32(op, "Cout/groups", self.cout_g())?,
            ..Default::default()
        })
    }
}

fn geometry(op: &'static str, x: &[usize], w: &[usize], cfg: &Conv2dConfig) -> Result<Geometry> {
    let (&[n, cin, h, wd], &[cout, wcin, kh, kw]) = (x, w) else {
        return Err(Error::shape(
            op,
            format!("x has shape {x:?} and w has shape {w:?}; both must have rank 4 (NCHW and [Cout, Cin/groups, Kh, Kw])"),
        ));
    };
    if x.contains(&0) || w.contains(&0) {
        return Err(Error::shape(op, format!("empty tensor: x {x:?}, w {w:?}")));
    }
    let [sh, sw] = cfg.stride;
    let [dh, dw] = cfg.dilation;
    let g = cfg.groups;
    if sh == 0 || sw == 0 || dh == 0 || dw == 0 || g == 0 {
        return Err(Error::shape(
            op,
            format!(
                "stride {:?}, dilation {:?} and groups {g} must be at least 1",
                cfg.stride, cfg.dilation
            ),
        ));
    }
    if cin % g != 0 || cout % g != 0 {
        return Err(Error::shape(
            op,
            format!("groups = {g} must divide Cin = {cin} (x {x:?}) and Cout = {cout} (w {w:?})"),
        ));
    }
    if wcin != cin / g {
        return Err(Error::shape(
            op,
            format!(
                "w has shape {w:?}, expected [{cout}, {}, {kh}, {kw}]: x {x:?} has Cin = {cin} in {g} group(s)",
                cin / g
            ),
        ));
    }
    let out = |size: usize, k: usize, s: usize, p: usize, d: usize, dim: &str| -> Result<usize> {
        let span = d
            .checked_mul(k - 1)
            .and_then(|v| v.checked_add(1))
            .ok_or_else(|| Error::shape(op, format!("kernel span overflows along {dim}")))?;
        let padded = size.saturating_add(p.saturating_mul(2));
        if span > padded {
            return Err(Error::shape(
                op,
                format!(
                    "dilated kernel extent {span} along {dim} exceeds the padded input {padded} (x {x:?}, w {w:?}, {cfg:?})"
                ),
            ));
        }
        Ok((padded - span) / s + 1)
    };
    let ho = out(h, kh, sh, cfg.padding[0], dh, "H")?;
    let wo = out(wd, kw, sw, cfg.padding[1], dw, "W")?;
    Ok(Geometry {
        n,
        cin,
        h,
        w: wd,
        cout,
        kh,
        kw,
        ho,
        wo,
        cfg: *cfg,
    })
}

/// Output shape [N, Cout, Ho, Wo] for input shape x and weight shape w; Err on mismatch/empty output.
pub fn conv2d_output_shape(x: &[usize], w: &[usize], cfg: &Conv2dConfig) -> Result<[usize; 4]> {
    Ok(geometry("conv2d", x, w, cfg)?.y_shape())
}

/// FLOPs of the forward pass (2 * N*Cout*Ho*Wo * Cin/groups*Kh*Kw), for benchmarks.
pub fn conv2d_flops(x: &[usize], w: &[usize], cfg: &Conv2dConfig) -> Result<u64> {
    let g = geometry("conv2d", x, w, cfg)?;
    let outputs = (g.n * g.cout * g.ho * g.wo) as u64;
    Ok(2 * outputs * g.k() as u64)
}

/// Below this many threads a GPU adapter trades outputs per thread for threads: a variant is
/// "wide enough" when it launches at least this many. From the H100 (Vulkan) table in
/// benches/RESULTS.md: the tiled kernel's throughput grows about linearly with its thread count
/// up to ~25k threads (1600 threads: 1.4 % of peak, 6k: 5.5 %, 12.5k: 8-10 %, 25-50k: 17-20 %),
/// so at 8k and above it stays; below, the direct kernel's one thread per output (10-100x the
/// threads) should win. Overridden by `CNNVIS_CONV_MIN_THREADS`.
const GPU_TARGET_THREADS: usize = 8192;
/// On GPUs the gemm kernels take every pass that writes at least this many channels per group.
/// From the H200 autotuning log (benches/results/h200-2026-11-27/log.txt): with 64 or more they
/// beat the direct and tiled kernels 2-20x on every VGG16 and ResNet50 layer at batch 1; with 3
/// (the backward passes of the first layers) the direct kernel is twice as fast, as 61 of every
/// 64 tile rows would be empty.
const GEMM_MIN_CHANNELS: usize = 16;
/// 128 x 128 tiles where the product has at least this many rows and columns and this long a
/// reduction, and they still make this many workgroups after split-K (about one per SM of an
/// H100 or H200); below, the 64 x 64 tiles' four times as many workgroups win (same log: with
/// 64 wide workgroups, ResNet50's 14² 256->1024 backward pass took 0.19 ms against 0.04).
const GEMM_WIDE_MIN_ROWS: usize = 128;
const GEMM_WIDE_MIN_COLS: usize = 128;
const GEMM_WIDE_MIN_K: usize = 1024;
const GEMM_WIDE_MIN_WORKGROUPS: usize = 128;
/// On GPUs the Winograd variants take 3x3 stride-1 passes that write and sum at least this
/// many channels: F(4x4, 3x3) where it makes at least `WINOGRAD_MIN_TILES` output tiles, else
/// F(2x2, 3x3) where that does, else the gemm rule. From the H100 autotuning log
/// (benches/results/h100-2026-11-27d/log.txt): F4 was fastest on every VGG16 layer from 64
/// channels at batch 64 and at batch 1 down to 28² (49 tiles; 1.3-2.2x the best gemm tile),
/// F2 at 14² (16 F4 tiles, 49 F2 tiles), gemm for the 3-channel first layer's forward pass.
const WINOGRAD_MIN_CHANNELS: usize = 64;
const WINOGRAD_MIN_TILES: usize = 32;
/// Outputs per thread a GPU adapter accepts: a thread's accumulators must fit its registers
/// (NVIDIA allows 255 32-bit registers per thread), which the tiled kernel's 64 do and the row
/// kernels' 576 (384 backward) do not: those spill, so they are for CPU adapters only.
const GPU_MAX_OUTPUTS_PER_THREAD: usize = 64;

/// Kernel variants of the conv2d forward and backward-to-input passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conv2dVariant {
    /// One thread per output element; any configuration.
    Direct,
    /// 8 channels x 8 flattened positions per thread; any configuration.
    Tiled,
    /// Row blocks (12 channels forward, 8 backward, x 3 rows x 16 columns per thread); only for
    /// Kw == 3 with unit stride and dilation in both dimensions.
    Rows,
    /// Packed operands read through 64 KiB uniform windows, 8-lane subgroups sharing inputs
    /// (`conv2d_windows`: 3 rows x 8 columns of one channel per lane, for 3x3 with padding up
    /// to 2, strided ones run at stride 1 with s^2 the work; `conv1x1_windows`: 24 pixels per
    /// lane, for 1x1 without padding; other kernels, such as ResNet's 7x7 stride-2 stem, as a
    /// column matrix (`im2col.wgsl`) and a 1x1 product); one group, unit dilation; on adapters
    /// with fixed 8-lane subgroups (lavapipe).
    Windows,
    /// Implicit GEMM with 64 x 64 shared-memory tiles, 4 x 4 outputs per thread and split-K
    /// (`conv2d_gemm.wgsl`); any configuration. For GPUs: autotuning times it there; on CPU
    /// adapters it runs only when asked for (workgroup memory is slow on lavapipe).
    Gemm,
    /// The same kernel with 128 x 128 tiles and 8 x 8 outputs per thread (more FMAs per shared
    /// load, a quarter of the workgroups).
    GemmWide,
    /// Winograd F(2x2, 3x3) (`conv2d_winograd`): input and output transforms around a
    /// 16-group gemm product, 2.25x fewer FMAs; 3x3, unit stride and dilation, one group,
    /// padding at most 2. For GPUs, like the gemm variants.
    Winograd,
    /// Winograd F(4x4, 3x3): 36 transformed taps, 4x fewer FMAs than direct, about 30x the
    /// rounding error of F(2x2, 3x3) (1e-5 of the output's scale at 512 channels, as cuDNN's
    /// fp32 Winograd); same conditions.
    WinogradF4,
}

impl Conv2dVariant {
    /// Every variant, fewest outputs per thread first.
    pub const ALL: [Conv2dVariant; 8] = [
        Conv2dVariant::Direct,
        Conv2dVariant::Winograd,
        Conv2dVariant::WinogradF4,
        Conv2dVariant::Windows,
        Conv2dVariant::Gemm,
        Conv2dVariant::GemmWide,
        Conv2dVariant::Tiled,
        Conv2dVariant::Rows,
    ];

    /// Parses `direct` (or `naive`), `tiled`, `rows`, `windows`, `gemm`, `gemm-wide`,
    /// `winograd` or `winograd-f4`, as
    /// `CNNVIS_CONV_VARIANT` takes them.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "direct" | "naive" => Some(Conv2dVariant::Direct),
            "tiled" => Some(Conv2dVariant::Tiled),
            "rows" => Some(Conv2dVariant::Rows),
            "windows" => Some(Conv2dVariant::Windows),
            "gemm" => Some(Conv2dVariant::Gemm),
            "gemm-wide" => Some(Conv2dVariant::GemmWide),
            "winograd" => Some(Conv2dVariant::Winograd),
            "winograd-f4" => Some(Conv2dVariant::WinogradF4),
            _ => None,
        }
    }

    /// Lower-case name (`direct`, `tiled`, `rows`, `windows`, `gemm`, `gemm-wide`, `winograd`,
    /// `winograd-f4`).
    pub fn name(self) -> &'static str {
        match self {
            Conv2dVariant::Direct => "direct",
            Conv2dVariant::Tiled => "tiled",
            Conv2dVariant::Rows => "rows",
            Conv2dVariant::Windows => "windows",
            Conv2dVariant::Gemm => "gemm",
            Conv2dVariant::GemmWide => "gemm-wide",
            Conv2dVariant::Winograd => "winograd",
            Conv2dVariant::WinogradF4 => "winograd-f4",
        }
    }

    /// The variant a conv2d forward or backward-to-input kernel entry point belongs to.
    pub fn of_kernel(kernel: Kernel) -> Option<Self> {
        match kernel.entry {
            "conv2d_forward" | "conv2d_backward_input" => Some(Conv2dVariant::Direct),
            "conv2d_forward_tiled" | "conv2d_backward_input_tiled" => Some(Conv2dVariant::Tiled),
            "conv2d_forward_rows" | "conv2d_backward_input_rows" => Some(Conv2dVariant::Rows),
            _ if windows::is_conv_kernel(kernel) || windows1::is_conv_kernel(kernel) => {
                Some(Conv2dVariant::Windows)
            }
            _ if winograd::conv_kernel_tile(kernel) == Some(WinogradTile::F4) => {
                Some(Conv2dVariant::WinogradF4)
            }
            _ if winograd::conv_kernel_tile(kernel).is_some() => Some(Conv2dVariant::Winograd),
            _ => match gemm::conv_kernel_tile(kernel)? {
                GemmTile::WIDE => Some(Conv2dVariant::GemmWide),
                _ => Some(Conv2dVariant::Gemm),
            },
        }
    }

    /// Whether this is one of the implicit-GEMM variants.
    pub fn is_gemm(self) -> bool {
        matches!(self, Conv2dVariant::Gemm | Conv2dVariant::GemmWide)
    }

    /// Whether this variant runs on shared-memory gemm tiles (the gemm variants and Winograd's
    /// product): for GPUs; on CPU adapters only when asked for.
    fn uses_gemm_tiles(self) -> bool {
        self.is_gemm() || self.winograd_tile().is_some()
    }

    /// Whether the variant's own kernels apply a neighbouring ReLU as they store
    /// ([`conv2d_forward_relu_cached`], [`conv2d_backward_input_relu_cached`]); the others chain
    /// the ReLU's kernel.
    pub fn fuses_relu(self) -> bool {
        self.uses_gemm_tiles()
    }

    /// The algorithm of a Winograd variant.
    fn winograd_tile(self) -> Option<WinogradTile> {
        match self {
            Conv2dVariant::Winograd => Some(WinogradTile::F2),
            Conv2dVariant::WinogradF4 => Some(WinogradTile::F4),
            _ => None,
        }
    }

    /// The tile of a gemm variant (the small one's for any other).
    fn gemm_tile(self) -> GemmTile {
        match self {
            Conv2dVariant::GemmWide => GemmTile::WIDE,
            _ => GemmTile::SMALL,
        }
    }

    /// Outputs one thread of this variant computes in `pass` (tails included).
    pub fn outputs_per_thread(self, pass: Conv2dPass) -> usize {
        match (self, pass) {
            (Conv2dVariant::Direct, _) => 1,
            (Conv2dVariant::Tiled, _) => TILE_C * TILE_P,
            (Conv2dVariant::Rows, Conv2dPass::Forward) => ROW_C * ROW_Y * ROW_P,
            (Conv2dVariant::Rows, Conv2dPass::BackwardInput) => ROW_C_BWI * ROW_Y * ROW_P,
            (Conv2dVariant::Windows, _) => 24,
            (Conv2dVariant::Gemm, _) => GemmTile::SMALL.outputs_per_thread(),
            (Conv2dVariant::GemmWide, _) => GemmTile::WIDE.outputs_per_thread(),
            (Conv2dVariant::Winograd, _) => 4,
            (Conv2dVariant::WinogradF4, _) => 16,
        }
    }
}

/// The conv2d passes that choose among [`Conv2dVariant`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conv2dPass {
    /// `conv2d_forward`.
    Forward,
    /// `conv2d_backward_input`.
    BackwardInput,
}

/// Whether `ctx` can run [`Conv2dVariant::Windows`] at all (fixed 8-lane subgroups with the
/// `SUBGROUP` feature, `SHADER_INT64`, 15 uniform bindings of 64 KiB); where it can, the shape
/// rules of [`conv2d_variant_threads`] decide.
pub fn conv2d_windows_supported(ctx: &GpuContext) -> bool {
    windows::supported(ctx)
}

/// Threads `variant` launches for `pass` on input shape `x` and weight shape `w`; `None` where
/// the variant does not apply to the configuration.
pub fn conv2d_variant_threads(
    pass: Conv2dPass,
    variant: Conv2dVariant,
    x: &[usize],
    w: &[usize],
    cfg: &Conv2dConfig,
) -> Result<Option<usize>> {
    Ok(variant_threads(
        &geometry("conv2d", x, w, cfg)?,
        pass,
        variant,
    ))
}

/// The k ranges the [`Conv2dVariant::Gemm`] kernel sums `pass` in, for these shapes (1: one,
/// written directly; more: split-K partial sums added by a second launch); `None` where the
/// variant does not apply (its grid would exceed the per-dimension limit).
pub fn conv2d_gemm_splits(
    pass: Conv2dPass,
    x: &[usize],
    w: &[usize],
    cfg: &Conv2dConfig,
) -> Result<Option<usize>> {
    Ok(geometry("conv2d", x, w, cfg)?
        .gemm_plan(pass, GemmTile::SMALL)
        .map(|p| p.splits()))
}

/// The variant `conv2d_forward` / `conv2d_backward_input` pick for these shapes on an adapter
/// of type `device`, without `CNNVIS_CONV_VARIANT` / `CNNVIS_CONV_MIN_THREADS`. CPU adapters
/// (lavapipe): rows where they apply, else tiled with at least two channels per group (not for
/// strided backward passes), else direct; a context that runs the windows kernels takes them
/// first where they apply (see [`conv2d_windows_supported`]: this shape-only rule cannot
/// know). Other adapters: Winograd F(4x4, 3x3) for 3x3 stride-1 passes that write and sum at
/// least 64 channels and make at least 32 of its output tiles, else F(2x2, 3x3) where that one
/// does; else a gemm variant where the pass writes at least 16 channels per group
/// (`gemm-wide` for products of at least 128 rows and columns summing at least 1024 terms
/// that still make 128 workgroups, else `gemm`); otherwise, among the variants whose accumulators fit a GPU thread (not rows
/// or gemm), the one with the most outputs per thread that still launches
/// `GPU_TARGET_THREADS` (8192) threads, else the one launching the most, with Winograd F4
/// taking the direct kernel's place where it applies. (Autotuning, on by default on GPUs,
/// times the candidates instead.)
pub fn select_conv2d_variant(
    pass: Conv2dPass,
    x: &[usize],
    w: &[usize],
    cfg: &Conv2dConfig,
    device: wgpu::DeviceType,
) -> Result<Conv2dVariant> {
    let g = geometry("conv2d", x, w, cfg)?;
    Ok(choose_variant(&g, pass, device, GPU_TARGET_THREADS))
}

/// Channels a thread block spans in `pass` (output channels forward, input channels backward)
/// and the spatial size of the tensor it writes.
fn pass_dims(g: &Geometry, pass: Conv2dPass) -> (usize, usize, usize) {
    match pass {
        Conv2dPass::Forward => (g.cout_g(), g.ho, g.wo),
        Conv2dPass::BackwardInput => (g.cin_g(), g.h, g.w),
    }
}

fn variant_threads(g: &Geometry, pass: Conv2dPass, v: Conv2dVariant) -> Option<usize> {
    let (ch, h, w) = pass_dims(g, pass);
    let groups = g.cfg.groups;
    match v {
        Conv2dVariant::Direct => Some(groups * ch * g.n * h * w),
        Conv2dVariant::Tiled => Some(groups * ch.div_ceil(TILE_C) * (g.n * h * w).div_ceil(TILE_P)),
        Conv2dVariant::Rows => g.rows().then(|| {
            let rc = match pass {
                Conv2dPass::Forward => ROW_C,
                Conv2dPass::BackwardInput => ROW_C_BWI,
            };
            groups * ch.div_ceil(rc) * g.n * h.div_ceil(ROW_Y) * w.div_ceil(ROW_P)
        }),
        Conv2dVariant::Windows => g.window_plan(pass).map(|p| p.threads()),
        Conv2dVariant::Gemm => g.gemm_plan(pass, GemmTile::SMALL).map(|p| p.threads()),
        Conv2dVariant::GemmWide => g.gemm_plan(pass, GemmTile::WIDE).map(|p| p.threads()),
        Conv2dVariant::Winograd | Conv2dVariant::WinogradF4 => g
            .winograd_plan(pass, v.winograd_tile()?)
            .map(|p| p.threads()),
    }
}

/// The GPU rule's Winograd variant for `pass`, if it takes one (see `WINOGRAD_MIN_CHANNELS`).
fn winograd_choice(g: &Geometry, pass: Conv2dPass) -> Option<Conv2dVariant> {
    let (ch, _, _) = pass_dims(g, pass);
    let summed = match pass {
        Conv2dPass::Forward => g.cin_g(),
        Conv2dPass::BackwardInput => g.cout_g(),
    };
    if ch < WINOGRAD_MIN_CHANNELS || summed < WINOGRAD_MIN_CHANNELS {
        return None;
    }
    [Conv2dVariant::WinogradF4, Conv2dVariant::Winograd]
        .into_iter()
        .find(|&v| {
            v.winograd_tile()
                .and_then(|t| g.winograd_plan(pass, t))
                .is_some_and(|p| p.tiles() >= WINOGRAD_MIN_TILES)
        })
}

/// The GPU rule's gemm variant for `pass`, if it takes one (see `GEMM_MIN_CHANNELS`).
fn gemm_choice(g: &Geometry, pass: Conv2dPass) -> Option<Conv2dVariant> {
    let (ch, h, w) = pass_dims(g, pass);
    if ch < GEMM_MIN_CHANNELS {
        return None;
    }
    let summed = match pass {
        Conv2dPass::Forward => g.cin_g(),
        Conv2dPass::BackwardInput => g.cout_g(),
    };
    let wide = ch >= GEMM_WIDE_MIN_ROWS
        && g.n * h * w >= GEMM_WIDE_MIN_COLS
        && summed * g.kh * g.kw >= GEMM_WIDE_MIN_K;
    [
        (wide, Conv2dVariant::GemmWide, GemmTile::WIDE),
        (true, Conv2dVariant::Gemm, GemmTile::SMALL),
    ]
    .into_iter()
    .find(|&(ok, v, tile)| {
        let plan = g.gemm_plan(pass, tile);
        ok && plan.is_some_and(|p| {
            v != Conv2dVariant::GemmWide || p.workgroups() >= GEMM_WIDE_MIN_WORKGROUPS
        })
    })
    .map(|(_, v, _)| v)
}

/// The gemm plan of a Winograd product (a 16- or 36-group 1x1 convolution): the tile
/// autotuning finds faster for that convolution (cached like any conv's choice), else the one
/// the GPU rule gives it. The rule's thresholds come from 3x3 convs, whose reductions are 9x
/// longer than a product's.
fn winograd_product_plan(ctx: &GpuContext, s: &GemmShape) -> Result<GemmPlan> {
    const OP: &str = "conv2d_winograd";
    let w = [s.y[1], s.x[1] / s.groups, 1, 1];
    let cfg = Conv2dConfig::new().groups(s.groups);
    let g = geometry(OP, &s.x, &w, &cfg)?;
    let pass = Conv2dPass::Forward;
    let rule = gemm_choice(&g, pass).unwrap_or(Conv2dVariant::Gemm);
    let tiles = [Conv2dVariant::Gemm, Conv2dVariant::GemmWide];
    let v = tuned_variant(ctx, &g, pass, rule, || {
        tiles
            .into_iter()
            .filter(|&v| variant_threads(&g, pass, v).is_some())
            .collect()
    })?;
    let v = if v.is_gemm() { v } else { rule };
    g.gemm_plan(pass, v.gemm_tile())
        .ok_or_else(|| Error::shape(OP, "the product's gemm grid is too large"))
}

fn choose_variant(
    g: &Geometry,
    pass: Conv2dPass,
    device: wgpu::DeviceType,
    target_threads: usize,
) -> Conv2dVariant {
    let (ch, _, _) = pass_dims(g, pass);
    let tiled_ok = ch >= TILED_MIN_CHANNELS;
    if device == wgpu::DeviceType::Cpu {
        // The row-block kernels give each thread a large register tile: right for CPU drivers
        // such as lavapipe, where loads dominate and a few cores need few threads.
        // Strided backward passes: the direct kernel runs its columns phase by phase, so a
        // lane group skips the same taps (the tiled kernel's blocks mix phases).
        let strided_backward = pass == Conv2dPass::BackwardInput && g.cfg.stride != [1, 1];
        return if g.rows() {
            Conv2dVariant::Rows
        } else if tiled_ok && !strided_backward {
            Conv2dVariant::Tiled
        } else {
            Conv2dVariant::Direct
        };
    }
    if let Some(v) = winograd_choice(g, pass).or_else(|| gemm_choice(g, pass)) {
        return v;
    }
    let candidates: Vec<(Conv2dVariant, usize)> = Conv2dVariant::ALL
        .into_iter()
        .filter(|&v| v.outputs_per_thread(pass) <= GPU_MAX_OUTPUTS_PER_THREAD)
        .filter(|&v| v != Conv2dVariant::Windows && !v.uses_gemm_tiles())
        .filter(|&v| v != Conv2dVariant::Tiled || tiled_ok)
        .filter_map(|v| Some((v, variant_threads(g, pass, v)?)))
        .collect();
    let widest = candidates
        .iter()
        .filter(|&&(_, t)| t >= target_threads)
        .max_by_key(|&&(v, _)| v.outputs_per_thread(pass));
    let pick = widest
        .or_else(|| candidates.iter().max_by_key(|&&(_, t)| t))
        .map_or(Conv2dVariant::Direct, |&(v, _)| v);
    // Where only the one-thread-per-output kernel fills the chip (the 3-channel backward pass of
    // a first layer at batch 1), F(4x4, 3x3) beat it by 1.3x on the H100 (same log).
    let f4 = variant_threads(g, pass, Conv2dVariant::WinogradF4).is_some();
    if pick == Conv2dVariant::Direct && f4 {
        Conv2dVariant::WinogradF4
    } else {
        pick
    }
}

/// `CNNVIS_CONV_VARIANT` and `CNNVIS_CONV_MIN_THREADS`, read once per process.
struct Overrides {
    variant: Option<Conv2dVariant>,
    min_threads: usize,
    /// `CNNVIS_CONV_AUTOTUNE`: `None` = on for GPUs, off for CPU adapters.
    autotune: Option<bool>,
    error: Option<String>,
}

fn overrides() -> &'static Overrides {
    static ONCE: std::sync::OnceLock<Overrides> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let mut o = Overrides {
            variant: None,
            min_threads: GPU_TARGET_THREADS,
            autotune: None,
            error: None,
        };
        if let Ok(v) = std::env::var("CNNVIS_CONV_AUTOTUNE") {
            match v.trim().to_ascii_lowercase().as_str() {
                "" | "auto" => {}
                "1" | "on" | "true" => o.autotune = Some(true),
                "0" | "off" | "false" => o.autotune = Some(false),
                _ => o.error = Some(format!("CNNVIS_CONV_AUTOTUNE={v:?} is not 0 or 1")),
            }
        }
        if let Ok(v) = std::env::var("CNNVIS_CONV_VARIANT") {
            match Conv2dVariant::parse(&v) {
                Some(v) => o.variant = Some(v),
                None if v.trim().is_empty() || v.trim() == "auto" => {}
                None => {
                    o.error = Some(format!(
                    "CNNVIS_CONV_VARIANT={v:?} is not one of auto, windows, rows, tiled, direct \
                         (naive)"
                ))
                }
            }
        }
        if let Ok(v) = std::env::var("CNNVIS_CONV_MIN_THREADS") {
            match v.trim().parse::<usize>() {
                Ok(n) => o.min_threads = n,
                Err(_) => {
                    o.error = Some(format!(
                        "CNNVIS_CONV_MIN_THREADS={v:?} is not a non-negative integer"
                    ))
                }
            }
        }
        o
    })
}

/// The variant a pass runs: `forced` when given (an error where it does not apply), else
/// `CNNVIS_CONV_VARIANT` where it applies, else the autotuned choice where autotuning is on,
/// else [`select_conv2d_variant`]'s rule for the context's adapter (with
/// `CNNVIS_CONV_MIN_THREADS` as the thread target).
fn pick_variant(
    ctx: &GpuContext,
    op: &'static str,
    g: &Geometry,
    pass: Conv2dPass,
    forced: Option<Conv2dVariant>,
) -> Result<Conv2dVariant> {
    let windows_ok =
        windows::supported(ctx) && variant_threads(g, pass, Conv2dVariant::Windows).is_some();
    if forced == Some(Conv2dVariant::Windows) && !windows_ok {
        return Err(Error::shape(
            op,
            if windows::supported(ctx) {
                format!(
                    "the windows variant needs one group, unit dilation, equal strides, and a \
                     3x3 kernel with padding at most 2 or a 1x1 kernel without padding, with \
                     operands that fit its 64 KiB windows ({:?}, kernel {}x{}, {} -> {} \
                     channels, {}x{})",
                    g.cfg, g.kh, g.kw, g.cin, g.cout, g.h, g.w
                )
            } else {
                format!(
                    "the windows variant needs fixed 8-lane subgroups with the SUBGROUP feature, \
                     the SHADER_INT64 feature and 15 uniform bindings of 64 KiB; adapter {} has \
                     subgroup sizes {:?}",
                    ctx.adapter(),
                    ctx.adapter().subgroup_sizes
                )
            },
        ));
    }
    if let Some(v) = forced {
        return match variant_threads(g, pass, v) {
            Some(_) => Ok(v),
            None => Err(Error::shape(
                op,
                if v.winograd_tile().is_some() {
                    format!(
                        "the winograd variant needs a 3x3 kernel with unit stride and \
                         dilation, one group and padding at most 2, and one image's transforms \
                         within {} MiB ({:?}, kernel {}x{}, x [{}, {}, {}, {}])",
                        winograd::WORKSPACE_BYTES >> 20,
                        g.cfg,
                        g.kh,
                        g.kw,
                        g.n,
                        g.cin,
                        g.h,
                        g.w
                    )
                } else if v.is_gemm() {
                    format!(
                        "the gemm variant's grid exceeds 65535 workgroups per dimension ({:?}, \
                         x [{}, {}, {}, {}])",
                        g.cfg, g.n, g.cin, g.h, g.w
                    )
                } else {
                    format!(
                        "the {} variant needs Kw == 3 with unit stride and dilation ({:?}, Kw = {})",
                        v.name(),
                        g.cfg,
                        g.kw
                    )
                },
            )),
        };
    }
    let o = overrides();
    if let Some(e) = &o.error {
        return Err(Error::shape(op, e.clone()));
    }
    for v in [THREAD_VARIANT.with(|t| t.get()), o.variant]
        .into_iter()
        .flatten()
    {
        if variant_threads(g, pass, v).is_some() && (v != Conv2dVariant::Windows || windows_ok) {
            return Ok(v);
        }
    }
    let device = ctx.adapter().device_type;
    // CPU drivers with 8-lane subgroups: the windows kernel wherever it applies.
    let rule = if device == wgpu::DeviceType::Cpu && windows_ok {
        Conv2dVariant::Windows
    } else {
        choose_variant(g, pass, device, o.min_threads)
    };
    tuned_variant(ctx, g, pass, rule, || {
        let mut candidates = autotune_candidates(g, pass, device);
        if windows_ok {
            candidates.push(Conv2dVariant::Windows);
        }
        candidates
    })
}

/// The autotuning mode in force on this thread for an adapter of type `device`.
fn autotune_mode(device: wgpu::DeviceType) -> Conv2dAutotune {
    THREAD_AUTOTUNE
        .with(|m| m.get())
        .unwrap_or(match overrides().autotune {
            Some(true) => Conv2dAutotune::On,
            Some(false) => Conv2dAutotune::Off,
            None if device == wgpu::DeviceType::Cpu => Conv2dAutotune::Off,
            None => Conv2dAutotune::On,
        })
}

/// `rule` where autotuning is off; else the cached choice for `g` and `pass`, or the fastest of
/// `candidates()` timed now (`rule` if there is only one or timing fails) and cached.
fn tuned_variant(
    ctx: &GpuContext,
    g: &Geometry,
    pass: Conv2dPass,
    rule: Conv2dVariant,
    candidates: impl FnOnce() -> Vec<Conv2dVariant>,
) -> Result<Conv2dVariant> {
    let mode = autotune_mode(ctx.adapter().device_type);
    if mode == Conv2dAutotune::Off {
        return Ok(rule);
    }
    let adapter = ctx.adapter().to_string();
    let key = Conv2dAutotuneKey::new(&adapter, pass, g);
    let cached = autotune_cache().get(&key).map(|e| e.variant);
    if let Some(v) = cached {
        return Ok(v);
    }
    let candidates = candidates();
    // Decisions of earlier runs, unless this thread chose its own mode (tests, benchmarks).
    let file = ctx
        .autotune_cache_path()
        .filter(|_| THREAD_AUTOTUNE.with(|m| m.get()).is_none());
    let saved = file
        .and_then(|f| crate::gpu::autotune_cache::lookup(f, &key.file_key()))
        .and_then(|name| Conv2dVariant::parse(&name))
        .filter(|v| candidates.len() >= 2 && candidates.contains(v));
    if let Some(variant) = saved {
        autotune_cache()
            .entry(key.clone())
            .or_insert(Conv2dAutotuneEntry {
                key,
                variant,
                timings_ms: Vec::new(),
                error: None,
                tunings: 0,
                from_file: true,
            });
        return Ok(variant);
    }
    let (variant, timings_ms, error) = if candidates.len() < 2 {
        (
            candidates.first().copied().unwrap_or(rule),
            Vec::new(),
            None,
        )
    } else {
        let timed =
            crate::gpu::context::untracked_runs(ctx, || autotune(ctx, g, pass, &candidates, mode));
        match timed {
            Ok((v, t)) => {
                if let Some(f) = file {
                    crate::gpu::autotune_cache::record(f, &adapter, &key.file_key(), v.name());
                }
                (v, t, None)
            }
            Err(e) => (rule, Vec::new(), Some(e.to_string())),
        }
    };
    let mut cache = autotune_cache();
    let entry = cache
        .entry(key.clone())
        .or_insert_with(|| Conv2dAutotuneEntry {
            key,
            variant,
            timings_ms: Vec::new(),
            error: None,
            tunings: 0,
            from_file: false,
        });
    entry.variant = variant;
    entry.timings_ms = timings_ms;
    entry.error = error;
    entry.tunings += 1;
    Ok(variant)
}

/// Whether conv dispatches time their candidate variants at first use (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv2dAutotune {
    /// No timing: the per-adapter rule ([`select_conv2d_variant`]) decides.
    Off,
    /// Time the candidates at first use and cache the fastest, on any adapter (CPUs included).
    On,
    /// As `On`, but every timing fails: exercises the fallback to the rule (for tests).
    FailForTesting,
}

thread_local! {
    static THREAD_AUTOTUNE: std::cell::Cell<Option<Conv2dAutotune>> =
        const { std::cell::Cell::new(None) };
}

/// Runs `f` with conv dispatches built on this thread using autotuning `mode`, whatever
/// `CNNVIS_CONV_AUTOTUNE` says (`CNNVIS_CONV_VARIANT` still wins); restores the previous mode.
pub fn with_conv2d_autotune<T>(mode: Conv2dAutotune, f: impl FnOnce() -> T) -> T {
    with_thread_value(&THREAD_AUTOTUNE, Some(mode), f)
}

thread_local! {
    static THREAD_VARIANT: std::cell::Cell<Option<Conv2dVariant>> =
        const { std::cell::Cell::new(None) };
}

/// Runs `f` with conv forward and backward-to-input dispatches built on this thread using
/// `variant` wherever it applies (elsewhere the usual choice), as `CNNVIS_CONV_VARIANT` does
/// for a whole process; wins over it. Restores the previous setting.
pub fn with_conv2d_variant<T>(variant: Conv2dVariant, f: impl FnOnce() -> T) -> T {
    with_thread_value(&THREAD_VARIANT, Some(variant), f)
}

thread_local! {
    static STRIDED_COLS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with the windows variant's strided 3x3 convs (and 3x3 backward passes to fewer
/// than 8 channels) built on this thread as a column matrix and a 1x1 product (`true`, the
/// default: about 2x faster on lavapipe) or by the 3x3 kernel (at stride 1 with s^2 the work
/// where strided; `false`: the fallback where the column matrix does not fit, for tests and
/// benchmarks); restores the previous setting.
pub fn with_conv2d_strided_cols<T>(on: bool, f: impl FnOnce() -> T) -> T {
    with_thread_value(&STRIDED_COLS, on, f)
}

/// What the autotuning cache is keyed by: adapter, pass, input and weight shapes, config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conv2dAutotuneKey {
    /// The adapter as [`crate::gpu::AdapterSummary`] displays it (name, backend, type, driver).
    pub adapter: String,
    /// The pass tuned.
    pub pass: Conv2dPass,
    /// Input shape [N, Cin, H, W] (dx's shape for backward to the input).
    pub x: [usize; 4],
    /// Weight shape [Cout, Cin/groups, Kh, Kw].
    pub w: [usize; 4],
    /// Stride, padding, dilation, groups.
    pub cfg: Conv2dConfig,
}

impl Conv2dAutotuneKey {
    fn new(adapter: &str, pass: Conv2dPass, g: &Geometry) -> Self {
        Conv2dAutotuneKey {
            adapter: adapter.to_string(),
            pass,
            x: [g.n, g.cin, g.h, g.w],
            w: [g.cout, g.cin_g(), g.kh, g.kw],
            cfg: g.cfg,
        }
    }

    /// The key as the autotuning file writes it (the adapter is in the file's name).
    pub fn file_key(&self) -> String {
        let c = &self.cfg;
        format!(
            "{:?} x{:?} w{:?} stride{:?} padding{:?} dilation{:?} groups {}",
            self.pass, self.x, self.w, c.stride, c.padding, c.dilation, c.groups
        )
    }

    /// The key for these shapes; an error where they do not form a valid convolution.
    pub fn for_shapes(
        adapter: &str,
        pass: Conv2dPass,
        x: &[usize],
        w: &[usize],
        cfg: &Conv2dConfig,
    ) -> Result<Self> {
        Ok(Self::new(adapter, pass, &geometry("conv2d", x, w, cfg)?))
    }
}

/// One cached autotuning decision.
#[derive(Debug, Clone)]
pub struct Conv2dAutotuneEntry {
    /// What was tuned.
    pub key: Conv2dAutotuneKey,
    /// The variant chosen (the rule's where tuning failed).
    pub variant: Conv2dVariant,
    /// Milliseconds per launch of each candidate timed (empty with one candidate or on error).
    pub timings_ms: Vec<(Conv2dVariant, f64)>,
    /// Why tuning fell back to the rule, if it did.
    pub error: Option<String>,
    /// How many times this key was tuned (1 unless two threads raced to first use; 0 when
    /// the choice came from an earlier run's file).
    pub tunings: usize,
    /// Whether the choice was read from the file of an earlier run
    /// ([`crate::gpu::autotune_cache`]) instead of timed in this one.
    pub from_file: bool,
}

type AutotuneCache = std::collections::HashMap<Conv2dAutotuneKey, Conv2dAutotuneEntry>;

fn autotune_cache() -> std::sync::MutexGuard<'static, AutotuneCache> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<AutotuneCache>> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Every autotuning decision made so far in this process (for benchmarks and debugging).
pub fn conv2d_autotune_choices() -> Vec<Conv2dAutotuneEntry> {
    autotune_cache().values().cloned().collect()
}

/// The variants autotuning times for `pass` on an adapter of type `device`: those that apply,
/// tiled only with two or more channels per group, rows only on CPU adapters. A context that
/// runs [`Conv2dVariant::Windows`] ([`conv2d_windows_supported`]) also times that one where
/// it applies.
pub fn conv2d_autotune_candidates(
    pass: Conv2dPass,
    x: &[usize],
    w: &[usize],
    cfg: &Conv2dConfig,
    device: wgpu::DeviceType,
) -> Result<Vec<Conv2dVariant>> {
    Ok(autotune_candidates(
        &geometry("conv2d", x, w, cfg)?,
        pass,
        device,
    ))
}

fn autotune_candidates(
    g: &Geometry,
    pass: Conv2dPass,
    device: wgpu::DeviceType,
) -> Vec<Conv2dVariant> {
    let (ch, _, _) = pass_dims(g, pass);
    Conv2dVariant::ALL
        .into_iter()
        .filter(|&v| {
            device == wgpu::DeviceType::Cpu
                || v.outputs_per_thread(pass) <= GPU_MAX_OUTPUTS_PER_THREAD
        })
        .filter(|&v| v != Conv2dVariant::Tiled || ch >= TILED_MIN_CHANNELS)
        .filter(|&v| v != Conv2dVariant::Windows)
        .filter(|&v| !v.uses_gemm_tiles() || device != wgpu::DeviceType::Cpu)
        .filter(|&v| variant_threads(g, pass, v).is_some())
        .collect()
}

/// Timed submissions per candidate, after one warm-up and one calibration run.
const AUTOTUNE_RUNS: usize = 3;
/// Launches per timed submission are raised until one submission takes about this long...
const AUTOTUNE_TARGET_S: f64 = 2e-3;
/// ...but never beyond this many.
const AUTOTUNE_MAX_REPS: usize = 16;

/// Times each candidate on scratch tensors of `g`'s shapes; the fastest and every median.
fn autotune(
    ctx: &GpuContext,
    g: &Geometry,
    pass: Conv2dPass,
    candidates: &[Conv2dVariant],
    mode: Conv2dAutotune,
) -> Result<(Conv2dVariant, Vec<(Conv2dVariant, f64)>)> {
    const OP: &str = "conv2d autotune";
    if mode == Conv2dAutotune::FailForTesting {
        return Err(Error::shape(OP, "failure injected for testing"));
    }
    let x = Tensor::zeros(ctx, &[g.n, g.cin, g.h, g.w])?;
    let w = Tensor::zeros(ctx, &[g.cout, g.cin_g(), g.kh, g.kw])?;
    let y = Tensor::zeros(ctx, &g.y_shape())?;
    // The caller's earlier work must not be timed.
    ctx.wait()?;
    let submit = |d: &Dispatch, reps: usize| -> Result<f64> {
        let ds = vec![d; reps];
        let t = std::time::Instant::now();
        ctx.run(&ds)?;
        ctx.wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let mut timings = Vec::with_capacity(candidates.len());
    for &v in candidates {
        // As a model runs them: what a variant prepares from the weights alone is made once,
        // outside the timing.
        let cache = Some(WeightPacks::new());
        let d = match pass {
            Conv2dPass::Forward => {
                forward(ctx, Some(v), &y, &x, &w, None, &g.cfg, cache.as_ref(), None)?
            }
            Conv2dPass::BackwardInput => backward_input(
                ctx,
                Some(v),
                &x,
                &y,
                &w,
                &g.cfg,
                false,
                cache.as_ref(),
                None,
            )?,
        };
        submit(&d, 1)?;
        let once = submit(&d, 1)?;
        let reps =
            ((AUTOTUNE_TARGET_S / once.max(1e-9)).ceil() as usize).clamp(1, AUTOTUNE_MAX_REPS);
        let mut runs = (0..AUTOTUNE_RUNS)
            .map(|_| Ok(submit(&d, reps)? / reps as f64))
            .collect::<Result<Vec<f64>>>()?;
        runs.sort_by(f64::total_cmp);
        timings.push((v, runs[runs.len() / 2] * 1e3));
    }
    let best = timings
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|&(v, _)| v)
        .ok_or_else(|| Error::shape(OP, "no candidate variant"))?;
    Ok((best, timings))
}

fn tiled_grid(ctx: &GpuContext, threads: usize) -> Result<[u32; 3]> {
    grid_for(
        threads,
        TILED_WG,
        ctx.limits().max_compute_workgroups_per_dimension,
    )
}

/// `y = conv2d(x, w) + b`; `y` must have shape [`conv2d_output_shape`]. The kernel variant is
/// autotuned at the shape's first use on GPUs (see the module docs; this build then blocks
/// until earlier work finishes and times the candidates on scratch tensors), else follows
/// [`select_conv2d_variant`] for the context's adapter; the environment variable
/// `CNNVIS_CONV_VARIANT=windows|rows|tiled|direct` forces one wherever it applies (read once per
/// process), and `CNNVIS_CONV_MIN_THREADS=N` replaces the GPU thread target of the rule.
pub fn conv2d_forward(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    forward(ctx, None, y, x, w, b, cfg, None, None)
}

/// [`conv2d_forward`] keeping whatever the kernel prepares from `w` alone (the windows
/// variant's packed weights) in `cache`, built now and reused by later calls: for weights that
/// do not change, such as a loaded model's.
pub fn conv2d_forward_cached(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    cfg: &Conv2dConfig,
    cache: &Conv2dWeightCache,
) -> Result<Dispatch> {
    forward(ctx, None, y, x, w, b, cfg, Some(cache), None)
}

/// [`conv2d_forward_cached`] followed by a ReLU: `relu_y = max(y, 0)` as well as `y` (which
/// stays the conv's output, for callers that read it). The Winograd and gemm variants apply
/// the ReLU as they store `y`, saving its launch and a read of `y`; the others run the ReLU's own
/// kernel after the conv, in the same dispatch.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_relu_cached(
    ctx: &GpuContext,
    y: &Tensor,
    relu_y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    cfg: &Conv2dConfig,
    cache: &Conv2dWeightCache,
) -> Result<Dispatch> {
    forward(ctx, None, y, x, w, b, cfg, Some(cache), Some(relu_y))
}

/// [`conv2d_forward`] with the kernel variant given; an error where it does not apply.
pub fn conv2d_forward_variant(
    ctx: &GpuContext,
    variant: Conv2dVariant,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<Dispatch> {
    forward(ctx, Some(variant), y, x, w, b, cfg, None, None)
}

#[allow(clippy::too_many_arguments)]
fn forward(
    ctx: &GpuContext,
    forced: Option<Conv2dVariant>,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    cfg: &Conv2dConfig,
    cache: Option<&Conv2dWeightCache>,
    relu_y: Option<&Tensor>,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_forward";
    let g = geometry(OP, x.shape(), w.shape(), cfg)?;
    expect_dtype(OP, "x", x, DType::F32)?;
    expect_dtype(OP, "w", w, DType::F32)?;
    expect_dtype(OP, "y", y, DType::F32)?;
    expect_shape(OP, "y", y, &g.y_shape())?;
    if let Some(r) = relu_y {
        expect_dtype(OP, "relu_y", r, DType::F32)?;
        expect_shape(OP, "relu_y", r, &g.y_shape())?;
    }
    let placeholder;
    let bias = match b {
        Some(b) => {
            expect_dtype(OP, "b", b, DType::F32)?;
            expect_shape(OP, "b", b, &[g.cout])?;
            b
        }
        None => {
            placeholder = ctx.placeholder()?;
            &placeholder
        }
    };
    let mut params = g.params(OP)?;
    params.has_bias = b.is_some() as i32;
    let bindings = [(1, x), (2, w), (3, bias), (4, y)];
    let variant = pick_variant(ctx, OP, &g, Conv2dPass::Forward, forced)?;
    let conv = match variant {
        Conv2dVariant::Windows => {
            let plan = g
                .window_plan(Conv2dPass::Forward)
                .ok_or_else(|| Error::shape(OP, "the windows variant does not apply"))?;
            plan.build(ctx, y, x, w, b, false, false, cache)
        }
        v @ (Conv2dVariant::Gemm | Conv2dVariant::GemmWide) => {
            let plan = g
                .gemm_plan(Conv2dPass::Forward, v.gemm_tile())
                .ok_or_else(|| Error::shape(OP, "the gemm variant's grid is too large"))?;
            let epilogue = relu_y.map_or(ReluEpilogue::None, ReluEpilogue::Forward);
            return gemm::build(
                ctx,
                &g.gemm_shape(),
                &plan,
                false,
                y,
                x,
                w,
                b,
                false,
                epilogue,
            );
        }
        v @ (Conv2dVariant::Winograd | Conv2dVariant::WinogradF4) => {
            let plan = v
                .winograd_tile()
                .and_then(|t| g.winograd_plan(Conv2dPass::Forward, t))
                .ok_or_else(|| Error::shape(OP, "the winograd variant does not apply"))?;
            let product = |s: &GemmShape| winograd_product_plan(ctx, s);
            let epilogue = relu_y.map_or(ReluEpilogue::None, ReluEpilogue::Forward);
            return plan.build(ctx, y, x, w, b, false, false, epilogue, cache, product);
        }
        Conv2dVariant::Rows => {
            let blocks_c = g.cout_g().div_ceil(ROW_C);
            let segs = g.wo.div_ceil(ROW_P);
            let threads = g.cfg.groups * blocks_c * g.n * g.ho.div_ceil(ROW_Y) * segs;
            params.blocks_c = to_i32(OP, "channel blocks", blocks_c)?;
            params.segs = to_i32(OP, "row segments", segs)?;
            params.threads = to_i32(OP, "threads", threads)?;
            ctx.dispatch(FORWARD_ROWS, &params, &bindings, tiled_grid(ctx, threads)?)
        }
        Conv2dVariant::Tiled => {
            let blocks_c = g.cout_g().div_ceil(TILE_C);
            let blocks_p = (g.n * g.ho * g.wo).div_ceil(TILE_P);
            let threads = g.cfg.groups * blocks_c * blocks_p;
            params.blocks_c = to_i32(OP, "channel blocks", blocks_c)?;
            params.blocks_p = to_i32(OP, "position blocks", blocks_p)?;
            params.threads = to_i32(OP, "threads", threads)?;
            ctx.dispatch(FORWARD_TILED, &params, &bindings, tiled_grid(ctx, threads)?)
        }
        Conv2dVariant::Direct => {
            let threads = y.numel();
            params.threads = to_i32(OP, "threads", threads)?;
            ctx.dispatch(FORWARD, &params, &bindings, ctx.grid_1d(threads)?)
        }
    }?;
    match relu_y {
        Some(r) => Ok(Dispatch::chain(
            conv.kernel(),
            vec![conv, relu_forward(ctx, r, y)?],
        )),
        None => Ok(conv),
    }
}

/// Gradient to the input: `dx = conv_transpose2d(dy, w)`. With `accumulate` it is added to `dx`.
/// The kernel variant is chosen as in [`conv2d_forward`] (same environment variables).
pub fn conv2d_backward_input(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    cfg: &Conv2dConfig,
    accumulate: bool,
) -> Result<Dispatch> {
    backward_input(ctx, None, dx, dy, w, cfg, accumulate, None, None)
}

/// [`conv2d_backward_input`] with packed weights kept in `cache` (see
/// [`conv2d_forward_cached`]).
pub fn conv2d_backward_input_cached(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    cfg: &Conv2dConfig,
    accumulate: bool,
    cache: &Conv2dWeightCache,
) -> Result<Dispatch> {
    backward_input(ctx, None, dx, dy, w, cfg, accumulate, Some(cache), None)
}

/// [`conv2d_backward_input_cached`] through the ReLU that produced the conv's input: `dx` is
/// the gradient at that ReLU's input `relu_x`, `rule` applied to the conv's gradient (any rule
/// but [`ReluRule::Redirected`], whose per-image flags need their own launches). The Winograd
/// and gemm variants apply the rule as they store, saving the ReLU's launch and the intermediate
/// gradient; the others write the conv's gradient into a scratch tensor and run the ReLU's
/// backward kernel after it, in the same dispatch.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_input_relu_cached(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    cfg: &Conv2dConfig,
    relu_x: &Tensor,
    rule: ReluRule,
    accumulate: bool,
    cache: &Conv2dWeightCache,
) -> Result<Dispatch> {
    let relu = Some((relu_x, rule));
    backward_input(ctx, None, dx, dy, w, cfg, accumulate, Some(cache), relu)
}

/// [`conv2d_backward_input`] with the kernel variant given; an error where it does not apply.
pub fn conv2d_backward_input_variant(
    ctx: &GpuContext,
    variant: Conv2dVariant,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    cfg: &Conv2dConfig,
    accumulate: bool,
) -> Result<Dispatch> {
    backward_input(ctx, Some(variant), dx, dy, w, cfg, accumulate, None, None)
}

#[allow(clippy::too_many_arguments)]
fn backward_input(
    ctx: &GpuContext,
    forced: Option<Conv2dVariant>,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    cfg: &Conv2dConfig,
    accumulate: bool,
    cache: Option<&Conv2dWeightCache>,
    relu: Option<(&Tensor, ReluRule)>,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_backward_input";
    let g = geometry(OP, dx.shape(), w.shape(), cfg)?;
    expect_dtype(OP, "dx", dx, DType::F32)?;
    expect_dtype(OP, "dy", dy, DType::F32)?;
    expect_dtype(OP, "w", w, DType::F32)?;
    expect_shape(OP, "dy", dy, &g.y_shape())?;
    if let Some((x, rule)) = relu {
        expect_dtype(OP, "relu_x", x, DType::F32)?;
        expect_shape(OP, "relu_x", x, dx.shape())?;
        if rule == ReluRule::Redirected {
            return Err(Error::shape(
                OP,
                "the redirected ReLU rule needs per-image flags: run relu_backward_redirected \
                 after the conv",
            ));
        }
    }
    let variant = pick_variant(ctx, OP, &g, Conv2dPass::BackwardInput, forced)?;
    let none = ReluEpilogue::None;
    let Some((x, rule)) = relu else {
        return backward_input_conv(ctx, &g, variant, dx, dy, w, accumulate, cache, none);
    };
    if variant.fuses_relu() {
        let epilogue = ReluEpilogue::Backward(x, rule);
        return backward_input_conv(ctx, &g, variant, dx, dy, w, accumulate, cache, epilogue);
    }
    // Without a fused kernel: the conv's gradient into scratch, then the ReLU's rule.
    let scratch = Tensor::empty(ctx, dx.shape(), DType::F32)?;
    let conv = backward_input_conv(ctx, &g, variant, &scratch, dy, w, false, cache, none)?;
    let after = relu_backward(ctx, dx, &scratch, x, rule, accumulate)?;
    Ok(Dispatch::chain(conv.kernel(), vec![conv, after]))
}

/// The launches of one backward-to-input pass on `variant` (checked by the caller), applying
/// `epilogue` where the variant [fuses a ReLU](Conv2dVariant::fuses_relu) (else it is ignored).
#[allow(clippy::too_many_arguments)]
fn backward_input_conv(
    ctx: &GpuContext,
    g: &Geometry,
    variant: Conv2dVariant,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    accumulate: bool,
    cache: Option<&Conv2dWeightCache>,
    epilogue: ReluEpilogue<'_>,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_backward_input";
    let mut params = g.params(OP)?;
    params.accumulate = accumulate as i32;
    let bindings = [(2, w), (5, dy), (6, dx)];
    match variant {
        Conv2dVariant::Windows => {
            let plan = g
                .window_plan(Conv2dPass::BackwardInput)
                .ok_or_else(|| Error::shape(OP, "the windows variant does not apply"))?;
            plan.build(ctx, dx, dy, w, None, true, accumulate, cache)
        }
        v @ (Conv2dVariant::Gemm | Conv2dVariant::GemmWide) => {
            let plan = g
                .gemm_plan(Conv2dPass::BackwardInput, v.gemm_tile())
                .ok_or_else(|| Error::shape(OP, "the gemm variant's grid is too large"))?;
            gemm::build(
                ctx,
                &g.gemm_shape(),
                &plan,
                true,
                dx,
                dy,
                w,
                None,
                accumulate,
                epilogue,
            )
        }
        v @ (Conv2dVariant::Winograd | Conv2dVariant::WinogradF4) => {
            let plan = v
                .winograd_tile()
                .and_then(|t| g.winograd_plan(Conv2dPass::BackwardInput, t))
                .ok_or_else(|| Error::shape(OP, "the winograd variant does not apply"))?;
            let product = |s: &GemmShape| winograd_product_plan(ctx, s);
            plan.build(
                ctx, dx, dy, w, None, true, accumulate, epilogue, cache, product,
            )
        }
        Conv2dVariant::Rows => {
            let blocks_c = g.cin_g().div_ceil(ROW_C_BWI);
            let segs = g.w.div_ceil(ROW_P);
            let threads = g.cfg.groups * blocks_c * g.n * g.h.div_ceil(ROW_Y) * segs;
            params.blocks_c = to_i32(OP, "channel blocks", blocks_c)?;
            params.segs = to_i32(OP, "row segments", segs)?;
            params.threads = to_i32(OP, "threads", threads)?;
            ctx.dispatch(
                BACKWARD_INPUT_ROWS,
                &params,
                &bindings,
                tiled_grid(ctx, threads)?,
            )
        }
        Conv2dVariant::Tiled => {
            let blocks_c = g.cin_g().div_ceil(TILE_C);
            let blocks_p = (g.n * g.h * g.w).div_ceil(TILE_P);
            let threads = g.cfg.groups * blocks_c * blocks_p;
            params.blocks_c = to_i32(OP, "channel blocks", blocks_c)?;
            params.blocks_p = to_i32(OP, "position blocks", blocks_p)?;
            params.threads = to_i32(OP, "threads", threads)?;
            ctx.dispatch(
                BACKWARD_INPUT_TILED,
                &params,
                &bindings,
                tiled_grid(ctx, threads)?,
            )
        }
        Conv2dVariant::Direct => {
            // Columns run in phase-major order, rows padded to a multiple of the stride.
            let s = g.cfg.stride[1];
            let threads = g.n * g.cin * g.h * g.w.div_ceil(s) * s;
            params.threads = to_i32(OP, "threads", threads)?;
            ctx.dispatch(BACKWARD_INPUT, &params, &bindings, ctx.grid_1d(threads)?)
        }
    }
}

/// How many chunks the N*Ho*Wo reduction of backward-weight is cut into, and their length,
/// given `tiles` threads per chunk.
fn weight_splits(tiles: usize, positions: usize) -> (usize, usize) {
    let wanted = WEIGHT_TARGET_THREADS.div_ceil(tiles.max(1));
    let most = positions.div_ceil(WEIGHT_MIN_CHUNK).max(1);
    let splits = wanted.clamp(1, most);
    let chunk = positions.div_ceil(splits);
    (positions.div_ceil(chunk), chunk)
}

/// dW (and db when given) from dy and the saved input x; may need more than one dispatch.
pub fn conv2d_backward_weight(
    ctx: &GpuContext,
    dw: &Tensor,
    db: Option<&Tensor>,
    dy: &Tensor,
    x: &Tensor,
    cfg: &Conv2dConfig,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "conv2d_backward_weight";
    let g = geometry(OP, x.shape(), dw.shape(), cfg)?;
    expect_dtype(OP, "dw", dw, DType::F32)?;
    expect_dtype(OP, "dy", dy, DType::F32)?;
    expect_dtype(OP, "x", x, DType::F32)?;
    expect_shape(OP, "dy", dy, &g.y_shape())?;
    if let Some(db) = db {
        expect_dtype(OP, "db", db, DType::F32)?;
        expect_shape(OP, "db", db, &[g.cout])?;
    }
    let mut params = g.params(OP)?;
    let positions = g.n * g.ho * g.wo;
    let m = g.cout * g.k();
    let tiled = g.cout_g() >= TILED_MIN_CHANNELS && g.k() >= TILED_MIN_CHANNELS;
    let (kernel, tiles) = if g.row3() {
        let blocks_c = g.cout_g().div_ceil(TILE_C);
        let blocks_r = (g.cin_g() * g.kh).div_ceil(TILE_P);
        params.blocks_c = to_i32(OP, "channel blocks", blocks_c)?;
        params.blocks_r = to_i32(OP, "kernel-row blocks", blocks_r)?;
        (BACKWARD_WEIGHT_ROW3, g.cfg.groups * blocks_c * blocks_r)
    } else if tiled {
        let blocks_c = g.cout_g().div_ceil(TILE_C);
        let blocks_r = g.k().div_ceil(TILE_P);
        params.blocks_c = to_i32(OP, "channel blocks", blocks_c)?;
        params.blocks_r = to_i32(OP, "weight-row blocks", blocks_r)?;
        (BACKWARD_WEIGHT_TILED, g.cfg.groups * blocks_c * blocks_r)
    } else {
        (BACKWARD_WEIGHT, m)
    };
    let (splits, chunk) = weight_splits(tiles, positions);
    let threads = tiles * splits;
    params.splits = to_i32(OP, "splits", splits)?;
    params.chunk = to_i32(OP, "chunk", chunk)?;
    params.threads = to_i32(OP, "threads", threads)?;
    let grid = if tiled {
        tiled_grid(ctx, threads)?
    } else {
        ctx.grid_1d(threads)?
    };
    let mut out = Vec::with_capacity(3);
    if splits == 1 {
        params.accumulate = accumulate as i32;
        out.push(ctx.dispatch(kernel, &params, &[(1, x), (5, dy), (9, dw)], grid)?);
    } else {
        to_i32(OP, "partial sums", splits * m)?;
        let part = Tensor::empty(ctx, &[splits, m], DType::F32)?;
        out.push(ctx.dispatch(kernel, &params, &[(1, x), (5, dy), (9, &part)], grid)?);
        let reduce = ConvParams {
            splits: params.splits,
            threads: to_i32(OP, "threads", m)?,
            accumulate: accumulate as i32,
            ..params
        };
        out.push(ctx.dispatch(
            BACKWARD_WEIGHT_REDUCE,
            &reduce,
            &[(9, &part), (7, dw)],
            ctx.grid_1d(m)?,
        )?);
    }
    if let Some(db) = db {
        let bias_params = ConvParams {
            accumulate: accumulate as i32,
            ..params
        };
        let grid = grid_for(
            g.cout * BIAS_WG,
            BIAS_WG as u32,
            ctx.limits().max_compute_workgroups_per_dimension,
        )?;
        out.push(ctx.dispatch(BACKWARD_BIAS, &bias_params, &[(5, dy), (8, db)], grid)?);
    }
    Ok(out)
}
