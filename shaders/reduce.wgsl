// reduce.wgsl: per-(n, c) spatial reductions of an NCHW tensor over its H*W plane (sum, mean,
// max with argmax) and their backward passes.
// Layout: x, dx [N, C, H, W] flat; y, argmax, dy [N, C] flat, plane index q = n*C + c; the
// argmax is the flat offset h*W + w inside the plane.
// Forward: one workgroup of RWG threads per plane (grid folded into 2-D past 65535 planes).
// Thread t folds elements t, t+RWG, t+2*RWG, ... in order, then a workgroup-memory tree combines
// the RWG partials pairwise in a fixed pattern, so every result is bit-reproducible run to run.
// Backward: one thread per dx element gathers its dy (and argmax): no atomics, deterministic.
// Bindings: 0 params, 1 x, 2 y, 3 argmax (u32), 4 dy, 5 dx.

struct ReduceParams {
    planes: u32,      // N*C
    plane_size: u32,  // H*W
    numel: u32,       // N*C*H*W, for the backward grid
    accumulate: u32,
    divisor: f32,     // 1 for sum, H*W for mean
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

// Threads per plane: enough to keep a 224x224 plane at ~200 loads per thread, few enough that
// the log2(RWG) barriers of the tree (expensive on lavapipe) stay at eight.
const RWG: u32 = 256u;

var<workgroup> partial: array<f32, RWG>;
var<workgroup> partial_idx: array<u32, RWG>;

fn plane_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// NaN test on the bits: WGSL lets compilers assume floats are never NaN, so `v != v` could be
// folded to false; integer compares cannot.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Does candidate (a, ia) beat the incumbent (b, ib)? NaN beats any number (NaN propagates, as
// in torch.amax); among equals, including two NaNs, the lower index wins.
fn beats(a: f32, ia: u32, b: f32, ib: u32) -> bool {
    let an = is_nan(a);
    let bn = is_nan(b);
    if (an != bn) { return an; }
    if (!an && a != b) { return a > b; }
    return ia < ib;
}

// y[q] = sum(x[q, :]) / divisor
@compute @workgroup_size(RWG)
fn spatial_sum_forward(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) t: u32) {
    let q = plane_of(wid, nwg);
    if (q >= p.planes) { return; } // uniform: the whole workgroup leaves together
    let base = q * p.plane_size;
    var acc = 0.0;
    for (var i = t; i < p.plane_size; i += RWG) {
        acc += x[base + i];
    }
    partial[t] = acc;
    workgroupBarrier();
    for (var s = RWG / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            partial[t] = partial[t] + partial[t + s];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        y[q] = partial[0] / p.divisor;
    }
}

// y[q] = max(x[q, :]), argmax[q] = first offset holding it (first NaN if any)
@compute @workgroup_size(RWG)
fn spatial_max_forward(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) t: u32) {
    let q = plane_of(wid, nwg);
    if (q >= p.planes) { return; }
    let base = q * p.plane_size;
    // Threads past the plane's end hold an index that loses to every real element.
    var best = 0.0;
    var best_i = 0xffffffffu;
    if (t < p.plane_size) {
        best = x[base + t];
        best_i = t;
    }
    for (var i = t + RWG; i < p.plane_size; i += RWG) {
        let v = x[base + i];
        if (beats(v, i, best, best_i)) {
            best = v;
            best_i = i;
        }
    }
    partial[t] = best;
    partial_idx[t] = best_i;
    workgroupBarrier();
    for (var s = RWG / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            let oi = partial_idx[t + s];
            if (oi != 0xffffffffu && beats(partial[t + s], oi, partial[t], partial_idx[t])) {
                partial[t] = partial[t + s];
                partial_idx[t] = oi;
            }
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        y[q] = partial[0];
        argmax[q] = partial_idx[0];
    }
}

fn store_dx(i: u32, g: f32) {
    if (p.accumulate != 0u) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
    }
}

// dx[q, i] = dy[q] / divisor: every element of the plane fed the sum equally.
@compute @workgroup_size(WG)
fn spatial_sum_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.numel) { return; }
    store_dx(i, dy[i / p.plane_size] / p.divisor);
}

// dx[q, i] = dy[q] where i is the saved argmax, else 0 (PyTorch's max-reduction rule: the
// gradient goes to the one selected element, not split among ties).
@compute @workgroup_size(WG)
fn spatial_max_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.numel) { return; }
    let q = i / p.plane_size;
    let offset = i - q * p.plane_size;
    store_dx(i, select(0.0, dy[q], argmax[q] == offset));
}
