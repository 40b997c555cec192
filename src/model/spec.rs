//! The description of a network: its layers, their parameters and wiring, its input
//! convention. Built-in architectures produce one from tensor names and shapes
//! ([`crate::model::arch`]); any other CNN built from the supported ops supplies one as JSON.
//!
//! # The `cnnvis.graph/1` JSON format
//!
//! Stored as a sidecar file or as a string in the safetensors `__metadata__` under the key
//! `cnnvis.graph` (in Python: `save_file(tensors, path, metadata={"cnnvis.graph": json.dumps(g)})`).
//!
//! ```json
//! {
//!   "format": "cnnvis.graph/1",
//!   "arch": "digits-cnn",
//!   "input": {"channels": 1, "height": 28, "width": 28, "mean": [0.5], "std": [0.5]},
//!   "classes": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
//!   "layers": [
//!     {"name": "features.0", "op": "conv2d", "stride": 1, "padding": 1},
//!     {"name": "features.1", "op": "batchnorm2d", "eps": 1e-5},
//!     {"name": "features.2", "op": "relu"},
//!     {"name": "features.3", "op": "maxpool2d", "kernel": 2, "stride": 2},
//!     {"name": "avgpool", "op": "adaptive_avgpool2d", "output": [1, 1]},
//!     {"name": "flatten", "op": "flatten"},
//!     {"name": "classifier.0", "op": "dropout"},
//!     {"name": "classifier.1", "op": "linear"}
//!   ],
//!   "output": "classifier.1"
//! }
//! ```
//!
//! - `input`: `channels` 1 (grayscale) or 3 (RGB); `height`, `width` the native input size;
//!   the model input is `(pixel / 255 - mean[c]) / std[c]` (mean and std default to 0 and 1).
//! - `classes` (optional): names of the output units.
//! - `layers`, in topological order. Every layer has a unique `name` (the PyTorch module path
//!   by convention) and an `op`; `inputs` (optional) lists earlier layer names or `"input"`,
//!   by default the previous layer (`"input"` for the first); `aliases` (optional) adds names.
//! - Ops and their fields (a size is an integer or `[h, w]`):
//!   - `conv2d`: `weight` (default `<name>.weight`), `bias` (default `<name>.bias` when the
//!     file has it; `null` for none), `stride` 1, `padding` 0, `dilation` 1, `groups` 1. Kernel
//!     size and channels come from the weight's shape.
//!   - `batchnorm2d` (eval mode): tensors `<name>.weight`, `.bias`, `.running_mean`,
//!     `.running_var` (override with the keys `weight`, `bias`, `running_mean`,
//!     `running_var`), `eps` 1e-5; `<name>.num_batches_tracked` is ignored. One whose input is
//!     a conv2d that nothing else reads is folded into that conv at load time.
//!   - `relu`.
//!   - `maxpool2d`: `kernel`, `stride` (default = kernel), `padding` 0, `dilation` 1,
//!     `ceil_mode` false.
//!   - `avgpool2d`: `kernel`, `stride` (default = kernel), `padding` 0, `ceil_mode` false,
//!     `count_include_pad` true.
//!   - `adaptive_avgpool2d`: `output`.
//!   - `flatten` (`torch.flatten(x, 1)`), `dropout` (identity in eval mode), `identity`.
//!   - `linear`: `weight` (default `<name>.weight`), `bias` (as for conv2d).
//!   - `add`: two `inputs` of one shape (a residual connection).
//! - `output` (optional): the logits layer, by default the last.
//! - Every tensor of the file must be used by some layer, else loading fails with an
//!   unexpected-tensor error naming it.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::model::preprocess::{ChannelMode, Preprocess};
use crate::model::weights::ModelError;

/// The format tag a `cnnvis.graph` JSON must carry.
pub const GRAPH_FORMAT: &str = "cnnvis.graph/1";
/// The safetensors `__metadata__` key that may hold the graph JSON.
pub const GRAPH_METADATA_KEY: &str = "cnnvis.graph";
/// The name that refers to the network's input in `inputs`.
pub const INPUT: &str = "input";

