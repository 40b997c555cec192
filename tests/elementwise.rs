//! Elementwise ops: residual add, scale / add-scalar / axpy, clamp, batch-norm affine; CPU
//! f64 references, finite differences for every backward rule, Err on bad shapes.

mod common;
use common::*;

use cnnvis::ops::elementwise::{
    add_backward, add_forward, add_scalar, axpy, batchnorm_affine_backward_input,
    batchnorm_affine_backward_params, batchnorm_affine_forward, batchnorm_to_affine,
    clamp_backward, clamp_forward, scale,
};
use cnnvis::Error;

const SHAPES: &[&[usize]] = &[
    &[1, 1, 1, 1],
    &[2, 3, 5, 7],
    &[3, 17, 13, 11],
    &[1, 1, 1, 70_001],
];

/// Multiples of 4 spanning 64 KiB windows: on lavapipe the add `_windows` kernels (exactly one
/// window; 7 + 2 windows in two launches and a tail; 4 windows and a tail).
const WINDOW_SHAPES: &[&[usize]] = &[&[1, 1, 128, 128], &[1, 9, 128, 129], &[1, 1, 1, 70_004]];

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}

fn is_shape_err<T: std::fmt::Debug>(r: cnnvis::Result<T>) -> bool {
    matches!(r, Err(Error::Shape { .. }))
}

// ---------------------------------------------------------------- add, scale, axpy

/// Where the uniform-window kernels run (lavapipe), large tensors of whole vec4 take the add
/// `_windows` kernels (accumulating or not); the rest keep the scalar kernels.
#[test]
fn add_windows_kernels_serve_large_tensors_on_window_adapters() {
    let c = ctx();
    let windows = cnnvis::ops::conv2d::conv2d_windows_supported(c);
    let pick = |w: &'static str, s: &'static str| if windows { w } else { s };
    let big = [1, 2, 128, 128];
    let (a, b, y) = (zeros(&big), zeros(&big), zeros(&big));
    let entry = |d: cnnvis::Result<cnnvis::gpu::Dispatch>| d.unwrap().kernel().entry;
    assert_eq!(
        entry(add_forward(c, &y, &a, &b)),
        pick("add_forward_windows", "add_forward")
    );
    assert_eq!(
        entry(add_backward(c, &y, &a, false)),
        pick("add_backward_windows", "add_backward")
    );
    assert_eq!(
        entry(add_backward(c, &y, &a, true)),
        pick("add_backward_acc_windows", "add_backward")
    );
    let odd = [1, 1, 129, 127];
    let (a, b, y) = (zeros(&odd), zeros(&odd), zeros(&odd));
    assert_eq!(entry(add_forward(c, &y, &a, &b)), "add_forward");
}

#[test]
fn add_forward_and_backward_match_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(21);
    for shape in SHAPES.iter().chain(WINDOW_SHAPES) {
        let n: usize = shape.iter().product();
        let (av, bv) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let (a, b, y) = (upload(shape, &av), upload(shape, &bv), poisoned(shape));
        run(&[&add_forward(c, &y, &a, &b).unwrap()]);
        let want: Vec<f64> = av
            .iter()
            .zip(&bv)
            .map(|(&p, &q)| p as f64 + q as f64)
            .collect();
        // one f32 rounding of the sum
        assert_close(&format!("add {shape:?}"), &download(&y), &want, 0.0, 1.2e-7);

        let dx = poisoned(shape);
        run(&[&add_backward(c, &dx, &a, false).unwrap()]);
        assert_close(
            &format!("add_backward {shape:?}"),
            &download(&dx),
            &f64s(&av),
            0.0,
            0.0,
        );
        run(&[&add_backward(c, &dx, &b, true).unwrap()]);
        assert_close(
            &format!("add_backward accumulate {shape:?}"),
            &download(&dx),
            &want,
            0.0,
            1.2e-7,
        );
    }
}

