//! Loading models: every bad-input case gets its typed error naming the tensor, shapes or
//! file; graph JSON parsing; dense layers larger than a storage binding split into row
//! blocks; full-size VGG16 and ResNet50 (random weights with torchvision's names and shapes)
//! load and predict on this adapter.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cnnvis::model::arch::{self, BUILTIN_ARCHS};
use cnnvis::model::preprocess::InputError;
use cnnvis::model::spec::GraphSpec;
use cnnvis::model::weights::{ModelError, Weights};
use cnnvis::ops::relu::ReluRule;
use cnnvis::{Error, GpuContext, LoadOptions, Model};
use common::Rng;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One tensor to write: name, dtype, shape, little-endian bytes.
struct Raw {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32_raw(name: &str, shape: &[usize], data: &[f32]) -> Raw {
    Raw {
        name: name.into(),
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes: bytemuck::cast_slice(data).to_vec(),
    }
}

fn write(path: &Path, raws: &[Raw], meta: Option<HashMap<String, String>>) {
    let views: Vec<(&str, TensorView<'_>)> = raws
        .iter()
        .map(|r| {
            let v = TensorView::new(r.dtype, r.shape.clone(), &r.bytes).expect("view");
            (r.name.as_str(), v)
        })
        .collect();
    safetensors::serialize_to_file(views, meta, path).expect("serialize");
}

/// The tensors of a fixture, as raw entries, for editing.
fn fixture_raws(name: &str) -> (Vec<Raw>, Option<HashMap<String, String>>) {
    let bytes = std::fs::read(fixture(&format!("{name}.safetensors"))).expect("read");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let mut raws: Vec<Raw> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| Raw {
            name: n,
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
            bytes: v.data().to_vec(),
        })
        .collect();
    raws.sort_by(|a, b| a.name.cmp(&b.name));
    (raws, meta.metadata().clone())
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnnvis-model-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn load_err(path: &Path, options: &LoadOptions) -> ModelError {
    match Model::open_with(common::ctx(), path, options) {
        Err(Error::Model(e)) => e,
        Err(e) => panic!("expected a ModelError, got {e}"),
        Ok(_) => panic!("loading {} should fail", path.display()),
    }
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_named() {
    let (raws, meta) = fixture_raws("vgg11");
    // Missing.
    let p = temp("missing.safetensors");
    let fewer: Vec<Raw> = raws
        .iter()
        .filter(|r| r.name != "features.3.bias")
        .map(|r| Raw {
            bytes: r.bytes.clone(),
            shape: r.shape.clone(),
            name: r.name.clone(),
            dtype: r.dtype,
        })
        .collect();
    write(&p, &fewer, meta.clone());
    let e = load_err(&p, &LoadOptions::default());
    assert!(
        matches!(&e, ModelError::MissingTensor { name, .. } if name == "features.3.bias"),
        "{e}"
    );
    assert!(e.to_string().contains("missing.safetensors"), "{e}");

    // Unexpected.
    let p = temp("unexpected.safetensors");
    let mut more: Vec<Raw> = raws
        .iter()
        .map(|r| Raw {
            bytes: r.bytes.clone(),
            shape: r.shape.clone(),
            name: r.name.clone(),
            dtype: r.dtype,
        })
        .collect();
    more.push(f32_raw("features.99.weight", &[2], &[1.0, 2.0]));
    write(&p, &more, meta.clone());
    let e = load_err(&p, &LoadOptions::default());
    assert!(
        matches!(&e, ModelError::UnexpectedTensor { name, .. } if name == "features.99.weight"),
        "{e}"
    );

    // Shape mismatch: a conv weight with the wrong number of input channels.
    let p = temp("misshaped.safetensors");
    let bad: Vec<Raw> = raws
        .iter()
        .map(|r| {
            if r.name == "features.3.weight" {
                // [8, 4, 3, 3] stored as [8, 2, 3, 3] plus the rest dropped.
                let shape = vec![r.shape[0], r.shape[1] / 2, 3, 3];
                let n: usize = shape.iter().product();
                Raw {
                    bytes: r.bytes[..n * 4].to_vec(),
                    shape,
                    name: r.name.clone(),
                    dtype: r.dtype,
                }
            } else {
                Raw {
                    bytes: r.bytes.clone(),
                    shape: r.shape.clone(),
                    name: r.name.clone(),
                    dtype: r.dtype,
                }
            }
        })
        .collect();
    write(&p, &bad, meta.clone());
    let e = load_err(&p, &LoadOptions::default());
    match &e {
        ModelError::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "features.3.weight");
            assert_eq!(expected, &vec![8, 4, 3, 3]);
            assert_eq!(found, &vec![8, 2, 3, 3]);
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("[8, 4, 3, 3]") && msg.contains("[8, 2, 3, 3]"),
        "{msg}"
    );

    // Unsupported dtype: a weight stored as int32.
    let p = temp("int.safetensors");
    let ints: Vec<Raw> = raws
        .iter()
        .map(|r| Raw {
            dtype: if r.name == "classifier.6.bias" {
                Dtype::I32
            } else {
                r.dtype
            },
            bytes: r.bytes.clone(),
            shape: r.shape.clone(),
            name: r.name.clone(),
        })
        .collect();
    write(&p, &ints, meta);
    let e = load_err(&p, &LoadOptions::default());
    assert!(
        matches!(&e, ModelError::UnsupportedDtype { name, .. } if name == "classifier.6.bias"),
        "{e}"
    );
}

#[test]
fn truncated_and_corrupt_files_are_reported() {
    let bytes = std::fs::read(fixture("alexnet.safetensors")).expect("read");
    let p = temp("truncated.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() - 100]).expect("write");
    let e = load_err(&p, &LoadOptions::default());
    assert!(matches!(e, ModelError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");

    let p = temp("corrupt.safetensors");
    let mut bad = bytes.clone();
    bad[10] = b'}';
    std::fs::write(&p, &bad).expect("write");
    let e = load_err(&p, &LoadOptions::default());
    assert!(matches!(e, ModelError::Corrupt { .. }), "{e}");

    let e = load_err(
        Path::new("/nonexistent/model.safetensors"),
        &LoadOptions::default(),
    );
    assert!(
        matches!(e, ModelError::Io { .. })
            && e.to_string().contains("/nonexistent/model.safetensors"),
        "{e}"
    );
}

#[test]
fn unrecognized_architectures_ask_for_arch_or_a_graph() {
    let p = temp("mystery.safetensors");
    write(
        &p,
        &[f32_raw("encoder.stem.weight", &[4, 3, 3, 3], &[0.0; 108])],
        None,
    );
    let e = load_err(&p, &LoadOptions::default());
    assert!(matches!(e, ModelError::UnknownArchitecture { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("--arch") && msg.contains("resnet50") && msg.contains("cnnvis.graph"),
        "{msg}"
    );

    let e = load_err(
        &fixture("vgg11.safetensors"),
        &LoadOptions::default().arch("vgg12"),
    );
    assert!(e.to_string().contains("`vgg12` is not a built-in"), "{e}");

    // The wrong built-in for the weights: names do not match.
    let e = load_err(
        &fixture("vgg11.safetensors"),
        &LoadOptions::default().arch("resnet18"),
    );
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
}

#[test]
fn wrong_input_shapes_name_the_layer() {
    let ctx = common::ctx();
    let m = Model::open(ctx, fixture("vgg11.safetensors")).expect("load");
    let e = m
        .forward_plan(ctx, [1, 1, 32, 32])
        .expect_err("one channel");
    assert!(e.to_string().contains("[N, 3, H, W]"), "{e}");
    let e = m.forward_plan(ctx, [1, 3, 0, 32]).expect_err("zero size");
    assert!(e.to_string().contains("H, W > 0"), "{e}");
    // VGG's first pools cannot shrink a 4x4 image five times.
    let e = m.forward_plan(ctx, [1, 3, 4, 4]).expect_err("too small");
    assert!(e.to_string().contains("layer `features."), "{e}");

    // Images: zero-size images are refused by preprocessing.
    let empty = image::DynamicImage::new_rgb8(0, 5);
    let e = m.preprocess().to_chw(&empty).expect_err("empty image");
    assert!(matches!(e, InputError::ZeroSize { .. }), "{e}");
    assert!(e.to_string().contains("0x5"), "{e}");
}

fn graph_err(json: &str) -> String {
    match GraphSpec::from_json(json, "test.json", &|_| true) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("should fail: {json}"),
    }
}

#[test]
fn graph_json_errors_name_the_layer_and_field() {
    let head = r#""format": "cnnvis.graph/1", "input": {"channels": 3, "height": 8, "width": 8}"#;
    let e = graph_err(&format!(
        r#"{{{head}, "layers": [{{"name": "a", "op": "conv3d"}}]}}"#
    ));
    assert!(
        e.contains("unknown op \"conv3d\"") && e.contains("test.json"),
        "{e}"
    );
    let e = graph_err(&format!(
        r#"{{{head}, "layers": [{{"name": "a", "op": "relu", "inputs": ["b"]}}]}}"#
    ));
    assert!(e.contains("reads `b`"), "{e}");
    let e = graph_err(&format!(
        r#"{{{head}, "layers": [{{"name": "a", "op": "maxpool2d"}}]}}"#
    ));
    assert!(e.contains("lacks \"kernel\""), "{e}");
    let e = graph_err(&format!(
        r#"{{{head}, "layers": [{{"name": "a", "op": "relu"}}, {{"name": "a", "op": "relu"}}]}}"#
    ));
    assert!(e.contains("used twice"), "{e}");
    let e = graph_err(&format!(
        r#"{{{head}, "layers": [{{"name": "a", "op": "add", "inputs": ["input"]}}]}}"#
    ));
    assert!(e.contains("expected 2"), "{e}");
    let e = graph_err(r#"{"format": "cnnvis.graph/1", "layers": []}"#);
    assert!(e.contains("input"), "{e}");
    let e = graph_err(r#"{"format": "other", "layers": []}"#);
    assert!(e.contains("format"), "{e}");
    let e = graph_err("{not json");
    assert!(e.contains("not valid JSON"), "{e}");
    let e = graph_err(&format!(
        r#"{{{head}, "layers": [{{"name": "a", "op": "conv2d", "stride": "two"}}]}}"#
    ));
    assert!(e.contains("layer `a`.stride"), "{e}");
}

#[test]
fn graph_json_defaults_follow_pytorch() {
    let json = r#"{"format": "cnnvis.graph/1",
        "input": {"channels": 1, "height": 28, "width": 28},
        "layers": [
          {"name": "c", "op": "conv2d", "padding": [1, 2]},
          {"name": "p", "op": "maxpool2d", "kernel": 3},
          {"name": "q", "op": "avgpool2d", "kernel": [2, 1], "stride": 1},
          {"name": "f", "op": "flatten"},
          {"name": "fc", "op": "linear", "bias": null}
        ]}"#;
    let has = |n: &str| n == "c.bias";
    let g = GraphSpec::from_json(json, "t", &has).expect("parse");
    use cnnvis::model::spec::LayerOp;
    assert_eq!(g.output, "fc");
    assert_eq!(g.layers[0].inputs, vec!["input".to_string()]);
    assert_eq!(g.layers[1].inputs, vec!["c".to_string()]);
    assert_eq!(
        g.layers[0].op,
        LayerOp::Conv2d {
            weight: "c.weight".into(),
            bias: Some("c.bias".into()),
            stride: [1, 1],
            padding: [1, 2],
            dilation: [1, 1],
            groups: 1
        }
    );
    assert_eq!(
        g.layers[1].op,
        LayerOp::MaxPool2d {
            kernel: [3, 3],
            stride: [3, 3],
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false
        }
    );
    assert!(matches!(
        g.layers[2].op,
        LayerOp::AvgPool2d {
            kernel: [2, 1],
            stride: [1, 1],
            count_include_pad: true,
            ..
        }
    ));
    assert_eq!(
        g.layers[4].op,
        LayerOp::Linear {
            weight: "fc.weight".into(),
            bias: None
        }
    );
    assert_eq!(g.preprocess.size, [28, 28]);
    assert_eq!(g.preprocess.mean, vec![0.0]);
}

/// A device whose storage bindings hold at most `limit` bytes, as on many smaller GPUs.
fn small_binding_context(limit: u64) -> GpuContext {
    pollster::block_on(async {
        let instance = wgpu::Instance::new(cnnvis::gpu::instance_descriptor());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .expect("adapter (install mesa-vulkan-drivers)");
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: limit,
            ..adapter.limits()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("small bindings"),
                required_features: wgpu::Features::empty(),
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .expect("device");
        GpuContext::from_device(device, queue)
    })
}

/// flatten(8×8×4 = 256 features) → linear 256→700 (700 KB of weight) → relu → linear 700→5.
fn dense_model(path: &Path) {
    let mut rng = Rng::new(5);
    let g = r#"{"format": "cnnvis.graph/1", "arch": "dense-test",
        "input": {"channels": 3, "height": 8, "width": 8},
        "layers": [
          {"name": "conv", "op": "conv2d", "padding": 1},
          {"name": "flat", "op": "flatten"},
          {"name": "fc1", "op": "linear"},
          {"name": "act", "op": "relu"},
          {"name": "fc2", "op": "linear"}]}"#;
    let raws = vec![
        f32_raw("conv.weight", &[4, 3, 3, 3], &rng.vec(108, -0.5, 0.5)),
        f32_raw("conv.bias", &[4], &rng.vec(4, -0.1, 0.1)),
        f32_raw("fc1.weight", &[700, 256], &rng.vec(700 * 256, -0.1, 0.1)),
        f32_raw("fc1.bias", &[700], &rng.vec(700, -0.1, 0.1)),
        f32_raw("fc2.weight", &[5, 700], &rng.vec(3500, -0.1, 0.1)),
        f32_raw("fc2.bias", &[5], &rng.vec(5, -0.1, 0.1)),
    ];
    let meta = HashMap::from([("cnnvis.graph".to_string(), g.to_string())]);
    write(path, &raws, Some(meta));
}

/// Logits and input gradient of `sum(logits)` for a batch of 2.
fn logits_and_grad(ctx: &GpuContext, model: &Model, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let fwd = model.forward_plan(ctx, [2, 3, 8, 8]).expect("plan");
    let bwd = model
        .backward_plan(ctx, &fwd, "fc2", None, ReluRule::Standard)
        .expect("backward");
    fwd.input().write(ctx, x).expect("input");
    bwd.seed().write(ctx, &[1.0; 10]).expect("seed");
    let mut all = fwd.dispatches();
    all.extend(bwd.dispatches());
    ctx.run(&all).expect("run");
    (
        fwd.output().download(ctx).expect("logits"),
        bwd.input_grad().expect("grad").download(ctx).expect("grad"),
    )
}

#[test]
fn dense_layers_larger_than_a_binding_run_in_row_blocks() {
    let path = temp("dense.safetensors");
    dense_model(&path);
    let x = Rng::new(9).vec(2 * 3 * 64, -1.0, 1.0);
    let ctx = common::ctx();
    let whole = Model::open(ctx, &path).expect("load");
    let (l0, g0) = logits_and_grad(ctx, &whole, &x);

    // 64 KiB bindings: fc1's 700 KB weight must become 11 blocks of 64 rows.
    let small = small_binding_context(64 << 10);
    assert_eq!(small.limits().max_storage_buffer_binding_size, 64 << 10);
    let split = Model::open(&small, &path).expect("load with small bindings");
    let (l1, g1) = logits_and_grad(&small, &split, &x);
    let r0: Vec<f64> = l0.iter().map(|&v| v as f64).collect();
    let r1: Vec<f64> = g0.iter().map(|&v| v as f64).collect();
    common::assert_close("split logits", &l1, &r0, 1e-5, 1e-5);
    common::assert_close("split input grad", &g1, &r1, 1e-5, 1e-5);

    // Without the split the same weight cannot be bound at all on that device.
    let w = cnnvis::Tensor::zeros(&small, &[700, 256]).expect("alloc");
    let y = cnnvis::Tensor::zeros(&small, &[1, 700]).expect("alloc");
    let xin = cnnvis::Tensor::zeros(&small, &[1, 256]).expect("alloc");
    let e = cnnvis::ops::linear::linear_forward(&small, &y, &xin, &w, None).expect_err("too big");
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );

    // A wrong input size is named at the dense layer.
    let e = whole.forward_plan(ctx, [1, 3, 9, 9]).expect_err("9x9");
    assert!(e.to_string().contains("layer `fc1`"), "{e}");
}

// ---- full-size torchvision networks (random weights, torchvision names and shapes) ----

const VGG11_CFG: &[usize] = &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
const VGG13_CFG: &[usize] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
];
const VGG16_CFG: &[usize] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];
const VGG19_CFG: &[usize] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
];

/// He-initialized weights and identity-ish BatchNorm statistics, named as torchvision does.
struct Gen<'a> {
    rng: &'a mut Rng,
    raws: Vec<Raw>,
}

impl Gen<'_> {
    fn weight(&mut self, name: &str, shape: &[usize], bias: bool) {
        let fan_in: usize = shape[1..].iter().product();
        let a = (6.0 / fan_in as f32).sqrt();
        let n: usize = shape.iter().product();
        let w = self.rng.vec(n, -a, a);
        self.raws
            .push(f32_raw(&format!("{name}.weight"), shape, &w));
        if bias {
            let b = self.rng.vec(shape[0], -0.01, 0.01);
            self.raws
                .push(f32_raw(&format!("{name}.bias"), &shape[..1], &b));
        }
    }

