// conv2d.wgsl: 2-D convolution with torch.nn.Conv2d semantics (stride, zero padding, dilation,
// groups, optional bias): forward, backward to the input, backward to the weight and bias.
// Layout: x [N, Cin, H, W], w [Cout, Cin/groups, Kh, Kw] (PyTorch's), b [Cout],
// y [N, Cout, Ho, Wo], all NCHW flat f32. Output channel co belongs to group co / (Cout/groups)
// and reads input channels g*Cin/groups .. (g+1)*Cin/groups.
// Bindings: 0 params, 1 x, 2 w, 3 b, 4 y, 5 dy, 6 dx, 7 dw (final weight gradient),
// 8 db, 9 part (backward-weight output: dw itself, or per-split partial sums).
//
// Every formulation gathers (no atomics), so results are deterministic.
// Variants per pass (conv2d.rs picks one from the shapes):
//   * direct: one thread per output element; correct for every configuration;
//   * tiled: one thread per TB channels x PB flattened positions, any configuration;
//   * rows / row3: Kw == 3 with unit stride and dilation along W (rows: also along H), the
//     VGG/ResNet 3x3 case: a thread owns channels x one or more rows x RW columns and reuses
//     each loaded row of inputs for the three taps (and, in rows, for several kernel rows).
// On lavapipe every storage load costs a per-lane gather of about 60..130 FLOPs of time
// (vec loads cost per component), so speed is FMAs per loaded value: register blocking, with
// each loaded weight feeding PB (or RY*RW) FMAs and each activation TB (or RC) FMAs.
// Channel blocks never straddle a group: tail channels are clamped for loads and skipped on
// store, as are tail positions. Tiled and row kernels run 64-thread workgroups on a grid
// folded at the per-dimension limit (tiled_index). The big row kernels are spelled out channel
// by channel because WGSL has no unrolling or macros and lavapipe must see constant indices.

struct ConvParams {
    batch: i32,
    cin: i32,
    h: i32,
    w: i32,
    cout: i32,
    ho: i32,
    wo: i32,
    groups: i32,
    kh: i32,
    kw: i32,
    stride_h: i32,
    stride_w: i32,
    pad_h: i32,
    pad_w: i32,
    dil_h: i32,
    dil_w: i32,
    cin_g: i32,       // Cin / groups
    cout_g: i32,      // Cout / groups
    has_bias: i32,
    accumulate: i32,  // 1: add into the output gradient instead of overwriting it
    blocks_c: i32,    // tiled: channel blocks per group
    blocks_p: i32,    // tiled forward / backward-input: position blocks
    blocks_r: i32,    // tiled backward-weight: blocks of the Cin/groups*Kh*Kw reduction index
    splits: i32,      // backward-weight: the N*Ho*Wo reduction is cut into this many chunks
    chunk: i32,       // backward-weight: positions per chunk
    threads: i32,     // threads that do work; the grid may hold more
    segs: i32,        // row kernels: PB-wide segments per output (or input) row
    _pad1: i32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dwt: array<f32>;
@group(0) @binding(8) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(9) var<storage, read_write> part: array<f32>;

// Channels per thread in the tiled kernels (must match TILE_C in src/ops/conv2d.rs).
const TB: i32 = 8;
// Positions (or reduction indices) per thread in the tiled kernels (TILE_P in conv2d.rs).
const PB: i32 = 8;
// Outputs per thread along a row in the row kernels (ROW_P in conv2d.rs); the row helpers
// below spell out its four vec4 quarters.
const RW: i32 = 16;
// Channels per thread in the row-block kernels (ROW_C in conv2d.rs).
const RC: i32 = 12;
// Channels per thread in the row-block backward to the input (ROW_C_BWI in conv2d.rs).
const RCB: i32 = 8;
// Rows per thread in the row-block kernels (ROW_Y in conv2d.rs).
const RY: i32 = 3;
// Threads per workgroup of the tiled kernels (TILED_WG in conv2d.rs).
const TWG: u32 = 64u;
// Threads per workgroup of the bias reduction (BIAS_WG in conv2d.rs).
const BWG: u32 = 256u;

fn tiled_index(gid: vec3<u32>, nwg: vec3<u32>) -> i32 {
    return i32(gid.x + gid.y * nwg.x * TWG);
}

// Four activations at flat indices `idx`, zero where `ok` is false (padding, or no output
// position maps there). Masked lanes must hold an in-bounds index.
fn gather_x(idx: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    let v = vec4<f32>(x[idx.x], x[idx.y], x[idx.z], x[idx.w]);
    return select(vec4<f32>(0.0), v, ok);
}

fn gather_x2(idx: vec2<i32>, ok: vec2<bool>) -> vec2<f32> {
    let v = vec2<f32>(x[idx.x], x[idx.y]);
    return select(vec2<f32>(0.0), v, ok);
}

fn gather_dy2(idx: vec2<i32>, ok: vec2<bool>) -> vec2<f32> {
    let v = vec2<f32>(dy[idx.x], dy[idx.y]);
    return select(vec2<f32>(0.0), v, ok);
}

fn gather_dy(idx: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    let v = vec4<f32>(dy[idx.x], dy[idx.y], dy[idx.z], dy[idx.w]);
    return select(vec4<f32>(0.0), v, ok);
}

fn in_range(v: vec4<i32>, hi: i32) -> vec4<bool> {
    return (v >= vec4<i32>(0)) & (v < vec4<i32>(hi));
}

fn store_y(idx: vec4<i32>, v: vec4<f32>, ok: vec4<bool>) {
    if (ok.x) { y[idx.x] = v.x; }
    if (ok.y) { y[idx.y] = v.y; }
    if (ok.z) { y[idx.z] = v.z; }
    if (ok.w) { y[idx.w] = v.w; }
}

fn store_dx1(i: i32, g: f32) {
    if (p.accumulate != 0) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
    }
}

fn store_dx(idx: vec4<i32>, v: vec4<f32>, ok: vec4<bool>) {
    if (ok.x) { store_dx1(idx.x, v.x); }
    if (ok.y) { store_dx1(idx.y, v.y); }
    if (ok.z) { store_dx1(idx.z, v.z); }
    if (ok.w) { store_dx1(idx.w, v.w); }
}

// Backward-weight output: with one split it is dw itself (binding 9 bound to dw), honouring
// `accumulate`; with several, partial sums that conv2d_backward_weight_reduce adds up.
fn store_part1(i: i32, g: f32) {
    if (p.accumulate != 0) {
        part[i] = part[i] + g;
    } else {
        part[i] = g;
    }
}

fn store_part(idx: vec4<i32>, v: vec4<f32>, ok: vec4<bool>) {
    if (ok.x) { store_part1(idx.x, v.x); }
    if (ok.y) { store_part1(idx.y, v.y); }
    if (ok.z) { store_part1(idx.z, v.z); }
    if (ok.w) { store_part1(idx.w, v.w); }
}

fn store_fwd_row(ch: i32, co_base: i32, ya: vec4<i32>, ok: array<vec4<bool>, 4>,
                 q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>) {
    if (ch >= p.cout_g) { return; }
    let co = co_base + ch;
    var bv = vec4<f32>(0.0);
    if (p.has_bias != 0) { bv = vec4<f32>(bias[co]); }
    let y0 = ya + vec4<i32>(co * p.ho * p.wo);
    store_y(y0, q0 + bv, ok[0]);
    store_y(y0 + vec4<i32>(4), q1 + bv, ok[1]);
    store_y(y0 + vec4<i32>(8), q2 + bv, ok[2]);
    store_y(y0 + vec4<i32>(12), q3 + bv, ok[3]);
}

// The row-block backward already holds any accumulated value: plain stores.
fn store_bwi_row(ch: i32, cg: i32, xa: vec4<i32>, ok: array<vec4<bool>, 4>,
                 q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>) {
    if (ch >= p.cin_g) { return; }
    let x0 = xa + vec4<i32>((cg + ch) * p.h * p.w);
    put_dx(x0, q0, ok[0]);
    put_dx(x0 + vec4<i32>(4), q1, ok[1]);
    put_dx(x0 + vec4<i32>(8), q2, ok[2]);
    put_dx(x0 + vec4<i32>(12), q3, ok[3]);
}

fn put_dx(idx: vec4<i32>, v: vec4<f32>, ok: vec4<bool>) {
    if (ok.x) { dx[idx.x] = v.x; }
    if (ok.y) { dx[idx.y] = v.y; }
    if (ok.z) { dx[idx.z] = v.z; }
    if (ok.w) { dx[idx.w] = v.w; }
}

// Weight index of (co, kernel row kr, tap kx) is co*K + kr*3 + kx.
fn store_bww3(ch: i32, co_base: i32, base: i32, k: i32, kra: vec4<i32>, krb: vec4<i32>,
              va: vec4<bool>, vb: vec4<bool>, a0: vec4<f32>, b0: vec4<f32>, a1: vec4<f32>,
              b1: vec4<f32>, a2: vec4<f32>, b2: vec4<f32>) {
    if (ch >= p.cout_g) { return; }
    let row = vec4<i32>(base + (co_base + ch) * k);
    let ia = row + kra * 3;
    let ib = row + krb * 3;
    store_part(ia, a0, va);
    store_part(ib, b0, vb);
    store_part(ia + vec4<i32>(1), a1, va);
    store_part(ib + vec4<i32>(1), b1, vb);
    store_part(ia + vec4<i32>(2), a2, va);
    store_part(ib + vec4<i32>(2), b2, vb);
}

// The RW + 2 values under a row segment, as four vec4 quarters v0..v3 with the same quarters
// shifted by one (s) and two (t) columns, i.e. the inputs under taps 0, 1 and 2.
struct RowValues {
    v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
    s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>,
    t0: vec4<f32>, t1: vec4<f32>, t2: vec4<f32>, t3: vec4<f32>,
}

// Columns first .. first + RW + 1 of a row of width `width`: in-row offsets (0 where masked,
// so loads stay in bounds) and masks.
struct RowWindow {
    o0: vec4<i32>, o1: vec4<i32>, o2: vec4<i32>, o3: vec4<i32>, o4: vec2<i32>,
    m0: vec4<bool>, m1: vec4<bool>, m2: vec4<bool>, m3: vec4<bool>, m4: vec2<bool>,
}

fn row_window(first: i32, width: i32) -> RowWindow {
    let c0 = vec4<i32>(first) + vec4<i32>(0, 1, 2, 3);
    let c1 = c0 + vec4<i32>(4);
    let c2 = c0 + vec4<i32>(8);
    let c3 = c0 + vec4<i32>(12);
    let c4 = c0.xy + vec2<i32>(16);
    let m4 = (c4 >= vec2<i32>(0)) & (c4 < vec2<i32>(width));
    var r: RowWindow;
    r.m0 = in_range(c0, width);
    r.m1 = in_range(c1, width);
    r.m2 = in_range(c2, width);
    r.m3 = in_range(c3, width);
    r.m4 = m4;
    r.o0 = select(vec4<i32>(0), c0, r.m0);
    r.o1 = select(vec4<i32>(0), c1, r.m1);
    r.o2 = select(vec4<i32>(0), c2, r.m2);
    r.o3 = select(vec4<i32>(0), c3, r.m3);
    r.o4 = select(vec2<i32>(0), c4, m4);
    return r;
}

fn shift_row(v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>, v4: vec2<f32>)
    -> RowValues {
    var r: RowValues;
    r.v0 = v0; r.v1 = v1; r.v2 = v2; r.v3 = v3;
    r.s0 = vec4<f32>(v0.yzw, v1.x); r.t0 = vec4<f32>(v0.zw, v1.xy);
    r.s1 = vec4<f32>(v1.yzw, v2.x); r.t1 = vec4<f32>(v1.zw, v2.xy);
    r.s2 = vec4<f32>(v2.yzw, v3.x); r.t2 = vec4<f32>(v2.zw, v3.xy);
    r.s3 = vec4<f32>(v3.yzw, v4.x); r.t3 = vec4<f32>(v3.zw, v4.xy);
    return r;
}

fn load_x_row(base: i32, w: RowWindow) -> RowValues {
    let b = vec4<i32>(base);
    return shift_row(gather_x(b + w.o0, w.m0), gather_x(b + w.o1, w.m1),
                     gather_x(b + w.o2, w.m2), gather_x(b + w.o3, w.m3),
                     gather_x2(b.xy + w.o4, w.m4));
}

fn load_dy_row(base: i32, w: RowWindow) -> RowValues {
    let b = vec4<i32>(base);
    return shift_row(gather_dy(b + w.o0, w.m0), gather_dy(b + w.o1, w.m1),
                     gather_dy(b + w.o2, w.m2), gather_dy(b + w.o3, w.m3),
                     gather_dy2(b.xy + w.o4, w.m4));
}