/// Tensor names of an eval-mode BatchNorm2d.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormNames {
    /// gamma.
    pub weight: String,
    /// beta.
    pub bias: String,
    /// Running mean.
    pub running_mean: String,
    /// Running variance.
    pub running_var: String,
    /// Variance epsilon.
    pub eps: f64,
}

impl BatchNormNames {
    /// The torchvision names under module path `prefix`, eps 1e-5.
    pub fn at(prefix: &str) -> Self {
        BatchNormNames {
            weight: format!("{prefix}.weight"),
            bias: format!("{prefix}.bias"),
            running_mean: format!("{prefix}.running_mean"),
            running_var: format!("{prefix}.running_var"),
            eps: 1e-5,
        }
    }
}

/// What one layer computes.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerOp {
    /// torch.nn.Conv2d.
    Conv2d {
        /// Weight tensor `[Cout, Cin/groups, Kh, Kw]`.
        weight: String,
        /// Bias tensor `[Cout]`, if any.
        bias: Option<String>,
        /// Stride [h, w].
        stride: [usize; 2],
        /// Zero padding [h, w].
        padding: [usize; 2],
        /// Dilation [h, w].
        dilation: [usize; 2],
        /// Channel groups.
        groups: usize,
    },
    /// torch.nn.BatchNorm2d in eval mode.
    BatchNorm2d(BatchNormNames),
    /// torch.nn.ReLU.
    Relu,
    /// torch.nn.MaxPool2d.
    MaxPool2d {
        /// Window [h, w].
        kernel: [usize; 2],
        /// Stride [h, w].
        stride: [usize; 2],
        /// Implicit -inf padding [h, w].
        padding: [usize; 2],
        /// Dilation [h, w].
        dilation: [usize; 2],
        /// Round the output size up.
        ceil_mode: bool,
    },
    /// torch.nn.AvgPool2d.
    AvgPool2d {
        /// Window [h, w].
        kernel: [usize; 2],
        /// Stride [h, w].
        stride: [usize; 2],
        /// Zero padding [h, w].
        padding: [usize; 2],
        /// Round the output size up.
        ceil_mode: bool,
        /// Count padding in the divisor.
        count_include_pad: bool,
    },
    /// torch.nn.AdaptiveAvgPool2d.
    AdaptiveAvgPool2d {
        /// Output size [h, w].
        output: [usize; 2],
    },
    /// torch.flatten(x, 1).
    Flatten,
    /// Dropout (identity in eval mode) or nn.Identity.
    Identity,
    /// torch.nn.Linear.
    Linear {
        /// Weight tensor `[M, K]`.
        weight: String,
        /// Bias tensor `[M]`, if any.
        bias: Option<String>,
    },
    /// Elementwise sum of two inputs.
    Add,
}

impl LayerOp {
    /// The op's name in the JSON format.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerOp::Conv2d { .. } => "conv2d",
            LayerOp::BatchNorm2d(_) => "batchnorm2d",
            LayerOp::Relu => "relu",
            LayerOp::MaxPool2d { .. } => "maxpool2d",
            LayerOp::AvgPool2d { .. } => "avgpool2d",
            LayerOp::AdaptiveAvgPool2d { .. } => "adaptive_avgpool2d",
            LayerOp::Flatten => "flatten",
            LayerOp::Identity => "identity",
            LayerOp::Linear { .. } => "linear",
            LayerOp::Add => "add",
        }
    }

    /// Tensor names this op reads from the weights file.
    pub fn tensors(&self) -> Vec<&str> {
        match self {
            LayerOp::Conv2d { weight, bias, .. } | LayerOp::Linear { weight, bias } => {
                std::iter::once(weight.as_str())
                    .chain(bias.as_deref())
                    .collect()
            }
            LayerOp::BatchNorm2d(bn) => {
                vec![&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var]
            }
            _ => Vec::new(),
        }
    }
}

/// One layer: a name, an op and the layers it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    /// Unique name (a PyTorch module path).
    pub name: String,
    /// Extra names that refer to this layer's output.
    pub aliases: Vec<String>,
    /// What it computes.
    pub op: LayerOp,
    /// Names of the layers it reads ([`INPUT`] for the network input).
    pub inputs: Vec<String>,
}