    fn bn(&mut self, name: &str, c: usize) {
        let gamma = self.rng.vec(c, 0.8, 1.2);
        self.raws
            .push(f32_raw(&format!("{name}.weight"), &[c], &gamma));
        self.raws
            .push(f32_raw(&format!("{name}.bias"), &[c], &vec![0.0; c]));
        self.raws.push(f32_raw(
            &format!("{name}.running_mean"),
            &[c],
            &vec![0.0; c],
        ));
        self.raws
            .push(f32_raw(&format!("{name}.running_var"), &[c], &vec![1.0; c]));
        self.raws.push(Raw {
            name: format!("{name}.num_batches_tracked"),
            dtype: Dtype::I64,
            shape: vec![],
            bytes: 0i64.to_le_bytes().to_vec(),
        });
    }
}

/// torchvision VGG names and shapes, widths divided by `div`, hidden width `hidden`.
fn vgg_raws(rng: &mut Rng, cfg: &[usize], bn: bool, div: usize, hidden: usize) -> Vec<Raw> {
    let mut g = Gen {
        rng,
        raws: Vec::new(),
    };
    let (mut i, mut cin) = (0, 3);
    for &c in cfg {
        if c == 0 {
            i += 1;
            continue;
        }
        let c = c / div;
        g.weight(&format!("features.{i}"), &[c, cin, 3, 3], true);
        if bn {
            g.bn(&format!("features.{}", i + 1), c);
            i += 1;
        }
        cin = c;
        i += 2;
    }
    g.weight("classifier.0", &[hidden, cin * 49], true);
    g.weight("classifier.3", &[hidden, hidden], true);
    g.weight("classifier.6", &[1000, hidden], true);
    g.raws
}

