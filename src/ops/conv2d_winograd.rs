//! The `winograd` and `winograd-f4` conv2d variants: 3x3 stride-1 convolutions with
//! Winograd's F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray 2016), 2.25x and 4x fewer
//! multiplications than the direct product. Three launches per chunk of images (see
//! `shaders/winograd.wgsl`): the input transform, a 16- or 36-group 1x1 convolution by the
//! implicit-GEMM kernels (one group per transformed tap; where it splits its channel sums,
//! the output transform adds the partial products, so no reduce launch), and the output
//! transform; the weight transform runs once per layer where a [`WeightPacks`] cache is given.
//! Backward to the input is the same computation on dy with the weights rotated by 180
//! degrees and their channels swapped, at padding 2 - p.
//!
//! The transformed input and product are 4x (F4: 2.25x) the size of the tensors they come
//! from; they live in two scratch buffers the context shares among all such passes, of at
//! most [`WORKSPACE_BYTES`] each, so a batch runs in chunks of as many images as fit.

use std::cell::Cell;

use crate::error::Result;
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::conv2d_gemm::{self as gemm, GemmPlan, GemmShape};
use crate::ops::relu::ReluEpilogue;
use crate::ops::to_i32;
use crate::ops::windows::WeightPacks;

/// One Winograd algorithm F(m x m, 3x3): its output tile and transform kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WinogradTile {
    /// Output tile side m; input tiles are m + 2 wide.
    m: usize,
    weight: Kernel,
    input: Kernel,
    output: Kernel,
}

impl WinogradTile {
    /// F(2x2, 3x3): 16 taps, the exact-looking one (rounding as the direct product's).
    pub(crate) const F2: WinogradTile = WinogradTile {
        m: 2,
        weight: Kernel::new(Shader::Winograd, "winograd_weight_transform"),
        input: Kernel::new(Shader::Winograd, "winograd_input_transform"),
        output: Kernel::new(Shader::Winograd, "winograd_output_transform"),
    };
    /// F(4x4, 3x3): 36 taps, half the product of F2 and smaller transforms, with about 30x
    /// its rounding error (1e-5 of the output's scale at 512 channels).
    pub(crate) const F4: WinogradTile = WinogradTile {
        m: 4,
        weight: Kernel::new(Shader::Winograd, "winograd4_weight_transform"),
        input: Kernel::new(Shader::Winograd, "winograd4_input_transform"),
        output: Kernel::new(Shader::Winograd, "winograd4_output_transform"),
    };

    /// Transformed taps: (m + 2)^2.
    fn taps(self) -> usize {
        (self.m + 2) * (self.m + 2)
    }
}

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    WinogradTile::F2.weight,
    WinogradTile::F2.input,
    WinogradTile::F2.output,
    WinogradTile::F4.weight,
    WinogradTile::F4.input,
    WinogradTile::F4.output,
];

/// The algorithm whose dispatches are named after `kernel` (their output transform), if any.
pub(crate) fn conv_kernel_tile(kernel: Kernel) -> Option<WinogradTile> {
    [WinogradTile::F2, WinogradTile::F4]
        .into_iter()
        .find(|t| t.output == kernel)
}
/// Bytes each of the two workspaces may take: wgpu's default `max_storage_buffer_binding_size`,
/// which every adapter allows.
pub const WORKSPACE_BYTES: usize = 128 << 20;

thread_local! {
    static CHUNK_LIMIT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `f` with Winograd chunks of at most `images` images on this thread (tests use it to
/// cut small batches into several chunks).
pub fn with_winograd_chunk_limit<T>(images: usize, f: impl FnOnce() -> T) -> T {
    crate::ops::with_thread_value(&CHUNK_LIMIT, Some(images.max(1)), f)
}

/// Mirror of `WinogradParams` in winograd.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct WinogradParams {
    nc: i32,
    n0: i32,
    cs: i32,
    co: i32,
    hi: i32,
    wi: i32,
    ho: i32,
    wo: i32,
    pad_h: i32,
    pad_w: i32,
    th: i32,
    tw: i32,
    flip: i32,
    has_bias: i32,
    accumulate: i32,
    threads: i32,
    epilogue: i32,
    splits: i32,
    m_numel: i32,
    _pad: i32,
}
const _: () = assert!(std::mem::size_of::<WinogradParams>() == 80);

/// One pass as F(m x m, 3x3): `out [N, co, Ho, Wo] (+)= conv3x3(src [N, cs, Hi, Wi])` at
/// stride 1 with padding `pad` (Ho = Hi + 2 pad - 2), in chunks of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WinogradPlan {
    tile: WinogradTile,
    src: [usize; 4],
    co: usize,
    out_hw: [usize; 2],
    pad: [usize; 2],
    tiles: [usize; 2],
    chunk: usize,
}

