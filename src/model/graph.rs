//! A loaded network: a DAG of layers whose parameters live on the GPU, addressable by name.
//! Built from a [`GraphSpec`] and a weights file; eval-mode BatchNorm is folded into the
//! conv before it, dropout dropped, and dense layers too large for one storage binding split
//! into row blocks.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Tensor};
use crate::model::arch;
use crate::model::fold::{fold_batchnorm_into_conv, BatchNormParams};
use crate::model::preprocess::Preprocess;
use crate::model::spec::{BatchNormNames, GraphSpec, LayerOp, GRAPH_METADATA_KEY, INPUT};
use crate::model::weights::{ModelError, Weights};
use crate::ops::conv2d::{conv2d_output_shape, Conv2dConfig, Conv2dWeightCache};
use crate::ops::elementwise::batchnorm_to_affine;
use crate::ops::linear::LinearWeightCache;
use crate::ops::pool::{
    avgpool2d_output_shape, maxpool2d_output_shape, AvgPool2dConfig, MaxPool2dConfig,
};

/// Where a layer reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Src {
    /// The network input.
    Input,
    /// A layer's output, by node index.
    Node(usize),
}

/// One block of a dense layer's weight rows (see `linear_forward_rows`).
#[derive(Debug)]
pub(crate) struct LinearBlock {
    pub w: Tensor,
    pub b: Option<Tensor>,
    pub offset: usize,
    /// Kernel-ready copies of `w` (the windows variant's packs), made once.
    pub packs: Arc<LinearWeightCache>,
}

/// A layer as the GPU runs it.
#[derive(Debug)]
pub(crate) enum NodeOp {
    Conv {
        w: Tensor,
        b: Option<Tensor>,
        cfg: Conv2dConfig,
        /// Kernel-ready copies of `w` (the windows variant's packs), made once: a model's
        /// weights never change after loading.
        packs: Arc<Conv2dWeightCache>,
    },
    /// A BatchNorm that could not be folded: `y = x * scale[c] + shift[c]`.
    Affine {
        scale: Tensor,
        shift: Tensor,
    },
    Relu,
    MaxPool(MaxPool2dConfig),
    AvgPool(AvgPool2dConfig),
    AdaptiveAvgPool([usize; 2]),
    Flatten,
    Identity,
    Linear {
        blocks: Vec<LinearBlock>,
        out: usize,
    },
    Add,
}

impl NodeOp {
    /// Output shape for input shapes `ins` (NCHW, or `[N, K]` for dense layers).
    pub(crate) fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>> {
        const OP: &str = "model";
        let x = ins[0];
        let need4 = || -> Result<()> {
            if x.len() != 4 {
                return Err(Error::shape(
                    OP,
                    format!("input shape {x:?} is not [N, C, H, W]"),
                ));
            }
            Ok(())
        };
        Ok(match self {
            NodeOp::Conv { w, cfg, .. } => conv2d_output_shape(x, w.shape(), cfg)?.to_vec(),
            NodeOp::Affine { scale, .. } => {
                need4()?;
                if x[1] != scale.numel() {
                    return Err(Error::shape(
                        OP,
                        format!(
                            "input has {} channels, the batch norm {} ({x:?})",
                            x[1],
                            scale.numel()
                        ),
                    ));
                }
                x.to_vec()
            }
            NodeOp::Relu | NodeOp::Identity => x.to_vec(),
            NodeOp::MaxPool(cfg) => maxpool2d_output_shape(x, cfg)?.to_vec(),
            NodeOp::AvgPool(cfg) => avgpool2d_output_shape(x, cfg)?.to_vec(),
            NodeOp::AdaptiveAvgPool(o) => {
                need4()?;
                vec![x[0], x[1], o[0], o[1]]
            }
            NodeOp::Flatten => {
                if x.is_empty() {
                    return Err(Error::shape(OP, "cannot flatten a scalar"));
                }
                vec![x[0], x[1..].iter().product()]
            }
            NodeOp::Linear { blocks, out } => {
                let k: usize = x.get(1..).map(|r| r.iter().product()).unwrap_or(0);
                let kw = blocks.first().map(|b| b.w.shape()[1]).unwrap_or(0);
                if x.len() < 2 || k != kw {
                    return Err(Error::shape(
                        OP,
                        format!(
                            "input {x:?} gives {k} features per sample but the weight expects \
                             {kw} (is the image the size this model was built for?)"
                        ),
                    ));
                }
                vec![x[0], *out]
            }
            NodeOp::Add => {
                if ins[0] != ins[1] {
                    return Err(Error::shape(
                        OP,
                        format!("adds shapes {:?} and {:?}, which differ", ins[0], ins[1]),
                    ));
                }
                x.to_vec()
            }
        })
    }
}