/// torchvision ResNet names and shapes, widths divided by `div`.
fn resnet_raws(rng: &mut Rng, blocks: [usize; 4], bottleneck: bool, div: usize) -> Vec<Raw> {
    let mut g = Gen {
        rng,
        raws: Vec::new(),
    };
    let expansion = if bottleneck { 4 } else { 1 };
    g.weight("conv1", &[64 / div, 3, 7, 7], false);
    g.bn("bn1", 64 / div);
    let mut cin = 64 / div;
    for (stage, (&count, &planes)) in blocks.iter().zip(&[64, 128, 256, 512]).enumerate() {
        let planes = planes / div;
        for b in 0..count {
            let p = format!("layer{}.{b}", stage + 1);
            if bottleneck {
                g.weight(&format!("{p}.conv1"), &[planes, cin, 1, 1], false);
                g.bn(&format!("{p}.bn1"), planes);
                g.weight(&format!("{p}.conv2"), &[planes, planes, 3, 3], false);
                g.bn(&format!("{p}.bn2"), planes);
                g.weight(&format!("{p}.conv3"), &[planes * 4, planes, 1, 1], false);
                g.bn(&format!("{p}.bn3"), planes * 4);
            } else {
                g.weight(&format!("{p}.conv1"), &[planes, cin, 3, 3], false);
                g.bn(&format!("{p}.bn1"), planes);
                g.weight(&format!("{p}.conv2"), &[planes, planes, 3, 3], false);
                g.bn(&format!("{p}.bn2"), planes);
            }
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            if b == 0 && (stride != 1 || cin != planes * expansion) {
                g.weight(
                    &format!("{p}.downsample.0"),
                    &[planes * expansion, cin, 1, 1],
                    false,
                );
                g.bn(&format!("{p}.downsample.1"), planes * expansion);
            }
            cin = planes * expansion;
        }
    }
    g.weight("fc", &[1000, cin], true);
    g.raws
}

