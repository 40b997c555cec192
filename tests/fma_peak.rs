//! FMA throughput probe: its output against a CPU evaluation of the same recurrence, its flop
//! count, and bad inputs.

mod common;
use common::*;

use cnnvis::gpu::DType;
use cnnvis::ops::fma_peak::{fma_peak, fma_peak_flops, FMA_A, FMA_B};
use cnnvis::Tensor;

/// Thread `i`'s output: eight vec4 chains from the shader's starting values, `iterations`
/// steps of x = x * a + b (one rounding when `fused`, two otherwise), summed in the shader's
/// order.
fn fma_ref(i: usize, iterations: u32, fused: bool) -> f32 {
    let base = (i & 1023) as f32 * 0.000_976_562_5;
    let mut x = [[0f32; 4]; 8];
    for (k, chain) in x.iter_mut().enumerate() {
        for (l, v) in chain.iter_mut().enumerate() {
            *v = base + l as f32 * 0.031_25 + k as f32 * 0.125;
        }
    }
    for _ in 0..iterations {
        for v in x.iter_mut().flatten() {
            *v = if fused {
                v.mul_add(FMA_A, FMA_B)
            } else {
                *v * FMA_A + FMA_B
            };
        }
    }
    let add = |a: [f32; 4], b: [f32; 4]| [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]];
    let s = add(
        add(add(x[0], x[1]), add(x[2], x[3])),
        add(add(x[4], x[5]), add(x[6], x[7])),
    );
    (s[0] + s[1]) + (s[2] + s[3])
}

/// The GPU's fma() is fused on lavapipe; WGSL also allows a split multiply-add, so the output
/// must equal one of the two CPU evaluations, bit for bit, on every thread.
#[test]
fn fma_peak_output_matches_cpu_reference() {
    let c = ctx();
    for &threads in &[1usize, 37, 1000, 3000] {
        for &iterations in &[0u32, 1, 5, 200] {
            let out = poisoned(&[threads]);
            let (d, flops) = fma_peak(c, &out, threads, iterations).unwrap();
            run(&[&d]);
            let got = download(&out);
            assert_eq!(flops, fma_peak_flops(threads, iterations));
            let matches = |fused: bool| {
                got.iter()
                    .enumerate()
                    .all(|(i, g)| g.to_bits() == fma_ref(i, iterations, fused).to_bits())
            };
            assert!(
                matches(true) || matches(false),
                "threads {threads} iterations {iterations}: first gpu {:?} vs fused {:?} / split {:?}",
                &got[..got.len().min(4)],
                (0..got.len().min(4)).map(|i| fma_ref(i, iterations, true)).collect::<Vec<_>>(),
                (0..got.len().min(4)).map(|i| fma_ref(i, iterations, false)).collect::<Vec<_>>(),
            );
            // values stay bounded: the chains contract towards b / (1 - a) = 1 per lane
            assert!(got.iter().all(|v| v.is_finite() && v.abs() < 64.0));
        }
    }
}

/// Output beyond `threads` is untouched, so a larger scratch tensor is fine.
#[test]
fn fma_peak_writes_only_its_threads() {
    let c = ctx();
    let out = poisoned(&[300]);
    let (d, _) = fma_peak(c, &out, 257, 3).unwrap();
    run(&[&d]);
    let got = download(&out);
    assert!(got[..257].iter().all(|v| v.is_finite()));
    assert!(got[257..].iter().all(|v| v.is_nan()));
}

#[test]
fn fma_peak_flops_count_two_per_fma_lane() {
    // 8 chains x 4 lanes x 2 flops per FMA, per thread and iteration
    assert_eq!(fma_peak_flops(1, 1), 64);
    assert_eq!(fma_peak_flops(1000, 0), 0);
    assert_eq!(fma_peak_flops(65_536, 4096), 65_536 * 4096 * 64);
    // no u32 overflow on large probes
    assert_eq!(
        fma_peak_flops(1 << 24, u32::MAX),
        (1u64 << 24) * u32::MAX as u64 * 64
    );
    let c = ctx();
    let out = zeros(&[512]);
    let (_, flops) = fma_peak(c, &out, 512, 10).unwrap();
    assert_eq!(flops, 512 * 10 * 64);
}

#[test]
fn fma_peak_rejects_bad_inputs() {
    let c = ctx();
    let out = zeros(&[16]);
    assert!(fma_peak(c, &out, 0, 10).is_err(), "no threads");
    assert!(fma_peak(c, &out, 17, 10).is_err(), "out too small");
    let u = Tensor::empty(c, &[16], DType::U32).unwrap();
    assert!(fma_peak(c, &u, 16, 10).is_err(), "u32 out");
    assert!(fma_peak(c, &out, 16, 10).is_ok());
}
