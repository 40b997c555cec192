//! Pooling (max with argmax, average, adaptive average, global average): forward and backward
//! against CPU references transcribed from PyTorch's CPU kernels, finite differences of every
//! backward, PyTorch's output-size rules and the shapes that must be refused.

mod common;
use common::*;

use cnnvis::ops::pool::*;
use cnnvis::ops::relu::ReluRule;
use cnnvis::Tensor;

// ---------------------------------------------------------------------------------------------
// CPU references, straight from PyTorch (aten/src/ATen/native/Pool.h pooling_output_shape,
// cpu/MaxPoolKernel.cpp, cpu/AvgPoolKernel.cpp, cpu/AdaptiveAvgPoolKernel.cpp).

/// `pooling_output_shape` with `pool2d_shape_check`'s refusals as None.
fn torch_out_size(
    input: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    ceil: bool,
) -> Option<usize> {
    if k == 0 || s == 0 || d == 0 || p > k / 2 {
        return None;
    }
    let (i, k, s, p, d) = (input as i64, k as i64, s as i64, p as i64, d as i64);
    let num = i + 2 * p - d * (k - 1) - 1 + if ceil { s - 1 } else { 0 };
    let mut o = num.div_euclid(s) + 1; // div_rtn: rounds toward -inf
    if ceil && (o - 1) * s >= i + p {
        o -= 1;
    }
    (o >= 1).then_some(o as usize)
}

fn max_out_shape(shape: [usize; 4], cfg: &MaxPool2dConfig) -> [usize; 4] {
    let f = |a: usize| {
        torch_out_size(
            shape[2 + a],
            cfg.kernel[a],
            cfg.stride[a],
            cfg.padding[a],
            cfg.dilation[a],
            cfg.ceil_mode,
        )
        .expect("valid case")
    };
    [shape[0], shape[1], f(0), f(1)]
}

fn avg_out_shape(shape: [usize; 4], cfg: &AvgPool2dConfig) -> [usize; 4] {
    let f = |a: usize| {
        torch_out_size(
            shape[2 + a],
            cfg.kernel[a],
            cfg.stride[a],
            cfg.padding[a],
            1,
            cfg.ceil_mode,
        )
        .expect("valid case")
    };
    [shape[0], shape[1], f(0), f(1)]
}

/// cpu_max_pool: y and the in-plane argmax; `val > max || isnan(val)` keeps the first maximum.
fn maxpool_ref(xs: &[f32], shape: [usize; 4], cfg: &MaxPool2dConfig) -> (Vec<f32>, Vec<u32>) {
    let [n, c, ih, iw] = shape;
    let [_, _, oh, ow] = max_out_shape(shape, cfg);
    let (ih, iw) = (ih as i64, iw as i64);
    let [kh, kw] = cfg.kernel.map(|v| v as i64);
    let [sh, sw] = cfg.stride.map(|v| v as i64);
    let [ph, pw] = cfg.padding.map(|v| v as i64);
    let [dh, dw] = cfg.dilation.map(|v| v as i64);
    let mut y = Vec::new();
    let mut idx = Vec::new();
    for plane in 0..n * c {
        let xp = &xs[plane * (ih * iw) as usize..];
        for o_h in 0..oh as i64 {
            for o_w in 0..ow as i64 {
                let mut h0 = o_h * sh - ph;
                let mut w0 = o_w * sw - pw;
                let h1 = (h0 + (kh - 1) * dh + 1).min(ih);
                let w1 = (w0 + (kw - 1) * dw + 1).min(iw);
                while h0 < 0 {
                    h0 += dh;
                }
                while w0 < 0 {
                    w0 += dw;
                }
                let mut maxindex = h0 * iw + w0;
                let mut maxval = f32::NEG_INFINITY;
                let mut h = h0;
                while h < h1 {
                    let mut w = w0;
                    while w < w1 {
                        let index = h * iw + w;
                        let val = xp[index as usize];
                        if val > maxval || val.is_nan() {
                            maxval = val;
                            maxindex = index;
                        }
                        w += dw;
                    }
                    h += dh;
                }
                y.push(maxval);
                idx.push(maxindex as u32);
            }
        }
    }
    (y, idx)
}

/// cpu_max_pool_backward: a scatter of dy to the argmax (the GPU gathers instead).
fn maxpool_backward_ref(
    dy: &[f32],
    argmax: &[u32],
    shape: [usize; 4],
    out: [usize; 4],
) -> Vec<f64> {
    let plane_in = shape[2] * shape[3];
    let plane_out = out[2] * out[3];
    let mut dx = vec![0.0f64; shape.iter().product()];
    for (o, (&g, &a)) in dy.iter().zip(argmax).enumerate() {
        let plane = o / plane_out;
        dx[plane * plane_in + a as usize] += g as f64;
    }
    dx
}

/// cpu_avg_pool's window: (clipped start/end, divisor).
fn avg_window(
    o_h: i64,
    o_w: i64,
    ih: i64,
    iw: i64,
    cfg: &AvgPool2dConfig,
) -> (i64, i64, i64, i64, f64) {
    let [kh, kw] = cfg.kernel.map(|v| v as i64);
    let [sh, sw] = cfg.stride.map(|v| v as i64);
    let [ph, pw] = cfg.padding.map(|v| v as i64);
    let mut h0 = o_h * sh - ph;
    let mut w0 = o_w * sw - pw;
    let mut h1 = (h0 + kh).min(ih + ph);
    let mut w1 = (w0 + kw).min(iw + pw);
    let pool_size = (h1 - h0) * (w1 - w0);
    h0 = h0.max(0);
    w0 = w0.max(0);
    h1 = h1.min(ih);
    w1 = w1.min(iw);
    let divide = if cfg.count_include_pad {
        pool_size
    } else {
        (h1 - h0) * (w1 - w0)
    };
    (h0, h1, w0, w1, divide as f64)
}