fn full_size_predicts(name: &str, raws: Vec<Raw>, arch_name: &str) {
    let path = temp(&format!("{name}.safetensors"));
    write(&path, &raws, None);
    drop(raws);
    let ctx = common::ctx();
    let w = Weights::open(&path).expect("open");
    assert_eq!(arch::detect(&w).expect("detect"), arch_name);
    let model = Model::from_weights(ctx, &w, &LoadOptions::default()).expect("load");
    assert_eq!(model.preprocess().size, [224, 224]);
    let x = Rng::new(2).vec(3 * 224 * 224, -2.0, 2.0);
    let logits = model.predict(ctx, &x, [1, 3, 224, 224]).expect("predict");
    assert_eq!(logits.len(), 1);
    assert_eq!(logits[0].len(), 1000);
    assert!(
        logits[0].iter().all(|v| v.is_finite()),
        "{name}: non-finite logits"
    );
    let spread = logits[0].iter().fold(f32::MIN, |m, &v| m.max(v))
        - logits[0].iter().fold(f32::MAX, |m, &v| m.min(v));
    assert!(spread > 1e-3, "{name}: constant logits");
    std::fs::remove_file(&path).ok();
}

#[test]
fn full_size_vgg16_loads_and_predicts_within_binding_limits() {
    let mut rng = Rng::new(16);
    let raws = vgg_raws(&mut rng, VGG16_CFG, false, 1, 4096);
    // classifier.0.weight is 25088×4096 floats, 411 MB: above lavapipe's 128 MiB bindings.
    let big = raws
        .iter()
        .find(|r| r.name == "classifier.0.weight")
        .expect("fc6");
    assert!(big.bytes.len() as u64 > common::ctx().limits().max_storage_buffer_binding_size);
    full_size_predicts("vgg16", raws, "vgg16");
}

