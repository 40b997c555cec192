// winograd.wgsl: the transforms of a 3x3, stride-1 convolution computed with Winograd's
// minimal filtering F(2x2, 3x3) (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
// Networks"): Y = A^T [ sum_c (G g G^T) (.) (B^T d B) ] A for each 2x2 output tile, 16
// multiplications per tile and channel pair instead of 36, so the product costs 2.25x fewer
// FMAs than the direct convolution. The 16 channel sums (one per transformed tap xi) are a
// 16-group 1x1 convolution, run by the implicit-GEMM kernels of conv2d_gemm.wgsl; this file
// holds the three transforms around it.
// Backward to the input uses the same code: dx = conv(dy, w flipped in space with in/out
// channels swapped, padding 2 - p), so only the weight transform knows the pass (p.flip).
// Layout: src [N, Cs, Hi, Wi], out [N, Co, Ho, Wo] (NCHW), Ho = Hi + 2 pad - 2; tiles of 2x2
// outputs, th x tw per image. The launches cover the chunk of p.nc images from image p.n0:
//   u [16 * Co, Cs]          (xi * Co + o) * Cs + s     weight transform (per layer, cached)
//   v [16 * Cs, nc * T]      (xi * Cs + s) * P + t      input transform (P = nc * th * tw)
//   m [16 * Co, nc * T]      (xi * Co + o) * P + t      the 16-group product (conv2d_gemm)
// Where the product splits its channel sums (split-K), m holds p.splits partial products one
// after another and the output transform adds them (in order, as conv2d_gemm_reduce would),
// which saves the reduce's launch and a pass over m.
// Bindings: 0 params, 1 w, 2 u, 3 src, 4 v, 5 m, 6 bias, 7 out, 8 aux (the fused ReLU's
// tensor, same layout as out: its output forward, its input x backward; see p.epilogue).
// The output transform can apply a ReLU that follows the conv (forward) or sits before it
// (backward), saving the ReLU's own launch and a read of out: forward, aux = max(out, 0)
// beside out; backward, the value stored is the ReLU's rule applied to the conv's gradient,
// gated by aux = the ReLU's input (relu.wgsl's rules, unchanged).
// Threads: one per (o, s) weight pair, per (image, channel, tile) input tile, per (image,
// output channel, tile) output tile; tiles fastest, so neighbouring lanes touch neighbouring
// columns of v and m.

struct WinogradParams {
    nc: i32,         // images in this chunk
    n0: i32,         // first image of the chunk
    cs: i32,         // channels of src (summed over)
    co: i32,         // channels of out
    hi: i32,
    wi: i32,
    ho: i32,
    wo: i32,
    pad_h: i32,
    pad_w: i32,
    th: i32,         // tile rows per image: ceil(Ho / 2)
    tw: i32,         // tile columns per image: ceil(Wo / 2)
    flip: i32,       // weight transform of the backward-to-input pass
    has_bias: i32,
    accumulate: i32,
    threads: i32,
    epilogue: i32,   // 0 none, 1 forward ReLU into aux, 2..4 backward standard, guided, deconvnet
    splits: i32,     // m holds this many partial products (split-K), m_numel apart
    m_numel: i32,
    _p0: i32,
}

@group(0) @binding(0) var<uniform> p: WinogradParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> m: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<storage, read_write> aux: array<f32>;

// Private arrays indexed in loops live in local memory on NVIDIA (the first gemm kernel ran at
// 2 % of peak for it), so every tap below is a named value or a vector component.

fn weight_tap(o: i32, s: i32, i: i32) -> f32 {
    if (p.flip != 0) {
        return w[(s * p.co + o) * 9 + 8 - i];
    }
    return w[(o * p.cs + s) * 9 + i];
}

// One row (a, b, c) of G g times G^T, stored at u[base + k * stride] for k = 0..3.
fn store_u_row(base: i32, stride: i32, r: vec3<f32>) {
    u[base] = r.x;
    u[base + stride] = 0.5 * (r.x + r.y + r.z);
    u[base + 2 * stride] = 0.5 * (r.x - r.y + r.z);
    u[base + 3 * stride] = r.z;
}

