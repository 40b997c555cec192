//! Built-in torchvision architectures: VGG (11/13/16/19, plain and `_bn`), ResNet
//! (18/34/50/101/152) and AlexNet, recognized from state_dict names and built as a
//! [`GraphSpec`] whose layer names are torchvision's module paths.
//!
//! Widths are read from the weights, so reduced-width models with torchvision's topology load
//! too. Layer names: `features.N`, `classifier.N`, `avgpool`, `flatten` (VGG, AlexNet);
//! `conv1` (BatchNorm folded in, alias `bn1`), `relu`, `maxpool`, `layerX.Y.convZ`
//! (alias `layerX.Y.bnZ`), `layerX.Y.reluZ` for a block's inner ReLUs, `layerX.Y` (alias
//! `layerX.Y.relu`, the block's output after its final ReLU), `layerX` (its last block's
//! output), `layerX.Y.downsample.0`, `avgpool`, `flatten`, `fc` (ResNet). A conv followed by a
//! BatchNorm outputs the normalized value, since the BatchNorm is folded into it.

use crate::model::preprocess::Preprocess;
use crate::model::spec::{BatchNormNames, GraphSpec, LayerOp, SpecBuilder};
use crate::model::weights::{ModelError, Weights};

/// The safetensors `__metadata__` key naming the architecture (written by
/// `tools/export_torchvision.py`).
pub const ARCH_METADATA_KEY: &str = "cnnvis.arch";

/// Names of the built-in architectures.
pub const BUILTIN_ARCHS: &[&str] = &[
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "alexnet",
];

/// `M` marks a max pool, a number a 3×3 conv's output channels (torchvision's `cfgs`).
const M: usize = 0;
const VGG11: &[usize] = &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M];
const VGG13: &[usize] = &[
    64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M,
];
const VGG16: &[usize] = &[
    64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M,
];
const VGG19: &[usize] = &[
    64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M,
];

fn known() -> String {
    BUILTIN_ARCHS.join(", ")
}

/// Names the built-in architecture of `weights`: the `cnnvis.arch` metadata if present,
/// otherwise from tensor names and shapes.
pub fn detect(weights: &Weights) -> Result<String, ModelError> {
    if let Some(arch) = weights.metadata().and_then(|m| m.get(ARCH_METADATA_KEY)) {
        if BUILTIN_ARCHS.contains(&arch.as_str()) {
            return Ok(arch.clone());
        }
    }
    let unknown = |detail: String| ModelError::UnknownArchitecture {
        path: weights.path().to_path_buf(),
        detail,
        known: known(),
    };
    let names = weights.names();
    let has = |n: &str| weights.info(n).is_some();
    if has("layer1.0.conv1.weight") && has("fc.weight") {
        let blocks = resnet_blocks(weights);
        let bottleneck = has("layer1.0.conv3.weight");
        let arch = match (bottleneck, blocks) {
            (false, [2, 2, 2, 2]) => "resnet18",
            (false, [3, 4, 6, 3]) => "resnet34",
            (true, [3, 4, 6, 3]) => "resnet50",
            (true, [3, 4, 23, 3]) => "resnet101",
            (true, [3, 8, 36, 3]) => "resnet152",
            _ => {
                return Err(unknown(format!(
                    "ResNet-style names with {} blocks per stage {blocks:?}, which is no \
                     torchvision depth",
                    if bottleneck { "bottleneck" } else { "basic" }
                )))
            }
        };
        return Ok(arch.to_string());
    }
    if has("features.0.weight") && has("classifier.6.weight") {
        // Conv weights are the rank-4 `features.N.weight`s.
        let convs = names
            .iter()
            .filter(|n| n.starts_with("features.") && n.ends_with(".weight"))
            .filter(|n| weights.info(n).is_some_and(|i| i.shape.len() == 4))
            .count();
        let first_kernel = weights
            .info("features.0.weight")
            .and_then(|i| i.shape.get(2).copied());
        if convs == 5 && first_kernel == Some(11) {
            return Ok("alexnet".into());
        }
        let bn = names
            .iter()
            .any(|n| n.starts_with("features.") && n.ends_with(".running_mean"));
        let base = match convs {
            8 => "vgg11",
            10 => "vgg13",
            13 => "vgg16",
            16 => "vgg19",
            c => {
                return Err(unknown(format!(
                    "VGG-style names with {c} conv layers (torchvision VGGs have 8, 10, 13 or 16)"
                )))
            }
        };
        return Ok(if bn {
            format!("{base}_bn")
        } else {
            base.into()
        });
    }
    let sample: Vec<&str> = names.iter().take(4).copied().collect();
    Err(unknown(format!(
        "its {} tensors (first: {}) match no VGG, ResNet or AlexNet naming",
        names.len(),
        sample.join(", ")
    )))
}

