//! Spatial sum / mean / max (with argmax) over each (n, c) plane and their backward passes:
//! CPU references (f64), tie and NaN semantics, accumulate, finite differences, bad inputs.

mod common;
use common::*;

use cnnvis::gpu::DType;
use cnnvis::ops::reduce::{spatial_reduce_backward, spatial_reduce_forward, SpatialReduce};
use cnnvis::Tensor;

/// [N, C, H, W] shapes: a single element, odd and non-square planes, planes smaller and larger
/// than the 256-thread workgroup, a 224x224 plane, and more planes than one grid row holds.
const SHAPES: &[[usize; 4]] = &[
    [1, 1, 1, 1],
    [2, 3, 5, 7],
    [3, 17, 13, 11],
    [2, 3, 1, 300],
    [1, 2, 224, 224],
    [2, 2, 31, 67],
];

/// 70_002 planes of one element each: the forward grid must fold past 65_535 workgroups.
const MANY_PLANES: [usize; 4] = [2, 35_001, 1, 1];

fn planes(shape: &[usize; 4]) -> (usize, usize) {
    (shape[0] * shape[1], shape[2] * shape[3])
}

/// Per-plane (sum, sum of |x|) in f64.
fn sum_ref(x: &[f32], shape: &[usize; 4]) -> (Vec<f64>, Vec<f64>) {
    let (np, hw) = planes(shape);
    (0..np)
        .map(|q| {
            let plane = &x[q * hw..(q + 1) * hw];
            (
                plane.iter().map(|&v| v as f64).sum::<f64>(),
                plane.iter().map(|&v| (v as f64).abs()).sum::<f64>(),
            )
        })
        .unzip()
}

/// Per-plane (max, first index of the max); a NaN wins, the first NaN's index.
fn max_ref(x: &[f32], shape: &[usize; 4]) -> (Vec<f32>, Vec<u32>) {
    let (np, hw) = planes(shape);
    (0..np)
        .map(|q| {
            let plane = &x[q * hw..(q + 1) * hw];
            if let Some(i) = plane.iter().position(|v| v.is_nan()) {
                return (f32::NAN, i as u32);
            }
            let mut best = (plane[0], 0u32);
            for (i, &v) in plane.iter().enumerate().skip(1) {
                if v > best.0 {
                    best = (v, i as u32);
                }
            }
            best
        })
        .unzip()
}

fn upload_u32(shape: &[usize], data: &[u32]) -> Tensor {
    Tensor::from_u32(ctx(), shape, data).expect("upload u32")
}

fn poisoned_u32(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    upload_u32(shape, &vec![0xDEAD_BEEF; n])
}

fn download_u32(t: &Tensor) -> Vec<u32> {
    t.download_u32(ctx()).expect("download u32")
}

/// f32 sums of n terms in a per-thread-then-tree order: typical error is far below the
/// worst-case (k + 8) * eps * sum|x|; eps * sum|x| leaves an order of magnitude of margin
/// while still catching a single dropped or doubled element of typical size.
fn sum_tolerance(abs_sum: f64) -> f64 {
    f32::EPSILON as f64 * abs_sum + 1e-7
}

fn check_sum_mean(shape: &[usize; 4], xs: &[f32]) {
    let c = ctx();
    let (np, hw) = planes(shape);
    let x = upload(shape, xs);
    let (sums, abs_sums) = sum_ref(xs, shape);
    for op in [SpatialReduce::Sum, SpatialReduce::Mean] {
        let y = poisoned(&[shape[0], shape[1]]);
        run(&[&spatial_reduce_forward(c, &y, None, &x, op).unwrap()]);
        let got = download(&y);
        let div = if op == SpatialReduce::Mean {
            hw as f64
        } else {
            1.0
        };
        for q in 0..np {
            let want = sums[q] / div;
            let tol = sum_tolerance(abs_sums[q]) / div;
            assert!(
                (got[q] as f64 - want).abs() <= tol,
                "{op:?} {shape:?} plane {q}: gpu {} vs ref {want} (tol {tol:e})",
                got[q]
            );
        }
    }
}

fn check_max(shape: &[usize; 4], xs: &[f32]) {
    let c = ctx();
    let nc = [shape[0], shape[1]];
    let x = upload(shape, xs);
    let (y, a) = (poisoned(&nc), poisoned_u32(&nc));
    run(&[&spatial_reduce_forward(c, &y, Some(&a), &x, SpatialReduce::Max).unwrap()]);
    let (want_v, want_i) = max_ref(xs, shape);
    let (got_v, got_i) = (download(&y), download_u32(&a));
    for q in 0..want_v.len() {
        let same = got_v[q] == want_v[q] || (got_v[q].is_nan() && want_v[q].is_nan());
        assert!(
            same && got_i[q] == want_i[q],
            "max {shape:?} plane {q}: gpu ({}, {}) vs ref ({}, {})",
            got_v[q],
            got_i[q],
            want_v[q],
            want_i[q]
        );
    }
}

