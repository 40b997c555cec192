//! Lucid's Fourier image parameterization with decorrelated colour, forward and backward on
//! the GPU: the image is the inverse real 2-D DFT of a scaled spectrum, mixed by Lucid's colour
//! matrix, squashed by a sigmoid to [0, 1], then normalized to the model's input space.
//!
//! Formulas (Lucid 0.3: `lucid/optvis/param/spatial.py` `rfft2d_freqs`, `fft_image`;
//! `lucid/optvis/param/color.py` `_linear_decorelate_color`, `to_valid_rgb`), per image n and
//! channel c of an `H x W` image:
//! 1. Spectrum parameters `X [N, C, 2, H, Wc]` (real plane, then imaginary), initialized
//!    N(0, 0.01²) ([`INIT_SD`], Lucid's `sd`). `Wc = W/2 + 1` for even W; for odd W Lucid keeps
//!    one more column, `Wc = W/2 + 2` (its `rfft2d_freqs` quirk), so the inverse transform is
//!    `Wf = 2 (Wc - 1) = W + 1` wide and its last column is cropped. [`spectrum_width`],
//!    [`fft_width`].
//! 2. `freq[ky, kx] = sqrt(fy² + fx²)`, `fy = fftfreq(H)[ky]`, `fx = fftfreq(W)[kx]` (numpy's
//!    `fftfreq` of the *uncropped* W, also for the extra odd-W column).
//!    `scale = 1 / max(freq, 1 / max(H, W))^decay_power * sqrt(H W)` (decay_power 1 by
//!    default), rounded to f32 as TensorFlow's complex64 product does. [`spectrum_scale`].
//! 3. `img = irfft2d(scale * (X_re + i X_im))[:H, :W] / 4`, TensorFlow's `irfft2d` (= numpy's
//!    `irfft2` with `s = (H, Wf)`): a complex inverse DFT down the columns,
//!    `F[y, kx] = 1/H Σ_ky S[ky, kx] e^{2πi ky y / H}`, then along each row the inverse real
//!    DFT `x[y, t] = 1/Wf Σ_kx m_kx Re(F[y, kx] e^{2πi kx t / Wf})` with Hermitian weights
//!    `m = 1` for the DC (kx = 0) and Nyquist (kx = Wc - 1) columns and 2 for the others. Taking
//!    the real part is what drops the imaginary parts of `F`'s DC and Nyquist columns, exactly
//!    as numpy's `irfft` ignores them; in terms of `X`, `Im X[ky, kx]` for kx ∈ {0, Wc - 1}
//!    and ky ∈ {0, H/2 (even H)} has no effect at all (its gradient is exactly 0).
//! 4. Three channels: `rgb = sigmoid(img @ (C / max_norm).T)` with Lucid's
//!    `color_correlation_svd_sqrt` `C = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05],
//!    [0.27, -0.09, 0.03]]` and `max_norm` the largest column norm of C (0.4619…), computed in
//!    f32 as numpy does ([`color_matrix`]). Any other channel count (grayscale models): no
//!    decorrelation, `rgb = sigmoid(img)` per channel, as Lucid's `param.image(..., channels=k)`.
//! 5. `out = (rgb - mean[c]) / std[c]`: the model's normalization (a model taking [0, 1]
//!    inputs passes mean 0, std 1).
//!
//! On the GPU the constants of steps 2 and 3 (scale, `1/(H Wf)`, the Hermitian weights, the
//! `/4`) fold into one `coef [H, Wc]` table and the transforms are separable DFTs with
//! `(cos, sin)` twiddle tables computed in f64 by exact index reduction (the sines at 0 and π
//! are exactly 0). The column transform is a mixed-radix Stockham FFT
//! ([`columns_forward_fft`], [`columns_backward_fft`]) when H factors into 2, 3, 4, 5, 7
//! ([`fft_radices`]; 224 = 4·4·2·7) and a direct DFT otherwise; the row transform is a direct
//! DFT (any width). Forward: [`columns_forward`],
//! [`rows_forward`], [`color_forward`]; backward (the exact adjoint of each):
//! [`color_backward`], [`rows_backward`], [`columns_backward`] (which writes or accumulates the
//! parameter gradient). [`SpectralParam`] holds the parameters, tables and scratch buffers and
//! builds the two dispatch lists once.
//!
//! Not Lucid: the initial noise comes from cnnvis's Philox generator
//! ([`crate::ops::random::gaussian_fill`]), not numpy's, so the same seed gives the same bits
//! here but not Lucid's numbers.

