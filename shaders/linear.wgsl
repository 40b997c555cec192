// linear.wgsl: dense layer (torch.nn.Linear) forward and its backward to input, weight, bias.
// Layout: x [N, K] row-major (an NCHW input is viewed as [N, C*H*W], torch.flatten(x, 1)),
// weight [M, K] (PyTorch layout: one row per output), bias [M], y [N, M].
// Bindings: 0 params, 1 x, 2 w, 3 b, 4 y, 5 dy, 6 dx, 7 dw, 8 db; 9..12 are the same tensors
// seen as vec4 (x4, w4, dx4, dw4), used by the `_vec4` entry points when K % 4 == 0: on
// lavapipe a vec4 load costs about 2.4 ns against 1.1 ns per scalar, and every kernel here is
// bound by loading the weight.
// Work split:
//   * forward: a workgroup of LWG threads owns a 4x4 block (4 batch rows x 4 outputs) and
//     splits K across its threads, so a VGG classifier row (K = 25088) is shared by LWG
//     threads instead of being one thread's loop; each weight loaded is used for every batch
//     row of the block and each input value for 4 outputs. Partial sums meet in workgroup
//     memory;
//   * backward to input: one thread per (4 consecutive k, 4 batch rows), an M-long loop; on
//     GPUs, where a batch-1 VGG classifier gives that only K / 4 = 6272 threads (too few to
//     hide memory latency on a 132-SM chip), `_split` cuts M into `splits` ranges, each thread
//     summing one range into part4 [splits, N, K / 4], and `_reduce` adds the ranges in order
//     (deterministic, no atomics);
//   * backward to weight: one thread per (output m, 4 consecutive k), an N-long loop (N is a
//     batch, small); backward to bias: one thread per output.
// Row blocks: a weight too large for one storage binding (VGG16's classifier.0, 411 MB) is
// split into blocks of rows; each launch then covers outputs [off, off + M) of a y / dy whose
// rows are ld long.
// Rows or columns past the end of a block are clamped to the last valid one so that the inner
// loops stay branch-free; their duplicate results are dropped at the store.

struct LinearParams {
    n: u32,          // batch rows
    k: u32,          // input features
    m: u32,          // output features
    has_bias: u32,
    accumulate: u32,
    ld: u32,         // row stride of y and dy (M unless the weight is one row block of a larger layer)
    off: u32,        // column of y / dy where this weight's outputs start
    splits: u32,     // backward to input, split: ranges the M reduction is cut into
}

@group(0) @binding(0) var<uniform> p: LinearParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dw: array<f32>;
@group(0) @binding(8) var<storage, read_write> db: array<f32>;
@group(0) @binding(9) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read_write> dw4: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read_write> part4: array<vec4<f32>>;

// Threads of a forward workgroup. 64 rather than 256: each thread then runs a longer K loop
// before the (barrier-bound) reduction, which matters for K = 4096 layers.
const LWG: u32 = 64u;

// 16 partial sums (4 batch rows x 4 outputs) per thread, then 4 per output.
var<workgroup> part: array<f32, 1024>;   // 16 * LWG
var<workgroup> part2: array<f32, 64>;    // LWG

// Block (m0, n0) of a forward workgroup; the grid is folded like flat_index's.
fn forward_block(wg: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let mblocks = (p.m + 3u) / 4u;
    let nblocks = (p.n + 3u) / 4u;
    let wid = wg.x + wg.y * nwg.x;
    return vec3<u32>((wid % mblocks) * 4u, (wid / mblocks) * 4u, u32(wid < mblocks * nblocks));
}

