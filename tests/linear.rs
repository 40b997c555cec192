//! Dense layer forward and backward (input, weight, bias): CPU f64 references on odd shapes
//! (scalar and vec4 paths, the K split, 4-D inputs flattened) and finite differences.

mod common;
use common::*;

use cnnvis::ops::linear::{
    linear_backward_input, linear_backward_input_blocks_cached, linear_backward_input_rows,
    linear_backward_input_rows_cached, linear_backward_input_split, linear_backward_input_variant,
    linear_backward_weight, linear_forward, linear_forward_rows, linear_forward_rows_cached,
    linear_forward_variant, linear_windows_supported, LinearVariant, LinearWeightCache,
};
use cnnvis::Error;

/// One case: input shape (flattened to [N, K] as torch.flatten(x, 1)), outputs M, bias or not.
struct Case {
    x_shape: &'static [usize],
    m: usize,
    bias: bool,
}

impl Case {
    fn n(&self) -> usize {
        self.x_shape[0]
    }
    fn k(&self) -> usize {
        self.x_shape[1..].iter().product()
    }
}

const CASES: &[Case] = &[
    // scalar path (K odd), several batch blocks incl. a tail of 1 row
    Case {
        x_shape: &[3, 257],
        m: 5,
        bias: true,
    },
    Case {
        x_shape: &[3, 257],
        m: 5,
        bias: false,
    },
    Case {
        x_shape: &[5, 13],
        m: 9,
        bias: true,
    },
    Case {
        x_shape: &[1, 1],
        m: 1,
        bias: true,
    },
    // vec4 path (K % 4 == 0), batch 1, 4, 6
    Case {
        x_shape: &[1, 64],
        m: 3,
        bias: true,
    },
    Case {
        x_shape: &[4, 100],
        m: 6,
        bias: false,
    },
    Case {
        x_shape: &[6, 36],
        m: 4,
        bias: true,
    },
    // K split across the workgroup on a VGG-classifier-length row (25088 = 512 * 7 * 7)
    Case {
        x_shape: &[1, 512, 7, 7],
        m: 7,
        bias: true,
    },
    Case {
        x_shape: &[2, 25087],
        m: 7,
        bias: false,
    },
    // windows variant: two row groups (64 + 6), batch chunks of 4 and a tail of 1
    Case {
        x_shape: &[5, 40],
        m: 70,
        bias: true,
    },
    // 4-D inputs flattened
    Case {
        x_shape: &[2, 3, 5, 7],
        m: 5,
        bias: true,
    },
    Case {
        x_shape: &[3, 4, 3, 3],
        m: 2,
        bias: false,
    },
];

/// f32 dot products of length L: worst-case rounding about L * eps * max|term| (terms < 1).
fn atol(len: usize) -> f64 {
    1e-6 + len as f64 * 1.2e-7
}

fn forward_ref(x: &[f32], w: &[f32], b: Option<&[f32]>, n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut y = vec![0.0f64; n * m];
    for i in 0..n {
        for o in 0..m {
            let mut s = b.map_or(0.0, |b| b[o] as f64);
            for j in 0..k {
                s += x[i * k + j] as f64 * w[o * k + j] as f64;
            }
            y[i * m + o] = s;
        }
    }
    y
}

fn backward_input_ref(dy: &[f32], w: &[f32], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut dx = vec![0.0f64; n * k];
    for i in 0..n {
        for o in 0..m {
            let g = dy[i * m + o] as f64;
            for j in 0..k {
                dx[i * k + j] += g * w[o * k + j] as f64;
            }
        }
    }
    dx
}

fn backward_weight_ref(dy: &[f32], x: &[f32], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut dw = vec![0.0f64; m * k];
    for i in 0..n {
        for o in 0..m {
            let g = dy[i * m + o] as f64;
            for j in 0..k {
                dw[o * k + j] += g * x[i * k + j] as f64;
            }
        }
    }
    dw
}

fn backward_bias_ref(dy: &[f32], n: usize, m: usize) -> Vec<f64> {
    (0..m)
        .map(|o| (0..n).map(|i| dy[i * m + o] as f64).sum())
        .collect()
}

fn twice(v: &[f64]) -> Vec<f64> {
    v.iter().map(|a| 2.0 * a).collect()
}

/// Both variants where the context runs them (storage everywhere, windows on lavapipe).
fn variants() -> Vec<LinearVariant> {
    let mut v = vec![LinearVariant::Storage];
    if linear_windows_supported(ctx()) {
        v.push(LinearVariant::Windows);
    }
    v
}

