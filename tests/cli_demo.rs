//! `cnnvis demo`: runs from an unrelated directory on the embedded models and writes every
//! picture the README shows, with an index.html that links them all.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn demo_writes_every_picture_and_an_index_from_any_directory() {
    let dir = std::env::temp_dir().join(format!("cnnvis-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Run from the temp dir with a relative, not yet existing output folder.
    let out = Command::new(env!("CARGO_BIN_EXE_cnnvis"))
        .args(["demo", "--out", "nested/out"])
        .current_dir(&dir)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run cnnvis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root: PathBuf = dir.join("nested/out");
    let index = std::fs::read_to_string(root.join("index.html")).expect("index.html");
    let files = [
        "digits_classes.png",
        "digits_classes.gif",
        "digits_filters.png",
        "shapes_input.png",
        "shapes_vanilla.png",
        "shapes_guided.png",
        "shapes_smoothgrad.png",
        "shapes_gradcam.png",
        "shapes_gradcampp.png",
    ];
    for f in files {
        let path = root.join(f);
        let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(img.width() >= 100 && img.height() >= 100, "{f} is tiny");
        assert!(
            index.contains(&format!("src=\"{f}\"")),
            "index.html misses {f}"
        );
        assert!(stdout.contains(f), "the summary does not name {f}");
    }
    // The class grid's caption reports the class probabilities it reached.
    assert!(index.contains("probability ≥ 0.9"), "{index}");
    let _ = std::fs::remove_dir_all(&dir);
}