// Outputs first .. first + RW - 1 that exist in a row of width `width`.
fn row_store_mask(first: i32, width: i32) -> array<vec4<bool>, 4> {
    let c = vec4<i32>(first) + vec4<i32>(0, 1, 2, 3);
    return array<vec4<bool>, 4>(c < vec4<i32>(width), c + vec4<i32>(4) < vec4<i32>(width),
                                c + vec4<i32>(8) < vec4<i32>(width),
                                c + vec4<i32>(12) < vec4<i32>(width));
}

// The activations at column `col` of four kernel rows starting at flat offsets `row`.
fn load_x_col(row: vec4<i32>, ok: vec4<bool>, col: i32) -> vec4<f32> {
    let in_col = ok & vec4<bool>(col >= 0 && col < p.w);
    return gather_x(select(vec4<i32>(0), row + vec4<i32>(col), in_col), in_col);
}

// With `accumulate`, the row-block backward starts its accumulators from what dx holds
// (zero otherwise, for tail channels and for masked outputs). Reading dx here, before the
// main loop, rather than in the long store epilogue keeps that kernel quick to compile.
fn load_dx_row(ch: i32, cg: i32, o: vec4<i32>, ok: array<vec4<bool>, 4>) -> array<vec4<f32>, 4> {
    var r = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if (p.accumulate != 0 && ch < p.cin_g) {
        let b = o + vec4<i32>((cg + ch) * p.h * p.w);
        r[0] = gather_dx(b, ok[0]);
        r[1] = gather_dx(b + vec4<i32>(4), ok[1]);
        r[2] = gather_dx(b + vec4<i32>(8), ok[2]);
        r[3] = gather_dx(b + vec4<i32>(12), ok[3]);
    }
    return r;
}

fn gather_dx(idx: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    let i = select(vec4<i32>(0), idx, ok);
    return select(vec4<f32>(0.0), vec4<f32>(dx[i.x], dx[i.y], dx[i.z], dx[i.w]), ok);
}

// load_x_row at row iy of the input plane starting at `plane`; zeros outside the image.
fn load_x_row_at(plane: i32, iy: i32, w: RowWindow) -> RowValues {
    if (iy < 0 || iy >= p.h) {
        let z = vec4<f32>(0.0);
        return RowValues(z, z, z, z, z, z, z, z, z, z, z, z);
    }
    return load_x_row(plane + iy * p.w, w);
}

// load_dy_row at row oy of the gradient plane starting at `plane`; zeros outside it.
fn load_dy_row_at(plane: i32, oy: i32, w: RowWindow) -> RowValues {
    if (oy < 0 || oy >= p.ho) {
        let z = vec4<f32>(0.0);
        return RowValues(z, z, z, z, z, z, z, z, z, z, z, z);
    }
    return load_dy_row(plane + oy * p.wo, w);
}

// The three taps of one kernel row at weight index i.
fn wrow3(i: i32) -> vec3<f32> {
    return vec3<f32>(wt[i], wt[i + 1], wt[i + 2]);
}

// acc + k.x * v0 + k.y * v1 + k.z * v2: one kernel row applied to four outputs, given the
// inputs under taps 0, 1 and 2.
fn tap3(acc: vec4<f32>, k: vec3<f32>, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(k.z), v2, fma(vec4<f32>(k.y), v1, fma(vec4<f32>(k.x), v0, acc)));
}

// ---------------------------------------------------------------------------------------------
// Forward: y[n, co, oy, ox] = b[co] + sum_{ci, ky, kx} x[n, g*Cin_g + ci, iy, ix] w[co, ci, ky, kx]
// with iy = oy*stride_h - pad_h + ky*dil_h (and likewise ix); outside the input reads as zero.

// Direct: one thread per y element.
@compute @workgroup_size(WG)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = i32(flat_index(gid, nwg));
    if (i >= p.threads) { return; }
    let ox = i % p.wo;
    var t = i / p.wo;
    let oy = t % p.ho;
    t = t / p.ho;
    let co = t % p.cout;
    let n = t / p.cout;
    let g = co / p.cout_g;
    let hw = p.h * p.w;
    let khw = p.kh * p.kw;
    var acc = 0.0;
    if (p.has_bias != 0) { acc = bias[co]; }
    let xg = (n * p.cin + g * p.cin_g) * hw;
    let wrow = co * p.cin_g * khw;
    for (var ky = 0; ky < p.kh; ky++) {
        let iy = oy * p.stride_h - p.pad_h + ky * p.dil_h;
        if (iy < 0 || iy >= p.h) { continue; }
        for (var kx = 0; kx < p.kw; kx++) {
            let ix = ox * p.stride_w - p.pad_w + kx * p.dil_w;
            if (ix < 0 || ix >= p.w) { continue; }
            var xi = xg + iy * p.w + ix;
            var wi = wrow + ky * p.kw + kx;
            for (var ci = 0; ci < p.cin_g; ci++) {
                acc = fma(x[xi], wt[wi], acc);
                xi += hw;
                wi += khw;
            }
        }
    }
    y[i] = acc;
}

// Tiled: TB output channels of one group x PB positions of the flattened N*Ho*Wo axis (so
// small feature maps waste no lanes). Per (ky, kx) the positions' input offsets and padding
// masks are computed once; the inner loop over input channels only adds plane strides.
// Thread t: position block t % blocks_p, channel block t / blocks_p.
@compute @workgroup_size(TWG)
fn conv2d_forward_tiled(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = tiled_index(gid, nwg);
    if (t >= p.threads) { return; }
    let cb = t / p.blocks_p;
    let g = cb / p.blocks_c;
    let c0 = (cb % p.blocks_c) * TB;
    let co_base = g * p.cout_g;
    let howo = p.ho * p.wo;
    let hw = p.h * p.w;
    let khw = p.kh * p.kw;
    let np = p.batch * howo;

    let pa = vec4<i32>((t % p.blocks_p) * PB) + vec4<i32>(0, 1, 2, 3);
    let pb = pa + vec4<i32>(4);
    let va = pa < vec4<i32>(np);
    let vb = pb < vec4<i32>(np);
    let qa = min(pa, vec4<i32>(np - 1));
    let qb = min(pb, vec4<i32>(np - 1));
    let na = qa / howo;
    let nb = qb / howo;
    let spa = qa % howo;
    let spb = qb % howo;
    let xga = (na * p.cin + g * p.cin_g) * hw;
    let xgb = (nb * p.cin + g * p.cin_g) * hw;
    let iy0a = (spa / p.wo) * p.stride_h - p.pad_h;
    let iy0b = (spb / p.wo) * p.stride_h - p.pad_h;
    let ix0a = (spa % p.wo) * p.stride_w - p.pad_w;
    let ix0b = (spb % p.wo) * p.stride_w - p.pad_w;

    let last = p.cout_g - 1;
    let wstride = p.cin_g * khw;
    let w0 = (co_base + min(c0 + 0, last)) * wstride;
    let w1 = (co_base + min(c0 + 1, last)) * wstride;
    let w2 = (co_base + min(c0 + 2, last)) * wstride;
    let w3 = (co_base + min(c0 + 3, last)) * wstride;
    let w4 = (co_base + min(c0 + 4, last)) * wstride;
    let w5 = (co_base + min(c0 + 5, last)) * wstride;
    let w6 = (co_base + min(c0 + 6, last)) * wstride;
    let w7 = (co_base + min(c0 + 7, last)) * wstride;

    var a0 = vec4<f32>(0.0); var b0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var b4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);

    for (var ky = 0; ky < p.kh; ky++) {
        let iya = iy0a + vec4<i32>(ky * p.dil_h);
        let iyb = iy0b + vec4<i32>(ky * p.dil_h);
        let oka_y = in_range(iya, p.h);
        let okb_y = in_range(iyb, p.h);
        for (var kx = 0; kx < p.kw; kx++) {
            let ixa = ix0a + vec4<i32>(kx * p.dil_w);
            let ixb = ix0b + vec4<i32>(kx * p.dil_w);
            let oka = oka_y & in_range(ixa, p.w);
            let okb = okb_y & in_range(ixb, p.w);
            // Masked lanes point at their group's first plane, which stays in bounds as the
            // loop walks the group's channels.
            var ia = select(xga, xga + iya * p.w + ixa, oka);
            var ib = select(xgb, xgb + iyb * p.w + ixb, okb);
            var r = ky * p.kw + kx;
            for (var ci = 0; ci < p.cin_g; ci++) {
                let xa = gather_x(ia, oka);
                let xb = gather_x(ib, okb);
                let k0 = vec4<f32>(wt[w0 + r]);
                let k1 = vec4<f32>(wt[w1 + r]);
                let k2 = vec4<f32>(wt[w2 + r]);
                let k3 = vec4<f32>(wt[w3 + r]);
                let k4 = vec4<f32>(wt[w4 + r]);
                let k5 = vec4<f32>(wt[w5 + r]);
                let k6 = vec4<f32>(wt[w6 + r]);
                let k7 = vec4<f32>(wt[w7 + r]);
                a0 = fma(k0, xa, a0); b0 = fma(k0, xb, b0);
                a1 = fma(k1, xa, a1); b1 = fma(k1, xb, b1);
                a2 = fma(k2, xa, a2); b2 = fma(k2, xb, b2);
                a3 = fma(k3, xa, a3); b3 = fma(k3, xb, b3);
                a4 = fma(k4, xa, a4); b4 = fma(k4, xb, b4);
                a5 = fma(k5, xa, a5); b5 = fma(k5, xb, b5);
                a6 = fma(k6, xa, a6); b6 = fma(k6, xb, b6);
                a7 = fma(k7, xa, a7); b7 = fma(k7, xb, b7);
                ia += vec4<i32>(hw);
                ib += vec4<i32>(hw);
                r += khw;
            }
        }
    }

    let ya = na * (p.cout * howo) + spa;
    let yb = nb * (p.cout * howo) + spb;
    store_fwd(c0 + 0, co_base, ya, yb, va, vb, a0, b0);
    store_fwd(c0 + 1, co_base, ya, yb, va, vb, a1, b1);
    store_fwd(c0 + 2, co_base, ya, yb, va, vb, a2, b2);
    store_fwd(c0 + 3, co_base, ya, yb, va, vb, a3, b3);
    store_fwd(c0 + 4, co_base, ya, yb, va, vb, a4, b4);
    store_fwd(c0 + 5, co_base, ya, yb, va, vb, a5, b5);
    store_fwd(c0 + 6, co_base, ya, yb, va, vb, a6, b6);
    store_fwd(c0 + 7, co_base, ya, yb, va, vb, a7, b7);
}

fn store_fwd(c: i32, co_base: i32, ya: vec4<i32>, yb: vec4<i32>, va: vec4<bool>,
             vb: vec4<bool>, a: vec4<f32>, b: vec4<f32>) {
    if (c >= p.cout_g) { return; }
    let co = co_base + c;
    var bv = 0.0;
    if (p.has_bias != 0) { bv = bias[co]; }
    let off = vec4<i32>(co * p.ho * p.wo);
    store_y(ya + off, a + vec4<f32>(bv), va);
    store_y(yb + off, b + vec4<f32>(bv), vb);
}

