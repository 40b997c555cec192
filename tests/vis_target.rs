//! Targets: each kind's gradient seed agrees with finite differences of its own score, per
//! image targets in one batch, and bad targets give errors that name the problem.

mod common;

use std::path::PathBuf;

use cnnvis::model::weights::Weights;
use cnnvis::ops::relu::ReluRule;
use cnnvis::vis::{GradientPass, Objective, RegressionGoal, Target};
use cnnvis::Model;
use common::{fd_check, Rng};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> (Model, Vec<f32>, [usize; 4]) {
    let ctx = common::ctx();
    let model = Model::open(ctx, fixture(&format!("{name}.safetensors"))).expect("load");
    let io = Weights::open(fixture(&format!("{name}.io.safetensors"))).expect("io");
    let s = io.info("input").expect("input").shape;
    (
        model,
        io.read_f32("input").expect("input"),
        [s[0], s[1], s[2], s[3]],
    )
}

/// The input gradient of `Σ_images score(target_i)` matches finite differences of the scores.
fn check_targets(fixture_name: &str, targets: Vec<Target>) {
    let ctx = common::ctx();
    let (model, x, shape) = load(fixture_name);
    let objective = Objective::new(&model, &targets, shape[0]).expect("objective");
    let pass =
        GradientPass::new(ctx, &model, shape, objective, None, ReluRule::Standard).expect("pass");
    pass.run_on(ctx, &x).expect("run");
    let g = pass
        .backward
        .input_grad()
        .expect("input grad")
        .download(ctx)
        .expect("download");
    assert!(g.iter().any(|v| *v != 0.0), "{targets:?}: zero gradient");
    let mut rng = Rng::new(21);
    let loss = |xs: &[f32]| {
        pass.forward.input().write(ctx, xs).expect("write");
        pass.forward.run(ctx).expect("run");
        pass.scores(ctx)
            .expect("scores")
            .iter()
            .map(|&s| s as f64)
            .sum::<f64>()
    };
    fd_check(
        &format!("{targets:?}"),
        &x,
        &g,
        3e-3,
        1e-2,
        12,
        &mut rng,
        loss,
    );
}

#[test]
fn class_probability_and_top_class_seeds_match_their_scores() {
    check_targets("generic", vec![Target::Class(3)]);
    check_targets("generic", vec![Target::Probability(1), Target::TopClass]);
    check_targets("generic", vec![Target::Classes(vec![0, 2, 4])]);
    check_targets(
        "generic",
        vec![
            Target::Regression {
                output: 2,
                goal: RegressionGoal::Decrease,
            },
            Target::Class(0),
        ],
    );
}

#[test]
fn layer_seeds_match_their_scores() {
    let layer = || "features.4".to_string();
    check_targets(
        "vgg11",
        vec![Target::Filter {
            layer: layer(),
            channel: 5,
        }],
    );
    check_targets(
        "vgg11",
        vec![
            Target::Neuron {
                layer: layer(),
                channel: 2,
                y: 3,
                x: 1,
            },
            Target::Filters {
                layer: layer(),
                channels: vec![0, 7],
            },
        ],
    );
    check_targets("vgg11", vec![Target::LayerMean { layer: layer() }]);
}

#[test]
fn weighted_sums_match_their_scores_and_the_sum_of_their_parts() {
    let layer = || "features.4".to_string();
    let filter = |channel| Target::Filter {
        layer: layer(),
        channel,
    };
    let weighted = Target::Weighted(vec![
        (1.0, filter(5)),
        (-0.5, filter(2)),
        (
            2.0,
            Target::Weighted(vec![(0.25, Target::LayerMean { layer: layer() })]),
        ),
    ]);
    check_targets("vgg11", vec![weighted.clone(), filter(1)]);
    // The score of the sum is the weighted sum of the parts' scores.
    let ctx = common::ctx();
    let (model, x, shape) = load("vgg11");
    let scores = |t: Target| {
        let objective = Objective::new(&model, &[t], shape[0]).expect("objective");
        let pass = GradientPass::new(ctx, &model, shape, objective, None, ReluRule::Standard)
            .expect("pass");
        pass.forward.input().write(ctx, &x).expect("write");
        pass.forward.run(ctx).expect("run");
        pass.scores(ctx).expect("scores")
    };
    let (a, b, c) = (
        scores(filter(5)),
        scores(filter(2)),
        scores(Target::LayerMean { layer: layer() }),
    );
    let w = scores(weighted);
    for i in 0..shape[0] {
        let want = a[i] as f64 - 0.5 * b[i] as f64 + 0.5 * c[i] as f64;
        assert!(
            (w[i] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{i}: {} vs {want}",
            w[i]
        );
    }
    // Parts must read one layer and be linear.
    let bad = [
        Target::Weighted(vec![]),
        Target::Weighted(vec![(1.0, filter(0)), (1.0, Target::Class(1))]),
        Target::Weighted(vec![(1.0, Target::Probability(1))]),
        Target::Weighted(vec![(f32::NAN, filter(0))]),
        Target::Weighted(vec![(1.0, filter(99))]),
    ];
    for t in bad {
        assert!(
            Objective::new(&model, std::slice::from_ref(&t), 2).is_err(),
            "{t:?} accepted"
        );
    }
}

#[test]
fn top_class_is_each_images_argmax() {
    let ctx = common::ctx();
    let (model, x, shape) = load("resnet18");
    let logits = model.predict(ctx, &x, shape).expect("predict");
    let objective = Objective::new(&model, &[Target::TopClass], shape[0]).expect("objective");
    let pass =
        GradientPass::new(ctx, &model, shape, objective, None, ReluRule::Standard).expect("pass");
    pass.run_on(ctx, &x).expect("run");
    let idx = pass.target_indices(ctx).expect("indices");
    for (row, &i) in logits.iter().zip(&idx) {
        let best = cnnvis::vis::target::argmax(row);
        assert_eq!(i, best as i64);
    }
}

#[test]
fn bad_targets_are_named() {
    let (model, _, _) = load("vgg11");
    let err = |targets: Vec<Target>, n: usize| {
        Objective::new(&model, &targets, n)
            .expect_err("should fail")
            .to_string()
    };
    let e = err(vec![Target::Class(10)], 1);
    assert!(
        e.contains("class 10 is out of range") && e.contains("0..10"),
        "{e}"
    );
    let e = err(
        vec![Target::Filter {
            layer: "features.99".into(),
            channel: 0,
        }],
        1,
    );
    assert!(e.contains("features.99"), "{e}");
    let e = err(
        vec![Target::Filter {
            layer: "features.4".into(),
            channel: 64,
        }],
        1,
    );
    assert!(e.contains("channel 64"), "{e}");
    let e = err(vec![Target::Class(1), Target::Class(2)], 3);
    assert!(e.contains("2 targets for a batch of 3"), "{e}");
    let e = err(
        vec![
            Target::Class(1),
            Target::Filter {
                layer: "features.4".into(),
                channel: 0,
            },
        ],
        2,
    );
    assert!(e.contains("one batch needs one layer"), "{e}");
}
