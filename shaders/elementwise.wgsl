// elementwise.wgsl: residual add, affine/axpy, clamp, and inference-mode batch norm as a
// per-channel affine, with their backward rules.
// Layout: any shape, flat, one thread per element; the batch-norm kernels read the channel of
// element i of an NCHW tensor as (i / inner) % channels, inner = H*W (1 for [N, C]).
// Bindings: 0 params, 1 a, 2 b (the two addends), 3 y (output), 4 x (forward input), 5 dy
// (upstream gradient), 6 dx (gradient to the input), 7 scale, 8 shift (per channel),
// 9 dscale, 10 dshift (their gradients); for the add _windows kernels, 11..17 and 18..24 seven
// 64 KiB windows of the first operand (a, or dy) and of b as uniform buffers, 25 y and 26 dx as
// vec4. Those kernels are for lavapipe, where a storage load costs a loop over the lanes but a
// uniform-buffer load is one vectorized gather (see relu.wgsl); one thread per vec4 of a
// window, p.windows (up to 7) windows from vec4 p.base; the scalar add kernels take the tail
// from element p.base.
// Exception to one-thread-per-element: batchnorm_affine_backward_params runs one workgroup per
// channel and reduces over N, H, W in workgroup memory.

struct EwParams {
    n: u32,          // elements
    accumulate: u32,
    channels: u32,   // batch norm: C
    inner: u32,      // batch norm: H*W
    alpha: f32,
    beta: f32,
    lo: f32,
    hi: f32,
    batch: u32,      // batch norm: N
    base: u32,       // add kernels: first element (scalar) or vec4 (_windows)
    windows: u32,    // add _windows kernels: windows bound
    _pad0: u32,
}

struct Window {
    v: array<vec4<f32>, 4096>,
}

@group(0) @binding(0) var<uniform> p: EwParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read> scale: array<f32>;
@group(0) @binding(8) var<storage, read> shift: array<f32>;
@group(0) @binding(9) var<storage, read_write> dscale: array<f32>;
@group(0) @binding(10) var<storage, read_write> dshift: array<f32>;
@group(0) @binding(11) var<uniform> aw0: Window;
@group(0) @binding(12) var<uniform> aw1: Window;
@group(0) @binding(13) var<uniform> aw2: Window;
@group(0) @binding(14) var<uniform> aw3: Window;
@group(0) @binding(15) var<uniform> aw4: Window;
@group(0) @binding(16) var<uniform> aw5: Window;
@group(0) @binding(17) var<uniform> aw6: Window;
@group(0) @binding(18) var<uniform> bw0: Window;
@group(0) @binding(19) var<uniform> bw1: Window;
@group(0) @binding(20) var<uniform> bw2: Window;
@group(0) @binding(21) var<uniform> bw3: Window;
@group(0) @binding(22) var<uniform> bw4: Window;
@group(0) @binding(23) var<uniform> bw5: Window;
@group(0) @binding(24) var<uniform> bw6: Window;
@group(0) @binding(25) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(26) var<storage, read_write> dx4: array<vec4<f32>>;

fn store_dx(i: u32, g: f32) {
    if (p.accumulate != 0u) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
    }
}

// y = a + b (residual connection).
@compute @workgroup_size(WG)
fn add_forward(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg) + p.base;
    if (i >= p.n) { return; }
    y[i] = a[i] + b[i];
}

// The gradient of y = a + b to either addend is dy: copy it, or add it where the addend feeds
// several consumers.
@compute @workgroup_size(WG)
fn add_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg) + p.base;
    if (i >= p.n) { return; }
    store_dx(i, dy[i]);
}

// y = alpha * x + beta. Serves scale (beta = 0), add-scalar (alpha = 1) and the backward of
// both (dx = alpha * dy).
@compute @workgroup_size(WG)
fn affine_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = p.alpha * x[i] + p.beta;
}

// y += alpha * x (BLAS axpy).
@compute @workgroup_size(WG)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = y[i] + p.alpha * x[i];
}

// y = min(max(x, lo), hi), torch.clamp's order (all hi when lo > hi); WGSL's clamp() leaves
// lo > hi unspecified.
@compute @workgroup_size(WG)
fn clamp_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = min(max(x[i], p.lo), p.hi);
}

// torch.clamp's backward: dy passes where lo <= x <= hi (bounds included), 0 elsewhere.
@compute @workgroup_size(WG)
fn clamp_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let v = x[i];
    store_dx(i, select(0.0, dy[i], v >= p.lo && v <= p.hi));
}

fn channel_of(i: u32) -> u32 {
    return (i / p.inner) % p.channels;
}

// Inference-mode batch norm folded to y = x * scale[c] + shift[c].
@compute @workgroup_size(WG)
fn batchnorm_affine_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let c = channel_of(i);
    y[i] = x[i] * scale[c] + shift[c];
}

