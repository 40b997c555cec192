//! Kernel benchmarks: the adapter's practical FMA peak, then conv2d forward and backward to the
//! input at every distinct conv layer shape of VGG16 and ResNet50 (224² input: 3×3,
//! 1×1, strided and the 7×7 stem), each as GFLOP/s and as a fraction of the peak measured in the
//! same run. After a model's shapes, a total weighted by how often each shape occurs in the
//! model (when every shape of it ran).
//!
//! `cargo bench --bench kernels [-- FILTER...] [--json OUT.json]`: a FILTER is a substring of
//! the row label (`vgg16`, `resnet50`, `3x3`, `1x1`, `s2`, `14x14`, ...; any may match).
//! `CNNVIS_BENCH_SAMPLES=N` sets samples per figure (default 5), `CNNVIS_BENCH_BATCH=N` the
//! images per conv (default 1; the autotuner then tunes that batch), `CNNVIS_BENCH_WEIGHT=1` adds
//! backward-to-weight. `--json` writes `{device, adapter, fma_peak_gflops, batch, kernels: [{layer,
//! model, pass, variant, chosen, count, gflop, median_s, gflops, peak_fraction}],
//! fma_peak_end_gflops}` (the probe run again after the table: how far the machine drifted).
//!
//! The `variant` column names the forward / backward-to-input kernel that ran (`direct`,
//! `tiled`, `rows`, `windows`, `gemm`, `gemm-wide`, `winograd`; see `select_conv2d_variant`).
//! Every row keeps what its kernel prepares from the weights (packed or transformed weights) in
//! a `Conv2dWeightCache`, as a loaded model does. `--all-variants` also times every other
//! variant that applies to the shape (rows marked `*` are the automatic choice; totals use
//! those only). `CNNVIS_CONV_VARIANT=rows|tiled|direct` forces a variant for the automatic
//! rows, `CNNVIS_CONV_MIN_THREADS=N` changes the GPU thread target. On GPUs the automatic
//! choice is autotuned at first use (`CNNVIS_CONV_AUTOTUNE=0` for the rule alone); the decisions
//! and the tuner's own per-candidate timings are listed after the table.

use std::time::{Duration, Instant};

use cnnvis::gpu::{DType, Dispatch};
use cnnvis::ops::conv2d::{
    conv2d_autotune_choices, conv2d_backward_input_cached, conv2d_backward_weight, conv2d_flops,
    conv2d_forward_cached, conv2d_output_shape, conv2d_variant_threads, conv2d_windows_supported,
    with_conv2d_variant, Conv2dConfig, Conv2dPass, Conv2dVariant, Conv2dWeightCache,
};
use cnnvis::ops::fma_peak::fma_peak;
use cnnvis::{GpuContext, Tensor};

/// One distinct conv layer shape of a model.
#[derive(Clone, Copy)]
struct ConvShape {
    /// Input height = width.
    hw: usize,
    cin: usize,
    cout: usize,
    /// Kernel height = width.
    k: usize,
    stride: usize,
    pad: usize,
    /// How many layers of the model have this shape.
    count: usize,
}

const fn conv(
    hw: usize,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    count: usize,
) -> ConvShape {
    ConvShape {
        hw,
        cin,
        cout,
        k,
        stride,
        pad: k / 2,
        count,
    }
}

/// VGG16's conv layers (3×3, padding 1): every distinct shape with its count.
const VGG16_CONVS: &[ConvShape] = &[
    conv(224, 3, 64, 3, 1, 1),
    conv(224, 64, 64, 3, 1, 1),
    conv(112, 64, 128, 3, 1, 1),
    conv(112, 128, 128, 3, 1, 1),
    conv(56, 128, 256, 3, 1, 1),
    conv(56, 256, 256, 3, 1, 2),
    conv(28, 256, 512, 3, 1, 1),
    conv(28, 512, 512, 3, 1, 2),
    conv(14, 512, 512, 3, 1, 3),
];

