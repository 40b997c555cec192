// optim.wgsl: the building blocks of activation maximization (src/vis/optim.rs): keras-vis's
// regularizers (total variation, Lp norm) with their gradients, the update rules (keras-vis's
// gradient normalization + RMSProp, Adam), clipping, keep-best, the per-iteration loss log,
// the GPU step counter and per-step random numbers, and the random input transforms (jitter,
// pad, affine warp = rotation + scale + translation) forward and backward.
//
// Layout: images are NCHW f32, flat; `inner` = C*H*W values per image, `plane` = H*W. A
// transform maps x [N, C, H, W] to y [N, C, HO, WO]. Per-image scalars ([N]) sit at index n.
// rand is [N, k] (row n holds image n's random numbers, uniform in [0, 1)); a transform reads
// its own columns from `col` on. step is a [1] u32: the number of completed iterations.
//
// Bindings: 0 params; 1 x (an image batch, read); 2 y (a transform's output); 3 dy (upstream
// gradient of y); 4 dx (gradient to x / the regularizers' gradient tensor); 5 loss ([N]);
// 6 stats (Lp norm per image [N, 2]: norm, ties); 7 rand ([N, k]); 8 step ([1] u32);
// 9 s0 (RMSProp cache / Adam m); 10 s1 (Adam v); 11 xp (the optimized input, updated in
// place); 12 g (its gradient); 13 gscale (per-image gradient scale [N]); 14 best (best input
// so far); 15 best_loss ([N]); 16 losses (loss log [iterations, N]); 17 bounds (per channel:
// clip [C, 2] as lo, hi; pad fill [C]).
//
// Threads: one per output element (forward) or per input element (backward, as gathers: every
// thread writes only its own element, so no atomics), except the per-image reductions
// (tv_loss, lp_loss, grad_rms: one workgroup per image), keep_best_loss and log_loss (one
// thread per image), step_advance (one thread) and step_uniform (one thread per four values).

struct OptParams {
    n: u32,          // images N
    c: u32,          // channels C
    h: u32,          // input height H
    w: u32,          // input width W
    ho: u32,         // transform output height
    wo: u32,         // transform output width
    count: u32,      // elements the threads cover
    accumulate: u32, // 0: write, 1: add (loss, dx)
    mode: u32,       // kernel-specific switch (p = inf, pad mode, jitter mode, gradient scale)
    k: u32,          // rand row length
    col: u32,        // first rand column of this transform
    pad: u32,        // pad width (pad_*), max jitter shift (jitter_*)
    iterations: u32, // loss log rows
    key0: u32,       // step_uniform seed, low word
    key1: u32,       // step_uniform seed, high word
    _pad0: u32,
    weight: f32,     // regularizer weight
    power: f32,      // TV beta / Lp p
    inv_count: f32,  // keras-vis normalize: 1 / (C*H*W)
    lr: f32,         // learning rate
    beta1: f32,      // Adam beta1
    beta2: f32,      // Adam beta2 / RMSProp decay
    eps: f32,        // update epsilon
    norm_eps: f32,   // gradient normalization epsilon
    angle_lo: f32,   // warp: rotation range, radians
    angle_hi: f32,
    scale_lo: f32,   // warp: scale range
    scale_hi: f32,
    translate: f32,  // warp: max translation, pixels
    ln_beta1: f32,   // Adam: ln β1 (computed in f64)
    ln_beta2: f32,   // Adam: ln β2
    _pad1: f32,
}

@group(0) @binding(0) var<uniform> p: OptParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
@group(0) @binding(7) var<storage, read_write> rand: array<f32>;
@group(0) @binding(8) var<storage, read_write> step: array<u32>;
@group(0) @binding(9) var<storage, read_write> s0: array<f32>;
@group(0) @binding(10) var<storage, read_write> s1: array<f32>;
@group(0) @binding(11) var<storage, read_write> xp: array<f32>;
@group(0) @binding(12) var<storage, read> g: array<f32>;
@group(0) @binding(13) var<storage, read_write> gscale: array<f32>;
@group(0) @binding(14) var<storage, read_write> best: array<f32>;
@group(0) @binding(15) var<storage, read_write> best_loss: array<f32>;
@group(0) @binding(16) var<storage, read_write> losses: array<f32>;
@group(0) @binding(17) var<storage, read> bounds: array<f32>;

