//! Lucid's Fourier image parameterization (src/vis/spectral.rs) against a CPU f64 reference
//! that spells out Lucid's formulas literally (numpy's `fftfreq`, TensorFlow's `irfft2d` as a
//! direct O(n²) sum with its conjugate-reversed negative frequencies, the `/ 4`, the colour
//! matrix, the sigmoid, the normalization); the backward pass against the transpose of that
//! reference's Jacobian and against finite differences of the GPU forward; seeded
//! initialization bit for bit.

mod common;

use std::f64::consts::TAU;

use cnnvis::gpu::Dispatch;
use cnnvis::vis::spectral::{
    color_matrix, columns_backward, columns_backward_fft, columns_forward, columns_forward_fft,
    fft_radices, fft_width, rfft2d_freqs, rows_backward, rows_forward, spectrum_scale,
    spectrum_shape, spectrum_width, twiddle_table, SpectralParam, INIT_SD,
};
use common::{assert_close, ctx, download, fd_check, upload, weighted_sum, zeros, Rng};

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
const GRAY_MEAN: [f32; 1] = [0.1307];
const GRAY_STD: [f32; 1] = [0.3081];

fn norm(c: usize) -> (&'static [f32], &'static [f32]) {
    if c == 3 {
        (&IMAGENET_MEAN, &IMAGENET_STD)
    } else {
        (&GRAY_MEAN, &GRAY_STD)
    }
}

// ---------------------------------------------------------------------------------------------
// CPU reference: Lucid's formulas, literally, in f64.

/// numpy's `fftfreq(n)`: `[0, 1, ..., (n-1)//2, -(n//2), ..., -1] * (1 / n)`.
fn np_fftfreq(n: usize) -> Vec<f64> {
    let val = 1.0 / n as f64;
    let pos = (n - 1) / 2 + 1;
    (0..n)
        .map(|i| {
            let k = if i < pos {
                i as f64
            } else {
                i as f64 - n as f64
            };
            k * val
        })
        .collect()
}

/// Lucid's `rfft2d_freqs(h, w)` as `[h][cols]`.
fn lucid_freqs(h: usize, w: usize) -> Vec<Vec<f64>> {
    let fy = np_fftfreq(h);
    let fx_all = np_fftfreq(w);
    let cols = if w % 2 == 1 { w / 2 + 2 } else { w / 2 + 1 };
    let fx = &fx_all[..cols.min(w)];
    fy.iter()
        .map(|&y| fx.iter().map(|&x| (x * x + y * y).sqrt()).collect())
        .collect()
}

type C64 = (f64, f64);