#[test]
fn scale_add_scalar_axpy_match_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(22);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let xv = rng.vec(n, -2.0, 2.0);
        let yv = rng.vec(n, -2.0, 2.0);
        let x = upload(shape, &xv);
        let alpha = -1.7f32;

        let y = poisoned(shape);
        run(&[&scale(c, &y, &x, alpha).unwrap()]);
        let want: Vec<f64> = xv.iter().map(|&v| alpha as f64 * v as f64).collect();
        assert_close(
            &format!("scale {shape:?}"),
            &download(&y),
            &want,
            0.0,
            1.2e-7,
        );

        run(&[&add_scalar(c, &y, &x, 0.3).unwrap()]);
        let want: Vec<f64> = xv.iter().map(|&v| v as f64 + 0.3f32 as f64).collect();
        assert_close(
            &format!("add_scalar {shape:?}"),
            &download(&y),
            &want,
            1.2e-7,
            0.0,
        );

        let y = upload(shape, &yv);
        run(&[&axpy(c, &y, &x, alpha).unwrap()]);
        let want: Vec<f64> = yv
            .iter()
            .zip(&xv)
            .map(|(&a, &b)| a as f64 + alpha as f64 * b as f64)
            .collect();
        // alpha * x and the sum each round once (or once when fused)
        assert_close(
            &format!("axpy {shape:?}"),
            &download(&y),
            &want,
            1e-6,
            2.4e-7,
        );
    }
}

/// The backward of y = a + b to either input (add_backward with dy = w) against finite
/// differences of the GPU forward in a and in b; then the backward of y = alpha * x
/// (scale of dy, as the module documents), and of y = x + c (the identity, add_backward).
#[test]
fn add_and_scale_backward_match_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(23);
    let shape = [2, 3, 4, 5];
    let n = 120;
    let (av, bv, w) = (
        rng.vec(n, -1.0, 1.0),
        rng.vec(n, -1.0, 1.0),
        rng.vec(n, -1.0, 1.0),
    );
    let dy = upload(&shape, &w);
    let add_loss = |a: &[f32], b: &[f32]| {
        let y = zeros(&shape);
        run(&[&add_forward(c, &y, &upload(&shape, a), &upload(&shape, b)).unwrap()]);
        weighted_sum(&w, &download(&y))
    };
    let da = zeros(&shape);
    run(&[&add_backward(c, &da, &dy, false).unwrap()]);
    let ga = download(&da);
    fd_check("add da", &av, &ga, 1e-2, 1e-3, 200, &mut rng, |v| {
        add_loss(v, &bv)
    });
    fd_check("add db", &bv, &ga, 1e-2, 1e-3, 200, &mut rng, |v| {
        add_loss(&av, v)
    });

    let alpha = 0.75f32;
    let dx = zeros(&shape);
    run(&[&scale(c, &dx, &dy, alpha).unwrap()]);
    let g = download(&dx);
    fd_check("scale dx", &av, &g, 1e-2, 1e-3, 200, &mut rng, |v| {
        let y = zeros(&shape);
        run(&[&scale(c, &y, &upload(&shape, v), alpha).unwrap()]);
        weighted_sum(&w, &download(&y))
    });
    // accumulate form: dx += alpha * dy is axpy
    run(&[&axpy(c, &dx, &dy, alpha).unwrap()]);
    let want: Vec<f64> = g.iter().map(|&v| 2.0 * v as f64).collect();
    assert_close(
        "scale backward via axpy",
        &download(&dx),
        &want,
        0.0,
        1.2e-7,
    );

    fd_check("add_scalar dx", &av, &ga, 1e-2, 1e-3, 200, &mut rng, |v| {
        let y = zeros(&shape);
        run(&[&add_scalar(c, &y, &upload(&shape, v), -0.4).unwrap()]);
        weighted_sum(&w, &download(&y))
    });
}

// ---------------------------------------------------------------- clamp

fn clamp_ref(x: &[f32], lo: f32, hi: f32) -> Vec<f64> {
    x.iter()
        .map(|&v| (v as f64).max(lo as f64).min(hi as f64))
        .collect()
}

fn clamp_backward_ref(x: &[f32], dy: &[f32], lo: f32, hi: f32) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| if v >= lo && v <= hi { g as f64 } else { 0.0 })
        .collect()
}