fn store_dx(i: u32, v: f32) {
    if (p.accumulate != 0u) {
        dx[i] = dx[i] + v;
    } else {
        dx[i] = v;
    }
}

fn store_loss(n: u32, v: f32) {
    if (p.accumulate != 0u) {
        loss[n] = loss[n] + v;
    } else {
        loss[n] = v;
    }
}

// ---- per-image workgroup reductions ---------------------------------------------------------

var<workgroup> red: array<f32, 256>; // WG

// Image index of a one-workgroup-per-image kernel (grid folded into 2-D like flat_index).
fn image_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

// Tree sum of red[0..WG) into red[0]; every thread returns the total. Callers store their
// partial into red[lid] first. Ends with a barrier so red can be reused.
fn reduce_sum(lid: u32) -> f32 {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn reduce_max(lid: u32) -> f32 {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// ---- total variation (keras-vis TotalVariation) ---------------------------------------------
// TV(x) = Σ_{c, i < H-1, j < W-1} ((x[c,i+1,j] - x[c,i,j])² + (x[c,i,j+1] - x[c,i,j])²)^(β/2)
// normalized by C*H*W; the loss adds weight * TV.

// The inner term t at (c, i, j) of image base `b` (caller ensures i < H-1, j < W-1).
fn tv_term(b: u32, i: u32, j: u32) -> vec3<f32> {
    let at = b + i * p.w + j;
    let v = x[at];
    let dv = x[at + p.w] - v; // down
    let dh = x[at + 1u] - v;  // right
    return vec3<f32>(dv * dv + dh * dh, dv, dh);
}

// t^(β/2), with 0^(β/2) = 0 (β > 0).
fn tv_pow(t: f32) -> f32 {
    if (t <= 0.0) { return 0.0; }
    return pow(t, 0.5 * p.power);
}

// d t^(β/2) / dt, taken as 0 at t = 0 (where every difference is 0, so the chain rule's other
// factor is 0 anyway; TF would give NaN there for β < 2).
fn tv_dpow(t: f32) -> f32 {
    if (t <= 0.0) { return 0.0; }
    return 0.5 * p.power * pow(t, 0.5 * p.power - 1.0);
}

// loss[n] (+)= weight * TV(x[n]) / (C*H*W). One workgroup per image.
@compute @workgroup_size(WG)
fn tv_loss(@builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let n = image_of(wg, nwg);
    if (n >= p.n) { return; }
    var acc = 0.0;
    if (p.h > 1u && p.w > 1u) {
        let hm = p.h - 1u;
        let wm = p.w - 1u;
        let terms = p.c * hm * wm;
        for (var e = lid; e < terms; e += WG) {
            let j = e % wm;
            let r = e / wm;
            let i = r % hm;
            let c = r / hm;
            let b = (n * p.c + c) * p.h * p.w;
            acc += tv_pow(tv_term(b, i, j).x);
        }
    }
    red[lid] = acc;
    let total = reduce_sum(lid);
    if (lid == 0u) {
        store_loss(n, p.weight * total * p.inv_count);
    }
}

// dx (+)= weight / (C*H*W) * dTV/dx. Element (c, i, j) is the base of the term at (i, j) and
// the far end of the terms at (i-1, j) (vertical) and (i, j-1) (horizontal).
@compute @workgroup_size(WG)
fn tv_backward(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let plane = p.h * p.w;
    let b = (e / plane) * plane;
    let i = (e % plane) / p.w;
    let j = e % p.w;
    let hm = p.h - 1u;
    let wm = p.w - 1u;
    var gsum = 0.0;
    if (p.h > 1u && p.w > 1u) {
        if (i < hm && j < wm) {
            let t = tv_term(b, i, j);
            gsum -= 2.0 * tv_dpow(t.x) * (t.y + t.z);
        }
        if (i > 0u && j < wm) {
            let t = tv_term(b, i - 1u, j);
            gsum += 2.0 * tv_dpow(t.x) * t.y;
        }
        if (j > 0u && i < hm) {
            let t = tv_term(b, i, j - 1u);
            gsum += 2.0 * tv_dpow(t.x) * t.z;
        }
    }
    store_dx(e, p.weight * p.inv_count * gsum);
}

// ---- Lp norm (keras-vis LPNorm) -------------------------------------------------------------
// norm = (Σ|x|^p)^(1/p), evaluated as m * (Σ(|x|/m)^p)^(1/p) with m = max|x| (no overflow for
// large p); p = inf (mode 1): keras-vis's K.max(x), the signed maximum. The loss adds
// weight * norm / (C*H*W). stats[n] = (norm, ties): ties counts the elements equal to the
// maximum (p = inf), which share its gradient as in TF's reduce_max.

@compute @workgroup_size(WG)
fn lp_loss(@builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let n = image_of(wg, nwg);
    if (n >= p.n) { return; }
    let inner = p.c * p.h * p.w;
    let b = n * inner;
    let inf_norm = p.mode == 1u;
    var m = -3.4028235e38;
    for (var e = lid; e < inner; e += WG) {
        let v = x[b + e];
        m = max(m, select(abs(v), v, inf_norm));
    }
    red[lid] = m;
    m = reduce_max(lid);
    var acc = 0.0;
    for (var e = lid; e < inner; e += WG) {
        let v = x[b + e];
        if (inf_norm) {
            acc += select(0.0, 1.0, v == m);
        } else if (m > 0.0) {
            let r = abs(v) / m;
            if (r > 0.0) {
                acc += pow(r, p.power);
            }
        }
    }
    red[lid] = acc;
    let total = reduce_sum(lid);
    if (lid == 0u) {
        var norm = m;
        if (!inf_norm) {
            norm = select(0.0, m * pow(total, 1.0 / p.power), m > 0.0);
        }
        stats[2u * n] = norm;
        stats[2u * n + 1u] = total;
        store_loss(n, p.weight * norm * p.inv_count);
    }
}

// dx (+)= weight / (C*H*W) * dnorm/dx: sign(x) (|x| / norm)^(p-1); p = inf: 1 / ties at the
// elements equal to the maximum, else 0.
@compute @workgroup_size(WG)
fn lp_backward(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let n = e / (p.c * p.h * p.w);
    let norm = stats[2u * n];
    let v = x[e];
    var d = 0.0;
    if (p.mode == 1u) {
        if (v == norm) {
            d = 1.0 / stats[2u * n + 1u];
        }
    } else if (norm > 0.0 && v != 0.0) {
        d = sign(v) * pow(abs(v) / norm, p.power - 1.0);
    }
    store_dx(e, p.weight * p.inv_count * d);
}

// ---- update rules ---------------------------------------------------------------------------

// keras-vis Optimizer(norm_grads=True): g / (sqrt(mean(g²)) + K.epsilon()); gscale[n] is the
// per-image factor 1 / (sqrt(mean over C*H*W of g²) + norm_eps). One workgroup per image.
@compute @workgroup_size(WG)
fn grad_rms(@builtin(workgroup_id) wg: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let n = image_of(wg, nwg);
    if (n >= p.n) { return; }
    let inner = p.c * p.h * p.w;
    let b = n * inner;
    var acc = 0.0;
    for (var e = lid; e < inner; e += WG) {
        let v = g[b + e];
        acc += v * v;
    }
    red[lid] = acc;
    let total = reduce_sum(lid);
    if (lid == 0u) {
        gscale[n] = 1.0 / (sqrt(total / f32(inner)) + p.norm_eps);
    }
}

// The gradient of element e, times its image's gscale when mode = 1.
fn scaled_grad(e: u32) -> f32 {
    var v = g[e];
    if (p.mode == 1u) {
        v = v * gscale[e / (p.c * p.h * p.w)];
    }
    return v;
}

// keras-vis Optimizer._rmsprop: cache = decay*cache + (1-decay)*g²; x += -lr*g/sqrt(cache+eps)
// (keras-vis: decay 0.95, eps K.epsilon() = 1e-7, lr 1).
@compute @workgroup_size(WG)
fn rmsprop_update(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let gv = scaled_grad(e);
    let cache = p.beta2 * s0[e] + (1.0 - p.beta2) * (gv * gv);
    s0[e] = cache;
    xp[e] = xp[e] + (-(p.lr * gv) / sqrt(cache + p.eps));
}

// 1 - β^t = -expm1(t ln β) with ln β precomputed in f64 on the host: 1 - pow(β, t) in f32
// loses most digits to cancellation for β near 1 (β2 = 0.999: 1 - β2^3 ≈ 0.003), and GPU
// pow/log are only accurate to ~2^-21 absolute. Taylor series of expm1 for |x| < 0.5 (ten
// terms: below 1e-9 relative), 1 - exp(x) beyond.
fn one_minus_pow(ln_beta: f32, t: f32) -> f32 {
    let x = t * ln_beta;
    if (x <= -0.5) {
        return 1.0 - exp(x);
    }
    var s = 1.0;
    for (var i = 10; i >= 2; i--) {
        s = 1.0 + s * x / f32(i);
    }
    return -x * s;
}

// Adam as torch.optim.Adam (amsgrad off, no weight decay) at step t = step[0] + 1:
// m = lerp(m, g, 1-β1); v = β2 v + (1-β2) g²; x -= (lr / (1-β1^t)) * m / (sqrt(v)/sqrt(1-β2^t) + eps).
@compute @workgroup_size(WG)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let t = f32(step[0] + 1u);
    let gv = scaled_grad(e);
    let m = s0[e] + (1.0 - p.beta1) * (gv - s0[e]);
    let v = p.beta2 * s1[e] + (1.0 - p.beta2) * (gv * gv);
    s0[e] = m;
    s1[e] = v;
    let bc1 = one_minus_pow(p.ln_beta1, t);
    let bc2_sqrt = sqrt(one_minus_pow(p.ln_beta2, t));
    let denom = sqrt(v) / bc2_sqrt + p.eps;
    xp[e] = xp[e] - (p.lr / bc1) * (m / denom);
}

// x = min(max(x, lo[c]), hi[c]) with bounds[c] = (lo, hi).
@compute @workgroup_size(WG)
fn clip_channels(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let c = (e / (p.h * p.w)) % p.c;
    xp[e] = min(max(xp[e], bounds[2u * c]), bounds[2u * c + 1u]);
}

// Keep-best, first half: copy image n of x into best where loss[n] < best_loss[n] (a NaN loss
// never wins). keep_best_loss runs next, after every copy.
@compute @workgroup_size(WG)
fn keep_best_copy(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let n = e / (p.c * p.h * p.w);
    if (loss[n] < best_loss[n]) {
        best[e] = x[e];
    }
}

// Keep-best, second half: best_loss[n] = loss[n] where it improved. One thread per image.
@compute @workgroup_size(WG)
fn keep_best_loss(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_index(gid, nwg);
    if (n >= p.n) { return; }
    if (loss[n] < best_loss[n]) {
        best_loss[n] = loss[n];
    }
}

// losses[step, n] = loss[n]; nothing when step >= iterations. One thread per image.
@compute @workgroup_size(WG)
fn log_loss(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_index(gid, nwg);
    if (n >= p.n) { return; }
    let s = step[0];
    if (s >= p.iterations) { return; }
    losses[s * p.n + n] = loss[n];
}

// step[0] += count (1). One thread.
@compute @workgroup_size(1)
fn step_advance() {
    step[0] = step[0] + p.count;
}

// ---- per-step random numbers: Philox4x32-10 as random.wgsl, counter (e/4, step, 2, 0) -------

const STEP_STREAM: u32 = 2u;
const INV_2_24: f32 = 5.9604644775390625e-8; // 2^-24

// rand[e] = top 24 bits of word e%4 of philox((e/4, step[0], 2, 0), seed) / 2^24, in [0, 1).
// One thread per block of four.
@compute @workgroup_size(WG)
fn step_uniform(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = flat_index(gid, nwg);
    let i0 = blk * 4u;
    if (i0 >= p.count) { return; }
    let w = philox4x32_10(vec4<u32>(blk, step[0], STEP_STREAM, 0u), vec2<u32>(p.key0, p.key1));
    for (var j = 0u; j < 4u; j++) {
        if (i0 + j < p.count) {
            rand[i0 + j] = f32(w[j] >> 8u) * INV_2_24;
        }
    }
}

// ---- transforms -----------------------------------------------------------------------------

// Integer offset from a uniform u in [0, 1): floor(u * span) clamped to span - 1.
fn pick(u: f32, span: u32) -> u32 {
    return min(u32(u * f32(span)), span - 1u);
}

// Jitter offsets of image n: mode 0 (crop, Lucid's jitter): (oy, ox) in [0, H-HO] x [0, W-WO];
// mode 1 (roll, keras-vis's Jitter): in [-d, d]², d = p.pad, returned as the shift mod H, W.
fn jitter_offsets(n: u32) -> vec2<u32> {
    let uy = rand[n * p.k + p.col];
    let ux = rand[n * p.k + p.col + 1u];
    if (p.mode == 1u) {
        let span = 2u * p.pad + 1u;
        // shift s in [-d, d] as (s mod size), so (i + size - s) % size is i - s wrapped
        let sy = (pick(uy, span) + p.h - (p.pad % p.h)) % p.h;
        let sx = (pick(ux, span) + p.w - (p.pad % p.w)) % p.w;
        return vec2<u32>(sy, sx);
    }
    return vec2<u32>(pick(uy, p.h - p.ho + 1u), pick(ux, p.w - p.wo + 1u));
}

// crop: y[i, j] = x[i + oy, j + ox]; roll: y[i, j] = x[(i - sy) mod H, (j - sx) mod W].
@compute @workgroup_size(WG)
fn jitter_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let j = e % p.wo;
    let i = (e / p.wo) % p.ho;
    let nc = e / (p.wo * p.ho);
    let o = jitter_offsets(nc / p.c);
    var si = i + o.x;
    var sj = j + o.y;
    if (p.mode == 1u) {
        si = (i + p.h - o.x) % p.h;
        sj = (j + p.w - o.y) % p.w;
    }
    y[e] = x[(nc * p.h + si) * p.w + sj];
}

