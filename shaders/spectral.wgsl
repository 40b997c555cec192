// spectral.wgsl: Lucid's Fourier image parameterization (lucid/optvis/param/spatial.py
// `fft_image`) with its decorrelated colour space and sigmoid (color.py `to_valid_rgb`), then
// the model's normalization; forward and backward (the adjoint of every step).
//
// Pipeline, per image n and channel c (src/vis/spectral.rs documents the formulas):
//   spectrum X [N,C,2,H,Wc] (re, im) --spectral_columns--> F [N,C,2,H,Wc]
//     F[y,kx] = sum_ky coef[ky,kx] * X[ky,kx] * e^{+2 pi i ky y / H}      (complex)
//   --spectral_rows--> L [N,C,H,W]
//     L[y,t] = sum_kx Re(F[y,kx] * e^{+2 pi i kx t / Wf}),  t < W         (crop of Wf >= W)
//   --spectral_color--> rgb [N,C,H,W] = sigmoid(M L) (M: 3x3 colour matrix, or identity),
//                       img [N,C,H,W] = (rgb - mean[c]) / std[c]
// coef folds Lucid's scale, irfft2d's 1/(H*Wf), its Hermitian weights (1 for the DC and
// Nyquist columns, 2 for the others) and Lucid's /4. Taking the real part in spectral_rows is
// what makes the imaginary parts of F's DC and Nyquist columns count for nothing, as in numpy's
// and TensorFlow's irfft (their twiddles have an exactly zero sine there).
// Backward: spectral_color_backward (dL = M^T (sigmoid' * d_out / std)), spectral_rows_backward
// (dF = the transpose of the real-part row sum), spectral_columns_backward (dX = coef * the
// conjugate column transform of dF), which writes or accumulates into d_spec.
//
// Layout: NCHW, flat f32, last index fastest; spectra are [N,C,2,H,Wc] with the real plane
// before the imaginary one. Twiddles are (cos, sin) pairs of 2 pi k / len, indexed by
// (k * j) mod len, precomputed in f64 on the host.
// Bindings: 0 params; 1 spec [N,C,2,H,Wc] (parameters); 2 freq (F or dF, written) / 3 freq_in
// (read) [N,C,2,H,Wc]; 4 coef [H,Wc]; 5 tw_h [H] vec2 (column twiddles); 6 tw_w [Wf] vec2 (row
// twiddles); 7 lin (L or dL, written) / 8 lin_in (read) [N,C,H,W]; 9 rgb (written) / 10 rgb_in
// (read) [N,C,H,W] (the sigmoid output, saved for the backward pass); 11 img [N,C,H,W] (image
// in model space); 12 d_out [N,C,H,W] (its gradient); 13 d_spec [N,C,2,H,Wc] (gradient to the
// parameters); 14 mean, 15 stdev [C].
// FFT column path (lengths H that factor into 2, 3, 4, 5, 7): Stockham autosort stages, one
// dispatch each, ping-ponging between freq and a scratch buffer. spectral_columns_fft reads
// freq_in (3) and writes freq (2); spectral_columns_fft_last_backward reads freq_in (3) and
// writes or adds coef * result to d_spec (13). Stage (r, Ns): thread (nc, j, kx),
// j < H / r, owns one radix-r butterfly: it reads elements j + m H/r (m < r) of column
// (nc, kx), twiddles them by e^{±2 pi i (j mod Ns) m / (Ns r)}, takes their length-r DFT and
// writes element k to (j / Ns) Ns r + (j mod Ns) + k Ns.
// Threads: one per output element: (n, c, y, kx) for the direct column and row-backward kernels,
// (n, c, ky, kx) for spectral_columns_backward, (n, c, y, t) for spectral_rows, one per pixel
// (n, y, t), all channels, for the colour kernels.

