//! Eval-mode batch-norm folding: a BatchNorm that follows a conv (torchvision ResNets,
//! `vgg*_bn`) or a Linear is an affine map per output channel, so at load time it is merged
//! into the preceding layer's weight and bias and the network runs one op instead of two.

use crate::error::Error;
use crate::Result;

/// Eval-mode batch-norm statistics of one layer, as a PyTorch state_dict holds them
/// (`weight` = gamma, `bias` = beta, `running_mean`, `running_var`); one value per channel.
#[derive(Debug, Clone, Copy)]
pub struct BatchNormParams<'a> {
    /// Learned scale (`weight` in the state_dict).
    pub gamma: &'a [f32],
    /// Learned shift (`bias` in the state_dict).
    pub beta: &'a [f32],
    /// Running mean of the layer input.
    pub running_mean: &'a [f32],
    /// Running (biased) variance of the layer input.
    pub running_var: &'a [f32],
    /// Added to the variance; PyTorch's default is 1e-5.
    pub eps: f32,
}

/// Folds a BatchNorm2d into the conv before it: returns (weight `[Cout, Cin/g, Kh, Kw]`, bias
/// `[Cout]`) with `W' = W * s[co]`, `b' = (b - mean) * s + beta`, `s = gamma / sqrt(var + eps)`.
pub fn fold_batchnorm_into_conv(
    weight: &[f32],
    weight_shape: [usize; 4],
    bias: Option<&[f32]>,
    bn: &BatchNormParams,
) -> Result<(Vec<f32>, Vec<f32>)> {
    fold_rows("fold_batchnorm_into_conv", weight, &weight_shape, bias, bn)
}

/// Folds a BatchNorm1d into the Linear before it (weight `[M, K]`, bias `[M]`); same formula
/// as [`fold_batchnorm_into_conv`] with one row per output feature.
pub fn fold_batchnorm_into_linear(
    weight: &[f32],
    weight_shape: [usize; 2],
    bias: Option<&[f32]>,
    bn: &BatchNormParams,
) -> Result<(Vec<f32>, Vec<f32>)> {
    fold_rows(
        "fold_batchnorm_into_linear",
        weight,
        &weight_shape,
        bias,
        bn,
    )
}

/// The shared fold: `shape[0]` output channels, each owning a contiguous row of the weight.
fn fold_rows(
    op: &'static str,
    weight: &[f32],
    shape: &[usize],
    bias: Option<&[f32]>,
    bn: &BatchNormParams,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let cout = shape[0];
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::shape(op, format!("weight shape {shape:?} overflows usize")))?;
    if weight.len() != numel {
        return Err(Error::shape(
            op,
            format!(
                "weight has {} elements but its shape {shape:?} needs {numel}",
                weight.len()
            ),
        ));
    }
    let per_channel = [
        ("gamma", Some(bn.gamma)),
        ("beta", Some(bn.beta)),
        ("running_mean", Some(bn.running_mean)),
        ("running_var", Some(bn.running_var)),
        ("bias", bias),
    ];
    for (name, v) in per_channel {
        if let Some(v) = v {
            if v.len() != cout {
                return Err(Error::shape(
                    op,
                    format!(
                        "{name} has length {}, expected {cout} (output channels of weight {shape:?})",
                        v.len()
                    ),
                ));
            }
        }
    }
    let row = numel.checked_div(cout).unwrap_or(0);
    let mut w_out = Vec::with_capacity(numel);
    let mut b_out = Vec::with_capacity(cout);
    for c in 0..cout {
        // f64 so the fold adds no rounding beyond the final cast to f32.
        let denom = bn.running_var[c] as f64 + bn.eps as f64;
        if !denom.is_finite() || denom <= 0.0 {
            return Err(Error::shape(
                op,
                format!(
                    "running_var[{c}] + eps = {} + {} = {denom}, expected finite and > 0",
                    bn.running_var[c], bn.eps
                ),
            ));
        }
        let s = bn.gamma[c] as f64 / denom.sqrt();
        w_out.extend(
            weight[c * row..(c + 1) * row]
                .iter()
                .map(|&w| (w as f64 * s) as f32),
        );
        let b = bias.map_or(0.0, |b| b[c] as f64);
        b_out.push(((b - bn.running_mean[c] as f64) * s + bn.beta[c] as f64) as f32);
    }
    Ok((w_out, b_out))
}
