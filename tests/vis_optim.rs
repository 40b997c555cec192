//! Activation maximization's kernels (src/vis/optim.rs) against CPU f64 references: keras-vis's
//! TV and Lp regularizers (loss and gradient, write and accumulate), gradient RMS
//! normalization, RMSProp and Adam over several steps with the GPU step counter, clipping,
//! keep-best, the loss log, per-step random numbers (bit-exact), and the transforms (jitter,
//! pad, affine warp) forward and transposed. Every backward also passes a finite-difference
//! check against its GPU forward, and the linear transforms an adjoint test
//! `<T x, w> = <x, Tᵀ w>` with both sides on the GPU.
//!
//! Tolerances: losses and gradients 1e-5 relative (f32 sums over ≤ 10³ terms), updates 1e-5,
//! warps 1e-4 absolute (f32 vs f64 sample positions on O(1) images), finite differences 1e-2
//! of the largest gradient, adjoints 1e-5 relative.

mod common;

use cnnvis::vis::optim::*;
use cnnvis::Tensor;
use common::{assert_close, ctx, download, fd_check, run, upload, weighted_sum, zeros, Rng};

fn step_tensor(v: u32) -> Tensor {
    Tensor::from_u32(ctx(), &[1], &[v]).expect("step")
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}

/// `Σ a·b` in f64.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    weighted_sum(a, b)
}

// ---------- regularizers ----------

/// keras-vis TotalVariation per image and its gradient (f64), normalized by C*H*W.
fn tv_cpu(x: &[f32], [n, c, h, w]: [usize; 4], beta: f64) -> (Vec<f64>, Vec<f64>) {
    let inner = c * h * w;
    let mut loss = vec![0.0; n];
    let mut grad = vec![0.0; x.len()];
    let at = |b: usize, i: usize, j: usize| b + i * w + j;
    for (img, l) in loss.iter_mut().enumerate() {
        for ch in 0..c {
            let b = (img * c + ch) * h * w;
            for i in 0..h.saturating_sub(1) {
                for j in 0..w.saturating_sub(1) {
                    let v = x[at(b, i, j)] as f64;
                    let dv = x[at(b, i + 1, j)] as f64 - v;
                    let dh = x[at(b, i, j + 1)] as f64 - v;
                    let t = dv * dv + dh * dh;
                    *l += t.powf(beta / 2.0);
                    let dt = if t > 0.0 {
                        beta / 2.0 * t.powf(beta / 2.0 - 1.0)
                    } else {
                        0.0
                    };
                    grad[at(b, i, j)] -= 2.0 * dt * (dv + dh);
                    grad[at(b, i + 1, j)] += 2.0 * dt * dv;
                    grad[at(b, i, j + 1)] += 2.0 * dt * dh;
                }
            }
        }
    }
    let k = 1.0 / inner as f64;
    (
        loss.iter().map(|v| v * k).collect(),
        grad.iter().map(|v| v * k).collect(),
    )
}

/// keras-vis LPNorm per image (p = inf: signed max) and its gradient (f64), normalized.
fn lp_cpu(x: &[f32], [n, c, h, w]: [usize; 4], p: f64) -> (Vec<f64>, Vec<f64>) {
    let inner = c * h * w;
    let k = 1.0 / inner as f64;
    let mut loss = vec![0.0; n];
    let mut grad = vec![0.0; x.len()];
    for img in 0..n {
        let xs: Vec<f64> = to64(&x[img * inner..(img + 1) * inner]);
        if p.is_infinite() {
            let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ties = xs.iter().filter(|&&v| v == m).count() as f64;
            loss[img] = m * k;
            for (e, &v) in xs.iter().enumerate() {
                if v == m {
                    grad[img * inner + e] = k / ties;
                }
            }
        } else {
            let norm = xs
                .iter()
                .map(|v| v.abs().powf(p))
                .sum::<f64>()
                .powf(1.0 / p);
            loss[img] = norm * k;
            for (e, &v) in xs.iter().enumerate() {
                if norm > 0.0 && v != 0.0 {
                    grad[img * inner + e] = k * v.signum() * (v.abs() / norm).powf(p - 1.0);
                }
            }
        }
    }
    (loss, grad)
}

