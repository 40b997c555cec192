//! Forward passes of every model family against PyTorch: the fixtures in tests/fixtures were
//! written by tools/make_fixtures.py (reduced-width torchvision topologies with non-trivial
//! BatchNorm statistics, one f16 and one bf16 file, and a cnnvis.graph model using every op).
//! Logits must agree within 1e-4 × max|logit| and each recorded activation within 1e-4 × its
//! layer's max|activation|.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use cnnvis::model::arch;
use cnnvis::model::weights::Weights;
use cnnvis::Model;
use safetensors::tensor::TensorView;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Max |a - b| against `tol * max|b|`, with the worst index in the message.
fn assert_rel(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let peak = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
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
        err <= tol * peak,
        "{what}: max |err| {err:e} at {worst} (got {}, PyTorch {}) exceeds {tol:e} × max|ref| {peak:e}",
        got[worst],
        want[worst]
    );
}

fn check(name: &str) {
    let ctx = common::ctx();
    let model = Model::open(ctx, fixture(&format!("{name}.safetensors")))
        .unwrap_or_else(|e| panic!("{name}: load failed: {e}"));
    let io = Weights::open(fixture(&format!("{name}.io.safetensors"))).expect("io fixture");
    let shape = io.info("input").expect("input").shape;
    let input = io.read_f32("input").expect("input");
    let plan = model
        .forward_plan(ctx, [shape[0], shape[1], shape[2], shape[3]])
        .unwrap_or_else(|e| panic!("{name}: plan: {e}"));
    plan.input().write(ctx, &input).expect("write input");
    plan.run(ctx).expect("run");
    let logits = plan.output().download(ctx).expect("logits");
    assert_eq!(
        plan.output().shape(),
        io.info("logits").expect("logits").shape.as_slice()
    );
    assert_rel(
        &format!("{name} logits"),
        &logits,
        &io.read_f32("logits").expect("logits"),
        1e-4,
    );
    let layers = io
        .metadata()
        .and_then(|m| m.get("layers"))
        .expect("layers metadata")
        .clone();
    let mut checked = 0;
    for layer in layers.split(',').map(str::trim).filter(|l| !l.is_empty()) {
        let act = plan
            .activation(layer)
            .unwrap_or_else(|e| panic!("{name}: layer {layer}: {e}"));
        let want_shape = io.info(&format!("act.{layer}")).expect("act").shape;
        assert_eq!(act.shape(), want_shape.as_slice(), "{name}: {layer} shape");
        assert_rel(
            &format!("{name} {layer}"),
            &act.download(ctx).expect("download"),
            &io.read_f32(&format!("act.{layer}")).expect("act"),
            1e-4,
        );
        checked += 1;
    }
    assert!(checked >= 4, "{name}: only {checked} layers recorded");
}

#[test]
fn vgg11_matches_pytorch() {
    check("vgg11");
}

#[test]
fn vgg11_bn_matches_pytorch() {
    check("vgg11_bn");
}

#[test]
fn vgg16_matches_pytorch() {
    check("vgg16");
}

#[test]
fn alexnet_bf16_matches_pytorch() {
    check("alexnet");
}

#[test]
fn resnet18_f16_matches_pytorch() {
    check("resnet18");
}

#[test]
fn resnet50_matches_pytorch() {
    check("resnet50");
}

#[test]
fn generic_graph_matches_pytorch() {
    check("generic");
}

/// Rewrites a fixture without its `__metadata__`, so the architecture must come from names.
fn without_metadata(name: &str) -> Weights {
    let bytes = std::fs::read(fixture(&format!("{name}.safetensors"))).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let views: Vec<(String, TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let view = TensorView::new(v.dtype(), v.shape().to_vec(), v.data()).expect("view");
            (n, view)
        })
        .collect();
    let out = safetensors::serialize(views, None::<HashMap<String, String>>).expect("serialize");
    Weights::from_static(Box::leak(out.into_boxed_slice())).expect("reparse")
}

#[test]
fn architectures_are_detected_from_tensor_names() {
    for (fixture_name, arch_name) in [
        ("vgg11", "vgg11"),
        ("vgg11_bn", "vgg11_bn"),
        ("vgg16", "vgg16"),
        ("alexnet", "alexnet"),
        ("resnet18", "resnet18"),
        ("resnet50", "resnet50"),
    ] {
        let w = without_metadata(fixture_name);
        assert!(w
            .metadata()
            .is_none_or(|m| !m.contains_key(arch::ARCH_METADATA_KEY)));
        assert_eq!(
            arch::detect(&w).expect("detect"),
            arch_name,
            "{fixture_name}"
        );
    }
}

#[test]
fn layer_names_follow_torchvision_module_paths() {
    let ctx = common::ctx();
    let m = Model::open(ctx, fixture("resnet50.safetensors")).expect("load");
    for name in [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1.0.conv1",
        "layer1.0.bn1",
        "layer1.0.downsample.0",
        "layer1.0",
        "layer4.2.conv3",
        "layer4.2",
        "layer4",
        "avgpool",
        "fc",
    ] {
        assert!(m.has_layer(name), "resnet50 lacks {name}");
    }
    assert_eq!(m.output_layer(), "fc");
    assert_eq!(m.default_cam_layer(), Some("layer4"));
    let info = m.layers();
    let conv1 = info.iter().find(|l| l.name == "conv1").expect("conv1");
    assert_eq!(conv1.kind, "conv2d+batchnorm2d");
    assert_eq!(conv1.aliases, vec!["bn1".to_string()]);
    assert_eq!(conv1.output_shape, vec![1, 8, 112, 112]);

    let v = Model::open(ctx, fixture("vgg16.safetensors")).expect("load");
    assert!(v.has_layer("features.29") && v.has_layer("classifier.6"));
    assert_eq!(v.default_cam_layer(), Some("features.30"));
    // The parameter count equals PyTorch's sum of numel over parameters.
    assert_eq!(v.parameter_count(), 163_054);
}