// Sums each of the 16 accumulators over the workgroup and writes y (+ bias).
// a_r[j] is batch row n0 + r, output m0 + j.
fn finish_forward(lid: u32, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
                  m0: u32, n0: u32) {
    for (var j = 0u; j < 4u; j++) {
        part[(0u + j) * LWG + lid] = a0[j];
        part[(4u + j) * LWG + lid] = a1[j];
        part[(8u + j) * LWG + lid] = a2[j];
        part[(12u + j) * LWG + lid] = a3[j];
    }
    workgroupBarrier();
    // Two levels (LWG = 64 = 16 outputs x 4 slices of 16) instead of a 6-step tree: barriers
    // are the expensive part on lavapipe.
    let o = lid / 4u;
    let base = o * LWG + (lid % 4u) * 16u;
    var s = 0.0;
    for (var i = 0u; i < 16u; i++) {
        s += part[base + i];
    }
    part2[lid] = s;
    workgroupBarrier();
    if (lid < 16u) {
        let total = (part2[lid * 4u] + part2[lid * 4u + 1u])
                  + (part2[lid * 4u + 2u] + part2[lid * 4u + 3u]);
        let n = n0 + lid / 4u;
        let m = m0 + lid % 4u;
        if (n < p.n && m < p.m) {
            var v = total;
            if (p.has_bias != 0u) {
                v += b[m];
            }
            y[n * p.ld + p.off + m] = v;
        }
    }
}

// y = x W^T + b, any K.
@compute @workgroup_size(LWG)
fn linear_forward(@builtin(workgroup_id) wg: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let blk = forward_block(wg, nwg);
    if (blk.z == 0u) { return; }
    let m0 = blk.x;
    let n0 = blk.y;
    let w0 = min(m0, p.m - 1u) * p.k;
    let w1 = min(m0 + 1u, p.m - 1u) * p.k;
    let w2 = min(m0 + 2u, p.m - 1u) * p.k;
    let w3 = min(m0 + 3u, p.m - 1u) * p.k;
    let x0 = n0 * p.k;
    let x1 = min(n0 + 1u, p.n - 1u) * p.k;
    let x2 = min(n0 + 2u, p.n - 1u) * p.k;
    let x3 = min(n0 + 3u, p.n - 1u) * p.k;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    if (p.n - n0 == 1u) {
        // A single batch row (the usual visualization case): skip three duplicate x loads.
        for (var k = lid; k < p.k; k += LWG) {
            let wv = vec4<f32>(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
            a0 += x[x0 + k] * wv;
        }
    } else {
        for (var k = lid; k < p.k; k += LWG) {
            let wv = vec4<f32>(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
            a0 += x[x0 + k] * wv;
            a1 += x[x1 + k] * wv;
            a2 += x[x2 + k] * wv;
            a3 += x[x3 + k] * wv;
        }
    }
    finish_forward(lid, a0, a1, a2, a3, m0, n0);
}

fn dots(v: vec4<f32>, u0: vec4<f32>, u1: vec4<f32>, u2: vec4<f32>, u3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(v, u0), dot(v, u1), dot(v, u2), dot(v, u3));
}

// y = x W^T + b with K % 4 == 0: x and W read as vec4.
@compute @workgroup_size(LWG)
fn linear_forward_vec4(@builtin(workgroup_id) wg: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let blk = forward_block(wg, nwg);
    if (blk.z == 0u) { return; }
    let m0 = blk.x;
    let n0 = blk.y;
    let k4 = p.k / 4u;
    let w0 = min(m0, p.m - 1u) * k4;
    let w1 = min(m0 + 1u, p.m - 1u) * k4;
    let w2 = min(m0 + 2u, p.m - 1u) * k4;
    let w3 = min(m0 + 3u, p.m - 1u) * k4;
    let x0 = n0 * k4;
    let x1 = min(n0 + 1u, p.n - 1u) * k4;
    let x2 = min(n0 + 2u, p.n - 1u) * k4;
    let x3 = min(n0 + 3u, p.n - 1u) * k4;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    if (p.n - n0 == 1u) {
        for (var q = lid; q < k4; q += LWG) {
            a0 += dots(x4[x0 + q], w4[w0 + q], w4[w1 + q], w4[w2 + q], w4[w3 + q]);
        }
    } else {
        for (var q = lid; q < k4; q += LWG) {
            let u0 = w4[w0 + q];
            let u1 = w4[w1 + q];
            let u2 = w4[w2 + q];
            let u3 = w4[w3 + q];
            a0 += dots(x4[x0 + q], u0, u1, u2, u3);
            a1 += dots(x4[x1 + q], u0, u1, u2, u3);
            a2 += dots(x4[x2 + q], u0, u1, u2, u3);
            a3 += dots(x4[x3 + q], u0, u1, u2, u3);
        }
    }
    finish_forward(lid, a0, a1, a2, a3, m0, n0);
}

// Thread t of a backward-to-input launch: (k0, n0) of its 4x4 block of dx, or k0 = K when idle.
fn input_block(t: u32) -> vec2<u32> {
    let kq = (p.k + 3u) / 4u;
    let nblocks = (p.n + 3u) / 4u;
    if (t >= kq * nblocks) { return vec2<u32>(p.k, 0u); }
    return vec2<u32>((t % kq) * 4u, (t / kq) * 4u);
}

fn store_dx(i: u32, g: f32) {
    if (p.accumulate != 0u) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
    }
}

