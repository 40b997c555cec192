//! Softmax and log-softmax over the last axis: CPU f64 references (including logits offset by
//! +-50 and +-100, where a naive exp overflows or underflows in f32), backward rules from the
//! saved output against finite differences, Err on bad shapes.

mod common;
use common::*;

use cnnvis::ops::softmax::{
    log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward,
};
use cnnvis::Error;

fn is_shape_err<T: std::fmt::Debug>(r: cnnvis::Result<T>) -> bool {
    matches!(r, Err(Error::Shape { .. }))
}

/// Row-wise log-softmax in f64.
fn log_softmax_ref(x: &[f32], k: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(k) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        out.extend(row.iter().map(|&v| v as f64 - lse));
    }
    out
}

fn softmax_ref(x: &[f32], k: usize) -> Vec<f64> {
    log_softmax_ref(x, k).into_iter().map(f64::exp).collect()
}

fn softmax_backward_ref(y: &[f32], dy: &[f32], k: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(y.len());
    for (yr, gr) in y.chunks(k).zip(dy.chunks(k)) {
        let s: f64 = yr.iter().zip(gr).map(|(&a, &b)| a as f64 * b as f64).sum();
        out.extend(yr.iter().zip(gr).map(|(&a, &b)| a as f64 * (b as f64 - s)));
    }
    out
}

fn log_softmax_backward_ref(y: &[f32], dy: &[f32], k: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(y.len());
    for (yr, gr) in y.chunks(k).zip(dy.chunks(k)) {
        let s: f64 = gr.iter().map(|&b| b as f64).sum();
        out.extend(
            yr.iter()
                .zip(gr)
                .map(|(&a, &b)| b as f64 - (a as f64).exp() * s),
        );
    }
    out
}

const SHAPES: &[&[usize]] = &[
    &[1, 1],
    &[2, 7],
    &[3, 1000], // ImageNet classes: several elements per thread
    &[4, 257],
    &[2, 3, 10], // any rank: rows of the last axis
    &[300, 5],   // many rows
];

/// Logits in [-3, 3) plus a per-row offset cycling through 0, +50, -50, +100, -100: exp(100)
/// overflows f32 and exp(-100) underflows to 0, so a kernel that skips the max shift fails.
fn logits(rng: &mut Rng, shape: &[usize]) -> Vec<f32> {
    let k = *shape.last().unwrap();
    let n: usize = shape.iter().product();
    let offsets = [0.0f32, 50.0, -50.0, 100.0, -100.0];
    let mut x = rng.vec(n, -3.0, 3.0);
    for (r, row) in x.chunks_mut(k).enumerate() {
        for v in row {
            *v += offsets[r % offsets.len()];
        }
    }
    x
}