#[test]
fn clamp_forward_and_backward_match_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(24);
    let bounds = [
        (-0.5f32, 0.25f32),
        (0.0, 0.0),
        (f32::NEG_INFINITY, 0.1),
        (-0.1, f32::INFINITY),
        (0.5, -0.5), // lo > hi: torch gives hi everywhere
    ];
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        for &(lo, hi) in &bounds {
            let mut xv = rng.vec(n, -1.0, 1.0);
            // exactly on the bounds: torch.clamp's mask includes them
            if lo.is_finite() {
                xv[0] = lo;
            }
            if hi.is_finite() && n > 1 {
                xv[n - 1] = hi;
            }
            let dyv = rng.vec(n, -1.0, 1.0);
            let (x, dy) = (upload(shape, &xv), upload(shape, &dyv));
            let y = poisoned(shape);
            run(&[&clamp_forward(c, &y, &x, lo, hi).unwrap()]);
            let tag = format!("{shape:?} [{lo}, {hi}]");
            assert_close(
                &format!("clamp {tag}"),
                &download(&y),
                &clamp_ref(&xv, lo, hi),
                0.0,
                0.0,
            );
            let dx = poisoned(shape);
            run(&[&clamp_backward(c, &dx, &dy, &x, lo, hi, false).unwrap()]);
            let want = clamp_backward_ref(&xv, &dyv, lo, hi);
            assert_close(
                &format!("clamp_backward {tag}"),
                &download(&dx),
                &want,
                0.0,
                0.0,
            );
            run(&[&clamp_backward(c, &dx, &dy, &x, lo, hi, true).unwrap()]);
            let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
            assert_close(
                &format!("clamp_backward accumulate {tag}"),
                &download(&dx),
                &twice,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn clamp_backward_matches_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(25);
    let shape = [2, 3, 5, 7];
    let n = 210;
    let (lo, hi) = (-0.4f32, 0.3f32);
    // keep inputs at least 0.05 from both bounds so that x +- h stays on one side
    let xv: Vec<f32> = (0..n)
        .map(|_| loop {
            let v = rng.uniform(-1.0, 1.0);
            if (v - lo).abs() > 0.05 && (v - hi).abs() > 0.05 {
                break v;
            }
        })
        .collect();
    let w = rng.vec(n, -1.0, 1.0);
    let (x, dy, dx) = (upload(&shape, &xv), upload(&shape, &w), zeros(&shape));
    run(&[&clamp_backward(c, &dx, &dy, &x, lo, hi, false).unwrap()]);
    let g = download(&dx);
    assert!(g.contains(&0.0) && g.iter().any(|&v| v != 0.0));
    fd_check("clamp", &xv, &g, 1e-2, 1e-3, 250, &mut rng, |v| {
        let y = zeros(&shape);
        run(&[&clamp_forward(c, &y, &upload(&shape, v), lo, hi).unwrap()]);
        weighted_sum(&w, &download(&y))
    });
}

// ---------------------------------------------------------------- batch norm

#[test]
fn batchnorm_to_affine_matches_f64_formula() {
    let mut rng = Rng::new(26);
    let ch = 37;
    let gamma = rng.vec(ch, -2.0, 2.0);
    let beta = rng.vec(ch, -1.0, 1.0);
    let mean = rng.vec(ch, -3.0, 3.0);
    let var = rng.vec(ch, 0.0, 4.0);
    let eps = 1e-5f32;
    let (s, t) = batchnorm_to_affine(&gamma, &beta, &mean, &var, eps).unwrap();
    let ws: Vec<f64> = (0..ch)
        .map(|i| gamma[i] as f64 / (var[i] as f64 + eps as f64).sqrt())
        .collect();
    let wt: Vec<f64> = (0..ch)
        .map(|i| beta[i] as f64 - mean[i] as f64 * ws[i])
        .collect();
    // computed in f64, one rounding to f32
    assert_close("bn scale", &s, &ws, 0.0, 6e-8);
    assert_close("bn shift", &t, &wt, 0.0, 6e-8);

    assert!(is_shape_err(batchnorm_to_affine(
        &gamma,
        &beta[1..],
        &mean,
        &var,
        eps
    )));
    assert!(is_shape_err(batchnorm_to_affine(
        &gamma,
        &beta,
        &mean,
        &var[1..],
        eps
    )));
    let mut bad_var = var.clone();
    bad_var[3] = -1.0;
    assert!(is_shape_err(batchnorm_to_affine(
        &gamma, &beta, &mean, &bad_var, eps
    )));
    assert!(is_shape_err(batchnorm_to_affine(
        &gamma,
        &beta,
        &mean,
        &var,
        f32::NAN
    )));
}

/// Channel of flat index i in an [N, C, rest...] tensor.
fn channel(shape: &[usize], i: usize) -> usize {
    let inner: usize = shape[2..].iter().product();
    (i / inner) % shape[1]
}

const BN_SHAPES: &[&[usize]] = &[
    &[1, 1, 1, 1],
    &[2, 3, 5, 7],
    &[3, 17, 13, 11], // H*W = 143 < 256: several batch items per stride
    &[2, 5, 20, 21],  // H*W = 420 > 256
    &[37, 6],         // [N, C] (BatchNorm1d), H*W = 1
    &[1, 2, 1, 1000],
    &[300, 2, 1, 3], // many batch items, tiny H*W
];

#[test]
fn batchnorm_affine_forward_and_backward_match_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(27);
    for shape in BN_SHAPES {
        let n: usize = shape.iter().product();
        let ch = shape[1];
        let per_channel = n / ch;
        let (xv, dyv) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let (sv, tv) = (rng.vec(ch, -2.0, 2.0), rng.vec(ch, -1.0, 1.0));
        let (x, dy) = (upload(shape, &xv), upload(shape, &dyv));
        let (s, t) = (upload(&[ch], &sv), upload(&[ch], &tv));
        let tag = format!("{shape:?}");

        let y = poisoned(shape);
        run(&[&batchnorm_affine_forward(c, &y, &x, &s, &t).unwrap()]);
        let want: Vec<f64> = (0..n)
            .map(|i| xv[i] as f64 * sv[channel(shape, i)] as f64 + tv[channel(shape, i)] as f64)
            .collect();
        assert_close(
            &format!("bn forward {tag}"),
            &download(&y),
            &want,
            1e-6,
            2.4e-7,
        );

        let dx = poisoned(shape);
        run(&[&batchnorm_affine_backward_input(c, &dx, &dy, &s, false).unwrap()]);
        let want: Vec<f64> = (0..n)
            .map(|i| dyv[i] as f64 * sv[channel(shape, i)] as f64)
            .collect();
        assert_close(&format!("bn dx {tag}"), &download(&dx), &want, 0.0, 1.2e-7);
        run(&[&batchnorm_affine_backward_input(c, &dx, &dy, &s, true).unwrap()]);
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &format!("bn dx accumulate {tag}"),
            &download(&dx),
            &twice,
            0.0,
            1.2e-7,
        );

        let (ds, dt) = (poisoned(&[ch]), poisoned(&[ch]));
        run(&[&batchnorm_affine_backward_params(c, &ds, &dt, &dy, &x, false).unwrap()]);
        let mut want_s = vec![0.0f64; ch];
        let mut want_t = vec![0.0f64; ch];
        for i in 0..n {
            want_s[channel(shape, i)] += dyv[i] as f64 * xv[i] as f64;
            want_t[channel(shape, i)] += dyv[i] as f64;
        }
        // sums of per_channel terms below 1 in f32
        let tol = 1e-6 + per_channel as f64 * 1.2e-7;
        assert_close(
            &format!("bn dscale {tag}"),
            &download(&ds),
            &want_s,
            tol,
            1e-6,
        );
        assert_close(
            &format!("bn dshift {tag}"),
            &download(&dt),
            &want_t,
            tol,
            1e-6,
        );
        run(&[&batchnorm_affine_backward_params(c, &ds, &dt, &dy, &x, true).unwrap()]);
        let twice_s: Vec<f64> = want_s.iter().map(|v| 2.0 * v).collect();
        let twice_t: Vec<f64> = want_t.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &format!("bn dscale acc {tag}"),
            &download(&ds),
            &twice_s,
            2.0 * tol,
            1e-6,
        );
        assert_close(
            &format!("bn dshift acc {tag}"),
            &download(&dt),
            &twice_t,
            2.0 * tol,
            1e-6,
        );
    }
}