// Row-block variant for Kw == 3 with unit stride and dilation in both dimensions (any Kh;
// VGG's 3x3 / padding 1): a thread owns RC output channels x RY rows x RW columns of one group.
// For each input channel it walks the kernel rows with a window of RY input rows: at step ky,
// window row y is input row oy0 - pad_h + y + ky and serves tap ky of output row oy0 + y, so
// each step loads one new row (RW + 2 values, shifted for the three taps by register renames)
// and 3*RC weights, and each weight feeds RY*RW outputs.
// Thread t: segment t % segs, row block next, channel block last.
@compute @workgroup_size(TWG)
fn conv2d_forward_rows(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = tiled_index(gid, nwg);
    if (t >= p.threads) { return; }
    let out_h = p.ho;
    let out_w = p.wo;
    let blocks = (out_h + RY - 1) / RY;
    let seg = t % p.segs;
    let t2 = t / p.segs;
    let rb = t2 % (p.batch * blocks);
    let cb = t2 / (p.batch * blocks);
    let g = cb / p.blocks_c;
    let ch0 = (cb % p.blocks_c) * RC;
    let n = rb / blocks;
    let r0 = (rb % blocks) * RY;
    let c0 = seg * RW;
    let win = row_window(c0 - p.pad_w, p.w);
    let first = r0 - p.pad_h;
    let co_base = g * p.cout_g;
    let last = p.cout_g - 1;
    let kh3 = p.kh * 3;
    let wstride = p.cin_g * kh3;
    let w0 = (co_base + min(ch0 + 0, last)) * wstride;
    let w1 = (co_base + min(ch0 + 1, last)) * wstride;
    let w2 = (co_base + min(ch0 + 2, last)) * wstride;
    let w3 = (co_base + min(ch0 + 3, last)) * wstride;
    let w4 = (co_base + min(ch0 + 4, last)) * wstride;
    let w5 = (co_base + min(ch0 + 5, last)) * wstride;
    let w6 = (co_base + min(ch0 + 6, last)) * wstride;
    let w7 = (co_base + min(ch0 + 7, last)) * wstride;
    let w8 = (co_base + min(ch0 + 8, last)) * wstride;
    let w9 = (co_base + min(ch0 + 9, last)) * wstride;
    let w10 = (co_base + min(ch0 + 10, last)) * wstride;
    let w11 = (co_base + min(ch0 + 11, last)) * wstride;
    // Weight rows run through ky, which ends at the next input channel's first row.
    let wnext = 0;
    let wrow_step = 3;
    var wr = 0;
    let plane = p.h * p.w;
    var src = (n * p.cin + g * p.cin_g) * plane;
    let channels = p.cin_g;

    let ok = row_store_mask(c0, out_w);
    let none = array<vec4<bool>, 4>(vec4<bool>(false), vec4<bool>(false), vec4<bool>(false),
                                    vec4<bool>(false));
    let o0 = vec4<i32>((n * p.cout * out_h + r0) * out_w + c0) + vec4<i32>(0, 1, 2, 3);
    var ok0 = ok;
    if (r0 + 0 >= out_h) { ok0 = none; }
    let o0_ = o0 + vec4<i32>(0 * out_w);
    var ok1 = ok;
    if (r0 + 1 >= out_h) { ok1 = none; }
    let o1_ = o0 + vec4<i32>(1 * out_w);
    var ok2 = ok;
    if (r0 + 2 >= out_h) { ok2 = none; }
    let o2_ = o0 + vec4<i32>(2 * out_w);

    var u00_0 = vec4<f32>(0.0); var u01_0 = vec4<f32>(0.0); var u02_0 = vec4<f32>(0.0); var u03_0 = vec4<f32>(0.0);
    var u10_0 = vec4<f32>(0.0); var u11_0 = vec4<f32>(0.0); var u12_0 = vec4<f32>(0.0); var u13_0 = vec4<f32>(0.0);
    var u20_0 = vec4<f32>(0.0); var u21_0 = vec4<f32>(0.0); var u22_0 = vec4<f32>(0.0); var u23_0 = vec4<f32>(0.0);
    var u00_1 = vec4<f32>(0.0); var u01_1 = vec4<f32>(0.0); var u02_1 = vec4<f32>(0.0); var u03_1 = vec4<f32>(0.0);
    var u10_1 = vec4<f32>(0.0); var u11_1 = vec4<f32>(0.0); var u12_1 = vec4<f32>(0.0); var u13_1 = vec4<f32>(0.0);
    var u20_1 = vec4<f32>(0.0); var u21_1 = vec4<f32>(0.0); var u22_1 = vec4<f32>(0.0); var u23_1 = vec4<f32>(0.0);
    var u00_2 = vec4<f32>(0.0); var u01_2 = vec4<f32>(0.0); var u02_2 = vec4<f32>(0.0); var u03_2 = vec4<f32>(0.0);
    var u10_2 = vec4<f32>(0.0); var u11_2 = vec4<f32>(0.0); var u12_2 = vec4<f32>(0.0); var u13_2 = vec4<f32>(0.0);
    var u20_2 = vec4<f32>(0.0); var u21_2 = vec4<f32>(0.0); var u22_2 = vec4<f32>(0.0); var u23_2 = vec4<f32>(0.0);
    var u00_3 = vec4<f32>(0.0); var u01_3 = vec4<f32>(0.0); var u02_3 = vec4<f32>(0.0); var u03_3 = vec4<f32>(0.0);
    var u10_3 = vec4<f32>(0.0); var u11_3 = vec4<f32>(0.0); var u12_3 = vec4<f32>(0.0); var u13_3 = vec4<f32>(0.0);
    var u20_3 = vec4<f32>(0.0); var u21_3 = vec4<f32>(0.0); var u22_3 = vec4<f32>(0.0); var u23_3 = vec4<f32>(0.0);
    var u00_4 = vec4<f32>(0.0); var u01_4 = vec4<f32>(0.0); var u02_4 = vec4<f32>(0.0); var u03_4 = vec4<f32>(0.0);
    var u10_4 = vec4<f32>(0.0); var u11_4 = vec4<f32>(0.0); var u12_4 = vec4<f32>(0.0); var u13_4 = vec4<f32>(0.0);
    var u20_4 = vec4<f32>(0.0); var u21_4 = vec4<f32>(0.0); var u22_4 = vec4<f32>(0.0); var u23_4 = vec4<f32>(0.0);
    var u00_5 = vec4<f32>(0.0); var u01_5 = vec4<f32>(0.0); var u02_5 = vec4<f32>(0.0); var u03_5 = vec4<f32>(0.0);
    var u10_5 = vec4<f32>(0.0); var u11_5 = vec4<f32>(0.0); var u12_5 = vec4<f32>(0.0); var u13_5 = vec4<f32>(0.0);
    var u20_5 = vec4<f32>(0.0); var u21_5 = vec4<f32>(0.0); var u22_5 = vec4<f32>(0.0); var u23_5 = vec4<f32>(0.0);
    var u00_6 = vec4<f32>(0.0); var u01_6 = vec4<f32>(0.0); var u02_6 = vec4<f32>(0.0); var u03_6 = vec4<f32>(0.0);
    var u10_6 = vec4<f32>(0.0); var u11_6 = vec4<f32>(0.0); var u12_6 = vec4<f32>(0.0); var u13_6 = vec4<f32>(0.0);
    var u20_6 = vec4<f32>(0.0); var u21_6 = vec4<f32>(0.0); var u22_6 = vec4<f32>(0.0); var u23_6 = vec4<f32>(0.0);
    var u00_7 = vec4<f32>(0.0); var u01_7 = vec4<f32>(0.0); var u02_7 = vec4<f32>(0.0); var u03_7 = vec4<f32>(0.0);
    var u10_7 = vec4<f32>(0.0); var u11_7 = vec4<f32>(0.0); var u12_7 = vec4<f32>(0.0); var u13_7 = vec4<f32>(0.0);
    var u20_7 = vec4<f32>(0.0); var u21_7 = vec4<f32>(0.0); var u22_7 = vec4<f32>(0.0); var u23_7 = vec4<f32>(0.0);
    var u00_8 = vec4<f32>(0.0); var u01_8 = vec4<f32>(0.0); var u02_8 = vec4<f32>(0.0); var u03_8 = vec4<f32>(0.0);
    var u10_8 = vec4<f32>(0.0); var u11_8 = vec4<f32>(0.0); var u12_8 = vec4<f32>(0.0); var u13_8 = vec4<f32>(0.0);
    var u20_8 = vec4<f32>(0.0); var u21_8 = vec4<f32>(0.0); var u22_8 = vec4<f32>(0.0); var u23_8 = vec4<f32>(0.0);
    var u00_9 = vec4<f32>(0.0); var u01_9 = vec4<f32>(0.0); var u02_9 = vec4<f32>(0.0); var u03_9 = vec4<f32>(0.0);
    var u10_9 = vec4<f32>(0.0); var u11_9 = vec4<f32>(0.0); var u12_9 = vec4<f32>(0.0); var u13_9 = vec4<f32>(0.0);
    var u20_9 = vec4<f32>(0.0); var u21_9 = vec4<f32>(0.0); var u22_9 = vec4<f32>(0.0); var u23_9 = vec4<f32>(0.0);
    var u00_10 = vec4<f32>(0.0); var u01_10 = vec4<f32>(0.0); var u02_10 = vec4<f32>(0.0); var u03_10 = vec4<f32>(0.0);
    var u10_10 = vec4<f32>(0.0); var u11_10 = vec4<f32>(0.0); var u12_10 = vec4<f32>(0.0); var u13_10 = vec4<f32>(0.0);
    var u20_10 = vec4<f32>(0.0); var u21_10 = vec4<f32>(0.0); var u22_10 = vec4<f32>(0.0); var u23_10 = vec4<f32>(0.0);
    var u00_11 = vec4<f32>(0.0); var u01_11 = vec4<f32>(0.0); var u02_11 = vec4<f32>(0.0); var u03_11 = vec4<f32>(0.0);
    var u10_11 = vec4<f32>(0.0); var u11_11 = vec4<f32>(0.0); var u12_11 = vec4<f32>(0.0); var u13_11 = vec4<f32>(0.0);
    var u20_11 = vec4<f32>(0.0); var u21_11 = vec4<f32>(0.0); var u22_11 = vec4<f32>(0.0); var u23_11 = vec4<f32>(0.0);

    for (var c = 0; c < channels; c++) {
        var row0 = load_x_row_at(src, first + 0, win);
        var row1 = load_x_row_at(src, first + 1, win);
        for (var kk = 0; kk < p.kh; kk++) {
            let row2 = load_x_row_at(src, first + kk + 2, win);
            let k0 = wrow3(w0 + wr);
            let k1 = wrow3(w1 + wr);
            let k2 = wrow3(w2 + wr);
            let k3 = wrow3(w3 + wr);
            let k4 = wrow3(w4 + wr);
            let k5 = wrow3(w5 + wr);
            let k6 = wrow3(w6 + wr);
            let k7 = wrow3(w7 + wr);
            let k8 = wrow3(w8 + wr);
            let k9 = wrow3(w9 + wr);
            let k10 = wrow3(w10 + wr);
            let k11 = wrow3(w11 + wr);
            u00_0 = tap3(u00_0, k0, row0.v0, row0.s0, row0.t0); u01_0 = tap3(u01_0, k0, row0.v1, row0.s1, row0.t1); u02_0 = tap3(u02_0, k0, row0.v2, row0.s2, row0.t2); u03_0 = tap3(u03_0, k0, row0.v3, row0.s3, row0.t3);
            u10_0 = tap3(u10_0, k0, row1.v0, row1.s0, row1.t0); u11_0 = tap3(u11_0, k0, row1.v1, row1.s1, row1.t1); u12_0 = tap3(u12_0, k0, row1.v2, row1.s2, row1.t2); u13_0 = tap3(u13_0, k0, row1.v3, row1.s3, row1.t3);
            u20_0 = tap3(u20_0, k0, row2.v0, row2.s0, row2.t0); u21_0 = tap3(u21_0, k0, row2.v1, row2.s1, row2.t1); u22_0 = tap3(u22_0, k0, row2.v2, row2.s2, row2.t2); u23_0 = tap3(u23_0, k0, row2.v3, row2.s3, row2.t3);
            u00_1 = tap3(u00_1, k1, row0.v0, row0.s0, row0.t0); u01_1 = tap3(u01_1, k1, row0.v1, row0.s1, row0.t1); u02_1 = tap3(u02_1, k1, row0.v2, row0.s2, row0.t2); u03_1 = tap3(u03_1, k1, row0.v3, row0.s3, row0.t3);
            u10_1 = tap3(u10_1, k1, row1.v0, row1.s0, row1.t0); u11_1 = tap3(u11_1, k1, row1.v1, row1.s1, row1.t1); u12_1 = tap3(u12_1, k1, row1.v2, row1.s2, row1.t2); u13_1 = tap3(u13_1, k1, row1.v3, row1.s3, row1.t3);
            u20_1 = tap3(u20_1, k1, row2.v0, row2.s0, row2.t0); u21_1 = tap3(u21_1, k1, row2.v1, row2.s1, row2.t1); u22_1 = tap3(u22_1, k1, row2.v2, row2.s2, row2.t2); u23_1 = tap3(u23_1, k1, row2.v3, row2.s3, row2.t3);
            u00_2 = tap3(u00_2, k2, row0.v0, row0.s0, row0.t0); u01_2 = tap3(u01_2, k2, row0.v1, row0.s1, row0.t1); u02_2 = tap3(u02_2, k2, row0.v2, row0.s2, row0.t2); u03_2 = tap3(u03_2, k2, row0.v3, row0.s3, row0.t3);
            u10_2 = tap3(u10_2, k2, row1.v0, row1.s0, row1.t0); u11_2 = tap3(u11_2, k2, row1.v1, row1.s1, row1.t1); u12_2 = tap3(u12_2, k2, row1.v2, row1.s2, row1.t2); u13_2 = tap3(u13_2, k2, row1.v3, row1.s3, row1.t3);
            u20_2 = tap3(u20_2, k2, row2.v0, row2.s0, row2.t0); u21_2 = tap3(u21_2, k2, row2.v1, row2.s1, row2.t1); u22_2 = tap3(u22_2, k2, row2.v2, row2.s2, row2.t2); u23_2 = tap3(u23_2, k2, row2.v3, row2.s3, row2.t3);
            u00_3 = tap3(u00_3, k3, row0.v0, row0.s0, row0.t0); u01_3 = tap3(u01_3, k3, row0.v1, row0.s1, row0.t1); u02_3 = tap3(u02_3, k3, row0.v2, row0.s2, row0.t2); u03_3 = tap3(u03_3, k3, row0.v3, row0.s3, row0.t3);
            u10_3 = tap3(u10_3, k3, row1.v0, row1.s0, row1.t0); u11_3 = tap3(u11_3, k3, row1.v1, row1.s1, row1.t1); u12_3 = tap3(u12_3, k3, row1.v2, row1.s2, row1.t2); u13_3 = tap3(u13_3, k3, row1.v3, row1.s3, row1.t3);
            u20_3 = tap3(u20_3, k3, row2.v0, row2.s0, row2.t0); u21_3 = tap3(u21_3, k3, row2.v1, row2.s1, row2.t1); u22_3 = tap3(u22_3, k3, row2.v2, row2.s2, row2.t2); u23_3 = tap3(u23_3, k3, row2.v3, row2.s3, row2.t3);
            u00_4 = tap3(u00_4, k4, row0.v0, row0.s0, row0.t0); u01_4 = tap3(u01_4, k4, row0.v1, row0.s1, row0.t1); u02_4 = tap3(u02_4, k4, row0.v2, row0.s2, row0.t2); u03_4 = tap3(u03_4, k4, row0.v3, row0.s3, row0.t3);
            u10_4 = tap3(u10_4, k4, row1.v0, row1.s0, row1.t0); u11_4 = tap3(u11_4, k4, row1.v1, row1.s1, row1.t1); u12_4 = tap3(u12_4, k4, row1.v2, row1.s2, row1.t2); u13_4 = tap3(u13_4, k4, row1.v3, row1.s3, row1.t3);
            u20_4 = tap3(u20_4, k4, row2.v0, row2.s0, row2.t0); u21_4 = tap3(u21_4, k4, row2.v1, row2.s1, row2.t1); u22_4 = tap3(u22_4, k4, row2.v2, row2.s2, row2.t2); u23_4 = tap3(u23_4, k4, row2.v3, row2.s3, row2.t3);
            u00_5 = tap3(u00_5, k5, row0.v0, row0.s0, row0.t0); u01_5 = tap3(u01_5, k5, row0.v1, row0.s1, row0.t1); u02_5 = tap3(u02_5, k5, row0.v2, row0.s2, row0.t2); u03_5 = tap3(u03_5, k5, row0.v3, row0.s3, row0.t3);
            u10_5 = tap3(u10_5, k5, row1.v0, row1.s0, row1.t0); u11_5 = tap3(u11_5, k5, row1.v1, row1.s1, row1.t1); u12_5 = tap3(u12_5, k5, row1.v2, row1.s2, row1.t2); u13_5 = tap3(u13_5, k5, row1.v3, row1.s3, row1.t3);
            u20_5 = tap3(u20_5, k5, row2.v0, row2.s0, row2.t0); u21_5 = tap3(u21_5, k5, row2.v1, row2.s1, row2.t1); u22_5 = tap3(u22_5, k5, row2.v2, row2.s2, row2.t2); u23_5 = tap3(u23_5, k5, row2.v3, row2.s3, row2.t3);
            u00_6 = tap3(u00_6, k6, row0.v0, row0.s0, row0.t0); u01_6 = tap3(u01_6, k6, row0.v1, row0.s1, row0.t1); u02_6 = tap3(u02_6, k6, row0.v2, row0.s2, row0.t2); u03_6 = tap3(u03_6, k6, row0.v3, row0.s3, row0.t3);
            u10_6 = tap3(u10_6, k6, row1.v0, row1.s0, row1.t0); u11_6 = tap3(u11_6, k6, row1.v1, row1.s1, row1.t1); u12_6 = tap3(u12_6, k6, row1.v2, row1.s2, row1.t2); u13_6 = tap3(u13_6, k6, row1.v3, row1.s3, row1.t3);
            u20_6 = tap3(u20_6, k6, row2.v0, row2.s0, row2.t0); u21_6 = tap3(u21_6, k6, row2.v1, row2.s1, row2.t1); u22_6 = tap3(u22_6, k6, row2.v2, row2.s2, row2.t2); u23_6 = tap3(u23_6, k6, row2.v3, row2.s3, row2.t3);
            u00_7 = tap3(u00_7, k7, row0.v0, row0.s0, row0.t0); u01_7 = tap3(u01_7, k7, row0.v1, row0.s1, row0.t1); u02_7 = tap3(u02_7, k7, row0.v2, row0.s2, row0.t2); u03_7 = tap3(u03_7, k7, row0.v3, row0.s3, row0.t3);
            u10_7 = tap3(u10_7, k7, row1.v0, row1.s0, row1.t0); u11_7 = tap3(u11_7, k7, row1.v1, row1.s1, row1.t1); u12_7 = tap3(u12_7, k7, row1.v2, row1.s2, row1.t2); u13_7 = tap3(u13_7, k7, row1.v3, row1.s3, row1.t3);
            u20_7 = tap3(u20_7, k7, row2.v0, row2.s0, row2.t0); u21_7 = tap3(u21_7, k7, row2.v1, row2.s1, row2.t1); u22_7 = tap3(u22_7, k7, row2.v2, row2.s2, row2.t2); u23_7 = tap3(u23_7, k7, row2.v3, row2.s3, row2.t3);
            u00_8 = tap3(u00_8, k8, row0.v0, row0.s0, row0.t0); u01_8 = tap3(u01_8, k8, row0.v1, row0.s1, row0.t1); u02_8 = tap3(u02_8, k8, row0.v2, row0.s2, row0.t2); u03_8 = tap3(u03_8, k8, row0.v3, row0.s3, row0.t3);
            u10_8 = tap3(u10_8, k8, row1.v0, row1.s0, row1.t0); u11_8 = tap3(u11_8, k8, row1.v1, row1.s1, row1.t1); u12_8 = tap3(u12_8, k8, row1.v2, row1.s2, row1.t2); u13_8 = tap3(u13_8, k8, row1.v3, row1.s3, row1.t3);
            u20_8 = tap3(u20_8, k8, row2.v0, row2.s0, row2.t0); u21_8 = tap3(u21_8, k8, row2.v1, row2.s1, row2.t1); u22_8 = tap3(u22_8, k8, row2.v2, row2.s2, row2.t2); u23_8 = tap3(u23_8, k8, row2.v3, row2.s3, row2.t3);
            u00_9 = tap3(u00_9, k9, row0.v0, row0.s0, row0.t0); u01_9 = tap3(u01_9, k9, row0.v1, row0.s1, row0.t1); u02_9 = tap3(u02_9, k9, row0.v2, row0.s2, row0.t2); u03_9 = tap3(u03_9, k9, row0.v3, row0.s3, row0.t3);
            u10_9 = tap3(u10_9, k9, row1.v0, row1.s0, row1.t0); u11_9 = tap3(u11_9, k9, row1.v1, row1.s1, row1.t1); u12_9 = tap3(u12_9, k9, row1.v2, row1.s2, row1.t2); u13_9 = tap3(u13_9, k9, row1.v3, row1.s3, row1.t3);
            u20_9 = tap3(u20_9, k9, row2.v0, row2.s0, row2.t0); u21_9 = tap3(u21_9, k9, row2.v1, row2.s1, row2.t1); u22_9 = tap3(u22_9, k9, row2.v2, row2.s2, row2.t2); u23_9 = tap3(u23_9, k9, row2.v3, row2.s3, row2.t3);
            u00_10 = tap3(u00_10, k10, row0.v0, row0.s0, row0.t0); u01_10 = tap3(u01_10, k10, row0.v1, row0.s1, row0.t1); u02_10 = tap3(u02_10, k10, row0.v2, row0.s2, row0.t2); u03_10 = tap3(u03_10, k10, row0.v3, row0.s3, row0.t3);
            u10_10 = tap3(u10_10, k10, row1.v0, row1.s0, row1.t0); u11_10 = tap3(u11_10, k10, row1.v1, row1.s1, row1.t1); u12_10 = tap3(u12_10, k10, row1.v2, row1.s2, row1.t2); u13_10 = tap3(u13_10, k10, row1.v3, row1.s3, row1.t3);
            u20_10 = tap3(u20_10, k10, row2.v0, row2.s0, row2.t0); u21_10 = tap3(u21_10, k10, row2.v1, row2.s1, row2.t1); u22_10 = tap3(u22_10, k10, row2.v2, row2.s2, row2.t2); u23_10 = tap3(u23_10, k10, row2.v3, row2.s3, row2.t3);
            u00_11 = tap3(u00_11, k11, row0.v0, row0.s0, row0.t0); u01_11 = tap3(u01_11, k11, row0.v1, row0.s1, row0.t1); u02_11 = tap3(u02_11, k11, row0.v2, row0.s2, row0.t2); u03_11 = tap3(u03_11, k11, row0.v3, row0.s3, row0.t3);
            u10_11 = tap3(u10_11, k11, row1.v0, row1.s0, row1.t0); u11_11 = tap3(u11_11, k11, row1.v1, row1.s1, row1.t1); u12_11 = tap3(u12_11, k11, row1.v2, row1.s2, row1.t2); u13_11 = tap3(u13_11, k11, row1.v3, row1.s3, row1.t3);
            u20_11 = tap3(u20_11, k11, row2.v0, row2.s0, row2.t0); u21_11 = tap3(u21_11, k11, row2.v1, row2.s1, row2.t1); u22_11 = tap3(u22_11, k11, row2.v2, row2.s2, row2.t2); u23_11 = tap3(u23_11, k11, row2.v3, row2.s3, row2.t3);
            row0 = row1;
            row1 = row2;
            wr += wrow_step;
        }
        wr += wnext;
        src += plane;
    }

    store_fwd_row(ch0 + 0, co_base, o0_, ok0, u00_0, u01_0, u02_0, u03_0);
    store_fwd_row(ch0 + 0, co_base, o1_, ok1, u10_0, u11_0, u12_0, u13_0);
    store_fwd_row(ch0 + 0, co_base, o2_, ok2, u20_0, u21_0, u22_0, u23_0);
    store_fwd_row(ch0 + 1, co_base, o0_, ok0, u00_1, u01_1, u02_1, u03_1);
    store_fwd_row(ch0 + 1, co_base, o1_, ok1, u10_1, u11_1, u12_1, u13_1);
    store_fwd_row(ch0 + 1, co_base, o2_, ok2, u20_1, u21_1, u22_1, u23_1);
    store_fwd_row(ch0 + 2, co_base, o0_, ok0, u00_2, u01_2, u02_2, u03_2);
    store_fwd_row(ch0 + 2, co_base, o1_, ok1, u10_2, u11_2, u12_2, u13_2);
    store_fwd_row(ch0 + 2, co_base, o2_, ok2, u20_2, u21_2, u22_2, u23_2);
    store_fwd_row(ch0 + 3, co_base, o0_, ok0, u00_3, u01_3, u02_3, u03_3);
    store_fwd_row(ch0 + 3, co_base, o1_, ok1, u10_3, u11_3, u12_3, u13_3);
    store_fwd_row(ch0 + 3, co_base, o2_, ok2, u20_3, u21_3, u22_3, u23_3);
    store_fwd_row(ch0 + 4, co_base, o0_, ok0, u00_4, u01_4, u02_4, u03_4);
    store_fwd_row(ch0 + 4, co_base, o1_, ok1, u10_4, u11_4, u12_4, u13_4);
    store_fwd_row(ch0 + 4, co_base, o2_, ok2, u20_4, u21_4, u22_4, u23_4);
    store_fwd_row(ch0 + 5, co_base, o0_, ok0, u00_5, u01_5, u02_5, u03_5);
    store_fwd_row(ch0 + 5, co_base, o1_, ok1, u10_5, u11_5, u12_5, u13_5);
    store_fwd_row(ch0 + 5, co_base, o2_, ok2, u20_5, u21_5, u22_5, u23_5);
    store_fwd_row(ch0 + 6, co_base, o0_, ok0, u00_6, u01_6, u02_6, u03_6);
    store_fwd_row(ch0 + 6, co_base, o1_, ok1, u10_6, u11_6, u12_6, u13_6);
    store_fwd_row(ch0 + 6, co_base, o2_, ok2, u20_6, u21_6, u22_6, u23_6);
    store_fwd_row(ch0 + 7, co_base, o0_, ok0, u00_7, u01_7, u02_7, u03_7);
    store_fwd_row(ch0 + 7, co_base, o1_, ok1, u10_7, u11_7, u12_7, u13_7);
    store_fwd_row(ch0 + 7, co_base, o2_, ok2, u20_7, u21_7, u22_7, u23_7);
    store_fwd_row(ch0 + 8, co_base, o0_, ok0, u00_8, u01_8, u02_8, u03_8);
    store_fwd_row(ch0 + 8, co_base, o1_, ok1, u10_8, u11_8, u12_8, u13_8);
    store_fwd_row(ch0 + 8, co_base, o2_, ok2, u20_8, u21_8, u22_8, u23_8);
    store_fwd_row(ch0 + 9, co_base, o0_, ok0, u00_9, u01_9, u02_9, u03_9);
    store_fwd_row(ch0 + 9, co_base, o1_, ok1, u10_9, u11_9, u12_9, u13_9);
    store_fwd_row(ch0 + 9, co_base, o2_, ok2, u20_9, u21_9, u22_9, u23_9);
    store_fwd_row(ch0 + 10, co_base, o0_, ok0, u00_10, u01_10, u02_10, u03_10);
    store_fwd_row(ch0 + 10, co_base, o1_, ok1, u10_10, u11_10, u12_10, u13_10);
    store_fwd_row(ch0 + 10, co_base, o2_, ok2, u20_10, u21_10, u22_10, u23_10);
    store_fwd_row(ch0 + 11, co_base, o0_, ok0, u00_11, u01_11, u02_11, u03_11);
    store_fwd_row(ch0 + 11, co_base, o1_, ok1, u10_11, u11_11, u12_11, u13_11);
    store_fwd_row(ch0 + 11, co_base, o2_, ok2, u20_11, u21_11, u22_11, u23_11);
}