fn avgpool_ref(xs: &[f32], shape: [usize; 4], cfg: &AvgPool2dConfig) -> Vec<f64> {
    let [n, c, ih, iw] = shape;
    let [_, _, oh, ow] = avg_out_shape(shape, cfg);
    let mut y = Vec::new();
    for plane in 0..n * c {
        let xp = &xs[plane * ih * iw..];
        for o_h in 0..oh as i64 {
            for o_w in 0..ow as i64 {
                let (h0, h1, w0, w1, div) = avg_window(o_h, o_w, ih as i64, iw as i64, cfg);
                if h0 >= h1 || w0 >= w1 {
                    y.push(0.0);
                    continue;
                }
                let mut s = 0.0f64;
                for h in h0..h1 {
                    for w in w0..w1 {
                        s += xp[(h * iw as i64 + w) as usize] as f64;
                    }
                }
                y.push(s / div);
            }
        }
    }
    y
}

fn avgpool_backward_ref(dy: &[f32], shape: [usize; 4], cfg: &AvgPool2dConfig) -> Vec<f64> {
    let [n, c, ih, iw] = shape;
    let [_, _, oh, ow] = avg_out_shape(shape, cfg);
    let mut dx = vec![0.0f64; shape.iter().product()];
    for plane in 0..n * c {
        for o_h in 0..oh {
            for o_w in 0..ow {
                let (h0, h1, w0, w1, div) =
                    avg_window(o_h as i64, o_w as i64, ih as i64, iw as i64, cfg);
                let g = dy[(plane * oh + o_h) * ow + o_w] as f64 / div;
                for h in h0..h1 {
                    for w in w0..w1 {
                        dx[plane * ih * iw + (h * iw as i64 + w) as usize] += g;
                    }
                }
            }
        }
    }
    dx
}

fn adaptive_range(o: usize, out: usize, input: usize) -> (usize, usize) {
    (o * input / out, ((o + 1) * input).div_ceil(out))
}

fn adaptive_ref(xs: &[f32], shape: [usize; 4], out: [usize; 2]) -> Vec<f64> {
    let [n, c, ih, iw] = shape;
    let mut y = Vec::new();
    for plane in 0..n * c {
        for o_h in 0..out[0] {
            let (h0, h1) = adaptive_range(o_h, out[0], ih);
            for o_w in 0..out[1] {
                let (w0, w1) = adaptive_range(o_w, out[1], iw);
                let mut s = 0.0f64;
                for h in h0..h1 {
                    for w in w0..w1 {
                        s += xs[(plane * ih + h) * iw + w] as f64;
                    }
                }
                y.push(s / ((h1 - h0) * (w1 - w0)) as f64);
            }
        }
    }
    y
}

fn adaptive_backward_ref(dy: &[f32], shape: [usize; 4], out: [usize; 2]) -> Vec<f64> {
    let [n, c, ih, iw] = shape;
    let mut dx = vec![0.0f64; shape.iter().product()];
    for plane in 0..n * c {
        for o_h in 0..out[0] {
            let (h0, h1) = adaptive_range(o_h, out[0], ih);
            for o_w in 0..out[1] {
                let (w0, w1) = adaptive_range(o_w, out[1], iw);
                let g = dy[(plane * out[0] + o_h) * out[1] + o_w] as f64
                    / ((h1 - h0) * (w1 - w0)) as f64;
                for h in h0..h1 {
                    for w in w0..w1 {
                        dx[(plane * ih + h) * iw + w] += g;
                    }
                }
            }
        }
    }
    dx
}

fn global_ref(xs: &[f32], shape: [usize; 4]) -> Vec<f64> {
    let hw = shape[2] * shape[3];
    xs.chunks(hw)
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() / hw as f64)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// GPU helpers.

fn u32_poisoned(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_u32(ctx(), shape, &vec![u32::MAX; n]).expect("upload u32")
}

fn download_u32(t: &Tensor) -> Vec<u32> {
    t.download_u32(ctx()).expect("download u32")
}

/// Exact f32 equality that treats NaN as equal to NaN and -inf to -inf.
fn assert_same(name: &str, gpu: &[f32], reference: &[f32]) {
    assert_eq!(gpu.len(), reference.len(), "{name}: length");
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        assert!(
            g == r || (g.is_nan() && r.is_nan()),
            "{name}: element {i}: gpu {g} vs reference {r}"
        );
    }
}

fn gpu_maxpool(shape: [usize; 4], xs: &[f32], cfg: &MaxPool2dConfig) -> (Vec<f32>, Vec<u32>) {
    let out = maxpool2d_output_shape(&shape, cfg).unwrap();
    let x = upload(&shape, xs);
    let (y, am) = (poisoned(&out), u32_poisoned(&out));
    run(&[&maxpool2d_forward(ctx(), &y, &am, &x, cfg).unwrap()]);
    (download(&y), download_u32(&am))
}

