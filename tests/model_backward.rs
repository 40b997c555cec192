//! Backward schedules of whole models: input gradients against finite differences of the
//! GPU forward pass, gradients at intermediate layers composing into the full one, forward
//! and backward recorded into one submission, and batches of several images.

mod common;

use std::path::PathBuf;

use cnnvis::model::weights::Weights;
use cnnvis::ops::relu::ReluRule;
use cnnvis::{GpuContext, Model};
use common::{fd_check, weighted_sum, Rng};

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

/// Input gradient of `r · logits` from one forward+backward submission.
fn input_grad(
    ctx: &GpuContext,
    model: &Model,
    x: &[f32],
    shape: [usize; 4],
    r: &[f32],
) -> Vec<f32> {
    let fwd = model.forward_plan(ctx, shape).expect("forward plan");
    let bwd = model
        .backward_plan(ctx, &fwd, model.output_layer(), None, ReluRule::Standard)
        .expect("backward plan");
    fwd.input().write(ctx, x).expect("input");
    bwd.seed().write(ctx, r).expect("seed");
    let mut all = fwd.dispatches();
    all.extend(bwd.dispatches());
    ctx.run(&all).expect("run");
    bwd.input_grad()
        .expect("input grad")
        .download(ctx)
        .expect("download")
}

fn fd_input_gradient(name: &str) {
    let ctx = common::ctx();
    let (model, x, shape) = load(name);
    let mut rng = Rng::new(7);
    let fwd = model.forward_plan(ctx, shape).expect("plan");
    let classes = fwd.output().numel();
    let r = rng.vec(classes, -1.0, 1.0);
    let g = input_grad(ctx, &model, &x, shape, &r);
    assert!(g.iter().any(|v| *v != 0.0), "{name}: zero gradient");
    let loss = |xs: &[f32]| {
        fwd.input().write(ctx, xs).expect("input");
        fwd.run(ctx).expect("run");
        weighted_sum(&r, &fwd.output().download(ctx).expect("logits"))
    };
    fd_check(name, &x, &g, 3e-3, 1e-2, 24, &mut rng, loss);
}

#[test]
fn generic_graph_input_gradient_matches_finite_differences() {
    fd_input_gradient("generic");
}

#[test]
fn resnet18_input_gradient_matches_finite_differences() {
    fd_input_gradient("resnet18");
}

#[test]
fn vgg11_bn_input_gradient_matches_finite_differences() {
    fd_input_gradient("vgg11_bn");
}

/// d(r·logits)/d(input) equals the gradient at an inner layer pushed on to the input: the
/// backward pass to a layer and from a layer compose.
fn composes(name: &str, mid: &str) {
    let ctx = common::ctx();
    let (model, x, shape) = load(name);
    let mut rng = Rng::new(11);
    let fwd = model.forward_plan(ctx, shape).expect("plan");
    let r = rng.vec(fwd.output().numel(), -1.0, 1.0);
    let full = input_grad(ctx, &model, &x, shape, &r);

    fwd.input().write(ctx, &x).expect("input");
    let upper = model
        .backward_plan(
            ctx,
            &fwd,
            model.output_layer(),
            Some(mid),
            ReluRule::Standard,
        )
        .expect("upper");
    let lower = model
        .backward_plan(ctx, &fwd, mid, None, ReluRule::Standard)
        .expect("lower");
    upper.seed().write(ctx, &r).expect("seed");
    let mut all = fwd.dispatches();
    all.extend(upper.dispatches());
    ctx.run(&all).expect("run");
    let g_mid = upper
        .grad(mid)
        .expect("grad")
        .download(ctx)
        .expect("download");
    assert_eq!(g_mid.len(), fwd.activation(mid).expect("act").numel());
    assert!(g_mid.iter().any(|v| *v != 0.0));
    lower.seed().write(ctx, &g_mid).expect("seed");
    ctx.run(&lower.dispatches()).expect("run");
    let composed = lower
        .input_grad()
        .expect("grad")
        .download(ctx)
        .expect("download");
    let reference: Vec<f64> = full.iter().map(|&v| v as f64).collect();
    let peak = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    common::assert_close(
        &format!("{name} via {mid}"),
        &composed,
        &reference,
        1e-5 * peak,
        1e-4,
    );
}

#[test]
fn gradients_compose_through_a_residual_block() {
    composes("resnet18", "layer2");
    composes("resnet50", "layer3.1");
}