// ---------------------------------------------------------------------------------------------
// Backward to the input: dx[n, ci, iy, ix] = sum over (co in ci's group, ky, kx) with
// iy + pad_h - ky*dil_h = oy*stride_h for an output row 0 <= oy < Ho (and likewise for x) of
// dy[n, co, oy, ox] w[co, ci - g*Cin_g, ky, kx]. The transposed convolution, as a gather.

// Direct: one thread per dx element; the divisibility tests sit outside the channel loop.
@compute @workgroup_size(WG)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = i32(flat_index(gid, nwg));
    if (i >= p.threads) { return; }
    // Columns in phase-major order (x = phase + stride_w * j, j fastest): neighbouring threads
    // share x's phase, so they skip the same taps; lavapipe then runs a skipped tap's channel
    // loop once, masked, instead of cout_g times for lanes of the other phases.
    let wq = (p.w + p.stride_w - 1) / p.stride_w;
    let k = i % (p.stride_w * wq);
    let ix = (k / wq) + p.stride_w * (k % wq);
    if (ix >= p.w) { return; }
    var t = i / (p.stride_w * wq);
    let iy = t % p.h;
    t = t / p.h;
    let ci = t % p.cin;
    let n = t / p.cin;
    let g = ci / p.cin_g;
    let cl = ci % p.cin_g;
    let howo = p.ho * p.wo;
    let khw = p.kh * p.kw;
    let dyg = (n * p.cout + g * p.cout_g) * howo;
    let wg = (g * p.cout_g * p.cin_g + cl) * khw;
    let wstep = p.cin_g * khw;
    var acc = 0.0;
    for (var ky = 0; ky < p.kh; ky++) {
        let ty = iy + p.pad_h - ky * p.dil_h;
        if (ty < 0 || ty % p.stride_h != 0) { continue; }
        let oy = ty / p.stride_h;
        if (oy >= p.ho) { continue; }
        for (var kx = 0; kx < p.kw; kx++) {
            let tx = ix + p.pad_w - kx * p.dil_w;
            if (tx < 0 || tx % p.stride_w != 0) { continue; }
            let ox = tx / p.stride_w;
            if (ox >= p.wo) { continue; }
            var di = dyg + oy * p.wo + ox;
            var wi = wg + ky * p.kw + kx;
            for (var c = 0; c < p.cout_g; c++) {
                acc = fma(dy[di], wt[wi], acc);
                di += howo;
                wi += wstep;
            }
        }
    }
    store_dx1(((n * p.cin + ci) * p.h + iy) * p.w + ix, acc);
}

