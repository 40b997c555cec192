//! Burn's autotuned wgpu conv2d against cnnvis's conv kernels, on the same adapter, in one
//! process, alternating sample by sample, so both see the same machine state (a shared VM drifts
//! by 20 % within minutes).
//!
//! For each of VGG16's conv shapes (batch 1, 3×3, padding 1) it times:
//! - forward with bias;
//! - forward + backward to the input (Burn: autodiff with only the input tracked; cnnvis: the
//!   forward dispatch then the backward-to-input dispatch);
//! - backward to the input alone, as the difference of those two medians.
//!
//! Each pass runs once untimed first, so Burn's autotuner has settled (the "warm cache").
//! The FMA peak is cnnvis's probe, measured at the start of the same run.
//!
//! `cargo run --release -- [FILTER...] [--samples N] [--json OUT.json]`; a FILTER is a substring
//! of the row label (`112x112`, `512->512`). Built on its own (its own `[workspace]`), so
//! cnnvis's build and CI never compile Burn.

use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, DeviceKind, Distribution, Tensor};
use cnnvis::gpu::{DType, Dispatch};
use cnnvis::ops::conv2d::{
    conv2d_backward_input_cached, conv2d_flops, conv2d_forward_cached, conv2d_output_shape,
    Conv2dConfig, Conv2dVariant, Conv2dWeightCache,
};
use cnnvis::ops::fma_peak::fma_peak;
use cnnvis::{GpuContext, Tensor as GpuTensor};

/// VGG16's conv layers: (input height = width, in channels, out channels).
const VGG16: &[(usize, usize, usize)] = &[
    (224, 3, 64),
    (224, 64, 64),
    (112, 64, 128),
    (112, 128, 128),
    (56, 128, 256),
    (56, 256, 256),
    (28, 256, 512),
    (28, 512, 512),
    (14, 512, 512),
];

/// A sample repeats the call until it lasts this long (fast GPUs), at least once.
const MIN_SAMPLE_S: f64 = 0.05;

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Fallible<()> {
    let mut filters = Vec::new();
    let mut samples = 5usize;
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--samples" => samples = args.next().ok_or("--samples needs N")?.parse()?,
            "--json" => json = Some(args.next().ok_or("--json needs a path")?),
            _ => filters.push(a),
        }
    }
    let samples = samples.max(1);

    let ctx = GpuContext::new()?;
    println!("cnnvis adapter: {}", ctx.adapter());
    let peak = measure_peak(&ctx)?;
    println!("FMA peak (cnnvis probe, best of 7): {peak:.1} GFLOP/s");
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    println!("Burn device: {device:?} (burn 0.22.1, wgpu backend, autotune on)");
    println!("samples: {samples}, alternating Burn / cnnvis; medians\n");
    println!(
        "{:<24} {:<16} {:>10} {:>10} {:>9} {:>9} {:>7} {:>7} {:>7}",
        "layer",
        "pass",
        "burn ms",
        "cnnvis ms",
        "burn GF/s",
        "ours GF/s",
        "burn %",
        "ours %",
        "ratio"
    );

    let mut rows = Vec::new();
    for &(hw, cin, cout) in VGG16 {
        let label = format!("vgg16 {hw}x{hw} {cin}->{cout}");
        if !filters.is_empty() && !filters.iter().any(|f| label.contains(f.as_str())) {
            continue;
        }
        for r in bench_shape(&ctx, &device, hw, cin, cout, samples)? {
            let (bg, og) = (r.flops / r.burn_s / 1e9, r.flops / r.cnnvis_s / 1e9);
            println!(
                "{label:<24} {:<16} {:>10.2} {:>10.2} {bg:>9.2} {og:>9.2} {:>6.1}% {:>6.1}% {:>6.2}x",
                r.pass,
                r.burn_s * 1e3,
                r.cnnvis_s * 1e3,
                100.0 * bg / peak,
                100.0 * og / peak,
                r.burn_s / r.cnnvis_s
            );
            rows.push(serde_json::json!({
                "layer": label, "pass": r.pass, "gflop": r.flops / 1e9,
                "burn_median_s": r.burn_s, "cnnvis_median_s": r.cnnvis_s,
                "cnnvis_variant": r.variant, "burn_gflops": bg, "cnnvis_gflops": og,
                "speedup": r.burn_s / r.cnnvis_s,
            }));
        }
        // Rewritten after every shape: a long run cut short keeps what it measured.
        if let Some(path) = &json {
            let doc = serde_json::json!({
                "adapter": ctx.adapter().to_string(), "burn_device": format!("{device:?}"),
                "burn_version": "0.22.1", "fma_peak_gflops": peak, "samples": samples,
                "rows": rows,
            });
            std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        }
    }
    if let Some(path) = json {
        println!("\nwrote {path}");
    }
    Ok(())
}

/// One pass of one shape, timed both ways.
struct Compared {
    pass: &'static str,
    flops: f64,
    burn_s: f64,
    cnnvis_s: f64,
    variant: String,
}

