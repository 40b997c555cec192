// saliency.wgsl: the batch builders and reductions of the saliency family (src/vis/saliency.rs).
// Layout: images are NCHW, flat; `inner` = C*H*W values per image, `plane` = H*W. A replicated
// batch holds `reps` replicas (noise samples, path steps, occlusion windows) of the N images,
// replica-major: row b = j * N + n is replica r = r0 + j of image n (r0: the chunk's first
// replica). Rows of replicas r >= total are padding: builders write the clean image there and
// reductions skip them.
// Bindings: 0 params; 1 x (the input batch [N, inner]); 2 y (a built batch [reps*N, inner]);
// 3 noise (fed noise [S, N, inner]); 4 range (per-image max - min [N]); 5 g (gradients of a
// batch [reps*N, inner]); 6 acc, 7 acc2 (running sums [N, inner]); 8 out (a result);
// 9 coef (path alphas [R] then step weights [R]); 10 base (baseline per channel [C]);
// 11 codes (u32 grad modifier per image [N]); 12 act (the objective layer's output
// [rows, row]); 13 weights (linear seed per image [N, row]); 14 cls (softmax-probability class
// per image, -1: linear target [N]); 15 seed (backward seed [rows, row]); 16 scores (occluded
// scores [P * N], window-major); 17 clean (the unoccluded scores [N]).
// Threads: one per output element, except image_range (one workgroup per image), row_scores
// and probability_seed (one thread per batch row).

struct SalParams {
    n: u32,          // images N
    inner: u32,      // C*H*W
    channels: u32,   // C
    plane: u32,      // H*W
    reps: u32,       // replicas in this chunk
    r0: u32,         // first replica of this chunk
    total: u32,      // valid replicas overall (samples, steps, windows)
    mode: u32,       // kernel-specific switch (noise_finalize, modify_reduce)
    h: u32,
    w: u32,
    win_h: u32,      // occlusion window
    win_w: u32,
    stride_h: u32,   // occlusion stride
    stride_w: u32,
    pos_w: u32,      // occlusion: window positions along x
    row: u32,        // objective row length
    key0: u32,       // noise seed, low word
    key1: u32,       // noise seed, high word
    accumulate: u32, // 0: write, 1: add to acc/acc2
    _pad0: u32,
    level: f32,      // noise: sigma / (max - min)
    fill: f32,       // occlusion fill value
    inv_total: f32,  // 1 / samples
    _pad1: f32,
}

@group(0) @binding(0) var<uniform> p: SalParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> noise: array<f32>;
@group(0) @binding(4) var<storage, read_write> range: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> acc: array<f32>;
@group(0) @binding(7) var<storage, read_write> acc2: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;
@group(0) @binding(9) var<storage, read> coef: array<f32>;
@group(0) @binding(10) var<storage, read> base: array<f32>;
@group(0) @binding(11) var<storage, read> codes: array<u32>;
@group(0) @binding(12) var<storage, read> act: array<f32>;
@group(0) @binding(13) var<storage, read> weights: array<f32>;
@group(0) @binding(14) var<storage, read> cls: array<f32>;
@group(0) @binding(15) var<storage, read_write> seed: array<f32>;
@group(0) @binding(16) var<storage, read_write> scores: array<f32>;
@group(0) @binding(17) var<storage, read> clean: array<f32>;

// ---- Gaussian noise: the generator of random.wgsl (Philox4x32-10, Box-Muller), so element e
// of the noise equals element e of gaussian_fill(seed) over the whole [S, N, C, H, W] tensor,
// whatever the chunking.

const GAUSSIAN_STREAM: u32 = 1u;
const INV_2_24: f32 = 5.9604644775390625e-8; // 2^-24
const TAU: f32 = 6.283185307179586;

// -log(u) for u = (k + 1) / 2^24, precise near u = 1 (see random.wgsl).
fn neg_log_unit(k: u32) -> f32 {
    let v = f32(0xffffffu - k) * INV_2_24;
    if (v < 0.0625) {
        let t = 1.0 / 7.0 + v * (1.0 / 8.0);
        let s = 1.0 + v * (0.5 + v * (1.0 / 3.0 + v * (0.25 + v * (0.2 + v * (1.0 / 6.0 + v * t)))));
        return v * s;
    }
    return -log(f32(k + 1u) * INV_2_24);
}

