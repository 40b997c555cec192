//! `cnnvis eval`: sanity checks of attention maps (pointing game, deletion/insertion AUC,
//! model-randomization correlation), one table row per method. See `cnnvis::vis::eval`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use indicatif::ProgressBar;

use cnnvis::vis::eval::{
    attention_maps, cascade_layers, deletion_insertion, paper_tolerance, pointing_game,
    randomization_check, BoundingBox, Cascade, CausalConfig, EvalMethod, MapConfig,
    RandomizationResult,
};
use cnnvis::vis::Target;
use cnnvis::{GpuContext, Model, Tensor};

use crate::maps::{expand_images, failures, load_batch};
use crate::progress::{self, note, say};
use crate::{open_weights, CliResult, ModelOptions};

/// `cnnvis eval` options.
#[derive(Args)]
pub struct EvalArgs {
    /// The weights file (safetensors), e.g. models/shapes.safetensors.
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    #[command(flatten)]
    options: ModelOptions,
    /// Images or folders of images (e.g. tests/data/shapes); repeat or comma-separate. A file
    /// that cannot be read or used is reported on stderr and left out (the exit code is then
    /// 1, after the table).
    #[arg(
        long = "images",
        alias = "image",
        value_name = "DIR_OR_FILES",
        required = true,
        value_delimiter = ','
    )]
    images: Vec<PathBuf>,
    /// Labels and boxes: {"images": [{"file": "00.png", "label": 0, "box": [x0, y0, x1, y1]}]}
    /// (default: labels.json in the images' folder, when there is one). Without labels the
    /// target is each image's top class and the pointing game is skipped.
    #[arg(long, value_name = "labels.json")]
    labels: Option<PathBuf>,
    /// Methods, comma-separated (default: every CAM method, vanilla, guided, smoothgrad,
    /// input-x-gradient, integrated-gradients).
    #[arg(long, value_delimiter = ',', value_name = "M,M")]
    methods: Vec<String>,
    /// Checks, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "C,C")]
    checks: Vec<Check>,
    /// Pointing-game tolerance in pixels of the model input (distance from the maximum to the
    /// box). Default: the paper's 15 px per 224 px, scaled to the input (4.3 px at 64 px).
    /// The strict figure (0 px) is printed beside it.
    #[arg(long, value_name = "PX")]
    tolerance: Option<f32>,
    /// Deletion/insertion steps (the curves have STEPS + 1 points).
    #[arg(long, value_name = "N", default_value_t = 16)]
    steps: usize,
    /// Noise samples of SmoothGrad.
    #[arg(long, value_name = "N", default_value_t = 50)]
    samples: usize,
    /// Integration steps of integrated gradients.
    #[arg(long, value_name = "N", default_value_t = 50)]
    ig_steps: usize,
    /// Seed of the randomized weights and of SmoothGrad's noise.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Print the randomization correlation at every cascade step (computes them all; by
    /// default only the fully randomized model is evaluated).
    #[arg(long)]
    cascade: bool,
    /// Images per GPU batch (the figures are over all images either way).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

/// The checks `cnnvis eval` can run.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Check {
    /// Pointing game: the map's maximum inside the object's box.
    Pointing,
    /// Deletion and insertion AUC.
    Auc,
    /// Cascading model randomization (Spearman correlation with the trained model's maps).
    Randomization,
}

/// One image's entry of a labels file.
struct Label {
    class: usize,
    bbox: Option<BoundingBox>,
}

/// Reads a labels file, keyed by file name.
fn read_labels(path: &Path) -> Result<HashMap<String, Label>, String> {
    let bad = |d: String| format!("labels file {}: {d}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read labels file {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let images = v["images"]
        .as_array()
        .ok_or_else(|| bad("no \"images\" array".into()))?;
    let mut out = HashMap::new();
    for (i, im) in images.iter().enumerate() {
        let file = im["file"]
            .as_str()
            .ok_or_else(|| bad(format!("entry {i} has no \"file\" string")))?;
        let class = im["label"]
            .as_u64()
            .ok_or_else(|| bad(format!("entry {i} ({file}) has no integer \"label\"")))?
            as usize;
        let bbox = match &im["box"] {
            serde_json::Value::Null => None,
            b => {
                let c: Vec<f32> = b
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_f64())
                            .map(|x| x as f32)
                            .collect()
                    })
                    .unwrap_or_default();
                if c.len() != 4 || c[0] >= c[2] || c[1] >= c[3] {
                    return Err(bad(format!(
                        "entry {i} ({file}): \"box\" must be [x0, y0, x1, y1] with x0 < x1, \
                         y0 < y1"
                    )));
                }
                Some(BoundingBox::new(c[0], c[1], c[2], c[3]))
            }
        };
        out.insert(file.to_string(), Label { class, bbox });
    }
    Ok(out)
}

/// The labels file: the given one, else `labels.json` beside the (first) folder's images.
fn labels_path(args: &EvalArgs) -> Option<PathBuf> {
    if let Some(p) = &args.labels {
        return Some(p.clone());
    }
    args.images
        .iter()
        .find(|p| p.is_dir())
        .map(|d| d.join("labels.json"))
        .filter(|p| p.is_file())
}