#[test]
fn batchnorm_affine_backward_matches_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(28);
    for shape in [&[2usize, 3, 4, 5][..], &[7, 4][..]] {
        let n: usize = shape.iter().product();
        let ch = shape[1];
        let (xv, w) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let (sv, tv) = (rng.vec(ch, -2.0, 2.0), rng.vec(ch, -1.0, 1.0));
        let (x, dy, s) = (upload(shape, &xv), upload(shape, &w), upload(&[ch], &sv));
        let (dx, ds, dt) = (zeros(shape), zeros(&[ch]), zeros(&[ch]));
        run(&[
            &batchnorm_affine_backward_input(c, &dx, &dy, &s, false).unwrap(),
            &batchnorm_affine_backward_params(c, &ds, &dt, &dy, &x, false).unwrap(),
        ]);
        let (gx, gs, gt) = (download(&dx), download(&ds), download(&dt));
        let loss = |xv: &[f32], sv: &[f32], tv: &[f32]| {
            let y = zeros(shape);
            let (x, s, t) = (upload(shape, xv), upload(&[ch], sv), upload(&[ch], tv));
            run(&[&batchnorm_affine_forward(c, &y, &x, &s, &t).unwrap()]);
            weighted_sum(&w, &download(&y))
        };
        let tag = format!("{shape:?}");
        fd_check(
            &format!("bn dx {tag}"),
            &xv,
            &gx,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| loss(v, &sv, &tv),
        );
        fd_check(
            &format!("bn dscale {tag}"),
            &sv,
            &gs,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| loss(&xv, v, &tv),
        );
        fd_check(
            &format!("bn dshift {tag}"),
            &tv,
            &gt,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| loss(&xv, &sv, v),
        );
    }
}