/// One layer of a loaded model.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub aliases: Vec<String>,
    /// The op as the description names it (`conv2d+batchnorm2d` when folded).
    pub kind: String,
    pub op: NodeOp,
    pub inputs: Vec<Src>,
}

/// Name lookup shared by a model and its plans.
#[derive(Debug)]
pub(crate) struct LayerIndex {
    pub arch: String,
    pub names: HashMap<String, usize>,
    /// Primary names in node order, for error messages.
    pub order: Vec<String>,
}

impl LayerIndex {
    /// The node a name refers to, or `Src::Input` for `"input"`.
    pub fn find(&self, name: &str) -> std::result::Result<Src, ModelError> {
        if name == INPUT {
            return Ok(Src::Input);
        }
        self.names
            .get(name)
            .map(|&i| Src::Node(i))
            .ok_or_else(|| ModelError::UnknownLayer {
                model: self.arch.clone(),
                name: name.to_string(),
                known: suggest(&self.order, name),
            })
    }
}

/// Up to 8 layer names, those sharing the asked name's first component first.
fn suggest(order: &[String], name: &str) -> String {
    let head = name.split('.').next().unwrap_or(name);
    let mut picked: Vec<&str> = order
        .iter()
        .filter(|n| n.starts_with(head))
        .map(String::as_str)
        .take(8)
        .collect();
    if picked.is_empty() {
        picked = order.iter().map(String::as_str).take(8).collect();
    }
    let more = if order.len() > picked.len() {
        format!(" … ({} in all; `cnnvis info` lists them)", order.len())
    } else {
        String::new()
    };
    format!("{}{more}", picked.join(", "))
}

/// How to interpret a weights file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A built-in architecture name (see [`arch::BUILTIN_ARCHS`]); detected when `None`.
    pub arch: Option<String>,
    /// A `cnnvis.graph/1` JSON text and where it came from; overrides the file's metadata.
    pub graph: Option<(String, String)>,
    /// Replaces the architecture's preprocessing (input size, mean, std).
    pub preprocess: Option<Preprocess>,
}

impl LoadOptions {
    /// Uses built-in architecture `arch`.
    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = Some(arch.into());
        self
    }

    /// Reads the graph description from a sidecar JSON file.
    pub fn graph_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.graph = Some((path.display().to_string(), text));
        Ok(self)
    }

    /// Uses a graph description given as JSON text.
    pub fn graph_json(mut self, json: impl Into<String>) -> Self {
        self.graph = Some(("given JSON".into(), json.into()));
        self
    }

    /// Overrides the preprocessing.
    pub fn preprocess(mut self, p: Preprocess) -> Self {
        self.preprocess = Some(p);
        self
    }
}

/// A summary line of one layer, as `cnnvis info` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Primary name.
    pub name: String,
    /// Other names for the same output.
    pub aliases: Vec<String>,
    /// Op kind (`conv2d+batchnorm2d` when folded).
    pub kind: String,
    /// Output shape for one image of the native input size.
    pub output_shape: Vec<usize>,
}