struct SpecParams {
    m0: vec4<f32>,      // colour matrix rows (xyz; w unused): rgb_i = sum_j m_i[j] * L_j
    m1: vec4<f32>,
    m2: vec4<f32>,
    n: u32,             // images
    c: u32,             // channels
    h: u32,             // image height
    w: u32,             // image width (after the crop)
    wc: u32,            // spectrum columns (Lucid: W/2 + 1, or W/2 + 2 for odd W)
    wf: u32,            // inverse transform width, 2 * (wc - 1) (W, or W + 1 for odd W)
    total: u32,         // threads of this launch
    accumulate: u32,    // spectral_columns_backward: 1 adds to d_spec
    decorrelate: u32,   // 1: apply the 3x3 colour matrix (C = 3), 0: per-channel
    radix: u32,         // FFT stage: its radix r (2, 3, 4, 5 or 7)
    stride: u32,        // FFT stage: Ns, the product of the earlier stages' radices
    flags: u32,         // FFT stage: 1 scales the input by coef, 2 uses the forward sign (-)
}

@group(0) @binding(0) var<uniform> p: SpecParams;
@group(0) @binding(1) var<storage, read> spec: array<f32>;
@group(0) @binding(2) var<storage, read_write> freq: array<f32>;
@group(0) @binding(3) var<storage, read> freq_in: array<f32>;
@group(0) @binding(4) var<storage, read> coef: array<f32>;
@group(0) @binding(5) var<storage, read> tw_h: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read> tw_w: array<vec2<f32>>;
@group(0) @binding(7) var<storage, read_write> lin: array<f32>;
@group(0) @binding(8) var<storage, read> lin_in: array<f32>;
@group(0) @binding(9) var<storage, read_write> rgb: array<f32>;
@group(0) @binding(10) var<storage, read> rgb_in: array<f32>;
@group(0) @binding(11) var<storage, read_write> img: array<f32>;
@group(0) @binding(12) var<storage, read> d_out: array<f32>;
@group(0) @binding(13) var<storage, read_write> d_spec: array<f32>;
@group(0) @binding(14) var<storage, read> mean: array<f32>;
@group(0) @binding(15) var<storage, read> stdev: array<f32>;

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

// Forward, step 1: the inverse DFT down each spectrum column, scaled by coef.
// Thread (nc, y, kx): F[nc, :, y, kx].
@compute @workgroup_size(WG)
fn spectral_columns(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) { return; }
    let kx = i % p.wc;
    let y = (i / p.wc) % p.h;
    let nc = i / (p.wc * p.h);
    let plane = p.h * p.wc;
    let base = nc * 2u * plane;
    var re = 0.0;
    var im = 0.0;
    var k = 0u; // (ky * y) mod h
    for (var ky = 0u; ky < p.h; ky++) {
        let s = coef[ky * p.wc + kx];
        let xr = spec[base + ky * p.wc + kx] * s;
        let xi = spec[base + plane + ky * p.wc + kx] * s;
        let t = tw_h[k];
        re += xr * t.x - xi * t.y;
        im += xr * t.y + xi * t.x;
        k += y;
        if (k >= p.h) { k -= p.h; }
    }
    freq[base + y * p.wc + kx] = re;
    freq[base + plane + y * p.wc + kx] = im;
}

// One Stockham stage's butterfly (see the header) for thread i: sign + (flags bit 2 clear)
// or - (set); input scaled by coef[q, kx] when flags bit 1 is set. Leaves the r outputs in v
// and returns (position of output 0 in the column, its flat index base (nc, plane 0, kx),
// kx); output k goes to position .x + k * stride.
fn fft_butterfly(i: u32, v: ptr<function, array<vec2<f32>, 7>>) -> vec3<u32> {
    let r = p.radix;
    let ns = p.stride;
    let hr = p.h / r;
    let kx = i % p.wc;
    let j = (i / p.wc) % hr;
    let nc = i / (p.wc * hr);
    let plane = p.h * p.wc;
    let base = nc * 2u * plane + kx;
    let conj = (p.flags & 2u) != 0u;
    let jm = j % ns;
    let step = hr / ns; // h / (ns r): twiddle index per (jm * m)
    var u: array<vec2<f32>, 7>;
    for (var m = 0u; m < r; m++) {
        let q = j + m * hr;
        var x = vec2<f32>(freq_in[base + q * p.wc], freq_in[base + plane + q * p.wc]);
        if ((p.flags & 1u) != 0u) {
            x *= coef[q * p.wc + kx];
        }
        var t = tw_h[jm * m * step];
        if (conj) { t.y = -t.y; }
        u[m] = vec2<f32>(x.x * t.x - x.y * t.y, x.x * t.y + x.y * t.x);
    }
    for (var k = 0u; k < r; k++) {
        var acc = u[0];
        var e = 0u; // (m * k) mod r
        for (var m = 1u; m < r; m++) {
            e += k;
            if (e >= r) { e -= r; }
            var t = tw_h[e * hr];
            if (conj) { t.y = -t.y; }
            let x = u[m];
            acc += vec2<f32>(x.x * t.x - x.y * t.y, x.x * t.y + x.y * t.x);
        }
        (*v)[k] = acc;
    }
    return vec3<u32>((j / ns) * ns * r + jm, base, kx);
}

