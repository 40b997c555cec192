// conv2d_gemm.wgsl: 2-D convolution as an implicit GEMM with shared-memory tiles and register
// blocking, for GPUs (the conv2d "gemm" variant; conv2d.wgsl has the other formulations).
// Layout: x [N, Cin, H, W], w [Cout, Cin/groups, Kh, Kw] (PyTorch's), b [Cout],
// y [N, Cout, Ho, Wo], all NCHW flat f32; torch.nn.Conv2d semantics (stride, zero padding,
// dilation, groups).
//
// Both passes are one product per group, out[r][c] = sum_k A[r][k] * B[k][c], never
// materialized (the im2col matrix B is gathered tile by tile):
//   * forward: r = output channel (of the group), k = (ci, ky, kx) (w's row, contiguous),
//     c = (n, oy, ox); A = w, B[k][c] = x[n][ci][oy*s - p + ky*d][ox*s - p + kx*d];
//   * backward to the input: r = input channel, k = (co, ky, kx), c = (n, iy, ix);
//     A[r][k] = w[co][r][ky][kx], B[k][c] = dy[n][co][(iy + p - ky*d) / s][(ix + p - kx*d) / s]
//     where that division is exact and in range (the transposed conv as a gather: any stride).
// A workgroup of 16 x 16 threads owns a 64 x 64 tile of out; thread (tx, ty) owns the 4 x 4
// block rows 4ty.., columns 4tx.. (register blocking: per k, two vec4 reads of shared memory
// feed 16 FMAs). Per step of BK = 16 k, the 256 threads stage A's 64 x 16 and B's 16 x 64
// slices in workgroup memory, four values each. Split-K for small outputs (7x7 and 14x14
// layers at batch 1 have too few tiles to fill a GPU): workgroup z is group * splits + split,
// each split sums its own range of k, and with splits > 1 writes partial sums that
// conv2d_gemm_reduce adds (a fixed order: deterministic, no atomics).
// Bindings: 0 params, 1 w, 2 src (x forward, dy backward), 3 b, 4 out (y or dx), 5 part
// (split-K partial sums [splits, out numel]).

struct GemmParams {
    batch: i32,
    cin: i32,
    h: i32,
    w: i32,
    cout: i32,
    ho: i32,
    wo: i32,
    kh: i32,
    kw: i32,
    stride_h: i32,
    stride_w: i32,
    pad_h: i32,
    pad_w: i32,
    dil_h: i32,
    dil_w: i32,
    cin_g: i32,
    cout_g: i32,
    has_bias: i32,
    accumulate: i32,
    rows: i32,     // M: output rows per group (Cout/groups forward, Cin/groups backward)
    cols: i32,     // N: N * output positions
    kdim: i32,     // K: (Cin/groups or Cout/groups) * Kh * Kw
    splits: i32,   // split-K ranges
    kchunk: i32,   // k per split (a multiple of BK)
    out_numel: i32,
    _p0: i32,
    _p1: i32,
    _p2: i32,
}

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

const BM: i32 = 64;
const BN: i32 = 64;
const BK: i32 = 16;

// Tiles in workgroup memory, k-major: As[k * 16 + r / 4][r % 4], Bs[k * 16 + c / 4][c % 4],
// so a thread's four rows (columns) are one vec4.
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

// A[r][k] of group g (r < rows, k < kdim checked by the caller).
fn a_at(bwd: bool, g: i32, r: i32, k: i32) -> f32 {
    if (!bwd) {
        return wt[(g * p.cout_g + r) * p.kdim + k];
    }
    let taps = p.kh * p.kw;
    let co = k / taps;
    let tap = k % taps;
    return wt[((g * p.cout_g + co) * p.cin_g + r) * taps + tap];
}

// Where column c of B starts: image, and output (forward) or input (backward) row and column.
struct Col {
    n: i32,
    y: i32,
    x: i32,
    ok: bool,
}

fn col_of(bwd: bool, c: i32) -> Col {
    var hw = vec2<i32>(p.ho, p.wo);
    if (bwd) {
        hw = vec2<i32>(p.h, p.w);
    }
    let plane = hw.x * hw.y;
    let cc = min(c, p.cols - 1);
    let pos = cc % plane;
    return Col(cc / plane, pos / hw.y, pos % hw.y, c < p.cols);
}