/// Blocks per ResNet stage, counted from `layerX.Y.conv1.weight` names.
fn resnet_blocks(weights: &Weights) -> [usize; 4] {
    let mut blocks = [0; 4];
    for (stage, count) in blocks.iter_mut().enumerate() {
        while weights
            .info(&format!("layer{}.{}.conv1.weight", stage + 1, *count))
            .is_some()
        {
            *count += 1;
        }
    }
    blocks
}

/// Builds the spec of built-in `arch` (a name from [`BUILTIN_ARCHS`]), widths taken from
/// `weights`, with torchvision's ImageNet preprocessing.
pub fn build(arch: &str, weights: &Weights) -> Result<GraphSpec, ModelError> {
    let mut b = SpecBuilder::new();
    let output = match arch {
        "vgg11" | "vgg13" | "vgg16" | "vgg19" | "vgg11_bn" | "vgg13_bn" | "vgg16_bn"
        | "vgg19_bn" => {
            let cfg = match &arch[..5] {
                "vgg11" => VGG11,
                "vgg13" => VGG13,
                "vgg16" => VGG16,
                _ => VGG19,
            };
            vgg(&mut b, cfg, arch.ends_with("_bn"))
        }
        "alexnet" => alexnet(&mut b),
        "resnet18" | "resnet34" => resnet(&mut b, weights, false),
        "resnet50" | "resnet101" | "resnet152" => resnet(&mut b, weights, true),
        other => {
            return Err(ModelError::UnknownArchitecture {
                path: weights.path().to_path_buf(),
                detail: format!("`{other}` is not a built-in architecture"),
                known: known(),
            })
        }
    };
    Ok(GraphSpec {
        arch: arch.to_string(),
        preprocess: Preprocess::imagenet(),
        classes: None,
        layers: b.layers,
        output,
    })
}

fn conv(name: &str, stride: usize, padding: usize, bias: bool) -> LayerOp {
    LayerOp::Conv2d {
        weight: format!("{name}.weight"),
        bias: bias.then(|| format!("{name}.bias")),
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [1, 1],
        groups: 1,
    }
}

fn maxpool(kernel: usize, stride: usize, padding: usize) -> LayerOp {
    LayerOp::MaxPool2d {
        kernel: [kernel; 2],
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [1, 1],
        ceil_mode: false,
    }
}

fn linear(name: &str) -> LayerOp {
    LayerOp::Linear {
        weight: format!("{name}.weight"),
        bias: Some(format!("{name}.bias")),
    }
}

/// torchvision `VGG`: `features` from the cfg, `avgpool` to 7×7, three-layer classifier.
fn vgg(b: &mut SpecBuilder, cfg: &[usize], bn: bool) -> String {
    let mut i = 0;
    for &v in cfg {
        if v == M {
            b.push(format!("features.{i}"), maxpool(2, 2, 0));
            i += 1;
            continue;
        }
        b.push(
            format!("features.{i}"),
            conv(&format!("features.{i}"), 1, 1, true),
        );
        i += 1;
        if bn {
            b.push(
                format!("features.{i}"),
                LayerOp::BatchNorm2d(BatchNormNames::at(&format!("features.{i}"))),
            );
            i += 1;
        }
        b.push(format!("features.{i}"), LayerOp::Relu);
        i += 1;
    }
    b.push("avgpool", LayerOp::AdaptiveAvgPool2d { output: [7, 7] });
    classifier(b, true)
}

/// The VGG/AlexNet head: `classifier.{0..6}` = dropout or linear / relu per torchvision.
fn classifier(b: &mut SpecBuilder, vgg: bool) -> String {
    b.push("flatten", LayerOp::Flatten);
    // VGG: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear. AlexNet: Dropout, Linear,
    // ReLU, Dropout, Linear, ReLU, Linear. Both end at classifier.6.
    let ops: [&str; 7] = if vgg {
        [
            "linear", "relu", "dropout", "linear", "relu", "dropout", "linear",
        ]
    } else {
        [
            "dropout", "linear", "relu", "dropout", "linear", "relu", "linear",
        ]
    };
    for (i, op) in ops.iter().enumerate() {
        let name = format!("classifier.{i}");
        let layer = match *op {
            "linear" => linear(&name),
            "relu" => LayerOp::Relu,
            _ => LayerOp::Identity,
        };
        b.push(name, layer);
    }
    "classifier.6".into()
}

