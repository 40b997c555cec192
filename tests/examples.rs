//! Every example in `examples/` runs (a test fails when one is added without a test): exit
//! status 0, the files it promises exist and decode as images, and the VGG examples, given no
//! weights, say how to export them and skip. The graphics-interop example's frame is read
//! pixel by pixel: the clear colour all around, and inside the drawn square a jet heatmap
//! (strongly red and strongly blue pixels) whose hot part lies on the object's bounding box
//! from `tests/data/shapes/labels.json`.
//!
//! The examples are run as built: `cargo test --release` builds them into
//! `target/release/examples/` before running the tests; with `--test examples` alone, build
//! them first with `cargo build --release --examples`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{AnimationDecoder, RgbaImage};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example binary next to this test's folder (`target/<profile>/examples/NAME`), checked
/// to exist and to be newer than its source.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "example binary {} not found: build the examples first with \
         `cargo build --release --examples` (`cargo test --release` builds them)",
        bin.display()
    );
    let src = root().join("examples").join(format!("{name}.rs"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(s), Some(b)) = (modified(&src), modified(&bin)) {
        assert!(
            b >= s,
            "{} is older than {}: rebuild with `cargo build --release --examples`",
            bin.display(),
            src.display()
        );
    }
    bin
}

/// A fresh, empty scratch folder for one example.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cnnvis-examples-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

/// Runs example `name` with `args` in `cwd`; asserts success and returns its stdout.
fn run(name: &str, args: &[&str], cwd: &Path) -> String {
    let start = std::time::Instant::now();
    let out: Output = Command::new(example(name))
        .args(args)
        .current_dir(cwd)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("start the example");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{name}: {:.1} s\n{stdout}", start.elapsed().as_secs_f64());
    stdout
}

/// Decodes `path` as an image and returns its size.
fn image_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(img.width() > 0 && img.height() > 0, "{}", path.display());
    (img.width(), img.height())
}

