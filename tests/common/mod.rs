//! Shared test helpers: one GPU context for the whole test binary, a seeded RNG, tolerance
//! comparisons that report where they fail, and finite-difference gradient checks.
#![allow(dead_code)]

use std::sync::OnceLock;

pub mod cli;

use cnnvis::gpu::Dispatch;
use cnnvis::{GpuContext, Tensor};

/// The shared context. A GPU test FAILS (never skips) when no adapter exists; the panic
/// message carries cnnvis's error, which names the fix (install mesa-vulkan-drivers).
pub fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new() {
        Ok(c) => c,
        Err(e) => panic!("GPU test needs an adapter and found none: {e}"),
    })
}

/// Records `dispatches` in one submission and waits for them.
pub fn run(dispatches: &[&Dispatch]) {
    let c = ctx();
    c.run(dispatches).expect("submit");
    c.wait().expect("wait");
}

/// Uploads an f32 tensor.
pub fn upload(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_slice(ctx(), shape, data).expect("upload")
}

/// A zero-filled tensor.
pub fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(ctx(), shape).expect("zeros")
}

/// A tensor filled with a sentinel, so a kernel that skips an element is caught.
pub fn poisoned(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    upload(shape, &vec![f32::NAN; n])
}

/// Reads an f32 tensor back.
pub fn download(t: &Tensor) -> Vec<f32> {
    t.download(ctx()).expect("download")
}

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit() as f32
    }
    /// Integer in [lo, hi].
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    /// `n` values uniform in [lo, hi).
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    /// `n` values uniform in ±[margin, 1): kept away from 0, where ReLU-like kinks sit.
    pub fn vec_away_from_zero(&mut self, n: usize, margin: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let m = self.uniform(margin, 1.0);
                if self.unit() < 0.5 {
                    -m
                } else {
                    m
                }
            })
            .collect()
    }
}

/// Asserts `|gpu - ref| <= atol + rtol * |ref|` elementwise; on failure reports the worst
/// element, its index, the number of failures and the first values of both.
pub fn assert_close(name: &str, gpu: &[f32], reference: &[f64], atol: f64, rtol: f64) {
    assert_eq!(
        gpu.len(),
        reference.len(),
        "{name}: length {} vs reference {}",
        gpu.len(),
        reference.len()
    );
    let mut worst = (0usize, 0.0f64);
    let mut failures = 0usize;
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let err = (g as f64 - r).abs();
        let bad = err.is_nan() || err > atol + rtol * r.abs();
        if bad {
            failures += 1;
        }
        if bad && (failures == 1 || err > worst.1 || err.is_nan()) {
            worst = (i, err);
        }
    }
    if failures > 0 {
        let k = gpu.len().min(8);
        panic!(
            "{name}: {failures}/{} elements outside atol={atol:e} rtol={rtol:e}; worst |err|={:e} at index {} (gpu {} vs ref {}); first gpu {:?}; first ref {:?}",
            gpu.len(),
            worst.1,
            worst.0,
            gpu[worst.0],
            reference[worst.0],
            &gpu[..k],
            &reference[..k]
        );
    }
}

/// `sum(w * y)` in f64: the scalar loss of the finite-difference checks.
pub fn weighted_sum(w: &[f32], y: &[f32]) -> f64 {
    w.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Checks an analytic gradient `grad` of `loss` at `x0` against central differences:
/// every coordinate when there are at most `max_coords`, else `max_coords` coordinates picked
/// at random, plus three random directions. `loss` must run the GPU forward.
///
/// The networks are piecewise linear (ReLU, max pool), so a central difference whose ±h
/// straddles a kink measures the average of two slopes, not the gradient. Such a coordinate
/// shows it: its two one-sided differences disagree by more than the tolerance. It is
/// skipped, and at least half of the coordinates must be checked.
#[allow(clippy::too_many_arguments)]
pub fn fd_check(
    name: &str,
    x0: &[f32],
    grad: &[f32],
    h: f32,
    tol: f64,
    max_coords: usize,
    rng: &mut Rng,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x0.len(), grad.len(), "{name}: gradient length");
    let coords: Vec<usize> = if x0.len() <= max_coords {
        (0..x0.len()).collect()
    } else {
        (0..max_coords).map(|_| rng.int(0, x0.len() - 1)).collect()
    };
    let scale = grad.iter().fold(1e-3f64, |m, &g| m.max(g.abs() as f64));
    let mut x = x0.to_vec();
    let l0 = loss(&x);
    let mut checked = 0;
    for &i in &coords {
        x[i] = x0[i] + h;
        let lp = loss(&x);
        x[i] = x0[i] - h;
        let lm = loss(&x);
        x[i] = x0[i];
        let (right, left) = ((lp - l0) / h as f64, (l0 - lm) / h as f64);
        if (right - left).abs() > tol * scale {
            continue; // a kink within ±h
        }
        checked += 1;
        let fd = (lp - lm) / (2.0 * h as f64);
        let err = (fd - grad[i] as f64).abs();
        assert!(
            err <= tol * scale,
            "{name}: d/dx[{i}] analytic {} vs finite difference {fd} (|err| {err:e} > {tol:e} * max|grad| {scale:e})",
            grad[i]
        );
    }
    assert!(
        2 * checked >= coords.len(),
        "{name}: only {checked} of {} coordinates away from a kink",
        coords.len()
    );
    for d in 0..3 {
        let v = rng.vec(x0.len(), -1.0, 1.0);
        let xp: Vec<f32> = x0.iter().zip(&v).map(|(a, b)| a + h * b).collect();
        let xm: Vec<f32> = x0.iter().zip(&v).map(|(a, b)| a - h * b).collect();
        let fd = (loss(&xp) - loss(&xm)) / (2.0 * h as f64);
        let an: f64 = grad
            .iter()
            .zip(&v)
            .map(|(&g, &b)| g as f64 * b as f64)
            .sum();
        let dir_scale = v
            .iter()
            .zip(grad)
            .map(|(&b, &g)| (b as f64 * g as f64).abs())
            .sum::<f64>()
            .max(1e-3);
        assert!(
            (fd - an).abs() <= tol * dir_scale,
            "{name}: directional derivative {d}: analytic {an} vs finite difference {fd} (tol {tol:e} * {dir_scale:e})"
        );
    }
}
