// cam.wgsl: the class activation map family (pytorch-grad-cam's numerics): channel weights
// (Grad-CAM, Grad-CAM++, XGrad-CAM, channel means), weighted / elementwise channel sums with
// the ReLU, per-image min-max, half-pixel bilinear upsampling with pytorch-grad-cam's
// normalisations, Score-CAM's masked inputs and scores, Eigen-CAM's Gram matrix and power
// iteration, Guided Grad-CAM's product, and aug_smooth's input transforms and averaging.
//
// Layout: NCHW, flat f32, last index fastest. N images; the CAM layer has K channels of
// h x w ("low-res"); the input has C channels of H x W (= oh x ow, "full size").
// Bindings: 0 params; 1 act [N,K,h,w] (layer output); 2 grad [N,K,h,w] (its gradient);
// 3 wout / 4 win [N,K] (channel weights, written / read); 5 cam [N,h,w] (written);
// 6 rows [N,len] (maps read by row_minmax / upsampling, len = h*w); 7 stats / 8 stats_in
// [N,2] (min, max per image); 9 up [N,oh,ow] (written); 10 xin [N,C,H,W] (input image, or
// the guided-backprop gradient); 11 xout [B,C,H,W] (masked batch, augmented input, guided
// product); 12 cstats / 13 cstats_in [N*K,2] (Score-CAM per-channel min, max of the
// upsampled activation); 14 vals [B,J] (values of the target layer for a masked batch);
// 15 sw [N,J] (per-image score weights); 16 smeta [N] (-1: linear score, else the class
// whose softmax probability is the score); 17 scores [N*K]; 18 gram / 19 gram_in
// [N,hw,hw]; 20 vecs [N,2,hw] (power-iteration vectors); 22 up_in [N,oh,ow]; 23 acc.
// Threads: one per output element unless the kernel's comment says one workgroup per row
// (row_minmax, score_channel_minmax, eigen_power), where the grid folds like flat_index.

struct CamParams {
    n: u32,       // images (or rows)
    k: u32,       // channels at the CAM layer
    h: u32,       // low-res height (row_minmax: 1, w = row length)
    w: u32,       // low-res width
    oh: u32,      // full-size height
    ow: u32,      // full-size width
    mode: u32,    // method / variant selector, per kernel
    offset: u32,  // Score-CAM: first (image, channel) pair of this batch
    total: u32,   // Score-CAM: N*K pairs; eigen: iteration cap
    rows: u32,    // Score-CAM: rows B of the masked batch
    c: u32,       // input channels
    flip: u32,    // aug_smooth: 1 = horizontal flip
    factor: f32,  // aug_smooth: intensity factor; accumulate_map: weight
    j: u32,       // Score-CAM: values per row of the target layer
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: CamParams;
@group(0) @binding(1) var<storage, read> act: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> wout: array<f32>;
@group(0) @binding(4) var<storage, read> win: array<f32>;
@group(0) @binding(5) var<storage, read_write> cam: array<f32>;
@group(0) @binding(6) var<storage, read> rows: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats: array<f32>;
@group(0) @binding(8) var<storage, read> stats_in: array<f32>;
@group(0) @binding(9) var<storage, read_write> up: array<f32>;
@group(0) @binding(10) var<storage, read> xin: array<f32>;
@group(0) @binding(11) var<storage, read_write> xout: array<f32>;
@group(0) @binding(12) var<storage, read_write> cstats: array<f32>;
@group(0) @binding(13) var<storage, read> cstats_in: array<f32>;
@group(0) @binding(14) var<storage, read> vals: array<f32>;
@group(0) @binding(15) var<storage, read> sw: array<f32>;
@group(0) @binding(16) var<storage, read> smeta: array<f32>;
@group(0) @binding(17) var<storage, read_write> scores: array<f32>;
@group(0) @binding(18) var<storage, read_write> gram: array<f32>;
@group(0) @binding(19) var<storage, read> gram_in: array<f32>;
@group(0) @binding(20) var<storage, read_write> vecs: array<f32>;
@group(0) @binding(22) var<storage, read> up_in: array<f32>;
@group(0) @binding(23) var<storage, read_write> acc: array<f32>;

// Channel weights, one thread per (n, k) plane:
//   mode 0 Grad-CAM:    mean(g);
//   mode 1 Grad-CAM++:  Σ relu(g) · α, α = g² / (2g² + Σa · g³ + 1e-6), α = 0 where g = 0;
//   mode 2 XGrad-CAM:   Σ g · a / (Σa + 1e-7);
//   mode 3 mean(a) (Eigen-CAM's centring; NaN counts as 0, as get_2d_projection).
@compute @workgroup_size(WG)
fn cam_weights(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n * p.k) { return; }
    let hw = p.h * p.w;
    let base = i * hw;
    var out = 0.0;
    if (p.mode == 0u) {
        var s = 0.0;
        for (var t = 0u; t < hw; t++) { s += grad[base + t]; }
        out = s / f32(hw);
    } else if (p.mode == 3u) {
        var s = 0.0;
        for (var t = 0u; t < hw; t++) {
            let a = act[base + t];
            s += select(a, 0.0, a != a);
        }
        out = s / f32(hw);
    } else {
        var sa = 0.0;
        for (var t = 0u; t < hw; t++) { sa += act[base + t]; }
        var s = 0.0;
        for (var t = 0u; t < hw; t++) {
            let g = grad[base + t];
            if (p.mode == 1u) {
                let g2 = g * g;
                let g3 = g2 * g;
                let aij = g2 / (2.0 * g2 + sa * g3 + 1e-6);
                s += select(0.0, max(g, 0.0) * aij, g != 0.0);
            } else {
                s += g * act[base + t] / (sa + 1e-7);
            }
        }
        out = s;
    }
    wout[i] = out;
}

