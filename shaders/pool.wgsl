// pool.wgsl: max, average, adaptive average and global average pooling, each forward beside
// its backward. Semantics follow PyTorch's CPU kernels (aten/src/ATen/native/cpu/
// MaxPoolKernel.cpp, AvgPoolKernel.cpp, AdaptiveAvgPoolKernel.cpp) exactly, including window
// clipping, divisors and tie-breaking.
// Layout: NCHW f32, flat; `planes` = N*C planes of in_h x in_w (input) or out_h x out_w (output).
// Bindings: 0 params, 1 x (forward input; for the max backward, the input of the ReLU the pool
// follows, where p.relu fuses one), 2 y (forward output), 3 argmax written by the max
// forward (u32, flat h*in_w+w within the input plane, as PyTorch's indices), 4 dy (upstream
// gradient), 5 dx (gradient to the input), 6 argmax read by the max backward.
// Every backward is a gather: one thread per input element (or, for VGG's and ResNet's max
// pools, per block of input cells) sums the output windows that contain it, so no atomics are
// needed and `accumulate` is a plain read-modify-write.

struct PoolParams {
    n: u32,           // threads of this launch (elements, or planes for the serial global pool)
    planes: u32,      // N*C
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    s_h: u32,
    s_w: u32,
    p_h: u32,
    p_w: u32,
    d_h: u32,
    d_w: u32,
    count_include_pad: u32,
    accumulate: u32,
    relu: u32,        // max backward: 0, or the rule of a ReLU before the pool (store_dx_relu)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax_out: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read> argmax_in: array<u32>;

var<workgroup> partial: array<f32, WG>;

fn store_dx(i: u32, g: f32) {
    if (p.accumulate != 0u) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
    }
}

// The max backward's store, through the ReLU that produced the pool's input when p.relu names
// its rule (fused_relu_grad's codes; x is the ReLU's input): the pool's gradient at an input
// cell is whole once gathered, so the rule applies here and saves the ReLU's own launch.
fn store_dx_relu(i: u32, g: f32) {
    var r = g;
    if (p.relu != 0u) {
        r = fused_relu_grad(i32(p.relu), g, x[i]);
    }
    store_dx(i, r);
}

// NaN test on the bits: a float comparison `v != v` may be folded away by a driver compiling
// with no-NaN assumptions.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Smallest k >= 0 with k * d >= -a (a <= 0): how many dilation steps move a window start that
// lies in the padding onto the input, as PyTorch's `while (ih0 < 0) ih0 += dilation`.
fn steps_to_nonneg(a: i32, d: i32) -> i32 {
    if (a >= 0) {
        return 0;
    }
    return (-a + d - 1) / d;
}

// Ceiling of a / b for b > 0, clamped below at 0: the first output whose window can reach an
// input row.
fn first_window(a: i32, b: i32) -> i32 {
    if (a <= 0) {
        return 0;
    }
    return (a + b - 1) / b;
}

// ---------------------------------------------------------------------------------------------
// Max pooling (torch.nn.MaxPool2d). One thread per output element. The window is visited in
// row-major order and updated only on `v > best || isnan(v)`: the FIRST maximum wins ties and
// NaN propagates (the last NaN's index is kept), as PyTorch's CPU kernel. Padded cells are
// never visited; an all -inf window keeps the index of its first in-bounds cell.
@compute @workgroup_size(WG)
fn maxpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let ow = i32(i % p.out_w);
    let t = i / p.out_w;
    let oh = i32(t % p.out_h);
    let plane = t / p.out_h;
    let in_h = i32(p.in_h);
    let in_w = i32(p.in_w);
    let dh = i32(p.d_h);
    let dw = i32(p.d_w);
    var h0 = oh * i32(p.s_h) - i32(p.p_h);
    var w0 = ow * i32(p.s_w) - i32(p.p_w);
    let h1 = min(h0 + (i32(p.k_h) - 1) * dh + 1, in_h);
    let w1 = min(w0 + (i32(p.k_w) - 1) * dw + 1, in_w);
    h0 = h0 + steps_to_nonneg(h0, dh) * dh;
    w0 = w0 + steps_to_nonneg(w0, dw) * dw;
    let base = plane * p.in_h * p.in_w;
    // -inf from bits held in a var, so no constant expression evaluates to an infinity.
    var neg_inf_bits = 0xff800000u;
    var best = bitcast<f32>(neg_inf_bits);
    var best_i = h0 * in_w + w0;
    for (var h = h0; h < h1; h = h + dh) {
        let row = h * in_w;
        for (var w = w0; w < w1; w = w + dw) {
            let v = x[base + u32(row + w)];
            if (v > best || is_nan(v)) {
                best = v;
                best_i = row + w;
            }
        }
    }
    y[i] = best;
    argmax_out[i] = u32(best_i);
}