// The transpose, one thread per x element: crop: dx[i, j] = dy[i - oy, j - ox] inside the
// window, else 0; roll: dx[i, j] = dy[(i + sy) mod H, (j + sx) mod W].
@compute @workgroup_size(WG)
fn jitter_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let j = e % p.w;
    let i = (e / p.w) % p.h;
    let nc = e / (p.w * p.h);
    let o = jitter_offsets(nc / p.c);
    var v = 0.0;
    if (p.mode == 1u) {
        v = dy[(nc * p.ho + (i + o.x) % p.h) * p.wo + (j + o.y) % p.w];
    } else if (i >= o.x && j >= o.y && i - o.x < p.ho && j - o.y < p.wo) {
        v = dy[(nc * p.ho + i - o.x) * p.wo + j - o.y];
    }
    store_dx(e, v);
}

// Reflected source index of padded coordinate q (in [0, size + 2 pad)), torch 'reflect'
// (edge not repeated; needs pad < size): returns size when the position is constant fill.
fn pad_source(q: u32, size: u32) -> u32 {
    let s = i32(q) - i32(p.pad);
    if (s >= 0 && s < i32(size)) { return u32(s); }
    if (p.mode == 0u) { return size; }
    if (s < 0) { return u32(-s); }
    return u32(2 * (i32(size) - 1) - s);
}

