//! The `cnnvis` binary end to end: `info` and `predict` on the committed fixtures, the
//! `--raw` logits against an in-process `Model::predict`, `--classes` files, and the error
//! paths (exit code 1, `error: <message>` on stderr naming the culprit, never a panic);
//! `predict` on a folder in batches with a corrupt file, and `--quiet`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cnnvis::model::preprocess::load_image;
use cnnvis::{GpuContext, Model};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh scratch directory, unique per test and process; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cnnvis-cli-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary; returns (exit code, stdout, stderr).
fn cnnvis(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_cnnvis"))
        .args(args)
        .output()
        .expect("run cnnvis");
    let (out, err) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    assert!(
        !err.contains("panicked"),
        "cnnvis {args:?} panicked:\n{err}"
    );
    (status.code().unwrap_or(-1), out, err)
}

/// Runs the binary and requires success.
fn ok(args: &[&str]) -> String {
    let (code, out, err) = cnnvis(args);
    assert_eq!(
        code, 0,
        "cnnvis {args:?} failed:\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Runs the binary and requires exit code 1 with one `error: ` message; returns stderr.
fn fails(args: &[&str]) -> String {
    let (code, out, err) = cnnvis(args);
    assert_eq!(
        code, 1,
        "cnnvis {args:?}: want exit 1\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(err.starts_with("error: "), "stderr: {err}");
    err
}

/// A deterministic RGB test pattern.
fn write_png(path: &Path, w: u32, h: u32, seed: u32) {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = |k: u32| ((x * (37 + k) + y * (11 + 3 * k) + seed * 101 + k * 59) % 256) as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
    .save(path)
    .expect("write png");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `{"0": ["n00000000", "<prefix>0"], ...}` with `n` entries.
fn write_class_index(path: &Path, n: usize, prefix: &str) {
    let entries: Vec<String> = (0..n)
        .map(|i| format!("\"{i}\": [\"n{i:08}\", \"{prefix}{i}\"]"))
        .collect();
    std::fs::write(path, format!("{{{}}}", entries.join(", "))).expect("write class index");
}

/// The ranked lines (`  1. ...`) of `predict` output, grouped per image header.
fn ranked(out: &str) -> Vec<Vec<&str>> {
    let mut groups: Vec<Vec<&str>> = Vec::new();
    for line in out.lines() {
        if line.ends_with("):") {
            groups.push(Vec::new());
        } else if line
            .trim_start()
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
        {
            groups.last_mut().expect("rank before header").push(line);
        }
    }
    groups
}

#[test]
fn info_resnet18() {
    let out = ok(&["info", s(&fixture("resnet18.safetensors"))]);
    assert!(out.contains("architecture: resnet18"), "{out}");
    assert!(out.contains("resnet18.safetensors"), "{out}");
    assert!(out.contains("height 224, width 224"), "{out}");
    assert!(out.contains("0.485") && out.contains("0.229"), "{out}");
    let layer_line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no layer {name}:\n{out}"))
    };
    assert!(layer_line("layer4.1").contains("relu"), "{out}");
    assert!(layer_line("conv1").contains("(bn1)"), "{out}");
    assert!(layer_line("conv1").contains("conv2d+batchnorm2d"), "{out}");
    assert!(layer_line("fc").contains("[1, 10]"), "{out}");
    assert!(layer_line("avgpool").contains("[1, 64, 1, 1]"), "{out}");
    assert!(out.contains("177,362"), "{out}");
    assert!(out.contains("classes: 10"), "{out}");
}

#[test]
fn info_generic_graph_model() {
    let out = ok(&["info", s(&fixture("generic.safetensors"))]);
    assert!(
        out.contains("architecture: cnnvis-generic-fixture"),
        "{out}"
    );
    assert!(out.contains("height 21, width 19"), "{out}");
    for layer in ["stem.conv", "block.add", "block.bn", "pool", "gap", "fc2"] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(layer)),
            "no layer {layer}:\n{out}"
        );
    }
    assert!(out.contains("[1, 8, 6, 6]"), "ceil-mode pool shape:\n{out}");
    assert!(out.contains("output layer: fc2"), "{out}");
    assert!(
        out.contains("classes: 5 (cat, dog, bird, fish, frog)"),
        "{out}"
    );
}