/// A CNN loaded onto the GPU.
#[derive(Debug)]
pub struct Model {
    pub(crate) nodes: Vec<Node>,
    pub(crate) index: Arc<LayerIndex>,
    pub(crate) output: usize,
    preprocess: Preprocess,
    classes: Option<Vec<String>>,
    parameters: u64,
    layer_info: Vec<LayerInfo>,
    source: String,
    /// The gradient pass of the last saliency / CAM call, kept for the next call with the same
    /// shapes (`crate::vis::GradientPass::reuse_or_new`): at batch 1 on a GPU, building one
    /// costs about a third of running it. Type-erased so the model knows nothing of `vis`.
    pub(crate) kept_pass: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl Model {
    /// Loads a safetensors file, detecting a built-in architecture or reading the
    /// `cnnvis.graph` metadata.
    pub fn open(ctx: &GpuContext, path: impl AsRef<Path>) -> Result<Model> {
        Self::open_with(ctx, path, &LoadOptions::default())
    }

    /// Loads a safetensors file with explicit options.
    pub fn open_with(
        ctx: &GpuContext,
        path: impl AsRef<Path>,
        options: &LoadOptions,
    ) -> Result<Model> {
        let weights = Weights::open(path)?;
        Self::from_weights(ctx, &weights, options)
    }

    /// Builds the model described by `options` (or the file) from `weights`.
    pub fn from_weights(
        ctx: &GpuContext,
        weights: &Weights,
        options: &LoadOptions,
    ) -> Result<Model> {
        let mut spec = Self::spec_for(weights, options)?;
        if let Some(p) = &options.preprocess {
            spec.preprocess = p.clone();
        }
        Self::build(ctx, weights, &spec)
    }

    /// The description `weights` would be loaded with: a given graph, the file's
    /// `cnnvis.graph` metadata, or a built-in architecture.
    pub fn spec_for(weights: &Weights, options: &LoadOptions) -> Result<GraphSpec> {
        let has = |n: &str| weights.info(n).is_some();
        if let Some((origin, text)) = &options.graph {
            return Ok(GraphSpec::from_json(text, origin, &has)?);
        }
        if let Some(arch) = &options.arch {
            return Ok(arch::build(arch, weights)?);
        }
        if let Some(text) = weights.metadata().and_then(|m| m.get(GRAPH_METADATA_KEY)) {
            let origin = format!(
                "{} metadata of {}",
                GRAPH_METADATA_KEY,
                weights.path().display()
            );
            return Ok(GraphSpec::from_json(text, &origin, &has)?);
        }
        let arch = arch::detect(weights)?;
        Ok(arch::build(&arch, weights)?)
    }

    /// Uploads the parameters of `spec` from `weights` and wires the layers.
    pub fn build(ctx: &GpuContext, weights: &Weights, spec: &GraphSpec) -> Result<Model> {
        let origin = weights.path().display().to_string();
        spec.validate(&origin)?;
        check_tensors(weights, spec)?;

        let mut consumers: HashMap<&str, usize> = HashMap::new();
        for l in &spec.layers {
            for i in &l.inputs {
                *consumers.entry(i.as_str()).or_default() += 1;
            }
        }
        *consumers.entry(spec.output.as_str()).or_default() += 1;
        // BatchNorms to fold: the conv's name → the BN's names.
        let mut fold: HashMap<&str, &BatchNormNames> = HashMap::new();
        let mut folded_into: HashMap<&str, &str> = HashMap::new();
        let kinds: HashMap<&str, &LayerOp> = spec
            .layers
            .iter()
            .map(|l| (l.name.as_str(), &l.op))
            .collect();
        for l in &spec.layers {
            if let (LayerOp::BatchNorm2d(bn), [input]) = (&l.op, l.inputs.as_slice()) {
                let conv = input.as_str();
                let is_conv = matches!(kinds.get(conv), Some(LayerOp::Conv2d { .. }));
                let aliased = spec
                    .layers
                    .iter()
                    .any(|o| o.name == conv && !o.aliases.is_empty());
                if is_conv && !aliased && consumers.get(conv) == Some(&1) && spec.output != conv {
                    fold.insert(conv, bn);
                    folded_into.insert(l.name.as_str(), conv);
                }
            }
        }

        let [h, w] = spec.preprocess.size;
        let input_shape = vec![1, spec.preprocess.channels.count(), h, w];
        let max_binding = ctx
            .limits()
            .max_storage_buffer_binding_size
            .min(ctx.limits().max_buffer_size);
        let mut nodes: Vec<Node> = Vec::with_capacity(spec.layers.len());
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(spec.layers.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut parameters = 0u64;
        for l in &spec.layers {
            if let Some(conv) = folded_into.get(l.name.as_str()) {
                let idx = names[*conv];
                names.insert(l.name.clone(), idx);
                for a in &l.aliases {
                    names.insert(a.clone(), idx);
                }
                nodes[idx].aliases.push(l.name.clone());
                nodes[idx].aliases.extend(l.aliases.iter().cloned());
                nodes[idx].kind = "conv2d+batchnorm2d".into();
                parameters += bn_parameters(weights, folded_bn(&fold, conv));
                continue;
            }
            let inputs: Vec<Src> = l
                .inputs
                .iter()
                .map(|i| {
                    if i == INPUT {
                        Src::Input
                    } else {
                        Src::Node(names[i.as_str()])
                    }
                })
                .collect();
            let in_shapes: Vec<&[usize]> = inputs
                .iter()
                .map(|s| match s {
                    Src::Input => input_shape.as_slice(),
                    Src::Node(i) => shapes[*i].as_slice(),
                })
                .collect();
            let x = in_shapes[0];
            let wrap = |e: Error| -> Error {
                match e {
                    Error::Shape { message, .. } => Error::shape(
                        "model",
                        format!("layer `{}` ({}): {message}", l.name, l.op.kind()),
                    ),
                    other => other,
                }
            };
            let (op, params) = match &l.op {
                LayerOp::Conv2d {
                    weight,
                    bias,
                    stride,
                    padding,
                    dilation,
                    groups,
                } => {
                    let cfg = Conv2dConfig {
                        stride: *stride,
                        padding: *padding,
                        dilation: *dilation,
                        groups: *groups,
                    };
                    let bn = fold.get(l.name.as_str()).copied();
                    load_conv(ctx, weights, x, weight, bias.as_deref(), cfg, bn, &l.name)?
                }
                LayerOp::BatchNorm2d(bn) => {
                    let c = x.get(1).copied().unwrap_or(0);
                    let p = read_bn(weights, bn, c)?;
                    let (scale, shift) =
                        batchnorm_to_affine(&p[0], &p[1], &p[2], &p[3], bn.eps as f32)?;
                    (
                        NodeOp::Affine {
                            scale: Tensor::from_slice(ctx, &[c], &scale)?,
                            shift: Tensor::from_slice(ctx, &[c], &shift)?,
                        },
                        2 * c as u64,
                    )
                }
                LayerOp::Relu => (NodeOp::Relu, 0),
                LayerOp::MaxPool2d {
                    kernel,
                    stride,
                    padding,
                    dilation,
                    ceil_mode,
                } => (
                    NodeOp::MaxPool(
                        MaxPool2dConfig::new(*kernel)
                            .with_stride(*stride)
                            .with_padding(*padding)
                            .with_dilation(*dilation)
                            .with_ceil_mode(*ceil_mode),
                    ),
                    0,
                ),
                LayerOp::AvgPool2d {
                    kernel,
                    stride,
                    padding,
                    ceil_mode,
                    count_include_pad,
                } => (
                    NodeOp::AvgPool(
                        AvgPool2dConfig::new(*kernel)
                            .with_stride(*stride)
                            .with_padding(*padding)
                            .with_ceil_mode(*ceil_mode)
                            .with_count_include_pad(*count_include_pad),
                    ),
                    0,
                ),
                LayerOp::AdaptiveAvgPool2d { output } => {
                    if output.contains(&0) {
                        return Err(ModelError::InvalidGraph {
                            origin: origin.clone(),
                            detail: format!("layer `{}`: adaptive pool output {output:?}", l.name),
                        }
                        .into());
                    }
                    (NodeOp::AdaptiveAvgPool(*output), 0)
                }
                LayerOp::Flatten => (NodeOp::Flatten, 0),
                LayerOp::Identity => (NodeOp::Identity, 0),
                LayerOp::Linear { weight, bias } => {
                    load_linear(ctx, weights, x, weight, bias.as_deref(), max_binding)?
                }
                LayerOp::Add => (NodeOp::Add, 0),
            };
            let shape = op.output_shape(&in_shapes).map_err(wrap)?;
            parameters += params;
            let idx = nodes.len();
            names.insert(l.name.clone(), idx);
            for a in &l.aliases {
                names.insert(a.clone(), idx);
            }
            nodes.push(Node {
                name: l.name.clone(),
                aliases: l.aliases.clone(),
                kind: l.op.kind().to_string(),
                op,
                inputs,
            });
            shapes.push(shape);
        }
        let output = names[spec.output.as_str()];
        let layer_info = nodes
            .iter()
            .zip(&shapes)
            .map(|(n, s)| LayerInfo {
                name: n.name.clone(),
                aliases: n.aliases.clone(),
                kind: n.kind.clone(),
                output_shape: s.clone(),
            })
            .collect();
        let index = LayerIndex {
            arch: spec.arch.clone(),
            order: nodes.iter().map(|n| n.name.clone()).collect(),
            names,
        };
        if let Some(classes) = &spec.classes {
            let out = shapes[output].get(1..).map(|s| s.iter().product::<usize>());
            if out != Some(classes.len()) {
                return Err(ModelError::InvalidGraph {
                    origin,
                    detail: format!(
                        "{} class names for an output of shape {:?}",
                        classes.len(),
                        shapes[output]
                    ),
                }
                .into());
            }
        }
        Ok(Model {
            nodes,
            index: Arc::new(index),
            output,
            preprocess: spec.preprocess.clone(),
            classes: spec.classes.clone(),
            parameters,
            layer_info,
            source: origin,
            kept_pass: Default::default(),
        })
    }

    /// Frees the buffers of the gradient pass kept from the last saliency or CAM call (kept so
    /// that the next call of the same shapes skips building it; see
    /// [`crate::vis::GradientPass::reuse_or_new`]).
    pub fn release_kept_pass(&self) {
        *self.kept_pass.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Architecture name (a torchvision name for built-ins).
    pub fn arch(&self) -> &str {
        &self.index.arch
    }

    /// Where the weights came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How images become input for this model (native size, channels, mean, std).
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// Names of the output units, when the model carries them.
    pub fn classes(&self) -> Option<&[String]> {
        self.classes.as_deref()
    }

    /// Number of trainable parameters (conv, dense and BatchNorm weights and biases).
    pub fn parameter_count(&self) -> u64 {
        self.parameters
    }

    /// Every layer with its output shape for one image of the native size.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layer_info
    }

    /// Name of the logits layer.
    pub fn output_layer(&self) -> &str {
        &self.nodes[self.output].name
    }

    /// Whether `name` is a layer (or alias) of this model.
    pub fn has_layer(&self, name: &str) -> bool {
        self.index.names.contains_key(name)
    }

    /// The default layer for class activation maps: the last conv, ReLU, residual or
    /// (non-adaptive) pooling layer whose output is spatial (H, W > 1 at the native size),
    /// by its shortest name. `features.30` for VGG16, `layer4` for ResNets; never a global
    /// average pool, whose 1×1 output would give a blank map (keras-vis#53).
    pub fn default_cam_layer(&self) -> Option<&str> {
        let node = self.layer_info.iter().rev().find(|l| {
            l.output_shape.len() == 4
                && l.output_shape[2] * l.output_shape[3] > 1
                && matches!(
                    l.kind.as_str(),
                    "relu" | "conv2d" | "conv2d+batchnorm2d" | "maxpool2d" | "avgpool2d" | "add"
                )
        })?;
        std::iter::once(&node.name)
            .chain(&node.aliases)
            .min_by_key(|n| n.len())
            .map(String::as_str)
    }
}

fn folded_bn<'a>(fold: &HashMap<&str, &'a BatchNormNames>, conv: &str) -> &'a BatchNormNames {
    fold[conv]
}