fn gpu_avgpool(shape: [usize; 4], xs: &[f32], cfg: &AvgPool2dConfig) -> Vec<f32> {
    let out = avgpool2d_output_shape(&shape, cfg).unwrap();
    let x = upload(&shape, xs);
    let y = poisoned(&out);
    run(&[&avgpool2d_forward(ctx(), &y, &x, cfg).unwrap()]);
    download(&y)
}

fn gpu_adaptive(shape: [usize; 4], xs: &[f32], out: [usize; 2]) -> Vec<f32> {
    let x = upload(&shape, xs);
    let y = poisoned(&[shape[0], shape[1], out[0], out[1]]);
    run(&[&adaptive_avgpool2d_forward(ctx(), &y, &x).unwrap()]);
    download(&y)
}

fn gpu_global(shape: [usize; 4], xs: &[f32]) -> Vec<f32> {
    let x = upload(&shape, xs);
    let y = poisoned(&[shape[0], shape[1], 1, 1]);
    run(&[&global_avgpool_forward(ctx(), &y, &x).unwrap()]);
    download(&y)
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Values from {0, 1, 2}: many exact ties inside every window.
fn tie_heavy(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.int(0, 2) as f32).collect()
}

/// A random permutation of `0..n` scaled by `spacing`: distinct values at least `spacing` apart.
fn distinct(rng: &mut Rng, n: usize, spacing: f32) -> Vec<f32> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.int(0, i));
    }
    v.into_iter()
        .map(|k| (k as f32 - n as f32 / 2.0) * spacing)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Cases.

