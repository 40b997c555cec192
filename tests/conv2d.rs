//! conv2d forward, backward to input, weight and bias: CPU f64 references (written as direct
//! loops, the backward ones as scatters so they share no structure with the GPU gathers),
//! finite differences of the GPU forward, the accumulate flag and shape errors.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use cnnvis::gpu::{Dispatch, Shader};
use cnnvis::ops::conv2d::{
    conv2d_autotune_candidates, conv2d_autotune_choices, conv2d_backward_input,
    conv2d_backward_input_variant, conv2d_backward_weight, conv2d_flops, conv2d_forward,
    conv2d_forward_variant, conv2d_gemm_splits, conv2d_output_shape, conv2d_variant_threads,
    conv2d_windows_supported, select_conv2d_variant, with_conv2d_autotune,
    with_conv2d_strided_cols, with_conv2d_variant, Conv2dAutotune, Conv2dAutotuneEntry,
    Conv2dAutotuneKey, Conv2dConfig, Conv2dPass, Conv2dVariant,
};
use cnnvis::ops::conv2d::{
    conv2d_backward_input_cached, conv2d_backward_input_relu_cached, conv2d_forward_cached,
    conv2d_forward_relu_cached, Conv2dWeightCache,
};
use cnnvis::ops::conv2d_winograd::with_winograd_chunk_limit;
use cnnvis::ops::relu::ReluRule;
use cnnvis::wgpu::DeviceType;
use cnnvis::{GpuContext, Tensor};

/// One convolution to test: input shape, output channels, kernel [kh, kw], config, bias.
#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    x: [usize; 4],
    cout: usize,
    k: [usize; 2],
    cfg: Conv2dConfig,
    bias: bool,
}

impl Case {
    fn w(&self) -> [usize; 4] {
        [self.cout, self.x[1] / self.cfg.groups, self.k[0], self.k[1]]
    }
    fn y(&self) -> [usize; 4] {
        conv2d_output_shape(&self.x, &self.w(), &self.cfg).expect("valid case")
    }
}

const fn cfg(s: [usize; 2], p: [usize; 2], d: [usize; 2], g: usize) -> Conv2dConfig {
    Conv2dConfig {
        stride: s,
        padding: p,
        dilation: d,
        groups: g,
    }
}

