//! ReLU forward and its backward rules: CPU reference and finite differences; the redirected
//! rule (not a gradient: a heuristic) against its CPU reference and, where it must equal the
//! true gradient, the standard rule.

mod common;
use common::*;

use cnnvis::ops::relu::{relu_backward, relu_backward_redirected, relu_forward, ReluRule};
use cnnvis::Tensor;

fn relu_ref(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| (v as f64).max(0.0)).collect()
}

fn backward_ref(x: &[f32], dy: &[f32], rule: ReluRule) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&x, &g)| {
            let (x, g) = (x as f64, g as f64);
            match rule {
                ReluRule::Standard => {
                    if x > 0.0 {
                        g
                    } else {
                        0.0
                    }
                }
                ReluRule::Guided => {
                    if x > 0.0 && g > 0.0 {
                        g
                    } else {
                        0.0
                    }
                }
                ReluRule::Deconvnet => g.max(0.0),
                ReluRule::Redirected => unreachable!("per-image rule: see redirected_ref"),
            }
        })
        .collect()
}

/// Odd element counts run one element per thread, multiples of 4 the _vec4 kernels; on
/// lavapipe, multiples of 4 spanning 64 KiB windows the _windows kernels (exactly one window;
/// 4 windows and a tail; 7 + 2 windows in two launches and a tail).
const SHAPES: &[&[usize]] = &[
    &[1, 1, 128, 128],
    &[1, 9, 128, 129],
    &[1, 1, 1, 1],
    &[2, 3, 5, 7],
    &[3, 17, 13, 11],
    &[1, 1, 1, 70_001],
    &[1, 1, 1, 4],
    &[2, 4, 6, 6],
    &[1, 1, 1, 70_000],
];

#[test]
fn relu_forward_matches_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(1);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let mut xs = rng.vec(n, -1.0, 1.0);
        xs[0] = 0.0;
        let x = upload(shape, &xs);
        let y = poisoned(shape);
        run(&[&relu_forward(c, &y, &x).unwrap()]);
        assert_close(
            &format!("relu_forward {shape:?}"),
            &download(&y),
            &relu_ref(&xs),
            0.0,
            0.0,
        );
    }
}

#[test]
fn relu_backward_rules_match_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(2);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let mut xs = rng.vec(n, -1.0, 1.0);
        xs[0] = 0.0; // PyTorch: no gradient at exactly 0
        let dys = rng.vec(n, -1.0, 1.0);
        let (x, dy) = (upload(shape, &xs), upload(shape, &dys));
        for rule in [ReluRule::Standard, ReluRule::Guided, ReluRule::Deconvnet] {
            let dx = poisoned(shape);
            run(&[&relu_backward(c, &dx, &dy, &x, rule, false).unwrap()]);
            let want = backward_ref(&xs, &dys, rule);
            assert_close(
                &format!("relu_backward {rule:?} {shape:?}"),
                &download(&dx),
                &want,
                0.0,
                0.0,
            );
            // accumulate adds to what is there
            run(&[&relu_backward(c, &dx, &dy, &x, rule, true).unwrap()]);
            let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
            assert_close(
                &format!("relu_backward accumulate {rule:?}"),
                &download(&dx),
                &twice,
                0.0,
                0.0,
            );
        }
    }
}

/// Forward on the GPU, loss = sum(w * relu(x)) on the CPU in f64.
fn gpu_loss(shape: &[usize], w: &[f32], xs: &[f32]) -> f64 {
    let c = ctx();
    let x = upload(shape, xs);
    let y = zeros(shape);
    run(&[&relu_forward(c, &y, &x).unwrap()]);
    weighted_sum(w, &download(&y))
}

#[test]
fn relu_standard_backward_matches_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(3);
    let shape = [2, 3, 4, 5];
    let n = 120;
    let xs = rng.vec_away_from_zero(n, 0.05);
    let w = rng.vec(n, -1.0, 1.0);
    let (x, dy, dx) = (upload(&shape, &xs), upload(&shape, &w), zeros(&shape));
    run(&[&relu_backward(c, &dx, &dy, &x, ReluRule::Standard, false).unwrap()]);
    let g = download(&dx);
    fd_check("relu standard", &xs, &g, 1e-2, 1e-3, 200, &mut rng, |v| {
        gpu_loss(&shape, &w, v)
    });
}

/// Guided backprop is the true gradient taken with a rectified upstream gradient:
/// guided(x, w) = d/dx sum(max(w, 0) * relu(x)).
#[test]
fn relu_guided_backward_matches_finite_differences_of_rectified_loss() {
    let c = ctx();
    let mut rng = Rng::new(4);
    let shape = [1, 5, 3, 7];
    let n = 105;
    let xs = rng.vec_away_from_zero(n, 0.05);
    let w = rng.vec(n, -1.0, 1.0);
    let w_pos: Vec<f32> = w.iter().map(|v| v.max(0.0)).collect();
    let (x, dy, dx) = (upload(&shape, &xs), upload(&shape, &w), zeros(&shape));
    run(&[&relu_backward(c, &dx, &dy, &x, ReluRule::Guided, false).unwrap()]);
    let g = download(&dx);
    fd_check("relu guided", &xs, &g, 1e-2, 1e-3, 200, &mut rng, |v| {
        gpu_loss(&shape, &w_pos, v)
    });
}

