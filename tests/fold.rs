//! Batch-norm folding: folded parameters against an f64 reference of the formula, the GPU
//! equivalence the loader relies on (conv then BN affine == conv with folded parameters), and
//! errors naming the bad parameter.

mod common;
use common::*;

use cnnvis::model::fold::{fold_batchnorm_into_conv, fold_batchnorm_into_linear, BatchNormParams};
use cnnvis::ops::conv2d::{conv2d_forward, conv2d_output_shape, Conv2dConfig};
use cnnvis::ops::elementwise::{batchnorm_affine_forward, batchnorm_to_affine};

/// Owned BN statistics with non-trivial values.
struct Bn {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    eps: f32,
}

impl Bn {
    fn random(rng: &mut Rng, c: usize) -> Self {
        Bn {
            gamma: rng.vec(c, 0.5, 2.0),
            beta: rng.vec(c, -1.0, 1.0),
            mean: rng.vec(c, -2.0, 2.0),
            var: rng.vec(c, 0.1, 3.0),
            eps: 1e-5,
        }
    }
    fn params(&self) -> BatchNormParams<'_> {
        BatchNormParams {
            gamma: &self.gamma,
            beta: &self.beta,
            running_mean: &self.mean,
            running_var: &self.var,
            eps: self.eps,
        }
    }
}

/// The formula, written per element in f64.
fn reference(w: &[f32], cout: usize, bias: Option<&[f32]>, bn: &Bn) -> (Vec<f64>, Vec<f64>) {
    let row = w.len() / cout;
    let mut wr = Vec::new();
    let mut br = Vec::new();
    for co in 0..cout {
        let s = bn.gamma[co] as f64 / (bn.var[co] as f64 + bn.eps as f64).sqrt();
        for i in 0..row {
            wr.push(w[co * row + i] as f64 * s);
        }
        let b = bias.map_or(0.0, |b| b[co] as f64);
        br.push((b - bn.mean[co] as f64) * s + bn.beta[co] as f64);
    }
    (wr, br)
}

#[test]
fn fold_conv_matches_cpu_reference() {
    let mut rng = Rng::new(1);
    for shape in [[5, 3, 3, 2], [6, 1, 3, 3]] {
        for with_bias in [false, true] {
            let cout = shape[0];
            let w = rng.vec(shape.iter().product(), -1.0, 1.0);
            let b = rng.vec(cout, -1.0, 1.0);
            let bias = with_bias.then_some(b.as_slice());
            let bn = Bn::random(&mut rng, cout);
            let (wf, bf) = fold_batchnorm_into_conv(&w, shape, bias, &bn.params()).unwrap();
            let (wr, br) = reference(&w, cout, bias, &bn);
            let name = format!("{shape:?} bias={with_bias}");
            // One f32 rounding of an O(1..6) value.
            assert_close(&format!("{name} weight"), &wf, &wr, 1e-6, 1e-6);
            assert_close(&format!("{name} bias"), &bf, &br, 1e-6, 1e-6);
        }
    }
}

#[test]
fn fold_linear_matches_cpu_reference() {
    let mut rng = Rng::new(2);
    for with_bias in [false, true] {
        let (m, k) = (7, 5);
        let w = rng.vec(m * k, -1.0, 1.0);
        let b = rng.vec(m, -1.0, 1.0);
        let bias = with_bias.then_some(b.as_slice());
        let bn = Bn::random(&mut rng, m);
        let (wf, bf) = fold_batchnorm_into_linear(&w, [m, k], bias, &bn.params()).unwrap();
        let (wr, br) = reference(&w, m, bias, &bn);
        assert_close("linear weight", &wf, &wr, 1e-6, 1e-6);
        assert_close("linear bias", &bf, &br, 1e-6, 1e-6);
    }
}