// y = pad(x): HO = H + 2 pad, WO = W + 2 pad; mode 0: constant bounds[c]; mode 1: reflect.
@compute @workgroup_size(WG)
fn pad_forward(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let j = e % p.wo;
    let i = (e / p.wo) % p.ho;
    let nc = e / (p.wo * p.ho);
    let si = pad_source(i, p.h);
    let sj = pad_source(j, p.w);
    if (si == p.h || sj == p.w) {
        y[e] = bounds[nc % p.c];
    } else {
        y[e] = x[(nc * p.h + si) * p.w + sj];
    }
}

// Padded coordinates whose source is s along an axis of `size`: the direct one, and under
// reflect its mirror images above (pad - s, for 1 <= s <= pad) and below
// (pad + 2(size-1) - s, for size-1-pad <= s <= size-2). Unused slots hold 0xffffffff.
fn pad_targets(s: u32, size: u32) -> vec3<u32> {
    var t = vec3<u32>(s + p.pad, 0xffffffffu, 0xffffffffu);
    if (p.mode == 1u) {
        if (s >= 1u && s <= p.pad) {
            t.y = p.pad - s;
        }
        if (s + 1u + p.pad >= size && s + 2u <= size) {
            t.z = p.pad + 2u * (size - 1u) - s;
        }
    }
    return t;
}

