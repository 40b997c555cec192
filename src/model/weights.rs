//! Safetensors weight files, memory-mapped: tensors are converted to f32 and uploaded in
//! bounded chunks straight from the mapping, so a large layer never needs a full-size host copy.
//!
//! Format (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header
//! length N, N bytes of JSON header (name -> dtype, shape, data_offsets relative to the data
//! section; optional `__metadata__` string map), then the data section, little-endian, C order.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::gpu::{DType, GpuContext, Tensor};

/// Elements per upload chunk: 1 Mi f32 = 4 MiB of staging memory at a time.
const CHUNK_ELEMS: usize = 1 << 20;

/// Bytes of the little-endian u64 that opens a safetensors file.
const LEN_PREFIX: usize = 8;

/// Element type of a stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightDType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16: the upper 16 bits of an f32.
    BF16,
    /// Anything else, by its safetensors name (e.g. `I64`); not convertible to f32 here.
    Other(String),
}

impl WeightDType {
    fn from_safetensors(d: Dtype) -> Self {
        match d {
            Dtype::F32 => WeightDType::F32,
            Dtype::F16 => WeightDType::F16,
            Dtype::BF16 => WeightDType::BF16,
            other => WeightDType::Other(format!("{other:?}")),
        }
    }

    /// Bytes per element for the dtypes `read_f32` converts.
    fn f32_convertible_size(&self) -> Option<usize> {
        match self {
            WeightDType::F32 => Some(4),
            WeightDType::F16 | WeightDType::BF16 => Some(2),
            WeightDType::Other(_) => None,
        }
    }
}

impl fmt::Display for WeightDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightDType::F32 => f.write_str("F32"),
            WeightDType::F16 => f.write_str("F16"),
            WeightDType::BF16 => f.write_str("BF16"),
            WeightDType::Other(s) => f.write_str(s),
        }
    }
}

/// Dtype and shape of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Stored element type.
    pub dtype: WeightDType,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
}

/// Why a weights file could not be used; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be opened or mapped.
    #[error("weights file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The header is malformed or inconsistent.
    #[error("weights file {} is not a valid safetensors file: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte offset or tensor where known.
        detail: String,
    },
    /// The header describes more bytes than the file holds.
    #[error(
        "weights file {} is truncated: its header describes {expected_bytes} bytes but the file \
         has {found_bytes} (incomplete download or copy?)",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// File size the header implies.
        expected_bytes: u64,
        /// Actual file size.
        found_bytes: u64,
    },
    /// The model needs a tensor the file lacks.
    #[error("weights file {}: missing tensor `{name}`", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// The file holds a tensor the model does not use (usually a different architecture).
    #[error("weights file {}: unexpected tensor `{name}` (not used by this model)", path.display())]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor's stored shape differs from what the model expects.
    #[error(
        "weights file {}: tensor `{name}` has shape {found:?} but the model expects {expected:?}",
        path.display()
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Shape the model expects.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// The tensor's dtype cannot be converted to f32 here.
    #[error(
        "weights file {}: tensor `{name}` has dtype {dtype}; only F32, F16 and BF16 are supported",
        path.display()
    )]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its stored dtype.
        dtype: WeightDType,
    },
    /// A `cnnvis.graph` description is malformed or inconsistent with its weights.
    #[error("graph description ({origin}): {detail}")]
    InvalidGraph {
        /// Where the description came from (a sidecar path or a weights file's metadata).
        origin: String,
        /// What is wrong, naming the layer or field.
        detail: String,
    },
    /// The tensors match no built-in architecture and no graph description was given.
    #[error(
        "weights file {}: unrecognized architecture: {detail}. Pass the architecture explicitly \
         (--arch; built-ins: {known}) or describe the network with a cnnvis.graph JSON",
        path.display()
    )]
    UnknownArchitecture {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
        /// The built-in names.
        known: String,
    },
    /// A layer name that the model does not have.
    #[error("model {model} has no layer `{name}`; layers include: {known}")]
    UnknownLayer {
        /// The model's architecture name.
        model: String,
        /// The name asked for.
        name: String,
        /// Some of the valid names.
        known: String,
    },
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Static(s) => s,
            Bytes::Owned(v) => v,
        }
    }
}