// Standard normal number e of the Gaussian stream under the seed.
fn gaussian_at(e: u32) -> f32 {
    let w = philox4x32_10(vec4<u32>(e / 4u, 0u, GAUSSIAN_STREAM, 0u), vec2<u32>(p.key0, p.key1));
    let pair = (e % 4u) / 2u;
    let w0 = select(w.x, w.z, pair == 1u);
    let w1 = select(w.y, w.w, pair == 1u);
    let r = sqrt(2.0 * neg_log_unit(w0 >> 8u));
    let theta = TAU * (f32(w1 >> 8u) * INV_2_24 - 0.5);
    if ((e & 1u) == 0u) {
        return -r * cos(theta);
    }
    return -r * sin(theta);
}

var<workgroup> red_lo: array<f32, 256>;   // WG
var<workgroup> red_hi: array<f32, 256>;

// range[n] = max - min of image n (SmoothGrad's sigma is a fraction of it). One workgroup per
// image, its threads striding over the image.
@compute @workgroup_size(WG)
fn image_range(@builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let n = wg.x + wg.y * nwg.x;
    if (n >= p.n) { return; }
    var lo = x[n * p.inner];
    var hi = lo;
    for (var i = lid; i < p.inner; i += WG) {
        let v = x[n * p.inner + i];
        lo = min(lo, v);
        hi = max(hi, v);
    }
    red_lo[lid] = lo;
    red_hi[lid] = hi;
    workgroupBarrier();
    if (lid < 16u) {
        var l = red_lo[lid * 16u];
        var h = red_hi[lid * 16u];
        for (var k = 1u; k < 16u; k++) {
            l = min(l, red_lo[lid * 16u + k]);
            h = max(h, red_hi[lid * 16u + k]);
        }
        red_lo[lid * 16u] = l;
        red_hi[lid * 16u] = h;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var l = red_lo[0];
        var h = red_hi[0];
        for (var k = 1u; k < 16u; k++) {
            l = min(l, red_lo[k * 16u]);
            h = max(h, red_hi[k * 16u]);
        }
        range[n] = h - l;
    }
}

// Noisy copies: y[j, n, i] = x[n, i] + the noise of sample r = r0 + j at flat index
// (r * N + n) * inner + i; padding rows (r >= total) get x. noise_batch_generated draws it,
// level * range[n] * gaussian_at(index); noise_batch_fed reads noise[index].
struct NoisyElem {
    v: f32,      // x[n, i]
    src: u32,    // flat index into the [S, N, inner] noise
    n: u32,
    valid: bool, // r < total
}

fn noisy_elem(e: u32) -> NoisyElem {
    let i = e % p.inner;
    let row = e / p.inner;
    let n = row % p.n;
    let r = p.r0 + row / p.n;
    return NoisyElem(x[n * p.inner + i], (r * p.n + n) * p.inner + i, n, r < p.total);
}

@compute @workgroup_size(WG)
fn noise_batch_generated(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.reps * p.n * p.inner) { return; }
    let q = noisy_elem(e);
    if (!q.valid) {
        y[e] = q.v;
        return;
    }
    y[e] = q.v + p.level * range[q.n] * gaussian_at(q.src);
}

@compute @workgroup_size(WG)
fn noise_batch_fed(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.reps * p.n * p.inner) { return; }
    let q = noisy_elem(e);
    if (!q.valid) {
        y[e] = q.v;
        return;
    }
    y[e] = q.v + noise[q.src];
}

// Sums over the chunk's valid samples: acc[n, i] (+)= sum_j g[j, n, i], acc2 (+)= sum_j g^2.
@compute @workgroup_size(WG)
fn noise_accumulate(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.n * p.inner) { return; }
    var s = 0.0;
    var s2 = 0.0;
    for (var j = 0u; j < p.reps; j++) {
        if (p.r0 + j < p.total) {
            let v = g[j * p.n * p.inner + e];
            s += v;
            s2 += v * v;
        }
    }
    if (p.accumulate != 0u) {
        s += acc[e];
        s2 += acc2[e];
    }
    acc[e] = s;
    acc2[e] = s2;
}

