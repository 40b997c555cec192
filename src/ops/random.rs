//! Seeded, counter-based random fills on the GPU (uniform, Gaussian, additive Gaussian noise
//! for SmoothGrad) and a CPU twin of the generator.
//!
//! Philox4x32-10 (Salmon et al. 2011) maps (counter, key) to four 32-bit words. Element `i` of a
//! fill with seed `s` takes word `i % 4` of the block with counter `(i / 4, 0, stream, 0)` and
//! key `(s as u32, (s >> 32) as u32)`, so every value is a pure function of (seed, index,
//! stream): reproducible bit for bit and independent of the dispatch grid.

use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::{expect_dtype, expect_shape, to_u32};

const UNIFORM: Kernel = Kernel::new(Shader::Random, "uniform_fill");
const GAUSSIAN: Kernel = Kernel::new(Shader::Random, "gaussian_fill");
const ADD_NOISE: Kernel = Kernel::new(Shader::Random, "add_gaussian_noise");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[UNIFORM, GAUSSIAN, ADD_NOISE];

/// Counter word 2 of uniform fills.
pub const UNIFORM_STREAM: u32 = 0;
/// Counter word 2 of Gaussian fills and noise: a sequence independent of the uniform one.
pub const GAUSSIAN_STREAM: u32 = 1;

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// Mirror of `RandomParams` in random.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RandomParams {
    n: u32,
    stream: u32,
    key0: u32,
    key1: u32,
    a: f32,
    b: f32,
    hi_below: f32,
    _pad: u32,
}
const _: () = assert!(std::mem::size_of::<RandomParams>() == 32);

/// Philox4x32 with 10 rounds (Random123's `philox4x32_R(10, ctr, key)`).
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The 32 random bits of element `index` of `stream` under `seed`.
pub fn random_bits_cpu(seed: u64, stream: u32, index: u32) -> u32 {
    let block = philox4x32_10(
        [index / 4, 0, stream, 0],
        [seed as u32, (seed >> 32) as u32],
    );
    block[(index % 4) as usize]
}

/// The top 24 bits of `w` as a float in [0, 1), exactly as the GPU forms it.
fn unit(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Element `index` of a uniform fill over [0, 1): bit-identical to the GPU's
/// `uniform_fill(.., seed, 0.0, 1.0)`.
pub fn uniform_cpu(seed: u64, index: u32) -> f32 {
    unit(random_bits_cpu(seed, UNIFORM_STREAM, index))
}

/// Element `index` of `uniform_fill(.., seed, lo, hi)`, with `lo + (hi - lo) * u` rounded
/// twice. A GPU compiler may contract that into one FMA (one rounding), so the GPU value
/// equals this one or `uniform_range_cpu_fused`.
pub fn uniform_range_cpu(seed: u64, index: u32, lo: f32, hi: f32) -> f32 {
    (lo + (hi - lo) * uniform_cpu(seed, index)).min(next_below(hi))
}

/// As [`uniform_range_cpu`], with `lo + (hi - lo) * u` as one fused multiply-add.
pub fn uniform_range_cpu_fused(seed: u64, index: u32, lo: f32, hi: f32) -> f32 {
    (hi - lo)
        .mul_add(uniform_cpu(seed, index), lo)
        .min(next_below(hi))
}

/// Element `index` of a standard-normal fill, the same Box-Muller transform of the same bits
/// as the GPU but evaluated in f64 (GPU transcendentals differ in the last bits).
pub fn gaussian_cpu(seed: u64, index: u32) -> f32 {
    let pair = index & !1;
    let w0 = random_bits_cpu(seed, GAUSSIAN_STREAM, pair);
    let w1 = random_bits_cpu(seed, GAUSSIAN_STREAM, pair + 1);
    // u1 = 1 - v in (0, 1]; ln_1p keeps -ln(u1) precise near u1 = 1, as the GPU's series does
    let v = (0x00FF_FFFF - (w0 >> 8)) as f64 / 16_777_216.0;
    let u2 = (w1 >> 8) as f64 / 16_777_216.0;
    let r = (-2.0 * (-v).ln_1p()).sqrt();
    let theta = std::f64::consts::TAU * u2;
    let z = if index & 1 == 0 {
        r * theta.cos()
    } else {
        r * theta.sin()
    };
    z as f32
}

/// The largest f32 below `v` (finite `v`).
fn next_below(v: f32) -> f32 {
    if v == 0.0 {
        -f32::from_bits(1)
    } else if v > 0.0 {
        f32::from_bits(v.to_bits() - 1)
    } else {
        f32::from_bits(v.to_bits() + 1)
    }
}

fn seed_key(seed: u64) -> (u32, u32) {
    (seed as u32, (seed >> 32) as u32)
}

fn finite(op: &'static str, name: &str, v: f32) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::shape(op, format!("{name} = {v} is not finite")));
    }
    Ok(())
}