fn bench_shape(
    ctx: &GpuContext,
    device: &Device,
    hw: usize,
    cin: usize,
    cout: usize,
    samples: usize,
) -> Fallible<Vec<Compared>> {
    let (xs, ws) = ([1, cin, hw, hw], [cout, cin, 3, 3]);
    let cfg = Conv2dConfig::new().padding(1);
    let flops = conv2d_flops(&xs, &ws, &cfg)? as f64;
    let ys = conv2d_output_shape(&xs, &ws, &cfg)?;

    // cnnvis, as a loaded model runs it: weights prepared once in a cache.
    let x = gpu_random(ctx, &xs, 1)?;
    let w = gpu_random(ctx, &ws, 2)?;
    let b = gpu_random(ctx, &[cout], 3)?;
    let y = GpuTensor::empty(ctx, &ys, DType::F32)?;
    let dy = gpu_random(ctx, &ys, 4)?;
    let dx = GpuTensor::empty(ctx, &xs, DType::F32)?;
    let cache = Conv2dWeightCache::new();
    let fwd = conv2d_forward_cached(ctx, &y, &x, &w, Some(&b), &cfg, &cache)?;
    let bwd = conv2d_backward_input_cached(ctx, &dx, &dy, &w, &cfg, false, &cache)?;
    let name = |d: &Dispatch| Conv2dVariant::of_kernel(d.kernel()).map_or("?", |v| v.name());
    let variant = format!("{} / {}", name(&fwd), name(&bwd));
    let ours = |ds: &[&Dispatch], reps: usize| -> Fallible<()> {
        let all: Vec<&Dispatch> = (0..reps).flat_map(|_| ds.iter().copied()).collect();
        ctx.run(&all)?;
        ctx.wait()?;
        Ok(())
    };

    // Burn.
    let u = Distribution::Uniform(-0.5, 0.5);
    let bx = Tensor::<4>::random(xs, u, device);
    let bw = Tensor::<4>::random(ws, u, device);
    let bb = Tensor::<1>::random([cout], u, device);
    let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let theirs_fwd = |reps: usize| -> Fallible<()> {
        for _ in 0..reps {
            let _ = conv2d(bx.clone(), bw.clone(), Some(bb.clone()), opts.clone());
        }
        device.sync()?;
        Ok(())
    };
    let ax = bx.clone().autodiff().require_grad();
    let aw = bw.clone().autodiff();
    let theirs_both = |reps: usize| -> Fallible<()> {
        for _ in 0..reps {
            let out = conv2d(ax.clone(), aw.clone(), None, opts.clone());
            let grads = out.backward();
            let _ = ax.grad(&grads).ok_or("Burn returned no input gradient")?;
        }
        device.sync()?;
        Ok(())
    };

    let mut out = Vec::new();
    for (pass, burn, cnnvis) in [
        (
            "forward",
            &theirs_fwd as &dyn Fn(usize) -> Fallible<()>,
            &(|r| ours(&[&fwd], r)) as &dyn Fn(usize) -> Fallible<()>,
        ),
        ("fwd+bwd-input", &theirs_both, &(|r| ours(&[&fwd, &bwd], r))),
    ] {
        // Warm-up: pipelines compile, Burn's autotuner runs its candidates and caches the pick
        // (its log shows the tuning done within the first call).
        burn(1)?;
        cnnvis(1)?;
        let (rb, rc) = (reps_for(burn)?, reps_for(cnnvis)?);
        let (mut tb, mut tc) = (Vec::new(), Vec::new());
        for _ in 0..samples {
            tb.push(seconds(|| burn(rb))? / rb as f64);
            tc.push(seconds(|| cnnvis(rc))? / rc as f64);
        }
        let f = if pass == "forward" {
            flops
        } else {
            2.0 * flops
        };
        out.push(Compared {
            pass,
            flops: f,
            burn_s: median(&mut tb),
            cnnvis_s: median(&mut tc),
            variant: variant.clone(),
        });
    }
    // Backward to the input alone, as the difference of the two medians: Burn's autodiff
    // offers no way to launch it by itself.
    out.push(Compared {
        pass: "bwd-input (diff)",
        flops,
        burn_s: out[1].burn_s - out[0].burn_s,
        cnnvis_s: out[1].cnnvis_s - out[0].cnnvis_s,
        variant,
    });
    Ok(out)
}

/// Repetitions per sample so it lasts at least MIN_SAMPLE_S.
fn reps_for(f: &dyn Fn(usize) -> Fallible<()>) -> Fallible<usize> {
    let mut reps = 1;
    while seconds(|| f(reps))? < MIN_SAMPLE_S && reps < 1 << 14 {
        reps *= 2;
    }
    Ok(reps)
}

fn seconds(f: impl FnOnce() -> Fallible<()>) -> Fallible<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

fn measure_peak(ctx: &GpuContext) -> Fallible<f64> {
    let threads = 1 << 20;
    let out = GpuTensor::empty(ctx, &[threads], DType::F32)?;
    let (d, flops) = fma_peak(ctx, &out, threads, 256)?;
    let run = |reps: usize| -> Fallible<()> {
        let all: Vec<&Dispatch> = (0..reps).map(|_| &d).collect();
        ctx.run(&all)?;
        ctx.wait()?;
        Ok(())
    };
    run(1)?;
    let reps = reps_for(&run)?;
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        best = best.min(seconds(|| run(reps))? / reps as f64);
    }
    Ok(flops as f64 / best / 1e9)
}

fn gpu_random(ctx: &GpuContext, shape: &[usize], seed: u64) -> cnnvis::Result<GpuTensor> {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    GpuTensor::from_slice(ctx, shape, &data)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