/// torchvision ResNet50's conv layers (v1.5: stride on the 3×3), including the downsample
/// 1×1 convs, with their counts.
const RESNET50_CONVS: &[ConvShape] = &[
    // Stem.
    conv(224, 3, 64, 7, 2, 1),
    // layer1, 56².
    conv(56, 64, 64, 1, 1, 1),
    conv(56, 256, 64, 1, 1, 2),
    conv(56, 64, 64, 3, 1, 3),
    conv(56, 64, 256, 1, 1, 4),
    // layer2.
    conv(56, 256, 128, 1, 1, 1),
    conv(56, 128, 128, 3, 2, 1),
    conv(56, 256, 512, 1, 2, 1),
    conv(28, 512, 128, 1, 1, 3),
    conv(28, 128, 128, 3, 1, 3),
    conv(28, 128, 512, 1, 1, 4),
    // layer3.
    conv(28, 512, 256, 1, 1, 1),
    conv(28, 256, 256, 3, 2, 1),
    conv(28, 512, 1024, 1, 2, 1),
    conv(14, 1024, 256, 1, 1, 5),
    conv(14, 256, 256, 3, 1, 5),
    conv(14, 256, 1024, 1, 1, 6),
    // layer4.
    conv(14, 1024, 512, 1, 1, 1),
    conv(14, 512, 512, 3, 2, 1),
    conv(14, 1024, 2048, 1, 2, 1),
    conv(7, 2048, 512, 1, 1, 2),
    conv(7, 512, 512, 3, 1, 2),
    conv(7, 512, 2048, 1, 1, 3),
];

/// A sample should last at least this long, so submit overhead does not dominate fast GPUs.
const MIN_SAMPLE: Duration = Duration::from_millis(40);

/// One measured row, for the totals and `--json`.
struct Row {
    layer: String,
    model: &'static str,
    pass: &'static str,
    /// Kernel variant that ran (`direct`, `tiled`, `rows`; `-` for backward-weight).
    variant: &'static str,
    /// Whether the variant is the automatic choice (not one forced by `--all-variants`).
    chosen: bool,
    count: usize,
    flops: f64,
    seconds: f64,
}

fn main() {
    let mut filter: Vec<String> = Vec::new();
    let mut json: Option<String> = None;
    let mut all_variants = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--json" {
            json = args.next();
            if json.is_none() {
                eprintln!("error: --json needs a path");
                std::process::exit(2);
            }
        } else if a == "--all-variants" {
            all_variants = true;
        } else if !a.starts_with('-') {
            filter.push(a);
        }
    }
    let samples: usize = std::env::var("CNNVIS_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let with_weight = std::env::var("CNNVIS_BENCH_WEIGHT").is_ok_and(|v| v == "1");
    let ctx = match GpuContext::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("adapter: {}", ctx.adapter());
    println!(
        "samples per figure: {samples} (median reported); batch {}\n",
        batch()
    );

    let peak = fma_peak_gflops(&ctx, samples);
    println!("FMA peak (independent vec4 FMA chains, best of 7 samples): {peak:.1} GFLOP/s\n");
    println!(
        "{:<38} {:<16} {:<10} {:>10} {:>9} {:>10} {:>7}",
        "layer", "pass", "variant", "GFLOP", "ms", "GFLOP/s", "% peak"
    );
    let mut rows: Vec<Row> = Vec::new();
    for (model, shapes) in [("vgg16", VGG16_CONVS), ("resnet50", RESNET50_CONVS)] {
        let mut ran = 0;
        for s in shapes {
            let name = format!(
                "{model} conv {hw}x{hw} {}->{} {k}x{k}{}",
                s.cin,
                s.cout,
                if s.stride > 1 {
                    format!(" s{}", s.stride)
                } else {
                    String::new()
                },
                hw = s.hw,
                k = s.k
            );
            if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            ran += 1;
            match bench_conv(&ctx, &name, s, samples, peak, with_weight, all_variants) {
                Ok(r) => rows.extend(r.into_iter().map(|m| Row {
                    layer: name.clone(),
                    model,
                    pass: m.pass,
                    variant: m.variant,
                    chosen: m.chosen,
                    count: s.count,
                    flops: m.flops,
                    seconds: m.seconds,
                })),
                Err(e) => println!("{name:<38} error: {e}"),
            }
        }
        if ran == shapes.len() {
            for pass in ["forward", "backward-input", "backward-weight"] {
                let of: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.model == model && r.pass == pass && r.chosen)
                    .collect();
                if of.len() == shapes.len() {
                    let flops: f64 = of.iter().map(|r| r.flops * r.count as f64).sum();
                    let seconds: f64 = of.iter().map(|r| r.seconds * r.count as f64).sum();
                    report(
                        &format!("{model} all convs (weighted)"),
                        pass,
                        "",
                        flops,
                        seconds,
                        peak,
                    );
                }
            }
        }
    }
    // The probe again: on a shared VM the speed drifts over a run, and a start and end far
    // apart say that this run's % of peak mixes two machines.
    let end_peak = fma_peak_gflops(&ctx, samples);
    println!(
        "\nFMA peak again at the end of the run: {end_peak:.1} GFLOP/s ({:+.0} % against the start)",
        (end_peak / peak - 1.0) * 100.0
    );
    let mut tuned = conv2d_autotune_choices();
    if !tuned.is_empty() {
        tuned.sort_by_key(|e| (e.key.x, e.key.w, e.key.cfg.stride, e.key.pass as u8));
        println!("\nautotuned (input, weight, stride, pass: choice, tuner ms per candidate):");
        for e in &tuned {
            let times: Vec<String> = e
                .timings_ms
                .iter()
                .map(|(v, ms)| format!("{} {ms:.3}", v.name()))
                .collect();
            let k = &e.key;
            println!(
                "  {:?} {:?} s{} {:?}: {} [{}]{}",
                k.x,
                k.w,
                k.cfg.stride[0],
                k.pass,
                e.variant.name(),
                times.join(", "),
                match (&e.error, e.from_file) {
                    (Some(m), _) => format!(" (fell back: {m})"),
                    (None, true) => " (from an earlier run's file)".to_string(),
                    (None, false) => String::new(),
                }
            );
        }
    }
    if let Some(path) = json {
        use serde_json::json;
        let a = ctx.adapter();
        let kernels: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let g = r.flops / r.seconds / 1e9;
                json!({"layer": r.layer, "model": r.model, "pass": r.pass,
                       "variant": r.variant, "chosen": r.chosen, "count": r.count,
                       "gflop": r.flops / 1e9, "median_s": r.seconds, "gflops": g,
                       "peak_fraction": g / peak})
            })
            .collect();
        let doc = json!({"device": a.name, "adapter": a.to_string(),
                         "fma_peak_gflops": peak, "fma_peak_end_gflops": end_peak,
                         "batch": batch(), "kernels": kernels});
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: writing {path}: {e}");
            std::process::exit(1);
        }
        println!("\nwrote {path}");
    }
}