#[test]
fn spatial_sum_and_mean_forward_match_cpu_reference() {
    let mut rng = Rng::new(11);
    for shape in SHAPES.iter().chain([&MANY_PLANES]) {
        let n: usize = shape.iter().product();
        // an offset keeps sums away from zero so the relative size of errors shows
        let xs = rng.vec(n, -0.5, 1.0);
        check_sum_mean(shape, &xs);
    }
}

#[test]
fn spatial_max_forward_matches_cpu_reference() {
    let mut rng = Rng::new(12);
    for shape in SHAPES.iter().chain([&MANY_PLANES]) {
        let n: usize = shape.iter().product();
        check_max(shape, &rng.vec(n, -1.0, 1.0));
    }
}

/// Few distinct values make ties common: the first index of the maximum must win, including
/// ties that straddle threads of the strided loop and halves of the tree.
#[test]
fn spatial_max_ties_pick_the_first_index_matches_cpu_reference() {
    let mut rng = Rng::new(13);
    for shape in [[2, 3, 5, 7], [1, 4, 30, 30], [1, 2, 224, 224]] {
        let n: usize = shape.iter().product();
        let xs: Vec<f32> = (0..n).map(|_| rng.int(0, 4) as f32 - 2.0).collect();
        check_max(&shape, &xs);
    }
    // constant planes: argmax 0; all -inf: still a real index, 0
    let shape = [1, 3, 17, 19];
    let hw = 17 * 19;
    let mut xs = vec![0.25f32; 3 * hw];
    xs[hw..2 * hw].fill(f32::NEG_INFINITY);
    xs[2 * hw..].fill(-7.0);
    xs[2 * hw + hw - 1] = -6.0; // max at the very last element
    check_max(&shape, &xs);
}

/// NaN propagates: the reduced value is NaN and the argmax is the first NaN, wherever it sits
/// relative to larger numbers, infinities and other NaNs.
#[test]
fn spatial_max_nan_propagates_matches_cpu_reference() {
    let mut rng = Rng::new(14);
    let shape = [2, 3, 23, 29];
    let hw = 23 * 29;
    let mut xs = rng.vec(6 * hw, -1.0, 1.0);
    xs[3] = f32::NAN; // plane 0: one NaN early
    xs[hw + 600] = f32::NAN; // plane 1: NaN late, after a +inf
    xs[hw + 5] = f32::INFINITY;
    xs[2 * hw + 400] = f32::NAN; // plane 2: two NaNs in different threads
    xs[2 * hw + 300] = -f32::NAN;
    xs[3 * hw] = f32::NAN; // plane 3: NaN at offset 0
                           // planes 4 and 5 stay NaN-free
    check_max(&shape, &xs);
    let (v, i) = max_ref(&xs, &shape);
    assert!(v[..4].iter().all(|v| v.is_nan()) && !v[4].is_nan());
    assert_eq!(&i[..4], &[3, 600, 300, 0]);
}

/// Backward reference: Sum broadcasts dy, Mean dy / (H*W), Max routes dy to the argmax.
fn backward_ref(dys: &[f32], argmax: &[u32], shape: &[usize; 4], op: SpatialReduce) -> Vec<f64> {
    let (np, hw) = planes(shape);
    let mut dx = vec![0.0f64; np * hw];
    for q in 0..np {
        for i in 0..hw {
            dx[q * hw + i] = match op {
                SpatialReduce::Sum => dys[q] as f64,
                SpatialReduce::Mean => dys[q] as f64 / hw as f64,
                SpatialReduce::Max => {
                    if argmax[q] as usize == i {
                        dys[q] as f64
                    } else {
                        0.0
                    }
                }
            };
        }
    }
    dx
}

#[test]
fn spatial_reduce_backward_matches_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(15);
    for shape in SHAPES.iter().chain([&MANY_PLANES]) {
        let (np, hw) = planes(shape);
        let n = np * hw;
        let nc = [shape[0], shape[1]];
        let dys = rng.vec(np, -1.0, 1.0);
        let am: Vec<u32> = (0..np).map(|_| rng.int(0, hw - 1) as u32).collect();
        let (dy, argmax) = (upload(&nc, &dys), upload_u32(&nc, &am));
        let dx0 = rng.vec(n, -1.0, 1.0);
        for op in [SpatialReduce::Sum, SpatialReduce::Mean, SpatialReduce::Max] {
            let want = backward_ref(&dys, &am, shape, op);
            let a = (op == SpatialReduce::Max).then_some(&argmax);
            let dx = poisoned(shape);
            run(&[&spatial_reduce_backward(c, &dx, &dy, a, op, false).unwrap()]);
            // one f32 division for Mean: half an ulp
            assert_close(
                &format!("{op:?} backward {shape:?}"),
                &download(&dx),
                &want,
                0.0,
                1e-7,
            );
            // accumulate adds into what dx already holds
            let dx = upload(shape, &dx0);
            run(&[&spatial_reduce_backward(c, &dx, &dy, a, op, true).unwrap()]);
            let sum: Vec<f64> = want.iter().zip(&dx0).map(|(w, &d)| w + d as f64).collect();
            assert_close(
                &format!("{op:?} backward accumulate {shape:?}"),
                &download(&dx),
                &sum,
                1e-7,
                1e-7,
            );
        }
    }
}