// Where batch rows n0 .. n0 + 3 of this weight's dy columns start (rows past N clamped to the
// last, their results dropped at the store).
fn dy_rows(n0: u32) -> vec4<u32> {
    let n = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    return n * p.ld + vec4<u32>(p.off);
}

// Writes row n0 + r of a dx block (4 consecutive k from k0), dropping columns past K.
fn store_dx_row(r: u32, n0: u32, k0: u32, v: vec4<f32>) {
    let n = n0 + r;
    if (n >= p.n) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (k0 + j < p.k) {
            store_dx(n * p.k + k0 + j, v[j]);
        }
    }
}

// dx = dy W, any K: dx[n, k] = sum_m dy[n, m] w[m, k].
@compute @workgroup_size(WG)
fn linear_backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = input_block(flat_index(gid, nwg));
    let k0 = blk.x;
    let n0 = blk.y;
    if (k0 >= p.k) { return; }
    let c1 = min(k0 + 1u, p.k - 1u);
    let c2 = min(k0 + 2u, p.k - 1u);
    let c3 = min(k0 + 3u, p.k - 1u);
    let rows = dy_rows(n0);
    let r0 = rows.x;
    let r1 = rows.y;
    let r2 = rows.z;
    let r3 = rows.w;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    if (p.n - n0 == 1u) {
        for (var m = 0u; m < p.m; m++) {
            let base = m * p.k;
            let wv = vec4<f32>(w[base + k0], w[base + c1], w[base + c2], w[base + c3]);
            a0 += dy[r0 + m] * wv;
        }
    } else {
        for (var m = 0u; m < p.m; m++) {
            let base = m * p.k;
            let wv = vec4<f32>(w[base + k0], w[base + c1], w[base + c2], w[base + c3]);
            a0 += dy[r0 + m] * wv;
            a1 += dy[r1 + m] * wv;
            a2 += dy[r2 + m] * wv;
            a3 += dy[r3 + m] * wv;
        }
    }
    store_dx_row(0u, n0, k0, a0);
    store_dx_row(1u, n0, k0, a1);
    store_dx_row(2u, n0, k0, a2);
    store_dx_row(3u, n0, k0, a3);
}

fn store_dx4(n: u32, q: u32, v: vec4<f32>) {
    if (n >= p.n) { return; }
    let i = n * (p.k / 4u) + q;
    if (p.accumulate != 0u) {
        dx4[i] = dx4[i] + v;
    } else {
        dx4[i] = v;
    }
}

// dx = dy W with K % 4 == 0: W read and dx written as vec4.
@compute @workgroup_size(WG)
fn linear_backward_input_vec4(@builtin(global_invocation_id) gid: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = input_block(flat_index(gid, nwg));
    let k0 = blk.x;
    let n0 = blk.y;
    if (k0 >= p.k) { return; }
    let k4 = p.k / 4u;
    let q = k0 / 4u;
    let rows = dy_rows(n0);
    let r0 = rows.x;
    let r1 = rows.y;
    let r2 = rows.z;
    let r3 = rows.w;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    if (p.n - n0 == 1u) {
        for (var m = 0u; m < p.m; m++) {
            a0 += dy[r0 + m] * w4[m * k4 + q];
        }
    } else {
        for (var m = 0u; m < p.m; m++) {
            let wv = w4[m * k4 + q];
            a0 += dy[r0 + m] * wv;
            a1 += dy[r1 + m] * wv;
            a2 += dy[r2 + m] * wv;
            a3 += dy[r3 + m] * wv;
        }
    }
    store_dx4(n0, q, a0);
    store_dx4(n0 + 1u, q, a1);
    store_dx4(n0 + 2u, q, a2);
    store_dx4(n0 + 3u, q, a3);
}

