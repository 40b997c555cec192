// softmax.wgsl: softmax and log-softmax over the last axis, forward and backward.
// Layout: rows of K contiguous values ([N, K], or any shape with K its last dimension).
// One workgroup of WG threads per row (the grid folded like flat_index's); each thread strides
// over the row by WG and the row max / sums meet in workgroup memory.
// Bindings: 0 params, 1 x (logits), 2 y (forward output), 3 ys (saved forward output, read by
// the backward), 4 dy (upstream gradient), 5 dx (gradient to the logits).
// Numerics: exp(x - max) never overflows, and the largest term is exactly 1 so the sum is
// >= 1 (log-softmax never takes log of 0 unless the row holds NaN or only -inf).

struct SoftmaxParams {
    rows: u32,
    k: u32,
    accumulate: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> ys: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

var<workgroup> red: array<f32, 256>;   // WG
var<workgroup> red2: array<f32, 16>;

// Sum (is_max = false) or max (true) of v over the workgroup, returned to every thread.
// Two levels (16 x 16) rather than an 8-step tree: barriers are costly on lavapipe.
fn wg_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    if (lid < 16u) {
        var s = red[lid * 16u];
        for (var i = 1u; i < 16u; i++) {
            let t = red[lid * 16u + i];
            s = select(s + t, max(s, t), is_max);
        }
        red2[lid] = s;
    }
    workgroupBarrier();
    var r = red2[0];
    for (var i = 1u; i < 16u; i++) {
        r = select(r + red2[i], max(r, red2[i]), is_max);
    }
    // red/red2 are rewritten by the next reduction.
    workgroupBarrier();
    return r;
}

// Row index of this workgroup, or rows when idle.
fn row_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return min(wg.x + wg.y * nwg.x, p.rows);
}

// Max over the row and sum of exp(x - max): what both forwards need.
fn row_stats(base: u32, lid: u32) -> vec2<f32> {
    var mx = -3.402823466e38;
    for (var i = lid; i < p.k; i += WG) {
        mx = max(mx, x[base + i]);
    }
    mx = wg_reduce(mx, lid, true);
    var s = 0.0;
    for (var i = lid; i < p.k; i += WG) {
        s += exp(x[base + i] - mx);
    }
    s = wg_reduce(s, lid, false);
    return vec2<f32>(mx, s);
}

// y = exp(x - max) / sum exp(x - max).
@compute @workgroup_size(WG)
fn softmax_forward(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wg, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.k;
    let st = row_stats(base, lid);
    for (var i = lid; i < p.k; i += WG) {
        y[base + i] = exp(x[base + i] - st.x) / st.y;
    }
}

// y = x - max - log(sum exp(x - max)).
@compute @workgroup_size(WG)
fn log_softmax_forward(@builtin(workgroup_id) wg: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wg, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.k;
    let st = row_stats(base, lid);
    let lse = log(st.y);
    for (var i = lid; i < p.k; i += WG) {
        y[base + i] = (x[base + i] - st.x) - lse;
    }
}

fn store_dx(i: u32, g: f32) {
    if (p.accumulate != 0u) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
    }
}

// From the saved output y: dx = y * (dy - sum(dy * y)).
@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wg: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wg, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.k;
    var s = 0.0;
    for (var i = lid; i < p.k; i += WG) {
        s += dy[base + i] * ys[base + i];
    }
    s = wg_reduce(s, lid, false);
    for (var i = lid; i < p.k; i += WG) {
        store_dx(base + i, ys[base + i] * (dy[base + i] - s));
    }
}

// From the saved output y = log softmax(x): dx = dy - exp(y) * sum(dy).
@compute @workgroup_size(WG)
fn log_softmax_backward(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wg, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.k;
    var s = 0.0;
    for (var i = lid; i < p.k; i += WG) {
        s += dy[base + i];
    }
    s = wg_reduce(s, lid, false);
    for (var i = lid; i < p.k; i += WG) {
        store_dx(base + i, dy[base + i] - exp(ys[base + i]) * s);
    }
}