use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::random::gaussian_fill;
use crate::ops::{expect_dtype, expect_shape, to_u32};

const COLUMNS: Kernel = Kernel::new(Shader::Spectral, "spectral_columns");
const ROWS: Kernel = Kernel::new(Shader::Spectral, "spectral_rows");
const COLOR: Kernel = Kernel::new(Shader::Spectral, "spectral_color");
const COLOR_BACKWARD: Kernel = Kernel::new(Shader::Spectral, "spectral_color_backward");
const ROWS_BACKWARD: Kernel = Kernel::new(Shader::Spectral, "spectral_rows_backward");
const COLUMNS_BACKWARD: Kernel = Kernel::new(Shader::Spectral, "spectral_columns_backward");
const COLUMNS_FFT: Kernel = Kernel::new(Shader::Spectral, "spectral_columns_fft");
const COLUMNS_FFT_LAST_BACKWARD: Kernel =
    Kernel::new(Shader::Spectral, "spectral_columns_fft_last_backward");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[
    COLUMNS,
    ROWS,
    COLOR,
    COLOR_BACKWARD,
    ROWS_BACKWARD,
    COLUMNS_BACKWARD,
    COLUMNS_FFT,
    COLUMNS_FFT_LAST_BACKWARD,
];

/// Lucid's `color_correlation_svd_sqrt` (color.py): the square root of ImageNet's colour
/// correlation matrix.
pub const COLOR_CORRELATION_SVD_SQRT: [[f32; 3]; 3] =
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];

/// Lucid's default standard deviation of the initial spectrum (`sd = sd or 0.01`).
pub const INIT_SD: f32 = 0.01;

/// Lucid's default `decay_power`.
pub const DECAY_POWER: f32 = 1.0;

/// Lucid's "magic" divisor of the inverse transform (`image_t / 4.0`).
pub const MAGIC: f64 = 4.0;

/// Mirror of `SpecParams` in spectral.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct SpecParams {
    m: [[f32; 4]; 3],
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    wc: u32,
    wf: u32,
    total: u32,
    accumulate: u32,
    decorrelate: u32,
    radix: u32,
    stride: u32,
    flags: u32,
}
const _: () = assert!(std::mem::size_of::<SpecParams>() == 96);

/// Spectrum columns Lucid keeps for width `w`: `w/2 + 1`, or `w/2 + 2` when `w` is odd.
pub fn spectrum_width(w: usize) -> usize {
    if w % 2 == 1 {
        w / 2 + 2
    } else {
        w / 2 + 1
    }
}

/// Width of Lucid's inverse transform, `2 (Wc - 1)`: `w`, or `w + 1` when `w` is odd (the
/// extra column is cropped).
pub fn fft_width(w: usize) -> usize {
    2 * (spectrum_width(w) - 1)
}

/// numpy's `fftfreq(n)[k]`.
fn fftfreq(n: usize, k: usize) -> f64 {
    let k = k as f64;
    let n_f = n as f64;
    if (k as usize) < n.div_ceil(2) {
        k / n_f
    } else {
        (k - n_f) / n_f
    }
}

/// Lucid's `rfft2d_freqs(h, w)`, `[H, Wc]` row-major: `sqrt(fx² + fy²)`.
pub fn rfft2d_freqs(h: usize, w: usize) -> Vec<f64> {
    let wc = spectrum_width(w);
    let mut out = Vec::with_capacity(h * wc);
    for ky in 0..h {
        let fy = fftfreq(h, ky);
        for kx in 0..wc {
            let fx = fftfreq(w, kx);
            out.push((fx * fx + fy * fy).sqrt());
        }
    }
    out
}

/// Lucid's spectrum scale, `[H, Wc]`: `1 / max(freq, 1 / max(H, W))^decay_power * sqrt(H W)`,
/// computed in f64 and rounded to f32.
pub fn spectrum_scale(h: usize, w: usize, decay_power: f32) -> Vec<f32> {
    let floor = 1.0 / h.max(w) as f64;
    let norm = ((h * w) as f64).sqrt();
    rfft2d_freqs(h, w)
        .into_iter()
        .map(|f| (1.0 / f.max(floor).powf(decay_power as f64) * norm) as f32)
        .collect()
}