// Tiled: TB input channels of one group x PB positions of the flattened N*H*W axis.
// Per (ky, kx) each position's source output pixel and validity (stride divisibility, range)
// is computed once; the inner loop over the group's output channels only adds plane strides.
@compute @workgroup_size(TWG)
fn conv2d_backward_input_tiled(@builtin(global_invocation_id) gid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = tiled_index(gid, nwg);
    if (t >= p.threads) { return; }
    let cb = t / p.blocks_p;
    let g = cb / p.blocks_c;
    let c0 = (cb % p.blocks_c) * TB;
    let howo = p.ho * p.wo;
    let hw = p.h * p.w;
    let khw = p.kh * p.kw;
    let np = p.batch * hw;

    let pa = vec4<i32>((t % p.blocks_p) * PB) + vec4<i32>(0, 1, 2, 3);
    let pb = pa + vec4<i32>(4);
    let va = pa < vec4<i32>(np);
    let vb = pb < vec4<i32>(np);
    let qa = min(pa, vec4<i32>(np - 1));
    let qb = min(pb, vec4<i32>(np - 1));
    let na = qa / hw;
    let nb = qb / hw;
    let spa = qa % hw;
    let spb = qb % hw;
    let dga = (na * p.cout + g * p.cout_g) * howo;
    let dgb = (nb * p.cout + g * p.cout_g) * howo;
    let ty0a = spa / p.w + vec4<i32>(p.pad_h);
    let ty0b = spb / p.w + vec4<i32>(p.pad_h);
    let tx0a = spa % p.w + vec4<i32>(p.pad_w);
    let tx0b = spb % p.w + vec4<i32>(p.pad_w);

    // w[co, cl, ky, kx] with co = g*Cout_g + c: ((co*Cin_g + cl)*Kh + ky)*Kw + kx.
    let last = p.cin_g - 1;
    let wg = g * p.cout_g * p.cin_g * khw;
    let w0 = wg + min(c0 + 0, last) * khw;
    let w1 = wg + min(c0 + 1, last) * khw;
    let w2 = wg + min(c0 + 2, last) * khw;
    let w3 = wg + min(c0 + 3, last) * khw;
    let w4 = wg + min(c0 + 4, last) * khw;
    let w5 = wg + min(c0 + 5, last) * khw;
    let w6 = wg + min(c0 + 6, last) * khw;
    let w7 = wg + min(c0 + 7, last) * khw;
    let wstep = p.cin_g * khw;
    let sh = vec4<i32>(p.stride_h);
    let sw = vec4<i32>(p.stride_w);

    var a0 = vec4<f32>(0.0); var b0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var b4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);

    for (var ky = 0; ky < p.kh; ky++) {
        let tya = ty0a - vec4<i32>(ky * p.dil_h);
        let tyb = ty0b - vec4<i32>(ky * p.dil_h);
        let oya = tya / sh;
        let oyb = tyb / sh;
        let oka_y = (tya >= vec4<i32>(0)) & (oya * sh == tya) & (oya < vec4<i32>(p.ho));
        let okb_y = (tyb >= vec4<i32>(0)) & (oyb * sh == tyb) & (oyb < vec4<i32>(p.ho));
        for (var kx = 0; kx < p.kw; kx++) {
            let txa = tx0a - vec4<i32>(kx * p.dil_w);
            let txb = tx0b - vec4<i32>(kx * p.dil_w);
            let oxa = txa / sw;
            let oxb = txb / sw;
            let oka = oka_y & (txa >= vec4<i32>(0)) & (oxa * sw == txa)
                & (oxa < vec4<i32>(p.wo));
            let okb = okb_y & (txb >= vec4<i32>(0)) & (oxb * sw == txb)
                & (oxb < vec4<i32>(p.wo));
            var ia = select(dga, dga + oya * p.wo + oxa, oka);
            var ib = select(dgb, dgb + oyb * p.wo + oxb, okb);
            var r = ky * p.kw + kx;
            for (var c = 0; c < p.cout_g; c++) {
                let da = gather_dy(ia, oka);
                let db = gather_dy(ib, okb);
                let k0 = vec4<f32>(wt[w0 + r]);
                let k1 = vec4<f32>(wt[w1 + r]);
                let k2 = vec4<f32>(wt[w2 + r]);
                let k3 = vec4<f32>(wt[w3 + r]);
                let k4 = vec4<f32>(wt[w4 + r]);
                let k5 = vec4<f32>(wt[w5 + r]);
                let k6 = vec4<f32>(wt[w6 + r]);
                let k7 = vec4<f32>(wt[w7 + r]);
                a0 = fma(k0, da, a0); b0 = fma(k0, db, b0);
                a1 = fma(k1, da, a1); b1 = fma(k1, db, b1);
                a2 = fma(k2, da, a2); b2 = fma(k2, db, b2);
                a3 = fma(k3, da, a3); b3 = fma(k3, db, b3);
                a4 = fma(k4, da, a4); b4 = fma(k4, db, b4);
                a5 = fma(k5, da, a5); b5 = fma(k5, db, b5);
                a6 = fma(k6, da, a6); b6 = fma(k6, db, b6);
                a7 = fma(k7, da, a7); b7 = fma(k7, db, b7);
                ia += vec4<i32>(howo);
                ib += vec4<i32>(howo);
                r += wstep;
            }
        }
    }

    let xa = na * (p.cin * hw) + spa;
    let xb = nb * (p.cin * hw) + spb;
    let cg = g * p.cin_g;
    store_bwi(c0 + 0, cg, xa, xb, va, vb, a0, b0);
    store_bwi(c0 + 1, cg, xa, xb, va, vb, a1, b1);
    store_bwi(c0 + 2, cg, xa, xb, va, vb, a2, b2);
    store_bwi(c0 + 3, cg, xa, xb, va, vb, a3, b3);
    store_bwi(c0 + 4, cg, xa, xb, va, vb, a4, b4);
    store_bwi(c0 + 5, cg, xa, xb, va, vb, a5, b5);
    store_bwi(c0 + 6, cg, xa, xb, va, vb, a6, b6);
    store_bwi(c0 + 7, cg, xa, xb, va, vb, a7, b7);
}

fn store_bwi(c: i32, cg: i32, xa: vec4<i32>, xb: vec4<i32>, va: vec4<bool>, vb: vec4<bool>,
             a: vec4<f32>, b: vec4<f32>) {
    if (c >= p.cin_g) { return; }
    let off = vec4<i32>((cg + c) * p.h * p.w);
    store_dx(xa + off, a, va);
    store_dx(xb + off, b, vb);
}