// B[k][col] of group g (zero in the padding, past the last column, and, backward, where no
// output position maps onto the input position).
fn b_at(bwd: bool, g: i32, k: i32, col: Col) -> f32 {
    let taps = p.kh * p.kw;
    let ch = k / taps;
    let tap = k % taps;
    let ky = tap / p.kw;
    let kx = tap % p.kw;
    if (!bwd) {
        let iy = col.y * p.stride_h - p.pad_h + ky * p.dil_h;
        let ix = col.x * p.stride_w - p.pad_w + kx * p.dil_w;
        if (!col.ok || iy < 0 || ix < 0 || iy >= p.h || ix >= p.w) { return 0.0; }
        return src[((col.n * p.cin + g * p.cin_g + ch) * p.h + iy) * p.w + ix];
    }
    let ty = col.y + p.pad_h - ky * p.dil_h;
    let tx = col.x + p.pad_w - kx * p.dil_w;
    if (!col.ok || ty < 0 || tx < 0 || ty % p.stride_h != 0 || tx % p.stride_w != 0) {
        return 0.0;
    }
    let oy = ty / p.stride_h;
    let ox = tx / p.stride_w;
    if (oy >= p.ho || ox >= p.wo) { return 0.0; }
    return src[((col.n * p.cout + g * p.cout_g + ch) * p.ho + oy) * p.wo + ox];
}

// Flat index in out (y or dx) of row r of group g at column c.
fn out_index(bwd: bool, g: i32, r: i32, c: i32) -> i32 {
    var ch = p.cout;
    var plane = p.ho * p.wo;
    var gs = p.cout_g;
    if (bwd) {
        ch = p.cin;
        plane = p.h * p.w;
        gs = p.cin_g;
    }
    let n = c / plane;
    return (n * ch + g * gs + r) * plane + c % plane;
}

fn gemm(bwd: bool, lid: vec3<u32>, wg: vec3<u32>) {
    let tx = i32(lid.x);
    let ty = i32(lid.y);
    let t = ty * 16 + tx;
    let g = i32(wg.z) / p.splits;
    let split = i32(wg.z) % p.splits;
    let row0 = i32(wg.y) * BM;
    let col0 = i32(wg.x) * BN;
    let k_begin = split * p.kchunk;
    let k_end = min(p.kdim, k_begin + p.kchunk);

    // This thread stages A[row0 + ar][k0 + ak ..+4] and B[k0 + bk ..+4][col0 + bc].
    let ar = t / 4;
    let ak = (t % 4) * 4;
    let bc = t % 64;
    let bk = (t / 64) * 4;
    let a_ok = row0 + ar < p.rows;
    let col = col_of(bwd, col0 + bc);

    var acc: array<vec4<f32>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        for (var u = 0; u < 4; u++) {
            let ka = k0 + ak + u;
            var va = 0.0;
            if (a_ok && ka < k_end) {
                va = a_at(bwd, g, row0 + ar, ka);
            }
            As[(ak + u) * 16 + ar / 4][ar % 4] = va;
            let kb = k0 + bk + u;
            var vb = 0.0;
            if (kb < k_end) {
                vb = b_at(bwd, g, kb, col);
            }
            Bs[(bk + u) * 16 + bc / 4][bc % 4] = vb;
        }
        workgroupBarrier();
        for (var kk = 0; kk < BK; kk++) {
            let a = As[kk * 16 + ty];
            let b = Bs[kk * 16 + tx];
            acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
            acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
            acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
            acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
        }
        workgroupBarrier();
    }

    for (var i = 0; i < 4; i++) {
        let r = row0 + ty * 4 + i;
        if (r >= p.rows) { continue; }
        for (var j = 0; j < 4; j++) {
            let c = col0 + tx * 4 + j;
            if (c >= p.cols) { continue; }
            let o = out_index(bwd, g, r, c);
            let v = acc[i][j];
            if (p.splits > 1) {
                part[split * p.out_numel + o] = v;
            } else {
                var s = v;
                if (!bwd && p.has_bias != 0) {
                    s = s + bias[g * p.cout_g + r];
                }
                if (p.accumulate != 0) {
                    s = s + out[o];
                }
                out[o] = s;
            }
        }
    }
}

// y = conv(x, w) + b. Grid: (column tiles, row tiles, groups * splits), 16 x 16 threads.
@compute @workgroup_size(16, 16)
fn conv2d_gemm_forward(@builtin(local_invocation_id) lid: vec3<u32>,
                       @builtin(workgroup_id) wg: vec3<u32>) {
    gemm(false, lid, wg);
}

// dx (+)= conv_transpose(dy, w): the gradient of the forward pass above with respect to x.
@compute @workgroup_size(16, 16)
fn conv2d_gemm_backward_input(@builtin(local_invocation_id) lid: vec3<u32>,
                              @builtin(workgroup_id) wg: vec3<u32>) {
    gemm(true, lid, wg);
}

// out[i] (+)= bias + sum over splits of part[s][i], splits in order. One thread per element of
// out; `has_bias` only forward, where the channel of i is (i / (Ho * Wo)) % Cout.
@compute @workgroup_size(WG)
fn conv2d_gemm_reduce(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = i32(flat_index(gid, nwg));
    if (i >= p.out_numel) { return; }
    var s = 0.0;
    for (var k = 0; k < p.splits; k++) {
        s = s + part[k * p.out_numel + i];
    }
    if (p.has_bias != 0) {
        s = s + bias[(i / (p.ho * p.wo)) % p.cout];
    }
    if (p.accumulate != 0) {
        s = s + out[i];
    }
    out[i] = s;
}