#[test]
fn total_variation_matches_keras_vis_and_finite_differences() {
    let mut rng = Rng::new(11);
    let dims = [2, 3, 5, 7];
    let numel: usize = dims.iter().product();
    for &beta in &[2.0f32, 1.5, 3.0] {
        let xv = rng.vec(numel, -1.0, 1.0);
        let x = upload(&dims, &xv);
        let weight = 10.0;
        let (ref_loss, ref_grad) = tv_cpu(&xv, dims, beta as f64);
        // write
        let loss = common::poisoned(&[2]);
        let dx = common::poisoned(&dims);
        let l = tv_loss(ctx(), &loss, &x, beta, weight, false).unwrap();
        let g = tv_backward(ctx(), &dx, &x, beta, weight, false).unwrap();
        run(&[&l, &g]);
        let want_loss: Vec<f64> = ref_loss.iter().map(|v| v * weight as f64).collect();
        let want_grad: Vec<f64> = ref_grad.iter().map(|v| v * weight as f64).collect();
        assert_close("tv loss", &download(&loss), &want_loss, 1e-6, 1e-5);
        assert_close("tv grad", &download(&dx), &want_grad, 1e-6, 1e-5);
        // accumulate onto existing values
        let base_l = vec![0.25f32, -1.5];
        let base_g = rng.vec(numel, -1.0, 1.0);
        let loss_acc = upload(&[2], &base_l);
        let dx_acc = upload(&dims, &base_g);
        let l = tv_loss(ctx(), &loss_acc, &x, beta, 0.5, true).unwrap();
        let g = tv_backward(ctx(), &dx_acc, &x, beta, 0.5, true).unwrap();
        run(&[&l, &g]);
        let want: Vec<f64> = ref_loss
            .iter()
            .zip(&base_l)
            .map(|(r, &b)| b as f64 + 0.5 * r)
            .collect();
        assert_close(
            "tv loss accumulate",
            &download(&loss_acc),
            &want,
            1e-6,
            1e-5,
        );
        let want: Vec<f64> = ref_grad
            .iter()
            .zip(&base_g)
            .map(|(r, &b)| b as f64 + 0.5 * r)
            .collect();
        assert_close("tv grad accumulate", &download(&dx_acc), &want, 1e-6, 1e-5);
        // finite differences of the GPU loss (summed over images)
        let grad = download(&dx);
        let probe = zeros(&dims);
        let pl = zeros(&[2]);
        let fwd = tv_loss(ctx(), &pl, &probe, beta, weight, false).unwrap();
        fd_check(
            &format!("tv beta {beta}"),
            &xv,
            &grad,
            1e-2,
            1e-2,
            60,
            &mut rng,
            |xs| {
                probe.write(ctx(), xs).unwrap();
                run(&[&fwd]);
                download(&pl).iter().map(|&v| v as f64).sum()
            },
        );
    }
}

#[test]
fn total_variation_of_a_single_row_is_zero() {
    let x = upload(
        &[1, 2, 1, 5],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 0.0, 1.0, 0.0, 1.0],
    );
    let loss = common::poisoned(&[1]);
    let dx = common::poisoned(&[1, 2, 1, 5]);
    let l = tv_loss(ctx(), &loss, &x, 2.0, 1.0, false).unwrap();
    let g = tv_backward(ctx(), &dx, &x, 2.0, 1.0, false).unwrap();
    run(&[&l, &g]);
    assert_eq!(download(&loss), vec![0.0]);
    assert_eq!(download(&dx), vec![0.0; 10]);
}