impl WinogradPlan {
    /// The plan, or `None` where padding exceeds 2 (the backward pass pads by 2 - p), the
    /// output would be empty, or one image's transforms exceed a workspace.
    pub(crate) fn new(
        tile: WinogradTile,
        src: [usize; 4],
        co: usize,
        pad: [usize; 2],
    ) -> Option<Self> {
        let [n, cs, hi, wi] = src;
        if pad.iter().any(|&p| p > 2) || n == 0 || cs == 0 || co == 0 {
            return None;
        }
        let ho = (hi + 2 * pad[0]).checked_sub(2).filter(|&v| v > 0)?;
        let wo = (wi + 2 * pad[1]).checked_sub(2).filter(|&v| v > 0)?;
        let tiles = [ho.div_ceil(tile.m), wo.div_ceil(tile.m)];
        let per_image = tile.taps() * cs.max(co) * tiles[0] * tiles[1] * 4;
        let fit = WORKSPACE_BYTES / per_image;
        let limit = CHUNK_LIMIT.with(|c| c.get()).unwrap_or(usize::MAX);
        let chunk = fit.min(n).min(limit);
        (chunk > 0).then_some(WinogradPlan {
            tile,
            src,
            co,
            out_hw: [ho, wo],
            pad,
            tiles,
            chunk,
        })
    }

    /// The output shape [N, co, Ho, Wo].
    pub(crate) fn out_shape(&self) -> [usize; 4] {
        [self.src[0], self.co, self.out_hw[0], self.out_hw[1]]
    }

    /// Output tiles over the whole batch.
    pub(crate) fn tiles(&self) -> usize {
        self.src[0] * self.tiles[0] * self.tiles[1]
    }

    /// Threads of the widest transform launch (one per output tile and channel).
    pub(crate) fn threads(&self) -> usize {
        let [n, cs, ..] = self.src;
        n * cs.max(self.co) * self.tiles[0] * self.tiles[1]
    }

    /// The (m + 2)^2-group 1x1 convolution that sums over channels, for a chunk of `images`.
    pub(crate) fn product_shape(&self, images: usize) -> GemmShape {
        let cols = images * self.tiles[0] * self.tiles[1];
        let taps = self.tile.taps();
        GemmShape {
            x: [1, taps * self.src[1], 1, cols],
            y: [1, taps * self.co, 1, cols],
            k: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: taps,
        }
    }

