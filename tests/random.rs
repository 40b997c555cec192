//! Counter-based RNG: the CPU twin against Random123's known answers, the GPU bit for bit
//! against the twin, reproducibility, seed sensitivity, statistics, range, bad inputs.

mod common;
use common::*;

use cnnvis::gpu::DType;
use cnnvis::ops::random::{
    add_gaussian_noise, gaussian_cpu, gaussian_fill, philox4x32_10, random_bits_cpu, uniform_cpu,
    uniform_fill, uniform_range_cpu, uniform_range_cpu_fused, UNIFORM_STREAM,
};
use cnnvis::Tensor;

/// Odd sizes: partial last blocks of four, partial workgroups, and > 70_000 elements.
const SIZES: &[usize] = &[1, 3, 5, 4097, 70_001, 262_147];

fn uniform_gpu(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let y = poisoned(&[n]);
    run(&[&uniform_fill(ctx(), &y, seed, lo, hi).unwrap()]);
    download(&y)
}

fn gaussian_gpu(n: usize, seed: u64, mean: f32, std: f32) -> Vec<f32> {
    let y = poisoned(&[n]);
    run(&[&gaussian_fill(ctx(), &y, seed, mean, std).unwrap()]);
    download(&y)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Known-answer vectors from Random123's kat_vectors (philox4x32, 10 rounds).
#[test]
fn philox_cpu_twin_matches_random123_known_answers() {
    let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        (
            [0; 4],
            [0; 2],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        ),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (ctr, key, want) in cases {
        assert_eq!(philox4x32_10(ctr, key), want, "ctr {ctr:x?} key {key:x?}");
    }
}

#[test]
fn uniform_fill_matches_cpu_twin_bit_exactly() {
    for (k, &n) in SIZES.iter().enumerate() {
        let seed = 0x1234_5678_9ABC_DEF0 ^ k as u64;
        // [0, 1): the transform is exact, so the GPU must reproduce the twin bit for bit
        let got = uniform_gpu(n, seed, 0.0, 1.0);
        let want: Vec<f32> = (0..n as u32).map(|i| uniform_cpu(seed, i)).collect();
        assert_eq!(bits(&got), bits(&want), "uniform [0, 1) n={n}");
        // [lo, hi): lo + (hi - lo) * u rounded once (FMA) or twice, never anything else
        let (lo, hi) = (-2.5f32, 7.25f32);
        let got = uniform_gpu(n, seed, lo, hi);
        for (i, &g) in got.iter().enumerate() {
            let a = uniform_range_cpu(seed, i as u32, lo, hi);
            let b = uniform_range_cpu_fused(seed, i as u32, lo, hi);
            assert!(
                g.to_bits() == a.to_bits() || g.to_bits() == b.to_bits(),
                "uniform [{lo}, {hi}) n={n} element {i}: gpu {g} vs twin {a} / fused {b}"
            );
        }
    }
}

/// Box-Muller on the GPU runs f32 log/sqrt/cos/sin; the twin runs f64 on the same bits. The
/// radius is computed to a few ulps (series near u1 = 1), and GPU cos/sin are good to about
/// 2^-21 absolute on [-pi, pi) (lavapipe measured: worst |err| 8e-7 over 1M samples), times
/// r <= 5.8: atol 4e-6 + rtol 2e-6 covers that while any wrong bits, pairing or sign show as
/// errors of order 0.1..1.
#[test]
fn gaussian_fill_matches_cpu_twin() {
    for (k, &n) in SIZES.iter().enumerate() {
        let seed = 0xC0FF_EE00 + k as u64;
        let got = gaussian_gpu(n, seed, 0.0, 1.0);
        let want: Vec<f64> = (0..n as u32)
            .map(|i| gaussian_cpu(seed, i) as f64)
            .collect();
        assert_close(&format!("gaussian n={n}"), &got, &want, 4e-6, 2e-6);
        // mean + std * z
        let got = gaussian_gpu(n, seed, 3.0, 0.5);
        let want: Vec<f64> = want.iter().map(|z| 3.0 + 0.5 * z).collect();
        assert_close(&format!("gaussian(3, 0.5) n={n}"), &got, &want, 4e-6, 2e-6);
    }
}

/// SmoothGrad noise is x + std * (the same z as gaussian_fill with that seed).
#[test]
fn add_gaussian_noise_matches_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(7);
    for &n in &[1usize, 7, 3 * 5 * 11, 70_001] {
        let shape = [1, 1, 1, n];
        let xs = rng.vec(n, -2.0, 2.0);
        let seed = 99 + n as u64;
        let std = 0.15f32;
        let z = gaussian_gpu(n, seed, 0.0, 1.0);
        let (x, y) = (upload(&shape, &xs), poisoned(&shape));
        run(&[&add_gaussian_noise(c, &y, &x, seed, std).unwrap()]);
        let want: Vec<f64> = xs
            .iter()
            .zip(&z)
            .map(|(&x, &z)| x as f64 + std as f64 * z as f64)
            .collect();
        // one or two f32 roundings of values below 3
        assert_close(&format!("noise n={n}"), &download(&y), &want, 5e-7, 0.0);
    }
}