#[test]
fn linear_forward_matches_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(11);
    for case in CASES {
        let (n, k, m) = (case.n(), case.k(), case.m);
        let xs = rng.vec(n * k, -1.0, 1.0);
        let ws = rng.vec(m * k, -1.0, 1.0);
        let bs = rng.vec(m, -1.0, 1.0);
        let x = upload(case.x_shape, &xs);
        let w = upload(&[m, k], &ws);
        let b = upload(&[m], &bs);
        let want = forward_ref(&xs, &ws, case.bias.then_some(&bs[..]), n, k, m);
        for v in variants() {
            let y = poisoned(&[n, m]);
            let bias = case.bias.then_some(&b);
            let d = linear_forward_variant(c, v, &y, &x, &w, bias).unwrap();
            assert_eq!(LinearVariant::of_kernel(d.kernel()), Some(v));
            run(&[&d]);
            assert_close(
                &format!(
                    "linear_forward {v:?} x {:?} M {m} bias {}",
                    case.x_shape, case.bias
                ),
                &download(&y),
                &want,
                atol(k),
                1e-5,
            );
        }
    }
}

#[test]
fn linear_backward_input_matches_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(12);
    for case in CASES {
        let (n, k, m) = (case.n(), case.k(), case.m);
        let dys = rng.vec(n * m, -1.0, 1.0);
        let ws = rng.vec(m * k, -1.0, 1.0);
        let (dy, w) = (upload(&[n, m], &dys), upload(&[m, k], &ws));
        let want = backward_input_ref(&dys, &ws, n, k, m);
        for v in variants() {
            // dx takes the forward input's shape, 4-D included
            let dx = poisoned(case.x_shape);
            let d = linear_backward_input_variant(c, v, &dx, &dy, &w, false).unwrap();
            assert_eq!(LinearVariant::of_kernel(d.kernel()), Some(v));
            run(&[&d]);
            let name = format!("linear_backward_input {v:?} x {:?} M {m}", case.x_shape);
            assert_close(&name, &download(&dx), &want, atol(m), 1e-5);
            run(&[&linear_backward_input_variant(c, v, &dx, &dy, &w, true).unwrap()]);
            assert_close(
                &format!("{name} accumulate"),
                &download(&dx),
                &twice(&want),
                2.0 * atol(m),
                1e-5,
            );
        }
    }
}

/// The split backward to the input (GPUs cut the M reduction into ranges and add their
/// partial sums in a second launch) against the CPU reference: ranges that do not divide M,
/// more ranges than rows, batch 1, 3 and 6 (a partial block of 4 rows), a row block of a wider
/// dy (offset), writing and accumulating.
#[test]
fn linear_backward_input_split_matches_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(19);
    let k = 44;
    for (n, m, splits, offset, total) in [
        (1, 67, 4, 0, 67),
        (3, 67, 5, 0, 67),
        (6, 130, 7, 9, 150),
        (2, 5, 9, 0, 5),
    ] {
        let dys = rng.vec(n * total, -1.0, 1.0);
        let ws = rng.vec(m * k, -1.0, 1.0);
        let (dy, w) = (upload(&[n, total], &dys), upload(&[m, k], &ws));
        // The block's columns of dy, as the reference takes them.
        let dys_block: Vec<f32> = (0..n)
            .flat_map(|i| dys[i * total + offset..i * total + offset + m].to_vec())
            .collect();
        let want = backward_input_ref(&dys_block, &ws, n, k, m);
        let name = format!("split backward N {n} M {m} ranges {splits} offset {offset}");
        let dx = poisoned(&[n, k]);
        let d = linear_backward_input_split(c, &dx, &dy, &w, offset, splits, false).unwrap();
        assert_eq!(
            LinearVariant::of_kernel(d.kernel()),
            Some(LinearVariant::Storage)
        );
        assert_eq!(d.launches(), 2, "{name}: the ranges and their sum");
        run(&[&d]);
        assert_close(&name, &download(&dx), &want, atol(m), 1e-5);
        run(&[&linear_backward_input_split(c, &dx, &dy, &w, offset, splits, true).unwrap()]);
        assert_close(
            &format!("{name} accumulate"),
            &download(&dx),
            &twice(&want),
            2.0 * atol(m),
            1e-5,
        );
    }
}

