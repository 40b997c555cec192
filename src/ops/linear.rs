//! Dense layer (torch.nn.Linear): forward, backward to input, weight and bias.
//!
//! `x` is `[N, K]`, or any `[N, ...]` viewed as `[N, prod(...)]` as `torch.flatten(x, 1)`
//! does (VGG's classifier takes `[N, 512, 7, 7]` this way); the weight is `[M, K]` in PyTorch's
//! layout. When `K % 4 == 0` the `_vec4` kernels read the weight as vec4. On GPU adapters a
//! backward-to-input pass with few threads (K / 4 per 4 batch rows) cuts its M reduction into
//! ranges (`SPLIT_TARGET_THREADS`), written as partial sums and added by a second launch.

use crate::error::{Error, Result};
use crate::gpu::{grid_for, DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::linear_windows::{self as windows, DenseOperands};
/// The windows kernels' packed weights of one dense layer (see
/// [`crate::ops::conv2d::WeightPacks`]).
pub use crate::ops::windows::WeightPacks as LinearWeightCache;
use crate::ops::{expect_dtype, expect_rank, expect_shape, to_u32};

/// Kernel families of the dense forward and backward-to-input passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearVariant {
    /// One thread per block of 4 rows x 4 outputs, weights from storage buffers; any adapter.
    Storage,
    /// Weights and inputs packed into uniform windows, 8-lane subgroups sharing inputs
    /// (`linear_windows.wgsl`): adapters with fixed 8-lane subgroups (lavapipe), where it is
    /// the automatic choice on CPU adapters.
    Windows,
}

/// Whether `ctx` can run [`LinearVariant::Windows`].
pub fn linear_windows_supported(ctx: &GpuContext) -> bool {
    windows::supported(ctx)
}

/// The variant a pass runs: `forced`, else windows on CPU adapters that run it.
fn pick(
    ctx: &GpuContext,
    op: &'static str,
    forced: Option<LinearVariant>,
) -> Result<LinearVariant> {
    let ok = windows::supported(ctx);
    match forced {
        Some(LinearVariant::Windows) if !ok => Err(Error::shape(
            op,
            format!(
                "the windows variant needs fixed 8-lane subgroups with the SUBGROUP feature, the \
                 SHADER_INT64 feature and 14 uniform bindings of 64 KiB; adapter {} has \
                 subgroup sizes {:?}",
                ctx.adapter(),
                ctx.adapter().subgroup_sizes
            ),
        )),
        Some(v) => Ok(v),
        None if ok && ctx.adapter().device_type == wgpu::DeviceType::Cpu => {
            Ok(LinearVariant::Windows)
        }
        None => Ok(LinearVariant::Storage),
    }
}

impl LinearVariant {
    /// The variant a dense forward or backward-to-input kernel entry point belongs to.
    pub fn of_kernel(kernel: Kernel) -> Option<Self> {
        if windows::is_product_kernel(kernel) {
            Some(LinearVariant::Windows)
        } else if [
            FORWARD,
            FORWARD_VEC4,
            BACKWARD_INPUT,
            BACKWARD_INPUT_VEC4,
            BACKWARD_INPUT_SPLIT,
        ]
        .contains(&kernel)
        {
            Some(LinearVariant::Storage)
        } else {
            None
        }
    }
}

const FORWARD: Kernel = Kernel::new(Shader::Linear, "linear_forward");
const FORWARD_VEC4: Kernel = Kernel::new(Shader::Linear, "linear_forward_vec4");
const BACKWARD_INPUT: Kernel = Kernel::new(Shader::Linear, "linear_backward_input");
const BACKWARD_INPUT_VEC4: Kernel = Kernel::new(Shader::Linear, "linear_backward_input_vec4");
const BACKWARD_INPUT_SPLIT: Kernel =
    Kernel::new(Shader::Linear, "linear_backward_input_split_vec4");