// Output element i of the one-thread-per-output kernels as (ow, oh, plane).
fn out_cell(i: u32) -> vec3<u32> {
    let t = i / p.out_w;
    return vec3<u32>(i % p.out_w, t % p.out_h, t / p.out_h);
}

// The VGG case: 2x2 windows, stride 2, no padding, the input tiled exactly (in = 2 * out). One
// thread per output, four loads in the generic kernel's order (rows, then columns; the first
// maximum wins, a NaN wins), no loops: lavapipe runs a loop's body once more than it trips.
@compute @workgroup_size(WG)
fn maxpool2d_forward_2x2(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let cell = out_cell(i);
    let ow = cell.x;
    let oh = cell.y;
    let plane = cell.z;
    let base = plane * p.in_h * p.in_w;
    let r0 = 2u * oh * p.in_w + 2u * ow;
    let r1 = r0 + p.in_w;
    let cand = array<u32, 4>(r0, r0 + 1u, r1, r1 + 1u);
    var best = x[base + r0];
    var best_i = r0;
    for (var k = 1; k < 4; k++) {
        let v = x[base + cand[k]];
        if (v > best || is_nan(v)) {
            best = v;
            best_i = cand[k];
        }
    }
    y[i] = best;
    argmax_out[i] = best_i;
}

// Its gradient, one thread per output: the windows tile the input, so each input cell gets
// this window's dy or 0, written once.
@compute @workgroup_size(WG)
fn maxpool2d_backward_2x2(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let cell = out_cell(i);
    let ow = cell.x;
    let oh = cell.y;
    let plane = cell.z;
    let base = plane * p.in_h * p.in_w;
    let r0 = 2u * oh * p.in_w + 2u * ow;
    let r1 = r0 + p.in_w;
    let g = dy[i];
    let a = argmax_in[i];
    store_dx_relu(base + r0, select(0.0, g, a == r0));
    store_dx_relu(base + r0 + 1u, select(0.0, g, a == r0 + 1u));
    store_dx_relu(base + r1, select(0.0, g, a == r1));
    store_dx_relu(base + r1 + 1u, select(0.0, g, a == r1 + 1u));
}

