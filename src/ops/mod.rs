//! Layer operations: each validates shapes and builds the [`Dispatch`](crate::gpu::Dispatch)es
//! of its forward pass and its backward passes `(dinp, dweight, dbias, dout, saved...)`.

pub mod conv1x1_windows;
pub mod conv2d;
pub mod conv2d_cols;
pub mod conv2d_gemm;
pub mod conv2d_windows;
pub mod conv2d_winograd;
pub mod elementwise;
pub mod fma_peak;
pub mod linear;
pub mod linear_windows;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod relu;
pub mod softmax;
pub mod windows;

use crate::error::{Error, Result};
use crate::gpu::{DType, Kernel, Tensor};

/// The kernel list of every ops module, for the registry's validation.
pub(crate) const KERNEL_LISTS: &[&[Kernel]] = &[
    conv1x1_windows::KERNELS,
    conv2d::KERNELS,
    conv2d_cols::KERNELS,
    conv2d_gemm::KERNELS,
    conv2d_windows::KERNELS,
    conv2d_winograd::KERNELS,
    elementwise::KERNELS,
    fma_peak::KERNELS,
    linear::KERNELS,
    linear_windows::KERNELS,
    pool::KERNELS,
    random::KERNELS,
    reduce::KERNELS,
    relu::KERNELS,
    softmax::KERNELS,
];

/// Runs `f` with the thread-local `slot` set to `value`, restoring the previous value afterwards
/// (even if `f` panics): the per-thread overrides of the conv variant choice.
pub(crate) fn with_thread_value<V: Copy + 'static, T>(
    slot: &'static std::thread::LocalKey<std::cell::Cell<V>>,
    value: V,
    f: impl FnOnce() -> T,
) -> T {
    struct Restore<V: Copy + 'static>(&'static std::thread::LocalKey<std::cell::Cell<V>>, V);
    impl<V: Copy + 'static> Drop for Restore<V> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(slot, slot.with(|c| c.replace(value)));
    f()
}

/// `v` as an i32 kernel parameter, or an error naming `what` when it does not fit.
pub(crate) fn to_i32(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::shape(op, format!("{what} = {v} exceeds i32")))
}

/// Checks that `t` has exactly `shape`.
pub(crate) fn expect_shape(
    op: &'static str,
    name: &str,
    t: &Tensor,
    shape: &[usize],
) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::shape(
            op,
            format!("{name} has shape {:?}, expected {shape:?}", t.shape()),
        ));
    }
    Ok(())
}

/// Checks that `t` has rank `rank` and returns its shape.
pub(crate) fn expect_rank<'a>(
    op: &'static str,
    name: &str,
    t: &'a Tensor,
    rank: usize,
) -> Result<&'a [usize]> {
    if t.shape().len() != rank {
        return Err(Error::shape(
            op,
            format!("{name} has shape {:?}, expected rank {rank}", t.shape()),
        ));
    }
    Ok(t.shape())
}

/// Checks the element type of `t`.
pub(crate) fn expect_dtype(op: &'static str, name: &str, t: &Tensor, dtype: DType) -> Result<()> {
    if t.dtype() != dtype {
        return Err(Error::shape(
            op,
            format!("{name} is {:?}, expected {dtype:?}", t.dtype()),
        ));
    }
    Ok(())
}

/// Converts a size to the u32 a kernel's uniform holds, refusing what does not fit.
pub(crate) fn to_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(op, format!("{what} = {v} exceeds u32")))
}