fn cmul(a: C64, b: C64) -> C64 {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn expi(k: usize, n: usize) -> C64 {
    let a = TAU * ((k % n) as f64) / n as f64;
    (a.cos(), a.sin())
}

/// TensorFlow's `irfft2d` of `spec [h][wc]` with the inferred `fft_length = [h, 2 (wc - 1)]`:
/// complex inverse DFT over the outer axis, then the negative frequencies of the inner axis as
/// the conjugated, reversed `spec[.., 1..]`, a complex inverse DFT, and the real part.
fn irfft2d(spec: &[Vec<C64>]) -> Vec<Vec<f64>> {
    let h = spec.len();
    let wc = spec[0].len();
    let wf = 2 * (wc - 1);
    let mut g = vec![vec![(0.0, 0.0); wc]; h];
    for (y, row) in g.iter_mut().enumerate() {
        for (kx, v) in row.iter_mut().enumerate() {
            let mut acc = (0.0, 0.0);
            for (ky, srow) in spec.iter().enumerate() {
                let t = cmul(srow[kx], expi(ky * y, h));
                acc = (acc.0 + t.0, acc.1 + t.1);
            }
            *v = (acc.0 / h as f64, acc.1 / h as f64);
        }
    }
    g.iter()
        .map(|row| {
            let full: Vec<C64> = (0..wf)
                .map(|k| {
                    if k < wc {
                        row[k]
                    } else {
                        let c = row[wf - k];
                        (c.0, -c.1)
                    }
                })
                .collect();
            (0..wf)
                .map(|t| {
                    let mut re = 0.0;
                    for (k, &f) in full.iter().enumerate() {
                        re += cmul(f, expi(k * t, wf)).0;
                    }
                    re / wf as f64
                })
                .collect()
        })
        .collect()
}

/// Lucid's `fft_image` for one image channel: `irfft2d(scale * spectrum)[:h, :w] / 4`, from
/// the `[2, h, wc]` parameters (real plane, imaginary plane). Returns `[h * w]`.
fn lucid_fft_channel(x: &[f32], h: usize, w: usize, decay_power: f64) -> Vec<f64> {
    let freqs = lucid_freqs(h, w);
    let wc = freqs[0].len();
    assert_eq!(x.len(), 2 * h * wc);
    let floor = 1.0 / h.max(w) as f64;
    let spec: Vec<Vec<C64>> = (0..h)
        .map(|ky| {
            (0..wc)
                .map(|kx| {
                    let scale =
                        1.0 / freqs[ky][kx].max(floor).powf(decay_power) * ((w * h) as f64).sqrt();
                    let re = x[ky * wc + kx] as f64;
                    let im = x[h * wc + ky * wc + kx] as f64;
                    (scale * re, scale * im)
                })
                .collect()
        })
        .collect();
    let img = irfft2d(&spec);
    let mut out = Vec::with_capacity(h * w);
    for row in img.iter().take(h) {
        for &v in row.iter().take(w) {
            out.push(v / 4.0);
        }
    }
    out
}

/// Lucid's normalized colour matrix in f64.
fn lucid_color_matrix() -> [[f64; 3]; 3] {
    let c = [
        [0.26f32, 0.09, 0.02],
        [0.27, 0.00, -0.05],
        [0.27, -0.09, 0.03],
    ];
    let c = c.map(|r| r.map(|v| v as f64));
    let max_norm = (0..3)
        .map(|j| (c[0][j] * c[0][j] + c[1][j] * c[1][j] + c[2][j] * c[2][j]).sqrt())
        .fold(0.0f64, f64::max);
    c.map(|r| r.map(|v| v / max_norm))
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

struct Reference {
    /// `fft_image` output (pre-colour) `[N, C, H, W]`.
    lin: Vec<f64>,
    /// After `to_valid_rgb`.
    rgb: Vec<f64>,
    /// After the normalization.
    out: Vec<f64>,
}

fn reference(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    decay_power: f64,
    mean: &[f32],
    std: &[f32],
) -> Reference {
    let wc = spectrum_width(w);
    let block = 2 * h * wc;
    let hw = h * w;
    let mut lin = Vec::with_capacity(n * c * hw);
    for i in 0..n * c {
        lin.extend(lucid_fft_channel(
            &x[i * block..(i + 1) * block],
            h,
            w,
            decay_power,
        ));
    }
    let m = lucid_color_matrix();
    let mut rgb = vec![0.0; lin.len()];
    for img in 0..n {
        for p in 0..hw {
            let at = |ch: usize| img * c * hw + ch * hw + p;
            if c == 3 {
                // t_flat @ M.T: rgb_i = sum_j t_j M[i][j]
                for i in 0..3 {
                    let z: f64 = (0..3).map(|j| lin[at(j)] * m[i][j]).sum();
                    rgb[at(i)] = sigmoid(z);
                }
            } else {
                for ch in 0..c {
                    rgb[at(ch)] = sigmoid(lin[at(ch)]);
                }
            }
        }
    }
    let out = rgb
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            let ch = (i / hw) % c;
            (r - mean[ch] as f64) / std[ch] as f64
        })
        .collect();
    Reference { lin, rgb, out }
}

/// The transpose of the reference's Jacobian applied to `d_out`: the pre-colour gradient by
/// the chain rule through the normalization, sigmoid and colour matrix, then through the
/// (linear) Fourier map column by column of its Jacobian, each column the reference forward
/// of a unit spectrum.
fn reference_adjoint(
    rgb: &[f64],
    d_out: &[f32],
    [n, c, h, w]: [usize; 4],
    decay_power: f64,
    std: &[f32],
) -> Vec<f64> {
    let hw = h * w;
    let wc = spectrum_width(w);
    let block = 2 * h * wc;
    let m = lucid_color_matrix();
    let mut d_lin = vec![0.0; n * c * hw];
    for img in 0..n {
        for p in 0..hw {
            let at = |ch: usize| img * c * hw + ch * hw + p;
            let dz: Vec<f64> = (0..c)
                .map(|ch| {
                    let r = rgb[at(ch)];
                    d_out[at(ch)] as f64 / std[ch] as f64 * r * (1.0 - r)
                })
                .collect();
            for j in 0..c {
                d_lin[at(j)] = if c == 3 {
                    (0..3).map(|i| m[i][j] * dz[i]).sum()
                } else {
                    dz[j]
                };
            }
        }
    }
    let basis: Vec<Vec<f64>> = (0..block)
        .map(|j| {
            let mut e = vec![0.0f32; block];
            e[j] = 1.0;
            lucid_fft_channel(&e, h, w, decay_power)
        })
        .collect();
    let mut d_x = Vec::with_capacity(n * c * block);
    for i in 0..n * c {
        let g = &d_lin[i * hw..(i + 1) * hw];
        for b in &basis {
            d_x.push(b.iter().zip(g).map(|(a, b)| a * b).sum());
        }
    }
    d_x
}

