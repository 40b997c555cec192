// relu.wgsl: ReLU forward and its backward rules, side by side.
// Layout: any shape, flat; the redirected rule reads it as [batch, inner]. One thread per
// element (per image for the flag reset).
// Bindings: 0 params, 1 x (forward input, saved), 2 y (forward output), 3 dy (upstream
// gradient), 4 dx (gradient to the input), 5 flags (one u32 per image, redirected rule);
// 6..9 the same x, y, dy, dx as vec4 for the _vec4 kernels (one thread per 4 elements, for
// tensors of 4k elements: half the time per element on lavapipe, whose loads and stores cost
// per lane and instruction rather than per byte; from vec4 p.base on); 10..16 and 17..23
// seven 64 KiB windows of x and of dy as uniform buffers for the _windows kernels.
// The _windows kernels are for lavapipe, where a storage load costs a loop over the lanes
// (about 4 ns per lane and value) but a uniform-buffer load is one vectorized gather and a
// store is cheap: ReLU backward was 9 ns per element there, two loads and a store. One thread
// per vec4 of a window; a launch covers p.windows (up to 7) windows from vec4 p.base.

struct ReluParams {
    n: u32,
    accumulate: u32,
    inner: u32,
    batch: u32,
    base: u32,       // _vec4 and _windows kernels: first vec4
    windows: u32,    // _windows kernels: windows bound
    _p0: u32,
    _p1: u32,
}

struct Window {
    v: array<vec4<f32>, 4096>,
}

@group(0) @binding(0) var<uniform> p: ReluParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(10) var<uniform> xw0: Window;
@group(0) @binding(11) var<uniform> xw1: Window;
@group(0) @binding(12) var<uniform> xw2: Window;
@group(0) @binding(13) var<uniform> xw3: Window;
@group(0) @binding(14) var<uniform> xw4: Window;
@group(0) @binding(15) var<uniform> xw5: Window;
@group(0) @binding(16) var<uniform> xw6: Window;
@group(0) @binding(17) var<uniform> gw0: Window;
@group(0) @binding(18) var<uniform> gw1: Window;
@group(0) @binding(19) var<uniform> gw2: Window;
@group(0) @binding(20) var<uniform> gw3: Window;
@group(0) @binding(21) var<uniform> gw4: Window;
@group(0) @binding(22) var<uniform> gw5: Window;
@group(0) @binding(23) var<uniform> gw6: Window;

fn store_dx(i: u32, g: f32) {
    if (p.accumulate != 0u) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
    }
}

fn store_dx4(i: u32, g: vec4<f32>) {
    if (p.accumulate != 0u) {
        dx4[i] = dx4[i] + g;
    } else {
        dx4[i] = g;
    }
}

// y = max(x, 0)
@compute @workgroup_size(WG)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = max(x[i], 0.0);
}

// The same, 4 elements per thread (p.n counts vec4).
@compute @workgroup_size(WG)
fn relu_forward_vec4(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg) + p.base;
    if (i >= p.n) { return; }
    y4[i] = max(x4[i], vec4<f32>(0.0));
}

// Standard, guided and deconvnet rules (below), 4 elements per thread.
@compute @workgroup_size(WG)
fn relu_backward_vec4(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg) + p.base;
    if (i >= p.n) { return; }
    store_dx4(i, select(vec4<f32>(0.0), dy4[i], x4[i] > vec4<f32>(0.0)));
}

@compute @workgroup_size(WG)
fn relu_backward_guided_vec4(@builtin(global_invocation_id) gid: vec3<u32>,
                             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg) + p.base;
    if (i >= p.n) { return; }
    let g = dy4[i];
    let zero = vec4<f32>(0.0);
    store_dx4(i, select(zero, g, (x4[i] > zero) & (g > zero)));
}

@compute @workgroup_size(WG)
fn relu_backward_deconv_vec4(@builtin(global_invocation_id) gid: vec3<u32>,
                             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg) + p.base;
    if (i >= p.n) { return; }
    store_dx4(i, max(dy4[i], vec4<f32>(0.0)));
}

// Standard rule: dx = dy where x > 0 (PyTorch's threshold_backward: 0 at x == 0).
@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    store_dx(i, select(0.0, dy[i], x[i] > 0.0));
}

// Guided backprop (Springenberg et al. 2015): pass only where the input was positive AND the
// upstream gradient is positive.
@compute @workgroup_size(WG)
fn relu_backward_guided(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let g = dy[i];
    store_dx(i, select(0.0, g, x[i] > 0.0 && g > 0.0));
}

// Deconvnet (Zeiler & Fergus 2014): rectify the upstream gradient, ignore the forward input.
@compute @workgroup_size(WG)
fn relu_backward_deconv(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    store_dx(i, max(dy[i], 0.0));
}

