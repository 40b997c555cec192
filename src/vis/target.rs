//! What a visualization explains or maximizes: a class score, a regression output, a filter
//! or neuron of a named layer, or a sum of several. Every target but the softmax probability
//! is linear in one layer's output, `score = Σ w · activation`, so its gradient seed is the
//! weight vector `w`, written once per batch; the probability's seed needs the logits.

use crate::error::{Error, Result};
use crate::model::Model;

/// Which way a regression output should move (keras-vis's grad modifiers for regression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegressionGoal {
    /// Regions that increase the output (gradient as is).
    #[default]
    Increase,
    /// Regions that decrease it (`negate`).
    Decrease,
    /// Regions that keep it unchanged (`small_values`: `|1 / g|`).
    Maintain,
}

/// One image's target.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The pre-softmax score (logit) of a class: keras-vis's "swap softmax for linear".
    Class(usize),
    /// The softmax probability of a class.
    Probability(usize),
    /// The image's own top-1 class (by logit).
    TopClass,
    /// The sum of several output units' logits (keras-vis's `filter_indices` list).
    Classes(Vec<usize>),
    /// One regression output and the direction of interest.
    Regression {
        /// Output unit.
        output: usize,
        /// Increase, decrease or maintain.
        goal: RegressionGoal,
    },
    /// The spatial mean of one channel of a named layer.
    Filter {
        /// Layer name (module path).
        layer: String,
        /// Channel.
        channel: usize,
    },
    /// The sum of several channels' spatial means of a named layer.
    Filters {
        /// Layer name.
        layer: String,
        /// Channels.
        channels: Vec<usize>,
    },
    /// One activation `(channel, y, x)` of a named layer (`y = x = 0` for a dense layer).
    Neuron {
        /// Layer name.
        layer: String,
        /// Channel (or unit of a dense layer).
        channel: usize,
        /// Row.
        y: usize,
        /// Column.
        x: usize,
    },
    /// The mean of a whole layer's output.
    LayerMean {
        /// Layer name.
        layer: String,
    },
    /// A weighted sum of linear targets that read the same layer (Lucid's `a + 0.5 * b`):
    /// classes, regressions, filters, neurons, layer means, or further weighted sums.
    Weighted(Vec<(f32, Target)>),
}

impl Target {
    /// The layer the target reads, `None` for the model output.
    pub fn layer(&self) -> Option<&str> {
        match self {
            Target::Filter { layer, .. }
            | Target::Filters { layer, .. }
            | Target::Neuron { layer, .. }
            | Target::LayerMean { layer } => Some(layer),
            Target::Weighted(parts) => parts.first().and_then(|(_, t)| t.layer()),
            _ => None,
        }
    }

    /// The target and, for weighted sums, every component, depth first.
    fn leaves(&self) -> Vec<&Target> {
        match self {
            Target::Weighted(parts) => parts.iter().flat_map(|(_, t)| t.leaves()).collect(),
            t => vec![t],
        }
    }

    /// The keras-vis grad modifier a regression goal implies (`None` otherwise).
    pub fn regression_goal(&self) -> Option<RegressionGoal> {
        match self {
            Target::Regression { goal, .. } => Some(*goal),
            _ => None,
        }
    }
}

/// Targets of a batch resolved against a model: the layer every target reads and, per image,
/// the seed that starts the backward pass there.
#[derive(Debug, Clone)]
pub struct Objective {
    /// The layer the backward pass starts from.
    pub layer: String,
    /// Shape of that layer's output for one image.
    pub row_shape: Vec<usize>,
    targets: Vec<Target>,
}