// ---------------------------------------------------------------- errors

#[test]
fn elementwise_bad_shapes_are_errors() {
    let c = ctx();
    let a = zeros(&[2, 3, 4, 5]);
    let b = zeros(&[2, 3, 4, 5]);
    let other = zeros(&[2, 3, 5, 4]);
    let flat = zeros(&[120]);
    assert!(add_forward(c, &a, &b, &b).is_ok());
    assert!(is_shape_err(add_forward(c, &a, &b, &other)));
    assert!(is_shape_err(add_forward(c, &other, &a, &b)));
    assert!(is_shape_err(add_forward(c, &flat, &a, &b)));
    assert!(is_shape_err(add_backward(c, &other, &a, false)));
    assert!(is_shape_err(scale(c, &other, &a, 2.0)));
    assert!(is_shape_err(add_scalar(c, &other, &a, 2.0)));
    assert!(is_shape_err(axpy(c, &other, &a, 2.0)));
    assert!(is_shape_err(clamp_forward(c, &other, &a, 0.0, 1.0)));
    assert!(is_shape_err(clamp_forward(c, &b, &a, f32::NAN, 1.0)));
    assert!(is_shape_err(clamp_backward(
        c, &a, &b, &other, 0.0, 1.0, false
    )));
    assert!(is_shape_err(clamp_backward(
        c,
        &a,
        &b,
        &a,
        0.0,
        f32::NAN,
        false
    )));

    let s3 = zeros(&[3]);
    let s3b = zeros(&[3]);
    let s4 = zeros(&[4]);
    assert!(batchnorm_affine_forward(c, &b, &a, &s3, &s3).is_ok());
    assert!(is_shape_err(batchnorm_affine_forward(c, &b, &a, &s4, &s3)));
    assert!(is_shape_err(batchnorm_affine_forward(c, &b, &a, &s3, &s4)));
    assert!(is_shape_err(batchnorm_affine_forward(
        c, &other, &a, &s3, &s3
    )));
    assert!(is_shape_err(batchnorm_affine_forward(
        c, &flat, &flat, &s3, &s3
    )));
    assert!(is_shape_err(batchnorm_affine_backward_input(
        c, &b, &a, &s4, false
    )));
    assert!(is_shape_err(batchnorm_affine_backward_input(
        c, &other, &a, &s3, false
    )));
    assert!(batchnorm_affine_backward_params(c, &s3, &s3b, &a, &b, false).is_ok());
    assert!(is_shape_err(batchnorm_affine_backward_params(
        c, &s4, &s3b, &a, &b, false
    )));
    assert!(is_shape_err(batchnorm_affine_backward_params(
        c, &s3, &s4, &a, &b, false
    )));
    assert!(is_shape_err(batchnorm_affine_backward_params(
        c, &s3, &s3b, &a, &other, false
    )));
}
