//! Activation maximization end to end: optimizer fidelity against a PyTorch re-implementation
//! (tests/fixtures/maximize.safetensors, made by tools/make_fixtures.py), class images of the
//! digits demo model, 16 filters in one batch, reproducibility, and the errors.

mod common;

use std::path::PathBuf;

use cnnvis::model::weights::Weights;
use cnnvis::vis::maximize::{Maximize, Optimizer};
use cnnvis::vis::optim::Adam;
use cnnvis::vis::Target;
use cnnvis::{Model, Tensor};

fn shapes() -> Model {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/shapes.safetensors");
    Model::open(common::ctx(), p).expect("shapes")
}

fn digits() -> Model {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/digits.safetensors");
    Model::open(common::ctx(), p).expect("digits")
}

#[test]
fn the_same_seed_gives_the_same_bits() {
    let ctx = common::ctx();
    let model = digits();
    let run = |seed| {
        Maximize::new()
            .iterations(10)
            .jitter(2)
            .seed(seed)
            .compute(ctx, &model, &[Target::Class(4), Target::Class(7)])
            .expect("maximize")
            .images
            .download(ctx)
            .expect("download")
    };
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}

/// Softmax probabilities `[N, K]` of the model on `[N, C, H, W]` model-input images.
fn probabilities(model: &Model, images: &cnnvis::Tensor) -> Vec<Vec<f64>> {
    let ctx = common::ctx();
    let x = images.download(ctx).expect("download");
    let s = images.shape();
    let logits = model
        .predict(ctx, &x, [s[0], s[1], s[2], s[3]])
        .expect("predict");
    logits
        .iter()
        .map(|l| cnnvis::vis::target::softmax(l))
        .collect()
}