fn bn_parameters(weights: &Weights, bn: &BatchNormNames) -> u64 {
    let n = |t: &str| {
        weights
            .info(t)
            .map(|i| i.shape.iter().product::<usize>())
            .unwrap_or(0)
    };
    (n(&bn.weight) + n(&bn.bias)) as u64
}

/// Every tensor the spec names exists, and every stored tensor is used
/// (`num_batches_tracked` excepted).
fn check_tensors(weights: &Weights, spec: &GraphSpec) -> std::result::Result<(), ModelError> {
    let used: HashSet<&str> = spec.tensor_names().into_iter().collect();
    let path = weights.path().to_path_buf();
    let mut wanted: Vec<&str> = spec.tensor_names();
    wanted.dedup();
    if let Some(name) = wanted.iter().find(|n| weights.info(n).is_none()) {
        return Err(ModelError::MissingTensor {
            path,
            name: name.to_string(),
        });
    }
    let mut stored = weights.names();
    stored.sort_unstable();
    if let Some(name) = stored
        .iter()
        .find(|n| !used.contains(**n) && !n.ends_with("num_batches_tracked"))
    {
        return Err(ModelError::UnexpectedTensor {
            path,
            name: name.to_string(),
        });
    }
    Ok(())
}

fn shape_mismatch(weights: &Weights, name: &str, expected: Vec<usize>) -> ModelError {
    ModelError::ShapeMismatch {
        path: weights.path().to_path_buf(),
        name: name.to_string(),
        expected,
        found: weights.info(name).map(|i| i.shape).unwrap_or_default(),
    }
}

