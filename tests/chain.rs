//! The kernels composed: a small residual CNN's forward and backward recorded into ONE
//! submission, its input gradient checked against finite differences of the whole GPU forward.
//! This is what every visualization does; a wrong `accumulate`, a wrong saved tensor or a
//! binding mix-up between ops shows up here even when each kernel passes alone.

mod common;
use common::*;

use cnnvis::gpu::{DType, Dispatch};
use cnnvis::ops::conv2d::{
    conv2d_backward_input, conv2d_forward, conv2d_output_shape, Conv2dConfig,
};
use cnnvis::ops::elementwise::{
    add_backward, add_forward, batchnorm_affine_backward_input, batchnorm_affine_forward,
};
use cnnvis::ops::linear::{linear_backward_input, linear_forward};
use cnnvis::ops::pool::{
    global_avgpool_backward, global_avgpool_forward, maxpool2d_backward, maxpool2d_forward,
    maxpool2d_output_shape, MaxPool2dConfig,
};
use cnnvis::ops::relu::{relu_backward, relu_forward, ReluRule};
use cnnvis::ops::softmax::{log_softmax_backward, log_softmax_forward};
use cnnvis::Tensor;

const CLASSES: usize = 5;

struct Net {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    w3: Tensor,
    bn_scale: Tensor,
    bn_shift: Tensor,
    fc_w: Tensor,
    fc_b: Tensor,
}

/// Activations and gradients, allocated once (llm.c style), shapes in comments.
struct Buffers {
    x: Tensor,      // [2, 3, 11, 9]
    c1: Tensor,     // [2, 6, 11, 9] conv 3x3 pad 1
    r1: Tensor,     // relu
    p1: Tensor,     // [2, 6, 6, 5] maxpool 2 ceil
    idx: Tensor,    // argmax
    c2: Tensor,     // [2, 6, 6, 5] conv 3x3 pad 1 (residual branch)
    bn: Tensor,     // batch-norm affine
    r2: Tensor,     // relu
    s: Tensor,      // p1 + r2
    c3: Tensor,     // [2, 8, 3, 3] conv 3x3 stride 2 pad 1
    r3: Tensor,     // relu
    g: Tensor,      // [2, 8, 1, 1] global avg
    logits: Tensor, // [2, 5]
    logp: Tensor,   // log-softmax
    dlogp: Tensor,
    dlogits: Tensor,
    dg: Tensor,
    dr3: Tensor,
    dc3: Tensor,
    ds: Tensor,
    dr2: Tensor,
    dbn: Tensor,
    dc2: Tensor,
    dp1: Tensor,
    dr1: Tensor,
    dc1: Tensor,
    dx: Tensor,
}

fn cfg3() -> Conv2dConfig {
    Conv2dConfig::new().padding(1)
}

fn pool_cfg() -> MaxPool2dConfig {
    MaxPool2dConfig::new([2, 2]).with_ceil_mode(true)
}

fn buffers() -> Buffers {
    let c = ctx();
    let e = |s: &[usize]| Tensor::empty(c, s, DType::F32).unwrap();
    let xs = [2, 3, 11, 9];
    let c1s = conv2d_output_shape(&xs, &[6, 3, 3, 3], &cfg3()).unwrap();
    let p1s = maxpool2d_output_shape(&c1s, &pool_cfg()).unwrap();
    let c3s = conv2d_output_shape(&p1s, &[8, 6, 3, 3], &cfg3().stride(2)).unwrap();
    assert_eq!(p1s, [2, 6, 6, 5]);
    assert_eq!(c3s, [2, 8, 3, 3]);
    Buffers {
        x: e(&xs),
        c1: e(&c1s),
        r1: e(&c1s),
        p1: e(&p1s),
        idx: Tensor::empty(c, &p1s, DType::U32).unwrap(),
        c2: e(&p1s),
        bn: e(&p1s),
        r2: e(&p1s),
        s: e(&p1s),
        c3: e(&c3s),
        r3: e(&c3s),
        g: e(&[2, 8, 1, 1]),
        logits: e(&[2, CLASSES]),
        logp: e(&[2, CLASSES]),
        dlogp: e(&[2, CLASSES]),
        dlogits: e(&[2, CLASSES]),
        dg: e(&[2, 8, 1, 1]),
        dr3: e(&c3s),
        dc3: e(&c3s),
        ds: e(&p1s),
        dr2: e(&p1s),
        dbn: e(&p1s),
        dc2: e(&p1s),
        dp1: e(&p1s),
        dr1: e(&c1s),
        dc1: e(&c1s),
        dx: e(&xs),
    }
}

fn forward(net: &Net, b: &Buffers) -> Vec<Dispatch> {
    let c = ctx();
    vec![
        conv2d_forward(c, &b.c1, &b.x, &net.w1, Some(&net.b1), &cfg3()).unwrap(),
        relu_forward(c, &b.r1, &b.c1).unwrap(),
        maxpool2d_forward(c, &b.p1, &b.idx, &b.r1, &pool_cfg()).unwrap(),
        conv2d_forward(c, &b.c2, &b.p1, &net.w2, None, &cfg3()).unwrap(),
        batchnorm_affine_forward(c, &b.bn, &b.c2, &net.bn_scale, &net.bn_shift).unwrap(),
        relu_forward(c, &b.r2, &b.bn).unwrap(),
        add_forward(c, &b.s, &b.p1, &b.r2).unwrap(),
        conv2d_forward(c, &b.c3, &b.s, &net.w3, None, &cfg3().stride(2)).unwrap(),
        relu_forward(c, &b.r3, &b.c3).unwrap(),
        global_avgpool_forward(c, &b.g, &b.r3).unwrap(),
        linear_forward(c, &b.logits, &b.g, &net.fc_w, Some(&net.fc_b)).unwrap(),
        log_softmax_forward(c, &b.logp, &b.logits).unwrap(),
    ]
}