#[test]
fn lp_norm_matches_keras_vis_and_finite_differences() {
    let mut rng = Rng::new(12);
    let dims = [3, 2, 4, 5];
    let numel: usize = dims.iter().product();
    for &p in &[1.0f32, 2.0, 6.0, 13.0, f32::INFINITY] {
        // away from 0 (|x| kink at p = 1) and scaled like model inputs
        let xv: Vec<f32> = rng
            .vec_away_from_zero(numel, 0.05)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let x = upload(&dims, &xv);
        let weight = 10.0;
        let (ref_loss, ref_grad) = lp_cpu(&xv, dims, p as f64);
        let loss = upload(&[3], &[1.0, 2.0, 3.0]);
        let stats = common::poisoned(&[3, 2]);
        let dx = common::poisoned(&dims);
        let l = lp_loss(ctx(), &loss, &stats, &x, p, weight, true).unwrap();
        let g = lp_backward(ctx(), &dx, &x, &stats, p, weight, false).unwrap();
        run(&[&l, &g]);
        let want_loss: Vec<f64> = ref_loss
            .iter()
            .enumerate()
            .map(|(i, v)| (i + 1) as f64 + v * weight as f64)
            .collect();
        let want_grad: Vec<f64> = ref_grad.iter().map(|v| v * weight as f64).collect();
        assert_close(
            &format!("lp{p} loss"),
            &download(&loss),
            &want_loss,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("lp{p} grad"),
            &download(&dx),
            &want_grad,
            1e-7,
            1e-4,
        );
        let grad = download(&dx);
        let probe = zeros(&dims);
        let pl = zeros(&[3]);
        let ps = zeros(&[3, 2]);
        let fwd = lp_loss(ctx(), &pl, &ps, &probe, p, weight, false).unwrap();
        // the max norm is piecewise linear: a small step keeps the argmax
        let h = if p.is_infinite() { 1e-3 } else { 1e-2 };
        fd_check(&format!("lp{p}"), &xv, &grad, h, 1e-2, 60, &mut rng, |xs| {
            probe.write(ctx(), xs).unwrap();
            run(&[&fwd]);
            download(&pl).iter().map(|&v| v as f64).sum()
        });
    }
}

#[test]
fn lp_norm_of_zeros_and_ties() {
    let dims = [2, 1, 2, 2];
    let x = upload(&dims, &[0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 3.0, -5.0]);
    let loss = zeros(&[2]);
    let stats = zeros(&[2, 2]);
    let dx = common::poisoned(&dims);
    let l = lp_loss(ctx(), &loss, &stats, &x, 6.0, 1.0, false).unwrap();
    let g = lp_backward(ctx(), &dx, &x, &stats, 6.0, 1.0, false).unwrap();
    run(&[&l, &g]);
    let gv = download(&dx);
    assert_eq!(&gv[..4], &[0.0; 4], "zero image: zero gradient");
    assert_eq!(download(&loss)[0], 0.0);
    // p = inf: the signed max 3 appears twice and shares the gradient 1/4
    let l = lp_loss(ctx(), &loss, &stats, &x, f32::INFINITY, 1.0, false).unwrap();
    let g = lp_backward(ctx(), &dx, &x, &stats, f32::INFINITY, 1.0, false).unwrap();
    run(&[&l, &g]);
    assert_eq!(download(&loss), vec![0.0, 0.75]);
    assert_eq!(&download(&dx)[4..], &[0.0, 0.125, 0.125, 0.0]);
    assert!(lp_loss(ctx(), &loss, &stats, &x, 0.5, 1.0, false).is_err());
}

// ---------- update rules ----------