// ResNet's pool: 3x3 windows, stride 2, padding 1, no dilation, in <= 2 * out. One thread per
// output (oh, ow) gathers the 2x2 input block at (2oh, 2ow): an even row (column) lies in
// window row (column) oh alone, an odd one also in oh + 1. The sums visit the windows in the
// generic kernel's order. A quarter of its threads, no window loops, one integer division per
// cell instead of eight (lavapipe splits a vector division into one per lane): the generic
// gather ran ResNet50's 112² pool backward 4x slower than its forward.
@compute @workgroup_size(WG)
fn maxpool2d_backward_3x3s2(@builtin(global_invocation_id) gid: vec3<u32>,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let cell = out_cell(i);
    let ow = cell.x;
    let oh = cell.y;
    let plane = cell.z;
    let ibase = plane * p.in_h * p.in_w;
    // The four windows (oh, ow), (oh, ow + 1), (oh + 1, ow), (oh + 1, ow + 1); an absent one
    // names no cell.
    var am = vec4<u32>(0xffffffffu);
    var g = vec4<f32>(0.0);
    am.x = argmax_in[i];
    g.x = dy[i];
    let right = ow + 1u < p.out_w;
    let down = oh + 1u < p.out_h;
    if (right) {
        am.y = argmax_in[i + 1u];
        g.y = dy[i + 1u];
    }
    if (down) {
        am.z = argmax_in[i + p.out_w];
        g.z = dy[i + p.out_w];
    }
    if (right && down) {
        am.w = argmax_in[i + p.out_w + 1u];
        g.w = dy[i + p.out_w + 1u];
    }
    for (var dr = 0u; dr < 2u; dr++) {
        let ih = 2u * oh + dr;
        if (ih >= p.in_h) { break; }
        for (var dc = 0u; dc < 2u; dc++) {
            let iw = 2u * ow + dc;
            if (iw >= p.in_w) { break; }
            let me = ih * p.in_w + iw;
            var s = 0.0;
            if (am.x == me) { s = s + g.x; }
            // Windows oh + 1 and ow + 1 start at the odd row and column: the argmax test
            // alone keeps the even ones out.
            if (am.y == me) { s = s + g.y; }
            if (am.z == me) { s = s + g.z; }
            if (am.w == me) { s = s + g.w; }
            store_dx_relu(ibase + me, s);
        }
    }
}

// One thread per input element: sums dy over the output windows whose argmax is this element.
// Candidates are the outputs oh with oh*s_h in [ih + p_h - (k_h-1)*d_h, ih + p_h]; the argmax
// test alone decides membership, so dilation needs no extra check.
@compute @workgroup_size(WG)
fn maxpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let iw = i32(i % p.in_w);
    let t = i / p.in_w;
    let ih = i32(t % p.in_h);
    let plane = t / p.in_h;
    let me = u32(ih * i32(p.in_w) + iw);
    let sh = i32(p.s_h);
    let sw = i32(p.s_w);
    let oh0 = first_window(ih + i32(p.p_h) - (i32(p.k_h) - 1) * i32(p.d_h), sh);
    let ow0 = first_window(iw + i32(p.p_w) - (i32(p.k_w) - 1) * i32(p.d_w), sw);
    let oh1 = min((ih + i32(p.p_h)) / sh, i32(p.out_h) - 1);
    let ow1 = min((iw + i32(p.p_w)) / sw, i32(p.out_w) - 1);
    let obase = plane * p.out_h * p.out_w;
    var g = 0.0;
    for (var oh = oh0; oh <= oh1; oh = oh + 1) {
        let orow = obase + u32(oh) * p.out_w;
        for (var ow = ow0; ow <= ow1; ow = ow + 1) {
            let o = orow + u32(ow);
            if (argmax_in[o] == me) {
                g = g + dy[o];
            }
        }
    }
    store_dx_relu(i, g);
}

// ---------------------------------------------------------------------------------------------
// Average pooling (torch.nn.AvgPool2d). PyTorch clips the window end to in + pad BEFORE taking
// the count_include_pad divisor, then clips to the input for the sum: with ceil_mode the last
// window's divisor excludes the part beyond the right padding.
fn avg_divisor(oh: i32, ow: i32) -> f32 {
    let in_h = i32(p.in_h);
    let in_w = i32(p.in_w);
    var h0 = oh * i32(p.s_h) - i32(p.p_h);
    var w0 = ow * i32(p.s_w) - i32(p.p_w);
    var h1 = min(h0 + i32(p.k_h), in_h + i32(p.p_h));
    var w1 = min(w0 + i32(p.k_w), in_w + i32(p.p_w));
    if (p.count_include_pad != 0u) {
        return f32((h1 - h0) * (w1 - w0));
    }
    h0 = max(h0, 0);
    w0 = max(w0, 0);
    h1 = min(h1, in_h);
    w1 = min(w1, in_w);
    return f32((h1 - h0) * (w1 - w0));
}