impl LayerSpec {
    /// A layer reading `inputs`.
    pub fn new(name: impl Into<String>, op: LayerOp, inputs: &[&str]) -> Self {
        LayerSpec {
            name: name.into(),
            aliases: Vec::new(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A whole network description.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSpec {
    /// Architecture name (a torchvision name for built-ins).
    pub arch: String,
    /// How images become input, including the native input size.
    pub preprocess: Preprocess,
    /// Names of the output units, when known.
    pub classes: Option<Vec<String>>,
    /// Layers in topological order.
    pub layers: Vec<LayerSpec>,
    /// The layer whose output is the logits.
    pub output: String,
}

/// Incrementally builds a sequential-with-branches spec, tracking the previous layer.
#[derive(Debug)]
pub(crate) struct SpecBuilder {
    pub layers: Vec<LayerSpec>,
    last: String,
}

impl SpecBuilder {
    pub fn new() -> Self {
        SpecBuilder {
            layers: Vec::new(),
            last: INPUT.to_string(),
        }
    }

    /// Name of the most recent layer (or [`INPUT`]).
    pub fn last(&self) -> &str {
        &self.last
    }

    /// Appends a layer reading the previous one.
    pub fn push(&mut self, name: impl Into<String>, op: LayerOp) -> String {
        let last = self.last.clone();
        self.push_from(name, op, &[&last])
    }

    /// Appends a layer reading `inputs`.
    pub fn push_from(&mut self, name: impl Into<String>, op: LayerOp, inputs: &[&str]) -> String {
        let layer = LayerSpec::new(name, op, inputs);
        self.last = layer.name.clone();
        self.layers.push(layer);
        self.last.clone()
    }

    /// Adds an alias to the most recent layer.
    pub fn alias(&mut self, name: impl Into<String>) {
        if let Some(l) = self.layers.last_mut() {
            l.aliases.push(name.into());
        }
    }
}

impl GraphSpec {
    /// Every tensor name the layers read.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.layers.iter().flat_map(|l| l.op.tensors()).collect()
    }

    /// Checks names are unique, inputs refer to earlier layers, arities fit the ops and the
    /// output exists.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let bad = |detail: String| ModelError::InvalidGraph {
            origin: origin.to_string(),
            detail,
        };
        if self.layers.is_empty() {
            return Err(bad("the graph has no layers".into()));
        }
        let mut seen: HashSet<&str> = HashSet::new();
        seen.insert(INPUT);
        for l in &self.layers {
            for inp in &l.inputs {
                if !seen.contains(inp.as_str()) {
                    return Err(bad(format!(
                        "layer `{}` reads `{inp}`, which is not an earlier layer or \"input\"",
                        l.name
                    )));
                }
            }
            let want = if l.op == LayerOp::Add { 2 } else { 1 };
            if l.inputs.len() != want {
                return Err(bad(format!(
                    "layer `{}` ({}) has {} inputs, expected {want}",
                    l.name,
                    l.op.kind(),
                    l.inputs.len()
                )));
            }
            for name in std::iter::once(&l.name).chain(&l.aliases) {
                if !seen.insert(name.as_str()) {
                    return Err(bad(format!("layer name `{name}` is used twice")));
                }
            }
        }
        if !seen.contains(self.output.as_str()) || self.output == INPUT {
            return Err(bad(format!("output `{}` is not a layer", self.output)));
        }
        Ok(())
    }

    /// Parses a `cnnvis.graph/1` JSON. `has_tensor` tells which tensors the weights file
    /// holds, for optional biases.
    pub fn from_json(
        text: &str,
        origin: &str,
        has_tensor: &dyn Fn(&str) -> bool,
    ) -> Result<GraphSpec, ModelError> {
        let bad = |detail: String| ModelError::InvalidGraph {
            origin: origin.to_string(),
            detail,
        };
        let root: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let root = root
            .as_object()
            .ok_or_else(|| bad("the top level is not a JSON object".into()))?;
        let fields = Fields {
            obj: root,
            what: "graph".into(),
        };
        let format = fields.string("format")?.map_err(bad)?;
        if format.as_deref() != Some(GRAPH_FORMAT) {
            return Err(bad(format!(
                "\"format\" is {format:?}, expected \"{GRAPH_FORMAT}\""
            )));
        }
        let arch = fields
            .string("arch")?
            .map_err(bad)?
            .unwrap_or_else(|| "custom".into());
        let input = root
            .get("input")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("missing object \"input\"".into()))?;
        let input = Fields {
            obj: input,
            what: "input".into(),
        };
        let channels = input.required_usize("channels").map_err(bad)?;
        let mode = match channels {
            1 => ChannelMode::Grayscale,
            3 => ChannelMode::Rgb,
            c => return Err(bad(format!("input.channels is {c}, expected 1 or 3"))),
        };
        let h = input.required_usize("height").map_err(bad)?;
        let w = input.required_usize("width").map_err(bad)?;
        let mean = input
            .floats("mean")
            .map_err(bad)?
            .unwrap_or(vec![0.0; channels]);
        let std = input
            .floats("std")
            .map_err(bad)?
            .unwrap_or(vec![1.0; channels]);
        let preprocess = Preprocess {
            size: [h, w],
            channels: mode,
            mean,
            std,
            scale: 1.0 / 255.0,
        };
        preprocess
            .validate()
            .map_err(|e| bad(format!("input: {e}")))?;
        let classes = match root.get("classes") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("\"classes\" must be an array of strings".into()))?,
            ),
            Some(_) => return Err(bad("\"classes\" must be an array of strings".into())),
        };
        let list = root
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing array \"layers\"".into()))?;
        let mut layers = Vec::with_capacity(list.len());
        let mut previous = INPUT.to_string();
        for (i, v) in list.iter().enumerate() {
            let obj = v
                .as_object()
                .ok_or_else(|| bad(format!("layers[{i}] is not an object")))?;
            let layer = parse_layer(obj, i, &previous, has_tensor).map_err(bad)?;
            previous = layer.name.clone();
            layers.push(layer);
        }
        let output = fields.string("output")?.map_err(bad)?.unwrap_or(previous);
        let spec = GraphSpec {
            arch,
            preprocess,
            classes,
            layers,
            output,
        };
        spec.validate(origin)?;
        Ok(spec)
    }
}