struct Entry {
    info: TensorInfo,
    /// Absolute byte range in the file.
    range: Range<usize>,
}

/// A validated safetensors file; tensor data stays in the mapping until read or uploaded.
pub struct Weights {
    path: PathBuf,
    bytes: Bytes,
    tensors: HashMap<String, Entry>,
    metadata: Option<HashMap<String, String>>,
}

impl fmt::Debug for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Weights({}, {} tensors)",
            self.path.display(),
            self.tensors.len()
        )
    }
}

impl Weights {
    /// Maps and validates a safetensors file.
    pub fn open(path: impl AsRef<Path>) -> Result<Weights, ModelError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| ModelError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < LEN_PREFIX as u64 {
            return Err(too_short(&path, len));
        }
        // SAFETY: the mapping is read-only; as with every mmap-based loader, the file must not
        // be truncated or rewritten while these Weights live. All offsets are validated
        // against the mapping's length, so a file that changed between stat and map still
        // cannot index out of bounds.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Weights::parse(path, Bytes::Mapped(map))
    }

    /// Validates a safetensors file embedded in the binary (`include_bytes!`).
    pub fn from_static(bytes: &'static [u8]) -> Result<Weights, ModelError> {
        Weights::parse(PathBuf::from("<embedded>"), Bytes::Static(bytes))
    }

    /// Validates a safetensors file held in memory (e.g. re-initialized weights built by
    /// `safetensors::serialize`); its path reads `<memory>`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Weights, ModelError> {
        Weights::parse(PathBuf::from("<memory>"), Bytes::Owned(bytes))
    }

    fn parse(path: PathBuf, bytes: Bytes) -> Result<Weights, ModelError> {
        let buf = bytes.as_slice();
        let file_len = buf.len() as u64;
        let Some(prefix) = buf.get(..LEN_PREFIX) else {
            return Err(too_short(&path, file_len));
        };
        let mut le = [0u8; LEN_PREFIX];
        le.copy_from_slice(prefix);
        let header_len = u64::from_le_bytes(le);
        if header_len > file_len - LEN_PREFIX as u64 {
            return Err(corrupt(
                &path,
                format!(
                    "the header length at byte offset 0 says {header_len} bytes, larger than the \
                     {} bytes after it in the {file_len}-byte file",
                    file_len - LEN_PREFIX as u64
                ),
            ));
        }
        let (n, meta) = match SafeTensors::read_metadata(buf) {
            Ok(v) => v,
            Err(SafeTensorError::MetadataIncompleteBuffer) => {
                return Err(size_mismatch(&path, buf, header_len as usize))
            }
            Err(e) => return Err(corrupt(&path, describe(&e))),
        };
        let data_start = LEN_PREFIX + n;
        let mut tensors = HashMap::new();
        for (name, info) in meta.tensors() {
            let (s, e) = info.data_offsets;
            let range = data_start
                .checked_add(s)
                .zip(data_start.checked_add(e))
                .map(|(a, b)| a..b)
                .filter(|r| r.start <= r.end && r.end <= buf.len());
            let Some(range) = range else {
                return Err(corrupt(
                    &path,
                    format!("tensor `{name}` data_offsets [{s}, {e}] lie outside the file"),
                ));
            };
            let info = TensorInfo {
                dtype: WeightDType::from_safetensors(info.dtype),
                shape: info.shape.clone(),
            };
            tensors.insert(name, Entry { info, range });
        }
        let metadata = meta.metadata().clone();
        Ok(Weights {
            path,
            bytes,
            tensors,
            metadata,
        })
    }

    /// The file this was read from (`<embedded>` for [`Weights::from_static`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Dtype and shape of `name`, if stored.
    pub fn info(&self, name: &str) -> Option<TensorInfo> {
        self.tensors.get(name).map(|e| e.info.clone())
    }

    /// The free-form `__metadata__` string map, if the file has one.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.as_ref()
    }

    /// Checks that the file holds exactly `expected`: the first missing name is reported,
    /// then the first (sorted) stored name the model does not use.
    pub fn check_names(&self, expected: &[&str]) -> Result<(), ModelError> {
        if let Some(name) = expected.iter().find(|n| !self.tensors.contains_key(**n)) {
            return Err(ModelError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            });
        }
        if let Some(name) = self.names().into_iter().find(|n| !expected.contains(n)) {
            return Err(ModelError::UnexpectedTensor {
                path: self.path.clone(),
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Reads `name` converted to f32 (F32, F16 and BF16 are supported).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        let (entry, bytes) = self.convertible(name)?;
        let mut out = Vec::new();
        convert_into(&entry.info.dtype, bytes, &mut out);
        Ok(out)
    }

    /// Uploads `name` as an f32 tensor after checking its shape is `expected_shape`; data is
    /// converted and written in chunks of at most 4 MiB, straight from the mapping.
    pub fn upload(
        &self,
        ctx: &GpuContext,
        name: &str,
        expected_shape: &[usize],
    ) -> crate::Result<Tensor> {
        let entry = self.entry(name)?;
        if entry.info.shape != expected_shape {
            return Err(ModelError::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: expected_shape.to_vec(),
                found: entry.info.shape.clone(),
            }
            .into());
        }
        let rows = expected_shape.first().copied().unwrap_or(1);
        self.upload_rows(ctx, name, 0..rows)
    }

    /// Uploads rows `rows` (along the first axis) of `name` as an f32 tensor of shape
    /// `[rows.len(), rest...]`: how a layer too large for one storage binding is split. The
    /// shape is not checked against a model here; see [`Weights::upload`].
    pub fn upload_rows(
        &self,
        ctx: &GpuContext,
        name: &str,
        rows: Range<usize>,
    ) -> crate::Result<Tensor> {
        let (entry, bytes) = self.convertible(name)?;
        let dtype = &entry.info.dtype;
        let elem = dtype.f32_convertible_size().unwrap_or(4);
        let shape = &entry.info.shape;
        let total_rows = shape.first().copied().unwrap_or(1);
        let row_elems: usize = shape.iter().skip(1).product();
        if rows.start > rows.end || rows.end > total_rows {
            return Err(crate::Error::shape(
                "upload_rows",
                format!("rows {rows:?} of tensor `{name}` with shape {shape:?}"),
            ));
        }
        let mut out_shape = shape.clone();
        if let Some(first) = out_shape.first_mut() {
            *first = rows.len();
        }
        let bytes = &bytes[rows.start * row_elems * elem..rows.end * row_elems * elem];
        let tensor = Tensor::empty(ctx, &out_shape, DType::F32)?;
        let mut buf = Vec::with_capacity(CHUNK_ELEMS.min(bytes.len() / elem));
        for (i, chunk) in bytes.chunks(CHUNK_ELEMS * elem).enumerate() {
            buf.clear();
            convert_into(dtype, chunk, &mut buf);
            tensor.write_at(ctx, i * CHUNK_ELEMS, &buf)?;
            // An empty submit flushes the staged write, so staging memory stays one chunk
            // deep instead of growing with the tensor.
            ctx.queue().submit(std::iter::empty());
        }
        Ok(tensor)
    }

    fn entry(&self, name: &str) -> Result<&Entry, ModelError> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// The entry and its bytes, if its dtype converts to f32.
    fn convertible(&self, name: &str) -> Result<(&Entry, &[u8]), ModelError> {
        let entry = self.entry(name)?;
        let Some(elem) = entry.info.dtype.f32_convertible_size() else {
            return Err(ModelError::UnsupportedDtype {
                path: self.path.clone(),
                name: name.to_string(),
                dtype: entry.info.dtype.clone(),
            });
        };
        // Validated at parse time; re-checked so that no byte sequence can panic here.
        match self.bytes.as_slice().get(entry.range.clone()) {
            Some(b) if b.len() % elem == 0 => Ok((entry, b)),
            _ => Err(corrupt(
                &self.path,
                format!(
                    "tensor `{name}` bytes {}..{} do not hold whole {} values",
                    entry.range.start, entry.range.end, entry.info.dtype
                ),
            )),
        }
    }
}