/// Backward from dlogp to dx. p1 feeds both the residual branch and the skip connection, so
/// its gradient is written by one and accumulated by the other.
fn backward(net: &Net, b: &Buffers, rule: ReluRule) -> Vec<Dispatch> {
    let c = ctx();
    vec![
        log_softmax_backward(c, &b.dlogits, &b.dlogp, &b.logp, false).unwrap(),
        linear_backward_input(c, &b.dg, &b.dlogits, &net.fc_w, false).unwrap(),
        global_avgpool_backward(c, &b.dr3, &b.dg, false).unwrap(),
        relu_backward(c, &b.dc3, &b.dr3, &b.c3, rule, false).unwrap(),
        conv2d_backward_input(c, &b.ds, &b.dc3, &net.w3, &cfg3().stride(2), false).unwrap(),
        add_backward(c, &b.dr2, &b.ds, false).unwrap(),
        relu_backward(c, &b.dbn, &b.dr2, &b.bn, rule, false).unwrap(),
        batchnorm_affine_backward_input(c, &b.dc2, &b.dbn, &net.bn_scale, false).unwrap(),
        conv2d_backward_input(c, &b.dp1, &b.dc2, &net.w2, &cfg3(), false).unwrap(),
        add_backward(c, &b.dp1, &b.ds, true).unwrap(), // skip connection: accumulate
        maxpool2d_backward(c, &b.dr1, &b.dp1, &b.idx, &pool_cfg(), false).unwrap(),
        relu_backward(c, &b.dc1, &b.dr1, &b.c1, rule, false).unwrap(),
        conv2d_backward_input(c, &b.dx, &b.dc1, &net.w1, &cfg3(), false).unwrap(),
    ]
}

fn net(rng: &mut Rng) -> Net {
    let mut t = |s: &[usize], lo: f32, hi: f32| {
        let n: usize = s.iter().product();
        upload(s, &rng.vec(n, lo, hi))
    };
    Net {
        w1: t(&[6, 3, 3, 3], -0.5, 0.5),
        b1: t(&[6], -0.1, 0.1),
        w2: t(&[6, 6, 3, 3], -0.3, 0.3),
        w3: t(&[8, 6, 3, 3], -0.3, 0.3),
        bn_scale: t(&[6], 0.5, 1.5),
        bn_shift: t(&[6], -0.2, 0.2),
        fc_w: t(&[CLASSES, 8], -1.0, 1.0),
        fc_b: t(&[CLASSES], -0.1, 0.1),
    }
}

#[test]
fn residual_cnn_input_gradient_in_one_submission_matches_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(42);
    let net = net(&mut rng);
    let b = buffers();
    let fwd = forward(&net, &b);
    let bwd = backward(&net, &b, ReluRule::Standard);
    let xs = rng.vec(b.x.numel(), -1.0, 1.0);
    let w = rng.vec(2 * CLASSES, -1.0, 1.0);
    b.x.write(c, &xs).unwrap();
    b.dlogp.write(c, &w).unwrap();
    // forward + backward: one encoder, one pass, one submission
    let all: Vec<&Dispatch> = fwd.iter().chain(bwd.iter()).collect();
    run(&all);
    let grad = download(&b.dx);
    assert!(grad.iter().all(|g| g.is_finite()));
    assert!(grad.iter().any(|&g| g.abs() > 1e-4), "gradient vanished");
    let fwd_refs: Vec<&Dispatch> = fwd.iter().collect();
    // The same forward dispatches are re-recorded for every probe: buffers and bind groups are
    // built once and reused.
    let loss = |v: &[f32]| {
        b.x.write(c, v).unwrap();
        run(&fwd_refs);
        weighted_sum(&w, &download(&b.logp))
    };
    fd_check(
        "residual cnn dx",
        &xs,
        &grad,
        1e-3,
        2e-2,
        60,
        &mut rng,
        loss,
    );
}

#[test]
fn guided_chain_differs_from_standard_only_by_rectified_gradients() {
    let c = ctx();
    let mut rng = Rng::new(7);
    let net = net(&mut rng);
    let b = buffers();
    let fwd = forward(&net, &b);
    let std_bwd = backward(&net, &b, ReluRule::Standard);
    let guided_bwd = backward(&net, &b, ReluRule::Guided);
    b.x.write(c, &rng.vec(b.x.numel(), -1.0, 1.0)).unwrap();
    b.dlogp.write(c, &rng.vec(2 * CLASSES, -1.0, 1.0)).unwrap();
    let all: Vec<&Dispatch> = fwd.iter().chain(std_bwd.iter()).collect();
    run(&all);
    let standard = download(&b.dx);
    let guided_all: Vec<&Dispatch> = guided_bwd.iter().collect();
    run(&guided_all);
    let guided = download(&b.dx);
    // every gradient that passed a guided ReLU is non-negative there
    assert!(download(&b.dc1).iter().all(|&g| g >= 0.0));
    assert!(standard
        .iter()
        .zip(&guided)
        .any(|(a, b)| (a - b).abs() > 1e-6));
}