#[test]
fn predict_raw_matches_in_process_model() {
    let dir = Scratch::new("raw");
    let native = dir.path("native.png");
    let other = dir.path("other.png");
    write_png(&native, 19, 21, 1);
    write_png(&other, 40, 30, 2);
    let raw = dir.path("logits.safetensors");
    let model_path = fixture("generic.safetensors");
    let out = ok(&[
        "predict",
        "--model",
        s(&model_path),
        "--image",
        s(&native),
        "--image",
        s(&other),
        "--top",
        "3",
        "--raw",
        s(&raw),
    ]);

    let bytes = std::fs::read(&raw).expect("read --raw output");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse --raw output");
    let t = st.tensor("logits").expect("logits tensor");
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    assert_eq!(t.shape(), &[2, 5]);
    let got: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("metadata");
    let meta = meta.metadata().clone().expect("metadata present");
    assert_eq!(meta["arch"], "cnnvis-generic-fixture");
    assert!(meta["images"].contains("other.png"), "{meta:?}");

    let ctx = GpuContext::new().expect("GPU context");
    let model = Model::open(&ctx, &model_path).expect("open model");
    let images = [load_image(&native).unwrap(), load_image(&other).unwrap()];
    let (input, shape) = model.preprocess().batch(&images).unwrap();
    let want: Vec<f32> = model.predict(&ctx, &input, shape).unwrap().concat();
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= 1e-5, "logit {i}: cli {a}, in-process {b}");
    }

    // Printed top-3: the model's own class names, top-1 = argmax, probabilities descending.
    let groups = ranked(&out);
    assert_eq!(groups.len(), 2, "{out}");
    let names = ["cat", "dog", "bird", "fish", "frog"];
    for (img, lines) in groups.iter().enumerate() {
        assert_eq!(lines.len(), 3, "{out}");
        let row = &want[img * 5..][..5];
        let best = (0..5).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert!(lines[0].contains(names[best]), "image {img}: {out}");
        let probs: Vec<f64> = lines
            .iter()
            .map(|l| {
                let p = l.split("p = ").nth(1).expect("p = ");
                p.split_whitespace().next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{out}");
        // Softmax of the logits, recomputed here.
        let m = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let p_best = (row[best] as f64 - m).exp() / z;
        assert!(
            (probs[0] - p_best).abs() < 2e-6,
            "{probs:?} vs {p_best}: {out}"
        );
    }
    assert!(out.contains("the native size"), "{out}");
    assert!(out.contains("40x30 pixels, resized to 19x21"), "{out}");
}

#[test]
fn predict_with_class_index_file() {
    let dir = Scratch::new("classes");
    let img = dir.path("img.png");
    write_png(&img, 32, 32, 3);
    let classes = dir.path("imagenet_class_index.json");
    write_class_index(&classes, 10, "thing");
    let resnet = fixture("resnet18.safetensors");

    // 10 names for 10 outputs: used; --top 50 clamps to 10.
    let out = ok(&[
        "predict",
        "--model",
        s(&resnet),
        "--image",
        s(&img),
        "--classes",
        s(&classes),
        "--top",
        "50",
    ]);
    let groups = ranked(&out);
    assert_eq!(groups.len(), 1, "{out}");
    assert_eq!(groups[0].len(), 10, "{out}");
    for i in 0..10 {
        let name = format!("thing{i}");
        assert!(
            groups[0]
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == name)),
            "{name} missing:\n{out}"
        );
    }

    // A count that does not match the output: indices, with a warning.
    let five = dir.path("five.json");
    write_class_index(&five, 5, "thing");
    let (code, out, err) = cnnvis(&[
        "predict",
        "--model",
        s(&resnet),
        "--image",
        s(&img),
        "--classes",
        s(&five),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("5 classes") && err.contains("10"), "{err}");
    assert!(!out.contains("thing"), "{out}");
    assert_eq!(ranked(&out)[0].len(), 5, "default --top 5:\n{out}");

    // The model's own names win over a file.
    let (code, out, err) = cnnvis(&[
        "predict",
        "--model",
        s(&fixture("generic.safetensors")),
        "--image",
        s(&img),
        "--classes",
        s(&five),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("thing"), "{out}");
    assert!(["cat", "dog", "bird", "fish", "frog"]
        .iter()
        .all(|n| out.contains(n)));
}

#[test]
fn errors_exit_1_and_name_the_problem() {
    let dir = Scratch::new("errors");
    let img = dir.path("img.png");
    write_png(&img, 8, 8, 4);
    let resnet = fixture("resnet18.safetensors");

    let missing = dir.path("no_such_model.safetensors");
    let err = fails(&["info", s(&missing)]);
    assert!(err.contains("no_such_model.safetensors"), "{err}");
    let err = fails(&["predict", "--model", s(&missing), "--image", s(&img)]);
    assert!(err.contains("no_such_model.safetensors"), "{err}");

    let err = fails(&["info", s(&resnet), "--arch", "foo"]);
    assert!(err.contains("foo"), "{err}");
    for arch in ["vgg16", "resnet50", "alexnet"] {
        assert!(err.contains(arch), "built-ins not listed: {err}");
    }

    let not_image = dir.path("notes.png");
    std::fs::write(&not_image, "this is text, not a PNG").unwrap();
    let err = fails(&["predict", "--model", s(&resnet), "--image", s(&not_image)]);
    assert!(err.contains("notes.png"), "{err}");
    let gone = dir.path("gone.png");
    let err = fails(&["predict", "--model", s(&resnet), "--image", s(&gone)]);
    assert!(err.contains("gone.png"), "{err}");

    let malformed = [
        ("bad_json.json", "{\"0\": [\"n0\", \"a\""),
        ("not_object.json", "[[\"n0\", \"a\"]]"),
        ("not_pair.json", "{\"0\": \"a\"}"),
        ("bad_key.json", "{\"zero\": [\"n0\", \"a\"]}"),
        (
            "gap.json",
            "{\"0\": [\"n0\", \"a\"], \"2\": [\"n2\", \"c\"]}",
        ),
    ];
    for (name, text) in malformed {
        let path = dir.path(name);
        std::fs::write(&path, text).unwrap();
        let err = fails(&[
            "predict",
            "--model",
            s(&resnet),
            "--image",
            s(&img),
            "--classes",
            s(&path),
        ]);
        assert!(err.contains(name), "{name}: {err}");
    }
    let err = fails(&[
        "predict",
        "--model",
        s(&resnet),
        "--image",
        s(&img),
        "--classes",
        s(&dir.path("absent.json")),
    ]);
    assert!(err.contains("absent.json"), "{err}");

    let err = fails(&[
        "info",
        s(&resnet),
        "--graph",
        s(&dir.path("absent_graph.json")),
    ]);
    assert!(err.contains("absent_graph.json"), "{err}");
}

/// The f32 tensor `name` of a safetensors file, with its shape.
fn read_tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("read raw file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse raw file");
    let t = st.tensor(name).expect("tensor");
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), data)
}

