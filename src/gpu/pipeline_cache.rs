//! Compiled pipelines kept across runs with wgpu's `PIPELINE_CACHE` feature (Vulkan only).
//!
//! Compiling a kernel costs 20-40 ms on lavapipe and more for the big conv kernels, so a CLI
//! command spends much of its start-up in the driver's compiler. With the feature,
//! [`GpuContext::new`](crate::gpu::GpuContext::new) loads the driver's pipeline cache from a
//! file, passes it to every compute pipeline, and writes it back when the context is dropped
//! (or on [`GpuContext::save_pipeline_cache`](crate::gpu::GpuContext::save_pipeline_cache)).
//!
//! - **Where:** the directory `CNNVIS_CACHE_DIR`, else `$XDG_CACHE_HOME/cnnvis`, else
//!   `$HOME/.cache/cnnvis`; the file is named after
//!   [`wgpu::util::pipeline_cache_key`] (vendor and device id) plus `.bin`.
//! - **Off:** `CNNVIS_PIPELINE_CACHE=0` (or `false`, `off`, `no`) disables it; so does an
//!   adapter without the feature (non-Vulkan backends) or no usable directory.
//! - **Never fatal:** a missing, truncated or corrupt file is ignored (a fresh cache is made),
//!   and a failed write is silent. The file carries a checksum of the driver's data, and wgpu
//!   checks its own header (wgpu version, adapter, driver version) before the driver sees it.
//! - **Written only when it changed:** the data is compared with what was loaded, and written
//!   to a temporary file then renamed, so concurrent runs never see half a file.
//! - **Host devices:** [`GpuContext::from_device`](crate::gpu::GpuContext::from_device) uses no
//!   cache unless the host calls
//!   [`GpuContext::enable_pipeline_cache`](crate::gpu::GpuContext::enable_pipeline_cache).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// File magic of the cnnvis wrapper around the driver's cache data.
const MAGIC: &[u8; 8] = b"CNNVISPC";
/// Wrapper header: magic, data length (u64 LE), FNV-1a hash of the data (u64 LE).
const HEADER: usize = 8 + 8 + 8;

/// Whether `CNNVIS_PIPELINE_CACHE` leaves the cache on (anything but 0/false/off/no).
pub(crate) fn enabled_by_env() -> bool {
    flag_on("CNNVIS_PIPELINE_CACHE")
}

/// Whether the environment variable `var` is unset or anything but 0/false/off/no.
pub(crate) fn flag_on(var: &str) -> bool {
    match std::env::var(var) {
        Ok(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        ),
        Err(_) => true,
    }
}

/// The cache directory: `CNNVIS_CACHE_DIR`, else `$XDG_CACHE_HOME/cnnvis`, else
/// `$HOME/.cache/cnnvis`; `None` when none of them is set.
pub fn cache_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = nonempty("CNNVIS_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("cnnvis"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("cnnvis"))
}

/// FNV-1a, 64-bit: a checksum, not a defence against tampering.
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The driver data inside a cache file, or `None` when the wrapper does not check out.
fn unwrap_file(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let hash = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    let data = &bytes[HEADER..];
    (data.len() as u64 == len && fnv1a(data) == hash).then_some(data)
}

fn wrap_file(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a(data).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// A driver pipeline cache tied to a file.
pub(crate) struct DiskPipelineCache {
    cache: wgpu::PipelineCache,
    path: PathBuf,
    /// Hash of the data last loaded or written; `None` when nothing was.
    saved_hash: Mutex<Option<u64>>,
    /// Set when a pipeline was built through the cache since the last save.
    dirty: AtomicBool,
}

impl DiskPipelineCache {
    /// Opens the cache file `dir/<pipeline_cache_key>.bin` for `device`; `None` when the device
    /// lacks `PIPELINE_CACHE` or the backend has no cache key.
    pub(crate) fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
        dir: &Path,
    ) -> Option<Self> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let key = wgpu::util::pipeline_cache_key(info)?;
        let path = dir.join(format!("{key}.bin"));
        let bytes = std::fs::read(&path).ok();
        let data = bytes.as_deref().and_then(unwrap_file);
        // SAFETY: `data` is what `PipelineCache::get_data` returned in an earlier run (our
        // wrapper's length and checksum match what we wrote); wgpu validates its own header
        // (wgpu version, adapter, driver) and `fallback` makes it start empty on a mismatch.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("cnnvis pipeline cache"),
                data,
                fallback: true,
            })
        };
        Some(DiskPipelineCache {
            cache,
            path,
            saved_hash: Mutex::new(data.map(fnv1a)),
            dirty: AtomicBool::new(false),
        })
    }

    /// The wgpu cache to pass to pipeline descriptors.
    pub(crate) fn cache(&self) -> &wgpu::PipelineCache {
        &self.cache
    }

    /// The file it loads from and saves to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Notes that a pipeline was built through the cache.
    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the data when pipelines were built since the last save and it changed; returns
    /// whether the file was written.
    pub(crate) fn save(&self) -> std::io::Result<bool> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let Some(data) = self.cache.get_data() else {
            return Ok(false);
        };
        let hash = fnv1a(&data);
        let mut saved = self.saved_hash.lock().unwrap_or_else(|p| p.into_inner());
        if *saved == Some(hash) {
            return Ok(false);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written =
            std::fs::write(&tmp, wrap_file(&data)).and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
            self.dirty.store(true, Ordering::Relaxed);
        }
        written?;
        *saved = Some(hash);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_round_trips_and_rejects_damage() {
        let data = b"driver bytes".to_vec();
        let file = wrap_file(&data);
        assert_eq!(unwrap_file(&file), Some(&data[..]));
        let mut bad = file.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(unwrap_file(&bad), None);
        assert_eq!(unwrap_file(&file[..file.len() - 1]), None);
        assert_eq!(unwrap_file(b"garbage"), None);
    }
}