/// Reads the four BatchNorm vectors, each checked to hold `c` values.
fn read_bn(weights: &Weights, bn: &BatchNormNames, c: usize) -> Result<[Vec<f32>; 4]> {
    let read = |name: &str| -> Result<Vec<f32>> {
        if weights.info(name).map(|i| i.shape) != Some(vec![c]) {
            return Err(shape_mismatch(weights, name, vec![c]).into());
        }
        Ok(weights.read_f32(name)?)
    };
    Ok([
        read(&bn.weight)?,
        read(&bn.bias)?,
        read(&bn.running_mean)?,
        read(&bn.running_var)?,
    ])
}

#[allow(clippy::too_many_arguments)]
fn load_conv(
    ctx: &GpuContext,
    weights: &Weights,
    x: &[usize],
    weight: &str,
    bias: Option<&str>,
    cfg: Conv2dConfig,
    bn: Option<&BatchNormNames>,
    layer: &str,
) -> Result<(NodeOp, u64)> {
    let found = weights.info(weight).map(|i| i.shape).unwrap_or_default();
    let cin = x.get(1).copied().unwrap_or(0);
    if cfg.groups == 0 || cin % cfg.groups != 0 {
        return Err(Error::shape(
            "model",
            format!(
                "layer `{layer}`: {cin} input channels do not split into {} groups",
                cfg.groups
            ),
        ));
    }
    let [cout, kh, kw] = match found.as_slice() {
        [co, _, kh, kw] => [*co, *kh, *kw],
        _ => [found.first().copied().unwrap_or(0), 0, 0],
    };
    let expected = vec![cout, cin / cfg.groups, kh, kw];
    if found != expected || kh == 0 || kw == 0 || cout % cfg.groups != 0 {
        return Err(shape_mismatch(weights, weight, expected).into());
    }
    if let Some(b) = bias {
        if weights.info(b).map(|i| i.shape) != Some(vec![cout]) {
            return Err(shape_mismatch(weights, b, vec![cout]).into());
        }
    }
    let params = found.iter().product::<usize>() as u64 + bias.map_or(0, |_| cout as u64);
    let (w, b) = match bn {
        None => (
            weights.upload(ctx, weight, &found)?,
            bias.map(|b| weights.upload(ctx, b, &[cout])).transpose()?,
        ),
        Some(bn) => {
            let wv = weights.read_f32(weight)?;
            let bv = bias.map(|b| weights.read_f32(b)).transpose()?;
            let p = read_bn(weights, bn, cout)?;
            let (fw, fb) = fold_batchnorm_into_conv(
                &wv,
                [cout, cin / cfg.groups, kh, kw],
                bv.as_deref(),
                &BatchNormParams {
                    gamma: &p[0],
                    beta: &p[1],
                    running_mean: &p[2],
                    running_var: &p[3],
                    eps: bn.eps as f32,
                },
            )?;
            (
                Tensor::from_slice(ctx, &found, &fw)?,
                Some(Tensor::from_slice(ctx, &[cout], &fb)?),
            )
        }
    };
    let packs = Arc::default();
    Ok((NodeOp::Conv { w, b, cfg, packs }, params))
}

