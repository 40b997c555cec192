// prelude.wgsl: prepended to every kernel file by the registry (src/gpu/kernels.rs).
// Conventions for all kernels:
//   * tensors are flat f32 arrays in NCHW order (last index fastest);
//   * binding 0 is the file's uniform parameter struct, storage buffers follow; each global
//     has its own binding number within a file, so an entry point binds only what it uses;
//   * backward kernels take `accumulate`: 0 writes the gradient, 1 adds to it (llm.c's
//     "+= after an explicit zero", needed where a tensor feeds several consumers).

// Threads per workgroup of the 1-D kernels (must match gpu::dispatch::WG).
const WG: u32 = 256u;

// Flat thread index of a 1-D kernel launched on a 2-D grid: x folds at the per-dimension
// workgroup limit, so tensors beyond 65535 * WG elements still get one thread each.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// floor(a / b) and a - b * floor(a / b) for b >= 1 and |a| < 2^24, through an f32 division
// and one correction step: lavapipe runs an i32 division as a scalar loop over the lanes, which
// made the packing and stores of the window conv kernels up to 15% of a layer's time.
fn divmod(a: i32, b: i32) -> vec2<i32> {
    var q = i32(f32(a) / f32(b));
    var r = a - q * b;
    q = select(q, q - 1, r < 0);
    r = select(r, r + b, r < 0);
    q = select(q, q + 1, r >= b);
    r = select(r, r - b, r >= b);
    return vec2<i32>(q, r);
}

// A ReLU's backward rule applied where another kernel stores its gradient (relu.wgsl's rules,
// for kernels that fuse the ReLU below them): `code` 2 standard, 3 guided backprop, 4
// deconvnet, anything else the gradient unchanged; g the gradient at the ReLU's output, x its
// input (a gate shut at x == 0, as PyTorch's threshold_backward).
fn fused_relu_grad(code: i32, g: f32, x: f32) -> f32 {
    switch code {
        case 2 {
            return select(0.0, g, x > 0.0);
        }
        case 3 {
            return select(0.0, g, x > 0.0 && g > 0.0);
        }
        case 4 {
            return max(g, 0.0);
        }
        default {
            return g;
        }
    }
}

// ---- Philox4x32-10 (Salmon et al. 2011), the counter-based generator of random.wgsl, shared
// by every kernel that draws noise so that the same (counter, key) gives the same bits.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// High and low words of the 64-bit product a*b: WGSL has no 64-bit integers, so the high word
// is assembled from 16-bit partial products (each fits in u32, as do the carries).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let hh = ah * bh;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = ctr;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        if (r > 0u) {
            k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let m0 = mulhilo(PHILOX_M0, c.x);
        let m1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(m1.x ^ c.y ^ k.x, m1.y, m0.x ^ c.w ^ k.y, m0.y);
    }
    return c;
}
