//! A floating-point throughput probe for the benchmarks: independent vec4 FMA chains per
//! thread, measuring what the device's arithmetic units can reach with no memory traffic.

use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, Kernel, Shader, Tensor};
use crate::ops::{expect_dtype, to_u32};

const FMA_PEAK: Kernel = Kernel::new(Shader::FmaPeak, "fma_peak");

/// Kernels of this family.
pub const KERNELS: &[Kernel] = &[FMA_PEAK];

/// Multiplier of every chain step `x = x * FMA_A + FMA_B`: below 1, so values stay bounded.
pub const FMA_A: f32 = 0.999;
/// Addend of every chain step; the chains converge to `FMA_B / (1 - FMA_A)`, about 1.
pub const FMA_B: f32 = 0.001;
/// Independent vec4 chains per thread.
pub const FMA_CHAINS: u64 = 8;

/// Mirror of `FmaParams` in fma_peak.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FmaParams {
    threads: u32,
    iterations: u32,
    a: f32,
    b: f32,
}
const _: () = assert!(std::mem::size_of::<FmaParams>() == 16);

/// Floating-point operations of one probe: an FMA counts as two, per lane of each vec4 chain.
pub fn fma_peak_flops(threads: usize, iterations: u32) -> u64 {
    threads as u64 * u64::from(iterations) * FMA_CHAINS * 4 * 2
}

/// Launches `threads` threads of `iterations` steps of eight vec4 FMA chains; thread `i`
/// writes one value to `out[i]` (`out` needs at least `threads` f32s). Returns the dispatch
/// and its flop count, for GFLOP/s = flops / seconds / 1e9.
pub fn fma_peak(
    ctx: &GpuContext,
    out: &Tensor,
    threads: usize,
    iterations: u32,
) -> Result<(Dispatch, u64)> {
    const OP: &str = "fma_peak";
    expect_dtype(OP, "out", out, DType::F32)?;
    if threads == 0 {
        return Err(Error::shape(OP, "threads = 0: nothing to measure"));
    }
    if out.numel() < threads {
        return Err(Error::shape(
            OP,
            format!(
                "out has shape {:?} ({} values), expected at least threads = {threads} values",
                out.shape(),
                out.numel()
            ),
        ));
    }
    let params = FmaParams {
        threads: to_u32(OP, "threads", threads)?,
        iterations,
        a: FMA_A,
        b: FMA_B,
    };
    let d = ctx.dispatch(FMA_PEAK, &params, &[(1, out)], ctx.grid_1d(threads)?)?;
    Ok((d, fma_peak_flops(threads, iterations)))
}
