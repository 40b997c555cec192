//! The committed demo models (models/*.safetensors, trained by tools/train_demo.py) load from
//! their embedded cnnvis.graph, reach their stated accuracy on the committed test images, and
//! give the logits PyTorch gave for the same PNGs.

mod common;

use std::path::PathBuf;

use cnnvis::model::preprocess::load_image;
use cnnvis::Model;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Loads `models/<name>.safetensors`, runs its 20 test images as one batch and returns the
/// fraction classified correctly, after checking logits against PyTorch's.
fn accuracy(name: &str) -> f64 {
    let ctx = common::ctx();
    let model = Model::open(ctx, root().join(format!("models/{name}.safetensors")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = root().join(format!("tests/data/{name}"));
    let labels: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("labels.json")).expect("labels"))
            .expect("json");
    let classes: Vec<&str> = labels["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| c.as_str().expect("class name"))
        .collect();
    assert_eq!(
        model.classes().expect("model has class names"),
        classes.as_slice()
    );
    let images = labels["images"].as_array().expect("images");
    assert!(images.len() >= 20, "{name}: {} test images", images.len());
    let decoded: Vec<_> = images
        .iter()
        .map(|im| load_image(dir.join(im["file"].as_str().expect("file"))).expect("image"))
        .collect();
    let (x, shape) = model.preprocess().batch(&decoded).expect("preprocess");
    let logits = model.predict(ctx, &x, shape).expect("predict");
    let mut correct = 0;
    for (i, (im, row)) in images.iter().zip(&logits).enumerate() {
        let want: Vec<f32> = labels["logits"][i]
            .as_array()
            .expect("logits")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect();
        let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in row.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-4 * peak,
                "{name} image {i}: logits {row:?} vs PyTorch {want:?}"
            );
        }
        let label = im["label"].as_u64().expect("label") as usize;
        if cnnvis::vis::target::argmax(row) == label {
            correct += 1;
        }
    }
    correct as f64 / images.len() as f64
}

#[test]
fn digits_model_reaches_98_percent() {
    let acc = accuracy("digits");
    assert!(acc >= 0.98, "digits accuracy {acc}");
}

#[test]
fn shapes_model_reaches_95_percent() {
    let acc = accuracy("shapes");
    assert!(acc >= 0.95, "shapes accuracy {acc}");
}

#[test]
fn shapes_boxes_lie_inside_the_images() {
    let dir = root().join("tests/data/shapes");
    let labels: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("labels.json")).expect("labels"))
            .expect("json");
    for im in labels["images"].as_array().expect("images") {
        let b: Vec<u64> = im["box"]
            .as_array()
            .expect("box")
            .iter()
            .map(|v| v.as_u64().expect("int"))
            .collect();
        let img = load_image(dir.join(im["file"].as_str().expect("file"))).expect("image");
        assert!(b[0] < b[2] && b[1] < b[3], "{b:?}");
        assert!(
            b[2] <= img.width() as u64 && b[3] <= img.height() as u64,
            "{b:?}"
        );
    }
}