/// Elements of one image's slice of a layer output.
fn row_len(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Objective {
    /// Resolves `targets` (one per image, or one for all) for a batch of `n` images. All
    /// targets must read the same layer; indices are checked against its shape.
    pub fn new(model: &Model, targets: &[Target], n: usize) -> Result<Objective> {
        const OP: &str = "target";
        if targets.is_empty() || (targets.len() != 1 && targets.len() != n) {
            return Err(Error::shape(
                OP,
                format!(
                    "{} targets for a batch of {n} images: give one for all or one per image",
                    targets.len()
                ),
            ));
        }
        let layer = targets[0]
            .layer()
            .unwrap_or(model.output_layer())
            .to_string();
        for t in targets.iter().flat_map(|t| t.leaves()) {
            let l = t.layer().unwrap_or(model.output_layer());
            if l != layer {
                return Err(Error::shape(
                    OP,
                    format!("targets read layers `{layer}` and `{l}`; one batch needs one layer"),
                ));
            }
        }
        let info = model
            .layers()
            .iter()
            .find(|l| l.name == layer || l.aliases.contains(&layer))
            .ok_or_else(|| {
                Error::Model(crate::model::weights::ModelError::UnknownLayer {
                    model: model.arch().to_string(),
                    name: layer.clone(),
                    known: model
                        .layers()
                        .iter()
                        .rev()
                        .take(8)
                        .map(|l| l.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            })?;
        // Shapes of `layers()` are for the native input size; channel counts do not depend on
        // it, spatial sizes may (checked again when seeds are built).
        let row_shape: Vec<usize> = info.output_shape[1..].to_vec();
        let units = row_shape.first().copied().unwrap_or(0);
        let out_units: usize = row_len(&row_shape);
        for t in targets {
            if let Target::Weighted(parts) = t {
                if parts.is_empty() {
                    return Err(Error::shape(OP, "an empty weighted sum"));
                }
                if let Some((w, _)) = parts.iter().find(|(w, _)| !w.is_finite()) {
                    return Err(Error::shape(OP, format!("weight {w} is not finite")));
                }
                if t.leaves()
                    .iter()
                    .any(|l| matches!(l, Target::TopClass | Target::Probability(_)))
                {
                    return Err(Error::shape(
                        OP,
                        "a weighted sum takes linear targets only (no top class or probability)",
                    ));
                }
            }
        }
        for t in targets.iter().flat_map(|t| t.leaves()) {
            let check = |what: &str, i: usize, max: usize| -> Result<()> {
                if i >= max {
                    return Err(Error::shape(
                        OP,
                        format!(
                            "{what} {i} is out of range: layer `{layer}` has {max} (valid 0..{max})"
                        ),
                    ));
                }
                Ok(())
            };
            match t {
                Target::Class(c) | Target::Probability(c) => check("class", *c, out_units)?,
                Target::Regression { output, .. } => check("output", *output, out_units)?,
                Target::Classes(cs) => {
                    if cs.is_empty() {
                        return Err(Error::shape(OP, "an empty list of classes"));
                    }
                    for c in cs {
                        check("class", *c, out_units)?;
                    }
                }
                Target::Filter { channel, .. } => check("channel", *channel, units)?,
                Target::Filters { channels, .. } => {
                    if channels.is_empty() {
                        return Err(Error::shape(OP, "an empty list of channels"));
                    }
                    for c in channels {
                        check("channel", *c, units)?;
                    }
                }
                Target::Neuron { channel, .. } => check("channel", *channel, units)?,
                Target::TopClass | Target::LayerMean { .. } | Target::Weighted(_) => {}
            }
            if matches!(t, Target::Probability(_) | Target::TopClass)
                && layer != model.output_layer()
            {
                return Err(Error::shape(
                    OP,
                    "probability and top-class targets read the model output",
                ));
            }
        }
        Ok(Objective {
            layer,
            row_shape,
            targets: targets.to_vec(),
        })
    }

    /// The target of image `i`.
    pub fn target(&self, i: usize) -> &Target {
        if self.targets.len() == 1 {
            &self.targets[0]
        } else {
            &self.targets[i]
        }
    }

    /// Whether seeds need the layer's values (top class or probability targets).
    pub fn needs_output(&self) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t, Target::TopClass | Target::Probability(_)))
    }

    /// The class index each image's target names, when it names one (the top class resolved
    /// from `output`), else -1: the raw files' `target` tensor.
    pub fn class_indices(&self, n: usize, output: Option<&[f32]>) -> Vec<i64> {
        (0..n)
            .map(|i| match self.target(i) {
                Target::Class(c) | Target::Probability(c) => *c as i64,
                Target::Regression { output, .. } => *output as i64,
                Target::TopClass => output
                    .map(|o| argmax(&o[i * o.len() / n..(i + 1) * o.len() / n]) as i64)
                    .unwrap_or(-1),
                Target::Filter { channel, .. } | Target::Neuron { channel, .. } => *channel as i64,
                _ => -1,
            })
            .collect()
    }

    /// The gradient seed `∂score/∂layer` for `n` images whose layer output has per-image shape
    /// `row_shape` (spatial sizes follow the actual input). `output` holds the layer's values
    /// `[n, row]` when [`Objective::needs_output`].
    pub fn seed(&self, n: usize, row_shape: &[usize], output: Option<&[f32]>) -> Result<Vec<f32>> {
        let row = row_len(row_shape);
        let mut seed = vec![0.0f32; n * row];
        let plane: usize = row_shape.iter().skip(1).product::<usize>().max(1);
        for i in 0..n {
            let s = &mut seed[i * row..(i + 1) * row];
            let out_row = || -> Result<&[f32]> {
                output.map(|o| &o[i * row..(i + 1) * row]).ok_or_else(|| {
                    Error::shape("target", "this target needs the model output values")
                })
            };
            fill_seed(
                self.target(i),
                1.0,
                s,
                row_shape,
                plane,
                &self.layer,
                out_row,
            )?;
        }
        Ok(seed)
    }

    /// Each image's score from the layer's values `[n, row]`: `seed · value` for the linear
    /// targets, the softmax probability for [`Target::Probability`].
    pub fn scores(&self, n: usize, row_shape: &[usize], values: &[f32]) -> Result<Vec<f32>> {
        let row = row_len(row_shape);
        let seeds = self.seed(n, row_shape, Some(values))?;
        Ok((0..n)
            .map(|i| {
                let v = &values[i * row..(i + 1) * row];
                match self.target(i) {
                    Target::Probability(c) => softmax(v)[*c] as f32,
                    _ => seeds[i * row..(i + 1) * row]
                        .iter()
                        .zip(v)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>() as f32,
                }
            })
            .collect())
    }
}

/// Adds `weight ×` the seed of `target` to one image's seed row `s`.
fn fill_seed<'a>(
    target: &Target,
    weight: f32,
    s: &mut [f32],
    row_shape: &[usize],
    plane: usize,
    layer: &str,
    out_row: impl Fn() -> Result<&'a [f32]> + Copy,
) -> Result<()> {
    let row = s.len();
    match target {
        Target::Class(c) => s[*c] += weight,
        Target::Classes(cs) => {
            for c in cs {
                s[*c] += weight;
            }
        }
        Target::Regression { output, goal } => {
            // Decrease explains the negated output; Maintain is a modifier of the final
            // gradient (small_values), applied by the method.
            s[*output] += if *goal == RegressionGoal::Decrease {
                -weight
            } else {
                weight
            };
        }
        Target::TopClass => {
            let o = out_row()?;
            s[argmax(o)] += weight;
        }
        Target::Probability(c) => {
            // d softmax_c / d z_j = p_c (δ_cj - p_j).
            let p = softmax(out_row()?);
            for (j, v) in s.iter_mut().enumerate() {
                *v += weight * (p[*c] * (if j == *c { 1.0 } else { 0.0 } - p[j])) as f32;
            }
        }
        Target::Filter { channel, .. } => {
            for v in &mut s[channel * plane..(channel + 1) * plane] {
                *v += weight / plane as f32;
            }
        }
        Target::Filters { channels, .. } => {
            for c in channels {
                for v in &mut s[c * plane..(c + 1) * plane] {
                    *v += weight / plane as f32;
                }
            }
        }
        Target::Neuron { channel, y, x, .. } => {
            let (h, w) = match row_shape {
                [_, h, w] => (*h, *w),
                _ => (1, 1),
            };
            if *y >= h || *x >= w {
                return Err(Error::shape(
                    "target",
                    format!(
                        "neuron ({channel}, {y}, {x}) is outside layer `{layer}` of shape {row_shape:?}"
                    ),
                ));
            }
            s[channel * plane + y * w + x] += weight;
        }
        Target::LayerMean { .. } => {
            for v in s.iter_mut() {
                *v += weight / row as f32;
            }
        }
        Target::Weighted(parts) => {
            for (w, t) in parts {
                fill_seed(t, weight * w, s, row_shape, plane, layer, out_row)?;
            }
        }
    }
    Ok(())
}

/// Index of the largest value (the first on ties, as torch.argmax).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Numerically stable softmax in f64.
pub fn softmax(v: &[f32]) -> Vec<f64> {
    let m = v.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let e: Vec<f64> = v.iter().map(|&x| (x as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}
