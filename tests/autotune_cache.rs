//! Autotuning decisions kept across runs (`cnnvis::gpu::autotune_cache`): a decision timed in
//! one run is written to the file, a later run takes it from there without timing, and a
//! choice that is malformed or does not apply is tuned anew. Autotuning's own submissions do
//! not count as the caller's first dispatch.
//!
//! One test function: autotuning is switched on for this CPU adapter through process-wide
//! environment variables, read once.

use std::path::PathBuf;

use cnnvis::gpu::GpuContext;
use cnnvis::ops::conv2d::{
    conv2d_autotune_candidates, conv2d_autotune_choices, conv2d_forward, conv2d_output_shape,
    Conv2dAutotuneEntry, Conv2dAutotuneKey, Conv2dConfig, Conv2dPass, Conv2dVariant,
};
use cnnvis::Tensor;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnnvis-at-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn key(ctx: &GpuContext, x: [usize; 4], w: [usize; 4]) -> Conv2dAutotuneKey {
    let cfg = Conv2dConfig::new().padding(1);
    let adapter = ctx.adapter().to_string();
    Conv2dAutotuneKey::for_shapes(&adapter, Conv2dPass::Forward, &x, &w, &cfg).unwrap()
}

/// Builds (and runs) the forward conv of these shapes; its autotuning entry.
fn build(ctx: &GpuContext, x: [usize; 4], w: [usize; 4]) -> (Conv2dVariant, Conv2dAutotuneEntry) {
    let cfg = Conv2dConfig::new().padding(1);
    let xt = Tensor::zeros(ctx, &x).unwrap();
    let wt = Tensor::zeros(ctx, &w).unwrap();
    let y = Tensor::zeros(ctx, &conv2d_output_shape(&x, &w, &cfg).unwrap()).unwrap();
    let d = conv2d_forward(ctx, &y, &xt, &wt, None, &cfg).unwrap();
    let k = key(ctx, x, w);
    let entry = conv2d_autotune_choices()
        .into_iter()
        .find(|e| e.key == k)
        .expect("an autotuning entry");
    (
        Conv2dVariant::of_kernel(d.kernel()).expect("a conv kernel"),
        entry,
    )
}