/// One timed pass of a shape.
struct Measured {
    pass: &'static str,
    variant: &'static str,
    chosen: bool,
    flops: f64,
    seconds: f64,
}

/// Images per conv (`CNNVIS_BENCH_BATCH`, default 1).
fn batch() -> usize {
    static BATCH: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BATCH.get_or_init(|| {
        std::env::var("CNNVIS_BENCH_BATCH")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1)
            .max(1)
    })
}

/// Times forward and backward-to-input (and backward-to-weight when asked) of one shape, with
/// the automatic variant and, with `all_variants`, every other one that applies.
fn bench_conv(
    ctx: &GpuContext,
    name: &str,
    s: &ConvShape,
    samples: usize,
    peak: f64,
    with_weight: bool,
    all_variants: bool,
) -> cnnvis::Result<Vec<Measured>> {
    let cfg = Conv2dConfig::new().padding(s.pad).stride(s.stride);
    let xs = [batch(), s.cin, s.hw, s.hw];
    let ws = [s.cout, s.cin, s.k, s.k];
    let ys = conv2d_output_shape(&xs, &ws, &cfg)?;
    let flops = conv2d_flops(&xs, &ws, &cfg)? as f64;
    let x = random_tensor(ctx, &xs, 1)?;
    let w = random_tensor(ctx, &ws, 2)?;
    let b = random_tensor(ctx, &[s.cout], 3)?;
    let y = Tensor::empty(ctx, &ys, DType::F32)?;
    let dy = random_tensor(ctx, &ys, 4)?;
    let dx = Tensor::empty(ctx, &xs, DType::F32)?;
    let mut out = Vec::new();
    let mut time = |pass: &'static str, d: &Dispatch, chosen: bool| -> cnnvis::Result<()> {
        let variant = Conv2dVariant::of_kernel(d.kernel()).map_or("?", |v| v.name());
        let t = time_dispatches(ctx, &[d], samples)?;
        let mark = if chosen && all_variants { "*" } else { "" };
        report(name, pass, &format!("{variant}{mark}"), flops, t, peak);
        out.push(Measured {
            pass,
            variant,
            chosen,
            flops,
            seconds: t,
        });
        Ok(())
    };

    // As a model runs them: whatever the kernel prepares from the weights alone (the windows
    // variant's packed weights) is made once, outside the timing.
    let cache = Conv2dWeightCache::new();
    let fwd = conv2d_forward_cached(ctx, &y, &x, &w, Some(&b), &cfg, &cache)?;
    time("forward", &fwd, true)?;
    let bwd = conv2d_backward_input_cached(ctx, &dx, &dy, &w, &cfg, false, &cache)?;
    time("backward-input", &bwd, true)?;
    if all_variants {
        for v in Conv2dVariant::ALL {
            for (pass, auto, label) in [
                (Conv2dPass::Forward, fwd.kernel(), "forward"),
                (Conv2dPass::BackwardInput, bwd.kernel(), "backward-input"),
            ] {
                let applies = conv2d_variant_threads(pass, v, &xs, &ws, &cfg)?.is_some()
                    && (v != Conv2dVariant::Windows || conv2d_windows_supported(ctx));
                if !applies || Conv2dVariant::of_kernel(auto) == Some(v) {
                    continue;
                }
                // Forced, with its own weight cache: prepared weights made outside the timing.
                let cache = Conv2dWeightCache::new();
                let d = with_conv2d_variant(v, || match pass {
                    Conv2dPass::Forward => {
                        conv2d_forward_cached(ctx, &y, &x, &w, Some(&b), &cfg, &cache)
                    }
                    Conv2dPass::BackwardInput => {
                        conv2d_backward_input_cached(ctx, &dx, &dy, &w, &cfg, false, &cache)
                    }
                })?;
                if Conv2dVariant::of_kernel(d.kernel()) != Some(v) {
                    continue;
                }
                time(label, &d, false)?;
            }
        }
    }
    if with_weight {
        let dw = Tensor::empty(ctx, &ws, DType::F32)?;
        let db = Tensor::empty(ctx, &[s.cout], DType::F32)?;
        let ds = conv2d_backward_weight(ctx, &dw, Some(&db), &dy, &x, &cfg, false)?;
        let refs: Vec<&Dispatch> = ds.iter().collect();
        let t = time_dispatches(ctx, &refs, samples)?;
        report(name, "backward-weight", "-", flops, t, peak);
        out.push(Measured {
            pass: "backward-weight",
            variant: "-",
            chosen: true,
            flops,
            seconds: t,
        });
    }
    Ok(out)
}