// The transpose of pad_forward, one thread per x element: the sum of dy over the padded
// positions that read it (1 for constant, up to 9 for reflect).
@compute @workgroup_size(WG)
fn pad_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let j = e % p.w;
    let i = (e / p.w) % p.h;
    let nc = e / (p.w * p.h);
    let ti = pad_targets(i, p.h);
    let tj = pad_targets(j, p.w);
    var v = 0.0;
    for (var a = 0u; a < 3u; a++) {
        if (ti[a] == 0xffffffffu) { continue; }
        for (var b = 0u; b < 3u; b++) {
            if (tj[b] == 0xffffffffu) { continue; }
            v += dy[(nc * p.ho + ti[a]) * p.wo + tj[b]];
        }
    }
    store_dx(e, v);
}

// Affine warp of image n: rotation θ, scale s (zoom about the centre), translation (ty, tx)
// pixels, from rand columns col..col+3 = (angle, scale, ty, tx), each lo + u (hi - lo).
// Output pixel centre q = (i + 0.5, j + 0.5) samples the input at continuous position
// src = R(-θ) (q - c_out) / s + c_in - t, c = (size / 2), i.e. index position src - 0.5,
// bilinearly with zeros outside the image.
struct Warp {
    cs: f32,  // cos θ / s
    sn: f32,  // sin θ / s
    ty: f32,
    tx: f32,
    s: f32,
    c: f32,   // cos θ
    si: f32,  // sin θ
}