// Row-block variant of the backward to the input, for Kw == 3 with unit stride and dilation:
// the forward row-block scheme run on dy with the kernel flipped. Input row iy0 + y takes tap
// ky from gradient row iy0 + y + pad_h - ky, so walking ky downwards (step kk = Kh-1-ky) the
// window row y is gradient row iy0 + pad_h - (Kh-1) + y + kk; along W, column ix takes tap kx
// from gradient column ix + pad_w - kx, i.e. the reversed taps of columns ix + pad_w - 2 + j.
@compute @workgroup_size(TWG)
fn conv2d_backward_input_rows(@builtin(global_invocation_id) gid: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = tiled_index(gid, nwg);
    if (t >= p.threads) { return; }
    let out_h = p.h;
    let out_w = p.w;
    let blocks = (out_h + RY - 1) / RY;
    let seg = t % p.segs;
    let t2 = t / p.segs;
    let rb = t2 % (p.batch * blocks);
    let cb = t2 / (p.batch * blocks);
    let g = cb / p.blocks_c;
    let ch0 = (cb % p.blocks_c) * RCB;
    let n = rb / blocks;
    let r0 = (rb % blocks) * RY;
    let c0 = seg * RW;
    let win = row_window(c0 + p.pad_w - 2, p.wo);
    let first = r0 + p.pad_h - (p.kh - 1);
    let last = p.cin_g - 1;
    let kh3 = p.kh * 3;
    let wg = g * p.cout_g * p.cin_g * kh3;
    let w0 = wg + min(ch0 + 0, last) * kh3;
    let w1 = wg + min(ch0 + 1, last) * kh3;
    let w2 = wg + min(ch0 + 2, last) * kh3;
    let w3 = wg + min(ch0 + 3, last) * kh3;
    let w4 = wg + min(ch0 + 4, last) * kh3;
    let w5 = wg + min(ch0 + 5, last) * kh3;
    let w6 = wg + min(ch0 + 6, last) * kh3;
    let w7 = wg + min(ch0 + 7, last) * kh3;
    // Weight rows run from ky = Kh-1 down to -1; the next output channel starts Cin_g*Kh*3 on.
    let wnext = p.cin_g * kh3 + kh3;
    let wrow_step = -3;
    var wr = kh3 - 3;
    let plane = p.ho * p.wo;
    var src = (n * p.cout + g * p.cout_g) * plane;
    let channels = p.cout_g;

    let ok = row_store_mask(c0, out_w);
    let none = array<vec4<bool>, 4>(vec4<bool>(false), vec4<bool>(false), vec4<bool>(false),
                                    vec4<bool>(false));
    let o0 = vec4<i32>((n * p.cin * out_h + r0) * out_w + c0) + vec4<i32>(0, 1, 2, 3);
    let cg = g * p.cin_g;
    var ok0 = ok;
    if (r0 + 0 >= out_h) { ok0 = none; }
    let o0_ = o0 + vec4<i32>(0 * out_w);
    var ok1 = ok;
    if (r0 + 1 >= out_h) { ok1 = none; }
    let o1_ = o0 + vec4<i32>(1 * out_w);
    var ok2 = ok;
    if (r0 + 2 >= out_h) { ok2 = none; }
    let o2_ = o0 + vec4<i32>(2 * out_w);

    let i0_0 = load_dx_row(ch0 + 0, cg, o0_, ok0);
    var u00_0 = i0_0[0]; var u01_0 = i0_0[1]; var u02_0 = i0_0[2]; var u03_0 = i0_0[3];
    let i1_0 = load_dx_row(ch0 + 0, cg, o1_, ok1);
    var u10_0 = i1_0[0]; var u11_0 = i1_0[1]; var u12_0 = i1_0[2]; var u13_0 = i1_0[3];
    let i2_0 = load_dx_row(ch0 + 0, cg, o2_, ok2);
    var u20_0 = i2_0[0]; var u21_0 = i2_0[1]; var u22_0 = i2_0[2]; var u23_0 = i2_0[3];
    let i0_1 = load_dx_row(ch0 + 1, cg, o0_, ok0);
    var u00_1 = i0_1[0]; var u01_1 = i0_1[1]; var u02_1 = i0_1[2]; var u03_1 = i0_1[3];
    let i1_1 = load_dx_row(ch0 + 1, cg, o1_, ok1);
    var u10_1 = i1_1[0]; var u11_1 = i1_1[1]; var u12_1 = i1_1[2]; var u13_1 = i1_1[3];
    let i2_1 = load_dx_row(ch0 + 1, cg, o2_, ok2);
    var u20_1 = i2_1[0]; var u21_1 = i2_1[1]; var u22_1 = i2_1[2]; var u23_1 = i2_1[3];
    let i0_2 = load_dx_row(ch0 + 2, cg, o0_, ok0);
    var u00_2 = i0_2[0]; var u01_2 = i0_2[1]; var u02_2 = i0_2[2]; var u03_2 = i0_2[3];
    let i1_2 = load_dx_row(ch0 + 2, cg, o1_, ok1);
    var u10_2 = i1_2[0]; var u11_2 = i1_2[1]; var u12_2 = i1_2[2]; var u13_2 = i1_2[3];
    let i2_2 = load_dx_row(ch0 + 2, cg, o2_, ok2);
    var u20_2 = i2_2[0]; var u21_2 = i2_2[1]; var u22_2 = i2_2[2]; var u23_2 = i2_2[3];
    let i0_3 = load_dx_row(ch0 + 3, cg, o0_, ok0);
    var u00_3 = i0_3[0]; var u01_3 = i0_3[1]; var u02_3 = i0_3[2]; var u03_3 = i0_3[3];
    let i1_3 = load_dx_row(ch0 + 3, cg, o1_, ok1);
    var u10_3 = i1_3[0]; var u11_3 = i1_3[1]; var u12_3 = i1_3[2]; var u13_3 = i1_3[3];
    let i2_3 = load_dx_row(ch0 + 3, cg, o2_, ok2);
    var u20_3 = i2_3[0]; var u21_3 = i2_3[1]; var u22_3 = i2_3[2]; var u23_3 = i2_3[3];
    let i0_4 = load_dx_row(ch0 + 4, cg, o0_, ok0);
    var u00_4 = i0_4[0]; var u01_4 = i0_4[1]; var u02_4 = i0_4[2]; var u03_4 = i0_4[3];
    let i1_4 = load_dx_row(ch0 + 4, cg, o1_, ok1);
    var u10_4 = i1_4[0]; var u11_4 = i1_4[1]; var u12_4 = i1_4[2]; var u13_4 = i1_4[3];
    let i2_4 = load_dx_row(ch0 + 4, cg, o2_, ok2);
    var u20_4 = i2_4[0]; var u21_4 = i2_4[1]; var u22_4 = i2_4[2]; var u23_4 = i2_4[3];
    let i0_5 = load_dx_row(ch0 + 5, cg, o0_, ok0);
    var u00_5 = i0_5[0]; var u01_5 = i0_5[1]; var u02_5 = i0_5[2]; var u03_5 = i0_5[3];
    let i1_5 = load_dx_row(ch0 + 5, cg, o1_, ok1);
    var u10_5 = i1_5[0]; var u11_5 = i1_5[1]; var u12_5 = i1_5[2]; var u13_5 = i1_5[3];
    let i2_5 = load_dx_row(ch0 + 5, cg, o2_, ok2);
    var u20_5 = i2_5[0]; var u21_5 = i2_5[1]; var u22_5 = i2_5[2]; var u23_5 = i2_5[3];
    let i0_6 = load_dx_row(ch0 + 6, cg, o0_, ok0);
    var u00_6 = i0_6[0]; var u01_6 = i0_6[1]; var u02_6 = i0_6[2]; var u03_6 = i0_6[3];
    let i1_6 = load_dx_row(ch0 + 6, cg, o1_, ok1);
    var u10_6 = i1_6[0]; var u11_6 = i1_6[1]; var u12_6 = i1_6[2]; var u13_6 = i1_6[3];
    let i2_6 = load_dx_row(ch0 + 6, cg, o2_, ok2);
    var u20_6 = i2_6[0]; var u21_6 = i2_6[1]; var u22_6 = i2_6[2]; var u23_6 = i2_6[3];
    let i0_7 = load_dx_row(ch0 + 7, cg, o0_, ok0);
    var u00_7 = i0_7[0]; var u01_7 = i0_7[1]; var u02_7 = i0_7[2]; var u03_7 = i0_7[3];
    let i1_7 = load_dx_row(ch0 + 7, cg, o1_, ok1);
    var u10_7 = i1_7[0]; var u11_7 = i1_7[1]; var u12_7 = i1_7[2]; var u13_7 = i1_7[3];
    let i2_7 = load_dx_row(ch0 + 7, cg, o2_, ok2);
    var u20_7 = i2_7[0]; var u21_7 = i2_7[1]; var u22_7 = i2_7[2]; var u23_7 = i2_7[3];

    for (var c = 0; c < channels; c++) {
        var row0 = load_dy_row_at(src, first + 0, win);
        var row1 = load_dy_row_at(src, first + 1, win);
        for (var kk = 0; kk < p.kh; kk++) {
            let row2 = load_dy_row_at(src, first + kk + 2, win);
            let k0 = wrow3(w0 + wr).zyx;
            let k1 = wrow3(w1 + wr).zyx;
            let k2 = wrow3(w2 + wr).zyx;
            let k3 = wrow3(w3 + wr).zyx;
            let k4 = wrow3(w4 + wr).zyx;
            let k5 = wrow3(w5 + wr).zyx;
            let k6 = wrow3(w6 + wr).zyx;
            let k7 = wrow3(w7 + wr).zyx;
            u00_0 = tap3(u00_0, k0, row0.v0, row0.s0, row0.t0); u01_0 = tap3(u01_0, k0, row0.v1, row0.s1, row0.t1); u02_0 = tap3(u02_0, k0, row0.v2, row0.s2, row0.t2); u03_0 = tap3(u03_0, k0, row0.v3, row0.s3, row0.t3);
            u10_0 = tap3(u10_0, k0, row1.v0, row1.s0, row1.t0); u11_0 = tap3(u11_0, k0, row1.v1, row1.s1, row1.t1); u12_0 = tap3(u12_0, k0, row1.v2, row1.s2, row1.t2); u13_0 = tap3(u13_0, k0, row1.v3, row1.s3, row1.t3);
            u20_0 = tap3(u20_0, k0, row2.v0, row2.s0, row2.t0); u21_0 = tap3(u21_0, k0, row2.v1, row2.s1, row2.t1); u22_0 = tap3(u22_0, k0, row2.v2, row2.s2, row2.t2); u23_0 = tap3(u23_0, k0, row2.v3, row2.s3, row2.t3);
            u00_1 = tap3(u00_1, k1, row0.v0, row0.s0, row0.t0); u01_1 = tap3(u01_1, k1, row0.v1, row0.s1, row0.t1); u02_1 = tap3(u02_1, k1, row0.v2, row0.s2, row0.t2); u03_1 = tap3(u03_1, k1, row0.v3, row0.s3, row0.t3);
            u10_1 = tap3(u10_1, k1, row1.v0, row1.s0, row1.t0); u11_1 = tap3(u11_1, k1, row1.v1, row1.s1, row1.t1); u12_1 = tap3(u12_1, k1, row1.v2, row1.s2, row1.t2); u13_1 = tap3(u13_1, k1, row1.v3, row1.s3, row1.t3);
            u20_1 = tap3(u20_1, k1, row2.v0, row2.s0, row2.t0); u21_1 = tap3(u21_1, k1, row2.v1, row2.s1, row2.t1); u22_1 = tap3(u22_1, k1, row2.v2, row2.s2, row2.t2); u23_1 = tap3(u23_1, k1, row2.v3, row2.s3, row2.t3);
            u00_2 = tap3(u00_2, k2, row0.v0, row0.s0, row0.t0); u01_2 = tap3(u01_2, k2, row0.v1, row0.s1, row0.t1); u02_2 = tap3(u02_2, k2, row0.v2, row0.s2, row0.t2); u03_2 = tap3(u03_2, k2, row0.v3, row0.s3, row0.t3);
            u10_2 = tap3(u10_2, k2, row1.v0, row1.s0, row1.t0); u11_2 = tap3(u11_2, k2, row1.v1, row1.s1, row1.t1); u12_2 = tap3(u12_2, k2, row1.v2, row1.s2, row1.t2); u13_2 = tap3(u13_2, k2, row1.v3, row1.s3, row1.t3);
            u20_2 = tap3(u20_2, k2, row2.v0, row2.s0, row2.t0); u21_2 = tap3(u21_2, k2, row2.v1, row2.s1, row2.t1); u22_2 = tap3(u22_2, k2, row2.v2, row2.s2, row2.t2); u23_2 = tap3(u23_2, k2, row2.v3, row2.s3, row2.t3);
            u00_3 = tap3(u00_3, k3, row0.v0, row0.s0, row0.t0); u01_3 = tap3(u01_3, k3, row0.v1, row0.s1, row0.t1); u02_3 = tap3(u02_3, k3, row0.v2, row0.s2, row0.t2); u03_3 = tap3(u03_3, k3, row0.v3, row0.s3, row0.t3);
            u10_3 = tap3(u10_3, k3, row1.v0, row1.s0, row1.t0); u11_3 = tap3(u11_3, k3, row1.v1, row1.s1, row1.t1); u12_3 = tap3(u12_3, k3, row1.v2, row1.s2, row1.t2); u13_3 = tap3(u13_3, k3, row1.v3, row1.s3, row1.t3);
            u20_3 = tap3(u20_3, k3, row2.v0, row2.s0, row2.t0); u21_3 = tap3(u21_3, k3, row2.v1, row2.s1, row2.t1); u22_3 = tap3(u22_3, k3, row2.v2, row2.s2, row2.t2); u23_3 = tap3(u23_3, k3, row2.v3, row2.s3, row2.t3);
            u00_4 = tap3(u00_4, k4, row0.v0, row0.s0, row0.t0); u01_4 = tap3(u01_4, k4, row0.v1, row0.s1, row0.t1); u02_4 = tap3(u02_4, k4, row0.v2, row0.s2, row0.t2); u03_4 = tap3(u03_4, k4, row0.v3, row0.s3, row0.t3);
            u10_4 = tap3(u10_4, k4, row1.v0, row1.s0, row1.t0); u11_4 = tap3(u11_4, k4, row1.v1, row1.s1, row1.t1); u12_4 = tap3(u12_4, k4, row1.v2, row1.s2, row1.t2); u13_4 = tap3(u13_4, k4, row1.v3, row1.s3, row1.t3);
            u20_4 = tap3(u20_4, k4, row2.v0, row2.s0, row2.t0); u21_4 = tap3(u21_4, k4, row2.v1, row2.s1, row2.t1); u22_4 = tap3(u22_4, k4, row2.v2, row2.s2, row2.t2); u23_4 = tap3(u23_4, k4, row2.v3, row2.s3, row2.t3);
            u00_5 = tap3(u00_5, k5, row0.v0, row0.s0, row0.t0); u01_5 = tap3(u01_5, k5, row0.v1, row0.s1, row0.t1); u02_5 = tap3(u02_5, k5, row0.v2, row0.s2, row0.t2); u03_5 = tap3(u03_5, k5, row0.v3, row0.s3, row0.t3);
            u10_5 = tap3(u10_5, k5, row1.v0, row1.s0, row1.t0); u11_5 = tap3(u11_5, k5, row1.v1, row1.s1, row1.t1); u12_5 = tap3(u12_5, k5, row1.v2, row1.s2, row1.t2); u13_5 = tap3(u13_5, k5, row1.v3, row1.s3, row1.t3);
            u20_5 = tap3(u20_5, k5, row2.v0, row2.s0, row2.t0); u21_5 = tap3(u21_5, k5, row2.v1, row2.s1, row2.t1); u22_5 = tap3(u22_5, k5, row2.v2, row2.s2, row2.t2); u23_5 = tap3(u23_5, k5, row2.v3, row2.s3, row2.t3);
            u00_6 = tap3(u00_6, k6, row0.v0, row0.s0, row0.t0); u01_6 = tap3(u01_6, k6, row0.v1, row0.s1, row0.t1); u02_6 = tap3(u02_6, k6, row0.v2, row0.s2, row0.t2); u03_6 = tap3(u03_6, k6, row0.v3, row0.s3, row0.t3);
            u10_6 = tap3(u10_6, k6, row1.v0, row1.s0, row1.t0); u11_6 = tap3(u11_6, k6, row1.v1, row1.s1, row1.t1); u12_6 = tap3(u12_6, k6, row1.v2, row1.s2, row1.t2); u13_6 = tap3(u13_6, k6, row1.v3, row1.s3, row1.t3);
            u20_6 = tap3(u20_6, k6, row2.v0, row2.s0, row2.t0); u21_6 = tap3(u21_6, k6, row2.v1, row2.s1, row2.t1); u22_6 = tap3(u22_6, k6, row2.v2, row2.s2, row2.t2); u23_6 = tap3(u23_6, k6, row2.v3, row2.s3, row2.t3);
            u00_7 = tap3(u00_7, k7, row0.v0, row0.s0, row0.t0); u01_7 = tap3(u01_7, k7, row0.v1, row0.s1, row0.t1); u02_7 = tap3(u02_7, k7, row0.v2, row0.s2, row0.t2); u03_7 = tap3(u03_7, k7, row0.v3, row0.s3, row0.t3);
            u10_7 = tap3(u10_7, k7, row1.v0, row1.s0, row1.t0); u11_7 = tap3(u11_7, k7, row1.v1, row1.s1, row1.t1); u12_7 = tap3(u12_7, k7, row1.v2, row1.s2, row1.t2); u13_7 = tap3(u13_7, k7, row1.v3, row1.s3, row1.t3);
            u20_7 = tap3(u20_7, k7, row2.v0, row2.s0, row2.t0); u21_7 = tap3(u21_7, k7, row2.v1, row2.s1, row2.t1); u22_7 = tap3(u22_7, k7, row2.v2, row2.s2, row2.t2); u23_7 = tap3(u23_7, k7, row2.v3, row2.s3, row2.t3);
            row0 = row1;
            row1 = row2;
            wr += wrow_step;
        }
        wr += wnext;
        src += plane;
    }

    store_bwi_row(ch0 + 0, cg, o0_, ok0, u00_0, u01_0, u02_0, u03_0);
    store_bwi_row(ch0 + 0, cg, o1_, ok1, u10_0, u11_0, u12_0, u13_0);
    store_bwi_row(ch0 + 0, cg, o2_, ok2, u20_0, u21_0, u22_0, u23_0);
    store_bwi_row(ch0 + 1, cg, o0_, ok0, u00_1, u01_1, u02_1, u03_1);
    store_bwi_row(ch0 + 1, cg, o1_, ok1, u10_1, u11_1, u12_1, u13_1);
    store_bwi_row(ch0 + 1, cg, o2_, ok2, u20_1, u21_1, u22_1, u23_1);
    store_bwi_row(ch0 + 2, cg, o0_, ok0, u00_2, u01_2, u02_2, u03_2);
    store_bwi_row(ch0 + 2, cg, o1_, ok1, u10_2, u11_2, u12_2, u13_2);
    store_bwi_row(ch0 + 2, cg, o2_, ok2, u20_2, u21_2, u22_2, u23_2);
    store_bwi_row(ch0 + 3, cg, o0_, ok0, u00_3, u01_3, u02_3, u03_3);
    store_bwi_row(ch0 + 3, cg, o1_, ok1, u10_3, u11_3, u12_3, u13_3);
    store_bwi_row(ch0 + 3, cg, o2_, ok2, u20_3, u21_3, u22_3, u23_3);
    store_bwi_row(ch0 + 4, cg, o0_, ok0, u00_4, u01_4, u02_4, u03_4);
    store_bwi_row(ch0 + 4, cg, o1_, ok1, u10_4, u11_4, u12_4, u13_4);
    store_bwi_row(ch0 + 4, cg, o2_, ok2, u20_4, u21_4, u22_4, u23_4);
    store_bwi_row(ch0 + 5, cg, o0_, ok0, u00_5, u01_5, u02_5, u03_5);
    store_bwi_row(ch0 + 5, cg, o1_, ok1, u10_5, u11_5, u12_5, u13_5);
    store_bwi_row(ch0 + 5, cg, o2_, ok2, u20_5, u21_5, u22_5, u23_5);
    store_bwi_row(ch0 + 6, cg, o0_, ok0, u00_6, u01_6, u02_6, u03_6);
    store_bwi_row(ch0 + 6, cg, o1_, ok1, u10_6, u11_6, u12_6, u13_6);
    store_bwi_row(ch0 + 6, cg, o2_, ok2, u20_6, u21_6, u22_6, u23_6);
    store_bwi_row(ch0 + 7, cg, o0_, ok0, u00_7, u01_7, u02_7, u03_7);
    store_bwi_row(ch0 + 7, cg, o1_, ok1, u10_7, u11_7, u12_7, u13_7);
    store_bwi_row(ch0 + 7, cg, o2_, ok2, u20_7, u21_7, u22_7, u23_7);
}