/// Lucid's `color_correlation_svd_sqrt / max_norm_svd_sqrt`, in f32 as numpy computes it
/// (column norms summed in row order, then one division). `rgb_i = Σ_j M[i][j] t_j`.
pub fn color_matrix() -> [[f32; 3]; 3] {
    let c = COLOR_CORRELATION_SVD_SQRT;
    let max_norm = (0..3)
        .map(|j| (c[0][j] * c[0][j] + c[1][j] * c[1][j] + c[2][j] * c[2][j]).sqrt())
        .fold(0.0f32, f32::max);
    c.map(|row| row.map(|v| v / max_norm))
}

/// `(cos, sin)` of `2π k / n`, exact at the multiples of π/2.
fn twiddle(k: usize, n: usize) -> (f32, f32) {
    let k = k % n;
    if k == 0 {
        (1.0, 0.0)
    } else if 2 * k == n {
        (-1.0, 0.0)
    } else if 4 * k == n {
        (0.0, 1.0)
    } else if 4 * k == 3 * n {
        (0.0, -1.0)
    } else {
        let a = std::f64::consts::TAU * k as f64 / n as f64;
        (a.cos() as f32, a.sin() as f32)
    }
}

/// `n` twiddles as interleaved `(cos, sin)` pairs: `[n, 2]`.
pub fn twiddle_table(n: usize) -> Vec<f32> {
    (0..n)
        .flat_map(|k| {
            let (c, s) = twiddle(k, n);
            [c, s]
        })
        .collect()
}

/// The folded coefficients `[H, Wc]`: `scale * m_kx / (4 H Wf)` with the Hermitian weights
/// `m_kx` (1 at the DC and Nyquist columns, 2 elsewhere).
pub fn coef_table(h: usize, w: usize, decay_power: f32) -> Vec<f32> {
    let wc = spectrum_width(w);
    let wf = fft_width(w);
    let denom = MAGIC * h as f64 * wf as f64;
    spectrum_scale(h, w, decay_power)
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let kx = i % wc;
            let m = if kx == 0 || kx == wc - 1 { 1.0 } else { 2.0 };
            (s as f64 * m / denom) as f32
        })
        .collect()
}

/// The parameter shape `[N, C, 2, H, Wc]` for images `[N, C, H, W]`.
pub fn spectrum_shape([n, c, h, w]: [usize; 4]) -> [usize; 5] {
    [n, c, 2, h, spectrum_width(w)]
}

const OP: &str = "spectral";

/// `[N, C, H, W]` of an f32 image tensor.
fn image_dims(name: &str, t: &Tensor) -> Result<[usize; 4]> {
    expect_dtype(OP, name, t, DType::F32)?;
    match *t.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => Err(Error::shape(
            OP,
            format!("{name} has shape {s:?}, expected [N, C, H, W]"),
        )),
    }
}

fn check_f32(name: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    expect_dtype(OP, name, t, DType::F32)?;
    expect_shape(OP, name, t, shape)
}

/// Checks an image shape the parameterization supports.
fn check_image_shape([n, c, h, w]: [usize; 4]) -> Result<()> {
    if n == 0 || c == 0 || h == 0 || w < 2 {
        return Err(Error::shape(
            OP,
            format!("image shape [{n}, {c}, {h}, {w}]: needs N, C, H >= 1 and W >= 2"),
        ));
    }
    // The kernels form (k * j) mod len incrementally, index up to N*C*2*H*Wc, and read
    // N*C*H*W images.
    let spec = n * c * 2 * h * spectrum_width(w);
    to_u32(OP, "N*C*2*H*Wc", spec)?;
    to_u32(OP, "N*C*H*(W+1)", n * c * h * (w + 1))?;
    Ok(())
}

fn params(
    [n, c, h, w]: [usize; 4],
    total: usize,
    decorrelate: bool,
    accumulate: bool,
) -> Result<SpecParams> {
    let m = if decorrelate {
        color_matrix()
    } else {
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    };
    Ok(SpecParams {
        m: m.map(|r| [r[0], r[1], r[2], 0.0]),
        n: n as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
        wc: spectrum_width(w) as u32,
        wf: fft_width(w) as u32,
        total: to_u32(OP, "threads", total)?,
        accumulate: accumulate as u32,
        decorrelate: decorrelate as u32,
        radix: 0,
        stride: 0,
        flags: 0,
    })
}

