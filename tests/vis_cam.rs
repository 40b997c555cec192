//! The CAM family: each kernel against a CPU f64 reference, every method end to end against
//! pytorch-grad-cam 1.5.7 (tests/fixtures/vis, made by tools/make_vis_fixtures.py), batches
//! against single runs, Score-CAM batch sizes against each other, aug_smooth against a CPU
//! composition of single runs, and the errors (unknown layer, non-spatial layer, class out
//! of range).
//!
//! Tolerances: low-res maps within 1e-3 × max|ref|, upsampled normalised maps within 1e-2
//! (absolute; they lie in [0, 1]).

mod common;

use std::path::PathBuf;

use cnnvis::model::weights::Weights;
use cnnvis::ops::relu::ReluRule;
use cnnvis::vis::cam::{
    cam_from_gradients, eigen_cam, upsample_normalize, Cam, CamMethod, GradWeighting,
};
use cnnvis::vis::{GradientPass, Objective, Target};
use cnnvis::{Model, Tensor};
use common::{assert_close, download, upload, Rng};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Max |got - want| ≤ tol · max|want| (or ≤ tol when `absolute`), with the worst index.
fn assert_rel(what: &str, got: &[f32], want: &[f32], tol: f64, absolute: bool) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let peak = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let bound = if absolute { tol } else { tol * peak };
    let (worst, err) = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .enumerate()
        .fold((0, 0.0f64), |acc, (i, e)| {
            if e > acc.1 || e.is_nan() {
                (i, e)
            } else {
                acc
            }
        });
    assert!(
        err <= bound,
        "{what}: max |err| {err:e} at {worst} (got {}, ref {}) exceeds {bound:e} (max|ref| {peak:e})",
        got[worst],
        want[worst]
    );
    if absolute || peak == 0.0 {
        err
    } else {
        err / peak
    }
}

// ---------- CPU references (f64) ----------

/// relu(Σ_k ...) for the gradient methods, as pytorch-grad-cam.
fn cpu_cam(act: &[f32], grad: &[f32], [n, k, h, w]: [usize; 4], how: GradWeighting) -> Vec<f64> {
    let hw = h * w;
    let mut out = vec![0.0; n * hw];
    for i in 0..n {
        let mut wts = vec![0.0f64; k];
        for (c, wt) in wts.iter_mut().enumerate() {
            let base = (i * k + c) * hw;
            let a = &act[base..base + hw];
            let g = &grad[base..base + hw];
            let sa: f64 = a.iter().map(|&v| v as f64).sum();
            *wt = match how {
                GradWeighting::GradCam => g.iter().map(|&v| v as f64).sum::<f64>() / hw as f64,
                GradWeighting::GradCamPlusPlus => g
                    .iter()
                    .map(|&gv| {
                        let g = gv as f64;
                        if g == 0.0 {
                            return 0.0;
                        }
                        let alpha = g * g / (2.0 * g * g + sa * g * g * g + 1e-6);
                        g.max(0.0) * alpha
                    })
                    .sum(),
                GradWeighting::XGradCam => g
                    .iter()
                    .zip(a)
                    .map(|(&g, &a)| g as f64 * a as f64 / (sa + 1e-7))
                    .sum(),
                _ => 0.0,
            };
        }
        for s in 0..hw {
            let mut sum = 0.0;
            for (c, wt) in wts.iter().enumerate() {
                let e = (i * k + c) * hw + s;
                let (a, g) = (act[e] as f64, grad[e] as f64);
                sum += match how {
                    GradWeighting::HiResCam => g * a,
                    GradWeighting::LayerCam => g.max(0.0) * a,
                    _ => wt * a,
                };
            }
            out[i * hw + s] = sum.max(0.0);
        }
    }
    out
}

/// scale_cam_image without resize: (x - min) / (1e-7 + (max - min)).
fn cpu_scale(v: &mut [f64]) {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    for x in v.iter_mut() {
        *x = (*x - lo) / (1e-7 + (hi - lo));
    }
}

/// cv2.resize INTER_LINEAR taps for one axis.
fn taps(d: usize, src: usize, dst: usize) -> (usize, usize, f64) {
    let f = (d as f64 + 0.5) * src as f64 / dst as f64 - 0.5;
    let mut i0 = f.floor() as i64;
    let mut t = f - f.floor();
    if i0 < 0 {
        i0 = 0;
        t = 0.0;
    }
    if i0 >= src as i64 - 1 {
        i0 = src as i64 - 1;
        t = 0.0;
    }
    let i0 = i0 as usize;
    (i0, (i0 + 1).min(src - 1), t)
}