const BACKWARD_INPUT_REDUCE: Kernel =
    Kernel::new(Shader::Linear, "linear_backward_input_reduce_vec4");
const BACKWARD_WEIGHT: Kernel = Kernel::new(Shader::Linear, "linear_backward_weight");
const BACKWARD_WEIGHT_VEC4: Kernel = Kernel::new(Shader::Linear, "linear_backward_weight_vec4");
const BACKWARD_BIAS: Kernel = Kernel::new(Shader::Linear, "linear_backward_bias");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    FORWARD,
    FORWARD_VEC4,
    BACKWARD_INPUT,
    BACKWARD_INPUT_VEC4,
    BACKWARD_INPUT_SPLIT,
    BACKWARD_INPUT_REDUCE,
    BACKWARD_WEIGHT,
    BACKWARD_WEIGHT_VEC4,
    BACKWARD_BIAS,
];

/// Mirror of `LinearParams` in linear.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LinearParams {
    n: u32,
    k: u32,
    m: u32,
    has_bias: u32,
    accumulate: u32,
    ld: u32,
    off: u32,
    splits: u32,
}
const _: () = assert!(std::mem::size_of::<LinearParams>() == 32);

/// `t` seen as `[N, K]` by torch.flatten(t, 1): rank >= 2, `K` the product of the rest.
fn flat_rows(op: &'static str, name: &str, t: &Tensor) -> Result<(usize, usize)> {
    expect_dtype(op, name, t, DType::F32)?;
    let s = t.shape();
    if s.len() < 2 {
        return Err(Error::shape(
            op,
            format!("{name} has shape {s:?}, expected [N, K] or [N, C, H, W] (rank >= 2)"),
        ));
    }
    Ok((s[0], s[1..].iter().product()))
}

/// The weight's `(M, K)`.
fn weight_dims(op: &'static str, name: &str, w: &Tensor) -> Result<(usize, usize)> {
    expect_dtype(op, name, w, DType::F32)?;
    let s = expect_rank(op, name, w, 2)?;
    Ok((s[0], s[1]))
}

/// Which outputs of a layer a weight covers: rows `[offset, offset + M)` of a `[total, K]`
/// weight, so `y` and `dy` are `[N, total]`.
#[derive(Debug, Clone, Copy)]
struct RowBlock {
    offset: usize,
    total: usize,
}

/// Checks a row block against the weight's `m` and the output's width, returning it.
fn row_block(op: &'static str, m: usize, offset: usize, total: usize) -> Result<RowBlock> {
    if offset.checked_add(m).is_none_or(|end| end > total) {
        return Err(Error::shape(
            op,
            format!("a block of {m} weight rows at offset {offset} does not fit {total} outputs"),
        ));
    }
    Ok(RowBlock { offset, total })
}

/// Builds the uniform, refusing sizes whose flat indices would overflow the kernels' u32.
fn params(
    op: &'static str,
    n: usize,
    k: usize,
    m: usize,
    has_bias: bool,
    accumulate: bool,
    block: RowBlock,
) -> Result<LinearParams> {
    to_u32(op, "N * K", n.saturating_mul(k))?;
    to_u32(op, "M * K", m.saturating_mul(k))?;
    to_u32(op, "N * M", n.saturating_mul(m))?;
    // Thread counts of the backward launches (4 columns per thread, rounded up).
    to_u32(op, "M * K + 4M", m.saturating_mul(k.saturating_add(4)))?;
    Ok(LinearParams {
        n: to_u32(op, "N", n)?,
        k: to_u32(op, "K", k)?,
        m: to_u32(op, "M", m)?,
        has_bias: has_bias as u32,
        accumulate: accumulate as u32,
        ld: to_u32(op, "y columns", block.total)?,
        off: to_u32(op, "row block offset", block.offset)?,
        splits: 1,
    })
}