// cam[n, y, x] = relu(Σ_k term), one thread per low-res pixel:
//   mode 0: win[n,k] · a (weighted channels);  mode 1 HiResCAM: g · a;
//   mode 2 LayerCAM: relu(g) · a.
@compute @workgroup_size(WG)
fn cam_combine(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.n * hw) { return; }
    let n = i / hw;
    let s = i % hw;
    var sum = 0.0;
    for (var k = 0u; k < p.k; k++) {
        let e = (n * p.k + k) * hw + s;
        let a = act[e];
        if (p.mode == 0u) {
            sum += win[n * p.k + k] * a;
        } else if (p.mode == 1u) {
            sum += grad[e] * a;
        } else {
            sum += max(grad[e], 0.0) * a;
        }
    }
    cam[i] = max(sum, 0.0);
}

var<workgroup> red_lo: array<f32, 256>;   // WG
var<workgroup> red_hi: array<f32, 256>;

// Min and max of each row of `rows` ([p.n rows of p.h * p.w values]) into stats[row, 0..2].
// One workgroup per row.
@compute @workgroup_size(WG)
fn row_minmax(@builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= p.n) { return; }
    let len = p.h * p.w;
    var lo = 3.4028235e38;
    var hi = -3.4028235e38;
    for (var t = lid; t < len; t += WG) {
        let v = rows[r * len + t];
        lo = min(lo, v);
        hi = max(hi, v);
    }
    red_lo[lid] = lo;
    red_hi[lid] = hi;
    workgroupBarrier();
    if (lid < 16u) {
        var l = red_lo[lid * 16u];
        var h = red_hi[lid * 16u];
        for (var q = 1u; q < 16u; q++) {
            l = min(l, red_lo[lid * 16u + q]);
            h = max(h, red_hi[lid * 16u + q]);
        }
        red_lo[lid * 16u] = l;
        red_hi[lid * 16u] = h;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var l = red_lo[0];
        var h = red_hi[0];
        for (var q = 1u; q < 16u; q++) {
            l = min(l, red_lo[q * 16u]);
            h = max(h, red_hi[q * 16u]);
        }
        stats[r * 2u] = l;
        stats[r * 2u + 1u] = h;
    }
}

// scale_cam_image's first step, per image: m = (v - min) / (1e-7 + (max - min)).
fn scaled_low(n: u32, y: u32, x: u32) -> f32 {
    let lo = stats_in[n * 2u];
    let hi = stats_in[n * 2u + 1u];
    return (rows[(n * p.h + y) * p.w + x] - lo) / (1e-7 + (hi - lo));
}

// One axis of cv2.resize's INTER_LINEAR: half-pixel source coordinate, clamped at both
// borders. Returns (index0, index1, weight of index1).
fn linear_taps(dst: u32, src_len: u32, dst_len: u32) -> vec3<f32> {
    let scale = f32(src_len) / f32(dst_len);
    let f = (f32(dst) + 0.5) * scale - 0.5;
    var i0 = i32(floor(f));
    var t = f - floor(f);
    if (i0 < 0) {
        i0 = 0;
        t = 0.0;
    }
    if (i0 >= i32(src_len) - 1) {
        i0 = i32(src_len) - 1;
        t = 0.0;
    }
    let i1 = min(i0 + 1, i32(src_len) - 1);
    return vec3<f32>(f32(i0), f32(i1), t);
}

