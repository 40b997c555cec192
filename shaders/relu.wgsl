// relu.wgsl: ReLU forward and its three backward rules, side by side.
// Layout: any shape, flat. One thread per element.
// Bindings: 0 params, 1 x (forward input, saved), 2 y (forward output), 3 dy (upstream
// gradient), 4 dx (gradient to the input).

struct ReluParams {
    n: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: ReluParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

fn store_dx(i: u32, g: f32) {
    if (p.accumulate != 0u) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
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