/// torchvision `AlexNet`.
fn alexnet(b: &mut SpecBuilder) -> String {
    b.push("features.0", conv("features.0", 4, 2, true));
    b.push("features.1", LayerOp::Relu);
    b.push("features.2", maxpool(3, 2, 0));
    b.push("features.3", conv("features.3", 1, 2, true));
    b.push("features.4", LayerOp::Relu);
    b.push("features.5", maxpool(3, 2, 0));
    b.push("features.6", conv("features.6", 1, 1, true));
    b.push("features.7", LayerOp::Relu);
    b.push("features.8", conv("features.8", 1, 1, true));
    b.push("features.9", LayerOp::Relu);
    b.push("features.10", conv("features.10", 1, 1, true));
    b.push("features.11", LayerOp::Relu);
    b.push("features.12", maxpool(3, 2, 0));
    b.push("avgpool", LayerOp::AdaptiveAvgPool2d { output: [6, 6] });
    classifier(b, false)
}

fn bn(name: &str) -> LayerOp {
    LayerOp::BatchNorm2d(BatchNormNames::at(name))
}

/// Groups of a ResNet conv, from its weight's `Cin/groups` against the channels it receives
/// (ResNeXt-style grouped 3×3 convs have fewer).
fn groups_of(weights: &Weights, name: &str, cin: usize) -> usize {
    match weights.info(&format!("{name}.weight")).map(|i| i.shape) {
        Some(s) if s.len() == 4 && s[1] > 0 && cin.is_multiple_of(s[1]) => cin / s[1],
        _ => 1,
    }
}

fn out_channels(weights: &Weights, name: &str) -> usize {
    weights
        .info(&format!("{name}.weight"))
        .and_then(|i| i.shape.first().copied())
        .unwrap_or(0)
}

/// torchvision `ResNet` (v1.5: a bottleneck's stride sits on its 3×3 conv).
fn resnet(b: &mut SpecBuilder, weights: &Weights, bottleneck: bool) -> String {
    b.push("conv1", conv("conv1", 2, 3, false));
    b.push("bn1", bn("bn1"));
    b.push("relu", LayerOp::Relu);
    b.push("maxpool", maxpool(3, 2, 1));
    let blocks = resnet_blocks(weights);
    for (stage, &count) in blocks.iter().enumerate() {
        for i in 0..count {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let p = format!("layer{}.{i}", stage + 1);
            let block_in = b.last().to_string();
            let c = |n: &str| format!("{p}.{n}");
            if bottleneck {
                b.push(c("conv1"), conv(&c("conv1"), 1, 0, false));
                b.push(c("bn1"), bn(&c("bn1")));
                b.push(c("relu1"), LayerOp::Relu);
                let width = out_channels(weights, &c("conv1"));
                let mut conv2 = conv(&c("conv2"), stride, 1, false);
                if let LayerOp::Conv2d { groups, .. } = &mut conv2 {
                    *groups = groups_of(weights, &c("conv2"), width);
                }
                b.push(c("conv2"), conv2);
                b.push(c("bn2"), bn(&c("bn2")));
                b.push(c("relu2"), LayerOp::Relu);
                b.push(c("conv3"), conv(&c("conv3"), 1, 0, false));
                b.push(c("bn3"), bn(&c("bn3")));
            } else {
                b.push(c("conv1"), conv(&c("conv1"), stride, 1, false));
                b.push(c("bn1"), bn(&c("bn1")));
                b.push(c("relu1"), LayerOp::Relu);
                b.push(c("conv2"), conv(&c("conv2"), 1, 1, false));
                b.push(c("bn2"), bn(&c("bn2")));
            }
            let main = b.last().to_string();
            let shortcut = if weights.info(&c("downsample.0.weight")).is_some() {
                b.push_from(
                    c("downsample.0"),
                    conv(&c("downsample.0"), stride, 0, false),
                    &[&block_in],
                );
                b.push(c("downsample.1"), bn(&c("downsample.1")))
            } else {
                block_in
            };
            b.push_from(c("add"), LayerOp::Add, &[&main, &shortcut]);
            b.push(p.clone(), LayerOp::Relu);
            b.alias(c("relu"));
            if i + 1 == count {
                b.alias(format!("layer{}", stage + 1));
            }
        }
    }
    b.push("avgpool", LayerOp::AdaptiveAvgPool2d { output: [1, 1] });
    b.push("flatten", LayerOp::Flatten);
    b.push("fc", linear("fc"))
}