#[test]
fn mnist_activation_maximization_writes_class_filter_grids_and_a_gif() {
    let dir = scratch("mnist_am");
    let out = dir.join("out");
    let stdout = run(
        "mnist_activation_maximization",
        &["--out", out.to_str().unwrap()],
        &dir,
    );
    // 10 tiles of 112 px in 5 columns with a 5 px margin; 8 filters in one row.
    assert_eq!(image_size(&out.join("classes.png")).0, 5 * 112 + 4 * 5);
    assert_eq!(image_size(&out.join("filters.png")).0, 8 * 112 + 7 * 5);
    let gif = std::fs::File::open(out.join("classes.gif")).expect("classes.gif");
    let frames = image::codecs::gif::GifDecoder::new(BufReader::new(gif))
        .expect("GIF header")
        .into_frames()
        .collect_frames()
        .expect("GIF frames");
    assert!(frames.len() > 2, "{} GIF frames", frames.len());
    assert_eq!(stdout.matches("  class image").count(), 10, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mnist_attention_writes_a_grid_of_overlays() {
    let dir = scratch("mnist_attention");
    let out = dir.join("out");
    run("mnist_attention", &["--out", out.to_str().unwrap()], &dir);
    // 4 digits × (input + 4 methods), 112 px tiles.
    assert_eq!(image_size(&out.join("attention.png")).0, 5 * 112 + 4 * 5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vgg_examples_without_weights_explain_the_export_and_skip() {
    for name in ["vgg_attention", "vgg_activation_maximization"] {
        let dir = scratch(name);
        let stdout = run(name, &[], &dir);
        assert!(
            stdout.contains("skipping: needs user weights"),
            "{name}: {stdout}"
        );
        assert!(
            stdout.contains("tools/export_torchvision.py --arch vgg16 --pretrained"),
            "{name}: {stdout}"
        );
        // Nothing written.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{name}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn resnet_attention_falls_back_to_the_shapes_demo_model() {
    let dir = scratch("resnet_attention");
    let out = dir.join("out");
    let stdout = run("resnet_attention", &["--out", out.to_str().unwrap()], &dir);
    assert!(stdout.contains("shapes demo model"), "{stdout}");
    // 4 images × (input + 3 layers + Grad-CAM++), 128 px tiles.
    assert_eq!(image_size(&out.join("cams.png")).0, 5 * 128 + 4 * 5);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bounding box `[x0, y0, x1, y1]` (x1, y1 exclusive) of `file` in the shapes labels.
fn shapes_box(file: &str) -> [f64; 4] {
    let text =
        std::fs::read_to_string(root().join("tests/data/shapes/labels.json")).expect("labels.json");
    let labels: serde_json::Value = serde_json::from_str(&text).expect("labels.json parses");
    let entry = labels["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|e| e["file"] == file)
        .expect("the image's entry");
    let b: Vec<f64> = entry["box"]
        .as_array()
        .expect("box")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    [b[0], b[1], b[2], b[3]]
}

#[test]
fn graphics_interop_frame_shows_the_heatmap_on_the_object() {
    let dir = scratch("graphics_interop");
    let out = dir.join("out");
    run("graphics_interop", &["--out", out.to_str().unwrap()], &dir);
    let frame: RgbaImage = image::open(out.join("frame.png"))
        .expect("frame.png decodes")
        .to_rgba8();
    let (w, h) = frame.dimensions();
    // The clear colour (0.2 grey, opaque) in every corner.
    let background = frame.get_pixel(0, 0).0;
    assert_eq!(background, [51, 51, 51, 255]);
    for (x, y) in [(w - 1, 0), (0, h - 1), (w - 1, h - 1)] {
        assert_eq!(frame.get_pixel(x, y).0, background, "corner ({x}, {y})");
    }

    // The drawn region: the bounding box of every pixel that is not the background.
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in frame.enumerate_pixels() {
        if p.0 != background {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
        }
    }
    assert!(x1 > x0 && y1 > y0, "nothing was drawn");
    let (rw, rh) = (x1 - x0, y1 - y0);
    assert!(
        x0 >= 16 && y0 >= 16 && x1 + 16 <= w && y1 + 16 <= h,
        "the map fills the frame instead of sitting inside a background border: \
         ({x0}, {y0})..({x1}, {y1}) in {w}x{h}"
    );
    assert_eq!(rw, rh, "the 64x64 map is drawn square");
    assert!(rw >= 128, "drawn region {rw}x{rh}");
    let mut differing = 0;
    let (mut red, mut blue) = (Vec::new(), 0usize);
    for y in y0..y1 {
        for x in x0..x1 {
            let [r, g, b, a] = frame.get_pixel(x, y).0.map(i32::from);
            assert_eq!(a, 255, "opaque at ({x}, {y})");
            if [r, g, b, a] != background.map(i32::from) {
                differing += 1;
            }
            if r >= g + 80 && r >= b + 80 {
                red.push((x, y));
            }
            if b >= r + 60 && b >= g + 60 {
                blue += 1;
            }
        }
    }
    let area = (rw * rh) as usize;
    assert!(
        differing * 100 >= area * 99,
        "only {differing} of {area} pixels in the map differ from the background"
    );
    // Jet: a hot (red) part and a cold (blue) part.
    assert!(red.len() * 100 >= area, "{} strongly red pixels", red.len());
    assert!(blue * 100 >= area, "{blue} strongly blue pixels");

    // The hot part lies on the circle: map the image's box (64x64 pixels) into the frame.
    let scale = rw as f64 / 64.0;
    let [bx0, by0, bx1, by1] = shapes_box("00.png");
    let fx = |v: f64| x0 as f64 + v * scale;
    let fy = |v: f64| y0 as f64 + v * scale;
    let inside = |&&(x, y): &&(u32, u32)| {
        let (x, y) = (x as f64 + 0.5, y as f64 + 0.5);
        x >= fx(bx0) && x <= fx(bx1) && y >= fy(by0) && y <= fy(by1)
    };
    let in_box = red.iter().filter(inside).count();
    assert!(
        in_box * 10 >= red.len() * 9,
        "only {in_box} of {} red pixels lie on the object's box",
        red.len()
    );
    let n = red.len() as f64;
    let cx = red.iter().map(|p| p.0 as f64 + 0.5).sum::<f64>() / n;
    let cy = red.iter().map(|p| p.1 as f64 + 0.5).sum::<f64>() / n;
    assert!(
        cx > fx(bx0) && cx < fx(bx1) && cy > fy(by0) && cy < fy(by1),
        "the red centroid ({cx:.0}, {cy:.0}) is off the object's box"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn saliency_from_kernels_prints_its_map() {
    let dir = scratch("saliency_from_kernels");
    let stdout = run("saliency_from_kernels", &[], &dir);
    assert!(stdout.contains("logits:"), "{stdout}");
    assert!(stdout.contains("|d logit[3] / d input|"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every file in `examples/` is run by a test above.
#[test]
fn every_example_is_tested() {
    const TESTED: &[&str] = &[
        "graphics_interop",
        "mnist_activation_maximization",
        "mnist_attention",
        "resnet_attention",
        "saliency_from_kernels",
        "vgg_activation_maximization",
        "vgg_attention",
    ];
    let mut found: Vec<String> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".rs").map(str::to_string))
        .collect();
    found.sort();
    assert_eq!(found, TESTED, "add a test for each new example");
}
