//! k x k convolutions that the 3x3 and 1x1 window kernels do not cover (one group, unit
//! dilation: ResNet's 7x7 stride-2 stem), run on lavapipe as a column matrix and a 1x1
//! product through the uniform windows (see `shaders/im2col.wgsl`). Forward: `cols =
//! im2col(x)`, then `y = w . cols (+ b)`; backward to the input: `dcols = wᵀ . dy`, then
//! `dx (+)= col2im(dcols)`. The stem's backward pass took 0.89 s with the direct kernel.

use crate::error::Result;
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::conv1x1_windows::{self as windows1, Px1Plan};
use crate::ops::to_i32;
use crate::ops::windows::{WeightPacks, MAX_PACK_BYTES};

const IM2COL: Kernel = Kernel::new(Shader::Im2col, "im2col");
const COL2IM: Kernel = Kernel::new(Shader::Im2col, "col2im");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[IM2COL, COL2IM];

/// Mirror of `ColsParams` in im2col.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ColsParams {
    n: i32,
    cin: i32,
    h: i32,
    w: i32,
    kh: i32,
    kw: i32,
    stride_h: i32,
    stride_w: i32,
    pad_h: i32,
    pad_w: i32,
    ho: i32,
    wo: i32,
    accumulate: i32,
    rows: i32,
    _pad: [i32; 2],
}
const _: () = assert!(std::mem::size_of::<ColsParams>() == 64);

/// One pass as a column matrix and a windowed 1x1 product.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColsPlan {
    /// Input [N, Cin, H, W], kernel [Kh, Kw], stride, padding, output [Ho, Wo].
    x: [usize; 4],
    k: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    out: [usize; 2],
    /// The product: cols (K = Cin*Kh*Kw channels) into Cout forward, dy into K backward.
    product: Px1Plan,
    backward: bool,
}

impl ColsPlan {
    /// The plan for a conv of input `x`, `cout` output channels, kernel `k`, `stride` and
    /// `padding` (one group, unit dilation), output `out`, in the given pass; `None` where
    /// the column matrix outgrows a storage binding or the product does not fit the windows.
    pub(crate) fn new(
        x: [usize; 4],
        cout: usize,
        k: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        out: [usize; 2],
        backward: bool,
    ) -> Option<ColsPlan> {
        let [n, cin, h, w] = x;
        let kdim = cin.checked_mul(k[0] * k[1])?;
        let cols = n.checked_mul(kdim)?.checked_mul(out[0] * out[1])?;
        let rows = (n * kdim * out[0]).max(n * cin * h);
        if cols as u64 * 4 > MAX_PACK_BYTES || i32::try_from(cols).is_err() || w == 0 {
            return None;
        }
        i32::try_from(rows).ok()?;
        let product = if backward {
            Px1Plan::new([n, cout, out[0], out[1]], kdim, 1)?
        } else {
            Px1Plan::new([n, kdim, out[0], out[1]], cout, 1)?
        };
        Some(ColsPlan {
            x,
            k,
            stride,
            padding,
            out,
            product,
            backward,
        })
    }

    /// Threads the product launches.
    pub(crate) fn threads(&self) -> usize {
        self.product.threads()
    }

    /// The shape the pass writes: y [N, Cout, Ho, Wo] forward, dx (= x's shape) backward.
    pub(crate) fn target_shape(&self) -> [usize; 4] {
        if self.backward {
            self.x
        } else {
            self.product.target_shape()
        }
    }

    fn cols_shape(&self) -> [usize; 4] {
        let [n, cin, _, _] = self.x;
        [n, cin * self.k[0] * self.k[1], self.out[0], self.out[1]]
    }

    fn params(&self, accumulate: bool) -> Result<ColsParams> {
        const OP: &str = "conv2d_cols";
        let [n, cin, h, w] = self.x;
        let rows = if self.backward {
            n * cin * h
        } else {
            n * cin * self.k[0] * self.k[1] * self.out[0]
        };
        Ok(ColsParams {
            n: to_i32(OP, "N", n)?,
            cin: to_i32(OP, "Cin", cin)?,
            h: to_i32(OP, "H", h)?,
            w: to_i32(OP, "W", w)?,
            kh: to_i32(OP, "Kh", self.k[0])?,
            kw: to_i32(OP, "Kw", self.k[1])?,
            stride_h: to_i32(OP, "stride", self.stride[0])?,
            stride_w: to_i32(OP, "stride", self.stride[1])?,
            pad_h: to_i32(OP, "padding", self.padding[0])?,
            pad_w: to_i32(OP, "padding", self.padding[1])?,
            ho: to_i32(OP, "Ho", self.out[0])?,
            wo: to_i32(OP, "Wo", self.out[1])?,
            accumulate: accumulate as i32,
            rows: to_i32(OP, "rows", rows)?,
            _pad: [0; 2],
        })
    }

    /// The chained launches: forward `target = w . im2col(source) (+ bias)`; backward
    /// `target (+)= col2im(wᵀ . source)`. `w` is the layer's weight as stored.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        &self,
        ctx: &GpuContext,
        target: &Tensor,
        source: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        accumulate: bool,
        cache: Option<&WeightPacks>,
    ) -> Result<Dispatch> {
        let cols_shape = self.cols_shape();
        let cols = Tensor::empty(ctx, &cols_shape, DType::F32)?;
        let w1 = w.reshape(&[w.shape()[0], cols_shape[1], 1, 1])?;
        let params = self.params(accumulate)?;
        let rows = params.rows as usize;
        if self.backward {
            let product = windows1::build(
                ctx,
                &self.product,
                &cols,
                source,
                &w1,
                None,
                true,
                false,
                cache,
            )?;
            let gather = ctx.dispatch(
                COL2IM,
                &params,
                &[(1, &cols), (2, target)],
                ctx.grid_1d(rows)?,
            )?;
            Ok(Dispatch::chain(product.kernel(), vec![product, gather]))
        } else {
            let gather = ctx.dispatch(
                IM2COL,
                &params,
                &[(1, source), (2, &cols)],
                ctx.grid_1d(rows)?,
            )?;
            let product = windows1::build(
                ctx,
                &self.product,
                target,
                &cols,
                &w1,
                bias,
                false,
                accumulate,
                cache,
            )?;
            Ok(Dispatch::chain(product.kernel(), vec![gather, product]))
        }
    }
}