// up[n, Y, X] = relu(bilinear(scaled cam)) at full size (cv2.resize with half-pixel
// centres of the normalised low-res map, then aggregate_multi_layers' ReLU). One thread per
// full-size pixel. The low-res maps are bound at `rows`, their min/max at `stats_in`.
@compute @workgroup_size(WG)
fn upsample_normalized(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let plane = p.oh * p.ow;
    if (i >= p.n * plane) { return; }
    let n = i / plane;
    let Y = (i % plane) / p.ow;
    let X = i % p.ow;
    let ty = linear_taps(Y, p.h, p.oh);
    let tx = linear_taps(X, p.w, p.ow);
    let y0 = u32(ty.x);
    let y1 = u32(ty.y);
    let x0 = u32(tx.x);
    let x1 = u32(tx.y);
    let top = scaled_low(n, y0, x0) * (1.0 - tx.z) + scaled_low(n, y0, x1) * tx.z;
    let bot = scaled_low(n, y1, x0) * (1.0 - tx.z) + scaled_low(n, y1, x1) * tx.z;
    up[i] = max(top * (1.0 - ty.z) + bot * ty.z, 0.0);
}

// up = (up - min) / (1e-7 + (max - min)) in place, per image (scale_cam_image without a
// resize). One thread per full-size pixel.
@compute @workgroup_size(WG)
fn normalize_rows(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let plane = p.oh * p.ow;
    if (i >= p.n * plane) { return; }
    let n = i / plane;
    let lo = stats_in[n * 2u];
    let hi = stats_in[n * 2u + 1u];
    up[i] = (up[i] - lo) / (1e-7 + (hi - lo));
}

// torch.nn.UpsamplingBilinear2d (align_corners = True) of channel plane `pl` = n*K + k of
// `act`, at full-size pixel (Y, X).
fn upsample_ac(pl: u32, Y: u32, X: u32) -> f32 {
    var sy = 0.0;
    if (p.oh > 1u) { sy = f32(p.h - 1u) / f32(p.oh - 1u); }
    var sx = 0.0;
    if (p.ow > 1u) { sx = f32(p.w - 1u) / f32(p.ow - 1u); }
    let fy = sy * f32(Y);
    let fx = sx * f32(X);
    let y0 = min(u32(fy), p.h - 1u);
    let x0 = min(u32(fx), p.w - 1u);
    let y1 = min(y0 + 1u, p.h - 1u);
    let x1 = min(x0 + 1u, p.w - 1u);
    let ly = fy - f32(y0);
    let lx = fx - f32(x0);
    let base = pl * p.h * p.w;
    let a00 = act[base + y0 * p.w + x0];
    let a01 = act[base + y0 * p.w + x1];
    let a10 = act[base + y1 * p.w + x0];
    let a11 = act[base + y1 * p.w + x1];
    return (1.0 - ly) * ((1.0 - lx) * a00 + lx * a01) + ly * ((1.0 - lx) * a10 + lx * a11);
}

// Score-CAM: min and max over the full-size upsampled map of each (n, k) channel plane, into
// cstats[pl, 0..2]. One workgroup per plane.
@compute @workgroup_size(WG)
fn score_channel_minmax(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let pl = wg.x + wg.y * nwg.x;
    if (pl >= p.n * p.k) { return; }
    let plane = p.oh * p.ow;
    var lo = 3.4028235e38;
    var hi = -3.4028235e38;
    for (var t = lid; t < plane; t += WG) {
        let v = upsample_ac(pl, t / p.ow, t % p.ow);
        lo = min(lo, v);
        hi = max(hi, v);
    }
    red_lo[lid] = lo;
    red_hi[lid] = hi;
    workgroupBarrier();
    if (lid < 16u) {
        var l = red_lo[lid * 16u];
        var h = red_hi[lid * 16u];
        for (var q = 1u; q < 16u; q++) {
            l = min(l, red_lo[lid * 16u + q]);
            h = max(h, red_hi[lid * 16u + q]);
        }
        red_lo[lid * 16u] = l;
        red_hi[lid * 16u] = h;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var l = red_lo[0];
        var h = red_hi[0];
        for (var q = 1u; q < 16u; q++) {
            l = min(l, red_lo[q * 16u]);
            h = max(h, red_hi[q * 16u]);
        }
        cstats[pl * 2u] = l;
        cstats[pl * 2u + 1u] = h;
    }
}

