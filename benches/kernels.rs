//! Kernel benchmarks: the adapter's practical FMA peak, then conv2d forward and backward to the
//! input at the shapes of VGG16's conv layers (batch 1, 3×3, padding 1), each as GFLOP/s and as a
//! fraction of the peak measured in the same run.
//!
//! `cargo bench --bench kernels [-- FILTER]`; `CNNVIS_BENCH_SAMPLES=N` sets samples per figure
//! (default 5), `CNNVIS_BENCH_WEIGHT=1` adds backward-to-weight.

use std::time::{Duration, Instant};

use cnnvis::gpu::{DType, Dispatch};
use cnnvis::ops::conv2d::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_flops, conv2d_forward,
    conv2d_output_shape, Conv2dConfig,
};
use cnnvis::ops::fma_peak::fma_peak;
use cnnvis::{GpuContext, Tensor};

/// (H = W, Cin, Cout) of VGG16's distinct conv layer shapes.
const VGG16_CONVS: &[(usize, usize, usize)] = &[
    (224, 3, 64),
    (224, 64, 64),
    (112, 128, 128),
    (56, 256, 256),
    (28, 512, 512),
    (14, 512, 512),
];

/// A sample should last at least this long, so submit overhead does not dominate fast GPUs.
const MIN_SAMPLE: Duration = Duration::from_millis(40);

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
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
    println!("samples per figure: {samples} (median reported)\n");

    let peak = fma_peak_gflops(&ctx, samples);
    println!("FMA peak (independent vec4 FMA chains): {peak:.1} GFLOP/s\n");
    println!(
        "{:<28} {:<16} {:>10} {:>9} {:>10} {:>7}",
        "layer", "pass", "GFLOP", "ms", "GFLOP/s", "% peak"
    );
    for &(hw, cin, cout) in VGG16_CONVS {
        let name = format!("conv {hw}x{hw} {cin}->{cout} 3x3");
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        if let Err(e) = bench_conv(&ctx, &name, hw, cin, cout, samples, peak, with_weight) {
            println!("{name:<28} error: {e}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_conv(
    ctx: &GpuContext,
    name: &str,
    hw: usize,
    cin: usize,
    cout: usize,
    samples: usize,
    peak: f64,
    with_weight: bool,
) -> cnnvis::Result<()> {
    let cfg = Conv2dConfig::new().padding(1);
    let xs = [1, cin, hw, hw];
    let ws = [cout, cin, 3, 3];
    let ys = conv2d_output_shape(&xs, &ws, &cfg)?;
    let flops = conv2d_flops(&xs, &ws, &cfg)? as f64;
    let x = random_tensor(ctx, &xs, 1)?;
    let w = random_tensor(ctx, &ws, 2)?;
    let b = random_tensor(ctx, &[cout], 3)?;
    let y = Tensor::empty(ctx, &ys, DType::F32)?;
    let dy = random_tensor(ctx, &ys, 4)?;
    let dx = Tensor::empty(ctx, &xs, DType::F32)?;

    let fwd = conv2d_forward(ctx, &y, &x, &w, Some(&b), &cfg)?;
    report(
        name,
        "forward",
        flops,
        time_dispatches(ctx, &[&fwd], samples)?,
        peak,
    );
    let bwd = conv2d_backward_input(ctx, &dx, &dy, &w, &cfg, false)?;
    report(
        name,
        "backward-input",
        flops,
        time_dispatches(ctx, &[&bwd], samples)?,
        peak,
    );
    if with_weight {
        let dw = Tensor::empty(ctx, &ws, DType::F32)?;
        let db = Tensor::empty(ctx, &[cout], DType::F32)?;
        let ds = conv2d_backward_weight(ctx, &dw, Some(&db), &dy, &x, &cfg, false)?;
        let refs: Vec<&Dispatch> = ds.iter().collect();
        report(
            name,
            "backward-weight",
            flops,
            time_dispatches(ctx, &refs, samples)?,
            peak,
        );
    }
    Ok(())
}

fn report(name: &str, pass: &str, flops: f64, seconds: f64, peak: f64) {
    let gflops = flops / seconds / 1e9;
    println!(
        "{name:<28} {pass:<16} {:>10.3} {:>9.2} {:>10.2} {:>6.1}%",
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
    Ok(median(&mut times))
}

fn fma_peak_gflops(ctx: &GpuContext, samples: usize) -> f64 {
    let run = || -> cnnvis::Result<f64> {
        // 2^20 threads fill the largest GPUs; `time_dispatches` repeats the launch until a
        // sample is long enough on fast devices.
        let threads = 1 << 20;
        let out = Tensor::empty(ctx, &[threads], DType::F32)?;
        let (d, flops) = fma_peak(ctx, &out, threads, 256)?;
        Ok(flops as f64 / time_dispatches(ctx, &[&d], samples)? / 1e9)
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