/// Whether the colour matrix applies: three channels and `decorrelate`.
fn decorrelates(c: usize, decorrelate: bool) -> bool {
    decorrelate && c == 3
}

/// Checks the tables against an image shape.
fn check_tables(h: usize, w: usize, coef: &Tensor, tw: &[(&str, &Tensor, usize)]) -> Result<()> {
    check_f32("coef", coef, &[h, spectrum_width(w)])?;
    for (name, t, len) in tw {
        check_f32(name, t, &[*len, 2])?;
    }
    Ok(())
}

/// Forward step 1: `freq = Σ_ky coef · X · e^{+2πi ky y / H}` down each spectrum column.
/// `spectrum` and `freq` are `[N, C, 2, H, Wc]`, `coef` `[H, Wc]` ([`coef_table`]), `tw_h`
/// `[H, 2]` ([`twiddle_table`]`(H)`); `w` is the image width (it fixes Wc).
pub fn columns_forward(
    ctx: &GpuContext,
    freq: &Tensor,
    spectrum: &Tensor,
    coef: &Tensor,
    tw_h: &Tensor,
    w: usize,
) -> Result<Dispatch> {
    let (n, c, h) = spectrum_dims("spectrum", spectrum, w)?;
    check_f32("freq", freq, spectrum.shape())?;
    check_tables(h, w, coef, &[("tw_h", tw_h, h)])?;
    let total = n * c * h * spectrum_width(w);
    let p = params([n, c, h, w], total, false, false)?;
    ctx.dispatch(
        COLUMNS,
        &p,
        &[(1, spectrum), (2, freq), (4, coef), (5, tw_h)],
        ctx.grid_1d(total)?,
    )
}

/// `(N, C, H)` of a spectrum `[N, C, 2, H, Wc]` for image width `w`.
fn spectrum_dims(name: &str, t: &Tensor, w: usize) -> Result<(usize, usize, usize)> {
    expect_dtype(OP, name, t, DType::F32)?;
    match *t.shape() {
        [n, c, 2, h, wc] if wc == spectrum_width(w) => {
            check_image_shape([n, c, h, w])?;
            Ok((n, c, h))
        }
        ref s => Err(Error::shape(
            OP,
            format!(
                "{name} has shape {s:?}, expected [N, C, 2, H, {}] for image width {w}",
                spectrum_width(w)
            ),
        )),
    }
}

/// Forward step 2: `lin[y, t] = Σ_kx Re(freq[y, kx] e^{+2πi kx t / Wf})` for `t < W`.
/// `lin` is `[N, C, H, W]`, `freq` `[N, C, 2, H, Wc]`, `tw_w` `[Wf, 2]`.
pub fn rows_forward(
    ctx: &GpuContext,
    lin: &Tensor,
    freq: &Tensor,
    tw_w: &Tensor,
) -> Result<Dispatch> {
    let dims = image_dims("lin", lin)?;
    let [n, c, h, w] = dims;
    check_image_shape(dims)?;
    check_f32("freq", freq, &spectrum_shape(dims))?;
    check_f32("tw_w", tw_w, &[fft_width(w), 2])?;
    let total = n * c * h * w;
    let p = params(dims, total, false, false)?;
    ctx.dispatch(
        ROWS,
        &p,
        &[(3, freq), (6, tw_w), (7, lin)],
        ctx.grid_1d(total)?,
    )
}

fn check_norm(c: usize, mean: &Tensor, std: &Tensor) -> Result<()> {
    check_f32("mean", mean, &[c])?;
    check_f32("std", std, &[c])
}

/// Forward step 3: `rgb = sigmoid(M lin)` (M: [`color_matrix`] when `decorrelate` and C = 3,
/// else the identity) and `img = (rgb - mean[c]) / std[c]`. All images `[N, C, H, W]`, `mean`
/// and `std` `[C]`. `rgb` is saved for [`color_backward`].
pub fn color_forward(
    ctx: &GpuContext,
    img: &Tensor,
    rgb: &Tensor,
    lin: &Tensor,
    mean: &Tensor,
    std: &Tensor,
    decorrelate: bool,
) -> Result<Dispatch> {
    let dims = image_dims("lin", lin)?;
    let [n, c, h, w] = dims;
    check_image_shape(dims)?;
    check_f32("img", img, lin.shape())?;
    check_f32("rgb", rgb, lin.shape())?;
    check_norm(c, mean, std)?;
    let total = n * h * w;
    let p = params(dims, total, decorrelates(c, decorrelate), false)?;
    ctx.dispatch(
        COLOR,
        &p,
        &[(8, lin), (9, rgb), (11, img), (14, mean), (15, std)],
        ctx.grid_1d(total)?,
    )
}