fn max_cases() -> Vec<([usize; 4], MaxPool2dConfig)> {
    let k = MaxPool2dConfig::new;
    vec![
        // overlapping windows; ceil mode adds a row and a column here (3x4 -> 4x5)
        ([2, 3, 8, 10], k([3, 3]).with_stride([2, 2])),
        (
            [2, 3, 8, 10],
            k([3, 3]).with_stride([2, 2]).with_ceil_mode(true),
        ),
        ([1, 2, 8, 6], k([2, 2])),
        (
            [2, 2, 7, 5],
            k([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_ceil_mode(true),
        ),
        // ceil mode: 2 -> 3 without padding; with padding the last window would start in the
        // right padding, so PyTorch's rule trims it back to 3
        ([1, 3, 5, 5], k([2, 2]).with_ceil_mode(true)),
        (
            [1, 3, 5, 5],
            k([2, 2]).with_padding([1, 1]).with_ceil_mode(true),
        ),
        (
            [1, 1, 6, 7],
            k([3, 2]).with_stride([1, 2]).with_padding([1, 1]),
        ),
        (
            [2, 1, 9, 8],
            k([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_dilation([2, 2]),
        ),
        (
            [3, 2, 11, 13],
            k([2, 3]).with_stride([3, 2]).with_ceil_mode(true),
        ),
        // ResNet's pool (the _3x3s2 backward): even and odd sizes
        (
            [2, 3, 8, 10],
            k([3, 3]).with_stride([2, 2]).with_padding([1, 1]),
        ),
        (
            [1, 2, 9, 7],
            k([3, 3]).with_stride([2, 2]).with_padding([1, 1]),
        ),
        ([1, 1, 1, 1], k([1, 1])),
        // kernel larger than the input: only ceil mode accepts it (output 1x1)
        ([1, 2, 3, 3], k([5, 5]).with_ceil_mode(true)),
    ]
}

fn avg_cases() -> Vec<([usize; 4], AvgPool2dConfig)> {
    let k = AvgPool2dConfig::new;
    let bases = [
        (
            [2, 3, 8, 10],
            k([3, 3]).with_stride([2, 2]).with_padding([1, 1]),
        ),
        ([1, 2, 5, 5], k([2, 2]).with_padding([1, 1])),
        ([1, 2, 5, 5], k([2, 2])),
        (
            [2, 1, 7, 6],
            k([3, 2]).with_stride([2, 1]).with_padding([1, 1]),
        ),
        (
            [3, 2, 11, 13],
            k([2, 3]).with_stride([3, 2]).with_padding([1, 1]),
        ),
        ([1, 2, 9, 7], k([3, 3]).with_stride([2, 2])),
        ([1, 1, 3, 3], k([5, 5])),
    ];
    let mut cases = Vec::new();
    for (shape, cfg) in bases {
        for ceil in [false, true] {
            for cip in [true, false] {
                let c = cfg.with_ceil_mode(ceil).with_count_include_pad(cip);
                if avgpool2d_output_shape(&shape, &c).is_ok() {
                    cases.push((shape, c));
                }
            }
        }
    }
    cases
}

const ADAPTIVE_CASES: &[([usize; 4], [usize; 2])] = &[
    ([2, 3, 13, 11], [7, 7]),
    ([1, 2, 3, 3], [7, 7]),
    ([2, 2, 14, 14], [7, 7]),
    ([1, 1, 1, 1], [7, 7]),
    ([1, 2, 5, 5], [7, 7]),
    ([2, 1, 8, 9], [3, 5]),
    ([1, 1, 6, 4], [6, 4]),
    ([1, 2, 7, 10], [1, 1]),
];

const GLOBAL_CASES: &[[usize; 4]] = &[
    [2, 3, 7, 7],
    [1, 1, 1, 1],
    [1, 300, 3, 5],
    [1, 2, 16, 32], // 512: the largest plane summed serially
    [1, 2, 27, 19], // 513: the smallest plane summed by a workgroup
    [2, 5, 33, 29],
    [1, 3, 64, 64],
];

// ---------------------------------------------------------------------------------------------
// Output sizes.

/// One axis of a pool: (input, kernel, stride, padding, dilation, ceil_mode).
type PoolAxis = (usize, usize, usize, usize, usize, bool);

#[test]
fn pool_output_shapes_match_pytorch() {
    // (input, kernel, stride, padding, dilation, ceil) -> PyTorch's output size
    let known: &[(PoolAxis, usize)] = &[
        ((224, 2, 2, 0, 1, false), 112), // VGG
        ((112, 3, 2, 1, 1, false), 56),  // ResNet stem
        ((112, 3, 2, 0, 1, true), 56),   // GoogLeNet, ceil mode
        ((112, 3, 2, 0, 1, false), 55),
        ((14, 3, 2, 0, 1, true), 7),
        ((5, 2, 2, 0, 1, false), 2),
        ((5, 2, 2, 0, 1, true), 3),
        ((5, 2, 2, 1, 1, false), 3),
        ((5, 2, 2, 1, 1, true), 3), // last window would start in the right padding: trimmed
        ((3, 5, 5, 0, 1, true), 1),
        ((9, 3, 2, 1, 2, false), 4),
    ];
    for &((i, k, s, p, d, ceil), want) in known {
        assert_eq!(torch_out_size(i, k, s, p, d, ceil), Some(want));
        let cfg = MaxPool2dConfig::new([k, 1])
            .with_stride([s, 1])
            .with_padding([p, 0])
            .with_dilation([d, 1])
            .with_ceil_mode(ceil);
        assert_eq!(
            maxpool2d_output_shape(&[2, 3, i, 4], &cfg).unwrap(),
            [2, 3, want, 4],
            "maxpool {:?}",
            (i, k, s, p, d, ceil)
        );
        if d == 1 {
            let cfg = AvgPool2dConfig::new([1, k])
                .with_stride([1, s])
                .with_padding([0, p])
                .with_ceil_mode(ceil);
            assert_eq!(
                avgpool2d_output_shape(&[1, 1, 4, i], &cfg).unwrap(),
                [1, 1, 4, want]
            );
        }
    }
    // and the formula agrees with the library over a sweep
    for i in 1..12 {
        for k in 1..6 {
            for s in 1..4 {
                for p in 0..3 {
                    for d in 1..3 {
                        for ceil in [false, true] {
                            let cfg = MaxPool2dConfig::new([k, 1])
                                .with_stride([s, 1])
                                .with_padding([p, 0])
                                .with_dilation([d, 1])
                                .with_ceil_mode(ceil);
                            let got = maxpool2d_output_shape(&[1, 1, i, 1], &cfg).ok();
                            let want = torch_out_size(i, k, s, p, d, ceil).map(|o| [1, 1, o, 1]);
                            assert_eq!(got, want, "{:?}", (i, k, s, p, d, ceil));
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Max pooling.

#[test]
fn maxpool2d_forward_matches_cpu_reference() {
    let mut rng = Rng::new(11);
    for (shape, cfg) in max_cases() {
        let xs = rng.vec(numel(&shape), -1.0, 1.0);
        let (y, am) = gpu_maxpool(shape, &xs, &cfg);
        let (y_ref, am_ref) = maxpool_ref(&xs, shape, &cfg);
        assert_same(&format!("maxpool y {shape:?} {cfg:?}"), &y, &y_ref);
        assert_eq!(am, am_ref, "maxpool argmax {shape:?} {cfg:?}");
    }
}

#[test]
fn maxpool2d_argmax_ties_match_pytorch_first_max() {
    let mut rng = Rng::new(12);
    let cases = max_cases();
    for (shape, cfg) in &cases {
        let n = numel(shape);
        // constant input: every window ties everywhere, the first in-bounds cell wins
        let constant = vec![0.5f32; n];
        // repeated maxima inside windows
        let ties = tie_heavy(&mut rng, n);
        for (what, xs) in [("constant", constant), ("ties", ties)] {
            let (y, am) = gpu_maxpool(*shape, &xs, cfg);
            let (y_ref, am_ref) = maxpool_ref(&xs, *shape, cfg);
            assert_same(&format!("maxpool {what} y {shape:?}"), &y, &y_ref);
            assert_eq!(am, am_ref, "maxpool {what} argmax {shape:?} {cfg:?}");
        }
    }
    // -inf everywhere: y is -inf and the index is the window's first in-bounds cell
    let (shape, cfg) = cases[3];
    let xs = vec![f32::NEG_INFINITY; numel(&shape)];
    let (y, am) = gpu_maxpool(shape, &xs, &cfg);
    let (y_ref, am_ref) = maxpool_ref(&xs, shape, &cfg);
    assert!(y.iter().all(|v| *v == f32::NEG_INFINITY));
    assert_same("maxpool -inf y", &y, &y_ref);
    assert_eq!(am, am_ref, "maxpool -inf argmax");
    // NaN propagates; with two NaNs in a window PyTorch keeps the later one
    let shape = [1, 1, 4, 4];
    let cfg = MaxPool2dConfig::new([2, 2]);
    let mut xs: Vec<f32> = (0..16).map(|v| v as f32).collect();
    xs[0] = f32::NAN; // window (0,0): NaN first, then larger values
    xs[7] = f32::NAN; // window (0,1): NaN last
    xs[10] = f32::NAN; // window (1,1): two NaNs, 10 and 15
    xs[15] = f32::NAN;
    let (y, am) = gpu_maxpool(shape, &xs, &cfg);
    let (y_ref, am_ref) = maxpool_ref(&xs, shape, &cfg);
    assert_same("maxpool NaN y", &y, &y_ref);
    assert_eq!(am, am_ref, "maxpool NaN argmax");
    assert_eq!(am, vec![0, 7, 13, 15]);
}

#[test]
fn maxpool2d_backward_matches_cpu_reference() {
    let mut rng = Rng::new(13);
    for (shape, cfg) in max_cases() {
        let out = max_out_shape(shape, &cfg);
        // tie-heavy inputs: overlapping windows often pick the same cell, so the gather sums
        let xs = tie_heavy(&mut rng, numel(&shape));
        let (_, am_ref) = maxpool_ref(&xs, shape, &cfg);
        let dys = rng.vec(numel(&out), -1.0, 1.0);
        let am = Tensor::from_u32(ctx(), &out, &am_ref).unwrap();
        let dy = upload(&out, &dys);
        let dx = poisoned(&shape);
        run(&[&maxpool2d_backward(ctx(), &dx, &dy, &am, &cfg, false).unwrap()]);
        let want = maxpool_backward_ref(&dys, &am_ref, shape, out);
        let name = format!("maxpool backward {shape:?} {cfg:?}");
        assert_close(&name, &download(&dx), &want, 1e-6, 1e-6);
        run(&[&maxpool2d_backward(ctx(), &dx, &dy, &am, &cfg, true).unwrap()]);
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &format!("{name} accumulate"),
            &download(&dx),
            &twice,
            1e-6,
            1e-6,
        );
    }
}

/// The max backward through the ReLU before the pool (`maxpool2d_backward_relu`): the pool's
/// gradient, then the ReLU's rule gated by its input (0 shuts the gate), for every rule, with
/// and without accumulation, on every backward kernel (overlapping windows, VGG's 2x2, ResNet's 3x3
/// stride 2).
#[test]
fn maxpool2d_backward_through_a_relu_matches_cpu_reference() {
    let mut rng = Rng::new(16);
    for (shape, cfg) in max_cases() {
        let out = max_out_shape(shape, &cfg);
        let xs = tie_heavy(&mut rng, numel(&shape));
        let (_, am_ref) = maxpool_ref(&xs, shape, &cfg);
        let dys = rng.vec(numel(&out), -1.0, 1.0);
        let mut rxs = rng.vec(numel(&shape), -1.0, 1.0);
        for v in rxs.iter_mut().step_by(5) {
            *v = 0.0;
        }
        let base = rng.vec(numel(&shape), -1.0, 1.0);
        let (am, dy, rx) = (
            Tensor::from_u32(ctx(), &out, &am_ref).unwrap(),
            upload(&out, &dys),
            upload(&shape, &rxs),
        );
        let g = maxpool_backward_ref(&dys, &am_ref, shape, out);
        for rule in [ReluRule::Standard, ReluRule::Guided, ReluRule::Deconvnet] {
            let gated: Vec<f64> = g
                .iter()
                .zip(&rxs)
                .map(|(&g, &r)| match rule {
                    ReluRule::Standard if r > 0.0 => g,
                    ReluRule::Guided if r > 0.0 && g > 0.0 => g,
                    ReluRule::Deconvnet => g.max(0.0),
                    _ => 0.0,
                })
                .collect();
            for accumulate in [false, true] {
                let (dx, want): (_, Vec<f64>) = if accumulate {
                    let sum = gated.iter().zip(&base).map(|(a, &b)| a + b as f64);
                    (upload(&shape, &base), sum.collect())
                } else {
                    (poisoned(&shape), gated.clone())
                };
                let d = maxpool2d_backward_relu(ctx(), &dx, &dy, &am, &cfg, &rx, rule, accumulate);
                run(&[&d.unwrap()]);
                let name = format!("maxpool backward {shape:?} {cfg:?} {rule:?} acc {accumulate}");
                assert_close(&name, &download(&dx), &want, 1e-6, 1e-6);
            }
        }
        let dx = poisoned(&shape);
        let e =
            maxpool2d_backward_relu(ctx(), &dx, &dy, &am, &cfg, &rx, ReluRule::Redirected, false)
                .expect_err("the redirected rule is not fused");
        assert!(e.to_string().contains("redirected"), "{e}");
    }
}

/// A max pool's forward (values and argmax exactly) and backward against the CPU references,
/// the backward run by the kernel named `backward`; `xs` makes the input.
fn max_forward_backward(
    rng: &mut Rng,
    shape: [usize; 4],
    cfg: &MaxPool2dConfig,
    xs: impl Fn(&mut Rng, usize) -> Vec<f32>,
    backward: &str,
    tol: f64,
) {
    let xs = xs(rng, numel(&shape));
    let (y, am) = gpu_maxpool(shape, &xs, cfg);
    let (y_ref, am_ref) = maxpool_ref(&xs, shape, cfg);
    assert_same(&format!("maxpool y {shape:?}"), &y, &y_ref);
    assert_eq!(am, am_ref, "maxpool argmax {shape:?}");
    let out = max_out_shape(shape, cfg);
    let dys = rng.vec(numel(&out), -1.0, 1.0);
    let am = Tensor::from_u32(ctx(), &out, &am_ref).unwrap();
    let dx = poisoned(&shape);
    let d = maxpool2d_backward(ctx(), &dx, &upload(&out, &dys), &am, cfg, false).unwrap();
    assert_eq!(d.kernel().entry, backward, "{shape:?}");
    run(&[&d]);
    let want = maxpool_backward_ref(&dys, &am_ref, shape, out);
    let name = format!("maxpool backward {shape:?}");
    assert_close(&name, &download(&dx), &want, tol, tol);
}

/// The 2x2 kernels (VGG's pool) on millions of outputs, odd and even widths, several planes,
/// forward and backward (each input cell gets one window's gradient or 0: exact).
#[test]
fn maxpool2d_2x2_matches_cpu_reference_on_large_tensors() {
    let mut rng = Rng::new(15);
    let cfg = MaxPool2dConfig::new([2, 2]);
    for shape in [[1, 2, 2 * 1024, 2 * 2047], [2, 1, 2 * 2048, 2 * 1024]] {
        let xs = |rng: &mut Rng, n| rng.vec(n, -1.0, 1.0);
        max_forward_backward(&mut rng, shape, &cfg, xs, "maxpool2d_backward_2x2", 0.0);
    }
}

/// ResNet's pool (3x3, stride 2, padding 1) at its real size, forward and backward: the
/// backward's `_3x3s2` kernel, one thread per 2x2 input block, sums in the generic order.
#[test]
fn maxpool2d_3x3s2_matches_cpu_reference_at_resnet_size() {
    let mut rng = Rng::new(17);
    let cfg = MaxPool2dConfig::new([3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1]);
    for shape in [[1, 64, 112, 112], [2, 5, 57, 31]] {
        let backward = "maxpool2d_backward_3x3s2";
        max_forward_backward(&mut rng, shape, &cfg, tie_heavy, backward, 1e-6);
    }
}

#[test]
fn maxpool2d_backward_matches_finite_differences() {
    let mut rng = Rng::new(14);
    let k = MaxPool2dConfig::new;
    let cases = [
        (
            [1, 2, 7, 6],
            k([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_ceil_mode(true),
        ),
        ([2, 1, 6, 5], k([2, 2]).with_ceil_mode(true)),
        (
            [1, 1, 9, 8],
            k([3, 2])
                .with_stride([1, 2])
                .with_padding([1, 1])
                .with_dilation([2, 1]),
        ),
    ];
    for (shape, cfg) in cases {
        let out = max_out_shape(shape, &cfg);
        // distinct values 0.05 apart, h = 0.01: no perturbation flips an argmax
        let xs = distinct(&mut rng, numel(&shape), 0.05);
        let w = rng.vec(numel(&out), -1.0, 1.0);
        let x = upload(&shape, &xs);
        let (y, am, dy, dx) = (
            zeros(&out),
            u32_poisoned(&out),
            upload(&out, &w),
            zeros(&shape),
        );
        let fwd = maxpool2d_forward(ctx(), &y, &am, &x, &cfg).unwrap();
        let bwd = maxpool2d_backward(ctx(), &dx, &dy, &am, &cfg, false).unwrap();
        run(&[&fwd, &bwd]);
        let g = download(&dx);
        fd_check(
            &format!("maxpool {shape:?} {cfg:?}"),
            &xs,
            &g,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| weighted_sum(&w, &gpu_maxpool(shape, v, &cfg).0),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Average pooling.

#[test]
fn avgpool2d_forward_matches_cpu_reference() {
    let mut rng = Rng::new(21);
    let cases = avg_cases();
    // every base geometry under both ceil modes and both divisor rules
    assert!(cases.len() >= 24, "{} cases", cases.len());
    for (shape, cfg) in cases {
        let xs = rng.vec(numel(&shape), -1.0, 1.0);
        let y = gpu_avgpool(shape, &xs, &cfg);
        let want = avgpool_ref(&xs, shape, &cfg);
        assert_close(&format!("avgpool {shape:?} {cfg:?}"), &y, &want, 1e-6, 1e-6);
    }
    // the divisor rules matter: a padded ceil-mode case differs between the two counts
    let shape = [1, 1, 5, 5];
    let xs = vec![1.0f32; 25];
    let cfg = AvgPool2dConfig::new([2, 2])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_ceil_mode(true);
    let with_pad = gpu_avgpool(shape, &xs, &cfg);
    let without = gpu_avgpool(shape, &xs, &cfg.with_count_include_pad(false));
    assert!(without.iter().all(|&v| v == 1.0), "{without:?}");
    // the corner window holds 1 input cell and 3 padded ones
    assert_eq!(with_pad[0], 0.25);
    assert_close(
        "avgpool ones count_include_pad",
        &with_pad,
        &avgpool_ref(&xs, shape, &cfg),
        0.0,
        0.0,
    );
}

#[test]
fn avgpool2d_backward_matches_cpu_reference() {
    let mut rng = Rng::new(22);
    for (shape, cfg) in avg_cases() {
        let out = avg_out_shape(shape, &cfg);
        let dys = rng.vec(numel(&out), -1.0, 1.0);
        let dy = upload(&out, &dys);
        let dx = poisoned(&shape);
        run(&[&avgpool2d_backward(ctx(), &dx, &dy, &cfg, false).unwrap()]);
        let want = avgpool_backward_ref(&dys, shape, &cfg);
        let name = format!("avgpool backward {shape:?} {cfg:?}");
        assert_close(&name, &download(&dx), &want, 1e-6, 1e-6);
        run(&[&avgpool2d_backward(ctx(), &dx, &dy, &cfg, true).unwrap()]);
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &format!("{name} accumulate"),
            &download(&dx),
            &twice,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn avgpool2d_backward_matches_finite_differences() {
    let mut rng = Rng::new(23);
    let base = AvgPool2dConfig::new([3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_ceil_mode(true);
    let cases = [
        ([1, 2, 8, 6], base),
        ([1, 2, 8, 6], base.with_count_include_pad(false)),
        (
            [2, 1, 5, 7],
            AvgPool2dConfig::new([2, 3]).with_ceil_mode(true),
        ),
    ];
    for (shape, cfg) in cases {
        let out = avg_out_shape(shape, &cfg);
        let xs = rng.vec(numel(&shape), -1.0, 1.0);
        let w = rng.vec(numel(&out), -1.0, 1.0);
        let (dy, dx) = (upload(&out, &w), zeros(&shape));
        run(&[&avgpool2d_backward(ctx(), &dx, &dy, &cfg, false).unwrap()]);
        let g = download(&dx);
        fd_check(
            &format!("avgpool {shape:?} {cfg:?}"),
            &xs,
            &g,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| weighted_sum(&w, &gpu_avgpool(shape, v, &cfg)),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Adaptive average pooling.

#[test]
fn adaptive_avgpool2d_forward_matches_cpu_reference() {
    let mut rng = Rng::new(31);
    for &(shape, out) in ADAPTIVE_CASES {
        let xs = rng.vec(numel(&shape), -1.0, 1.0);
        let y = gpu_adaptive(shape, &xs, out);
        let want = adaptive_ref(&xs, shape, out);
        assert_close(
            &format!("adaptive {shape:?} -> {out:?}"),
            &y,
            &want,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn adaptive_avgpool2d_backward_matches_cpu_reference() {
    let mut rng = Rng::new(32);
    for &(shape, out) in ADAPTIVE_CASES {
        let oshape = [shape[0], shape[1], out[0], out[1]];
        let dys = rng.vec(numel(&oshape), -1.0, 1.0);
        let dy = upload(&oshape, &dys);
        let dx = poisoned(&shape);
        run(&[&adaptive_avgpool2d_backward(ctx(), &dx, &dy, false).unwrap()]);
        let want = adaptive_backward_ref(&dys, shape, out);
        let name = format!("adaptive backward {shape:?} -> {out:?}");
        assert_close(&name, &download(&dx), &want, 1e-6, 1e-6);
        run(&[&adaptive_avgpool2d_backward(ctx(), &dx, &dy, true).unwrap()]);
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &format!("{name} accumulate"),
            &download(&dx),
            &twice,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn adaptive_avgpool2d_backward_matches_finite_differences() {
    let mut rng = Rng::new(33);
    for (shape, out) in [
        ([1, 2, 13, 11], [7, 7]),
        ([2, 1, 3, 3], [7, 7]),
        ([1, 1, 9, 10], [4, 3]),
    ] {
        let oshape = [shape[0], shape[1], out[0], out[1]];
        let xs = rng.vec(numel(&shape), -1.0, 1.0);
        let w = rng.vec(numel(&oshape), -1.0, 1.0);
        let (dy, dx) = (upload(&oshape, &w), zeros(&shape));
        run(&[&adaptive_avgpool2d_backward(ctx(), &dx, &dy, false).unwrap()]);
        let g = download(&dx);
        fd_check(
            &format!("adaptive {shape:?} -> {out:?}"),
            &xs,
            &g,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| weighted_sum(&w, &gpu_adaptive(shape, v, out)),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Global average pooling.

#[test]
fn global_avgpool_forward_matches_cpu_reference() {
    let mut rng = Rng::new(41);
    for &shape in GLOBAL_CASES {
        let xs = rng.vec(numel(&shape), -1.0, 1.0);
        let y = gpu_global(shape, &xs);
        assert_close(
            &format!("global avgpool {shape:?}"),
            &y,
            &global_ref(&xs, shape),
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn global_avgpool_backward_matches_cpu_reference() {
    let mut rng = Rng::new(42);
    for &shape in GLOBAL_CASES {
        let oshape = [shape[0], shape[1], 1, 1];
        let dys = rng.vec(numel(&oshape), -1.0, 1.0);
        let dy = upload(&oshape, &dys);
        let dx = poisoned(&shape);
        run(&[&global_avgpool_backward(ctx(), &dx, &dy, false).unwrap()]);
        let hw = shape[2] * shape[3];
        let want: Vec<f64> = (0..numel(&shape))
            .map(|i| dys[i / hw] as f64 / hw as f64)
            .collect();
        let name = format!("global avgpool backward {shape:?}");
        assert_close(&name, &download(&dx), &want, 1e-7, 1e-6);
        run(&[&global_avgpool_backward(ctx(), &dx, &dy, true).unwrap()]);
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &format!("{name} accumulate"),
            &download(&dx),
            &twice,
            1e-7,
            1e-6,
        );
    }
}

#[test]
fn global_avgpool_backward_matches_finite_differences() {
    let mut rng = Rng::new(43);
    // a serially summed plane and a workgroup-summed one
    for shape in [[2, 3, 5, 4], [1, 1, 24, 25]] {
        let oshape = [shape[0], shape[1], 1, 1];
        let xs = rng.vec(numel(&shape), -1.0, 1.0);
        let w = rng.vec(numel(&oshape), -1.0, 1.0);
        let (dy, dx) = (upload(&oshape, &w), zeros(&shape));
        run(&[&global_avgpool_backward(ctx(), &dx, &dy, false).unwrap()]);
        let g = download(&dx);
        fd_check(
            &format!("global avgpool {shape:?}"),
            &xs,
            &g,
            1e-2,
            1e-3,
            100,
            &mut rng,
            |v| weighted_sum(&w, &gpu_global(shape, v)),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals.

#[test]
fn pool_bad_shapes_and_configs_are_errors() {
    let c = ctx();
    let x = zeros(&[1, 2, 6, 6]);
    let x3 = zeros(&[2, 6, 6]);
    let y3 = zeros(&[1, 2, 3, 3]);
    let am3 = u32_poisoned(&[1, 2, 3, 3]);

    // padding over half the kernel
    let bad_pad = MaxPool2dConfig::new([3, 3]).with_padding([2, 1]);
    assert!(maxpool2d_output_shape(&[1, 2, 6, 6], &bad_pad).is_err());
    assert!(maxpool2d_forward(c, &y3, &am3, &x, &bad_pad).is_err());
    let bad_pad_avg = AvgPool2dConfig::new([2, 2]).with_padding([0, 2]);
    assert!(avgpool2d_output_shape(&[1, 2, 6, 6], &bad_pad_avg).is_err());
    assert!(avgpool2d_forward(c, &y3, &x, &bad_pad_avg).is_err());
    // kernel larger than the input (floor mode)
    let big = MaxPool2dConfig::new([7, 2]);
    assert!(maxpool2d_output_shape(&[1, 2, 6, 6], &big).is_err());
    assert!(avgpool2d_output_shape(&[1, 2, 6, 6], &AvgPool2dConfig::new([2, 7])).is_err());
    // zero stride, zero kernel, zero dilation
    assert!(maxpool2d_output_shape(
        &[1, 2, 6, 6],
        &MaxPool2dConfig::new([2, 2]).with_stride([0, 1])
    )
    .is_err());
    assert!(maxpool2d_output_shape(&[1, 2, 6, 6], &MaxPool2dConfig::new([0, 2])).is_err());
    assert!(maxpool2d_output_shape(
        &[1, 2, 6, 6],
        &MaxPool2dConfig::new([2, 2]).with_dilation([1, 0])
    )
    .is_err());
    // rank and emptiness
    let cfg = MaxPool2dConfig::new([2, 2]);
    assert!(maxpool2d_output_shape(&[2, 6, 6], &cfg).is_err());
    assert!(maxpool2d_output_shape(&[1, 0, 6, 6], &cfg).is_err());
    assert!(maxpool2d_forward(c, &y3, &am3, &x3, &cfg).is_err());

    // wrong y / argmax shapes and dtypes (2x2 kernel on 6x6 gives 3x3)
    let y_wrong = zeros(&[1, 2, 2, 3]);
    assert!(maxpool2d_forward(c, &y_wrong, &am3, &x, &cfg).is_err());
    assert!(maxpool2d_forward(c, &y3, &u32_poisoned(&[1, 2, 3, 2]), &x, &cfg).is_err());
    assert!(maxpool2d_forward(c, &y3, &zeros(&[1, 2, 3, 3]), &x, &cfg).is_err());
    assert!(maxpool2d_forward(c, &y3, &am3, &x, &cfg).is_ok());
    let dx = zeros(&[1, 2, 6, 6]);
    assert!(maxpool2d_backward(c, &dx, &y_wrong, &am3, &cfg, false).is_err());
    assert!(maxpool2d_backward(c, &dx, &y3, &zeros(&[1, 2, 3, 3]), &cfg, false).is_err());
    assert!(maxpool2d_backward(c, &zeros(&[1, 2, 7, 7]), &y3, &am3, &cfg, false).is_ok());
    assert!(maxpool2d_backward(c, &zeros(&[1, 2, 8, 8]), &y3, &am3, &cfg, false).is_err());
    let acfg = AvgPool2dConfig::new([2, 2]);
    assert!(avgpool2d_forward(c, &y_wrong, &x, &acfg).is_err());
    assert!(avgpool2d_forward(c, &y3, &x, &acfg).is_ok());
    assert!(avgpool2d_backward(c, &dx, &y_wrong, &acfg, false).is_err());
    assert!(avgpool2d_backward(c, &dx, &u32_poisoned(&[1, 2, 3, 3]), &acfg, false).is_err());

    // adaptive: N and C must match; rank 4
    assert!(adaptive_avgpool2d_forward(c, &zeros(&[1, 3, 7, 7]), &x).is_err());
    assert!(adaptive_avgpool2d_forward(c, &zeros(&[2, 2, 7, 7]), &x).is_err());
    assert!(adaptive_avgpool2d_forward(c, &zeros(&[2, 7, 7]), &x).is_err());
    assert!(adaptive_avgpool2d_forward(c, &zeros(&[1, 2, 7, 7]), &x3).is_err());
    assert!(adaptive_avgpool2d_backward(c, &dx, &zeros(&[1, 1, 7, 7]), false).is_err());
    assert!(adaptive_avgpool2d_forward(c, &zeros(&[1, 2, 7, 7]), &x).is_ok());

    // global: output must be [N, C, 1, 1]
    assert!(global_avgpool_forward(c, &zeros(&[1, 2, 2, 1]), &x).is_err());
    assert!(global_avgpool_forward(c, &zeros(&[1, 2]), &x).is_err());
    assert!(global_avgpool_forward(c, &zeros(&[1, 3, 1, 1]), &x).is_err());
    assert!(global_avgpool_backward(c, &dx, &zeros(&[2, 2, 1, 1]), false).is_err());
    assert!(global_avgpool_forward(c, &zeros(&[1, 2, 1, 1]), &x).is_ok());
}