// u = G g G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. Forward: g = w[o, s] (w is
// [Co, Cs, 3, 3]); backward: g = w[s, o] rotated by 180 degrees (w is [Cs, Co, 3, 3]).
@compute @workgroup_size(256)
fn winograd_weight_transform(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = i32(flat_index(gid, nwg));
    if (t >= p.threads) {
        return;
    }
    let s = t % p.cs;
    let o = t / p.cs;
    let g0 = vec3<f32>(weight_tap(o, s, 0), weight_tap(o, s, 1), weight_tap(o, s, 2));
    let g1 = vec3<f32>(weight_tap(o, s, 3), weight_tap(o, s, 4), weight_tap(o, s, 5));
    let g2 = vec3<f32>(weight_tap(o, s, 6), weight_tap(o, s, 7), weight_tap(o, s, 8));
    let stride = p.co * p.cs;
    let base = o * p.cs + s;
    store_u_row(base, stride, g0);
    store_u_row(base + 4 * stride, stride, 0.5 * (g0 + g1 + g2));
    store_u_row(base + 8 * stride, stride, 0.5 * (g0 - g1 + g2));
    store_u_row(base + 12 * stride, stride, g2);
}

// Where thread t of a transform over [nc images, channels, th x tw tiles] works: its tile's
// row and column, its channel and its image within the chunk, and its column of v or m.
struct TileAt {
    ty: i32,
    tx: i32,
    ch: i32,
    nl: i32,
    col: i32,
}

fn tile_at(t: i32, channels: i32) -> TileAt {
    let tiles = p.th * p.tw;
    let tile = t % tiles;
    let rest = t / tiles;
    let ty = tile / p.tw;
    let nl = rest / channels;
    return TileAt(ty, tile - ty * p.tw, rest % channels, nl, nl * tiles + tile);
}

// An input transform's thread for tiles of m outputs: its source plane, the patch's top-left
// corner, and where its first value goes in v (the next taps `stride` apart).
struct InputTile {
    plane: i32,
    y0: i32,
    x0: i32,
    base: i32,
    stride: i32,
}

fn input_tile(t: i32, m: i32) -> InputTile {
    let a = tile_at(t, p.cs);
    let pcols = p.nc * p.th * p.tw;
    return InputTile(
        ((p.n0 + a.nl) * p.cs + a.ch) * p.hi * p.wi,
        m * a.ty - p.pad_h,
        m * a.tx - p.pad_w,
        a.ch * pcols + a.col,
        p.cs * pcols,
    );
}

// An output transform's thread for tiles of m outputs: where its first tap is in m (the next
// `stride` apart), its tile's first output (flat index, row, column), and its channel's bias.
struct OutputTile {
    base: i32,
    stride: i32,
    at: i32,
    oy: i32,
    ox: i32,
    bias: f32,
}

fn output_tile(t: i32, m: i32) -> OutputTile {
    let a = tile_at(t, p.co);
    let pcols = p.nc * p.th * p.tw;
    let oy = m * a.ty;
    let ox = m * a.tx;
    var b = 0.0;
    if (p.has_bias != 0) {
        b = bias[a.ch];
    }
    let at = ((p.n0 + a.nl) * p.co + a.ch) * p.ho * p.wo + oy * p.wo + ox;
    return OutputTile(a.ch * pcols + a.col, p.co * pcols, at, oy, ox, b);
}

// Row y of a src plane (from flat index `plane`), columns x0..x0+3, zeros outside the image.
fn src_row(plane: i32, y: i32, x0: i32) -> vec4<f32> {
    var row = vec4<f32>(0.0);
    if (y < 0 || y >= p.hi) {
        return row;
    }
    let at = plane + y * p.wi + x0;
    if (x0 >= 0 && x0 < p.wi) {
        row.x = src[at];
    }
    if (x0 + 1 >= 0 && x0 + 1 < p.wi) {
        row.y = src[at + 1];
    }
    if (x0 + 2 >= 0 && x0 + 2 < p.wi) {
        row.z = src[at + 2];
    }
    if (x0 + 3 >= 0 && x0 + 3 < p.wi) {
        row.w = src[at + 3];
    }
    return row;
}

// One row q of B^T d times B, stored at v[base + k * stride] for k = 0..3.
fn store_v_row(base: i32, stride: i32, q: vec4<f32>) {
    v[base] = q.x - q.z;
    v[base + stride] = q.y + q.z;
    v[base + 2 * stride] = q.z - q.y;
    v[base + 3 * stride] = q.y - q.w;
}