/// Backward of step 3: `d_lin = Mᵀ (rgb (1 - rgb) d_img / std)`. `rgb` is [`color_forward`]'s
/// saved output; images `[N, C, H, W]`, `std` `[C]`.
pub fn color_backward(
    ctx: &GpuContext,
    d_lin: &Tensor,
    d_img: &Tensor,
    rgb: &Tensor,
    std: &Tensor,
    decorrelate: bool,
) -> Result<Dispatch> {
    let dims = image_dims("d_img", d_img)?;
    let [n, c, h, w] = dims;
    check_image_shape(dims)?;
    check_f32("d_lin", d_lin, d_img.shape())?;
    check_f32("rgb", rgb, d_img.shape())?;
    check_f32("std", std, &[c])?;
    let total = n * h * w;
    let p = params(dims, total, decorrelates(c, decorrelate), false)?;
    ctx.dispatch(
        COLOR_BACKWARD,
        &p,
        &[(7, d_lin), (10, rgb), (12, d_img), (15, std)],
        ctx.grid_1d(total)?,
    )
}

/// Backward of step 2: `d_freq_re[y, kx] = Σ_{t<W} d_lin[y, t] cos(2π kx t / Wf)`,
/// `d_freq_im[y, kx] = -Σ_t d_lin[y, t] sin(..)`. `d_freq` `[N, C, 2, H, Wc]`, `d_lin`
/// `[N, C, H, W]`, `tw_w` `[Wf, 2]`.
pub fn rows_backward(
    ctx: &GpuContext,
    d_freq: &Tensor,
    d_lin: &Tensor,
    tw_w: &Tensor,
) -> Result<Dispatch> {
    let dims = image_dims("d_lin", d_lin)?;
    let [n, c, h, w] = dims;
    check_image_shape(dims)?;
    check_f32("d_freq", d_freq, &spectrum_shape(dims))?;
    check_f32("tw_w", tw_w, &[fft_width(w), 2])?;
    let total = n * c * h * spectrum_width(w);
    let p = params(dims, total, false, false)?;
    ctx.dispatch(
        ROWS_BACKWARD,
        &p,
        &[(2, d_freq), (6, tw_w), (8, d_lin)],
        ctx.grid_1d(total)?,
    )
}

/// Backward of step 1: `d_spectrum = coef · Σ_y d_freq[y] e^{-2πi ky y / H}` (written, or
/// added with `accumulate`). `d_spectrum` and `d_freq` `[N, C, 2, H, Wc]`; `w` the image width.
pub fn columns_backward(
    ctx: &GpuContext,
    d_spectrum: &Tensor,
    d_freq: &Tensor,
    coef: &Tensor,
    tw_h: &Tensor,
    w: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    let (n, c, h) = spectrum_dims("d_freq", d_freq, w)?;
    check_f32("d_spectrum", d_spectrum, d_freq.shape())?;
    if d_spectrum.buffer() == d_freq.buffer() {
        return Err(Error::shape(OP, "d_spectrum and d_freq share a buffer"));
    }
    check_tables(h, w, coef, &[("tw_h", tw_h, h)])?;
    let total = n * c * h * spectrum_width(w);
    let p = params([n, c, h, w], total, false, accumulate)?;
    ctx.dispatch(
        COLUMNS_BACKWARD,
        &p,
        &[(3, d_freq), (4, coef), (5, tw_h), (13, d_spectrum)],
        ctx.grid_1d(total)?,
    )
}

/// The radices of the mixed-radix FFT path for length `n` (4s first, then 2, 3, 5, 7), or
/// `None` when `n < 2` or `n` has another prime factor (the direct DFT kernels handle those).
pub fn fft_radices(n: usize) -> Option<Vec<usize>> {
    if n < 2 {
        return None;
    }
    let mut rest = n;
    let mut out = Vec::new();
    for r in [4, 2, 3, 5, 7] {
        while rest.is_multiple_of(r) {
            out.push(r);
            rest /= r;
        }
    }
    (rest == 1).then_some(out)
}