/// Uploads a dense layer, in row blocks that each fit one storage binding.
fn load_linear(
    ctx: &GpuContext,
    weights: &Weights,
    x: &[usize],
    weight: &str,
    bias: Option<&str>,
    max_binding: u64,
) -> Result<(NodeOp, u64)> {
    let k: usize = x.get(1..).map(|r| r.iter().product()).unwrap_or(0);
    let found = weights.info(weight).map(|i| i.shape).unwrap_or_default();
    let m = found.first().copied().unwrap_or(0);
    if found != [m, k] || m == 0 || k == 0 {
        return Err(shape_mismatch(weights, weight, vec![m, k]).into());
    }
    if let Some(b) = bias {
        if weights.info(b).map(|i| i.shape) != Some(vec![m]) {
            return Err(shape_mismatch(weights, b, vec![m]).into());
        }
    }
    let row_bytes = (k as u64) * 4;
    let rows_per_block = (max_binding / row_bytes) as usize;
    // Blocks of whole 64-row groups where they fit (else of 4 rows): the lavapipe kernels then
    // pack the blocks of a layer into one transposed operand for its backward pass.
    let rows_per_block = match rows_per_block {
        r if r >= 64 => r / 64 * 64,
        r if r >= 4 => r / 4 * 4,
        r => r,
    };
    if rows_per_block == 0 {
        return Err(crate::error::GpuError::TooLarge {
            what: format!("one row of `{weight}` ({k} features)"),
            bytes: row_bytes,
            limit: max_binding,
            limit_name: "max_storage_buffer_binding_size",
        }
        .into());
    }
    let bias_all = bias.map(|b| weights.read_f32(b)).transpose()?;
    let mut blocks = Vec::new();
    let mut start = 0;
    while start < m {
        let end = (start + rows_per_block).min(m);
        let w = weights.upload_rows(ctx, weight, start..end)?;
        let b = bias_all
            .as_ref()
            .map(|b| Tensor::from_slice(ctx, &[end - start], &b[start..end]))
            .transpose()?;
        blocks.push(LinearBlock {
            w,
            b,
            offset: start,
            packs: Arc::default(),
        });
        start = end;
    }
    let params = (m * k + bias.map_or(0, |_| m)) as u64;
    Ok((NodeOp::Linear { blocks, out: m }, params))
}