// NoiseTunnel's aggregates from the sums over S = total samples: mode 0 SmoothGrad E[g],
// 1 SmoothGrad-squared E[g^2], 2 VarGrad E[g^2] - E[g]^2.
@compute @workgroup_size(WG)
fn noise_finalize(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.n * p.inner) { return; }
    let m = acc[e] * p.inv_total;
    let m2 = acc2[e] * p.inv_total;
    if (p.mode == 0u) {
        out[e] = m;
    } else if (p.mode == 1u) {
        out[e] = m2;
    } else {
        out[e] = m2 - m * m;
    }
}

// Integrated-gradients path points: y[j, n, c, s] = b_c + alpha_r * (x[n, c, s] - b_c) for
// step r = r0 + j (alphas in coef[0..total]); padding rows get x.
@compute @workgroup_size(WG)
fn path_batch(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.reps * p.n * p.inner) { return; }
    let i = e % p.inner;
    let row = e / p.inner;
    let n = row % p.n;
    let r = p.r0 + row / p.n;
    let v = x[n * p.inner + i];
    if (r >= p.total) {
        y[e] = v;
        return;
    }
    let b = base[i / p.plane];
    y[e] = b + coef[r] * (v - b);
}

// Weighted sum of the path gradients: acc[n, i] (+)= sum_j w_r g[j, n, i] (weights in
// coef[total..2 total]).
@compute @workgroup_size(WG)
fn path_accumulate(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.n * p.inner) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.reps; j++) {
        let r = p.r0 + j;
        if (r < p.total) {
            s += coef[p.total + r] * g[j * p.n * p.inner + e];
        }
    }
    if (p.accumulate != 0u) {
        s += acc[e];
    }
    acc[e] = s;
}

// out[n, c, s] = acc[n, c, s] * (x[n, c, s] - b_c): IG's final product, and input x gradient
// with b = 0.
@compute @workgroup_size(WG)
fn times_input_delta(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.n * p.inner) { return; }
    let c = (e % p.inner) / p.plane;
    out[e] = acc[e] * (x[e] - base[c]);
}

// keras-vis grad modifiers; code 0 none, 1 absolute, 2 relu, 3 negate, 4 invert
// (1 / (g + 1e-7)), 5 small_values (|1 / (g + 1e-7)|).
fn modify(v: f32, code: u32) -> f32 {
    switch code {
        case 1u: { return abs(v); }
        case 2u: { return max(v, 0.0); }
        case 3u: { return -v; }
        case 4u: { return 1.0 / (v + 1e-7); }
        case 5u: { return abs(1.0 / (v + 1e-7)); }
        default: { return v; }
    }
}

// Modifier (per image: codes[n]) then channel reduction. mode 0: keep channels, out is
// [N, C, H, W]; mode 1: max over channels, 2: sum over channels, out is [N, H, W].
@compute @workgroup_size(WG)
fn modify_reduce(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (p.mode == 0u) {
        if (e >= p.n * p.inner) { return; }
        out[e] = modify(g[e], codes[e / p.inner]);
        return;
    }
    if (e >= p.n * p.plane) { return; }
    let n = e / p.plane;
    let s = e % p.plane;
    let code = codes[n];
    var r = modify(g[n * p.inner + s], code);
    for (var c = 1u; c < p.channels; c++) {
        let v = modify(g[n * p.inner + c * p.plane + s], code);
        if (p.mode == 1u) {
            r = max(r, v);
        } else {
            r += v;
        }
    }
    out[e] = r;
}

// Whether pixel (yy, xx) lies in occlusion window r (row-major over pos_w positions per row).
fn in_window(r: u32, yy: u32, xx: u32) -> bool {
    let y0 = (r / p.pos_w) * p.stride_h;
    let x0 = (r % p.pos_w) * p.stride_w;
    return yy >= y0 && yy < y0 + p.win_h && xx >= x0 && xx < x0 + p.win_w;
}

