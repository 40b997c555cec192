//! The on-disk pipeline cache: written where the adapter has `PIPELINE_CACHE`, reused by the
//! next context, a corrupt file ignored, `CNNVIS_PIPELINE_CACHE=0` honoured.
//!
//! One test function: the cache is configured through process-wide environment variables.

use std::path::{Path, PathBuf};

use cnnvis::gpu::GpuContext;
use cnnvis::ops::relu::relu_forward;
use cnnvis::{wgpu, Tensor};

/// Whether the adapter this context runs on offers `PIPELINE_CACHE`, asked independently of
/// the context (which only requests the feature when it wants it).
fn adapter_offers_pipeline_cache(ctx: &GpuContext) -> bool {
    let info = ctx.device().adapter_info();
    let instance = wgpu::Instance::new(cnnvis::gpu::instance_descriptor());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let same = adapters.into_iter().find(|a| {
        let i = a.get_info();
        i.name == info.name && i.backend == info.backend && i.device == info.device
    });
    let Some(adapter) = same else {
        panic!("the context's adapter {info:?} is not among the enumerated adapters");
    };
    let offers = adapter.features().contains(wgpu::Features::PIPELINE_CACHE);
    if info.backend == wgpu::Backend::Vulkan && info.name.contains("llvmpipe") {
        // ../shared/LAVAPIPE.md: lavapipe lists PIPELINE_CACHE; the test must exercise it there
        assert!(offers, "lavapipe is documented to offer PIPELINE_CACHE");
    }
    offers
}

/// Runs one kernel and checks its result, so that a pipeline is compiled through the cache.
fn run_relu(ctx: &GpuContext) {
    let data = [-2.0f32, -0.5, 0.0, 1.5, 3.0, -7.0, 4.0, 0.25];
    let x = Tensor::from_slice(ctx, &[8], &data).unwrap();
    let y = Tensor::zeros(ctx, &[8]).unwrap();
    let d = relu_forward(ctx, &y, &x).unwrap();
    ctx.run(&[&d]).unwrap();
    let got = y.download(ctx).unwrap();
    let want: Vec<f32> = data.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(got, want);
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnnvis-pc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn is_cache_file(bytes: &[u8]) -> bool {
    bytes.len() > 24 && &bytes[..8] == b"CNNVISPC"
}

#[test]
fn pipeline_cache_is_written_reused_repaired_and_can_be_disabled() {
    // 1. Enabled, empty directory: the kernel's pipeline lands in a cache file on drop.
    let dir = fresh_dir("on");
    std::env::set_var("CNNVIS_CACHE_DIR", &dir);
    std::env::remove_var("CNNVIS_PIPELINE_CACHE");
    let ctx = GpuContext::new().unwrap();
    let offered = adapter_offers_pipeline_cache(&ctx);
    assert_eq!(
        ctx.pipeline_cache_enabled(),
        offered,
        "the cache must be on exactly when the adapter offers PIPELINE_CACHE ({})",
        ctx.adapter()
    );
    if !offered {
        // Documented no-op: no feature, no cache, no file.
        assert!(ctx.pipeline_cache_path().is_none());
        run_relu(&ctx);
        assert!(!ctx.save_pipeline_cache());
        drop(ctx);
        assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
        return;
    }
    let path = ctx.pipeline_cache_path().unwrap().to_path_buf();
    assert_eq!(path.parent(), Some(dir.as_path()));
    assert!(!path.exists());
    run_relu(&ctx);
    drop(ctx);
    let first = std::fs::read(&path).expect("the cache file is written on drop");
    assert!(is_cache_file(&first), "{} bytes", first.len());
    assert_eq!(files_in(&dir), vec![path.clone()], "no temporary file left");

    // 2. A second context loads it and still computes correctly; an explicit save with no
    //    new pipelines does not need to write.
    let ctx = GpuContext::new().unwrap();
    assert!(ctx.pipeline_cache_enabled());
    assert!(
        !ctx.save_pipeline_cache(),
        "nothing built yet: nothing to save"
    );
    run_relu(&ctx);
    ctx.save_pipeline_cache();
    drop(ctx);
    assert!(is_cache_file(&std::fs::read(&path).unwrap()));

    // 3. Garbage, a truncated file, and a well-wrapped file whose driver data is garbage are
    //    all ignored: the run works and a valid cache replaces them.
    let mut wrapped_garbage = b"CNNVISPC".to_vec();
    let junk = vec![0xA5u8; 64];
    wrapped_garbage.extend_from_slice(&(junk.len() as u64).to_le_bytes());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &junk {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    wrapped_garbage.extend_from_slice(&h.to_le_bytes());
    wrapped_garbage.extend_from_slice(&junk);
    for corrupt in [
        b"not a pipeline cache at all".to_vec(),
        first[..first.len() / 2].to_vec(),
        wrapped_garbage,
    ] {
        std::fs::write(&path, &corrupt).unwrap();
        let ctx = GpuContext::new().unwrap();
        assert!(ctx.pipeline_cache_enabled());
        run_relu(&ctx);
        drop(ctx);
        let repaired = std::fs::read(&path).unwrap();
        assert!(is_cache_file(&repaired) && repaired != corrupt);
    }
    let _ = std::fs::remove_dir_all(&dir);

    // 4. CNNVIS_PIPELINE_CACHE=0: no cache, no file.
    let dir = fresh_dir("off");
    std::env::set_var("CNNVIS_CACHE_DIR", &dir);
    std::env::set_var("CNNVIS_PIPELINE_CACHE", "0");
    let ctx = GpuContext::new().unwrap();
    assert!(!ctx.pipeline_cache_enabled());
    run_relu(&ctx);
    assert!(!ctx.save_pipeline_cache());
    drop(ctx);
    assert!(files_in(&dir).is_empty());
    std::env::remove_var("CNNVIS_PIPELINE_CACHE");
}
