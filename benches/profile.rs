//! Where a forward + backward pass spends its time: plan-building times, the whole pass as one
//! submission, reading the input gradient back, and every launch of it timed alone, summed per
//! kernel entry point.
//!
//! ```text
//! cargo bench --bench profile -- MODEL.safetensors [--layer NAME] [--batch N] [--top K]
//! ```
//!
//! The backward pass runs from `--layer` (default: the model's last layer, the logits) to the
//! input, with the standard ReLU rule, as vanilla saliency does. `cargo bench --bench e2e`
//! writes full-size random-weight VGG16 and ResNet50 files under the system temp folder
//! (`cnnvis-bench/`) to profile. Each launch alone is the median of 3 submit-and-wait runs after
//! a warm-up, so on a GPU every figure also holds one submission's overhead (tens of µs): the
//! sum over launches exceeds the one-submission time by about that much per launch.

use std::collections::BTreeMap;
use std::time::Instant;

use cnnvis::gpu::Dispatch;
use cnnvis::ops::relu::ReluRule;
use cnnvis::{GpuContext, Model};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Median of 3 timed runs of `f` (ms), after one untimed run.
fn median3(mut f: impl FnMut() -> cnnvis::Result<()>) -> cnnvis::Result<f64> {
    f()?;
    let mut ts = Vec::with_capacity(3);
    for _ in 0..3 {
        let t = Instant::now();
        f()?;
        ts.push(ms(t));
    }
    ts.sort_by(f64::total_cmp);
    Ok(ts[1])
}

fn run(path: &str, layer: Option<&str>, batch: usize, top: usize) -> cnnvis::Result<()> {
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.adapter());
    let model = Model::open(&ctx, path)?;
    let layer = match layer {
        Some(l) => l.to_string(),
        None => model
            .layers()
            .last()
            .map(|l| l.name.clone())
            .ok_or_else(|| cnnvis::Error::shape("profile", "the model has no layers"))?,
    };
    let p = model.preprocess();
    let shape = [batch, p.channels.count(), p.size[0], p.size[1]];
    println!("model {path}, input {shape:?}, backward from `{layer}` to the input\n");

    let build = || -> cnnvis::Result<_> {
        let t = Instant::now();
        let fwd = model.forward_plan(&ctx, shape)?;
        let t_fwd = ms(t);
        let t = Instant::now();
        let bwd = model.backward_plan(&ctx, &fwd, &layer, None, ReluRule::Standard)?;
        Ok((fwd, bwd, t_fwd, ms(t)))
    };
    // The first build compiles pipelines and autotunes; the later ones are what a call pays.
    for i in 0..3 {
        let (fwd, bwd, t_fwd, t_bwd) = build()?;
        let all: Vec<&Dispatch> = fwd
            .dispatches()
            .into_iter()
            .chain(bwd.dispatches())
            .collect();
        let pass = median3(|| {
            ctx.run(&all)?;
            ctx.wait()
        })?;
        println!(
            "build {i}: forward plan {t_fwd:.2} ms, backward plan {t_bwd:.2} ms; \
             the pass as one submission {pass:.2} ms ({} dispatches, {} launches)",
            all.len(),
            all.iter().map(|d| d.launches()).sum::<usize>()
        );
    }

    let (fwd, bwd, _, _) = build()?;
    // What reading a result back costs (copy to the staging buffer, map, copy out): the e2e
    // cases end with one.
    if let Some(grad) = bwd.input_grad() {
        let mb = grad.byte_size() as f64 / 1e6;
        let t = median3(|| grad.download(&ctx).map(|_| ()))?;
        println!(
            "readback of the input gradient ({mb:.1} MB): {t:.3} ms ({:.2} GB/s)",
            mb / t
        );
        if let Some(r) = ctx.last_readback() {
            println!(
                "  last one: copy to staging + wait {:.3} ms, map {:.3} ms, copy out {:.3} ms",
                r.copy_and_wait * 1e3,
                r.map * 1e3,
                r.copy_out * 1e3
            );
        }
    }
    let mut per_kernel: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut launches: Vec<(f64, String)> = Vec::new();
    let mut total = 0.0;
    for (pass, ds) in [
        ("forward", fwd.dispatches()),
        ("backward", bwd.dispatches()),
    ] {
        for d in ds {
            let t = median3(|| {
                ctx.run(&[d])?;
                ctx.wait()
            })?;
            let entry = d.kernel().entry;
            let e = per_kernel.entry(format!("{pass} {entry}")).or_default();
            e.0 += t;
            e.1 += 1;
            total += t;
            let what = format!("{pass} {entry} {:?} x{}", d.workgroups(), d.launches());
            launches.push((t, what));
        }
    }
    let mut per_kernel: Vec<(String, (f64, usize))> = per_kernel.into_iter().collect();
    per_kernel.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("\nper kernel (each launch alone, summed):");
    for (k, (t, n)) in &per_kernel {
        println!("{k:<50} {n:>4} x {t:>10.3} ms {:>5.1} %", 100.0 * t / total);
    }
    println!("sum of launches alone: {total:.3} ms");
    launches.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("\nslowest {top} launches (workgroups, chained launches):");
    for (t, what) in launches.iter().take(top) {
        println!("{t:>10.3} ms  {what}");
    }
    Ok(())
}

fn main() {
    let mut path = None;
    let mut layer = None;
    let mut batch = 1;
    let mut top = 25;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("error: {name} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--layer" => layer = Some(value("--layer")),
            "--batch" => batch = value("--batch").parse().unwrap_or(1).max(1),
            "--top" => top = value("--top").parse().unwrap_or(25),
            "--bench" => {}
            s if s.starts_with('-') => {}
            s => path = Some(s.to_string()),
        }
    }
    let Some(path) = path else {
        eprintln!(
            "usage: cargo bench --bench profile -- MODEL.safetensors [--layer NAME] \
             [--batch N] [--top K]"
        );
        std::process::exit(2);
    };
    if let Err(e) = run(&path, layer.as_deref(), batch, top) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