/// Element count of a non-empty f32 output, as the kernel's u32.
fn output_len(op: &'static str, y: &Tensor) -> Result<u32> {
    expect_dtype(op, "y", y, DType::F32)?;
    if y.numel() == 0 {
        return Err(Error::shape(
            op,
            format!("y has shape {:?}, which is empty", y.shape()),
        ));
    }
    to_u32(op, "numel", y.numel())
}

/// Fills `y` with U[lo, hi) under `seed`: never exactly `hi` (values that round up to it are
/// clamped to the float just below). Needs finite `lo < hi` with finite `hi - lo`.
pub fn uniform_fill(ctx: &GpuContext, y: &Tensor, seed: u64, lo: f32, hi: f32) -> Result<Dispatch> {
    const OP: &str = "uniform_fill";
    let n = output_len(OP, y)?;
    finite(OP, "lo", lo)?;
    finite(OP, "hi", hi)?;
    finite(OP, "hi - lo", hi - lo)?;
    if lo >= hi {
        return Err(Error::shape(OP, format!("needs lo < hi, got [{lo}, {hi})")));
    }
    let (key0, key1) = seed_key(seed);
    let params = RandomParams {
        n,
        stream: UNIFORM_STREAM,
        key0,
        key1,
        a: lo,
        b: hi - lo,
        hi_below: next_below(hi),
        _pad: 0,
    };
    ctx.dispatch(
        UNIFORM,
        &params,
        &[(2, y)],
        ctx.grid_1d(y.numel().div_ceil(4))?,
    )
}

fn check_std(op: &'static str, std: f32) -> Result<()> {
    finite(op, "std", std)?;
    if std < 0.0 {
        return Err(Error::shape(op, format!("std = {std} is negative")));
    }
    Ok(())
}

/// Fills `y` with N(mean, std²) under `seed` (Box-Muller on Philox bits).
pub fn gaussian_fill(
    ctx: &GpuContext,
    y: &Tensor,
    seed: u64,
    mean: f32,
    std: f32,
) -> Result<Dispatch> {
    const OP: &str = "gaussian_fill";
    let n = output_len(OP, y)?;
    finite(OP, "mean", mean)?;
    check_std(OP, std)?;
    let (key0, key1) = seed_key(seed);
    let params = RandomParams {
        n,
        stream: GAUSSIAN_STREAM,
        key0,
        key1,
        a: mean,
        b: std,
        hi_below: 0.0,
        _pad: 0,
    };
    ctx.dispatch(
        GAUSSIAN,
        &params,
        &[(2, y)],
        ctx.grid_1d(y.numel().div_ceil(4))?,
    )
}

/// `y = x + N(0, std²)` under `seed`, SmoothGrad's noisy input (Smilkov et al. 2017); the
/// noise is that of `gaussian_fill(.., seed, 0.0, std)`. `y` and `x` must be distinct buffers.
pub fn add_gaussian_noise(
    ctx: &GpuContext,
    y: &Tensor,
    x: &Tensor,
    seed: u64,
    std: f32,
) -> Result<Dispatch> {
    const OP: &str = "add_gaussian_noise";
    expect_dtype(OP, "x", x, DType::F32)?;
    expect_shape(OP, "y", y, x.shape())?;
    let n = output_len(OP, y)?;
    check_std(OP, std)?;
    if x.buffer() == y.buffer() {
        return Err(Error::shape(
            OP,
            "y and x share a buffer; in-place noise is not supported",
        ));
    }
    let (key0, key1) = seed_key(seed);
    let params = RandomParams {
        n,
        stream: GAUSSIAN_STREAM,
        key0,
        key1,
        a: 0.0,
        b: std,
        hi_below: 0.0,
        _pad: 0,
    };
    ctx.dispatch(
        ADD_NOISE,
        &params,
        &[(1, x), (2, y)],
        ctx.grid_1d(y.numel().div_ceil(4))?,
    )
}