#[test]
fn gradients_compose_through_a_standalone_batchnorm() {
    composes("generic", "block.bn");
}

#[test]
fn batch_rows_are_independent() {
    let ctx = common::ctx();
    let (model, x, shape) = load("vgg11");
    assert_eq!(shape[0], 2);
    let mut rng = Rng::new(3);
    let fwd = model.forward_plan(ctx, shape).expect("plan");
    let classes = fwd.output().shape()[1];
    let r = rng.vec(2 * classes, -1.0, 1.0);
    let both = input_grad(ctx, &model, &x, shape, &r);
    let per = x.len() / 2;
    for row in 0..2 {
        let one = [1, shape[1], shape[2], shape[3]];
        let g = input_grad(
            ctx,
            &model,
            &x[row * per..(row + 1) * per],
            one,
            &r[row * classes..(row + 1) * classes],
        );
        let reference: Vec<f64> = g.iter().map(|&v| v as f64).collect();
        common::assert_close(
            &format!("row {row}"),
            &both[row * per..(row + 1) * per],
            &reference,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn guided_and_deconvnet_rules_change_the_map() {
    let ctx = common::ctx();
    let (model, x, shape) = load("vgg11");
    let fwd = model.forward_plan(ctx, shape).expect("plan");
    let r = vec![1.0f32; fwd.output().numel()];
    let mut maps = Vec::new();
    for rule in [ReluRule::Standard, ReluRule::Guided, ReluRule::Deconvnet] {
        let bwd = model
            .backward_plan(ctx, &fwd, "classifier.6", None, rule)
            .expect("plan");
        fwd.input().write(ctx, &x).expect("input");
        bwd.seed().write(ctx, &r).expect("seed");
        let mut all = fwd.dispatches();
        all.extend(bwd.dispatches());
        ctx.run(&all).expect("run");
        maps.push(
            bwd.input_grad()
                .expect("grad")
                .download(ctx)
                .expect("download"),
        );
    }
    assert_ne!(maps[0], maps[1]);
    assert_ne!(maps[0], maps[2]);
    assert_ne!(maps[1], maps[2]);
}

#[test]
fn backward_between_unconnected_layers_is_an_error() {
    let ctx = common::ctx();
    let (model, _, shape) = load("resnet18");
    let fwd = model.forward_plan(ctx, shape).expect("plan");
    // layer2 comes after layer1.0 but a gradient cannot flow from layer1.0 down to layer2.
    let err = model
        .backward_plan(ctx, &fwd, "layer1.0", Some("layer2"), ReluRule::Standard)
        .expect_err("no path");
    assert!(err.to_string().contains("does not feed"), "{err}");
    let err = model
        .backward_plan(ctx, &fwd, "layer9", None, ReluRule::Standard)
        .expect_err("unknown layer");
    let msg = err.to_string();
    assert!(msg.contains("layer9") && msg.contains("layer1"), "{msg}");
}

/// A ReLU between two convs runs inside their dispatches: forward, its output is the conv's
/// output clamped at 0, exactly, while the conv's own output stays readable (negative values
/// and all); backward, its gradient is never materialized (asking for it says why) unless the
/// pass ends there.
#[test]
fn relus_between_convs_run_inside_the_convs() {
    let ctx = common::ctx();
    let (model, x, shape) = load("vgg11_bn");
    let layers = model.layers();
    let at = (1..layers.len() - 1)
        .find(|&i| {
            layers[i].kind == "relu"
                && layers[i - 1].kind.starts_with("conv2d")
                && layers[i + 1].kind.starts_with("conv2d")
        })
        .expect("a ReLU between two convs");
    let (conv, relu) = (layers[at - 1].name.as_str(), layers[at].name.as_str());
    let fwd = model.forward_plan(ctx, shape).expect("plan");
    fwd.input().write(ctx, &x).expect("input");
    fwd.run(ctx).expect("run");
    let read = |name: &str| {
        fwd.activation(name)
            .expect("activation")
            .download(ctx)
            .expect("download")
    };
    let (pre, post) = (read(conv), read(relu));
    assert!(
        pre.iter().any(|v| *v < 0.0),
        "{conv} keeps its negative values"
    );
    let clamped: Vec<f32> = pre.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(post, clamped, "{relu} is {conv} clamped at 0");

    let out = model.output_layer();
    let bwd = model
        .backward_plan(ctx, &fwd, out, None, ReluRule::Standard)
        .expect("backward plan");
    let e = bwd.grad(relu).expect_err("folded ReLU");
    assert!(e.to_string().contains("not kept"), "{e}");
    assert!(
        bwd.grad(conv).is_ok(),
        "the ReLU's input keeps its gradient"
    );
    // Flatten and dropout (identity) pass their gradient on in the same buffer: no copies.
    let passing: Vec<usize> = (1..layers.len())
        .filter(|&i| matches!(layers[i].kind.as_str(), "flatten" | "identity"))
        .collect();
    assert!(passing.len() >= 2, "vgg11_bn has a flatten and dropouts");
    let seed = vec![1.0; fwd.output().numel()];
    bwd.seed().write(ctx, &seed).expect("seed");
    let mut all = fwd.dispatches();
    all.extend(bwd.dispatches());
    ctx.run(&all).expect("run");
    let entries: Vec<&str> = bwd.dispatches().iter().map(|d| d.kernel().entry).collect();
    assert!(!entries.contains(&"add_backward"), "{entries:?}");
    for i in passing {
        let (a, b) = (&layers[i].name, &layers[i - 1].name);
        let read = |name: &str| {
            bwd.grad(name)
                .expect("grad")
                .download(ctx)
                .expect("download")
        };
        let (ga, gb) = (read(a), read(b));
        assert!(ga.iter().any(|v| *v != 0.0), "{a}");
        assert_eq!(ga, gb, "{b} has {a}'s gradient");
    }
    let to_relu = model
        .backward_plan(ctx, &fwd, out, Some(relu), ReluRule::Standard)
        .expect("backward plan to the ReLU");
    assert!(
        to_relu.grad(relu).is_ok(),
        "a pass ending at the ReLU keeps it"
    );
}

/// A residual add hands its gradient on in the same buffer to each input it is the only
/// consumer of (the main branch, a downsampling shortcut): no copy runs for those, and their
/// gradients are the add's. A block's own input also feeds its first conv, so it still gets a
/// copy (that is where the two paths sum). The input gradient itself is checked against
/// finite differences above.
#[test]
fn residual_adds_pass_their_gradient_on_without_copies() {
    let ctx = common::ctx();
    let (model, x, shape) = load("resnet18");
    let fwd = model.forward_plan(ctx, shape).expect("plan");
    fwd.input().write(ctx, &x).expect("input");
    let bwd = model
        .backward_plan(ctx, &fwd, model.output_layer(), None, ReluRule::Standard)
        .expect("backward plan");
    let seed = Rng::new(5).vec(fwd.output().numel(), -1.0, 1.0);
    bwd.seed().write(ctx, &seed).expect("seed");
    let mut all = fwd.dispatches();
    all.extend(bwd.dispatches());
    ctx.run(&all).expect("run");
    let read = |name: &str| {
        bwd.grad(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .download(ctx)
            .expect("download")
    };
    let names = |l: &cnnvis::model::LayerInfo| {
        let mut all = vec![l.name.clone()];
        all.extend(l.aliases.iter().cloned());
        all
    };
    let layers = model.layers();
    let adds: Vec<String> = layers
        .iter()
        .filter(|l| l.kind == "add")
        .map(|l| l.name.clone())
        .collect();
    assert_eq!(adds.len(), 8, "resnet18 has 8 residual blocks");
    let mut downsampled = 0;
    for add in &adds {
        let block = add
            .strip_suffix(".add")
            .expect("blocks name their add BLOCK.add");
        let g = read(add);
        assert!(g.iter().any(|v| *v != 0.0), "{add}");
        assert_eq!(
            read(&format!("{block}.bn2")),
            g,
            "the main branch has {add}'s gradient"
        );
        let shortcut = format!("{block}.downsample.1");
        if layers.iter().any(|l| names(l).contains(&shortcut)) {
            downsampled += 1;
            assert_eq!(read(&shortcut), g, "the shortcut has {add}'s gradient");
        }
    }
    assert_eq!(
        downsampled, 3,
        "layer2-4 start with a downsampling shortcut"
    );
    let copies = bwd
        .dispatches()
        .iter()
        .filter(|d| d.kernel().entry.starts_with("add_backward"))
        .count();
    assert_eq!(copies, adds.len() - downsampled, "one copy per block input");
}
