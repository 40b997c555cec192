//! The `cnnvis` command line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod demo;
mod eval;
mod maps;
mod maximize;
mod progress;

use cnnvis::model::preprocess::{ChannelMode, Preprocess};
use cnnvis::model::weights::Weights;
use cnnvis::{GpuContext, LoadOptions, Model};
use progress::{note, say};

/// CNN visualizations computed on the GPU.
#[derive(Parser)]
#[command(name = "cnnvis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// See what cnnvis does: class images, filters, an optimization GIF, saliency and Grad-CAM
    /// overlays from the embedded demo models, with an index.html (no download needed).
    Demo(demo::DemoArgs),
    /// Show the GPU adapter cnnvis would use (honours WGPU_BACKEND and WGPU_ADAPTER_NAME) and
    /// its limits.
    Adapter,
    /// Parse and validate every embedded WGSL kernel with naga (needs no GPU).
    CheckShaders,
    /// Describe a model: architecture, input convention, every layer with its output shape,
    /// parameter count and classes.
    Info(InfoArgs),
    /// Classify images: top-k classes with softmax probabilities and logits.
    Predict(PredictArgs),
    /// Saliency maps: gradients of a class score with respect to the input, and their
    /// variants (guided, deconvnet, SmoothGrad, integrated gradients, occlusion, ...).
    Saliency(maps::SaliencyArgs),
    /// Class activation maps at a layer (Grad-CAM and its variants), overlaid on the images.
    Cam(maps::CamArgs),
    /// Activation maximization: the inputs that most excite classes or a layer's filters,
    /// optimized as one GPU batch, written as a labelled grid (and a GIF, raw tensors).
    Maximize(maximize::MaximizeArgs),
    /// Sanity checks of the attention maps: pointing game, deletion/insertion AUC and
    /// cascading model randomization, one table row per method.
    Eval(eval::EvalArgs),
}

/// How to interpret a weights file (shared by the model commands).
#[derive(Args)]
pub(crate) struct ModelOptions {
    /// Built-in architecture (vgg11…vgg19[_bn], resnet18…resnet152, alexnet); detected from
    /// the file when omitted.
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// A cnnvis.graph/1 JSON file describing the network (overrides the file's metadata).
    #[arg(long, value_name = "GRAPH.json")]
    graph: Option<PathBuf>,
    /// Input size the images are resized to, as HxW (default: the model's own).
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    input_size: Option<[usize; 2]>,
    /// Per-channel mean subtracted after scaling pixels to [0, 1], comma-separated.
    #[arg(
        long,
        value_name = "M,M,M",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviation divided by after the mean, comma-separated.
    #[arg(long, value_name = "S,S,S", value_delimiter = ',')]
    std: Option<Vec<f32>>,
}

/// `224x224` (or `224`) → `[224, 224]`.
pub(crate) fn parse_size(s: &str) -> Result<[usize; 2], String> {
    let parse = |t: &str| {
        t.trim()
            .parse::<usize>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("`{s}` is not a size like 224x224"))
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
        None => {
            let v = parse(s)?;
            Ok([v, v])
        }
    }
}

#[derive(Args)]
struct InfoArgs {
    /// The weights file (safetensors).
    #[arg(value_name = "MODEL")]
    model: PathBuf,
    #[command(flatten)]
    options: ModelOptions,
}