#[test]
fn predict_on_a_folder_in_batches_skips_a_corrupt_file_and_fails() {
    let dir = Scratch::new("folder");
    let folder = dir.path("in");
    std::fs::create_dir_all(&folder).unwrap();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/shapes");
    for f in ["00.png", "03.png"] {
        std::fs::copy(data.join(f), folder.join(f)).unwrap();
    }
    std::fs::write(folder.join("bad.png"), b"\x89PNG not really").unwrap();
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/shapes.safetensors");

    // Two batches of one; the raw file goes into folders that do not exist yet.
    let raw1 = dir.path("a/b/logits1.safetensors");
    let (code, out, err) = cnnvis(&[
        "predict",
        "--model",
        s(&model),
        "--image",
        s(&folder),
        "--batch-size",
        "1",
        "--raw",
        s(&raw1),
    ]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("bad.png") && err.contains("1 of 3 images"),
        "{err}"
    );
    assert_eq!(ranked(&out).len(), 2, "{out}");
    assert!(out.contains("00.png") && out.contains("03.png"), "{out}");

    // One batch, quiet: nothing on stdout, only the errors on stderr.
    let raw16 = dir.path("logits16.safetensors");
    let (code, out, err) = cnnvis(&[
        "predict",
        "--model",
        s(&model),
        "--image",
        s(&folder),
        "--raw",
        s(&raw16),
        "--quiet",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "--quiet printed: {out}");
    assert!(err.lines().all(|l| l.starts_with("error: ")), "{err}");

    let (s1, l1) = read_tensor(&raw1, "logits");
    let (s16, l16) = read_tensor(&raw16, "logits");
    assert_eq!(s1, vec![2, 6]);
    assert_eq!(s1, s16);
    for (a, b) in l1.iter().zip(&l16) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }
}

#[test]
fn predict_quiet_prints_nothing_on_success() {
    let dir = Scratch::new("quiet");
    let img = dir.path("img.png");
    write_png(&img, 19, 21, 5);
    let raw = dir.path("new/folder/logits.safetensors");
    let (code, out, err) = cnnvis(&[
        "predict",
        "--model",
        s(&fixture("generic.safetensors")),
        "--image",
        s(&img),
        "--raw",
        s(&raw),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.is_empty() && err.is_empty(),
        "stdout {out:?}, stderr {err:?}"
    );
    assert_eq!(read_tensor(&raw, "logits").0, vec![1, 5]);
}