// dx = dy * scale[c].
@compute @workgroup_size(WG)
fn batchnorm_affine_backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    store_dx(i, dy[i] * scale[channel_of(i)]);
}

var<workgroup> red_s: array<f32, 256>;   // WG
var<workgroup> red_t: array<f32, 256>;

// dscale[c] = sum over n, h, w of dy * x; dshift[c] = sum of dy. One workgroup per channel
// (the grid folded like flat_index's), its threads striding over the N * H*W elements.
@compute @workgroup_size(WG)
fn batchnorm_affine_backward_params(@builtin(workgroup_id) wg: vec3<u32>,
                                    @builtin(num_workgroups) nwg: vec3<u32>,
                                    @builtin(local_invocation_index) lid: u32) {
    let c = wg.x + wg.y * nwg.x;
    if (c >= p.channels) { return; }
    let total = p.batch * p.inner;
    // Walk j = lid, lid + WG, ... as (n, h*w) without a division per step: WG = q * inner + r.
    let q = WG / p.inner;
    let r = WG % p.inner;
    var n = lid / p.inner;
    var s = lid % p.inner;
    var gs = 0.0;
    var gt = 0.0;
    for (var j = lid; j < total; j += WG) {
        let i = (n * p.channels + c) * p.inner + s;
        let g = dy[i];
        gs += g * x[i];
        gt += g;
        n += q;
        s += r;
        if (s >= p.inner) {
            s -= p.inner;
            n += 1u;
        }
    }
    red_s[lid] = gs;
    red_t[lid] = gt;
    workgroupBarrier();
    // Two levels (16 x 16) rather than an 8-step tree: barriers are costly on lavapipe.
    if (lid < 16u) {
        var ss = 0.0;
        var tt = 0.0;
        for (var k = 0u; k < 16u; k++) {
            ss += red_s[lid * 16u + k];
            tt += red_t[lid * 16u + k];
        }
        red_s[lid * 16u] = ss;
        red_t[lid * 16u] = tt;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var ss = 0.0;
        var tt = 0.0;
        for (var k = 0u; k < 16u; k++) {
            ss += red_s[k * 16u];
            tt += red_t[k * 16u];
        }
        if (p.accumulate != 0u) {
            dscale[c] = dscale[c] + ss;
            dshift[c] = dshift[c] + tt;
        } else {
            dscale[c] = ss;
            dshift[c] = tt;
        }
    }
}

// ---- add through uniform windows (see the header). Window k of a launch holds vec4
// p.base + 4096 k + i at index i; windows k >= p.windows are bound but not stored.

fn add_win(k: u32, i: u32, u: vec4<f32>, v: vec4<f32>) {
    if (k < p.windows) { y4[p.base + k * 4096u + i] = u + v; }
}

@compute @workgroup_size(WG)
fn add_forward_windows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    add_win(0u, i, aw0.v[i], bw0.v[i]);
    add_win(1u, i, aw1.v[i], bw1.v[i]);
    add_win(2u, i, aw2.v[i], bw2.v[i]);
    add_win(3u, i, aw3.v[i], bw3.v[i]);
    add_win(4u, i, aw4.v[i], bw4.v[i]);
    add_win(5u, i, aw5.v[i], bw5.v[i]);
    add_win(6u, i, aw6.v[i], bw6.v[i]);
}

// dx = dy (the first operand's windows hold dy), and dx += dy in the _acc entry point: a
// constant per entry point, since lavapipe runs both sides of a branch.
fn copy_win(k: u32, i: u32, g: vec4<f32>, add: bool) {
    if (k < p.windows) {
        let j = p.base + k * 4096u + i;
        if (add) {
            dx4[j] = dx4[j] + g;
        } else {
            dx4[j] = g;
        }
    }
}

@compute @workgroup_size(WG)
fn add_backward_windows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    copy_win(0u, i, aw0.v[i], false);
    copy_win(1u, i, aw1.v[i], false);
    copy_win(2u, i, aw2.v[i], false);
    copy_win(3u, i, aw3.v[i], false);
    copy_win(4u, i, aw4.v[i], false);
    copy_win(5u, i, aw5.v[i], false);
    copy_win(6u, i, aw6.v[i], false);
}

@compute @workgroup_size(WG)
fn add_backward_acc_windows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    copy_win(0u, i, aw0.v[i], true);
    copy_win(1u, i, aw1.v[i], true);
    copy_win(2u, i, aw2.v[i], true);
    copy_win(3u, i, aw3.v[i], true);
    copy_win(4u, i, aw4.v[i], true);
    copy_win(5u, i, aw5.v[i], true);
    copy_win(6u, i, aw6.v[i], true);
}