#[test]
fn same_seed_repeats_and_different_seeds_differ() {
    const N: usize = 100_003;
    let n = N;
    for fill in [
        |s| uniform_gpu(N, s, -1.0, 1.0),
        |s| gaussian_gpu(N, s, 0.0, 1.0),
    ] as [fn(u64) -> Vec<f32>; 2]
    {
        let a = fill(42);
        assert_eq!(bits(&a), bits(&fill(42)), "same seed, second run");
        // seeds differing in the low word, in the high word only, and by one bit
        for other in [43, 42 | (1 << 32), 42 ^ (1 << 63)] {
            let b = fill(other);
            let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
            assert!(same < n / 1000, "seeds 42 and {other:#x}: {same}/{n} equal");
            // and uncorrelated: |r| within 5 standard errors (1/sqrt(n))
            let r = correlation(&a, &b);
            assert!(
                r.abs() < 5.0 / (n as f64).sqrt(),
                "seeds 42 and {other:#x}: correlation {r}"
            );
        }
    }
}

fn mean_var(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let cov = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - ma) * (y as f64 - mb))
        .sum::<f64>()
        / (a.len() as f64 - 1.0);
    cov / (va * vb).sqrt()
}

fn within(name: &str, got: f64, want: f64, se: f64) {
    assert!(
        (got - want).abs() <= 5.0 * se,
        "{name}: {got} vs {want} (5 standard errors = {:e})",
        5.0 * se
    );
}

