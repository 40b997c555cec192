// random.wgsl: counter-based random fills: uniform, Gaussian, and x + Gaussian noise.
// Generator: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011), the generator of cuRAND and PyTorch's CUDA RNG. Counter = (block, 0, stream, 0),
// key = the 64-bit seed. Block b yields four 32-bit words, the bits of elements 4b..4b+3, so
// every element is a pure function of (seed, element index, stream), whatever the grid.
// src/ops/random.rs holds a CPU twin of the same function.
// Layout: any shape, flat. One thread per block of four elements.
// Bindings: 0 params, 1 x (input of add_gaussian_noise), 2 y (output).

struct RandomParams {
    n: u32,          // elements
    stream: u32,     // counter word 2: separates the uniform and Gaussian sequences
    key0: u32,       // seed, low word
    key1: u32,       // seed, high word
    a: f32,          // uniform: lo; Gaussian: mean (unused by add_gaussian_noise)
    b: f32,          // uniform: hi - lo; Gaussian: std
    hi_below: f32,   // uniform: the largest f32 below hi
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: RandomParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const INV_2_24: f32 = 5.9604644775390625e-8; // 2^-24
const TAU: f32 = 6.283185307179586;

fn block_bits(b: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(b, 0u, p.stream, 0u), vec2<u32>(p.key0, p.key1));
}

// Top 24 bits as a float in [0, 1): exact (24 bits fit the f32 significand), never 1.
fn unit_open_hi(w: u32) -> f32 {
    return f32(w >> 8u) * INV_2_24;
}

// -log(u) for u = (k + 1) / 2^24 in (0, 1]. WGSL bounds log's error only absolutely (2^-21
// near 1), which near u = 1 is a large relative error of -log(u), hence of the small radii of
// Box-Muller. There v = 1 - u is exact and the series -log(1 - v) = v + v^2/2 + ... (eight
// terms; the rest is below 2^-32 relative for v < 1/16) keeps full relative precision.
fn neg_log_unit(k: u32) -> f32 {
    let v = f32(0xffffffu - k) * INV_2_24;
    if (v < 0.0625) {
        let t = 1.0 / 7.0 + v * (1.0 / 8.0);
        let s = 1.0 + v * (0.5 + v * (1.0 / 3.0 + v * (0.25 + v * (0.2 + v * (1.0 / 6.0 + v * t)))));
        return v * s;
    }
    return -log(f32(k + 1u) * INV_2_24);
}

// Box-Muller (1958): two words give two independent standard normals. u1 lies in (0, 1], so
// log(u1) is finite; |z| is then at most sqrt(2 * 24 * ln 2) ~ 5.77.
fn box_muller(w0: u32, w1: u32) -> vec2<f32> {
    let r = sqrt(2.0 * neg_log_unit(w0 >> 8u));
    let u2 = unit_open_hi(w1);
    // The angle 2*pi*u2 - pi stays in [-pi, pi), the only range where WGSL bounds the error of
    // cos and sin; the half-turn shift flips both signs. u2 - 0.5 is exact on the 2^-24 grid.
    let theta = TAU * (u2 - 0.5);
    return -r * vec2<f32>(cos(theta), sin(theta));
}

fn gaussian_block(b: u32) -> vec4<f32> {
    let w = block_bits(b);
    return vec4<f32>(box_muller(w.x, w.y), box_muller(w.z, w.w));
}

// y = lo + (hi - lo) * u, clamped below hi: rounding can carry lo + span*u up to hi exactly.
@compute @workgroup_size(WG)
fn uniform_fill(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(gid, nwg);
    let i0 = b * 4u;
    if (i0 >= p.n) { return; }
    let w = block_bits(b);
    for (var j = 0u; j < 4u; j++) {
        if (i0 + j < p.n) {
            y[i0 + j] = min(p.a + p.b * unit_open_hi(w[j]), p.hi_below);
        }
    }
}

// y = mean + std * z
@compute @workgroup_size(WG)
fn gaussian_fill(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(gid, nwg);
    let i0 = b * 4u;
    if (i0 >= p.n) { return; }
    let z = gaussian_block(b);
    for (var j = 0u; j < 4u; j++) {
        if (i0 + j < p.n) {
            y[i0 + j] = p.a + p.b * z[j];
        }
    }
}

// y = x + std * z: SmoothGrad's noisy copies (Smilkov et al. 2017). Same z as gaussian_fill
// for the same seed.
@compute @workgroup_size(WG)
fn add_gaussian_noise(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = flat_index(gid, nwg);
    let i0 = b * 4u;
    if (i0 >= p.n) { return; }
    let z = gaussian_block(b);
    for (var j = 0u; j < 4u; j++) {
        if (i0 + j < p.n) {
            y[i0 + j] = x[i0 + j] + p.b * z[j];
        }
    }
}