#[test]
fn keras_vis_rmsprop_with_normalized_gradients_over_steps() {
    let mut rng = Rng::new(13);
    let dims = [2, 3, 4, 4];
    let numel: usize = dims.iter().product();
    let inner = numel / 2;
    for &norm in &[true, false] {
        let x0 = rng.vec(numel, -1.0, 1.0);
        let x = upload(&dims, &x0);
        let cache = zeros(&dims);
        let g = zeros(&dims);
        let gscale = zeros(&[2]);
        let opt = Rmsprop::default();
        let rms = grad_rms(ctx(), &gscale, &g, KERAS_EPSILON).unwrap();
        let upd = rmsprop_update(ctx(), &x, &cache, &g, norm.then_some(&gscale), opt).unwrap();
        let mut xr = to64(&x0);
        let mut cr = vec![0.0f64; numel];
        for it in 0..4 {
            // image 1's gradients are tiny: normalization rescales them
            let mut gv = rng.vec(numel, -2.0, 2.0);
            for v in &mut gv[inner..] {
                *v *= 1e-3;
            }
            g.write(ctx(), &gv).unwrap();
            run(&[&rms, &upd]);
            for img in 0..2 {
                let gs = &gv[img * inner..(img + 1) * inner];
                let s = if norm {
                    let ms = gs.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / inner as f64;
                    1.0 / (ms.sqrt() + 1e-7)
                } else {
                    1.0
                };
                for (e, &ge) in gs.iter().enumerate() {
                    let i = img * inner + e;
                    let gg = ge as f64 * s;
                    cr[i] = 0.95 * cr[i] + 0.05 * gg * gg;
                    xr[i] += -gg / (cr[i] + 1e-7).sqrt();
                }
            }
            if norm {
                let want: Vec<f64> = (0..2)
                    .map(|img| {
                        let gs = &gv[img * inner..(img + 1) * inner];
                        let ms = gs.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / inner as f64;
                        1.0 / (ms.sqrt() + 1e-7)
                    })
                    .collect();
                assert_close("gscale", &download(&gscale), &want, 0.0, 1e-5);
            }
            assert_close(
                &format!("rmsprop x, step {it}"),
                &download(&x),
                &xr,
                1e-5,
                1e-5,
            );
            assert_close(
                &format!("rmsprop cache, step {it}"),
                &download(&cache),
                &cr,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn adam_follows_torch_with_the_gpu_step_counter() {
    let mut rng = Rng::new(14);
    let dims = [2, 1, 3, 5];
    let numel: usize = dims.iter().product();
    let inner = numel / 2;
    let opt = Adam {
        lr: 0.1,
        ..Adam::default()
    };
    for &norm in &[false, true] {
        let x0 = rng.vec(numel, -1.0, 1.0);
        let x = upload(&dims, &x0);
        let m = zeros(&dims);
        let v = zeros(&dims);
        let g = zeros(&dims);
        let gscale = zeros(&[2]);
        let step = step_tensor(0);
        let rms = grad_rms(ctx(), &gscale, &g, KERAS_EPSILON).unwrap();
        let upd = adam_update(ctx(), &x, &m, &v, &g, norm.then_some(&gscale), &step, opt).unwrap();
        let adv = step_advance(ctx(), &step).unwrap();
        let (b1, b2, eps, lr) = (
            opt.beta1 as f64,
            opt.beta2 as f64,
            opt.eps as f64,
            opt.lr as f64,
        );
        let mut xr = to64(&x0);
        let mut mr = vec![0.0f64; numel];
        let mut vr = vec![0.0f64; numel];
        for t in 1..=6 {
            let gv = rng.vec(numel, -1.0, 1.0);
            g.write(ctx(), &gv).unwrap();
            run(&[&rms, &upd, &adv]);
            for img in 0..2 {
                let gs = &gv[img * inner..(img + 1) * inner];
                let s = if norm {
                    let ms = gs.iter().map(|&a| (a as f64).powi(2)).sum::<f64>() / inner as f64;
                    1.0 / (ms.sqrt() + 1e-7)
                } else {
                    1.0
                };
                for (e, &ge) in gs.iter().enumerate() {
                    let i = img * inner + e;
                    let gg = ge as f64 * s;
                    mr[i] = b1 * mr[i] + (1.0 - b1) * gg;
                    vr[i] = b2 * vr[i] + (1.0 - b2) * gg * gg;
                    let bc1 = 1.0 - b1.powi(t);
                    let bc2 = 1.0 - b2.powi(t);
                    xr[i] -= lr / bc1 * mr[i] / (vr[i].sqrt() / bc2.sqrt() + eps);
                }
            }
            assert_close(&format!("adam x, t {t}"), &download(&x), &xr, 1e-5, 1e-5);
            assert_close(&format!("adam m, t {t}"), &download(&m), &mr, 1e-6, 1e-5);
            assert_close(&format!("adam v, t {t}"), &download(&v), &vr, 1e-7, 1e-4);
        }
        assert_eq!(step.download_u32(ctx()).unwrap(), vec![6]);
    }
}

#[test]
fn clip_keeps_each_channel_in_range() {
    let mut rng = Rng::new(15);
    let dims = [2, 3, 2, 3];
    let numel: usize = dims.iter().product();
    let xv = rng.vec(numel, -3.0, 3.0);
    let x = upload(&dims, &xv);
    let lo = [-2.0f32, -0.5, 0.0];
    let hi = [2.0f32, 0.5, 1.0];
    let d = clip_channels(ctx(), &x, &lo, &hi).unwrap();
    run(&[&d]);
    let want: Vec<f64> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / 6) % 3;
            v.clamp(lo[c], hi[c]) as f64
        })
        .collect();
    assert_close("clip", &download(&x), &want, 0.0, 0.0);
    assert!(clip_channels(ctx(), &x, &lo[..2], &hi[..2]).is_err());
    assert!(clip_channels(ctx(), &x, &[1.0, 0.0, 0.0], &[0.0, 1.0, 1.0]).is_err());
}

#[test]
fn keep_best_copies_only_improving_images() {
    let dims = [3, 1, 2, 2];
    let x = zeros(&dims);
    let best = zeros(&dims);
    let loss = zeros(&[3]);
    let best_loss = upload(&[3], &[f32::INFINITY; 3]);
    let kb = keep_best(ctx(), &best, &best_loss, &x, &loss).unwrap();
    // (losses per image, x value) per iteration
    let seq: [([f32; 3], f32); 4] = [
        ([5.0, f32::NAN, 1.0], 1.0),
        ([4.0, 3.0, 2.0], 2.0),
        ([6.0, 3.0, 0.5], 3.0),
        ([4.0, 2.0, f32::NAN], 4.0),
    ];
    for (l, v) in seq {
        loss.write(ctx(), &l).unwrap();
        x.write(ctx(), &[v; 12]).unwrap();
        run(&kb.iter().collect::<Vec<_>>());
    }
    // image 0: best 4 first seen at x = 2 (4 < 4 is false later); image 1: 2 at x = 4;
    // image 2: 0.5 at x = 3
    assert_eq!(download(&best_loss), vec![4.0, 2.0, 0.5]);
    let b = download(&best);
    assert_eq!(&b[0..4], &[2.0; 4]);
    assert_eq!(&b[4..8], &[4.0; 4]);
    assert_eq!(&b[8..12], &[3.0; 4]);
}

#[test]
fn loss_log_rows_follow_the_step_counter() {
    let losses = common::poisoned(&[3, 2]);
    let loss = zeros(&[2]);
    let step = step_tensor(0);
    let log = log_loss(ctx(), &losses, &loss, &step).unwrap();
    let adv = step_advance(ctx(), &step).unwrap();
    for it in 0..5 {
        loss.write(ctx(), &[it as f32, -(it as f32)]).unwrap();
        run(&[&log, &adv]);
    }
    assert_eq!(
        download(&losses),
        vec![0.0, -0.0, 1.0, -1.0, 2.0, -2.0],
        "rows 0..3, steps beyond the log write nothing"
    );
    assert_eq!(step.download_u32(ctx()).unwrap(), vec![5]);
}

#[test]
fn step_uniform_is_a_pure_function_of_seed_and_step() {
    let rand = common::poisoned(&[5, 7]);
    let step = step_tensor(0);
    let seed = 0x1234_5678_9abc_def0u64;
    let fill = step_uniform(ctx(), &rand, &step, seed).unwrap();
    let adv = step_advance(ctx(), &step).unwrap();
    let mut previous = Vec::new();
    for s in 0..3u32 {
        run(&[&fill]);
        let got = download(&rand);
        let want: Vec<f32> = (0..35).map(|i| step_uniform_cpu(seed, s, i)).collect();
        assert_eq!(got, want, "step {s}");
        assert!(got.iter().all(|&v| (0.0..1.0).contains(&v)));
        assert_ne!(got, previous);
        previous = got;
        run(&[&adv]);
    }
}

// ---------- transforms ----------

/// Checks a linear transform pair on the GPU: forward and backward against CPU references
/// (forward `f(x)`, its transpose as the scatter `t(dy)`), the adjoint identity, the
/// accumulate flag, and finite differences of `Σ w·T(x)`.
#[allow(clippy::too_many_arguments)]
fn check_linear(
    name: &str,
    xdims: [usize; 4],
    ydims: [usize; 4],
    fwd: &dyn Fn(&Tensor, &Tensor) -> cnnvis::gpu::Dispatch,
    bwd: &dyn Fn(&Tensor, &Tensor, bool) -> cnnvis::gpu::Dispatch,
    cpu_fwd: &dyn Fn(&[f32]) -> Vec<f64>,
    cpu_bwd: &dyn Fn(&[f32]) -> Vec<f64>,
    tol: f64,
    rng: &mut Rng,
) {
    let nx: usize = xdims.iter().product();
    let ny: usize = ydims.iter().product();
    let xv = rng.vec(nx, -1.0, 1.0);
    let wv = rng.vec(ny, -1.0, 1.0);
    let x = upload(&xdims, &xv);
    let y = common::poisoned(&ydims);
    let dy = upload(&ydims, &wv);
    let dx = common::poisoned(&xdims);
    let f = fwd(&y, &x);
    let b = bwd(&dx, &dy, false);
    run(&[&f, &b]);
    let yv = download(&y);
    let dxv = download(&dx);
    assert_close(&format!("{name} forward"), &yv, &cpu_fwd(&xv), tol, tol);
    assert_close(&format!("{name} backward"), &dxv, &cpu_bwd(&wv), tol, tol);
    let lhs = dot(&yv, &wv);
    let rhs = dot(&xv, &dxv);
    let scale = yv
        .iter()
        .zip(&wv)
        .map(|(a, b)| (a * b).abs() as f64)
        .sum::<f64>()
        .max(1.0);
    assert!(
        (lhs - rhs).abs() <= 1e-5 * scale,
        "{name}: <Tx, w> = {lhs} vs <x, T'w> = {rhs}"
    );
    // accumulate
    let base = rng.vec(nx, -1.0, 1.0);
    let acc = upload(&xdims, &base);
    let b = bwd(&acc, &dy, true);
    run(&[&b]);
    let want: Vec<f64> = base
        .iter()
        .zip(&dxv)
        .map(|(&a, &d)| a as f64 + d as f64)
        .collect();
    assert_close(
        &format!("{name} accumulate"),
        &download(&acc),
        &want,
        1e-6,
        1e-6,
    );
    // finite differences of Σ w·T(x) through the GPU forward
    let probe = zeros(&xdims);
    let py = zeros(&ydims);
    let f = fwd(&py, &probe);
    fd_check(name, &xv, &dxv, 1e-2, 1e-3, 40, rng, |xs| {
        probe.write(ctx(), xs).unwrap();
        run(&[&f]);
        weighted_sum(&wv, &download(&py))
    });
}

/// A CPU linear map in f64.
type LinearMap = Box<dyn Fn(&[f32]) -> Vec<f64>>;

/// CPU scatter of a gather-defined linear map: `src(n, c, i, j)` lists `(input index,
/// weight)` pairs of output element `(i, j)`.
fn cpu_pair(
    xdims: [usize; 4],
    ydims: [usize; 4],
    src: impl Fn(usize, usize, usize) -> Vec<((usize, usize), f64)>,
) -> (LinearMap, LinearMap) {
    let [n, c, h, w] = xdims;
    let [_, _, ho, wo] = ydims;
    let mut taps = Vec::new(); // (y index, x index, weight)
    for img in 0..n {
        for ch in 0..c {
            for i in 0..ho {
                for j in 0..wo {
                    let yi = ((img * c + ch) * ho + i) * wo + j;
                    for ((a, b), wt) in src(img, i, j) {
                        taps.push((yi, ((img * c + ch) * h + a) * w + b, wt));
                    }
                }
            }
        }
    }
    let taps2 = taps.clone();
    let ny = n * c * ho * wo;
    let nx = n * c * h * w;
    (
        Box::new(move |x: &[f32]| {
            let mut y = vec![0.0; ny];
            for &(yi, xi, wt) in &taps {
                y[yi] += wt * x[xi] as f64;
            }
            y
        }),
        Box::new(move |dy: &[f32]| {
            let mut dx = vec![0.0; nx];
            for &(yi, xi, wt) in &taps2 {
                dx[xi] += wt * dy[yi] as f64;
            }
            dx
        }),
    )
}

#[test]
fn jitter_crop_and_roll() {
    let mut rng = Rng::new(16);
    let xdims = [3, 2, 7, 6];
    let k = 5;
    let col = 1;
    let rv = rng.vec(3 * k, 0.0, 1.0);
    let rand = upload(&[3, k], &rv);
    // Lucid crop: 7x6 -> 4x5, offsets in [0, 3] x [0, 1]
    let ydims = [3, 2, 4, 5];
    let offs: Vec<(usize, usize)> = (0..3)
        .map(|n| {
            let pick = |u: f32, span: usize| ((u * span as f32) as usize).min(span - 1);
            (pick(rv[n * k + col], 4), pick(rv[n * k + col + 1], 2))
        })
        .collect();
    let (cf, cb) = cpu_pair(xdims, ydims, |n, i, j| {
        vec![((i + offs[n].0, j + offs[n].1), 1.0)]
    });
    check_linear(
        "jitter crop",
        xdims,
        ydims,
        &|y, x| jitter_forward(ctx(), y, x, &rand, col, JitterMode::Crop).unwrap(),
        &|dx, dy, acc| jitter_backward(ctx(), dx, dy, &rand, col, JitterMode::Crop, acc).unwrap(),
        &cf,
        &cb,
        0.0,
        &mut rng,
    );
    // keras-vis roll by [-d, d], d = 3 (> W/2 exercises the wrap on both sides)
    let d = 3usize;
    let shifts: Vec<(i64, i64)> = (0..3)
        .map(|n| {
            let pick = |u: f32| ((u * (2 * d + 1) as f32) as i64).min(2 * d as i64) - d as i64;
            (pick(rv[n * k + col]), pick(rv[n * k + col + 1]))
        })
        .collect();
    let (rf, rb) = cpu_pair(xdims, xdims, |n, i, j| {
        let a = (i as i64 - shifts[n].0).rem_euclid(7) as usize;
        let b = (j as i64 - shifts[n].1).rem_euclid(6) as usize;
        vec![((a, b), 1.0)]
    });
    let mode = JitterMode::Roll { max_shift: d };
    check_linear(
        "jitter roll",
        xdims,
        xdims,
        &|y, x| jitter_forward(ctx(), y, x, &rand, col, mode).unwrap(),
        &|dx, dy, acc| jitter_backward(ctx(), dx, dy, &rand, col, mode, acc).unwrap(),
        &rf,
        &rb,
        0.0,
        &mut rng,
    );
    let too_big = zeros(&[3, 2, 8, 5]);
    let x = zeros(&xdims);
    assert!(jitter_forward(ctx(), &too_big, &x, &rand, col, JitterMode::Crop).is_err());
    assert!(jitter_forward(ctx(), &too_big, &x, &rand, 4, JitterMode::Crop).is_err());
}

#[test]
fn pad_constant_and_reflect() {
    let mut rng = Rng::new(17);
    let xdims = [2, 3, 4, 5];
    let pad = 3;
    let ydims = [2, 3, 10, 11];
    // constant: interior only; the fill is checked separately (it is not linear in x)
    let fill = vec![0.5f32, -1.0, 2.0];
    let inside = |q: usize, size: usize| q.checked_sub(pad).filter(|&s| s < size);
    let (cf, cb) = cpu_pair(xdims, ydims, |_, i, j| match (inside(i, 4), inside(j, 5)) {
        (Some(a), Some(b)) => vec![((a, b), 1.0)],
        _ => vec![],
    });
    let zero_fill = PadMode::Constant(vec![0.0]);
    check_linear(
        "pad constant",
        xdims,
        ydims,
        &|y, x| pad_forward(ctx(), y, x, pad, &zero_fill).unwrap(),
        &|dx, dy, acc| pad_backward(ctx(), dx, dy, pad, &zero_fill, acc).unwrap(),
        &cf,
        &cb,
        0.0,
        &mut rng,
    );
    let x = upload(&xdims, &rng.vec(120, -1.0, 1.0));
    let y = zeros(&ydims);
    let d = pad_forward(ctx(), &y, &x, pad, &PadMode::Constant(fill.clone())).unwrap();
    run(&[&d]);
    let yv = download(&y);
    for (e, &v) in yv.iter().enumerate() {
        let (i, j, c) = ((e / 11) % 10, e % 11, (e / 110) % 3);
        if inside(i, 4).is_none() || inside(j, 5).is_none() {
            assert_eq!(v, fill[c], "fill at {e}");
        }
    }
    // reflect (torch 'reflect')
    let refl = |q: usize, size: usize| {
        let s = q as i64 - pad as i64;
        let r = if s < 0 {
            -s
        } else if s >= size as i64 {
            2 * (size as i64 - 1) - s
        } else {
            s
        };
        r as usize
    };
    let (rf, rb) = cpu_pair(xdims, ydims, |_, i, j| {
        vec![((refl(i, 4), refl(j, 5)), 1.0)]
    });
    check_linear(
        "pad reflect",
        xdims,
        ydims,
        &|y, x| pad_forward(ctx(), y, x, pad, &PadMode::Reflect).unwrap(),
        &|dx, dy, acc| pad_backward(ctx(), dx, dy, pad, &PadMode::Reflect, acc).unwrap(),
        &rf,
        &rb,
        1e-6, // up to four border reads summed in another order
        &mut rng,
    );
    let big = zeros(&[2, 3, 12, 13]);
    assert!(pad_forward(ctx(), &big, &x, 4, &PadMode::Reflect).is_err());
    assert!(pad_forward(ctx(), &y, &x, pad, &PadMode::Constant(vec![0.0, 1.0])).is_err());
}

/// Bilinear taps (zero outside) of output (i, j) of image n under the warp, in f64.
fn warp_taps(
    [_, _, h, w]: [usize; 4],
    [_, _, ho, wo]: [usize; 4],
    r: &[f32],
    range: &WarpRange,
    i: usize,
    j: usize,
) -> Vec<((usize, usize), f64)> {
    let lo = range.angle_deg.0.to_radians() as f64;
    let hi = range.angle_deg.1.to_radians() as f64;
    let th = lo + r[0] as f64 * (hi - lo);
    let s = range.scale.0 as f64 + r[1] as f64 * (range.scale.1 as f64 - range.scale.0 as f64);
    let ty = range.translate as f64 * (2.0 * r[2] as f64 - 1.0);
    let tx = range.translate as f64 * (2.0 * r[3] as f64 - 1.0);
    let qy = i as f64 + 0.5 - ho as f64 / 2.0;
    let qx = j as f64 + 0.5 - wo as f64 / 2.0;
    let (c, sn) = (th.cos(), th.sin());
    let sx = (c * qx + sn * qy) / s;
    let sy = (c * qy - sn * qx) / s;
    let py = sy + h as f64 / 2.0 - ty - 0.5;
    let px = sx + w as f64 / 2.0 - tx - 0.5;
    let (fy, fx) = (py.floor(), px.floor());
    let mut taps = Vec::new();
    for a in 0..2 {
        let yy = fy + a as f64;
        if yy < 0.0 || yy >= h as f64 {
            continue;
        }
        for b in 0..2 {
            let xx = fx + b as f64;
            if xx < 0.0 || xx >= w as f64 {
                continue;
            }
            let wt = (1.0 - (py - yy).abs()) * (1.0 - (px - xx).abs());
            taps.push(((yy as usize, xx as usize), wt));
        }
    }
    taps
}

#[test]
fn affine_warp_forward_and_transpose() {
    let mut rng = Rng::new(18);
    let cases = [
        // (x dims, y dims, range)
        (
            [2, 3, 9, 8],
            [2, 3, 9, 8],
            WarpRange {
                angle_deg: (-30.0, 30.0),
                scale: (0.8, 1.25),
                translate: 1.5,
            },
        ),
        (
            [3, 1, 8, 7],
            [3, 1, 6, 9],
            WarpRange {
                angle_deg: (-180.0, 180.0),
                scale: (0.4, 0.6),
                translate: 0.0,
            },
        ),
        (
            [2, 2, 7, 7],
            [2, 2, 7, 7],
            WarpRange {
                angle_deg: (10.0, 80.0),
                scale: (1.5, 2.5),
                translate: 3.0,
            },
        ),
        ([2, 2, 6, 5], [2, 2, 6, 5], WarpRange::default()),
    ];
    for (ci, (xdims, ydims, range)) in cases.into_iter().enumerate() {
        let n = xdims[0];
        let k = 6;
        let col = 2;
        let rv = rng.vec(n * k, 0.0, 1.0);
        let rand = upload(&[n, k], &rv);
        let (wf, wb) = cpu_pair(xdims, ydims, |img, i, j| {
            warp_taps(
                xdims,
                ydims,
                &rv[img * k + col..img * k + col + 4],
                &range,
                i,
                j,
            )
        });
        check_linear(
            &format!("warp case {ci}"),
            xdims,
            ydims,
            &|y, x| warp_forward(ctx(), y, x, &rand, col, &range).unwrap(),
            &|dx, dy, acc| warp_backward(ctx(), dx, dy, &rand, col, &range, acc).unwrap(),
            &wf,
            &wb,
            1e-4,
            &mut rng,
        );
    }
}

#[test]
fn identity_warp_is_exact() {
    let mut rng = Rng::new(19);
    let dims = [2, 3, 5, 6];
    let xv = rng.vec(180, -1.0, 1.0);
    let x = upload(&dims, &xv);
    let y = zeros(&dims);
    let rand = upload(&[2, 4], &rng.vec(8, 0.0, 1.0));
    let d = warp_forward(ctx(), &y, &x, &rand, 0, &WarpRange::default()).unwrap();
    run(&[&d]);
    assert_eq!(download(&y), xv);
}