#[test]
fn uniform_statistics_on_a_million_samples() {
    let n = 1 << 20;
    let (lo, hi) = (-1.0f32, 3.0f32);
    let v = uniform_gpu(n, 2024, lo, hi);
    assert!(
        v.iter().all(|&x| x >= lo && x < hi),
        "value outside [lo, hi)"
    );
    let nf = n as f64;
    let w = (hi - lo) as f64;
    let (mean, var) = mean_var(&v);
    within("uniform mean", mean, 1.0, (w * w / 12.0 / nf).sqrt());
    // Var(s^2) ~ (mu4 - sigma^4) / n with mu4 = w^4 / 80, sigma^2 = w^2 / 12
    let var_se = ((w.powi(4) / 80.0 - (w * w / 12.0).powi(2)) / nf).sqrt();
    within("uniform variance", var, w * w / 12.0, var_se);
    // 20-bin histogram: chi-square with 19 degrees of freedom; 60 is beyond p = 1e-6
    let bins = 20;
    let mut hist = vec![0usize; bins];
    for &x in &v {
        hist[(((x - lo) as f64 / w) * bins as f64) as usize] += 1;
    }
    let expected = nf / bins as f64;
    let chi2: f64 = hist
        .iter()
        .map(|&h| (h as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 60.0, "uniform histogram chi-square {chi2}: {hist:?}");
    // neighbours (same Philox block and across blocks) are uncorrelated
    for lag in [1, 4] {
        let r = correlation(&v[..n - lag], &v[lag..]);
        assert!(r.abs() < 5.0 / nf.sqrt(), "lag-{lag} correlation {r}");
    }
}

#[test]
fn gaussian_statistics_on_a_million_samples() {
    let n = 1 << 20;
    let nf = n as f64;
    let (mu, sigma) = (-0.5f32, 2.0f32);
    let v = gaussian_gpu(n, 77, mu, sigma);
    let (mu, sigma) = (mu as f64, sigma as f64);
    let (mean, var) = mean_var(&v);
    within("gaussian mean", mean, mu, sigma / nf.sqrt());
    // Var(s) ~ sigma^2 / (2n) for a normal sample
    within("gaussian std", var.sqrt(), sigma, sigma / (2.0 * nf).sqrt());
    for (k, p) in [(1.0, 0.682_689_492_137_086), (2.0, 0.954_499_736_103_642)] {
        let inside = v
            .iter()
            .filter(|&&x| (x as f64 - mu).abs() < k * sigma)
            .count() as f64
            / nf;
        within(
            &format!("fraction within {k} sigma"),
            inside,
            p,
            (p * (1.0 - p) / nf).sqrt(),
        );
    }
    // 24-bit u1 in (0, 1] caps |z| at sqrt(48 ln 2) ~ 5.77: finite, never a log(0) blow-up
    let zmax = (48.0 * std::f64::consts::LN_2).sqrt() + 1e-4;
    assert!(
        v.iter().all(|&x| ((x as f64 - mu) / sigma).abs() <= zmax),
        "gaussian value beyond the Box-Muller bound"
    );
    // the sin and cos halves of each Box-Muller pair are uncorrelated, as are neighbours
    for lag in [1, 2] {
        let r = correlation(&v[..n - lag], &v[lag..]);
        assert!(r.abs() < 5.0 / nf.sqrt(), "lag-{lag} correlation {r}");
    }
}

/// lo + (hi - lo) * u can round up to hi: with [1, 2) and u = 1 - 2^-24 the sum 2 - 2^-24 is a
/// tie that rounds to 2. Find a seed whose first block holds that u and check the clamp.
#[test]
fn uniform_fill_never_returns_hi() {
    let top = |w: u32| w >> 8 == 0x00FF_FFFF;
    let (seed, j) = (0u64..)
        .find_map(|s| {
            let block = philox4x32_10([0, 0, UNIFORM_STREAM, 0], [s as u32, (s >> 32) as u32]);
            block.iter().position(|&w| top(w)).map(|j| (s, j))
        })
        .unwrap();
    assert!(top(random_bits_cpu(seed, UNIFORM_STREAM, j as u32)));
    let u = uniform_cpu(seed, j as u32);
    assert_eq!(1.0f32 + 1.0f32 * u, 2.0, "the unclamped value would be hi");
    let got = uniform_gpu(4, seed, 1.0, 2.0);
    assert_eq!(got[j], f32::from_bits(2.0f32.to_bits() - 1), "seed {seed}");
    assert!(got.iter().all(|&x| (1.0..2.0).contains(&x)), "{got:?}");
}

#[test]
fn random_fills_reject_bad_inputs() {
    let c = ctx();
    let y = zeros(&[2, 3]);
    let u = Tensor::empty(c, &[2, 3], DType::U32).unwrap();
    let empty = Tensor::empty(c, &[2, 0], DType::F32).unwrap();
    for (lo, hi) in [
        (1.0, 1.0),
        (2.0, 1.0),
        (f32::NAN, 1.0),
        (0.0, f32::INFINITY),
        (-f32::MAX, f32::MAX), // hi - lo overflows
    ] {
        assert!(uniform_fill(c, &y, 1, lo, hi).is_err(), "[{lo}, {hi})");
    }
    assert!(uniform_fill(c, &u, 1, 0.0, 1.0).is_err());
    assert!(uniform_fill(c, &empty, 1, 0.0, 1.0).is_err());
    assert!(uniform_fill(c, &y, 1, 0.0, 1.0).is_ok());
    for (mean, std) in [(0.0, -1.0), (0.0, f32::NAN), (f32::INFINITY, 1.0)] {
        assert!(gaussian_fill(c, &y, 1, mean, std).is_err(), "{mean} {std}");
    }
    assert!(gaussian_fill(c, &u, 1, 0.0, 1.0).is_err());
    assert!(gaussian_fill(c, &y, 1, 0.0, 0.0).is_ok());
    let x = zeros(&[2, 3]);
    assert!(add_gaussian_noise(c, &y, &zeros(&[3, 2]), 1, 0.1).is_err());
    assert!(add_gaussian_noise(c, &y, &x, 1, -0.1).is_err());
    assert!(add_gaussian_noise(c, &x, &x, 1, 0.1).is_err(), "in place");
    assert!(add_gaussian_noise(c, &u, &x, 1, 0.1).is_err());
    assert!(add_gaussian_noise(c, &y, &x, 1, 0.1).is_ok());
}