/// Radices of the column FFT for height `h`, or a shape error.
fn column_radices(h: usize) -> Result<Vec<usize>> {
    fft_radices(h).ok_or_else(|| {
        Error::shape(
            OP,
            format!("H = {h} does not factor into 2, 3, 4, 5, 7 (use the direct DFT kernels)"),
        )
    })
}

/// Params of one column-FFT stage.
fn stage_params(
    dims: [usize; 4],
    radix: usize,
    stride: usize,
    flags: u32,
    accumulate: bool,
) -> Result<(SpecParams, usize)> {
    let [n, c, h, w] = dims;
    let total = n * c * (h / radix) * spectrum_width(w);
    let mut p = params(dims, total, false, accumulate)?;
    p.radix = radix as u32;
    p.stride = stride as u32;
    p.flags = flags;
    Ok((p, total))
}

/// Forward step 1 as a mixed-radix Stockham FFT (H factoring into 2, 3, 4, 5, 7,
/// [`fft_radices`]): the same result as [`columns_forward`], one dispatch per radix stage,
/// ping-ponging between `freq` and `scratch` (both `[N, C, 2, H, Wc]`, distinct buffers);
/// the result lands in `freq`.
pub fn columns_forward_fft(
    ctx: &GpuContext,
    freq: &Tensor,
    scratch: &Tensor,
    spectrum: &Tensor,
    coef: &Tensor,
    tw_h: &Tensor,
    w: usize,
) -> Result<Vec<Dispatch>> {
    let (n, c, h) = spectrum_dims("spectrum", spectrum, w)?;
    check_f32("freq", freq, spectrum.shape())?;
    check_f32("scratch", scratch, spectrum.shape())?;
    if freq.buffer() == scratch.buffer() || freq.buffer() == spectrum.buffer() {
        return Err(Error::shape(
            OP,
            "freq shares a buffer with scratch or spectrum",
        ));
    }
    check_tables(h, w, coef, &[("tw_h", tw_h, h)])?;
    let radices = column_radices(h)?;
    let s = radices.len();
    let mut out = Vec::with_capacity(s);
    let mut input = spectrum;
    let mut stride = 1;
    for (i, &r) in radices.iter().enumerate() {
        let dst = if (s - 1 - i) % 2 == 0 { freq } else { scratch };
        let flags = if i == 0 { 1 } else { 0 };
        let (p, total) = stage_params([n, c, h, w], r, stride, flags, false)?;
        out.push(ctx.dispatch(
            COLUMNS_FFT,
            &p,
            &[(2, dst), (3, input), (4, coef), (5, tw_h)],
            ctx.grid_1d(total)?,
        )?);
        input = dst;
        stride *= r;
    }
    Ok(out)
}

/// Backward of step 1 as a mixed-radix Stockham FFT: the same result as
/// [`columns_backward`], one dispatch per radix stage. Overwrites `d_freq` and `scratch`
/// (distinct buffers, `[N, C, 2, H, Wc]`) on the way; the last stage writes (or adds to)
/// `d_spectrum`.
#[allow(clippy::too_many_arguments)]
pub fn columns_backward_fft(
    ctx: &GpuContext,
    d_spectrum: &Tensor,
    d_freq: &Tensor,
    scratch: &Tensor,
    coef: &Tensor,
    tw_h: &Tensor,
    w: usize,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let (n, c, h) = spectrum_dims("d_freq", d_freq, w)?;
    check_f32("d_spectrum", d_spectrum, d_freq.shape())?;
    check_f32("scratch", scratch, d_freq.shape())?;
    let (a, b, d) = (d_spectrum.buffer(), d_freq.buffer(), scratch.buffer());
    if a == b || a == d || b == d {
        return Err(Error::shape(
            OP,
            "d_spectrum, d_freq and scratch share a buffer",
        ));
    }
    check_tables(h, w, coef, &[("tw_h", tw_h, h)])?;
    let radices = column_radices(h)?;
    let s = radices.len();
    let mut out = Vec::with_capacity(s);
    let mut input = d_freq;
    let mut stride = 1;
    for (i, &r) in radices.iter().enumerate() {
        let (p, total) = stage_params([n, c, h, w], r, stride, 2, accumulate)?;
        let grid = ctx.grid_1d(total)?;
        if i + 1 == s {
            out.push(ctx.dispatch(
                COLUMNS_FFT_LAST_BACKWARD,
                &p,
                &[(3, input), (4, coef), (5, tw_h), (13, d_spectrum)],
                grid,
            )?);
        } else {
            let dst = if i % 2 == 0 { scratch } else { d_freq };
            out.push(ctx.dispatch(
                COLUMNS_FFT,
                &p,
                &[(2, dst), (3, input), (4, coef), (5, tw_h)],
                grid,
            )?);
            input = dst;
        }
        stride *= r;
    }
    Ok(out)
}