/// Appends `bytes` (little-endian, of a convertible dtype) to `out` as f32.
fn convert_into(dtype: &WeightDType, bytes: &[u8], out: &mut Vec<f32>) {
    match dtype {
        WeightDType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        WeightDType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        ),
        WeightDType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        ),
        WeightDType::Other(_) => {}
    }
}

/// IEEE binary16 -> binary32, exact: every f16 (subnormals included) is an f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        0 => {
            // Zero or subnormal: man * 2^-24; both factors and the product are exact in f32.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            f32::from_bits(v.to_bits() | sign)
        }
        // Inf or NaN; the NaN payload moves to the top of the f32 mantissa.
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        // Normal: rebias the exponent from 15 to 127.
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

/// bfloat16 -> f32: bf16 is the upper half of an f32.
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

fn corrupt(path: &Path, detail: impl Into<String>) -> ModelError {
    ModelError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn too_short(path: &Path, len: u64) -> ModelError {
    corrupt(
        path,
        format!("the file is {len} bytes, shorter than the 8-byte header length at offset 0"),
    )
}

fn describe(e: &SafeTensorError) -> String {
    match e {
        SafeTensorError::InvalidOffset(name) => format!(
            "tensor `{name}` has data_offsets that do not follow the previous tensor's \
             (out of order, overlapping or leaving a gap)"
        ),
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's data_offsets span does not match its shape and dtype".to_string()
        }
        other => format!("header (bytes 8..) rejected: {other}"),
    }
}