// Redirected ReLU gradient (Lucid's `redirected_relu_grad`, for activation maximization): an
// image whose true ReLU gradient is zero everywhere (a dead unit: nothing would ever move) gets
// the upstream gradient instead, except where the input is negative and descent would push it
// lower still. Three launches: reset the per-image flags, mark images with a nonzero true
// gradient, then select per image.
@compute @workgroup_size(WG)
fn relu_redirect_reset(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.batch) { return; }
    atomicStore(&flags[i], 0u);
}

@compute @workgroup_size(WG)
fn relu_redirect_mark(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    if (x[i] > 0.0 && dy[i] != 0.0) {
        atomicStore(&flags[i / p.inner], 1u);
    }
}

@compute @workgroup_size(WG)
fn relu_backward_redirected(@builtin(global_invocation_id) gid: vec3<u32>,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let g = dy[i];
    let v = x[i];
    var r: f32;
    if (atomicLoad(&flags[i / p.inner]) != 0u) {
        r = select(0.0, g, v > 0.0);
    } else {
        r = select(g, 0.0, v < 0.0 && g > 0.0);
    }
    store_dx(i, r);
}

// ---- The _windows kernels (see the header). Window k of a launch holds vec4
// p.base + 4096 k + i at index i; windows k >= p.windows are bound to a valid window and not
// stored. No accumulate flag: lavapipe would pay a load for every store.

fn win_index(k: u32, i: u32) -> u32 {
    return p.base + k * 4096u + i;
}

fn relu_forward_win(k: u32, i: u32, v: vec4<f32>) {
    if (k < p.windows) { y4[win_index(k, i)] = max(v, vec4<f32>(0.0)); }
}

@compute @workgroup_size(WG)
fn relu_forward_windows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    relu_forward_win(0u, i, xw0.v[i]);
    relu_forward_win(1u, i, xw1.v[i]);
    relu_forward_win(2u, i, xw2.v[i]);
    relu_forward_win(3u, i, xw3.v[i]);
    relu_forward_win(4u, i, xw4.v[i]);
    relu_forward_win(5u, i, xw5.v[i]);
    relu_forward_win(6u, i, xw6.v[i]);
}

fn relu_backward_win(k: u32, i: u32, v: vec4<f32>, g: vec4<f32>) {
    let zero = vec4<f32>(0.0);
    if (k < p.windows) { dx4[win_index(k, i)] = select(zero, g, v > zero); }
}

@compute @workgroup_size(WG)
fn relu_backward_windows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    relu_backward_win(0u, i, xw0.v[i], gw0.v[i]);
    relu_backward_win(1u, i, xw1.v[i], gw1.v[i]);
    relu_backward_win(2u, i, xw2.v[i], gw2.v[i]);
    relu_backward_win(3u, i, xw3.v[i], gw3.v[i]);
    relu_backward_win(4u, i, xw4.v[i], gw4.v[i]);
    relu_backward_win(5u, i, xw5.v[i], gw5.v[i]);
    relu_backward_win(6u, i, xw6.v[i], gw6.v[i]);
}

fn relu_backward_guided_win(k: u32, i: u32, v: vec4<f32>, g: vec4<f32>) {
    let zero = vec4<f32>(0.0);
    if (k < p.windows) { dx4[win_index(k, i)] = select(zero, g, (v > zero) & (g > zero)); }
}

@compute @workgroup_size(WG)
fn relu_backward_guided_windows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    relu_backward_guided_win(0u, i, xw0.v[i], gw0.v[i]);
    relu_backward_guided_win(1u, i, xw1.v[i], gw1.v[i]);
    relu_backward_guided_win(2u, i, xw2.v[i], gw2.v[i]);
    relu_backward_guided_win(3u, i, xw3.v[i], gw3.v[i]);
    relu_backward_guided_win(4u, i, xw4.v[i], gw4.v[i]);
    relu_backward_guided_win(5u, i, xw5.v[i], gw5.v[i]);
    relu_backward_guided_win(6u, i, xw6.v[i], gw6.v[i]);
}

fn relu_backward_deconv_win(k: u32, i: u32, g: vec4<f32>) {
    if (k < p.windows) { dx4[win_index(k, i)] = max(g, vec4<f32>(0.0)); }
}

@compute @workgroup_size(WG)
fn relu_backward_deconv_windows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    relu_backward_deconv_win(0u, i, gw0.v[i]);
    relu_backward_deconv_win(1u, i, gw1.v[i]);
    relu_backward_deconv_win(2u, i, gw2.v[i]);
    relu_backward_deconv_win(3u, i, gw3.v[i]);
    relu_backward_deconv_win(4u, i, gw4.v[i]);
    relu_backward_deconv_win(5u, i, gw5.v[i]);
    relu_backward_deconv_win(6u, i, gw6.v[i]);
}