// FFT column path, one Stockham stage (see the header): freq_in -> freq. Thread (nc, j, kx).
@compute @workgroup_size(WG)
fn spectral_columns_fft(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) { return; }
    var v: array<vec2<f32>, 7>;
    let o = fft_butterfly(i, &v);
    let plane = p.h * p.wc;
    for (var k = 0u; k < p.radix; k++) {
        let a = o.y + (o.x + k * p.stride) * p.wc;
        freq[a] = v[k].x;
        freq[a + plane] = v[k].y;
    }
}

// FFT column path, the last stage of the backward transform: freq_in -> d_spec, each output
// scaled by coef[ky, kx], written or (accumulate) added. Thread (nc, j, kx).
@compute @workgroup_size(WG)
fn spectral_columns_fft_last_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) { return; }
    var v: array<vec2<f32>, 7>;
    let o = fft_butterfly(i, &v);
    let plane = p.h * p.wc;
    for (var k = 0u; k < p.radix; k++) {
        let ky = o.x + k * p.stride;
        let a = o.y + ky * p.wc;
        let s = coef[ky * p.wc + o.z];
        if (p.accumulate != 0u) {
            d_spec[a] = d_spec[a] + s * v[k].x;
            d_spec[a + plane] = d_spec[a + plane] + s * v[k].y;
        } else {
            d_spec[a] = s * v[k].x;
            d_spec[a + plane] = s * v[k].y;
        }
    }
}

// Forward, step 2: the real part of the inverse DFT along each row, columns t < w only.
// Thread (nc, y, t): L[nc, y, t].
@compute @workgroup_size(WG)
fn spectral_rows(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) { return; }
    let t = i % p.w;
    let y = (i / p.w) % p.h;
    let nc = i / (p.w * p.h);
    let plane = p.h * p.wc;
    let row = nc * 2u * plane + y * p.wc;
    var acc = 0.0;
    var k = 0u; // (kx * t) mod wf
    for (var kx = 0u; kx < p.wc; kx++) {
        let tw = tw_w[k];
        acc += freq_in[row + kx] * tw.x - freq_in[row + plane + kx] * tw.y;
        k += t;
        if (k >= p.wf) { k -= p.wf; }
    }
    lin[i] = acc;
}

// 3x3 colour mixing (transposed when `transpose`), or the identity when not decorrelating.
fn mix3(v: vec3<f32>, transpose: bool) -> vec3<f32> {
    let r0 = p.m0.xyz;
    let r1 = p.m1.xyz;
    let r2 = p.m2.xyz;
    if (transpose) {
        return r0 * v.x + r1 * v.y + r2 * v.z;
    }
    return vec3<f32>(dot(r0, v), dot(r1, v), dot(r2, v));
}