/// `y = flatten(x, 1) · wᵀ + b`: x `[N, K]` (or `[N, C, H, W]` with `K = C*H*W`), w `[M, K]`,
/// b `[M]` (optional), y `[N, M]`.
pub fn linear_forward(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Dispatch> {
    linear_forward_rows(ctx, y, x, w, b, 0)
}

/// [`linear_forward`] for one block of a layer's weight rows: `w` `[M, K]` holds rows
/// `[offset, offset + M)` of the layer's weight (and `b` the same bias entries), and the
/// launch writes columns `[offset, offset + M)` of `y` `[N, total]`. Layers whose weight
/// exceeds one storage binding run as several such launches.
pub fn linear_forward_rows(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    offset: usize,
) -> Result<Dispatch> {
    forward_rows(ctx, None, y, x, w, b, offset, None)
}

/// [`linear_forward_rows`] keeping the windows variant's packed weights in `cache` (made now,
/// reused by later calls): for weights that never change, such as a loaded model's.
pub fn linear_forward_rows_cached(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    offset: usize,
    cache: &LinearWeightCache,
) -> Result<Dispatch> {
    forward_rows(ctx, None, y, x, w, b, offset, Some(cache))
}

/// [`linear_forward`] with the kernel variant given; an error where the adapter lacks it.
pub fn linear_forward_variant(
    ctx: &GpuContext,
    variant: LinearVariant,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Dispatch> {
    forward_rows(ctx, Some(variant), y, x, w, b, 0, None)
}

#[allow(clippy::too_many_arguments)]
fn forward_rows(
    ctx: &GpuContext,
    forced: Option<LinearVariant>,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    offset: usize,
    cache: Option<&LinearWeightCache>,
) -> Result<Dispatch> {
    const OP: &str = "linear_forward";
    let (n, k) = flat_rows(OP, "x", x)?;
    let (m, kw) = weight_dims(OP, "w", w)?;
    if k != kw {
        return Err(Error::shape(
            OP,
            format!(
                "x has shape {:?} ({k} features per row) but w has shape {:?} (expects {kw})",
                x.shape(),
                w.shape()
            ),
        ));
    }
    if let Some(b) = b {
        expect_dtype(OP, "b", b, DType::F32)?;
        expect_shape(OP, "b", b, &[m])?;
    }
    expect_dtype(OP, "y", y, DType::F32)?;
    let sy = expect_rank(OP, "y", y, 2)?;
    if sy[0] != n {
        return Err(Error::shape(
            OP,
            format!("y has shape {sy:?}, expected {n} rows (x {:?})", x.shape()),
        ));
    }
    let block = row_block(OP, m, offset, sy[1])?;
    if pick(ctx, OP, forced)? == LinearVariant::Windows {
        let blocks = [(w, 0)];
        let ops = DenseOperands {
            t: y,
            t_stride: sy[1],
            t_offset: offset,
            s: x,
            s_stride: k,
            s_offset: 0,
            w: &blocks,
            bias: b,
            n,
        };
        return windows::build(ctx, &ops, m, k, false, false, cache);
    }
    let params = params(OP, n, k, m, b.is_some(), false, block)?;
    let placeholder;
    let bias = match b {
        Some(b) => b,
        None => {
            placeholder = ctx.placeholder()?;
            &placeholder
        }
    };
    // One workgroup per block of 4 batch rows x 4 outputs.
    let blocks = m.div_ceil(4) * n.div_ceil(4);
    let grid = grid_for(blocks, 1, ctx.limits().max_compute_workgroups_per_dimension)?;
    if k % 4 == 0 {
        ctx.dispatch(
            FORWARD_VEC4,
            &params,
            &[(9, x), (10, w), (3, bias), (4, y)],
            grid,
        )
    } else {
        ctx.dispatch(FORWARD, &params, &[(1, x), (2, w), (3, bias), (4, y)], grid)
    }
}

/// `dx = dy · w`: dy `[N, M]`, w `[M, K]`, dx `[N, K]` or any `[N, ...]` with `K` elements per
/// row (the forward input's shape). With `accumulate` the result is added to `dx`.
pub fn linear_backward_input(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    linear_backward_input_rows(ctx, dx, dy, w, 0, accumulate)
}

/// [`linear_backward_input`] for one block of weight rows (see [`linear_forward_rows`]): reads
/// columns `[offset, offset + M)` of `dy` `[N, total]`. The blocks of one layer add up, so all
/// but the first launch take `accumulate`.
pub fn linear_backward_input_rows(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    offset: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    backward_input_rows(ctx, None, dx, dy, w, offset, accumulate, None, None)
}

/// [`linear_backward_input_rows`] with the windows variant's packed weights kept in `cache`
/// (see [`linear_forward_rows_cached`]).
pub fn linear_backward_input_rows_cached(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    offset: usize,
    accumulate: bool,
    cache: &LinearWeightCache,
) -> Result<Dispatch> {
    backward_input_rows(ctx, None, dx, dy, w, offset, accumulate, Some(cache), None)
}

/// [`linear_backward_input`] of a layer stored in row blocks (as [`linear_forward_rows`]
/// takes them): `blocks` are (weight `[m, K]`, first row, its cache) covering dy's `M` columns
/// in order; the merged pack is kept in the first block's cache. The windows variant packs the blocks into one transposed
/// operand when every offset is a multiple of 4: one product over all of `M`, not one per
/// block (VGG16's first dense layer, 4 blocks on lavapipe, took twice its forward time).
/// Otherwise the blocks run one after another, all but the first accumulating.
pub fn linear_backward_input_blocks_cached(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    blocks: &[(&Tensor, usize, &LinearWeightCache)],
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "linear_backward_input";
    let sdy = expect_rank(OP, "dy", dy, 2)?;
    expect_dtype(OP, "dy", dy, DType::F32)?;
    let mut next = 0;
    let mut k_all = None;
    for &(w, offset, _) in blocks {
        let (m, k) = weight_dims(OP, "w", w)?;
        if offset != next || k_all.is_some_and(|k0| k0 != k) {
            return Err(Error::shape(
                OP,
                format!("weight blocks must tile dy's columns in order: a [{m}, {k}] block at row {offset}, expected row {next}"),
            ));
        }
        next += m;
        k_all = Some(k);
    }
    let Some(k) = k_all else {
        return Err(Error::shape(OP, "no weight blocks"));
    };
    if next != sdy[1] {
        return Err(Error::shape(
            OP,
            format!(
                "weight blocks hold {next} rows, dy {:?} has {} columns",
                dy.shape(),
                sdy[1]
            ),
        ));
    }
    let merged = blocks.len() > 1
        && blocks.iter().all(|&(_, o, _)| o % 4 == 0)
        && pick(ctx, OP, None)? == LinearVariant::Windows;
    if !merged {
        let parts = blocks
            .iter()
            .enumerate()
            .map(|(i, &(w, offset, c))| {
                let acc = accumulate || i > 0;
                backward_input_rows(ctx, None, dx, dy, w, offset, acc, Some(c), None)
            })
            .collect::<Result<Vec<_>>>()?;
        let kernel = parts[0].kernel();
        return Ok(Dispatch::chain(kernel, parts));
    }
    let (ndx, kdx) = flat_rows(OP, "dx", dx)?;
    if (ndx, kdx) != (sdy[0], k) {
        return Err(Error::shape(
            OP,
            format!(
                "dx has shape {:?}, expected {} rows of {k} features (dy {:?})",
                dx.shape(),
                sdy[0],
                dy.shape()
            ),
        ));
    }
    let ws: Vec<(&Tensor, usize)> = blocks.iter().map(|&(w, o, _)| (w, o)).collect();
    let ops = DenseOperands {
        t: dx,
        t_stride: k,
        t_offset: 0,
        s: dy,
        s_stride: sdy[1],
        s_offset: 0,
        w: &ws,
        bias: None,
        n: sdy[0],
    };
    windows::build(ctx, &ops, k, sdy[1], true, accumulate, Some(blocks[0].2))
}

/// [`linear_backward_input`] with the kernel variant given; an error where the adapter lacks it.
pub fn linear_backward_input_variant(
    ctx: &GpuContext,
    variant: LinearVariant,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    backward_input_rows(ctx, Some(variant), dx, dy, w, 0, accumulate, None, None)
}

/// On GPUs the storage backward-to-input pass cuts its M reduction into ranges until it
/// launches about this many threads: a batch-1 VGG16 classifier layer otherwise gives K / 4 =
/// 6272 threads, each looping over M = 4096 rows, too few to keep a large GPU's memory busy.
const SPLIT_TARGET_THREADS: usize = 1 << 17;
/// Rows of W each range keeps at least, and the most ranges.
const SPLIT_MIN_ROWS: usize = 64;
const SPLIT_MAX: usize = 64;

/// Ranges for a backward-to-input pass of `threads` threads over `m` rows (1: no split).
fn auto_splits(threads: usize, m: usize) -> usize {
    SPLIT_TARGET_THREADS
        .div_ceil(threads.max(1))
        .min(m / SPLIT_MIN_ROWS)
        .clamp(1, SPLIT_MAX)
}

/// [`linear_backward_input_rows`] with the storage kernels and the M reduction cut into
/// `splits` ranges whose partial sums a second launch adds in order (when `K % 4 == 0`;
/// otherwise one range). GPU adapters choose the ranges themselves (enough threads to fill the
/// chip); this forces a count, for tests and measurements.
pub fn linear_backward_input_split(
    ctx: &GpuContext,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    offset: usize,
    splits: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    let v = Some(LinearVariant::Storage);
    backward_input_rows(ctx, v, dx, dy, w, offset, accumulate, None, Some(splits))
}

#[allow(clippy::too_many_arguments)]
fn backward_input_rows(
    ctx: &GpuContext,
    forced: Option<LinearVariant>,
    dx: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    offset: usize,
    accumulate: bool,
    cache: Option<&LinearWeightCache>,
    splits: Option<usize>,
) -> Result<Dispatch> {
    const OP: &str = "linear_backward_input";
    let (m, k) = weight_dims(OP, "w", w)?;
    expect_dtype(OP, "dy", dy, DType::F32)?;
    let sdy = expect_rank(OP, "dy", dy, 2)?;
    let n = sdy[0];
    let block = row_block(OP, m, offset, sdy[1])?;
    let (ndx, kdx) = flat_rows(OP, "dx", dx)?;
    if (ndx, kdx) != (n, k) {
        return Err(Error::shape(
            OP,
            format!(
                "dx has shape {:?}, expected {n} rows of {k} features (dy {:?}, w {:?})",
                dx.shape(),
                dy.shape(),
                w.shape()
            ),
        ));
    }
    if pick(ctx, OP, forced)? == LinearVariant::Windows {
        let blocks = [(w, 0)];
        let ops = DenseOperands {
            t: dx,
            t_stride: k,
            t_offset: 0,
            s: dy,
            s_stride: sdy[1],
            s_offset: offset,
            w: &blocks,
            bias: None,
            n,
        };
        return windows::build(ctx, &ops, k, m, true, accumulate, cache);
    }
    let mut params = params(OP, n, k, m, false, accumulate, block)?;
    let threads = k.div_ceil(4) * n.div_ceil(4);
    let splits = match splits {
        Some(s) => s.clamp(1, m.max(1)),
        None if ctx.adapter().device_type != wgpu::DeviceType::Cpu => auto_splits(threads, m),
        None => 1,
    };
    if k % 4 == 0 && splits > 1 {
        params.splits = to_u32(OP, "splits", splits)?;
        let part_len = splits
            .checked_mul(n * k)
            .ok_or_else(|| Error::shape(OP, "split partial sums overflow"))?;
        to_u32(OP, "split partial sums", part_len)?;
        let part = Tensor::empty(ctx, &[part_len], DType::F32)?;
        let sums = ctx.dispatch(
            BACKWARD_INPUT_SPLIT,
            &params,
            &[(10, w), (5, dy), (13, &part)],
            ctx.grid_1d(threads * splits)?,
        )?;
        let reduce = ctx.dispatch(
            BACKWARD_INPUT_REDUCE,
            &params,
            &[(11, dx), (13, &part)],
            ctx.grid_1d(n * k / 4)?,
        )?;
        return Ok(Dispatch::chain(BACKWARD_INPUT_SPLIT, vec![sums, reduce]));
    }
    let grid = ctx.grid_1d(threads)?;
    if k % 4 == 0 {
        ctx.dispatch(
            BACKWARD_INPUT_VEC4,
            &params,
            &[(10, w), (5, dy), (11, dx)],
            grid,
        )
    } else {
        ctx.dispatch(BACKWARD_INPUT, &params, &[(2, w), (5, dy), (6, dx)], grid)
    }
}

/// `dw = dyᵀ · flatten(x, 1)` and, when `db` is given, `db = Σ_n dy`: dw `[M, K]`, db `[M]`,
/// dy `[N, M]`, x the forward input. With `accumulate` both are added to. Returns the weight
/// launch, then the bias launch if any.
pub fn linear_backward_weight(
    ctx: &GpuContext,
    dw: &Tensor,
    db: Option<&Tensor>,
    dy: &Tensor,
    x: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "linear_backward_weight";
    let (n, k) = flat_rows(OP, "x", x)?;
    let (m, kw) = weight_dims(OP, "dw", dw)?;
    if k != kw {
        return Err(Error::shape(
            OP,
            format!(
                "x has shape {:?} ({k} features per row) but dw has shape {:?} (expects {kw})",
                x.shape(),
                dw.shape()
            ),
        ));
    }
    expect_dtype(OP, "dy", dy, DType::F32)?;
    expect_shape(OP, "dy", dy, &[n, m])?;
    let block = row_block(OP, m, 0, m)?;
    if let Some(db) = db {
        expect_dtype(OP, "db", db, DType::F32)?;
        expect_shape(OP, "db", db, &[m])?;
    }
    let params = params(OP, n, k, m, db.is_some(), accumulate, block)?;
    let mut out = Vec::with_capacity(2);
    if k % 4 == 0 {
        out.push(ctx.dispatch(
            BACKWARD_WEIGHT_VEC4,
            &params,
            &[(9, x), (5, dy), (12, dw)],
            ctx.grid_1d(m * (k / 4))?,
        )?);
    } else {
        out.push(ctx.dispatch(
            BACKWARD_WEIGHT,
            &params,
            &[(1, x), (5, dy), (7, dw)],
            ctx.grid_1d(m * k.div_ceil(4))?,
        )?);
    }
    if let Some(db) = db {
        out.push(ctx.dispatch(BACKWARD_BIAS, &params, &[(5, dy), (8, db)], ctx.grid_1d(m)?)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::auto_splits;

    /// VGG16's classifier at batch 1 splits (K / 4 = 6272 and 1024 threads), batch 64 barely,
    /// and a range never holds fewer than 64 rows.
    #[test]
    fn split_counts_fill_the_thread_target() {
        assert_eq!(auto_splits(6272, 4096), 21);
        assert_eq!(auto_splits(1024, 4096), 64);
        assert_eq!(auto_splits(1024, 1000), 15);
        assert_eq!(auto_splits(6272 * 16, 4096), 2);
        assert_eq!(auto_splits(200_000, 4096), 1);
        assert_eq!(auto_splits(10, 100), 1);
    }
}