// One thread per output element. An empty clipped window (impossible under the pad <= k/2 and
// ceil-mode rules, kept for parity with PyTorch) writes 0.
@compute @workgroup_size(WG)
fn avgpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let ow = i32(i % p.out_w);
    let t = i / p.out_w;
    let oh = i32(t % p.out_h);
    let plane = t / p.out_h;
    let in_h = i32(p.in_h);
    let in_w = i32(p.in_w);
    let h0 = max(oh * i32(p.s_h) - i32(p.p_h), 0);
    let w0 = max(ow * i32(p.s_w) - i32(p.p_w), 0);
    let h1 = min(oh * i32(p.s_h) - i32(p.p_h) + i32(p.k_h), in_h);
    let w1 = min(ow * i32(p.s_w) - i32(p.p_w) + i32(p.k_w), in_w);
    if (h0 >= h1 || w0 >= w1) {
        y[i] = 0.0;
        return;
    }
    let base = plane * p.in_h * p.in_w;
    var s = 0.0;
    for (var h = h0; h < h1; h = h + 1) {
        let row = base + u32(h * in_w);
        for (var w = w0; w < w1; w = w + 1) {
            s = s + x[row + u32(w)];
        }
    }
    y[i] = s / avg_divisor(oh, ow);
}

// One thread per input element: every output with oh*s_h - p_h <= ih < oh*s_h - p_h + k_h
// contains it (the in + pad clip never cuts an in-bounds cell), each contributing dy/divisor.
@compute @workgroup_size(WG)
fn avgpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let iw = i32(i % p.in_w);
    let t = i / p.in_w;
    let ih = i32(t % p.in_h);
    let plane = t / p.in_h;
    let sh = i32(p.s_h);
    let sw = i32(p.s_w);
    let oh0 = first_window(ih + i32(p.p_h) - i32(p.k_h) + 1, sh);
    let ow0 = first_window(iw + i32(p.p_w) - i32(p.k_w) + 1, sw);
    let oh1 = min((ih + i32(p.p_h)) / sh, i32(p.out_h) - 1);
    let ow1 = min((iw + i32(p.p_w)) / sw, i32(p.out_w) - 1);
    let obase = plane * p.out_h * p.out_w;
    var g = 0.0;
    for (var oh = oh0; oh <= oh1; oh = oh + 1) {
        let orow = obase + u32(oh) * p.out_w;
        for (var ow = ow0; ow <= ow1; ow = ow + 1) {
            g = g + dy[orow + u32(ow)] / avg_divisor(oh, ow);
        }
    }
    store_dx(i, g);
}

// ---------------------------------------------------------------------------------------------
// Adaptive average pooling (torch.nn.AdaptiveAvgPool2d): output o of n over an input of m
// averages [floor(o*m/n), ceil((o+1)*m/n)). Windows overlap when m is not a multiple of n and
// repeat cells when m < n (the upsampling case VGG hits at small inputs).
fn adaptive_start(o: u32, out_size: u32, in_size: u32) -> u32 {
    return (o * in_size) / out_size;
}

fn adaptive_end(o: u32, out_size: u32, in_size: u32) -> u32 {
    return ((o + 1u) * in_size + out_size - 1u) / out_size;
}