/// Forward on the GPU, loss = sum(w * y) on the CPU in f64.
fn gpu_loss(shape: &[usize; 4], w: &[f32], xs: &[f32], op: SpatialReduce) -> f64 {
    let c = ctx();
    let nc = [shape[0], shape[1]];
    let x = upload(shape, xs);
    let y = zeros(&nc);
    let a = Tensor::empty(c, &nc, DType::U32).unwrap();
    run(&[&spatial_reduce_forward(c, &y, Some(&a), &x, op).unwrap()]);
    weighted_sum(w, &download(&y))
}

fn fd_case(op: SpatialReduce, shape: [usize; 4], seed: u64) {
    let c = ctx();
    let mut rng = Rng::new(seed);
    let (np, hw) = planes(&shape);
    let n = np * hw;
    let nc = [shape[0], shape[1]];
    // distinct values 0.05 apart (a shuffled grid): the maximum cannot change under +-h
    let mut xs: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - 2.0).collect();
    for i in (1..n).rev() {
        xs.swap(i, rng.int(0, i));
    }
    let w = rng.vec(np, -1.0, 1.0);
    let x = upload(&shape, &xs);
    let (y, a) = (zeros(&nc), Tensor::empty(c, &nc, DType::U32).unwrap());
    run(&[&spatial_reduce_forward(c, &y, Some(&a), &x, op).unwrap()]);
    let (dy, dx) = (upload(&nc, &w), poisoned(&shape));
    run(&[&spatial_reduce_backward(c, &dx, &dy, Some(&a), op, false).unwrap()]);
    let g = download(&dx);
    fd_check(
        &format!("spatial {op:?} {shape:?}"),
        &xs,
        &g,
        1e-2,
        1e-3,
        300,
        &mut rng,
        |v| gpu_loss(&shape, &w, v, op),
    );
}

#[test]
fn spatial_sum_backward_matches_finite_differences() {
    fd_case(SpatialReduce::Sum, [2, 3, 4, 5], 21);
}

#[test]
fn spatial_mean_backward_matches_finite_differences() {
    fd_case(SpatialReduce::Mean, [2, 3, 5, 3], 22);
}

#[test]
fn spatial_max_backward_matches_finite_differences() {
    fd_case(SpatialReduce::Max, [3, 2, 7, 5], 23);
}

#[test]
fn spatial_reduce_rejects_bad_inputs() {
    let c = ctx();
    let x = zeros(&[2, 3, 4, 5]);
    let y = zeros(&[2, 3]);
    let a = Tensor::empty(c, &[2, 3], DType::U32).unwrap();
    let a_wrong_shape = Tensor::empty(c, &[3, 2], DType::U32).unwrap();
    let a_f32 = zeros(&[2, 3]);
    let fwd = |y: &Tensor, a: Option<&Tensor>, x: &Tensor, op| {
        spatial_reduce_forward(c, y, a, x, op).map(|_| ())
    };
    // Max without, or with a malformed, argmax
    assert!(fwd(&y, None, &x, SpatialReduce::Max).is_err());
    assert!(fwd(&y, Some(&a_wrong_shape), &x, SpatialReduce::Max).is_err());
    assert!(fwd(&y, Some(&a_f32), &x, SpatialReduce::Max).is_err());
    // y of the wrong shape, x of the wrong rank, an empty plane
    for op in [SpatialReduce::Sum, SpatialReduce::Mean, SpatialReduce::Max] {
        assert!(fwd(&zeros(&[2, 4]), Some(&a), &x, op).is_err());
        assert!(fwd(&zeros(&[6]), Some(&a), &x, op).is_err());
        assert!(fwd(&y, Some(&a), &zeros(&[2, 3, 20]), op).is_err());
        let empty = Tensor::empty(c, &[2, 3, 0, 5], DType::F32).unwrap();
        assert!(fwd(&y, Some(&a), &empty, op).is_err());
        assert!(fwd(&y, Some(&a), &x, op).is_ok());
    }
    // backward: dy of the wrong shape, dx of the wrong rank, Max without argmax
    let bwd = |dx: &Tensor, dy: &Tensor, a: Option<&Tensor>, op| {
        spatial_reduce_backward(c, dx, dy, a, op, false).map(|_| ())
    };
    assert!(bwd(&x, &y, None, SpatialReduce::Max).is_err());
    assert!(bwd(&x, &y, Some(&a_wrong_shape), SpatialReduce::Max).is_err());
    assert!(bwd(&x, &y, Some(&a_f32), SpatialReduce::Max).is_err());
    for op in [SpatialReduce::Sum, SpatialReduce::Mean, SpatialReduce::Max] {
        assert!(bwd(&x, &zeros(&[3, 2]), Some(&a), op).is_err());
        assert!(bwd(&zeros(&[2, 3, 20]), &y, Some(&a), op).is_err());
        assert!(bwd(&x, &y, Some(&a), op).is_ok());
    }
}