/// A batch of images parameterized by Lucid's decorrelated Fourier spectrum: the parameters,
/// the constant tables, and the scratch and saved buffers of one forward and one backward pass.
#[derive(Debug)]
pub struct SpectralParam {
    /// Image shape `[N, C, H, W]`.
    shape: [usize; 4],
    decay_power: f32,
    decorrelate: bool,
    /// The parameters `[N, C, 2, H, Wc]`.
    spectrum: Tensor,
    /// Folded scale `[H, Wc]`.
    coef: Tensor,
    /// Column twiddles `[H, 2]`.
    tw_h: Tensor,
    /// Row twiddles `[Wf, 2]`.
    tw_w: Tensor,
    /// Normalization `[C]`.
    mean: Tensor,
    std: Tensor,
    /// Column-transformed spectrum, forward (`freq`) and backward (`d_freq`) `[N, C, 2, H, Wc]`.
    freq: Tensor,
    /// Second ping-pong buffer of the column FFT `[N, C, 2, H, Wc]` (None: H does not factor
    /// into 2, 3, 4, 5, 7 and the direct DFT kernels run).
    scratch: Option<Tensor>,
    /// Pre-colour image (forward) or its gradient (backward) `[N, C, H, W]`.
    lin: Tensor,
    /// Sigmoid output in [0, 1] `[N, C, H, W]`: saved for the backward pass, and the image for
    /// display.
    rgb: Tensor,
}

impl SpectralParam {
    /// Allocates the parameterization of images `shape = [N, C, H, W]` (W >= 2) whose model
    /// normalizes with `mean` and `std` (`[C]` each; mean 0, std 1 for [0, 1] inputs), and
    /// initializes the spectrum with N(0, [`INIT_SD`]²) noise under `seed` (runs one
    /// submission). Three channels are decorrelated with Lucid's colour matrix; see
    /// [`SpectralParam::set_decorrelate`].
    pub fn new(
        ctx: &GpuContext,
        shape: [usize; 4],
        decay_power: f32,
        seed: u64,
        mean: &[f32],
        std: &[f32],
    ) -> Result<SpectralParam> {
        check_image_shape(shape)?;
        let [_, c, h, w] = shape;
        if !decay_power.is_finite() {
            return Err(Error::shape(
                OP,
                format!("decay_power = {decay_power} is not finite"),
            ));
        }
        if mean.len() != c || std.len() != c {
            return Err(Error::shape(
                OP,
                format!(
                    "mean and std have {} and {} values, expected one per channel ({c})",
                    mean.len(),
                    std.len()
                ),
            ));
        }
        if let Some(s) = std.iter().find(|s| !s.is_finite() || **s == 0.0) {
            return Err(Error::shape(
                OP,
                format!("std {s} must be finite and non-zero"),
            ));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(Error::shape(OP, format!("mean {m} is not finite")));
        }
        let wc = spectrum_width(w);
        let wf = fft_width(w);
        let spec_shape = spectrum_shape(shape);
        let param = SpectralParam {
            shape,
            decay_power,
            decorrelate: true,
            spectrum: Tensor::zeros(ctx, &spec_shape)?,
            coef: Tensor::from_slice(ctx, &[h, wc], &coef_table(h, w, decay_power))?,
            tw_h: Tensor::from_slice(ctx, &[h, 2], &twiddle_table(h))?,
            tw_w: Tensor::from_slice(ctx, &[wf, 2], &twiddle_table(wf))?,
            mean: Tensor::from_slice(ctx, &[c], mean)?,
            std: Tensor::from_slice(ctx, &[c], std)?,
            freq: Tensor::zeros(ctx, &spec_shape)?,
            scratch: match fft_radices(h) {
                Some(_) => Some(Tensor::zeros(ctx, &spec_shape)?),
                None => None,
            },
            lin: Tensor::zeros(ctx, &shape)?,
            rgb: Tensor::zeros(ctx, &shape)?,
        };
        let init = param.init(ctx, seed, INIT_SD)?;
        ctx.run(&[&init])?;
        Ok(param)
    }