#[test]
fn full_size_resnet50_loads_and_predicts() {
    let mut rng = Rng::new(50);
    let raws = resnet_raws(&mut rng, [3, 4, 6, 3], true, 1);
    full_size_predicts("resnet50", raws, "resnet50");
}

#[test]
fn every_builtin_architecture_is_detected_and_runs() {
    let ctx = common::ctx();
    let mut rng = Rng::new(1);
    let cases: Vec<(&str, Vec<Raw>)> = vec![
        ("vgg11", vgg_raws(&mut rng, VGG11_CFG, false, 16, 32)),
        ("vgg13", vgg_raws(&mut rng, VGG13_CFG, false, 16, 32)),
        ("vgg16", vgg_raws(&mut rng, VGG16_CFG, false, 16, 32)),
        ("vgg19", vgg_raws(&mut rng, VGG19_CFG, false, 16, 32)),
        ("vgg11_bn", vgg_raws(&mut rng, VGG11_CFG, true, 16, 32)),
        ("vgg13_bn", vgg_raws(&mut rng, VGG13_CFG, true, 16, 32)),
        ("vgg16_bn", vgg_raws(&mut rng, VGG16_CFG, true, 16, 32)),
        ("vgg19_bn", vgg_raws(&mut rng, VGG19_CFG, true, 16, 32)),
        ("resnet18", resnet_raws(&mut rng, [2, 2, 2, 2], false, 16)),
        ("resnet34", resnet_raws(&mut rng, [3, 4, 6, 3], false, 16)),
        ("resnet50", resnet_raws(&mut rng, [3, 4, 6, 3], true, 16)),
        ("resnet101", resnet_raws(&mut rng, [3, 4, 23, 3], true, 16)),
        ("resnet152", resnet_raws(&mut rng, [3, 8, 36, 3], true, 16)),
    ];
    let mut seen: Vec<&str> = Vec::new();
    for (name, raws) in cases {
        let path = temp(&format!("small-{name}.safetensors"));
        write(&path, &raws, None);
        let w = Weights::open(&path).expect("open");
        assert_eq!(arch::detect(&w).expect("detect"), name);
        let m = Model::from_weights(ctx, &w, &LoadOptions::default()).expect("load");
        assert_eq!(m.arch(), name);
        let out = m.predict(ctx, &rng.vec(2 * 3 * 32 * 32, -1.0, 1.0), [2, 3, 32, 32]);
        let out = out.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((out.len(), out[0].len()), (2, 1000), "{name}");
        assert!(out.iter().flatten().all(|v| v.is_finite()), "{name}");
        seen.push(name);
        std::fs::remove_file(&path).ok();
    }
    // AlexNet is covered by its PyTorch fixture (tests/model_fixtures.rs).
    seen.push("alexnet");
    seen.sort_unstable();
    let mut all = BUILTIN_ARCHS.to_vec();
    all.sort_unstable();
    assert_eq!(seen, all);
}