    /// The launches: `out (+)= conv(src, w) (+ bias)` with `w` [co, cs, 3, 3] forward
    /// (`flip` false), or `w` [cs, co, 3, 3] used as its adjoint (backward to the input: src
    /// is dy, out is dx). `product` plans each chunk's grouped product. Shapes are checked
    /// by the caller, `epilogue`'s tensor has out's shape.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        &self,
        ctx: &GpuContext,
        out: &Tensor,
        src: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        flip: bool,
        accumulate: bool,
        epilogue: ReluEpilogue<'_>,
        cache: Option<&WeightPacks>,
        product: impl Fn(&GemmShape) -> Result<GemmPlan>,
    ) -> Result<Dispatch> {
        const OP: &str = "conv2d_winograd";
        let [n, cs, hi, wi] = self.src;
        let [ho, wo] = self.out_hw;
        let [th, tw] = self.tiles;
        let co = self.co;
        let (code, aux) = epilogue.code(OP)?;
        let base = WinogradParams {
            nc: 0,
            n0: 0,
            cs: to_i32(OP, "source channels", cs)?,
            co: to_i32(OP, "output channels", co)?,
            hi: to_i32(OP, "H", hi)?,
            wi: to_i32(OP, "W", wi)?,
            ho: to_i32(OP, "Ho", ho)?,
            wo: to_i32(OP, "Wo", wo)?,
            pad_h: to_i32(OP, "padding", self.pad[0])?,
            pad_w: to_i32(OP, "padding", self.pad[1])?,
            th: to_i32(OP, "tile rows", th)?,
            tw: to_i32(OP, "tile columns", tw)?,
            flip: flip as i32,
            has_bias: bias.is_some() as i32,
            accumulate: accumulate as i32,
            threads: 0,
            epilogue: code,
            splits: 1,
            m_numel: 0,
            _pad: 0,
        };
        // Every flat index the kernels form.
        to_i32(OP, "tensor size", n * cs.max(co) * hi.max(ho) * wi.max(wo))?;
        let taps = self.tile.taps();
        to_i32(OP, "transformed size", taps * self.threads())?;
        let placeholder = ctx.placeholder()?;
        let bias_t = bias.unwrap_or(&placeholder);
        // A binding of its own when unused: the placeholder may be bound read-only as bias.
        let unused_aux;
        let aux = match aux {
            Some(t) => t,
            None => {
                unused_aux = ctx.workspace("winograd unused aux", &[4])?;
                &unused_aux
            }
        };
        let mut parts = Vec::new();
        let transform = |u: &Tensor| {
            let params = WinogradParams {
                threads: to_i32(OP, "weight pairs", co * cs)?,
                ..base
            };
            ctx.dispatch(
                self.tile.weight,
                &params,
                &[(1, w), (2, u)],
                ctx.grid_1d(co * cs)?,
            )
        };
        let u_shape = [taps * co, cs, 1, 1];
        let u = match cache {
            Some(cache) => {
                let pass = if flip { "bwd" } else { "fwd" };
                let key = format!("winograd F{} {pass} {co}x{cs}", self.tile.m);
                cache.get_or_pack_one(ctx, key, || {
                    let u = Tensor::empty(ctx, &u_shape, DType::F32)?;
                    let d = transform(&u)?;
                    Ok((u, d))
                })?
            }
            None => {
                let u = Tensor::empty(ctx, &u_shape, DType::F32)?;
                parts.push(transform(&u)?);
                u
            }
        };
        for n0 in (0..n).step_by(self.chunk) {
            let nc = self.chunk.min(n - n0);
            let shape = self.product_shape(nc);
            let plan = product(&shape)?;
            let v = ctx.workspace("winograd input", &shape.x)?;
            let m = ctx.workspace("winograd product", &shape.y)?;
            let (product, partials) = gemm::build_partial(
                ctx,
                &shape,
                &plan,
                false,
                &m,
                &v,
                &u,
                None,
                false,
                ReluEpilogue::None,
            )?;
            // Split-K: the output transform adds the partial products itself.
            let (m, splits) = match partials {
                Some(p) => (p.sums, p.splits),
                None => (m, 1),
            };
            let params = WinogradParams {
                nc: to_i32(OP, "chunk", nc)?,
                n0: to_i32(OP, "chunk start", n0)?,
                splits: to_i32(OP, "splits", splits)?,
                m_numel: to_i32(OP, "product size", shape.y.iter().product())?,
                ..base
            };
            // One thread per tile and channel: of src for the input transform, of out for
            // the output transform.
            let launch = |kernel, channels: usize, bindings: &[(u32, &Tensor)]| {
                let threads = nc * channels * th * tw;
                let params = WinogradParams {
                    threads: to_i32(OP, "transform threads", threads)?,
                    ..params
                };
                ctx.dispatch(kernel, &params, bindings, ctx.grid_1d(threads)?)
            };
            parts.push(launch(self.tile.input, cs, &[(3, src), (4, &v)])?);
            parts.push(product);
            let bindings = [(5, &m), (6, bias_t), (7, out), (8, aux)];
            parts.push(launch(self.tile.output, co, &bindings)?);
        }
        Ok(Dispatch::chain(self.tile.output, parts))
    }
}