fn report(name: &str, pass: &str, variant: &str, flops: f64, seconds: f64, peak: f64) {
    let gflops = flops / seconds / 1e9;
    println!(
        "{name:<38} {pass:<16} {variant:<10} {:>10.3} {:>9.2} {:>10.2} {:>6.1}%",
        flops / 1e9,
        seconds * 1e3,
        gflops,
        100.0 * gflops / peak
    );
}

/// Median seconds of one run of `dispatches`, timed as submit + wait. Each sample records the
/// dispatches `reps` times into one submission, with `reps` chosen so a sample lasts at least
/// MIN_SAMPLE; the first run (pipeline compilation, cold caches) is not counted.
fn time_dispatches(
    ctx: &GpuContext,
    dispatches: &[&Dispatch],
    samples: usize,
) -> cnnvis::Result<f64> {
    Ok(median(&mut sample_dispatches(ctx, dispatches, samples)?))
}

/// As [`time_dispatches`], the fastest sample.
fn time_dispatches_best(
    ctx: &GpuContext,
    dispatches: &[&Dispatch],
    samples: usize,
) -> cnnvis::Result<f64> {
    let times = sample_dispatches(ctx, dispatches, samples)?;
    Ok(times.into_iter().fold(f64::INFINITY, f64::min))
}

/// Seconds per run of `dispatches`, one entry per sample (see [`time_dispatches`]).
fn sample_dispatches(
    ctx: &GpuContext,
    dispatches: &[&Dispatch],
    samples: usize,
) -> cnnvis::Result<Vec<f64>> {
    let once = |reps: usize| -> cnnvis::Result<f64> {
        let all: Vec<&Dispatch> = (0..reps).flat_map(|_| dispatches.iter().copied()).collect();
        let t = Instant::now();
        ctx.run(&all)?;
        ctx.wait()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let first = once(1)?;
    let mut reps = 1usize;
    let mut t = once(1)?.min(first);
    while t < MIN_SAMPLE.as_secs_f64() && reps < 1 << 16 {
        reps *= 2;
        t = once(reps)?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        times.push(once(reps)? / reps as f64);
    }
    Ok(times)
}

fn fma_peak_gflops(ctx: &GpuContext, samples: usize) -> f64 {
    let run = || -> cnnvis::Result<f64> {
        // 2^20 threads fill the largest GPUs; `time_dispatches` repeats the launch until a
        // sample is long enough on fast devices.
        let threads = 1 << 20;
        let out = Tensor::empty(ctx, &[threads], DType::F32)?;
        let (d, flops) = fma_peak(ctx, &out, threads, 256)?;
        // The best of the samples: the ceiling of a machine whose speed drifts (a shared VM),
        // which keeps every % of peak below conservative.
        Ok(flops as f64 / time_dispatches_best(ctx, &[&d], samples.max(7))? / 1e9)
    };
    match run() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error measuring the FMA peak: {e}");
            std::process::exit(1);
        }
    }
}

fn random_tensor(ctx: &GpuContext, shape: &[usize], seed: u64) -> cnnvis::Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Tensor::from_slice(ctx, shape, &data)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