/// Typed field access on a JSON object, with errors naming the object and key.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    what: String,
}

impl Fields<'_> {
    fn string(&self, key: &str) -> Result<Result<Option<String>, String>, ModelError> {
        Ok(match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(format!("{}.{key} is {v}, expected a string", self.what)),
        })
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|u| u as usize).ok_or_else(|| {
                format!(
                    "{}.{key} is {v}, expected a non-negative integer",
                    self.what
                )
            }),
        }
    }

    fn required_usize(&self, key: &str) -> Result<usize, String> {
        if !self.obj.contains_key(key) {
            return Err(format!("{} lacks \"{key}\"", self.what));
        }
        self.usize_or(key, 0)
    }

    /// An int or `[h, w]`.
    fn pair(&self, key: &str) -> Result<Option<[usize; 2]>, String> {
        let err = |v: &Value| {
            format!(
                "{}.{key} is {v}, expected a non-negative integer or [h, w]",
                self.what
            )
        };
        match self.obj.get(key) {
            None => Ok(None),
            Some(v) => {
                if let Some(u) = v.as_u64() {
                    return Ok(Some([u as usize; 2]));
                }
                match v.as_array().map(|a| a.as_slice()) {
                    Some([a, b]) => match (a.as_u64(), b.as_u64()) {
                        (Some(a), Some(b)) => Ok(Some([a as usize, b as usize])),
                        _ => Err(err(v)),
                    },
                    _ => Err(err(v)),
                }
            }
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(format!(
                "{}.{key} is {v}, expected true or false",
                self.what
            )),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("{}.{key} is {v}, expected a number", self.what)),
        }
    }

    fn floats(&self, key: &str) -> Result<Option<Vec<f32>>, String> {
        match self.obj.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| format!("{}.{key} must be an array of numbers", self.what)),
            Some(v) => Err(format!(
                "{}.{key} is {v}, expected an array of numbers",
                self.what
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.obj.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| format!("{}.{key} must be an array of strings", self.what)),
            Some(v) => Err(format!(
                "{}.{key} is {v}, expected an array of strings",
                self.what
            )),
        }
    }

    /// A tensor name: the key's string, `null` for none, or `default` (kept only when
    /// `optional` is false or the file has it).
    fn tensor(
        &self,
        key: &str,
        default: String,
        optional: bool,
        has_tensor: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>, String> {
        match self.obj.get(key) {
            Some(Value::Null) if optional => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(format!(
                "{}.{key} is {v}, expected a tensor name",
                self.what
            )),
            None if optional && !has_tensor(&default) => Ok(None),
            None => Ok(Some(default)),
        }
    }
}