/// Deconvnet passes max(w, 0) whatever the input: the gradient of sum(max(w, 0) * x), i.e. the
/// ReLU treated as identity on the way back. Checked against finite differences of that loss.
#[test]
fn relu_deconvnet_backward_matches_finite_differences_of_rectified_identity() {
    let c = ctx();
    let mut rng = Rng::new(5);
    let shape = [2, 2, 3, 3];
    let n = 36;
    let xs = rng.vec_away_from_zero(n, 0.05);
    let w = rng.vec(n, -1.0, 1.0);
    let w_pos: Vec<f32> = w.iter().map(|v| v.max(0.0)).collect();
    let (x, dy, dx) = (upload(&shape, &xs), upload(&shape, &w), zeros(&shape));
    run(&[&relu_backward(c, &dx, &dy, &x, ReluRule::Deconvnet, false).unwrap()]);
    let g = download(&dx);
    fd_check("relu deconvnet", &xs, &g, 1e-2, 1e-3, 200, &mut rng, |v| {
        weighted_sum(&w_pos, v)
    });
    // and it differs from the standard rule wherever x < 0 and w > 0
    assert!(xs
        .iter()
        .zip(&w)
        .zip(&g)
        .any(|((&x, &w), &g)| x < 0.0 && w > 0.0 && g > 0.0));
}

/// Lucid's redirected rule per image of `[n, inner]`.
fn redirected_ref(x: &[f32], dy: &[f32], n: usize) -> Vec<f64> {
    let inner = x.len() / n;
    let mut out = Vec::with_capacity(x.len());
    for i in 0..n {
        let (xs, gs) = (
            &x[i * inner..(i + 1) * inner],
            &dy[i * inner..(i + 1) * inner],
        );
        let alive = xs.iter().zip(gs).any(|(&x, &g)| x > 0.0 && g != 0.0);
        for (&x, &g) in xs.iter().zip(gs) {
            let (x, g) = (x as f64, g as f64);
            out.push(if alive {
                if x > 0.0 {
                    g
                } else {
                    0.0
                }
            } else if x < 0.0 && g > 0.0 {
                0.0
            } else {
                g
            });
        }
    }
    out
}

#[test]
fn relu_redirected_backward_matches_cpu_reference_per_image() {
    let c = ctx();
    let mut rng = Rng::new(9);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let batch = shape[0];
        let inner = n / batch;
        let mut xs = rng.vec(n, -1.0, 1.0);
        let dys = rng.vec(n, -1.0, 1.0);
        // Image 0 is dead: every input negative or zero, so its true gradient is zero.
        for v in &mut xs[..inner] {
            *v = -v.abs();
        }
        if batch > 1 {
            // Image 1 has one live element: the true gradient applies there.
            for v in &mut xs[inner..2 * inner] {
                *v = -v.abs();
            }
            xs[inner + inner / 2] = 0.5;
        }
        let (x, dy) = (upload(shape, &xs), upload(shape, &dys));
        let flags = Tensor::from_u32(c, &[batch], &vec![7; batch]).unwrap();
        let want = redirected_ref(&xs, &dys, batch);
        let dx = poisoned(shape);
        let launches = relu_backward_redirected(c, &dx, &dy, &x, &flags, false).unwrap();
        run(&launches.iter().collect::<Vec<_>>());
        let got = download(&dx);
        assert_close(&format!("redirected {shape:?}"), &got, &want, 0.0, 0.0);
        // Live images get exactly the true gradient.
        let std = backward_ref(&xs, &dys, ReluRule::Standard);
        for i in 1..batch {
            let r = i * inner..(i + 1) * inner;
            assert_close("redirected = standard", &got[r.clone()], &std[r], 0.0, 0.0);
        }
        // The dead image's gradient is not zero (the point of the rule) when any dy < 0.
        if dys[..inner].iter().any(|&g| g < 0.0) {
            assert!(got[..inner].iter().any(|&g| g != 0.0));
        }
        // Accumulate adds.
        let launches = relu_backward_redirected(c, &dx, &dy, &x, &flags, true).unwrap();
        run(&launches.iter().collect::<Vec<_>>());
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close("redirected accumulate", &download(&dx), &twice, 0.0, 0.0);
    }
    // The elementwise entry point refuses the rule instead of guessing.
    let x = upload(&[1, 4], &[1.0, -1.0, 2.0, -2.0]);
    assert!(relu_backward(c, &zeros(&[1, 4]), &x, &x, ReluRule::Redirected, false).is_err());
}

/// Where the uniform-window kernels run (lavapipe), large tensors of whole vec4 take the
/// _windows kernels unless they accumulate; the rest keep the storage kernels.
#[test]
fn relu_windows_kernels_serve_large_tensors_on_window_adapters() {
    let c = ctx();
    let windows = cnnvis::ops::conv2d::conv2d_windows_supported(c);
    let entry = |shape: &[usize], backward: Option<(ReluRule, bool)>| {
        let (x, t) = (zeros(shape), zeros(shape));
        let d = match backward {
            None => relu_forward(c, &t, &x).unwrap(),
            Some((rule, acc)) => relu_backward(c, &t, &x, &x, rule, acc).unwrap(),
        };
        d.kernel().entry
    };
    let big: &[usize] = &[1, 2, 128, 128];
    let want = |w: &'static str, v: &'static str| if windows { w } else { v };
    assert_eq!(
        entry(big, None),
        want("relu_forward_windows", "relu_forward_vec4")
    );
    for (rule, name) in [
        (ReluRule::Standard, "relu_backward"),
        (ReluRule::Guided, "relu_backward_guided"),
        (ReluRule::Deconvnet, "relu_backward_deconv"),
    ] {
        let w = entry(big, Some((rule, false)));
        assert_eq!(
            w,
            if windows {
                format!("{name}_windows")
            } else {
                format!("{name}_vec4")
            }
        );
        assert_eq!(entry(big, Some((rule, true))), format!("{name}_vec4"));
    }
    assert_eq!(entry(&[1, 1, 64, 64], None), "relu_forward_vec4");
    assert_eq!(entry(&[1, 1, 129, 127], None), "relu_forward");
}