// ---------------------------------------------------------------------------------------------
// GPU helpers.

struct Setup {
    param: SpectralParam,
    image: cnnvis::Tensor,
    forward: Vec<Dispatch>,
}

fn setup(shape: [usize; 4], decay_power: f32, seed: u64) -> Setup {
    let (mean, std) = norm(shape[1]);
    let param = SpectralParam::new(ctx(), shape, decay_power, seed, mean, std).expect("new");
    let image = zeros(&shape);
    let forward = param.forward(ctx(), &image).expect("forward");
    Setup {
        param,
        image,
        forward,
    }
}

fn refs(d: &[Dispatch]) -> Vec<&Dispatch> {
    d.iter().collect()
}

impl Setup {
    fn run_forward(&self, x: &[f32]) -> Vec<f32> {
        self.param.spectrum().write(ctx(), x).expect("write");
        common::run(&refs(&self.forward));
        download(&self.image)
    }
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

const SIZES: [(usize, usize); 4] = [(7, 6), (8, 9), (16, 16), (5, 7)];

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn constants_and_tables_follow_lucid() {
    // rfft2d_freqs' odd-width quirk: one extra column, an even inverse transform, then a crop.
    assert_eq!((spectrum_width(6), fft_width(6)), (4, 6));
    assert_eq!((spectrum_width(7), fft_width(7)), (5, 8));
    assert_eq!((spectrum_width(224), fft_width(224)), (113, 224));
    assert_eq!((spectrum_width(2), fft_width(2)), (2, 2));
    assert_eq!(spectrum_shape([2, 3, 5, 9]), [2, 3, 2, 5, 6]);
    for (h, w) in SIZES {
        let lf = lucid_freqs(h, w);
        let f = rfft2d_freqs(h, w);
        let flat: Vec<f64> = lf.concat();
        assert_eq!(f.len(), flat.len());
        for (a, b) in f.iter().zip(&flat) {
            assert!((a - b).abs() <= 1e-15, "{h}x{w}: freq {a} vs {b}");
        }
        let s = spectrum_scale(h, w, 1.0);
        assert_eq!(s[0], (((h * w) as f64).sqrt() * h.max(w) as f64) as f32);
    }
    // Lucid's matrix over its largest column norm, sqrt(0.26² + 0.27² + 0.27²) = 0.46195...
    let m = color_matrix();
    let r = lucid_color_matrix();
    for i in 0..3 {
        for j in 0..3 {
            assert!((m[i][j] as f64 - r[i][j]).abs() <= 1e-7, "M[{i}][{j}]");
        }
    }
    assert!((m[0][0] as f64 - 0.26 / 0.2134f64.sqrt()).abs() < 1e-7);
    // Twiddles exact at the quarter turns.
    let t = twiddle_table(8);
    assert_eq!(&t[..2], &[1.0, 0.0]);
    assert_eq!(&t[4..6], &[0.0, 1.0]);
    assert_eq!(&t[8..10], &[-1.0, 0.0]);
    assert_eq!(&t[12..14], &[0.0, -1.0]);
}

/// The two transform kernels alone (pre-colour image) against the reference irfft2d.
#[test]
fn inverse_transform_matches_irfft2d_reference() {
    let mut rng = Rng::new(11);
    for (h, w) in SIZES {
        for decay in [1.0f32, 1.5] {
            let shape = [2, 2, h, w];
            let sshape = spectrum_shape(shape);
            let x = rng.vec(numel(&sshape), -1.0, 1.0);
            let spec = upload(&sshape, &x);
            let freq = zeros(&sshape);
            let lin = zeros(&shape);
            let wc = spectrum_width(w);
            let coef = upload(&[h, wc], &cnnvis::vis::spectral::coef_table(h, w, decay));
            let tw_h = upload(&[h, 2], &twiddle_table(h));
            let tw_w = upload(&[fft_width(w), 2], &twiddle_table(fft_width(w)));
            let d1 = columns_forward(ctx(), &freq, &spec, &coef, &tw_h, w).expect("columns");
            let d2 = rows_forward(ctx(), &lin, &freq, &tw_w).expect("rows");
            common::run(&[&d1, &d2]);
            let got = download(&lin);
            let r = reference(&x, shape, decay as f64, &[0.0; 2], &[1.0; 2]);
            let max = r.lin.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert_close(
                &format!("lin {h}x{w} decay {decay}"),
                &got,
                &r.lin,
                2e-6 * max,
                1e-5,
            );
        }
    }
}

#[test]
fn forward_matches_lucid_reference() {
    let mut rng = Rng::new(5);
    for (h, w) in SIZES {
        for c in [1, 3] {
            let shape = [2, c, h, w];
            let s = setup(shape, 1.0, 1);
            let x = rng.vec(numel(&spectrum_shape(shape)), -1.0, 1.0);
            let got = s.run_forward(&x);
            let (mean, std) = norm(c);
            let r = reference(&x, shape, 1.0, mean, std);
            let name = format!("{h}x{w}x{c}");
            assert_close(
                &format!("rgb {name}"),
                &download(s.param.rgb()),
                &r.rgb,
                2e-6,
                1e-5,
            );
            assert_close(&format!("image {name}"), &got, &r.out, 1e-5, 1e-5);
            // The sigmoid saw a real range, not just its linear middle.
            let spread = r.rgb.iter().fold(0.0f64, |m, v| m.max((v - 0.5).abs()));
            assert!(spread > 0.1, "{name}: rgb spread {spread}");
        }
    }
}

/// The imaginary parts irfft2d ignores: Im X at the DC and Nyquist spectrum columns, rows 0
/// and (even H) H/2. They leave the image's bits unchanged and get an exactly zero gradient.
#[test]
fn hermitian_dead_coefficients_are_ignored_exactly() {
    let mut rng = Rng::new(8);
    for (h, w) in [(8usize, 6usize), (7, 7)] {
        let shape = [1, 3, h, w];
        let s = setup(shape, 1.0, 2);
        let wc = spectrum_width(w);
        let sshape = spectrum_shape(shape);
        let mut x = rng.vec(numel(&sshape), -1.0, 1.0);
        let mut dead = Vec::new();
        for ch in 0..3 {
            for ky in [0, h / 2] {
                if ky == h / 2 && h % 2 == 1 {
                    continue;
                }
                for kx in [0, wc - 1] {
                    dead.push(ch * 2 * h * wc + h * wc + ky * wc + kx);
                }
            }
        }
        for &i in &dead {
            x[i] = 0.0;
        }
        let base = s.run_forward(&x);
        for &i in &dead {
            x[i] = 3.0;
        }
        let moved = s.run_forward(&x);
        assert!(
            base.iter()
                .zip(&moved)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{h}x{w}: the image depends on an ignored imaginary part"
        );
        // ...but a live imaginary coefficient of the DC column does matter (ky = 1).
        x[h * wc + wc] += 0.5;
        let live = s.run_forward(&x);
        assert!(live != moved, "{h}x{w}: Im X[1, 0] has no effect");

        let d_img = upload(&shape, &rng.vec(numel(&shape), -1.0, 1.0));
        let d_spec = zeros(&sshape);
        let back = s
            .param
            .backward(ctx(), &d_img, &d_spec, false)
            .expect("backward");
        common::run(&refs(&back));
        let g = download(&d_spec);
        for &i in &dead {
            assert_eq!(g[i], 0.0, "{h}x{w}: gradient at ignored coefficient {i}");
        }
        assert!(g[h * wc + wc] != 0.0);
    }
}

#[test]
fn backward_matches_reference_adjoint() {
    let mut rng = Rng::new(21);
    for (h, w) in SIZES {
        for c in [1, 3] {
            let shape = [2, c, h, w];
            let sshape = spectrum_shape(shape);
            let s = setup(shape, 1.0, 3);
            let x = rng.vec(numel(&sshape), -1.0, 1.0);
            s.run_forward(&x);
            let d = rng.vec(numel(&shape), -1.0, 1.0);
            let d_img = upload(&shape, &d);
            let d_spec = common::poisoned(&sshape);
            let back = s
                .param
                .backward(ctx(), &d_img, &d_spec, false)
                .expect("backward");
            let mut all = refs(&s.forward);
            all.extend(refs(&back));
            common::run(&all);
            let (mean, std) = norm(c);
            let r = reference(&x, shape, 1.0, mean, std);
            let want = reference_adjoint(&r.rgb, &d, shape, 1.0, std);
            let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert_close(
                &format!("d_spectrum {h}x{w}x{c}"),
                &download(&d_spec),
                &want,
                1e-5 * max,
                1e-5,
            );
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = Rng::new(33);
    for (h, w, c) in [(7usize, 6usize, 3usize), (8, 9, 1), (5, 7, 3)] {
        let shape = [1, c, h, w];
        let sshape = spectrum_shape(shape);
        let s = setup(shape, 1.0, 4);
        let x0 = rng.vec(numel(&sshape), -1.0, 1.0);
        let wts = rng.vec(numel(&shape), -1.0, 1.0);
        s.run_forward(&x0);
        let d_img = upload(&shape, &wts);
        let d_spec = zeros(&sshape);
        let back = s
            .param
            .backward(ctx(), &d_img, &d_spec, false)
            .expect("backward");
        let mut all = refs(&s.forward);
        all.extend(refs(&back));
        common::run(&all);
        let grad = download(&d_spec);
        fd_check(
            &format!("spectral {h}x{w}x{c}"),
            &x0,
            &grad,
            1e-2,
            5e-3,
            400,
            &mut rng,
            |x| weighted_sum(&wts, &s.run_forward(x)),
        );
    }
}

#[test]
fn backward_accumulates() {
    let mut rng = Rng::new(44);
    let shape = [2, 3, 8, 9];
    let sshape = spectrum_shape(shape);
    let s = setup(shape, 1.0, 5);
    let d_img = upload(&shape, &rng.vec(numel(&shape), -1.0, 1.0));
    let fresh = zeros(&sshape);
    let prior = rng.vec(numel(&sshape), -1.0, 1.0);
    let acc = upload(&sshape, &prior);
    let b1 = s
        .param
        .backward(ctx(), &d_img, &fresh, false)
        .expect("write");
    let b2 = s
        .param
        .backward(ctx(), &d_img, &acc, true)
        .expect("accumulate");
    let mut all = refs(&s.forward);
    all.extend(refs(&b1));
    all.extend(refs(&b2));
    common::run(&all);
    let g = download(&fresh);
    let want: Vec<f64> = g
        .iter()
        .zip(&prior)
        .map(|(a, b)| (*a + *b) as f64)
        .collect();
    assert_close("accumulate", &download(&acc), &want, 0.0, 0.0);
    // Also through the low-level kernel: a second accumulate doubles the gradient.
    let wc = spectrum_width(9);
    let coef = upload(&[8, wc], &cnnvis::vis::spectral::coef_table(8, 9, 1.0));
    let tw_h = upload(&[8, 2], &twiddle_table(8));
    let d_freq = upload(&sshape, &rng.vec(numel(&sshape), -1.0, 1.0));
    let out = zeros(&sshape);
    let once = columns_backward(ctx(), &out, &d_freq, &coef, &tw_h, 9, false).unwrap();
    let twice = columns_backward(ctx(), &out, &d_freq, &coef, &tw_h, 9, true).unwrap();
    common::run(&[&once]);
    let g1 = download(&out);
    common::run(&[&twice]);
    let g2 = download(&out);
    let want: Vec<f64> = g1.iter().map(|v| 2.0 * *v as f64).collect();
    assert_close("accumulate twice", &g2, &want, 0.0, 1e-6);
}

#[test]
fn seeded_init_is_reproducible() {
    let shape = [3, 3, 16, 15];
    let a = setup(shape, 1.0, 1234);
    let b = setup(shape, 1.0, 1234);
    let c = setup(shape, 1.0, 1235);
    let sa = download(a.param.spectrum());
    let sb = download(b.param.spectrum());
    let sc = download(c.param.spectrum());
    assert!(sa.iter().zip(&sb).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(sa != sc);
    // N(0, 0.01²), the generator's Gaussian stream scaled by Lucid's sd.
    for (i, &v) in sa.iter().enumerate().take(64) {
        let want = cnnvis::ops::random::gaussian_cpu(1234, i as u32) as f64 * INIT_SD as f64;
        assert!(
            (v as f64 - want).abs() <= 1e-6 * want.abs().max(1e-2),
            "{i}: {v} vs {want}"
        );
    }
    let n = sa.len() as f64;
    let m = sa.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (sa.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        (sd - 0.01).abs() < 0.001 && m.abs() < 0.001,
        "mean {m} sd {sd}"
    );
    // The whole forward pass, bit for bit.
    common::run(&refs(&a.forward));
    common::run(&refs(&b.forward));
    let ia = download(&a.image);
    let ib = download(&b.image);
    assert!(ia.iter().zip(&ib).all(|(x, y)| x.to_bits() == y.to_bits()));
    // Re-initialising with the same seed restores the same parameters.
    let d = c.param.init(ctx(), 1234, INIT_SD).unwrap();
    common::run(&[&d]);
    let sc2 = download(c.param.spectrum());
    assert!(sa.iter().zip(&sc2).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn grayscale_skips_decorrelation_and_three_channels_can_too() {
    let mut rng = Rng::new(55);
    let shape = [1, 3, 6, 6];
    let mut s = setup(shape, 1.0, 9);
    assert!(s.param.decorrelated());
    s.param.set_decorrelate(false);
    assert!(!s.param.decorrelated());
    let image = zeros(&shape);
    let fwd = s.param.forward(ctx(), &image).unwrap();
    let x = rng.vec(numel(&spectrum_shape(shape)), -1.0, 1.0);
    s.param.spectrum().write(ctx(), &x).unwrap();
    common::run(&refs(&fwd));
    let r = reference(&x, shape, 1.0, &[0.0; 3], &[1.0; 3]);
    let want: Vec<f64> = r
        .lin
        .iter()
        .enumerate()
        .map(|(i, &l)| (sigmoid(l) - IMAGENET_MEAN[i / 36] as f64) / IMAGENET_STD[i / 36] as f64)
        .collect();
    assert_close("decorrelate off", &download(&image), &want, 1e-5, 1e-5);
    let g = setup([1, 1, 6, 6], 1.0, 9);
    assert!(!g.param.decorrelated());
}

#[test]
fn rejects_bad_shapes_and_settings() {
    let c = ctx();
    let m3 = &IMAGENET_MEAN[..];
    let s3 = &IMAGENET_STD[..];
    assert!(SpectralParam::new(c, [1, 3, 8, 1], 1.0, 0, m3, s3).is_err());
    assert!(SpectralParam::new(c, [0, 3, 8, 8], 1.0, 0, m3, s3).is_err());
    assert!(SpectralParam::new(c, [1, 3, 8, 8], f32::NAN, 0, m3, s3).is_err());
    assert!(SpectralParam::new(c, [1, 3, 8, 8], 1.0, 0, &GRAY_MEAN, s3).is_err());
    assert!(SpectralParam::new(c, [1, 3, 8, 8], 1.0, 0, m3, &[0.2, 0.0, 0.2]).is_err());
    let p = SpectralParam::new(c, [1, 3, 8, 9], 1.0, 0, m3, s3).unwrap();
    assert!(p.forward(c, &zeros(&[1, 3, 8, 8])).is_err());
    let d_img = zeros(&[1, 3, 8, 9]);
    assert!(p
        .backward(c, &d_img, &zeros(&[1, 3, 2, 8, 5]), false)
        .is_err());
    assert!(p
        .backward(c, &d_img, &zeros(&[1, 3, 2, 8, 6]), false)
        .is_ok());
    // The spectrum width must match the image width's Lucid width.
    let spec = zeros(&[1, 3, 2, 8, 5]);
    let freq = zeros(&[1, 3, 2, 8, 5]);
    let coef = zeros(&[8, 5]);
    let tw = zeros(&[8, 2]);
    assert!(columns_forward(c, &freq, &spec, &coef, &tw, 8).is_ok());
    assert!(columns_forward(c, &freq, &spec, &coef, &tw, 9).is_err());
    assert!(columns_forward(c, &freq, &spec, &zeros(&[8, 4]), &tw, 8).is_err());
}

fn fixture_tensor(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<f64>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape = t.shape().to_vec();
    let data = match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        d => panic!("{name}: unexpected dtype {d:?}"),
    };
    (shape, data)
}

/// numpy's `irfft2` (tools/make_spectral_fixture.py) pins the Hermitian convention: the CPU
/// reference agrees with it to f64 rounding, and the GPU forward to f32 rounding.
#[test]
fn numpy_irfft2_fixture() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/spectral.safetensors"
    ))
    .expect("read tests/fixtures/spectral.safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let cases = ["7x6x3", "5x7x1", "8x9x3", "6x6x1"];
    for case in cases {
        let (xs, x64) = fixture_tensor(&st, &format!("x.{case}"));
        let (_, lin) = fixture_tensor(&st, &format!("lin.{case}"));
        let (_, rgb) = fixture_tensor(&st, &format!("rgb.{case}"));
        let x: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        let shape = [xs[0], xs[1], xs[3], lin.len() / (xs[0] * xs[1] * xs[3])];
        assert_eq!(spectrum_shape(shape).to_vec(), xs, "{case}");
        let c = shape[1];
        let zero = vec![0.0f32; c];
        let one = vec![1.0f32; c];
        let r = reference(&x, shape, 1.0, &zero, &one);
        assert_close(
            &format!("reference lin {case}"),
            &r.lin.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            &lin,
            1e-7,
            1e-6,
        );
        for (a, b) in r.lin.iter().zip(&lin) {
            assert!((a - b).abs() <= 1e-12, "{case}: reference {a} vs numpy {b}");
        }
        let param = SpectralParam::new(ctx(), shape, 1.0, 0, &zero, &one).expect("new");
        let image = zeros(&shape);
        let fwd = param.forward(ctx(), &image).expect("forward");
        param.spectrum().write(ctx(), &x).expect("write");
        common::run(&refs(&fwd));
        assert_close(
            &format!("rgb {case}"),
            &download(param.rgb()),
            &rgb,
            2e-6,
            1e-5,
        );
        assert_close(
            &format!("image {case}"),
            &download(&image),
            &rgb,
            2e-6,
            1e-5,
        );
    }
}

/// Timing probe (not a check): `cargo test --release --test vis_spectral -- --ignored
/// --nocapture`. Forward and backward at 224² for a batch of 8 three-channel images.
#[test]
#[ignore]
fn timing_224() {
    let shape = [8, 3, 224, 224];
    let s = setup(shape, 1.0, 1);
    let d_img = zeros(&shape);
    let d_spec = zeros(&spectrum_shape(shape));
    let back = s.param.backward(ctx(), &d_img, &d_spec, false).unwrap();
    for (name, list) in [("forward", &s.forward), ("backward", &back)] {
        common::run(&refs(list));
        let t = std::time::Instant::now();
        for _ in 0..3 {
            common::run(&refs(list));
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / 3.0;
        eprintln!(
            "spectral {name} {shape:?}: {ms:.1} ms on {}",
            ctx().adapter().name
        );
    }
}

/// The mixed-radix FFT column kernels agree with the direct DFT kernels (forward, backward,
/// accumulating backward) for lengths with every radix and several stage counts.
#[test]
fn fft_columns_match_direct_dft() {
    assert_eq!(fft_radices(224), Some(vec![4, 4, 2, 7]));
    assert_eq!(fft_radices(30), Some(vec![2, 3, 5]));
    assert_eq!(fft_radices(11), None);
    assert_eq!(fft_radices(26), None);
    assert_eq!(fft_radices(1), None);
    let mut rng = Rng::new(77);
    for (h, w) in [
        (2usize, 5usize),
        (6, 4),
        (12, 7),
        (14, 6),
        (30, 8),
        (64, 3),
        (224, 2),
    ] {
        let shape = [2, 3, h, w];
        let sshape = spectrum_shape(shape);
        let wc = spectrum_width(w);
        let coef = upload(&[h, wc], &cnnvis::vis::spectral::coef_table(h, w, 1.0));
        let tw_h = upload(&[h, 2], &twiddle_table(h));
        let spec = upload(&sshape, &rng.vec(numel(&sshape), -1.0, 1.0));
        let (direct, freq, scratch) = (zeros(&sshape), zeros(&sshape), zeros(&sshape));
        let d = columns_forward(ctx(), &direct, &spec, &coef, &tw_h, w).unwrap();
        let f = columns_forward_fft(ctx(), &freq, &scratch, &spec, &coef, &tw_h, w).unwrap();
        assert_eq!(f.len(), fft_radices(h).unwrap().len());
        let mut all = vec![&d];
        all.extend(refs(&f));
        common::run(&all);
        let want: Vec<f64> = download(&direct).iter().map(|v| *v as f64).collect();
        let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(
            &format!("forward H={h}"),
            &download(&freq),
            &want,
            1e-5 * max,
            1e-4,
        );

        let g = rng.vec(numel(&sshape), -1.0, 1.0);
        let prior = rng.vec(numel(&sshape), -1.0, 1.0);
        let d_freq = upload(&sshape, &g);
        let (d_direct, d_fft) = (upload(&sshape, &prior), upload(&sshape, &prior));
        for accumulate in [false, true] {
            d_freq.write(ctx(), &g).unwrap();
            let d =
                columns_backward(ctx(), &d_direct, &d_freq, &coef, &tw_h, w, accumulate).unwrap();
            common::run(&[&d]);
            let f = columns_backward_fft(
                ctx(),
                &d_fft,
                &d_freq,
                &scratch,
                &coef,
                &tw_h,
                w,
                accumulate,
            )
            .unwrap();
            common::run(&refs(&f));
            let want: Vec<f64> = download(&d_direct).iter().map(|v| *v as f64).collect();
            let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert_close(
                &format!("backward H={h} accumulate={accumulate}"),
                &download(&d_fft),
                &want,
                1e-5 * max,
                1e-4,
            );
        }
        // Buffers that must differ.
        assert!(columns_forward_fft(ctx(), &freq, &freq, &spec, &coef, &tw_h, w).is_err());
        assert!(
            columns_backward_fft(ctx(), &d_fft, &d_freq, &d_freq, &coef, &tw_h, w, false).is_err()
        );
    }
    // A height with a prime factor above 7 has no FFT path.
    let sshape = spectrum_shape([1, 1, 11, 4]);
    let coef = upload(&[11, 3], &cnnvis::vis::spectral::coef_table(11, 4, 1.0));
    let tw_h = upload(&[11, 2], &twiddle_table(11));
    let (a, b, c) = (zeros(&sshape), zeros(&sshape), zeros(&sshape));
    assert!(columns_forward_fft(ctx(), &a, &b, &c, &coef, &tw_h, 4).is_err());
}

/// Heights the FFT does not cover (primes 11 and 13) run the direct DFT kernels, forward and
/// backward, and still match the reference.
#[test]
fn direct_fallback_heights_match_reference() {
    let mut rng = Rng::new(91);
    for (h, w) in [(11usize, 6usize), (13, 5)] {
        let shape = [2, 3, h, w];
        let sshape = spectrum_shape(shape);
        let s = setup(shape, 1.0, 2);
        assert_eq!(s.forward.len(), 3);
        let x = rng.vec(numel(&sshape), -1.0, 1.0);
        let got = s.run_forward(&x);
        let (mean, std) = norm(3);
        let r = reference(&x, shape, 1.0, mean, std);
        assert_close(&format!("image {h}x{w}"), &got, &r.out, 1e-5, 1e-5);
        let d = rng.vec(numel(&shape), -1.0, 1.0);
        let d_img = upload(&shape, &d);
        let d_spec = zeros(&sshape);
        let back = s.param.backward(ctx(), &d_img, &d_spec, false).unwrap();
        assert_eq!(back.len(), 3);
        let mut all = refs(&s.forward);
        all.extend(refs(&back));
        common::run(&all);
        let want = reference_adjoint(&r.rgb, &d, shape, 1.0, std);
        let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(
            &format!("d_spectrum {h}x{w}"),
            &download(&d_spec),
            &want,
            1e-5 * max,
            1e-5,
        );
    }
}

/// Timing probe (not a check): `cargo test --release --test vis_spectral timing_passes --
/// --ignored --nocapture`. Median of 5 runs of each pass, direct DFT vs FFT columns.
#[test]
#[ignore]
fn timing_passes() {
    for shape in [[2usize, 3, 224, 224], [6, 3, 64, 64]] {
        let [_, _, h, w] = shape;
        let sshape = spectrum_shape(shape);
        let wc = spectrum_width(w);
        let coef = upload(&[h, wc], &cnnvis::vis::spectral::coef_table(h, w, 1.0));
        let tw_h = upload(&[h, 2], &twiddle_table(h));
        let tw_w = upload(&[fft_width(w), 2], &twiddle_table(fft_width(w)));
        let spec = zeros(&sshape);
        let (freq, scratch, d_spec) = (zeros(&sshape), zeros(&sshape), zeros(&sshape));
        let lin = zeros(&shape);
        let lists: Vec<(&str, Vec<Dispatch>)> = vec![
            (
                "columns direct",
                vec![columns_forward(ctx(), &freq, &spec, &coef, &tw_h, w).unwrap()],
            ),
            (
                "columns fft",
                columns_forward_fft(ctx(), &freq, &scratch, &spec, &coef, &tw_h, w).unwrap(),
            ),
            (
                "columns_backward direct",
                vec![columns_backward(ctx(), &d_spec, &freq, &coef, &tw_h, w, false).unwrap()],
            ),
            (
                "columns_backward fft",
                columns_backward_fft(ctx(), &d_spec, &freq, &scratch, &coef, &tw_h, w, false)
                    .unwrap(),
            ),
            (
                "rows direct",
                vec![rows_forward(ctx(), &lin, &freq, &tw_w).unwrap()],
            ),
            (
                "rows_backward direct",
                vec![rows_backward(ctx(), &freq, &lin, &tw_w).unwrap()],
            ),
        ];
        for (name, list) in &lists {
            common::run(&refs(list));
            let mut ms: Vec<f64> = (0..5)
                .map(|_| {
                    let t = std::time::Instant::now();
                    common::run(&refs(list));
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            eprintln!("{shape:?} {name}: {:.2} ms (median of 5)", ms[2]);
        }
    }
}