// Forward, step 3: colour decorrelation, sigmoid, normalization. Thread: one pixel (n, y, t),
// every channel. Writes rgb (saved for the backward pass) and out.
@compute @workgroup_size(WG)
fn spectral_color(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let n = i / hw;
    let s = i % hw;
    let base = n * p.c * hw + s;
    if (p.decorrelate != 0u) {
        let v = vec3<f32>(lin_in[base], lin_in[base + hw], lin_in[base + 2u * hw]);
        let z = mix3(v, false);
        for (var c = 0u; c < 3u; c++) {
            let r = sigmoid(z[c]);
            rgb[base + c * hw] = r;
            img[base + c * hw] = (r - mean[c]) / stdev[c];
        }
    } else {
        for (var c = 0u; c < p.c; c++) {
            let r = sigmoid(lin_in[base + c * hw]);
            rgb[base + c * hw] = r;
            img[base + c * hw] = (r - mean[c]) / stdev[c];
        }
    }
}

// Backward of step 3: dL = M^T (rgb (1 - rgb) d_out / std). Thread: one pixel, every channel.
@compute @workgroup_size(WG)
fn spectral_color_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    let n = i / hw;
    let s = i % hw;
    let base = n * p.c * hw + s;
    if (p.decorrelate != 0u) {
        var dz = vec3<f32>(0.0);
        for (var c = 0u; c < 3u; c++) {
            let r = rgb_in[base + c * hw];
            dz[c] = d_out[base + c * hw] / stdev[c] * (r * (1.0 - r));
        }
        let dl = mix3(dz, true);
        for (var c = 0u; c < 3u; c++) {
            lin[base + c * hw] = dl[c];
        }
    } else {
        for (var c = 0u; c < p.c; c++) {
            let r = rgb_in[base + c * hw];
            lin[base + c * hw] = d_out[base + c * hw] / stdev[c] * (r * (1.0 - r));
        }
    }
}

// Backward of step 2: dF_re[y, kx] = sum_{t<w} dL[y, t] cos, dF_im[y, kx] = -sum_t dL[y, t] sin
// (angle 2 pi kx t / wf). Thread (nc, y, kx).
@compute @workgroup_size(WG)
fn spectral_rows_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) { return; }
    let kx = i % p.wc;
    let y = (i / p.wc) % p.h;
    let nc = i / (p.wc * p.h);
    let plane = p.h * p.wc;
    let row = (nc * p.h + y) * p.w;
    var re = 0.0;
    var im = 0.0;
    var k = 0u; // (kx * t) mod wf
    for (var t = 0u; t < p.w; t++) {
        let g = lin_in[row + t];
        let tw = tw_w[k];
        re += g * tw.x;
        im -= g * tw.y;
        k += kx;
        if (k >= p.wf) { k -= p.wf; }
    }
    let base = nc * 2u * plane + y * p.wc + kx;
    freq[base] = re;
    freq[base + plane] = im;
}

// Backward of step 1: dX[ky, kx] = coef[ky, kx] * sum_y dF[y, kx] e^{-2 pi i ky y / H}, i.e.
// dX_re = coef * sum (dF_re cos + dF_im sin), dX_im = coef * sum (dF_im cos - dF_re sin).
// Thread (nc, ky, kx); writes or (accumulate) adds to d_spec.
@compute @workgroup_size(WG)
fn spectral_columns_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) { return; }
    let kx = i % p.wc;
    let ky = (i / p.wc) % p.h;
    let nc = i / (p.wc * p.h);
    let plane = p.h * p.wc;
    let base = nc * 2u * plane;
    var re = 0.0;
    var im = 0.0;
    var k = 0u; // (ky * y) mod h
    for (var y = 0u; y < p.h; y++) {
        let gr = freq_in[base + y * p.wc + kx];
        let gi = freq_in[base + plane + y * p.wc + kx];
        let t = tw_h[k];
        re += gr * t.x + gi * t.y;
        im += gi * t.x - gr * t.y;
        k += ky;
        if (k >= p.h) { k -= p.h; }
    }
    let s = coef[ky * p.wc + kx];
    let ir = base + ky * p.wc + kx;
    let ii = ir + plane;
    if (p.accumulate != 0u) {
        d_spec[ir] = d_spec[ir] + s * re;
        d_spec[ii] = d_spec[ii] + s * im;
    } else {
        d_spec[ir] = s * re;
        d_spec[ii] = s * im;
    }
}