    /// Whether three-channel images go through Lucid's colour matrix (default true; Lucid's
    /// `decorrelate=False` when off). Other channel counts never do. Affects dispatches built
    /// afterwards.
    pub fn set_decorrelate(&mut self, on: bool) {
        self.decorrelate = on;
    }

    /// Whether the colour matrix applies.
    pub fn decorrelated(&self) -> bool {
        self.decorrelate && self.shape[1] == 3
    }

    /// A dispatch that refills the spectrum with N(0, sd²) noise under `seed`.
    pub fn init(&self, ctx: &GpuContext, seed: u64, sd: f32) -> Result<Dispatch> {
        gaussian_fill(ctx, &self.spectrum, seed, 0.0, sd)
    }

    /// Image shape `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// `decay_power` of the scale.
    pub fn decay_power(&self) -> f32 {
        self.decay_power
    }

    /// The parameters `[N, C, 2, H, Wc]` (real plane, then imaginary): what the optimizer
    /// updates.
    pub fn spectrum(&self) -> &Tensor {
        &self.spectrum
    }

    /// The last forward pass's image in [0, 1] (after the sigmoid, before normalization).
    pub fn rgb(&self) -> &Tensor {
        &self.rgb
    }

    /// The folded coefficient table `[H, Wc]` ([`coef_table`]).
    pub fn coef(&self) -> &Tensor {
        &self.coef
    }

    /// The forward pass: spectrum → `image` `[N, C, H, W]` in model input space (also fills
    /// [`SpectralParam::rgb`]). Built once and replayed: one column dispatch per FFT stage (or
    /// one direct DFT), then the row and colour dispatches.
    pub fn forward(&self, ctx: &GpuContext, image: &Tensor) -> Result<Vec<Dispatch>> {
        check_f32("image", image, &self.shape)?;
        let w = self.shape[3];
        let mut out = match &self.scratch {
            Some(scratch) => columns_forward_fft(
                ctx,
                &self.freq,
                scratch,
                &self.spectrum,
                &self.coef,
                &self.tw_h,
                w,
            )?,
            None => vec![columns_forward(
                ctx,
                &self.freq,
                &self.spectrum,
                &self.coef,
                &self.tw_h,
                w,
            )?],
        };
        out.extend([
            rows_forward(ctx, &self.lin, &self.freq, &self.tw_w)?,
            color_forward(
                ctx,
                image,
                &self.rgb,
                &self.lin,
                &self.mean,
                &self.std,
                self.decorrelate,
            )?,
        ]);
        Ok(out)
    }

    /// The backward pass: `d_image` `[N, C, H, W]` (gradient to the forward's output) →
    /// `d_spectrum` `[N, C, 2, H, Wc]`, written or added (`accumulate`). Uses the `rgb` saved
    /// by the last forward pass; reuses the forward's scratch buffers, so run it after the
    /// forward pass's dispatches (and before the next). The colour and row dispatches, then
    /// one column dispatch per FFT stage (or one direct DFT).
    pub fn backward(
        &self,
        ctx: &GpuContext,
        d_image: &Tensor,
        d_spectrum: &Tensor,
        accumulate: bool,
    ) -> Result<Vec<Dispatch>> {
        check_f32("d_image", d_image, &self.shape)?;
        check_f32("d_spectrum", d_spectrum, self.spectrum.shape())?;
        let w = self.shape[3];
        let mut out = vec![
            color_backward(
                ctx,
                &self.lin,
                d_image,
                &self.rgb,
                &self.std,
                self.decorrelate,
            )?,
            rows_backward(ctx, &self.freq, &self.lin, &self.tw_w)?,
        ];
        match &self.scratch {
            Some(scratch) => out.extend(columns_backward_fft(
                ctx, d_spectrum, &self.freq, scratch, &self.coef, &self.tw_h, w, accumulate,
            )?),
            None => out.push(columns_backward(
                ctx, d_spectrum, &self.freq, &self.coef, &self.tw_h, w, accumulate,
            )?),
        }
        Ok(out)
    }
}
