// fma_peak.wgsl: arithmetic-throughput probe for the benchmarks.
// Each thread runs eight independent vec4 chains x = fma(x, a, b) for `iterations` steps (a
// runtime uniform, so the compiler can neither unroll the loop away nor fold the chain), then
// writes one value that depends on every chain, so none of it is dead code. Eight chains give
// the FMA units independent work while each chain waits out its own latency.
// With 0 < a < 1 the chains contract towards b / (1 - a) and stay bounded.
// Layout: out [>= threads] flat, one value per thread.
// Bindings: 0 params, 1 out.

struct FmaParams {
    threads: u32,
    iterations: u32,
    a: f32,
    b: f32,
}

@group(0) @binding(0) var<uniform> p: FmaParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.threads) { return; }
    // Starting values are exact in f32 (multiples of 2^-10 below 2), so a CPU twin can
    // reproduce the output bit for bit.
    let base = vec4<f32>(f32(i & 1023u) * 0.0009765625);
    let lane = vec4<f32>(0.0, 1.0, 2.0, 3.0) * 0.03125;
    var x0 = base + lane;
    var x1 = base + lane + 0.125;
    var x2 = base + lane + 0.25;
    var x3 = base + lane + 0.375;
    var x4 = base + lane + 0.5;
    var x5 = base + lane + 0.625;
    var x6 = base + lane + 0.75;
    var x7 = base + lane + 0.875;
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    // Four steps per trip: a CPU driver (lavapipe) pays a loop trip's mask bookkeeping once
    // per 32 FMAs instead of per 8, which doubles what it measures there.
    var k = 0u;
    for (; k + 4u <= p.iterations; k += 4u) {
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x4 = fma(x4, a, b);
        x5 = fma(x5, a, b);
        x6 = fma(x6, a, b);
        x7 = fma(x7, a, b);
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x4 = fma(x4, a, b);
        x5 = fma(x5, a, b);
        x6 = fma(x6, a, b);
        x7 = fma(x7, a, b);
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x4 = fma(x4, a, b);
        x5 = fma(x5, a, b);
        x6 = fma(x6, a, b);
        x7 = fma(x7, a, b);
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x4 = fma(x4, a, b);
        x5 = fma(x5, a, b);
        x6 = fma(x6, a, b);
        x7 = fma(x7, a, b);
    }
    for (; k < p.iterations; k++) {
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x4 = fma(x4, a, b);
        x5 = fma(x5, a, b);
        x6 = fma(x6, a, b);
        x7 = fma(x7, a, b);
    }
    let s = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
    out[i] = (s.x + s.y) + (s.z + s.w);
}