// v = B^T d B for the 4x4 input patch d at (2 ty - pad_h, 2 tx - pad_w), zeros outside,
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
@compute @workgroup_size(256)
fn winograd_input_transform(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = i32(flat_index(gid, nwg));
    if (t >= p.threads) {
        return;
    }
    let it = input_tile(t, 2);
    let plane = it.plane;
    let y0 = it.y0;
    let x0 = it.x0;
    let d0 = src_row(plane, y0, x0);
    let d1 = src_row(plane, y0 + 1, x0);
    let d2 = src_row(plane, y0 + 2, x0);
    let d3 = src_row(plane, y0 + 3, x0);
    let base = it.base;
    let stride = it.stride;
    store_v_row(base, stride, d0 - d2);
    store_v_row(base + 4 * stride, stride, d1 + d2);
    store_v_row(base + 8 * stride, stride, d2 - d1);
    store_v_row(base + 12 * stride, stride, d1 - d3);
}

fn store_out(at: i32, value: f32) {
    var r = value;
    if (p.epilogue >= 2) {
        r = fused_relu_grad(p.epilogue, value, aux[at]);
    }
    if (p.accumulate != 0) {
        r = out[at] + r;
    }
    out[at] = r;
    if (p.epilogue == 1) {
        aux[at] = max(r, 0.0);
    }
}

// The product at flat index `at`: the sum of its split-K partials.
fn mv(at: i32) -> f32 {
    var s = m[at];
    for (var k = 1; k < p.splits; k++) {
        s = s + m[at + k * p.m_numel];
    }
    return s;
}

// Row k of m for one output tile: m[base + (4 k + j) * stride] for j = 0..3.
fn m_row(base: i32, stride: i32, k: i32) -> vec4<f32> {
    let at = base + 4 * k * stride;
    return vec4<f32>(mv(at), mv(at + stride), mv(at + 2 * stride), mv(at + 3 * stride));
}

// y = A^T m A (+ bias) for one 2x2 output tile, A^T = [1 1 1 0; 0 1 -1 -1]; rows and columns
// past Ho, Wo (odd sizes) are not written.
@compute @workgroup_size(256)
fn winograd_output_transform(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = i32(flat_index(gid, nwg));
    if (t >= p.threads) {
        return;
    }
    let ot = output_tile(t, 2);
    let base = ot.base;
    let stride = ot.stride;
    let q0 = m_row(base, stride, 0);
    let q1 = m_row(base, stride, 1);
    let q2 = m_row(base, stride, 2);
    let q3 = m_row(base, stride, 3);
    // Rows of A^T m, then each row times A.
    let r0 = q0 + q1 + q2;
    let r1 = q1 - q2 - q3;
    let b = ot.bias;
    let oy = ot.oy;
    let ox = ot.ox;
    let at = ot.at;
    let right = ox + 1 < p.wo;
    store_out(at, r0.x + r0.y + r0.z + b);
    if (right) {
        store_out(at + 1, r0.y - r0.z - r0.w + b);
    }
    if (oy + 1 < p.ho) {
        store_out(at + p.wo, r1.x + r1.y + r1.z + b);
        if (right) {
            store_out(at + p.wo + 1, r1.y - r1.z - r1.w + b);
        }
    }
}

// ---- F(4x4, 3x3): 6x6 input tiles, 36 transformed taps, 4x fewer multiplications than the
// direct product (at about 30x the rounding error of F(2x2, 3x3) for 512 channels: 1e-5 of the
// output's scale, as cuDNN's fp32 Winograd). Same layouts with 36 taps and 4x4 output tiles:
// u [36 Co, Cs], v [36 Cs, P], m [36 Co, P], xi = 6 i + j; th = ceil(Ho / 4), tw = ceil(Wo / 4).
// Matrices of Lavin & Gray (2016), section 4.2:
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
//          0 4 0 -5 0 1]
//   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// A row of six values is a vec4 (columns 0..3) and a vec2 (columns 4, 5).