// One thread per output element.
@compute @workgroup_size(WG)
fn adaptive_avgpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let cell = out_cell(i);
    let ow = cell.x;
    let oh = cell.y;
    let plane = cell.z;
    let h0 = adaptive_start(oh, p.out_h, p.in_h);
    let h1 = adaptive_end(oh, p.out_h, p.in_h);
    let w0 = adaptive_start(ow, p.out_w, p.in_w);
    let w1 = adaptive_end(ow, p.out_w, p.in_w);
    let base = plane * p.in_h * p.in_w;
    var s = 0.0;
    for (var h = h0; h < h1; h = h + 1u) {
        let row = base + h * p.in_w;
        for (var w = w0; w < w1; w = w + 1u) {
            s = s + x[row + w];
        }
    }
    y[i] = s / f32((h1 - h0) * (w1 - w0));
}

// One thread per input element. Output o contains input row r iff start(o) <= r < end(o),
// i.e. floor(r*n/m) <= o <= ceil((r+1)*n/m) - 1; membership is re-tested to stay exact.
@compute @workgroup_size(WG)
fn adaptive_avgpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let iw = i % p.in_w;
    let t = i / p.in_w;
    let ih = t % p.in_h;
    let plane = t / p.in_h;
    let oh0 = (ih * p.out_h) / p.in_h;
    let ow0 = (iw * p.out_w) / p.in_w;
    let oh1 = min(((ih + 1u) * p.out_h + p.in_h - 1u) / p.in_h, p.out_h);
    let ow1 = min(((iw + 1u) * p.out_w + p.in_w - 1u) / p.in_w, p.out_w);
    let obase = plane * p.out_h * p.out_w;
    var g = 0.0;
    for (var oh = oh0; oh < oh1; oh = oh + 1u) {
        let h0 = adaptive_start(oh, p.out_h, p.in_h);
        let h1 = adaptive_end(oh, p.out_h, p.in_h);
        if (ih < h0 || ih >= h1) { continue; }
        for (var ow = ow0; ow < ow1; ow = ow + 1u) {
            let w0 = adaptive_start(ow, p.out_w, p.in_w);
            let w1 = adaptive_end(ow, p.out_w, p.in_w);
            if (iw < w0 || iw >= w1) { continue; }
            g = g + dy[obase + oh * p.out_w + ow] / f32((h1 - h0) * (w1 - w0));
        }
    }
    store_dx(i, g);
}

// ---------------------------------------------------------------------------------------------
// Global average pooling: [N, C, H, W] -> [N, C, 1, 1], the mean of each plane.

// Small planes (ResNet's 7x7): one thread per plane sums it serially; no barriers.
@compute @workgroup_size(WG)
fn global_avgpool_forward_serial(@builtin(global_invocation_id) gid: vec3<u32>,
                                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let plane = flat_index(gid, nwg);
    if (plane >= p.planes) { return; }
    let hw = p.in_h * p.in_w;
    let base = plane * hw;
    var s = 0.0;
    for (var j = 0u; j < hw; j = j + 1u) {
        s = s + x[base + j];
    }
    y[plane] = s / f32(hw);
}

// Large planes: one workgroup per plane (the grid folds into y beyond the per-dimension limit).
// Each lane sums a stride-WG slice, so neighbouring lanes read neighbouring addresses, then a
// tree reduction in workgroup memory. Control flow around the barriers stays uniform.
@compute @workgroup_size(WG)
fn global_avgpool_forward_workgroup(@builtin(workgroup_id) wid: vec3<u32>,
                                    @builtin(num_workgroups) nwg: vec3<u32>,
                                    @builtin(local_invocation_index) lid: u32) {
    let plane = wid.x + wid.y * nwg.x;
    let hw = p.in_h * p.in_w;
    var s = 0.0;
    if (plane < p.planes) {
        let base = plane * hw;
        for (var j = lid; j < hw; j = j + WG) {
            s = s + x[base + j];
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            partial[lid] = partial[lid] + partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u && plane < p.planes) {
        y[plane] = partial[0] / f32(hw);
    }
}

// One thread per input element: dx = dy[plane] / (H*W).
@compute @workgroup_size(WG)
fn global_avgpool_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let hw = p.in_h * p.in_w;
    store_dx(i, dy[i / hw] / f32(hw));
}