/// pytorch-grad-cam's upsampled map: scale(relu(resize(scale(cam)))).
fn cpu_upsampled(
    cam: &[f64],
    n: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * oh * ow);
    for i in 0..n {
        let mut m = cam[i * h * w..(i + 1) * h * w].to_vec();
        cpu_scale(&mut m);
        let mut up = vec![0.0; oh * ow];
        for y in 0..oh {
            let (y0, y1, ty) = taps(y, h, oh);
            for x in 0..ow {
                let (x0, x1, tx) = taps(x, w, ow);
                let top = m[y0 * w + x0] * (1.0 - tx) + m[y0 * w + x1] * tx;
                let bot = m[y1 * w + x0] * (1.0 - tx) + m[y1 * w + x1] * tx;
                up[y * ow + x] = (top * (1.0 - ty) + bot * ty).max(0.0);
            }
        }
        cpu_scale(&mut up);
        out.extend(up);
    }
    out
}

/// Eigen-CAM projection in f64: power iteration to convergence on the Gram matrix of the
/// centred activations; sign such that Σ_k v_k ≥ 0. Returns the projection (before ReLU).
fn cpu_eigen(act: &[f32], [n, k, h, w]: [usize; 4]) -> Vec<f64> {
    let hw = h * w;
    let mut out = Vec::new();
    for i in 0..n {
        let x = |c: usize, s: usize| act[(i * k + c) * hw + s] as f64;
        let mu: Vec<f64> = (0..k)
            .map(|c| (0..hw).map(|s| x(c, s)).sum::<f64>() / hw as f64)
            .collect();
        let xc = |c: usize, s: usize| x(c, s) - mu[c];
        let g: Vec<f64> = (0..hw * hw)
            .map(|e| (0..k).map(|c| xc(c, e / hw) * xc(c, e % hw)).sum())
            .collect();
        let mut u: Vec<f64> = (0..hw)
            .map(|s| ((s * 7919 + 13) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let mut lam = 0.0;
        for _ in 0..20000 {
            let v: Vec<f64> = (0..hw)
                .map(|s| (0..hw).map(|t| g[s * hw + t] * u[t]).sum())
                .collect();
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            lam = norm;
            u = v.iter().map(|a| a / norm).collect();
        }
        let r: f64 = (0..hw)
            .map(|s| u[s] * (0..k).map(|c| xc(c, s)).sum::<f64>())
            .sum();
        let sign = if r < 0.0 { -1.0 } else { 1.0 };
        out.extend(u.iter().map(|v| sign * lam.sqrt() * v));
    }
    out
}

// ---------- kernels ----------

#[test]
fn gradient_weightings_match_cpu() {
    let ctx = common::ctx();
    let mut rng = Rng::new(3);
    let shape = [3, 7, 5, 6];
    let numel: usize = shape.iter().product();
    let act: Vec<f32> = rng
        .vec(numel, -0.3, 1.0)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect();
    let mut grad = rng.vec(numel, -1.0, 1.0);
    for g in grad.iter_mut().step_by(5) {
        *g = 0.0; // exercise Grad-CAM++'s where(g != 0)
    }
    let a = upload(&shape, &act);
    let g = upload(&shape, &grad);
    for how in [
        GradWeighting::GradCam,
        GradWeighting::GradCamPlusPlus,
        GradWeighting::XGradCam,
        GradWeighting::HiResCam,
        GradWeighting::LayerCam,
    ] {
        let cam = common::poisoned(&[3, 5, 6]);
        let weights = common::zeros(&[3, 7]);
        let d = cam_from_gradients(ctx, &cam, &weights, &a, &g, how).expect("dispatch");
        common::run(&d.iter().collect::<Vec<_>>());
        let want = cpu_cam(&act, &grad, shape, how);
        let peak = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(
            &format!("{how:?}"),
            &download(&cam),
            &want,
            1e-5 * peak,
            1e-5,
        );
    }
}

#[test]
fn upsampling_and_normalisation_match_cv2_semantics() {
    let ctx = common::ctx();
    let mut rng = Rng::new(5);
    for (n, h, w, oh, ow) in [
        (2, 4, 4, 32, 32),
        (3, 6, 5, 21, 19),
        (1, 7, 3, 7, 3),
        (2, 3, 9, 10, 4),
    ] {
        let cam: Vec<f32> = rng.vec(n * h * w, 0.0, 3.0);
        let maps = upload(&[n, h, w], &cam);
        let up = common::poisoned(&[n, oh, ow]);
        let s1 = common::zeros(&[n, 2]);
        let s2 = common::zeros(&[n, 2]);
        let d = upsample_normalize(ctx, &up, &maps, &s1, &s2).expect("dispatch");
        common::run(&d.iter().collect::<Vec<_>>());
        let cam64: Vec<f64> = cam.iter().map(|&v| v as f64).collect();
        let want = cpu_upsampled(&cam64, n, (h, w), (oh, ow));
        assert_close(
            &format!("upsample {h}x{w} -> {oh}x{ow}"),
            &download(&up),
            &want,
            1e-5,
            0.0,
        );
    }
}

#[test]
fn eigen_cam_power_iteration_matches_cpu() {
    let ctx = common::ctx();
    let mut rng = Rng::new(8);
    for shape in [[2usize, 6, 3, 4], [1, 20, 5, 5], [2, 3, 2, 2]] {
        let [n, k, h, w] = shape;
        let numel = n * k * h * w;
        // A dominant rank-one pattern plus noise keeps the eigen-gap clear.
        let pat: Vec<f32> = rng.vec(h * w, 0.0, 1.0);
        let load: Vec<f32> = rng.vec(n * k, 0.2, 1.0);
        let mut act = rng.vec(numel, 0.0, 0.3);
        for (e, a) in act.iter_mut().enumerate() {
            *a += 2.0 * load[e / (h * w)] * pat[e % (h * w)];
        }
        let a = upload(&shape, &act);
        let cam = common::poisoned(&[n, h, w]);
        let d = eigen_cam(
            ctx,
            &cam,
            &a,
            &common::zeros(&[n, k]),
            &common::zeros(&[n, h * w, h * w]),
            &common::zeros(&[n, 2, h * w]),
            2000,
        )
        .expect("dispatch");
        common::run(&d.iter().collect::<Vec<_>>());
        let proj = cpu_eigen(&act, shape);
        let want: Vec<f64> = proj.iter().map(|v| v.max(0.0)).collect();
        let peak = proj.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(
            &format!("eigen {shape:?}"),
            &download(&cam),
            &want,
            1e-4 * peak,
            0.0,
        );
    }
}

// ---------- end to end against pytorch-grad-cam ----------

struct VisFixture {
    model: Model,
    io: Weights,
    input: Tensor,
    shape: [usize; 4],
    targets: Vec<Target>,
}

fn load(name: &str) -> VisFixture {
    let ctx = common::ctx();
    let model = Model::open(ctx, fixture(&format!("{name}.safetensors"))).expect("model");
    let io = Weights::open(fixture(&format!("vis/{name}.safetensors"))).expect("vis fixture");
    let s = io.info("input").expect("input").shape;
    let shape = [s[0], s[1], s[2], s[3]];
    let input = upload(&shape, &io.read_f32("input").expect("input"));
    let targets = io
        .read_f32("target")
        .expect("target")
        .iter()
        .map(|&t| Target::Class(t as usize))
        .collect();
    VisFixture {
        model,
        io,
        input,
        shape,
        targets,
    }
}

const METHODS: [(CamMethod, &str); 7] = [
    (CamMethod::GradCam, "gradcam"),
    (CamMethod::GradCamPlusPlus, "gradcam++"),
    (CamMethod::HiResCam, "hirescam"),
    (CamMethod::XGradCam, "xgradcam"),
    (CamMethod::LayerCam, "layercam"),
    (CamMethod::ScoreCam, "scorecam"),
    (CamMethod::EigenCam, "eigencam"),
];

/// Every method at the fixture's layer `prefix` (`cam` or `cam2`).
fn check_layer(name: &str, prefix: &str) {
    let ctx = common::ctx();
    let f = load(name);
    let meta = f.io.metadata().expect("metadata").clone();
    let layer = meta[&format!("{prefix}_layer")].clone();
    let act_shape =
        f.io.info(&format!("{prefix}.activations"))
            .expect("act")
            .shape;
    let spatial = act_shape[2] * act_shape[3] > 1;
    if !spatial {
        let err = Cam::grad_cam()
            .layer(layer.clone())
            .compute(ctx, &f.model, &f.input, &f.targets)
            .expect_err("a 1x1 layer must be refused");
        let msg = err.to_string();
        assert!(msg.contains(&layer) && msg.contains("not spatial"), "{msg}");
        return;
    }
    // The activations and gradients the methods share.
    let objective = Objective::new(&f.model, &f.targets, f.shape[0]).expect("objective");
    let pass = GradientPass::new(
        ctx,
        &f.model,
        f.shape,
        objective,
        Some(&layer),
        ReluRule::Standard,
    )
    .expect("pass");
    pass.run_on(ctx, &f.io.read_f32("input").expect("input"))
        .expect("run");
    let act = download(pass.forward.activation(&layer).expect("act"));
    let grad = download(pass.backward.grad(&layer).expect("grad"));
    let e_act = assert_rel(
        &format!("{name} {layer} activations"),
        &act,
        &f.io
            .read_f32(&format!("{prefix}.activations"))
            .expect("act"),
        1e-4,
        false,
    );
    let e_grad = assert_rel(
        &format!("{name} {layer} gradients"),
        &grad,
        &f.io.read_f32(&format!("{prefix}.gradients")).expect("grad"),
        1e-3,
        false,
    );
    println!("{name} {layer}: activations {e_act:.2e}, gradients {e_grad:.2e} (× max|ref|)");
    let (n, h, w) = (act_shape[0], act_shape[2], act_shape[3]);
    for (method, key) in METHODS {
        let maps = Cam::new(method)
            .layer(layer.clone())
            .compute(ctx, &f.model, &f.input, &f.targets)
            .unwrap_or_else(|e| panic!("{name} {layer} {key}: {e}"));
        assert_eq!(maps.cam.shape(), &[n, h, w]);
        assert_eq!(maps.cam_upsampled.shape(), &[n, f.shape[2], f.shape[3]]);
        let want_t: Vec<i64> =
            f.io.read_f32("target")
                .expect("target")
                .iter()
                .map(|&t| t as i64)
                .collect();
        assert_eq!(maps.targets, want_t);
        let cam = download(&maps.cam);
        let up = download(&maps.cam_upsampled);
        if method == CamMethod::EigenCam {
            // numpy's SVD sign is arbitrary; ours is fixed (Σ_k v_k ≥ 0). Compare with the
            // stored projection under our sign, and the upsampled map with the CPU pipeline.
            let proj =
                f.io.read_f32(&format!("{prefix}.eigencam.projection"))
                    .expect("projection");
            let ours = cpu_eigen(&act, [n, act_shape[1], h, w]);
            let hw = h * w;
            let mut want = Vec::new();
            for i in 0..n {
                let p = &proj[i * hw..(i + 1) * hw];
                let o = &ours[i * hw..(i + 1) * hw];
                let dot: f64 = p.iter().zip(o).map(|(&a, &b)| a as f64 * b).sum();
                let s = if dot < 0.0 { -1.0 } else { 1.0 };
                want.extend(p.iter().map(|&v| (s * v).max(0.0)));
            }
            let e_low = assert_rel(
                &format!("{name} {layer} eigencam"),
                &cam,
                &want,
                1e-3,
                false,
            );
            let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
            let want_up: Vec<f32> = cpu_upsampled(&want64, n, (h, w), (f.shape[2], f.shape[3]))
                .iter()
                .map(|&v| v as f32)
                .collect();
            let e_up = assert_rel(
                &format!("{name} {layer} eigencam up"),
                &up,
                &want_up,
                1e-2,
                true,
            );
            println!("{name} {layer} eigencam: low-res {e_low:.2e} × max|ref| (up to sign), upsampled {e_up:.2e}");
            continue;
        }
        let e_low = assert_rel(
            &format!("{name} {layer} {key}"),
            &cam,
            &f.io.read_f32(&format!("{prefix}.{key}")).expect("cam"),
            1e-3,
            false,
        );
        let e_up = assert_rel(
            &format!("{name} {layer} {key} upsampled"),
            &up,
            &f.io
                .read_f32(&format!("{prefix}.{key}.upsampled"))
                .expect("up"),
            1e-2,
            true,
        );
        println!("{name} {layer} {key}: low-res {e_low:.2e} × max|ref|, upsampled {e_up:.2e}");
    }
    let guided_key = if prefix == "cam" {
        "guided_gradcam".to_string()
    } else {
        format!("{prefix}.guided_gradcam")
    };
    if f.io.info(&guided_key).is_some() {
        let maps = Cam::guided_grad_cam()
            .layer(layer.clone())
            .compute(ctx, &f.model, &f.input, &f.targets)
            .expect("guided");
        let g = download(maps.guided.as_ref().expect("guided map"));
        let e = assert_rel(
            &format!("{name} {layer} guided"),
            &g,
            &f.io.read_f32(&guided_key).expect("guided"),
            1e-2,
            false,
        );
        println!("{name} {layer} guided-gradcam: {e:.2e} × max|ref|");
    }
}

#[test]
fn generic_matches_pytorch_grad_cam() {
    check_layer("generic", "cam");
    check_layer("generic", "cam2");
}

#[test]
fn resnet18_matches_pytorch_grad_cam() {
    check_layer("resnet18", "cam");
    check_layer("resnet18", "cam2");
}

#[test]
fn vgg11_matches_pytorch_grad_cam() {
    check_layer("vgg11", "cam");
    check_layer("vgg11", "cam2");
}

// ---------- batches, batch sizes, aug_smooth ----------

/// 8 images: the fixture's two and six perturbed copies.
fn batch_of_8(f: &VisFixture) -> (Vec<f32>, [usize; 4]) {
    let x = f.io.read_f32("input").expect("input");
    let per = x.len() / f.shape[0];
    let mut rng = Rng::new(77);
    let mut out = Vec::with_capacity(8 * per);
    for i in 0..8 {
        let src = &x[(i % f.shape[0]) * per..(i % f.shape[0] + 1) * per];
        out.extend(
            src.iter()
                .map(|&v| if i < 2 { v } else { v + rng.uniform(-0.5, 0.5) }),
        );
    }
    (out, [8, f.shape[1], f.shape[2], f.shape[3]])
}

#[test]
fn batch_of_8_with_different_targets_equals_single_runs() {
    let ctx = common::ctx();
    let f = load("resnet18");
    let (x, shape) = batch_of_8(&f);
    let per = x.len() / 8;
    let targets: Vec<Target> = (0..8).map(|i| Target::Class((i * 3) % 10)).collect();
    let input = upload(&shape, &x);
    for cam in [
        Cam::grad_cam().layer("layer2"),
        Cam::grad_cam_plus_plus().layer("layer2"),
        Cam::layer_cam().layer("layer2"),
        Cam::score_cam().layer("layer2").batch_size(Some(5)),
        Cam::eigen_cam().layer("layer2"),
        Cam::guided_grad_cam().layer("layer3"),
    ] {
        let all = cam.compute(ctx, &f.model, &input, &targets).expect("batch");
        let (bc, bu) = (download(&all.cam), download(&all.cam_upsampled));
        let bg = all.guided.as_ref().map(download);
        let (lo, up) = (bc.len() / 8, bu.len() / 8);
        for i in 0..8 {
            let one = upload(
                &[1, shape[1], shape[2], shape[3]],
                &x[i * per..(i + 1) * per],
            );
            let s = cam
                .compute(ctx, &f.model, &one, &targets[i..i + 1])
                .expect("single");
            let what = format!("{} image {i}", cam.method());
            assert_rel(
                &what,
                &bc[i * lo..(i + 1) * lo],
                &download(&s.cam),
                1e-5,
                false,
            );
            assert_rel(
                &what,
                &bu[i * up..(i + 1) * up],
                &download(&s.cam_upsampled),
                1e-5,
                true,
            );
            if let Some(bg) = &bg {
                let g = download(s.guided.as_ref().expect("guided"));
                assert_rel(&what, &bg[i * per..(i + 1) * per], &g, 1e-5, false);
            }
            assert_eq!(all.targets[i], s.targets[0]);
        }
    }
}

#[test]
fn score_cam_does_not_depend_on_its_batch_size() {
    let ctx = common::ctx();
    let f = load("generic");
    let base = Cam::score_cam().layer("block.relu");
    let auto = base
        .clone()
        .compute(ctx, &f.model, &f.input, &f.targets)
        .expect("auto");
    let fitted = base
        .score_cam_batch_size(ctx, &f.model, f.shape)
        .expect("size");
    assert!(fitted >= 1);
    println!("generic block.relu: fitted Score-CAM batch {fitted}");
    for b in [1, 3, 16, 1000] {
        let m = base
            .clone()
            .batch_size(Some(b))
            .compute(ctx, &f.model, &f.input, &f.targets)
            .expect("score");
        assert_rel(
            &format!("batch {b}"),
            &download(&m.cam),
            &download(&auto.cam),
            1e-5,
            false,
        );
    }
}

#[test]
fn aug_smooth_is_the_mean_of_six_deaugmented_runs() {
    let ctx = common::ctx();
    let f = load("generic");
    let x = f.io.read_f32("input").expect("input");
    let [n, c, hh, ww] = f.shape;
    for method in [CamMethod::GradCam, CamMethod::ScoreCam] {
        let cam = Cam::new(method).layer("block.relu");
        let smooth = cam
            .clone()
            .aug_smooth(true)
            .compute(ctx, &f.model, &f.input, &f.targets)
            .expect("aug");
        let got = download(&smooth.cam_upsampled);
        let mut want = vec![0.0f64; n * hh * ww];
        for flip in [false, true] {
            for factor in [1.0f32, 0.9, 1.1] {
                let mut xt = vec![0.0f32; x.len()];
                for i in 0..n * c * hh {
                    for xx in 0..ww {
                        let src = if flip { ww - 1 - xx } else { xx };
                        xt[i * ww + xx] = factor * x[i * ww + src];
                    }
                }
                let m = cam
                    .compute(ctx, &f.model, &upload(&f.shape, &xt), &f.targets)
                    .expect("single");
                let u = download(&m.cam_upsampled);
                for r in 0..n * hh {
                    for xx in 0..ww {
                        let src = if flip { ww - 1 - xx } else { xx };
                        want[r * ww + xx] += u[r * ww + src] as f64 / 6.0;
                    }
                }
            }
        }
        assert_close(&format!("{method} aug_smooth"), &got, &want, 1e-5, 0.0);
    }
}

#[test]
fn top_class_targets_resolve_per_image() {
    let ctx = common::ctx();
    let f = load("generic");
    for cam in [
        Cam::grad_cam().layer("block.relu"),
        Cam::score_cam().layer("block.relu"),
    ] {
        let top = cam
            .compute(ctx, &f.model, &f.input, &[Target::TopClass])
            .expect("top");
        let logits = f.io.read_f32("logits").expect("logits");
        let k = logits.len() / f.shape[0];
        let explicit: Vec<Target> = (0..f.shape[0])
            .map(|i| Target::Class(cnnvis::vis::target::argmax(&logits[i * k..(i + 1) * k])))
            .collect();
        let want = cam
            .compute(ctx, &f.model, &f.input, &explicit)
            .expect("explicit");
        assert_eq!(top.targets, want.targets);
        assert_rel(
            &format!("{} top class", cam.method()),
            &download(&top.cam),
            &download(&want.cam),
            1e-6,
            false,
        );
        assert_eq!(top.logits.len(), logits.len());
    }
}

// ---------- errors ----------

#[test]
fn errors_name_the_problem() {
    let ctx = common::ctx();
    let f = load("resnet18");
    let err = Cam::grad_cam()
        .layer("layer9")
        .compute(ctx, &f.model, &f.input, &f.targets)
        .expect_err("unknown layer");
    assert!(err.to_string().contains("layer9"), "{err}");
    for layer in ["avgpool", "fc", "layer4"] {
        let err = Cam::grad_cam()
            .layer(layer)
            .compute(ctx, &f.model, &f.input, &f.targets)
            .expect_err("non-spatial layer");
        let msg = err.to_string();
        assert!(msg.contains(layer) && msg.contains("not spatial"), "{msg}");
    }
    let err = Cam::grad_cam()
        .layer("layer2")
        .compute(ctx, &f.model, &f.input, &[Target::Class(10)])
        .expect_err("class out of range");
    assert!(
        err.to_string().contains("class 10 is out of range"),
        "{err}"
    );
    let err = Cam::score_cam()
        .layer("layer2")
        .compute(ctx, &f.model, &f.input, &[Target::Class(99)])
        .expect_err("class out of range");
    assert!(err.to_string().contains("out of range"), "{err}");
    assert!("gradcam++".parse::<CamMethod>().is_ok());
    assert!("guided-gradcam".parse::<CamMethod>().is_ok());
    assert!("foo".parse::<CamMethod>().is_err());
}