/// The header is valid but the data section's length disagrees with it: a truncated file
/// (the common case: an interrupted download) or trailing bytes.
fn size_mismatch(path: &Path, buf: &[u8], header_len: usize) -> ModelError {
    let found = buf.len() as u64;
    let header = buf.get(LEN_PREFIX..LEN_PREFIX + header_len).unwrap_or(&[]);
    match max_data_end(header) {
        Some(end) => {
            let expected = (LEN_PREFIX + header_len) as u64 + end;
            if expected > found {
                ModelError::Truncated {
                    path: path.to_path_buf(),
                    expected_bytes: expected,
                    found_bytes: found,
                }
            } else {
                corrupt(
                    path,
                    format!(
                        "its header describes {expected} bytes but the file has {found}: \
                         {} unexpected trailing bytes from offset {expected}",
                        found - expected
                    ),
                )
            }
        }
        None => corrupt(
            path,
            format!(
                "the data section (from byte offset {}) does not match the header's \
                 data_offsets",
                LEN_PREFIX + header_len
            ),
        ),
    }
}

/// Largest `data_offsets` end in a header that safetensors already accepted as valid JSON;
/// only used to word the truncation error, so a plain scan suffices.
fn max_data_end(header: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"data_offsets\"";
    let mut best = None;
    let mut i = 0;
    while let Some(pos) = header
        .get(i..)
        .and_then(|h| h.windows(KEY.len()).position(|w| w == KEY))
    {
        i += pos + KEY.len();
        let rest = header.get(i..).unwrap_or(&[]);
        if let Some(end) = parse_offsets_end(rest) {
            best = Some(best.map_or(end, |b: u64| b.max(end)));
        }
    }
    best
}

/// Parses `: [a, b]` and returns b.
fn parse_offsets_end(s: &[u8]) -> Option<u64> {
    let s = s.get(..s.len().min(64))?;
    let text = match std::str::from_utf8(s) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(s.get(..e.valid_up_to())?).ok()?,
    };
    let text = text.trim_start().strip_prefix(':')?.trim_start();
    let text = text.strip_prefix('[')?;
    let close = text.find(']')?;
    let mut parts = text[..close].split(',');
    let _start: u64 = parts.next()?.trim().parse().ok()?;
    let end: u64 = parts.next()?.trim().parse().ok()?;
    Some(end)
}