// linear_backward_input_vec4 over rows [s * chunk, (s + 1) * chunk) of W for range s: partial
// sums into part4. Threads: (K / 4) x ceil(N / 4) x splits.
@compute @workgroup_size(WG)
fn linear_backward_input_split_vec4(@builtin(global_invocation_id) gid: vec3<u32>,
                                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let k4 = p.k / 4u;
    let per_split = k4 * ((p.n + 3u) / 4u);
    let s = t / per_split;
    if (s >= p.splits) { return; }
    let blk = input_block(t % per_split);
    let q = blk.x / 4u;
    let n0 = blk.y;
    let chunk = (p.m + p.splits - 1u) / p.splits;
    let m_begin = s * chunk;
    let m_end = min(p.m, m_begin + chunk);
    let rows = dy_rows(n0);
    let r0 = rows.x;
    let r1 = rows.y;
    let r2 = rows.z;
    let r3 = rows.w;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var m = m_begin; m < m_end; m++) {
        let wv = w4[m * k4 + q];
        a0 += dy[r0 + m] * wv;
        a1 += dy[r1 + m] * wv;
        a2 += dy[r2 + m] * wv;
        a3 += dy[r3 + m] * wv;
    }
    // Spelled out, not a loop over an array of the four: an indexed private array can live in
    // local memory on NVIDIA (benches/RESULTS.md, the gemm kernels).
    let at = (s * p.n + n0) * k4 + q;
    part4[at] = a0;
    if (n0 + 1u < p.n) { part4[at + k4] = a1; }
    if (n0 + 2u < p.n) { part4[at + 2u * k4] = a2; }
    if (n0 + 3u < p.n) { part4[at + 3u * k4] = a3; }
}

// dx (+)= the sum over ranges of part4, in range order: one thread per (n, 4 consecutive k).
@compute @workgroup_size(WG)
fn linear_backward_input_reduce_vec4(@builtin(global_invocation_id) gid: vec3<u32>,
                                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let k4 = p.k / 4u;
    if (t >= p.n * k4) { return; }
    var v = vec4<f32>(0.0);
    for (var s = 0u; s < p.splits; s++) {
        v += part4[s * p.n * k4 + t];
    }
    store_dx4(t / k4, t % k4, v);
}

// dW = dy^T x, any K: one thread per (m, 4 consecutive k), loop over the batch.
@compute @workgroup_size(WG)
fn linear_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let kq = (p.k + 3u) / 4u;
    if (t >= p.m * kq) { return; }
    let m = t / kq;
    let k0 = (t % kq) * 4u;
    let c1 = min(k0 + 1u, p.k - 1u);
    let c2 = min(k0 + 2u, p.k - 1u);
    let c3 = min(k0 + 3u, p.k - 1u);
    var a = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let base = n * p.k;
        a += dy[n * p.ld + p.off + m] * vec4<f32>(x[base + k0], x[base + c1], x[base + c2], x[base + c3]);
    }
    for (var j = 0u; j < 4u; j++) {
        if (k0 + j < p.k) {
            let i = m * p.k + k0 + j;
            if (p.accumulate != 0u) {
                dw[i] = dw[i] + a[j];
            } else {
                dw[i] = a[j];
            }
        }
    }
}

// dW = dy^T x with K % 4 == 0: x read and dW written as vec4.
@compute @workgroup_size(WG)
fn linear_backward_weight_vec4(@builtin(global_invocation_id) gid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let k4 = p.k / 4u;
    if (t >= p.m * k4) { return; }
    let m = t / k4;
    let q = t % k4;
    var a = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        a += dy[n * p.ld + p.off + m] * x4[n * k4 + q];
    }
    if (p.accumulate != 0u) {
        dw4[t] = dw4[t] + a;
    } else {
        dw4[t] = a;
    }
}

// db = sum over the batch of dy: one thread per output.
@compute @workgroup_size(WG)
fn linear_backward_bias(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let m = flat_index(gid, nwg);
    if (m >= p.m) { return; }
    var s = 0.0;
    for (var n = 0u; n < p.n; n++) {
        s += dy[n * p.ld + p.off + m];
    }
    if (p.accumulate != 0u) {
        db[m] = db[m] + s;
    } else {
        db[m] = s;
    }
}