#[test]
fn class_images_of_the_digits_model_are_classified_as_their_class() {
    let ctx = common::ctx();
    let model = digits();
    let targets: Vec<Target> = (0..10).map(Target::Class).collect();
    // keras-vis's defaults but without total variation: in pixel units its β = 2 penalty
    // outweighs a 28×28 model's logits and flattens every image (see `Maximize`'s docs).
    let out = Maximize::new()
        .total_variation(0.0, 2.0)
        .compute(ctx, &model, &targets)
        .expect("maximize");
    let probs = probabilities(&model, &out.images);
    for (k, p) in probs.iter().enumerate() {
        eprintln!("class {k}: p = {:.4}", p[k]);
    }
    for (k, p) in probs.iter().enumerate() {
        assert!(p[k] >= 0.9, "class {k}: probability {:.4} < 0.9", p[k]);
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs 5 iterations from the fixture's seed and compares every iteration's images (model
/// space) and losses with PyTorch's.
fn check_fidelity(prefix: &str, optimizer: Optimizer, targets: &[Target]) {
    let ctx = common::ctx();
    let model = Model::open(ctx, fixture("vgg11.safetensors")).expect("vgg11");
    let io = Weights::open(fixture("maximize.safetensors")).expect("maximize fixture");
    let seed = io.read_f32("seed").expect("seed");
    let want_images = io.read_f32(&format!("{prefix}.images")).expect("images");
    let want_losses = io.read_f32(&format!("{prefix}.losses")).expect("losses");
    let shape = [2, 3, 32, 32];
    let out = Maximize::new()
        .iterations(5)
        .optimizer(optimizer)
        .size(32, 32)
        .seed_input(Tensor::from_slice(ctx, &shape, &seed).expect("seed"))
        .record_every(1)
        .compute(ctx, &model, targets)
        .expect("maximize");
    assert_eq!(out.frames.len(), 5);
    let per = seed.len();
    let mut worst = 0.0f64;
    for (t, frame) in out.frames.iter().enumerate() {
        assert_eq!(frame.iteration, t + 1);
        let want = &want_images[t * per..(t + 1) * per];
        for (i, (&a, &b)) in frame.images.iter().zip(want).enumerate() {
            let err = (a as f64 - b as f64).abs();
            worst = worst.max(err);
            assert!(
                err <= 1e-4,
                "{prefix}: iteration {} element {i}: {a} vs PyTorch {b}",
                t + 1
            );
        }
    }
    for (i, (&a, &b)) in out.losses.iter().zip(&want_losses).enumerate() {
        let tol = 1e-4 * b.abs().max(1.0);
        assert!(
            (a - b).abs() <= tol,
            "{prefix}: loss {i} (iteration {}, image {}): {a} vs PyTorch {b}",
            i / 2 + 1,
            i % 2
        );
    }
    eprintln!("{prefix}: max |image - PyTorch| over 5 iterations = {worst:.2e}");
    // The images move: the comparison is not of five copies of the seed.
    let moved = out.frames[4]
        .images
        .iter()
        .zip(&seed)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved > 0.05, "{prefix}: images barely moved ({moved})");
}

#[test]
fn keras_rmsprop_matches_pytorch_for_five_iterations() {
    check_fidelity(
        "keras",
        Optimizer::KerasRmsprop(Default::default()),
        &[Target::Class(3), Target::Class(7)],
    );
}

#[test]
fn adam_matches_pytorch_for_five_iterations() {
    let filter = |channel| Target::Filter {
        layer: "features.7".into(),
        channel,
    };
    check_fidelity(
        "adam",
        Optimizer::Adam(Adam::default()),
        &[filter(2), filter(11)],
    );
}

/// Each image's mean of its own channel of `layer`.
fn filter_means(model: &Model, layer: &str, images: &[f32], shape: [usize; 4]) -> Vec<f64> {
    let ctx = common::ctx();
    let plan = model.forward_plan(ctx, shape).expect("plan");
    plan.input().write(ctx, images).expect("write");
    plan.run(ctx).expect("forward");
    let act = plan.activation(layer).expect("layer");
    let s = act.shape().to_vec();
    let v = act.download(ctx).expect("download");
    let plane = s[2] * s[3];
    (0..shape[0])
        .map(|n| {
            let off = (n * s[1] + n) * plane;
            v[off..off + plane].iter().map(|&x| x as f64).sum::<f64>() / plane as f64
        })
        .collect()
}

#[test]
fn sixteen_filters_in_one_batch_each_rise_tenfold_over_the_seed_noise() {
    let ctx = common::ctx();
    let model = shapes();
    // The last ReLU of the shapes model: most of its 64 channels are 0 on mid-grey noise, so
    // they only move with Lucid's redirected ReLU gradient.
    let layer = "features.14";
    let targets: Vec<Target> = (0..16)
        .map(|channel| Target::Filter {
            layer: layer.into(),
            channel,
        })
        .collect();
    let out = Maximize::new()
        .iterations(60)
        .total_variation(0.0, 2.0)
        .redirect_relu(true)
        .compute(ctx, &model, &targets)
        .expect("maximize");
    assert_eq!(out.shape, [16, 3, 64, 64]);
    let seed = out.seed_images.download(ctx).expect("seed");
    let best = out.images.download(ctx).expect("images");
    let before = filter_means(&model, layer, &seed, out.shape);
    let after = filter_means(&model, layer, &best, out.shape);
    for k in 0..16 {
        eprintln!("filter {k}: {:.4} -> {:.4}", before[k], after[k]);
    }
    for k in 0..16 {
        // A filter that is silent on the noise must still reach a clearly nonzero mean.
        assert!(
            after[k] >= 10.0 * before[k].max(0.01),
            "filter {k}: {:.4} on the seed noise, {:.4} after",
            before[k],
            after[k]
        );
    }
}

#[test]
fn dead_filters_stay_dead_without_the_redirected_relu_gradient() {
    // The reason for the rule: with keras-vis's plain gradient a channel that is zero over
    // the whole image has a zero gradient, and the image does not move towards it.
    let ctx = common::ctx();
    let model = shapes();
    let layer = "features.14";
    let targets: Vec<Target> = (0..8)
        .map(|channel| Target::Filter {
            layer: layer.into(),
            channel,
        })
        .collect();
    let run = |redirect| {
        Maximize::new()
            .iterations(3)
            .total_variation(0.0, 2.0)
            .lp_norm(0.0, 6.0)
            .redirect_relu(redirect)
            .compute(ctx, &model, &targets)
            .expect("maximize")
    };
    let moved = |out: &cnnvis::vis::maximize::Maximized| -> Vec<f32> {
        let seed = out.seed_images.download(ctx).expect("seed");
        let last = out.last.download(ctx).expect("last");
        let per = seed.len() / 8;
        (0..8)
            .map(|k| {
                seed[k * per..(k + 1) * per]
                    .iter()
                    .zip(&last[k * per..(k + 1) * per])
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
            })
            .collect()
    };
    let plain = run(false);
    let seed = plain.seed_images.download(ctx).expect("seed");
    let before = filter_means(&model, layer, &seed, plain.shape);
    let dead: Vec<usize> = (0..8).filter(|&k| before[k] == 0.0).collect();
    assert!(
        dead.len() >= 2,
        "expected dead channels on the noise: {before:?}"
    );
    let (still, redirected) = (moved(&plain), moved(&run(true)));
    for k in 0..8 {
        if dead.contains(&k) {
            assert_eq!(still[k], 0.0, "dead channel {k} moved its image");
            assert!(
                redirected[k] > 0.1,
                "channel {k}: redirected gradient did not move it"
            );
        } else {
            assert!(still[k] > 0.1, "live channel {k} did not move its image");
        }
    }
}

#[test]
fn bad_settings_are_errors() {
    let ctx = common::ctx();
    let model = digits();
    let err = |m: Maximize, t: &[Target]| m.compute(ctx, &model, t).unwrap_err().to_string();
    assert!(err(Maximize::new(), &[]).contains("no objectives"));
    assert!(err(Maximize::new().iterations(0), &[Target::Class(1)]).contains("iterations"));
    assert!(err(Maximize::new(), &[Target::Class(10)]).contains("out of range"));
    assert!(err(Maximize::new(), &[Target::TopClass]).contains("not supported"));
    let unknown = Target::Filter {
        layer: "features.99".into(),
        channel: 0,
    };
    assert!(err(Maximize::new(), &[unknown]).contains("features.99"));
    let wrong = Tensor::zeros(ctx, &[1, 3, 28, 28]).expect("zeros");
    assert!(err(Maximize::new().seed_input(wrong), &[Target::Class(1)]).contains("seed input"));
}