fn parse_layer(
    obj: &Map<String, Value>,
    index: usize,
    previous: &str,
    has_tensor: &dyn Fn(&str) -> bool,
) -> Result<LayerSpec, String> {
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(format!("layers[{index}] lacks a non-empty string \"name\"")),
    };
    let f = Fields {
        obj,
        what: format!("layer `{name}`"),
    };
    let op_name = match obj.get("op") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(format!("layer `{name}` lacks a string \"op\"")),
    };
    let stride_default = |kernel: [usize; 2]| -> Result<[usize; 2], String> {
        Ok(f.pair("stride")?.unwrap_or(kernel))
    };
    let kernel = || -> Result<[usize; 2], String> {
        f.pair("kernel")?
            .ok_or_else(|| format!("layer `{name}` ({op_name}) lacks \"kernel\""))
    };
    let weight = || -> Result<String, String> {
        Ok(
            f.tensor("weight", format!("{name}.weight"), false, has_tensor)?
                .unwrap_or_default(),
        )
    };
    let bias = || f.tensor("bias", format!("{name}.bias"), true, has_tensor);
    let op = match op_name.as_str() {
        "conv2d" => LayerOp::Conv2d {
            weight: weight()?,
            bias: bias()?,
            stride: f.pair("stride")?.unwrap_or([1, 1]),
            padding: f.pair("padding")?.unwrap_or([0, 0]),
            dilation: f.pair("dilation")?.unwrap_or([1, 1]),
            groups: f.usize_or("groups", 1)?,
        },
        "batchnorm2d" => {
            let t = |key: &str| -> Result<String, String> {
                Ok(f.tensor(key, format!("{name}.{key}"), false, has_tensor)?
                    .unwrap_or_default())
            };
            LayerOp::BatchNorm2d(BatchNormNames {
                weight: t("weight")?,
                bias: t("bias")?,
                running_mean: t("running_mean")?,
                running_var: t("running_var")?,
                eps: f.f64_or("eps", 1e-5)?,
            })
        }
        "relu" => LayerOp::Relu,
        "maxpool2d" => {
            let k = kernel()?;
            LayerOp::MaxPool2d {
                kernel: k,
                stride: stride_default(k)?,
                padding: f.pair("padding")?.unwrap_or([0, 0]),
                dilation: f.pair("dilation")?.unwrap_or([1, 1]),
                ceil_mode: f.bool_or("ceil_mode", false)?,
            }
        }
        "avgpool2d" => {
            let k = kernel()?;
            LayerOp::AvgPool2d {
                kernel: k,
                stride: stride_default(k)?,
                padding: f.pair("padding")?.unwrap_or([0, 0]),
                ceil_mode: f.bool_or("ceil_mode", false)?,
                count_include_pad: f.bool_or("count_include_pad", true)?,
            }
        }
        "adaptive_avgpool2d" => LayerOp::AdaptiveAvgPool2d {
            output: f
                .pair("output")?
                .ok_or_else(|| format!("layer `{name}` (adaptive_avgpool2d) lacks \"output\""))?,
        },
        "flatten" => LayerOp::Flatten,
        "dropout" | "identity" => LayerOp::Identity,
        "linear" => LayerOp::Linear {
            weight: weight()?,
            bias: bias()?,
        },
        "add" => LayerOp::Add,
        other => {
            return Err(format!(
                "layer `{name}` has unknown op \"{other}\" (supported: conv2d, batchnorm2d, \
                 relu, maxpool2d, avgpool2d, adaptive_avgpool2d, flatten, dropout, identity, \
                 linear, add)"
            ))
        }
    };
    let inputs = f
        .strings("inputs")?
        .unwrap_or_else(|| vec![previous.to_string()]);
    let aliases = f.strings("aliases")?.unwrap_or_default();
    Ok(LayerSpec {
        name,
        aliases,
        op,
        inputs,
    })
}