#[test]
fn softmax_and_log_softmax_forward_match_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(31);
    for shape in SHAPES {
        let k = *shape.last().unwrap();
        let xv = logits(&mut rng, shape);
        let x = upload(shape, &xv);
        let y = poisoned(shape);
        run(&[&softmax_forward(c, &y, &x).unwrap()]);
        let got = download(&y);
        // x - max is exact; WGSL allows exp 3 + 2|x| ulp (15 ulp at |x - max| <= 6), plus the
        // division and the row sum
        assert_close(
            &format!("softmax {shape:?}"),
            &got,
            &softmax_ref(&xv, k),
            1e-9,
            4e-6,
        );
        for row in got.chunks(k) {
            let s: f64 = row.iter().map(|&v| v as f64).sum();
            assert!((s - 1.0).abs() < 1e-5, "softmax {shape:?}: row sums to {s}");
        }
        run(&[&log_softmax_forward(c, &y, &x).unwrap()]);
        // WGSL's log: absolute error 2^-21 near 1, 3 ulp elsewhere
        assert_close(
            &format!("log_softmax {shape:?}"),
            &download(&y),
            &log_softmax_ref(&xv, k),
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn softmax_and_log_softmax_backward_match_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(32);
    for shape in SHAPES {
        let k = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        let xv = logits(&mut rng, shape);
        let dyv = rng.vec(n, -1.0, 1.0);
        let (x, dy) = (upload(shape, &xv), upload(shape, &dyv));
        let y = zeros(shape);
        for log in [false, true] {
            let fwd = if log {
                log_softmax_forward(c, &y, &x)
            } else {
                softmax_forward(c, &y, &x)
            };
            run(&[&fwd.unwrap()]);
            let yv = download(&y);
            let (want, tol) = if log {
                // dy - exp(y) * sum(dy): the sum of K terms rounds at K * eps
                (
                    log_softmax_backward_ref(&yv, &dyv, k),
                    1e-6 + k as f64 * 1.2e-7,
                )
            } else {
                (softmax_backward_ref(&yv, &dyv, k), 1e-6 + k as f64 * 1.2e-8)
            };
            let bwd = |acc: bool, dx: &cnnvis::Tensor| {
                if log {
                    log_softmax_backward(c, dx, &dy, &y, acc)
                } else {
                    softmax_backward(c, dx, &dy, &y, acc)
                }
                .unwrap()
            };
            let name = format!(
                "{} backward {shape:?}",
                if log { "log_softmax" } else { "softmax" }
            );
            let dx = poisoned(shape);
            run(&[&bwd(false, &dx)]);
            assert_close(&name, &download(&dx), &want, tol, 1e-5);
            run(&[&bwd(true, &dx)]);
            let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
            assert_close(
                &format!("{name} accumulate"),
                &download(&dx),
                &twice,
                2.0 * tol,
                1e-5,
            );
        }
    }
}

/// Both backward rules, fed the saved GPU output, against central differences of the GPU
/// forward with loss = sum(w * y); rows carry offsets up to +-100 to prove the forward stable
/// where the derivative is taken.
#[test]
fn softmax_and_log_softmax_backward_match_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(33);
    for shape in [&[5usize, 40][..], &[2, 3, 7][..]] {
        let n: usize = shape.iter().product();
        let xv = logits(&mut rng, shape);
        let w = rng.vec(n, -1.0, 1.0);
        let (x, dy, y) = (upload(shape, &xv), upload(shape, &w), zeros(shape));
        for log in [false, true] {
            let fwd = |y: &cnnvis::Tensor, x: &cnnvis::Tensor| {
                if log {
                    log_softmax_forward(c, y, x)
                } else {
                    softmax_forward(c, y, x)
                }
                .unwrap()
            };
            run(&[&fwd(&y, &x)]);
            let dx = zeros(shape);
            let bwd = if log {
                log_softmax_backward(c, &dx, &dy, &y, false)
            } else {
                softmax_backward(c, &dx, &dy, &y, false)
            };
            run(&[&bwd.unwrap()]);
            let g = download(&dx);
            assert!(g.iter().all(|v| v.is_finite()));
            let name = format!("{} {shape:?}", if log { "log_softmax" } else { "softmax" });
            fd_check(&name, &xv, &g, 1e-2, 2e-3, 300, &mut rng, |v| {
                let yy = zeros(shape);
                run(&[&fwd(&yy, &upload(shape, v))]);
                weighted_sum(&w, &download(&yy))
            });
        }
    }
}

#[test]
fn softmax_bad_shapes_are_errors() {
    let c = ctx();
    let x = zeros(&[3, 10]);
    let y_bad = zeros(&[3, 11]);
    let y_t = zeros(&[10, 3]);
    let y = zeros(&[3, 10]);
    assert!(softmax_forward(c, &y, &x).is_ok());
    assert!(is_shape_err(softmax_forward(c, &y_bad, &x)));
    assert!(is_shape_err(softmax_forward(c, &y_t, &x)));
    assert!(is_shape_err(log_softmax_forward(c, &y_bad, &x)));
    let dx = zeros(&[3, 10]);
    assert!(softmax_backward(c, &dx, &x, &y, false).is_ok());
    assert!(is_shape_err(softmax_backward(c, &dx, &y_bad, &y, false)));
    assert!(is_shape_err(softmax_backward(c, &y_bad, &x, &y, false)));
    assert!(is_shape_err(log_softmax_backward(c, &dx, &x, &y_t, false)));
    assert!(is_shape_err(log_softmax_backward(c, &y_t, &x, &y, true)));
}