// ---------------------------------------------------------------------------------------------
// Backward to the weight: dw[co, ci, ky, kx] = sum_{n, oy, ox} dy[n, co, oy, ox]
// x[n, g*Cin_g + ci, oy*stride_h - pad_h + ky*dil_h, ox*stride_w - pad_w + kx*dil_w].
// Seen as a matrix product dW[co, r] = sum_q dY[co, q] Xcol[r, q] over positions q, with
// r = (ci*Kh + ky)*Kw + kx the flat index of a weight row. Split s of `splits` covers positions
// [s*chunk, (s+1)*chunk), so small weights still give enough threads.

// Direct: one thread per (split, weight element).
@compute @workgroup_size(WG)
fn conv2d_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = i32(flat_index(gid, nwg));
    if (i >= p.threads) { return; }
    let khw = p.kh * p.kw;
    let k = p.cin_g * khw;
    let m = p.cout * k;
    let e = i % m;
    let s = i / m;
    let co = e / k;
    let r = e % k;
    let ci = r / khw;
    let kx = r % p.kw;
    let ky = (r % khw) / p.kw;
    let g = co / p.cout_g;
    let howo = p.ho * p.wo;
    let hw = p.h * p.w;
    let np = p.batch * howo;
    let start = s * p.chunk;
    let end = min(start + p.chunk, np);
    var n = start / howo;
    var oy = (start % howo) / p.wo;
    var ox = start % p.wo;
    let xc = (g * p.cin_g + ci) * hw;
    let kyo = ky * p.dil_h - p.pad_h;
    let kxo = kx * p.dil_w - p.pad_w;
    var acc = 0.0;
    for (var q = start; q < end; q++) {
        let iy = oy * p.stride_h + kyo;
        let ix = ox * p.stride_w + kxo;
        if (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w) {
            let xv = x[n * p.cin * hw + xc + iy * p.w + ix];
            acc = fma(dy[(n * p.cout + co) * howo + oy * p.wo + ox], xv, acc);
        }
        ox += 1;
        if (ox == p.wo) {
            ox = 0;
            oy += 1;
            if (oy == p.ho) {
                oy = 0;
                n += 1;
            }
        }
    }
    store_part1(s * m + e, acc);
}

// Tiled: TB output channels of one group x PB reduction indices r, over one split's positions.
// Per position: TB dy loads and PB x loads feed TB*PB FMAs.
// Thread t: r block t % blocks_r, channel block (t / blocks_r) % (groups*blocks_c), split after.
@compute @workgroup_size(TWG)
fn conv2d_backward_weight_tiled(@builtin(global_invocation_id) gid: vec3<u32>,
                                @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = tiled_index(gid, nwg);
    if (t >= p.threads) { return; }
    let khw = p.kh * p.kw;
    let k = p.cin_g * khw;
    let m = p.cout * k;
    let rb = t % p.blocks_r;
    let t2 = t / p.blocks_r;
    let cblocks = p.groups * p.blocks_c;
    let cb = t2 % cblocks;
    let s = t2 / cblocks;
    let g = cb / p.blocks_c;
    let c0 = (cb % p.blocks_c) * TB;
    let co_base = g * p.cout_g;
    let howo = p.ho * p.wo;
    let hw = p.h * p.w;
    let np = p.batch * howo;

    let ra = vec4<i32>(rb * PB) + vec4<i32>(0, 1, 2, 3);
    let rbv = ra + vec4<i32>(4);
    let vra = ra < vec4<i32>(k);
    let vrb = rbv < vec4<i32>(k);
    let qa = min(ra, vec4<i32>(k - 1));
    let qb = min(rbv, vec4<i32>(k - 1));
    let xca = (vec4<i32>(g * p.cin_g) + qa / khw) * hw;
    let xcb = (vec4<i32>(g * p.cin_g) + qb / khw) * hw;
    let kyoa = ((qa % khw) / p.kw) * p.dil_h - vec4<i32>(p.pad_h);
    let kyob = ((qb % khw) / p.kw) * p.dil_h - vec4<i32>(p.pad_h);
    let kxoa = (qa % p.kw) * p.dil_w - vec4<i32>(p.pad_w);
    let kxob = (qb % p.kw) * p.dil_w - vec4<i32>(p.pad_w);

    let last = p.cout_g - 1;
    let d0 = (co_base + min(c0 + 0, last)) * howo;
    let d1 = (co_base + min(c0 + 1, last)) * howo;
    let d2 = (co_base + min(c0 + 2, last)) * howo;
    let d3 = (co_base + min(c0 + 3, last)) * howo;
    let d4 = (co_base + min(c0 + 4, last)) * howo;
    let d5 = (co_base + min(c0 + 5, last)) * howo;
    let d6 = (co_base + min(c0 + 6, last)) * howo;
    let d7 = (co_base + min(c0 + 7, last)) * howo;

    var a0 = vec4<f32>(0.0); var b0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var b4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);

    let start = s * p.chunk;
    let end = min(start + p.chunk, np);
    var n = start / howo;
    var oy = (start % howo) / p.wo;
    var ox = start % p.wo;
    for (var q = start; q < end; q++) {
        let iya = vec4<i32>(oy * p.stride_h) + kyoa;
        let iyb = vec4<i32>(oy * p.stride_h) + kyob;
        let ixa = vec4<i32>(ox * p.stride_w) + kxoa;
        let ixb = vec4<i32>(ox * p.stride_w) + kxob;
        let oka = in_range(iya, p.h) & in_range(ixa, p.w);
        let okb = in_range(iyb, p.h) & in_range(ixb, p.w);
        let xn = vec4<i32>(n * p.cin * hw);
        let xa = gather_x(select(vec4<i32>(0), xn + xca + iya * p.w + ixa, oka), oka);
        let xb = gather_x(select(vec4<i32>(0), xn + xcb + iyb * p.w + ixb, okb), okb);
        let dq = n * p.cout * howo + oy * p.wo + ox;
        let g0 = vec4<f32>(dy[dq + d0]);
        let g1 = vec4<f32>(dy[dq + d1]);
        let g2 = vec4<f32>(dy[dq + d2]);
        let g3 = vec4<f32>(dy[dq + d3]);
        let g4 = vec4<f32>(dy[dq + d4]);
        let g5 = vec4<f32>(dy[dq + d5]);
        let g6 = vec4<f32>(dy[dq + d6]);
        let g7 = vec4<f32>(dy[dq + d7]);
        a0 = fma(g0, xa, a0); b0 = fma(g0, xb, b0);
        a1 = fma(g1, xa, a1); b1 = fma(g1, xb, b1);
        a2 = fma(g2, xa, a2); b2 = fma(g2, xb, b2);
        a3 = fma(g3, xa, a3); b3 = fma(g3, xb, b3);
        a4 = fma(g4, xa, a4); b4 = fma(g4, xb, b4);
        a5 = fma(g5, xa, a5); b5 = fma(g5, xb, b5);
        a6 = fma(g6, xa, a6); b6 = fma(g6, xb, b6);
        a7 = fma(g7, xa, a7); b7 = fma(g7, xb, b7);
        ox += 1;
        if (ox == p.wo) {
            ox = 0;
            oy += 1;
            if (oy == p.ho) {
                oy = 0;
                n += 1;
            }
        }
    }

    let base = s * m;
    store_bww(c0 + 0, co_base, base, k, ra, rbv, vra, vrb, a0, b0);
    store_bww(c0 + 1, co_base, base, k, ra, rbv, vra, vrb, a1, b1);
    store_bww(c0 + 2, co_base, base, k, ra, rbv, vra, vrb, a2, b2);
    store_bww(c0 + 3, co_base, base, k, ra, rbv, vra, vrb, a3, b3);
    store_bww(c0 + 4, co_base, base, k, ra, rbv, vra, vrb, a4, b4);
    store_bww(c0 + 5, co_base, base, k, ra, rbv, vra, vrb, a5, b5);
    store_bww(c0 + 6, co_base, base, k, ra, rbv, vra, vrb, a6, b6);
    store_bww(c0 + 7, co_base, base, k, ra, rbv, vra, vrb, a7, b7);
}