// Score-CAM's masked batch: row b holds pair j = offset + b (image j / K, channel j % K):
// xout[b, c, Y, X] = xin[n, c, Y, X] · (up - min) / (max - min + 1e-8); rows past the last
// pair are zero. One thread per element of xout [rows, C, oh, ow].
@compute @workgroup_size(WG)
fn score_masked_input(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let plane = p.oh * p.ow;
    let per_row = p.c * plane;
    if (i >= p.rows * per_row) { return; }
    let b = i / per_row;
    let j = p.offset + b;
    if (j >= p.total) {
        xout[i] = 0.0;
        return;
    }
    let n = j / p.k;
    let c = (i % per_row) / plane;
    let t = i % plane;
    let lo = cstats_in[j * 2u];
    let hi = cstats_in[j * 2u + 1u];
    let m = (upsample_ac(j, t / p.ow, t % p.ow) - lo) / (hi - lo + 1e-8);
    xout[i] = xin[(n * p.c + c) * plane + t] * m;
}

// Score-CAM scores of one masked batch: scores[j] = Σ_t sw[n, t] · vals[b, t] (a linear
// target), or softmax(vals[b, :])[smeta[n]] (a probability target). One thread per row.
@compute @workgroup_size(WG)
fn score_gather(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(gid, nwg);
    if (b >= p.rows) { return; }
    let j = p.offset + b;
    if (j >= p.total) { return; }
    let n = j / p.k;
    let cls = smeta[n];
    let base = b * p.j;
    var s = 0.0;
    if (cls < 0.0) {
        for (var t = 0u; t < p.j; t++) { s += sw[n * p.j + t] * vals[base + t]; }
    } else {
        var m = -3.4028235e38;
        for (var t = 0u; t < p.j; t++) { m = max(m, vals[base + t]); }
        var z = 0.0;
        for (var t = 0u; t < p.j; t++) { z += exp(vals[base + t] - m); }
        s = exp(vals[base + u32(cls)] - m) / z;
    }
    scores[j] = s;
}

// Eigen-CAM: gram[n, s, t] = Σ_k (a[n,k,s] - μ[n,k]) (a[n,k,t] - μ[n,k]) with μ = win (the
// channel means), NaN read as 0. One thread per (n, s, t).
@compute @workgroup_size(WG)
fn eigen_gram(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.n * hw * hw) { return; }
    let n = i / (hw * hw);
    let s = (i % (hw * hw)) / hw;
    let t = i % hw;
    var g = 0.0;
    for (var k = 0u; k < p.k; k++) {
        let base = (n * p.k + k) * hw;
        let mu = win[n * p.k + k];
        var a = act[base + s];
        var b = act[base + t];
        a = select(a, 0.0, a != a);
        b = select(b, 0.0, b != b);
        g += (a - mu) * (b - mu);
    }
    gram[i] = g;
}

var<workgroup> red_s: array<f32, 256>;
var<workgroup> flag: u32;
var<workgroup> wnorm: f32;

// Sums red_s[0..WG] into red_s[0] (all threads call it; ends with a barrier).
fn wg_sum(lid: u32) {
    workgroupBarrier();
    if (lid < 16u) {
        var s = 0.0;
        for (var q = 0u; q < 16u; q++) { s += red_s[lid * 16u + q]; }
        red_s[lid * 16u] = s;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var s = 0.0;
        for (var q = 0u; q < 16u; q++) { s += red_s[q * 16u]; }
        red_s[0] = s;
    }
    workgroupBarrier();
}

// A fixed pseudo-random start in [-1, 1] (the all-ones vector lies in the null space of a
// centred Gram matrix, so it cannot start the iteration).
fn start_value(s: u32) -> f32 {
    var x = s * 747796405u + 2891336453u;
    x = ((x >> ((x >> 28u) + 4u)) ^ x) * 277803737u;
    x = (x >> 22u) ^ x;
    return f32(x) / 2147483648.0 - 1.0;
}