// One row (a, b, c) of G g times G^T, stored at u[base + k * stride] for k = 0..5.
fn store_u6_row(base: i32, stride: i32, r: vec3<f32>) {
    u[base] = 0.25 * r.x;
    u[base + stride] = -(r.x + r.y + r.z) / 6.0;
    u[base + 2 * stride] = -(r.x - r.y + r.z) / 6.0;
    u[base + 3 * stride] = r.x / 24.0 + r.y / 12.0 + r.z / 6.0;
    u[base + 4 * stride] = r.x / 24.0 - r.y / 12.0 + r.z / 6.0;
    u[base + 5 * stride] = r.z;
}

@compute @workgroup_size(256)
fn winograd4_weight_transform(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = i32(flat_index(gid, nwg));
    if (t >= p.threads) {
        return;
    }
    let s = t % p.cs;
    let o = t / p.cs;
    let g0 = vec3<f32>(weight_tap(o, s, 0), weight_tap(o, s, 1), weight_tap(o, s, 2));
    let g1 = vec3<f32>(weight_tap(o, s, 3), weight_tap(o, s, 4), weight_tap(o, s, 5));
    let g2 = vec3<f32>(weight_tap(o, s, 6), weight_tap(o, s, 7), weight_tap(o, s, 8));
    let stride = p.co * p.cs;
    let base = o * p.cs + s;
    let row = 6 * stride;
    store_u6_row(base, stride, 0.25 * g0);
    store_u6_row(base + row, stride, -(g0 + g1 + g2) / 6.0);
    store_u6_row(base + 2 * row, stride, -(g0 - g1 + g2) / 6.0);
    store_u6_row(base + 3 * row, stride, g0 / 24.0 + g1 / 12.0 + g2 / 6.0);
    store_u6_row(base + 4 * row, stride, g0 / 24.0 - g1 / 12.0 + g2 / 6.0);
    store_u6_row(base + 5 * row, stride, g2);
}

// Columns 4 and 5 of a src row (see src_row, which gives columns 0..3).
fn src_row_tail(plane: i32, y: i32, x0: i32) -> vec2<f32> {
    var row = vec2<f32>(0.0);
    if (y < 0 || y >= p.hi) {
        return row;
    }
    let at = plane + y * p.wi + x0;
    if (x0 + 4 >= 0 && x0 + 4 < p.wi) {
        row.x = src[at + 4];
    }
    if (x0 + 5 >= 0 && x0 + 5 < p.wi) {
        row.y = src[at + 5];
    }
    return row;
}

// One row (q, e) of B^T d times B, stored at v[base + k * stride] for k = 0..5.
fn store_v6_row(base: i32, stride: i32, q: vec4<f32>, e: vec2<f32>) {
    v[base] = 4.0 * q.x - 5.0 * q.z + e.x;
    v[base + stride] = -4.0 * (q.y + q.z) + q.w + e.x;
    v[base + 2 * stride] = 4.0 * (q.y - q.z) - q.w + e.x;
    v[base + 3 * stride] = 2.0 * (q.w - q.y) - q.z + e.x;
    v[base + 4 * stride] = 2.0 * (q.y - q.w) - q.z + e.x;
    v[base + 5 * stride] = 4.0 * q.y - 5.0 * q.w + e.y;
}

@compute @workgroup_size(256)
fn winograd4_input_transform(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = i32(flat_index(gid, nwg));
    if (t >= p.threads) {
        return;
    }
    let it = input_tile(t, 4);
    let plane = it.plane;
    let y0 = it.y0;
    let x0 = it.x0;
    let d0 = src_row(plane, y0, x0);
    let d1 = src_row(plane, y0 + 1, x0);
    let d2 = src_row(plane, y0 + 2, x0);
    let d3 = src_row(plane, y0 + 3, x0);
    let d4 = src_row(plane, y0 + 4, x0);
    let d5 = src_row(plane, y0 + 5, x0);
    let e0 = src_row_tail(plane, y0, x0);
    let e1 = src_row_tail(plane, y0 + 1, x0);
    let e2 = src_row_tail(plane, y0 + 2, x0);
    let e3 = src_row_tail(plane, y0 + 3, x0);
    let e4 = src_row_tail(plane, y0 + 4, x0);
    let e5 = src_row_tail(plane, y0 + 5, x0);
    let base = it.base;
    let stride = it.stride;
    let row = 6 * stride;
    // Rows of B^T d, each then times B.
    store_v6_row(base, stride, 4.0 * d0 - 5.0 * d2 + d4, 4.0 * e0 - 5.0 * e2 + e4);
    store_v6_row(base + row, stride, -4.0 * (d1 + d2) + d3 + d4, -4.0 * (e1 + e2) + e3 + e4);
    store_v6_row(
        base + 2 * row, stride, 4.0 * (d1 - d2) - d3 + d4, 4.0 * (e1 - e2) - e3 + e4
    );
    store_v6_row(
        base + 3 * row, stride, 2.0 * (d3 - d1) - d2 + d4, 2.0 * (e3 - e1) - e2 + e4
    );
    store_v6_row(
        base + 4 * row, stride, 2.0 * (d1 - d3) - d2 + d4, 2.0 * (e1 - e3) - e2 + e4
    );
    store_v6_row(base + 5 * row, stride, 4.0 * d1 - 5.0 * d3 + d5, 4.0 * e1 - 5.0 * e3 + e5);
}