fn store_bww(c: i32, co_base: i32, base: i32, k: i32, ra: vec4<i32>, rb: vec4<i32>,
             va: vec4<bool>, vb: vec4<bool>, a: vec4<f32>, b: vec4<f32>) {
    if (c >= p.cout_g) { return; }
    let row = vec4<i32>(base + (co_base + c) * k);
    store_part(row + ra, a, va);
    store_part(row + rb, b, vb);
}

// Row variant of the backward to the weight, for Kw == 3, stride_w == 1, dilation_w == 1:
// a thread owns TB output channels x PB kernel rows (ci, ky) x the three taps, and walks its
// split's positions along output rows with a sliding window: each step loads one new
// activation per kernel row (taps 0 and 1 reuse the previous two) and TB gradients, for
// 3*TB*PB FMAs. Thread t: kernel-row block t % blocks_r, channel block next, split last.
@compute @workgroup_size(TWG)
fn conv2d_backward_weight_row3(@builtin(global_invocation_id) gid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = tiled_index(gid, nwg);
    if (t >= p.threads) { return; }
    let k = p.cin_g * p.kh * 3;
    let m = p.cout * k;
    let rb = t % p.blocks_r;
    let t2 = t / p.blocks_r;
    let cblocks = p.groups * p.blocks_c;
    let cb = t2 % cblocks;
    let s = t2 / cblocks;
    let g = cb / p.blocks_c;
    let ch0 = (cb % p.blocks_c) * TB;
    let co_base = g * p.cout_g;
    let howo = p.ho * p.wo;
    let hw = p.h * p.w;
    let np = p.batch * howo;

    // Kernel rows kr = ci*Kh + ky of this block, clamped for loads.
    let kra = vec4<i32>(rb * PB) + vec4<i32>(0, 1, 2, 3);
    let krb = kra + vec4<i32>(4);
    let krows = p.cin_g * p.kh;
    let vra = kra < vec4<i32>(krows);
    let vrb = krb < vec4<i32>(krows);
    let qa = min(kra, vec4<i32>(krows - 1));
    let qb = min(krb, vec4<i32>(krows - 1));
    let xca = (vec4<i32>(g * p.cin_g) + qa / p.kh) * hw;
    let xcb = (vec4<i32>(g * p.cin_g) + qb / p.kh) * hw;
    let kyoa = (qa % p.kh) * p.dil_h - vec4<i32>(p.pad_h);
    let kyob = (qb % p.kh) * p.dil_h - vec4<i32>(p.pad_h);

    let last = p.cout_g - 1;
    let d0 = (co_base + min(ch0 + 0, last)) * howo;
    let d1 = (co_base + min(ch0 + 1, last)) * howo;
    let d2 = (co_base + min(ch0 + 2, last)) * howo;
    let d3 = (co_base + min(ch0 + 3, last)) * howo;
    let d4 = (co_base + min(ch0 + 4, last)) * howo;
    let d5 = (co_base + min(ch0 + 5, last)) * howo;
    let d6 = (co_base + min(ch0 + 6, last)) * howo;
    let d7 = (co_base + min(ch0 + 7, last)) * howo;

    var a00 = vec4<f32>(0.0); var b00 = vec4<f32>(0.0); var a01 = vec4<f32>(0.0); var b01 = vec4<f32>(0.0); var a02 = vec4<f32>(0.0); var b02 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0); var b10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0); var b11 = vec4<f32>(0.0); var a12 = vec4<f32>(0.0); var b12 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0); var b20 = vec4<f32>(0.0); var a21 = vec4<f32>(0.0); var b21 = vec4<f32>(0.0); var a22 = vec4<f32>(0.0); var b22 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0); var b30 = vec4<f32>(0.0); var a31 = vec4<f32>(0.0); var b31 = vec4<f32>(0.0); var a32 = vec4<f32>(0.0); var b32 = vec4<f32>(0.0);
    var a40 = vec4<f32>(0.0); var b40 = vec4<f32>(0.0); var a41 = vec4<f32>(0.0); var b41 = vec4<f32>(0.0); var a42 = vec4<f32>(0.0); var b42 = vec4<f32>(0.0);
    var a50 = vec4<f32>(0.0); var b50 = vec4<f32>(0.0); var a51 = vec4<f32>(0.0); var b51 = vec4<f32>(0.0); var a52 = vec4<f32>(0.0); var b52 = vec4<f32>(0.0);
    var a60 = vec4<f32>(0.0); var b60 = vec4<f32>(0.0); var a61 = vec4<f32>(0.0); var b61 = vec4<f32>(0.0); var a62 = vec4<f32>(0.0); var b62 = vec4<f32>(0.0);
    var a70 = vec4<f32>(0.0); var b70 = vec4<f32>(0.0); var a71 = vec4<f32>(0.0); var b71 = vec4<f32>(0.0); var a72 = vec4<f32>(0.0); var b72 = vec4<f32>(0.0);

    let start = s * p.chunk;
    let end = min(start + p.chunk, np);
    var q = start;
    var n = start / howo;
    var oy = (start % howo) / p.wo;
    var ox = start % p.wo;
    while (q < end) {
        let len = min(end - q, p.wo - ox);
        let iya = vec4<i32>(oy * p.stride_h) + kyoa;
        let iyb = vec4<i32>(oy * p.stride_h) + kyob;
        let oka = in_range(iya, p.h);
        let okb = in_range(iyb, p.h);
        let xn = vec4<i32>(n * p.cin * hw);
        let rowa = select(vec4<i32>(0), xn + xca + iya * p.w, oka);
        let rowb = select(vec4<i32>(0), xn + xcb + iyb * p.w, okb);
        // Window columns col, col + 1, col + 2 hold taps 0, 1, 2 of output column ox.
        var col = ox - p.pad_w;
        var xa0 = load_x_col(rowa, oka, col);
        var xb0 = load_x_col(rowb, okb, col);
        var xa1 = load_x_col(rowa, oka, col + 1);
        var xb1 = load_x_col(rowb, okb, col + 1);
        var dq = (n * p.cout * p.ho + oy) * p.wo + ox;
        for (var e = 0; e < len; e++) {
            let xa2 = load_x_col(rowa, oka, col + 2);
            let xb2 = load_x_col(rowb, okb, col + 2);
            let g0 = vec4<f32>(dy[dq + d0]);
            let g1 = vec4<f32>(dy[dq + d1]);
            let g2 = vec4<f32>(dy[dq + d2]);
            let g3 = vec4<f32>(dy[dq + d3]);
            let g4 = vec4<f32>(dy[dq + d4]);
            let g5 = vec4<f32>(dy[dq + d5]);
            let g6 = vec4<f32>(dy[dq + d6]);
            let g7 = vec4<f32>(dy[dq + d7]);
            a00 = fma(g0, xa0, a00); b00 = fma(g0, xb0, b00); a01 = fma(g0, xa1, a01); b01 = fma(g0, xb1, b01); a02 = fma(g0, xa2, a02); b02 = fma(g0, xb2, b02);
            a10 = fma(g1, xa0, a10); b10 = fma(g1, xb0, b10); a11 = fma(g1, xa1, a11); b11 = fma(g1, xb1, b11); a12 = fma(g1, xa2, a12); b12 = fma(g1, xb2, b12);
            a20 = fma(g2, xa0, a20); b20 = fma(g2, xb0, b20); a21 = fma(g2, xa1, a21); b21 = fma(g2, xb1, b21); a22 = fma(g2, xa2, a22); b22 = fma(g2, xb2, b22);
            a30 = fma(g3, xa0, a30); b30 = fma(g3, xb0, b30); a31 = fma(g3, xa1, a31); b31 = fma(g3, xb1, b31); a32 = fma(g3, xa2, a32); b32 = fma(g3, xb2, b32);
            a40 = fma(g4, xa0, a40); b40 = fma(g4, xb0, b40); a41 = fma(g4, xa1, a41); b41 = fma(g4, xb1, b41); a42 = fma(g4, xa2, a42); b42 = fma(g4, xb2, b42);
            a50 = fma(g5, xa0, a50); b50 = fma(g5, xb0, b50); a51 = fma(g5, xa1, a51); b51 = fma(g5, xb1, b51); a52 = fma(g5, xa2, a52); b52 = fma(g5, xb2, b52);
            a60 = fma(g6, xa0, a60); b60 = fma(g6, xb0, b60); a61 = fma(g6, xa1, a61); b61 = fma(g6, xb1, b61); a62 = fma(g6, xa2, a62); b62 = fma(g6, xb2, b62);
            a70 = fma(g7, xa0, a70); b70 = fma(g7, xb0, b70); a71 = fma(g7, xa1, a71); b71 = fma(g7, xb1, b71); a72 = fma(g7, xa2, a72); b72 = fma(g7, xb2, b72);
            xa0 = xa1; xb0 = xb1;
            xa1 = xa2; xb1 = xb2;
            col += 1;
            dq += 1;
        }
        q += len;
        ox += len;
        if (ox == p.wo) {
            ox = 0;
            oy += 1;
            if (oy == p.ho) {
                oy = 0;
                n += 1;
            }
        }
    }

    let base = s * m;
    store_bww3(ch0 + 0, co_base, base, k, kra, krb, vra, vrb, a00, b00, a01, b01, a02, b02);
    store_bww3(ch0 + 1, co_base, base, k, kra, krb, vra, vrb, a10, b10, a11, b11, a12, b12);
    store_bww3(ch0 + 2, co_base, base, k, kra, krb, vra, vrb, a20, b20, a21, b21, a22, b22);
    store_bww3(ch0 + 3, co_base, base, k, kra, krb, vra, vrb, a30, b30, a31, b31, a32, b32);
    store_bww3(ch0 + 4, co_base, base, k, kra, krb, vra, vrb, a40, b40, a41, b41, a42, b42);
    store_bww3(ch0 + 5, co_base, base, k, kra, krb, vra, vrb, a50, b50, a51, b51, a52, b52);
    store_bww3(ch0 + 6, co_base, base, k, kra, krb, vra, vrb, a60, b60, a61, b61, a62, b62);
    store_bww3(ch0 + 7, co_base, base, k, kra, krb, vra, vrb, a70, b70, a71, b71, a72, b72);
}

// dw = sum over splits of the partial sums (in split order: deterministic), honouring
// `accumulate`. One thread per weight element.
@compute @workgroup_size(WG)
fn conv2d_backward_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>,
                                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = i32(flat_index(gid, nwg));
    if (i >= p.threads) { return; }
    var acc = 0.0;
    for (var s = 0; s < p.splits; s++) {
        acc += part[s * p.threads + i];
    }
    if (p.accumulate != 0) {
        dwt[i] = dwt[i] + acc;
    } else {
        dwt[i] = acc;
    }
}

// Backward to the bias: db[co] = sum_{n, oy, ox} dy[n, co, oy, ox]. One workgroup per output
// channel: strided partial sums, then a tree reduction in workgroup memory.
var<workgroup> red: array<f32, BWG>;

@compute @workgroup_size(BWG)
fn conv2d_backward_bias(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so every thread reaches the barriers below.
    let co = i32(wid.x + wid.y * nwg.x);
    let howo = p.ho * p.wo;
    var acc = 0.0;
    if (co < p.cout) {
        for (var n = 0; n < p.batch; n++) {
            let base = (n * p.cout + co) * howo;
            for (var q = i32(lid); q < howo; q += i32(BWG)) {
                acc += dy[base + q];
            }
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var half = BWG / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            red[lid] = red[lid] + red[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u && co < p.cout) {
        if (p.accumulate != 0) {
            dbias[co] = dbias[co] + red[0];
        } else {
            dbias[co] = red[0];
        }
    }
}