// Eigen-CAM's first principal component by power iteration on gram[n] (hw x hw), one
// workgroup per image: u ← G u / |G u| until |Δu|² < 1e-13 or p.total iterations. The
// projection of the centred activations on the first right singular vector v is
// X v = sqrt(λ) u; its sign is fixed so that Σ_k v_k ≥ 0, i.e. Σ_s u_s r_s ≥ 0 with
// r_s = Σ_k (a[k,s] - μ_k). Writes cam[n] = relu(projection). vecs holds u and G u.
@compute @workgroup_size(WG)
fn eigen_power(@builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let n = wg.x + wg.y * nwg.x;
    if (n >= p.n) { return; }
    let hw = p.h * p.w;
    let gb = n * hw * hw;
    let ub = n * 2u * hw;
    let vb = ub + hw;
    // Start: normalised pseudo-random vector.
    var part = 0.0;
    for (var s = lid; s < hw; s += WG) {
        let v = start_value(s);
        vecs[ub + s] = v;
        part += v * v;
    }
    red_s[lid] = part;
    wg_sum(lid);
    let n0 = sqrt(red_s[0]);
    workgroupBarrier();
    for (var s = lid; s < hw; s += WG) { vecs[ub + s] = vecs[ub + s] / n0; }
    var lam = 0.0;
    for (var it = 0u; it < p.total; it++) {
        storageBarrier();
        workgroupBarrier();
        // v = G u, and |v|².
        part = 0.0;
        for (var s = lid; s < hw; s += WG) {
            var acc_v = 0.0;
            for (var t = 0u; t < hw; t++) { acc_v += gram_in[gb + s * hw + t] * vecs[ub + t]; }
            vecs[vb + s] = acc_v;
            part += acc_v * acc_v;
        }
        red_s[lid] = part;
        wg_sum(lid);
        if (lid == 0u) { wnorm = sqrt(red_s[0]); }
        let norm = workgroupUniformLoad(&wnorm);
        lam = norm;
        if (norm == 0.0) { break; }
        // u = v / |v|, and |Δu|².
        part = 0.0;
        storageBarrier();
        for (var s = lid; s < hw; s += WG) {
            let u = vecs[vb + s] / norm;
            let d = u - vecs[ub + s];
            part += d * d;
            vecs[ub + s] = u;
        }
        red_s[lid] = part;
        wg_sum(lid);
        if (lid == 0u) { flag = select(0u, 1u, red_s[0] < 1e-13); }
        if (workgroupUniformLoad(&flag) != 0u) { break; }
    }
    storageBarrier();
    workgroupBarrier();
    // Sign: Σ_s u_s r_s.
    part = 0.0;
    for (var s = lid; s < hw; s += WG) {
        var r = 0.0;
        for (var k = 0u; k < p.k; k++) {
            var a = act[(n * p.k + k) * hw + s];
            a = select(a, 0.0, a != a);
            r += a - win[n * p.k + k];
        }
        part += vecs[ub + s] * r;
    }
    red_s[lid] = part;
    wg_sum(lid);
    var sign = 1.0;
    if (red_s[0] < 0.0) { sign = -1.0; }
    let scale = sign * sqrt(max(lam, 0.0));
    for (var s = lid; s < hw; s += WG) {
        cam[n * hw + s] = max(scale * vecs[ub + s], 0.0);
    }
}

// Guided Grad-CAM: xout[n, c, Y, X] = xin[n, c, Y, X] (guided-backprop gradient) ·
// up_in[n, Y, X]. One thread per element.
@compute @workgroup_size(WG)
fn guided_product(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let plane = p.oh * p.ow;
    if (i >= p.n * p.c * plane) { return; }
    let n = i / (p.c * plane);
    xout[i] = xin[i] * up_in[n * plane + i % plane];
}

// aug_smooth's input transform (ttach HorizontalFlip then Multiply): xout = factor ·
// xin[..., X'] with X' = ow - 1 - X when flipping. One thread per element of [N, C, oh, ow].
@compute @workgroup_size(WG)
fn augment_input(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n * p.c * p.oh * p.ow) { return; }
    let X = i % p.ow;
    var src = i;
    if (p.flip != 0u) { src = i - X + (p.ow - 1u - X); }
    xout[i] = p.factor * xin[src];
}

// aug_smooth's de-augmentation and mean: acc[n, Y, X] (+)= factor · up_in[n, Y, X'] with X'
// flipped back when p.flip; mode 0 overwrites, 1 adds. One thread per element of
// [n, oh, ow].
@compute @workgroup_size(WG)
fn accumulate_map(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n * p.oh * p.ow) { return; }
    let X = i % p.ow;
    var src = i;
    if (p.flip != 0u) { src = i - X + (p.ow - 1u - X); }
    let v = p.factor * up_in[src];
    if (p.mode != 0u) {
        acc[i] = acc[i] + v;
    } else {
        acc[i] = v;
    }
}
