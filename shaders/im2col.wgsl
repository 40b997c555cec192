// im2col.wgsl: a convolution's column matrix and its adjoint, so that a k x k conv (one group,
// unit dilation: the 7x7 stride-2 stem of ResNet) runs on lavapipe as a 1x1 product through
// the uniform-window kernel (conv1x1_windows.wgsl), whose loads are 15x cheaper than the
// storage loads a direct k x k kernel makes (see conv2d_windows.wgsl).
// Layout: x [N, Cin, H, W]; cols [N, K, Ho, Wo] with K = Cin * Kh * Kw in w's row order, so
// that w [Cout, Cin, Kh, Kw] is already the 1x1 weight [Cout, K]:
//   cols[n][(ci * Kh + ky) * Kw + kx][oy][ox] = x[n][ci][oy * sh - ph + ky][ox * sw - pw + kx]
// (zero outside x). The forward pass is y = w . cols; the backward pass to the input forms
// dcols = w^T . dy and gathers it back with col2im, the adjoint of im2col.
// Threads own rows (of cols, or of dx) and walk their columns, so that the index arithmetic
// (integer division, one scalar loop per lane on lavapipe) is paid per row, not per element.
// Bindings: 0 params, 1 src (x or dcols), 2 dst (cols or dx).

struct ColsParams {
    n: i32,
    cin: i32,
    h: i32,
    w: i32,
    kh: i32,
    kw: i32,
    stride_h: i32,
    stride_w: i32,
    pad_h: i32,
    pad_w: i32,
    ho: i32,
    wo: i32,
    accumulate: i32,
    rows: i32,       // threads with work: N * K * Ho (im2col), N * Cin * H (col2im)
    _p0: i32,
    _p1: i32,
}

@group(0) @binding(0) var<uniform> p: ColsParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One thread per row (n, k, oy) of cols: its Wo columns.
@compute @workgroup_size(WG)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = i32(flat_index(gid, nwg));
    if (t >= p.rows) { return; }
    let oy = t % p.ho;
    let nk = t / p.ho;
    let taps = p.kh * p.kw;
    let k = nk % (p.cin * taps);
    let n = nk / (p.cin * taps);
    let ci = k / taps;
    let ky = (k % taps) / p.kw;
    let kx = k % p.kw;
    let iy = oy * p.stride_h - p.pad_h + ky;
    let row_ok = iy >= 0 && iy < p.h;
    let base = ((n * p.cin + ci) * p.h + clamp(iy, 0, p.h - 1)) * p.w;
    let out = t * p.wo;
    var ix = kx - p.pad_w;
    for (var ox = 0; ox < p.wo; ox++) {
        var v = 0.0;
        if (row_ok && ix >= 0 && ix < p.w) {
            v = src[base + ix];
        }
        dst[out + ox] = v;
        ix += p.stride_w;
    }
}

// One thread per row (n, ci, iy) of dx: dx[n][ci][iy][ix] (+)= the sum of dcols over the taps
// (ky, kx) and outputs (oy, ox) with oy * sh - ph + ky = iy and ox * sw - pw + kx = ix. Only
// taps of the input's phase take part: ky = (iy + ph) mod sh, + sh, ..., with oy falling by
// one per step (and likewise along x), so no division is made per element.
@compute @workgroup_size(WG)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = i32(flat_index(gid, nwg));
    if (t >= p.rows) { return; }
    let iy = t % p.h;
    let nc = t / p.h;
    let ci = nc % p.cin;
    let n = nc / p.cin;
    let taps = p.kh * p.kw;
    let ky0 = (iy + p.pad_h) % p.stride_h;
    let oy0 = (iy + p.pad_h) / p.stride_h;
    // First tap column and output column of ix = 0; both advance with ix.
    var kx0 = p.pad_w % p.stride_w;
    var ox0 = p.pad_w / p.stride_w;
    let plane = p.ho * p.wo;
    let cols0 = (n * p.cin + ci) * taps * plane;
    let out = t * p.w;
    for (var ix = 0; ix < p.w; ix++) {
        var s = 0.0;
        var oy = oy0;
        for (var ky = ky0; ky < p.kh; ky += p.stride_h) {
            if (oy >= 0 && oy < p.ho) {
                var ox = ox0;
                for (var kx = kx0; kx < p.kw; kx += p.stride_w) {
                    if (ox >= 0 && ox < p.wo) {
                        s += src[cols0 + (ky * p.kw + kx) * plane + oy * p.wo + ox];
                    }
                    ox -= 1;
                }
            }
            oy -= 1;
        }
        if (p.accumulate != 0) {
            s += dst[out + ix];
        }
        dst[out + ix] = s;
        kx0 += 1;
        if (kx0 == p.stride_w) {
            kx0 = 0;
            ox0 += 1;
        }
    }
}