fn saved(path: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("the file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    v["decisions"].as_object().expect("decisions").clone()
}

#[test]
fn autotune_decisions_are_kept_across_runs() {
    let dir = fresh_dir("a");
    std::env::set_var("CNNVIS_CACHE_DIR", &dir);
    std::env::set_var("CNNVIS_CONV_AUTOTUNE", "1");
    std::env::remove_var("CNNVIS_AUTOTUNE_CACHE");
    std::env::remove_var("CNNVIS_CONV_VARIANT");
    let mut ctx = GpuContext::new().expect("a GPU test needs an adapter");
    let path = ctx
        .autotune_cache_path()
        .expect("on by default")
        .to_path_buf();
    assert!(path.starts_with(&dir), "{path:?}");

    // A run that tunes: the choice is timed, written, and the timing runs are not the caller's.
    let (xa, wa) = ([1, 8, 9, 10], [8, 8, 3, 3]);
    let device = ctx.adapter().device_type;
    let cfg = Conv2dConfig::new().padding(1);
    let candidates =
        conv2d_autotune_candidates(Conv2dPass::Forward, &xa, &wa, &cfg, device).unwrap();
    assert!(candidates.len() >= 2, "{candidates:?}");
    let (ran, entry) = build(&ctx, xa, wa);
    assert_eq!((entry.tunings, entry.from_file), (1, false));
    assert_eq!(ran, entry.variant);
    assert!(
        ctx.first_run_at().is_none(),
        "autotuning's runs are not the first dispatch"
    );
    let decisions = saved(&path);
    assert_eq!(
        decisions[&key(&ctx, xa, wa).file_key()],
        entry.variant.name(),
        "{decisions:?}"
    );

    // The next run: a file naming a choice for a new shape is followed without timing, even a
    // choice the timing would not make; a malformed or inapplicable one is tuned anew.
    let dir2 = fresh_dir("b");
    assert!(ctx.enable_autotune_cache(&dir2));
    let path2 = ctx.autotune_cache_path().unwrap().to_path_buf();
    let (xb, wb) = ([1, 6, 7, 9], [5, 6, 3, 3]);
    let (xc, wc) = ([2, 4, 6, 5], [7, 4, 3, 3]);
    let (xd, wd) = ([1, 4, 6, 5], [7, 4, 3, 3]);
    let pinned = conv2d_autotune_candidates(Conv2dPass::Forward, &xb, &wb, &cfg, device)
        .unwrap()
        .into_iter()
        .find(|&v| v == Conv2dVariant::Direct)
        .expect("direct is a candidate");
    let file = serde_json::json!({
        "format": 1,
        "adapter": ctx.adapter().to_string(),
        "decisions": {
            key(&ctx, xb, wb).file_key(): pinned.name(),
            key(&ctx, xc, wc).file_key(): "no-such-variant",
            key(&ctx, xd, wd).file_key(): "gemm",
        },
    });
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::write(&path2, file.to_string()).unwrap();
    let (ran, entry) = build(&ctx, xb, wb);
    assert_eq!((ran, entry.variant), (pinned, pinned));
    assert_eq!((entry.tunings, entry.from_file), (0, true));
    assert!(entry.timings_ms.is_empty());
    for (x, w) in [(xc, wc), (xd, wd)] {
        let (ran, entry) = build(&ctx, x, w);
        assert_eq!((entry.tunings, entry.from_file), (1, false), "{x:?}");
        assert_ne!(
            ran,
            Conv2dVariant::Gemm,
            "gemm is no candidate on a CPU adapter"
        );
        assert_eq!(saved(&path2)[&key(&ctx, x, w).file_key()], ran.name());
    }
    assert_eq!(
        saved(&path2).len(),
        3,
        "the file keeps the earlier run's decisions"
    );

    // A damaged file counts as empty and is rewritten whole.
    let dir3 = fresh_dir("c");
    assert!(ctx.enable_autotune_cache(&dir3));
    let path3 = ctx.autotune_cache_path().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir3).unwrap();
    std::fs::write(&path3, "{\"format\": 1, \"decisions\": {\"Forward x[").unwrap();
    let (xe, we) = ([1, 3, 5, 6], [4, 3, 3, 3]);
    let (_, entry) = build(&ctx, xe, we);
    assert_eq!(entry.tunings, 1);
    assert_eq!(saved(&path3).len(), 1);

    // The caller's own submission is the first dispatch.
    let (x, y) = (
        Tensor::zeros(&ctx, &[4]).unwrap(),
        Tensor::zeros(&ctx, &[4]).unwrap(),
    );
    let d = cnnvis::ops::relu::relu_forward(&ctx, &y, &x).unwrap();
    ctx.run(&[&d]).unwrap();
    assert!(ctx.first_run_at().is_some_and(|t| t >= ctx.requested_at()));
    let t = ctx.startup_times();
    assert_eq!(
        t.tunings, 4,
        "shapes a, c, d, e were timed; b came from the file: {t:?}"
    );
    assert!(t.tune_s > 0.0 && t.device_ready_s > 0.0, "{t:?}");
    assert!(
        t.pipelines >= 1 && t.compile_s > 0.0,
        "relu_forward compiled: {t:?}"
    );
    assert!(
        t.first_run_s.is_some_and(|s| s >= t.device_ready_s),
        "{t:?}"
    );

    // Off: no file.
    std::env::set_var("CNNVIS_AUTOTUNE_CACHE", "0");
    assert!(!ctx.enable_autotune_cache(&dir3));
    assert!(ctx.autotune_cache_path().is_none());
    for d in [dir, dir2, dir3] {
        let _ = std::fs::remove_dir_all(d);
    }
}