/// A weight cache packs each pass once (where the windows kernels run) and changes no result.
#[test]
fn linear_weight_cache_packs_once_per_pass() {
    let c = ctx();
    let mut rng = Rng::new(14);
    let (n, k, m) = (2, 50, 20);
    let (x, w) = (
        upload(&[n, k], &rng.vec(n * k, -1.0, 1.0)),
        upload(&[m, k], &rng.vec(m * k, -1.0, 1.0)),
    );
    let cache = LinearWeightCache::new();
    let (y0, y1) = (zeros(&[n, m]), zeros(&[n, m]));
    let plain = linear_forward(c, &y0, &x, &w, None).unwrap();
    let a = linear_forward_rows_cached(c, &y1, &x, &w, None, 0, &cache).unwrap();
    linear_forward_rows_cached(c, &y1, &x, &w, None, 0, &cache).unwrap();
    run(&[&plain, &a]);
    let windows = LinearVariant::of_kernel(plain.kernel()) == Some(LinearVariant::Windows);
    assert_eq!(cache.len(), windows as usize);
    let dx = zeros(&[n, k]);
    linear_backward_input_rows_cached(c, &dx, &y0, &w, 0, false, &cache).unwrap();
    assert_eq!(cache.len(), 2 * windows as usize);
    assert_eq!(download(&y1), download(&y0));
}

/// A layer split into row blocks (as a model uploads one too big for a storage binding): each
/// block writes its columns of y, and the blocks' backward passes add up to the whole dx.
#[test]
fn linear_row_blocks_match_the_whole_layer() {
    let c = ctx();
    let mut rng = Rng::new(13);
    let (n, k, m) = (3, 300, 75);
    let xs = rng.vec(n * k, -1.0, 1.0);
    let ws = rng.vec(m * k, -1.0, 1.0);
    let bs = rng.vec(m, -1.0, 1.0);
    let dys = rng.vec(n * m, -1.0, 1.0);
    let (x, dy) = (upload(&[n, k], &xs), upload(&[n, m], &dys));
    let y = poisoned(&[n, m]);
    let dx = poisoned(&[n, k]);
    let mut ds = Vec::new();
    for (i, (start, end)) in [(0, 40), (40, 75)].into_iter().enumerate() {
        let w = upload(&[end - start, k], &ws[start * k..end * k]);
        let b = upload(&[end - start], &bs[start..end]);
        ds.push(linear_forward_rows(c, &y, &x, &w, Some(&b), start).unwrap());
        ds.push(linear_backward_input_rows(c, &dx, &dy, &w, start, i > 0).unwrap());
    }
    run(&ds.iter().collect::<Vec<_>>());
    let want_y = forward_ref(&xs, &ws, Some(&bs), n, k, m);
    assert_close("row blocks forward", &download(&y), &want_y, atol(k), 1e-5);
    let want_dx = backward_input_ref(&dys, &ws, n, k, m);
    assert_close(
        "row blocks backward",
        &download(&dx),
        &want_dx,
        atol(m),
        1e-5,
    );
}

