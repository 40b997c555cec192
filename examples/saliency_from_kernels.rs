//! The foundation at work: a tiny random-weight CNN built from cnnvis's kernels, its forward
//! pass and the gradient of one class score with respect to the input (a vanilla saliency
//! map) recorded into one submission, then the map printed as ASCII art.
//!
//! `cargo run --release --example saliency_from_kernels`

use cnnvis::gpu::{DType, Dispatch};
use cnnvis::ops::conv2d::{
    conv2d_backward_input, conv2d_forward, conv2d_output_shape, Conv2dConfig,
};
use cnnvis::ops::linear::{linear_backward_input, linear_forward};
use cnnvis::ops::pool::{
    maxpool2d_backward, maxpool2d_forward, maxpool2d_output_shape, MaxPool2dConfig,
};
use cnnvis::ops::random::{gaussian_fill, uniform_fill};
use cnnvis::ops::relu::{relu_backward, relu_forward, ReluRule};
use cnnvis::{GpuContext, Tensor};

fn main() -> cnnvis::Result<()> {
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.adapter());
    let (h, w, classes, target) = (24, 32, 10, 3);
    let conv = Conv2dConfig::new().padding(1);
    let pool = MaxPool2dConfig::new([2, 2]);

    let xs = [1, 3, h, w];
    let ws = [8, 3, 3, 3];
    let cs = conv2d_output_shape(&xs, &ws, &conv)?;
    let ps = maxpool2d_output_shape(&cs, &pool)?;
    let k: usize = ps[1..].iter().product();
    let empty = |s: &[usize]| Tensor::empty(&ctx, s, DType::F32);

    // weights and input from the seeded GPU RNG: nothing crosses the bus
    let (x, w1, b1, fc) = (
        empty(&xs)?,
        empty(&ws)?,
        empty(&[8])?,
        empty(&[classes, k])?,
    );
    let (c1, r1, p1, logits) = (empty(&cs)?, empty(&cs)?, empty(&ps)?, empty(&[1, classes])?);
    let idx = Tensor::empty(&ctx, &ps, DType::U32)?;
    let (dp1, dr1, dc1, dx) = (empty(&ps)?, empty(&cs)?, empty(&cs)?, empty(&xs)?);
    let mut onehot = vec![0.0; classes];
    onehot[target] = 1.0;
    let dlogits = Tensor::from_slice(&ctx, &[1, classes], &onehot)?;

    let init = [
        uniform_fill(&ctx, &x, 1, 0.0, 1.0)?,
        gaussian_fill(&ctx, &w1, 2, 0.0, 0.3)?,
        gaussian_fill(&ctx, &b1, 3, 0.0, 0.1)?,
        gaussian_fill(&ctx, &fc, 4, 0.0, 0.05)?,
    ];
    let step: Vec<Dispatch> = vec![
        conv2d_forward(&ctx, &c1, &x, &w1, Some(&b1), &conv)?,
        relu_forward(&ctx, &r1, &c1)?,
        maxpool2d_forward(&ctx, &p1, &idx, &r1, &pool)?,
        linear_forward(&ctx, &logits, &p1, &fc, None)?,
        linear_backward_input(&ctx, &dp1, &dlogits, &fc, false)?,
        maxpool2d_backward(&ctx, &dr1, &dp1, &idx, &pool, false)?,
        relu_backward(&ctx, &dc1, &dr1, &c1, ReluRule::Standard, false)?,
        conv2d_backward_input(&ctx, &dx, &dc1, &w1, &conv, false)?,
    ];
    let all: Vec<&Dispatch> = init.iter().chain(step.iter()).collect();
    ctx.run(&all)?;

    println!("logits: {:?}", logits.download(&ctx)?);
    let g = dx.download(&ctx)?;
    // keras-vis's default: absolute gradient, maximum over channels, normalized
    let map: Vec<f32> = (0..h * w)
        .map(|i| (0..3).map(|c| g[c * h * w + i].abs()).fold(0.0, f32::max))
        .collect();
    let max = map.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    let shades = [' ', '.', ':', '-', '=', '+', '*', '#', '%', '@'];
    println!("|d logit[{target}] / d input|, max over channels:");
    for row in map.chunks(w) {
        let line: String = row
            .iter()
            .map(|v| shades[((v / max) * 9.0).round() as usize])
            .collect();
        println!("  {line}");
    }
    Ok(())
}
