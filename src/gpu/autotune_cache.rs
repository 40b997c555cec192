//! Autotuning decisions kept across runs, so that a second run skips the timing (and the
//! compilation of every candidate kernel) that the first one paid for at each shape's first
//! use, as Burn keeps its autotune cache and cuDNN users keep `benchmark` results.
//!
//! - **Where:** beside the pipeline cache ([`crate::gpu::pipeline_cache::cache_dir`]), in
//!   `autotune-<hash>.json`, the hash of the adapter (name, backend, driver), the cnnvis
//!   version and every kernel's source: a new driver or changed kernels start a fresh file.
//! - **What:** one line per decision, `"<what was tuned>": "<choice>"`, in a JSON object;
//!   readable, and safe to delete.
//! - **Off:** `CNNVIS_AUTOTUNE_CACHE=0` (or `false`, `off`, `no`); contexts wrapping a host's
//!   device use none unless the host calls
//!   [`GpuContext::enable_autotune_cache`](crate::gpu::GpuContext::enable_autotune_cache).
//! - **Never fatal:** an unreadable or malformed file counts as empty, and a failed write is
//!   silent; a choice that does not apply to its shape is ignored by the caller and tuned anew.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::gpu::kernels::Shader;
use crate::gpu::pipeline_cache::{self, fnv1a};

/// Format version written into the file; others are ignored.
const FORMAT: u64 = 1;

/// Whether `CNNVIS_AUTOTUNE_CACHE` leaves the file on (anything but 0/false/off/no).
pub(crate) fn enabled_by_env() -> bool {
    pipeline_cache::flag_on("CNNVIS_AUTOTUNE_CACHE")
}

/// The file for `adapter` (as [`crate::gpu::AdapterSummary`] displays it) in `dir`.
pub(crate) fn file_for(dir: &Path, adapter: &str) -> PathBuf {
    let mut identity = format!("{adapter}\ncnnvis {}\n", env!("CARGO_PKG_VERSION"));
    for s in Shader::ALL {
        identity.push_str(&s.source());
    }
    dir.join(format!("autotune-{:016x}.json", fnv1a(identity.as_bytes())))
}

/// Each file's decisions, read once per process.
fn files() -> std::sync::MutexGuard<'static, HashMap<PathBuf, BTreeMap<String, String>>> {
    static FILES: std::sync::OnceLock<Mutex<HashMap<PathBuf, BTreeMap<String, String>>>> =
        std::sync::OnceLock::new();
    FILES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The decisions in `text`, or none where it is not a file of this format.
fn parse(text: &str) -> BTreeMap<String, String> {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_str(text) else {
        return BTreeMap::new();
    };
    if top.get("format").and_then(|v| v.as_u64()) != Some(FORMAT) {
        return BTreeMap::new();
    }
    let Some(serde_json::Value::Object(d)) = top.get("decisions") else {
        return BTreeMap::new();
    };
    d.iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn render(adapter: &str, decisions: &BTreeMap<String, String>) -> String {
    let value = serde_json::json!({
        "format": FORMAT,
        "adapter": adapter,
        "cnnvis": env!("CARGO_PKG_VERSION"),
        "decisions": decisions,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// `path`'s decisions in `files`, read from disk the first time (none where it is unreadable).
fn decisions_of<'a>(
    files: &'a mut HashMap<PathBuf, BTreeMap<String, String>>,
    path: &Path,
) -> &'a mut BTreeMap<String, String> {
    files.entry(path.to_path_buf()).or_insert_with(|| {
        std::fs::read_to_string(path)
            .map(|t| parse(&t))
            .unwrap_or_default()
    })
}

/// The choice saved in `path` for `key`, reading the file at the first call for it.
pub(crate) fn lookup(path: &Path, key: &str) -> Option<String> {
    decisions_of(&mut files(), path).get(key).cloned()
}

/// Adds `key: choice` to `path` and rewrites the file (a temporary file renamed over it, so a
/// concurrent run never reads half of one); returns whether it was written.
pub(crate) fn record(path: &Path, adapter: &str, key: &str, choice: &str) -> bool {
    let mut files = files();
    let decisions = decisions_of(&mut files, path);
    decisions.insert(key.to_string(), choice.to_string());
    let text = render(adapter, decisions);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip_and_damage_reads_as_empty() {
        let mut d = BTreeMap::new();
        d.insert(
            "forward x[1, 64, 56, 56]".to_string(),
            "winograd".to_string(),
        );
        d.insert(
            "backward-input x[2, 3, 8, 8]".to_string(),
            "gemm".to_string(),
        );
        let text = render("GPU (Vulkan)", &d);
        assert_eq!(parse(&text), d);
        assert!(parse(&text[..text.len() / 2]).is_empty());
        assert!(parse("[1, 2]").is_empty());
        assert!(parse(&text.replace("\"format\": 1", "\"format\": 2")).is_empty());
        let other = file_for(Path::new("/c"), "another adapter");
        assert_ne!(file_for(Path::new("/c"), "GPU (Vulkan)"), other);
        assert!(other.starts_with("/c"));
    }
}