fn warp_of(n: u32) -> Warp {
    let r = n * p.k + p.col;
    let th = p.angle_lo + rand[r] * (p.angle_hi - p.angle_lo);
    let s = p.scale_lo + rand[r + 1u] * (p.scale_hi - p.scale_lo);
    let ty = p.translate * (2.0 * rand[r + 2u] - 1.0);
    let tx = p.translate * (2.0 * rand[r + 3u] - 1.0);
    let c = cos(th);
    let si = sin(th);
    return Warp(c / s, si / s, ty, tx, s, c, si);
}

// Sample position (row, column) in input index coordinates of output pixel (i, j).
fn warp_sample(wp: Warp, i: u32, j: u32) -> vec2<f32> {
    let qy = f32(i) + 0.5 - 0.5 * f32(p.ho);
    let qx = f32(j) + 0.5 - 0.5 * f32(p.wo);
    // R(-θ) (qx, qy) / s with R(θ) = [[c, -s], [s, c]] acting on (x, y), y down
    let sx = wp.cs * qx + wp.sn * qy;
    let sy = wp.cs * qy - wp.sn * qx;
    return vec2<f32>(sy + 0.5 * f32(p.h) - wp.ty - 0.5, sx + 0.5 * f32(p.w) - wp.tx - 0.5);
}