// Occluded copies: y[j, n, c, yy, xx] = fill inside window r = r0 + j (all channels), else x.
// Padding rows get x.
@compute @workgroup_size(WG)
fn occlude_batch(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.reps * p.n * p.inner) { return; }
    let i = e % p.inner;
    let row = e / p.inner;
    let n = row % p.n;
    let r = p.r0 + row / p.n;
    let s = i % p.plane;
    if (r < p.total && in_window(r, s / p.w, s % p.w)) {
        y[e] = p.fill;
    } else {
        y[e] = x[n * p.inner + i];
    }
}

// The target score of row b = j * N + n of the objective layer: the softmax probability of
// class cls[n] when cls[n] >= 0, else weights[n] . act[b]. Written to scores[r * N + n] for
// r = r0 + j < total.
@compute @workgroup_size(WG)
fn row_scores(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(gid, nwg);
    if (b >= p.reps * p.n) { return; }
    let n = b % p.n;
    let r = p.r0 + b / p.n;
    if (r >= p.total) { return; }
    let a0 = b * p.row;
    var score = 0.0;
    let c = cls[n];
    if (c >= 0.0) {
        var m = act[a0];
        for (var k = 1u; k < p.row; k++) {
            m = max(m, act[a0 + k]);
        }
        var z = 0.0;
        for (var k = 0u; k < p.row; k++) {
            z += exp(act[a0 + k] - m);
        }
        score = exp(act[a0 + u32(c)] - m) / z;
    } else {
        for (var k = 0u; k < p.row; k++) {
            score += weights[n * p.row + k] * act[a0 + k];
        }
    }
    scores[r * p.n + n] = score;
}

// Occlusion attribution: out[n, c, yy, xx] = mean over the windows r covering (yy, xx) of
// clean[n] - scores[r * N + n] (0 where no window covers the pixel). Windows start at
// multiples of the stride; pos_w per row, total / pos_w rows.
@compute @workgroup_size(WG)
fn occlusion_finalize(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.n * p.inner) { return; }
    let n = e / p.inner;
    let s = e % p.plane;
    let yy = s / p.w;
    let xx = s % p.w;
    let pos_h = p.total / p.pos_w;
    // Window rows iy with iy * sh <= yy < iy * sh + wh.
    var iy0 = 0u;
    if (yy + 1u > p.win_h) {
        iy0 = (yy + 1u - p.win_h + p.stride_h - 1u) / p.stride_h;
    }
    let iy1 = min(yy / p.stride_h, pos_h - 1u);
    var ix0 = 0u;
    if (xx + 1u > p.win_w) {
        ix0 = (xx + 1u - p.win_w + p.stride_w - 1u) / p.stride_w;
    }
    let ix1 = min(xx / p.stride_w, p.pos_w - 1u);
    var sum = 0.0;
    var count = 0u;
    for (var iy = iy0; iy <= iy1; iy++) {
        for (var ix = ix0; ix <= ix1; ix++) {
            sum += clean[n] - scores[(iy * p.pos_w + ix) * p.n + n];
            count += 1u;
        }
    }
    out[e] = select(0.0, sum / f32(count), count > 0u);
}

// Backward seeds of a replicated batch: row b = j * N + n gets, for a probability target
// (cls[n] >= 0), d softmax_c / d z = p_c (delta_ck - p_k) of its own logits act[b]; otherwise
// the fixed linear seed weights[n].
@compute @workgroup_size(WG)
fn probability_seed(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(gid, nwg);
    if (b >= p.reps * p.n) { return; }
    let n = b % p.n;
    let a0 = b * p.row;
    let c = cls[n];
    if (c < 0.0) {
        for (var k = 0u; k < p.row; k++) {
            seed[a0 + k] = weights[n * p.row + k];
        }
        return;
    }
    var m = act[a0];
    for (var k = 1u; k < p.row; k++) {
        m = max(m, act[a0 + k]);
    }
    var z = 0.0;
    for (var k = 0u; k < p.row; k++) {
        z += exp(act[a0 + k] - m);
    }
    let ci = u32(c);
    let pc = exp(act[a0 + ci] - m) / z;
    for (var k = 0u; k < p.row; k++) {
        let pk = exp(act[a0 + k] - m) / z;
        seed[a0 + k] = pc * (select(0.0, 1.0, k == ci) - pk);
    }
}
