//! `cnnvis saliency` and `cnnvis cam` end to end on the demo models: one output image per
//! input, raw tensors with the documented names and shapes, maps equal to the library's, and
//! clear errors for an unknown layer, a non-spatial layer or a class out of range. Folder
//! mode: a corrupt file is named and skipped (exit 1), `--batch-size 1` gives the maps of one
//! batch, output folders are created, `--quiet` prints nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use cnnvis::model::preprocess::load_image;
use cnnvis::model::weights::Weights;
use cnnvis::vis::cam::Cam;
use cnnvis::vis::Target;
use cnnvis::{Model, Tensor};

use common::cli::{cnnvis, ok, root, s, temp_dir};

fn fails(out: &Output) -> String {
    common::cli::fails(out, 1)
}

#[test]
fn cam_writes_one_overlay_per_image_and_raw_maps_equal_to_the_library() {
    let dir = temp_dir("cam");
    let model_path = root().join("models/shapes.safetensors");
    let imgs = [
        root().join("tests/data/shapes/00.png"),
        root().join("tests/data/shapes/03.png"),
    ];
    let out = dir.join("cam.png");
    let raw = dir.join("cam.safetensors");
    let stdout = ok(&cnnvis(&[
        "cam",
        "--model",
        s(&model_path),
        "--image",
        s(&imgs[0]),
        "--image",
        s(&imgs[1]),
        "--class",
        "0",
        "--class",
        "3",
        "--out",
        s(&out),
        "--raw",
        s(&raw),
    ]));
    assert!(stdout.contains("layer: "), "{stdout}");
    for i in 0..2 {
        let img = image::open(dir.join(format!("cam_{i}.png"))).expect("output image");
        assert_eq!((img.width(), img.height()), (64, 64));
    }
    let w = Weights::open(&raw).expect("raw file");
    assert_eq!(w.info("logits").expect("logits").shape, vec![2, 6]);
    assert_eq!(w.info("target").expect("target").shape, vec![2]);
    let cam_shape = w.info("cam").expect("cam").shape;
    assert_eq!(cam_shape[0], 2);
    assert_eq!(w.info("cam_upsampled").expect("up").shape, vec![2, 64, 64]);

    // The same maps in-process.
    let ctx = common::ctx();
    let model = Model::open(ctx, &model_path).expect("model");
    let decoded: Vec<_> = imgs.iter().map(|p| load_image(p).expect("image")).collect();
    let (x, shape) = model.preprocess().batch(&decoded).expect("batch");
    let input = Tensor::from_slice(ctx, &shape, &x).expect("upload");
    let maps = Cam::grad_cam()
        .compute(ctx, &model, &input, &[Target::Class(0), Target::Class(3)])
        .expect("cam");
    let want = maps.cam.download(ctx).expect("download");
    let got = w.read_f32("cam").expect("cam");
    let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6 * peak.max(1e-6), "{a} vs {b}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn saliency_on_a_folder_writes_heatmaps_and_raw_gradients() {
    let dir = temp_dir("saliency");
    let model_path = root().join("models/digits.safetensors");
    let folder = dir.join("in");
    std::fs::create_dir_all(&folder).expect("dir");
    for f in ["00.png", "07.png", "13.png"] {
        std::fs::copy(root().join("tests/data/digits").join(f), folder.join(f)).expect("copy");
    }
    let out = dir.join("sal.png");
    let raw = dir.join("sal.safetensors");
    ok(&cnnvis(&[
        "saliency",
        "--model",
        s(&model_path),
        "--image",
        s(&folder),
        "--method",
        "guided",
        "--out",
        s(&out),
        "--raw",
        s(&raw),
    ]));
    for i in 0..3 {
        let img = image::open(dir.join(format!("sal_{i}.png"))).expect("output image");
        assert_eq!((img.width(), img.height()), (28, 28));
    }
    let w = Weights::open(&raw).expect("raw");
    assert_eq!(
        w.info("gradient").expect("gradient").shape,
        vec![3, 1, 28, 28]
    );
    assert_eq!(w.info("saliency").expect("saliency").shape, vec![3, 28, 28]);
    let sal = w.read_f32("saliency").expect("saliency");
    assert!(
        sal.iter().all(|v| *v >= 0.0),
        "absolute is the default modifier"
    );
    assert!(sal.iter().any(|v| *v > 0.0));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn map_commands_name_bad_layers_and_classes() {
    let dir = temp_dir("errors");
    let model = root().join("models/shapes.safetensors");
    let img = root().join("tests/data/shapes/00.png");
    let out = dir.join("x.png");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "cam",
            "--model",
            s(&model),
            "--image",
            s(&img),
            "--out",
            s(&out),
        ];
        a.extend_from_slice(extra);
        cnnvis(&a)
    };
    let e = fails(&base(&["--layer", "features.99"]));
    assert!(e.contains("features.99"), "{e}");
    let e = fails(&base(&["--layer", "avgpool"]));
    assert!(e.contains("avgpool"), "{e}");
    let e = fails(&base(&["--class", "6"]));
    assert!(e.contains("class 6 is out of range"), "{e}");
    let e = fails(&cnnvis(&[
        "saliency",
        "--model",
        s(&model),
        "--image",
        s(&img),
        "--out",
        s(&out),
        "--class",
        "1",
        "--class",
        "2",
    ]));
    assert!(e.contains("2 --class values for 1 images"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `dir/in` holding copies of two good images and `bad.png`, a file of garbage bytes.
fn folder_with_a_corrupt_image(dir: &Path, data: &str, good: [&str; 2]) -> PathBuf {
    let folder = dir.join("in");
    std::fs::create_dir_all(&folder).expect("dir");
    for f in good {
        std::fs::copy(root().join("tests/data").join(data).join(f), folder.join(f)).expect("copy");
    }
    std::fs::write(folder.join("bad.png"), b"\x89PNG garbage, not an image").expect("write");
    folder
}

/// The metadata `images` list of a raw file.
fn raw_images(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("raw file");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("metadata");
    let meta = meta.metadata().clone().expect("metadata present");
    serde_json::from_str(&meta["images"]).expect("images list")
}

#[test]
fn a_corrupt_file_in_a_folder_is_named_and_skipped_and_the_run_fails() {
    let dir = temp_dir("corrupt");
    let folder = folder_with_a_corrupt_image(&dir, "shapes", ["00.png", "03.png"]);
    let model_path = root().join("models/shapes.safetensors");
    // A folder --out that does not exist yet: one <stem>.png per image.
    let out_dir = dir.join("maps/");
    let raw = dir.join("raw/cam.safetensors");
    let out = cnnvis(&[
        "cam",
        "--model",
        s(&model_path),
        "--image",
        s(&folder),
        "--out",
        s(&out_dir),
        "--raw",
        s(&raw),
        "--batch-size",
        "2",
    ]);
    let stderr = fails(&out);
    assert!(stderr.contains("bad.png"), "{stderr}");
    assert!(stderr.contains("1 of 3 images"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for stem in ["00", "03"] {
        let img = image::open(out_dir.join(format!("{stem}.png"))).expect("output image");
        assert_eq!((img.width(), img.height()), (64, 64));
        assert!(stdout.contains(&format!("{stem}.png")), "{stdout}");
    }
    assert!(!out_dir.join("bad.png").exists());
    // The raw file holds the two good images, in order, across the two batches.
    let w = Weights::open(&raw).expect("raw");
    assert_eq!(w.info("cam_upsampled").expect("up").shape, vec![2, 64, 64]);
    assert_eq!(w.info("logits").expect("logits").shape, vec![2, 6]);
    let files = raw_images(&raw);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].ends_with("00.png") && files[1].ends_with("03.png"),
        "{files:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn batch_size_one_gives_the_maps_of_one_batch() {
    let dir = temp_dir("batches");
    let model_path = root().join("models/digits.safetensors");
    let folder = dir.join("in");
    std::fs::create_dir_all(&folder).expect("dir");
    for f in ["00.png", "07.png", "13.png"] {
        std::fs::copy(root().join("tests/data/digits").join(f), folder.join(f)).expect("copy");
    }
    for (cmd, tensors) in [
        ("saliency", &["logits", "gradient", "saliency"][..]),
        ("cam", &["logits", "cam", "cam_upsampled"][..]),
    ] {
        let run = |bs: &str| {
            let raw = dir.join(format!("{cmd}-{bs}.safetensors"));
            ok(&cnnvis(&[
                cmd,
                "--model",
                s(&model_path),
                "--image",
                s(&folder),
                "--out",
                s(&dir.join(format!("{cmd}-{bs}.png"))),
                "--raw",
                s(&raw),
                "--batch-size",
                bs,
            ]));
            Weights::open(&raw).expect("raw")
        };
        let (one, all) = (run("1"), run("16"));
        for name in tensors {
            assert_eq!(
                one.info(name).expect(name).shape,
                all.info(name).expect(name).shape,
                "{cmd} {name}"
            );
            let (a, b) = (
                one.read_f32(name).expect(name),
                all.read_f32(name).expect(name),
            );
            let peak = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-5 * peak, "{cmd} {name}: {x} vs {y}");
            }
        }
        assert_eq!(
            raw_images(&dir.join(format!("{cmd}-1.safetensors"))).len(),
            3
        );
        for i in 0..3 {
            assert!(dir.join(format!("{cmd}-1_{i}.png")).is_file());
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quiet_prints_nothing_and_nested_outputs_are_created() {
    let dir = temp_dir("quiet");
    let model_path = root().join("models/shapes.safetensors");
    let img = root().join("tests/data/shapes/01.png");
    let out_png = dir.join("x/y/z/sal.png");
    let raw = dir.join("p/q/sal.safetensors");
    for cmd in ["saliency", "cam"] {
        let out = cnnvis(&[
            cmd,
            "--model",
            s(&model_path),
            "--image",
            s(&img),
            "--out",
            s(&out_png),
            "--raw",
            s(&raw),
            "--quiet",
        ]);
        let stdout = ok(&out);
        assert!(stdout.is_empty(), "{cmd} --quiet printed: {stdout}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.is_empty(),
            "{cmd} --quiet printed on stderr: {stderr}"
        );
        assert!(out_png.is_file() && raw.is_file(), "{cmd}");
        std::fs::remove_dir_all(dir.join("x")).ok();
        std::fs::remove_dir_all(dir.join("p")).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}