/// A layer stored in row blocks, backward to the input in one call: on lavapipe with offsets
/// that are multiples of 4 the blocks are packed into one transposed operand (one product
/// over all rows, pack kept in the first block's cache); otherwise they run block by block.
/// Both against the CPU reference, writing and accumulating, batch 1 and 3.
#[test]
fn linear_backward_input_of_row_blocks_matches_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(17);
    let k = 301;
    for (n, cuts) in [
        (1, &[0usize, 64, 128, 200][..]),
        (3, &[0, 64, 200][..]),
        (2, &[0, 30, 77][..]),
    ] {
        let m = *cuts.last().unwrap();
        let ws = rng.vec(m * k, -1.0, 1.0);
        let dys = rng.vec(n * m, -1.0, 1.0);
        let base = rng.vec(n * k, -1.0, 1.0);
        let dy = upload(&[n, m], &dys);
        let tensors: Vec<_> = cuts
            .windows(2)
            .map(|r| upload(&[r[1] - r[0], k], &ws[r[0] * k..r[1] * k]))
            .collect();
        let caches: Vec<_> = tensors.iter().map(|_| LinearWeightCache::new()).collect();
        let blocks: Vec<_> = tensors
            .iter()
            .zip(cuts)
            .zip(&caches)
            .map(|((t, &o), c)| (t, o, c))
            .collect();
        let want = backward_input_ref(&dys, &ws, n, k, m);
        let dx = poisoned(&[n, k]);
        let d = linear_backward_input_blocks_cached(c, &dx, &dy, &blocks, false).unwrap();
        run(&[&d]);
        let name = format!("blocks {cuts:?} n={n}");
        assert_close(&name, &download(&dx), &want, atol(m), 1e-5);
        dx.write(c, &base).unwrap();
        run(&[&linear_backward_input_blocks_cached(c, &dx, &dy, &blocks, true).unwrap()]);
        let sum: Vec<f64> = want.iter().zip(&base).map(|(a, &b)| a + b as f64).collect();
        assert_close(
            &format!("{name} accumulate"),
            &download(&dx),
            &sum,
            atol(m),
            1e-5,
        );
        let merged = linear_windows_supported(c) && cuts.iter().all(|o| o % 4 == 0);
        // Merged: one pack in the first block's cache, none in the others.
        let packed: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        if merged {
            assert_eq!(packed[0], 1, "{name}: {packed:?}");
            assert!(packed[1..].iter().all(|&p| p == 0), "{name}: {packed:?}");
        }
    }
    // Blocks that do not tile dy's columns are refused.
    let (w, dy, dx) = (zeros(&[4, 5]), zeros(&[1, 8]), zeros(&[1, 5]));
    let cache = LinearWeightCache::new();
    let gap = [(&w, 0, &cache), (&w, 5, &cache)];
    assert!(linear_backward_input_blocks_cached(c, &dx, &dy, &gap, false).is_err());
    let short = [(&w, 0, &cache)];
    assert!(linear_backward_input_blocks_cached(c, &dx, &dy, &short, false).is_err());
}

#[test]
fn linear_backward_weight_and_bias_match_cpu_reference() {
    let c = ctx();
    let mut rng = Rng::new(13);
    for case in CASES {
        let (n, k, m) = (case.n(), case.k(), case.m);
        let dys = rng.vec(n * m, -1.0, 1.0);
        let xs = rng.vec(n * k, -1.0, 1.0);
        let (dy, x) = (upload(&[n, m], &dys), upload(case.x_shape, &xs));
        let dw = poisoned(&[m, k]);
        let db = poisoned(&[m]);
        let db_opt = case.bias.then_some(&db);
        let ds = linear_backward_weight(c, &dw, db_opt, &dy, &x, false).unwrap();
        assert_eq!(ds.len(), 1 + case.bias as usize);
        run(&ds.iter().collect::<Vec<_>>());
        let want_w = backward_weight_ref(&dys, &xs, n, k, m);
        let want_b = backward_bias_ref(&dys, n, m);
        let name = format!("linear_backward_weight x {:?} M {m}", case.x_shape);
        assert_close(&name, &download(&dw), &want_w, atol(n), 1e-5);
        if case.bias {
            assert_close(
                &format!("{name} db"),
                &download(&db),
                &want_b,
                atol(n),
                1e-5,
            );
        }
        let ds = linear_backward_weight(c, &dw, db_opt, &dy, &x, true).unwrap();
        run(&ds.iter().collect::<Vec<_>>());
        assert_close(
            &format!("{name} accumulate"),
            &download(&dw),
            &twice(&want_w),
            2.0 * atol(n),
            1e-5,
        );
        if case.bias {
            assert_close(
                &format!("{name} db accumulate"),
                &download(&db),
                &twice(&want_b),
                2.0 * atol(n),
                1e-5,
            );
        }
    }
}

/// GPU forward, loss = sum(r * y) in f64.
fn gpu_loss(x_shape: &[usize], m: usize, r: &[f32], xs: &[f32], ws: &[f32], bs: &[f32]) -> f64 {
    let c = ctx();
    let n = x_shape[0];
    let k = xs.len() / n;
    let x = upload(x_shape, xs);
    let w = upload(&[m, k], ws);
    let b = upload(&[m], bs);
    let y = zeros(&[n, m]);
    run(&[&linear_forward(c, &y, &x, &w, Some(&b)).unwrap()]);
    weighted_sum(r, &download(&y))
}