@compute @workgroup_size(WG)
fn warp_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let j = e % p.wo;
    let i = (e / p.wo) % p.ho;
    let nc = e / (p.wo * p.ho);
    let wp = warp_of(nc / p.c);
    let sp = warp_sample(wp, i, j);
    let fy = floor(sp.x);
    let fx = floor(sp.y);
    let base = nc * p.h * p.w;
    var v = 0.0;
    for (var a = 0; a < 2; a++) {
        let yy = fy + f32(a);
        if (yy < 0.0 || yy >= f32(p.h)) { continue; }
        let wy = 1.0 - abs(sp.x - yy);
        for (var b = 0; b < 2; b++) {
            let xx = fx + f32(b);
            if (xx < 0.0 || xx >= f32(p.w)) { continue; }
            let wx = 1.0 - abs(sp.y - xx);
            v += wy * wx * x[base + u32(yy) * p.w + u32(xx)];
        }
    }
    y[e] = v;
}

// The transpose as a gather, one thread per x element (a, b): sums w * dy over the output
// pixels whose sample position lies within one pixel of (a, b), w the bilinear weight the
// forward gave (a, b) there. Those outputs lie in the image of the square (a-0.5, a+1.5) x
// (b-0.5, b+1.5) (continuous coordinates) under the forward map q = s R(θ) (src + t - c_in)
// + c_out; the thread scans that square's bounding box, widened by a pixel against rounding,
// and recomputes each sample position exactly as warp_forward does.
@compute @workgroup_size(WG)
fn warp_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= p.count) { return; }
    let b = e % p.w;
    let a = (e / p.w) % p.h;
    let nc = e / (p.w * p.h);
    let wp = warp_of(nc / p.c);
    // centre of the square relative to c_in, shifted by t, mapped forward
    let cy = f32(a) + 0.5 - 0.5 * f32(p.h) + wp.ty;
    let cx = f32(b) + 0.5 - 0.5 * f32(p.w) + wp.tx;
    let qx = wp.s * (wp.c * cx - wp.si * cy) + 0.5 * f32(p.wo);
    let qy = wp.s * (wp.si * cx + wp.c * cy) + 0.5 * f32(p.ho);
    // half-extent of the rotated, scaled square of half-side 1
    let r = wp.s * (abs(wp.c) + abs(wp.si)) + 1.0;
    let i0 = i32(max(ceil(qy - r - 0.5), 0.0));
    let i1 = i32(min(floor(qy + r - 0.5), f32(p.ho) - 1.0));
    let j0 = i32(max(ceil(qx - r - 0.5), 0.0));
    let j1 = i32(min(floor(qx + r - 0.5), f32(p.wo) - 1.0));
    let af = f32(a);
    let bf = f32(b);
    let obase = nc * p.ho * p.wo;
    var v = 0.0;
    for (var i = i0; i <= i1; i++) {
        for (var j = j0; j <= j1; j++) {
            let sp = warp_sample(wp, u32(i), u32(j));
            // the forward's corners are floor(sp) and floor(sp) + 1: (a, b) is one of them iff
            // floor(sp) in {a - 1, a}, which the weights below test exactly
            let fy = floor(sp.x);
            let fx = floor(sp.y);
            if ((fy == af || fy + 1.0 == af) && (fx == bf || fx + 1.0 == bf)) {
                let w = (1.0 - abs(sp.x - af)) * (1.0 - abs(sp.y - bf));
                v += w * dy[obase + u32(i) * p.wo + u32(j)];
            }
        }
    }
    store_dx(e, v);
}