// Row k of m for one output tile, columns 0..3: m[base + (6 k + j) * stride].
fn m6_row(base: i32, stride: i32, k: i32) -> vec4<f32> {
    let at = base + 6 * k * stride;
    return vec4<f32>(mv(at), mv(at + stride), mv(at + 2 * stride), mv(at + 3 * stride));
}

// Columns 4 and 5 of row k of m.
fn m6_row_tail(base: i32, stride: i32, k: i32) -> vec2<f32> {
    let at = base + (6 * k + 4) * stride;
    return vec2<f32>(mv(at), mv(at + stride));
}

// Output row `oy` of a tile from one row (q, e) of A^T m: times A, columns ox..ox+3 that
// exist, plus the bias.
fn store_out4_row(at: i32, ox: i32, q: vec4<f32>, e: vec2<f32>, b: f32) {
    store_out(at, q.x + q.y + q.z + q.w + e.x + b);
    if (ox + 1 < p.wo) {
        store_out(at + 1, q.y - q.z + 2.0 * (q.w - e.x) + b);
    }
    if (ox + 2 < p.wo) {
        store_out(at + 2, q.y + q.z + 4.0 * (q.w + e.x) + b);
    }
    if (ox + 3 < p.wo) {
        store_out(at + 3, q.y - q.z + 8.0 * (q.w - e.x) + e.y + b);
    }
}

@compute @workgroup_size(256)
fn winograd4_output_transform(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = i32(flat_index(gid, nwg));
    if (t >= p.threads) {
        return;
    }
    let ot = output_tile(t, 4);
    let base = ot.base;
    let stride = ot.stride;
    let q0 = m6_row(base, stride, 0);
    let q1 = m6_row(base, stride, 1);
    let q2 = m6_row(base, stride, 2);
    let q3 = m6_row(base, stride, 3);
    let q4 = m6_row(base, stride, 4);
    let q5 = m6_row(base, stride, 5);
    let e0 = m6_row_tail(base, stride, 0);
    let e1 = m6_row_tail(base, stride, 1);
    let e2 = m6_row_tail(base, stride, 2);
    let e3 = m6_row_tail(base, stride, 3);
    let e4 = m6_row_tail(base, stride, 4);
    let e5 = m6_row_tail(base, stride, 5);
    let b = ot.bias;
    let oy = ot.oy;
    let ox = ot.ox;
    let at = ot.at;
    // Rows of A^T m, each then times A.
    store_out4_row(at, ox, q0 + q1 + q2 + q3 + q4, e0 + e1 + e2 + e3 + e4, b);
    if (oy + 1 < p.ho) {
        store_out4_row(at + p.wo, ox, q1 - q2 + 2.0 * (q3 - q4), e1 - e2 + 2.0 * (e3 - e4), b);
    }
    if (oy + 2 < p.ho) {
        store_out4_row(
            at + 2 * p.wo, ox, q1 + q2 + 4.0 * (q3 + q4), e1 + e2 + 4.0 * (e3 + e4), b
        );
    }
    if (oy + 3 < p.ho) {
        store_out4_row(
            at + 3 * p.wo, ox, q1 - q2 + 8.0 * (q3 - q4) + q5, e1 - e2 + 8.0 * (e3 - e4) + e5, b
        );
    }
}
