//! `cnnvis maximize` end to end on the demo models: the labelled grid, the animated GIF and
//! the raw tensors with the documented names and shapes, images equal to the library's for
//! the same settings, the filter, layer-mean and Lucid-preset paths, and clear errors (exit 1
//! from cnnvis, 2 from argument parsing) for an unknown layer, out-of-range classes and
//! filters, bad ranges and unwritable outputs — before any file is written; missing output
//! folders are created, and `--quiet` prints nothing.

mod common;

use std::io::BufReader;
use std::path::Path;

use cnnvis::model::weights::Weights;
use cnnvis::vis::maximize::Maximize;
use cnnvis::vis::Target;
use cnnvis::Model;
use image::AnimationDecoder;

use common::cli::{cnnvis, fails, ok, root, s, temp_dir};

/// The `target` tensor (i64) of a raw file.
fn read_targets(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).expect("raw file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let t = st.tensor("target").expect("target");
    assert_eq!(t.dtype(), safetensors::Dtype::I64);
    t.data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn classes_write_grid_gif_and_raw_equal_to_the_library() {
    let dir = temp_dir("classes");
    let model_path = root().join("models/digits.safetensors");
    let (grid, raw, gif) = (
        dir.join("grid.png"),
        dir.join("raw.safetensors"),
        dir.join("g.gif"),
    );
    let stdout = ok(&cnnvis(&[
        "maximize",
        "--model",
        s(&model_path),
        "--class",
        "0,1",
        "--iterations",
        "20",
        "--seed",
        "3",
        "--out",
        s(&grid),
        "--raw",
        s(&raw),
        "--gif",
        s(&gif),
    ]));
    assert!(
        stdout.contains("2 images of 1x28x28, 20 iterations"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("p = ").count(), 2, "{stdout}");

    // Two 28x28 tiles enlarged 4x (to at least 96 px), side by side, 5 px apart, with a
    // 9 px label strip.
    let img = image::open(&grid).expect("grid");
    assert_eq!((img.width(), img.height()), (2 * 112 + 5, 112 + 9));

    // 20 iterations: a frame after each, then the best images.
    let file = BufReader::new(std::fs::File::open(&gif).expect("gif"));
    let frames = image::codecs::gif::GifDecoder::new(file)
        .expect("gif decoder")
        .into_frames()
        .collect_frames()
        .expect("frames");
    assert_eq!(frames.len(), 21);
    assert_eq!(frames[0].buffer().width(), img.width());
    assert!(frames[0].buffer().height() > img.height(), "caption strip");

    let w = Weights::open(&raw).expect("raw");
    assert_eq!(w.info("images").expect("images").shape, vec![2, 1, 28, 28]);
    assert_eq!(w.info("losses").expect("losses").shape, vec![20, 2]);
    assert_eq!(w.info("objective").expect("objective").shape, vec![2]);
    assert_eq!(read_targets(&raw), vec![0, 1]);
    let losses = w.read_f32("losses").expect("losses");
    assert!(losses.iter().all(|v| v.is_finite()));
    assert!(w
        .read_f32("objective")
        .expect("objective")
        .iter()
        .all(|v| v.is_finite()));
    let meta = w.metadata().expect("metadata");
    assert_eq!(meta.get("layer").map(String::as_str), Some("classifier.1"));

    // The same run in-process gives the same bits (same adapter, same seed).
    let ctx = common::ctx();
    let model = Model::open(ctx, &model_path).expect("model");
    let m = Maximize::new()
        .iterations(20)
        .seed(3)
        .compute(ctx, &model, &[Target::Class(0), Target::Class(1)])
        .expect("maximize");
    let want = m.images.download(ctx).expect("download");
    let got = w.read_f32("images").expect("images");
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "CLI and library images differ"
    );
    assert_eq!(losses, m.losses);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn filters_and_layer_mean() {
    let dir = temp_dir("filters");
    let model_path = root().join("models/digits.safetensors");
    let (grid, raw) = (dir.join("f.png"), dir.join("f.safetensors"));
    let stdout = ok(&cnnvis(&[
        "maximize",
        "--model",
        s(&model_path),
        "--layer",
        "features.4",
        "--filters",
        "0..4",
        "--iterations",
        "5",
        "--out",
        s(&grid),
        "--raw",
        s(&raw),
    ]));
    for f in 0..4 {
        assert!(stdout.contains(&format!("features.4:{f} ")), "{stdout}");
    }
    let img = image::open(&grid).expect("grid");
    // Four tiles: two columns, two rows.
    assert_eq!(
        (img.width(), img.height()),
        (2 * 112 + 5, 2 * (112 + 9) + 5)
    );
    let w = Weights::open(&raw).expect("raw");
    assert_eq!(w.info("images").expect("images").shape, vec![4, 1, 28, 28]);
    assert_eq!(w.info("losses").expect("losses").shape, vec![5, 4]);
    assert_eq!(read_targets(&raw), vec![0, 1, 2, 3]);

    // Adam in pixel space, a zoom of 1, a JPEG grid, and the layer's mean without --filters.
    let grid2 = dir.join("m.jpg");
    let raw2 = dir.join("m.safetensors");
    ok(&cnnvis(&[
        "maximize",
        "--model",
        s(&model_path),
        "--layer",
        "features.8",
        "--iterations",
        "3",
        "--optimizer",
        "adam",
        "--lr",
        "0.1",
        "--zoom",
        "1",
        "--out",
        s(&grid2),
        "--raw",
        s(&raw2),
    ]));
    let img = image::open(&grid2).expect("grid");
    assert_eq!((img.width(), img.height()), (28, 28 + 9));
    let w = Weights::open(&raw2).expect("raw");
    assert_eq!(w.info("images").expect("images").shape, vec![1, 1, 28, 28]);
    assert_eq!(read_targets(&raw2), vec![-1]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn lucid_preset_on_rgb_with_options() {
    let dir = temp_dir("lucid");
    let model_path = root().join("models/shapes.safetensors");
    let (grid, raw) = (dir.join("l.png"), dir.join("l.safetensors"));
    let stdout = ok(&cnnvis(&[
        "maximize",
        "--model",
        s(&model_path),
        "--class",
        "3",
        "--class",
        "5",
        "--preset",
        "lucid",
        "--iterations",
        "4",
        "--lr",
        "0.02",
        "--size",
        "40x48",
        "--jitter",
        "2",
        "--rotate",
        "3",
        "--scale",
        "0.9,1.1",
        "--pad",
        "4",
        "--tv",
        "0.5",
        "--out",
        s(&grid),
        "--raw",
        s(&raw),
    ]));
    assert!(stdout.contains("star"), "{stdout}");
    assert!(stdout.contains("ring"), "{stdout}");
    let w = Weights::open(&raw).expect("raw");
    assert_eq!(w.info("images").expect("images").shape, vec![2, 3, 40, 48]);
    assert_eq!(w.info("losses").expect("losses").shape, vec![4, 2]);
    assert!(w
        .read_f32("images")
        .expect("images")
        .iter()
        .all(|v| v.is_finite()));
    // 40x48 tiles enlarged 3x (the shorter side to at least 96).
    let img = image::open(&grid).expect("grid");
    assert_eq!((img.width(), img.height()), (2 * 144 + 5, 120 + 9));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_targets_ranges_and_outputs_are_explained() {
    let dir = temp_dir("errors");
    let model = root().join("models/digits.safetensors");
    let out = dir.join("x.png");
    let run = |extra: &[&str]| {
        let mut a = vec!["maximize", "--model", s(&model), "--iterations", "2"];
        a.extend_from_slice(extra);
        cnnvis(&a)
    };
    let with_out = |extra: &[&str]| {
        let mut a = extra.to_vec();
        a.extend_from_slice(&["--out", s(&out)]);
        run(&a)
    };
    // Rejected by the library, before any optimization.
    let e = fails(
        &with_out(&["--layer", "features.99", "--filters", "0..2"]),
        1,
    );
    assert!(e.contains("features.99"), "{e}");
    let e = fails(&with_out(&["--class", "10"]), 1);
    assert!(e.contains("class 10 is out of range"), "{e}");
    let e = fails(
        &with_out(&["--layer", "features.0", "--filters", "14..17"]),
        1,
    );
    assert!(e.contains("channel 16 is out of range"), "{e}");
    // Rejected by the argument parser.
    let e = fails(
        &with_out(&["--layer", "features.0", "--filters", "5..2"]),
        2,
    );
    assert!(e.contains("range `5..2` is empty"), "{e}");
    let e = fails(
        &with_out(&["--layer", "features.0", "--filters", "0..x"]),
        2,
    );
    assert!(e.contains("not a filter index"), "{e}");
    let e = fails(&with_out(&["--filters", "0..2"]), 2);
    assert!(e.contains("--layer"), "{e}");
    let e = fails(&with_out(&["--class", "1", "--layer", "features.0"]), 2);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = fails(&with_out(&["--class", "1", "--scale", "1.2,0.8"]), 2);
    assert!(e.contains("zoom range"), "{e}");
    // Outputs checked before the GPU work.
    let e = fails(&run(&["--class", "1", "--out", s(&dir.join("x.txt"))]), 1);
    assert!(e.contains("expected a .png"), "{e}");
    let e = fails(
        &with_out(&["--class", "1", "--gif", s(&dir.join("g.png"))]),
        1,
    );
    assert!(e.contains("expected a .gif"), "{e}");
    assert!(!out.exists(), "no grid after a failed run");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn outputs_go_to_new_nested_folders_and_quiet_prints_nothing() {
    let dir = temp_dir("nested");
    let model = root().join("models/digits.safetensors");
    let grid = dir.join("a/b/grid.png");
    let gif = dir.join("c/d/run.gif");
    let raw = dir.join("e/f/raw.safetensors");
    let out = cnnvis(&[
        "maximize",
        "--model",
        s(&model),
        "--class",
        "1,2",
        "--iterations",
        "3",
        "--out",
        s(&grid),
        "--gif",
        s(&gif),
        "--raw",
        s(&raw),
        "--quiet",
    ]);
    let stdout = ok(&out);
    assert!(stdout.is_empty(), "--quiet printed: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "--quiet printed on stderr: {stderr}");
    assert!(grid.is_file() && gif.is_file() && raw.is_file());
    assert_eq!(read_targets(&raw), vec![1, 2]);
    std::fs::remove_dir_all(&dir).ok();
}