#[derive(Args)]
struct PredictArgs {
    /// The weights file (safetensors).
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    #[command(flatten)]
    options: ModelOptions,
    /// An input image (PNG, JPEG, ...) or a folder (its image files, sorted by name); repeat
    /// for several. They run in GPU batches of --batch-size; a file that cannot be read or
    /// used is reported on stderr and skipped, and the exit code is then 1.
    #[arg(long = "image", value_name = "IMG|DIR", required = true)]
    images: Vec<PathBuf>,
    /// How many classes to list per image (clamped to the number of classes).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    top: u32,
    /// Class names in the imagenet_class_index.json format ({"0": ["n01440764", "tench"], …}),
    /// used when the model carries no names of its own and the count matches its output.
    #[arg(long, value_name = "CLASSES.json")]
    classes: Option<PathBuf>,
    /// Also write the logits as an f32 tensor `logits` [N, classes] to this safetensors file
    /// (all images, batches concatenated; its metadata `images` lists the rows' files).
    #[arg(long, value_name = "OUT.safetensors")]
    raw: Option<PathBuf>,
    /// Images per GPU batch.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

pub(crate) type CliResult = Result<(), Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: CliResult = match cli.command {
        Command::Demo(args) => demo::demo(&args),
        Command::Adapter => adapter().map_err(Into::into),
        Command::CheckShaders => check_shaders().map_err(Into::into),
        Command::Info(args) => info(&args),
        Command::Predict(args) => predict(&args),
        Command::Saliency(args) => maps::saliency(&args),
        Command::Cam(args) => maps::cam(&args),
        Command::Maximize(args) => maximize::maximize(&args),
        Command::Eval(args) => eval::eval(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn adapter() -> cnnvis::Result<()> {
    let ctx = cnnvis::GpuContext::new()?;
    let l = ctx.limits();
    println!("adapter: {}", ctx.adapter());
    println!("max_buffer_size: {} bytes", l.max_buffer_size);
    println!(
        "max_storage_buffer_binding_size: {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!(
        "max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "max_compute_workgroup_storage_size: {} bytes",
        l.max_compute_workgroup_storage_size
    );
    Ok(())
}

fn check_shaders() -> cnnvis::Result<()> {
    for shader in cnnvis::gpu::Shader::ALL {
        cnnvis::gpu::validate_shader(shader)?;
        println!("ok  shaders/{}", shader.file());
    }
    Ok(())
}

/// Reads the weights (so a bad path fails before the GPU is opened), then builds the model.
pub(crate) fn open_weights(
    path: &Path,
    options: &ModelOptions,
) -> cnnvis::Result<(Weights, LoadOptions)> {
    let weights = Weights::open(path)?;
    let mut opts = LoadOptions::default();
    if let Some(arch) = &options.arch {
        opts = opts.arch(arch.as_str());
    }
    if let Some(graph) = &options.graph {
        opts = opts.graph_file(graph)?;
    }
    // Resolve the description now: an unknown architecture or a bad graph is reported
    // without waiting for a GPU.
    let spec = Model::spec_for(&weights, &opts)?;
    if options.input_size.is_some() || options.mean.is_some() || options.std.is_some() {
        let mut p = spec.preprocess.clone();
        if let Some([h, w]) = options.input_size {
            p = p.with_size(h, w);
        }
        if options.mean.is_some() || options.std.is_some() {
            let mean = options.mean.clone().unwrap_or_else(|| p.mean.clone());
            let std = options.std.clone().unwrap_or_else(|| p.std.clone());
            p = p.with_mean_std(mean, std);
        }
        p.validate().map_err(cnnvis::Error::Input)?;
        opts = opts.preprocess(p);
    }
    Ok((weights, opts))
}

/// `12345678` → `12,345,678`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn fmt_floats(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(", "))
}

fn describe_input(p: &Preprocess) -> String {
    let [h, w] = p.size;
    let channels = match p.channels {
        ChannelMode::Rgb => "RGB",
        ChannelMode::Grayscale => "grayscale",
    };
    let scale = if (p.scale - 1.0 / 255.0).abs() < 1e-9 {
        "1/255".to_string()
    } else {
        format!("{}", p.scale)
    };
    format!(
        "{channels}, height {h}, width {w}; value = (pixel * {scale} - mean) / std, mean {}, \
         std {}",
        fmt_floats(&p.mean),
        fmt_floats(&p.std),
    )
}

/// Number of output units (classes) of the model's logits layer.
fn output_units(model: &Model) -> usize {
    let out = model.output_layer();
    model
        .layers()
        .iter()
        .find(|l| l.name == out)
        .map(|l| l.output_shape.iter().skip(1).product())
        .unwrap_or(0)
}

fn info(args: &InfoArgs) -> CliResult {
    let (weights, opts) = open_weights(&args.model, &args.options)?;
    let ctx = GpuContext::new()?;
    let model = Model::from_weights(&ctx, &weights, &opts)?;

    println!("architecture: {}", model.arch());
    println!("source: {}", model.source());
    println!("input: {}", describe_input(model.preprocess()));
    println!();

    let rows: Vec<(String, &str, String)> = model
        .layers()
        .iter()
        .map(|l| {
            let name = if l.aliases.is_empty() {
                l.name.clone()
            } else {
                format!("{} ({})", l.name, l.aliases.join(", "))
            };
            (name, l.kind.as_str(), format!("{:?}", l.output_shape))
        })
        .collect();
    let name_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(5);
    let kind_w = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(4);
    println!("{:<name_w$}  {:<kind_w$}  output shape", "layer", "kind");
    for (name, kind, shape) in &rows {
        println!("{name:<name_w$}  {kind:<kind_w$}  {shape}");
    }
    println!();
    println!("layers: {}", rows.len());
    println!("output layer: {}", model.output_layer());
    let params = model.parameter_count();
    println!("parameters: {} ({params})", thousands(params));
    let units = output_units(&model);
    match model.classes() {
        Some(names) => {
            let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
            let more = if names.len() > shown.len() {
                ", …"
            } else {
                ""
            };
            println!("classes: {} ({}{more})", names.len(), shown.join(", "));
        }
        None => println!("classes: {units} (unnamed)"),
    }
    Ok(())
}

/// Reads a class index file in the Keras/torchvision `imagenet_class_index.json` format:
/// `{"0": ["n01440764", "tench"], ...}`, keys 0..n-1 each once. Returns the names (second
/// entries) in index order.
fn read_class_index(path: &Path) -> Result<Vec<String>, String> {
    let bad = |detail: String| {
        format!(
            "class index file {}: {detail} (expected the imagenet_class_index.json format, \
             {{\"0\": [\"n01440764\", \"tench\"], ...}})",
            path.display()
        )
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read class index file {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("the top level is not a JSON object".into()))?;
    if obj.is_empty() {
        return Err(bad("it names no classes".into()));
    }
    let mut names: Vec<Option<String>> = vec![None; obj.len()];
    for (key, entry) in obj {
        let index: usize = key
            .parse()
            .map_err(|_| bad(format!("key {key:?} is not a class index")))?;
        if index >= names.len() {
            return Err(bad(format!(
                "index {index} is out of range for {} entries (indices must be 0..{})",
                names.len(),
                names.len()
            )));
        }
        let name = entry
            .as_array()
            .and_then(|a| a.get(1))
            .and_then(|n| n.as_str())
            .ok_or_else(|| {
                bad(format!(
                    "entry {key:?} is {entry}, not a [\"<id>\", \"<name>\"] pair"
                ))
            })?;
        names[index] = Some(name.to_string());
    }
    // Keys are unique and all < len, so every slot is filled.
    Ok(names.into_iter().map(Option::unwrap_or_default).collect())
}

/// Softmax in f64 with the maximum subtracted (no overflow for any finite logits).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let exps: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Indices of the `k` largest values, largest first (ties: lower index first; NaN last).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
        }
        .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

fn predict(args: &PredictArgs) -> CliResult {
    progress::set_quiet(args.quiet);
    let (weights, opts) = open_weights(&args.model, &args.options)?;
    let paths = maps::expand_images(&args.images)?;
    let file_classes = args.classes.as_deref().map(read_class_index).transpose()?;

    let ctx = GpuContext::new()?;
    let model = Model::from_weights(&ctx, &weights, &opts)?;
    let units = output_units(&model);

    let names: Option<Vec<String>> = match (model.classes(), file_classes) {
        (Some(own), file) => {
            if file.is_some() {
                note!("note: the model names its own classes; ignoring --classes");
            }
            Some(own.to_vec())
        }
        (None, Some(file)) if file.len() == units => Some(file),
        (None, Some(file)) => {
            note!(
                "warning: {} names {} classes but the model outputs {units}; showing indices",
                args.classes.as_deref().unwrap_or(Path::new("")).display(),
                file.len()
            );
            None
        }
        (None, None) => None,
    };
    let label = |c: usize| match &names {
        Some(n) => format!("{c:>4}  {}", n[c]),
        None => format!("{c:>4}"),
    };

    let n = paths.len();
    let bs = args.batch_size as usize;
    let bar = progress::bar(n as u64, "predict");
    let mut failed = Vec::new();
    let mut logits: Vec<Vec<f32>> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for start in (0..n).step_by(bs) {
        let range = start..(start + bs).min(n);
        let len = range.len() as u64;
        if let Some(b) = maps::load_batch(model.preprocess(), &paths, range, &bar, &mut failed) {
            let rows = model.predict(&ctx, &b.data, b.shape)?;
            let [_, _, h, w] = b.shape;
            for ((&i, img), row) in b.indices.iter().zip(&b.images).zip(&rows) {
                let (iw, ih) = (img.width() as usize, img.height() as usize);
                let size = if (iw, ih) == (w, h) {
                    format!("{iw}x{ih} pixels, the native size")
                } else {
                    format!("{iw}x{ih} pixels, resized to {w}x{h}")
                };
                let probs = softmax(row);
                let top = top_k(row, (args.top as usize).min(row.len()));
                let labels: Vec<String> = top.iter().map(|&c| label(c)).collect();
                let label_w = labels.iter().map(String::len).max().unwrap_or(0);
                bar.suspend(|| {
                    say!("{} ({size}):", paths[i].display());
                    for (rank, &c) in top.iter().enumerate() {
                        say!(
                            "  {:>2}. {:<label_w$}  p = {:.6}  logit = {:.4}",
                            rank + 1,
                            labels[rank],
                            probs[c],
                            row[c]
                        );
                    }
                });
                files.push(paths[i].clone());
            }
            logits.extend(rows);
        }
        bar.inc(len);
    }
    bar.finish_and_clear();

    if let (Some(out), false) = (&args.raw, logits.is_empty()) {
        let units = logits[0].len();
        progress::create_parent(out)?;
        write_raw(out, &logits, units, model.arch(), &files)?;
        say!(
            "logits [{}, {units}] written to {}",
            logits.len(),
            out.display()
        );
    }
    maps::failures(&paths, &failed)?;
    Ok(())
}

fn write_raw(
    out: &Path,
    logits: &[Vec<f32>],
    units: usize,
    arch: &str,
    images: &[PathBuf],
) -> Result<(), String> {
    let bytes: Vec<u8> = logits
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![logits.len(), units],
        &bytes,
    )
    .map_err(|e| format!("cannot build the logits tensor: {e}"))?;
    let image_list: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    let metadata = HashMap::from([
        ("arch".to_string(), arch.to_string()),
        (
            "images".to_string(),
            serde_json::Value::from(image_list).to_string(),
        ),
    ]);
    safetensors::serialize_to_file([("logits", view)], Some(metadata), out)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(177362), "177,362");
        assert_eq!(thousands(138357544), "138,357,544");
    }

    #[test]
    fn softmax_is_stable() {
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-12 && (p[1] - 0.5).abs() < 1e-12 && p[2] == 0.0);
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[2] > p[1] && p[1] > p[0]);
    }

    #[test]
    fn top_k_orders_and_clamps() {
        assert_eq!(top_k(&[0.1, 3.0, 2.0, 3.0], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[f32::NAN, 1.0], 5), vec![1, 0]);
    }
}