/// `0.1234` or `-` when absent.
fn cell(v: Option<f64>, pct: bool) -> String {
    match v {
        Some(x) if x.is_nan() => "n/a".into(),
        Some(x) if pct => format!("{:.0} %", 100.0 * x),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    }
}

/// `cnnvis eval`.
pub fn eval(args: &EvalArgs) -> CliResult {
    progress::set_quiet(args.quiet);
    let methods: Vec<EvalMethod> = if args.methods.is_empty() {
        EvalMethod::DEFAULT.to_vec()
    } else {
        args.methods
            .iter()
            .map(|m| m.trim().parse::<EvalMethod>())
            .collect::<Result<_, _>>()?
    };
    if args.steps == 0 || args.samples == 0 || args.ig_steps == 0 {
        return Err("--steps, --samples and --ig-steps must be at least 1".into());
    }
    let explicit = !args.checks.is_empty();
    let checks: Vec<Check> = if explicit {
        args.checks.clone()
    } else {
        vec![Check::Pointing, Check::Auc, Check::Randomization]
    };
    let paths = expand_images(&args.images)?;
    let labels = labels_path(args).map(|p| read_labels(&p)).transpose()?;
    let entries: Option<Vec<&Label>> = labels
        .as_ref()
        .map(|l| {
            paths
                .iter()
                .map(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    l.get(name)
                        .ok_or_else(|| format!("the labels file has no entry for {name}"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let mut pointing = checks.contains(&Check::Pointing);
    let has_boxes = entries
        .as_ref()
        .is_some_and(|e| e.iter().all(|l| l.bbox.is_some()));
    if pointing && !has_boxes {
        if explicit {
            return Err(
                "the pointing game needs a labels file with a \"box\" for every image \
                        (--labels)"
                    .into(),
            );
        }
        note!("note: no boxes for every image; skipping the pointing game");
        pointing = false;
    }
    let (weights, opts) = open_weights(&args.model, &args.options)?;
    let ctx = GpuContext::new()?;
    let model = Model::from_weights(&ctx, &weights, &opts)?;
    let mut failed = Vec::new();
    let all = load_batch(
        model.preprocess(),
        &paths,
        0..paths.len(),
        &ProgressBar::hidden(),
        &mut failed,
    );
    let Some(all) = all else {
        failures(&paths, &failed)?;
        return Err("no images".into());
    };
    let entries: Option<Vec<&Label>> = entries.map(|e| all.indices.iter().map(|&i| e[i]).collect());
    let images = &all.images;
    let x = &all.data;
    let shape = all.shape;
    let [n, c, h, w] = shape;
    let per = c * h * w;
    let bs = args.batch_size as usize;
    let chunks: Vec<std::ops::Range<usize>> =
        (0..n).step_by(bs).map(|s| s..(s + bs).min(n)).collect();
    let inputs: Vec<Tensor> = chunks
        .iter()
        .map(|r| Tensor::from_slice(&ctx, &[r.len(), c, h, w], &x[r.start * per..r.end * per]))
        .collect::<Result<_, _>>()?;
    let classes: Vec<usize> = match &entries {
        Some(e) => e.iter().map(|l| l.class).collect(),
        None => {
            let mut out = Vec::with_capacity(n);
            for r in &chunks {
                let rows =
                    model.predict(&ctx, &x[r.start * per..r.end * per], [r.len(), c, h, w])?;
                out.extend(rows.iter().map(|row| cnnvis::vis::target::argmax(row)));
            }
            out
        }
    };
    let targets: Vec<Target> = classes.iter().map(|&c| Target::Class(c)).collect();
    let boxes: Vec<BoundingBox> = match (&entries, pointing) {
        (Some(e), true) => e
            .iter()
            .zip(images)
            .filter_map(|(l, im)| {
                l.bbox
                    .map(|b| b.scaled(w as f32 / im.width() as f32, h as f32 / im.height() as f32))
            })
            .collect(),
        _ => Vec::new(),
    };
    let config = MapConfig {
        samples: args.samples,
        steps: args.ig_steps,
        seed: args.seed,
    };
    let causal = CausalConfig {
        steps: args.steps,
        ..CausalConfig::default()
    };
    say!(
        "model {} ({}), {n} images at {h}x{w}, targets: {}",
        args.model.display(),
        model.arch(),
        if entries.is_some() {
            "labels"
        } else {
            "top class"
        }
    );

    let tolerance = args.tolerance.unwrap_or_else(|| paper_tolerance([h, w]));
    if tolerance.is_nan() || tolerance < 0.0 || !tolerance.is_finite() {
        return Err(format!("--tolerance {tolerance} must be a finite number >= 0").into());
    }
    struct Row {
        strict: Option<f64>,
        pointing: Option<f64>,
        deletion: Option<f64>,
        insertion: Option<f64>,
        random: Option<f64>,
    }
    let mut rows: Vec<Row> = Vec::new();
    let need_maps = pointing || checks.contains(&Check::Auc);
    let randomize = checks.contains(&Check::Randomization);
    let tasks = (if need_maps { methods.len() } else { 0 }) + usize::from(randomize);
    let bar = progress::bar((tasks * chunks.len()) as u64, "eval");
    for &m in &methods {
        let mut row = Row {
            strict: None,
            pointing: None,
            deletion: None,
            insertion: None,
            random: None,
        };
        if need_maps {
            bar.set_message(format!("eval: {m}"));
            let mut maps = Vec::with_capacity(n * h * w);
            let mut curves = Vec::with_capacity(n);
            for (r, input) in chunks.iter().zip(&inputs) {
                let part = attention_maps(&ctx, &model, m, &config, input, &targets[r.clone()])?;
                if checks.contains(&Check::Auc) {
                    curves.extend(deletion_insertion(
                        &ctx,
                        &model,
                        &x[r.start * per..r.end * per],
                        [r.len(), c, h, w],
                        &part,
                        &classes[r.clone()],
                        &causal,
                    )?);
                }
                maps.extend(part);
                bar.inc(1);
            }
            if pointing {
                row.strict = Some(pointing_game(&maps, [n, h, w], &boxes, 0.0)?.accuracy());
                row.pointing = Some(pointing_game(&maps, [n, h, w], &boxes, tolerance)?.accuracy());
            }
            if checks.contains(&Check::Auc) {
                let mean = |f: fn(&cnnvis::vis::eval::CausalCurves) -> f64| {
                    curves.iter().map(f).sum::<f64>() / curves.len().max(1) as f64
                };
                row.deletion = Some(mean(|c| c.deletion_auc));
                row.insertion = Some(mean(|c| c.insertion_auc));
            }
        }
        rows.push(row);
    }
    let mut cascade: Vec<RandomizationResult> = Vec::new();
    if randomize {
        bar.set_message(format!(
            "eval: cascading randomization ({} methods)",
            methods.len()
        ));
        for (r, input) in chunks.iter().zip(&inputs) {
            let part = randomization_check(
                &ctx,
                &weights,
                &opts,
                &methods,
                &config,
                input,
                &targets[r.clone()],
                args.seed,
                if args.cascade {
                    Cascade::All
                } else {
                    Cascade::Final
                },
            )?;
            if cascade.is_empty() {
                cascade = part;
            } else {
                // The same methods and steps per batch: gather the per-image correlations.
                for (acc, p) in cascade.iter_mut().zip(part) {
                    for (a, s) in acc.steps.iter_mut().zip(p.steps) {
                        a.correlations.extend(s.correlations);
                    }
                }
            }
            bar.inc(1);
        }
        for (row, r) in rows.iter_mut().zip(&cascade) {
            row.random = Some(r.final_correlation());
        }
    }
    bar.finish_and_clear();

    let name_w = methods
        .iter()
        .map(|m| m.name().len())
        .max()
        .unwrap_or(6)
        .max(6);
    say!();
    say!(
        "{:<name_w$}  {:>8}  {:>8}  {:>12}  {:>13}  {:>14}",
        "method",
        "pointing",
        "(strict)",
        "deletion AUC",
        "insertion AUC",
        "randomization"
    );
    for (m, r) in methods.iter().zip(&rows) {
        say!(
            "{:<name_w$}  {:>8}  {:>8}  {:>12}  {:>13}  {:>14}",
            m.name(),
            cell(r.pointing, true),
            cell(r.strict, true),
            cell(r.deletion, false),
            cell(r.insertion, false),
            cell(r.random, false),
        );
    }
    say!();
    if pointing {
        say!(
            "pointing: share of images whose map maximum lies within {tolerance:.1} px of the \
             box (strict: inside it)"
        );
    }
    if checks.contains(&Check::Auc) {
        say!(
            "deletion (lower is better): pixels by decreasing map value set to 0 in model space; \
             insertion (higher is better): inserted into a blurred copy; {} steps, softmax \
             probability of the target",
            args.steps
        );
    }
    if checks.contains(&Check::Randomization) {
        say!(
            "randomization: mean Spearman correlation of |maps| of the trained and the fully \
             randomized model (lower is better; near 1 means the map ignores the weights)"
        );
        if args.cascade {
            let mut spec = Model::spec_for(&weights, &opts)?;
            if let Some(p) = &opts.preprocess {
                spec.preprocess = p.clone();
            }
            let layers = cascade_layers(&spec);
            let mut head = format!("{:<name_w$}", "cascade");
            for l in &layers {
                head.push_str(&format!("  {l:>12}"));
            }
            say!();
            say!("{head}");
            for r in &cascade {
                let mut line = format!("{:<name_w$}", r.method.name());
                for s in &r.steps {
                    line.push_str(&format!("  {:>12}", cell(Some(s.mean()), false)));
                }
                say!("{line}");
            }
        }
    }
    failures(&paths, &failed)?;
    Ok(())
}