/// dx, dW and db from the backward kernels (dy = r) against central differences of the GPU
/// forward, on a scalar-path shape (K = 35, 4-D input) and a vec4-path shape (K = 24).
#[test]
fn linear_backward_matches_finite_differences() {
    let c = ctx();
    let mut rng = Rng::new(14);
    for (x_shape, m) in [(&[2usize, 5, 7, 1][..], 3usize), (&[5, 24][..], 4)] {
        let n = x_shape[0];
        let k: usize = x_shape[1..].iter().product();
        let xs = rng.vec(n * k, -1.0, 1.0);
        let ws = rng.vec(m * k, -1.0, 1.0);
        let bs = rng.vec(m, -1.0, 1.0);
        let r = rng.vec(n * m, -1.0, 1.0);
        let (x, w, dy) = (
            upload(x_shape, &xs),
            upload(&[m, k], &ws),
            upload(&[n, m], &r),
        );
        let (dx, dw, db) = (zeros(x_shape), zeros(&[m, k]), zeros(&[m]));
        let mut ds = vec![linear_backward_input(c, &dx, &dy, &w, false).unwrap()];
        ds.extend(linear_backward_weight(c, &dw, Some(&db), &dy, &x, false).unwrap());
        run(&ds.iter().collect::<Vec<_>>());
        let (gx, gw, gb) = (download(&dx), download(&dw), download(&db));
        let tag = format!("{x_shape:?} M {m}");
        fd_check(
            &format!("linear dx {tag}"),
            &xs,
            &gx,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| gpu_loss(x_shape, m, &r, v, &ws, &bs),
        );
        fd_check(
            &format!("linear dW {tag}"),
            &ws,
            &gw,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| gpu_loss(x_shape, m, &r, &xs, v, &bs),
        );
        fd_check(
            &format!("linear db {tag}"),
            &bs,
            &gb,
            1e-2,
            1e-3,
            200,
            &mut rng,
            |v| gpu_loss(x_shape, m, &r, &xs, &ws, v),
        );
    }
}

fn is_shape_err<T: std::fmt::Debug>(r: cnnvis::Result<T>) -> bool {
    matches!(r, Err(Error::Shape { .. }))
}

#[test]
fn linear_bad_shapes_are_errors() {
    let c = ctx();
    let x = zeros(&[2, 3, 2, 2]); // K = 12
    let x_bad = zeros(&[2, 13]);
    let x_rank1 = zeros(&[12]);
    let w = zeros(&[5, 12]);
    let w_rank3 = zeros(&[5, 12, 1]);
    let b = zeros(&[5]);
    let b_bad = zeros(&[4]);
    let y = zeros(&[2, 5]);
    let y_bad = zeros(&[2, 4]);
    let y_bad_n = zeros(&[3, 5]);
    assert!(linear_forward(c, &y, &x, &w, Some(&b)).is_ok());
    assert!(is_shape_err(linear_forward(c, &y, &x_bad, &w, Some(&b))));
    assert!(is_shape_err(linear_forward(c, &y, &x_rank1, &w, None)));
    assert!(is_shape_err(linear_forward(c, &y, &x, &w_rank3, None)));
    assert!(is_shape_err(linear_forward(c, &y, &x, &w, Some(&b_bad))));
    assert!(is_shape_err(linear_forward(c, &y_bad, &x, &w, None)));
    assert!(is_shape_err(linear_forward(c, &y_bad_n, &x, &w, None)));

    let dy = zeros(&[2, 5]);
    let dx = zeros(&[2, 12]);
    assert!(linear_backward_input(c, &x, &dy, &w, false).is_ok());
    assert!(linear_backward_input(c, &dx, &dy, &w, false).is_ok());
    assert!(is_shape_err(linear_backward_input(
        c, &x_bad, &dy, &w, false
    )));
    assert!(is_shape_err(linear_backward_input(
        c, &dx, &y_bad, &w, false
    )));
    assert!(is_shape_err(linear_backward_input(
        c, &dx, &y_bad_n, &w, false
    )));
    assert!(is_shape_err(linear_backward_input(c, &dx, &b, &w, false)));

    let dw = zeros(&[5, 12]);
    let dw_bad = zeros(&[5, 11]);
    assert!(linear_backward_weight(c, &dw, Some(&b), &dy, &x, false).is_ok());
    assert!(is_shape_err(linear_backward_weight(
        c, &dw_bad, None, &dy, &x, false
    )));
    assert!(is_shape_err(linear_backward_weight(
        c,
        &dw,
        Some(&b_bad),
        &dy,
        &x,
        false
    )));
    assert!(is_shape_err(linear_backward_weight(
        c, &dw, None, &y_bad, &x, false
    )));
    assert!(is_shape_err(linear_backward_weight(
        c, &dw, None, &dy, &x_bad, false
    )));
    assert!(is_shape_err(linear_backward_weight(
        c, &dw, None, &y_bad_n, &x, false
    )));
}
