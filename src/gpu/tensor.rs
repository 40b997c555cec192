//! GPU tensors: NCHW (row-major, last index fastest) buffers that carry their shape, leased
//! from a pool so that passes reuse memory instead of allocating it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::error::{Error, GpuError, Result};
use crate::gpu::context::GpuContext;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: activations, weights, gradients.
    F32,
    /// 32-bit unsigned integer: argmax indices, masks.
    U32,
}

// UNIFORM: the conv kernels for CPU drivers read packed operands through uniform windows.
const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::UNIFORM)
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Free buffers by size class; a dropped tensor hands its buffer back here.
#[derive(Default)]
pub struct BufferPool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
}

impl BufferPool {
    /// Buffers are pooled by size rounded up to 256 bytes, so equal shapes share a class.
    fn size_class(bytes: u64) -> u64 {
        bytes.max(16).next_multiple_of(256)
    }

    fn take(&self, class: u64) -> Option<wgpu::Buffer> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.get_mut(&class).and_then(|v| v.pop())
    }

    fn give(&self, buffer: wgpu::Buffer) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.entry(buffer.size()).or_default().push(buffer);
    }

    /// Releases every free buffer back to the driver.
    pub fn trim(&self) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Bytes held in free buffers.
    pub fn free_bytes(&self) -> u64 {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.iter().map(|(k, v)| k * v.len() as u64).sum()
    }
}

struct Storage {
    buffer: Option<wgpu::Buffer>,
    pool: Weak<BufferPool>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let (Some(buffer), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            pool.give(buffer);
        }
    }
}

/// A shaped f32 (or u32) buffer on the GPU. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.dtype, self.shape)
    }
}

impl Tensor {
    /// An uninitialized tensor (contents are whatever the pooled buffer held), for outputs that
    /// a kernel overwrites entirely.
    pub fn empty(ctx: &GpuContext, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let numel = checked_numel(shape)?;
        let bytes = (numel as u64).checked_mul(4).ok_or_else(|| {
            Error::shape("tensor", format!("shape {shape:?} overflows a byte count"))
        })?;
        let limit = ctx.limits().max_buffer_size;
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: format!("a tensor of shape {shape:?}"),
                bytes,
                limit,
                limit_name: "max_buffer_size",
            }
            .into());
        }
        let class = BufferPool::size_class(bytes);
        let buffer = match ctx.pool.take(class) {
            Some(b) => b,
            None => ctx.scoped("allocating a tensor", || {
                ctx.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("cnnvis tensor"),
                    size: class,
                    usage: USAGE,
                    mapped_at_creation: false,
                })
            })?,
        };
        Ok(Tensor {
            storage: Arc::new(Storage {
                buffer: Some(buffer),
                pool: Arc::downgrade(&ctx.pool),
            }),
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// A zero-filled f32 tensor.
    pub fn zeros(ctx: &GpuContext, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::empty(ctx, shape, DType::F32)?;
        t.fill_zero(ctx)?;
        Ok(t)
    }

    /// An f32 tensor holding `data` (row-major in `shape`).
    pub fn from_slice(ctx: &GpuContext, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        let t = Tensor::empty(ctx, shape, DType::F32)?;
        t.write(ctx, data)?;
        Ok(t)
    }

    /// A u32 tensor holding `data`.
    pub fn from_u32(ctx: &GpuContext, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        let t = Tensor::empty(ctx, shape, DType::U32)?;
        t.write_bytes(ctx, bytemuck::cast_slice(data), data.len())?;
        Ok(t)
    }

    /// Overwrites the contents with `data`, which must have exactly `numel` values.
    pub fn write(&self, ctx: &GpuContext, data: &[f32]) -> Result<()> {
        if self.dtype != DType::F32 {
            return Err(Error::shape("tensor write", "f32 data for a u32 tensor"));
        }
        self.write_bytes(ctx, bytemuck::cast_slice(data), data.len())
    }

    /// Overwrites `data.len()` f32 values starting at element `offset`, leaving the rest as is,
    /// so large tensors can be uploaded in chunks without a full-size host copy.
    pub fn write_at(&self, ctx: &GpuContext, offset: usize, data: &[f32]) -> Result<()> {
        if self.dtype != DType::F32 {
            return Err(Error::shape("tensor write_at", "f32 data for a u32 tensor"));
        }
        let fits = offset
            .checked_add(data.len())
            .is_some_and(|end| end <= self.numel());
        if !fits {
            return Err(Error::shape(
                "tensor write_at",
                format!(
                    "{} values at element {offset} overrun a tensor of shape {:?} ({} values)",
                    data.len(),
                    self.shape,
                    self.numel()
                ),
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        ctx.scoped("uploading part of a tensor", || {
            ctx.queue()
                .write_buffer(self.buffer(), offset as u64 * 4, bytemuck::cast_slice(data));
        })
    }

    fn write_bytes(&self, ctx: &GpuContext, bytes: &[u8], len: usize) -> Result<()> {
        if len != self.numel() {
            return Err(Error::shape(
                "tensor write",
                format!(
                    "{len} values for a tensor of shape {:?} ({} values)",
                    self.shape,
                    self.numel()
                ),
            ));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        ctx.scoped("uploading a tensor", || {
            ctx.queue().write_buffer(self.buffer(), 0, bytes);
        })
    }

    /// Sets every element to zero (on the GPU; no upload).
    pub fn fill_zero(&self, ctx: &GpuContext) -> Result<()> {
        ctx.scoped("clearing a tensor", || {
            let mut enc = ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            enc.clear_buffer(self.buffer(), 0, None);
            ctx.queue().submit(Some(enc.finish()));
        })
    }

    /// Reads an f32 tensor back to the CPU.
    pub fn download(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        if self.dtype != DType::F32 {
            return Err(Error::shape(
                "tensor download",
                "download_u32 reads u32 tensors",
            ));
        }
        ctx.read_buffer(self.buffer(), self.byte_size())
    }

    /// Reads a u32 tensor back to the CPU.
    pub fn download_u32(&self, ctx: &GpuContext) -> Result<Vec<u32>> {
        if self.dtype != DType::U32 {
            return Err(Error::shape(
                "tensor download",
                "download reads f32 tensors",
            ));
        }
        ctx.read_buffer(self.buffer(), self.byte_size())
    }

    /// The same buffer seen with another shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = checked_numel(shape)?;
        if n != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {:?} as {shape:?}", self.shape),
            ));
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// The first elements of the same buffer seen with `shape` (at most as many elements); a
    /// launch binds only those.
    pub(crate) fn prefix(&self, shape: &[usize]) -> Result<Tensor> {
        let n = checked_numel(shape)?;
        if n > self.numel() {
            return Err(Error::shape(
                "prefix",
                format!("cannot view {:?} as the larger {shape:?}", self.shape),
            ));
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// Shape, outermost first (NCHW for images).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data (the buffer may be larger: pooled size classes).
    pub fn byte_size(&self) -> u64 {
        self.numel() as u64 * 4
    }

    /// Whether `other` shares this tensor's buffer (a clone or a reshape of it).
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// The underlying wgpu buffer, for hosts that bind it themselves.
    pub fn buffer(&self) -> &wgpu::Buffer {
        match &self.storage.buffer {
            Some(b) => b,
            None => unreachable!("a live tensor always holds its buffer"),
        }
    }
}

fn checked_numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::shape("tensor", format!("shape {shape:?} overflows usize")))
}