/// conv(x, w, b) then BN affine on the GPU, against conv(x, w', b') with folded parameters.
fn check_gpu_equivalence(
    name: &str,
    seed: u64,
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    cfg: Conv2dConfig,
    with_bias: bool,
) {
    let mut rng = Rng::new(seed);
    let cout = w_shape[0];
    let x = rng.vec(x_shape.iter().product(), -1.0, 1.0);
    let w = rng.vec(w_shape.iter().product(), -1.0, 1.0);
    let b = rng.vec(cout, -1.0, 1.0);
    let bias = with_bias.then_some(b.as_slice());
    let bn = Bn::random(&mut rng, cout);
    let y_shape = conv2d_output_shape(&x_shape, &w_shape, &cfg).unwrap();

    let xt = upload(&x_shape, &x);
    let wt = upload(&w_shape, &w);
    let bt = upload(&[cout], &b);
    let (scale, shift) = batchnorm_to_affine(&bn.gamma, &bn.beta, &bn.mean, &bn.var, bn.eps)
        .expect("batchnorm_to_affine");
    let scale_t = upload(&[cout], &scale);
    let shift_t = upload(&[cout], &shift);
    let conv_y = poisoned(&y_shape);
    let bn_y = poisoned(&y_shape);
    let d1 = conv2d_forward(ctx(), &conv_y, &xt, &wt, with_bias.then_some(&bt), &cfg).unwrap();
    let d2 = batchnorm_affine_forward(ctx(), &bn_y, &conv_y, &scale_t, &shift_t).unwrap();

    let (wf, bf) = fold_batchnorm_into_conv(&w, w_shape, bias, &bn.params()).unwrap();
    let wft = upload(&w_shape, &wf);
    let bft = upload(&[cout], &bf);
    let folded_y = poisoned(&y_shape);
    let d3 = conv2d_forward(ctx(), &folded_y, &xt, &wft, Some(&bft), &cfg).unwrap();
    run(&[&d1, &d2, &d3]);

    let unfolded: Vec<f64> = download(&bn_y).iter().map(|&v| v as f64).collect();
    assert!(
        unfolded.iter().all(|v| v.is_finite()),
        "{name}: unfolded path"
    );
    assert_close(name, &download(&folded_y), &unfolded, 1e-5, 1e-4);
}

#[test]
fn folded_conv_matches_conv_then_batchnorm_on_gpu() {
    let cfg = Conv2dConfig::new().padding(1).stride(2);
    for with_bias in [false, true] {
        check_gpu_equivalence(
            &format!("conv 5x3x3x2 bias={with_bias}"),
            10 + with_bias as u64,
            [2, 3, 9, 7],
            [5, 3, 3, 2],
            cfg,
            with_bias,
        );
    }
}

#[test]
fn folded_grouped_conv_matches_conv_then_batchnorm_on_gpu() {
    let cfg = Conv2dConfig::new().padding(1).stride(2).groups(3);
    for with_bias in [false, true] {
        check_gpu_equivalence(
            &format!("grouped conv g=3 bias={with_bias}"),
            20 + with_bias as u64,
            [2, 6, 9, 7],
            [6, 2, 3, 3],
            cfg,
            with_bias,
        );
    }
}

fn err_message(r: cnnvis::Result<(Vec<f32>, Vec<f32>)>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn fold_rejects_bad_parameters() {
    let mut rng = Rng::new(3);
    let shape = [5, 3, 3, 2];
    let w = rng.vec(90, -1.0, 1.0);
    let bn = Bn::random(&mut rng, 5);

    let mut short = Bn::random(&mut rng, 5);
    short.gamma.pop();
    let m = err_message(fold_batchnorm_into_conv(&w, shape, None, &short.params()));
    assert!(m.contains("gamma has length 4, expected 5"), "{m}");

    let m = err_message(fold_batchnorm_into_conv(
        &w[..89],
        shape,
        None,
        &bn.params(),
    ));
    assert!(
        m.contains("weight has 89 elements") && m.contains("needs 90"),
        "{m}"
    );

    let b = vec![0.0; 6];
    let m = err_message(fold_batchnorm_into_conv(&w, shape, Some(&b), &bn.params()));
    assert!(m.contains("bias has length 6, expected 5"), "{m}");

    let mut neg = Bn::random(&mut rng, 5);
    neg.var[2] = -neg.eps;
    let m = err_message(fold_batchnorm_into_conv(&w, shape, None, &neg.params()));
    assert!(m.contains("running_var[2]"), "{m}");

    let mut nan = Bn::random(&mut rng, 5);
    nan.var[0] = f32::INFINITY;
    let m = err_message(fold_batchnorm_into_conv(&w, shape, None, &nan.params()));
    assert!(m.contains("running_var[0]"), "{m}");

    let m = err_message(fold_batchnorm_into_linear(&w, [9, 10], None, &bn.params()));
    assert!(m.contains("gamma has length 5, expected 9"), "{m}");
}