/// Shapes chosen so that every kernel variant (direct and tiled, with tails in channels and
/// positions, one and several backward-weight splits) sees stride, padding, dilation, groups.
const CASES: &[Case] = &[
    Case {
        name: "1x1 odd",
        x: [1, 3, 5, 7],
        cout: 5,
        k: [1, 1],
        cfg: cfg([1, 1], [0, 0], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "3x5 kernel, pad [1,2], N=2",
        x: [2, 5, 9, 11],
        cout: 6,
        k: [3, 5],
        cfg: cfg([1, 1], [1, 2], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "stride 2, N=3",
        x: [3, 4, 10, 9],
        cout: 9,
        k: [3, 3],
        cfg: cfg([2, 2], [1, 1], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "stride [2,1], kernel 3x2",
        x: [2, 6, 8, 7],
        cout: 4,
        k: [3, 2],
        cfg: cfg([2, 1], [0, 1], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "dilation 2",
        x: [1, 8, 12, 10],
        cout: 10,
        k: [3, 3],
        cfg: cfg([1, 1], [2, 2], [2, 2], 1),
        bias: true,
    },
    Case {
        name: "groups 2",
        x: [2, 8, 7, 6],
        cout: 12,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 2),
        bias: true,
    },
    Case {
        name: "groups 3, channel tails",
        x: [1, 15, 6, 5],
        cout: 27,
        k: [3, 3],
        cfg: cfg([1, 1], [0, 1], [1, 1], 3),
        bias: true,
    },
    Case {
        name: "depthwise x2",
        x: [2, 6, 7, 8],
        cout: 12,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 6),
        bias: true,
    },
    Case {
        name: "depthwise stride 2 dilation 2",
        x: [1, 4, 9, 9],
        cout: 4,
        k: [3, 3],
        cfg: cfg([2, 2], [2, 2], [2, 2], 4),
        bias: false,
    },
    Case {
        name: "direct: depthwise 2x3 kernel, stride [2,1], dilation [1,2]",
        x: [2, 3, 9, 8],
        cout: 3,
        k: [2, 3],
        cfg: cfg([2, 1], [1, 0], [1, 2], 3),
        bias: true,
    },
    Case {
        name: "direct: depthwise 3x3, stride [1,2], pad 1",
        x: [3, 2, 7, 9],
        cout: 2,
        k: [3, 3],
        cfg: cfg([1, 2], [1, 1], [1, 1], 2),
        bias: true,
    },
    Case {
        name: "no bias, 3 channel blocks",
        x: [1, 16, 13, 15],
        cout: 20,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 1),
        bias: false,
    },
    Case {
        name: "row weight kernel, split reduction",
        x: [2, 3, 40, 36],
        cout: 8,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "direct weight, split reduction",
        x: [1, 2, 40, 40],
        cout: 2,
        k: [3, 3],
        cfg: cfg([1, 2], [1, 1], [1, 1], 2),
        bias: true,
    },
    Case {
        name: "1x1 stride 2",
        x: [2, 8, 9, 9],
        cout: 8,
        k: [1, 1],
        cfg: cfg([2, 2], [0, 0], [1, 1], 1),
        bias: false,
    },
    Case {
        name: "kw 3, stride [2,1], dilation [2,1], kernel 2x3, two row segments",
        x: [2, 6, 9, 21],
        cout: 9,
        k: [2, 3],
        cfg: cfg([2, 1], [1, 1], [2, 1], 1),
        bias: true,
    },
    Case {
        name: "kw 3, stride [3,1], groups 2, N=3",
        x: [3, 10, 11, 17],
        cout: 8,
        k: [3, 3],
        cfg: cfg([3, 1], [2, 0], [1, 1], 2),
        bias: false,
    },
    Case {
        name: "row blocks: 5x3 kernel, pad [3,2], N=2, channel and row tails",
        x: [2, 13, 8, 19],
        cout: 14,
        k: [5, 3],
        cfg: cfg([1, 1], [3, 2], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "windows: 7 source windows, 2 target groups, column and row tails",
        x: [1, 100, 7, 11],
        cout: 150,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "windows: pad 0, N=2, one column block",
        x: [2, 9, 8, 6],
        cout: 11,
        k: [3, 3],
        cfg: cfg([1, 1], [0, 0], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "windows: pad [2,0], N=3, 17 columns",
        x: [3, 5, 4, 19],
        cout: 7,
        k: [3, 3],
        cfg: cfg([1, 1], [2, 0], [1, 1], 1),
        bias: false,
    },
    Case {
        name: "windows: 3x3 stride 2, pad 0",
        x: [1, 6, 11, 10],
        cout: 5,
        k: [3, 3],
        cfg: cfg([2, 2], [0, 0], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "windows: 3x3 stride 3, pad 2, N=2",
        x: [2, 3, 13, 12],
        cout: 4,
        k: [3, 3],
        cfg: cfg([3, 3], [2, 2], [1, 1], 1),
        bias: false,
    },
    Case {
        // Rows of 200 floats: the windows kernel packs the source through uniform windows of
        // 81 rows, 14 per launch, so 40 channels x 32 rows take 2 launches per image (forward,
        // and backward on dy's rows of 200). Image 1's last windows are bound ending at the
        // tensor's end: 3384 floats in, their last row ending on the window's last float.
        name: "windows: source packed through uniform windows, 2 launches, N=2",
        x: [2, 40, 32, 200],
        cout: 5,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 1),
        bias: true,
    },
    Case {
        // Forward packed through 2 uniform windows of 186 rows (the second ending at the
        // tensor's end), padding 2 on each side.
        name: "windows: source packed through uniform windows, pad 2",
        x: [1, 7, 45, 88],
        cout: 9,
        k: [3, 3],
        cfg: cfg([1, 1], [2, 2], [1, 1], 1),
        bias: false,
    },
    Case {
        // Backward packs dy [2, 40, 23, 24] through uniform windows with padding 2; forward
        // (rows of 26 floats) takes the storage packing.
        name: "windows: pad 0, dy packed through uniform windows, N=2",
        x: [2, 30, 25, 26],
        cout: 40,
        k: [3, 3],
        cfg: cfg([1, 1], [0, 0], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "windows 1x1: 3 source windows, 2 bands",
        x: [1, 600, 12, 12],
        cout: 40,
        k: [1, 1],
        cfg: cfg([1, 1], [0, 0], [1, 1], 1),
        bias: true,
    },
    Case {
        // 60 pixels: the windows kernel packs and stores 4 pixels at a time; 13 source
        // channels leave a partial channel quad, 60 of 72 band pixels a partial band.
        name: "windows 1x1, 4 pixels at a time: odd channels, N=2",
        x: [2, 13, 6, 10],
        cout: 11,
        k: [1, 1],
        cfg: cfg([1, 1], [0, 0], [1, 1], 1),
        bias: true,
    },
    Case {
        // Planes of 4000 pixels: the windows kernel packs the source through uniform windows of
        // 4 channels each, 14 per launch, so 61 channels take 2 launches per image; image 1's
        // last windows are bound ending at the tensor's end, so their channels start thousands
        // of floats in (elsewhere only where uniform offsets must be aligned to more than 16
        // bytes, as on most GPUs).
        name: "windows 1x1, source packed through uniform windows",
        x: [2, 61, 40, 100],
        cout: 6,
        k: [1, 1],
        cfg: cfg([1, 1], [0, 0], [1, 1], 1),
        bias: false,
    },
    Case {
        // 520 target channels from 200: the weights take several groups of target channels,
        // each a whole number of 8-channel blocks but not of a workgroup's 4 blocks, so the
        // last workgroup of a group has lanes past its end.
        name: "windows 1x1: target-channel groups of partial workgroups",
        x: [1, 200, 7, 9],
        cout: 520,
        k: [1, 1],
        cfg: cfg([1, 1], [0, 0], [1, 1], 1),
        bias: true,
    },
    Case {
        name: "kernel = padded input",
        x: [1, 4, 3, 4],
        cout: 5,
        k: [5, 4],
        cfg: cfg([1, 1], [1, 0], [1, 1], 1),
        bias: true,
    },
];

/// Runs the GPU tests one at a time: the row-block kernels take seconds to compile on lavapipe,
/// and tests racing to first use would each compile the same pipeline.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn idx4(s: &[usize; 4], a: usize, b: usize, c: usize, d: usize) -> usize {
    ((a * s[1] + b) * s[2] + c) * s[3] + d
}

/// Calls `f(n, co, oy, ox, ci, ky, kx, iy, ix)` for every (output, tap) pair that reads an input
/// pixel inside the image: the one loop nest all references share.
fn for_each_tap(c: &Case, mut f: impl FnMut([usize; 4], [usize; 4], [usize; 4])) {
    let (xs, ws, ys) = (c.x, c.w(), c.y());
    let (cin_g, cout_g) = (ws[1], c.cout / c.cfg.groups);
    for n in 0..ys[0] {
        for co in 0..ys[1] {
            let g = co / cout_g;
            for oy in 0..ys[2] {
                for ox in 0..ys[3] {
                    for cl in 0..cin_g {
                        for ky in 0..ws[2] {
                            for kx in 0..ws[3] {
                                let iy = (oy * c.cfg.stride[0] + ky * c.cfg.dilation[0]) as isize
                                    - c.cfg.padding[0] as isize;
                                let ix = (ox * c.cfg.stride[1] + kx * c.cfg.dilation[1]) as isize
                                    - c.cfg.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= xs[2] as isize || ix >= xs[3] as isize
                                {
                                    continue;
                                }
                                let xi = idx4(&xs, n, g * cin_g + cl, iy as usize, ix as usize);
                                let wi = idx4(&ws, co, cl, ky, kx);
                                let yi = idx4(&ys, n, co, oy, ox);
                                f([xi, wi, yi, 0], [n, co, oy, ox], [cl, ky, kx, 0]);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn forward_ref(c: &Case, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f64> {
    let ys = c.y();
    let mut y = vec![0.0f64; ys.iter().product()];
    if let Some(b) = b {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[(i / (ys[2] * ys[3])) % ys[1]] as f64;
        }
    }
    for_each_tap(c, |[xi, wi, yi, _], _, _| {
        y[yi] += x[xi] as f64 * w[wi] as f64;
    });
    y
}

fn backward_input_ref(c: &Case, dy: &[f32], w: &[f32]) -> Vec<f64> {
    let mut dx = vec![0.0f64; c.x.iter().product()];
    for_each_tap(c, |[xi, wi, yi, _], _, _| {
        dx[xi] += dy[yi] as f64 * w[wi] as f64;
    });
    dx
}

fn backward_weight_ref(c: &Case, dy: &[f32], x: &[f32]) -> Vec<f64> {
    let mut dw = vec![0.0f64; c.w().iter().product()];
    for_each_tap(c, |[xi, wi, yi, _], _, _| {
        dw[wi] += dy[yi] as f64 * x[xi] as f64;
    });
    dw
}

fn backward_bias_ref(c: &Case, dy: &[f32]) -> Vec<f64> {
    let ys = c.y();
    let mut db = vec![0.0f64; c.cout];
    for (i, &g) in dy.iter().enumerate() {
        db[(i / (ys[2] * ys[3])) % ys[1]] += g as f64;
    }
    db
}

/// f32 accumulation of `terms` products of values in [-1, 1]: an honest bound on the
/// rounding, well below what any indexing mistake produces.
fn atol(terms: usize) -> f64 {
    1e-6 + 2e-7 * terms as f64
}

/// How much more rounding error Winograd F(4x4, 3x3) carries than a direct sum: its output
/// transform A^T multiplies the products by up to 8 before they cancel (an f64 simulation at
/// 5..512 channels measured 15-40x the error of F(2x2, 3x3), which stays within `atol`).
const WINOGRAD_F4_ERROR: f64 = 8.0;

/// `atol` for a pass computed by `v`.
fn atol_for(v: Conv2dVariant, terms: usize) -> f64 {
    match v {
        Conv2dVariant::WinogradF4 => WINOGRAD_F4_ERROR * atol(terms),
        _ => atol(terms),
    }
}

fn entries(ds: &[&Dispatch], seen: &mut BTreeSet<&'static str>) {
    for d in ds {
        seen.insert(d.kernel().entry);
    }
}

/// Asserts every kernel in `wanted` ran. The row-block kernels are chosen on CPU adapters only
/// (lavapipe), so elsewhere they are not expected; with `CNNVIS_CONV_VARIANT` forcing one,
/// nothing is (`conv2d_every_variant_matches_cpu_reference` covers each variant anyway).
fn assert_covers(seen: &BTreeSet<&'static str>, wanted: &[&str]) {
    if std::env::var_os("CNNVIS_CONV_VARIANT").is_some() {
        return;
    }
    let cpu = ctx().adapter().device_type == cnnvis::wgpu::DeviceType::Cpu;
    for w in wanted {
        if !cpu && w.ends_with("_rows") {
            continue;
        }
        assert!(seen.contains(w), "no case exercised {w}; saw {seen:?}");
    }
}

#[test]
fn conv2d_forward_matches_cpu_reference() {
    let _serial = serial();
    let c = ctx();
    let mut rng = Rng::new(11);
    let mut seen = BTreeSet::new();
    for case in CASES {
        let (xs, ws, ys) = (case.x, case.w(), case.y());
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
        let bv = rng.vec(case.cout, -1.0, 1.0);
        let (x, w, b) = (
            upload(&xs, &xv),
            upload(&ws, &wv),
            upload(&[case.cout], &bv),
        );
        let y = poisoned(&ys);
        let d = conv2d_forward(c, &y, &x, &w, case.bias.then_some(&b), &case.cfg).unwrap();
        entries(&[&d], &mut seen);
        run(&[&d]);
        let want = forward_ref(case, &xv, &wv, case.bias.then_some(&bv[..]));
        let terms = ws[1] * ws[2] * ws[3];
        assert_close(
            &format!("conv2d_forward {} ({:?})", case.name, d.kernel().entry),
            &download(&y),
            &want,
            atol(terms),
            1e-5,
        );
    }
    assert_covers(
        &seen,
        &[
            "conv2d_forward",
            "conv2d_forward_tiled",
            "conv2d_forward_rows",
        ],
    );
}

#[test]
fn conv2d_backward_input_matches_cpu_reference() {
    let _serial = serial();
    let c = ctx();
    let mut rng = Rng::new(12);
    let mut seen = BTreeSet::new();
    for case in CASES {
        let (xs, ws, ys) = (case.x, case.w(), case.y());
        let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
        let (dy, w) = (upload(&ys, &dyv), upload(&ws, &wv));
        let dx = poisoned(&xs);
        let d = conv2d_backward_input(c, &dx, &dy, &w, &case.cfg, false).unwrap();
        entries(&[&d], &mut seen);
        run(&[&d]);
        let want = backward_input_ref(case, &dyv, &wv);
        let terms = case.cout / case.cfg.groups * ws[2] * ws[3];
        let name = format!("conv2d_backward_input {} ({})", case.name, d.kernel().entry);
        assert_close(&name, &download(&dx), &want, atol(terms), 1e-5);

        // accumulate adds onto what dx holds
        let base = rng.vec(xs.iter().product(), -1.0, 1.0);
        dx.write(c, &base).unwrap();
        run(&[&conv2d_backward_input(c, &dx, &dy, &w, &case.cfg, true).unwrap()]);
        let sum: Vec<f64> = want.iter().zip(&base).map(|(a, &b)| a + b as f64).collect();
        assert_close(
            &format!("{name} accumulate"),
            &download(&dx),
            &sum,
            atol(terms),
            1e-5,
        );
    }
    assert_covers(
        &seen,
        &[
            "conv2d_backward_input",
            "conv2d_backward_input_tiled",
            "conv2d_backward_input_rows",
        ],
    );
}

#[test]
fn conv2d_backward_weight_and_bias_match_cpu_reference() {
    let _serial = serial();
    let c = ctx();
    let mut rng = Rng::new(13);
    let mut seen = BTreeSet::new();
    for case in CASES {
        let (xs, ws, ys) = (case.x, case.w(), case.y());
        let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let (dy, x) = (upload(&ys, &dyv), upload(&xs, &xv));
        let (dw, db) = (poisoned(&ws), poisoned(&[case.cout]));
        let ds =
            conv2d_backward_weight(c, &dw, case.bias.then_some(&db), &dy, &x, &case.cfg, false)
                .unwrap();
        let refs: Vec<&Dispatch> = ds.iter().collect();
        entries(&refs, &mut seen);
        run(&refs);
        let kernels: Vec<&str> = ds.iter().map(|d| d.kernel().entry).collect();
        let want_w = backward_weight_ref(case, &dyv, &xv);
        let want_b = backward_bias_ref(case, &dyv);
        let terms = ys[0] * ys[2] * ys[3];
        let name = format!("conv2d_backward_weight {} ({kernels:?})", case.name);
        assert_close(&name, &download(&dw), &want_w, atol(terms), 1e-5);
        if case.bias {
            assert_close(
                &format!("{name} db"),
                &download(&db),
                &want_b,
                atol(terms),
                1e-5,
            );
        } else {
            assert!(
                download(&db).iter().all(|v| v.is_nan()),
                "{name}: db was written"
            );
        }

        // accumulate adds onto what dw and db hold
        let base_w = rng.vec(ws.iter().product(), -1.0, 1.0);
        let base_b = rng.vec(case.cout, -1.0, 1.0);
        dw.write(c, &base_w).unwrap();
        db.write(c, &base_b).unwrap();
        let ds = conv2d_backward_weight(c, &dw, Some(&db), &dy, &x, &case.cfg, true).unwrap();
        run(&ds.iter().collect::<Vec<_>>());
        let sum_w: Vec<f64> = want_w
            .iter()
            .zip(&base_w)
            .map(|(a, &b)| a + b as f64)
            .collect();
        let sum_b: Vec<f64> = want_b
            .iter()
            .zip(&base_b)
            .map(|(a, &b)| a + b as f64)
            .collect();
        assert_close(
            &format!("{name} accumulate"),
            &download(&dw),
            &sum_w,
            atol(terms),
            1e-5,
        );
        assert_close(
            &format!("{name} db accumulate"),
            &download(&db),
            &sum_b,
            atol(terms),
            1e-5,
        );
    }
    assert_covers(
        &seen,
        &[
            "conv2d_backward_weight",
            "conv2d_backward_weight_tiled",
            "conv2d_backward_weight_row3",
            "conv2d_backward_weight_reduce",
            "conv2d_backward_bias",
        ],
    );
}

/// Every forward and backward-to-input variant, forced on every case it applies to (rows only
/// where Kw == 3 with unit stride and dilation), against the CPU references, whatever the
/// adapter would choose.
#[test]
fn conv2d_every_variant_matches_cpu_reference() {
    let _serial = serial();
    let c = ctx();
    let mut rng = Rng::new(14);
    let mut ran = BTreeSet::new();
    for case in CASES {
        let (xs, ws, ys) = (case.x, case.w(), case.y());
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
        let bv = rng.vec(case.cout, -1.0, 1.0);
        let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
        let base = rng.vec(xs.iter().product(), -1.0, 1.0);
        let (x, w, b, dy) = (
            upload(&xs, &xv),
            upload(&ws, &wv),
            upload(&[case.cout], &bv),
            upload(&ys, &dyv),
        );
        let want_y = forward_ref(case, &xv, &wv, case.bias.then_some(&bv[..]));
        let want_dx = backward_input_ref(case, &dyv, &wv);
        let sum: Vec<f64> = want_dx
            .iter()
            .zip(&base)
            .map(|(a, &b)| a + b as f64)
            .collect();
        for v in Conv2dVariant::ALL {
            let supported = v != Conv2dVariant::Windows || conv2d_windows_supported(c);
            let applies = |pass| {
                supported
                    && conv2d_variant_threads(pass, v, &xs, &ws, &case.cfg)
                        .unwrap()
                        .is_some()
            };
            let y = poisoned(&ys);
            let fwd = conv2d_forward_variant(c, v, &y, &x, &w, case.bias.then_some(&b), &case.cfg);
            let dx = poisoned(&xs);
            let bwi = conv2d_backward_input_variant(c, v, &dx, &dy, &w, &case.cfg, false);
            let name = format!("{} [{}]", case.name, v.name());
            if !applies(Conv2dPass::Forward) {
                assert!(fwd.is_err(), "{name}: forward accepted");
            } else {
                let fwd = fwd.unwrap();
                assert_eq!(Conv2dVariant::of_kernel(fwd.kernel()), Some(v));
                ran.insert(v.name());
                run(&[&fwd]);
                let terms = ws[1] * ws[2] * ws[3];
                assert_close(
                    &format!("forward {name}"),
                    &download(&y),
                    &want_y,
                    atol_for(v, terms),
                    1e-5,
                );
            }
            if !applies(Conv2dPass::BackwardInput) {
                assert!(bwi.is_err(), "{name}: backward-input accepted");
                continue;
            }
            let bwi = bwi.unwrap();
            assert_eq!(Conv2dVariant::of_kernel(bwi.kernel()), Some(v));
            run(&[&bwi]);
            let terms = case.cout / case.cfg.groups * ws[2] * ws[3];
            assert_close(
                &format!("backward-input {name}"),
                &download(&dx),
                &want_dx,
                atol_for(v, terms),
                1e-5,
            );
            dx.write(c, &base).unwrap();
            run(&[&conv2d_backward_input_variant(c, v, &dx, &dy, &w, &case.cfg, true).unwrap()]);
            assert_close(
                &format!("backward-input accumulate {name}"),
                &download(&dx),
                &sum,
                atol_for(v, terms),
                1e-5,
            );
        }
    }
    let expected = 7 + conv2d_windows_supported(c) as usize;
    assert_eq!(ran.len(), expected, "variants run: {ran:?}");
}

/// Input shape, weight shape and config of one model conv layer at batch `n`.
type Layer = ([usize; 4], [usize; 4], Conv2dConfig);

/// Every distinct conv shape of VGG16 and torchvision ResNet50 at 224² (as benches/kernels.rs):
/// (label, hw, cin, cout, k, stride).
const MODEL_LAYERS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("vgg16", 224, 3, 64, 3, 1),
    ("vgg16", 224, 64, 64, 3, 1),
    ("vgg16", 112, 64, 128, 3, 1),
    ("vgg16", 112, 128, 128, 3, 1),
    ("vgg16", 56, 128, 256, 3, 1),
    ("vgg16", 56, 256, 256, 3, 1),
    ("vgg16", 28, 256, 512, 3, 1),
    ("vgg16", 28, 512, 512, 3, 1),
    ("vgg16", 14, 512, 512, 3, 1),
    ("resnet50", 224, 3, 64, 7, 2),
    ("resnet50", 56, 64, 64, 1, 1),
    ("resnet50", 56, 256, 64, 1, 1),
    ("resnet50", 56, 64, 64, 3, 1),
    ("resnet50", 56, 64, 256, 1, 1),
    ("resnet50", 56, 256, 128, 1, 1),
    ("resnet50", 56, 128, 128, 3, 2),
    ("resnet50", 56, 256, 512, 1, 2),
    ("resnet50", 28, 512, 128, 1, 1),
    ("resnet50", 28, 128, 128, 3, 1),
    ("resnet50", 28, 128, 512, 1, 1),
    ("resnet50", 28, 512, 256, 1, 1),
    ("resnet50", 28, 256, 256, 3, 2),
    ("resnet50", 28, 512, 1024, 1, 2),
    ("resnet50", 14, 1024, 256, 1, 1),
    ("resnet50", 14, 256, 256, 3, 1),
    ("resnet50", 14, 256, 1024, 1, 1),
    ("resnet50", 14, 1024, 512, 1, 1),
    ("resnet50", 14, 512, 512, 3, 2),
    ("resnet50", 14, 1024, 2048, 1, 2),
    ("resnet50", 7, 2048, 512, 1, 1),
    ("resnet50", 7, 512, 512, 3, 1),
    ("resnet50", 7, 512, 2048, 1, 1),
];

fn model_layer(
    n: usize,
    &(_, hw, cin, cout, k, s): &(&str, usize, usize, usize, usize, usize),
) -> Layer {
    (
        [n, cin, hw, hw],
        [cout, cin, k, k],
        Conv2dConfig::new().padding(k / 2).stride(s),
    )
}

/// The selection before it depended on the thread count: rows on CPU adapters where they
/// apply, else tiled with two channels per group, else direct.
fn previous_choice(pass: Conv2dPass, (x, w, cfg): &Layer, device: DeviceType) -> Conv2dVariant {
    let ch = match pass {
        Conv2dPass::Forward => w[0] / cfg.groups,
        Conv2dPass::BackwardInput => x[1] / cfg.groups,
    };
    let rows = conv2d_variant_threads(pass, Conv2dVariant::Rows, x, w, cfg)
        .unwrap()
        .is_some();
    let strided_backward = pass == Conv2dPass::BackwardInput && cfg.stride != [1, 1];
    if device == DeviceType::Cpu && rows {
        Conv2dVariant::Rows
    } else if device == DeviceType::Cpu && strided_backward {
        Conv2dVariant::Direct
    } else if ch >= 2 {
        Conv2dVariant::Tiled
    } else {
        Conv2dVariant::Direct
    }
}

/// The variant rule as a pure function of shapes and device type (no GPU involved): CPU
/// adapters keep the previous choice; GPUs never take the row kernels, take a gemm kernel
/// wherever the pass writes 16 or more channels per group, else keep the tiled kernel where it
/// launches >= 8192 threads and otherwise take the variant launching the most.
/// `--nocapture` prints the thread counts per VGG16 / ResNet50 layer.
#[test]
fn conv2d_variant_selection_depends_on_adapter_and_threads() {
    const TARGET: usize = 8192;
    assert_eq!(Conv2dVariant::parse("naive"), Some(Conv2dVariant::Direct));
    assert_eq!(Conv2dVariant::parse(" Tiled"), Some(Conv2dVariant::Tiled));
    assert_eq!(Conv2dVariant::parse("rows"), Some(Conv2dVariant::Rows));
    assert_eq!(Conv2dVariant::parse("fast"), None);
    let mut layers: Vec<(String, Layer)> = Vec::new();
    for n in [1, 64] {
        for l in MODEL_LAYERS {
            let (x, w, cfg) = model_layer(n, l);
            let s = cfg.stride[0];
            let label = format!(
                "{} {}² {}->{} {}x{} s{s} N={n}",
                l.0, l.1, l.2, l.3, l.4, l.4
            );
            layers.push((label, (x, w, cfg)));
        }
    }
    for case in CASES {
        layers.push((case.name.to_string(), (case.x, case.w(), case.cfg)));
    }
    let gpus = [
        DeviceType::DiscreteGpu,
        DeviceType::IntegratedGpu,
        DeviceType::VirtualGpu,
        DeviceType::Other,
    ];
    println!(
        "{:<44} {:<15} {:>8} {:>16} {:>16}",
        "layer", "pass", "CPU", "GPU before", "GPU after"
    );
    for (label, layer @ (x, w, cfg)) in &layers {
        for pass in [Conv2dPass::Forward, Conv2dPass::BackwardInput] {
            let threads = |v| conv2d_variant_threads(pass, v, x, w, cfg).unwrap();
            let cpu = select_conv2d_variant(pass, x, w, cfg, DeviceType::Cpu).unwrap();
            assert_eq!(
                cpu,
                previous_choice(pass, layer, DeviceType::Cpu),
                "{label} {pass:?}"
            );
            let gpu = select_conv2d_variant(pass, x, w, cfg, DeviceType::DiscreteGpu).unwrap();
            for d in gpus {
                assert_eq!(select_conv2d_variant(pass, x, w, cfg, d).unwrap(), gpu);
            }
            let before = previous_choice(pass, layer, DeviceType::DiscreteGpu);
            assert_ne!(gpu, Conv2dVariant::Rows, "{label} {pass:?}");
            let t = threads(gpu).expect("the chosen variant applies");
            let tiled = threads(Conv2dVariant::Tiled).unwrap();
            let direct = threads(Conv2dVariant::Direct).unwrap();
            let channels = match pass {
                Conv2dPass::Forward => w[0] / cfg.groups,
                Conv2dPass::BackwardInput => x[1] / cfg.groups,
            };
            // Where the direct kernel would be left, Winograd F4 takes 3x3 stride-1 passes.
            let direct_or_f4 = match threads(Conv2dVariant::WinogradF4) {
                Some(_) => Conv2dVariant::WinogradF4,
                None => Conv2dVariant::Direct,
            };
            let winograd = matches!(gpu, Conv2dVariant::Winograd | Conv2dVariant::WinogradF4);
            if channels >= 16 {
                assert!(gpu.is_gemm() || winograd, "{label} {pass:?}: {gpu:?}");
            } else if before == Conv2dVariant::Tiled {
                // Tiled stays wherever it is wide enough; otherwise direct has more threads.
                let want = if tiled >= TARGET {
                    Conv2dVariant::Tiled
                } else {
                    direct_or_f4
                };
                assert_eq!(
                    gpu, want,
                    "{label} {pass:?}: tiled {tiled}, direct {direct}"
                );
            } else {
                assert_eq!(gpu, direct_or_f4, "{label} {pass:?}");
            }
            assert!(
                gpu.is_gemm() || winograd || t >= TARGET || t == direct,
                "{label} {pass:?}"
            );
            let tb = threads(before).unwrap();
            println!(
                "{label:<44} {pass:<15?} {:>8} {:>7} {:>8} {:>7} {:>8}",
                cpu.name(),
                before.name(),
                tb,
                gpu.name(),
                t
            );
        }
    }
    // Winograd F(4x4, 3x3) for 3x3 stride-1 layers of 64 or more channels with 32 or more of
    // its tiles, F(2x2, 3x3) where only that one has 32 (14² at batch 1); otherwise 128 x 128
    // gemm tiles where rows, columns and the reduction are all long, 64 x 64 tiles for 49
    // columns (7² at batch 1); the 3-channel backward passes of the first layers keep the
    // direct kernel, except a 3x3 one, where F4 beat it.
    let pick = |pass, hw, cin, cout, k, s| {
        let (x, w, cfg) = model_layer(1, &("", hw, cin, cout, k, s));
        select_conv2d_variant(pass, &x, &w, &cfg, DeviceType::DiscreteGpu).unwrap()
    };
    let fwd = Conv2dPass::Forward;
    assert_eq!(pick(fwd, 14, 512, 512, 3, 1), Conv2dVariant::Winograd);
    assert_eq!(pick(fwd, 7, 512, 512, 3, 1), Conv2dVariant::Gemm);
    assert_eq!(pick(fwd, 28, 512, 512, 3, 1), Conv2dVariant::WinogradF4);
    assert_eq!(pick(fwd, 224, 64, 64, 3, 1), Conv2dVariant::WinogradF4);
    assert_eq!(pick(fwd, 56, 256, 256, 3, 1), Conv2dVariant::WinogradF4);
    assert_eq!(pick(fwd, 14, 1024, 256, 1, 1), Conv2dVariant::Gemm);
    assert_eq!(pick(fwd, 224, 3, 64, 7, 2), Conv2dVariant::Gemm);
    assert_eq!(pick(fwd, 224, 3, 64, 3, 1), Conv2dVariant::Gemm);
    let bwd = Conv2dPass::BackwardInput;
    assert_eq!(pick(bwd, 224, 3, 64, 7, 2), Conv2dVariant::Direct);
    assert_eq!(pick(bwd, 224, 3, 64, 3, 1), Conv2dVariant::WinogradF4);
}

/// Checks the GPU rule (used where autotuning is off or fails) against the `autotuned` lines of
/// a recorded `cargo bench --bench kernels` log (each candidate's median ms): the rule's pick
/// is never more than 10 % slower than the fastest candidate. Lines of Winograd products
/// (grouped 1x1 convs, tuned between the two gemm tiles only) are left out, and so are those
/// where the rule picks a variant the log did not time (one added after it was recorded).
/// Returns (lines checked, lines left out for an untimed variant).
fn check_rule_against_log(path: &str) -> (usize, usize) {
    let log = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .expect("the recorded log is in the repository");
    let dims = |s: &str| -> Vec<usize> {
        s.trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|v| v.parse().unwrap())
            .collect()
    };
    let (mut checked, mut untimed) = (0, 0);
    for line in log
        .lines()
        .filter(|l| l.contains("] s") && l.contains(": "))
    {
        // "  [1, 64, 56, 56] [64, 64, 3, 3] s1 Forward: gemm-wide [direct 0.141, gemm 0.053, ...]"
        let (key, rest) = line.trim().split_once(": ").unwrap();
        let x = dims(&key[..key.find(']').unwrap() + 1]);
        let key = &key[key.find(']').unwrap() + 2..];
        let w = dims(&key[..key.find(']').unwrap() + 1]);
        if x[1] != w[1] {
            continue;
        }
        let mut words = key[key.find(']').unwrap() + 2..].split(' ');
        let stride: usize = words.next().unwrap()[1..].parse().unwrap();
        let pass = match words.next().unwrap() {
            "Forward" => Conv2dPass::Forward,
            _ => Conv2dPass::BackwardInput,
        };
        let timings: Vec<(Conv2dVariant, f64)> = rest[rest.find('[').unwrap() + 1..rest.len() - 1]
            .split(", ")
            .map(|c| {
                let (v, ms) = c.split_once(' ').unwrap();
                (Conv2dVariant::parse(v).unwrap(), ms.parse().unwrap())
            })
            .collect();
        let cfg = Conv2dConfig::new().stride(stride).padding(w[2] / 2);
        let rule = select_conv2d_variant(pass, &x, &w, &cfg, DeviceType::DiscreteGpu).unwrap();
        let best = timings.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
        let Some(ms) = timings.iter().find(|t| t.0 == rule).map(|t| t.1) else {
            untimed += 1;
            continue;
        };
        assert!(
            ms <= 1.10 * best,
            "{path}: {line}: the rule picks {rule:?} ({ms} ms)"
        );
        checked += 1;
    }
    (checked, untimed)
}

/// Against an NVIDIA H200's log of every VGG16 and ResNet50 conv at batch 1, recorded before
/// the Winograd variants: every shape where the rule still picks a variant timed there.
#[test]
fn conv2d_gpu_rule_is_near_the_h200_autotuned_choice() {
    let (checked, untimed) = check_rule_against_log("benches/results/h200-2026-11-27/log.txt");
    assert_eq!(
        checked + untimed,
        64,
        "every VGG16 and ResNet50 conv shape, both passes"
    );
    assert!(checked >= 40, "{checked} checked, {untimed} left out");
}

/// Against an NVIDIA H100's log of every VGG16 conv at batch 1 and 64 with every variant, the
/// Winograd ones included.
#[test]
fn conv2d_gpu_rule_is_near_the_h100_autotuned_choice() {
    let (checked, untimed) = check_rule_against_log("benches/results/h100-2026-11-27d/log.txt");
    assert_eq!(
        (checked, untimed),
        (36, 0),
        "VGG16's 9 shapes, 2 passes, 2 batches"
    );
}

/// The autotuning cache key and candidate lists are pure functions of their inputs.
#[test]
fn conv2d_autotune_key_and_candidates() {
    use std::collections::HashSet;
    let x = [1, 8, 10, 12];
    let w = [16, 8, 3, 3];
    let c1 = Conv2dConfig::new().padding(1);
    let key = |a: &str, p, x: &[usize], w: &[usize], c: &Conv2dConfig| {
        Conv2dAutotuneKey::for_shapes(a, p, x, w, c).unwrap()
    };
    let base = key("GPU A", Conv2dPass::Forward, &x, &w, &c1);
    assert_eq!(base, key("GPU A", Conv2dPass::Forward, &x, &w, &c1));
    assert_eq!((base.x, base.w, base.cfg), (x, w, c1));
    let others = [
        key("GPU B", Conv2dPass::Forward, &x, &w, &c1),
        key("GPU A", Conv2dPass::BackwardInput, &x, &w, &c1),
        key("GPU A", Conv2dPass::Forward, &[2, 8, 10, 12], &w, &c1),
        key("GPU A", Conv2dPass::Forward, &x, &[8, 8, 3, 3], &c1),
        key("GPU A", Conv2dPass::Forward, &x, &w, &c1.stride(2)),
        key("GPU A", Conv2dPass::Forward, &x, &w, &Conv2dConfig::new()),
    ];
    let mut set = HashSet::from([base.clone(), base.clone()]);
    assert_eq!(set.len(), 1);
    for k in &others {
        assert_ne!(k, &base);
        assert!(set.insert(k.clone()), "{k:?} collides");
    }
    assert!(
        Conv2dAutotuneKey::for_shapes("GPU A", Conv2dPass::Forward, &x, &[16, 3, 3, 3], &c1)
            .is_err()
    );

    use Conv2dVariant::{Direct, Gemm, GemmWide, Rows, Tiled, Winograd, WinogradF4};
    let cands = |p, x: &[usize], w: &[usize], c: &Conv2dConfig, d| {
        conv2d_autotune_candidates(p, x, w, c, d).unwrap()
    };
    for p in [Conv2dPass::Forward, Conv2dPass::BackwardInput] {
        // GPUs never time the row kernels, CPU adapters never the gemm kernels (workgroup
        // memory is slow on lavapipe); each times the others where they apply.
        assert_eq!(
            cands(p, &x, &w, &c1, DeviceType::DiscreteGpu),
            [Direct, Winograd, WinogradF4, Gemm, GemmWide, Tiled]
        );
        assert_eq!(
            cands(p, &x, &w, &c1, DeviceType::Cpu),
            [Direct, Tiled, Rows]
        );
        let s2 = c1.stride(2);
        assert_eq!(cands(p, &x, &w, &s2, DeviceType::Cpu), [Direct, Tiled]);
        // Depthwise: one channel per group, no tiled kernel.
        let dw = Conv2dConfig::new().groups(8);
        assert_eq!(
            cands(p, &x, &[8, 1, 1, 1], &dw, DeviceType::IntegratedGpu),
            [Direct, Gemm, GemmWide]
        );
    }
}

fn autotune_entry(key: &Conv2dAutotuneKey) -> Option<Conv2dAutotuneEntry> {
    conv2d_autotune_choices()
        .into_iter()
        .find(|e| &e.key == key)
}

/// Forward, then backward to the input (accumulating into `base`), through the variant chosen
/// with autotuning `mode`, built twice; checked against the CPU references. Returns the chosen
/// variants (forward, backward).
fn autotuned_case(case: &Case, mode: Conv2dAutotune, seed: u64) -> (Conv2dVariant, Conv2dVariant) {
    let c = ctx();
    let mut rng = Rng::new(seed);
    let (xs, ws, ys) = (case.x, case.w(), case.y());
    let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
    let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
    let bv = rng.vec(case.cout, -1.0, 1.0);
    let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
    let base = rng.vec(xs.iter().product(), -1.0, 1.0);
    let (x, w, b, dy) = (
        upload(&xs, &xv),
        upload(&ws, &wv),
        upload(&[case.cout], &bv),
        upload(&ys, &dyv),
    );
    let (y, dx) = (poisoned(&ys), upload(&xs, &base));
    let bias = case.bias.then_some(&b);
    // Built twice: the second build must reuse the cached choice. The backward launch
    // accumulates, so tuning on the caller's dx would show up in the result.
    let (fwd, bwi) = with_conv2d_autotune(mode, || {
        let f1 = conv2d_forward(c, &y, &x, &w, bias, &case.cfg).unwrap();
        let b1 = conv2d_backward_input(c, &dx, &dy, &w, &case.cfg, true).unwrap();
        let f2 = conv2d_forward(c, &y, &x, &w, bias, &case.cfg).unwrap();
        let b2 = conv2d_backward_input(c, &dx, &dy, &w, &case.cfg, true).unwrap();
        assert_eq!(f1.kernel().entry, f2.kernel().entry);
        assert_eq!(b1.kernel().entry, b2.kernel().entry);
        (f2, b2)
    });
    run(&[&fwd, &bwi]);
    let want_y = forward_ref(case, &xv, &wv, case.bias.then_some(&bv[..]));
    let want_dx: Vec<f64> = backward_input_ref(case, &dyv, &wv)
        .iter()
        .zip(&base)
        .map(|(a, &b)| a + b as f64)
        .collect();
    let name = format!("{} ({:?})", case.name, mode);
    assert_close(
        &format!("forward {name}"),
        &download(&y),
        &want_y,
        atol(ws[1] * ws[2] * ws[3]),
        1e-5,
    );
    assert_close(
        &format!("backward-input accumulate {name}"),
        &download(&dx),
        &want_dx,
        atol(case.cout / case.cfg.groups * ws[2] * ws[3]),
        1e-5,
    );
    (
        Conv2dVariant::of_kernel(fwd.kernel()).unwrap(),
        Conv2dVariant::of_kernel(bwi.kernel()).unwrap(),
    )
}

/// Autotuning forced on (also on lavapipe): each (pass, shape) is timed once, on scratch
/// tensors, every candidate is timed, and the result equals the CPU reference.
#[test]
fn conv2d_autotune_times_once_per_shape_and_matches_reference() {
    let _serial = serial();
    // Shapes of no other test, so the cache entries are this test's own.
    const CASE: Case = Case {
        name: "autotuned 3x3 pad 1",
        x: [1, 6, 7, 9],
        cout: 10,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 1),
        bias: true,
    };
    let chosen = autotuned_case(&CASE, Conv2dAutotune::On, 31);
    if std::env::var_os("CNNVIS_CONV_VARIANT").is_some() {
        return; // the forced variant wins; nothing is tuned
    }
    let c = ctx();
    let adapter = c.adapter().to_string();
    for (pass, v) in [
        (Conv2dPass::Forward, chosen.0),
        (Conv2dPass::BackwardInput, chosen.1),
    ] {
        let key =
            Conv2dAutotuneKey::for_shapes(&adapter, pass, &CASE.x, &CASE.w(), &CASE.cfg).unwrap();
        let e = autotune_entry(&key).expect("tuned");
        assert_eq!(e.tunings, 1, "{pass:?} tuned more than once: {e:?}");
        assert_eq!(e.error, None);
        assert_eq!(e.variant, v);
        let mut want = conv2d_autotune_candidates(
            pass,
            &CASE.x,
            &CASE.w(),
            &CASE.cfg,
            c.adapter().device_type,
        )
        .unwrap();
        // The adapter-independent list, plus the windows kernel where this context runs it.
        let windows =
            conv2d_variant_threads(pass, Conv2dVariant::Windows, &CASE.x, &CASE.w(), &CASE.cfg)
                .unwrap()
                .is_some();
        if windows && conv2d_windows_supported(c) {
            want.push(Conv2dVariant::Windows);
        }
        let timed: Vec<Conv2dVariant> = e.timings_ms.iter().map(|t| t.0).collect();
        assert_eq!(timed, want, "{pass:?}");
        assert!(
            e.timings_ms.iter().all(|t| t.1 > 0.0 && t.1.is_finite()),
            "{e:?}"
        );
        println!("{pass:?}: chose {} from {:?}", v.name(), e.timings_ms);
    }
    // A third build after the run still hits the cache.
    let (y, x, w) = (zeros(&CASE.y()), zeros(&CASE.x), zeros(&CASE.w()));
    with_conv2d_autotune(Conv2dAutotune::On, || {
        conv2d_forward(c, &y, &x, &w, None, &CASE.cfg).unwrap();
    });
    let key =
        Conv2dAutotuneKey::for_shapes(&adapter, Conv2dPass::Forward, &CASE.x, &CASE.w(), &CASE.cfg)
            .unwrap();
    assert_eq!(autotune_entry(&key).unwrap().tunings, 1);
}

/// An error while tuning falls back to the per-adapter rule instead of failing the call.
#[test]
fn conv2d_autotune_failure_falls_back_to_the_rule() {
    let _serial = serial();
    const CASE: Case = Case {
        // Dilated: the windows variant, which the shape-only rule cannot see, does not apply.
        name: "autotune fallback, stride [2,1], dilation [1,2]",
        x: [2, 5, 6, 5],
        cout: 4,
        k: [3, 2],
        cfg: cfg([2, 1], [1, 0], [1, 2], 1),
        bias: false,
    };
    let chosen = autotuned_case(&CASE, Conv2dAutotune::FailForTesting, 32);
    if std::env::var_os("CNNVIS_CONV_VARIANT").is_some()
        || std::env::var_os("CNNVIS_CONV_MIN_THREADS").is_some()
    {
        return;
    }
    let c = ctx();
    let device = c.adapter().device_type;
    let adapter = c.adapter().to_string();
    for (pass, v) in [
        (Conv2dPass::Forward, chosen.0),
        (Conv2dPass::BackwardInput, chosen.1),
    ] {
        let rule = select_conv2d_variant(pass, &CASE.x, &CASE.w(), &CASE.cfg, device).unwrap();
        assert_eq!(v, rule, "{pass:?}");
        let key =
            Conv2dAutotuneKey::for_shapes(&adapter, pass, &CASE.x, &CASE.w(), &CASE.cfg).unwrap();
        let e = autotune_entry(&key).expect("fallback cached");
        assert_eq!((e.variant, e.tunings), (rule, 1), "{e:?}");
        assert!(
            e.error.as_deref().unwrap_or("").contains("injected"),
            "{e:?}"
        );
        assert!(e.timings_ms.is_empty());
    }
    // Autotuning off: the rule, and no cache entry for a new shape.
    let x = [1, 5, 6, 5];
    let (y, xt, w) = (
        zeros(&conv2d_output_shape(&x, &CASE.w(), &CASE.cfg).unwrap()),
        zeros(&x),
        zeros(&CASE.w()),
    );
    let d = with_conv2d_autotune(Conv2dAutotune::Off, || {
        conv2d_forward(c, &y, &xt, &w, None, &CASE.cfg).unwrap()
    });
    let rule =
        select_conv2d_variant(Conv2dPass::Forward, &x, &CASE.w(), &CASE.cfg, device).unwrap();
    assert_eq!(Conv2dVariant::of_kernel(d.kernel()), Some(rule));
    let key =
        Conv2dAutotuneKey::for_shapes(&adapter, Conv2dPass::Forward, &x, &CASE.w(), &CASE.cfg)
            .unwrap();
    assert!(autotune_entry(&key).is_none());
}

/// Several splits on both weight kernels: the reduce pass must run in those cases.
#[test]
fn conv2d_backward_weight_splits_its_reduction_when_weights_are_few() {
    let _serial = serial();
    let c = ctx();
    for name in [
        "row weight kernel, split reduction",
        "direct weight, split reduction",
    ] {
        let case = CASES.iter().find(|k| k.name == name).unwrap();
        let (dw, dy, x) = (zeros(&case.w()), zeros(&case.y()), zeros(&case.x));
        let ds = conv2d_backward_weight(c, &dw, None, &dy, &x, &case.cfg, false).unwrap();
        let kernels: Vec<&str> = ds.iter().map(|d| d.kernel().entry).collect();
        assert_eq!(kernels.len(), 2, "{name}: {kernels:?}");
        assert_eq!(kernels[1], "conv2d_backward_weight_reduce");
    }
}

/// loss = sum(wts * conv2d(x, w, b)), with the forward on the GPU.
fn gpu_loss(case: &Case, wts: &[f32], xv: &[f32], wv: &[f32], bv: &[f32]) -> f64 {
    let c = ctx();
    let (x, w, b) = (
        upload(&case.x, xv),
        upload(&case.w(), wv),
        upload(&[case.cout], bv),
    );
    let y = zeros(&case.y());
    run(&[&conv2d_forward(c, &y, &x, &w, Some(&b), &case.cfg).unwrap()]);
    weighted_sum(wts, &download(&y))
}

fn fd_case(case: &Case, seed: u64) {
    let c = ctx();
    let mut rng = Rng::new(seed);
    let (xs, ws, ys) = (case.x, case.w(), case.y());
    let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
    let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
    let bv = rng.vec(case.cout, -1.0, 1.0);
    let wts = rng.vec(ys.iter().product(), -1.0, 1.0);
    let (x, w, dy) = (upload(&xs, &xv), upload(&ws, &wv), upload(&ys, &wts));
    let (dx, dw, db) = (poisoned(&xs), poisoned(&ws), poisoned(&[case.cout]));
    let mut ds = vec![conv2d_backward_input(c, &dx, &dy, &w, &case.cfg, false).unwrap()];
    ds.extend(conv2d_backward_weight(c, &dw, Some(&db), &dy, &x, &case.cfg, false).unwrap());
    run(&ds.iter().collect::<Vec<_>>());
    let (gx, gw, gb) = (download(&dx), download(&dw), download(&db));
    let name = case.name;
    fd_check(
        &format!("{name} dx"),
        &xv,
        &gx,
        1e-2,
        1e-3,
        60,
        &mut rng,
        |v| gpu_loss(case, &wts, v, &wv, &bv),
    );
    fd_check(
        &format!("{name} dw"),
        &wv,
        &gw,
        1e-2,
        1e-3,
        60,
        &mut rng,
        |v| gpu_loss(case, &wts, &xv, v, &bv),
    );
    fd_check(
        &format!("{name} db"),
        &bv,
        &gb,
        1e-2,
        1e-3,
        60,
        &mut rng,
        |v| gpu_loss(case, &wts, &xv, &wv, v),
    );
}

#[test]
fn conv2d_tiled_backward_matches_finite_differences() {
    let _serial = serial();
    let case = Case {
        name: "fd tiled",
        x: [2, 5, 5, 6],
        cout: 6,
        k: [3, 2],
        cfg: cfg([2, 1], [1, 1], [1, 2], 1),
        bias: true,
    };
    fd_case(&case, 21);
}

#[test]
fn conv2d_windows_backward_matches_finite_differences() {
    let _serial = serial();
    let cases = [
        Case {
            name: "fd windows 3x3",
            x: [2, 9, 6, 10],
            cout: 10,
            k: [3, 3],
            cfg: cfg([1, 1], [1, 1], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "fd windows 1x1",
            x: [2, 11, 5, 7],
            cout: 9,
            k: [1, 1],
            cfg: cfg([1, 1], [0, 0], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "fd windows 1x1, 4 pixels at a time",
            x: [2, 7, 4, 6],
            cout: 5,
            k: [1, 1],
            cfg: cfg([1, 1], [0, 0], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "fd windows 3x3 stride 2, odd and even sizes",
            x: [2, 5, 9, 8],
            cout: 7,
            k: [3, 3],
            cfg: cfg([2, 2], [1, 1], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "fd windows 1x1 stride 2, odd size",
            x: [1, 6, 7, 8],
            cout: 5,
            k: [1, 1],
            cfg: cfg([2, 2], [0, 0], [1, 1], 1),
            bias: false,
        },
        // Column matrix + 1x1 product (im2col.wgsl): the ResNet stem's 7x7 stride 2 pad 3, and
        // a 3x2 kernel at stride [2, 1] whose output column count is not the stride's grid.
        Case {
            name: "fd windows 7x7 stride 2 pad 3 (columns)",
            x: [2, 3, 11, 10],
            cout: 6,
            k: [7, 7],
            cfg: cfg([2, 2], [3, 3], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "fd windows 3x2 stride [2,1] pad [0,1] (columns)",
            x: [1, 4, 7, 6],
            cout: 5,
            k: [3, 2],
            cfg: cfg([2, 1], [0, 1], [1, 1], 1),
            bias: true,
        },
    ];
    let c = ctx();
    for (i, case) in cases.iter().enumerate() {
        if conv2d_windows_supported(c) && std::env::var_os("CNNVIS_CONV_VARIANT").is_none() {
            let (y, x, w) = (zeros(&case.y()), zeros(&case.x), zeros(&case.w()));
            let d = conv2d_forward(c, &y, &x, &w, None, &case.cfg).unwrap();
            let b = conv2d_backward_input(c, &x, &y, &w, &case.cfg, false).unwrap();
            for d in [d, b] {
                assert_eq!(
                    Conv2dVariant::of_kernel(d.kernel()),
                    Some(Conv2dVariant::Windows),
                    "{d:?}"
                );
            }
        }
        fd_case(case, 23 + i as u64);
    }
}

/// A weight cache packs each (pass, geometry) once and gives the results of the uncached call.
#[test]
fn conv2d_weight_cache_packs_once_per_pass() {
    let _serial = serial();
    let c = ctx();
    let case = CASES
        .iter()
        .find(|k| k.name == "no bias, 3 channel blocks")
        .unwrap();
    let mut rng = Rng::new(41);
    let xv = rng.vec(case.x.iter().product(), -1.0, 1.0);
    let wv = rng.vec(case.w().iter().product(), -1.0, 1.0);
    let (x, w) = (upload(&case.x, &xv), upload(&case.w(), &wv));
    let cache = Conv2dWeightCache::new();
    let (y0, y1, y2) = (zeros(&case.y()), zeros(&case.y()), zeros(&case.y()));
    let plain = conv2d_forward(c, &y0, &x, &w, None, &case.cfg).unwrap();
    let a = conv2d_forward_cached(c, &y1, &x, &w, None, &case.cfg, &cache).unwrap();
    let b = conv2d_forward_cached(c, &y2, &x, &w, None, &case.cfg, &cache).unwrap();
    run(&[&plain, &a, &b]);
    let windows = Conv2dVariant::of_kernel(plain.kernel()) == Some(Conv2dVariant::Windows);
    // The uncached dispatch packs its weights itself: one launch more.
    assert_eq!(
        plain.launches(),
        a.launches() + windows as usize,
        "{plain:?} vs {a:?}"
    );
    assert_eq!(cache.len(), windows as usize);
    let dx = zeros(&case.x);
    conv2d_backward_input_cached(c, &dx, &y0, &w, &case.cfg, false, &cache).unwrap();
    assert_eq!(cache.len(), 2 * windows as usize);
    assert_eq!(download(&y1), download(&y0));
    assert_eq!(download(&y2), download(&y0));
}

#[test]
fn conv2d_row_backward_matches_finite_differences() {
    let _serial = serial();
    let case = Case {
        name: "fd row kernels",
        x: [2, 5, 5, 7],
        cout: 6,
        k: [2, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 1),
        bias: true,
    };
    fd_case(&case, 23);
}

#[test]
fn conv2d_direct_backward_matches_finite_differences() {
    let _serial = serial();
    let case = Case {
        name: "fd direct depthwise",
        x: [2, 3, 6, 5],
        cout: 3,
        k: [3, 3],
        cfg: cfg([1, 2], [1, 2], [2, 1], 3),
        bias: true,
    };
    fd_case(&case, 22);
}

#[test]
fn conv2d_shapes_and_flops_follow_pytorch() {
    let _serial = serial();
    let c3 = Conv2dConfig::new().padding(1);
    assert_eq!(
        conv2d_output_shape(&[1, 3, 224, 224], &[64, 3, 3, 3], &c3).unwrap(),
        [1, 64, 224, 224]
    );
    let s2 = Conv2dConfig::new().stride(2).padding(3);
    assert_eq!(
        conv2d_output_shape(&[2, 3, 224, 224], &[64, 3, 7, 7], &s2).unwrap(),
        [2, 64, 112, 112]
    );
    let dil = Conv2dConfig::new().dilation(2);
    // floor((10 - 2*(3-1) - 1) / 1) + 1 = 6; floor((9 + 0 - 2*(5-1) - 1)/1) + 1 = 1
    assert_eq!(
        conv2d_output_shape(&[1, 1, 10, 9], &[1, 1, 3, 5], &dil).unwrap(),
        [1, 1, 6, 1]
    );
    let asym = Conv2dConfig {
        stride: [2, 1],
        padding: [0, 1],
        ..Default::default()
    };
    assert_eq!(
        conv2d_output_shape(&[1, 2, 8, 7], &[4, 2, 3, 2], &asym).unwrap(),
        [1, 4, 3, 8]
    );
    assert_eq!(
        conv2d_flops(&[1, 64, 56, 56], &[128, 64, 3, 3], &c3).unwrap(),
        2 * 128 * 56 * 56 * 64 * 9
    );
    let dw = Conv2dConfig::new().groups(32).padding(1);
    assert_eq!(
        conv2d_flops(&[1, 32, 8, 8], &[32, 1, 3, 3], &dw).unwrap(),
        2 * 32 * 64 * 9
    );
    assert_eq!(
        Conv2dConfig::new(),
        Conv2dConfig {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1
        }
    );
}

#[test]
fn conv2d_rejects_bad_shapes() {
    let _serial = serial();
    let c = ctx();
    let one = Conv2dConfig::new();
    // channel mismatch
    assert!(conv2d_output_shape(&[1, 3, 8, 8], &[4, 2, 3, 3], &one).is_err());
    // groups not dividing the channels
    assert!(conv2d_output_shape(&[1, 6, 8, 8], &[4, 1, 3, 3], &one.groups(4)).is_err());
    assert!(conv2d_output_shape(&[1, 6, 8, 8], &[4, 2, 3, 3], &one.groups(3)).is_err());
    // kernel larger than the padded input (dilation counts)
    assert!(conv2d_output_shape(&[1, 1, 4, 4], &[1, 1, 5, 3], &one).is_err());
    assert!(conv2d_output_shape(&[1, 1, 4, 4], &[1, 1, 3, 3], &one.dilation(2)).is_err());
    assert!(conv2d_output_shape(&[1, 1, 4, 4], &[1, 1, 5, 3], &one.padding(1)).is_ok());
    // wrong rank, zero sizes and zero stride / groups
    assert!(conv2d_output_shape(&[1, 3, 8], &[4, 3, 3, 3], &one).is_err());
    assert!(conv2d_output_shape(&[0, 3, 8, 8], &[4, 3, 3, 3], &one).is_err());
    assert!(conv2d_output_shape(&[1, 3, 8, 8], &[4, 3, 3, 3], &one.stride(0)).is_err());
    assert!(conv2d_output_shape(&[1, 3, 8, 8], &[4, 3, 3, 3], &one.groups(0)).is_err());
    assert!(conv2d_flops(&[1, 3, 8, 8], &[4, 2, 3, 3], &one).is_err());

    let x = zeros(&[2, 3, 8, 8]);
    let w = zeros(&[4, 3, 3, 3]);
    let b = zeros(&[4]);
    let y = zeros(&[2, 4, 6, 6]);
    assert!(conv2d_forward(c, &y, &x, &w, Some(&b), &one).is_ok());
    // wrong output shape, wrong bias shape, weight for another Cin
    assert!(conv2d_forward(c, &zeros(&[2, 4, 8, 8]), &x, &w, Some(&b), &one).is_err());
    assert!(conv2d_forward(c, &y, &x, &w, Some(&zeros(&[3])), &one).is_err());
    assert!(conv2d_forward(c, &y, &x, &zeros(&[4, 2, 3, 3]), None, &one).is_err());
    // backward to the input: dy and dx must match the geometry
    assert!(conv2d_backward_input(c, &x, &y, &w, &one, false).is_ok());
    assert!(conv2d_backward_input(c, &x, &zeros(&[2, 4, 6, 5]), &w, &one, false).is_err());
    assert!(conv2d_backward_input(c, &zeros(&[2, 2, 8, 8]), &y, &w, &one, false).is_err());
    // backward to the weight: dw, db and dy
    assert!(conv2d_backward_weight(c, &w, Some(&b), &y, &x, &one, false).is_ok());
    assert!(conv2d_backward_weight(c, &zeros(&[4, 3, 3, 2]), None, &y, &x, &one, false).is_err());
    assert!(conv2d_backward_weight(c, &w, Some(&zeros(&[5])), &y, &x, &one, false).is_err());
    assert!(conv2d_backward_weight(c, &w, None, &zeros(&[1, 4, 6, 6]), &x, &one, false).is_err());
    // element type
    let xu = cnnvis::Tensor::from_u32(c, &[2, 3, 8, 8], &[0; 384]).unwrap();
    assert!(conv2d_forward(c, &y, &xu, &w, None, &one).is_err());
}

/// Median seconds per run of `ds` over `samples` samples, each recording them enough times in
/// one submission to last about 0.1 s (fast GPUs need many; lavapipe a few).
fn time_runs(ds: &[&Dispatch], samples: usize) -> f64 {
    let once = |reps: usize| {
        let list: Vec<&Dispatch> = (0..reps).flat_map(|_| ds.iter().copied()).collect();
        let start = std::time::Instant::now();
        run(&list);
        start.elapsed().as_secs_f64()
    };
    let first = once(1); // compiles pipelines, warms caches
    println!("first run (compiles) {:.0} ms", first * 1e3);
    let reps = (0.1 / once(1)).clamp(2.0, 1000.0) as usize;
    let mut t: Vec<f64> = (0..samples).map(|_| once(reps) / reps as f64).collect();
    t.sort_by(f64::total_cmp);
    t[samples / 2]
}

/// Ad-hoc throughput probe at a VGG16 shape: `cargo test --release --test conv2d -- --ignored
/// --nocapture`. CONV2D_TIMING="hw cin cout" picks another shape.
#[test]
#[ignore]
fn conv2d_timing_vgg_layer() {
    let _serial = serial();
    let c = ctx();
    let dims: Vec<usize> = std::env::var("CONV2D_TIMING")
        .unwrap_or_else(|_| "56 256 256".into())
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let (hw, cin, cout) = (dims[0], dims[1], dims[2]);
    let cfg = Conv2dConfig::new().padding(1);
    let (xs, ws) = ([1, cin, hw, hw], [cout, cin, 3, 3]);
    let ys = conv2d_output_shape(&xs, &ws, &cfg).unwrap();
    let flops = conv2d_flops(&xs, &ws, &cfg).unwrap() as f64;
    let mut rng = Rng::new(99);
    let x = upload(&xs, &rng.vec(xs.iter().product(), -1.0, 1.0));
    let w = upload(&ws, &rng.vec(ws.iter().product(), -1.0, 1.0));
    let b = upload(&[cout], &rng.vec(cout, -1.0, 1.0));
    let dy = upload(&ys, &rng.vec(ys.iter().product(), -1.0, 1.0));
    let (y, dx, dw, db) = (zeros(&ys), zeros(&xs), zeros(&ws), zeros(&[cout]));
    let fwd = conv2d_forward(c, &y, &x, &w, Some(&b), &cfg).unwrap();
    let bwi = conv2d_backward_input(c, &dx, &dy, &w, &cfg, false).unwrap();
    let bww = conv2d_backward_weight(c, &dw, Some(&db), &dy, &x, &cfg, false).unwrap();
    let out = zeros(&[1 << 16]);
    let (peak, peak_flops) = cnnvis::ops::fma_peak::fma_peak(c, &out, 1 << 16, 256).unwrap();
    let s = time_runs(&[&peak], 3);
    println!("fma peak {:7.2} GFLOP/s", peak_flops as f64 / s / 1e9);
    let passes: [(&str, Vec<&Dispatch>); 3] = [
        ("forward", vec![&fwd]),
        ("backward-input", vec![&bwi]),
        ("backward-weight", bww.iter().collect()),
    ];
    for (name, ds) in passes {
        let s = time_runs(&ds, 3);
        println!(
            "conv {hw}x{hw} {cin}->{cout} 3x3 {name:<16} {:8.2} ms {:7.2} GFLOP/s",
            s * 1e3,
            flops / s / 1e9
        );
    }
}

/// The gemm kernels' tiles are 64 x 64 (`gemm`) and 128 x 128 (`gemm-wide`) with k in steps of
/// 16 and 8, and small outputs split k: these shapes give both row, column and k tails (k runs
/// tap-major, so channel counts below a step and not a multiple of it), one and several
/// splits, groups, stride and dilation, against the CPU references (forward with bias,
/// backward, backward accumulating).
#[test]
fn conv2d_gemm_matches_cpu_reference_with_tails_and_split_k() {
    let _serial = serial();
    let c = ctx();
    let mut rng = Rng::new(31);
    let cases = [
        // 70 rows (two small row tiles), 9 x 11 = 99 columns (two small column tiles),
        // k = 9 * 5 = 45.
        Case {
            name: "gemm: row and column tails",
            x: [1, 5, 9, 11],
            cout: 70,
            k: [3, 3],
            cfg: cfg([1, 1], [1, 1], [1, 1], 1),
            bias: true,
        },
        // 130 rows and 9 x 15 = 135 columns: two wide tiles each way; 19 channels.
        Case {
            name: "gemm: wide tails",
            x: [1, 19, 9, 15],
            cout: 130,
            k: [3, 3],
            cfg: cfg([1, 1], [1, 1], [1, 1], 1),
            bias: true,
        },
        // One tile, k = 72 * 9 = 648: split-K.
        Case {
            name: "gemm: split k, 7x7",
            x: [1, 72, 7, 7],
            cout: 40,
            k: [3, 3],
            cfg: cfg([1, 1], [1, 1], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "gemm: split k, groups 2, stride 2, dilation [1,2], N=2",
            x: [2, 48, 9, 10],
            cout: 20,
            k: [3, 3],
            cfg: cfg([2, 2], [1, 2], [1, 2], 2),
            bias: true,
        },
        Case {
            name: "gemm: 7x7 stride 2 pad 3, N=3",
            x: [3, 3, 23, 21],
            cout: 9,
            k: [7, 7],
            cfg: cfg([2, 2], [3, 3], [1, 1], 1),
            bias: false,
        },
    ];
    let mut split_counts = BTreeSet::new();
    for case in &cases {
        let (xs, ws, ys) = (case.x, case.w(), case.y());
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
        let bv = rng.vec(case.cout, -1.0, 1.0);
        let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
        let base = rng.vec(xs.iter().product(), -1.0, 1.0);
        let (x, w, b, dy) = (
            upload(&xs, &xv),
            upload(&ws, &wv),
            upload(&[case.cout], &bv),
            upload(&ys, &dyv),
        );
        for pass in [Conv2dPass::Forward, Conv2dPass::BackwardInput] {
            let splits = conv2d_gemm_splits(pass, &xs, &ws, &case.cfg).unwrap();
            split_counts.insert(splits.expect("the gemm variant applies") > 1);
        }
        let want_y = forward_ref(case, &xv, &wv, case.bias.then_some(&bv[..]));
        let want_dx = backward_input_ref(case, &dyv, &wv);
        for v in [Conv2dVariant::Gemm, Conv2dVariant::GemmWide] {
            let name = format!("{} ({})", case.name, v.name());
            let y = poisoned(&ys);
            let bias = case.bias.then_some(&b);
            let fwd = conv2d_forward_variant(c, v, &y, &x, &w, bias, &case.cfg);
            run(&[&fwd.unwrap()]);
            let terms = ws[1] * ws[2] * ws[3];
            assert_close(
                &format!("forward {name}"),
                &download(&y),
                &want_y,
                atol(terms),
                1e-5,
            );

            let terms = case.cout / case.cfg.groups * ws[2] * ws[3];
            let dx = poisoned(&xs);
            run(&[&conv2d_backward_input_variant(c, v, &dx, &dy, &w, &case.cfg, false).unwrap()]);
            assert_close(
                &format!("backward {name}"),
                &download(&dx),
                &want_dx,
                atol(terms),
                1e-5,
            );
            dx.write(c, &base).unwrap();
            run(&[&conv2d_backward_input_variant(c, v, &dx, &dy, &w, &case.cfg, true).unwrap()]);
            let sum: Vec<f64> = want_dx
                .iter()
                .zip(&base)
                .map(|(a, &b)| a + b as f64)
                .collect();
            assert_close(
                &format!("backward acc {name}"),
                &download(&dx),
                &sum,
                atol(terms),
                1e-5,
            );
        }
    }
    assert_eq!(split_counts.len(), 2, "one and several k splits both ran");
}

/// The gemm kernels' backward to the input against finite differences of the forward pass.
#[test]
fn conv2d_gemm_backward_matches_finite_differences() {
    let _serial = serial();
    let case = Case {
        name: "fd gemm",
        x: [2, 6, 6, 5],
        cout: 8,
        k: [3, 2],
        cfg: cfg([2, 1], [1, 1], [1, 2], 2),
        bias: true,
    };
    fd_forced_variants(&case, 33, &[Conv2dVariant::Gemm, Conv2dVariant::GemmWide]);
}

/// Each of `variants`' backward to the input, forced, against finite differences of the same
/// variant's forward pass.
fn fd_forced_variants(case: &Case, seed: u64, variants: &[Conv2dVariant]) {
    let c = ctx();
    let mut rng = Rng::new(seed);
    let (xs, ws, ys) = (case.x, case.w(), case.y());
    let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
    let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
    let bv = rng.vec(case.cout, -1.0, 1.0);
    let wts = rng.vec(ys.iter().product(), -1.0, 1.0);
    let (w, dy) = (upload(&ws, &wv), upload(&ys, &wts));
    for &v in variants {
        let dx = poisoned(&xs);
        run(&[&conv2d_backward_input_variant(c, v, &dx, &dy, &w, &case.cfg, false).unwrap()]);
        let loss = |xv: &[f32]| {
            let (x, w, b) = (upload(&xs, xv), upload(&ws, &wv), upload(&[case.cout], &bv));
            let y = zeros(&ys);
            run(&[&conv2d_forward_variant(c, v, &y, &x, &w, Some(&b), &case.cfg).unwrap()]);
            weighted_sum(&wts, &download(&y))
        };
        let name = format!("fd {} dx", v.name());
        fd_check(&name, &xv, &download(&dx), 1e-2, 1e-3, 60, &mut rng, loss);
    }
}

/// Strided 3x3 convs on the window adapters run as a column matrix and a 1x1 product; the
/// 3x3 kernel at stride 1 (s^2 the work) remains the fallback where the columns do not fit.
/// So do backward passes to fewer than 8 channels (an RGB model's first conv), at stride 1.
/// Both paths against the CPU references and (stride 2) finite differences.
#[test]
fn conv2d_windows_strided_3x3_both_paths_match_reference() {
    let _serial = serial();
    let c = ctx();
    if !conv2d_windows_supported(c) || std::env::var_os("CNNVIS_CONV_VARIANT").is_some() {
        return;
    }
    let mut rng = Rng::new(41);
    let cases = [
        Case {
            name: "strided 3x3, stride 2 pad 1, odd sizes, N=2",
            x: [2, 5, 9, 8],
            cout: 7,
            k: [3, 3],
            cfg: cfg([2, 2], [1, 1], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "strided 3x3, stride 3 pad 2",
            x: [1, 4, 11, 10],
            cout: 9,
            k: [3, 3],
            cfg: cfg([3, 3], [2, 2], [1, 1], 1),
            bias: false,
        },
        Case {
            name: "3x3 stride 1 pad 1 from 3 channels, N=2 (backward to 3 channels)",
            x: [2, 3, 10, 9],
            cout: 16,
            k: [3, 3],
            cfg: cfg([1, 1], [1, 1], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "3x3 stride 1 pad 0 from 7 channels",
            x: [1, 7, 8, 11],
            cout: 5,
            k: [3, 3],
            cfg: cfg([1, 1], [0, 0], [1, 1], 1),
            bias: false,
        },
    ];
    for case in &cases {
        let (xs, ws, ys) = (case.x, case.w(), case.y());
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
        let bv = rng.vec(case.cout, -1.0, 1.0);
        let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
        let (x, w, b, dy) = (
            upload(&xs, &xv),
            upload(&ws, &wv),
            upload(&[case.cout], &bv),
            upload(&ys, &dyv),
        );
        let want_y = forward_ref(case, &xv, &wv, case.bias.then_some(&bv[..]));
        let want_dx = backward_input_ref(case, &dyv, &wv);
        for cols in [true, false] {
            let name = format!("{} (columns: {cols})", case.name);
            let (y, dx) = (poisoned(&ys), poisoned(&xs));
            let (fwd, bwd) = with_conv2d_strided_cols(cols, || {
                let bias = case.bias.then_some(&b);
                (
                    conv2d_forward(c, &y, &x, &w, bias, &case.cfg).unwrap(),
                    conv2d_backward_input(c, &dx, &dy, &w, &case.cfg, false).unwrap(),
                )
            });
            for d in [&fwd, &bwd] {
                let windows = Some(Conv2dVariant::Windows);
                assert_eq!(Conv2dVariant::of_kernel(d.kernel()), windows, "{name}");
            }
            // The column route's product is the 1x1 kernel; the 3x3 kernel's file otherwise.
            let strided = case.cfg.stride != [1, 1];
            let shader = |on_columns: bool| {
                if on_columns {
                    Shader::Conv1x1Windows
                } else {
                    Shader::Conv2dWindows
                }
            };
            assert_eq!(fwd.kernel().shader, shader(cols && strided), "{name}");
            let few = case.x[1] < 8;
            assert_eq!(
                bwd.kernel().shader,
                shader(cols && (strided || few)),
                "{name}"
            );
            // The column path's chains start with im2col (forward) or end with col2im.
            let entries = format!("{fwd:?} {bwd:?}");
            assert_eq!(entries.contains("conv1x1"), cols, "{name}: {entries}");
            run(&[&fwd, &bwd]);
            let terms = ws[1] * 9;
            assert_close(
                &format!("forward {name}"),
                &download(&y),
                &want_y,
                atol(terms),
                1e-5,
            );
            let terms = case.cout * 9;
            assert_close(
                &format!("backward {name}"),
                &download(&dx),
                &want_dx,
                atol(terms),
                1e-5,
            );
        }
    }
    with_conv2d_strided_cols(false, || fd_case(&cases[0], 43));
}

/// Winograd F(2x2, 3x3) and F(4x4, 3x3): odd output sizes (partial tiles), padding 0, 1 and 2
/// (backward pads by 2 - p), in and out channel counts that differ, N = 3 cut into chunks of 2
/// and 1, one and
/// several gemm splits, with and without bias, and the weight cache; forward, backward and
/// backward accumulating against the CPU references. Two layers chained in one submission
/// share the transform workspaces.
#[test]
fn conv2d_winograd_matches_cpu_reference() {
    let _serial = serial();
    let c = ctx();
    let mut rng = Rng::new(51);
    let w3 = |p: usize| cfg([1, 1], [p, p], [1, 1], 1);
    let cases = [
        Case {
            name: "winograd: pad 1, odd sizes, N=3",
            x: [3, 5, 7, 9],
            cout: 6,
            k: [3, 3],
            cfg: w3(1),
            bias: true,
        },
        Case {
            name: "winograd: pad 0, 1 row of tiles",
            x: [2, 3, 4, 11],
            cout: 17,
            k: [3, 3],
            cfg: w3(0),
            bias: false,
        },
        Case {
            name: "winograd: pad 2, N=1",
            x: [1, 4, 5, 6],
            cout: 3,
            k: [3, 3],
            cfg: w3(2),
            bias: true,
        },
        Case {
            name: "winograd: pads [1, 0], split k",
            x: [1, 160, 6, 5],
            cout: 20,
            k: [3, 3],
            cfg: cfg([1, 1], [1, 0], [1, 1], 1),
            bias: true,
        },
    ];
    for (v, case) in [Conv2dVariant::Winograd, Conv2dVariant::WinogradF4]
        .into_iter()
        .flat_map(|v| cases.iter().map(move |c| (v, c)))
    {
        let (xs, ws, ys) = (case.x, case.w(), case.y());
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
        let bv = rng.vec(case.cout, -1.0, 1.0);
        let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
        let base = rng.vec(xs.iter().product(), -1.0, 1.0);
        let (x, w, b, dy) = (
            upload(&xs, &xv),
            upload(&ws, &wv),
            upload(&[case.cout], &bv),
            upload(&ys, &dyv),
        );
        let bias = case.bias.then_some(&b);
        let want_y = forward_ref(case, &xv, &wv, case.bias.then_some(&bv[..]));
        let want_dx = backward_input_ref(case, &dyv, &wv);
        let sum: Vec<f64> = want_dx
            .iter()
            .zip(&base)
            .map(|(a, &b)| a + b as f64)
            .collect();
        let (fwd_terms, bwd_terms) = (ws[1] * 9, case.cout * 9);
        for chunk in [1, 2, 64] {
            let name = format!("{} ({}, chunks of {chunk})", case.name, v.name());
            let cache = Conv2dWeightCache::new();
            let (y, yc, dx, dxa) = (
                poisoned(&ys),
                poisoned(&ys),
                poisoned(&xs),
                upload(&xs, &base),
            );
            let ds = with_winograd_chunk_limit(chunk, || {
                with_conv2d_variant(v, || {
                    [
                        conv2d_forward_variant(c, v, &y, &x, &w, bias, &case.cfg),
                        conv2d_forward_cached(c, &yc, &x, &w, bias, &case.cfg, &cache),
                        conv2d_backward_input_variant(c, v, &dx, &dy, &w, &case.cfg, false),
                        conv2d_backward_input_cached(c, &dxa, &dy, &w, &case.cfg, true, &cache),
                    ]
                    .map(Result::unwrap)
                })
            });
            for d in &ds {
                assert_eq!(Conv2dVariant::of_kernel(d.kernel()), Some(v), "{name}");
            }
            // Uncached dispatches transform their weights themselves: one launch more.
            assert_eq!(ds[0].launches(), ds[1].launches() + 1, "{name}");
            // Per chunk: input transform, product, output transform (which adds split-K's
            // partial products itself: no reduce launch).
            assert_eq!(ds[1].launches(), 3 * xs[0].div_ceil(chunk), "{name}");
            assert_eq!(
                cache.len(),
                2,
                "{name}: one forward and one backward transform"
            );
            run(&ds.iter().collect::<Vec<_>>());
            for (what, got) in [("forward", &y), ("forward cached", &yc)] {
                let got = download(got);
                assert_close(
                    &format!("{what} {name}"),
                    &got,
                    &want_y,
                    atol_for(v, fwd_terms),
                    1e-5,
                );
            }
            let got = download(&dx);
            assert_close(
                &format!("backward {name}"),
                &got,
                &want_dx,
                atol_for(v, bwd_terms),
                1e-5,
            );
            let got = download(&dxa);
            assert_close(
                &format!("backward acc {name}"),
                &got,
                &sum,
                atol_for(v, bwd_terms),
                1e-5,
            );
        }
    }

    // Two layers in one submission, the second reading the first's output, both through the
    // shared workspaces (the second one's transforms are larger).
    let (l1, l2) = (
        &cases[0],
        Case {
            x: cases[0].y(),
            cout: 8,
            ..cases[0]
        },
    );
    let xv = rng.vec(l1.x.iter().product(), -1.0, 1.0);
    let (w1v, w2v) = (
        rng.vec(l1.w().iter().product(), -1.0, 1.0),
        rng.vec(l2.w().iter().product(), -1.0, 1.0),
    );
    let (x, w1, w2) = (
        upload(&l1.x, &xv),
        upload(&l1.w(), &w1v),
        upload(&l2.w(), &w2v),
    );
    let (y1, y2) = (poisoned(&l1.y()), poisoned(&l2.y()));
    let d1 = conv2d_forward_variant(c, Conv2dVariant::Winograd, &y1, &x, &w1, None, &l1.cfg);
    let d2 = conv2d_forward_variant(c, Conv2dVariant::WinogradF4, &y2, &y1, &w2, None, &l2.cfg);
    let (d1, d2) = (d1.unwrap(), d2.unwrap());
    run(&[&d1, &d2]);
    let mid: Vec<f32> = forward_ref(l1, &xv, &w1v, None)
        .iter()
        .map(|&a| a as f32)
        .collect();
    let want = forward_ref(&l2, &mid, &w2v, None);
    assert_close(
        "two chained layers",
        &download(&y2),
        &want,
        atol(5 * 9 * 6 * 9),
        1e-4,
    );
}

/// The Winograd variants' backward to the input against finite differences of their forward.
#[test]
fn conv2d_winograd_backward_matches_finite_differences() {
    let _serial = serial();
    let case = Case {
        name: "fd winograd",
        x: [2, 3, 5, 6],
        cout: 4,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 2], [1, 1], 1),
        bias: true,
    };
    let variants = [Conv2dVariant::Winograd, Conv2dVariant::WinogradF4];
    fd_forced_variants(&case, 53, &variants);
}

/// Where the Winograd variant does not apply, forcing it is an error that says why.
#[test]
fn conv2d_winograd_rejects_what_it_cannot_run() {
    let _serial = serial();
    let c = ctx();
    for v in [Conv2dVariant::Winograd, Conv2dVariant::WinogradF4] {
        for (x, w, conf) in [
            ([1, 2, 8, 8], [4, 2, 3, 3], cfg([2, 2], [1, 1], [1, 1], 1)),
            ([1, 2, 8, 8], [4, 2, 3, 3], cfg([1, 1], [3, 3], [1, 1], 1)),
            ([1, 2, 8, 8], [4, 2, 3, 3], cfg([1, 1], [1, 1], [2, 2], 1)),
            ([1, 4, 8, 8], [4, 2, 3, 3], cfg([1, 1], [1, 1], [1, 1], 2)),
            ([1, 2, 8, 8], [4, 2, 5, 5], cfg([1, 1], [1, 1], [1, 1], 1)),
        ] {
            let y = zeros(&conv2d_output_shape(&x, &w, &conf).unwrap());
            let (xt, wt) = (zeros(&x), zeros(&w));
            let e = conv2d_forward_variant(c, v, &y, &xt, &wt, None, &conf).unwrap_err();
            assert!(e.to_string().contains("winograd variant needs"), "{e}");
            let e = conv2d_backward_input_variant(c, v, &xt, &y, &wt, &conf, false).unwrap_err();
            assert!(e.to_string().contains("winograd variant needs"), "{e}");
        }
    }
}

/// With autotuning on, a Winograd pass times its product's two gemm tiles once per product
/// shape (an entry keyed by the 16-group 1x1 convolution) and still matches the reference.
#[test]
fn conv2d_winograd_autotunes_its_product_tile() {
    let _serial = serial();
    let c = ctx();
    let case = Case {
        name: "winograd product autotune",
        x: [2, 9, 10, 7],
        cout: 11,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 1),
        bias: true,
    };
    let mut rng = Rng::new(55);
    let (xs, ws, ys) = (case.x, case.w(), case.y());
    let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
    let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
    let bv = rng.vec(case.cout, -1.0, 1.0);
    let (x, w, b) = (
        upload(&xs, &xv),
        upload(&ws, &wv),
        upload(&[case.cout], &bv),
    );
    let y = poisoned(&ys);
    let build = || {
        with_conv2d_autotune(Conv2dAutotune::On, || {
            with_conv2d_variant(Conv2dVariant::Winograd, || {
                conv2d_forward(c, &y, &x, &w, Some(&b), &case.cfg).unwrap()
            })
        })
    };
    let d = build();
    // 5 x 4 tiles of 2 x 2 per image: a [1, 16 * 9, 1, 40] x [16 * 11, 9, 1, 1] product.
    let product = |e: &&Conv2dAutotuneEntry| e.key.x == [1, 144, 1, 40] && e.key.cfg.groups == 16;
    let entries = conv2d_autotune_choices();
    let e = entries.iter().find(product).expect("the product was tuned");
    assert_eq!(e.key.w, [176, 9, 1, 1]);
    let timed: Vec<Conv2dVariant> = e.timings_ms.iter().map(|t| t.0).collect();
    assert_eq!(timed, [Conv2dVariant::Gemm, Conv2dVariant::GemmWide]);
    assert!(e.variant.is_gemm());
    run(&[&d]);
    let want = forward_ref(&case, &xv, &wv, Some(&bv));
    assert_close(
        "winograd, tuned product",
        &download(&y),
        &want,
        atol(9 * 9),
        1e-5,
    );
    build();
    let entries = conv2d_autotune_choices();
    assert_eq!(
        entries.iter().find(product).unwrap().tunings,
        1,
        "tuned once"
    );
}

/// A ReLU fused with a conv (`conv2d_forward_relu_cached`, `conv2d_backward_input_relu_cached`):
/// the Winograd variants apply it in their output transform (no launch more than the conv
/// alone), the others chain the ReLU's kernel; both match the conv's CPU reference followed by
/// the ReLU's rule, with and without accumulation, gates shut where the ReLU's input is 0.
#[test]
fn conv2d_relu_epilogue_matches_cpu_reference() {
    let _serial = serial();
    let mut rng = Rng::new(61);
    let cases = [
        Case {
            name: "conv + relu: pad 1, odd sizes, N=3",
            x: [3, 5, 7, 9],
            cout: 6,
            k: [3, 3],
            cfg: cfg([1, 1], [1, 1], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "conv + relu: pads [1, 0], split k",
            x: [1, 160, 6, 5],
            cout: 20,
            k: [3, 3],
            cfg: cfg([1, 1], [1, 0], [1, 1], 1),
            bias: true,
        },
    ];
    let mut seen = BTreeSet::new();
    for case in &cases {
        relu_epilogue_case(case, &mut rng, &mut seen);
    }
    assert!(
        seen.contains("winograd_output_transform") && seen.contains("winograd4_output_transform"),
        "{seen:?}"
    );
}

/// One case of `conv2d_relu_epilogue_matches_cpu_reference`, on every variant it tests; the
/// backward passes' kernels go into `seen`.
fn relu_epilogue_case(case: &Case, rng: &mut Rng, seen: &mut BTreeSet<&'static str>) {
    let c = ctx();
    let (xs, ws, ys) = (case.x, case.w(), case.y());
    let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
    let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
    let bv = rng.vec(case.cout, -1.0, 1.0);
    let dyv = rng.vec(ys.iter().product(), -1.0, 1.0);
    let base = rng.vec(xs.iter().product(), -1.0, 1.0);
    // The ReLU's input below the conv, some of it exactly 0 (a shut gate, as in PyTorch).
    let mut rxv = rng.vec(xs.iter().product(), -1.0, 1.0);
    for v in rxv.iter_mut().step_by(7) {
        *v = 0.0;
    }
    let (x, w, b, dy, rx) = (
        upload(&xs, &xv),
        upload(&ws, &wv),
        upload(&[case.cout], &bv),
        upload(&ys, &dyv),
        upload(&xs, &rxv),
    );
    let want_y = forward_ref(case, &xv, &wv, Some(&bv));
    let want_relu: Vec<f64> = want_y.iter().map(|v| v.max(0.0)).collect();
    let g = backward_input_ref(case, &dyv, &wv);
    let rules = [ReluRule::Standard, ReluRule::Guided, ReluRule::Deconvnet];
    let variants = [
        Conv2dVariant::Winograd,
        Conv2dVariant::WinogradF4,
        Conv2dVariant::Gemm,
        Conv2dVariant::GemmWide,
        Conv2dVariant::Direct,
        Conv2dVariant::Tiled,
    ];
    for v in variants {
        let native = v.fuses_relu();
        let cache = Conv2dWeightCache::new();
        let (y, yr, plain_y) = (poisoned(&ys), poisoned(&ys), poisoned(&ys));
        // Winograd in chunks of 2 images: the ReLU's tensor follows each chunk's offset.
        let (fused, plain) = with_winograd_chunk_limit(2, || {
            with_conv2d_variant(v, || {
                (
                    conv2d_forward_relu_cached(c, &y, &yr, &x, &w, Some(&b), &case.cfg, &cache),
                    conv2d_forward_cached(c, &plain_y, &x, &w, Some(&b), &case.cfg, &cache),
                )
            })
        });
        let (fused, plain) = (fused.unwrap(), plain.unwrap());
        let name = format!("forward {} {}", case.name, v.name());
        assert_eq!(Conv2dVariant::of_kernel(fused.kernel()), Some(v), "{name}");
        let more = if native { 0 } else { 1 };
        assert_eq!(fused.launches(), plain.launches() + more, "{name}");
        run(&[&fused]);
        let terms = ws[1] * 9;
        assert_close(&name, &download(&y), &want_y, atol_for(v, terms), 1e-5);
        let relu_name = format!("{name}: the ReLU's output");
        assert_close(
            &relu_name,
            &download(&yr),
            &want_relu,
            atol_for(v, terms),
            1e-5,
        );

        for (rule, accumulate) in rules.into_iter().flat_map(|r| [(r, false), (r, true)]) {
            let gated: Vec<f64> = g
                .iter()
                .zip(&rxv)
                .map(|(&g, &r)| match rule {
                    ReluRule::Guided if r > 0.0 && g > 0.0 => g,
                    ReluRule::Standard if r > 0.0 => g,
                    ReluRule::Deconvnet => g.max(0.0),
                    _ => 0.0,
                })
                .collect();
            let (dx, want): (_, Vec<f64>) = if accumulate {
                let sum = gated.iter().zip(&base).map(|(a, &b)| a + b as f64);
                (upload(&xs, &base), sum.collect())
            } else {
                (poisoned(&xs), gated)
            };
            let name = format!(
                "backward {} {} {rule:?} accumulate {accumulate}",
                case.name,
                v.name()
            );
            let (fused, plain) = with_winograd_chunk_limit(2, || {
                with_conv2d_variant(v, || {
                    let plain_dx = poisoned(&xs);
                    (
                        conv2d_backward_input_relu_cached(
                            c, &dx, &dy, &w, &case.cfg, &rx, rule, accumulate, &cache,
                        ),
                        conv2d_backward_input_cached(
                            c, &plain_dx, &dy, &w, &case.cfg, false, &cache,
                        ),
                    )
                })
            });
            let (fused, plain) = (fused.unwrap(), plain.unwrap());
            assert_eq!(Conv2dVariant::of_kernel(fused.kernel()), Some(v), "{name}");
            assert_eq!(fused.launches(), plain.launches() + more, "{name}");
            entries(&[&fused], seen);
            run(&[&fused]);
            let terms = case.cout * 9;
            assert_close(&name, &download(&dx), &want, atol_for(v, terms), 1e-5);
        }
        let e = with_conv2d_variant(v, || {
            conv2d_backward_input_relu_cached(
                c,
                &poisoned(&xs),
                &dy,
                &w,
                &case.cfg,
                &rx,
                ReluRule::Redirected,
                false,
                &cache,
            )
        })
        .expect_err("the redirected rule is not fused");
        assert!(e.to_string().contains("redirected"), "{e}");
        let e = with_conv2d_variant(v, || {
            conv2d_forward_relu_cached(c, &y, &rx, &x, &w, Some(&b), &case.cfg, &cache)
        })
        .expect_err("a ReLU output of another shape");
        assert!(e.to_string().contains("relu_y"), "{e}");
    }
}

/// The windows kernels (conv and dense) read their uniform windows as u64 pairs. On a host's
/// device without `SHADER_INT64` they are not chosen, forcing them names the missing feature,
/// and a conv still runs (another variant) and matches the reference. On lavapipe our own
/// context must have the variants: the windows tests return early where they are missing, so
/// a lost feature would otherwise go unnoticed.
#[test]
fn windows_kernels_need_shader_int64() {
    let _serial = serial();
    let own = ctx();
    let lavapipe = own.adapter().backend == cnnvis::wgpu::Backend::Vulkan
        && own.adapter().name.contains("llvmpipe");
    if lavapipe {
        assert!(
            conv2d_windows_supported(own),
            "lavapipe lost the windows variant: {:?}",
            own.device().features()
        );
        assert!(cnnvis::ops::linear::linear_windows_supported(own));
    }
    let host = pollster::block_on(async {
        let instance = cnnvis::wgpu::Instance::new(cnnvis::gpu::instance_descriptor());
        let adapter = instance
            .request_adapter(&Default::default())
            .await
            .expect("adapter (install mesa-vulkan-drivers)");
        let (device, queue) = adapter
            .request_device(&cnnvis::wgpu::DeviceDescriptor {
                label: Some("no int64"),
                required_features: adapter.features() & cnnvis::wgpu::Features::SUBGROUP,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .expect("device");
        GpuContext::from_device(device, queue)
    });
    assert!(!conv2d_windows_supported(&host));
    assert!(!cnnvis::ops::linear::linear_windows_supported(&host));
    let case = Case {
        name: "3x3 pad 1 without SHADER_INT64",
        x: [1, 8, 6, 6],
        cout: 8,
        k: [3, 3],
        cfg: cfg([1, 1], [1, 1], [1, 1], 1),
        bias: false,
    };
    let mut rng = Rng::new(77);
    let (xs, ws) = (rng.vec(8 * 36, -1.0, 1.0), rng.vec(8 * 8 * 9, -0.5, 0.5));
    let x = Tensor::from_slice(&host, &case.x, &xs).unwrap();
    let w = Tensor::from_slice(&host, &case.w(), &ws).unwrap();
    let y = Tensor::empty(&host, &case.y(), cnnvis::gpu::DType::F32).unwrap();
    let e = conv2d_forward_variant(&host, Conv2dVariant::Windows, &y, &x, &w, None, &case.cfg)
        .expect_err("windows without SHADER_INT64");
    assert!(e.to_string().contains("SHADER_INT64"), "{e}");
    let (xd, wd) = (
        Tensor::from_slice(&host, &[1, 64], &[0.5; 64]).unwrap(),
        Tensor::from_slice(&host, &[64, 64], &[0.25; 64 * 64]).unwrap(),
    );
    let yd = Tensor::empty(&host, &[1, 64], cnnvis::gpu::DType::F32).unwrap();
    let e = cnnvis::ops::linear::linear_forward_variant(
        &host,
        cnnvis::ops::linear::LinearVariant::Windows,
        &yd,
        &xd,
        &wd,
        None,
    )
    .expect_err("dense windows without SHADER_INT64");
    assert!(e.to_string().contains("SHADER_INT64"), "{e}");
    if std::env::var_os("CNNVIS_CONV_VARIANT").is_some() {
        return;
    }
    let d = conv2d_forward(&host, &y, &x, &w, None, &case.cfg).unwrap();
    assert_ne!(
        Conv2dVariant::of_kernel(d.kernel()),
        Some(Conv2dVariant::Windows)
    );
    host.run(&[&d]).unwrap();
    host.wait().unwrap();
    let want = forward_ref(&case, &xs, &ws, None);
    assert_close(
        case.name,
        &y.download(&host).unwrap(),
        &want,
        atol(8 * 9),
        1e-5,
    );
}
